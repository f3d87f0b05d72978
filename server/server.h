/*
 * server.h: the daemon's parts and the loop that owns them (loop.c).
 *
 * Threads: the loop thread owns everything here; the scoring workers see only their jobs
 * (pool.h), libuv's threadpool only the registry's load jobs (registry.h).
 */
#ifndef FS_SERVER_H
#define FS_SERVER_H

#include "config.h"
#include "metrics.h"
#include "pool.h"
#include "records.h"
#include "registry.h"

#include <stdint.h>
#include <uv.h>

typedef struct fs_http fs_http;
typedef struct fs_refit fs_refit;

typedef struct fs_server {
    uv_loop_t loop;
    fs_config cfg;      /* read-only after start */
    fs_json_limits lim; /* read-only after start; workers read it */
    fs_metrics *metrics;
    fs_pool *pool;
    fs_registry *reg;
    fs_http *http;
    fs_refit *refit; /* the background trainer, or NULL when disabled (trainer.h) */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer; /* ticks while draining */
    uv_timer_t watchdog;    /* WATCHDOG=1 pings, when systemd asks for them */
    uint64_t watchdog_usec;
    uint64_t watchdog_completed; /* the pool's completed count at the last ping */
    int draining;                /* SIGTERM seen: no new work, readiness false */
    uint64_t drain_deadline_ms;  /* uv_now at which queued work is answered 503 */
    int cancelled;               /* queued work was answered 503 */
    int closing;                 /* handles are being closed */
    int ready_sent;              /* READY=1 sent once */
    int hup_pending;             /* a SIGHUP reload round is in flight */
    int exit_code;
} fs_server;

/*
 * Start libmicrohttpd on cfg.listen in external epoll mode under srv->loop (http.c) and log
 * `info http: listening address=HOST port=PORT`. Returns 0, or -1 after logging why
 * (address in use, bad TLS files). Loop thread, like every fs_http_* function.
 */
int fs_http_start(fs_server *srv, fs_http **out);

/* Stop accepting connections (MHD_quiesce_daemon); requests in flight carry on. */
void fs_http_quiesce(fs_http *h);

/* Requests received and not yet completed (including suspended ones). */
uint64_t fs_http_in_flight(const fs_http *h);

/* Open connections (MHD_DAEMON_INFO_CURRENT_CONNECTIONS; valid outside MHD_run). */
uint64_t fs_http_connections(fs_http *h);

/* Close the uv handles (poll, timers, check); their memory is h's, freed by fs_http_free. */
void fs_http_close(fs_http *h);

/*
 * MHD_stop_daemon, close the quiesced listen socket, free h. Only after fs_http_close's
 * callbacks ran and no connection is suspended. NULL is fine.
 */
void fs_http_free(fs_http *h);

/* The port actually bound (for --listen HOST:0). */
uint16_t fs_http_port(const fs_http *h);

/*
 * The loop-side JSON answers (api_models.c): small documents built from loop-owned registry
 * state. Each appends to b and returns the HTTP status.
 * - models_list: GET /v1/models: every name, its version, readiness and last reload error;
 * - model_detail: GET /v1/models/{name}: schema, sizes, versions on disk, load time,
 *   calibration (threshold null when uncalibrated), created/spec/training from the header;
 * - v2_server: GET /v2 (Open Inference Protocol server metadata);
 * - v2_model: GET /v2/models/{name}: platform, input x [-1, D] FP32, outputs.
 */
int fs_api_models_list(fs_server *srv, fs_strbuf *b);
int fs_api_model_detail(fs_server *srv, fs_entry *e, fs_strbuf *b);
int fs_api_v2_server(fs_server *srv, fs_strbuf *b);
int fs_api_v2_model(fs_server *srv, fs_entry *e, fs_strbuf *b);

/*
 * The answer to POST /v1/models/{name}/reload once its load ended: 200 with
 * {"model","version","reloaded":true,"loaded_at"} when ok, else the status (422 while an
 * older version still serves, 503 when none does) with err set to reload_failed.
 */
int fs_api_reload_answer(fs_entry *e, int ok, fs_strbuf *b, fs_req_error *err);

/* /readyz and /v2/health/ready: every model loaded, the start-up round over, every spool
 * recovered, not draining. */
int fs_server_ready(const fs_server *srv);

/* Run the daemon with srv->cfg (loop.c). Returns the process exit status. */
int fs_server_run(fs_server *srv);

#endif /* FS_SERVER_H */
