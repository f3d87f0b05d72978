/*
 * layer.c: resolving a list of layer configurations into a flow (dimensions, permutations,
 * the parameter and buffer layout), initial parameters, and tensor descriptions. Independent
 * of the scalar type; the kernels are in layer_*.c and stack.c.
 */
#include "layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const fs_layer_kind_names[FS__LAYER__COUNT] = {
    "affine_coupling", "additive_coupling", "permutation", "householder",
    "actnorm",         "batchnorm",         "leaky_relu",
};

/*
 * The spec name of a layer kind ("affine_coupling", ...), or "unknown". Static storage.
 */
const char *fs__layer_kind_name(fs__layer_kind kind)
{
    if ((unsigned)kind >= FS__LAYER__COUNT) {
        return "unknown";
    }
    return fs_layer_kind_names[kind];
}

/* Width of the subnet output: s_raw and t (affine) or t alone (additive). */
static size_t coupling_out_width(const fs__layer *l)
{
    size_t d2 = (size_t)l->d2;
    return l->kind == FS__LAYER_AFFINE_COUPLING ? 2 * d2 : d2;
}

/* Input and output width of linear layer i (0..n_hidden) of a coupling subnet. */
static void coupling_linear_shape(const fs__layer *l, int32_t i, size_t *in, size_t *out)
{
    *in = i == 0 ? (size_t)l->d1 : (size_t)l->hidden[i - 1];
    *out = i < l->n_hidden ? (size_t)l->hidden[i] : coupling_out_width(l);
}

/* A double that must lie in (lo, hi] (or (lo, inf) when hi is HUGE_VAL) and be finite as a
 * float. */
static int float_in_range(double v, double lo, double hi)
{
    if (!(v > lo) || !(v <= hi) || !isfinite(v)) {
        return 0;
    }
    float f = (float)v;
    return isfinite(f) && (double)f > lo;
}

static fs_err resolve_coupling(fs__layer *l, const fs__layer_cfg *c, size_t index, fs_diag *diag)
{
    const char *kind = fs__layer_kind_name(c->kind);
    int32_t d = l->n_dims;
    if (c->n_hidden < 0 || c->n_hidden > FS__MAX_HIDDEN) {
        return fs__diag(diag, FS_ERR_INVALID, "layer %zu (%s): %d hidden layers, expected 0..%d",
                        index, kind, (int)c->n_hidden, FS__MAX_HIDDEN);
    }
    for (int32_t i = 0; i < c->n_hidden; i++) {
        if (c->hidden[i] < 1 || c->hidden[i] > FS__MAX_WIDTH) {
            return fs__diag(diag, FS_ERR_INVALID,
                            "layer %zu (%s): hidden width %d out of range 1..%d", index, kind,
                            (int)c->hidden[i], FS__MAX_WIDTH);
        }
        l->hidden[i] = c->hidden[i];
    }
    l->n_hidden = c->n_hidden;
    if (c->split == 0) {
        l->d1 = d / 2;
    } else if (c->split >= 1 && c->split < d) {
        l->d1 = c->split;
    } else {
        return fs__diag(diag, FS_ERR_INVALID,
                        "layer %zu (%s): split %d out of range 1..%d for %d dimensions", index,
                        kind, (int)c->split, (int)d - 1, (int)d);
    }
    l->d2 = d - l->d1;
    if (c->kind == FS__LAYER_AFFINE_COUPLING) {
        if (!float_in_range(c->clamp, 0.0, HUGE_VAL)) {
            return fs__diag(diag, FS_ERR_INVALID,
                            "layer %zu (%s): clamp %g must be a finite number > 0", index, kind,
                            c->clamp);
        }
        l->clamp = (float)c->clamp;
    }
    size_t n_params = 0;
    for (int32_t i = 0; i <= l->n_hidden; i++) {
        size_t in, out;
        coupling_linear_shape(l, i, &in, &out);
        n_params += out * in + out;
    }
    l->n_params = n_params;
    return FS_OK;
}

static fs_err resolve_permutation(fs__layer *l, const fs__layer_cfg *c, size_t index, uint64_t seed,
                                  fs_diag *diag)
{
    int32_t d = l->n_dims;
    fs__rng rng;
    if (c->perm_source == FS__PERM_EXPLICIT) {
        if (c->perm == NULL || c->n_perm != d) {
            return fs__diag(diag, FS_ERR_INVALID,
                            "layer %zu (permutation): explicit permutation of %d entries for %d "
                            "dimensions",
                            index, c->perm == NULL ? 0 : (int)c->n_perm, (int)d);
        }
    } else if (c->perm_source != FS__PERM_SEED && c->perm_source != FS__PERM_NUMPY &&
               c->perm_source != FS__PERM_REVERSE) {
        return fs__diag(diag, FS_ERR_INVALID, "layer %zu (permutation): unknown source %d", index,
                        (int)c->perm_source);
    }
    l->perm = fs__calloc((size_t)d, sizeof *l->perm);
    l->inv_perm = fs__calloc((size_t)d, sizeof *l->inv_perm);
    if (l->perm == NULL || l->inv_perm == NULL) {
        return fs__diag(diag, FS_ERR_NOMEM, "layer %zu (permutation): out of memory", index);
    }
    switch (c->perm_source) {
    case FS__PERM_SEED:
        fs__rng_seed2(&rng, seed + c->perm_seed * 0x9E3779B97F4A7C15ull, (uint64_t)index);
        fs__permutation_numpy(&rng, l->perm, d);
        break;
    case FS__PERM_NUMPY:
        fs__rng_seed_numpy(&rng, c->perm_seed);
        fs__permutation_numpy(&rng, l->perm, d);
        break;
    case FS__PERM_REVERSE:
        for (int32_t j = 0; j < d; j++) {
            l->perm[j] = d - 1 - j;
        }
        break;
    case FS__PERM_EXPLICIT:
        memcpy(l->perm, c->perm, (size_t)d * sizeof *l->perm);
        break;
    }
    /* inv_perm doubles as the "seen" marks: -1 until an entry claims it. */
    for (int32_t j = 0; j < d; j++) {
        l->inv_perm[j] = -1;
    }
    for (int32_t j = 0; j < d; j++) {
        int32_t p = l->perm[j];
        if (p < 0 || p >= d || l->inv_perm[p] != -1) {
            return fs__diag(diag, FS_ERR_INVALID,
                            "layer %zu (permutation): entry %d (%d) is out of range 0..%d or "
                            "repeated",
                            index, (int)j, (int)p, (int)d - 1);
        }
        l->inv_perm[p] = j;
    }
    return FS_OK;
}

static fs_err resolve_layer(fs__layer *l, const fs__layer_cfg *c, size_t index, int32_t n_dims,
                            uint64_t seed, fs_diag *diag)
{
    const char *kind = fs__layer_kind_name(c->kind);
    memset(l, 0, sizeof *l);
    l->kind = c->kind;
    l->n_dims = n_dims;
    switch (c->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return resolve_coupling(l, c, index, diag);
    case FS__LAYER_PERMUTATION:
        return resolve_permutation(l, c, index, seed, diag);
    case FS__LAYER_HOUSEHOLDER:
        if (c->n_reflections < 1 || c->n_reflections > FS__MAX_REFLECTIONS) {
            return fs__diag(diag, FS_ERR_INVALID, "layer %zu (%s): %d reflections, expected 1..%d",
                            index, kind, (int)c->n_reflections, FS__MAX_REFLECTIONS);
        }
        l->n_reflections = c->n_reflections;
        l->n_params = (size_t)c->n_reflections * (size_t)n_dims;
        return FS_OK;
    case FS__LAYER_ACTNORM:
        l->n_params = 2 * (size_t)n_dims;
        return FS_OK;
    case FS__LAYER_BATCHNORM:
        if (!float_in_range(c->momentum, 0.0, 1.0)) {
            return fs__diag(diag, FS_ERR_INVALID, "layer %zu (%s): momentum %g outside (0, 1]",
                            index, kind, c->momentum);
        }
        if (!float_in_range(c->eps, 0.0, HUGE_VAL)) {
            return fs__diag(diag, FS_ERR_INVALID,
                            "layer %zu (%s): eps %g must be a finite number > 0", index, kind,
                            c->eps);
        }
        l->momentum = (float)c->momentum;
        l->eps = (float)c->eps;
        l->n_params = 2 * (size_t)n_dims;
        l->n_buffers = 2 * (size_t)n_dims;
        return FS_OK;
    case FS__LAYER_LEAKY_RELU:
        if (!float_in_range(c->alpha, 0.0, 1.0)) {
            return fs__diag(diag, FS_ERR_INVALID, "layer %zu (%s): alpha %g outside (0, 1]", index,
                            kind, c->alpha);
        }
        l->alpha = (float)c->alpha;
        return FS_OK;
    case FS__LAYER__COUNT:
        break;
    }
    return fs__diag(diag, FS_ERR_INVALID, "layer %zu: unknown layer kind %d", index, (int)c->kind);
}

/*
 * Resolve cfgs (n layers, 0..FS__MAX_LAYERS; n = 0 is the identity) for n_dims columns
 * (1..FS__MAX_DIMS) into f. seed feeds the FS__PERM_SEED permutations, mixed with the layer
 * index and the layer's perm_seed. The parameter slices follow the layer order; within a
 * layer the tensors follow fs__layer_tensors.
 * Errors: FS_ERR_INVALID with a sentence in diag naming the layer (a width, split, clamp,
 * eps, momentum, alpha, reflection count or permutation out of range), FS_ERR_NOMEM. On error
 * f is left empty (n_layers 0, layers NULL), so fs__flow_deinit is safe either way.
 * Math: split and widths as RealNVP (Dinh et al. 2017, sec. 3.3) and NICE (Dinh et al. 2015).
 */
fs_err fs__flow_init(fs__flow *f, const fs__layer_cfg *cfgs, size_t n, int32_t n_dims,
                     uint64_t seed, fs_diag *diag)
{
    fs_err err = FS_OK;
    memset(f, 0, sizeof *f);
    if (n_dims < 1 || n_dims > FS__MAX_DIMS) {
        return fs__diag(diag, FS_ERR_INVALID, "flow of %d dimensions, expected 1..%d", (int)n_dims,
                        FS__MAX_DIMS);
    }
    if (n > FS__MAX_LAYERS) {
        return fs__diag(diag, FS_ERR_INVALID, "flow of %zu layers, at most %d", n, FS__MAX_LAYERS);
    }
    if (n > 0 && cfgs == NULL) {
        return fs__diag(diag, FS_ERR_INVALID, "flow of %zu layers without their configuration", n);
    }
    f->n_dims = n_dims;
    if (n > 0) {
        f->layers = fs__calloc(n, sizeof *f->layers);
        if (f->layers == NULL) {
            err = fs__diag(diag, FS_ERR_NOMEM, "flow of %zu layers: out of memory", n);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        fs__layer *l = &f->layers[i];
        f->n_layers = i + 1; /* so that deinit frees this layer's permutation on error */
        err = resolve_layer(l, &cfgs[i], i, n_dims, seed, diag);
        if (err != FS_OK) {
            goto out;
        }
        l->param_offset = f->n_params;
        l->buffer_offset = f->n_buffers;
        f->n_params += l->n_params;
        f->n_buffers += l->n_buffers;
    }
out:
    if (err != FS_OK) {
        fs__flow_deinit(f);
    }
    return err;
}

/* Free what fs__flow_init or fs__flow_copy allocated and leave f empty. NULL is fine. */
void fs__flow_deinit(fs__flow *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n_layers && f->layers != NULL; i++) {
        fs__free(f->layers[i].perm);
        fs__free(f->layers[i].inv_perm);
    }
    fs__free(f->layers);
    memset(f, 0, sizeof *f);
}

/*
 * A deep copy of src into dst (uninitialised storage; overwritten).
 * Errors: FS_ERR_NOMEM, after which dst is empty.
 */
fs_err fs__flow_copy(const fs__flow *src, fs__flow *dst)
{
    fs_err err = FS_OK;
    size_t d = (size_t)src->n_dims;
    memset(dst, 0, sizeof *dst);
    if (src->n_layers > 0) {
        dst->layers = fs__calloc(src->n_layers, sizeof *dst->layers);
        if (dst->layers == NULL) {
            err = FS_ERR_NOMEM;
            goto out;
        }
    }
    dst->n_dims = src->n_dims;
    dst->n_params = src->n_params;
    dst->n_buffers = src->n_buffers;
    for (size_t i = 0; i < src->n_layers; i++) {
        const fs__layer *s = &src->layers[i];
        fs__layer *l = &dst->layers[i];
        *l = *s;
        l->perm = NULL;
        l->inv_perm = NULL;
        dst->n_layers = i + 1;
        if (s->perm != NULL) {
            l->perm = fs__malloc(d * sizeof *l->perm);
            l->inv_perm = fs__malloc(d * sizeof *l->inv_perm);
            if (l->perm == NULL || l->inv_perm == NULL) {
                err = FS_ERR_NOMEM;
                goto out;
            }
            memcpy(l->perm, s->perm, d * sizeof *l->perm);
            memcpy(l->inv_perm, s->inv_perm, d * sizeof *l->inv_perm);
        }
    }
out:
    if (err != FS_OK) {
        fs__flow_deinit(dst);
    }
    return err;
}

/* U(-bound, bound) as a float. */
static float uniform_sym(fs__rng *r, double bound)
{
    return (float)((2.0 * fs__rng_uniform(r) - 1.0) * bound);
}

/*
 * Initial parameters into params (f->n_params floats) and buffers (f->n_buffers floats).
 * Layer i draws from its own stream fs__rng_seed2(seed, i), so adding a layer does not change
 * the others. Coupling hidden layers: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch
 * nn.Linear; 0 when fan_in is 0); the last subnet layer is zero, so every coupling starts as
 * the identity (RealNVP zero init, bench/SPEC.md sec. 2). Householder vectors ~ N(0, 1);
 * ActNorm log_scale 0, bias 0; batchnorm log_gamma 0, beta 0, running mean 0, running var 1.
 */
void fs__flow_init_params(const fs__flow *f, uint64_t seed, float *params, float *buffers)
{
    for (size_t li = 0; li < f->n_layers; li++) {
        const fs__layer *l = &f->layers[li];
        float *p = params + l->param_offset;
        fs__rng rng;
        fs__rng_seed2(&rng, seed, (uint64_t)li);
        switch (l->kind) {
        case FS__LAYER_AFFINE_COUPLING:
        case FS__LAYER_ADDITIVE_COUPLING:
            for (int32_t i = 0; i <= l->n_hidden; i++) {
                size_t in, out;
                coupling_linear_shape(l, i, &in, &out);
                double bound = (i < l->n_hidden && in > 0) ? 1.0 / sqrt((double)in) : 0.0;
                for (size_t k = 0; k < out * in + out; k++) {
                    p[k] = uniform_sym(&rng, bound);
                }
                p += out * in + out;
            }
            break;
        case FS__LAYER_HOUSEHOLDER:
            for (size_t k = 0; k < l->n_params; k++) {
                p[k] = (float)fs__rng_normal(&rng);
            }
            break;
        case FS__LAYER_ACTNORM:
            memset(p, 0, l->n_params * sizeof *p);
            break;
        case FS__LAYER_BATCHNORM: {
            size_t d = (size_t)l->n_dims;
            float *b = buffers + l->buffer_offset;
            memset(p, 0, l->n_params * sizeof *p);
            for (size_t j = 0; j < d; j++) {
                b[j] = 0.0f;
                b[d + j] = 1.0f;
            }
            break;
        }
        case FS__LAYER_PERMUTATION:
        case FS__LAYER_LEAKY_RELU:
        case FS__LAYER__COUNT:
            break;
        }
    }
}

/* Number of tensors of l: what fs__layer_tensors writes. */
size_t fs__layer_n_tensors(const fs__layer *l)
{
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        return 2 * ((size_t)l->n_hidden + 1);
    case FS__LAYER_HOUSEHOLDER:
        return 1;
    case FS__LAYER_ACTNORM:
        return 2;
    case FS__LAYER_BATCHNORM:
        return 4;
    case FS__LAYER_PERMUTATION:
    case FS__LAYER_LEAKY_RELU:
    case FS__LAYER__COUNT:
        break;
    }
    return 0;
}

static void set_desc(fs__tensor_desc *d, const char *name, size_t rows, size_t cols, size_t offset,
                     int is_buffer)
{
    memset(d->name, 0, sizeof d->name);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->rows = (int32_t)rows;
    d->cols = (int32_t)cols;
    d->offset = offset;
    d->is_buffer = is_buffer;
}

/*
 * The tensors of l in storage order, offsets relative to the layer's parameter slice (or,
 * for is_buffer, its buffer slice). desc: fs__layer_n_tensors(l) entries, caller-allocated.
 * Couplings: W0, b0, ..., W{n_hidden}, b{n_hidden}; W{i} is [out x in] as torch.nn.Linear,
 * W0 is [hidden0 x d1] (0 columns when d1 = 0), the last is [2*d2 x width] (affine: s_raw
 * rows first, then t) or [d2 x width] (additive). Householder: V [n_reflections x n_dims].
 * ActNorm: log_scale, bias [n_dims]. Batchnorm: log_gamma, beta [n_dims]; buffers
 * running_mean, running_var [n_dims].
 */
void fs__layer_tensors(const fs__layer *l, fs__tensor_desc *desc)
{
    size_t d = (size_t)l->n_dims;
    switch (l->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING: {
        size_t off = 0;
        for (int32_t i = 0; i <= l->n_hidden; i++) {
            char name[16];
            size_t in, out;
            coupling_linear_shape(l, i, &in, &out);
            snprintf(name, sizeof name, "W%d", (int)i);
            set_desc(&desc[2 * (size_t)i], name, out, in, off, 0);
            off += out * in;
            snprintf(name, sizeof name, "b%d", (int)i);
            set_desc(&desc[2 * (size_t)i + 1], name, out, 1, off, 0);
            off += out;
        }
        break;
    }
    case FS__LAYER_HOUSEHOLDER:
        set_desc(&desc[0], "V", (size_t)l->n_reflections, d, 0, 0);
        break;
    case FS__LAYER_ACTNORM:
        set_desc(&desc[0], "log_scale", d, 1, 0, 0);
        set_desc(&desc[1], "bias", d, 1, d, 0);
        break;
    case FS__LAYER_BATCHNORM:
        set_desc(&desc[0], "log_gamma", d, 1, 0, 0);
        set_desc(&desc[1], "beta", d, 1, d, 0);
        set_desc(&desc[2], "running_mean", d, 1, 0, 1);
        set_desc(&desc[3], "running_var", d, 1, d, 1);
        break;
    case FS__LAYER_PERMUTATION:
    case FS__LAYER_LEAKY_RELU:
    case FS__LAYER__COUNT:
        break;
    }
}
