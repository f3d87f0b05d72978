/*
 * config_internal.h: what config.c (the key table, flags, help) and config_models.c (the
 * "models" object) share. Not for other modules.
 */
#ifndef FS_CONFIG_INTERNAL_H
#define FS_CONFIG_INTERNAL_H

#include "config.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fs_key_kind {
    FS_KEY_STR = 0,
    FS_KEY_U32,
    FS_KEY_U64,
    FS_KEY_BOOL,
    FS_KEY_LEVEL,
    FS_KEY_FORMAT,
    FS_KEY_F64,
    FS_KEY_ENUM
} fs_key_kind;

typedef struct fs_config_key {
    const char *key; /* "listen", or "trainer.min_new_records" inside the trainer object */
    fs_key_kind kind;
    size_t offset; /* in fs_config */
    size_t size;   /* bytes of a string field */
    uint64_t min, max;
    const char *help;
    double dmin, dmax;          /* FS_KEY_F64: the accepted range */
    const char *const *choices; /* FS_KEY_ENUM: NULL-terminated names; the value is the index */
    int per_model;              /* a "models" entry may override it */
} fs_config_key;

/* The key table (n entries, static storage). */
const fs_config_key *fs__config_keys(size_t *n);

/* The key's flag: "max_body_bytes" -> "max-body-bytes", "trainer.lr" -> "trainer-lr". */
void fs__config_key_flag(const fs_config_key *k, char *flag, size_t len);

/* Names of the spool policies and trainer priorities, NULL-terminated (config.c). */
extern const char *const fs__spool_policy_names[];
extern const char *const fs__trainer_priority_names[];

/* The key called name ("listen", "trainer.lr"), or NULL. */
const fs_config_key *fs__config_key(const char *name);

/* The key's index in the table (the bit of fs_model_config.trainer_set). */
size_t fs__config_key_index(const fs_config_key *k);

/* Whether k is a trainer key that a "models" entry may override. */
int fs__config_key_per_model(const fs_config_key *k);

/*
 * Apply item to trainer key k of t; who names the key in messages. Returns 0, or -1 with a
 * sentence in err (wrong type, out of range, unknown name).
 */
int fs__config_set_trainer_json(fs_trainer_config *t, const fs_config_key *k, const cJSON *item,
                                const char *who, char *err, size_t errlen);

/* Copy trainer key k from src to dst. */
void fs__config_trainer_copy_key(fs_trainer_config *dst, const fs_trainer_config *src,
                                 const fs_config_key *k);

/* Every trainer key whose table bit is in mask, added to obj. Returns -1 when out of memory. */
int fs__config_trainer_json(const fs_trainer_config *t, uint64_t mask, cJSON *obj);

/* Parse the "models" object into cfg->models (config_models.c). -1 with err on a fault. */
int fs__config_parse_models(fs_config *cfg, const cJSON *models, char *err, size_t errlen);

/* Resolve every model's trainer settings and check its schema and spec files. */
int fs__config_finish_models(fs_config *cfg, char *err, size_t errlen);

/* The "models" object as JSON (a new item), or NULL when out of memory. */
cJSON *fs__config_format_models(const fs_config *cfg);

/* Both TLS files can be read (when set). Returns 0, or -1 with a sentence naming the key. */
int fs__config_check_tls(const fs_config *cfg, char *err, size_t errlen);

/* snprintf into err and return -1. */
int fs__config_fail(char *err, size_t errlen, const char *fmt, ...) FS_LOG_PRINTF(3, 4);

#endif /* FS_CONFIG_INTERNAL_H */
