/*
 * train.c: maximum-likelihood training of a flow with reversible backprop.
 *
 * Loss: the mean over a batch of -log p(x) in nats (Dinh et al. 2017, eq. 3). The forward pass
 * keeps only the latents z of the batch; fs__flow_backward reconstructs each layer's input by
 * inverting its output (Gomez et al. 2017; Jacobsen et al. 2018), so activation memory does not
 * grow with depth. A batch is split into `threads` contiguous shards whose gradients are summed
 * in a fixed order, so training is deterministic for a given seed and thread count.
 *
 * Guard rails (issue 3 §4): a non-finite loss, gradient or update is never applied; the step
 * is skipped and counted, and the learning rate halved; too many skips end training with
 * FS_ERR_NUMERIC. Early stopping on the validation NLL restores the best state, which is then
 * calibrated on held-out scores.
 */
#include "train.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FS__EVAL_CHUNK 512

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- helper threads: a fork-join over the shards of one batch ---- */

static void shard_run(fs_trainer *t, shard *s);

static void *shard_thread(void *arg)
{
    const struct thread_arg *a = arg;
    fs_trainer *t = a->t;
    uint64_t seen = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->quit && t->generation == seen) {
            pthread_cond_wait(&t->cv_work, &t->mu);
        }
        if (t->quit) {
            break;
        }
        seen = t->generation;
        pthread_mutex_unlock(&t->mu);
        shard_run(t, &t->shards[a->index]);
        pthread_mutex_lock(&t->mu);
        if (--t->pending == 0) {
            pthread_cond_signal(&t->cv_done);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void threads_stop(fs_trainer *t)
{
    if (t->n_threads_started == 0) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->cv_work);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < t->n_threads_started; i++) {
        pthread_join(t->threads[i], NULL);
    }
    t->n_threads_started = 0;
    t->quit = false;
}

static fs_err threads_start(fs_trainer *t)
{
    while (t->n_threads_started < t->n_shards - 1) {
        int i = t->n_threads_started;
        t->args[i].t = t;
        t->args[i].index = i + 1;
        if (pthread_create(&t->threads[i], NULL, shard_thread, &t->args[i]) != 0) {
            return FS_ERR_NOMEM;
        }
        t->n_threads_started++;
    }
    return FS_OK;
}

/* Run every shard of the current batch: shard 0 here, the others on the helper threads. */
static void shards_run(fs_trainer *t)
{
    if (t->n_shards > 1) {
        pthread_mutex_lock(&t->mu);
        t->pending = t->n_shards - 1;
        t->generation++;
        pthread_cond_broadcast(&t->cv_work);
        pthread_mutex_unlock(&t->mu);
    }
    shard_run(t, &t->shards[0]);
    if (t->n_shards > 1) {
        pthread_mutex_lock(&t->mu);
        while (t->pending > 0) {
            pthread_cond_wait(&t->cv_done, &t->mu);
        }
        pthread_mutex_unlock(&t->mu);
    }
}

/* ---- one shard: forward, loss, reversible backward ---- */

static void shard_run(fs_trainer *t, shard *s)
{
    size_t d = t->d, n = s->n;
    size_t batch = 0;
    const float *x = t->xb + s->r0 * d;
    double loss = 0.0, err_max = 0.0;
    for (int i = 0; i < t->n_shards; i++) {
        batch += t->shards[i].n;
    }
    s->loss_sum = 0.0;
    s->recon_err = 0.0;
    s->err = FS_OK;
    memset(s->grad, 0, t->flow.n_params * sizeof *s->grad);
    if (n == 0) {
        return;
    }
    memset(s->log_det, 0, n * sizeof *s->log_det);
    s->err = fs__flow_forward_train_f32(&t->flow, t->params, t->buffers, s->batch_stats, s->scratch,
                                        x, n, s->z, s->log_det);
    if (s->err != FS_OK) {
        return;
    }
    for (size_t r = 0; r < n; r++) {
        double sq = 0.0;
        for (size_t j = 0; j < d; j++) {
            double zj = (double)s->z[r * d + j];
            sq += zj * zj;
            /* d/dz of the batch mean of 0.5 |z|^2 */
            s->dz[r * d + j] = (float)(zj / (double)batch);
        }
        loss += 0.5 * sq + (double)d * FS__HALF_LOG_2PI - s->log_det[r];
    }
    s->loss_sum = loss;
    if (!isfinite(loss)) {
        return; /* the caller skips the step */
    }
    s->err = fs__flow_backward_f32(&t->flow, t->params, t->buffers, s->batch_stats, s->scratch,
                                   s->z, s->dz, n, 1.0 / (double)batch, s->x_rec, s->dx, s->grad);
    for (size_t i = 0; s->err == FS_OK && i < n * d; i++) {
        double e = fabs((double)s->x_rec[i] - (double)x[i]);
        if (!(e <= err_max)) {
            err_max = e; /* NaN propagates into the report */
        }
    }
    s->recon_err = err_max;
}

/* ---- set-up ---- */

static void shard_free(shard *s, const fs_trainer *t)
{
    fs__free(s->scratch);
    fs__free(s->z);
    fs__free(s->x_rec);
    fs__free(s->dz);
    fs__free(s->dx);
    fs__free(s->log_det);
    fs__free(s->batch_stats);
    if (s->grad != t->grad) {
        fs__free(s->grad);
    }
    memset(s, 0, sizeof *s);
}

void fs_trainer_free(fs_trainer *t)
{
    if (t == NULL) {
        return;
    }
    threads_stop(t);
    for (int i = 0; i < FS__MAX_THREADS; i++) {
        shard_free(&t->shards[i], t);
    }
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv_work);
    pthread_cond_destroy(&t->cv_done);
    fs_schema_free(t->schema);
    fs_spec_free(t->spec);
    fs__prep_deinit(&t->prep);
    fs__flow_deinit(&t->flow);
    fs__free(t->params);
    fs__free(t->buffers);
    fs__free(t->grad);
    fs__free(t->best_params);
    fs__free(t->best_buffers);
    fs__optim_deinit(&t->opt);
    fs__free(t->x_train);
    fs__free(t->x_val);
    fs__free(t->extra_train);
    fs__free(t->extra_val);
    fs__free(t->raw_train);
    fs__free(t->xb);
    fs__free(t->extra_b);
    fs__free(t->raw_b);
    fs__free(t->noise_b);
    fs__free(t->wb);
    fs__free(t);
}

static fs_err alloc_batch(fs_trainer *t, size_t cap)
{
    size_t d = t->d, per;
    if (cap <= t->cap && t->n_shards > 0) {
        return FS_OK;
    }
    for (int i = 0; i < FS__MAX_THREADS; i++) {
        shard_free(&t->shards[i], t);
    }
    fs__free(t->xb);
    fs__free(t->extra_b);
    fs__free(t->raw_b);
    fs__free(t->noise_b);
    fs__free(t->wb);
    t->raw_b = t->noise_b = t->wb = NULL;
    t->cap = cap;
    t->n_shards = (int)((size_t)t->p.threads < cap ? (size_t)t->p.threads : cap);
    if (t->n_shards < 1) {
        t->n_shards = 1;
    }
    per = (cap + (size_t)t->n_shards - 1) / (size_t)t->n_shards;
    t->xb = fs__calloc(fs__mul_size(cap, d), sizeof *t->xb);
    t->extra_b = fs__calloc(cap, sizeof *t->extra_b);
    if (t->xb == NULL || t->extra_b == NULL) {
        return FS_ERR_NOMEM;
    }
    if (t->dequant) {
        t->raw_b = fs__calloc(fs__mul_size(cap, t->n_fields), sizeof *t->raw_b);
        t->noise_b = fs__calloc(fs__mul_size(cap, t->n_fields), sizeof *t->noise_b);
        t->wb = fs__calloc(fs__mul_size(cap, d), sizeof *t->wb);
        if (t->raw_b == NULL || t->noise_b == NULL || t->wb == NULL) {
            return FS_ERR_NOMEM;
        }
    }
    for (int i = 0; i < t->n_shards; i++) {
        shard *s = &t->shards[i];
        s->scratch = fs__calloc(fs__flow_scratch_f32(&t->flow, per) + 16, sizeof(float));
        s->z = fs__calloc(fs__mul_size(per, d), sizeof *s->z);
        s->x_rec = fs__calloc(fs__mul_size(per, d), sizeof *s->x_rec);
        s->dz = fs__calloc(fs__mul_size(per, d), sizeof *s->dz);
        s->dx = fs__calloc(fs__mul_size(per, d), sizeof *s->dx);
        s->log_det = fs__calloc(per, sizeof *s->log_det);
        s->batch_stats = fs__calloc(fs__mul_size(t->flow.n_layers * 2, d) + 1, sizeof(double));
        s->grad = i == 0 ? t->grad : fs__calloc(t->flow.n_params + 1, sizeof(float));
        if (s->scratch == NULL || s->z == NULL || s->x_rec == NULL || s->dz == NULL ||
            s->dx == NULL || s->log_det == NULL || s->batch_stats == NULL || s->grad == NULL) {
            return FS_ERR_NOMEM;
        }
    }
    return threads_start(t);
}

/* ---- evaluation ---- */

/*
 * -log p of n preprocessed rows (float32 flow, float64 fallback per row), into nll (may be
 * NULL); returns the mean, or a non-finite value if a row cannot be evaluated.
 */
double fs__train_eval_nll(fs_trainer *t, const float *x, const double *extra, size_t n, double *nll)
{
    size_t d = t->d, chunk = FS__EVAL_CHUNK;
    float *z = fs__calloc(fs__mul_size(chunk, d), sizeof *z);
    double *ld = fs__calloc(chunk, sizeof *ld), *z64 = fs__calloc(d, sizeof *z64);
    void *s32 = fs__calloc(fs__flow_scratch_f32(&t->flow, chunk) + 16, sizeof(float));
    void *s64 = fs__calloc(fs__flow_scratch_f64(&t->flow, 1) + 16, sizeof(double));
    double sum = 0.0;
    if (z == NULL || ld == NULL || z64 == NULL || s32 == NULL || s64 == NULL || n == 0) {
        sum = n == 0 ? 0.0 : (double)NAN;
        goto out;
    }
    for (size_t r0 = 0; r0 < n; r0 += chunk) {
        size_t m = n - r0 < chunk ? n - r0 : chunk;
        memset(ld, 0, m * sizeof *ld);
        if (fs__flow_forward_f32(&t->flow, t->params, t->buffers, s32, x + r0 * d, m, z, ld) !=
            FS_OK) {
            sum = (double)NAN;
            goto out;
        }
        for (size_t r = 0; r < m; r++) {
            double sq = 0.0, v;
            for (size_t j = 0; j < d; j++) {
                sq += (double)z[r * d + j] * (double)z[r * d + j];
            }
            v = 0.5 * sq + (double)d * FS__HALF_LOG_2PI - ld[r] - extra[r0 + r];
            if (!isfinite(v)) {
                double ld64 = 0.0;
                for (size_t j = 0; j < d; j++) {
                    z64[j] = (double)x[(r0 + r) * d + j];
                }
                sq = 0.0;
                if (fs__flow_forward_f64(&t->flow, t->params, t->buffers, s64, z64, 1, z64,
                                         &ld64) == FS_OK) {
                    for (size_t j = 0; j < d; j++) {
                        sq += z64[j] * z64[j];
                    }
                }
                v = 0.5 * sq + (double)d * FS__HALF_LOG_2PI - ld64 - extra[r0 + r];
            }
            if (nll != NULL) {
                nll[r0 + r] = v;
            }
            sum += v;
        }
    }
    sum /= (double)n;
out:
    fs__free(z);
    fs__free(ld);
    fs__free(z64);
    fs__free(s32);
    fs__free(s64);
    return sum;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * The early-stopping metric: the mean validation NLL over all rows but the worst val_trim
 * share. A handful of rows far outside the training range (rare categorical levels scaled up
 * by standardisation) can otherwise dominate the mean and stop training at once.
 */
static double val_metric(fs_trainer *t)
{
    size_t n = t->n_val, keep;
    double *nll, sum = 0.0;
    if (n == 0) {
        return HUGE_VAL;
    }
    nll = fs__calloc(n, sizeof *nll);
    if (nll == NULL) {
        return (double)NAN;
    }
    (void)fs__train_eval_nll(t, t->x_val, t->extra_val, n, nll);
    for (size_t i = 0; i < n; i++) {
        if (isnan(nll[i])) {
            nll[i] = HUGE_VAL; /* worst; trimmed away if rare enough */
        }
    }
    qsort(nll, n, sizeof *nll, cmp_double);
    keep = n - (size_t)floor((double)n * t->p.val_trim);
    for (size_t i = 0; i < keep; i++) {
        sum += nll[i];
    }
    fs__free(nll);
    return sum / (double)keep;
}

/* ---- steps ---- */

static double schedule_lr(const fs_trainer *t, int64_t total_steps, int32_t epoch)
{
    const fs_train_params *p = &t->p;
    double lr = p->lr;
    if (p->schedule == FS_LR_COSINE && total_steps > 0) {
        double f = (double)t->step / (double)total_steps;
        lr *= 0.5 * (1.0 + cos(3.14159265358979323846 * (f < 1.0 ? f : 1.0)));
    } else if (p->schedule == FS_LR_STEP) {
        lr *= pow(p->step_gamma, (double)(epoch / p->step_epochs));
    }
    if (p->warmup_steps > 0 && t->step < p->warmup_steps) {
        lr *= (double)(t->step + 1) / (double)p->warmup_steps;
    }
    return lr * t->lr_scale;
}

/* Update batch-norm running statistics from the shards' batch statistics. */
static void update_running_stats(fs_trainer *t)
{
    size_t d = t->d;
    for (size_t i = 0; i < t->flow.n_layers; i++) {
        const fs__layer *l = &t->flow.layers[i];
        float *mean = t->buffers + l->buffer_offset, *var = mean + d;
        int used = 0;
        if (l->kind != FS__LAYER_BATCHNORM) {
            continue;
        }
        for (int s = 0; s < t->n_shards; s++) {
            used += t->shards[s].n > 0;
        }
        for (size_t j = 0; j < d; j++) {
            double bm = 0.0, bv = 0.0;
            for (int s = 0; s < t->n_shards; s++) {
                if (t->shards[s].n > 0) {
                    const double *st = t->shards[s].batch_stats + i * 2 * d;
                    bm += st[j];
                    bv += st[d + j];
                }
            }
            bm /= used;
            bv /= used;
            mean[j] =
                (float)((1.0 - (double)l->momentum) * (double)mean[j] + (double)l->momentum * bm);
            var[j] =
                (float)((1.0 - (double)l->momentum) * (double)var[j] + (double)l->momentum * bv);
        }
    }
}

/*
 * One step on the n rows already in t->xb / t->extra_b. *loss gets the batch's mean NLL
 * (nats, including preprocessing terms). A non-finite loss, gradient or update skips the step.
 */
static fs_err step_batch(fs_trainer *t, size_t n, double lr, double *loss, fs_diag *diag)
{
    size_t per = (n + (size_t)t->n_shards - 1) / (size_t)t->n_shards, np = t->flow.n_params;
    double flow_loss = 0.0, extra = 0.0, norm2 = 0.0, recon = 0.0;
    bool finite;
    for (int s = 0; s < t->n_shards; s++) {
        size_t r0 = (size_t)s * per;
        t->shards[s].r0 = r0 < n ? r0 : n;
        t->shards[s].n = r0 < n ? (n - r0 < per ? n - r0 : per) : 0;
    }
    shards_run(t);
    for (int s = 0; s < t->n_shards; s++) {
        if (t->shards[s].err != FS_OK && t->shards[s].err != FS_ERR_NUMERIC) {
            return fs__diag(diag, t->shards[s].err, "training step failed: %s",
                            fs_strerror(t->shards[s].err));
        }
        flow_loss += t->shards[s].loss_sum;
        if (!(t->shards[s].recon_err <= recon)) {
            recon = t->shards[s].recon_err;
        }
    }
    for (size_t r = 0; r < n; r++) {
        extra += t->extra_b[r];
    }
    *loss = (flow_loss - extra) / (double)n;
    finite = isfinite(*loss);
    for (int s = 1; finite && s < t->n_shards; s++) {
        const float *g = t->shards[s].grad;
        for (size_t i = 0; i < np; i++) {
            t->grad[i] += g[i];
        }
    }
    for (size_t i = 0; finite && i < np; i++) {
        norm2 += (double)t->grad[i] * (double)t->grad[i];
    }
    finite = finite && isfinite(norm2);
    if (finite && t->p.clip_norm > 0 && sqrt(norm2) > t->p.clip_norm) {
        float scale = (float)(t->p.clip_norm / sqrt(norm2));
        for (size_t i = 0; i < np; i++) {
            t->grad[i] *= scale;
        }
    }
    if (finite) {
        finite = fs__optim_step(&t->opt, t->params, t->grad, lr);
    }
    if (!finite) {
        /* never applied: count it, halve the learning rate, and give up if it keeps on */
        t->report.skipped_steps++;
        t->consecutive_bad++;
        t->lr_scale *= 0.5;
        fs__log(FS_LOG_WARN, "train: non-finite step skipped step=%lld lr_scale=%g",
                (long long)t->step, t->lr_scale);
        if (t->consecutive_bad >= t->p.max_nonfinite_steps ||
            t->report.skipped_steps >= t->p.max_bad_steps_total) {
            return fs__diag(diag, FS_ERR_NUMERIC,
                            "training diverged: %lld non-finite steps (%lld in a row); try a "
                            "lower learning rate or a shallower spec",
                            (long long)t->report.skipped_steps, (long long)t->consecutive_bad);
        }
        return FS_OK;
    }
    t->consecutive_bad = 0;
    update_running_stats(t);
    if (!(recon <= t->report.max_recon_error)) {
        t->report.max_recon_error = recon;
    }
    t->step++;
    return FS_OK;
}

/* Gather the training rows idx[0..n) into the batch buffers (dequantising if asked). */
static fs_err gather(fs_trainer *t, const size_t *idx, size_t n, fs_diag *diag)
{
    size_t d = t->d, nf = t->n_fields;
    if (!t->dequant) {
        for (size_t r = 0; r < n; r++) {
            memcpy(t->xb + r * d, t->x_train + idx[r] * d, d * sizeof *t->xb);
            t->extra_b[r] = t->extra_train[idx[r]];
        }
        return FS_OK;
    }
    /* uniform dequantisation noise on integer fields (Theis et al. 2016; Ho et al. 2019) */
    for (size_t r = 0; r < n; r++) {
        memcpy(t->raw_b + r * nf, t->raw_train + idx[r] * nf, nf * sizeof *t->raw_b);
        for (size_t f = 0; f < nf; f++) {
            t->noise_b[r * nf + f] =
                t->schema->fields[f].dequantize ? fs__rng_uniform(&t->rng) - 0.5 : 0.0;
        }
    }
    fs_err err = fs__prep_forward(&t->prep, t->schema, t->raw_b, n, t->noise_b, t->wb, t->extra_b,
                                  NULL, diag);
    for (size_t i = 0; err == FS_OK && i < n * d; i++) {
        t->xb[i] = (float)t->wb[i];
    }
    return err;
}

fs_err fs_trainer_step(fs_trainer *t, const double *records, size_t n_rows, double *loss)
{
    fs_err err;
    *loss = (double)NAN;
    if (n_rows == 0) {
        return FS_ERR_INVALID;
    }
    err = alloc_batch(t, n_rows);
    if (err == FS_OK) {
        double *noise = NULL;
        double *w = fs__calloc(fs__mul_size(n_rows, t->d), sizeof *w);
        if (t->dequant) {
            noise = fs__calloc(fs__mul_size(n_rows, t->n_fields), sizeof *noise);
            for (size_t r = 0; noise != NULL && r < n_rows; r++) {
                for (size_t f = 0; f < t->n_fields; f++) {
                    noise[r * t->n_fields + f] =
                        t->schema->fields[f].dequantize ? fs__rng_uniform(&t->rng) - 0.5 : 0.0;
                }
            }
        }
        if (w == NULL || (t->dequant && noise == NULL)) {
            err = FS_ERR_NOMEM;
        } else {
            err = fs__prep_forward(&t->prep, t->schema, records, n_rows, noise, w, t->extra_b, NULL,
                                   NULL);
        }
        for (size_t i = 0; err == FS_OK && i < n_rows * t->d; i++) {
            t->xb[i] = (float)w[i];
        }
        fs__free(w);
        fs__free(noise);
    }
    if (err == FS_OK) {
        err = step_batch(t, n_rows, schedule_lr(t, 0, 0), loss, NULL);
    }
    return err;
}

/* ---- fit ---- */

static fs_err save_best(fs_trainer *t)
{
    if (t->best_params == NULL) {
        t->best_params = fs__calloc(t->flow.n_params + 1, sizeof(float));
        t->best_buffers = fs__calloc(t->flow.n_buffers + 1, sizeof(float));
        if (t->best_params == NULL || t->best_buffers == NULL) {
            return FS_ERR_NOMEM;
        }
    }
    memcpy(t->best_params, t->params, t->flow.n_params * sizeof(float));
    memcpy(t->best_buffers, t->buffers, t->flow.n_buffers * sizeof(float));
    return FS_OK;
}

static void fill_progress(const fs_trainer *t, fs_train_progress *pr, int32_t epoch,
                          int64_t rows_done, double t0, double lr)
{
    memset(pr, 0, sizeof *pr);
    pr->epoch = epoch;
    pr->epochs = t->p.epochs;
    pr->step = t->step;
    pr->rows_done = rows_done;
    pr->rows_per_epoch = (int64_t)t->n_train;
    pr->train_nll =
        t->epoch_loss_rows > 0 ? t->epoch_loss_sum / (double)t->epoch_loss_rows : (double)NAN;
    pr->val_nll = (double)NAN;
    pr->best_val_nll = t->report.best_val_nll;
    pr->best_epoch = t->report.best_epoch;
    pr->elapsed_s = now_s() - t0;
    pr->lr = lr;
    pr->skipped_steps = t->report.skipped_steps;
    pr->recon_error = t->report.max_recon_error;
}

fs_err fs_trainer_fit(fs_trainer *t, fs_progress_fn fn, void *user, fs_diag *diag)
{
    size_t B = (size_t)t->p.batch_size < t->n_train ? (size_t)t->p.batch_size : t->n_train;
    size_t steps = (t->n_train + B - 1) / B;
    int64_t total_steps = (int64_t)steps * t->p.epochs, rows_seen = 0;
    size_t *order = NULL;
    double t0 = now_s(), last_report = t0, best;
    int32_t bad = 0;
    fs_train_progress pr;
    fs_err err;
    err = alloc_batch(t, B);
    if (err != FS_OK) {
        return err;
    }
    order = fs__calloc(t->n_train, sizeof *order);
    if (order == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->n_train; i++) {
        order[i] = i;
    }
    /* the starting point (for a fresh model: the whitened Gaussian) is the first candidate */
    best = val_metric(t);
    t->report.best_val_nll = best;
    t->report.best_epoch = 0;
    err = save_best(t);
    for (int32_t epoch = 1; err == FS_OK && epoch <= t->p.epochs; epoch++) {
        double lr = t->p.lr, val;
        t->epoch_loss_sum = 0.0;
        t->epoch_loss_rows = 0;
        for (size_t i = t->n_train - 1; i >= 1; i--) {
            size_t j = (size_t)fs__rng_interval(&t->rng, (uint64_t)i);
            size_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (size_t b = 0; err == FS_OK && b < steps; b++) {
            size_t r0 = b * B, n = t->n_train - r0 < B ? t->n_train - r0 : B;
            double loss;
            if (atomic_load_explicit(&t->cancel, memory_order_relaxed)) {
                err = fs__diag(diag, FS_ERR_CANCELLED, "training cancelled");
                break;
            }
            lr = schedule_lr(t, total_steps, epoch - 1);
            err = gather(t, order + r0, n, diag);
            if (err == FS_OK) {
                err = step_batch(t, n, lr, &loss, diag);
            }
            if (err == FS_OK && isfinite(loss)) {
                t->epoch_loss_sum += loss * (double)n;
                t->epoch_loss_rows += (int64_t)n;
            }
            rows_seen += (int64_t)n;
            if (err == FS_OK && fn != NULL && now_s() - last_report >= 0.5) {
                last_report = now_s();
                fill_progress(t, &pr, epoch - 1, (int64_t)(r0 + n), t0, lr);
                pr.rows_per_s = (double)rows_seen / (last_report - t0);
                if (fn(user, &pr) != 0) {
                    atomic_store(&t->cancel, true);
                }
            }
        }
        if (err != FS_OK) {
            break;
        }
        t->report.epochs_run = epoch;
        t->report.final_train_nll =
            t->epoch_loss_rows > 0 ? t->epoch_loss_sum / (double)t->epoch_loss_rows : (double)NAN;
        val = t->n_val > 0 ? val_metric(t) : t->report.final_train_nll;
        if (isfinite(val) && val < best - t->p.min_delta) {
            best = val;
            t->report.best_val_nll = val;
            t->report.best_epoch = epoch;
            bad = 0;
            err = save_best(t);
        } else {
            bad++;
        }
        if (fn != NULL) {
            fill_progress(t, &pr, epoch, (int64_t)t->n_train, t0, lr);
            pr.val_nll = val;
            pr.end_of_epoch = 1;
            pr.rows_per_s = (double)rows_seen / (now_s() - t0);
            if (fn(user, &pr) != 0) {
                break; /* the caller asked to stop: keep the best state */
            }
        }
        if (!isfinite(val) || bad >= t->p.patience) {
            t->report.stopped_early = epoch < t->p.epochs;
            break;
        }
    }
    fs__free(order);
    if (err == FS_OK && t->best_params != NULL) {
        memcpy(t->params, t->best_params, t->flow.n_params * sizeof(float));
        memcpy(t->buffers, t->best_buffers, t->flow.n_buffers * sizeof(float));
    }
    t->duration_s = now_s() - t0;
    return err;
}

void fs_trainer_cancel(fs_trainer *t)
{
    atomic_store(&t->cancel, true);
}

const fs_train_report *fs_trainer_report(const fs_trainer *t)
{
    return &t->report;
}
