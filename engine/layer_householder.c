/*
 * layer_householder.c: an orthogonal mixing layer, the product of Householder reflections
 * y = H_m ... H_1 x, H_i = I - 2 v_i v_i^T / |v_i|^2 (Tomczak & Welling 2016, "Improving
 * variational auto-encoders using Householder flow"). |det| = 1. Precision-generic (real.h).
 *
 * The vectors are normalised once per call (v^ = v / |v|, in double), so that a row costs
 * two passes over n_dims per reflection, and a zero vector (|v|^2 < FS_HH_TINY) is the
 * identity rather than a division by zero.
 */
#include "layer.h"
#include "real.h"

#include <string.h>

/* fs_real elements that hold one double (scratch is counted in fs_real elements). */
#define FS_REALS_PER_DOUBLE (FS_REAL_IS_F64 ? 1u : 2u)

/* |v|^2 below this is treated as the zero vector: that reflection is the identity. */
#define FS_HH_TINY 1e-24

static size_t block_elems(size_t n, size_t w)
{
    size_t k = fs__mul_size(n, w);
    if (k > SIZE_MAX - 16) {
        return SIZE_MAX;
    }
    return (k + 15) & ~(size_t)15;
}

/* Scratch: m x n_dims doubles (backward accumulators), then m x n_dims unit vectors. */
static size_t hh_acc_elems(const fs__layer *l)
{
    return block_elems(l->n_params, FS_REALS_PER_DOUBLE);
}

/* fs_real elements of scratch: independent of n (2 or 3 x n_reflections x n_dims). */
size_t FS_R(fs__householder_scratch)(const fs__layer *l, size_t n)
{
    (void)n;
    size_t a = hh_acc_elems(l), b = block_elems(l->n_params, 1);
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* v^_i = v_i / |v_i| into vhat (m x n_dims), or 0 for a (near-)zero v_i. */
static fs_real *hh_unit_vectors(const fs__layer *l, const fs__layer_ctx *c)
{
    size_t d = (size_t)l->n_dims, m = (size_t)l->n_reflections;
    fs_real *vhat = (fs_real *)c->scratch + hh_acc_elems(l);
    for (size_t i = 0; i < m; i++) {
        const float *v = c->params + i * d;
        double q = 0.0;
        for (size_t j = 0; j < d; j++) {
            q += (double)v[j] * (double)v[j];
        }
        double inv = q < FS_HH_TINY ? 0.0 : 1.0 / sqrt(q);
        for (size_t j = 0; j < d; j++) {
            vhat[i * d + j] = (fs_real)((double)v[j] * inv);
        }
    }
    return vhat;
}

static fs_real dot(const fs_real *a, const fs_real *b, size_t d)
{
    fs_real s = FS_R_C(0.0);
    for (size_t j = 0; j < d; j++) {
        s += a[j] * b[j];
    }
    return s;
}

/* a -= 2 (v^ . a) v^, in place; returns v^ . a (before). */
static fs_real reflect(fs_real *a, const fs_real *vh, size_t d)
{
    fs_real p = dot(vh, a, d);
    fs_real f = FS_R_C(2.0) * p;
    for (size_t j = 0; j < d; j++) {
        a[j] -= f * vh[j];
    }
    return p;
}

/*
 * y = H_m ... H_1 x (reflection 0 first); log_det unchanged (orthogonal). x, y: n x n_dims,
 * distinct; params: V, n_reflections x n_dims. scratch: fs__householder_scratch. Never fails.
 */
fs_err FS_R(fs__householder_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                     size_t n, fs_real *y, double *log_det)
{
    size_t d = (size_t)l->n_dims, m = (size_t)l->n_reflections;
    (void)log_det;
    if (n == 0) {
        return FS_OK;
    }
    const fs_real *vhat = hh_unit_vectors(l, c);
    memcpy(y, x, n * d * sizeof *y);
    for (size_t r = 0; r < n; r++) {
        fs_real *yr = y + r * d;
        for (size_t i = 0; i < m; i++) {
            reflect(yr, vhat + i * d, d);
        }
    }
    return FS_OK;
}

/* x = H_1 ... H_m y (each H_i is its own inverse; last reflection first). Never fails. */
fs_err FS_R(fs__householder_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                     size_t n, fs_real *x, double *log_det)
{
    size_t d = (size_t)l->n_dims, m = (size_t)l->n_reflections;
    (void)log_det;
    if (n == 0) {
        return FS_OK;
    }
    const fs_real *vhat = hh_unit_vectors(l, c);
    memcpy(x, y, n * d * sizeof *x);
    for (size_t r = 0; r < n; r++) {
        fs_real *xr = x + r * d;
        for (size_t i = m; i-- > 0;) {
            reflect(xr, vhat + i * d, d);
        }
    }
    return FS_OK;
}

/*
 * Reversible backward: reconstruct x by undoing the reflections last to first, carrying
 * dL/d(output of reflection i) along; dL/dv_i is accumulated over the rows for v^_i
 * (dL/dv^ = -2 [(g . v^) a + (v^ . a) g], a the reflection's input, g its output gradient)
 * and mapped through the normalisation at the end: dL/dv = (I - v^ v^^T) dL/dv^ / |v|.
 * dparams: n_reflections x n_dims, added to. The log-det is 0, so ld_weight adds nothing.
 */
fs_err FS_R(fs__householder_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                      const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                      fs_real *dx, fs_real *dparams)
{
    size_t d = (size_t)l->n_dims, m = (size_t)l->n_reflections;
    double *acc = c->scratch;
    (void)ld_weight;
    if (n == 0) {
        return FS_OK;
    }
    const fs_real *vhat = hh_unit_vectors(l, c);
    memset(acc, 0, m * d * sizeof *acc);
    memcpy(x, y, n * d * sizeof *x);
    memcpy(dx, dy, n * d * sizeof *dx);
    for (size_t r = 0; r < n; r++) {
        fs_real *a = x + r * d, *g = dx + r * d;
        for (size_t i = m; i-- > 0;) {
            const fs_real *vh = vhat + i * d;
            double *ai = acc + i * d;
            fs_real pa = reflect(a, vh, d); /* a is now this reflection's input */
            fs_real pg = reflect(g, vh, d); /* g is now the gradient of that input */
            /* with a_in . v^ = -pa: dL/dv^ = 2 pa g_out - 2 pg a_in, g_out = g + 2 pg v^ */
            for (size_t j = 0; j < d; j++) {
                fs_real g_out = g[j] + FS_R_C(2.0) * pg * vh[j];
                ai[j] += (double)(FS_R_C(2.0) * (pa * g_out - pg * a[j]));
            }
        }
    }
    for (size_t i = 0; i < m; i++) {
        const float *v = c->params + i * d;
        const double *ai = acc + i * d;
        double q = 0.0;
        for (size_t j = 0; j < d; j++) {
            q += (double)v[j] * (double)v[j];
        }
        if (q < FS_HH_TINY) {
            continue; /* the identity: no gradient reaches a zero vector */
        }
        double norm = sqrt(q), proj = 0.0;
        for (size_t j = 0; j < d; j++) {
            proj += (double)v[j] / norm * ai[j];
        }
        for (size_t j = 0; j < d; j++) {
            double gv = (ai[j] - (double)v[j] / norm * proj) / norm;
            dparams[i * d + j] += (fs_real)gv;
        }
    }
    return FS_OK;
}
