/*
 * layer.h: invertible layers and the flow stack (internal).
 *
 * A flow is a list of layers over n_dims columns. All trainable parameters of a flow live in
 * one float32 array (so that optimisers, clipping and the model file treat them as one
 * vector); non-trained state (batch-norm running statistics) lives in a second float32
 * array, the "buffers". Each layer owns the slice [param_offset, param_offset + n_params) of
 * the first and [buffer_offset, buffer_offset + n_buffers) of the second.
 *
 * Data is row-major: x and y are n x n_dims. log_det is n doubles and is *added to* (NULL:
 * not computed).
 *
 * Kernels are precision-generic (real.h): every function declared with FS__KERNEL exists as
 * name_f32 (float) and name_f64 (double). Parameters and gradients in the float64 build are
 * still float32 in memory for params (widened in scratch) but double for gradients.
 */
#ifndef FS_LAYER_H
#define FS_LAYER_H

#include "internal.h"

#define FS__MAX_HIDDEN 4 /* hidden layers of a coupling subnet */
#define FS__MAX_WIDTH 4096
#define FS__MAX_DIMS 4096
#define FS__MAX_LAYERS 1024
#define FS__MAX_REFLECTIONS 256

typedef enum fs__layer_kind {
    FS__LAYER_AFFINE_COUPLING = 0, /* RealNVP (Dinh et al. 2017, eq. 6-7) */
    FS__LAYER_ADDITIVE_COUPLING,   /* NICE (Dinh et al. 2015, eq. 5) */
    FS__LAYER_PERMUTATION,         /* fixed gather y[j] = x[perm[j]] */
    FS__LAYER_HOUSEHOLDER,         /* y = H_m ... H_1 x, H_i = I - 2 v v^T / |v|^2 */
    FS__LAYER_ACTNORM,             /* Glow (Kingma & Dhariwal 2018, sec. 3.1) */
    FS__LAYER_BATCHNORM,           /* invertible batch norm (Dinh et al. 2017, sec. 3.7) */
    FS__LAYER_LEAKY_RELU,          /* y = x (x >= 0), alpha x (x < 0) */
    FS__LAYER__COUNT
} fs__layer_kind;

typedef enum fs__perm_source {
    FS__PERM_SEED = 0, /* PCG64 stream fs__rng_seed2(seed + perm_seed * 0x9E3779B97F4A7C15,
                          layer index) with the flow's seed, then fs__permutation_numpy */
    FS__PERM_NUMPY,    /* numpy.random.default_rng(seed).permutation(D) */
    FS__PERM_REVERSE,  /* y[j] = x[D-1-j] */
    FS__PERM_EXPLICIT  /* the list given */
} fs__perm_source;

/* A layer as written in a spec: independent of the number of dimensions. */
typedef struct fs__layer_cfg {
    fs__layer_kind kind;
    /* couplings */
    int32_t n_hidden;               /* hidden layers in the subnet (0..FS__MAX_HIDDEN) */
    int32_t hidden[FS__MAX_HIDDEN]; /* their widths */
    double clamp;                   /* affine: s = clamp * tanh(s_raw / clamp) */
    int32_t split;                  /* conditioner width d1; 0 means floor(D/2) */
    /* permutation */
    fs__perm_source perm_source;
    uint64_t perm_seed;
    int32_t *perm; /* FS__PERM_EXPLICIT: owned, n_perm entries */
    int32_t n_perm;
    /* householder */
    int32_t n_reflections;
    /* batchnorm */
    double momentum, eps;
    /* leaky relu */
    double alpha;
} fs__layer_cfg;

/* A layer resolved for n_dims columns, with its slices of the parameter arrays. */
typedef struct fs__layer {
    fs__layer_kind kind;
    int32_t n_dims;
    /* couplings: the first d1 columns condition the remaining d2 = n_dims - d1 */
    int32_t d1, d2;
    int32_t n_hidden;
    int32_t hidden[FS__MAX_HIDDEN];
    float clamp;
    /* permutation: y[j] = x[perm[j]], x[perm[j]] = y[j]; both owned, n_dims entries */
    int32_t *perm, *inv_perm;
    /* householder */
    int32_t n_reflections;
    /* batchnorm */
    float momentum, eps;
    /* leaky relu */
    float alpha;
    /* slices of the flow's float arrays */
    size_t param_offset, n_params;
    size_t buffer_offset, n_buffers;
} fs__layer;

typedef struct fs__flow {
    int32_t n_dims;
    size_t n_layers;
    fs__layer *layers; /* owned */
    size_t n_params;   /* total trainable floats */
    size_t n_buffers;  /* total non-trained floats */
} fs__flow;

/*
 * One parameter tensor of a layer, for the model file and the importer. Offsets are relative
 * to the layer's slice; rows x cols (cols 1 for vectors).
 */
typedef struct fs__tensor_desc {
    char name[16]; /* "W0", "b0", "log_scale", "running_mean", ... */
    int32_t rows, cols;
    size_t offset;
    int is_buffer;
} fs__tensor_desc;

/* ---- layer.c (precision-independent) ---- */

/*
 * Resolve cfgs (n layers) for n_dims columns into f: dimensions, permutations, and the
 * parameter layout. seed feeds FS__PERM_SEED permutations (mixed with the layer index).
 * Errors: FS_ERR_INVALID (e.g. an explicit permutation of the wrong length, split out of
 * range, width 0), FS_ERR_NOMEM. On error f is left empty (fs__flow_deinit is safe).
 */
fs_err fs__flow_init(fs__flow *f, const fs__layer_cfg *cfgs, size_t n, int32_t n_dims,
                     uint64_t seed, fs_diag *diag);
void fs__flow_deinit(fs__flow *f);
fs_err fs__flow_copy(const fs__flow *src, fs__flow *dst);

/*
 * Initial parameters: coupling hidden layers W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * (PyTorch nn.Linear default), last subnet layer zero (each block starts as the identity);
 * Householder vectors ~ N(0, 1); ActNorm log_scale 0, bias 0; batchnorm log_gamma 0, beta 0,
 * running mean 0, running var 1. params: f->n_params, buffers: f->n_buffers.
 */
void fs__flow_init_params(const fs__flow *f, uint64_t seed, float *params, float *buffers);

/* Number of tensors of layer l, and their descriptions (desc: at least that many). */
size_t fs__layer_n_tensors(const fs__layer *l);
void fs__layer_tensors(const fs__layer *l, fs__tensor_desc *desc);
const char *fs__layer_kind_name(fs__layer_kind kind); /* "affine_coupling", ... */

/* ---- kernels (layer_*.c, stack.c), compiled for float and double ---- */

typedef struct fs__layer_ctx {
    const float *params;  /* this layer's parameters (already offset) */
    const float *buffers; /* this layer's buffers (already offset) */
    void *scratch;        /* fs__layer_scratch(l, n) fs_real elements */
    int training;         /* batchnorm: batch statistics instead of running ones */
    double *batch_stats;  /* batchnorm, training: 2 * n_dims doubles (mean, var), written by
                             forward, read by inverse and backward; NULL otherwise */
} fs__layer_ctx;

#define FS__KERNEL_DECLS(T, SFX)                                                                 \
    /* fs_real elements of scratch one call on n rows needs (forward, inverse or backward). */   \
    size_t fs__layer_scratch##SFX(const fs__layer *l, size_t n);                               \
    /* y = f(x); log_det[i] += log|det df/dx| at row i. x, y: n x n_dims, distinct. */          \
    fs_err fs__layer_forward##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *x,       \
                                  size_t n, T *y, double *log_det);                             \
    /* x = f^-1(y); log_det[i] += log|det df^-1/dy| (= minus the forward log-det at x). */      \
    fs_err fs__layer_inverse##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *y,       \
                                  size_t n, T *x, double *log_det);                             \
    /*                                                                                         \
     * Reversible backprop through one layer (Gomez et al. 2017; Jacobsen et al. 2018):        \
     * given the output y and dL/dy, reconstruct the input x = f^-1(y), and compute dL/dx      \
     * and dL/dparams (added into dparams, this layer's slice, n_params values). The loss      \
     * is taken to contain -ld_weight * sum_i log|det J(x_i)|, whose gradient is included.    \
     * y, dy, x, dx: n x n_dims, pairwise distinct.                                           \
     */                                                                                        \
    fs_err fs__layer_backward##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *y,      \
                                   const T *dy, size_t n, double ld_weight, T *x, T *dx,       \
                                   T *dparams);                                                \
    /* ActNorm data-dependent init from x (n x n_dims): output mean 0, std 1 per column. A     \
     * column with std below 1e-6 (constant, or n = 1) gets scale 1, so nothing divides by 0.  \
     * params: this layer's slice (log_scale, bias), as ctx->params.                          \
     */                                                                                        \
    void fs__actnorm_init##SFX(const fs__layer *l, float *params, const T *x, size_t n);       \
    /* Stack: scratch for n rows, forward, inverse. x and z may be the same array. */         \
    size_t fs__flow_scratch##SFX(const fs__flow *f, size_t n);                                 \
    fs_err fs__flow_forward##SFX(const fs__flow *f, const float *params, const float *buffers, \
                                 void *scratch, const T *x, size_t n, T *z, double *log_det);  \
    fs_err fs__flow_inverse##SFX(const fs__flow *f, const float *params, const float *buffers, \
                                 void *scratch, const T *z, size_t n, T *x, double *log_det);  \
    /* Training forward: batchnorm layers use batch statistics, written to batch_stats       \
     * (2 * n_dims doubles per layer, indexed by layer position; n_layers * 2 * n_dims).     \
     * ActNorm layers are used as they are (initialise them first). */                        \
    fs_err fs__flow_forward_train##SFX(const fs__flow *f, const float *params,                  \
                                       const float *buffers, double *batch_stats,              \
                                       void *scratch, const T *x, size_t n, T *z,              \
                                       double *log_det);                                       \
    /* Reversible backward through the whole stack, last layer first: from z and dL/dz,     \
     * reconstruct every layer's input by inversion (only one layer's activations are held \
     * at a time), add dL/dparams into dparams (f->n_params values) and write the           \
     * reconstructed input x (n x n_dims) and dL/dx. The loss holds -ld_weight * sum log|det| \
     * of every layer. batch_stats as written by fs__flow_forward_train (NULL: inference).   \
     * z, dz, x, dx: pairwise distinct. */                                                    \
    fs_err fs__flow_backward##SFX(const fs__flow *f, const float *params, const float *buffers, \
                                  const double *batch_stats, void *scratch, const T *z,        \
                                  const T *dz, size_t n, double ld_weight, T *x, T *dx,        \
                                  T *dparams);

FS__KERNEL_DECLS(float, _f32)
FS__KERNEL_DECLS(double, _f64)

/*
 * The per-kind kernels behind the fs__layer_* dispatch of stack.c, with the same contracts:
 * coupling (affine and additive, layer_coupling.c), permutation and leaky_relu
 * (layer_simple.c), householder (layer_householder.c), actnorm and batchnorm (layer_norm.c).
 */
#define FS__KIND_DECLS(T, SFX, KIND)                                                             \
    size_t fs__##KIND##_scratch##SFX(const fs__layer *l, size_t n);                            \
    fs_err fs__##KIND##_forward##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *x,    \
                                     size_t n, T *y, double *log_det);                          \
    fs_err fs__##KIND##_inverse##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *y,    \
                                     size_t n, T *x, double *log_det);                          \
    fs_err fs__##KIND##_backward##SFX(const fs__layer *l, const fs__layer_ctx *c, const T *y,   \
                                      const T *dy, size_t n, double ld_weight, T *x, T *dx,    \
                                      T *dparams);
#define FS__ALL_KIND_DECLS(T, SFX)                                                               \
    FS__KIND_DECLS(T, SFX, coupling)                                                             \
    FS__KIND_DECLS(T, SFX, permutation)                                                          \
    FS__KIND_DECLS(T, SFX, leaky_relu)                                                           \
    FS__KIND_DECLS(T, SFX, householder)                                                          \
    FS__KIND_DECLS(T, SFX, actnorm)                                                              \
    FS__KIND_DECLS(T, SFX, batchnorm)

FS__ALL_KIND_DECLS(float, _f32)
FS__ALL_KIND_DECLS(double, _f64)

#endif /* FS_LAYER_H */
