/*
 * trainer_run.c: one refit, on the trainer thread (issue 5): snapshot the spool, apply its
 * size policy, decode, leave out records above the served threshold (the contamination
 * guard), hold out the most recent records, train a candidate (warm from the served model or
 * from scratch), compare candidate and served model on the holdout with the engine's trimmed
 * validation metric and the noise of the paired differences, and recalibrate an accepted
 * candidate on the holdout. Refits below trainer.min_refit_records usable rows or with fewer
 * than trainer.min_holdout_rows holdout rows fail before training.
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

double fs__refit_noise(double *diff, size_t n, double trim)
{
    if (n < 2) {
        return HUGE_VAL;
    }
    qsort(diff, n, sizeof *diff, cmp_double);
    size_t g = (size_t)floor((double)n * trim);
    if (2 * g >= n) {
        g = (n - 1) / 2;
    }
    double lo = diff[g], hi = diff[n - 1 - g], sum = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += diff[i] < lo ? lo : (diff[i] > hi ? hi : diff[i]);
    }
    double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++) {
        double w = diff[i] < lo ? lo : (diff[i] > hi ? hi : diff[i]);
        ss += (w - mean) * (w - mean);
    }
    double s_w = sqrt(ss / (double)(n - 1));
    double se = s_w / ((1.0 - 2.0 * (double)g / (double)n) * sqrt((double)n));
    return FS_REFIT_NOISE_Z * se;
}

int fs__refit_decide(double cand, double cur, double margin, double noise, char *reason, size_t len)
{
    if (!isfinite(cand)) {
        snprintf(reason, len, "the candidate's holdout NLL is not finite");
        return FS_REFIT_REJECTED;
    }
    if (isnan(cur)) {
        snprintf(reason, len, "first version: holdout NLL %.6g", cand);
        return FS_REFIT_ACCEPTED;
    }
    if (isinf(cur)) {
        snprintf(reason, len, "holdout NLL %.6g; the served model cannot score the holdout", cand);
        return FS_REFIT_ACCEPTED;
    }
    if (!isfinite(noise)) {
        snprintf(reason, len,
                 "holdout NLL %.6g against served %.6g: the comparison's noise cannot be "
                 "estimated (too few rows both models score)",
                 cand, cur);
        return FS_REFIT_REJECTED;
    }
    if (cand + noise <= cur + margin) {
        snprintf(reason, len, "holdout NLL %.6g + noise %.3g <= served %.6g + margin %.6g", cand,
                 noise, cur, margin);
        return FS_REFIT_ACCEPTED;
    }
    if (cand <= cur + margin) {
        snprintf(reason, len,
                 "not a significant improvement: holdout NLL %.6g against served %.6g "
                 "(difference %.3g nats) is within the comparison's noise %.3g nats "
                 "(%.0f standard errors) + margin %.6g",
                 cand, cur, cand - cur, noise, FS_REFIT_NOISE_Z, margin);
        return FS_REFIT_REJECTED;
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

/* Rows the contamination guard left out, in stream order (n x n_fields, malloc'd). */
typedef struct excluded_rows {
    double *rows;
    uint64_t *seqs;
    size_t n;
} excluded_rows;

/* The contamination guard: move the rows the served model flags as anomalies to ex. */
static fs_err exclude_anomalies(fs_refit_job *job, fs_workspace *ws, double *rows, uint64_t *seqs,
                                size_t *n, size_t n_fields, excluded_rows *ex)
{
    fs_score *s = malloc(FS_REFIT_SCORE_CHUNK * sizeof *s);
    size_t kept = 0;
    ex->rows = malloc((*n * n_fields + 1) * sizeof *ex->rows);
    ex->seqs = malloc((*n + 1) * sizeof *ex->seqs);
    ex->n = 0;
    fs_err err = s == NULL || ex->rows == NULL || ex->seqs == NULL
                     ? FS_ERR_NOMEM
                     : fs_workspace_reserve(ws, job->current);
    for (size_t i = 0; err == FS_OK && i < *n; i += FS_REFIT_SCORE_CHUNK) {
        size_t k = *n - i < FS_REFIT_SCORE_CHUNK ? *n - i : FS_REFIT_SCORE_CHUNK;
        err = fs_model_score(job->current, ws, rows + i * n_fields, k, s);
        for (size_t j = 0; err == FS_OK && j < k; j++) {
            const double *row = rows + (i + j) * n_fields;
            if (s[j].flags & FS_SCORE_ANOMALY) {
                job->excluded++;
                memcpy(ex->rows + ex->n * n_fields, row, n_fields * sizeof *row);
                ex->seqs[ex->n++] = seqs[i + j];
                continue;
            }
            memmove(rows + kept * n_fields, row, n_fields * sizeof *rows);
            seqs[kept++] = seqs[i + j];
        }
    }
    free(s);
    if (err == FS_OK) {
        *n = kept;
    }
    return err;
}

typedef struct nll_index {
    double nll;
    size_t i;
} nll_index;

static int cmp_nll_index(const void *a, const void *b)
{
    double x = ((const nll_index *)a)->nll, y = ((const nll_index *)b)->nll;
    return (x > y) - (x < y);
}

/*
 * The rows that calibrate an accepted candidate: the holdout, plus as many of the records the
 * guard left out of the holdout's stretch of the stream (ex, n_ex) as the served threshold
 * flags by design, (1 - q) of that stretch, the least anomalous under the candidate first.
 * Without them every refit re-cut the top (1 - q) of rows already cut at the served
 * threshold, and each version flagged about one point more of ordinary traffic than the last
 * (measured on case-04: 3.6% -> 4.5% after one refit); records beyond that share are taken
 * for contamination and stay out. Returns the rows (malloc'd, *n_cal of them) or NULL.
 */
static double *calibration_rows(const fs_refit_job *job, fs_workspace *ws, const fs_model *cand,
                                const double *hold, size_t n_hold, const double *ex, size_t n_ex,
                                size_t n_fields, size_t *n_cal)
{
    double q = fs_model_threshold_quantile(job->current != NULL ? job->current : cand);
    size_t allow = (size_t)floor((double)(n_hold + n_ex) * (1.0 - q) + 0.5);
    allow = allow < n_ex ? allow : n_ex;
    double *cal = malloc(((n_hold + allow) * n_fields + 1) * sizeof *cal);
    double *lp = malloc((n_ex + 1) * sizeof *lp);
    nll_index *order = malloc((n_ex + 1) * sizeof *order);
    if (cal == NULL || lp == NULL || order == NULL ||
        (allow > 0 && log_probs(cand, ws, ex, n_ex, n_fields, lp) != FS_OK)) {
        allow = 0; /* calibrate on the holdout alone */
    }
    if (cal != NULL) {
        memcpy(cal, hold, n_hold * n_fields * sizeof *cal);
    }
    if (cal != NULL && allow > 0) {
        for (size_t i = 0; i < n_ex; i++) {
            order[i].nll = isfinite(lp[i]) ? -lp[i] : HUGE_VAL;
            order[i].i = i;
        }
        qsort(order, n_ex, sizeof *order, cmp_nll_index);
        for (size_t k = 0; k < allow; k++) {
            memcpy(cal + (n_hold + k) * n_fields, ex + order[k].i * n_fields,
                   n_fields * sizeof *cal);
        }
    }
    free(lp);
    free(order);
    *n_cal = cal != NULL ? n_hold + allow : 0;
    return cal;
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
                            size_t n_hold, const double *ex, size_t n_ex)
{
    fs_diag diag = { "" };
    fs_trainer *t = NULL;
    fs_model *cand = NULL;
    fs_spec *own_spec = NULL;
    size_t n_fields = fs_schema_n_fields(schema);
    const double *hold = rows + n_train * n_fields;
    double *lp = malloc((3 * n_hold + 1) * sizeof *lp);
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
    /* Row by row: candidate NLLs, served NLLs, then scratch (the trimmed means sort). */
    double *cand_nll = lp, *cur_nll = lp + n_hold, *work = lp + 2 * n_hold;
    err = log_probs(cand, ws, hold, n_hold, n_fields, cand_nll);
    for (size_t i = 0; err == FS_OK && i < n_hold; i++) {
        if (!isfinite(cand_nll[i])) {
            job->decision = FS_REFIT_REJECTED;
            snprintf(job->reason, sizeof job->reason,
                     "the candidate gives holdout record %zu a non-finite log density", i);
            goto out;
        }
        cand_nll[i] = -cand_nll[i];
    }
    if (err != FS_OK) {
        job->decision = FS_REFIT_REJECTED;
        snprintf(job->reason, sizeof job->reason, "the candidate cannot score the holdout: %s",
                 fs_err_name(err));
        goto out;
    }
    memcpy(work, cand_nll, n_hold * sizeof *work);
    job->candidate_nll = fs__refit_trimmed_mean(work, n_hold, p.val_trim);
    if (job->current != NULL) {
        if (log_probs(job->current, ws, hold, n_hold, n_fields, cur_nll) == FS_OK) {
            for (size_t i = 0; i < n_hold; i++) {
                cur_nll[i] = isfinite(cur_nll[i]) ? -cur_nll[i] : HUGE_VAL;
            }
            memcpy(work, cur_nll, n_hold * sizeof *work);
            job->current_nll = fs__refit_trimmed_mean(work, n_hold, p.val_trim);
            /* Both models score the same rows: the paired differences give the noise. */
            size_t k = 0;
            for (size_t i = 0; i < n_hold; i++) {
                if (isfinite(cur_nll[i])) {
                    work[k++] = cand_nll[i] - cur_nll[i];
                }
            }
            job->noise_nats = fs__refit_noise(work, k, p.val_trim);
        } else {
            job->current_nll = HUGE_VAL; /* the served model cannot score its own holdout */
        }
    }
    job->decision =
        fs__refit_decide(job->candidate_nll, job->current_nll, job->cfg.accept_margin_nats,
                         job->noise_nats, job->reason, sizeof job->reason);
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
    /*
     * The published threshold comes from recent rows the fit never saw: the holdout (and its
     * stretch's guarded-out records, see calibration_rows), never the engine's calibration,
     * which is in-sample on every training row when its validation split is small: a refit
     * of 4 records published a threshold from 3 rows that flagged 4952 of 5000 training rows
     * (a user's report). min_holdout_rows keeps the holdout large enough.
     */
    size_t n_cal = 0;
    double *cal = calibration_rows(job, ws, cand, hold, n_hold, ex, n_ex, n_fields, &n_cal);
    fs_model *recal = NULL;
    err = cal == NULL ? FS_ERR_NOMEM
                      : fs_model_recalibrate(cand, cal, n_cal, fs_model_threshold_quantile(cand),
                                             p.low_quantile, &recal, &diag);
    free(cal);
    if (err != FS_OK) {
        fail(job, "recalibration failed: %s (%s)",
             diag.msg[0] != '\0' ? diag.msg : fs_strerror(err), fs_err_name(err));
        goto out;
    }
    fs_model_unref(cand);
    cand = recal;
    job->calibration_rows = n_cal;
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
    excluded_rows ex = { NULL, NULL, 0 };
    job->started = wall_seconds();
    job->candidate_nll = job->current_nll = job->noise_nats = (double)NAN;
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
        exclude_anomalies(job, ws, rows, seqs, &n, n_fields, &ex) != FS_OK) {
        fail(job, "the served model cannot score the spooled records");
        goto out;
    }
    job->rows = n;
    job->holdout_rows = fs__refit_holdout_rows(n, job->cfg.holdout_fraction);
    job->train_rows = n - job->holdout_rows;
    /* Every trigger, manual too: a refit on a handful of records published a threshold from
     * 3 rows that flagged 4952 of 5000 training rows (a user's report). */
    if (n < job->cfg.min_refit_records || job->train_rows < FS_TRAIN_MIN_ROWS) {
        fail(job,
             "too few records for a refit: %llu usable rows (%llu spooled, %llu undecodable, "
             "%llu excluded as anomalies); min_refit_records is %llu",
             (unsigned long long)n, (unsigned long long)job->snapshot_records,
             (unsigned long long)job->undecodable, (unsigned long long)job->excluded,
             (unsigned long long)job->cfg.min_refit_records);
        goto out;
    }
    if (job->holdout_rows < job->cfg.min_holdout_rows) {
        fail(job,
             "holdout too small: %llu rows (holdout_fraction %g of %llu usable rows); "
             "min_holdout_rows is %u: send more records or raise holdout_fraction",
             (unsigned long long)job->holdout_rows, job->cfg.holdout_fraction,
             (unsigned long long)n, job->cfg.min_holdout_rows);
        goto out;
    }
    if (atomic_load(&cancel->stop)) {
        fail(job, "cancelled: the server is shutting down");
        goto out;
    }
    /* Rows are in stream order: the holdout is the most recent slice, and so are the
     * guarded-out records past the last training row. */
    size_t ex_from = 0;
    while (ex_from < ex.n && ex.seqs[ex_from] < seqs[job->train_rows - 1]) {
        ex_from++;
    }
    train_and_judge(job, cancel, ws, own_schema, rows, (size_t)job->train_rows,
                    (size_t)job->holdout_rows, ex.n > 0 ? ex.rows + ex_from * n_fields : NULL,
                    ex.n - ex_from);
out:
    free(ex.rows);
    free(ex.seqs);
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
