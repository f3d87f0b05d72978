/*
 * config_models.c: the "models" object of the configuration: models trained from the stream
 * (a schema and a spec, no version on disk yet) and per-model trainer settings (issue 5).
 *
 *   "models": {"wide": {"schema": "schemas/wide.json",
 *                       "spec": "specs/small.json" | {"preset": "realnvp", "blocks": 2},
 *                       "trainer": {"min_new_records": 500, "warm_start": false}}}
 */
#include "config.h"

#include "config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define fail fs__config_fail

/* [A-Za-z0-9._-]{1,64}, not "." or "..": a model name is a directory name, never a path. */
static int name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static int parse_overrides(fs_model_config *m, const cJSON *obj, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        return fail(err, errlen, "config key models.%s.trainer: expected an object", m->name);
    }
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        char key[96], who[200];
        snprintf(key, sizeof key, "trainer.%.80s", it->string);
        snprintf(who, sizeof who, "config key models.%s.%s", m->name, key);
        const fs_config_key *k = fs__config_key(key);
        if (k == NULL) {
            return fail(err, errlen, "unknown config key 'models.%s.%s'", m->name, key);
        }
        if (!fs__config_key_per_model(k)) {
            return fail(err, errlen, "%s: set it in the global trainer object, not per model", who);
        }
        size_t bit = fs__config_key_index(k);
        if (m->trainer_set & (UINT64_C(1) << bit)) {
            return fail(err, errlen, "%s appears twice", who);
        }
        if (fs__config_set_trainer_json(&m->trainer, k, it, who, err, errlen) != 0) {
            return -1;
        }
        m->trainer_set |= UINT64_C(1) << bit;
    }
    return 0;
}

static int parse_entry(fs_model_config *m, const cJSON *obj, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        return fail(err, errlen, "config key models.%s: expected an object", m->name);
    }
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                return fail(err, errlen, "config key models.%s.%s appears twice", m->name,
                            it->string);
            }
        }
        if (strcmp(it->string, "schema") == 0) {
            if (!cJSON_IsString(it) || it->valuestring[0] == '\0' ||
                strlen(it->valuestring) >= sizeof m->schema_file) {
                return fail(err, errlen,
                            "config key models.%s.schema: expected the path of a schema file",
                            m->name);
            }
            snprintf(m->schema_file, sizeof m->schema_file, "%s", it->valuestring);
        } else if (strcmp(it->string, "spec") == 0) {
            if (cJSON_IsString(it) && it->valuestring[0] != '\0' &&
                strlen(it->valuestring) < sizeof m->spec_file) {
                snprintf(m->spec_file, sizeof m->spec_file, "%s", it->valuestring);
            } else if (cJSON_IsObject(it)) {
                char *text = cJSON_PrintUnformatted(it);
                size_t n = text != NULL ? strlen(text) : 0;
                if (text == NULL || n >= sizeof m->spec_json) {
                    cJSON_free(text);
                    return fail(err, errlen,
                                "config key models.%s.spec: an inline spec must be shorter than "
                                "%d bytes (put it in a file)",
                                m->name, FS_CONFIG_SPEC_MAX);
                }
                memcpy(m->spec_json, text, n + 1);
                cJSON_free(text);
            } else {
                return fail(err, errlen,
                            "config key models.%s.spec: expected the path of a spec file or a "
                            "spec object",
                            m->name);
            }
        } else if (strcmp(it->string, "trainer") == 0) {
            if (parse_overrides(m, it, err, errlen) != 0) {
                return -1;
            }
        } else {
            return fail(err, errlen,
                        "unknown config key 'models.%s.%s' (expected schema, spec, trainer)",
                        m->name, it->string);
        }
    }
    return 0;
}

int fs__config_parse_models(fs_config *cfg, const cJSON *models, char *err, size_t errlen)
{
    size_t n = 0;
    if (!cJSON_IsObject(models)) {
        return fail(err, errlen, "config key models: expected an object of model names");
    }
    memset(cfg->models, 0, sizeof cfg->models);
    cfg->n_models = 0;
    for (const cJSON *it = models->child; it != NULL; it = it->next) {
        if (!name_ok(it->string)) {
            return fail(err, errlen,
                        "config key models: '%.80s' is not a model name ([A-Za-z0-9._-]{1,64})",
                        it->string);
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(cfg->models[i].name, it->string) == 0) {
                return fail(err, errlen, "config key models.%s appears twice", it->string);
            }
        }
        if (n == FS_CONFIG_MAX_MODELS) {
            return fail(err, errlen, "config key models: at most %d models", FS_CONFIG_MAX_MODELS);
        }
        fs_model_config *m = &cfg->models[n];
        snprintf(m->name, sizeof m->name, "%s", it->string);
        if (parse_entry(m, it, err, errlen) != 0) {
            return -1;
        }
        cfg->n_models = ++n;
    }
    return 0;
}

/* Read a small text file (at most 4 MiB) into a NUL-terminated malloc'd buffer. */
static char *read_text(const char *path, size_t *len, char *err, size_t errlen)
{
    char eb[128];
    FILE *f = fopen(path, "rb");
    size_t cap = 4u << 20;
    char *buf = NULL;
    if (f == NULL) {
        int e = errno;
        fail(err, errlen, "cannot open %s: %s", path,
             strerror_r(e, eb, sizeof eb) == 0 ? eb : "error");
        return NULL;
    }
    buf = malloc(cap + 1);
    if (buf != NULL) {
        *len = fread(buf, 1, cap, f);
        if (ferror(f) || *len == cap) {
            fail(err, errlen, "cannot read %s (error or larger than 4 MiB)", path);
            free(buf);
            buf = NULL;
        } else {
            buf[*len] = '\0';
        }
    } else {
        fail(err, errlen, "out of memory reading %s", path);
    }
    fclose(f);
    return buf;
}

int fs_config_model_load(const fs_model_config *m, fs_schema **schema, fs_spec **spec, char *err,
                         size_t errlen)
{
    fs_diag diag = { "" };
    size_t len = 0;
    char inner[300];
    char *text = NULL;
    fs_err e;
    *schema = NULL;
    *spec = NULL;
    text = read_text(m->schema_file, &len, inner, sizeof inner);
    if (text == NULL) {
        return fail(err, errlen, "models.%s.schema: %s", m->name, inner);
    }
    e = fs_schema_parse_json(text, len, schema, &diag);
    free(text);
    if (e != FS_OK) {
        return fail(err, errlen, "models.%s.schema: %s: %s", m->name, m->schema_file,
                    diag.msg[0] != '\0' ? diag.msg : fs_strerror(e));
    }
    if (m->spec_file[0] != '\0') {
        text = read_text(m->spec_file, &len, inner, sizeof inner);
        if (text == NULL) {
            fs_schema_free(*schema);
            *schema = NULL;
            return fail(err, errlen, "models.%s.spec: %s", m->name, inner);
        }
        e = fs_spec_parse_json(text, len, spec, &diag);
        free(text);
    } else {
        e = fs_spec_parse_json(m->spec_json, strlen(m->spec_json), spec, &diag);
    }
    if (e != FS_OK) {
        fs_schema_free(*schema);
        *schema = NULL;
        return fail(err, errlen, "models.%s.spec: %s", m->name,
                    diag.msg[0] != '\0' ? diag.msg : fs_strerror(e));
    }
    return 0;
}

int fs__config_finish_models(fs_config *cfg, char *err, size_t errlen)
{
    size_t n_keys;
    const fs_config_key *keys = fs__config_keys(&n_keys);
    for (size_t i = 0; i < cfg->n_models; i++) {
        fs_model_config *m = &cfg->models[i];
        for (size_t k = 0; k < n_keys; k++) {
            if (strncmp(keys[k].key, "trainer.", 8) == 0 &&
                (m->trainer_set & (UINT64_C(1) << k)) == 0) {
                fs__config_trainer_copy_key(&m->trainer, &cfg->trainer, &keys[k]);
            }
        }
        int has_spec = m->spec_file[0] != '\0' || m->spec_json[0] != '\0';
        if ((m->schema_file[0] != '\0') != has_spec) {
            return fail(err, errlen,
                        "models.%s: schema and spec go together (a model trained from the "
                        "stream needs both)",
                        m->name);
        }
        if (has_spec) {
            fs_schema *s = NULL;
            fs_spec *p = NULL;
            if (fs_config_model_load(m, &s, &p, err, errlen) != 0) {
                return -1;
            }
            fs_schema_free(s);
            fs_spec_free(p);
        }
    }
    return 0;
}

cJSON *fs__config_format_models(const fs_config *cfg)
{
    cJSON *models = cJSON_CreateObject();
    for (size_t i = 0; models != NULL && i < cfg->n_models; i++) {
        const fs_model_config *m = &cfg->models[i];
        cJSON *o = cJSON_CreateObject();
        cJSON *t = cJSON_CreateObject();
        if (o == NULL || t == NULL ||
            fs__config_trainer_json(&m->trainer, m->trainer_set, t) != 0) {
            cJSON_Delete(o);
            cJSON_Delete(t);
            cJSON_Delete(models);
            return NULL;
        }
        cJSON_AddItemToObject(models, m->name, o);
        if (m->schema_file[0] != '\0') {
            cJSON_AddStringToObject(o, "schema", m->schema_file);
        }
        if (m->spec_file[0] != '\0') {
            cJSON_AddStringToObject(o, "spec", m->spec_file);
        } else if (m->spec_json[0] != '\0') {
            cJSON *spec = cJSON_Parse(m->spec_json);
            if (spec != NULL) {
                cJSON_AddItemToObject(o, "spec", spec);
            }
        }
        cJSON_AddItemToObject(o, "trainer", t);
    }
    return models;
}
