/* csv.c: CSV records through libcsv, with line numbers and bounded memory (fs_csv.h). */
#include "fs_csv.h"

#include <csv.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

#define FS_CSV_READ_BYTES 65536
#define FS_CSV_BLOCK      4096

typedef struct fs_csv_reader {
    struct csv_parser parser;
    fs_csv_row_fn fn;
    void *user;
    fs_diag *diag;
    fs_err err;          /* first error; once set, callbacks do nothing */
    int64_t line;        /* physical line of the bytes being fed */
    int64_t record_line; /* line on which the next record starts */
    char *arena;         /* the current record's cells, NUL-terminated, back to back */
    size_t arena_len;
    size_t arena_cap;
    size_t *offsets; /* start of each cell in arena */
    size_t *lens;
    const char **cells;
    size_t n_cells;
    size_t cells_cap;
} fs_csv_reader;

static fs_err csv_diag(fs_diag *diag, fs_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fs_err csv_diag(fs_diag *diag, fs_err err, const char *fmt, ...)
{
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}

/*
 * libcsv grows its cell buffer through this function; refusing past the cap is what bounds
 * the memory one endless quoted cell can take (csv_parse then stops with CSV_ENOMEM).
 */
static void *csv_capped_realloc(void *ptr, size_t bytes)
{
    if (bytes > FS_CSV_MAX_CELL_BYTES) {
        return NULL;
    }
    return realloc(ptr, bytes);
}

static int reader_grow_cells(fs_csv_reader *r)
{
    size_t cap = r->cells_cap == 0 ? 64 : r->cells_cap * 2;
    size_t *offsets = realloc(r->offsets, cap * sizeof *offsets);
    if (offsets == NULL) {
        return -1;
    }
    r->offsets = offsets;
    size_t *lens = realloc(r->lens, cap * sizeof *lens);
    if (lens == NULL) {
        return -1;
    }
    r->lens = lens;
    const char **cells = realloc(r->cells, cap * sizeof *cells);
    if (cells == NULL) {
        return -1;
    }
    r->cells = cells;
    r->cells_cap = cap;
    return 0;
}

/* libcsv's end-of-field callback: copy the cell into the record's arena. */
static void on_cell(void *field, size_t len, void *data)
{
    fs_csv_reader *r = data;
    if (r->err != FS_OK) {
        return;
    }
    if (r->n_cells == FS_CSV_MAX_COLUMNS) {
        r->err = csv_diag(r->diag, FS_ERR_FORMAT, "line %lld: more than %d cells in a record",
                          (long long)r->line, FS_CSV_MAX_COLUMNS);
        return;
    }
    if (len + 1 > FS_CSV_MAX_ROW_BYTES - r->arena_len) {
        r->err = csv_diag(r->diag, FS_ERR_FORMAT, "line %lld: a record longer than %d bytes",
                          (long long)r->line, FS_CSV_MAX_ROW_BYTES);
        return;
    }
    if (r->n_cells == r->cells_cap && reader_grow_cells(r) != 0) {
        r->err = csv_diag(r->diag, FS_ERR_NOMEM, "out of memory reading a CSV record");
        return;
    }
    if (r->arena_len + len + 1 > r->arena_cap) {
        size_t cap = r->arena_cap == 0 ? 1024 : r->arena_cap;
        while (cap < r->arena_len + len + 1) {
            cap *= 2;
        }
        char *arena = realloc(r->arena, cap);
        if (arena == NULL) {
            r->err = csv_diag(r->diag, FS_ERR_NOMEM, "out of memory reading a CSV record");
            return;
        }
        r->arena = arena;
        r->arena_cap = cap;
    }
    if (len > 0) {
        memcpy(r->arena + r->arena_len, field, len);
    }
    r->arena[r->arena_len + len] = '\0';
    r->offsets[r->n_cells] = r->arena_len;
    r->lens[r->n_cells] = len;
    r->n_cells++;
    r->arena_len += len + 1;
}

/* libcsv's end-of-record callback; c is the terminator, or -1 at the end of the input. */
static void on_record(int c, void *data)
{
    fs_csv_reader *r = data;
    int64_t line = r->record_line;
    size_t n_cells = r->n_cells;
    /* The next record starts after this terminator. A CRLF pair reports an empty record for
     * its LF (CSV_REPALL_NL), which computes the same line again. */
    r->record_line = (c == '\n' || c == '\r') ? r->line + 1 : r->line;
    r->n_cells = 0;
    r->arena_len = 0;
    if (r->err != FS_OK || n_cells == 0) {
        return; /* a blank line is not a record */
    }
    for (size_t i = 0; i < n_cells; i++) {
        r->cells[i] = r->arena + r->offsets[i];
    }
    fs_csv_row row = { line, n_cells, r->cells, r->lens };
    if (r->fn(r->user, &row) != 0) {
        r->err = FS_ERR_CANCELLED;
    }
}

static fs_err reader_init(fs_csv_reader *r, fs_csv_row_fn fn, void *user, fs_diag *diag)
{
    memset(r, 0, sizeof *r);
    r->fn = fn;
    r->user = user;
    r->diag = diag;
    r->line = 1;
    r->record_line = 1;
    if (csv_init(&r->parser, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0) {
        return csv_diag(diag, FS_ERR_NOMEM, "out of memory starting the CSV parser");
    }
    csv_set_realloc_func(&r->parser, csv_capped_realloc);
    csv_set_blk_size(&r->parser, FS_CSV_BLOCK);
    return FS_OK;
}

static void reader_deinit(fs_csv_reader *r)
{
    csv_free(&r->parser);
    free(r->arena);
    free(r->offsets);
    free(r->lens);
    free(r->cells);
}

/* Hand len bytes to libcsv and turn its status into an fs_err. */
static fs_err reader_feed(fs_csv_reader *r, const char *s, size_t len)
{
    size_t used = csv_parse(&r->parser, s, len, on_cell, on_record, r);
    if (r->err != FS_OK) {
        return r->err;
    }
    if (used == len) {
        return FS_OK;
    }
    switch (csv_error(&r->parser)) {
    case CSV_EPARSE:
        r->err = csv_diag(r->diag, FS_ERR_FORMAT,
                          "line %lld: malformed quoting (a stray or unescaped '\"')",
                          (long long)r->line);
        break;
    case CSV_ENOMEM:
        if (csv_get_buffer_size(&r->parser) + FS_CSV_BLOCK > FS_CSV_MAX_CELL_BYTES) {
            r->err = csv_diag(r->diag, FS_ERR_FORMAT, "line %lld: a cell longer than %d bytes",
                              (long long)r->line, FS_CSV_MAX_CELL_BYTES);
        } else {
            r->err = csv_diag(r->diag, FS_ERR_NOMEM, "out of memory reading a CSV cell");
        }
        break;
    default:
        r->err = csv_diag(r->diag, FS_ERR_FORMAT, "line %lld: %s", (long long)r->line,
                          csv_strerror(csv_error(&r->parser)));
        break;
    }
    return r->err;
}

/*
 * Feed a block of input in pieces that end at line breaks, so that every callback knows the
 * line it is on. libcsv does all the parsing; this only counts lines. *pending_cr is set when
 * the block ended in CR, whose line ends only if no LF follows.
 */
static fs_err reader_feed_block(fs_csv_reader *r, const char *s, size_t len, int *pending_cr)
{
    size_t pos = 0;
    while (pos < len) {
        if (*pending_cr) {
            *pending_cr = 0;
            if (s[pos] != '\n') {
                r->line++;
            }
        }
        size_t end = pos;
        while (end < len && s[end] != '\n' && s[end] != '\r') {
            end++;
        }
        if (end == len) {
            return reader_feed(r, s + pos, len - pos);
        }
        fs_err err = reader_feed(r, s + pos, end - pos + 1);
        if (err != FS_OK) {
            return err;
        }
        if (s[end] == '\n') {
            r->line++;
        } else {
            *pending_cr = 1;
        }
        pos = end + 1;
    }
    return FS_OK;
}

static fs_err reader_finish(fs_csv_reader *r)
{
    if (r->err != FS_OK) {
        return r->err;
    }
    if (csv_fini(&r->parser, on_cell, on_record, r) != 0) {
        return csv_diag(r->diag, FS_ERR_FORMAT, "line %lld: a quoted cell is not closed",
                        (long long)r->line);
    }
    return r->err;
}

fs_err fs_csv_read_buffer(const void *buf, size_t len, fs_csv_row_fn fn, void *user, fs_diag *diag)
{
    fs_csv_reader r;
    const char *s = buf;
    int pending_cr = 0;
    fs_err err = reader_init(&r, fn, user, diag);
    if (err != FS_OK) {
        return err;
    }
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        len -= 3;
    }
    err = reader_feed_block(&r, s, len, &pending_cr);
    if (err == FS_OK) {
        err = reader_finish(&r);
    }
    reader_deinit(&r);
    return err;
}

fs_err fs_csv_read_file(const char *path, fs_csv_row_fn fn, void *user, fs_diag *diag)
{
    fs_csv_reader r;
    FILE *f = NULL;
    char *buf = NULL;
    int pending_cr = 0;
    int first = 1;
    char ebuf[128];
    fs_err err = reader_init(&r, fn, user, diag);
    if (err != FS_OK) {
        return err;
    }
    buf = malloc(FS_CSV_READ_BYTES);
    if (buf == NULL) {
        err = csv_diag(diag, FS_ERR_NOMEM, "out of memory reading %s", path);
        goto out;
    }
    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        err = csv_diag(diag, FS_ERR_IO, "cannot open %s: %s", path,
                       fs_cli_errno_str(errno, ebuf, sizeof ebuf));
        goto out;
    }
    for (;;) {
        size_t n = fread(buf, 1, FS_CSV_READ_BYTES, f);
        const char *s = buf;
        if (n == 0) {
            if (ferror(f)) {
                err = csv_diag(diag, FS_ERR_IO, "cannot read %s: %s", path,
                               fs_cli_errno_str(errno, ebuf, sizeof ebuf));
                goto out;
            }
            break;
        }
        if (first && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            n -= 3;
        }
        first = 0;
        err = reader_feed_block(&r, s, n, &pending_cr);
        if (err != FS_OK) {
            goto out;
        }
    }
    err = reader_finish(&r);
out:
    if (f != NULL && f != stdin) {
        fclose(f);
    }
    free(buf);
    reader_deinit(&r);
    return err;
}

int fs_csv_write_cell(FILE *f, const char *text, size_t len)
{
    int quote = len > 0 && (text[0] == ' ' || text[0] == '\t' || text[len - 1] == ' ' ||
                            text[len - 1] == '\t');
    for (size_t i = 0; i < len && !quote; i++) {
        char c = text[i];
        quote = c == ',' || c == '"' || c == '\r' || c == '\n';
    }
    if (quote) {
        return csv_fwrite(f, text, len) == 0 ? 0 : -1;
    }
    return len == 0 || fwrite(text, 1, len, f) == len ? 0 : -1;
}
