/*
 * dataset_read.c: the CSV-to-records reader behind fs_dataset_read and fs_dataset_load, with
 * schema inference and learned categorical levels (dataset.h).
 */
#include "dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "fs_csv.h"

typedef enum ds_kind {
    DS_UNUSED = 0,  /* not a feature (label, ignored, extra) */
    DS_NUMBER,      /* numeric or integer field */
    DS_LEVEL_FIXED, /* categorical with known levels: fs_schema_level_index */
    DS_LEVEL_LEARN, /* categorical whose levels are collected from the kept rows */
    DS_UNDECIDED    /* inferred column whose first non-empty cell has not come yet */
} ds_kind;

typedef struct ds_column {
    char *name;
    ds_kind kind;
    int32_t field; /* index in the record, or -1 */
    fs_column_role role;
    fs_levels levels;
} ds_column;

typedef struct ds_reader {
    const fs_dataset_opts *o;
    const fs_schema *lookup; /* features with their levels (read mode, or a schema file) */
    int load;                /* load mode: keep rows, learn levels, infer types */
    int need_header;
    fs_header_kind header_kind; /* of the header row; FS_HEADER_NAMES without one */
    int header_numbers;         /* most of the header row's cells are numbers */
    char header_excerpt[40];    /* the header row, for messages */
    size_t n_columns;
    ds_column *cols;
    size_t n_fields;
    int32_t label_col;
    size_t n_undecided;
    double *record;
    fs_dataset_row_fn fn;
    void *user;
    fs_dataset_stats *stats;
    fs_diag *diag;
    fs_err err;
    int stopped_at_max;
    double *rows; /* load mode: n_rows x n_fields */
    size_t n_rows;
    size_t rows_cap;
} ds_reader;

/* ------------------------------------------------------------------------- levels */

typedef struct ds_level_ref {
    const char *name;
    size_t id;
} ds_level_ref;

static int cmp_level_ref(const void *a, const void *b)
{
    return strcmp(((const ds_level_ref *)a)->name, ((const ds_level_ref *)b)->name);
}

/*
 * Sort a learned column's levels by name (byte order), rewrite its ids in the kept rows as
 * sorted indices, and hand the sorted names to the schema.
 */
static fs_err levels_finish(ds_reader *r, ds_column *col, fs_schema *schema, int add)
{
    fs_levels *lv = &col->levels;
    size_t n = lv->n;
    fs_err err = FS_OK;
    ds_level_ref *refs = calloc(n == 0 ? 1 : n, sizeof *refs);
    size_t *rank = calloc(n == 0 ? 1 : n, sizeof *rank);
    const char **names = calloc(n == 0 ? 1 : n, sizeof *names);
    if (refs == NULL || rank == NULL || names == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        refs[i].name = lv->names[i];
        refs[i].id = i;
    }
    qsort(refs, n, sizeof *refs, cmp_level_ref);
    for (size_t k = 0; k < n; k++) {
        rank[refs[k].id] = k;
        names[k] = refs[k].name;
    }
    for (size_t row = 0; row < r->n_rows; row++) {
        double *v = &r->rows[row * r->n_fields + (size_t)col->field];
        *v = (double)rank[(size_t)*v];
    }
    if (add) {
        err = fs_schema_add_categorical(schema, col->name, names, n);
    } else {
        err = fs_schema_set_levels(schema, (size_t)col->field, names, n);
    }
    if (err != FS_OK && err != FS_ERR_NOMEM) {
        err = fs__dataset_diag(r->diag, err, "column %s: the engine refused its %zu levels",
                               col->name, n);
    }
out:
    free(refs);
    free(rank);
    free(names);
    return err;
}

/* ------------------------------------------------------------------------- columns */

static void reader_free(ds_reader *r)
{
    for (size_t c = 0; c < r->n_columns; c++) {
        free(r->cols[c].name);
        fs__levels_free(&r->cols[c].levels);
    }
    free(r->cols);
    free(r->record);
    free(r->rows);
}

/* Index of the column called name, or -1; -2 when two columns have that name. */
static long find_column(const ds_reader *r, const char *name)
{
    long found = -1;
    for (size_t c = 0; c < r->n_columns; c++) {
        if (strcmp(r->cols[c].name, name) == 0) {
            if (found >= 0) {
                return -2;
            }
            found = (long)c;
        }
    }
    return found;
}

/*
 * The first row was read as a header but looks like data: say so, rather than train on
 * fields named "119.323" or report "the column 0 appears twice" (a new user's headerless
 * files).
 */
static fs_err headerless(const ds_reader *r)
{
    return fs__dataset_diag(r->diag, FS_ERR_FORMAT,
                            "%s seems to have no header row: its first row looks like data, "
                            "not column names; add a header row naming the columns, or give "
                            "--schema a file with \"header\": false (first row: %s)",
                            r->o->path, r->header_excerpt);
}

/* Whether the header names any feature field of the schema (always 0 without one). */
static int header_names_a_field(const ds_reader *r)
{
    size_t n = r->lookup != NULL ? fs_schema_n_fields(r->lookup) : 0;
    for (size_t f = 0; f < n; f++) {
        if (find_column(r, fs_schema_field_name(r->lookup, f)) != -1) {
            return 1;
        }
    }
    return 0;
}

/*
 * A column is missing or doubled: is the header to blame? Yes when it is all numbers or
 * repeats one, or when it is mostly numbers and names none of the schema's fields (a data row
 * of mixed numbers and text, "1200,10,0.5,tcp").
 */
static int header_is_data(const ds_reader *r)
{
    return r->header_kind != FS_HEADER_NAMES || (r->header_numbers && !header_names_a_field(r));
}

static fs_err column_lookup(ds_reader *r, const char *name, const char *what, long *out)
{
    long c = find_column(r, name);
    if (c < 0 && header_is_data(r)) {
        return headerless(r); /* "no column named duration" would hide the cause */
    }
    if (c == -2) {
        return fs__dataset_diag(r->diag, FS_ERR_FORMAT, "%s: the column %s appears twice",
                                r->o->path, name);
    }
    if (c < 0) {
        return fs__dataset_diag(r->diag, FS_ERR_FORMAT, "%s: no column named %s (%s)", r->o->path,
                                name, what);
    }
    *out = c;
    return FS_OK;
}

/* Whether name is one of the comma-separated names in list. */
static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    while (list != NULL && *list != '\0') {
        const char *comma = strchr(list, ',');
        size_t len = comma != NULL ? (size_t)(comma - list) : strlen(list);
        if (len == n && memcmp(list, name, n) == 0) {
            return 1;
        }
        list = comma != NULL ? comma + 1 : NULL;
    }
    return 0;
}

/* Features fixed by a schema (the model's, or a schema file's): match them by name. */
static fs_err setup_fixed_features(ds_reader *r)
{
    size_t n = fs_schema_n_fields(r->lookup);
    for (size_t f = 0; f < n; f++) {
        const char *name = fs_schema_field_name(r->lookup, f);
        long c;
        fs_err err = column_lookup(r, name, "a feature field", &c);
        if (err != FS_OK) {
            return err;
        }
        ds_column *col = &r->cols[c];
        col->field = (int32_t)f;
        col->role = FS_COLUMN_FEATURE;
        if (fs_schema_field_type(r->lookup, f) != FS_FIELD_CATEGORICAL) {
            col->kind = DS_NUMBER;
        } else if (r->load && fs_schema_n_levels(r->lookup, f) == 0) {
            col->kind = DS_LEVEL_LEARN;
        } else {
            col->kind = DS_LEVEL_FIXED;
        }
    }
    r->n_fields = n;
    return FS_OK;
}

/* No schema: every column but the label and the ignored ones is a feature, type to come. */
static fs_err setup_inferred_features(ds_reader *r)
{
    const char *ignore = r->o->ignore_cols;
    while (ignore != NULL && *ignore != '\0') {
        const char *comma = strchr(ignore, ',');
        size_t len = comma != NULL ? (size_t)(comma - ignore) : strlen(ignore);
        char name[FS_NAME_MAX];
        long c;
        if (len == 0 || len >= sizeof name) {
            return fs__dataset_diag(r->diag, FS_ERR_INVALID, "--ignore-cols: bad column name");
        }
        memcpy(name, ignore, len);
        name[len] = '\0';
        fs_err err = column_lookup(r, name, "named by --ignore-cols", &c);
        if (err != FS_OK) {
            return err;
        }
        r->cols[c].role = FS_COLUMN_IGNORE;
        ignore = comma != NULL ? comma + 1 : NULL;
    }
    for (size_t c = 0; c < r->n_columns; c++) {
        ds_column *col = &r->cols[c];
        if ((long)c == r->label_col || col->role == FS_COLUMN_IGNORE) {
            continue;
        }
        if (!fs__dataset_name_ok(col->name, strlen(col->name))) {
            return fs__dataset_diag(r->diag, FS_ERR_FORMAT,
                                    "%s: header column %zu is not a valid field name (1..63 "
                                    "bytes, no control characters)",
                                    r->o->path, c + 1);
        }
        if (find_column(r, col->name) == -2) {
            return fs__dataset_diag(r->diag, FS_ERR_FORMAT, "%s: the column %s appears twice",
                                    r->o->path, col->name);
        }
        col->role = FS_COLUMN_FEATURE;
        col->kind = DS_UNDECIDED;
        col->field = (int32_t)r->n_fields++;
        r->n_undecided++;
    }
    if (r->n_fields == 0) {
        return fs__dataset_diag(r->diag, FS_ERR_FORMAT, "%s: no feature columns", r->o->path);
    }
    return FS_OK;
}

/* List the header columns nothing uses, for the caller's note. */
static void note_unused(ds_reader *r)
{
    const fs_schema_file *sf = r->o->schema_file;
    char *buf = r->stats->unused_columns;
    size_t len = sizeof r->stats->unused_columns, used = strlen(buf);
    for (size_t c = 0; c < r->n_columns; c++) {
        const ds_column *col = &r->cols[c];
        int named = 0;
        if (col->kind != DS_UNUSED || (long)c == r->label_col ||
            in_list(r->o->ignore_cols, col->name)) {
            continue;
        }
        for (size_t i = 0; sf != NULL && i < sf->n_columns && !named; i++) {
            named = strcmp(sf->names[i], col->name) == 0;
        }
        if (named) {
            continue; /* the schema file calls it label or ignore */
        }
        int k = snprintf(buf + used, len - used, "%s%s", used > 0 ? "," : "", col->name);
        if (k < 0 || (size_t)k >= len - used) {
            if (len > 4) {
                memcpy(buf + len - 4, "...", 4);
            }
            return;
        }
        used += (size_t)k;
    }
}

/*
 * Check a header row (n cells) for data: with an inferred schema, a row that is surely data
 * is an error, and one of plain digits is noted in the stats. With a schema, column_lookup
 * blames a missing column on the header when it looks like data.
 */
static fs_err check_header(ds_reader *r, const char *const *names, size_t n)
{
    r->header_kind = fs__dataset_header_kind(names, n);
    r->header_numbers = fs__dataset_mostly_numbers(names, n);
    fs__dataset_row_excerpt(names, n, r->header_excerpt, sizeof r->header_excerpt);
    if (r->lookup != NULL) {
        return FS_OK;
    }
    if (r->header_kind == FS_HEADER_DATA) {
        return headerless(r);
    }
    if (r->header_kind == FS_HEADER_DIGITS) {
        snprintf(r->stats->numeric_header, sizeof r->stats->numeric_header, "%s",
                 r->header_excerpt);
    }
    return FS_OK;
}

/* Lay out the columns from the header row, or (from_header 0) from a headerless schema file. */
static fs_err reader_setup(ds_reader *r, const char *const *names, size_t n, int from_header)
{
    const fs_schema_file *sf = r->o->schema_file;
    fs_err err;
    r->cols = calloc(n, sizeof *r->cols);
    if (r->cols == NULL) {
        return FS_ERR_NOMEM;
    }
    r->n_columns = n;
    if (from_header) {
        err = check_header(r, names, n);
        if (err != FS_OK) {
            return err;
        }
    }
    for (size_t c = 0; c < n; c++) {
        r->cols[c].field = -1;
        r->cols[c].role = FS_COLUMN_FEATURE; /* tentative: settled below */
        r->cols[c].name = strdup(names[c]);
        if (r->cols[c].name == NULL) {
            return FS_ERR_NOMEM;
        }
        for (size_t i = 0; sf != NULL && i < sf->n_columns; i++) {
            if (strcmp(sf->names[i], names[c]) == 0) {
                r->cols[c].role = sf->roles[i];
            }
        }
    }
    r->label_col = -1;
    if (r->o->label_col != NULL) {
        long c;
        err = column_lookup(r, r->o->label_col, "named by --label-col", &c);
        if (err != FS_OK) {
            return err;
        }
        r->label_col = (int32_t)c;
    }
    err = r->lookup != NULL ? setup_fixed_features(r) : setup_inferred_features(r);
    if (err != FS_OK) {
        return err;
    }
    if (r->label_col >= 0 && r->cols[r->label_col].field >= 0) {
        return fs__dataset_diag(r->diag, FS_ERR_INVALID,
                                "--label-col %s names a feature column, not a label",
                                r->o->label_col);
    }
    if (r->label_col >= 0) {
        r->cols[r->label_col].role = FS_COLUMN_LABEL;
    }
    for (size_t c = 0; c < n; c++) {
        if (r->cols[c].field < 0 && r->cols[c].role == FS_COLUMN_FEATURE) {
            r->cols[c].role = FS_COLUMN_IGNORE;
        }
    }
    r->record = calloc(r->n_fields, sizeof *r->record);
    if (r->record == NULL) {
        return FS_ERR_NOMEM;
    }
    note_unused(r);
    return FS_OK;
}

/* ------------------------------------------------------------------------- rows */

/* A bad row: an error naming line and column, or a counted skip. Returns the csv fn's stop. */
static int reader_bad(ds_reader *r, const fs_csv_row *row, fs_cell_status status, long c)
{
    fs_dataset_stats *st = r->stats;
    if (!r->o->skip_bad_rows) {
        fs_err err = status == FS_CELL_NONFINITE || status == FS_CELL_OVERFLOW ? FS_ERR_NUMERIC
                                                                               : FS_ERR_FORMAT;
        if (status == FS_CELL_N_CELLS) {
            r->err = fs__dataset_diag(r->diag, err, "%s line %lld: %zu cells, expected %zu",
                                      r->o->path, (long long)row->line, row->n_cells, r->n_columns);
        } else if (status == FS_CELL_EMPTY) {
            r->err = fs__dataset_diag(r->diag, err, "%s line %lld, column %s: empty cell",
                                      r->o->path, (long long)row->line, r->cols[c].name);
        } else {
            char excerpt[48];
            fs__dataset_excerpt(row->cells[c], row->lens[c], excerpt, sizeof excerpt);
            r->err = fs__dataset_diag(r->diag, err, "%s line %lld, column %s: %s %s", r->o->path,
                                      (long long)row->line, r->cols[c].name,
                                      fs_cell_status_text(status), excerpt);
        }
        return 1;
    }
    st->bad++;
    st->bad_by_status[status]++;
    if (st->n_examples < FS_DATASET_BAD_EXAMPLES) {
        fs_bad_row *b = &st->examples[st->n_examples++];
        b->line = row->line;
        b->status = status;
        b->column[0] = '\0';
        if (c >= 0) {
            snprintf(b->column, sizeof b->column, "%s", r->cols[c].name);
        }
    }
    return 0;
}

/* Inferred columns take their type from their first non-empty cell, in any row. */
static void reader_decide(ds_reader *r, const fs_csv_row *row)
{
    for (size_t c = 0; c < r->n_columns; c++) {
        ds_column *col = &r->cols[c];
        double v;
        if (col->kind != DS_UNDECIDED || fs__dataset_blank(row->cells[c], row->lens[c])) {
            continue;
        }
        fs_cell_status st = fs_dataset_parse_number(row->cells[c], row->lens[c], &v);
        col->kind = st == FS_CELL_NOT_NUMBER ? DS_LEVEL_LEARN : DS_NUMBER;
        r->n_undecided--;
    }
}

static int reader_keep(ds_reader *r)
{
    if (r->n_rows == r->rows_cap) {
        size_t cap = r->rows_cap == 0 ? 1024 : r->rows_cap * 2;
        double *rows;
        if (cap > SIZE_MAX / sizeof(double) / r->n_fields) {
            r->err = FS_ERR_NOMEM;
            return 1;
        }
        rows = realloc(r->rows, cap * r->n_fields * sizeof(double));
        if (rows == NULL) {
            r->err =
                fs__dataset_diag(r->diag, FS_ERR_NOMEM,
                                 "out of memory holding %zu rows of %zu fields", cap, r->n_fields);
            return 1;
        }
        r->rows = rows;
        r->rows_cap = cap;
    }
    memcpy(r->rows + r->n_rows * r->n_fields, r->record, r->n_fields * sizeof(double));
    r->n_rows++;
    return 0;
}

static int reader_record(ds_reader *r, const fs_csv_row *row)
{
    fs_dataset_stats *st = r->stats;
    int64_t index = st->records++;
    const char *label = NULL;
    size_t label_len = 0;
    int is_normal = 1;
    if (row->n_cells != r->n_columns) {
        return reader_bad(r, row, FS_CELL_N_CELLS, -1);
    }
    if (r->n_undecided > 0) {
        reader_decide(r, row);
    }
    for (size_t c = 0; c < r->n_columns; c++) {
        const ds_column *col = &r->cols[c];
        const char *cell = row->cells[c];
        size_t len = row->lens[c];
        fs_cell_status status = FS_CELL_OK;
        switch (col->kind) {
        case DS_NUMBER:
            status = fs_dataset_parse_number(cell, len, &r->record[col->field]);
            break;
        case DS_LEVEL_FIXED:
            if (fs__dataset_blank(cell, len)) {
                status = FS_CELL_EMPTY;
            } else {
                r->record[col->field] =
                    fs_schema_level_index(r->lookup, (size_t)col->field, cell, len);
            }
            break;
        case DS_LEVEL_LEARN:
            if (fs__dataset_blank(cell, len)) {
                status = FS_CELL_EMPTY;
            } else if (!fs__dataset_name_ok(cell, len)) {
                status = FS_CELL_BAD_LEVEL;
            }
            break;
        case DS_UNDECIDED:
            status = FS_CELL_EMPTY; /* still undecided: every cell so far was blank */
            break;
        case DS_UNUSED:
            break;
        }
        if (status != FS_CELL_OK) {
            return reader_bad(r, row, status, (long)c);
        }
    }
    if (r->label_col >= 0) {
        const char *normal = r->o->normal_value;
        label = row->cells[r->label_col];
        label_len = row->lens[r->label_col];
        is_normal =
            normal != NULL && strlen(normal) == label_len && memcmp(normal, label, label_len) == 0;
    }
    if (r->o->normal_only && !is_normal) {
        st->other_label++;
        return 0;
    }
    for (size_t c = 0; c < r->n_columns; c++) {
        ds_column *col = &r->cols[c];
        if (col->kind == DS_LEVEL_LEARN) {
            long id = fs__levels_intern(&col->levels, row->cells[c], row->lens[c]);
            if (id == -2) {
                r->err = fs__dataset_diag(r->diag, FS_ERR_INVALID,
                                          "%s line %lld, column %s: more than %d distinct "
                                          "values; declare it in a schema or ignore it",
                                          r->o->path, (long long)row->line, col->name,
                                          FS_DATASET_MAX_LEVELS);
                return 1;
            }
            if (id < 0) {
                r->err = FS_ERR_NOMEM;
                return 1;
            }
            r->record[col->field] = (double)id;
        }
    }
    st->used++;
    if (r->load) {
        if (reader_keep(r) != 0) {
            return 1;
        }
    } else {
        fs_dataset_row out = { index, row->line, r->record, label, label_len, is_normal };
        if (r->fn(r->user, &out) != 0) {
            r->err = FS_ERR_CANCELLED;
            return 1;
        }
    }
    if (r->o->max_rows > 0 && st->used >= r->o->max_rows) {
        st->truncated = 1;
        r->stopped_at_max = 1;
        return 1;
    }
    return 0;
}

static int reader_on_row(void *user, const fs_csv_row *row)
{
    ds_reader *r = user;
    if (r->need_header) {
        r->need_header = 0;
        r->err = reader_setup(r, row->cells, row->n_cells, 1);
        return r->err != FS_OK;
    }
    return reader_record(r, row);
}

/* Run the reader over the whole file; r's mode and callbacks are set. */
static fs_err reader_run(ds_reader *r)
{
    const fs_schema_file *sf = r->o->schema_file;
    fs_diag csv_diag = { "" };
    fs_err err;
    memset(r->stats, 0, sizeof *r->stats);
    r->label_col = -1;
    r->need_header = sf == NULL || sf->header;
    if (!r->need_header) {
        const char **names = calloc(sf->n_columns, sizeof *names);
        if (names == NULL) {
            return FS_ERR_NOMEM;
        }
        for (size_t c = 0; c < sf->n_columns; c++) {
            names[c] = sf->names[c];
        }
        err = reader_setup(r, names, sf->n_columns, 0);
        free(names);
        if (err != FS_OK) {
            return err;
        }
    }
    err = fs_csv_read_file(r->o->path, reader_on_row, r, &csv_diag);
    if (r->err != FS_OK) {
        return r->err; /* ours, with its own diag */
    }
    if (err == FS_ERR_CANCELLED && r->stopped_at_max) {
        err = FS_OK;
    }
    if (err != FS_OK) {
        if (err == FS_ERR_FORMAT) {
            return fs__dataset_diag(r->diag, err, "%s %s", r->o->path, csv_diag.msg);
        }
        return fs__dataset_diag(r->diag, err, "%s", csv_diag.msg);
    }
    if (r->need_header) {
        return fs__dataset_diag(r->diag, FS_ERR_FORMAT,
                                "%s: empty file, expected a header row naming the columns",
                                r->o->path);
    }
    return FS_OK;
}

fs_err fs_dataset_read(const fs_dataset_opts *o, const fs_schema *features, fs_dataset_row_fn fn,
                       void *user, fs_dataset_stats *stats, fs_diag *diag)
{
    ds_reader r;
    fs_err err;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.lookup = features;
    r.fn = fn;
    r.user = user;
    r.stats = stats;
    r.diag = diag;
    err = reader_run(&r);
    reader_free(&r);
    return err;
}

/* ------------------------------------------------------------------------- inference */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Type and transform of an inferred numeric column from its kept values. */
static fs_err infer_numeric(ds_reader *r, const ds_column *col, fs_schema *schema)
{
    size_t n = r->n_rows;
    double min = 0.0, max = 0.0, min_pos = 0.0, median = 0.0;
    int integer = 1;
    double *v = malloc((n == 0 ? 1 : n) * sizeof *v);
    fs_field_type type;
    fs_err err;
    if (v == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        double x = r->rows[i * r->n_fields + (size_t)col->field];
        v[i] = x;
        /* 2^53: past it every double is an integer, and counts that large are not counts */
        integer = integer && x == floor(x) && fabs(x) <= 9007199254740992.0;
        if (x > 0.0 && (min_pos == 0.0 || x < min_pos)) {
            min_pos = x;
        }
    }
    if (n > 0) {
        qsort(v, n, sizeof *v, cmp_double);
        min = v[0];
        max = v[n - 1];
        median = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }
    free(v);
    type = integer && n > 0 ? FS_FIELD_INTEGER : FS_FIELD_NUMERIC;
    err = fs_schema_add_numeric(schema, col->name, type,
                                fs_dataset_infer_transform(type, min, max, median, min_pos), 0);
    if (err != FS_OK && err != FS_ERR_NOMEM) {
        err = fs__dataset_diag(r->diag, err, "column %s: the engine refused the field", col->name);
    }
    return err;
}

/* Build d->schema: a copy of the schema file's features with learned levels, or inferred. */
static fs_err reader_finish_load(ds_reader *r, fs_dataset *d)
{
    fs_err err = FS_OK;
    int inferred = r->lookup == NULL;
    if (inferred) {
        err = fs_schema_create(&d->schema);
    } else {
        err = fs_schema_copy(r->lookup, &d->schema);
    }
    for (size_t c = 0; err == FS_OK && c < r->n_columns; c++) {
        ds_column *col = &r->cols[c];
        if (col->field < 0) {
            continue;
        }
        if (col->kind == DS_LEVEL_LEARN) {
            err = levels_finish(r, col, d->schema, inferred);
        } else if (inferred) {
            err = infer_numeric(r, col, d->schema); /* DS_NUMBER, or DS_UNDECIDED unseen */
        }
    }
    return err;
}

fs_err fs_dataset_load(const fs_dataset_opts *o, fs_dataset **out, fs_diag *diag)
{
    ds_reader r;
    fs_err err;
    fs_dataset *d = calloc(1, sizeof *d);
    *out = NULL;
    if (d == NULL) {
        return FS_ERR_NOMEM;
    }
    memset(&r, 0, sizeof r);
    r.o = o;
    r.lookup = o->schema_file != NULL ? o->schema_file->features : NULL;
    r.load = 1;
    r.stats = &d->stats;
    r.diag = diag;
    err = reader_run(&r);
    if (err == FS_OK) {
        err = reader_finish_load(&r, d);
    }
    if (err == FS_OK) {
        d->n_fields = r.n_fields;
        d->n_rows = r.n_rows;
        d->records = r.rows;
        r.rows = NULL;
        d->header = o->schema_file == NULL || o->schema_file->header;
        d->column_names = calloc(r.n_columns, sizeof *d->column_names);
        d->column_roles = calloc(r.n_columns, sizeof *d->column_roles);
        if (d->column_names == NULL || d->column_roles == NULL) {
            err = FS_ERR_NOMEM;
        }
    }
    if (err == FS_OK) {
        d->n_columns = r.n_columns;
        for (size_t c = 0; c < r.n_columns; c++) {
            d->column_names[c] = r.cols[c].name;
            d->column_roles[c] = r.cols[c].field >= 0 ? FS_COLUMN_FEATURE : r.cols[c].role;
            r.cols[c].name = NULL;
        }
        *out = d;
        d = NULL;
    }
    reader_free(&r);
    fs_dataset_free(d);
    return err;
}

void fs_dataset_free(fs_dataset *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t c = 0; c < d->n_columns; c++) {
        free(d->column_names[c]);
    }
    free(d->column_names);
    free(d->column_roles);
    fs_schema_free(d->schema);
    free(d->records);
    free(d);
}
