/* config.c: defaults, the JSON file, flags, validation and --help of `flowscore serve`. */
#include "config.h"

#include "config_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS_STR(k, help)                                                                            \
    {                                                                                              \
#k, FS_KEY_STR, offsetof(fs_config, k), sizeof(((fs_config *)0)->k), 0, 0, help, 0, 0,     \
            NULL, 0                                                                                \
    }
#define FS_U32(k, lo, hi, help)                                                                    \
    {                                                                                              \
#k, FS_KEY_U32, offsetof(fs_config, k), 0, lo, hi, help, 0, 0, NULL, 0                     \
    }
#define FS_U64(k, lo, hi, help)                                                                    \
    {                                                                                              \
#k, FS_KEY_U64, offsetof(fs_config, k), 0, lo, hi, help, 0, 0, NULL, 0                     \
    }

#define FS_T_OFF(k) offsetof(fs_config, trainer.k)
#define FS_T_U32(k, lo, hi, help)                                                                  \
    {                                                                                              \
        "trainer." #k, FS_KEY_U32, FS_T_OFF(k), 0, lo, hi, help, 0, 0, NULL, 1                     \
    }
#define FS_T_U64(k, lo, hi, help)                                                                  \
    {                                                                                              \
        "trainer." #k, FS_KEY_U64, FS_T_OFF(k), 0, lo, hi, help, 0, 0, NULL, 1                     \
    }
#define FS_T_F64(k, lo, hi, help)                                                                  \
    {                                                                                              \
        "trainer." #k, FS_KEY_F64, FS_T_OFF(k), 0, 0, 0, help, lo, hi, NULL, 1                     \
    }
#define FS_T_BOOL(k, help)                                                                         \
    {                                                                                              \
        "trainer." #k, FS_KEY_BOOL, FS_T_OFF(k), 0, 0, 1, help, 0, 0, NULL, 1                      \
    }
#define FS_T_ENUM(k, names, per_model, help)                                                       \
    {                                                                                              \
        "trainer." #k, FS_KEY_ENUM, FS_T_OFF(k), 0, 0, 0, help, 0, 0, names, per_model             \
    }

static const char *const fs_optimizer_names[] = { "adam", "sgd", NULL };

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
      "error | warn | info | debug", 0, 0, NULL, 0 },
    { "log_format", FS_KEY_FORMAT, offsetof(fs_config, log_format), 0, 0, 0, "text | json", 0, 0,
      NULL, 0 },
    { "watch", FS_KEY_BOOL, offsetof(fs_config, watch), 0, 0, 1,
      "reload when model files change (inotify)", 0, 0, NULL, 0 },
    FS_U32(watch_debounce_ms, 0, 600000, "quiet time after a file change before reloading"),
    FS_U32(rescan_interval_s, 0, 86400, "periodic rescan of models_dir; 0 = off"),
    FS_STR(tls_cert_file, "PEM certificate: with tls_key_file, serve HTTPS"),
    FS_STR(tls_key_file, "PEM private key for tls_cert_file"),
    FS_T_BOOL(enabled, "accept records and refit models in the background"),
    FS_T_U64(min_new_records, 0, UINT64_C(1) << 40,
             "refit once this many records arrived since the last refit; 0 = off"),
    FS_T_U64(min_refit_records, 100, UINT64_C(1) << 40,
             "usable records a refit needs; with fewer it fails and publishes nothing"),
    FS_T_U32(refit_interval_s, 0, 31536000, "refit this often when records arrived; 0 = off"),
    FS_T_BOOL(warm_start, "start refits from the serving model (else from scratch)"),
    FS_T_F64(holdout_fraction, 0.01, 0.9, "share of the most recent records that judges a refit"),
    FS_T_U32(min_holdout_rows, 50, 10000000,
             "holdout rows a refit needs to be judged and to calibrate its threshold"),
    FS_T_F64(accept_margin_nats, -1e6, 1e6,
             "accept a candidate whose holdout NLL + its noise is at most the served one's + this"),
    FS_T_U64(spool_max_records, 10, UINT64_C(1) << 32, "records a model's spool keeps"),
    FS_T_ENUM(spool_policy, fs__spool_policy_names, 1,
              "reservoir (uniform sample of the stream) | window (most recent)"),
    FS_T_BOOL(exclude_anomalies, "leave records above the served threshold out of refits"),
    FS_T_U32(burst_window, 10, 1000000, "records the anomaly-burst detector looks at"),
    FS_T_F64(burst_share, 0.0, 1.0, "a burst: more than this share of the window is anomalous"),
    FS_T_U32(epochs, 1, 100000, "epochs of a refit"),
    FS_T_F64(lr, 1e-12, 10.0, "learning rate of a refit"),
    FS_T_U32(batch_size, 1, 1000000, "rows per optimiser step of a refit"),
    FS_T_ENUM(optimizer, fs_optimizer_names, 1, "adam | sgd"),
    FS_T_U64(seed, 0, UINT64_MAX, "seed of a refit (shuffling, splits, initialisation)"),
    FS_T_U32(patience, 1, 100000, "epochs without improvement before a refit stops early"),
    FS_T_U32(max_train_seconds, 0, 604800,
             "end a refit after the epoch that crosses this; 0 = none"),
    FS_T_ENUM(priority, fs__trainer_priority_names, 0,
              "trainer thread: low (nice 19) | idle (SCHED_IDLE) | normal"),
};

#define FS_N_KEYS (sizeof fs_config_keys / sizeof fs_config_keys[0])

int fs__config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#define fail fs__config_fail

const char *const fs__spool_policy_names[] = { "reservoir", "window", NULL };
const char *const fs__trainer_priority_names[] = { "idle", "low", "normal", NULL };

static void trainer_defaults(fs_trainer_config *t)
{
    t->enabled = 1;
    t->min_new_records = 10000;
    t->min_refit_records = 1000; /* 200 holdout rows at holdout_fraction 0.2 */
    t->refit_interval_s = 0;
    t->warm_start = 1;
    t->holdout_fraction = 0.2;
    t->min_holdout_rows = 200; /* the engine's own minimum of calibration rows */
    t->accept_margin_nats = 0.0;
    t->spool_max_records = 100000;
    t->spool_policy = FS_SPOOL_RESERVOIR;
    t->exclude_anomalies = 1;
    t->burst_window = 1000;
    t->burst_share = 0.2;
    t->epochs = 5;
    t->lr = 1e-4;
    t->batch_size = 256;
    t->optimizer = 0; /* adam */
    t->seed = 0;
    t->patience = 5;
    t->max_train_seconds = 0;
    t->priority = FS_TRAINER_PRIO_LOW; /* measured: SCHED_IDLE costs the workers more */
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
    trainer_defaults(&cfg->trainer);
}

const char *fs_spool_policy_name(int policy)
{
    return policy >= 0 && policy <= FS_SPOOL_WINDOW ? fs__spool_policy_names[policy] : "?";
}

const char *fs_trainer_priority_name(int priority)
{
    return priority >= 0 && priority <= FS_TRAINER_PRIO_NORMAL
               ? fs__trainer_priority_names[priority]
               : "?";
}

const fs_config_key *fs__config_key(const char *key)
{
    for (size_t i = 0; i < FS_N_KEYS; i++) {
        if (strcmp(fs_config_keys[i].key, key) == 0) {
            return &fs_config_keys[i];
        }
    }
    return NULL;
}

const fs_config_key *fs__config_keys(size_t *n)
{
    *n = FS_N_KEYS;
    return fs_config_keys;
}

size_t fs__config_key_index(const fs_config_key *k)
{
    return (size_t)(k - fs_config_keys);
}

int fs__config_key_per_model(const fs_config_key *k)
{
    return k->per_model;
}

void fs__config_key_flag(const fs_config_key *k, char *flag, size_t len)
{
    size_t j = 0;
    for (; k->key[j] != '\0' && j + 1 < len; j++) {
        flag[j] = (k->key[j] == '_' || k->key[j] == '.') ? '-' : k->key[j];
    }
    flag[j] = '\0';
}

static const fs_config_key *find_flag(const char *name)
{
    char flag[64];
    for (size_t i = 0; i < FS_N_KEYS; i++) {
        fs__config_key_flag(&fs_config_keys[i], flag, sizeof flag);
        if (strcmp(flag, name) == 0) {
            return &fs_config_keys[i];
        }
    }
    return NULL;
}

/* Where key k lives: in cfg, or (trainer keys) in the trainer settings t when t is given. */
static void *field_of(fs_config *cfg, fs_trainer_config *t, const fs_config_key *k)
{
    if (t != NULL) {
        return (char *)t + (k->offset - offsetof(fs_config, trainer));
    }
    return (char *)cfg + k->offset;
}

static size_t field_size(const fs_config_key *k)
{
    switch (k->kind) {
    case FS_KEY_STR:
        return k->size;
    case FS_KEY_U32:
        return sizeof(uint32_t);
    case FS_KEY_U64:
        return sizeof(uint64_t);
    case FS_KEY_F64:
        return sizeof(double);
    case FS_KEY_BOOL:
    case FS_KEY_ENUM:
        return sizeof(int);
    case FS_KEY_LEVEL:
        return sizeof(fs_log_level);
    case FS_KEY_FORMAT:
        return sizeof(fs_log_format);
    }
    return 0;
}

void fs__config_trainer_copy_key(fs_trainer_config *dst, const fs_trainer_config *src,
                                 const fs_config_key *k)
{
    size_t off = k->offset - offsetof(fs_config, trainer);
    memcpy((char *)dst + off, (const char *)src + off, field_size(k));
}

/* Store an unsigned value after the range check; who names the key or flag in messages. */
static int set_uint(void *field, const fs_config_key *k, uint64_t v, const char *who, char *err,
                    size_t errlen)
{
    if (v < k->min || v > k->max) {
        return fail(err, errlen, "%s: %llu is out of range [%llu, %llu]", who,
                    (unsigned long long)v, (unsigned long long)k->min, (unsigned long long)k->max);
    }
    if (k->kind == FS_KEY_U32) {
        uint32_t v32 = (uint32_t)v;
        memcpy(field, &v32, sizeof v32);
    } else {
        memcpy(field, &v, sizeof v);
    }
    return 0;
}

static int set_double(void *field, const fs_config_key *k, double v, const char *who, char *err,
                      size_t errlen)
{
    if (!isfinite(v) || v < k->dmin || v > k->dmax) {
        return fail(err, errlen, "%s: %g is out of range [%g, %g]", who, v, k->dmin, k->dmax);
    }
    memcpy(field, &v, sizeof v);
    return 0;
}

static int set_str(void *field, const fs_config_key *k, const char *v, const char *who, char *err,
                   size_t errlen)
{
    size_t n = strlen(v);
    if (n >= k->size) {
        return fail(err, errlen, "%s: value is longer than %zu bytes", who, k->size - 1);
    }
    memcpy(field, v, n + 1);
    return 0;
}

static int set_enum_text(void *field, const fs_config_key *k, const char *v, const char *who,
                         char *err, size_t errlen)
{
    if (k->kind == FS_KEY_ENUM) {
        char names[128] = "";
        for (int i = 0; k->choices[i] != NULL; i++) {
            if (strcmp(k->choices[i], v) == 0) {
                memcpy(field, &i, sizeof i);
                return 0;
            }
            size_t n = strlen(names);
            snprintf(names + n, sizeof names - n, "%s%s", i > 0 ? ", " : "", k->choices[i]);
        }
        return fail(err, errlen, "%s: '%s' is not one of %s", who, v, names);
    }
    if (k->kind == FS_KEY_LEVEL) {
        fs_log_level lv;
        if (fs_log_parse_level(v, &lv) != 0) {
            return fail(err, errlen, "%s: '%s' is not one of error, warn, info, debug", who, v);
        }
        memcpy(field, &lv, sizeof lv);
        return 0;
    }
    fs_log_format f;
    if (fs_log_parse_format(v, &f) != 0) {
        return fail(err, errlen, "%s: '%s' is not one of text, json", who, v);
    }
    memcpy(field, &f, sizeof f);
    return 0;
}

static int apply_json_item(void *field, const fs_config_key *k, const cJSON *item, const char *who,
                           char *err, size_t errlen)
{
    switch (k->kind) {
    case FS_KEY_STR:
        if (!cJSON_IsString(item)) {
            return fail(err, errlen, "%s: expected a string", who);
        }
        return set_str(field, k, item->valuestring, who, err, errlen);
    case FS_KEY_U32:
    case FS_KEY_U64: {
        double d = item->valuedouble;
        if (!cJSON_IsNumber(item) || !isfinite(d) || d < 0 || floor(d) != d || d > 1.8e19) {
            return fail(err, errlen, "%s: expected a non-negative integer", who);
        }
        return set_uint(field, k, (uint64_t)d, who, err, errlen);
    }
    case FS_KEY_F64:
        if (!cJSON_IsNumber(item)) {
            return fail(err, errlen, "%s: expected a number", who);
        }
        return set_double(field, k, item->valuedouble, who, err, errlen);
    case FS_KEY_BOOL:
        if (!cJSON_IsBool(item)) {
            return fail(err, errlen, "%s: expected true or false", who);
        }
        *(int *)field = cJSON_IsTrue(item) ? 1 : 0;
        return 0;
    case FS_KEY_LEVEL:
    case FS_KEY_FORMAT:
    case FS_KEY_ENUM:
        if (!cJSON_IsString(item)) {
            return fail(err, errlen, "%s: expected a string", who);
        }
        return set_enum_text(field, k, item->valuestring, who, err, errlen);
    }
    return fail(err, errlen, "%s: unsupported key kind", who);
}

int fs__config_set_trainer_json(fs_trainer_config *t, const fs_config_key *k, const cJSON *item,
                                const char *who, char *err, size_t errlen)
{
    return apply_json_item(field_of(NULL, t, k), k, item, who, err, errlen);
}

/* The members of the "trainer" object. */
static int parse_trainer(fs_config *cfg, const cJSON *obj, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        return fail(err, errlen, "config key trainer: expected an object of trainer settings");
    }
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        char name[96], who[128];
        snprintf(name, sizeof name, "trainer.%.80s", it->string);
        const fs_config_key *k = fs__config_key(name);
        if (k == NULL) {
            return fail(err, errlen, "unknown config key '%s'", name);
        }
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                return fail(err, errlen, "config key %s appears twice", name);
            }
        }
        snprintf(who, sizeof who, "config key %s", name);
        if (apply_json_item(field_of(cfg, NULL, k), k, it, who, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
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
        const fs_config_key *k =
            strchr(it->string, '.') == NULL ? fs__config_key(it->string) : NULL;
        if (strcmp(it->string, "admin_token") == 0) {
            /* A secret belongs in a file or the environment, never in a world-readable config. */
            rc = fail(err, errlen,
                      "config key admin_token is not accepted: put the token in "
                      "admin_token_file or $FLOWSCORE_ADMIN_TOKEN");
            goto out;
        }
        int nested = strcmp(it->string, "trainer") == 0 || strcmp(it->string, "models") == 0;
        if (k == NULL && !nested) {
            rc = fail(err, errlen, "unknown config key '%s'", it->string);
            goto out;
        }
        for (const cJSON *prev = root->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                rc = fail(err, errlen, "config key %s appears twice", it->string);
                goto out;
            }
        }
        if (strcmp(it->string, "trainer") == 0) {
            rc = parse_trainer(cfg, it, err, errlen);
        } else if (strcmp(it->string, "models") == 0) {
            rc = fs__config_parse_models(cfg, it, err, errlen);
        } else {
            char who[96];
            snprintf(who, sizeof who, "config key %s", k->key);
            rc = apply_json_item(field_of(cfg, NULL, k), k, it, who, err, errlen);
        }
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

int fs_config_is_flag(const char *name, int *is_bool)
{
    const fs_config_key *k = find_flag(name);
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

/* A whole-string decimal number (strtod in the C locale: no hex, inf or nan accepted). */
static int parse_f64(const char *s, double *out)
{
    char *end = NULL;
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '+' || *p == 'e' ||
              *p == 'E')) {
            return -1;
        }
    }
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || end == NULL || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

int fs_config_set_flag(fs_config *cfg, const char *name, const char *value, char *err,
                       size_t errlen)
{
    char who[96];
    const fs_config_key *k = find_flag(name);
    if (k == NULL) {
        return fail(err, errlen, "unknown option --%s (see --help)", name);
    }
    void *field = field_of(cfg, NULL, k);
    snprintf(who, sizeof who, "--%s", name);
    switch (k->kind) {
    case FS_KEY_STR:
        return set_str(field, k, value, who, err, errlen);
    case FS_KEY_U32:
    case FS_KEY_U64: {
        uint64_t v;
        if (parse_u64(value, &v) != 0) {
            return fail(err, errlen, "%s: '%s' is not a non-negative integer", who, value);
        }
        return set_uint(field, k, v, who, err, errlen);
    }
    case FS_KEY_F64: {
        double v;
        if (parse_f64(value, &v) != 0) {
            return fail(err, errlen, "%s: '%s' is not a number", who, value);
        }
        return set_double(field, k, v, who, err, errlen);
    }
    case FS_KEY_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
            *(int *)field = 1;
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            *(int *)field = 0;
            return 0;
        }
        return fail(err, errlen, "%s: '%s' is not true or false", who, value);
    case FS_KEY_LEVEL:
    case FS_KEY_FORMAT:
    case FS_KEY_ENUM:
        return set_enum_text(field, k, value, who, err, errlen);
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
    if (cfg->trainer.enabled && cfg->state_dir[0] == '\0') {
        return fail(err, errlen, "state_dir must not be empty while the trainer is enabled");
    }
    if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0')) {
        return fail(err, errlen, "tls_cert_file and tls_key_file must be set together");
    }
    if (fs__config_check_tls(cfg, err, errlen) != 0) {
        return -1;
    }
    if (cfg->per_ip_connection_limit > cfg->connection_limit) {
        return fail(err, errlen, "per_ip_connection_limit (%u) exceeds connection_limit (%u)",
                    cfg->per_ip_connection_limit, cfg->connection_limit);
    }
    if (fs__config_finish_models(cfg, err, errlen) != 0) {
        return -1;
    }
    return read_token(cfg, err, errlen);
}

const fs_model_config *fs_config_model(const fs_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_models; i++) {
        if (strcmp(cfg->models[i].name, name) == 0) {
            return &cfg->models[i];
        }
    }
    return NULL;
}

const fs_trainer_config *fs_config_trainer(const fs_config *cfg, const char *name)
{
    const fs_model_config *m = fs_config_model(cfg, name);
    return m != NULL ? &m->trainer : &cfg->trainer;
}
