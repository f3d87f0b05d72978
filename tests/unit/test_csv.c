/*
 * test_csv.c: the libcsv-based reader (server/csv.c): quoting, line numbers across line-break
 * styles and read-buffer boundaries, limits, and cell writing.
 */
/* labels: unit */
#include "fs_test.h"

#include <unistd.h>

#include "fs_csv.h"

#define MAX_ROWS  64
#define MAX_CELLS 8

typedef struct collected {
    size_t n_rows;
    int64_t line[MAX_ROWS];
    size_t n_cells[MAX_ROWS];
    char cell[MAX_ROWS][MAX_CELLS][64];
    size_t len[MAX_ROWS][MAX_CELLS];
    size_t stop_after; /* 0: never stop */
} collected;

static int collect(void *user, const fs_csv_row *row)
{
    collected *c = user;
    if (c->n_rows < MAX_ROWS) {
        size_t r = c->n_rows;
        c->line[r] = row->line;
        c->n_cells[r] = row->n_cells;
        for (size_t i = 0; i < row->n_cells && i < MAX_CELLS; i++) {
            size_t n = row->lens[i] < 63 ? row->lens[i] : 63;
            memcpy(c->cell[r][i], row->cells[i], n);
            c->cell[r][i][n] = '\0';
            c->len[r][i] = row->lens[i];
            assert_int_equal(row->cells[i][row->lens[i]], '\0');
        }
    }
    c->n_rows++;
    return c->stop_after != 0 && c->n_rows >= c->stop_after;
}

static fs_err read_text(const char *text, collected *c, fs_diag *diag)
{
    memset(c, 0, sizeof *c);
    return fs_csv_read_buffer(text, strlen(text), collect, c, diag);
}

static void test_csv_simple_rows_and_lines(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b,c\n1,2,3\n4,5,6\n", &c, NULL));
    assert_int_equal(c.n_rows, 3);
    assert_int_equal(c.line[0], 1);
    assert_int_equal(c.line[1], 2);
    assert_int_equal(c.line[2], 3);
    assert_string_equal(c.cell[2][2], "6");
    assert_int_equal(c.n_cells[1], 3);
}

static void test_csv_no_trailing_newline(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b\n1,2", &c, NULL));
    assert_int_equal(c.n_rows, 2);
    assert_string_equal(c.cell[1][1], "2");
    assert_int_equal(c.line[1], 2);
}

static void test_csv_crlf_and_cr_line_numbers(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b\r\n1,2\r\n3,4\r\n", &c, NULL));
    assert_int_equal(c.n_rows, 3);
    assert_int_equal(c.line[2], 3);
    assert_string_equal(c.cell[2][1], "4");
    FS_ASSERT_OK(read_text("a,b\r1,2\r3,4\r", &c, NULL));
    assert_int_equal(c.n_rows, 3);
    assert_int_equal(c.line[1], 2);
    assert_int_equal(c.line[2], 3);
}

static void test_csv_blank_lines_skipped_but_counted(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b\n\n1,2\n   \n\r\n3,4\n\n", &c, NULL));
    assert_int_equal(c.n_rows, 3);
    assert_int_equal(c.line[1], 3);
    assert_int_equal(c.line[2], 6);
}

static void test_csv_quoting(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(
        read_text("name,v\n\"a,b\",1\n\"say \"\"hi\"\"\",2\n\"two\nlines\",3\nx,4\n", &c, NULL));
    assert_int_equal(c.n_rows, 5);
    assert_string_equal(c.cell[1][0], "a,b");
    assert_string_equal(c.cell[2][0], "say \"hi\"");
    assert_string_equal(c.cell[3][0], "two\nlines");
    assert_int_equal(c.line[3], 4);
    /* the quoted line break moves the next record to line 6 */
    assert_int_equal(c.line[4], 6);
    assert_string_equal(c.cell[4][1], "4");
}

static void test_csv_spaces_trimmed_unless_quoted(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b,c\n 12 ,  ,\" 7 \"\n", &c, NULL));
    assert_string_equal(c.cell[1][0], "12");
    assert_int_equal(c.len[1][1], 0); /* whitespace-only reads as empty */
    assert_string_equal(c.cell[1][2], " 7 ");
}

static void test_csv_empty_cells(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("a,b,c\n0,1,,\n,,\n", &c, NULL));
    assert_int_equal(c.n_cells[1], 4);
    assert_int_equal(c.len[1][2], 0);
    assert_int_equal(c.n_cells[2], 3);
}

static void test_csv_bom_skipped(void **state)
{
    collected c;
    (void)state;
    FS_ASSERT_OK(read_text("\xEF\xBB\xBF"
                           "a,b\n1,2\n",
                           &c, NULL));
    assert_string_equal(c.cell[0][0], "a");
}

static void test_csv_stray_quote_is_error_with_line(void **state)
{
    collected c;
    fs_diag diag = { "" };
    (void)state;
    FS_ASSERT_ERR(read_text("a,b\n1,2\n3,4\"x\n", &c, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "line 3"));
    FS_ASSERT_ERR(read_text("a,b\n1,\"2\"x\n", &c, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "line 2"));
}

static void test_csv_unclosed_quote_is_error(void **state)
{
    collected c;
    fs_diag diag = { "" };
    (void)state;
    FS_ASSERT_ERR(read_text("a,b\n1,\"2\n", &c, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "not closed"));
}

static void test_csv_cell_too_long(void **state)
{
    size_t n = FS_CSV_MAX_CELL_BYTES + 100;
    char *text = malloc(n + 16);
    collected c;
    fs_diag diag = { "" };
    (void)state;
    memcpy(text, "a\n\"", 3);
    memset(text + 3, 'x', n);
    memcpy(text + 3 + n, "\"\n", 3);
    memset(&c, 0, sizeof c);
    FS_ASSERT_ERR(fs_csv_read_buffer(text, strlen(text), collect, &c, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "longer than"));
    assert_non_null(strstr(diag.msg, "line 2"));
    /* just under the cap is fine */
    memset(text + 3, 'x', FS_CSV_MAX_CELL_BYTES - 8);
    memcpy(text + 3 + FS_CSV_MAX_CELL_BYTES - 8, "\"\n", 3);
    memset(&c, 0, sizeof c);
    FS_ASSERT_OK(fs_csv_read_buffer(text, strlen(text), collect, &c, &diag));
    assert_int_equal(c.n_rows, 2);
    free(text);
}

static void test_csv_too_many_columns(void **state)
{
    size_t n = FS_CSV_MAX_COLUMNS + 1;
    char *text = malloc(2 * n + 2);
    collected c;
    fs_diag diag = { "" };
    (void)state;
    for (size_t i = 0; i < n; i++) {
        text[2 * i] = '1';
        text[2 * i + 1] = i + 1 < n ? ',' : '\n';
    }
    text[2 * n] = '\0';
    memset(&c, 0, sizeof c);
    FS_ASSERT_ERR(fs_csv_read_buffer(text, strlen(text), collect, &c, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "line 1"));
    free(text);
}

static void test_csv_callback_stops(void **state)
{
    collected c;
    const char *text = "a\n1\n2\n3\n";
    (void)state;
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    FS_ASSERT_ERR(fs_csv_read_buffer(text, strlen(text), collect, &c, NULL), FS_ERR_CANCELLED);
    assert_int_equal(c.n_rows, 2);
}

static void test_csv_nul_byte_in_cell(void **state)
{
    collected c;
    const char text[] = "a,b\nx\0y,2\n";
    (void)state;
    memset(&c, 0, sizeof c);
    FS_ASSERT_OK(fs_csv_read_buffer(text, sizeof text - 1, collect, &c, NULL));
    assert_int_equal(c.len[1][0], 3);
}

static int last_line(void *user, const fs_csv_row *row)
{
    int64_t *out = user;
    *out = row->line;
    return 0;
}

/* A file whose CRLF pairs straddle the 64 KiB read boundary keeps exact line numbers. */
static void test_csv_file_line_numbers_across_read_blocks(void **state)
{
    char path[] = "/tmp/fs_test_csv_XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    collected c;
    size_t lines = 0, bytes = 0;
    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    fputs("v\r\n", f);
    bytes = 3;
    lines = 1;
    /* lines of 7 bytes "123456\r" + "\n": byte 65535 is a CR for some line */
    while (bytes < 3 * 65536) {
        fputs("123456\r\n", f);
        bytes += 8;
        lines++;
    }
    fputs("last\r\n", f);
    lines++;
    fclose(f);
    memset(&c, 0, sizeof c);
    FS_ASSERT_OK(fs_csv_read_file(path, collect, &c, NULL));
    assert_int_equal(c.n_rows, lines);
    int64_t line = 0;
    FS_ASSERT_OK(fs_csv_read_file(path, last_line, &line, NULL));
    assert_int_equal(line, (int64_t)lines);
    unlink(path);
}

static void test_csv_file_last_line_number(void **state)
{
    char path[] = "/tmp/fs_test_csv_XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    int64_t line = 0;
    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    fputs("v\r\n", f);
    for (int i = 0; i < 30000; i++) {
        fputs(i % 3 == 0 ? "1\r\n" : (i % 3 == 1 ? "22\n" : "\n"), f);
    }
    fputs("end\r\n", f);
    fclose(f);
    FS_ASSERT_OK(fs_csv_read_file(path, last_line, &line, NULL));
    assert_int_equal(line, 30002);
    unlink(path);
}

static void test_csv_missing_file_is_io(void **state)
{
    fs_diag diag = { "" };
    collected c;
    (void)state;
    FS_ASSERT_ERR(fs_csv_read_file("/nonexistent/x.csv", collect, &c, &diag), FS_ERR_IO);
    assert_non_null(strstr(diag.msg, "/nonexistent/x.csv"));
}

static void test_csv_write_cell_quotes_when_needed(void **state)
{
    char buf[256] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    (void)state;
    assert_int_equal(fs_csv_write_cell(f, "plain", 5), 0);
    fputc('|', f);
    assert_int_equal(fs_csv_write_cell(f, "a,b", 3), 0);
    fputc('|', f);
    assert_int_equal(fs_csv_write_cell(f, "q\"x", 3), 0);
    fputc('|', f);
    assert_int_equal(fs_csv_write_cell(f, " s", 2), 0);
    fclose(f);
    assert_string_equal(buf, "plain|\"a,b\"|\"q\"\"x\"|\" s\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_simple_rows_and_lines),
        cmocka_unit_test(test_csv_no_trailing_newline),
        cmocka_unit_test(test_csv_crlf_and_cr_line_numbers),
        cmocka_unit_test(test_csv_blank_lines_skipped_but_counted),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_spaces_trimmed_unless_quoted),
        cmocka_unit_test(test_csv_empty_cells),
        cmocka_unit_test(test_csv_bom_skipped),
        cmocka_unit_test(test_csv_stray_quote_is_error_with_line),
        cmocka_unit_test(test_csv_unclosed_quote_is_error),
        cmocka_unit_test(test_csv_cell_too_long),
        cmocka_unit_test(test_csv_too_many_columns),
        cmocka_unit_test(test_csv_callback_stops),
        cmocka_unit_test(test_csv_nul_byte_in_cell),
        cmocka_unit_test(test_csv_file_line_numbers_across_read_blocks),
        cmocka_unit_test(test_csv_file_last_line_number),
        cmocka_unit_test(test_csv_missing_file_is_io),
        cmocka_unit_test(test_csv_write_cell_quotes_when_needed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
