/*
 * train_setup.c: creating a trainer (validating parameters, fitting the preprocessing,
 * splitting and preprocessing the rows, initialising parameters and ActNorm from data,
 * reporting constant fields and duplicates) and turning its best state into a calibrated
 * model.
 */
#include "train.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fs_train_params fs_train_default_params(void)
{
    fs_train_params p;
    memset(&p, 0, sizeof p);
    p.epochs = 5; /* lr and epochs chosen by scripts/bench-quality.py (README) */
    p.batch_size = 256;
    p.lr = 1e-4;
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
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->momentum >= 0 && p->momentum < 1) || !(p->weight_decay >= 0 && p->weight_decay < 1) ||
        !(p->clip_norm >= 0) || !isfinite(p->clip_norm)) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "learning rate must be in (0, 10); betas, momentum and weight decay in "
                        "[0, 1); clip norm >= 0");
    }
    if (!(p->val_fraction >= 0 && p->val_fraction < 1) ||
        !(p->val_trim >= 0 && p->val_trim < 0.5) || p->patience < 1 || !(p->min_delta >= 0) ||
        p->threads < 1 || p->threads > FS__MAX_THREADS) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "validation fraction must be in [0, 1), trim in [0, 0.5), patience >= 1, "
                        "threads 1..%d",
                        FS__MAX_THREADS);
    }
    if (!(p->threshold_quantile > 0 && p->threshold_quantile <= 1) ||
        !(p->low_quantile >= 0 && p->low_quantile < p->threshold_quantile)) {
        return fs__diag(diag, FS_ERR_INVALID, "quantiles must satisfy 0 <= low < threshold <= 1");
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
    if (t->x_val == NULL || t->extra_val == NULL || t->x_train == NULL || t->extra_train == NULL) {
        err = FS_ERR_NOMEM;
    }
    if (err == FS_OK) {
        err = preprocess_rows(t, records, order, t->n_val, t->x_val, t->extra_val, diag);
    }
    if (err == FS_OK) {
        err = preprocess_rows(t, records, order + t->n_val, t->n_train, t->x_train, t->extra_train,
                              diag);
    }
    if (err == FS_OK && t->dequant) {
        t->raw_train = fs__calloc(fs__mul_size(t->n_train, nf), sizeof *t->raw_train);
        if (t->raw_train == NULL) {
            err = FS_ERR_NOMEM;
        }
        for (size_t r = 0; err == FS_OK && r < t->n_train; r++) {
            memcpy(t->raw_train + r * nf, records + order[t->n_val + r] * nf, nf * sizeof(double));
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
    size_t m =
        t->n_train < (size_t)t->p.actnorm_init_rows ? t->n_train : (size_t)t->p.actnorm_init_rows;
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
        fs__layer_ctx c = { t->params + l->param_offset, t->buffers + l->buffer_offset, scratch, 1,
                            stats };
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
    t->report.best_val_nll = (double)NAN;
    t->report.final_train_nll = (double)NAN;
    return err;
}

static fs_err check_rows(const fs_schema *s, size_t n_rows, fs_diag *diag)
{
    if (n_rows < FS_TRAIN_MIN_ROWS) {
        return fs__diag(diag, FS_ERR_INVALID, "training needs at least %d rows, got %zu",
                        FS_TRAIN_MIN_ROWS, n_rows);
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
        err = fs__flow_init(&t->flow, t->spec->layers, t->spec->n_layers, (int32_t)t->prep.n_dims,
                            t->flow_seed, diag);
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

fs_err fs_trainer_create_warm(const fs_model *init, const fs_train_params *p, const double *records,
                              size_t n_rows, fs_trainer **out, fs_diag *diag)
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

/* ---- the trained model ---- */

static char *training_json(const fs_trainer *t, const char *calib_rows)
{
    const fs_train_report *r = &t->report;
    const fs_train_params *p = &t->p;
    static const char *const sched[] = { "constant", "cosine", "step" };
    cJSON *o = cJSON_CreateObject(), *cf = cJSON_AddArrayToObject(o, "constant_fields");
    cJSON *pp = cJSON_AddObjectToObject(o, "params");
    char *out = NULL;
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
    (void)fs__json_take_text(o, &out);
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
    double a = fs__train_eval_nll(t, t->x_val, t->extra_val, t->n_val, scores);
    double b =
        use_val ? 0.0
                : fs__train_eval_nll(t, t->x_train, t->extra_train, t->n_train, scores + t->n_val);
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
