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
#include "model.h"
#include "optim.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define FS__HALF_LOG_2PI 0.91893853320467274178
#define FS__EVAL_CHUNK 512
#define FS__MAX_THREADS 64
#define FS__CALIB_MIN_VAL_ROWS 200 /* fewer validation rows: calibrate on every row */

typedef struct shard {
    size_t r0, n;        /* rows of the current batch */
    void *scratch;       /* flow scratch for up to `cap` rows */
    float *z, *x_rec, *dz, *dx;
    double *log_det;
    double *batch_stats; /* n_layers * 2 * n_dims */
    float *grad;         /* this shard's gradient (shard 0 uses the trainer's) */
    double loss_sum;     /* sum over its rows of -log p excluding preprocessing terms */
    double recon_err;
    fs_err err;
} shard;

struct fs_trainer {
    fs_train_params p;
    fs_schema *schema;
    fs_spec *spec;
    fs__prep prep;
    fs__flow flow;
    uint64_t flow_seed;
    float *params, *buffers, *grad;
    float *best_params, *best_buffers;
    fs__optim opt;
    size_t d, n_fields;
    /* data: preprocessed float rows and per-row preprocessing log terms */
    size_t n_train, n_val;
    float *x_train, *x_val;
    double *extra_train, *extra_val;
    double *raw_train; /* n_train x n_fields, kept only when a field is dequantised */
    bool dequant;
    /* per step */
    size_t cap;            /* rows per batch the buffers hold */
    float *xb;             /* cap x d */
    double *extra_b;       /* cap */
    double *raw_b, *noise_b, *wb; /* dequantisation path */
    int n_shards;
    shard shards[FS__MAX_THREADS];
    /* helper threads for shards 1..n_shards-1 */
    pthread_t threads[FS__MAX_THREADS];
    struct thread_arg {
        struct fs_trainer *t;
        int index;
    } args[FS__MAX_THREADS];
    int n_threads_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    uint64_t generation;
    int pending;
    bool quit;
    /* state */
    fs__rng rng;
    atomic_bool cancel;
    int64_t step, consecutive_bad;
    double lr_scale;
    double epoch_loss_sum;
    int64_t epoch_loss_rows;
    fs_train_report report;
    double duration_s;
};

fs_train_params fs_train_default_params(void)
{
    fs_train_params p;
    memset(&p, 0, sizeof p);
    p.epochs = 30;
    p.batch_size = 256;
    p.lr = 1e-3;
    p.optimizer = FS_OPT_ADAM;
    p.beta1 = 0.9;
    p.beta2 = 0.999;
    p.eps = 1e-8;
    p.momentum = 0.9;
    p.weight_decay = 0.0;
    p.clip_norm = 10.0;
    p.schedule = FS_LR_CONSTANT;
    p.step_epochs = 10;
    p.step_gamma = 0.5;
    p.warmup_steps = 0;
    p.val_fraction = 0.1;
    p.patience = 5;
    p.min_delta = 1e-4;
    p.val_trim = 0.01;
    p.seed = 0;
    p.threads = 1;
    p.whiten = 1;
    p.whiten_ridge = 1e-3;
    p.threshold_quantile = 0.99;
    p.low_quantile = 0.0;
    p.max_nonfinite_steps = 20;
    p.max_bad_steps_total = 1000;
    p.actnorm_init_rows = 4096;
    return p;
}

static fs_err check_params(const fs_train_params *p, fs_diag *diag)
{
    if (p->epochs < 0 || p->epochs > 100000 || p->batch_size < 1 || p->batch_size > 1 << 20) {
        return fs__diag(diag, FS_ERR_INVALID, "epochs must be 0..100000 and batch 1..1048576");
    }
    if (!(p->lr > 0 && p->lr < 10) || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) || !(p->momentum >= 0 && p->momentum < 1) ||
        !(p->weight_decay >= 0 && p->weight_decay < 1) || !(p->clip_norm >= 0) ||
        !isfinite(p->clip_norm)) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "learning rate must be in (0, 10); betas, momentum and weight decay in "
                        "[0, 1); clip norm >= 0");
    }
    if (!(p->val_fraction >= 0 && p->val_fraction < 1) || !(p->val_trim >= 0 && p->val_trim < 0.5) ||
        p->patience < 1 ||
        !(p->min_delta >= 0) || p->threads < 1 || p->threads > FS__MAX_THREADS) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "validation fraction must be in [0, 1), trim in [0, 0.5), patience >= 1, "
                        "threads 1..%d",
                        FS__MAX_THREADS);
    }
    if (!(p->threshold_quantile > 0 && p->threshold_quantile <= 1) ||
        !(p->low_quantile >= 0 && p->low_quantile < p->threshold_quantile)) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "quantiles must satisfy 0 <= low < threshold <= 1");
    }
    if (p->schedule == FS_LR_STEP && (p->step_epochs < 1 || !(p->step_gamma > 0))) {
        return fs__diag(diag, FS_ERR_INVALID, "step schedule needs step_epochs >= 1, gamma > 0");
    }
    if (!(p->whiten_ridge > 0) || p->max_nonfinite_steps < 1 || p->max_bad_steps_total < 1 ||
        p->warmup_steps < 0) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "whitening ridge must be > 0 and the skip limits >= 1");
    }
    return FS_OK;
}

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
    s->err = fs__flow_forward_train_f32(&t->flow, t->params, t->buffers, s->batch_stats,
                                        s->scratch, x, n, s->z, s->log_det);
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

static fs_err trainer_alloc(const fs_train_params *p, fs_trainer **out, fs_diag *diag)
{
    fs_trainer *t;
    fs_err err = check_params(p, diag);
    *out = NULL;
    if (err != FS_OK) {
        return err;
    }
    t = fs__calloc(1, sizeof *t);
    if (t == NULL) {
        return FS_ERR_NOMEM;
    }
    t->p = *p;
    t->lr_scale = 1.0;
    atomic_init(&t->cancel, false);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv_work, NULL);
    pthread_cond_init(&t->cv_done, NULL);
    fs__rng_seed2(&t->rng, p->seed, 0x7261696eu);
    *out = t;
    return FS_OK;
}

/* Buffers for batches of up to cap rows, split into n_shards shards. */
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

typedef struct row_key {
    uint64_t hash;
    size_t row;
} row_key;

static int row_key_cmp(const void *a, const void *b)
{
    const row_key *x = a, *y = b;
    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    return x->row < y->row ? -1 : (x->row > y->row ? 1 : 0);
}

/*
 * Rows equal to an earlier row, and the share of the most repeated row (case-07): rows are
 * hashed (FNV-1a over their bytes), sorted by hash, and equal-hash neighbours compared.
 */
static fs_err duplicate_report(const double *records, size_t n, size_t nf, fs_train_report *rep)
{
    row_key *k = fs__calloc(n == 0 ? 1 : n, sizeof *k);
    size_t dup = 0, top = n > 0 ? 1 : 0, run = 1;
    if (k == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t r = 0; r < n; r++) {
        uint64_t h = 1469598103934665603ull;
        const unsigned char *b = (const unsigned char *)(records + r * nf);
        for (size_t i = 0; i < nf * sizeof(double); i++) {
            h = (h ^ b[i]) * 1099511628211ull;
        }
        k[r].hash = h;
        k[r].row = r;
    }
    qsort(k, n, sizeof *k, row_key_cmp);
    for (size_t i = 1; i < n; i++) {
        if (k[i].hash == k[i - 1].hash &&
            memcmp(records + k[i].row * nf, records + k[i - 1].row * nf, nf * sizeof(double)) ==
                0) {
            dup++;
            run++;
        } else {
            run = 1;
        }
        if (run > top) {
            top = run;
        }
    }
    rep->duplicate_share = n > 0 ? (double)dup / (double)n : 0.0;
    rep->top_duplicate_share = n > 0 ? (double)top / (double)n : 0.0;
    fs__free(k);
    return FS_OK;
}

/* ---- data ---- */

/* Preprocess the rows idx[0..n) of records into x (n x d floats) and extra (n doubles). */
static fs_err preprocess_rows(fs_trainer *t, const double *records, const size_t *idx, size_t n,
                              float *x, double *extra, fs_diag *diag)
{
    size_t d = t->d, nf = t->n_fields, chunk = 4096;
    double *raw = fs__calloc(fs__mul_size(chunk, nf), sizeof *raw);
    double *w = fs__calloc(fs__mul_size(chunk, d), sizeof *w);
    fs_err err = FS_OK;
    if (raw == NULL || w == NULL) {
        err = FS_ERR_NOMEM;
    }
    for (size_t r0 = 0; err == FS_OK && r0 < n; r0 += chunk) {
        size_t m = n - r0 < chunk ? n - r0 : chunk;
        for (size_t r = 0; r < m; r++) {
            memcpy(raw + r * nf, records + idx[r0 + r] * nf, nf * sizeof *raw);
        }
        err = fs__prep_forward(&t->prep, t->schema, raw, m, NULL, w, extra + r0, NULL, diag);
        for (size_t i = 0; err == FS_OK && i < m * d; i++) {
            x[r0 * d + i] = (float)w[i];
        }
    }
    fs__free(raw);
    fs__free(w);
    return err;
}

/* Split rows into validation and training sets (seeded) and preprocess both. */
static fs_err load_data(fs_trainer *t, const double *records, size_t n, fs_diag *diag)
{
    size_t *order = fs__calloc(n, sizeof *order);
    size_t d = t->d, nf = t->n_fields;
    fs__rng rng;
    fs_err err = FS_OK;
    if (order == NULL) {
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    fs__rng_seed2(&rng, t->p.seed, 0x73706c6974u);
    for (size_t i = n - 1; i >= 1; i--) {
        size_t j = (size_t)fs__rng_interval(&rng, (uint64_t)i);
        size_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    t->n_val = 0;
    if (t->p.val_fraction > 0) {
        t->n_val = (size_t)floor((double)n * t->p.val_fraction);
        if (t->n_val == 0) {
            t->n_val = 1;
        }
        if (t->n_val >= n) {
            t->n_val = n - 1;
        }
    }
    t->n_train = n - t->n_val;
    t->x_val = fs__calloc(fs__mul_size(t->n_val, d) + 1, sizeof *t->x_val);
    t->extra_val = fs__calloc(t->n_val + 1, sizeof *t->extra_val);
    t->x_train = fs__calloc(fs__mul_size(t->n_train, d), sizeof *t->x_train);
    t->extra_train = fs__calloc(t->n_train, sizeof *t->extra_train);
    if (t->x_val == NULL || t->extra_val == NULL || t->x_train == NULL ||
        t->extra_train == NULL) {
        err = FS_ERR_NOMEM;
    }
    if (err == FS_OK) {
        err = preprocess_rows(t, records, order, t->n_val, t->x_val, t->extra_val, diag);
    }
    if (err == FS_OK) {
        err = preprocess_rows(t, records, order + t->n_val, t->n_train, t->x_train,
                              t->extra_train, diag);
    }
    if (err == FS_OK && t->dequant) {
        t->raw_train = fs__calloc(fs__mul_size(t->n_train, nf), sizeof *t->raw_train);
        if (t->raw_train == NULL) {
            err = FS_ERR_NOMEM;
        }
        for (size_t r = 0; err == FS_OK && r < t->n_train; r++) {
            memcpy(t->raw_train + r * nf, records + order[t->n_val + r] * nf,
                   nf * sizeof(double));
        }
    }
    fs__free(order);
    return err;
}

/* Names of fields whose every encoded column is constant in training (case-02). */
static void constant_fields_report(fs_trainer *t)
{
    fs_train_report *r = &t->report;
    size_t used = 0;
    r->n_constant_fields = 0;
    r->constant_fields[0] = '\0';
    for (size_t f = 0; f < t->n_fields; f++) {
        bool all = true;
        for (size_t c = t->prep.col_start[f]; c < t->prep.col_start[f + 1]; c++) {
            all = all && t->prep.is_const[c];
        }
        if (all) {
            int w = snprintf(r->constant_fields + used, sizeof r->constant_fields - used, "%s%s",
                             r->n_constant_fields > 0 ? "," : "", t->schema->fields[f].name);
            if (w > 0 && (size_t)w < sizeof r->constant_fields - used) {
                used += (size_t)w;
            }
            r->n_constant_fields++;
        }
    }
}

/* ActNorm data-dependent init (Kingma & Dhariwal 2018, sec. 3.1) on up to m training rows. */
static fs_err actnorm_init(fs_trainer *t)
{
    size_t m = t->n_train < (size_t)t->p.actnorm_init_rows ? t->n_train
                                                            : (size_t)t->p.actnorm_init_rows;
    size_t d = t->d, scratch_n = 0;
    bool any = false;
    float *a = NULL, *b = NULL;
    void *scratch = NULL;
    double *ld = NULL, *stats = NULL;
    fs_err err = FS_OK;
    for (size_t i = 0; i < t->flow.n_layers; i++) {
        any = any || t->flow.layers[i].kind == FS__LAYER_ACTNORM;
        size_t s = fs__layer_scratch_f32(&t->flow.layers[i], m);
        scratch_n = s > scratch_n ? s : scratch_n;
    }
    if (!any || m == 0) {
        return FS_OK;
    }
    a = fs__calloc(fs__mul_size(m, d), sizeof *a);
    b = fs__calloc(fs__mul_size(m, d), sizeof *b);
    scratch = fs__calloc(scratch_n + 16, sizeof(float));
    ld = fs__calloc(m, sizeof *ld);
    stats = fs__calloc(2 * d, sizeof *stats);
    if (a == NULL || b == NULL || scratch == NULL || ld == NULL || stats == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    memcpy(a, t->x_train, m * d * sizeof *a);
    for (size_t i = 0; i < t->flow.n_layers && err == FS_OK; i++) {
        const fs__layer *l = &t->flow.layers[i];
        fs__layer_ctx c = { t->params + l->param_offset, t->buffers + l->buffer_offset, scratch,
                            1, stats };
        if (l->kind == FS__LAYER_ACTNORM) {
            fs__actnorm_init_f32(l, t->params + l->param_offset, a, m);
        }
        err = fs__layer_forward_f32(l, &c, a, m, b, ld);
        float *tmp = a;
        a = b;
        b = tmp;
    }
out:
    fs__free(a);
    fs__free(b);
    fs__free(scratch);
    fs__free(ld);
    fs__free(stats);
    return err;
}

static fs_err trainer_finish_setup(fs_trainer *t, const double *records, size_t n_rows,
                                   fs_diag *diag)
{
    fs_err err;
    t->n_fields = t->schema->n_fields;
    t->d = t->prep.n_dims;
    for (size_t f = 0; f < t->n_fields; f++) {
        t->dequant = t->dequant || t->schema->fields[f].dequantize;
    }
    err = duplicate_report(records, n_rows, t->n_fields, &t->report);
    if (err == FS_OK) {
        err = load_data(t, records, n_rows, diag);
    }
    if (err == FS_OK) {
        t->grad = fs__calloc(t->flow.n_params + 1, sizeof *t->grad);
        err = t->grad == NULL ? FS_ERR_NOMEM : fs__optim_init(&t->opt, &t->p, t->flow.n_params);
    }
    constant_fields_report(t);
    t->report.train_rows = (int64_t)t->n_train;
    t->report.val_rows = (int64_t)t->n_val;
    t->report.best_val_nll = NAN;
    t->report.final_train_nll = NAN;
    return err;
}

static fs_err check_rows(const fs_schema *s, size_t n_rows, fs_diag *diag)
{
    if (n_rows < FS_TRAIN_MIN_ROWS) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "training needs at least %d rows, got %zu", FS_TRAIN_MIN_ROWS, n_rows);
    }
    if (s->n_fields == 0) {
        return fs__diag(diag, FS_ERR_INVALID, "the schema has no fields");
    }
    return FS_OK;
}

fs_err fs_trainer_create(const fs_schema *schema, const fs_spec *spec, const fs_train_params *p,
                         const double *records, size_t n_rows, fs_trainer **out, fs_diag *diag)
{
    fs_trainer *t = NULL;
    fs_err err;
    *out = NULL;
    err = check_rows(schema, n_rows, diag);
    if (err == FS_OK) {
        err = trainer_alloc(p, &t, diag);
    }
    if (err == FS_OK) {
        err = fs_schema_copy(schema, &t->schema);
    }
    if (err == FS_OK) {
        err = fs__spec_copy(spec, &t->spec);
    }
    if (err == FS_OK) {
        err = fs__prep_fit(&t->prep, t->schema, records, n_rows, p->whiten, p->whiten_ridge, diag);
    }
    if (err == FS_OK) {
        t->flow_seed = p->seed;
        err = fs__flow_init(&t->flow, t->spec->layers, t->spec->n_layers,
                            (int32_t)t->prep.n_dims, t->flow_seed, diag);
    }
    if (err == FS_OK) {
        t->params = fs__calloc(t->flow.n_params + 1, sizeof *t->params);
        t->buffers = fs__calloc(t->flow.n_buffers + 1, sizeof *t->buffers);
        if (t->params == NULL || t->buffers == NULL) {
            err = FS_ERR_NOMEM;
        } else {
            fs__flow_init_params(&t->flow, p->seed, t->params, t->buffers);
        }
    }
    if (err == FS_OK) {
        err = trainer_finish_setup(t, records, n_rows, diag);
    }
    if (err == FS_OK) {
        err = actnorm_init(t);
    }
    if (err != FS_OK) {
        fs_trainer_free(t);
        return err;
    }
    *out = t;
    return FS_OK;
}

fs_err fs_trainer_create_warm(const fs_model *init, const fs_train_params *p,
                              const double *records, size_t n_rows, fs_trainer **out,
                              fs_diag *diag)
{
    fs_trainer *t = NULL;
    fs_err err;
    *out = NULL;
    err = check_rows(init->schema, n_rows, diag);
    if (err == FS_OK) {
        err = trainer_alloc(p, &t, diag);
    }
    if (err == FS_OK) {
        err = fs_schema_copy(init->schema, &t->schema);
    }
    if (err == FS_OK) {
        err = fs__spec_copy(init->spec, &t->spec);
    }
    if (err == FS_OK) {
        err = fs__prep_copy(&init->prep, &t->prep);
    }
    if (err == FS_OK) {
        err = fs__flow_copy(&init->flow, &t->flow);
        t->flow_seed = init->flow_seed;
    }
    if (err == FS_OK) {
        t->params = fs__calloc(t->flow.n_params + 1, sizeof *t->params);
        t->buffers = fs__calloc(t->flow.n_buffers + 1, sizeof *t->buffers);
        if (t->params == NULL || t->buffers == NULL) {
            err = FS_ERR_NOMEM;
        } else {
            memcpy(t->params, init->params, t->flow.n_params * sizeof *t->params);
            memcpy(t->buffers, init->buffers, t->flow.n_buffers * sizeof *t->buffers);
        }
    }
    if (err == FS_OK) {
        err = trainer_finish_setup(t, records, n_rows, diag);
    }
    if (err != FS_OK) {
        fs_trainer_free(t);
        return err;
    }
    *out = t;
    return FS_OK;
}

/* ---- evaluation ---- */

/*
 * -log p of n preprocessed rows (float32 flow, float64 fallback per row), into nll (may be
 * NULL); returns the mean, or a non-finite value if a row cannot be evaluated.
 */
static double eval_nll(fs_trainer *t, const float *x, const double *extra, size_t n, double *nll)
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
            sum = NAN;
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
    (void)eval_nll(t, t->x_val, t->extra_val, n, nll);
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
            mean[j] = (float)((1.0 - (double)l->momentum) * (double)mean[j] + (double)l->momentum * bm);
            var[j] = (float)((1.0 - (double)l->momentum) * (double)var[j] + (double)l->momentum * bv);
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
    fs_err err = fs__prep_forward(&t->prep, t->schema, t->raw_b, n, t->noise_b, t->wb,
                                  t->extra_b, NULL, diag);
    for (size_t i = 0; err == FS_OK && i < n * d; i++) {
        t->xb[i] = (float)t->wb[i];
    }
    return err;
}

fs_err fs_trainer_step(fs_trainer *t, const double *records, size_t n_rows, double *loss)
{
    fs_err err;
    *loss = NAN;
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
            err = fs__prep_forward(&t->prep, t->schema, records, n_rows, noise, w, t->extra_b,
                                   NULL, NULL);
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
    pr->train_nll = t->epoch_loss_rows > 0 ? t->epoch_loss_sum / (double)t->epoch_loss_rows : (double)NAN;
    pr->val_nll = NAN;
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

/* ---- the trained model ---- */

static char *training_json(const fs_trainer *t, const char *calib_rows)
{
    const fs_train_report *r = &t->report;
    const fs_train_params *p = &t->p;
    static const char *const sched[] = { "constant", "cosine", "step" };
    cJSON *o = cJSON_CreateObject(), *cf = cJSON_AddArrayToObject(o, "constant_fields");
    cJSON *pp = cJSON_AddObjectToObject(o, "params");
    char *text = NULL, *out = NULL;
    char names[sizeof r->constant_fields];
    memcpy(names, r->constant_fields, sizeof names);
    for (char *s = names; cf != NULL && *s != '\0';) {
        char *comma = strchr(s, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        cJSON_AddItemToArray(cf, cJSON_CreateString(s));
        if (comma == NULL) {
            break;
        }
        s = comma + 1;
    }
    if (o == NULL || pp == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "rows", (double)(r->train_rows + r->val_rows));
    cJSON_AddNumberToObject(o, "train_rows", (double)r->train_rows);
    cJSON_AddNumberToObject(o, "val_rows", (double)r->val_rows);
    cJSON_AddNumberToObject(o, "epochs_run", r->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", r->best_epoch);
    if (isfinite(r->best_val_nll)) {
        cJSON_AddNumberToObject(o, "best_val_nll", r->best_val_nll);
    }
    if (isfinite(r->final_train_nll)) {
        cJSON_AddNumberToObject(o, "final_train_nll", r->final_train_nll);
    }
    cJSON_AddNumberToObject(o, "skipped_nonfinite_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(o, "duplicate_share", r->duplicate_share);
    cJSON_AddNumberToObject(o, "top_duplicate_share", r->top_duplicate_share);
    cJSON_AddBoolToObject(o, "stopped_early", r->stopped_early);
    if (isfinite(r->max_recon_error)) {
        cJSON_AddNumberToObject(o, "max_reconstruction_error", r->max_recon_error);
    }
    cJSON_AddStringToObject(o, "calibration_rows", calib_rows);
    cJSON_AddNumberToObject(o, "duration_s", t->duration_s);
    cJSON_AddNumberToObject(pp, "epochs", p->epochs);
    cJSON_AddNumberToObject(pp, "batch_size", p->batch_size);
    cJSON_AddNumberToObject(pp, "lr", p->lr);
    cJSON_AddStringToObject(pp, "optimizer", p->optimizer == FS_OPT_ADAM ? "adam" : "sgd");
    cJSON_AddStringToObject(pp, "schedule", sched[p->schedule]);
    cJSON_AddNumberToObject(pp, "weight_decay", p->weight_decay);
    cJSON_AddNumberToObject(pp, "clip_norm", p->clip_norm);
    cJSON_AddNumberToObject(pp, "val_fraction", p->val_fraction);
    cJSON_AddNumberToObject(pp, "patience", p->patience);
    cJSON_AddNumberToObject(pp, "val_trim", p->val_trim);
    cJSON_AddNumberToObject(pp, "seed", (double)p->seed);
    cJSON_AddNumberToObject(pp, "threads", p->threads);
    cJSON_AddBoolToObject(pp, "whiten", p->whiten);
    cJSON_AddNumberToObject(pp, "threshold_quantile", p->threshold_quantile);
    cJSON_AddNumberToObject(pp, "low_quantile", p->low_quantile);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text != NULL) {
        out = fs__strdup(text);
        cJSON_free(text);
    }
    return out;
}

fs_err fs_trainer_model(fs_trainer *t, fs_model **out, fs_diag *diag)
{
    fs__model_parts p;
    size_t n_cal;
    bool use_val = t->n_val >= FS__CALIB_MIN_VAL_ROWS;
    double *scores = NULL;
    fs_err err;
    *out = NULL;
    memset(&p, 0, sizeof p);
    n_cal = use_val ? t->n_val : t->n_val + t->n_train;
    scores = fs__calloc(n_cal + 1, sizeof *scores);
    if (scores == NULL) {
        return FS_ERR_NOMEM;
    }
    /* calibration: scores of held-out rows, or of every row when too few are held out */
    double a = eval_nll(t, t->x_val, t->extra_val, t->n_val, scores);
    double b = use_val ? 0.0
                       : eval_nll(t, t->x_train, t->extra_train, t->n_train, scores + t->n_val);
    if (!isfinite(a) || !isfinite(b)) {
        fs__free(scores);
        return fs__diag(diag, FS_ERR_NUMERIC,
                        "the trained model gives a non-finite score to a training row");
    }
    err = fs__calib_build(&p.calib, scores, n_cal, t->p.threshold_quantile, t->p.low_quantile);
    fs__free(scores);
    if (err == FS_OK) {
        err = fs_schema_copy(t->schema, &p.schema);
    }
    if (err == FS_OK) {
        err = fs__spec_copy(t->spec, &p.spec);
    }
    if (err == FS_OK) {
        err = fs__prep_copy(&t->prep, &p.prep);
    }
    if (err == FS_OK) {
        err = fs__flow_copy(&t->flow, &p.flow);
    }
    if (err == FS_OK) {
        p.params = fs__calloc(t->flow.n_params + 1, sizeof(float));
        p.buffers = fs__calloc(t->flow.n_buffers + 1, sizeof(float));
        p.training_json = training_json(t, use_val ? "validation" : "all");
        if (p.params == NULL || p.buffers == NULL || p.training_json == NULL) {
            err = FS_ERR_NOMEM;
        } else {
            memcpy(p.params, t->params, t->flow.n_params * sizeof(float));
            memcpy(p.buffers, t->buffers, t->flow.n_buffers * sizeof(float));
        }
    }
    p.flow_seed = t->flow_seed;
    if (err == FS_OK) {
        return fs__model_create(&p, out, diag);
    }
    fs__model_parts_deinit(&p);
    return err;
}
