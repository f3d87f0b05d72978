/*
 * fs_csv.h: reading CSV text with libcsv, one record at a time, with the file's line numbers.
 *
 * (Named fs_csv.h because libcsv's own header is <csv.h>.)
 *
 * Quoting follows RFC 4180 as libcsv implements it in strict mode: a field may be quoted, a
 * quoted field may hold commas, quotes (doubled) and line breaks, and a stray quote is an
 * error. Spaces and tabs around an unquoted field are dropped, so a whitespace-only cell
 * reads as empty. Blank lines are skipped. Line breaks are LF, CRLF or a lone CR. A UTF-8
 * byte-order mark at the start is skipped.
 *
 * Memory is bounded: a cell holds at most FS_CSV_MAX_CELL_BYTES bytes, a record at most
 * FS_CSV_MAX_COLUMNS cells and FS_CSV_MAX_ROW_BYTES bytes; more is an error naming the line.
 */
#ifndef FS_CSV_H
#define FS_CSV_H

#include "flowscore.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FS_CSV_MAX_CELL_BYTES 65536
#define FS_CSV_MAX_COLUMNS    4096
#define FS_CSV_MAX_ROW_BYTES  (4 * 1024 * 1024)

/* One record, valid only during the callback that receives it. */
typedef struct fs_csv_row {
    int64_t line;             /* 1-based line of the file on which the record starts */
    size_t n_cells;           /* >= 1: blank lines are not records */
    const char *const *cells; /* n_cells cell texts, each NUL-terminated */
    const size_t *lens;       /* their lengths in bytes (a cell may hold a NUL byte) */
} fs_csv_row;

/* Receives each record in file order. Return 0 to go on, nonzero to stop reading. */
typedef int (*fs_csv_row_fn)(void *user, const fs_csv_row *row);

/*
 * Read the CSV file at path ("-" is standard input) and hand each record to fn.
 * Errors: FS_ERR_IO (open or read, naming the path and errno's text), FS_ERR_FORMAT (bad
 * quoting or a limit exceeded; diag starts with "line N: "), FS_ERR_NOMEM, FS_ERR_CANCELLED
 * when fn asked to stop (fn keeps its own reason). diag may be NULL.
 * Threads: reentrant; errno's text comes from strerror_r.
 */
fs_err fs_csv_read_file(const char *path, fs_csv_row_fn fn, void *user, fs_diag *diag);

/* The same over len bytes of memory (borrowed). Errors as fs_csv_read_file, without IO. */
fs_err fs_csv_read_buffer(const void *buf, size_t len, fs_csv_row_fn fn, void *user, fs_diag *diag);

/*
 * Write one cell to f, quoted when it holds a comma, quote, CR, LF, or leading or trailing
 * whitespace (libcsv's csv_fwrite), as-is otherwise. Returns 0, or -1 on a write error.
 */
int fs_csv_write_cell(FILE *f, const char *text, size_t len);

#endif /* FS_CSV_H */
