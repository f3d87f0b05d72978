/*
 * layer_simple.c: the parameter-free layers, precision-generic (real.h).
 * - permutation: a fixed gather y[j] = x[perm[j]], log|det| = 0 (RealNVP, Dinh et al. 2017,
 *   sec. 3.5; Glow, Kingma & Dhariwal 2018, sec. 3.2 uses the same with a learned matrix);
 * - leaky ReLU: y = x (x >= 0), alpha x (x < 0), log|det| = (count of x < 0) log(alpha).
 */
#include "layer.h"
#include "real.h"

#include <string.h>

/* The permutation needs no scratch. */
size_t FS_R(fs__permutation_scratch)(const fs__layer *l, size_t n)
{
    (void)l;
    (void)n;
    return 0;
}

/*
 * y[i][j] = x[i][perm[j]]; log_det unchanged (a permutation has |det| 1).
 * x, y: n x n_dims, distinct. Never fails.
 */
fs_err FS_R(fs__permutation_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                     size_t n, fs_real *y, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const int32_t *perm = l->perm;
    (void)c;
    (void)log_det;
    for (size_t r = 0; r < n; r++) {
        const fs_real *xr = x + r * d;
        fs_real *yr = y + r * d;
        for (size_t j = 0; j < d; j++) {
            yr[j] = xr[perm[j]];
        }
    }
    return FS_OK;
}

/* x[i][perm[j]] = y[i][j], i.e. x[i][j] = y[i][inv_perm[j]]. Never fails. */
fs_err FS_R(fs__permutation_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                     size_t n, fs_real *x, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const int32_t *inv = l->inv_perm;
    (void)c;
    (void)log_det;
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *xr = x + r * d;
        for (size_t j = 0; j < d; j++) {
            xr[j] = yr[inv[j]];
        }
    }
    return FS_OK;
}

/*
 * Reversible backward: x = P^-1 y and dx = P^T dy (the same gather). No parameters, no
 * log-det term. Never fails.
 */
fs_err FS_R(fs__permutation_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                      const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                      fs_real *dx, fs_real *dparams)
{
    (void)ld_weight;
    (void)dparams;
    FS_R(fs__permutation_inverse)(l, c, y, n, x, NULL);
    FS_R(fs__permutation_inverse)(l, c, dy, n, dx, NULL);
    return FS_OK;
}

/* Leaky ReLU needs no scratch. */
size_t FS_R(fs__leaky_relu_scratch)(const fs__layer *l, size_t n)
{
    (void)l;
    (void)n;
    return 0;
}

/*
 * y = x where x >= 0, alpha x elsewhere (alpha in (0, 1]); log_det[i] += (number of negative
 * entries of row i) * log(alpha). x, y: n x n_dims, distinct. Never fails.
 */
fs_err FS_R(fs__leaky_relu_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                    size_t n, fs_real *y, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const fs_real alpha = (fs_real)l->alpha;
    const double log_alpha = log((double)l->alpha);
    (void)c;
    for (size_t r = 0; r < n; r++) {
        const fs_real *xr = x + r * d;
        fs_real *yr = y + r * d;
        size_t neg = 0;
        for (size_t j = 0; j < d; j++) {
            fs_real v = xr[j];
            neg += v < FS_R_C(0.0);
            yr[j] = v < FS_R_C(0.0) ? alpha * v : v;
        }
        if (log_det != NULL) {
            log_det[r] += (double)neg * log_alpha;
        }
    }
    return FS_OK;
}

/* x = y where y >= 0, y / alpha elsewhere; log_det[i] -= (negative count) log(alpha). */
fs_err FS_R(fs__leaky_relu_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                    size_t n, fs_real *x, double *log_det)
{
    size_t d = (size_t)l->n_dims;
    const fs_real alpha = (fs_real)l->alpha;
    const double log_alpha = log((double)l->alpha);
    (void)c;
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *xr = x + r * d;
        size_t neg = 0;
        for (size_t j = 0; j < d; j++) {
            fs_real v = yr[j];
            neg += v < FS_R_C(0.0);
            xr[j] = v < FS_R_C(0.0) ? v / alpha : v;
        }
        if (log_det != NULL) {
            log_det[r] -= (double)neg * log_alpha;
        }
    }
    return FS_OK;
}

/*
 * Reversible backward: x = f^-1(y), dx = dy (x >= 0) or alpha dy (x < 0). The log-det is
 * piecewise constant, so it adds no gradient. Never fails.
 */
fs_err FS_R(fs__leaky_relu_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                     const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                     fs_real *dx, fs_real *dparams)
{
    size_t d = (size_t)l->n_dims;
    const fs_real alpha = (fs_real)l->alpha;
    (void)c;
    (void)ld_weight;
    (void)dparams;
    for (size_t i = 0; i < n * d; i++) {
        fs_real v = y[i];
        int neg = v < FS_R_C(0.0);
        x[i] = neg ? v / alpha : v;
        dx[i] = neg ? alpha * dy[i] : dy[i];
    }
    return FS_OK;
}
