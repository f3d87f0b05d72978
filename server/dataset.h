/*
 * dataset.h: CSV files as records of doubles for the engine, with schema files and schema
 * inference.
 *
 * A record holds one double per feature field of a schema, in schema order: the number for
 * numeric and integer fields, the level index for categorical ones (fs_schema_level_index;
 * an unseen level is FS_LEVEL_UNKNOWN).
 *
 * Columns. A CSV file has a header row unless a schema file says "header": false, in which
 * case the schema's fields name the columns in order. With a header, fields are matched to
 * columns by name: a feature column the schema needs and the header lacks is an error naming
 * it; header columns that nothing uses are ignored and listed in the stats.
 *
 * Headerless files. A header row that looks like data is an error saying the file seems to
 * have no header (add one, or give a schema file with "header": false): with an inferred
 * schema when every non-blank cell is a number and one has a sign, point or exponent
 * ("119.323,2.033"), or when a number appears twice ("0,tcp,ftp_data,SF,491,0,0"); with a
 * schema, when a column it needs is missing and the header is all numbers or repeats one.
 * A header of distinct plain digits ("2019,2020", pandas' "0,1,2") is taken as names, and
 * with an inferred schema it is noted in the stats (numeric_header).
 *
 * Schema file (JSON; the engine parses the feature part with fs_schema_parse_json):
 *   {"header": false,
 *    "fields": [{"name": "duration", "type": "integer", "transform": "log1p"},
 *               {"name": "protocol_type", "type": "categorical"},
 *               {"name": "label", "type": "label"}, {"name": "difficulty", "type": "ignore"}]}
 * numeric | integer | categorical are features; label | ignore name columns that are not.
 *
 * Bad cells. A feature cell is bad when it is empty or whitespace-only, when a numeric field
 * holds text that is not a decimal number ("tcp", "0x10", " 12" inside quotes: never read as
 * 0), a NaN or infinity spelling (NaN, nan, -nan, inf, +Infinity, ...), or a number beyond
 * the double range (1e999); a record with the wrong number of cells is bad too. A bad record
 * is an error naming the file's line (1-based, the header is line 1) and the column, or, with
 * skip_bad_rows, is skipped and counted by reason. Sentinels such as -1 are ordinary numbers
 * and pass through.
 */
#ifndef FS_DATASET_H
#define FS_DATASET_H

#include "flowscore.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What is wrong with a cell or record; FS_CELL_OK for a good one. */
typedef enum fs_cell_status {
    FS_CELL_OK = 0,
    FS_CELL_NOT_NUMBER, /* text that is not a decimal number */
    FS_CELL_NONFINITE,  /* a NaN or infinity spelling */
    FS_CELL_OVERFLOW,   /* a number beyond the double range */
    FS_CELL_EMPTY,      /* empty or whitespace-only */
    FS_CELL_N_CELLS,    /* the record has the wrong number of cells */
    FS_CELL_BAD_LEVEL,  /* a categorical value that cannot be a level name (over 63 bytes) */
    FS_CELL__COUNT
} fs_cell_status;

/* A short phrase for a status ("non-finite value"). Static storage, never NULL. */
const char *fs_cell_status_text(fs_cell_status status);

/*
 * Parse a whole cell (len bytes, no NUL needed) as a decimal number: optional sign, digits
 * with an optional point, optional exponent ("1.51737e+07"). Returns FS_CELL_OK and sets
 * *out, or the reason it is not a finite number. Tiny numbers that underflow become 0 or a
 * subnormal, as strtod gives them. Uses the C locale's decimal point (the CLI never calls
 * setlocale).
 */
fs_cell_status fs_dataset_parse_number(const char *s, size_t len, double *out);

/* ------------------------------------------------------------------------- schema files */

typedef enum fs_column_role {
    FS_COLUMN_FEATURE = 0,
    FS_COLUMN_LABEL,
    FS_COLUMN_IGNORE
} fs_column_role;

typedef struct fs_schema_file {
    int header;       /* the CSV has a header row (default 1) */
    size_t n_columns; /* every field of the file, features or not, in order */
    char (*names)[FS_NAME_MAX];
    fs_column_role *roles;
    fs_schema *features; /* the feature fields (owned) */
} fs_schema_file;

/*
 * Parse a schema file's text (len bytes, borrowed). Errors: FS_ERR_FORMAT naming the byte
 * offset of a JSON error, the field index of a bad entry, or a duplicate name; the engine's
 * own schema errors; FS_ERR_NOMEM. *out is set only on FS_OK; free with fs_schema_file_free.
 */
fs_err fs_schema_file_parse(const char *json, size_t len, fs_schema_file **out, fs_diag *diag);

/* The same from a file (at most 1 MiB). Errors also FS_ERR_IO. */
fs_err fs_schema_file_load(const char *path, fs_schema_file **out, fs_diag *diag);

void fs_schema_file_free(fs_schema_file *sf);

/* ------------------------------------------------------------------------- reading */

typedef struct fs_dataset_opts {
    const char *path;                  /* the CSV file; "-" is standard input */
    const fs_schema_file *schema_file; /* column layout; NULL: the header names the columns */
    const char *label_col;             /* NULL: no label column */
    const char *normal_value;          /* with label_col: the label of normal rows */
    int normal_only;                   /* keep only rows whose label is normal_value */
    const char *ignore_cols;           /* comma-separated columns that are not features
                                          (inference only), or NULL */
    int skip_bad_rows;                 /* skip and count bad rows instead of failing */
    int64_t max_rows;                  /* stop after this many kept rows; 0: no limit */
} fs_dataset_opts;

#define FS_DATASET_BAD_EXAMPLES 10
#define FS_DATASET_MAX_LEVELS   4096 /* distinct values of one learned categorical */

typedef struct fs_bad_row {
    int64_t line;
    fs_cell_status status;
    char column[FS_NAME_MAX]; /* "" for a wrong number of cells */
} fs_bad_row;

/* What reading found. */
typedef struct fs_dataset_stats {
    int64_t records;     /* data records read, the header excluded, bad ones included */
    int64_t used;        /* records kept (handed on) */
    int64_t other_label; /* good records left out: label is not the normal value */
    int64_t bad;         /* bad records skipped (skip_bad_rows) */
    int64_t bad_by_status[FS_CELL__COUNT];
    size_t n_examples; /* the first FS_DATASET_BAD_EXAMPLES bad records */
    fs_bad_row examples[FS_DATASET_BAD_EXAMPLES];
    int truncated;            /* reading stopped at max_rows */
    char unused_columns[512]; /* header columns nothing uses, comma-separated ("" if none) */
    char numeric_header[40];  /* inferred schema: the header row, quoted, when every name in
                                 it is a plain number ("'2019,2020'"), worth a note; else "" */
} fs_dataset_stats;

/*
 * One line about the skipped rows, e.g. "2 rows skipped: 1 non-finite value, 1 empty cell;
 * line 2 (flow_bytes_s: non-finite value), line 3 (flow_bytes_s: empty cell)". "" if none.
 */
void fs_dataset_format_bad(const fs_dataset_stats *stats, char *buf, size_t len);

/*
 * The same facts after a label that already says "skipped bad rows": the count, the reasons
 * in parentheses, then the first lines, e.g. "2 (1 non-finite value, 1 empty cell); line 2
 * (flow_bytes_s: non-finite value), line 3 (flow_bytes_s: empty cell)". "" if none.
 */
void fs_dataset_format_bad_detail(const fs_dataset_stats *stats, char *buf, size_t len);

/* A kept row handed to a fs_dataset_row_fn; valid during the call only. */
typedef struct fs_dataset_row {
    int64_t index;        /* 0-based index of the record among the file's data records */
    int64_t line;         /* its line in the file */
    const double *record; /* n_fields of the features schema */
    const char *label;    /* the label cell (NUL-terminated), or NULL without label_col */
    size_t label_len;
    int is_normal; /* label equals normal_value (1 when there is no label column) */
} fs_dataset_row;

/* Return 0 to go on, nonzero to stop (fs_dataset_read then returns FS_ERR_CANCELLED). */
typedef int (*fs_dataset_row_fn)(void *user, const fs_dataset_row *row);

/*
 * Stream the rows of o->path as records of features (borrowed; typically a model's schema,
 * whose categorical levels are fixed) to fn, in file order. features' fields are matched by
 * name to the columns. stats (caller's) is filled in, also on error.
 * Errors: FS_ERR_IO, FS_ERR_FORMAT (bad CSV, a missing column, a bad cell when not skipping),
 * FS_ERR_NUMERIC (a non-finite or overflowing cell when not skipping), FS_ERR_NOMEM,
 * FS_ERR_CANCELLED (fn stopped). diag says what and where: "FILE line N, column C: ...".
 */
fs_err fs_dataset_read(const fs_dataset_opts *o, const fs_schema *features, fs_dataset_row_fn fn,
                       void *user, fs_dataset_stats *stats, fs_diag *diag);

/* A whole training set in memory. */
typedef struct fs_dataset {
    fs_schema *schema; /* the feature fields, levels set (owned) */
    size_t n_fields;
    size_t n_rows;
    double *records; /* n_rows x n_fields, row-major */
    fs_dataset_stats stats;
    int header;       /* the file had a header row */
    size_t n_columns; /* the file's columns, for fs_dataset_print_schema */
    char **column_names;
    fs_column_role *column_roles;
} fs_dataset;

/*
 * Read the whole file for training. The features come from o->schema_file or, without one,
 * are inferred: every column but the label and ignore_cols is a feature; a column is numeric
 * when its first non-empty cell parses as a number (NaN and infinity spellings included,
 * which are then bad cells), else categorical; a numeric column whose kept values are all
 * integers is "integer"; the transform is fs_dataset_infer_transform's. Categorical fields
 * without levels get the sorted distinct values of the kept rows.
 * Errors as fs_dataset_read, and FS_ERR_INVALID for a categorical with more than
 * FS_DATASET_MAX_LEVELS values. *out is set only on FS_OK; free with fs_dataset_free.
 */
fs_err fs_dataset_load(const fs_dataset_opts *o, fs_dataset **out, fs_diag *diag);

void fs_dataset_free(fs_dataset *d);

/*
 * The transform inferred for a numeric or integer column from its kept values: log1p for a
 * non-negative integer column whose maximum exceeds 1 (the NSL-KDD recipe's counts), and for
 * a non-negative real column spanning several orders of magnitude, max > 1e3 x (median +
 * smallest positive value); none otherwise. min_positive is 0 when no value is positive.
 */
fs_transform fs_dataset_infer_transform(fs_field_type type, double min, double max, double median,
                                        double min_positive);

/*
 * Write d's schema in the schema-file form (header flag, every column in file order, the
 * features with types, transforms and levels), pretty-printed, to out. It can be given back
 * as --schema. Errors: FS_ERR_NOMEM, FS_ERR_IO on a write error.
 */
fs_err fs_dataset_print_schema(const fs_dataset *d, FILE *out);

#endif /* FS_DATASET_H */
