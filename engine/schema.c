/* schema.c: the named fields of a record, and their JSON form. */
#include "model.h"

#include <cjson/cJSON.h>

#include <stdlib.h>
#include <string.h>

bool fs__name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= FS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static void field_deinit(fs__field *f)
{
    for (size_t i = 0; i < f->n_levels; i++) {
        fs__free(f->levels[i]);
    }
    fs__free(f->levels);
    fs__free(f->level_order);
    f->levels = NULL;
    f->level_order = NULL;
    f->n_levels = 0;
}

fs_err fs_schema_create(fs_schema **out)
{
    *out = fs__calloc(1, sizeof **out);
    return *out == NULL ? FS_ERR_NOMEM : FS_OK;
}

void fs_schema_free(fs_schema *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n_fields; i++) {
        field_deinit(&s->fields[i]);
    }
    fs__free(s->fields);
    fs__free(s);
}

static fs_err schema_append(fs_schema *s, const char *name, fs__field **out)
{
    size_t len = strlen(name);
    *out = NULL;
    if (!fs__name_ok(name, len) || fs_schema_field_index(s, name, len) >= 0) {
        return FS_ERR_INVALID;
    }
    if (s->n_fields == s->cap) {
        size_t cap = s->cap == 0 ? 8 : s->cap * 2;
        fs__field *f = fs__realloc(s->fields, fs__mul_size(cap, sizeof *f));
        if (f == NULL) {
            return FS_ERR_NOMEM;
        }
        s->fields = f;
        s->cap = cap;
    }
    fs__field *f = &s->fields[s->n_fields];
    memset(f, 0, sizeof *f);
    memcpy(f->name, name, len + 1);
    *out = f;
    return FS_OK;
}

fs_err fs_schema_add_numeric(fs_schema *s, const char *name, fs_field_type type,
                             fs_transform transform, int dequantize)
{
    fs__field *f;
    fs_err err;
    if (type != FS_FIELD_NUMERIC && type != FS_FIELD_INTEGER) {
        return FS_ERR_INVALID;
    }
    if (transform != FS_TRANSFORM_NONE && transform != FS_TRANSFORM_LOG1P) {
        return FS_ERR_INVALID;
    }
    err = schema_append(s, name, &f);
    if (err != FS_OK) {
        return err;
    }
    f->type = type;
    f->transform = transform;
    f->dequantize = dequantize != 0 && type == FS_FIELD_INTEGER;
    s->n_fields++;
    return FS_OK;
}

/* Sorted index of levels for binary search; refuses duplicates. */
static fs_err build_level_order(fs_schema *s, size_t field)
{
    fs__field *f = &s->fields[field];
    fs__free(f->level_order);
    f->level_order = fs__calloc(f->n_levels == 0 ? 1 : f->n_levels, sizeof *f->level_order);
    if (f->level_order == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0; i < f->n_levels; i++) {
        f->level_order[i] = (uint32_t)i;
    }
    /* insertion sort: level counts are small, and it needs no global state */
    for (size_t i = 1; i < f->n_levels; i++) {
        uint32_t v = f->level_order[i];
        size_t j = i;
        while (j > 0 && strcmp(f->levels[f->level_order[j - 1]], f->levels[v]) > 0) {
            f->level_order[j] = f->level_order[j - 1];
            j--;
        }
        f->level_order[j] = v;
    }
    for (size_t i = 1; i < f->n_levels; i++) {
        if (strcmp(f->levels[f->level_order[i - 1]], f->levels[f->level_order[i]]) == 0) {
            return FS_ERR_INVALID;
        }
    }
    return FS_OK;
}

fs_err fs_schema_set_levels(fs_schema *s, size_t field, const char *const *levels, size_t n_levels)
{
    fs__field *f;
    fs__field tmp;
    fs_err err = FS_OK;
    if (field >= s->n_fields || s->fields[field].type != FS_FIELD_CATEGORICAL ||
        n_levels > (size_t)UINT32_MAX) {
        return FS_ERR_INVALID;
    }
    f = &s->fields[field];
    memset(&tmp, 0, sizeof tmp);
    tmp.levels = fs__calloc(n_levels == 0 ? 1 : n_levels, sizeof *tmp.levels);
    if (tmp.levels == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_levels; i++) {
        size_t len = strlen(levels[i]);
        if (!fs__name_ok(levels[i], len)) {
            err = FS_ERR_INVALID;
            break;
        }
        tmp.levels[i] = fs__strndup(levels[i], len);
        if (tmp.levels[i] == NULL) {
            err = FS_ERR_NOMEM;
            break;
        }
        tmp.n_levels = i + 1;
    }
    if (err != FS_OK) {
        field_deinit(&tmp);
        return err;
    }
    field_deinit(f);
    f->levels = tmp.levels;
    f->n_levels = tmp.n_levels;
    return build_level_order(s, field);
}

fs_err fs_schema_add_categorical(fs_schema *s, const char *name, const char *const *levels,
                                 size_t n_levels)
{
    fs__field *f;
    fs_err err = schema_append(s, name, &f);
    if (err != FS_OK) {
        return err;
    }
    f->type = FS_FIELD_CATEGORICAL;
    s->n_fields++;
    err = fs_schema_set_levels(s, s->n_fields - 1, levels, n_levels);
    if (err != FS_OK) {
        field_deinit(f);
        s->n_fields--;
    }
    return err;
}

fs_err fs_schema_set_dequantize(fs_schema *s, size_t field, int dequantize)
{
    if (field >= s->n_fields || s->fields[field].type != FS_FIELD_INTEGER) {
        return FS_ERR_INVALID;
    }
    s->fields[field].dequantize = dequantize != 0;
    return FS_OK;
}

size_t fs_schema_n_fields(const fs_schema *s)
{
    return s->n_fields;
}

int32_t fs_schema_field_index(const fs_schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        if (strlen(s->fields[i].name) == len && memcmp(s->fields[i].name, name, len) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

const char *fs_schema_field_name(const fs_schema *s, size_t field)
{
    return field < s->n_fields ? s->fields[field].name : NULL;
}

fs_field_type fs_schema_field_type(const fs_schema *s, size_t field)
{
    return field < s->n_fields ? s->fields[field].type : FS_FIELD_NUMERIC;
}

fs_transform fs_schema_field_transform(const fs_schema *s, size_t field)
{
    return field < s->n_fields ? s->fields[field].transform : FS_TRANSFORM_NONE;
}

size_t fs_schema_n_levels(const fs_schema *s, size_t field)
{
    return field < s->n_fields ? s->fields[field].n_levels : 0;
}

const char *fs_schema_level_name(const fs_schema *s, size_t field, size_t level)
{
    if (field >= s->n_fields || level >= s->fields[field].n_levels) {
        return NULL;
    }
    return s->fields[field].levels[level];
}

double fs_schema_level_index(const fs_schema *s, size_t field, const char *value, size_t len)
{
    const fs__field *f;
    size_t lo = 0, hi;
    if (field >= s->n_fields || s->fields[field].type != FS_FIELD_CATEGORICAL) {
        return FS_LEVEL_UNKNOWN;
    }
    f = &s->fields[field];
    hi = f->n_levels;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *lv = f->levels[f->level_order[mid]];
        size_t lv_len = strlen(lv);
        int c = memcmp(lv, value, lv_len < len ? lv_len : len);
        if (c == 0) {
            c = lv_len < len ? -1 : (lv_len > len ? 1 : 0);
        }
        if (c == 0) {
            return (double)f->level_order[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return FS_LEVEL_UNKNOWN;
}

fs_err fs_schema_copy(const fs_schema *s, fs_schema **out)
{
    fs_schema *c = NULL;
    fs_err err = fs_schema_create(&c);
    *out = NULL;
    for (size_t i = 0; err == FS_OK && i < s->n_fields; i++) {
        const fs__field *f = &s->fields[i];
        if (f->type == FS_FIELD_CATEGORICAL) {
            err =
                fs_schema_add_categorical(c, f->name, (const char *const *)f->levels, f->n_levels);
        } else {
            err = fs_schema_add_numeric(c, f->name, f->type, f->transform, f->dequantize);
        }
    }
    if (err != FS_OK) {
        fs_schema_free(c);
        return err;
    }
    *out = c;
    return FS_OK;
}

bool fs__schema_equal(const fs_schema *a, const fs_schema *b)
{
    if (a->n_fields != b->n_fields) {
        return false;
    }
    for (size_t i = 0; i < a->n_fields; i++) {
        const fs__field *fa = &a->fields[i], *fb = &b->fields[i];
        if (strcmp(fa->name, fb->name) != 0 || fa->type != fb->type ||
            fa->transform != fb->transform || fa->n_levels != fb->n_levels) {
            return false;
        }
        for (size_t j = 0; j < fa->n_levels; j++) {
            if (strcmp(fa->levels[j], fb->levels[j]) != 0) {
                return false;
            }
        }
    }
    return true;
}

static const char *type_name(fs_field_type t)
{
    switch (t) {
    case FS_FIELD_INTEGER:
        return "integer";
    case FS_FIELD_CATEGORICAL:
        return "categorical";
    case FS_FIELD_NUMERIC:
        break;
    }
    return "numeric";
}

struct cJSON *fs__schema_json(const fs_schema *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *fields = cJSON_AddArrayToObject(root, "fields");
    if (root == NULL || fields == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; i < s->n_fields; i++) {
        const fs__field *f = &s->fields[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(fields, o)) {
            cJSON_Delete(o);
            cJSON_Delete(root);
            return NULL;
        }
        bool ok = cJSON_AddStringToObject(o, "name", f->name) != NULL &&
                  cJSON_AddStringToObject(o, "type", type_name(f->type)) != NULL;
        if (ok && f->type != FS_FIELD_CATEGORICAL) {
            const char *tr = f->transform == FS_TRANSFORM_LOG1P ? "log1p" : "none";
            ok = cJSON_AddStringToObject(o, "transform", tr) != NULL;
            if (ok && f->type == FS_FIELD_INTEGER) {
                ok = cJSON_AddBoolToObject(o, "dequantize", f->dequantize) != NULL;
            }
        } else if (ok) {
            cJSON *lv = cJSON_AddArrayToObject(o, "levels");
            ok = lv != NULL;
            for (size_t j = 0; ok && j < f->n_levels; j++) {
                cJSON *str = cJSON_CreateString(f->levels[j]);
                ok = str != NULL && cJSON_AddItemToArray(lv, str);
                if (!ok) {
                    cJSON_Delete(str);
                }
            }
        }
        if (!ok) {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

fs_err fs__json_take_text(struct cJSON *root, char **out)
{
    char *text;
    *out = NULL;
    if (root == NULL) {
        return FS_ERR_NOMEM;
    }
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL) {
        return FS_ERR_NOMEM;
    }
    *out = fs__strdup(text);
    cJSON_free(text);
    return *out == NULL ? FS_ERR_NOMEM : FS_OK;
}

fs_err fs_schema_format_json(const fs_schema *s, char **out)
{
    return fs__json_take_text(fs__schema_json(s), out);
}

/* Parse one field object into s; non-feature types are skipped. */
static fs_err parse_field(fs_schema *s, const cJSON *o, size_t index, fs_diag *diag)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    const cJSON *transform = cJSON_GetObjectItemCaseSensitive(o, "transform");
    const cJSON *deq = cJSON_GetObjectItemCaseSensitive(o, "dequantize");
    const cJSON *levels = cJSON_GetObjectItemCaseSensitive(o, "levels");
    fs_transform tr = FS_TRANSFORM_NONE;
    fs_err err;
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) || !cJSON_IsString(type)) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "schema: fields[%zu] needs a string \"name\" and \"type\"", index);
    }
    for (const cJSON *k = o->child; k != NULL; k = k->next) {
        static const char *const known[] = { "name",       "type",   "transform",
                                             "dequantize", "levels", "description" };
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            ok = ok || (k->string != NULL && strcmp(k->string, known[i]) == 0);
        }
        if (!ok) {
            return fs__diag(diag, FS_ERR_FORMAT, "schema: fields[%zu] (%s): unknown key \"%s\"",
                            index, name->valuestring, k->string != NULL ? k->string : "");
        }
    }
    if (strcmp(type->valuestring, "ignore") == 0 || strcmp(type->valuestring, "label") == 0) {
        return FS_OK;
    }
    if (transform != NULL) {
        if (!cJSON_IsString(transform) || (strcmp(transform->valuestring, "none") != 0 &&
                                           strcmp(transform->valuestring, "log1p") != 0)) {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "schema: fields[%zu] (%s): \"transform\" must be \"none\" or "
                            "\"log1p\"",
                            index, name->valuestring);
        }
        tr = strcmp(transform->valuestring, "log1p") == 0 ? FS_TRANSFORM_LOG1P : FS_TRANSFORM_NONE;
    }
    if (deq != NULL && !cJSON_IsBool(deq)) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "schema: fields[%zu] (%s): \"dequantize\" must be true or false", index,
                        name->valuestring);
    }
    if (strcmp(type->valuestring, "numeric") == 0 || strcmp(type->valuestring, "integer") == 0) {
        fs_field_type ft =
            strcmp(type->valuestring, "integer") == 0 ? FS_FIELD_INTEGER : FS_FIELD_NUMERIC;
        if (levels != NULL) {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "schema: fields[%zu] (%s): \"levels\" only fit categorical fields",
                            index, name->valuestring);
        }
        err = fs_schema_add_numeric(s, name->valuestring, ft, tr, cJSON_IsTrue(deq));
    } else if (strcmp(type->valuestring, "categorical") == 0) {
        const char **lv = NULL;
        size_t n = 0;
        if (transform != NULL || deq != NULL) {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "schema: fields[%zu] (%s): categorical fields take no transform or "
                            "dequantize",
                            index, name->valuestring);
        }
        if (levels != NULL) {
            if (!cJSON_IsArray(levels)) {
                return fs__diag(diag, FS_ERR_FORMAT,
                                "schema: fields[%zu] (%s): \"levels\" must be an array of "
                                "strings",
                                index, name->valuestring);
            }
            n = (size_t)cJSON_GetArraySize(levels);
            lv = fs__calloc(n == 0 ? 1 : n, sizeof *lv);
            if (lv == NULL) {
                return FS_ERR_NOMEM;
            }
            size_t j = 0;
            for (const cJSON *l = levels->child; l != NULL; l = l->next, j++) {
                if (!cJSON_IsString(l)) {
                    fs__free(lv);
                    return fs__diag(diag, FS_ERR_FORMAT,
                                    "schema: fields[%zu] (%s): levels[%zu] is not a string", index,
                                    name->valuestring, j);
                }
                lv[j] = l->valuestring;
            }
        }
        err = fs_schema_add_categorical(s, name->valuestring, lv, n);
        fs__free(lv);
    } else {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "schema: fields[%zu] (%s): unknown type \"%s\" (numeric, integer, "
                        "categorical, label or ignore)",
                        index, name->valuestring, type->valuestring);
    }
    if (err == FS_ERR_INVALID) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "schema: fields[%zu] (%s): bad or duplicate field or level name", index,
                        name->valuestring);
    }
    return err;
}

fs_err fs__schema_from_json(const struct cJSON *root, fs_schema **out, fs_diag *diag)
{
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    fs_schema *s = NULL;
    fs_err err;
    size_t i = 0;
    *out = NULL;
    if (!cJSON_IsArray(fields)) {
        return fs__diag(diag, FS_ERR_FORMAT, "schema: needs a \"fields\" array");
    }
    err = fs_schema_create(&s);
    for (const cJSON *f = fields->child; err == FS_OK && f != NULL; f = f->next, i++) {
        err = parse_field(s, f, i, diag);
    }
    if (err == FS_OK && s->n_fields == 0) {
        err = fs__diag(diag, FS_ERR_FORMAT, "schema: no feature fields");
    }
    if (err != FS_OK) {
        fs_schema_free(s);
        return err;
    }
    *out = s;
    return FS_OK;
}

fs_err fs_schema_parse_json(const char *json, size_t len, fs_schema **out, fs_diag *diag)
{
    cJSON *root;
    fs_err err;
    *out = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (root == NULL) {
        return fs__diag(diag, FS_ERR_FORMAT, "schema: not valid JSON");
    }
    err = fs__schema_from_json(root, out, diag);
    cJSON_Delete(root);
    return err;
}
