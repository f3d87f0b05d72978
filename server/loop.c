/* loop.c: the daemon's libuv loop: start-up, signals, systemd notification, watchdog, drain. */
#include "server.h"

#include "http.h"
#include "log.h"
#include "trainer.h"

#include <cblas.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define FS_DRAIN_TICK_MS  20
#define FS_DRAIN_GRACE_MS 1000 /* after the deadline: uploads still arriving are cut */

static uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int fs_server_ready(const fs_server *srv)
{
    return !srv->draining && fs_registry_ready(srv->reg) && fs_refit_ready(srv->refit);
}

static void notify_status(fs_server *srv, const char *state)
{
    size_t n_entries, n_loaded;
    fs_registry_counts(srv->reg, &n_entries, &n_loaded);
    sd_notifyf(0, "%sSTATUS=serving %zu of %zu models on port %u", state, n_loaded, n_entries,
               (unsigned)fs_http_port(srv->http));
}

static void on_round_done(void *arg, unsigned kinds)
{
    fs_server *srv = arg;
    size_t n_entries, n_loaded;
    fs_registry_counts(srv->reg, &n_entries, &n_loaded);
    if (srv->draining) {
        return;
    }
    if (kinds & FS_ROUND_START) {
        if (n_entries == 0) {
            fs_log(FS_LOG_WARN, "serve", "no models found models_dir=%s", srv->cfg.models_dir);
        } else if (n_loaded < n_entries) {
            fs_log(FS_LOG_ERROR, "serve",
                   "some models could not be loaded loaded=%zu models=%zu (see GET /v1/models)",
                   n_loaded, n_entries);
        }
        fs_log(FS_LOG_INFO, "serve", "ready models=%zu loaded=%zu", n_entries, n_loaded);
        srv->ready_sent = 1;
        notify_status(srv, "READY=1\n");
    }
    if (kinds & FS_ROUND_SIGHUP) {
        srv->hup_pending = 0;
        fs_log(FS_LOG_INFO, "serve", "reload finished models=%zu loaded=%zu", n_entries, n_loaded);
        notify_status(srv, "READY=1\n");
    }
}

static void on_sighup(uv_signal_t *s, int signum)
{
    fs_server *srv = s->data;
    (void)signum;
    if (srv->draining) {
        return;
    }
    fs_log(FS_LOG_INFO, "serve", "SIGHUP: reloading every model");
    srv->hup_pending = 1;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading models",
               (unsigned long long)monotonic_usec());
    fs_registry_round(srv->reg, FS_ROUND_SIGHUP);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h; /* the handles are members of fs_server, freed with it */
}

/* Everything is answered: stop the workers and close every handle; uv_run then returns. */
static void finish(fs_server *srv)
{
    if (srv->closing) {
        return;
    }
    srv->closing = 1;
    fs_log(FS_LOG_INFO, "serve", "drained; stopping");
    fs_pool_stop(srv->pool);
    fs_refit_stop(srv->refit);        /* joins the trainer and the spool I/O thread */
    fs__http_unlinger_all(srv->http); /* no suspended connection may reach MHD_stop_daemon */
    fs_http_close(srv->http);
    /* The signal handles stay installed until uv_run returns (unreferenced, so that they do
     * not keep the loop alive): a SIGTERM arriving during the last steps must reach
     * on_sigterm, not the default action. */
    uv_unref((uv_handle_t *)&srv->sig_term);
    uv_unref((uv_handle_t *)&srv->sig_int);
    uv_unref((uv_handle_t *)&srv->sig_hup);
    uv_close((uv_handle_t *)&srv->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&srv->watchdog, on_handle_closed);
}

static void on_drain_tick(uv_timer_t *t)
{
    fs_server *srv = t->data;
    uint64_t now = uv_now(&srv->loop);
    if (!srv->cancelled && now >= srv->drain_deadline_ms) {
        srv->cancelled = 1;
        fs_log(FS_LOG_WARN, "serve",
               "drain timeout: answering queued requests with 503 queued=%llu",
               (unsigned long long)fs_pool_queue_depth(srv->pool));
        fs_pool_cancel_queued(srv->pool);
    }
    uint64_t in_flight = fs_http_in_flight(srv->http);
    int work_out = fs_pool_pending(srv->pool) > 0 || fs_registry_busy(srv->reg) ||
                   fs__http_waiting(srv->http) > 0 || fs_refit_pending(srv->refit) > 0;
    int grace_over = now >= srv->drain_deadline_ms + FS_DRAIN_GRACE_MS;
    if (!work_out && (in_flight == 0 || grace_over)) {
        finish(srv);
    }
}

static void on_sigterm(uv_signal_t *s, int signum)
{
    fs_server *srv = s->data;
    if (srv->draining) {
        /* A second signal: the operator does not want to wait (issue 04). */
        fs_log(FS_LOG_WARN, "serve", "second signal=%d: exiting without draining", signum);
        _exit(1);
    }
    srv->draining = 1;
    fs_log(FS_LOG_INFO, "serve", "signal=%d: draining in_flight=%llu timeout_s=%u", signum,
           (unsigned long long)fs_http_in_flight(srv->http), srv->cfg.drain_timeout_s);
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
    fs_http_quiesce(srv->http);
    fs_refit_begin_stop(srv->refit); /* a refit in progress stops after its current step */
    fs_registry_close(srv->reg);
    srv->drain_deadline_ms = uv_now(&srv->loop) + (uint64_t)srv->cfg.drain_timeout_s * 1000u;
    uv_timer_start(&srv->drain_timer, on_drain_tick, 0, FS_DRAIN_TICK_MS);
}

/* WATCHDOG=1 only while the loop turns (this timer fires) and the pool makes progress. */
static void on_watchdog(uv_timer_t *t)
{
    fs_server *srv = t->data;
    uint64_t done = fs_pool_completed(srv->pool);
    int stuck = fs_pool_pending(srv->pool) > 0 && fs_pool_busy(srv->pool) > 0 &&
                done == srv->watchdog_completed;
    srv->watchdog_completed = done;
    if (stuck) {
        fs_log(FS_LOG_WARN, "serve", "watchdog: the worker pool made no progress; not pinging");
        return;
    }
    sd_notify(0, "WATCHDOG=1");
}

static int start_signals_and_timers(fs_server *srv)
{
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    uv_timer_init(&srv->loop, &srv->drain_timer);
    uv_timer_init(&srv->loop, &srv->watchdog);
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
    srv->drain_timer.data = srv->watchdog.data = srv;
    if (uv_signal_start(&srv->sig_term, on_sigterm, SIGTERM) != 0 ||
        uv_signal_start(&srv->sig_int, on_sigterm, SIGINT) != 0 ||
        uv_signal_start(&srv->sig_hup, on_sighup, SIGHUP) != 0) {
        return -1;
    }
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        srv->watchdog_usec = usec;
        uint64_t ms = usec / 2000u > 0 ? usec / 2000u : 1;
        uv_timer_start(&srv->watchdog, on_watchdog, ms, ms);
        fs_log(FS_LOG_INFO, "serve", "systemd watchdog on interval_ms=%llu",
               (unsigned long long)ms);
    }
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

int fs_server_run(fs_server *srv)
{
    fs_pool_params pp;
    int rc = 1;
    signal(SIGPIPE, SIG_IGN);    /* MHD uses MSG_NOSIGNAL; other writes may not (pitfall 11) */
    openblas_set_num_threads(1); /* parallelism comes from our pool (pitfall 15) */
    /* libuv's pool does model loads and scans only. One thread: loads are serialised (they
     * take milliseconds) and every model's memory comes from one malloc arena, which keeps
     * RSS flat across reloads (case-13: +0.8 MiB over 1,000 reloads, against +2.4 MiB with
     * four threads). An operator may still set it. */
    setenv("UV_THREADPOOL_SIZE", "1", 0);
    srv->lim.max_depth = srv->cfg.max_json_depth;
    srv->lim.max_string_bytes = srv->cfg.max_string_bytes;
    srv->lim.max_rows = srv->cfg.max_rows_per_request;
    if (uv_loop_init(&srv->loop) != 0) {
        fs_log(FS_LOG_ERROR, "serve", "cannot create the event loop");
        return 1;
    }
    srv->metrics = fs_metrics_create(fs_route_names, FS_ROUTE__COUNT);
    pp.workers = srv->cfg.workers > 0 ? srv->cfg.workers : uv_available_parallelism();
    pp.max_batch_rows = srv->cfg.max_batch_rows;
    pp.max_queue_delay_us = srv->cfg.max_queue_delay_us;
    pp.max_queued_requests = srv->cfg.max_queued_requests;
    pp.queue_timeout_ms = srv->cfg.queue_timeout_ms;
    if (srv->metrics == NULL || fs_pool_create(&srv->loop, &pp, &srv->pool) != 0) {
        fs_log(FS_LOG_ERROR, "serve", "cannot start the worker pool workers=%u", pp.workers);
        goto out;
    }
    srv->reg = fs_registry_create(&srv->loop, &srv->cfg, srv->metrics, on_round_done, srv);
    if (srv->reg == NULL || fs_http_start(srv, &srv->http) != 0 ||
        start_signals_and_timers(srv) != 0) {
        goto out;
    }
    fs_log(FS_LOG_INFO, "serve", "started version=%s workers=%u models_dir=%s pid=%ld", FS_VERSION,
           fs_pool_workers(srv->pool), srv->cfg.models_dir, (long)getpid());
    sd_notify(0, "STATUS=loading models");
    if (fs_refit_create(&srv->loop, &srv->cfg, srv->reg, srv->metrics, &srv->refit) != 0) {
        goto out;
    }
    fs_registry_watch(srv->reg);
    fs_registry_round(srv->reg, FS_ROUND_START);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    rc = srv->exit_code;
    uv_close((uv_handle_t *)&srv->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&srv->sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&srv->sig_hup, on_handle_closed);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
out:
    if (!srv->closing) {
        /* A start-up failure: close whatever was opened so that the loop can be closed. */
        if (srv->pool != NULL) {
            fs_pool_stop(srv->pool);
        }
        fs_refit_stop(srv->refit);
        if (srv->reg != NULL) {
            fs_registry_close(srv->reg);
        }
        if (srv->http != NULL) {
            fs_http_close(srv->http);
        }
        uv_walk(&srv->loop, close_walk, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    fs_http_free(srv->http);
    fs_refit_free(srv->refit);
    fs_registry_free(srv->reg);
    fs_metrics_free(srv->metrics);
    int lc = uv_loop_close(&srv->loop);
    if (lc != 0) {
        fs_log(FS_LOG_ERROR, "serve", "uv_loop_close failed: handles still open err=%s",
               uv_err_name(lc));
        rc = 1;
    }
    malloc_trim(0);
    if (rc == 0) {
        fs_log(FS_LOG_INFO, "serve", "stopped");
    }
    return rc;
}
