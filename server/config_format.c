/* config_format.c: the configuration as JSON (--check-config) and as --help text. */
#include "config.h"

#include "config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One key's value as a new cJSON item (NULL when out of memory). */
static cJSON *key_json(const fs_config_key *k, const void *p)
{
    switch (k->kind) {
    case FS_KEY_STR:
        return cJSON_CreateString((const char *)p);
    case FS_KEY_U32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return cJSON_CreateNumber((double)v);
    }
    case FS_KEY_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return cJSON_CreateNumber((double)v);
    }
    case FS_KEY_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        return cJSON_CreateNumber(v);
    }
    case FS_KEY_BOOL:
        return cJSON_CreateBool(*(const int *)p);
    case FS_KEY_LEVEL:
        return cJSON_CreateString(fs_log_level_name(*(const fs_log_level *)p));
    case FS_KEY_FORMAT:
        return cJSON_CreateString(*(const fs_log_format *)p == FS_LOG_FORMAT_JSON ? "json"
                                                                                  : "text");
    case FS_KEY_ENUM: {
        int v = *(const int *)p;
        int n = 0;
        while (k->choices[n] != NULL) {
            n++;
        }
        return cJSON_CreateString(v >= 0 && v < n ? k->choices[v] : "?");
    }
    }
    return NULL;
}

int fs__config_trainer_json(const fs_trainer_config *t, uint64_t mask, cJSON *obj)
{
    size_t n_keys;
    const fs_config_key *keys = fs__config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++) {
        const fs_config_key *k = &keys[i];
        if (strncmp(k->key, "trainer.", 8) != 0 || (mask & (UINT64_C(1) << i)) == 0) {
            continue;
        }
        cJSON *item = key_json(k, (const char *)t + (k->offset - offsetof(fs_config, trainer)));
        if (item == NULL) {
            return -1;
        }
        cJSON_AddItemToObject(obj, k->key + 8, item);
    }
    return 0;
}

void fs_config_print_help(FILE *out)
{
    fs_config *d = malloc(sizeof *d);
    if (d == NULL) {
        return;
    }
    fs_config_defaults(d);
    fprintf(out, "usage: flowscore serve [--config FILE] [--check-config] [OPTION VALUE]...\n\n"
                 "Serve the models of a repository over HTTP/JSON (see docs/architecture.md).\n\n"
                 "  --config FILE      read these keys from a JSON file (config/flowscore.json)\n"
                 "  --check-config     validate the configuration and exit\n"
                 "  --help             this text\n\n"
                 "Options (config key in brackets; flags override the file):\n");
    size_t n_keys;
    const fs_config_key *keys = fs__config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++) {
        const fs_config_key *k = &keys[i];
        char flag[64], def[128] = "";
        fs__config_key_flag(k, flag, sizeof flag);
        cJSON *v = key_json(k, (const char *)d + k->offset);
        if (cJSON_IsString(v)) {
            snprintf(def, sizeof def, "\"%s\"", v->valuestring);
        } else if (v != NULL) {
            char *p = cJSON_PrintUnformatted(v);
            snprintf(def, sizeof def, "%s", p != NULL ? p : "?");
            cJSON_free(p);
        }
        cJSON_Delete(v);
        fprintf(out, "  --%-30s %s [%s, default %s]\n", flag, k->help, k->key, def);
    }
    fprintf(out, "\nThe admin token is read from admin_token_file or $FLOWSCORE_ADMIN_TOKEN, never "
                 "from a flag.\nBoolean options take true or false (--watch false).\n"
                 "Models trained from the stream, and per-model trainer settings, are configured "
                 "in the file only:\n  \"models\": {\"NAME\": {\"schema\": \"FILE.json\", "
                 "\"spec\": \"FILE.json\" | {...}, \"trainer\": {KEY: VALUE, ...}}}\n");
    free(d);
}

char *fs_config_format_json(const fs_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *trainer = cJSON_CreateObject();
    cJSON *models = fs__config_format_models(cfg);
    char *text = NULL, *out = NULL;
    if (root == NULL || trainer == NULL || models == NULL) {
        cJSON_Delete(trainer);
        cJSON_Delete(models);
        goto out;
    }
    size_t n_keys;
    const fs_config_key *keys = fs__config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++) {
        const fs_config_key *k = &keys[i];
        if (strncmp(k->key, "trainer.", 8) == 0) {
            continue;
        }
        cJSON *item = key_json(k, (const char *)cfg + k->offset);
        if (item == NULL) {
            cJSON_Delete(trainer);
            cJSON_Delete(models);
            goto out;
        }
        cJSON_AddItemToObject(root, k->key, item);
    }
    cJSON_AddItemToObject(root, "trainer", trainer);
    cJSON_AddItemToObject(root, "models", models);
    if (fs__config_trainer_json(&cfg->trainer, UINT64_MAX, trainer) != 0) {
        goto out;
    }
    text = cJSON_Print(root);
    if (text != NULL) {
        /* Hand back a malloc'd copy so that callers free() it like every other string. */
        size_t n = strlen(text);
        out = malloc(n + 1);
        if (out != NULL) {
            memcpy(out, text, n + 1);
        }
        cJSON_free(text);
    }
out:
    cJSON_Delete(root);
    return out;
}
