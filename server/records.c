/* records.c: request bodies: pre-scan, parse, duplicate keys, records and latents to rows. */
#include "records.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fs_req_error_set(fs_req_error *e, int status, const char *code, const char *field,
                     const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->code = code;
    e->offset = -1;
    snprintf(e->field, sizeof e->field, "%s", field != NULL ? field : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int syntax_error(fs_req_error *e, size_t offset, const char *what)
{
    fs_req_error_set(e, 400, FS_EC_INVALID_JSON, NULL, "malformed JSON at byte %zu: %s", offset,
                     what);
    e->offset = (long)offset;
    return -1;
}

int fs_json_prescan(const char *body, size_t len, const fs_json_limits *lim, fs_req_error *err)
{
    size_t depth = 0;
    if (len == 0) {
        return syntax_error(err, 0, "the body is empty (expected a JSON object)");
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c == '"') {
            size_t start = i++;
            while (i < len && body[i] != '"') {
                unsigned char d = (unsigned char)body[i];
                if (d < 0x20) {
                    return syntax_error(err, i,
                                        d == 0 ? "a NUL byte inside a string"
                                               : "a raw control character inside a "
                                                 "string (escape it)");
                }
                if (d == '\\' && i + 1 < len) {
                    /* \u0000 would silently cut the string short inside cJSON. */
                    if (body[i + 1] == 'u' && i + 5 < len && memcmp(body + i + 2, "0000", 4) == 0) {
                        return syntax_error(err, i, "\\u0000 (NUL) inside a string");
                    }
                    i++;
                }
                i++;
            }
            if (i - start - 1 > lim->max_string_bytes) {
                fs_req_error_set(err, 400, FS_EC_INVALID_JSON, NULL,
                                 "a string at byte %zu is longer than max_string_bytes=%u", start,
                                 lim->max_string_bytes);
                err->offset = (long)start;
                return -1;
            }
            continue; /* at the closing quote, or at the end (cJSON reports it) */
        }
        if (c == '[' || c == '{') {
            depth++;
            if (depth > lim->max_depth) {
                fs_req_error_set(err, 400, FS_EC_INVALID_JSON, NULL,
                                 "nesting too deep at byte %zu: the limit is %u levels", i,
                                 lim->max_depth);
                err->offset = (long)i;
                return -1;
            }
        } else if (c == ']' || c == '}') {
            depth = depth > 0 ? depth - 1 : 0;
        } else if (c == 0) {
            return syntax_error(err, i, "a NUL byte");
        }
    }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First duplicated key of an object, or NULL. Large objects are sorted, not scanned n^2. */
static const char *object_duplicate(const cJSON *obj)
{
    size_t n = 0;
    const char *dup = NULL;
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        n++;
    }
    if (n <= 32) {
        for (const cJSON *a = obj->child; a != NULL; a = a->next) {
            for (const cJSON *b = a->next; b != NULL; b = b->next) {
                if (strcmp(a->string, b->string) == 0) {
                    return a->string;
                }
            }
        }
        return NULL;
    }
    const char **keys = malloc(n * sizeof *keys);
    if (keys == NULL) {
        return NULL; /* the check is best effort under memory pressure */
    }
    size_t i = 0;
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        keys[i++] = c->string;
    }
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    for (i = 1; i < n && dup == NULL; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            dup = keys[i];
        }
    }
    free(keys);
    return dup;
}

/* Depth is bounded by the pre-scan (max_depth <= 512), so recursion is safe here. */
static const char *find_duplicate(const cJSON *item)
{
    if (cJSON_IsObject(item)) {
        const char *d = object_duplicate(item);
        if (d != NULL) {
            return d;
        }
    }
    if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
        for (const cJSON *c = item->child; c != NULL; c = c->next) {
            const char *d = find_duplicate(c);
            if (d != NULL) {
                return d;
            }
        }
    }
    return NULL;
}

cJSON *fs_json_parse_object(const char *body, size_t len, const fs_json_limits *lim,
                            fs_req_error *err)
{
    const char *end = NULL;
    cJSON *root = NULL;
    if (fs_json_prescan(body, len, lim, err) != 0) {
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root == NULL) {
        size_t off = (end != NULL && end >= body && end <= body + len) ? (size_t)(end - body) : 0;
        syntax_error(err, off, off >= len ? "unexpected end of input" : "unexpected character");
        return NULL;
    }
    size_t off = (size_t)(end - body);
    while (off < len &&
           (body[off] == ' ' || body[off] == '\t' || body[off] == '\n' || body[off] == '\r')) {
        off++;
    }
    if (off < len) {
        syntax_error(err, off, "unexpected data after the JSON value");
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, NULL,
                         "the body must be a JSON object, got %s",
                         cJSON_IsArray(root)    ? "an array"
                         : cJSON_IsString(root) ? "a string"
                         : cJSON_IsNumber(root) ? "a number"
                         : cJSON_IsNull(root)   ? "null"
                                                : "a boolean");
        goto fail;
    }
    const char *dup = find_duplicate(root);
    if (dup != NULL) {
        fs_req_error_set(err, 400, FS_EC_INVALID_JSON, NULL,
                         "duplicate key \"%.64s\" in an object (each key may appear once)", dup);
        goto fail;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) {
        return "a string";
    }
    if (cJSON_IsNumber(v)) {
        return "a number";
    }
    if (cJSON_IsBool(v)) {
        return "a boolean";
    }
    if (cJSON_IsNull(v)) {
        return "null";
    }
    if (cJSON_IsArray(v)) {
        return "an array";
    }
    return "an object";
}

static size_t array_len(const cJSON *a)
{
    size_t n = 0;
    for (const cJSON *c = a->child; c != NULL; c = c->next) {
        n++;
    }
    return n;
}

/* The path of a value: records[i].key (key != NULL) or records[i][j]. */
static void value_path(char *path, size_t len, size_t i, const char *key, size_t j)
{
    if (key != NULL) {
        snprintf(path, len, "records[%zu].%.64s", i, key);
    } else {
        snprintf(path, len, "records[%zu][%zu]", i, j);
    }
}

/*
 * One value into *out per its field's type. The error path (records[i].key or records[i][j])
 * is formatted only when there is an error: this runs for every value of every request.
 */
static int read_value(const fs_schema *s, size_t field, const cJSON *v, size_t i, const char *key,
                      size_t j, double *out, fs_req_error *err)
{
    char path[160];
    if (fs_schema_field_type(s, field) == FS_FIELD_CATEGORICAL) {
        if (!cJSON_IsString(v)) {
            value_path(path, sizeof path, i, key, j);
            return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                    "expected a string (a level of categorical field %s), got %s",
                                    fs_schema_field_name(s, field), json_type_name(v));
        }
        *out = fs_schema_level_index(s, field, v->valuestring, strlen(v->valuestring));
        return 0;
    }
    if (!cJSON_IsNumber(v)) {
        /* Never strtod a string: "tcp" would read as 0 (case-08). */
        value_path(path, sizeof path, i, key, j);
        return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                "expected a number for field %s, got %s",
                                fs_schema_field_name(s, field), json_type_name(v));
    }
    if (!isfinite(v->valuedouble)) {
        /* cJSON turns 1e309 into inf (case-05). */
        value_path(path, sizeof path, i, key, j);
        return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                "number out of range for field %s: it overflows a double",
                                fs_schema_field_name(s, field));
    }
    *out = v->valuedouble;
    return 0;
}

static int read_object_record(const fs_schema *s, const cJSON *rec, size_t i, unsigned char *seen,
                              double *row, fs_req_error *err)
{
    size_t n_fields = fs_schema_n_fields(s);
    char path[160];
    memset(seen, 0, n_fields);
    for (const cJSON *m = rec->child; m != NULL; m = m->next) {
        int32_t f = fs_schema_field_index(s, m->string, strlen(m->string));
        if (f < 0) {
            value_path(path, sizeof path, i, m->string, 0);
            return fs_req_error_set(err, 400, FS_EC_UNKNOWN_FIELD, path,
                                    "unknown field \"%.64s\": the model has no such field",
                                    m->string);
        }
        if (read_value(s, (size_t)f, m, i, m->string, 0, &row[f], err) != 0) {
            return -1;
        }
        seen[f] = 1;
    }
    for (size_t f = 0; f < n_fields; f++) {
        if (!seen[f]) {
            snprintf(path, sizeof path, "records[%zu].%s", i, fs_schema_field_name(s, f));
            return fs_req_error_set(err, 400, FS_EC_MISSING_FIELD, path, "missing field %s",
                                    fs_schema_field_name(s, f));
        }
    }
    return 0;
}

static int read_array_record(const fs_schema *s, const cJSON *rec, size_t i, double *row,
                             fs_req_error *err)
{
    size_t n_fields = fs_schema_n_fields(s);
    size_t n = array_len(rec);
    if (n != n_fields) {
        char path[64];
        snprintf(path, sizeof path, "records[%zu]", i);
        return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                "expected %zu values in schema order, got %zu", n_fields, n);
    }
    size_t j = 0;
    for (const cJSON *v = rec->child; v != NULL; v = v->next, j++) {
        if (read_value(s, j, v, i, NULL, j, &row[j], err) != 0) {
            return -1;
        }
    }
    return 0;
}

int fs_records_read(const cJSON *records, const fs_schema *s, const fs_json_limits *lim,
                    double **rows_out, size_t *n_rows_out, fs_req_error *err)
{
    size_t n_fields = fs_schema_n_fields(s);
    double *rows = NULL;
    unsigned char *seen = NULL;
    size_t n = 0, i = 0;
    *rows_out = NULL;
    *n_rows_out = 0;
    if (records == NULL) {
        return fs_req_error_set(err, 400, FS_EC_MISSING_FIELD, "records",
                                "missing field records (an array of records)");
    }
    if (!cJSON_IsArray(records)) {
        return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, "records",
                                "expected an array of records, got %s", json_type_name(records));
    }
    n = array_len(records);
    if (n > lim->max_rows) {
        return fs_req_error_set(err, 413, FS_EC_TOO_MANY_ROWS, "records",
                                "%zu records exceed max_rows_per_request=%u", n, lim->max_rows);
    }
    rows = malloc((n > 0 ? n : 1) * n_fields * sizeof *rows + sizeof *rows);
    seen = malloc(n_fields + 1);
    if (rows == NULL || seen == NULL) {
        fs_req_error_set(err, 503, FS_EC_OVERLOADED, NULL, "out of memory for %zu records", n);
        goto fail;
    }
    for (const cJSON *rec = records->child; rec != NULL; rec = rec->next, i++) {
        double *row = rows + i * n_fields;
        int rc;
        if (cJSON_IsObject(rec)) {
            rc = read_object_record(s, rec, i, seen, row, err);
        } else if (cJSON_IsArray(rec)) {
            rc = read_array_record(s, rec, i, row, err);
        } else {
            char path[48];
            snprintf(path, sizeof path, "records[%zu]", i);
            rc = fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                  "expected a record (an object or an array), got %s",
                                  json_type_name(rec));
        }
        if (rc != 0) {
            goto fail;
        }
    }
    free(seen);
    *rows_out = rows;
    *n_rows_out = n;
    return 0;
fail:
    free(seen);
    free(rows);
    return -1;
}

int fs_record_read(const cJSON *rec, const fs_schema *s, size_t index, unsigned char *seen,
                   double *row, fs_req_error *err)
{
    if (cJSON_IsObject(rec)) {
        return read_object_record(s, rec, index, seen, row, err);
    }
    if (cJSON_IsArray(rec)) {
        return read_array_record(s, rec, index, row, err);
    }
    char path[48];
    snprintf(path, sizeof path, "records[%zu]", index);
    return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                            "expected a record (an object or an array), got %s",
                            json_type_name(rec));
}

int fs_latents_read(const cJSON *latents, size_t n_dims, const fs_json_limits *lim, double **out,
                    size_t *n_rows_out, fs_req_error *err)
{
    double *z = NULL;
    size_t n, i = 0;
    char path[64];
    *out = NULL;
    *n_rows_out = 0;
    if (latents == NULL) {
        return fs_req_error_set(err, 400, FS_EC_MISSING_FIELD, "latents",
                                "missing field latents (an array of latent vectors)");
    }
    if (!cJSON_IsArray(latents)) {
        return fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, "latents",
                                "expected an array of latent vectors, got %s",
                                json_type_name(latents));
    }
    n = array_len(latents);
    if (n > lim->max_rows) {
        return fs_req_error_set(err, 413, FS_EC_TOO_MANY_ROWS, "latents",
                                "%zu latents exceed max_rows_per_request=%u", n, lim->max_rows);
    }
    z = malloc((n > 0 ? n : 1) * n_dims * sizeof *z + sizeof *z);
    if (z == NULL) {
        return fs_req_error_set(err, 503, FS_EC_OVERLOADED, NULL, "out of memory for %zu rows", n);
    }
    for (const cJSON *row = latents->child; row != NULL; row = row->next, i++) {
        size_t len = cJSON_IsArray(row) ? array_len(row) : 0;
        if (!cJSON_IsArray(row) || len != n_dims) {
            snprintf(path, sizeof path, "latents[%zu]", i);
        }
        if (!cJSON_IsArray(row)) {
            fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                             "expected an array of %zu numbers (n_dims), got %s", n_dims,
                             json_type_name(row));
            goto fail;
        }
        if (len != n_dims) {
            fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                             "expected %zu values (n_dims), got %zu", n_dims, len);
            goto fail;
        }
        size_t j = 0;
        for (const cJSON *v = row->child; v != NULL; v = v->next, j++) {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
                snprintf(path, sizeof path, "latents[%zu][%zu]", i, j);
                fs_req_error_set(err, 400, FS_EC_INVALID_INPUT, path,
                                 cJSON_IsNumber(v) ? "number out of range: it overflows a double"
                                                   : "expected a finite number, got %s",
                                 json_type_name(v));
                goto fail;
            }
            z[i * n_dims + j] = v->valuedouble;
        }
    }
    *out = z;
    *n_rows_out = n;
    return 0;
fail:
    free(z);
    return -1;
}

int fs_model_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > 64) {
        return 0;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}
