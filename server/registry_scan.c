/* registry_scan.c: rounds over every model name, the directory scan, the watcher, teardown. */
#include "registry.h"

#include "log.h"
#include "records.h"
#include "registry_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct scan_job {
    uv_work_t req;
    fs_registry *reg;
    char dir[FS_CONFIG_PATH_MAX];
    char (*names)[72];
    size_t n_names;
    char error[320];
} scan_job;

fs_registry *fs_registry_create(uv_loop_t *loop, const fs_config *cfg, fs_metrics *metrics,
                                fs_round_done_fn round_done, void *arg)
{
    fs_registry *reg = calloc(1, sizeof *reg);
    if (reg == NULL) {
        return NULL;
    }
    reg->loop = loop;
    reg->cfg = cfg;
    reg->metrics = metrics;
    reg->round_done = round_done;
    reg->round_arg = arg;
    return reg;
}

fs_entry *fs_registry_find(fs_registry *reg, const char *name, size_t len)
{
    for (fs_entry *e = reg->entries; e != NULL; e = e->next) {
        if (strlen(e->name) == len && memcmp(e->name, name, len) == 0) {
            return e;
        }
    }
    return NULL;
}

fs_entry *fs_registry_first(fs_registry *reg)
{
    return reg->entries;
}

int fs_registry_ready(const fs_registry *reg)
{
    if (!reg->started) {
        return 0;
    }
    for (const fs_entry *e = reg->entries; e != NULL; e = e->next) {
        if (e->current == NULL && !e->stream) {
            return 0;
        }
    }
    return 1;
}

void fs_registry_counts(const fs_registry *reg, size_t *n_entries, size_t *n_loaded)
{
    *n_entries = *n_loaded = 0;
    for (const fs_entry *e = reg->entries; e != NULL; e = e->next) {
        (*n_entries)++;
        *n_loaded += e->current != NULL;
    }
}

int fs_registry_busy(const fs_registry *reg)
{
    return reg->loads + reg->scanning + (reg->round_kinds != 0);
}

static void on_watch_closed(uv_handle_t *h)
{
    fs_registry *reg = h->data;
    reg->handles_open--;
    free(h);
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status);

/* inotify on dir; the handle is freed in its close callback. */
static uv_fs_event_t *watch_dir(fs_registry *reg, const char *dir)
{
    uv_fs_event_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    if (uv_fs_event_init(reg->loop, w) != 0) {
        free(w);
        return NULL;
    }
    w->data = reg;
    reg->handles_open++;
    int rc = uv_fs_event_start(w, on_fs_event, dir, 0);
    if (rc != 0) {
        fs_log(FS_LOG_WARN, "registry", "cannot watch directory path=%s err=%s", dir,
               uv_err_name(rc));
        uv_close((uv_handle_t *)w, on_watch_closed);
        return NULL;
    }
    return w;
}

static fs_entry *add_entry(fs_registry *reg, const char *name)
{
    fs_entry *e = calloc(1, sizeof *e), **tail = &reg->entries;
    if (e == NULL) {
        return NULL;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    e->mm = fs_metrics_model(reg->metrics, name);
    if (e->mm == NULL) {
        free(e);
        return NULL;
    }
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = e;
    if (reg->timers_open && reg->cfg->watch) {
        fs__registry_watch_entry(reg, e);
    }
    fs_log(FS_LOG_DEBUG, "registry", "model name found name=%s", name);
    return e;
}

void fs__registry_watch_entry(fs_registry *reg, fs_entry *e)
{
    char dir[FS_DIR_MAX];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/%s", reg->cfg->models_dir, e->name);
    if (e->watch != NULL || (e->stream && stat(dir, &st) != 0)) {
        return; /* a stream model's directory appears with its first version */
    }
    e->watch = watch_dir(reg, dir);
}

fs_entry *fs_registry_ensure(fs_registry *reg, const char *name, int stream)
{
    fs_entry *e = fs_registry_find(reg, name, strlen(name));
    if (e == NULL) {
        e = add_entry(reg, name);
    }
    if (e != NULL && stream) {
        e->stream = 1;
    }
    return e;
}

/* Threadpool: the valid model names under models_dir (directories only). */
static void scan_work(uv_work_t *req)
{
    scan_job *j = req->data;
    size_t cap = 0;
    DIR *d = opendir(j->dir);
    struct dirent *de;
    if (d == NULL) {
        char eb[96];
        snprintf(j->error, sizeof j->error, "cannot read models_dir %.200s: %.80s", j->dir,
                 strerror_r(errno, eb, sizeof eb) == 0 ? eb : "error");
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char path[FS_DIR_MAX + 300];
        struct stat st;
        size_t len = strlen(de->d_name);
        if (!fs_model_name_valid(de->d_name, len) || de->d_name[0] == '.') {
            continue; /* hidden names: editors' and rsync's temporaries */
        }
        snprintf(path, sizeof path, "%s/%s", j->dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            continue;
        }
        if (j->n_names == cap) {
            size_t nc = cap == 0 ? 16 : cap * 2;
            char(*nn)[72] = realloc(j->names, nc * sizeof *nn);
            if (nn == NULL) {
                break;
            }
            j->names = nn;
            cap = nc;
        }
        memcpy(j->names[j->n_names++], de->d_name, len + 1);
    }
    closedir(d);
}

static void round_finish(fs_registry *reg);

static void round_waiter_done(fs_reload_waiter *w, fs_entry *e, int ok)
{
    fs_registry *reg = w->arg;
    (void)e;
    (void)ok;
    if (--reg->round_left == 0) {
        round_finish(reg);
    }
}

static void scan_after(uv_work_t *req, int status)
{
    scan_job *j = req->data;
    fs_registry *reg = j->reg;
    size_t n = 0;
    (void)status;
    reg->scanning = 0;
    if (j->error[0] != '\0') {
        fs_log(FS_LOG_ERROR, "registry", "scan failed error=\"%s\"", j->error);
    }
    for (size_t i = 0; i < j->n_names && !reg->closing; i++) {
        if (fs_registry_find(reg, j->names[i], strlen(j->names[i])) == NULL) {
            add_entry(reg, j->names[i]);
        }
    }
    free(j->names);
    free(j);
    for (fs_entry *e = reg->entries; e != NULL; e = e->next) {
        n++;
    }
    if (reg->closing || n == 0) {
        round_finish(reg);
        return;
    }
    reg->round_waiters = calloc(n, sizeof *reg->round_waiters);
    if (reg->round_waiters == NULL) {
        fs_log(FS_LOG_ERROR, "registry", "out of memory for a reload round");
        round_finish(reg);
        return;
    }
    int force = (reg->round_kinds & (FS_ROUND_SIGHUP | FS_ROUND_START)) != 0;
    size_t i = 0;
    reg->round_left = n;
    for (fs_entry *e = reg->entries; e != NULL; e = e->next, i++) {
        reg->round_waiters[i].done = round_waiter_done;
        reg->round_waiters[i].arg = reg;
        fs__registry_request_load(reg, e, force, &reg->round_waiters[i]);
    }
}

static void round_start(fs_registry *reg)
{
    scan_job *j = calloc(1, sizeof *j);
    reg->round_kinds = reg->next_kinds;
    reg->next_kinds = 0;
    if (j == NULL) {
        round_finish(reg);
        return;
    }
    j->req.data = j;
    j->reg = reg;
    snprintf(j->dir, sizeof j->dir, "%s", reg->cfg->models_dir);
    reg->scanning = 1;
    if (uv_queue_work(reg->loop, &j->req, scan_work, scan_after) != 0) {
        reg->scanning = 0;
        free(j);
        round_finish(reg);
    }
}

static void round_finish(fs_registry *reg)
{
    unsigned kinds = reg->round_kinds;
    free(reg->round_waiters);
    reg->round_waiters = NULL;
    reg->round_kinds = 0;
    if (kinds & FS_ROUND_START) {
        reg->started = 1;
    }
    if (reg->round_done != NULL) {
        reg->round_done(reg->round_arg, kinds);
    }
    if (reg->next_kinds != 0 && !reg->closing) {
        round_start(reg);
    }
}

void fs_registry_round(fs_registry *reg, unsigned kind)
{
    if (reg->closing) {
        return;
    }
    reg->next_kinds |= kind;
    if (reg->round_kinds == 0) {
        round_start(reg);
    }
}

static void on_debounce(uv_timer_t *t)
{
    fs_registry_round(t->data, FS_ROUND_RESCAN);
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    fs_registry *reg = h->data;
    (void)events;
    if (status != 0 || reg->closing) {
        return;
    }
    if (file != NULL && file[0] == '.') {
        return; /* a hidden temporary, renamed into place later */
    }
    /* Many events per copy: rescan once the directory has been quiet for a while. */
    uv_timer_start(&reg->debounce, on_debounce, reg->cfg->watch_debounce_ms, 0);
}

int fs_registry_watch(fs_registry *reg)
{
    uv_timer_init(reg->loop, &reg->debounce);
    uv_timer_init(reg->loop, &reg->rescan);
    reg->debounce.data = reg->rescan.data = reg;
    reg->timers_open = 1;
    if (reg->cfg->watch) {
        reg->watch = watch_dir(reg, reg->cfg->models_dir);
        for (fs_entry *e = reg->entries; e != NULL; e = e->next) {
            fs__registry_watch_entry(reg, e);
        }
    }
    if (reg->cfg->rescan_interval_s > 0) {
        uint64_t ms = (uint64_t)reg->cfg->rescan_interval_s * 1000u;
        uv_timer_start(&reg->rescan, on_debounce, ms, ms);
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    fs_registry *reg = h->data;
    reg->handles_open--;
}

void fs_registry_close(fs_registry *reg)
{
    reg->closing = 1;
    reg->next_kinds = 0;
    if (reg->watch != NULL) {
        uv_close((uv_handle_t *)reg->watch, on_watch_closed);
        reg->watch = NULL;
    }
    for (fs_entry *e = reg->entries; e != NULL; e = e->next) {
        if (e->watch != NULL) {
            uv_close((uv_handle_t *)e->watch, on_watch_closed);
            e->watch = NULL;
        }
    }
    if (reg->timers_open) {
        reg->handles_open += 2;
        uv_close((uv_handle_t *)&reg->debounce, on_timer_closed);
        uv_close((uv_handle_t *)&reg->rescan, on_timer_closed);
        reg->timers_open = 0;
    }
}

void fs_registry_free(fs_registry *reg)
{
    if (reg == NULL) {
        return;
    }
    fs_entry *e = reg->entries;
    while (e != NULL) {
        fs_entry *next = e->next;
        fs_model_unref(e->current);
        free(e->schema_json);
        free(e->header_extra);
        free(e->versions);
        free(e->refused);
        free(e);
        e = next;
    }
    free(reg->round_waiters);
    free(reg);
}
