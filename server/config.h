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

#define FS_CONFIG_PATH_MAX  4096
#define FS_CONFIG_TOKEN_MAX 256 /* bytes of an admin token */

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
 * Check cross-key rules, split listen into host and port, and read the admin token (file,
 * else $FLOWSCORE_ADMIN_TOKEN). Returns 0, or -1 with the reason in err.
 */
int fs_config_finish(fs_config *cfg, char *err, size_t errlen);

/* Write the option list for --help (every key, its flag, default and meaning). */
void fs_config_print_help(FILE *out);

/* The configuration as a JSON object (every key; the token is never included). malloc'd. */
char *fs_config_format_json(const fs_config *cfg);

#endif /* FS_CONFIG_H */
