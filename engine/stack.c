/*
 * stack.c: the per-layer dispatch (fs__layer_*) and the flow stack: forward, inverse,
 * training forward and the reversible backward pass, precision-generic (real.h).
 *
 * Scratch of a stack call on n rows (fs_real elements, each block 64-byte aligned):
 *   [the largest layer scratch][A][B][dA][dB], A..dB n x n_dims each.
 * Forward and inverse ping-pong between A and B; the backward ping-pongs (y, dy) between
 * (A, dA) and (B, dB), so memory does not grow with the number of layers (reversible
 * backprop: Gomez et al. 2017, "The Reversible Residual Network"; Jacobsen et al. 2018,
 * "i-RevNet").
 */
#include "layer.h"
#include "real.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

static size_t block_elems(size_t n, size_t w)
{
    size_t k = fs__mul_size(n, w);
    if (k > SIZE_MAX - 16) {
        return SIZE_MAX;
    }
    return (k + 15) & ~(size_t)15;
}

/* ---- dispatch ---- */

/*
 * fs_real elements of scratch that one fs__layer_forward, _inverse or _backward call on n
 * rows needs (the largest of the three). SIZE_MAX when it does not fit in size_t.
 */
size_t FS_R(fs__layer_scratch)(const fs__layer *l, size_t n)
{
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return FS_R(fs__coupling_scratch)(l, n);
    case FS__LAYER_PERMUTATION:
        return FS_R(fs__permutation_scratch)(l, n);
    case FS__LAYER_HOUSEHOLDER:
        return FS_R(fs__householder_scratch)(l, n);
    case FS__LAYER_ACTNORM:
        return FS_R(fs__actnorm_scratch)(l, n);
    case FS__LAYER_BATCHNORM:
        return FS_R(fs__batchnorm_scratch)(l, n);
    case FS__LAYER_LEAKY_RELU:
        return FS_R(fs__leaky_relu_scratch)(l, n);
    case FS__LAYER__COUNT:
        break;
    }
    return 0;
}

/*
 * y = f(x) for one layer; log_det[i] += log|det df/dx(x_i)| (NULL: not computed).
 * x, y: n x n_dims, distinct; c->scratch: fs__layer_scratch(l, n) elements.
 * Errors: FS_ERR_INVALID (unknown kind; batchnorm training without batch_stats),
 * FS_ERR_SHAPE (n beyond BLAS's int). Threads: reentrant with distinct scratch.
 * Math: see each layer's file (RealNVP, NICE, Glow, Householder flow).
 */
fs_err FS_R(fs__layer_forward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *x,
                               size_t n, fs_real *y, double *log_det)
{
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return FS_R(fs__coupling_forward)(l, c, x, n, y, log_det);
    case FS__LAYER_PERMUTATION:
        return FS_R(fs__permutation_forward)(l, c, x, n, y, log_det);
    case FS__LAYER_HOUSEHOLDER:
        return FS_R(fs__householder_forward)(l, c, x, n, y, log_det);
    case FS__LAYER_ACTNORM:
        return FS_R(fs__actnorm_forward)(l, c, x, n, y, log_det);
    case FS__LAYER_BATCHNORM:
        return FS_R(fs__batchnorm_forward)(l, c, x, n, y, log_det);
    case FS__LAYER_LEAKY_RELU:
        return FS_R(fs__leaky_relu_forward)(l, c, x, n, y, log_det);
    case FS__LAYER__COUNT:
        break;
    }
    return FS_ERR_INVALID;
}

/*
 * x = f^-1(y) for one layer; log_det[i] += log|det df^-1/dy(y_i)|, i.e. minus the forward's
 * log-det at x_i. Same shapes, scratch and errors as fs__layer_forward.
 */
fs_err FS_R(fs__layer_inverse)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                               size_t n, fs_real *x, double *log_det)
{
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return FS_R(fs__coupling_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER_PERMUTATION:
        return FS_R(fs__permutation_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER_HOUSEHOLDER:
        return FS_R(fs__householder_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER_ACTNORM:
        return FS_R(fs__actnorm_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER_BATCHNORM:
        return FS_R(fs__batchnorm_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER_LEAKY_RELU:
        return FS_R(fs__leaky_relu_inverse)(l, c, y, n, x, log_det);
    case FS__LAYER__COUNT:
        break;
    }
    return FS_ERR_INVALID;
}

/*
 * Reversible backward through one layer (Gomez et al. 2017; Jacobsen et al. 2018): from the
 * output y and dL/dy, reconstruct x = f^-1(y), write dL/dx, and add dL/dparams into dparams
 * (this layer's slice, n_params values). The loss is taken to contain -ld_weight *
 * sum_i log|det J(x_i)|. y, dy, x, dx: n x n_dims, pairwise distinct. Errors as forward.
 */
fs_err FS_R(fs__layer_backward)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *y,
                                const fs_real *dy, size_t n, double ld_weight, fs_real *x,
                                fs_real *dx, fs_real *dparams)
{
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return FS_R(fs__coupling_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER_PERMUTATION:
        return FS_R(fs__permutation_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER_HOUSEHOLDER:
        return FS_R(fs__householder_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER_ACTNORM:
        return FS_R(fs__actnorm_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER_BATCHNORM:
        return FS_R(fs__batchnorm_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER_LEAKY_RELU:
        return FS_R(fs__leaky_relu_backward)(l, c, y, dy, n, ld_weight, x, dx, dparams);
    case FS__LAYER__COUNT:
        break;
    }
    return FS_ERR_INVALID;
}

/* ---- the stack ---- */

/* Where the stack's blocks live in scratch. */
typedef struct stack_plan {
    size_t layer;  /* the largest layer scratch, at offset 0 */
    size_t a, b;   /* ping-pong activations */
    size_t da, db; /* ping-pong gradients (backward) */
    size_t total;
} stack_plan;

static void stack_plan_make(const fs__flow *f, size_t n, stack_plan *p)
{
    size_t layer = 0, act = block_elems(n, (size_t)f->n_dims);
    for (size_t i = 0; i < f->n_layers; i++) {
        size_t s = FS_R(fs__layer_scratch)(&f->layers[i], n);
        layer = s > layer ? s : layer;
    }
    layer = block_elems(layer, 1);
    p->layer = 0;
    p->a = layer;
    p->b = p->a + act;
    p->da = p->b + act;
    p->db = p->da + act;
    p->total = p->db + act;
    if (layer == SIZE_MAX || act == SIZE_MAX || act > (SIZE_MAX - layer) / 4) {
        p->total = SIZE_MAX;
    }
}

/*
 * fs_real elements of scratch that fs__flow_forward, _inverse, _forward_train and _backward
 * need on n rows (one size for all four): 4 x n x n_dims plus the largest layer's scratch.
 * SIZE_MAX when it does not fit in size_t. The memory must be aligned for double.
 */
size_t FS_R(fs__flow_scratch)(const fs__flow *f, size_t n)
{
    stack_plan p;
    stack_plan_make(f, n, &p);
    return p.total;
}

static fs__layer_ctx layer_ctx(const fs__flow *f, size_t i, const float *params,
                               const float *buffers, fs_real *scratch, double *batch_stats)
{
    const fs__layer *l = &f->layers[i];
    fs__layer_ctx c;
    c.params = params + l->param_offset;
    c.buffers = buffers != NULL ? buffers + l->buffer_offset : NULL;
    c.scratch = scratch;
    c.training = batch_stats != NULL;
    c.batch_stats = batch_stats != NULL ? batch_stats + i * 2 * (size_t)f->n_dims : NULL;
    return c;
}

typedef fs_err (*layer_step_fn)(const fs__layer *l, const fs__layer_ctx *c, const fs_real *in,
                                size_t n, fs_real *out, double *log_det);

/*
 * Run every layer (in order, or in reverse), ping-ponging through A and B so that no layer
 * reads the array it writes; the last layer writes `out` unless it would read it.
 */
static fs_err stack_run(const fs__flow *f, const float *params, const float *buffers,
                        double *batch_stats, void *scratch, const fs_real *in, size_t n,
                        fs_real *out, double *log_det, int reverse, layer_step_fn step)
{
    stack_plan p;
    fs_real *s = scratch;
    size_t nd = n * (size_t)f->n_dims;
    if (f->n_layers == 0) {
        if (out != in) {
            memmove(out, in, nd * sizeof *out);
        }
        return FS_OK;
    }
    stack_plan_make(f, n, &p);
    if (p.total == SIZE_MAX) {
        return FS_ERR_SHAPE;
    }
    fs_real *buf[2] = { s + p.a, s + p.b };
    const fs_real *src = in;
    for (size_t k = 0; k < f->n_layers; k++) {
        size_t i = reverse ? f->n_layers - 1 - k : k;
        int last = k + 1 == f->n_layers;
        fs_real *dst = (last && src != out) ? out : buf[k % 2];
        fs__layer_ctx c = layer_ctx(f, i, params, buffers, s + p.layer, batch_stats);
        fs_err err = step(&f->layers[i], &c, src, n, dst, log_det);
        if (err != FS_OK) {
            return err;
        }
        src = dst;
    }
    if (src != out) {
        /* one layer, in place: it wrote to A */
        memcpy(out, src, nd * sizeof *out);
    }
    return FS_OK;
}

/*
 * z = f(x) through every layer in order (batchnorm with its running statistics);
 * log_det[i] += the sum of the layers' log|det| at row i (NULL: not computed).
 * x, z: n x n_dims; they may be the same array (not otherwise overlapping). params:
 * f->n_params floats, buffers: f->n_buffers floats (may be NULL when f->n_buffers is 0).
 * scratch: fs__flow_scratch(f, n) elements. Never allocates.
 * Errors: FS_ERR_SHAPE (n too large), FS_ERR_INVALID. Non-finite values are not errors
 * here: they flow through to z, where the caller checks each row.
 * Threads: reentrant; concurrent calls need distinct scratch.
 * Math: change of variables, log p(x) = log N(z) + sum log|det J_k| (RealNVP, eq. 3).
 */
fs_err FS_R(fs__flow_forward)(const fs__flow *f, const float *params, const float *buffers,
                              void *scratch, const fs_real *x, size_t n, fs_real *z,
                              double *log_det)
{
    return stack_run(f, params, buffers, NULL, scratch, x, n, z, log_det, 0,
                     FS_R(fs__layer_forward));
}

/*
 * x = f^-1(z), last layer first (batchnorm with running statistics); log_det[i] += the
 * log|det| of the inverse map (minus the forward's). z and x may be the same array. Shapes,
 * scratch and errors as fs__flow_forward.
 */
fs_err FS_R(fs__flow_inverse)(const fs__flow *f, const float *params, const float *buffers,
                              void *scratch, const fs_real *z, size_t n, fs_real *x,
                              double *log_det)
{
    return stack_run(f, params, buffers, NULL, scratch, z, n, x, log_det, 1,
                     FS_R(fs__layer_inverse));
}

/*
 * The training forward: as fs__flow_forward, but batchnorm layers normalise with the batch's
 * mean and population variance and write them to batch_stats (n_layers x 2 x n_dims doubles,
 * indexed by layer position; entries of other layers are untouched). ActNorm layers are used
 * as they are (initialise them first with fs__actnorm_init). Errors as fs__flow_forward.
 */
fs_err FS_R(fs__flow_forward_train)(const fs__flow *f, const float *params, const float *buffers,
                                    double *batch_stats, void *scratch, const fs_real *x, size_t n,
                                    fs_real *z, double *log_det)
{
    if (batch_stats == NULL) {
        return FS_ERR_INVALID;
    }
    return stack_run(f, params, buffers, batch_stats, scratch, x, n, z, log_det, 0,
                     FS_R(fs__layer_forward));
}

/*
 * Reversible backward through the stack, last layer first (Gomez et al. 2017; Jacobsen et
 * al. 2018): from z and dL/dz, each layer reconstructs its input by inversion, so only one
 * layer's activations are held at a time. Adds dL/dparams into dparams (f->n_params), and
 * writes the reconstructed input x and dL/dx (n x n_dims each). The loss is taken to contain
 * -ld_weight * sum_rows log|det| of every layer. batch_stats: as written by
 * fs__flow_forward_train (training), or NULL (inference statistics). z, dz, x, dx: pairwise
 * distinct. scratch: fs__flow_scratch(f, n). Errors as fs__flow_forward.
 * Note: x drifts from the true input as float32 round-off is amplified through the inverses;
 * callers monitor max |x - input| (fs_train_progress.recon_error).
 */
fs_err FS_R(fs__flow_backward)(const fs__flow *f, const float *params, const float *buffers,
                               const double *batch_stats, void *scratch, const fs_real *z,
                               const fs_real *dz, size_t n, double ld_weight, fs_real *x,
                               fs_real *dx, fs_real *dparams)
{
    stack_plan p;
    fs_real *s = scratch;
    size_t nd = n * (size_t)f->n_dims;
    assert(x != z && dx != dz && x != dx);
    if (f->n_layers == 0) {
        memcpy(x, z, nd * sizeof *x);
        memcpy(dx, dz, nd * sizeof *dx);
        return FS_OK;
    }
    stack_plan_make(f, n, &p);
    if (p.total == SIZE_MAX) {
        return FS_ERR_SHAPE;
    }
    fs_real *ys[2] = { s + p.a, s + p.b }, *dys[2] = { s + p.da, s + p.db };
    const fs_real *y = z, *dy = dz;
    for (size_t k = 0; k < f->n_layers; k++) {
        size_t i = f->n_layers - 1 - k;
        const fs__layer *l = &f->layers[i];
        fs_real *xo = i == 0 ? x : ys[k % 2], *dxo = i == 0 ? dx : dys[k % 2];
        /* The layers only read batch_stats in the backward; the context has one pointer type
         * for both directions, so the const is dropped through uintptr_t (-Wcast-qual). */
        fs__layer_ctx c =
            layer_ctx(f, i, params, buffers, s + p.layer, (double *)(uintptr_t)batch_stats);
        fs_err err = FS_R(fs__layer_backward)(l, &c, y, dy, n, ld_weight, xo, dxo,
                                              dparams + l->param_offset);
        if (err != FS_OK) {
            return err;
        }
        y = xo;
        dy = dxo;
    }
    return FS_OK;
}
