/*
 * test_dataset.c: CSV files to records (server/dataset.c, dataset_read.c): the number rules,
 * every bad-cell spelling in every column position, headerless files with a schema, header
 * matching, skip-bad-rows accounting, schema inference and categorical levels.
 */
/* labels: unit */
#include "fs_test.h"

#include <unistd.h>

#include "dataset.h"

/* ------------------------------------------------------------------------- helpers */

typedef struct tmpfile_path {
    char path[64];
} tmpfile_path;

static void write_tmp(tmpfile_path *t, const char *text)
{
    int fd;
    FILE *f;
    snprintf(t->path, sizeof t->path, "/tmp/fs_test_ds_XXXXXX");
    fd = mkstemp(t->path);
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

#define MAX_ROWS 32

typedef struct rows {
    size_t n;
    size_t n_fields;
    double v[MAX_ROWS][8];
    int64_t line[MAX_ROWS];
    int64_t index[MAX_ROWS];
    int normal[MAX_ROWS];
    char label[MAX_ROWS][16];
} rows;

static int collect(void *user, const fs_dataset_row *row)
{
    rows *r = user;
    if (r->n < MAX_ROWS) {
        memcpy(r->v[r->n], row->record, r->n_fields * sizeof(double));
        r->line[r->n] = row->line;
        r->index[r->n] = row->index;
        r->normal[r->n] = row->is_normal;
        r->label[r->n][0] = '\0';
        if (row->label != NULL) {
            snprintf(r->label[r->n], sizeof r->label[r->n], "%s", row->label);
        }
    }
    r->n++;
    return 0;
}

static fs_schema *numeric_schema(const char *const *names, size_t n)
{
    fs_schema *s = NULL;
    FS_ASSERT_OK(fs_schema_create(&s));
    for (size_t i = 0; i < n; i++) {
        FS_ASSERT_OK(fs_schema_add_numeric(s, names[i], FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    }
    return s;
}

static fs_err read_file(const char *path, const fs_schema *features, const fs_schema_file *sf,
                        int skip, rows *out, fs_dataset_stats *st, fs_diag *diag)
{
    fs_dataset_opts o = { 0 };
    o.path = path;
    o.schema_file = sf;
    o.skip_bad_rows = skip;
    memset(out, 0, sizeof *out);
    out->n_fields = fs_schema_n_fields(features);
    return fs_dataset_read(&o, features, collect, out, st, diag);
}

static fs_schema_file *parse_schema_file(const char *json)
{
    fs_schema_file *sf = NULL;
    fs_diag diag = { "" };
    fs_err err = fs_schema_file_parse(json, strlen(json), &sf, &diag);
    if (err != FS_OK) {
        fail_msg("schema file: %s (%s)", diag.msg, fs_err_name(err));
    }
    return sf;
}

/* ------------------------------------------------------------------------- numbers */

static void test_parse_number_accepts_decimal_forms(void **state)
{
    static const struct {
        const char *text;
        double value;
    } good[] = {
        { "0", 0.0 },         { "-1", -1.0 },    { "1.5", 1.5 }, { "1.51737e+07", 1.51737e+07 },
        { ".5", 0.5 },        { "5.", 5.0 },     { "+3", 3.0 },  { "1E5", 1e5 },
        { "2.5e-3", 2.5e-3 }, { "1e-400", 0.0 }, { "-0", 0.0 },  { "1e308", 1e308 },
        { "64240", 64240.0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = -99.0;
        fs_cell_status st = fs_dataset_parse_number(good[i].text, strlen(good[i].text), &v);
        if (st != FS_CELL_OK) {
            fail_msg("'%s': %s", good[i].text, fs_cell_status_text(st));
        }
        FS_ASSERT_NEAR(v, good[i].value, 1e-12 * fabs(good[i].value));
    }
}

static void test_parse_number_refuses_bad_cells(void **state)
{
    static const struct {
        const char *text;
        fs_cell_status want;
    } bad[] = {
        { "tcp", FS_CELL_NOT_NUMBER },
        { "0x10", FS_CELL_NOT_NUMBER },
        { " 12", FS_CELL_NOT_NUMBER },
        { "12 ", FS_CELL_NOT_NUMBER },
        { "1,5", FS_CELL_NOT_NUMBER },
        { "1e", FS_CELL_NOT_NUMBER },
        { "e5", FS_CELL_NOT_NUMBER },
        { ".", FS_CELL_NOT_NUMBER },
        { "-", FS_CELL_NOT_NUMBER },
        { "1.2.3", FS_CELL_NOT_NUMBER },
        { "1e5.5", FS_CELL_NOT_NUMBER },
        { "true", FS_CELL_NOT_NUMBER },
        { "\"1\"", FS_CELL_NOT_NUMBER },
        { "infinit", FS_CELL_NOT_NUMBER },
        { "", FS_CELL_EMPTY },
        { "   ", FS_CELL_EMPTY },
        { "\t", FS_CELL_EMPTY },
        { "NaN", FS_CELL_NONFINITE },
        { "nan", FS_CELL_NONFINITE },
        { "NAN", FS_CELL_NONFINITE },
        { "-nan", FS_CELL_NONFINITE },
        { "nan(123)", FS_CELL_NONFINITE },
        { "Infinity", FS_CELL_NONFINITE },
        { "inf", FS_CELL_NONFINITE },
        { "-inf", FS_CELL_NONFINITE },
        { "+Infinity", FS_CELL_NONFINITE },
        { "INF", FS_CELL_NONFINITE },
        { "1e999", FS_CELL_OVERFLOW },
        { "1e309", FS_CELL_OVERFLOW },
        { "-1e999", FS_CELL_OVERFLOW },
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 42.0;
        fs_cell_status st = fs_dataset_parse_number(bad[i].text, strlen(bad[i].text), &v);
        if (st != bad[i].want) {
            fail_msg("'%s': got %s, want %s", bad[i].text, fs_cell_status_text(st),
                     fs_cell_status_text(bad[i].want));
        }
        FS_ASSERT_NEAR(v, 42.0, 0.0); /* never written on failure */
    }
}

/* ------------------------------------------------------------------------- bad cells */

/* Every spelling, in every column of a numeric file: strict names line and column; skip
 * counts it under its reason and keeps the good rows. */
static void test_read_every_bad_spelling_in_every_column(void **state)
{
    static const struct {
        const char *cell;
        fs_cell_status want;
    } spellings[] = {
        { "tcp", FS_CELL_NOT_NUMBER },      { "0x10", FS_CELL_NOT_NUMBER },
        { "\" 12\"", FS_CELL_NOT_NUMBER },  { "NaN", FS_CELL_NONFINITE },
        { "nan", FS_CELL_NONFINITE },       { "NAN", FS_CELL_NONFINITE },
        { "-nan", FS_CELL_NONFINITE },      { "Infinity", FS_CELL_NONFINITE },
        { "inf", FS_CELL_NONFINITE },       { "-inf", FS_CELL_NONFINITE },
        { "+Infinity", FS_CELL_NONFINITE }, { "1e999", FS_CELL_OVERFLOW },
        { "1e309", FS_CELL_OVERFLOW },      { "", FS_CELL_EMPTY },
        { "   ", FS_CELL_EMPTY },           { "\"  \"", FS_CELL_EMPTY },
    };
    static const char *const names[] = { "bytes", "pkts", "rate", "flag" };
    fs_schema *s = numeric_schema(names, 4);
    (void)state;
    for (size_t k = 0; k < sizeof spellings / sizeof spellings[0]; k++) {
        for (size_t col = 0; col < 4; col++) {
            char text[256], bad_row[64] = "";
            tmpfile_path t;
            rows r;
            fs_dataset_stats st;
            fs_diag diag = { "" };
            char want_line[32], want_col[64];
            for (size_t c = 0; c < 4; c++) {
                size_t used = strlen(bad_row);
                snprintf(bad_row + used, sizeof bad_row - used, "%s%s", c > 0 ? "," : "",
                         c == col ? spellings[k].cell : "-1");
            }
            snprintf(text, sizeof text, "bytes,pkts,rate,flag\n1,2,0.5,1\n%s\n3,4,1.5e+07,0\n",
                     bad_row);
            write_tmp(&t, text);
            fs_err err = read_file(t.path, s, NULL, 0, &r, &st, &diag);
            fs_err want_err =
                spellings[k].want == FS_CELL_NONFINITE || spellings[k].want == FS_CELL_OVERFLOW
                    ? FS_ERR_NUMERIC
                    : FS_ERR_FORMAT;
            if (err != want_err) {
                fail_msg("'%s' in %s: %s (%s)", spellings[k].cell, names[col], fs_err_name(err),
                         diag.msg);
            }
            snprintf(want_line, sizeof want_line, "line 3,");
            snprintf(want_col, sizeof want_col, "column %s:", names[col]);
            if (strstr(diag.msg, want_line) == NULL || strstr(diag.msg, want_col) == NULL ||
                strstr(diag.msg, fs_cell_status_text(spellings[k].want)) == NULL) {
                fail_msg("'%s' in %s: message '%s'", spellings[k].cell, names[col], diag.msg);
            }
            assert_int_equal(r.n, 1); /* the good row before it, nothing after */

            FS_ASSERT_OK(read_file(t.path, s, NULL, 1, &r, &st, &diag));
            assert_int_equal(r.n, 2);
            assert_int_equal(st.bad, 1);
            assert_int_equal(st.bad_by_status[spellings[k].want], 1);
            assert_int_equal(st.examples[0].line, 3);
            assert_string_equal(st.examples[0].column, names[col]);
            assert_int_equal(r.line[1], 4);
            assert_int_equal(r.index[1], 2); /* the skipped record keeps its index */
            FS_ASSERT_NEAR(r.v[1][2], 1.5e7, 0.0);
            unlink(t.path);
        }
    }
    fs_schema_free(s);
}

static void test_read_wrong_number_of_cells(void **state)
{
    static const char *const names[] = { "a", "b" };
    fs_schema *s = numeric_schema(names, 2);
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    (void)state;
    write_tmp(&t, "a,b\n1,2\n3\n4,5,6\n7,8\n");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "line 3"));
    assert_non_null(strstr(diag.msg, "1 cells, expected 2"));
    FS_ASSERT_OK(read_file(t.path, s, NULL, 1, &r, &st, &diag));
    assert_int_equal(r.n, 2);
    assert_int_equal(st.bad_by_status[FS_CELL_N_CELLS], 2);
    unlink(t.path);
    fs_schema_free(s);
}

/* case-09's head.csv: Infinity/NaN on line 2, empty cells on line 3, -1 sentinels kept. */
static void test_read_skip_counts_reasons_and_lines(void **state)
{
    static const char *const names[] = { "flow_duration", "tot_fwd_pkts", "flow_bytes_s",
                                         "flow_pkts_s", "flow_iat_mean" };
    fs_schema *s = numeric_schema(names, 5);
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    char text[512];
    (void)state;
    write_tmp(&t, "flow_duration,tot_fwd_pkts,flow_bytes_s,flow_pkts_s,flow_iat_mean\n"
                  "0,1,Infinity,Infinity,NaN\n"
                  "0,1,,,\n"
                  "1200,3,250000.0,2500.0,600.0\n"
                  "800,2,150000.5,2500.0,800.0\n"
                  "-1,-1,-1,-1,-1\n");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_NUMERIC);
    assert_non_null(strstr(diag.msg, "line 2, column flow_bytes_s: non-finite value"));
    FS_ASSERT_OK(read_file(t.path, s, NULL, 1, &r, &st, &diag));
    assert_int_equal(r.n, 3);
    assert_int_equal(st.records, 5);
    assert_int_equal(st.used, 3);
    assert_int_equal(st.bad, 2);
    assert_int_equal(st.bad_by_status[FS_CELL_NONFINITE], 1);
    assert_int_equal(st.bad_by_status[FS_CELL_EMPTY], 1);
    FS_ASSERT_NEAR(r.v[2][0], -1.0, 0.0);
    fs_dataset_format_bad(&st, text, sizeof text);
    assert_non_null(strstr(text, "2 bad rows skipped"));
    assert_non_null(strstr(text, "1 non-finite value"));
    assert_non_null(strstr(text, "1 empty cell"));
    assert_non_null(strstr(text, "line 2 (flow_bytes_s: non-finite value)"));
    assert_non_null(strstr(text, "line 3 (flow_bytes_s: empty cell)"));
    /* the summary's form says "bad rows" once: its label already does */
    fs_dataset_format_bad_detail(&st, text, sizeof text);
    assert_string_equal(text, "2 (1 non-finite value, 1 empty cell); line 2 (flow_bytes_s: "
                              "non-finite value), line 3 (flow_bytes_s: empty cell)");
    unlink(t.path);
    fs_schema_free(s);
}

/* ------------------------------------------------------------------------- layouts */

static const char kdd_like_schema[] =
    "{\"header\": false, \"fields\": ["
    "{\"name\": \"duration\", \"type\": \"integer\", \"transform\": \"log1p\"},"
    "{\"name\": \"proto\", \"type\": \"categorical\", \"levels\": [\"icmp\", \"tcp\", "
    "\"udp\"]},"
    "{\"name\": \"rate\", \"type\": \"numeric\"},"
    "{\"name\": \"label\", \"type\": \"label\"},"
    "{\"name\": \"difficulty\", \"type\": \"ignore\"}]}";

static void test_schema_file_roles_and_features(void **state)
{
    fs_schema_file *sf = parse_schema_file(kdd_like_schema);
    (void)state;
    assert_int_equal(sf->header, 0);
    assert_int_equal(sf->n_columns, 5);
    assert_int_equal(sf->roles[3], FS_COLUMN_LABEL);
    assert_int_equal(sf->roles[4], FS_COLUMN_IGNORE);
    assert_int_equal(fs_schema_n_fields(sf->features), 3);
    assert_int_equal(fs_schema_field_transform(sf->features, 0), FS_TRANSFORM_LOG1P);
    assert_int_equal(fs_schema_n_levels(sf->features, 1), 3);
    fs_schema_file_free(sf);
}

static void test_schema_file_errors(void **state)
{
    static const char *const bad[] = {
        "{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\"}",
        "{\"fields\": [{\"name\": \"a\", \"type\": \"float\"}]}",
        ("{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\"}, {\"name\": \"a\", \"type\": "
         "\"integer\"}]}"),
        "{\"header\": 1, \"fields\": [{\"name\": \"a\", \"type\": \"numeric\"}]}",
        "{\"hedaer\": true, \"fields\": [{\"name\": \"a\", \"type\": \"numeric\"}]}",
        "{\"fields\": []}",
        "{\"fields\": [{\"name\": \"l\", \"type\": \"label\"}]}",
        "[]",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_schema_file *sf = NULL;
        fs_diag diag = { "" };
        fs_err err = fs_schema_file_parse(bad[i], strlen(bad[i]), &sf, &diag);
        if (err == FS_OK) {
            fail_msg("accepted: %s", bad[i]);
        }
        assert_null(sf);
        assert_true(diag.msg[0] != '\0');
    }
}

static void test_read_headerless_with_schema(void **state)
{
    fs_schema_file *sf = parse_schema_file(kdd_like_schema);
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    fs_dataset_opts o = { 0 };
    (void)state;
    write_tmp(&t, "0,tcp,0.5,normal,20\n12,sctp,1e-3,neptune,15\n3,udp,0,normal,21\n");
    o.path = t.path;
    o.schema_file = sf;
    o.label_col = "label";
    o.normal_value = "normal";
    memset(&r, 0, sizeof r);
    r.n_fields = 3;
    FS_ASSERT_OK(fs_dataset_read(&o, sf->features, collect, &r, &st, &diag));
    assert_int_equal(r.n, 3);
    assert_int_equal(r.line[0], 1);      /* no header: the first row is line 1 */
    FS_ASSERT_NEAR(r.v[0][1], 1.0, 0.0); /* tcp */
    FS_ASSERT_NEAR(r.v[1][1], FS_LEVEL_UNKNOWN, 0.0);
    FS_ASSERT_NEAR(r.v[2][1], 2.0, 0.0);
    FS_ASSERT_NEAR(r.v[1][2], 1e-3, 0.0);
    assert_int_equal(r.normal[0], 1);
    assert_int_equal(r.normal[1], 0);
    assert_string_equal(r.label[1], "neptune");
    assert_string_equal(st.unused_columns, ""); /* difficulty is declared "ignore" */

    /* an empty categorical cell is bad too */
    unlink(t.path);
    write_tmp(&t, "0,tcp,0.5,normal,20\n1,,0.5,normal,20\n");
    FS_ASSERT_ERR(fs_dataset_read(&o, sf->features, collect, &r, &st, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "line 2, column proto: empty cell"));
    unlink(t.path);
    fs_schema_file_free(sf);
}

static void test_read_header_matched_by_name(void **state)
{
    static const char *const names[] = { "bytes", "pkts" };
    fs_schema *s = numeric_schema(names, 2);
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    (void)state;
    write_tmp(&t, "extra,pkts,note,bytes\nx,10,hello,1200\ny,3,\"a,b\",60\n");
    FS_ASSERT_OK(read_file(t.path, s, NULL, 0, &r, &st, &diag));
    assert_int_equal(r.n, 2);
    FS_ASSERT_NEAR(r.v[0][0], 1200.0, 0.0);
    FS_ASSERT_NEAR(r.v[0][1], 10.0, 0.0);
    assert_string_equal(st.unused_columns, "extra,note");
    unlink(t.path);

    write_tmp(&t, "bytes,packets\n1,2\n");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "no column named pkts"));
    unlink(t.path);

    write_tmp(&t, "bytes,pkts,bytes\n1,2,3\n");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "appears twice"));
    unlink(t.path);

    /* header only: no rows, no error */
    write_tmp(&t, "bytes,pkts\n");
    FS_ASSERT_OK(read_file(t.path, s, NULL, 0, &r, &st, &diag));
    assert_int_equal(r.n, 0);
    unlink(t.path);

    /* an empty file has no header to match */
    write_tmp(&t, "");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
    unlink(t.path);
    fs_schema_free(s);
}

static void test_read_quoted_cells(void **state)
{
    fs_schema *s = NULL;
    static const char *const levels[] = { "a,b", "c" };
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    (void)state;
    FS_ASSERT_OK(fs_schema_create(&s));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "x", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_categorical(s, "k", levels, 2));
    write_tmp(&t, "x,k\n\"1.5\",\"a,b\"\n\"2e3\",c\n");
    FS_ASSERT_OK(read_file(t.path, s, NULL, 0, &r, &st, &diag));
    assert_int_equal(r.n, 2);
    FS_ASSERT_NEAR(r.v[0][0], 1.5, 0.0);
    FS_ASSERT_NEAR(r.v[0][1], 0.0, 0.0);
    FS_ASSERT_NEAR(r.v[1][0], 2000.0, 0.0);
    FS_ASSERT_NEAR(r.v[1][1], 1.0, 0.0);
    unlink(t.path);
    fs_schema_free(s);
}

/* ------------------------------------------------------------------------- inference */

static fs_dataset *load(const char *text, const char *label, const char *normal, const char *ignore,
                        int skip, fs_err want, fs_diag *diag)
{
    tmpfile_path t;
    fs_dataset *d = NULL;
    fs_dataset_opts o = { 0 };
    write_tmp(&t, text);
    o.path = t.path;
    o.label_col = label;
    o.normal_value = normal;
    o.normal_only = label != NULL;
    o.ignore_cols = ignore;
    o.skip_bad_rows = skip;
    fs_err err = fs_dataset_load(&o, &d, diag);
    unlink(t.path);
    if (err != want) {
        fail_msg("load: %s, expected %s (%s)", fs_err_name(err), fs_err_name(want), diag->msg);
    }
    return d;
}

static void test_infer_types_and_transforms(void **state)
{
    fs_diag diag = { "" };
    fs_dataset *d;
    (void)state;
    d = load("count,flag,rate,signed,proto,wide,note,label\n"
             "5,0,0.5,-3,tcp,0.001,x,normal\n"
             "300,1,0.25,2,udp,12.5,y,normal\n"
             "1e2,1,1,0,tcp,50000,z,normal\n"
             "7,0,0,1,icmp,0.002,w,attack\n",
             "label", "normal", "note", 0, FS_OK, &diag);
    const fs_schema *s = d->schema;
    assert_int_equal(fs_schema_n_fields(s), 6);
    assert_int_equal(d->n_rows, 3); /* the attack row is left out */
    assert_int_equal(d->stats.other_label, 1);
    assert_string_equal(fs_schema_field_name(s, 0), "count");
    assert_int_equal(fs_schema_field_type(s, 0), FS_FIELD_INTEGER);
    assert_int_equal(fs_schema_field_transform(s, 0), FS_TRANSFORM_LOG1P);
    assert_int_equal(fs_schema_field_type(s, 1), FS_FIELD_INTEGER); /* a 0/1 flag */
    assert_int_equal(fs_schema_field_transform(s, 1), FS_TRANSFORM_NONE);
    assert_int_equal(fs_schema_field_type(s, 2), FS_FIELD_NUMERIC);
    assert_int_equal(fs_schema_field_transform(s, 2), FS_TRANSFORM_NONE);
    assert_int_equal(fs_schema_field_transform(s, 3), FS_TRANSFORM_NONE); /* negative */
    assert_int_equal(fs_schema_field_type(s, 4), FS_FIELD_CATEGORICAL);
    /* levels: the sorted values of the kept rows only (icmp is in the attack row) */
    assert_int_equal(fs_schema_n_levels(s, 4), 2);
    assert_string_equal(fs_schema_level_name(s, 4, 0), "tcp");
    assert_string_equal(fs_schema_level_name(s, 4, 1), "udp");
    FS_ASSERT_NEAR(d->records[0 * 6 + 4], 0.0, 0.0);
    FS_ASSERT_NEAR(d->records[1 * 6 + 4], 1.0, 0.0);
    assert_int_equal(fs_schema_field_transform(s, 5), FS_TRANSFORM_LOG1P); /* 0.001 .. 5e4 */
    FS_ASSERT_NEAR(d->records[2 * 6 + 0], 100.0, 0.0);
    fs_dataset_free(d);
}

static void test_infer_transform_rule(void **state)
{
    (void)state;
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_INTEGER, 0, 2, 1, 1), FS_TRANSFORM_LOG1P);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_INTEGER, 0, 1, 0, 1), FS_TRANSFORM_NONE);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_INTEGER, -1, 100, 1, 1),
                     FS_TRANSFORM_NONE);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_NUMERIC, 0, 1e9, 1e3, 1e-3),
                     FS_TRANSFORM_LOG1P);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_NUMERIC, 0, 1e5, 1e3, 1e-3),
                     FS_TRANSFORM_NONE);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_NUMERIC, 0, 0, 0, 0), FS_TRANSFORM_NONE);
    assert_int_equal(fs_dataset_infer_transform(FS_FIELD_NUMERIC, 0.1, 0.9, 0.5, 0.1),
                     FS_TRANSFORM_NONE);
}

/* A column's type comes from its first non-empty cell; an Infinity there makes it numeric
 * and then a bad cell, never a categorical level (case-09). */
static void test_infer_first_nonempty_cell(void **state)
{
    fs_diag diag = { "" };
    fs_dataset *d;
    (void)state;
    d = load("a,b,c\n1,Infinity,\n2,5,x\n3,6,y\n", NULL, NULL, NULL, 0, FS_ERR_NUMERIC, &diag);
    assert_null(d);
    assert_non_null(strstr(diag.msg, "line 2, column b: non-finite value"));
    d = load("a,b,c\n1,Infinity,\n2,5,x\n3,6,y\n", NULL, NULL, NULL, 1, FS_OK, &diag);
    assert_int_equal(d->n_rows, 2);
    assert_int_equal(fs_schema_field_type(d->schema, 1), FS_FIELD_INTEGER);
    assert_int_equal(fs_schema_field_type(d->schema, 2), FS_FIELD_CATEGORICAL);
    assert_int_equal(d->stats.bad_by_status[FS_CELL_NONFINITE], 1);
    fs_dataset_free(d);
    /* text in a column that started numeric is a bad cell, not 0 */
    d = load("a,b\n1,2\n3,tcp\n", NULL, NULL, NULL, 0, FS_ERR_FORMAT, &diag);
    assert_non_null(strstr(diag.msg, "line 3, column b: not a number 'tcp'"));
}

static void test_load_header_only_and_max_rows(void **state)
{
    fs_diag diag = { "" };
    fs_dataset *d;
    (void)state;
    d = load("a,b\n", NULL, NULL, NULL, 0, FS_OK, &diag);
    assert_int_equal(d->n_rows, 0);
    fs_dataset_free(d);
    tmpfile_path t;
    fs_dataset_opts o = { 0 };
    write_tmp(&t, "a,b\n1,2\n3,4\n5,6\n7,8\n");
    o.path = t.path;
    o.max_rows = 2;
    FS_ASSERT_OK(fs_dataset_load(&o, &d, &diag));
    assert_int_equal(d->n_rows, 2);
    assert_int_equal(d->stats.truncated, 1);
    FS_ASSERT_NEAR(d->records[3], 4.0, 0.0);
    fs_dataset_free(d);
    unlink(t.path);
}

static void test_load_errors_name_columns(void **state)
{
    fs_diag diag = { "" };
    (void)state;
    load("a,b\n1,2\n", "label", "normal", NULL, 0, FS_ERR_FORMAT, &diag);
    assert_non_null(strstr(diag.msg, "no column named label"));
    load("a,b\n1,2\n", NULL, NULL, "c", 0, FS_ERR_FORMAT, &diag);
    assert_non_null(strstr(diag.msg, "no column named c"));
    load("a\n", NULL, NULL, "a", 0, FS_ERR_FORMAT, &diag);
    assert_non_null(strstr(diag.msg, "no feature columns"));
}

#define HEADERLESS "seems to have no header row"

/* A first row that is data is refused with the fix, not read as field names (a user's
 * headerless CSV trained on fields "119.323" and "2.033"); real headers stay headers. */
static void test_load_headerless_file_refused(void **state)
{
    static const char *const refused[] = {
        "119.323,2.033\n1.5,2.5\n", /* decimals */
        "-1,5\n1,2\n",              /* a sign */
        "1e3,7\n1,2\n",             /* an exponent */
        "3,3\n1,2\n",               /* plain digits, but one repeats */
        "0,tcp,ftp_data,SF,491,0,0,normal,20\n0,udp,other,SF,146,0,0,normal,15\n", /* NSL-KDD */
        ",1.5,,2.5\n1,2,3,4\n", /* blank cells count for neither side */
    };
    fs_diag diag = { "" };
    fs_dataset *d;
    (void)state;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        d = load(refused[i], NULL, NULL, NULL, 0, FS_ERR_FORMAT, &diag);
        assert_null(d);
        if (strstr(diag.msg, HEADERLESS) == NULL || strstr(diag.msg, "\"header\": false") == NULL) {
            fail_msg("case %zu: %s", i, diag.msg);
        }
    }
    d = load("119.323,2.033\n1.5,2.5\n", NULL, NULL, NULL, 0, FS_ERR_FORMAT, &diag);
    assert_non_null(strstr(diag.msg, "(first row: '119.323,2.033')"));
    /* --skip-bad-rows does not turn it into a skipped row */
    d = load("119.323,2.033\n1.5,2.5\n", NULL, NULL, NULL, 1, FS_ERR_FORMAT, &diag);
    assert_null(d);
    /* a label column the data row cannot name: the header is still what is wrong */
    d = load("1.5,tcp,3\n2.5,udp,4\n", "label", "normal", NULL, 0, FS_ERR_FORMAT, &diag);
    assert_null(d);
    assert_non_null(strstr(diag.msg, HEADERLESS));

    /* years, wavelengths, pandas' column indices: names, with a note in the stats */
    d = load("2019,2020\n1,2\n3,4\n", NULL, NULL, NULL, 0, FS_OK, &diag);
    assert_string_equal(fs_schema_field_name(d->schema, 0), "2019");
    assert_string_equal(d->stats.numeric_header, "'2019,2020'");
    fs_dataset_free(d);
    d = load(",0,1\nr1,1.5,2\nr2,3,4\n", NULL, NULL, NULL, 0, FS_ERR_FORMAT, &diag);
    assert_null(d);
    assert_null(strstr(diag.msg, HEADERLESS)); /* an empty name is its own error */
    d = load("0,1,2\n1.5,2,3\n3,4,5\n", NULL, NULL, NULL, 0, FS_OK, &diag);
    assert_int_equal(fs_schema_n_fields(d->schema), 3);
    fs_dataset_free(d);
    /* one numeric name among text names: a header, no note */
    d = load("id,2019\n1,2\n3,4\n", NULL, NULL, NULL, 0, FS_OK, &diag);
    assert_string_equal(d->stats.numeric_header, "");
    fs_dataset_free(d);
    /* NaN and infinity spellings as names are names */
    d = load("nan,inf\n1,2\n3,4\n", NULL, NULL, NULL, 0, FS_OK, &diag);
    fs_dataset_free(d);
    /* a real header with a duplicate text name keeps its own message */
    d = load("a,a\n1,2\n", NULL, NULL, NULL, 0, FS_ERR_FORMAT, &diag);
    assert_null(d);
    assert_non_null(strstr(diag.msg, "the column a appears twice"));
}

/* With a model's schema, a missing column is blamed on the header when the header is data. */
static void test_read_headerless_blames_header(void **state)
{
    static const char *const names[] = { "bytes", "pkts" };
    static const char *const data_rows[] = {
        "1200,10\n800,4\n",         /* all numbers: "no column named bytes" before */
        "1200,10,tcp\n800,4,udp\n", /* mostly numbers, no field named */
        "2019,2020\n1,2\n",         /* plain digits: names, but not the model's */
    };
    static const char *const digit_names[] = { "0", "1" };
    fs_schema *s = numeric_schema(names, 2);
    tmpfile_path t;
    rows r;
    fs_dataset_stats st;
    fs_diag diag = { "" };
    (void)state;
    for (size_t i = 0; i < sizeof data_rows / sizeof data_rows[0]; i++) {
        write_tmp(&t, data_rows[i]);
        FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
        if (strstr(diag.msg, HEADERLESS) == NULL) {
            fail_msg("case %zu: %s", i, diag.msg);
        }
        unlink(t.path);
    }
    /* a header naming one of the fields is a header missing the other */
    write_tmp(&t, "bytes,2019,2020\n1,2,3\n");
    FS_ASSERT_ERR(read_file(t.path, s, NULL, 0, &r, &st, &diag), FS_ERR_FORMAT);
    assert_non_null(strstr(diag.msg, "no column named pkts"));
    unlink(t.path);
    /* numbers as the model's own field names are found, not refused */
    fs_schema_free(s);
    s = numeric_schema(digit_names, 2);
    write_tmp(&t, "0,1\n5,6\n");
    FS_ASSERT_OK(read_file(t.path, s, NULL, 0, &r, &st, &diag));
    assert_int_equal(r.n, 1);
    unlink(t.path);
    fs_schema_free(s);
}

/* A schema file with learned levels (no "levels"), header matched by name. */
static void test_load_with_schema_file_learns_levels(void **state)
{
    fs_schema_file *sf = parse_schema_file(
        "{\"fields\": [{\"name\": \"bytes\", \"type\": \"numeric\"}, {\"name\": \"pkts\", "
        "\"type\": \"integer\"}, {\"name\": \"proto\", \"type\": \"categorical\"}]}");
    tmpfile_path t;
    fs_dataset *d = NULL;
    fs_dataset_opts o = { 0 };
    fs_diag diag = { "" };
    (void)state;
    write_tmp(&t, "proto,bytes,pkts,junk\nudp,870,2,q\ntcp,15444,33,r\nicmp,60,1,s\ntcp,1,1,t\n");
    o.path = t.path;
    o.schema_file = sf;
    FS_ASSERT_OK(fs_dataset_load(&o, &d, &diag));
    assert_int_equal(d->n_rows, 4);
    assert_int_equal(fs_schema_n_levels(d->schema, 2), 3);
    assert_string_equal(fs_schema_level_name(d->schema, 2, 0), "icmp");
    FS_ASSERT_NEAR(d->records[0 * 3 + 2], 2.0, 0.0); /* udp */
    FS_ASSERT_NEAR(d->records[1 * 3 + 2], 1.0, 0.0); /* tcp */
    FS_ASSERT_NEAR(d->records[1 * 3 + 0], 15444.0, 0.0);
    assert_string_equal(d->stats.unused_columns, "junk");

    /* the printed schema reads back as a schema file */
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    FS_ASSERT_OK(fs_dataset_print_schema(d, f));
    fclose(f);
    fs_schema_file *back = parse_schema_file(buf);
    assert_int_equal(back->header, 1);
    assert_int_equal(fs_schema_n_fields(back->features), 3);
    /* printed in the file's column order: proto comes first */
    int32_t proto = fs_schema_field_index(back->features, "proto", 5);
    assert_true(proto >= 0);
    assert_int_equal(fs_schema_n_levels(back->features, (size_t)proto), 3);
    assert_int_equal(back->roles[3], FS_COLUMN_IGNORE);
    fs_schema_file_free(back);
    fs_dataset_free(d);
    unlink(t.path);
    fs_schema_file_free(sf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_number_accepts_decimal_forms),
        cmocka_unit_test(test_parse_number_refuses_bad_cells),
        cmocka_unit_test(test_read_every_bad_spelling_in_every_column),
        cmocka_unit_test(test_read_wrong_number_of_cells),
        cmocka_unit_test(test_read_skip_counts_reasons_and_lines),
        cmocka_unit_test(test_schema_file_roles_and_features),
        cmocka_unit_test(test_schema_file_errors),
        cmocka_unit_test(test_read_headerless_with_schema),
        cmocka_unit_test(test_read_header_matched_by_name),
        cmocka_unit_test(test_read_quoted_cells),
        cmocka_unit_test(test_infer_types_and_transforms),
        cmocka_unit_test(test_infer_transform_rule),
        cmocka_unit_test(test_infer_first_nonempty_cell),
        cmocka_unit_test(test_load_header_only_and_max_rows),
        cmocka_unit_test(test_load_errors_name_columns),
        cmocka_unit_test(test_load_headerless_file_refused),
        cmocka_unit_test(test_read_headerless_blames_header),
        cmocka_unit_test(test_load_with_schema_file_learns_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
