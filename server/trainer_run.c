/*
 * trainer_run.c: one refit, on the trainer thread (issue 5): snapshot the spool, apply its
 * size policy, decode, leave out records above the served threshold (the contamination
 * guard), hold out the most recent records, train a candidate (warm from the served model or
 * from scratch), compare candidate and served model on the holdout with the engine's trimmed
 * validation metric, and recalibrate an accepted candidate on the holdout.
 */
#include "trainer_internal.h"

#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FS_REFIT_SCORE_CHUNK 1024

const char *fs_refit_decision_name(int decision)
{
    static const char *const names[FS_REFIT__COUNT] = { "accepted", "rejected", "failed" };
    return decision >= 0 && decision < FS_REFIT__COUNT ? names[decision] : "?";
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void fs__refit_cancel_init(fs_refit_cancel *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->active = NULL;
    atomic_init(&c->stop, false);
}

void fs__refit_cancel_deinit(fs_refit_cancel *c)
{
    pthread_mutex_destroy(&c->lock);
}

void fs__refit_cancel(fs_refit_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->stop, true);
    if (c->active != NULL) {
        fs_trainer_cancel(c->active);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t fs__refit_holdout_rows(size_t n, double fraction)
{
    size_t h = (size_t)floor((double)n * fraction + 0.5);
    if (h == 0 && n >= 3) {
        h = 1;
    }
    return h < n ? h : n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fs__refit_trimmed_mean(double *nll, size_t n, double trim)
{
    double sum = 0.0;
    if (n == 0) {
        return HUGE_VAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (isnan(nll[i])) {
            nll[i] = HUGE_VAL; /* worst: trimmed away if rare enough, as in the engine */
        }
    }
    qsort(nll, n, sizeof *nll, cmp_double);
    size_t keep = n - (size_t)floor((double)n * trim);
    for (size_t i = 0; i < keep; i++) {
        sum += nll[i];
    }
    return sum / (double)keep;
}

int fs__refit_decide(double cand, double cur, double margin, char *reason, size_t len)
{
    if (!isfinite(cand)) {
        snprintf(reason, len, "the candidate's holdout NLL is not finite");
        return FS_REFIT_REJECTED;
    }
    if (isnan(cur)) {
        snprintf(reason, len, "first version: holdout NLL %.6g", cand);
        return FS_REFIT_ACCEPTED;
    }
    if (cand <= cur + margin) {
        snprintf(reason, len, "holdout NLL %.6g <= served %.6g + margin %.6g", cand, cur, margin);
        return FS_REFIT_ACCEPTED;
    }
    snprintf(reason, len, "holdout NLL %.6g is worse than the served model's %.6g + margin %.6g",
             cand, cur, margin);
    return FS_REFIT_REJECTED;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Give each categorical field without levels the sorted distinct values of the records. */
static int learn_levels(const fs_spool_rec *recs, const size_t *idx, size_t n, fs_schema *schema)
{
    size_t n_fields = fs_schema_n_fields(schema);
    int rc = 0;
    for (size_t f = 0; f < n_fields && rc == 0; f++) {
        if (fs_schema_field_type(schema, f) != FS_FIELD_CATEGORICAL ||
            fs_schema_n_levels(schema, f) > 0) {
            continue;
        }
        char **vals = calloc(n + 1, sizeof *vals);
        size_t k = 0;
        rc = vals == NULL ? -1 : 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const fs_spool_rec *r = &recs[idx != NULL ? idx[i] : i];
            cJSON *a = cJSON_ParseWithLength(r->payload, r->len);
            const cJSON *v = cJSON_GetArrayItem(a, (int)f);
            if (cJSON_IsString(v) && v->valuestring[0] != '\0' &&
                strlen(v->valuestring) < FS_NAME_MAX) {
                vals[k] = strdup(v->valuestring);
                rc = vals[k] == NULL ? -1 : 0;
                k += vals[k] != NULL;
            }
            cJSON_Delete(a);
        }
        if (rc == 0 && k > 0) {
            size_t u = 0;
            qsort(vals, k, sizeof *vals, cmp_str);
            for (size_t i = 0; i < k; i++) {
                if (u == 0 || strcmp(vals[u - 1], vals[i]) != 0) {
                    vals[u++] = vals[i];
                } else {
                    free(vals[i]);
                }
            }
            k = u;
            rc = fs_schema_set_levels(schema, f, (const char *const *)vals, k) == FS_OK ? 0 : -1;
        }
        for (size_t i = 0; vals != NULL && i < k; i++) {
            free(vals[i]);
        }
        free(vals);
    }
    return rc;
}

/* One payload into row; -1 when it does not fit the schema. */
static int decode_one(const fs_spool_rec *r, const fs_schema *schema, size_t n_fields, double *row)
{
    cJSON *a = cJSON_ParseWithLength(r->payload, r->len);
    int rc = cJSON_IsArray(a) && (size_t)cJSON_GetArraySize(a) == n_fields ? 0 : -1;
    size_t f = 0;
    for (const cJSON *v = rc == 0 ? a->child : NULL; v != NULL; v = v->next, f++) {
        if (fs_schema_field_type(schema, f) == FS_FIELD_CATEGORICAL) {
            if (!cJSON_IsString(v)) {
                rc = -1;
                break;
            }
            row[f] = fs_schema_level_index(schema, f, v->valuestring, strlen(v->valuestring));
        } else if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
            row[f] = v->valuedouble;
        } else {
            rc = -1;
            break;
        }
    }
    cJSON_Delete(a);
    return rc;
}

int fs__refit_decode(const fs_spool_rec *recs, const size_t *idx, size_t n, fs_schema *schema,
                     int learn, double **rows_out, uint64_t **seqs_out, size_t *n_rows,
                     uint64_t *undecodable)
{
    size_t n_fields = fs_schema_n_fields(schema), k = 0;
    *rows_out = NULL;
    *seqs_out = NULL;
    *n_rows = 0;
    *undecodable = 0;
    if (learn && learn_levels(recs, idx, n, schema) != 0) {
        return -1;
    }
    double *rows = malloc((n * n_fields + 1) * sizeof *rows);
    uint64_t *seqs = malloc((n + 1) * sizeof *seqs);
    if (rows == NULL || seqs == NULL) {
        free(rows);
        free(seqs);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const fs_spool_rec *r = &recs[idx != NULL ? idx[i] : i];
        if (decode_one(r, schema, n_fields, rows + k * n_fields) != 0) {
            (*undecodable)++;
            continue;
        }
        seqs[k++] = r->seq;
    }
    *rows_out = rows;
    *seqs_out = seqs;
    *n_rows = k;
    return 0;
}

/* Score rows with m in chunks: log_prob (n values). Returns the engine's error. */
static fs_err log_probs(const fs_model *m, fs_workspace *ws, const double *rows, size_t n,
                        size_t n_fields, double *log_prob)
{
    fs_err err = fs_workspace_reserve(ws, m);
    for (size_t i = 0; err == FS_OK && i < n; i += FS_REFIT_SCORE_CHUNK) {
        size_t k = n - i < FS_REFIT_SCORE_CHUNK ? n - i : FS_REFIT_SCORE_CHUNK;
        err = fs_model_log_prob(m, ws, rows + i * n_fields, k, log_prob + i);
    }
    return err;
}

/* The contamination guard: drop the rows the served model flags as anomalies. */
static fs_err exclude_anomalies(fs_refit_job *job, fs_workspace *ws, double *rows, uint64_t *seqs,
                                size_t *n, size_t n_fields)
{
    fs_score *s = malloc(FS_REFIT_SCORE_CHUNK * sizeof *s);
    size_t kept = 0;
    fs_err err = s == NULL ? FS_ERR_NOMEM : fs_workspace_reserve(ws, job->current);
    for (size_t i = 0; err == FS_OK && i < *n; i += FS_REFIT_SCORE_CHUNK) {
        size_t k = *n - i < FS_REFIT_SCORE_CHUNK ? *n - i : FS_REFIT_SCORE_CHUNK;
        err = fs_model_score(job->current, ws, rows + i * n_fields, k, s);
        for (size_t j = 0; err == FS_OK && j < k; j++) {
            if (s[j].flags & FS_SCORE_ANOMALY) {
                job->excluded++;
                continue;
            }
            memmove(rows + kept * n_fields, rows + (i + j) * n_fields, n_fields * sizeof *rows);
            seqs[kept++] = seqs[i + j];
        }
    }
    free(s);
    if (err == FS_OK) {
        *n = kept;
    }
    return err;
}

/* Start from the defaults, the served model's choices (header), then this model's settings. */
static fs_train_params refit_params(const fs_refit_job *job)
{
    fs_train_params p = fs_train_default_params();
    if (job->current != NULL) {
        cJSON *h = cJSON_Parse(fs_model_header_json(job->current));
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(h, "training"), "params");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tp, "whiten");
        if (cJSON_IsBool(v)) {
            p.whiten = cJSON_IsTrue(v) ? 1 : 0;
        }
        v = cJSON_GetObjectItemCaseSensitive(tp, "clip_norm");
        if (cJSON_IsNumber(v) && v->valuedouble >= 0) {
            p.clip_norm = v->valuedouble;
        }
        v = cJSON_GetObjectItemCaseSensitive(tp, "low_quantile");
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 0.5) {
            p.low_quantile = v->valuedouble;
        }
        cJSON_Delete(h);
        p.threshold_quantile = fs_model_threshold_quantile(job->current);
    }
    p.epochs = (int32_t)job->cfg.epochs;
    p.lr = job->cfg.lr;
    p.batch_size = (int32_t)job->cfg.batch_size;
    p.optimizer = job->cfg.optimizer == 1 ? FS_OPT_SGD : FS_OPT_ADAM;
    p.seed = job->cfg.seed;
    p.patience = (int32_t)job->cfg.patience;
    p.threads = 1; /* parallelism belongs to the scoring workers */
    return p;
}

/* The spec of the served model (its header), for a refit from scratch. */
static fs_spec *header_spec(const fs_model *m, fs_diag *diag)
{
    cJSON *h = cJSON_Parse(fs_model_header_json(m));
    char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(h, "spec"));
    fs_spec *spec = NULL;
    if (text != NULL) {
        fs_spec_parse_json(text, strlen(text), &spec, diag);
    }
    cJSON_free(text);
    cJSON_Delete(h);
    return spec;
}

typedef struct progress_ctx {
    fs_refit_job *job;
    fs_refit_cancel *cancel;
    double t0;
} progress_ctx;

static int on_progress(void *user, const fs_train_progress *p)
{
    progress_ctx *c = user;
    if (atomic_load(&c->cancel->stop)) {
        return 1;
    }
    /* The time limit ends a refit only at an epoch's end, where the engine keeps the best
     * state (a stop in mid-epoch is a cancellation). */
    uint32_t limit = c->job->cfg.max_train_seconds;
    return limit > 0 && p->end_of_epoch && wall_seconds() - c->t0 >= (double)limit;
}

static void fail(fs_refit_job *job, const char *fmt, ...) FS_LOG_PRINTF(2, 3);

static void fail(fs_refit_job *job, const char *fmt, ...)
{
    va_list ap;
    job->decision = FS_REFIT_FAILED;
    va_start(ap, fmt);
    vsnprintf(job->reason, sizeof job->reason, fmt, ap);
    va_end(ap);
}

/* Train and judge on rows (n_train for training, then n_hold for the holdout). */
static void train_and_judge(fs_refit_job *job, fs_refit_cancel *cancel, fs_workspace *ws,
                            const fs_schema *schema, const double *rows, size_t n_train,
                            size_t n_hold)
{
    fs_diag diag = { "" };
    fs_trainer *t = NULL;
    fs_model *cand = NULL;
    fs_spec *own_spec = NULL;
    size_t n_fields = fs_schema_n_fields(schema);
    const double *hold = rows + n_train * n_fields;
    double *lp = malloc((n_hold + 1) * sizeof *lp);
    fs_train_params p = refit_params(job);
    fs_err err = lp == NULL ? FS_ERR_NOMEM : FS_OK;
    job->warm = job->cfg.warm_start && job->current != NULL;
    if (err == FS_OK && job->warm) {
        err = fs_trainer_create_warm(job->current, &p, rows, n_train, &t, &diag);
    } else if (err == FS_OK) {
        const fs_spec *spec = job->spec;
        if (job->current != NULL) {
            own_spec = header_spec(job->current, &diag);
            spec = own_spec;
        }
        err = spec == NULL ? FS_ERR_FORMAT
                           : fs_trainer_create(schema, spec, &p, rows, n_train, &t, &diag);
    }
    if (err == FS_OK) {
        progress_ctx pc = { job, cancel, wall_seconds() };
        pthread_mutex_lock(&cancel->lock);
        cancel->active = t;
        if (atomic_load(&cancel->stop)) {
            fs_trainer_cancel(t);
        }
        pthread_mutex_unlock(&cancel->lock);
        err = fs_trainer_fit(t, on_progress, &pc, &diag);
        pthread_mutex_lock(&cancel->lock);
        cancel->active = NULL;
        pthread_mutex_unlock(&cancel->lock);
        job->skipped_steps = fs_trainer_report(t)->skipped_steps;
        job->epochs_run = fs_trainer_report(t)->epochs_run;
        job->best_epoch = fs_trainer_report(t)->best_epoch;
    }
    if (err == FS_OK) {
        err = fs_trainer_model(t, &cand, &diag); /* refuses non-finite parameters */
    }
    if (err != FS_OK) {
        fail(job, "training failed: %s (%s)", diag.msg[0] != '\0' ? diag.msg : fs_strerror(err),
             fs_err_name(err));
        goto out;
    }
    err = log_probs(cand, ws, hold, n_hold, n_fields, lp);
    for (size_t i = 0; err == FS_OK && i < n_hold; i++) {
        if (!isfinite(lp[i])) {
            job->decision = FS_REFIT_REJECTED;
            snprintf(job->reason, sizeof job->reason,
                     "the candidate gives holdout record %zu a non-finite log density", i);
            goto out;
        }
        lp[i] = -lp[i];
    }
    if (err != FS_OK) {
        job->decision = FS_REFIT_REJECTED;
        snprintf(job->reason, sizeof job->reason, "the candidate cannot score the holdout: %s",
                 fs_err_name(err));
        goto out;
    }
    job->candidate_nll = fs__refit_trimmed_mean(lp, n_hold, p.val_trim);
    if (job->current != NULL) {
        if (log_probs(job->current, ws, hold, n_hold, n_fields, lp) == FS_OK) {
            for (size_t i = 0; i < n_hold; i++) {
                lp[i] = isfinite(lp[i]) ? -lp[i] : HUGE_VAL;
            }
            job->current_nll = fs__refit_trimmed_mean(lp, n_hold, p.val_trim);
        } else {
            job->current_nll = HUGE_VAL; /* the served model cannot score its own holdout */
        }
    }
    job->decision = fs__refit_decide(job->candidate_nll, job->current_nll,
                                     job->cfg.accept_margin_nats, job->reason, sizeof job->reason);
    if (job->decision == FS_REFIT_ACCEPTED && job->warm && job->best_epoch == 0) {
        /* Early stopping kept the starting point: the candidate is the served model again. */
        job->decision = FS_REFIT_REJECTED;
        snprintf(job->reason, sizeof job->reason,
                 "no improvement: no epoch beat the served model's parameters on the trainer's "
                 "validation rows (holdout NLL %.6g, served %.6g)",
                 job->candidate_nll, job->current_nll);
    }
    if (job->decision != FS_REFIT_ACCEPTED) {
        goto out;
    }
    if (n_hold >= FS_REFIT_CALIB_MIN_ROWS) {
        /* The holdout is recent and unseen by the fit: its scores set the threshold better
         * than the engine's validation split, which is older and smaller. */
        fs_model *recal = NULL;
        err = fs_model_recalibrate(cand, hold, n_hold, fs_model_threshold_quantile(cand),
                                   p.low_quantile, &recal, &diag);
        if (err != FS_OK) {
            fail(job, "recalibration failed: %s (%s)",
                 diag.msg[0] != '\0' ? diag.msg : fs_strerror(err), fs_err_name(err));
            goto out;
        }
        fs_model_unref(cand);
        cand = recal;
    }
    job->candidate = cand;
    cand = NULL;
out:
    fs_model_unref(cand);
    fs_trainer_free(t);
    fs_spec_free(own_spec);
    free(lp);
}

void fs__refit_run(fs_refit_job *job, fs_refit_cancel *cancel)
{
    char err[320];
    fs_spool_snapshot *snap = NULL;
    fs_schema *own_schema = NULL;
    fs_workspace *ws = NULL;
    size_t *keep = NULL, n = 0;
    double *rows = NULL;
    uint64_t *seqs = NULL;
    job->started = wall_seconds();
    job->candidate_nll = job->current_nll = (double)NAN;
    job->decision = FS_REFIT_FAILED;
    if (fs_spool_snapshot_take(job->spool, &snap, err, sizeof err) != 0) {
        fail(job, "cannot read the spool: %s", err);
        goto out;
    }
    job->snapshot_records = snap->n;
    keep = malloc((snap->n + 1) * sizeof *keep);
    const fs_schema *base = job->current != NULL ? fs_model_schema(job->current) : job->schema;
    if (keep == NULL || base == NULL || fs_schema_copy(base, &own_schema) != FS_OK ||
        fs_workspace_create(&ws) != FS_OK) {
        fail(job, "%s", base == NULL ? "no schema to train with" : "out of memory");
        goto out;
    }
    uint64_t rng = job->cfg.seed ^ (snap->records_seen * UINT64_C(0x9e3779b97f4a7c15));
    size_t k =
        fs_spool_select(snap->recs, snap->n, snap->base_seen, (size_t)job->cfg.spool_max_records,
                        (fs_spool_policy)job->cfg.spool_policy, &rng, keep);
    if (fs__refit_decode(snap->recs, keep, k, own_schema, job->current == NULL, &rows, &seqs, &n,
                         &job->undecodable) != 0) {
        fail(job, "out of memory decoding %zu records", k);
        goto out;
    }
    size_t n_fields = fs_schema_n_fields(own_schema);
    if (job->current != NULL && job->cfg.exclude_anomalies &&
        exclude_anomalies(job, ws, rows, seqs, &n, n_fields) != FS_OK) {
        fail(job, "the served model cannot score the spooled records");
        goto out;
    }
    job->rows = n;
    job->holdout_rows = fs__refit_holdout_rows(n, job->cfg.holdout_fraction);
    job->train_rows = n - job->holdout_rows;
    if (job->holdout_rows == 0 || job->train_rows < FS_TRAIN_MIN_ROWS) {
        job->decision = FS_REFIT_FAILED;
        snprintf(job->reason, sizeof job->reason,
                 "too few rows: %llu usable records (%llu excluded as anomalies); a refit needs "
                 "at least %d (%d to train, 1 to judge)",
                 (unsigned long long)n, (unsigned long long)job->excluded, FS_TRAIN_MIN_ROWS + 1,
                 FS_TRAIN_MIN_ROWS);
        goto out;
    }
    if (atomic_load(&cancel->stop)) {
        fail(job, "cancelled: the server is shutting down");
        goto out;
    }
    /* Rows are in stream order: the holdout is the most recent slice. */
    train_and_judge(job, cancel, ws, own_schema, rows, (size_t)job->train_rows,
                    (size_t)job->holdout_rows);
out:
    job->ended = wall_seconds();
    fs_spool_snapshot_free(snap);
    fs_schema_free(own_schema);
    fs_workspace_free(ws);
    free(keep);
    free(rows);
    free(seqs);
}

void fs__refit_job_free(fs_refit_job *job)
{
    if (job == NULL) {
        return;
    }
    fs_model_unref(job->current);
    fs_model_unref(job->candidate);
    free(job);
}
