/*
 * test_layers_harness.h: shared numeric checks for the invertible layers and the flow stack
 * (test_layers.c, test_flow.c): a model under test (one layer called through fs__layer_*, or
 * a stack through fs__flow_*), float64 and float32 evaluation, brute-force Jacobians by
 * central differences with an LU log|det|, and finite-difference gradients of the loss
 * L = mean over rows of (0.5 |z|^2 - log|det|).
 */
#ifndef TEST_LAYERS_HARNESS_H
#define TEST_LAYERS_HARNESS_H

#include "fs_test.h"

#include "internal.h"
#include "layer.h"

/* A model under test. */
typedef struct lh_model {
    fs__flow f;
    float *params;  /* f.n_params */
    float *buffers; /* f.n_buffers */
    double *stats;  /* n_layers x 2 x n_dims batch statistics (training) */
    int training;   /* batchnorm with batch statistics */
    int direct;     /* one layer through fs__layer_* (else the stack) */
    int weighted;   /* loss weights a_j, b_j (lh_loss_weights) instead of 1, 0 */
} lh_model;

/* ---- configurations ---- */

static inline fs__layer_cfg lh_coupling(fs__layer_kind kind, int32_t n_hidden, int32_t h0,
                                        int32_t h1, double clamp, int32_t split)
{
    fs__layer_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.n_hidden = n_hidden;
    c.hidden[0] = h0;
    c.hidden[1] = h1;
    c.hidden[2] = 8;
    c.hidden[3] = 8;
    c.clamp = clamp;
    c.split = split;
    return c;
}

static inline fs__layer_cfg lh_perm(fs__perm_source src, uint64_t seed)
{
    fs__layer_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = FS__LAYER_PERMUTATION;
    c.perm_source = src;
    c.perm_seed = seed;
    return c;
}

static inline fs__layer_cfg lh_simple(fs__layer_kind kind, double value)
{
    fs__layer_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.n_reflections = (int32_t)value;
    c.alpha = value;
    c.momentum = 0.1;
    c.eps = 1e-5;
    return c;
}

/* ---- random numbers ---- */

static inline void lh_normal(uint64_t seed, size_t count, double scale, double *out)
{
    fs__rng r;
    fs__rng_seed2(&r, seed, 77);
    for (size_t i = 0; i < count; i++) {
        out[i] = scale * fs__rng_normal(&r);
    }
}

static inline double lh_uniform(fs__rng *r, double lo, double hi)
{
    return lo + (hi - lo) * fs__rng_uniform(r);
}

/*
 * Random, non-trivial parameters: couplings far from the identity (every subnet layer
 * U(+-gain/sqrt(fan_in)), biases included, so s and t are O(1)); Householder N(0, 1);
 * ActNorm and batchnorm scales exp(U(-0.7, 0.7)), shifts U(-1, 1); running means U(-1, 1),
 * running variances U(0.3, 3).
 */
static inline void lh_randomize(lh_model *m, uint64_t seed, double gain)
{
    fs__rng r;
    fs__rng_seed2(&r, seed, 99);
    for (size_t li = 0; li < m->f.n_layers; li++) {
        const fs__layer *l = &m->f.layers[li];
        float *p = m->params + l->param_offset;
        float *b = m->buffers + l->buffer_offset;
        size_t d = (size_t)l->n_dims;
        switch (l->kind) {
        case FS__LAYER_AFFINE_COUPLING:
        case FS__LAYER_ADDITIVE_COUPLING: {
            fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
            fs__layer_tensors(l, desc);
            for (size_t t = 0; t < fs__layer_n_tensors(l); t++) {
                /* W and its b share the fan-in of W (cols of W) */
                int32_t fan_in = desc[t - t % 2].cols;
                double bound = gain / sqrt(fan_in > 0 ? (double)fan_in : 1.0);
                size_t count = (size_t)desc[t].rows * (size_t)desc[t].cols;
                for (size_t k = 0; k < count; k++) {
                    p[desc[t].offset + k] = (float)lh_uniform(&r, -bound, bound);
                }
            }
            break;
        }
        case FS__LAYER_HOUSEHOLDER:
            for (size_t k = 0; k < l->n_params; k++) {
                p[k] = (float)fs__rng_normal(&r);
            }
            break;
        case FS__LAYER_ACTNORM:
        case FS__LAYER_BATCHNORM:
            for (size_t j = 0; j < d; j++) {
                p[j] = (float)lh_uniform(&r, -0.7, 0.7);
                p[d + j] = (float)lh_uniform(&r, -1.0, 1.0);
            }
            if (l->kind == FS__LAYER_BATCHNORM) {
                for (size_t j = 0; j < d; j++) {
                    b[j] = (float)lh_uniform(&r, -1.0, 1.0);
                    b[d + j] = (float)lh_uniform(&r, 0.3, 3.0);
                }
            }
            break;
        case FS__LAYER_PERMUTATION:
        case FS__LAYER_LEAKY_RELU:
        case FS__LAYER__COUNT:
            break;
        }
    }
}

/* Build a model; gain 0 keeps fs__flow_init_params' initial parameters. */
static inline void lh_model_init(lh_model *m, const fs__layer_cfg *cfgs, size_t n, int32_t d,
                                 uint64_t seed, double gain, int training, int direct)
{
    fs_diag diag = { "" };
    memset(m, 0, sizeof *m);
    fs_err err = fs__flow_init(&m->f, cfgs, n, d, seed, &diag);
    if (err != FS_OK) {
        fail_msg("fs__flow_init: %s: %s", fs_err_name(err), diag.msg);
    }
    m->params = calloc(m->f.n_params + 1, sizeof *m->params);
    m->buffers = calloc(m->f.n_buffers + 1, sizeof *m->buffers);
    m->stats = calloc(2 * (size_t)d * (n + 1), sizeof *m->stats);
    assert_non_null(m->params);
    assert_non_null(m->buffers);
    assert_non_null(m->stats);
    fs__flow_init_params(&m->f, seed, m->params, m->buffers);
    if (gain > 0.0) {
        lh_randomize(m, seed + 1, gain);
    }
    m->training = training;
    m->direct = direct;
}

static inline void lh_model_free(lh_model *m)
{
    fs__flow_deinit(&m->f);
    free(m->params);
    free(m->buffers);
    free(m->stats);
    memset(m, 0, sizeof *m);
}

/* An inference copy of m whose batchnorm running statistics are m's last batch statistics. */
static inline void lh_model_freeze(const lh_model *m, lh_model *frozen)
{
    *frozen = *m;
    assert_int_equal(fs__flow_copy(&m->f, &frozen->f), FS_OK);
    frozen->params = malloc((m->f.n_params + 1) * sizeof *frozen->params);
    frozen->buffers = malloc((m->f.n_buffers + 1) * sizeof *frozen->buffers);
    frozen->stats = calloc(1, sizeof *frozen->stats);
    assert_non_null(frozen->params);
    assert_non_null(frozen->buffers);
    memcpy(frozen->params, m->params, m->f.n_params * sizeof *m->params);
    memcpy(frozen->buffers, m->buffers, m->f.n_buffers * sizeof *m->buffers);
    size_t d = (size_t)m->f.n_dims;
    for (size_t i = 0; i < m->f.n_layers; i++) {
        const fs__layer *l = &m->f.layers[i];
        if (l->kind == FS__LAYER_BATCHNORM) {
            for (size_t j = 0; j < 2 * d; j++) {
                frozen->buffers[l->buffer_offset + j] = (float)m->stats[i * 2 * d + j];
            }
        }
    }
    frozen->training = 0;
}

static inline fs__layer_ctx lh_ctx(const lh_model *m, void *scratch)
{
    fs__layer_ctx c;
    c.params = m->params;
    c.buffers = m->buffers;
    c.scratch = scratch;
    c.training = m->training;
    c.batch_stats = m->training ? m->stats : NULL;
    return c;
}

/* ---- evaluation (ld is zeroed, then receives the log-dets) ---- */

#define LH_DEFINE_EVAL(T, SFX)                                                                     \
    static inline void lh_forward##SFX(const lh_model *m, const T *x, size_t n, T *z, double *ld)  \
    {                                                                                              \
        size_t ns = m->direct ? fs__layer_scratch##SFX(&m->f.layers[0], n)                         \
                              : fs__flow_scratch##SFX(&m->f, n);                                   \
        void *s = malloc((ns + 1) * sizeof(T));                                                    \
        fs_err err;                                                                                \
        assert_non_null(s);                                                                        \
        memset(ld, 0, n * sizeof *ld);                                                             \
        if (m->direct) {                                                                           \
            fs__layer_ctx c = lh_ctx(m, s);                                                        \
            err = fs__layer_forward##SFX(&m->f.layers[0], &c, x, n, z, ld);                        \
        } else if (m->training) {                                                                  \
            err = fs__flow_forward_train##SFX(&m->f, m->params, m->buffers, m->stats, s, x, n, z,  \
                                              ld);                                                 \
        } else {                                                                                   \
            err = fs__flow_forward##SFX(&m->f, m->params, m->buffers, s, x, n, z, ld);             \
        }                                                                                          \
        free(s);                                                                                   \
        assert_int_equal(err, FS_OK);                                                              \
    }                                                                                              \
    static inline void lh_inverse##SFX(const lh_model *m, const T *z, size_t n, T *x, double *ld)  \
    {                                                                                              \
        size_t ns = m->direct ? fs__layer_scratch##SFX(&m->f.layers[0], n)                         \
                              : fs__flow_scratch##SFX(&m->f, n);                                   \
        void *s = malloc((ns + 1) * sizeof(T));                                                    \
        fs_err err;                                                                                \
        assert_non_null(s);                                                                        \
        memset(ld, 0, n * sizeof *ld);                                                             \
        if (m->direct) {                                                                           \
            fs__layer_ctx c = lh_ctx(m, s);                                                        \
            err = fs__layer_inverse##SFX(&m->f.layers[0], &c, z, n, x, ld);                        \
        } else {                                                                                   \
            assert_false(m->training); /* the stack inverts with running statistics only */        \
            err = fs__flow_inverse##SFX(&m->f, m->params, m->buffers, s, z, n, x, ld);             \
        }                                                                                          \
        free(s);                                                                                   \
        assert_int_equal(err, FS_OK);                                                              \
    }                                                                                              \
    /* dparams is zeroed first. */                                                                 \
    static inline void lh_backward##SFX(const lh_model *m, const T *z, const T *dz, size_t n,      \
                                        double w, T *x, T *dx, T *dparams)                         \
    {                                                                                              \
        size_t ns = m->direct ? fs__layer_scratch##SFX(&m->f.layers[0], n)                         \
                              : fs__flow_scratch##SFX(&m->f, n);                                   \
        void *s = malloc((ns + 1) * sizeof(T));                                                    \
        fs_err err;                                                                                \
        assert_non_null(s);                                                                        \
        memset(dparams, 0, m->f.n_params * sizeof *dparams);                                       \
        if (m->direct) {                                                                           \
            fs__layer_ctx c = lh_ctx(m, s);                                                        \
            err = fs__layer_backward##SFX(&m->f.layers[0], &c, z, dz, n, w, x, dx, dparams);       \
        } else {                                                                                   \
            err = fs__flow_backward##SFX(&m->f, m->params, m->buffers,                             \
                                         m->training ? m->stats : NULL, s, z, dz, n, w, x, dx,     \
                                         dparams);                                                 \
        }                                                                                          \
        free(s);                                                                                   \
        assert_int_equal(err, FS_OK);                                                              \
    }

LH_DEFINE_EVAL(double, _f64)
LH_DEFINE_EVAL(float, _f32)

static inline double lh_max_abs_diff_f32(const float *a, const double *b, size_t count)
{
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)a[i] - b[i]);
        worst = (e > worst || isnan(e)) ? e : worst;
    }
    return worst;
}

static inline double lh_max_abs_diff(const double *a, const double *b, size_t count)
{
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs(a[i] - b[i]);
        worst = (e > worst || isnan(e)) ? e : worst;
    }
    return worst;
}

/* ---- brute-force Jacobian ---- */

/* log|det a| of an n x n matrix by LU with partial pivoting; a is destroyed. */
static inline double lh_logabsdet(double *a, size_t n)
{
    double ld = 0.0;
    for (size_t k = 0; k < n; k++) {
        size_t p = k;
        for (size_t i = k + 1; i < n; i++) {
            if (fabs(a[i * n + k]) > fabs(a[p * n + k])) {
                p = i;
            }
        }
        if (a[p * n + k] == 0.0) {
            return -HUGE_VAL;
        }
        if (p != k) {
            for (size_t j = 0; j < n; j++) {
                double t = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = t;
            }
        }
        ld += log(fabs(a[k * n + k]));
        for (size_t i = k + 1; i < n; i++) {
            double f = a[i * n + k] / a[k * n + k];
            for (size_t j = k; j < n; j++) {
                a[i * n + j] -= f * a[k * n + j];
            }
        }
    }
    return ld;
}

/*
 * log|det J| of the forward map (inverse = 0) or the inverse map (inverse = 1) of an
 * inference-mode model at one row u (n_dims doubles), by central differences with step h
 * in float64: the 2 n_dims perturbed rows go through the model as one batch.
 */
static inline double lh_brute_logdet(const lh_model *m, int inverse, const double *u, double h)
{
    size_t d = (size_t)m->f.n_dims;
    double *rows = malloc(2 * d * d * sizeof *rows), *out = malloc(2 * d * d * sizeof *out);
    double *ld = malloc(2 * d * sizeof *ld), *jac = malloc(d * d * sizeof *jac);
    assert_non_null(rows);
    assert_non_null(out);
    assert_non_null(ld);
    assert_non_null(jac);
    assert_false(m->training);
    for (size_t k = 0; k < d; k++) {
        memcpy(rows + 2 * k * d, u, d * sizeof *u);
        memcpy(rows + (2 * k + 1) * d, u, d * sizeof *u);
        rows[2 * k * d + k] += h;
        rows[(2 * k + 1) * d + k] -= h;
    }
    if (inverse) {
        lh_inverse_f64(m, rows, 2 * d, out, ld);
    } else {
        lh_forward_f64(m, rows, 2 * d, out, ld);
    }
    for (size_t k = 0; k < d; k++) {
        for (size_t i = 0; i < d; i++) {
            jac[i * d + k] = (out[2 * k * d + i] - out[(2 * k + 1) * d + i]) / (2.0 * h);
        }
    }
    double r = lh_logabsdet(jac, d);
    free(rows);
    free(out);
    free(ld);
    free(jac);
    return r;
}

/* ---- the loss and its finite-difference gradients ---- */

/*
 * The loss is L = mean over rows of sum_j (0.5 a_j z_j^2 + b_j z_j) - log|det|. Plain
 * (a = 1, b = 0) it is the negative log-likelihood up to a constant, but invariant under
 * rotations of z, so that an orthogonal last layer gets a zero gradient; weighted, nothing is.
 */
static inline void lh_loss_weights(const lh_model *m, size_t j, double *a, double *b)
{
    *a = m->weighted ? 0.5 + 0.5 * (double)(j % 3) : 1.0;
    *b = m->weighted ? 0.3 * (j % 2 == 0 ? 1.0 : -1.0) : 0.0;
}

/* The loss in float64. */
static inline double lh_loss_f64(const lh_model *m, const double *x, size_t n)
{
    size_t d = (size_t)m->f.n_dims;
    double *z = malloc(n * d * sizeof *z), *ld = malloc(n * sizeof *ld);
    assert_non_null(z);
    assert_non_null(ld);
    lh_forward_f64(m, x, n, z, ld);
    double sum = 0.0;
    for (size_t r = 0; r < n; r++) {
        double q = 0.0;
        for (size_t j = 0; j < d; j++) {
            double a, b, v = z[r * d + j];
            lh_loss_weights(m, j, &a, &b);
            q += 0.5 * a * v * v + b * v;
        }
        sum += q - ld[r];
    }
    free(z);
    free(ld);
    return sum / (double)n;
}

/*
 * Central differences of the loss: gp[k] for each float32 parameter (perturbed to the
 * nearest floats of p +- h|p|, divided by the perturbation actually made), gx for each input.
 */
static inline void lh_fd_gradients(lh_model *m, const double *x, size_t n, double *gp, double *gx)
{
    size_t d = (size_t)m->f.n_dims;
    for (size_t k = 0; k < m->f.n_params; k++) {
        float p0 = m->params[k];
        double h = 1e-4 * fmax(1.0, fabs((double)p0));
        float pp = (float)((double)p0 + h), pm = (float)((double)p0 - h);
        m->params[k] = pp;
        double lp = lh_loss_f64(m, x, n);
        m->params[k] = pm;
        double lm = lh_loss_f64(m, x, n);
        m->params[k] = p0;
        gp[k] = (lp - lm) / ((double)pp - (double)pm);
    }
    double *xp = malloc(n * d * sizeof *xp);
    assert_non_null(xp);
    memcpy(xp, x, n * d * sizeof *xp);
    for (size_t k = 0; k < n * d; k++) {
        double h = 1e-5 * fmax(1.0, fabs(x[k]));
        xp[k] = x[k] + h;
        double lp = lh_loss_f64(m, xp, n);
        xp[k] = x[k] - h;
        double lm = lh_loss_f64(m, xp, n);
        xp[k] = x[k];
        gx[k] = (lp - lm) / (2.0 * h);
    }
    free(xp);
}

/* Worst errors of an analytic gradient against finite differences. */
typedef struct lh_grad_err {
    double norm_rel; /* max over tensors of |g - g_fd| / |g_fd| */
    double elem_rel; /* max over elements with |g_fd| > 1e-2 max |g_fd| of the tensor */
} lh_grad_err;

/* Compare count values; name says what for the failure message. */
static inline void lh_compare_block(const double *g, const double *gfd, size_t count,
                                    const char *name, double tol, lh_grad_err *worst)
{
    double num = 0.0, den = 0.0, gmax = 0.0;
    for (size_t k = 0; k < count; k++) {
        num += (g[k] - gfd[k]) * (g[k] - gfd[k]);
        den += gfd[k] * gfd[k];
        gmax = fmax(gmax, fabs(gfd[k]));
    }
    if (count == 0) {
        return;
    }
    /* |g_fd| is floored at 1e-3, i.e. below that the check is |g - g_fd| <= 1e-3 tol: the
     * loss is O(1), and a zero gradient (an invariance, e.g. of 0.5 |z|^2 under a final
     * rotation) is a cancellation of O(1) terms, where float32 leaves ~1e-7. */
    double rel = sqrt(num) / fmax(sqrt(den), 1e-3);
    if (!(rel <= tol)) {
        fail_msg("%s: gradient norm-wise relative error %.3g > %.3g (|g_fd| %.3g)", name, rel, tol,
                 sqrt(den));
    }
    worst->norm_rel = fmax(worst->norm_rel, rel);
    for (size_t k = 0; k < count; k++) {
        if (fabs(gfd[k]) > 1e-2 * gmax && gmax > 1e-10) {
            double e = fabs(g[k] - gfd[k]) / fabs(gfd[k]);
            if (!(e <= tol)) {
                fail_msg("%s[%zu]: gradient %.10g, finite differences %.10g: relative error "
                         "%.3g > %.3g",
                         name, k, g[k], gfd[k], e, tol);
            }
            worst->elem_rel = fmax(worst->elem_rel, e);
        }
    }
}

/* Compare every parameter tensor of every layer. */
static inline void lh_compare_params(const lh_model *m, const double *g, const double *gfd,
                                     const char *what, double tol, lh_grad_err *worst)
{
    for (size_t i = 0; i < m->f.n_layers; i++) {
        const fs__layer *l = &m->f.layers[i];
        size_t nt = fs__layer_n_tensors(l);
        fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
        fs__layer_tensors(l, desc);
        for (size_t t = 0; t < nt; t++) {
            char name[96];
            if (desc[t].is_buffer) {
                continue;
            }
            snprintf(name, sizeof name, "%.8s layer %zu (%.20s) %.15s", what, i,
                     fs__layer_kind_name(l->kind), desc[t].name);
            size_t off = l->param_offset + desc[t].offset;
            lh_compare_block(g + off, gfd + off, (size_t)desc[t].rows * (size_t)desc[t].cols, name,
                             tol, worst);
        }
    }
}

/* Results of lh_check_gradients, for the report. */
typedef struct lh_grad_report {
    lh_grad_err p32, x32, p64, x64;
    double recon32; /* max |x - reconstructed x| of the float32 backward */
} lh_grad_report;

/*
 * The gradient proof: fs__*_backward_f32 and _f64 (dz = dL/dz, ld_weight = 1 / n) against
 * central differences of the float64 loss, for every parameter tensor and the input, and
 * the backward's reconstruction of x. x: n x n_dims (float32 values).
 */
static inline void lh_check_gradients(lh_model *m, const float *x32, size_t n, double tol32,
                                      double tol64, lh_grad_report *rep)
{
    size_t d = (size_t)m->f.n_dims, np = m->f.n_params, nd = n * d;
    double *x = malloc(nd * sizeof *x), *gfd = malloc((np + 1) * sizeof *gfd);
    double *gxfd = malloc(nd * sizeof *gxfd), *g = malloc((np + 1) * sizeof *g);
    double *gx = malloc(nd * sizeof *gx), *ld = malloc(n * sizeof *ld);
    float *z32 = malloc(nd * sizeof *z32), *dz32 = malloc(nd * sizeof *dz32);
    float *xr32 = malloc(nd * sizeof *xr32), *dx32 = malloc(nd * sizeof *dx32);
    float *dp32 = malloc((np + 1) * sizeof *dp32);
    double *z64 = malloc(nd * sizeof *z64), *dz64 = malloc(nd * sizeof *dz64);
    double *xr64 = malloc(nd * sizeof *xr64), *dp64 = malloc((np + 1) * sizeof *dp64);
    assert_non_null(dp64);
    for (size_t k = 0; k < nd; k++) {
        x[k] = (double)x32[k];
    }
    memset(rep, 0, sizeof *rep);
    lh_fd_gradients(m, x, n, gfd, gxfd);

    /* float32 */
    lh_forward_f32(m, x32, n, z32, ld);
    for (size_t k = 0; k < nd; k++) {
        double a, b;
        lh_loss_weights(m, k % d, &a, &b);
        dz32[k] = (float)((a * (double)z32[k] + b) / (double)n);
    }
    lh_backward_f32(m, z32, dz32, n, 1.0 / (double)n, xr32, dx32, dp32);
    for (size_t k = 0; k < np; k++) {
        g[k] = (double)dp32[k];
    }
    for (size_t k = 0; k < nd; k++) {
        gx[k] = (double)dx32[k];
    }
    rep->recon32 = lh_max_abs_diff_f32(xr32, x, nd);
    lh_compare_params(m, g, gfd, "f32", tol32, &rep->p32);
    lh_compare_block(gx, gxfd, nd, "f32 dx", tol32, &rep->x32);

    /* float64 */
    lh_forward_f64(m, x, n, z64, ld);
    for (size_t k = 0; k < nd; k++) {
        double a, b;
        lh_loss_weights(m, k % d, &a, &b);
        dz64[k] = (a * z64[k] + b) / (double)n;
    }
    lh_backward_f64(m, z64, dz64, n, 1.0 / (double)n, xr64, gx, dp64);
    lh_compare_params(m, dp64, gfd, "f64", tol64, &rep->p64);
    lh_compare_block(gx, gxfd, nd, "f64 dx", tol64, &rep->x64);
    if (!(rep->recon32 < 1e-4)) {
        fail_msg("f32 backward reconstruction error %.3g >= 1e-4", rep->recon32);
    }
    if (!(lh_max_abs_diff(xr64, x, nd) < 1e-10)) {
        fail_msg("f64 backward reconstruction error %.3g >= 1e-10", lh_max_abs_diff(xr64, x, nd));
    }
    free(x);
    free(gfd);
    free(gxfd);
    free(g);
    free(gx);
    free(ld);
    free(z32);
    free(dz32);
    free(xr32);
    free(dx32);
    free(dp32);
    free(z64);
    free(dz64);
    free(xr64);
    free(dp64);
}

#endif /* TEST_LAYERS_HARNESS_H */
