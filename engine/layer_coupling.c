/*
 * layer_coupling.c: affine coupling (RealNVP, Dinh et al. 2017, eq. 6-7) and additive
 * coupling (NICE, Dinh et al. 2015, eq. 5), forward, inverse and reversible backward.
 * Precision-generic (real.h): compiled as float32 and float64.
 *
 * x = (x1, x2), x1 the first d1 columns. A subnet MLP on x1 (ReLU after each hidden layer)
 * gives o; affine: s = clamp * tanh(o[0:d2] / clamp), t = o[d2:2 d2],
 * y2 = x2 * exp(s) + t, log|det| = sum s; additive: t = o, y2 = x2 + t, log|det| = 0.
 * Every subnet layer is one gemm over the whole batch (H = X W^T) followed by one fused
 * bias + ReLU sweep; the last layer's bias, the clamp, exp, the coupling and the log-det are
 * one sweep over the rows.
 */
#include "layer.h"
#include "real.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

/* Values handled at once by the row sweeps that need a temporary (backward's exp(-s)). */
#define COUPLING_CHUNK 256

/*
 * The element-wise row loops below run in blocks of 8 with restrict pointers: that is the
 * shape GCC's -O2 SLP vectoriser turns into branch-free SIMD (compare + and for the ReLU).
 * Written as plain loops they stay scalar with a branch that ReLU mispredicts half the time:
 * 5 ns instead of 0.13 ns per element, as much time as the gemms (measured, D=32 H=128).
 */
#define COUPLING_BLOCK 8

/* row = max(row, 0), w values. */
static void relu_row(fs_real *restrict row, size_t w)
{
    size_t j = 0;
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            fs_real v = row[j + k];
            row[j + k] = v > FS_R_C(0.0) ? v : FS_R_C(0.0);
        }
    }
    for (; j < w; j++) {
        fs_real v = row[j];
        row[j] = v > FS_R_C(0.0) ? v : FS_R_C(0.0);
    }
}

/* y = x * e + t, w values (the affine coupling's y2 = x2 exp(s) + t). */
static void scale_shift_row(fs_real *restrict y, const fs_real *restrict x,
                            const fs_real *restrict e, const fs_real *restrict t, size_t w)
{
    size_t j = 0;
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            y[j + k] = x[j + k] * e[j + k] + t[j + k];
        }
    }
    for (; j < w; j++) {
        y[j] = x[j] * e[j] + t[j];
    }
}

/* x = (y - t) * e, w values (the inverse: x2 = (y2 - t) exp(-s)). */
static void unshift_scale_row(fs_real *restrict x, const fs_real *restrict y,
                              const fs_real *restrict t, const fs_real *restrict e, size_t w)
{
    size_t j = 0;
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            x[j + k] = (y[j + k] - t[j + k]) * e[j + k];
        }
    }
    for (; j < w; j++) {
        x[j] = (y[j] - t[j]) * e[j];
    }
}

/* y = x + sign * t (sign 1 or -1), w values (additive coupling). */
static void shift_row(fs_real *restrict y, const fs_real *restrict x, const fs_real *restrict t,
                      fs_real sign, size_t w)
{
    size_t j = 0;
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            y[j + k] = x[j + k] + sign * t[j + k];
        }
    }
    for (; j < w; j++) {
        y[j] = x[j] + sign * t[j];
    }
}

/* h = g where h > 0, else 0 (the gradient through a ReLU), w values. */
static void relu_grad_row(fs_real *restrict h, const fs_real *restrict g, size_t w)
{
    size_t j = 0;
    /* g is loaded unconditionally: a load on one arm of ?: keeps the loop scalar */
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            fs_real gv = g[j + k];
            h[j + k] = h[j + k] > FS_R_C(0.0) ? gv : FS_R_C(0.0);
        }
    }
    for (; j < w; j++) {
        fs_real gv = g[j];
        h[j] = h[j] > FS_R_C(0.0) ? gv : FS_R_C(0.0);
    }
}

/*
 * The affine coupling's backward for w values of one row, given s (clamped), t, y2, dy2 and
 * e = exp(-s): x2 = (y2 - t) e; dx2 = dy2 / e; s <- dL/ds_raw = (dy2 (y2 - t) - ld_w)
 * (1 - (s/clamp)^2) (dL/ds = dy2 x2 exp(s) - ld_w, d tanh = 1 - tanh^2); t <- dL/dt = dy2.
 */
static void affine_grad_row(fs_real *restrict x2, fs_real *restrict dx2, fs_real *restrict s,
                            fs_real *restrict t, const fs_real *restrict y2,
                            const fs_real *restrict dy2, const fs_real *restrict e, fs_real ld_w,
                            fs_real inv_clamp, size_t w)
{
    size_t j = 0;
    for (; j + COUPLING_BLOCK <= w; j += COUPLING_BLOCK) {
        for (size_t k = 0; k < COUPLING_BLOCK; k++) {
            fs_real u = y2[j + k] - t[j + k]; /* = x2 exp(s) */
            fs_real q = s[j + k] * inv_clamp; /* = tanh(s_raw / clamp) */
            x2[j + k] = u * e[j + k];
            dx2[j + k] = dy2[j + k] / e[j + k];
            s[j + k] = (dy2[j + k] * u - ld_w) * (FS_R_C(1.0) - q * q);
            t[j + k] = dy2[j + k];
        }
    }
    for (; j < w; j++) {
        fs_real u = y2[j] - t[j];
        fs_real q = s[j] * inv_clamp;
        x2[j] = u * e[j];
        dx2[j] = dy2[j] / e[j];
        s[j] = (dy2[j] * u - ld_w) * (FS_R_C(1.0) - q * q);
        t[j] = dy2[j];
    }
}

static double sum_row(const fs_real *s, size_t w)
{
    double sum = 0.0;
    for (size_t j = 0; j < w; j++) {
        sum += (double)s[j];
    }
    return sum;
}

/* n * w fs_real elements rounded up to 16 (64 bytes), saturating at SIZE_MAX. */
static size_t block_elems(size_t n, size_t w)
{
    size_t k = fs__mul_size(n, w);
    if (k > SIZE_MAX - 16) {
        return SIZE_MAX;
    }
    return (k + 15) & ~(size_t)15;
}

static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Shapes of the subnet and where everything lives in the parameters and in scratch. */
typedef struct coupling_plan {
    int32_t n_linear;                 /* n_hidden + 1 */
    size_t in[FS__MAX_HIDDEN + 1];    /* input width of linear layer i */
    size_t out[FS__MAX_HIDDEN + 1];   /* output width of linear layer i */
    size_t w_off[FS__MAX_HIDDEN + 1]; /* W_i within the layer's parameters */
    size_t b_off[FS__MAX_HIDDEN + 1]; /* b_i within the layer's parameters */
    size_t max_width;                 /* widest linear output */
    size_t max_hidden;                /* widest hidden layer (0 without hidden layers) */
    /* scratch offsets, fs_real elements: widened params (float64 build), activations
     * h_0..h_{n-1} then o, the backward's gemm target g (n x max_hidden) and n ones (the
     * bias gradients are column sums: one gemv each) */
    size_t params, act[FS__MAX_HIDDEN + 1], g, ones, total;
} coupling_plan;

static void coupling_plan_make(const fs__layer *l, size_t n, coupling_plan *p)
{
    size_t off = 0;
    memset(p, 0, sizeof *p);
    p->n_linear = l->n_hidden + 1;
    for (int32_t i = 0; i < p->n_linear; i++) {
        p->in[i] = i == 0 ? (size_t)l->d1 : (size_t)l->hidden[i - 1];
        if (i < l->n_hidden) {
            p->out[i] = (size_t)l->hidden[i];
            p->max_hidden = p->out[i] > p->max_hidden ? p->out[i] : p->max_hidden;
        } else {
            p->out[i] = l->kind == FS__LAYER_AFFINE_COUPLING ? 2 * (size_t)l->d2 : (size_t)l->d2;
        }
        p->max_width = p->out[i] > p->max_width ? p->out[i] : p->max_width;
        p->w_off[i] = off;
        off += p->out[i] * p->in[i];
        p->b_off[i] = off;
        off += p->out[i];
    }
    assert(off == l->n_params);
    size_t total = 0;
    p->params = total;
    total = add_sat(total, block_elems(fs_r_params_scratch(l->n_params), 1));
    for (int32_t i = 0; i < p->n_linear; i++) {
        p->act[i] = total;
        total = add_sat(total, block_elems(n, p->out[i]));
    }
    p->g = total;
    total = add_sat(total, block_elems(n, p->max_hidden));
    p->ones = total;
    total = add_sat(total, block_elems(n, 1));
    p->total = total;
}

/*
 * fs_real elements of scratch for one call on n rows: n x (sum of the subnet widths) for the
 * activations, n x (widest hidden layer) for the backward's gemm target, a few vectors, and
 * in the float64 build the widened parameters. SIZE_MAX on overflow.
 */
size_t FS_R(fs__coupling_scratch)(const fs__layer *l, size_t n)
{
    coupling_plan p;
    coupling_plan_make(l, n, &p);
    return p.total;
}

/*
 * The subnet on x1 = the first d1 columns of x (n rows, leading dimension n_dims): hidden
 * activations into scratch act[0..n_hidden-1] (ReLU applied), the output o into
 * act[n_hidden]. Each layer's rows start as its bias and gemm adds X W^T onto them (beta 1):
 * with beta 0 OpenBLAS would spend a pass zeroing them instead (5% of a forward pass).
 */
static void subnet_forward(const fs__layer *l, const coupling_plan *p, const fs_real *par,
                           const fs_real *x, size_t n, fs_real *scratch)
{
    const fs_real *in = x;
    size_t ld_in = (size_t)l->n_dims;
    for (int32_t i = 0; i < p->n_linear; i++) {
        size_t w = p->out[i];
        const fs_real *b = par + p->b_off[i];
        fs_real *h = scratch + p->act[i];
        int hidden = i < l->n_hidden;
        for (size_t r = 0; r < n; r++) {
            memcpy(h + r * w, b, w * sizeof *h);
        }
        /* d1 = 0 (one dimension): no input, so the first layer is its bias alone. */
        if (p->in[i] > 0) {
            fs_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)w, (int)p->in[i],
                    FS_R_C(1.0), in, (int)ld_in, par + p->w_off[i], (int)p->in[i], FS_R_C(1.0), h,
                    (int)w);
        }
        if (hidden) {
            for (size_t r = 0; r < n; r++) {
                relu_row(h + r * w, w);
            }
        }
        in = h;
        ld_in = w;
    }
}

/* BLAS takes int sizes: more rows than INT_MAX cannot go into one gemm. */
static fs_err check_rows(size_t n)
{
    return n > (size_t)INT_MAX ? FS_ERR_SHAPE : FS_OK;
}

/*
 * Forward pass of an affine or additive coupling: y = f(x), log_det[i] += sum_j s[i][j]
 * (affine) or nothing (additive). x, y: n x n_dims, distinct. scratch:
 * fs__coupling_scratch(l, n) elements. Errors: FS_ERR_SHAPE if n does not fit BLAS's int.
 * Math: RealNVP (Dinh et al. 2017, eq. 6-7) with s = c tanh(s_raw / c); NICE (Dinh et al.
 * 2015, eq. 5).
 */
fs_err FS_R(fs__coupling_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                                  size_t n, fs_real *y, double *log_det)
{
    coupling_plan p;
    fs_real *scratch = c->scratch;
    size_t d = (size_t)l->n_dims, d1 = (size_t)l->d1, d2 = (size_t)l->d2;
    if (n == 0) {
        return FS_OK;
    }
    if (check_rows(n) != FS_OK) {
        return FS_ERR_SHAPE;
    }
    coupling_plan_make(l, n, &p);
    const fs_real *par = fs_r_params(c->params, l->n_params, scratch + p.params);
    subnet_forward(l, &p, par, x, n, scratch);
    const int32_t last = p.n_linear - 1;
    const fs_real *o_all = scratch + p.act[last];
    size_t w = p.out[last];
    if (l->kind == FS__LAYER_ADDITIVE_COUPLING) {
        for (size_t r = 0; r < n; r++) {
            const fs_real *xr = x + r * d;
            fs_real *yr = y + r * d;
            memcpy(yr, xr, d1 * sizeof *yr);
            shift_row(yr + d1, xr + d1, o_all + r * w, FS_R_C(1.0), d2);
        }
        return FS_OK;
    }
    const fs_real clamp = (fs_real)l->clamp;
    for (size_t r = 0; r < n; r++) {
        const fs_real *xr = x + r * d;
        fs_real *yr = y + r * d;
        fs_real *s = scratch + p.act[last] + r * w, *t = s + d2;
        memcpy(yr, xr, d1 * sizeof *yr);
        fs_r_vsoftclamp(s, d2, clamp);
        double sum = sum_row(s, d2);
        fs_r_vexp(s, d2);
        scale_shift_row(yr + d1, xr + d1, s, t, d2);
        if (log_det != NULL) {
            log_det[r] += sum;
        }
    }
    return FS_OK;
}

/*
 * Inverse pass: x = f^-1(y) with x1 = y1, x2 = (y2 - t) * exp(-s) (affine) or y2 - t
 * (additive); log_det[i] -= sum_j s[i][j]. Same shapes, scratch and errors as the forward.
 */
fs_err FS_R(fs__coupling_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                  size_t n, fs_real *x, double *log_det)
{
    coupling_plan p;
    fs_real *scratch = c->scratch;
    size_t d = (size_t)l->n_dims, d1 = (size_t)l->d1, d2 = (size_t)l->d2;
    if (n == 0) {
        return FS_OK;
    }
    if (check_rows(n) != FS_OK) {
        return FS_ERR_SHAPE;
    }
    coupling_plan_make(l, n, &p);
    const fs_real *par = fs_r_params(c->params, l->n_params, scratch + p.params);
    /* x1 = y1, so the subnet sees exactly what it saw in the forward pass. */
    subnet_forward(l, &p, par, y, n, scratch);
    const int32_t last = p.n_linear - 1;
    size_t w = p.out[last];
    if (l->kind == FS__LAYER_ADDITIVE_COUPLING) {
        for (size_t r = 0; r < n; r++) {
            const fs_real *yr = y + r * d;
            fs_real *xr = x + r * d;
            memcpy(xr, yr, d1 * sizeof *xr);
            shift_row(xr + d1, yr + d1, scratch + p.act[last] + r * w, FS_R_C(-1.0), d2);
        }
        return FS_OK;
    }
    const fs_real clamp = (fs_real)l->clamp;
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d;
        fs_real *xr = x + r * d;
        fs_real *s = scratch + p.act[last] + r * w, *t = s + d2;
        memcpy(xr, yr, d1 * sizeof *xr);
        fs_r_vsoftclamp(s, d2, clamp);
        double sum = sum_row(s, d2);
        for (size_t j = 0; j < d2; j++) {
            s[j] = -s[j];
        }
        fs_r_vexp(s, d2);
        unshift_scale_row(xr + d1, yr + d1, t, s, d2);
        if (log_det != NULL) {
            log_det[r] -= sum;
        }
    }
    return FS_OK;
}

/*
 * The coupling sweep of the backward pass, row by row: reconstruct x2 from y2, write dx1 = dy1
 * (the subnet's share is added later by gemm) and dx2, and turn the subnet output o into
 * dL/do in place (affine: [dL/ds_raw, dL/dt]; additive: dL/dt).
 */
static void coupling_backward_sweep(const fs__layer *l, fs_real *o_all, size_t w, const fs_real *y,
                                    const fs_real *dy, size_t n, fs_real ld_w, fs_real *x,
                                    fs_real *dx)
{
    size_t d = (size_t)l->n_dims, d1 = (size_t)l->d1, d2 = (size_t)l->d2;
    const fs_real clamp = (fs_real)l->clamp, inv_clamp = FS_R_C(1.0) / clamp;
    for (size_t r = 0; r < n; r++) {
        const fs_real *yr = y + r * d, *dyr = dy + r * d;
        fs_real *xr = x + r * d, *dxr = dx + r * d, *o = o_all + r * w;
        memcpy(xr, yr, d1 * sizeof *xr);
        memcpy(dxr, dyr, d1 * sizeof *dxr);
        if (l->kind == FS__LAYER_ADDITIVE_COUPLING) {
            shift_row(xr + d1, yr + d1, o, FS_R_C(-1.0), d2);
            memcpy(dxr + d1, dyr + d1, d2 * sizeof *dxr);
            memcpy(o, dyr + d1, d2 * sizeof *o);
            continue;
        }
        fs_r_vsoftclamp(o, d2, clamp);
        for (size_t j0 = 0; j0 < d2; j0 += COUPLING_CHUNK) {
            size_t m = d2 - j0 < COUPLING_CHUNK ? d2 - j0 : COUPLING_CHUNK;
            fs_real e_neg[COUPLING_CHUNK];
            for (size_t k = 0; k < m; k++) {
                e_neg[k] = -o[j0 + k];
            }
            fs_r_vexp(e_neg, m);
            affine_grad_row(xr + d1 + j0, dxr + d1 + j0, o + j0, o + d2 + j0, yr + d1 + j0,
                            dyr + d1 + j0, e_neg, ld_w, inv_clamp, m);
        }
    }
}

/* db += colsum(g) for g: n x w (one gemv against the ones in scratch). */
static void add_column_sums(const fs_real *g, size_t n, size_t w, const fs_real *ones, fs_real *db)
{
#if FS_REAL_IS_F64
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)w, 1.0, g, (int)w, ones, 1, 1.0, db, 1);
#else
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)w, 1.0f, g, (int)w, ones, 1, 1.0f, db, 1);
#endif
}

/*
 * Reversible backward pass (Gomez et al. 2017; Jacobsen et al. 2018): from y and dL/dy,
 * reconstruct x (x1 = y1, so the subnet is recomputed exactly), write dL/dx, and add
 * dL/d(W_i, b_i) into dparams (this layer's slice, same layout as the parameters). The loss
 * is taken to contain -ld_weight * sum_rows log|det|. y, dy, x, dx: n x n_dims, distinct.
 * Only this layer's subnet activations are held, in scratch. Errors: FS_ERR_SHAPE as forward.
 */
fs_err FS_R(fs__coupling_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                   const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                   fs_real *dx, fs_real *dparams)
{
    coupling_plan p;
    fs_real *scratch = c->scratch;
    size_t d = (size_t)l->n_dims;
    if (n == 0) {
        return FS_OK;
    }
    if (check_rows(n) != FS_OK) {
        return FS_ERR_SHAPE;
    }
    coupling_plan_make(l, n, &p);
    const fs_real *par = fs_r_params(c->params, l->n_params, scratch + p.params);
    fs_real *ones = scratch + p.ones;
    for (size_t r = 0; r < n; r++) {
        ones[r] = FS_R_C(1.0);
    }
    subnet_forward(l, &p, par, y, n, scratch);
    int32_t k = p.n_linear - 1;
    coupling_backward_sweep(l, scratch + p.act[k], p.out[k], y, dy, n, (fs_real)ld_weight, x, dx);
    /* Back through the subnet, from dL/d(pre-activation of layer k) in act[k]. */
    for (; k >= 0; k--) {
        fs_real *dpre = scratch + p.act[k];
        size_t in = p.in[k], out = p.out[k];
        const fs_real *in_act = k == 0 ? y : scratch + p.act[k - 1];
        size_t ld_in = k == 0 ? d : in;
        add_column_sums(dpre, n, out, ones, dparams + p.b_off[k]);
        if (in == 0) {
            continue; /* d1 = 0: no weights, no input gradient */
        }
        /* dW_k += dpre^T in_act (both n rows) */
        fs_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, FS_R_C(1.0),
                dpre, (int)out, in_act, (int)ld_in, FS_R_C(1.0), dparams + p.w_off[k], (int)in);
        if (k == 0) {
            /* dx1 += dpre W_0 (dx1 already holds dy1) */
            fs_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out,
                    FS_R_C(1.0), dpre, (int)out, par + p.w_off[0], (int)in, FS_R_C(1.0), dx,
                    (int)d);
            break;
        }
        fs_real *g = scratch + p.g;
        fs_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, FS_R_C(1.0),
                dpre, (int)out, par + p.w_off[k], (int)in, FS_R_C(0.0), g, (int)in);
        /* Through the ReLU: the activation turns into its pre-activation's gradient. */
        fs_real *h = scratch + p.act[k - 1];
        for (size_t r = 0; r < n; r++) {
            relu_grad_row(h + r * in, g + r * in, in);
        }
    }
    return FS_OK;
}
