/*
 * dataset_internal.h: what dataset.c and dataset_read.c share; not for other modules.
 */
#ifndef FS_DATASET_INTERNAL_H
#define FS_DATASET_INTERNAL_H

#include "dataset.h"

/* Write a sentence into diag (may be NULL) and return err. */
fs_err fs__dataset_diag(fs_diag *diag, fs_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether s (len bytes) is empty or only whitespace. */
int fs__dataset_blank(const char *s, size_t len);

/* The engine's rule for field and level names: 1..63 bytes, no control characters. */
int fs__dataset_name_ok(const char *s, size_t len);

/* A quoted, printable copy of a cell (len bytes) for messages, cut to fit buf (size >= 8). */
void fs__dataset_excerpt(const char *s, size_t len, char *buf, size_t size);

/* What the first row of a file read as a header looks like (fs__dataset_header_kind). */
typedef enum fs_header_kind {
    FS_HEADER_NAMES = 0, /* some cell is text, and no number appears twice: names */
    FS_HEADER_DIGITS,    /* every non-blank cell is a distinct run of digits ("2019,2020"):
                            taken as names, but worth a note */
    FS_HEADER_DATA       /* every non-blank cell is a number and one has a sign, point or
                            exponent ("119.323,2.033"), or a number appears twice ("0,tcp,0") */
} fs_header_kind;

/*
 * Classify the cells of a first row (n NUL-terminated texts) to catch a headerless file read
 * with its first data row as the header. Blank cells and NaN/infinity spellings count for
 * neither side; a row without any number is FS_HEADER_NAMES.
 */
fs_header_kind fs__dataset_header_kind(const char *const *cells, size_t n);

/* Whether more than half of the non-blank cells (n texts) are numbers: a hint, for a file
 * that already lacks a column, that its first row is data. */
int fs__dataset_mostly_numbers(const char *const *cells, size_t n);

/* The cells joined by commas, quoted and cut to fit buf (size >= 8), for messages. */
void fs__dataset_row_excerpt(const char *const *cells, size_t n, char *buf, size_t size);

/* Distinct values of a learned categorical column: ids in order of appearance. */
typedef struct fs_levels {
    char **names;
    size_t n;
    size_t cap;
    uint32_t *slots; /* open addressing, id + 1; 0 is free */
    size_t n_slots;
} fs_levels;

/*
 * The id of value (len bytes, a valid level name) in lv, added if new. Returns -1 when out
 * of memory, -2 past FS_DATASET_MAX_LEVELS (dataset_levels.c).
 */
long fs__levels_intern(fs_levels *lv, const char *value, size_t len);

/* Free lv's names and table and zero it; a zeroed lv is empty. */
void fs__levels_free(fs_levels *lv);

#endif /* FS_DATASET_INTERNAL_H */
