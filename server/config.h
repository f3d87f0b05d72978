/*
 * config.h: the daemon's configuration. Every key of config/flowscore.json is also a flag of
 * `flowscore serve` (--max-body-bytes for max_body_bytes). Precedence: built-in defaults, then
 * the --config file, then flags. Unknown keys and bad values are refused with a sentence that
 * names the key (or flag) and the accepted range.
 * Threads: parsed on the main thread before the loop starts; read-only afterwards.
 */
#ifndef FS_CONFIG_H
#define FS_CONFIG_H

#include "log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FS_CONFIG_PATH_MAX   4096
#define FS_CONFIG_TOKEN_MAX  256  /* bytes of an admin token */
#define FS_CONFIG_MAX_MODELS 16   /* entries of the "models" object */
#define FS_CONFIG_SPEC_MAX   4096 /* bytes of an inline spec */

/* How a full spool keeps its records (trainer.spool_policy). */
typedef enum fs_spool_policy {
    FS_SPOOL_RESERVOIR = 0, /* a uniform sample of every record ever accepted (Algorithm R) */
    FS_SPOOL_WINDOW         /* the most recent records */
} fs_spool_policy;

/* The trainer thread's scheduling class (trainer.priority). */
typedef enum fs_trainer_priority {
    FS_TRAINER_PRIO_IDLE = 0, /* SCHED_IDLE: runs only on CPU time nobody else wants */
    FS_TRAINER_PRIO_LOW,      /* SCHED_OTHER at nice 19 (the default: see architecture.md) */
    FS_TRAINER_PRIO_NORMAL    /* like every other thread */
} fs_trainer_priority;

/*
 * The background trainer's settings (issue 5): the "trainer" object of the configuration,
 * flags --trainer-<key>. A "models" entry may override every key but priority.
 */
typedef struct fs_trainer_config {
    int enabled;                /* ingest and refits for this model (bool) */
    uint64_t min_new_records;   /* refit once this many records arrived since the last; 0 = off */
    uint64_t min_refit_records; /* usable rows a refit needs; fewer: it fails, publishes nothing */
    uint32_t refit_interval_s;  /* refit this often when new records arrived; 0 = off */
    int warm_start;             /* start from the serving model (bool); else from scratch */
    double holdout_fraction;    /* share of the most recent records that judges the candidate */
    uint32_t min_holdout_rows;  /* holdout rows a refit needs (judging and calibration) */
    double accept_margin_nats;  /* accept when candidate NLL + noise <= current NLL + this */
    uint64_t spool_max_records;
    int spool_policy;      /* fs_spool_policy */
    int exclude_anomalies; /* leave records above the serving threshold out of refits */
    uint32_t burst_window; /* records of the burst detector's window */
    double burst_share;    /* a burst: more than this share of the window is anomalous */
    uint32_t epochs;       /* fs_train_params of a refit */
    double lr;
    uint32_t batch_size;
    int optimizer; /* fs_optimizer */
    uint64_t seed;
    uint32_t patience;
    uint32_t max_train_seconds; /* stop a refit at the end of the epoch past this; 0 = none */
    int priority;               /* fs_trainer_priority (global only) */
} fs_trainer_config;

/* One entry of the "models" object: a model trained from the stream, or overrides. */
typedef struct fs_model_config {
    char name[72];
    char schema_file[FS_CONFIG_PATH_MAX]; /* "" = none (the model has versions on disk) */
    char spec_file[FS_CONFIG_PATH_MAX];   /* a spec given as a path, or "" */
    char spec_json[FS_CONFIG_SPEC_MAX];   /* a spec given inline, or "" */
    uint64_t trainer_set;                 /* bit i: trainer key i is overridden */
    fs_trainer_config trainer;            /* overrides; resolved by fs_config_finish */
} fs_model_config;

typedef struct fs_config {
    char listen[300];                          /* "HOST:PORT" or "[V6]:PORT"; port 0 picks one */
    char models_dir[FS_CONFIG_PATH_MAX];       /* <models_dir>/<name>/<version>.fsm */
    char state_dir[FS_CONFIG_PATH_MAX];        /* spool and trainer state (later issues) */
    uint32_t workers;                          /* scoring threads; 0 = number of cores */
    uint64_t max_body_bytes;                   /* request bodies above this get 413 */
    uint32_t max_rows_per_request;             /* records, latents, sample n, tensor rows */
    uint32_t max_batch_rows;                   /* rows of one coalesced engine call */
    uint32_t max_queue_delay_us;               /* longest wait to fill a batch; 0 = none */
    uint32_t max_queued_requests;              /* pool queue capacity; beyond it 503 */
    uint32_t queue_timeout_ms;                 /* a job still queued after this gets 503 */
    uint32_t max_json_depth;                   /* nesting cap of request bodies */
    uint32_t max_string_bytes;                 /* longest JSON string in a request */
    uint32_t connection_limit;                 /* MHD_OPTION_CONNECTION_LIMIT */
    uint32_t per_ip_connection_limit;          /* MHD_OPTION_PER_IP_CONNECTION_LIMIT; 0 = none */
    uint32_t connection_timeout_s;             /* idle connection timeout */
    uint32_t connection_memory_limit_bytes;    /* MHD_OPTION_CONNECTION_MEMORY_LIMIT */
    uint32_t drain_timeout_s;                  /* SIGTERM: how long in-flight requests may take */
    char admin_token_file[FS_CONFIG_PATH_MAX]; /* "" = admin endpoints need no token */
    fs_log_level log_level;
    fs_log_format log_format;
    int watch;                              /* watch models_dir with inotify (bool) */
    uint32_t watch_debounce_ms;             /* quiet time after a change before the rescan */
    uint32_t rescan_interval_s;             /* periodic rescan as the watcher's fallback; 0 = off */
    char tls_cert_file[FS_CONFIG_PATH_MAX]; /* both set: HTTPS */
    char tls_key_file[FS_CONFIG_PATH_MAX];
    fs_trainer_config trainer;                    /* "trainer" object */
    fs_model_config models[FS_CONFIG_MAX_MODELS]; /* "models" object */
    size_t n_models;

    /* Derived at load time, not keys. */
    char admin_token[FS_CONFIG_TOKEN_MAX]; /* from admin_token_file or FLOWSCORE_ADMIN_TOKEN */
    size_t admin_token_len;                /* 0 = no token configured */
    char listen_host[256];                 /* split from listen */
    uint16_t listen_port;
} fs_config;

/* The built-in defaults (those in config/flowscore.json). */
void fs_config_defaults(fs_config *cfg);

/*
 * Apply the JSON object text (len bytes) to cfg. Errors: returns -1 with a sentence in err
 * (errlen bytes) naming the key: unknown key, wrong type, value out of range, bad JSON.
 */
int fs_config_parse_json(fs_config *cfg, const char *json, size_t len, char *err, size_t errlen);

/* Read path and apply it as fs_config_parse_json. Errors: -1 with the reason in err. */
int fs_config_load_file(fs_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Apply one flag. name is the flag without "--" (e.g. "max-body-bytes"); value its text.
 * Returns 0, or -1 with the reason in err (unknown flag, bad value).
 */
int fs_config_set_flag(fs_config *cfg, const char *name, const char *value, char *err,
                       size_t errlen);

/* Whether name (without "--") is a configuration flag; *is_bool set for boolean keys. */
int fs_config_is_flag(const char *name, int *is_bool);

/*
 * Check cross-key rules, split listen into host and port, check that the TLS files can be
 * read, and read the admin token (file, else $FLOWSCORE_ADMIN_TOKEN). Returns 0, or -1 with
 * the reason in err. Reads files: start-up only.
 */
int fs_config_finish(fs_config *cfg, char *err, size_t errlen);

/*
 * Whether models_dir is a directory the daemon can list: the daemon refuses to start without
 * one (it would otherwise report ready with nothing to serve). Returns 0, or -1 with a
 * sentence naming models_dir in err. Kept apart from fs_config_finish: `--check-config` only
 * warns, since systemd's StateDirectory= creates the directory when the unit starts.
 */
int fs_config_check_models_dir(const fs_config *cfg, char *err, size_t errlen);

/* Write the option list for --help (every key, its flag, default and meaning). */
void fs_config_print_help(FILE *out);

/* The configuration as a JSON object (every key; the token is never included). malloc'd. */
char *fs_config_format_json(const fs_config *cfg);

/* The "models" entry called name, or NULL. */
const fs_model_config *fs_config_model(const fs_config *cfg, const char *name);

/* The trainer settings of model name: its "models" entry's (resolved), else the global ones. */
const fs_trainer_config *fs_config_trainer(const fs_config *cfg, const char *name);

/*
 * Parse the schema file and the spec (file or inline) of a "models" entry. *schema and *spec
 * are set only on success (free with fs_schema_free, fs_spec_free). Returns 0, or -1 with a
 * sentence in err naming models.NAME.schema or .spec. Reads files: start-up only.
 */
int fs_config_model_load(const fs_model_config *m, fs_schema **schema, fs_spec **spec, char *err,
                         size_t errlen);

/* The name of a spool policy or trainer priority ("reservoir", "idle", ...). Static storage. */
const char *fs_spool_policy_name(int policy);
const char *fs_trainer_priority_name(int priority);

#endif /* FS_CONFIG_H */
