/*
 * layer_norm.c: per-column affine normalisation layers, precision-generic (real.h).
 * - ActNorm (Glow, Kingma & Dhariwal 2018, sec. 3.1): y = x exp(log_scale) + bias,
 *   log|det| = sum log_scale, with the data-dependent initialisation fs__actnorm_init.
 * - Invertible batch norm (RealNVP, Dinh et al. 2017, sec. 3.7):
 *   y = (x - m) / sqrt(v + eps) exp(log_gamma) + beta, log|det| = sum (log_gamma -
 *   0.5 log(v + eps)), with m, v the running statistics (inference) or the batch mean and
 *   population variance (training; the backward differentiates through them).
 * Column constants are formed in double, once per call; statistics are summed in double.
 */
#include "layer.h"
#include "real.h"

#include <string.h>

/* fs_real elements that hold one double (scratch is counted in fs_real elements). */
#define FS_REALS_PER_DOUBLE (FS_REAL_IS_F64 ? 1u : 2u)

static size_t block_elems(size_t n, size_t w)
{
    size_t k = fs__mul_size(n, w);
    if (k > SIZE_MAX - 16) {
        return SIZE_MAX;
    }
    return (k + 15) & ~(size_t)15;
}

/* Scratch of both layers: 4 x n_dims doubles, then 6 x n_dims fs_real column constants. */
static size_t norm_double_elems(const fs__layer *l)
{
    return block_elems(4 * (size_t)l->n_dims, FS_REALS_PER_DOUBLE);
}

static size_t norm_scratch(const fs__layer *l)
{
    return norm_double_elems(l) + block_elems(6 * (size_t)l->n_dims, 1);
}

static fs_real *norm_consts(const fs__layer *l, const fs__layer_ctx *c)
{
    return (fs_real *)c->scratch + norm_double_elems(l);
}

/* ---- ActNorm ---- */

/* fs_real elements of scratch: a few vectors of n_dims, independent of n. */
size_t FS_R(fs__actnorm_scratch)(const fs__layer *l, size_t n)
{
    (void)n;
    return norm_scratch(l);
}

/*
 * y = x exp(log_scale) + bias per column; log_det[i] += sum log_scale. params: log_scale,
 * bias (n_dims each). x, y: n x n_dims, distinct. Never fails.
 */
fs_err FS_R(fs__actnorm_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                 size_t n, fs_real *y, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const float *ls = c->params, *bias = c->params + d;
    fs_real *scale = norm_consts(l, c), *shift = scale + d;
    double ld = 0.0;
    for (size_t j = 0; j < d; j++) {
        scale[j] = (fs_real)exp((double)ls[j]);
        shift[j] = (fs_real)bias[j];
        ld += (double)ls[j];
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *xr = x + r * d;
        fs_real *yr = y + r * d;
        for (size_t j = 0; j < d; j++) {
            yr[j] = xr[j] * scale[j] + shift[j];
        }
        if (log_det != NULL) {
            log_det[r] += ld;
        }
    }
    return FS_OK;
}

/* x = (y - bias) exp(-log_scale); log_det[i] -= sum log_scale. Never fails. */
fs_err FS_R(fs__actnorm_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                 size_t n, fs_real *x, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const float *ls = c->params, *bias = c->params + d;
    fs_real *scale = norm_consts(l, c), *shift = scale + d;
    double ld = 0.0;
    for (size_t j = 0; j < d; j++) {
        scale[j] = (fs_real)exp(-(double)ls[j]);
        shift[j] = (fs_real)bias[j];
        ld += (double)ls[j];
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *xr = x + r * d;
        for (size_t j = 0; j < d; j++) {
            xr[j] = (yr[j] - shift[j]) * scale[j];
        }
        if (log_det != NULL) {
            log_det[r] -= ld;
        }
    }
    return FS_OK;
}

/*
 * Reversible backward: x = (y - bias) exp(-log_scale), dx = dy exp(log_scale),
 * dL/dlog_scale += sum_rows dy (y - bias) - ld_weight n, dL/dbias += sum_rows dy.
 */
fs_err FS_R(fs__actnorm_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                  const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                  fs_real *dx, fs_real *dparams)
{
    size_t d = (size_t)l->n_dims;
    const float *ls = c->params, *bias = c->params + d;
    double *s_dyu = c->scratch, *s_dy = s_dyu + d;
    fs_real *inv_scale = norm_consts(l, c), *scale = inv_scale + d, *shift = scale + d;
    for (size_t j = 0; j < d; j++) {
        inv_scale[j] = (fs_real)exp(-(double)ls[j]);
        scale[j] = (fs_real)exp((double)ls[j]);
        shift[j] = (fs_real)bias[j];
        s_dyu[j] = 0.0;
        s_dy[j] = 0.0;
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d, *dyr = dy + r * d;
        fs_real *xr = x + r * d, *dxr = dx + r * d;
        for (size_t j = 0; j < d; j++) {
            fs_real u = yr[j] - shift[j]; /* = x exp(log_scale) */
            xr[j] = u * inv_scale[j];
            dxr[j] = dyr[j] * scale[j];
            s_dyu[j] += (double)(dyr[j] * u);
            s_dy[j] += (double)dyr[j];
        }
    }
    for (size_t j = 0; j < d; j++) {
        dparams[j] += (fs_real)(s_dyu[j] - ld_weight * (double)n);
        dparams[d + j] += (fs_real)s_dy[j];
    }
    return FS_OK;
}

/*
 * ActNorm data-dependent initialisation (Glow, sec. 3.1) from x (n x n_dims): per column,
 * log_scale = -log(std), bias = -mean exp(log_scale), so the layer's output has mean 0 and
 * (population) std 1. A column whose std is below 1e-6 (constant, or n <= 1) gets
 * log_scale 0 and bias -mean; a column with a non-finite mean or std is left the identity.
 * params: this layer's slice (log_scale then bias). Sums in double, two passes.
 */
void FS_R(fs__actnorm_init)(const fs__layer *l, float *params, const fs_real *x, size_t n)
{
    size_t d = (size_t)l->n_dims;
    for (size_t j = 0; j < d; j++) {
        double mean = 0.0, var = 0.0;
        for (size_t r = 0; r < n; r++) {
            mean += (double)x[r * d + j];
        }
        mean = n > 0 ? mean / (double)n : 0.0;
        for (size_t r = 0; r < n; r++) {
            double u = (double)x[r * d + j] - mean;
            var += u * u;
        }
        double sd = n > 0 ? sqrt(var / (double)n) : 0.0;
        if (!isfinite(mean) || !isfinite(sd)) {
            params[j] = 0.0f;
            params[d + j] = 0.0f;
        } else if (sd < 1e-6) {
            params[j] = 0.0f;
            params[d + j] = (float)-mean;
        } else {
            float log_scale = (float)-log(sd);
            params[j] = log_scale;
            params[d + j] = (float)(-mean * exp((double)log_scale));
        }
    }
}

/* ---- batch norm ---- */

/* fs_real elements of scratch: a few vectors of n_dims, independent of n. */
size_t FS_R(fs__batchnorm_scratch)(const fs__layer *l, size_t n)
{
    (void)n;
    return norm_scratch(l);
}

/* The statistics this call uses: running ones, or the batch's (training). */
static fs_err bn_stats(const fs__layer *l, const fs__layer_ctx *c, const double **mean,
                       const double **var, double *tmp)
{
    size_t d = (size_t)l->n_dims;
    if (c->training) {
        if (c->batch_stats == NULL) {
            return FS_ERR_INVALID;
        }
        *mean = c->batch_stats;
        *var = c->batch_stats + d;
        return FS_OK;
    }
    for (size_t j = 0; j < d; j++) {
        tmp[j] = (double)c->buffers[j];
        tmp[d + j] = (double)c->buffers[d + j];
    }
    *mean = tmp;
    *var = tmp + d;
    return FS_OK;
}

/* Batch mean and population variance of x per column, in double, into stats (2 n_dims). */
static void bn_batch_stats(size_t d, const fs_real *x, size_t n, double *stats)
{
    double *mean = stats, *var = stats + d;
    for (size_t j = 0; j < d; j++) {
        mean[j] = 0.0;
        var[j] = 0.0;
    }
    if (n == 0) {
        for (size_t j = 0; j < d; j++) {
            var[j] = 1.0;
        }
        return;
    }
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < d; j++) {
            mean[j] += (double)x[r * d + j];
        }
    }
    for (size_t j = 0; j < d; j++) {
        mean[j] /= (double)n;
    }
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < d; j++) {
            double u = (double)x[r * d + j] - mean[j];
            var[j] += u * u;
        }
    }
    for (size_t j = 0; j < d; j++) {
        var[j] /= (double)n;
    }
}

/*
 * y = (x - m) / sqrt(v + eps) exp(log_gamma) + beta; log_det[i] += sum (log_gamma -
 * 0.5 log(v + eps)). Inference: m, v = running_mean, running_var (buffers). Training
 * (c->training): m, v = the batch mean and population variance of x, written to
 * c->batch_stats (mean then var, n_dims doubles each). x, y: n x n_dims, distinct.
 * Errors: FS_ERR_INVALID when training without batch_stats.
 */
fs_err FS_R(fs__batchnorm_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                   size_t n, fs_real *y, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const float *lg = c->params, *beta = c->params + d;
    const double *mean, *var;
    fs_real *m = norm_consts(l, c), *a = m + d, *b = a + d;
    if (c->training && c->batch_stats != NULL) {
        bn_batch_stats(d, x, n, c->batch_stats);
    }
    fs_err err = bn_stats(l, c, &mean, &var, c->scratch);
    if (err != FS_OK) {
        return err;
    }
    double ld = 0.0;
    for (size_t j = 0; j < d; j++) {
        double v = var[j] + (double)l->eps;
        m[j] = (fs_real)mean[j];
        a[j] = (fs_real)(exp((double)lg[j]) / sqrt(v));
        b[j] = (fs_real)beta[j];
        ld += (double)lg[j] - 0.5 * log(v);
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *xr = x + r * d;
        fs_real *yr = y + r * d;
        for (size_t j = 0; j < d; j++) {
            yr[j] = (xr[j] - m[j]) * a[j] + b[j];
        }
        if (log_det != NULL) {
            log_det[r] += ld;
        }
    }
    return FS_OK;
}

/*
 * x = (y - beta) sqrt(v + eps) exp(-log_gamma) + m with the statistics of the forward pass
 * (running, or c->batch_stats when training); log_det[i] -= the forward's log-det.
 * Errors: FS_ERR_INVALID when training without batch_stats.
 */
fs_err FS_R(fs__batchnorm_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                   size_t n, fs_real *x, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const float *lg = c->params, *beta = c->params + d;
    const double *mean, *var;
    fs_real *m = norm_consts(l, c), *ainv = m + d, *b = ainv + d;
    fs_err err = bn_stats(l, c, &mean, &var, c->scratch);
    if (err != FS_OK) {
        return err;
    }
    double ld = 0.0;
    for (size_t j = 0; j < d; j++) {
        double v = var[j] + (double)l->eps;
        m[j] = (fs_real)mean[j];
        ainv[j] = (fs_real)(sqrt(v) * exp(-(double)lg[j]));
        b[j] = (fs_real)beta[j];
        ld += (double)lg[j] - 0.5 * log(v);
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *xr = x + r * d;
        for (size_t j = 0; j < d; j++) {
            xr[j] = (yr[j] - b[j]) * ainv[j] + m[j];
        }
        if (log_det != NULL) {
            log_det[r] -= ld;
        }
    }
    return FS_OK;
}

/*
 * Reversible backward. With sigma = sqrt(v + eps), gamma = exp(log_gamma), u = y - beta and
 * x^ = u / gamma: x = x^ sigma + m; dL/dbeta += sum dy; dL/dlog_gamma += sum dy u -
 * ld_weight n. Inference: dx = dy gamma / sigma. Training, where m and v depend on every row
 * (batch-norm gradient; Ioffe & Szegedy 2015, sec. 3) and the log-det on v:
 * dx = (dx^ - mean(dx^) - x^ mean(dx^ x^) + ld_weight x^) / sigma with dx^ = dy gamma.
 * Errors: FS_ERR_INVALID when training without batch_stats.
 */
fs_err FS_R(fs__batchnorm_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                    const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                    fs_real *dx, fs_real *dparams)
{
    size_t d = (size_t)l->n_dims;
    const float *lg = c->params, *beta = c->params + d;
    const double *mean, *var;
    double *s_dy = (double *)c->scratch + 2 * d, *s_dyu = s_dy + d;
    fs_real *m = norm_consts(l, c), *ainv = m + d, *b = ainv + d, *ka = b + d, *kb = ka + d,
            *kc = kb + d;
    fs_err err = bn_stats(l, c, &mean, &var, c->scratch);
    if (err != FS_OK) {
        return err;
    }
    for (size_t j = 0; j < d; j++) {
        double sigma = sqrt(var[j] + (double)l->eps), gamma = exp((double)lg[j]);
        m[j] = (fs_real)mean[j];
        ainv[j] = (fs_real)(sigma / gamma);
        b[j] = (fs_real)beta[j];
        ka[j] = (fs_real)(gamma / sigma);
        s_dy[j] = 0.0;
        s_dyu[j] = 0.0;
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d, *dyr = dy + r * d;
        fs_real *xr = x + r * d, *dxr = dx + r * d;
        for (size_t j = 0; j < d; j++) {
            fs_real u = yr[j] - b[j];
            xr[j] = u * ainv[j] + m[j];
            dxr[j] = dyr[j] * ka[j];
            s_dy[j] += (double)dyr[j];
            s_dyu[j] += (double)(dyr[j] * u);
        }
    }
    for (size_t j = 0; j < d; j++) {
        dparams[j] += (fs_real)(s_dyu[j] - ld_weight * (double)n);
        dparams[d + j] += (fs_real)s_dy[j];
    }
    if (!c->training || n == 0) {
        return FS_OK;
    }
    /* dx = dy gamma/sigma - gamma S_dy / (n sigma) - u (S_dyu / n - w) / (gamma sigma) */
    for (size_t j = 0; j < d; j++) {
        double sigma = sqrt(var[j] + (double)l->eps), gamma = exp((double)lg[j]);
        kb[j] = (fs_real)(gamma * s_dy[j] / ((double)n * sigma));
        kc[j] = (fs_real)((s_dyu[j] / (double)n - ld_weight) / (gamma * sigma));
    }
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *dxr = dx + r * d;
        for (size_t j = 0; j < d; j++) {
            dxr[j] -= kb[j] + (yr[j] - b[j]) * kc[j];
        }
    }
    return FS_OK;
}
