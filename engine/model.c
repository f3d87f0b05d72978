/*
 * model.c: the fs_model object and everything that evaluates it: scoring (float32 flow with a
 * float64 fallback), encode/decode (float64), sampling, recalibration, and workspaces.
 */
#include "model.h"

#include <math.h>
#include <string.h>

#define FS__CHUNK_ROWS   512 /* rows per pass through the flow: activations stay in L2 */
#define FS__PAD_ROWS     16  /* the flow runs on multiples of this many rows (model_log_prob) */
#define FS__HALF_LOG_2PI 0.91893853320467274178

struct fs_workspace {
    unsigned char *buf;
    size_t cap; /* bytes */
};

/* Byte offsets of a workspace's arrays for one model; each aligned to 64 bytes. */
typedef struct ws_layout {
    size_t w, log_extra, flags, x32, flow32, log_det, x64, flow64, records, z;
    size_t total;
} ws_layout;

static size_t align64(size_t n)
{
    return (n + 63u) & ~(size_t)63u;
}

static ws_layout layout_for(const fs_model *m)
{
    ws_layout l;
    size_t c = FS__CHUNK_ROWS, d = m->prep.n_dims, f = m->schema->n_fields, o = 0;
    l.w = o;
    o += align64(c * d * sizeof(double));
    l.log_extra = o;
    o += align64(c * sizeof(double));
    l.flags = o;
    o += align64(c * sizeof(uint32_t));
    l.x32 = o;
    o += align64(c * d * sizeof(float));
    l.flow32 = o;
    o += align64(fs__flow_scratch_f32(&m->flow, c) * sizeof(float));
    l.log_det = o;
    o += align64(c * sizeof(double));
    l.x64 = o;
    o += align64(c * d * sizeof(double));
    l.flow64 = o;
    o += align64(fs__flow_scratch_f64(&m->flow, c) * sizeof(double));
    l.records = o;
    o += align64(c * f * sizeof(double));
    l.z = o;
    o += align64(c * d * sizeof(double));
    l.total = o;
    return l;
}

fs_err fs_workspace_create(fs_workspace **out)
{
    *out = fs__calloc(1, sizeof **out);
    return *out == NULL ? FS_ERR_NOMEM : FS_OK;
}

void fs_workspace_free(fs_workspace *ws)
{
    if (ws == NULL) {
        return;
    }
    fs__free(ws->buf);
    fs__free(ws);
}

fs_err fs_workspace_reserve(fs_workspace *ws, const fs_model *m)
{
    ws_layout l = layout_for(m);
    if (ws->cap >= l.total) {
        return FS_OK;
    }
    unsigned char *b = fs__malloc(l.total + 64);
    if (b == NULL) {
        return FS_ERR_NOMEM;
    }
    fs__free(ws->buf);
    ws->buf = b;
    ws->cap = l.total;
    return FS_OK;
}

/* The workspace's base, aligned to 64 bytes. */
static unsigned char *ws_base(fs_workspace *ws)
{
    uintptr_t p = (uintptr_t)ws->buf;
    return ws->buf + ((64u - (p & 63u)) & 63u);
}

/* ---- life cycle ---- */

void fs__model_parts_deinit(fs__model_parts *parts)
{
    fs_schema_free(parts->schema);
    fs_spec_free(parts->spec);
    fs__prep_deinit(&parts->prep);
    fs__flow_deinit(&parts->flow);
    fs__free(parts->params);
    fs__free(parts->buffers);
    fs__calib_deinit(&parts->calib);
    fs__free(parts->training_json);
    fs__free(parts->header_json);
    memset(parts, 0, sizeof *parts);
}

static void model_free(fs_model *m)
{
    fs_schema_free(m->schema);
    fs_spec_free(m->spec);
    fs__prep_deinit(&m->prep);
    fs__flow_deinit(&m->flow);
    fs__free(m->params);
    fs__free(m->buffers);
    fs__calib_deinit(&m->calib);
    fs__free(m->training_json);
    fs__free(m->header_json);
    fs__free(m);
}

static fs_err check_finite_floats(const float *v, size_t n, const char *what, fs_diag *diag)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            return fs__diag(diag, FS_ERR_NUMERIC, "%s[%zu] is not finite", what, i);
        }
    }
    return FS_OK;
}

fs_err fs__model_create(fs__model_parts *parts, fs_model **out, fs_diag *diag)
{
    fs_model *m;
    fs_err err;
    *out = NULL;
    err = check_finite_floats(parts->params, parts->flow.n_params, "parameter", diag);
    if (err == FS_OK) {
        err = check_finite_floats(parts->buffers, parts->flow.n_buffers, "buffer", diag);
    }
    if (err == FS_OK && (size_t)parts->flow.n_dims != parts->prep.n_dims) {
        err = fs__diag(diag, FS_ERR_SHAPE, "flow has %d dimensions, preprocessing gives %zu",
                       parts->flow.n_dims, parts->prep.n_dims);
    }
    if (err != FS_OK) {
        fs__model_parts_deinit(parts);
        return err;
    }
    m = fs__calloc(1, sizeof *m);
    if (m == NULL) {
        fs__model_parts_deinit(parts);
        return FS_ERR_NOMEM;
    }
    atomic_init(&m->refcount, 1);
    m->schema = parts->schema;
    m->spec = parts->spec;
    m->prep = parts->prep;
    m->flow = parts->flow;
    m->params = parts->params;
    m->buffers = parts->buffers;
    m->calib = parts->calib;
    m->flow_seed = parts->flow_seed;
    m->training_json = parts->training_json;
    m->header_json = parts->header_json;
    memset(parts, 0, sizeof *parts);
    err = m->header_json != NULL ? FS_OK : fs__model_build_header(m, diag);
    if (err != FS_OK) {
        model_free(m);
        return err;
    }
    *out = m;
    return FS_OK;
}

fs_model *fs_model_ref(fs_model *m)
{
    if (m != NULL) {
        atomic_fetch_add_explicit(&m->refcount, 1, memory_order_relaxed);
    }
    return m;
}

void fs_model_unref(fs_model *m)
{
    if (m != NULL && atomic_fetch_sub_explicit(&m->refcount, 1, memory_order_acq_rel) == 1) {
        model_free(m);
    }
}

const fs_schema *fs_model_schema(const fs_model *m)
{
    return m->schema;
}

size_t fs_model_n_fields(const fs_model *m)
{
    return m->schema->n_fields;
}

size_t fs_model_n_dims(const fs_model *m)
{
    return m->prep.n_dims;
}

size_t fs_model_n_params(const fs_model *m)
{
    return m->flow.n_params;
}

size_t fs_model_n_layers(const fs_model *m)
{
    return m->flow.n_layers;
}

double fs_model_threshold_quantile(const fs_model *m)
{
    return m->calib.upper_quantile;
}

double fs_model_threshold(const fs_model *m)
{
    return m->calib.upper_threshold;
}

const char *fs_model_header_json(const fs_model *m)
{
    return m->header_json;
}

/* ---- scoring ---- */

/* log N(z; 0, I) + log_det + log_extra for one row of d latents, in double. */
static double row_log_prob_f32(const float *z, size_t d, double log_det, double log_extra)
{
    double sq = 0.0;
    for (size_t j = 0; j < d; j++) {
        sq += (double)z[j] * (double)z[j];
    }
    return -0.5 * sq - (double)d * FS__HALF_LOG_2PI + log_det + log_extra;
}

static double row_log_prob_f64(const double *z, size_t d, double log_det, double log_extra)
{
    double sq = 0.0;
    for (size_t j = 0; j < d; j++) {
        sq += z[j] * z[j];
    }
    return -0.5 * sq - (double)d * FS__HALF_LOG_2PI + log_det + log_extra;
}

/*
 * log p of records into log_prob (and flags), chunk by chunk: preprocessing in double, the
 * flow in float32; a row whose float32 result is not finite is recomputed in float64.
 */
static fs_err model_log_prob(const fs_model *m, fs_workspace *ws, const double *records,
                             size_t n_rows, double *log_prob, uint32_t *flags_out)
{
    ws_layout l = layout_for(m);
    size_t d = m->prep.n_dims, nf = m->schema->n_fields;
    unsigned char *b;
    fs_err err;
    if (ws == NULL || ws->cap < l.total) {
        return FS_ERR_SHAPE;
    }
    b = ws_base(ws);
    double *w = (double *)(b + l.w);
    double *log_extra = (double *)(b + l.log_extra), *log_det = (double *)(b + l.log_det);
    uint32_t *flags = (uint32_t *)(b + l.flags);
    float *x32 = (float *)(b + l.x32);
    double *x64 = (double *)(b + l.x64);
    for (size_t r0 = 0; r0 < n_rows; r0 += FS__CHUNK_ROWS) {
        size_t n = n_rows - r0 < FS__CHUNK_ROWS ? n_rows - r0 : FS__CHUNK_ROWS;
        err = fs__prep_forward(&m->prep, m->schema, records + r0 * nf, n, NULL, w, log_extra, flags,
                               NULL);
        if (err != FS_OK) {
            return err;
        }
        for (size_t i = 0; i < n * d; i++) {
            x32[i] = (float)w[i];
        }
        /*
         * Run the flow on a whole number of FS__PAD_ROWS rows (zero rows pad the tail), so that
         * every row goes through the same BLAS micro-kernels: a record scores bit-identically
         * alone or at any position of any batch (case-11).
         */
        size_t padded = (n + FS__PAD_ROWS - 1) / FS__PAD_ROWS * FS__PAD_ROWS;
        memset(x32 + n * d, 0, (padded - n) * d * sizeof *x32);
        memset(log_det, 0, padded * sizeof *log_det);
        err = fs__flow_forward_f32(&m->flow, m->params, m->buffers, b + l.flow32, x32, padded, x32,
                                   log_det);
        if (err != FS_OK) {
            return err;
        }
        for (size_t r = 0; r < n; r++) {
            double lp = row_log_prob_f32(x32 + r * d, d, log_det[r], log_extra[r]);
            if (!isfinite(lp)) {
                /* float32 overflowed somewhere in the flow: redo this row in double */
                double ld = 0.0;
                memcpy(x64, w + r * d, d * sizeof *x64);
                err = fs__flow_forward_f64(&m->flow, m->params, m->buffers, b + l.flow64, x64, 1,
                                           x64, &ld);
                if (err != FS_OK) {
                    return err;
                }
                lp = row_log_prob_f64(x64, d, ld, log_extra[r]);
                if (!isfinite(lp)) {
                    return FS_ERR_NUMERIC;
                }
            }
            log_prob[r0 + r] = lp;
            if (flags_out != NULL) {
                flags_out[r0 + r] = flags[r];
            }
        }
    }
    return FS_OK;
}

fs_err fs_model_log_prob(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                         double *log_prob)
{
    return model_log_prob(m, ws, records, n_rows, log_prob, NULL);
}

fs_err fs_model_score(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                      fs_score *out)
{
    /* log_prob and flags go into the output array itself, then are expanded in place */
    for (size_t r0 = 0; r0 < n_rows; r0 += FS__CHUNK_ROWS) {
        size_t n = n_rows - r0 < FS__CHUNK_ROWS ? n_rows - r0 : FS__CHUNK_ROWS;
        double lp[FS__CHUNK_ROWS];
        uint32_t fl[FS__CHUNK_ROWS];
        fs_err err = model_log_prob(m, ws, records + r0 * m->schema->n_fields, n, lp, fl);
        if (err != FS_OK) {
            return err;
        }
        for (size_t r = 0; r < n; r++) {
            fs_score *s = &out[r0 + r];
            s->log_prob = lp[r];
            s->score = -lp[r];
            s->percentile = fs__calib_percentile(&m->calib, s->score);
            s->flags = fl[r];
            if (s->score > m->calib.upper_threshold) {
                s->flags |= FS_SCORE_ANOMALY;
            }
            if (s->score < m->calib.lower_threshold) {
                s->flags |= FS_SCORE_ATYPICAL;
            }
        }
    }
    return FS_OK;
}

fs_err fs__score_raw(const fs_schema *s, const fs__prep *prep, const fs__flow *flow,
                     const float *params, const float *buffers, const double *records, size_t n,
                     double *score, fs_diag *diag)
{
    /* a temporary model view over borrowed parts (never freed as a model) */
    fs_model view;
    fs_workspace *ws = NULL;
    fs_err err;
    memset(&view, 0, sizeof view);
    view.schema = (fs_schema *)(uintptr_t)s;
    view.prep = *prep;
    view.flow = *flow;
    view.params = (float *)(uintptr_t)params;
    view.buffers = (float *)(uintptr_t)buffers;
    view.calib.upper_threshold = HUGE_VAL;
    view.calib.lower_threshold = -HUGE_VAL;
    err = fs_workspace_create(&ws);
    if (err == FS_OK) {
        err = fs_workspace_reserve(ws, &view);
    }
    if (err == FS_OK) {
        err = model_log_prob(&view, ws, records, n, score, NULL);
        if (err == FS_ERR_NUMERIC) {
            fs__diag(diag, err, "a score is not finite");
        }
    }
    for (size_t i = 0; err == FS_OK && i < n; i++) {
        score[i] = -score[i];
    }
    fs_workspace_free(ws);
    return err;
}

/* ---- encode, decode, sample (float64) ---- */

fs_err fs_model_encode(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                       double *z)
{
    ws_layout l = layout_for(m);
    size_t d = m->prep.n_dims, nf = m->schema->n_fields;
    unsigned char *b;
    if (ws == NULL || ws->cap < l.total) {
        return FS_ERR_SHAPE;
    }
    b = ws_base(ws);
    for (size_t r0 = 0; r0 < n_rows; r0 += FS__CHUNK_ROWS) {
        size_t n = n_rows - r0 < FS__CHUNK_ROWS ? n_rows - r0 : FS__CHUNK_ROWS;
        double *out = z + r0 * d;
        fs_err err = fs__prep_forward(&m->prep, m->schema, records + r0 * nf, n, NULL, out,
                                      (double *)(b + l.log_extra), NULL, NULL);
        if (err != FS_OK) {
            return err;
        }
        memset(b + l.log_det, 0, n * sizeof(double));
        err = fs__flow_forward_f64(&m->flow, m->params, m->buffers, b + l.flow64, out, n, out,
                                   (double *)(b + l.log_det));
        if (err != FS_OK) {
            return err;
        }
        for (size_t i = 0; i < n * d; i++) {
            if (!isfinite(out[i])) {
                return FS_ERR_NUMERIC;
            }
        }
    }
    return FS_OK;
}

fs_err fs_model_decode(const fs_model *m, fs_workspace *ws, const double *z, size_t n_rows,
                       double *records)
{
    ws_layout l = layout_for(m);
    size_t d = m->prep.n_dims, nf = m->schema->n_fields;
    unsigned char *b;
    if (ws == NULL || ws->cap < l.total) {
        return FS_ERR_SHAPE;
    }
    b = ws_base(ws);
    double *w = (double *)(b + l.w);
    for (size_t r0 = 0; r0 < n_rows; r0 += FS__CHUNK_ROWS) {
        size_t n = n_rows - r0 < FS__CHUNK_ROWS ? n_rows - r0 : FS__CHUNK_ROWS;
        fs_err err;
        for (size_t i = 0; i < n * d; i++) {
            if (!isfinite(z[r0 * d + i])) {
                return FS_ERR_NUMERIC;
            }
        }
        memset(b + l.log_det, 0, n * sizeof(double));
        err = fs__flow_inverse_f64(&m->flow, m->params, m->buffers, b + l.flow64, z + r0 * d, n, w,
                                   (double *)(b + l.log_det));
        if (err != FS_OK) {
            return err;
        }
        for (size_t i = 0; i < n * d; i++) {
            if (!isfinite(w[i])) {
                return FS_ERR_NUMERIC;
            }
        }
        err = fs__prep_inverse(&m->prep, m->schema, w, n, records + r0 * nf, NULL);
        if (err != FS_OK) {
            return err;
        }
    }
    return FS_OK;
}

/* Decode one latent row into rec; FS_ERR_NUMERIC if anything is not finite. */
static fs_err decode_row(const fs_model *m, unsigned char *b, const ws_layout *l, const double *z,
                         double *rec)
{
    size_t d = m->prep.n_dims;
    double *w = (double *)(b + l->w);
    double ld = 0.0;
    fs_err err = fs__flow_inverse_f64(&m->flow, m->params, m->buffers, b + l->flow64, z, 1, w, &ld);
    if (err != FS_OK) {
        return err;
    }
    for (size_t j = 0; j < d; j++) {
        if (!isfinite(w[j])) {
            return FS_ERR_NUMERIC;
        }
    }
    return fs__prep_inverse(&m->prep, m->schema, w, 1, rec, NULL);
}

fs_err fs_model_sample(const fs_model *m, fs_workspace *ws, size_t n_rows, double temperature,
                       uint64_t seed, double *records)
{
    ws_layout l = layout_for(m);
    size_t d = m->prep.n_dims, nf = m->schema->n_fields;
    unsigned char *b;
    if (!(temperature >= 0.0 && temperature <= FS_SAMPLE_MAX_TEMPERATURE)) {
        return FS_ERR_INVALID;
    }
    if (ws == NULL || ws->cap < l.total) {
        return FS_ERR_SHAPE;
    }
    b = ws_base(ws);
    double *z = (double *)(b + l.z);
    for (size_t r = 0; r < n_rows; r++) {
        fs__rng rng;
        fs_err err = FS_ERR_NUMERIC;
        /* each row has its own stream, so a row does not depend on the request's size */
        fs__rng_seed2(&rng, seed, (uint64_t)r);
        for (int attempt = 0; attempt <= FS_SAMPLE_MAX_REDRAWS && err == FS_ERR_NUMERIC;
             attempt++) {
            for (size_t j = 0; j < d; j++) {
                z[j] = temperature * fs__rng_normal(&rng);
            }
            err = decode_row(m, b, &l, z, records + r * nf);
        }
        if (err != FS_OK) {
            return err;
        }
    }
    return FS_OK;
}

/* ---- copies ---- */

static fs_err model_parts_copy(const fs_model *m, fs__model_parts *p)
{
    fs_err err;
    memset(p, 0, sizeof *p);
    err = fs_schema_copy(m->schema, &p->schema);
    if (err == FS_OK) {
        err = fs__spec_copy(m->spec, &p->spec);
    }
    if (err == FS_OK) {
        err = fs__prep_copy(&m->prep, &p->prep);
    }
    if (err == FS_OK) {
        err = fs__flow_copy(&m->flow, &p->flow);
    }
    if (err == FS_OK) {
        p->params = fs__calloc(m->flow.n_params == 0 ? 1 : m->flow.n_params, sizeof(float));
        p->buffers = fs__calloc(m->flow.n_buffers == 0 ? 1 : m->flow.n_buffers, sizeof(float));
        if (p->params == NULL || p->buffers == NULL) {
            err = FS_ERR_NOMEM;
        } else {
            memcpy(p->params, m->params, m->flow.n_params * sizeof(float));
            memcpy(p->buffers, m->buffers, m->flow.n_buffers * sizeof(float));
        }
    }
    if (err == FS_OK) {
        err = fs__calib_copy(&m->calib, &p->calib);
    }
    if (err == FS_OK && m->training_json != NULL) {
        p->training_json = fs__strdup(m->training_json);
        if (p->training_json == NULL) {
            err = FS_ERR_NOMEM;
        }
    }
    p->flow_seed = m->flow_seed;
    if (err != FS_OK) {
        fs__model_parts_deinit(p);
    }
    return err;
}

fs_err fs_model_recalibrate(const fs_model *m, const double *records, size_t n_rows,
                            double upper_quantile, double lower_quantile, fs_model **out,
                            fs_diag *diag)
{
    fs__model_parts parts;
    double *scores = NULL;
    fs_err err;
    *out = NULL;
    scores = fs__calloc(n_rows == 0 ? 1 : n_rows, sizeof *scores);
    if (scores == NULL) {
        return FS_ERR_NOMEM;
    }
    err = fs__score_raw(m->schema, &m->prep, &m->flow, m->params, m->buffers, records, n_rows,
                        scores, diag);
    if (err == FS_OK) {
        err = model_parts_copy(m, &parts);
    }
    if (err == FS_OK) {
        err = fs__calib_build(&parts.calib, scores, n_rows, upper_quantile, lower_quantile);
        if (err != FS_OK) {
            fs__diag(diag, err, "calibration failed: %s", fs_strerror(err));
            fs__model_parts_deinit(&parts);
        } else {
            err = fs__model_create(&parts, out, diag);
        }
    }
    fs__free(scores);
    return err;
}
