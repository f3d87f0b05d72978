/* dataset.c: CSV rows to engine records, schema files, bad-cell rules (dataset.h). */
#include "dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "dataset_internal.h"
#include "fs_csv.h"

#define FS_SCHEMA_FILE_MAX_BYTES (1024 * 1024)
#define FS_NUMBER_MAX_CHARS      1024

static const char *const fs_cell_texts[FS_CELL__COUNT] = {
    "ok",
    "not a number",
    "non-finite value",
    "number out of the double range",
    "empty cell",
    "wrong number of cells",
    "not a valid level name (1..63 bytes, no control characters)",
};

const char *fs_cell_status_text(fs_cell_status status)
{
    if ((unsigned)status >= FS_CELL__COUNT) {
        return "bad cell";
    }
    return fs_cell_texts[status];
}

fs_err fs__dataset_diag(fs_diag *diag, fs_err err, const char *fmt, ...)
{
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}

int fs__dataset_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\v' && c != '\f') {
            return 0;
        }
    }
    return 1;
}

int fs__dataset_name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= FS_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive equality of s (len bytes) with a lower-case word. */
static int word_is(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    if (len != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)s[i]) != word[i]) {
            return 0;
        }
    }
    return 1;
}

/* NaN and infinity as strtod and common exports spell them: nan, nan(...), inf, infinity. */
static int nonfinite_spelling(const char *s, size_t len)
{
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        s++;
        len--;
    }
    if (word_is(s, len, "nan") || word_is(s, len, "inf") || word_is(s, len, "infinity")) {
        return 1;
    }
    return len > 4 && word_is(s, 4, "nan(") && s[len - 1] == ')';
}

/* Whether s is [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)? in full. */
static int decimal_syntax(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        i++;
    }
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp_digits = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0) {
            return 0;
        }
    }
    return i == len;
}

fs_cell_status fs_dataset_parse_number(const char *s, size_t len, double *out)
{
    char buf[FS_NUMBER_MAX_CHARS + 1];
    char *end = NULL;
    double v;
    if (fs__dataset_blank(s, len)) {
        return FS_CELL_EMPTY;
    }
    /* strtod alone would take "0x10" as 16, " 12" as 12, "inf" as infinity, and "tcp" as 0
     * with only end == start to tell: check the grammar first (case-08, case-09). */
    if (!decimal_syntax(s, len)) {
        return nonfinite_spelling(s, len) ? FS_CELL_NONFINITE : FS_CELL_NOT_NUMBER;
    }
    if (len > FS_NUMBER_MAX_CHARS) {
        return FS_CELL_NOT_NUMBER;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtod(buf, &end);
    if (end != buf + len) {
        return FS_CELL_NOT_NUMBER;
    }
    if (!isfinite(v)) {
        return FS_CELL_OVERFLOW; /* 1e999, 1e309: HUGE_VAL with ERANGE */
    }
    *out = v;
    return FS_CELL_OK;
}

/* A quoted, printable, shortened copy of a cell for messages. */
void fs__dataset_excerpt(const char *s, size_t len, char *buf, size_t size)
{
    size_t j = 0, max = size - 5;
    buf[j++] = '\'';
    for (size_t i = 0; i < len && j < max; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (len > max - 1) {
        buf[j++] = '.';
        buf[j++] = '.';
    }
    buf[j++] = '\'';
    buf[j] = '\0';
}

/* Whether s is one or more ASCII digits and nothing else: a number that may be a name. */
static int all_digits(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }
    return 1;
}

fs_header_kind fs__dataset_header_kind(const char *const *cells, size_t n)
{
    size_t n_numbers = 0, n_text = 0, n_plain = 0;
    for (size_t c = 0; c < n; c++) {
        double v;
        fs_cell_status st = fs_dataset_parse_number(cells[c], strlen(cells[c]), &v);
        if (st == FS_CELL_EMPTY || st == FS_CELL_NONFINITE) {
            continue;
        }
        if (st == FS_CELL_NOT_NUMBER) {
            n_text++;
            continue;
        }
        n_numbers++;
        n_plain += (size_t)all_digits(cells[c]);
        /* a number that appears twice: a real header with it would fail anyway ("appears
         * twice"); a data row of counts and flags repeats 0 and 1 (NSL-KDD's first row) */
        for (size_t k = 0; k < c; k++) {
            if (strcmp(cells[k], cells[c]) == 0) {
                return FS_HEADER_DATA;
            }
        }
    }
    if (n_numbers == 0 || n_text > 0) {
        return FS_HEADER_NAMES;
    }
    /* Every cell is a number. Years, wavelengths and pandas' 0,1,2 make real headers of
     * plain digits, so those stay names; "119.323", "-1" or "1e3" are not names anyone
     * writes. */
    return n_plain == n_numbers ? FS_HEADER_DIGITS : FS_HEADER_DATA;
}

int fs__dataset_mostly_numbers(const char *const *cells, size_t n)
{
    size_t n_numbers = 0, n_filled = 0;
    for (size_t c = 0; c < n; c++) {
        double v;
        fs_cell_status st = fs_dataset_parse_number(cells[c], strlen(cells[c]), &v);
        if (st == FS_CELL_EMPTY) {
            continue;
        }
        n_filled++;
        n_numbers += st == FS_CELL_OK || st == FS_CELL_OVERFLOW;
    }
    return n_numbers * 2 > n_filled;
}

void fs__dataset_row_excerpt(const char *const *cells, size_t n, char *buf, size_t size)
{
    char joined[96];
    size_t used = 0;
    for (size_t c = 0; c < n && used < sizeof joined - 1; c++) {
        int k = snprintf(joined + used, sizeof joined - used, "%s%s", c > 0 ? "," : "", cells[c]);
        if (k < 0) {
            break;
        }
        used += (size_t)k < sizeof joined - used ? (size_t)k : sizeof joined - 1 - used;
    }
    joined[used] = '\0';
    fs__dataset_excerpt(joined, used, buf, size);
}

/* ------------------------------------------------------------------------- schema files */

void fs_schema_file_free(fs_schema_file *sf)
{
    if (sf == NULL) {
        return;
    }
    free(sf->names);
    free(sf->roles);
    fs_schema_free(sf->features);
    free(sf);
}

static fs_err schema_file_columns(const cJSON *fields, fs_schema_file *sf, fs_diag *diag)
{
    size_t n = (size_t)cJSON_GetArraySize(fields);
    size_t i = 0;
    if (n == 0 || n > FS_CSV_MAX_COLUMNS) {
        return fs__dataset_diag(diag, FS_ERR_FORMAT,
                                "schema file: \"fields\" needs 1 to %d entries, has %zu",
                                FS_CSV_MAX_COLUMNS, n);
    }
    sf->names = calloc(n, sizeof *sf->names);
    sf->roles = calloc(n, sizeof *sf->roles);
    if (sf->names == NULL || sf->roles == NULL) {
        return FS_ERR_NOMEM;
    }
    for (const cJSON *f = fields->child; f != NULL; f = f->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
        const char *t;
        if (!cJSON_IsString(name) || !cJSON_IsString(type) ||
            !fs__dataset_name_ok(name->valuestring, strlen(name->valuestring))) {
            return fs__dataset_diag(diag, FS_ERR_FORMAT,
                                    "schema file: fields[%zu] needs a \"name\" (1..63 bytes, no "
                                    "control characters) and a \"type\"",
                                    i);
        }
        t = type->valuestring;
        if (strcmp(t, "label") == 0) {
            sf->roles[i] = FS_COLUMN_LABEL;
        } else if (strcmp(t, "ignore") == 0) {
            sf->roles[i] = FS_COLUMN_IGNORE;
        } else if (strcmp(t, "numeric") == 0 || strcmp(t, "integer") == 0 ||
                   strcmp(t, "categorical") == 0) {
            sf->roles[i] = FS_COLUMN_FEATURE;
        } else {
            return fs__dataset_diag(diag, FS_ERR_FORMAT,
                                    "schema file: fields[%zu] (%s): type \"%s\" is not one of "
                                    "numeric, integer, categorical, label, ignore",
                                    i, name->valuestring, t);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(sf->names[j], name->valuestring) == 0) {
                return fs__dataset_diag(diag, FS_ERR_FORMAT,
                                        "schema file: fields[%zu]: the name \"%s\" appears twice",
                                        i, name->valuestring);
            }
        }
        memcpy(sf->names[i], name->valuestring, strlen(name->valuestring) + 1);
    }
    sf->n_columns = n;
    return FS_OK;
}

fs_err fs_schema_file_parse(const char *json, size_t len, fs_schema_file **out, fs_diag *diag)
{
    fs_err err = FS_OK;
    const char *end = NULL;
    cJSON *root = NULL;
    char *features_json = NULL;
    fs_schema_file *sf = NULL;
    const cJSON *fields, *header;
    *out = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) {
        size_t at = end != NULL && end >= json ? (size_t)(end - json) : 0;
        return fs__dataset_diag(diag, FS_ERR_FORMAT, "schema file: invalid JSON at byte %zu", at);
    }
    if (!cJSON_IsObject(root)) {
        err = fs__dataset_diag(diag, FS_ERR_FORMAT, "schema file: expected a JSON object");
        goto out;
    }
    for (const cJSON *k = root->child; k != NULL; k = k->next) {
        if (strcmp(k->string, "header") != 0 && strcmp(k->string, "fields") != 0) {
            err = fs__dataset_diag(diag, FS_ERR_FORMAT,
                                   "schema file: unknown key \"%s\" (expected \"header\" and "
                                   "\"fields\")",
                                   k->string);
            goto out;
        }
    }
    header = cJSON_GetObjectItemCaseSensitive(root, "header");
    fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    if (header != NULL && !cJSON_IsBool(header)) {
        err =
            fs__dataset_diag(diag, FS_ERR_FORMAT, "schema file: \"header\" must be true or false");
        goto out;
    }
    if (!cJSON_IsArray(fields)) {
        err = fs__dataset_diag(diag, FS_ERR_FORMAT, "schema file: needs a \"fields\" array");
        goto out;
    }
    sf = calloc(1, sizeof *sf);
    if (sf == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    sf->header = header == NULL || cJSON_IsTrue(header);
    err = schema_file_columns(fields, sf, diag);
    if (err != FS_OK) {
        goto out;
    }
    /* The engine reads the feature part; it skips "label" and "ignore" fields itself. */
    cJSON_DeleteItemFromObjectCaseSensitive(root, "header");
    features_json = cJSON_PrintUnformatted(root);
    if (features_json == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    err = fs_schema_parse_json(features_json, strlen(features_json), &sf->features, diag);
    if (err != FS_OK) {
        goto out;
    }
    *out = sf;
    sf = NULL;
out:
    cJSON_free(features_json);
    cJSON_Delete(root);
    fs_schema_file_free(sf);
    return err;
}

fs_err fs_schema_file_load(const char *path, fs_schema_file **out, fs_diag *diag)
{
    char *text = NULL;
    size_t len = 0;
    fs_err err;
    *out = NULL;
    err = fs_cli_read_file(path, FS_SCHEMA_FILE_MAX_BYTES, &text, &len, diag);
    if (err != FS_OK) {
        return err;
    }
    err = fs_schema_file_parse(text, len, out, diag);
    if (err != FS_OK && diag != NULL) {
        /* prefix the path, keeping what fits */
        char msg[sizeof diag->msg];
        size_t n = strlen(path) + 2 < sizeof msg ? strlen(path) + 2 : sizeof msg - 1;
        memcpy(msg, diag->msg, sizeof msg);
        snprintf(diag->msg, sizeof diag->msg, "%s: ", path);
        memcpy(diag->msg + n, msg, sizeof msg - n - 1);
        diag->msg[sizeof diag->msg - 1] = '\0';
    }
    free(text);
    return err;
}

/* ------------------------------------------------------------------------- bad rows */

/*
 * The sentence of fs_dataset_format_bad (detail 0), or its part after the summary's own
 * "skipped bad rows: " (detail 1): "2 (1 non-finite value, 1 empty cell); line 2 (...)".
 */
static void format_bad(const fs_dataset_stats *stats, int detail, char *buf, size_t len)
{
    size_t used = 0;
    int k;
    const char *sep = detail ? " (" : ": ";
    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    if (stats->bad == 0) {
        return;
    }
#define FS_APPEND(...)                                                                             \
    do {                                                                                           \
        k = snprintf(buf + used, len - used, __VA_ARGS__);                                         \
        if (k < 0 || (size_t)k >= len - used) {                                                    \
            return;                                                                                \
        }                                                                                          \
        used += (size_t)k;                                                                         \
    } while (0)
    if (detail) {
        FS_APPEND("%lld", (long long)stats->bad);
    } else {
        FS_APPEND("%lld bad row%s skipped", (long long)stats->bad, stats->bad == 1 ? "" : "s");
    }
    for (int s = 1; s < FS_CELL__COUNT; s++) {
        if (stats->bad_by_status[s] > 0) {
            FS_APPEND("%s%lld %s", sep, (long long)stats->bad_by_status[s],
                      fs_cell_status_text((fs_cell_status)s));
            sep = ", ";
        }
    }
    if (detail) {
        FS_APPEND(")");
    }
    sep = "; ";
    for (size_t i = 0; i < stats->n_examples; i++) {
        const fs_bad_row *b = &stats->examples[i];
        if (b->column[0] != '\0') {
            FS_APPEND("%sline %lld (%s: %s)", sep, (long long)b->line, b->column,
                      fs_cell_status_text(b->status));
        } else {
            FS_APPEND("%sline %lld (%s)", sep, (long long)b->line, fs_cell_status_text(b->status));
        }
        sep = ", ";
    }
    if ((int64_t)stats->n_examples < stats->bad) {
        FS_APPEND(", ...");
    }
#undef FS_APPEND
}

void fs_dataset_format_bad(const fs_dataset_stats *stats, char *buf, size_t len)
{
    format_bad(stats, 0, buf, len);
}

void fs_dataset_format_bad_detail(const fs_dataset_stats *stats, char *buf, size_t len)
{
    format_bad(stats, 1, buf, len);
}

/* ------------------------------------------------------------------------- inference */

fs_transform fs_dataset_infer_transform(fs_field_type type, double min, double max, double median,
                                        double min_positive)
{
    if (!(min >= 0.0)) {
        return FS_TRANSFORM_NONE; /* signed data: log1p would fold it (and NaN-safe) */
    }
    if (type == FS_FIELD_INTEGER) {
        return max > 1.0 ? FS_TRANSFORM_LOG1P : FS_TRANSFORM_NONE;
    }
    if (min_positive > 0.0 && max > 1e3 * (median + min_positive)) {
        return FS_TRANSFORM_LOG1P;
    }
    return FS_TRANSFORM_NONE;
}

/* ------------------------------------------------------------------------- schema output */

fs_err fs_dataset_print_schema(const fs_dataset *d, FILE *out)
{
    fs_err err = FS_OK;
    char *engine_json = NULL;
    char *text = NULL;
    cJSON *engine = NULL, *root = NULL, *fields = NULL;
    const cJSON *engine_fields;
    err = fs_schema_format_json(d->schema, &engine_json);
    if (err != FS_OK) {
        return err;
    }
    engine = cJSON_Parse(engine_json);
    root = cJSON_CreateObject();
    fields = cJSON_CreateArray();
    if (engine == NULL || root == NULL || fields == NULL) {
        cJSON_Delete(fields);
        err = FS_ERR_NOMEM;
        goto out;
    }
    cJSON_AddItemToObject(root, "header", cJSON_CreateBool(d->header));
    cJSON_AddItemToObject(root, "fields", fields);
    engine_fields = cJSON_GetObjectItemCaseSensitive(engine, "fields");
    for (size_t c = 0; c < d->n_columns; c++) {
        const char *name = d->column_names[c];
        cJSON *item = NULL;
        if (d->column_roles[c] == FS_COLUMN_FEATURE) {
            for (const cJSON *f = engine_fields != NULL ? engine_fields->child : NULL;
                 f != NULL && item == NULL; f = f->next) {
                const cJSON *fname = cJSON_GetObjectItemCaseSensitive(f, "name");
                if (cJSON_IsString(fname) && strcmp(fname->valuestring, name) == 0) {
                    item = cJSON_Duplicate(f, 1);
                }
            }
        } else if (fs__dataset_name_ok(name, strlen(name))) {
            item = cJSON_CreateObject();
            if (item != NULL) {
                cJSON_AddStringToObject(item, "name", name);
                cJSON_AddStringToObject(item, "type",
                                        d->column_roles[c] == FS_COLUMN_LABEL ? "label" : "ignore");
            }
        }
        if (item != NULL) {
            cJSON_AddItemToArray(fields, item);
        }
    }
    text = cJSON_Print(root);
    if (text == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    if (fprintf(out, "%s\n", text) < 0) {
        err = FS_ERR_IO;
    }
out:
    cJSON_free(text);
    cJSON_Delete(root);
    cJSON_Delete(engine);
    fs_free(engine_json);
    return err;
}
