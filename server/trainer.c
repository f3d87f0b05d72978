/*
 * trainer.c: the background trainer service on the loop thread (trainer.h): per-model
 * states, spool opens and appends through the spool I/O thread, the anomaly-burst detector,
 * refit triggers (records, interval, manual), and the mailbox side of the trainer thread:
 * accepted candidates are published with fs_registry_publish, every decision is recorded,
 * counted and persisted.
 */
#include "trainer.h"

#include "log.h"
#include "spool_io.h"
#include "trainer_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FS_REFIT_TICK_MS 1000

struct fs_store_req {
    fs_spool_op op;
    fs_tmodel *tm;
    unsigned char *anomalous; /* n_accepted flags */
    size_t n_accepted, n_rejected, n_anomalous;
    fs_refit_stored_fn done;
    void *arg;
    fs_store_req *next; /* tm->waiting */
};

typedef struct open_req {
    fs_spool_op op;
    fs_tmodel *tm;
    int startup;    /* counted in opens_pending */
    int have_saved; /* I/O thread: the state file parsed */
    fs_refit_saved saved;
} open_req;

struct fs_refit {
    uv_loop_t *loop;
    const fs_config *cfg;
    fs_registry *reg;
    fs_metrics *metrics;
    char dir[FS_CONFIG_PATH_MAX + 16]; /* <state_dir>/trainer */
    fs_spool_io *io;
    fs_refit_thread *thread;
    uv_timer_t tick;
    int tick_open;
    fs_tmodel *models;
    int opens_pending; /* start-up opens not yet back */
    int stopping;      /* SIGTERM: no new refits */
    int stopped;       /* threads joined */
};

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static fs_tmodel *find_model(fs_refit *r, const char *name)
{
    for (fs_tmodel *tm = r->models; tm != NULL; tm = tm->next) {
        if (strcmp(tm->name, name) == 0) {
            return tm;
        }
    }
    return NULL;
}

/* Spool counts into the metrics gauges. */
static void update_gauges(fs_tmodel *tm)
{
    uint64_t n, seen, bytes;
    if (tm->spool == NULL) {
        return;
    }
    fs_spool_stats(tm->spool, &n, &seen, &bytes);
    atomic_store(&tm->mm->spool_records, n);
    atomic_store(&tm->mm->spool_bytes, bytes);
}

static void on_written(fs_spool_op *op)
{
    if (op->status != 0) {
        fs_log(FS_LOG_ERROR, "trainer", "cannot save the trainer state path=%s error=\"%s\"",
               op->path, op->error);
    }
    free(op->data);
    free(op);
}

/* Save tm's counters and last run (the I/O thread writes the file atomically). */
static void persist(fs_tmodel *tm)
{
    fs_spool_op *op = calloc(1, sizeof *op);
    size_t len = 0;
    char *text = op != NULL ? fs__refit_state_format(tm, &len) : NULL;
    if (text == NULL || tm->r->stopped) {
        free(text);
        free(op);
        return;
    }
    op->kind = FS_SPOOL_OP_WRITE;
    op->path = tm->state_path;
    op->data = (unsigned char *)text;
    op->len = len;
    op->done = on_written;
    fs_spool_io_submit(tm->r->io, op);
}

static void start_run(fs_tmodel *tm, fs_entry *e, const char *trigger)
{
    fs_refit *r = tm->r;
    fs_refit_job *job = calloc(1, sizeof *job);
    uint64_t n, seen, bytes;
    if (job == NULL) {
        fs_log(FS_LOG_ERROR, "trainer", "out of memory starting a refit name=%s", tm->name);
        return;
    }
    snprintf(job->name, sizeof job->name, "%s", tm->name);
    job->current = e->current != NULL ? fs_model_ref(e->current) : NULL;
    job->version = e->version;
    job->spool = tm->spool;
    job->schema = tm->schema;
    job->spec = tm->spec;
    job->cfg = tm->cfg;
    snprintf(job->trigger, sizeof job->trigger, "%s", trigger);
    atomic_init(&job->picked, 0);
    fs_spool_stats(tm->spool, &n, &seen, &bytes);
    tm->saved.last_refit_seen = seen; /* new_records count from here */
    tm->saved.last_refit_at = wall_seconds();
    tm->state = FS_TSTATE_TRAINING;
    tm->running = job;
    fs_log(FS_LOG_INFO, "trainer",
           "refit started name=%s trigger=%s spooled=%llu seen=%llu version=%lld warm=%s", tm->name,
           trigger, (unsigned long long)n, (unsigned long long)seen, (long long)e->version,
           tm->cfg.warm_start && e->current != NULL ? "yes" : "no");
    fs__refit_thread_submit(r->thread, job);
}

/* Start a refit when one is due by count or interval. */
static void maybe_auto(fs_tmodel *tm)
{
    fs_refit *r = tm->r;
    uint64_t n, seen, bytes;
    const char *why = NULL;
    if (r->stopping || tm->state != FS_TSTATE_IDLE || tm->spool == NULL) {
        return;
    }
    fs_spool_stats(tm->spool, &n, &seen, &bytes);
    uint64_t fresh = seen > tm->saved.last_refit_seen ? seen - tm->saved.last_refit_seen : 0;
    if (tm->cfg.min_new_records > 0 && fresh >= tm->cfg.min_new_records) {
        why = "records";
    } else if (tm->cfg.refit_interval_s > 0 && fresh > 0 &&
               wall_seconds() - tm->saved.last_refit_at >= (double)tm->cfg.refit_interval_s) {
        why = "interval";
    }
    if (why == NULL) {
        return;
    }
    fs_entry *e = fs_registry_find(r->reg, tm->name, strlen(tm->name));
    if (e == NULL || (e->current == NULL && tm->schema == NULL)) {
        return; /* nothing to train from: a model that failed to load and has no schema */
    }
    start_run(tm, e, why);
}

static void finish_run(fs_tmodel *tm, fs_refit_job *job, int64_t version)
{
    fs_model_metrics *mm = tm->mm;
    fs__refit_record_set(&tm->saved.last, job, version);
    tm->saved.runs++;
    atomic_fetch_add(&mm->refits[job->decision], 1);
    atomic_fetch_add(&mm->refit_excluded, job->excluded);
    atomic_fetch_add(&mm->train_skipped_steps, (uint64_t)job->skipped_steps);
    fs_histogram_observe(&mm->refit_seconds, job->ended - job->started);
    fs_log(job->decision == FS_REFIT_FAILED ? FS_LOG_WARN : FS_LOG_INFO, "trainer",
           "refit %s name=%s version=%lld from=%lld rows=%llu holdout=%llu excluded=%llu "
           "candidate_val_nll=%.6g current_val_nll=%.6g noise_nats=%.3g seconds=%.2f "
           "reason=\"%s\"",
           fs_refit_decision_name(job->decision), tm->name, (long long)version,
           (long long)job->version, (unsigned long long)job->rows,
           (unsigned long long)job->holdout_rows, (unsigned long long)job->excluded,
           job->candidate_nll, job->current_nll, job->noise_nats, job->ended - job->started,
           job->reason);
    tm->state = FS_TSTATE_IDLE;
    tm->running = NULL;
    fs__refit_job_free(job);
    persist(tm);
    maybe_auto(tm);
}

static void on_published(fs_reload_waiter *w, fs_entry *e, int ok)
{
    fs_tmodel *tm = w->arg;
    fs_refit_job *job = tm->running;
    if (!ok) {
        job->decision = FS_REFIT_FAILED;
        snprintf(job->reason, sizeof job->reason, "publish failed: %.280s",
                 e->last_error[0] != '\0' ? e->last_error : "the registry is closing");
    }
    finish_run(tm, job, e->version);
}

/* Loop: a refit came back through the mailbox. */
static void on_refit_done(void *arg, fs_refit_job *job)
{
    fs_refit *r = arg;
    fs_tmodel *tm = find_model(r, job->name);
    fs_entry *e = fs_registry_find(r->reg, job->name, strlen(job->name));
    if (job->decision == FS_REFIT_ACCEPTED && r->stopping) {
        job->decision = FS_REFIT_FAILED;
        snprintf(job->reason, sizeof job->reason, "not published: the server is shutting down");
    } else if (job->decision == FS_REFIT_ACCEPTED && (e == NULL || e->version != job->version)) {
        /*
         * Another version was swapped in meanwhile: the candidate only beat the old one. A
         * reload of the same version (SIGHUP, the endpoint) loads the same file and does not
         * count (the soak test saw most refits refused for it).
         */
        job->decision = FS_REFIT_REJECTED;
        snprintf(job->reason, sizeof job->reason,
                 "the served model changed during the refit (version %lld, now %lld)",
                 (long long)job->version, e != NULL ? (long long)e->version : 0LL);
    } else if (job->decision == FS_REFIT_ACCEPTED) {
        tm->waiter.done = on_published;
        tm->waiter.arg = tm;
        tm->waiter.published = job->candidate;
        job->candidate = NULL;
        if (fs_registry_publish(r->reg, e, &tm->waiter) == 0) {
            tm->state = FS_TSTATE_PUBLISHING;
            return;
        }
        fs_model_unref(tm->waiter.published);
        tm->waiter.published = NULL;
        job->decision = FS_REFIT_FAILED;
        snprintf(job->reason, sizeof job->reason,
                 "publish refused: the registry is closing or another publication is running");
    }
    finish_run(tm, job, e != NULL ? e->version : job->version);
}

/* I/O thread: parse the state file that the open read. */
static void parse_saved(fs_spool_op *op)
{
    open_req *o = op->arg;
    if (op->text != NULL && fs__refit_state_parse(op->text, &o->saved) == 0) {
        o->have_saved = 1;
    }
}

static void submit_store(fs_tmodel *tm, fs_store_req *req)
{
    req->op.spool = tm->spool;
    fs_spool_io_submit(tm->r->io, &req->op);
}

static void on_opened(fs_spool_op *op)
{
    open_req *o = op->arg;
    fs_tmodel *tm = o->tm;
    fs_refit *r = tm->r;
    fs_spool_recovery *rec = &op->recovery;
    tm->opening = 0;
    r->opens_pending -= o->startup;
    if (op->status != 0) {
        tm->open_failed = 1;
        snprintf(tm->open_error, sizeof tm->open_error, "%s", op->error);
        fs_log(FS_LOG_ERROR, "trainer", "cannot open the spool name=%s error=\"%s\"", tm->name,
               op->error);
    } else {
        tm->spool = op->spool;
        if (o->have_saved) {
            tm->saved = o->saved;
        }
        if (rec->truncated) {
            fs_log(FS_LOG_WARN, "spool", "torn tail trimmed name=%s offset=%zu bytes=%zu", tm->name,
                   rec->scan.valid_end, rec->scan.torn_bytes);
        }
        if (rec->rewritten) {
            fs_log(FS_LOG_WARN, "spool",
                   "damaged spool repaired name=%s regions=%zu bytes=%zu header_ok=%d kept=%zu",
                   tm->name, rec->scan.n_corrupt, rec->scan.corrupt_bytes + rec->scan.torn_bytes,
                   rec->scan.header_ok, rec->scan.n_records);
        }
        fs_log(rec->created ? FS_LOG_DEBUG : FS_LOG_INFO, "spool",
               "spool opened name=%s records=%zu seen=%llu bytes=%llu", tm->name,
               rec->scan.n_records, (unsigned long long)rec->scan.records_seen,
               (unsigned long long)rec->file_bytes);
    }
    fs_store_req *w = tm->waiting;
    tm->waiting = NULL;
    while (w != NULL) {
        fs_store_req *next = w->next;
        w->next = NULL;
        if (tm->spool != NULL) {
            submit_store(tm, w);
        } else {
            w->op.status = -1;
            snprintf(w->op.error, sizeof w->op.error, "%s", tm->open_error);
            w->op.done(&w->op);
        }
        w = next;
    }
    free(op->text);
    free(o);
    update_gauges(tm);
    maybe_auto(tm);
}

static void open_spool(fs_tmodel *tm, int startup)
{
    open_req *o = calloc(1, sizeof *o);
    if (o == NULL) {
        tm->open_failed = 1;
        snprintf(tm->open_error, sizeof tm->open_error, "out of memory");
        return;
    }
    o->tm = tm;
    o->startup = startup;
    o->op.kind = FS_SPOOL_OP_OPEN;
    o->op.name = tm->name;
    o->op.dir = tm->r->dir;
    o->op.path = tm->state_path;
    o->op.done = on_opened;
    o->op.io_after = parse_saved;
    o->op.arg = o;
    tm->opening = 1;
    tm->r->opens_pending += startup;
    fs_spool_io_submit(tm->r->io, &o->op);
}

static fs_tmodel *model_new(fs_refit *r, const char *name, int startup)
{
    fs_tmodel *tm = calloc(1, sizeof *tm);
    if (tm == NULL) {
        return NULL;
    }
    snprintf(tm->name, sizeof tm->name, "%s", name);
    tm->r = r;
    tm->cfg = *fs_config_trainer(r->cfg, name);
    snprintf(tm->state_path, sizeof tm->state_path, "%s/%s.json", r->dir, name);
    tm->mm = fs_metrics_model(r->metrics, name);
    tm->ring = calloc(tm->cfg.burst_window, 1);
    if (tm->mm == NULL || tm->ring == NULL) {
        free(tm->ring);
        free(tm);
        return NULL;
    }
    atomic_store(&tm->mm->trainer, 1);
    tm->saved.last_refit_at = wall_seconds(); /* the interval counts from the start */
    tm->next = r->models;
    r->models = tm;
    open_spool(tm, startup);
    return tm;
}

static void on_tick(uv_timer_t *t)
{
    fs_refit *r = t->data;
    for (fs_tmodel *tm = r->models; tm != NULL; tm = tm->next) {
        update_gauges(tm);
        maybe_auto(tm);
    }
}

/* Every "<name>.spool" under the trainer directory (start-up: a small directory read). */
static void open_existing(fs_refit *r)
{
    DIR *d = opendir(r->dir);
    struct dirent *de;
    if (d == NULL) {
        return; /* no state yet */
    }
    while ((de = readdir(d)) != NULL) {
        char name[72];
        size_t len = strlen(de->d_name);
        if (len <= 6 || len - 6 >= sizeof name || strcmp(de->d_name + len - 6, ".spool") != 0) {
            continue;
        }
        memcpy(name, de->d_name, len - 6);
        name[len - 6] = '\0';
        if (fs_model_name_valid(name, len - 6) && name[0] != '.' && find_model(r, name) == NULL &&
            fs_config_trainer(r->cfg, name)->enabled) {
            model_new(r, name, 1);
        }
    }
    closedir(d);
}

static int any_enabled(const fs_config *cfg)
{
    int on = cfg->trainer.enabled;
    for (size_t i = 0; i < cfg->n_models; i++) {
        on |= cfg->models[i].trainer.enabled;
    }
    return on;
}

int fs_refit_create(uv_loop_t *loop, const fs_config *cfg, fs_registry *reg, fs_metrics *metrics,
                    fs_refit **out)
{
    fs_refit *r = NULL;
    *out = NULL;
    if (!any_enabled(cfg)) {
        fs_log(FS_LOG_INFO, "trainer", "background trainer disabled");
        return 0;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return -1;
    }
    r->loop = loop;
    r->cfg = cfg;
    r->reg = reg;
    r->metrics = metrics;
    snprintf(r->dir, sizeof r->dir, "%s/trainer", cfg->state_dir);
    r->io = fs_spool_io_create(loop);
    r->thread = r->io != NULL
                    ? fs__refit_thread_start(loop, cfg->trainer.priority, on_refit_done, r)
                    : NULL;
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    r->tick_open = 1;
    *out = r; /* from here on, fs_refit_stop and fs_refit_free clean up */
    if (r->io == NULL || r->thread == NULL) {
        fs_log(FS_LOG_ERROR, "trainer", "cannot start the trainer's threads");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const fs_model_config *m = &cfg->models[i];
        char err[512];
        if (!m->trainer.enabled) {
            continue;
        }
        fs_tmodel *tm = model_new(r, m->name, 1);
        if (tm == NULL) {
            return -1;
        }
        if (m->schema_file[0] != '\0') {
            if (fs_config_model_load(m, &tm->schema, &tm->spec, err, sizeof err) != 0) {
                fs_log(FS_LOG_ERROR, "trainer", "cannot load the model's schema or spec: %s", err);
                return -1;
            }
            if (fs_registry_ensure(reg, m->name, 1) == NULL) {
                return -1;
            }
        }
    }
    open_existing(r);
    uv_timer_start(&r->tick, on_tick, FS_REFIT_TICK_MS, FS_REFIT_TICK_MS);
    /* Say what each count is: "models=0" (the "models" entries) read as "no model is trained"
     * beside two loaded models, which the trainer does train (a user's report). */
    size_t n_stream = 0, n_off = 0, n_spools = 0;
    for (size_t i = 0; i < cfg->n_models; i++) {
        n_stream += cfg->models[i].trainer.enabled && cfg->models[i].schema_file[0] != '\0';
        n_off += !cfg->models[i].trainer.enabled;
    }
    for (const fs_tmodel *tm = r->models; tm != NULL; tm = tm->next) {
        n_spools++;
    }
    fs_log(FS_LOG_INFO, "trainer",
           "background trainer on dir=%s priority=%s trains=%s configured_models=%zu "
           "stream_models=%zu disabled_models=%zu spools=%zu",
           r->dir, fs_trainer_priority_name(cfg->trainer.priority),
           cfg->trainer.enabled ? "every-served-model" : "configured-models-only", cfg->n_models,
           n_stream, n_off, n_spools);
    return 0;
}

int fs_refit_ready(const fs_refit *r)
{
    return r == NULL || r->opens_pending == 0;
}

fs_tmodel *fs_refit_model(fs_refit *r, const fs_entry *e)
{
    if (r == NULL) {
        return NULL;
    }
    fs_tmodel *tm = find_model(r, e->name);
    if (tm == NULL && !r->stopped && fs_config_trainer(r->cfg, e->name)->enabled) {
        tm = model_new(r, e->name, 0);
    }
    return tm;
}

const fs_schema *fs_refit_schema(const fs_tmodel *tm)
{
    return tm->schema;
}

/* The burst detector: push this ingest's flags into the window and report transitions. */
static void burst_push(fs_tmodel *tm, const unsigned char *flags, size_t n)
{
    uint32_t win = tm->cfg.burst_window;
    for (size_t i = 0; i < n; i++) {
        tm->ring_count -= tm->ring_fill == win ? tm->ring[tm->ring_pos] : 0;
        tm->ring[tm->ring_pos] = flags[i];
        tm->ring_count += flags[i];
        tm->ring_pos = (tm->ring_pos + 1) % win;
        tm->ring_fill += tm->ring_fill < win;
    }
    double share = tm->ring_fill > 0 ? (double)tm->ring_count / (double)tm->ring_fill : 0.0;
    if (!tm->burst_active && tm->ring_fill == win && share > tm->cfg.burst_share) {
        tm->burst_active = 1;
        tm->burst_since = wall_seconds();
        tm->saved.bursts++;
        atomic_fetch_add(&tm->mm->anomaly_bursts, 1);
        atomic_store(&tm->mm->anomaly_burst, 1);
        fs_log(FS_LOG_WARN, "trainer",
               "anomaly burst name=%s share=%.3f window=%u threshold_share=%.3f "
               "exclude_anomalies=%s: records above the served threshold %s",
               tm->name, share, win, tm->cfg.burst_share,
               tm->cfg.exclude_anomalies ? "true" : "false",
               tm->cfg.exclude_anomalies ? "are left out of refits" : "WILL be learned");
    } else if (tm->burst_active && share <= tm->cfg.burst_share / 2) {
        tm->burst_active = 0;
        atomic_store(&tm->mm->anomaly_burst, 0);
        fs_log(FS_LOG_INFO, "trainer", "anomaly burst over name=%s share=%.3f", tm->name, share);
    }
}

static void on_stored(fs_spool_op *op)
{
    fs_store_req *req = op->arg;
    fs_tmodel *tm = req->tm;
    if (op->status == 0) {
        atomic_fetch_add(&tm->mm->ingest_accepted, req->n_accepted);
        atomic_fetch_add(&tm->mm->ingest_rejected, req->n_rejected);
        atomic_fetch_add(&tm->mm->ingest_anomalies, req->n_anomalous);
        tm->anomalous_total += req->n_anomalous;
        burst_push(tm, req->anomalous, req->n_accepted);
        req->done(req->arg, 1, NULL);
    } else {
        fs_log(FS_LOG_ERROR, "spool", "records not stored name=%s records=%zu error=\"%s\"",
               tm->name, req->n_accepted, op->error);
        req->done(req->arg, 0, op->error);
    }
    free(op->data);
    free(req->anomalous);
    free(req);
    update_gauges(tm);
    maybe_auto(tm);
}

int fs_refit_store(fs_refit *r, fs_tmodel *tm, fs_ingest_result *res, fs_refit_stored_fn done,
                   void *arg, char *err, size_t errlen)
{
    if (r->stopped) {
        snprintf(err, errlen, "the server is shutting down");
        return -1;
    }
    if (tm->open_failed) {
        snprintf(err, errlen, "the spool of model %s cannot be used: %s", tm->name, tm->open_error);
        return -1;
    }
    fs_store_req *req = calloc(1, sizeof *req);
    if (req == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    req->tm = tm;
    req->op.kind = FS_SPOOL_OP_APPEND;
    req->op.cap = tm->cfg.spool_max_records;
    req->op.policy = (fs_spool_policy)tm->cfg.spool_policy;
    req->op.data = (unsigned char *)res->frames.p;
    req->op.len = res->frames.len;
    req->op.done = on_stored;
    req->op.arg = req;
    memset(&res->frames, 0, sizeof res->frames); /* the frames are the op's now */
    req->anomalous = res->anomalous;
    res->anomalous = NULL;
    req->n_accepted = res->n_accepted;
    req->n_rejected = res->n_rejected;
    req->n_anomalous = res->n_anomalous;
    req->done = done;
    req->arg = arg;
    if (tm->spool == NULL) {
        req->next = tm->waiting; /* order across requests is not promised */
        tm->waiting = req;
    } else {
        submit_store(tm, req);
    }
    return 0;
}

int fs_refit_status(fs_refit *r, const fs_entry *e, fs_strbuf *b)
{
    fs_tmodel *tm = find_model(r, e->name);
    if (tm == NULL && fs_config_trainer(r->cfg, e->name)->enabled) {
        /* Nothing spooled yet: a GET does not create a spool (the first record does). */
        static fs_tmodel blank; /* loop thread only */
        memset(&blank, 0, sizeof blank);
        snprintf(blank.name, sizeof blank.name, "%s", e->name);
        blank.cfg = *fs_config_trainer(r->cfg, e->name);
        fs__refit_put_status(b, &blank);
        return 200;
    }
    if (tm == NULL) {
        fs_strbuf_puts(b, "{\"model\":");
        fs_strbuf_put_json_string(b, e->name, strlen(e->name));
        fs_strbuf_puts(b, ",\"enabled\":false,\"state\":\"disabled\",\"last_run\":null}\n");
        return 200;
    }
    fs__refit_put_status(b, tm);
    return 200;
}

int fs_refit_trigger(fs_refit *r, fs_entry *e, fs_strbuf *b, fs_req_error *err)
{
    fs_tmodel *tm = fs_refit_model(r, e);
    if (tm == NULL) {
        fs_req_error_set(err, 409, FS_EC_TRAINER_DISABLED, NULL,
                         "the background trainer is disabled for model %s (trainer.enabled)",
                         e->name);
        return 409;
    }
    if (r->stopping) {
        fs_req_error_set(err, 503, FS_EC_UNAVAILABLE, NULL, "the server is shutting down");
        return 503;
    }
    if (tm->open_failed || tm->spool == NULL) {
        fs_req_error_set(err, 503, FS_EC_UNAVAILABLE, NULL, "the spool of model %s is %s%s",
                         e->name, tm->open_failed ? "unusable: " : "still being opened",
                         tm->open_failed ? tm->open_error : "");
        return 503;
    }
    if (tm->state != FS_TSTATE_IDLE) {
        fs_req_error_set(err, 409, FS_EC_CONFLICT, NULL,
                         "a refit of model %s is already %s; see GET /v1/models/%s/training",
                         e->name, tm->state == FS_TSTATE_TRAINING ? "running" : "publishing",
                         e->name);
        return 409;
    }
    if (e->current == NULL && tm->schema == NULL) {
        fs_req_error_set(err, 409, FS_EC_CONFLICT, NULL,
                         "model %s serves no version and has no schema and spec configured "
                         "(\"models\" in the configuration): nothing to train",
                         e->name);
        return 409;
    }
    start_run(tm, e, "manual");
    fs_strbuf_puts(b, "{\"model\":");
    fs_strbuf_put_json_string(b, e->name, strlen(e->name));
    fs_strbuf_printf(b, ",\"state\":\"training\",\"trigger\":\"manual\",\"from_version\":");
    if (e->version > 0) {
        fs_strbuf_printf(b, "%lld}\n", (long long)e->version);
    } else {
        fs_strbuf_puts(b, "null}\n");
    }
    return 202;
}

void fs_refit_begin_stop(fs_refit *r)
{
    if (r == NULL) {
        return;
    }
    r->stopping = 1;
    fs__refit_thread_cancel(r->thread);
}

uint64_t fs_refit_pending(const fs_refit *r)
{
    return r != NULL ? fs_spool_io_pending(r->io) : 0;
}

void fs_refit_stop(fs_refit *r)
{
    if (r == NULL || r->stopped) {
        return;
    }
    r->stopping = 1;
    /* The trainer first: its last decision is recorded and persisted through the I/O thread,
     * which finishes every queued write before it is joined. */
    fs__refit_thread_stop(r->thread);
    r->thread = NULL;
    fs_spool_io_stop(r->io);
    r->io = NULL;
    r->stopped = 1;
    if (r->tick_open) {
        uv_close((uv_handle_t *)&r->tick, NULL);
        r->tick_open = 0;
    }
}

void fs_refit_free(fs_refit *r)
{
    if (r == NULL) {
        return;
    }
    fs_tmodel *tm = r->models;
    while (tm != NULL) {
        fs_tmodel *next = tm->next;
        fs__refit_job_free(tm->running);
        fs_spool_close(tm->spool);
        fs_schema_free(tm->schema);
        fs_spec_free(tm->spec);
        free(tm->ring);
        free(tm);
        tm = next;
    }
    free(r);
}
