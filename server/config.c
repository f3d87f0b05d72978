/* config.c: defaults, the JSON file, flags, validation and --help of `flowscore serve`. */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum fs_key_kind {
    FS_KEY_STR = 0,
    FS_KEY_U32,
    FS_KEY_U64,
    FS_KEY_BOOL,
    FS_KEY_LEVEL,
    FS_KEY_FORMAT
} fs_key_kind;

typedef struct fs_config_key {
    const char *key;
    fs_key_kind kind;
    size_t offset;
    size_t size; /* bytes of a string field */
    uint64_t min, max;
    const char *help;
} fs_config_key;

#define FS_STR(k, help)                                                                            \
    {                                                                                              \
#k, FS_KEY_STR, offsetof(fs_config, k), sizeof(((fs_config *)0)->k), 0, 0, help            \
    }
#define FS_U32(k, lo, hi, help)                                                                    \
    {                                                                                              \
#k, FS_KEY_U32, offsetof(fs_config, k), 0, lo, hi, help                                    \
    }
#define FS_U64(k, lo, hi, help)                                                                    \
    {                                                                                              \
#k, FS_KEY_U64, offsetof(fs_config, k), 0, lo, hi, help                                    \
    }

static const fs_config_key fs_config_keys[] = {
    FS_STR(listen, "HOST:PORT to listen on ([V6]:PORT for IPv6; port 0 picks a free one)"),
    FS_STR(models_dir, "model repository: <models_dir>/<name>/<version>.fsm"),
    FS_STR(state_dir, "directory for the daemon's own state (spool, trainer)"),
    FS_U32(workers, 0, 1024, "scoring threads; 0 = one per core"),
    FS_U64(max_body_bytes, 64, UINT64_C(1) << 32, "largest request body; larger ones get 413"),
    FS_U32(max_rows_per_request, 1, 10000000, "most records, latents or samples per request"),
    FS_U32(max_batch_rows, 1, 1000000, "most rows in one coalesced engine call"),
    FS_U32(max_queue_delay_us, 0, 1000000, "longest wait to fill a batch; 0 = take what is queued"),
    FS_U32(max_queued_requests, 1, 1000000, "requests waiting for a worker; beyond it 503"),
    FS_U32(queue_timeout_ms, 0, 3600000, "a request queued longer than this gets 503; 0 = never"),
    FS_U32(max_json_depth, 2, 512, "deepest nesting of a request body"),
    FS_U32(max_string_bytes, 16, 1 << 20, "longest string in a request body"),
    FS_U32(connection_limit, 1, 1000000, "most simultaneous connections"),
    FS_U32(per_ip_connection_limit, 0, 1000000, "most connections from one address; 0 = no limit"),
    FS_U32(connection_timeout_s, 1, 86400, "idle connections are closed after this"),
    FS_U32(connection_memory_limit_bytes, 4096, 1 << 24, "per-connection buffer memory"),
    FS_U32(drain_timeout_s, 0, 86400, "on SIGTERM, how long requests in flight may take"),
    FS_STR(admin_token_file, "file holding the admin bearer token (else $FLOWSCORE_ADMIN_TOKEN)"),
    { "log_level", FS_KEY_LEVEL, offsetof(fs_config, log_level), 0, 0, 0,
      "error | warn | info | debug" },
    { "log_format", FS_KEY_FORMAT, offsetof(fs_config, log_format), 0, 0, 0, "text | json" },
    { "watch", FS_KEY_BOOL, offsetof(fs_config, watch), 0, 0, 1,
      "reload when model files change (inotify)" },
    FS_U32(watch_debounce_ms, 0, 600000, "quiet time after a file change before reloading"),
    FS_U32(rescan_interval_s, 0, 86400, "periodic rescan of models_dir; 0 = off"),
    FS_STR(tls_cert_file, "PEM certificate: with tls_key_file, serve HTTPS"),
    FS_STR(tls_key_file, "PEM private key for tls_cert_file"),
};

#define FS_N_KEYS (sizeof fs_config_keys / sizeof fs_config_keys[0])

static int fail(char *err, size_t errlen, const char *fmt, ...) FS_LOG_PRINTF(3, 4);

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void fs_config_defaults(fs_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen, sizeof cfg->listen, "%s", "127.0.0.1:8080");
    snprintf(cfg->models_dir, sizeof cfg->models_dir, "%s", "models");
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s", "state");
    cfg->workers = 0;
    cfg->max_body_bytes = 8388608;
    cfg->max_rows_per_request = 65536;
    cfg->max_batch_rows = 256;
    cfg->max_queue_delay_us = 0;
    cfg->max_queued_requests = 4096;
    cfg->queue_timeout_ms = 30000;
    cfg->max_json_depth = 64;
    cfg->max_string_bytes = 4096;
    cfg->connection_limit = 1000;
    cfg->per_ip_connection_limit = 256;
    cfg->connection_timeout_s = 30;
    cfg->connection_memory_limit_bytes = 32768;
    cfg->drain_timeout_s = 30;
    cfg->log_level = FS_LOG_INFO;
    cfg->log_format = FS_LOG_FORMAT_TEXT;
    cfg->watch = 1;
    cfg->watch_debounce_ms = 250;
    cfg->rescan_interval_s = 30;
}

static const fs_config_key *find_key(const char *key)
{
    for (size_t i = 0; i < FS_N_KEYS; i++) {
        if (strcmp(fs_config_keys[i].key, key) == 0) {
            return &fs_config_keys[i];
        }
    }
    return NULL;
}

/* Store an unsigned value after the range check; who names the key or flag in messages. */
static int set_uint(fs_config *cfg, const fs_config_key *k, uint64_t v, const char *who, char *err,
                    size_t errlen)
{
    if (v < k->min || v > k->max) {
        return fail(err, errlen, "%s: %llu is out of range [%llu, %llu]", who,
                    (unsigned long long)v, (unsigned long long)k->min, (unsigned long long)k->max);
    }
    char *base = (char *)cfg;
    if (k->kind == FS_KEY_U32) {
        uint32_t v32 = (uint32_t)v;
        memcpy(base + k->offset, &v32, sizeof v32);
    } else {
        memcpy(base + k->offset, &v, sizeof v);
    }
    return 0;
}

static int set_str(fs_config *cfg, const fs_config_key *k, const char *v, const char *who,
                   char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (n >= k->size) {
        return fail(err, errlen, "%s: value is longer than %zu bytes", who, k->size - 1);
    }
    memcpy((char *)cfg + k->offset, v, n + 1);
    return 0;
}

static int set_enum_text(fs_config *cfg, const fs_config_key *k, const char *v, const char *who,
                         char *err, size_t errlen)
{
    char *base = (char *)cfg;
    if (k->kind == FS_KEY_LEVEL) {
        fs_log_level lv;
        if (fs_log_parse_level(v, &lv) != 0) {
            return fail(err, errlen, "%s: '%s' is not one of error, warn, info, debug", who, v);
        }
        memcpy(base + k->offset, &lv, sizeof lv);
        return 0;
    }
    fs_log_format f;
    if (fs_log_parse_format(v, &f) != 0) {
        return fail(err, errlen, "%s: '%s' is not one of text, json", who, v);
    }
    memcpy(base + k->offset, &f, sizeof f);
    return 0;
}

static int apply_json_item(fs_config *cfg, const fs_config_key *k, const cJSON *item, char *err,
                           size_t errlen)
{
    char who[96];
    snprintf(who, sizeof who, "config key %s", k->key);
    switch (k->kind) {
    case FS_KEY_STR:
        if (!cJSON_IsString(item)) {
            return fail(err, errlen, "%s: expected a string", who);
        }
        return set_str(cfg, k, item->valuestring, who, err, errlen);
    case FS_KEY_U32:
    case FS_KEY_U64: {
        double d = item->valuedouble;
        if (!cJSON_IsNumber(item) || !isfinite(d) || d < 0 || floor(d) != d || d > 1.8e19) {
            return fail(err, errlen, "%s: expected a non-negative integer", who);
        }
        return set_uint(cfg, k, (uint64_t)d, who, err, errlen);
    }
    case FS_KEY_BOOL:
        if (!cJSON_IsBool(item)) {
            return fail(err, errlen, "%s: expected true or false", who);
        }
        *(int *)((char *)cfg + k->offset) = cJSON_IsTrue(item) ? 1 : 0;
        return 0;
    case FS_KEY_LEVEL:
    case FS_KEY_FORMAT:
        if (!cJSON_IsString(item)) {
            return fail(err, errlen, "%s: expected a string", who);
        }
        return set_enum_text(cfg, k, item->valuestring, who, err, errlen);
    }
    return fail(err, errlen, "%s: unsupported key kind", who);
}

int fs_config_parse_json(fs_config *cfg, const char *json, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    int rc = 0;
    if (root == NULL) {
        size_t off = (end != NULL && end >= json) ? (size_t)(end - json) : 0;
        return fail(err, errlen, "configuration is not valid JSON (near byte %zu)", off);
    }
    if (!cJSON_IsObject(root)) {
        rc = fail(err, errlen, "configuration must be a JSON object");
        goto out;
    }
    for (const cJSON *it = root->child; it != NULL; it = it->next) {
        const fs_config_key *k = find_key(it->string);
        if (strcmp(it->string, "admin_token") == 0) {
            /* A secret belongs in a file or the environment, never in a world-readable config. */
            rc = fail(err, errlen,
                      "config key admin_token is not accepted: put the token in "
                      "admin_token_file or $FLOWSCORE_ADMIN_TOKEN");
            goto out;
        }
        if (k == NULL) {
            rc = fail(err, errlen, "unknown config key '%s'", it->string);
            goto out;
        }
        for (const cJSON *prev = root->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                rc = fail(err, errlen, "config key %s appears twice", it->string);
                goto out;
            }
        }
        rc = apply_json_item(cfg, k, it, err, errlen);
        if (rc != 0) {
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

int fs_config_load_file(fs_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int rc = -1;
    char ebuf[128];
    if (f == NULL) {
        int e = errno;
        return fail(err, errlen, "cannot open config file %s: %s", path,
                    strerror_r(e, ebuf, sizeof ebuf) == 0 ? ebuf : "error");
    }
    buf = malloc(1 << 20);
    if (buf == NULL) {
        fail(err, errlen, "out of memory reading %s", path);
        goto out;
    }
    n = fread(buf, 1, 1 << 20, f);
    if (ferror(f) || n == (1 << 20)) {
        fail(err, errlen, "cannot read config file %s (error or larger than 1 MiB)", path);
        goto out;
    }
    char inner[400];
    if (fs_config_parse_json(cfg, buf, n, inner, sizeof inner) != 0) {
        fail(err, errlen, "%s: %s", path, inner);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* "max-body-bytes" -> "max_body_bytes" in out (outlen bytes); -1 if too long. */
static int flag_to_key(const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    if (n + 1 > outlen) {
        return -1;
    }
    for (size_t i = 0; i <= n; i++) {
        out[i] = name[i] == '-' ? '_' : name[i];
    }
    return 0;
}

int fs_config_is_flag(const char *name, int *is_bool)
{
    char key[64];
    const fs_config_key *k = NULL;
    if (flag_to_key(name, key, sizeof key) == 0) {
        k = find_key(key);
    }
    if (is_bool != NULL) {
        *is_bool = k != NULL && k->kind == FS_KEY_BOOL;
    }
    return k != NULL;
}

/* Strict decimal: digits only, no sign, no spaces, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return -1;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int fs_config_set_flag(fs_config *cfg, const char *name, const char *value, char *err,
                       size_t errlen)
{
    char key[64], who[96];
    const fs_config_key *k = NULL;
    if (flag_to_key(name, key, sizeof key) == 0) {
        k = find_key(key);
    }
    if (k == NULL) {
        return fail(err, errlen, "unknown option --%s (see --help)", name);
    }
    snprintf(who, sizeof who, "--%s", name);
    switch (k->kind) {
    case FS_KEY_STR:
        return set_str(cfg, k, value, who, err, errlen);
    case FS_KEY_U32:
    case FS_KEY_U64: {
        uint64_t v;
        if (parse_u64(value, &v) != 0) {
            return fail(err, errlen, "%s: '%s' is not a non-negative integer", who, value);
        }
        return set_uint(cfg, k, v, who, err, errlen);
    }
    case FS_KEY_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
            *(int *)((char *)cfg + k->offset) = 1;
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            *(int *)((char *)cfg + k->offset) = 0;
            return 0;
        }
        return fail(err, errlen, "%s: '%s' is not true or false", who, value);
    case FS_KEY_LEVEL:
    case FS_KEY_FORMAT:
        return set_enum_text(cfg, k, value, who, err, errlen);
    }
    return fail(err, errlen, "%s: unsupported option kind", who);
}

/* Split "host:port" / "[v6]:port" into cfg->listen_host and cfg->listen_port. */
static int split_listen(fs_config *cfg, char *err, size_t errlen)
{
    const char *s = cfg->listen;
    const char *colon = NULL;
    size_t host_len;
    uint64_t port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return fail(err, errlen, "listen: '%s' is not [IPV6]:PORT", s);
        }
        colon = close + 1;
        s++;
        host_len = (size_t)(close - s);
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return fail(err, errlen, "listen: '%s' is not HOST:PORT", s);
        }
        host_len = (size_t)(colon - s);
    }
    if (host_len == 0 || host_len >= sizeof cfg->listen_host) {
        return fail(err, errlen, "listen: '%s' has no host (use 0.0.0.0 for every address)",
                    cfg->listen);
    }
    if (parse_u64(colon + 1, &port) != 0 || port > 65535) {
        return fail(err, errlen, "listen: port '%s' is not a number in [0, 65535]", colon + 1);
    }
    memcpy(cfg->listen_host, s, host_len);
    cfg->listen_host[host_len] = '\0';
    cfg->listen_port = (uint16_t)port;
    return 0;
}

/* Read the token file: one line, surrounding whitespace trimmed. */
static int read_token(fs_config *cfg, char *err, size_t errlen)
{
    char buf[FS_CONFIG_TOKEN_MAX + 2];
    char ebuf[128];
    const char *env = getenv("FLOWSCORE_ADMIN_TOKEN");
    size_t n = 0;
    if (cfg->admin_token_file[0] != '\0') {
        FILE *f = fopen(cfg->admin_token_file, "rb");
        if (f == NULL) {
            int e = errno;
            return fail(err, errlen, "admin_token_file: cannot open %s: %s", cfg->admin_token_file,
                        strerror_r(e, ebuf, sizeof ebuf) == 0 ? ebuf : "error");
        }
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
    } else if (env != NULL && env[0] != '\0') {
        n = strlen(env);
        if (n > sizeof buf - 1) {
            n = sizeof buf - 1;
        }
        memcpy(buf, env, n);
    } else {
        cfg->admin_token_len = 0;
        return 0;
    }
    buf[n] = '\0';
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t')) {
        buf[--n] = '\0';
    }
    if (n == 0) {
        return fail(err, errlen, "the admin token is empty");
    }
    if (n >= FS_CONFIG_TOKEN_MAX) {
        return fail(err, errlen, "the admin token is longer than %d bytes",
                    FS_CONFIG_TOKEN_MAX - 1);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c <= 0x20 || c >= 0x7f) {
            return fail(err, errlen, "the admin token must be printable ASCII without spaces");
        }
    }
    memcpy(cfg->admin_token, buf, n + 1);
    cfg->admin_token_len = n;
    return 0;
}

int fs_config_finish(fs_config *cfg, char *err, size_t errlen)
{
    if (split_listen(cfg, err, errlen) != 0) {
        return -1;
    }
    if (cfg->models_dir[0] == '\0') {
        return fail(err, errlen, "models_dir must not be empty");
    }
    if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0')) {
        return fail(err, errlen, "tls_cert_file and tls_key_file must be set together");
    }
    if (cfg->per_ip_connection_limit > cfg->connection_limit) {
        return fail(err, errlen, "per_ip_connection_limit (%u) exceeds connection_limit (%u)",
                    cfg->per_ip_connection_limit, cfg->connection_limit);
    }
    return read_token(cfg, err, errlen);
}

void fs_config_print_help(FILE *out)
{
    fs_config d;
    fs_config_defaults(&d);
    char *json = fs_config_format_json(&d);
    cJSON *root = json != NULL ? cJSON_Parse(json) : NULL;
    fprintf(out, "usage: flowscore serve [--config FILE] [--check-config] [OPTION VALUE]...\n\n"
                 "Serve the models of a repository over HTTP/JSON (see docs/architecture.md).\n\n"
                 "  --config FILE      read these keys from a JSON file (config/flowscore.json)\n"
                 "  --check-config     validate the configuration and exit\n"
                 "  --help             this text\n\n"
                 "Options (config key in brackets; flags override the file):\n");
    for (size_t i = 0; i < FS_N_KEYS; i++) {
        const fs_config_key *k = &fs_config_keys[i];
        char flag[64], def[128] = "";
        for (size_t j = 0; k->key[j] != '\0' && j + 1 < sizeof flag; j++) {
            flag[j] = k->key[j] == '_' ? '-' : k->key[j];
            flag[j + 1] = '\0';
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k->key);
        if (cJSON_IsString(v)) {
            snprintf(def, sizeof def, "\"%s\"", v->valuestring);
        } else if (v != NULL) {
            char *p = cJSON_PrintUnformatted(v);
            snprintf(def, sizeof def, "%s", p != NULL ? p : "?");
            cJSON_free(p);
        }
        fprintf(out, "  --%-30s %s [%s, default %s]\n", flag, k->help, k->key, def);
    }
    fprintf(out, "\nThe admin token is read from admin_token_file or $FLOWSCORE_ADMIN_TOKEN, never "
                 "from a flag.\nBoolean options take true or false (--watch false).\n");
    cJSON_Delete(root);
    free(json);
}

char *fs_config_format_json(const fs_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL, *out = NULL;
    const char *base = (const char *)cfg;
    if (root == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < FS_N_KEYS; i++) {
        const fs_config_key *k = &fs_config_keys[i];
        const void *p = base + k->offset;
        cJSON *item = NULL;
        switch (k->kind) {
        case FS_KEY_STR:
            item = cJSON_CreateString((const char *)p);
            break;
        case FS_KEY_U32: {
            uint32_t v;
            memcpy(&v, p, sizeof v);
            item = cJSON_CreateNumber((double)v);
            break;
        }
        case FS_KEY_U64: {
            uint64_t v;
            memcpy(&v, p, sizeof v);
            item = cJSON_CreateNumber((double)v);
            break;
        }
        case FS_KEY_BOOL:
            item = cJSON_CreateBool(*(const int *)p);
            break;
        case FS_KEY_LEVEL:
            item = cJSON_CreateString(fs_log_level_name(*(const fs_log_level *)p));
            break;
        case FS_KEY_FORMAT:
            item = cJSON_CreateString(*(const fs_log_format *)p == FS_LOG_FORMAT_JSON ? "json"
                                                                                      : "text");
            break;
        }
        if (item == NULL) {
            goto out;
        }
        cJSON_AddItemToObject(root, k->key, item);
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
