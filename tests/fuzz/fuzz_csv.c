/*
 * fuzz_csv.c: the CSV reader and the cell rules must take any byte string without crashing,
 * reading out of bounds or breaking their promises: cells NUL-terminated at their length,
 * line numbers from 1 and never going back, at most FS_CSV_MAX_COLUMNS cells, and every cell
 * that parses as a number finite (never NaN, inf, or a value from text like "tcp").
 */
#include "dataset.h"
#include "fs_csv.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_state {
    int64_t last_line;
    size_t rows;
} fuzz_state;

static int check_row(void *user, const fs_csv_row *row)
{
    fuzz_state *st = user;
    if (row->line < 1 || row->line < st->last_line || row->n_cells == 0 ||
        row->n_cells > FS_CSV_MAX_COLUMNS) {
        abort();
    }
    st->last_line = row->line;
    for (size_t i = 0; i < row->n_cells; i++) {
        double v = 0.0;
        if (row->lens[i] > FS_CSV_MAX_CELL_BYTES || row->cells[i][row->lens[i]] != '\0') {
            abort();
        }
        if (fs_dataset_parse_number(row->cells[i], row->lens[i], &v) == FS_CELL_OK &&
            !isfinite(v)) {
            abort();
        }
    }
    st->rows++;
    return st->rows > 100000; /* stopping early must be clean too */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_state st = { 0, 0 };
    (void)fs_csv_read_buffer(data, size, check_row, &st, NULL);
    return 0;
}
