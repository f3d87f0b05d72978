/* labels: unit numeric */
/*
 * test_layers.c: the numeric proof of every invertible layer, each called alone through
 * fs__layer_forward / _inverse / _backward (float32 and float64):
 * - inverse(forward(x)) = x (float32 < 1e-4, float64 < 1e-10) and finite far outside;
 * - the forward log-det and the inverse log-det against log|det| of brute-force Jacobians of
 *   each direction (central differences in float64, LU), float64 and float32 log-dets;
 * - parameter and input gradients of the reversible backward against finite differences of
 *   the loss mean(0.5 |z|^2 - log|det|), and its reconstruction of x;
 * and the layer-specific behaviours (identity at init, ActNorm init, zero Householder vector,
 * batch-norm statistics, tensor layout, numpy permutations).
 */
#include "test_layers_harness.h"

/* One layer under test. */
typedef struct layer_case {
    fs__layer_cfg cfg;
    int32_t n_dims;
    int training; /* batchnorm: batch statistics */
} layer_case;

static layer_case affine_d6 = {
    { .kind = FS__LAYER_AFFINE_COUPLING, .n_hidden = 2, .hidden = { 16, 12 }, .clamp = 2.0 }, 6, 0
};
static layer_case affine_d5_split2 = {
    { .kind = FS__LAYER_AFFINE_COUPLING, .n_hidden = 1, .hidden = { 8 }, .clamp = 1.5, .split = 2 },
    5,
    0
};
static layer_case affine_d1 = {
    { .kind = FS__LAYER_AFFINE_COUPLING, .n_hidden = 2, .hidden = { 8, 8 }, .clamp = 2.0 }, 1, 0
};
static layer_case affine_d4_linear = {
    { .kind = FS__LAYER_AFFINE_COUPLING, .n_hidden = 0, .clamp = 3.0 }, 4, 0
};
static layer_case affine_d7_deep = { { .kind = FS__LAYER_AFFINE_COUPLING,
                                       .n_hidden = 4,
                                       .hidden = { 9, 7, 5, 11 },
                                       .clamp = 2.0,
                                       .split = 4 },
                                     7,
                                     0 };
/* d2 >= 8: the 8-wide blocks of the coupling sweeps, plus their tails */
static layer_case affine_d21 = {
    { .kind = FS__LAYER_AFFINE_COUPLING, .n_hidden = 2, .hidden = { 16, 9 }, .clamp = 2.0 }, 21, 0
};
static layer_case additive_d18_split5 = {
    { .kind = FS__LAYER_ADDITIVE_COUPLING, .n_hidden = 1, .hidden = { 20 }, .split = 5 }, 18, 0
};
static layer_case additive_d6 = {
    { .kind = FS__LAYER_ADDITIVE_COUPLING, .n_hidden = 1, .hidden = { 16 } }, 6, 0
};
static layer_case additive_d1 = {
    { .kind = FS__LAYER_ADDITIVE_COUPLING, .n_hidden = 1, .hidden = { 4 } }, 1, 0
};
static layer_case perm_seed_d7 = {
    { .kind = FS__LAYER_PERMUTATION, .perm_source = FS__PERM_SEED, .perm_seed = 3 }, 7, 0
};
static layer_case perm_numpy_d8 = {
    { .kind = FS__LAYER_PERMUTATION, .perm_source = FS__PERM_NUMPY, .perm_seed = 1001 }, 8, 0
};
static layer_case perm_reverse_d5 = {
    { .kind = FS__LAYER_PERMUTATION, .perm_source = FS__PERM_REVERSE }, 5, 0
};
static layer_case householder_d5 = { { .kind = FS__LAYER_HOUSEHOLDER, .n_reflections = 3 }, 5, 0 };
static layer_case householder_d4_many = { { .kind = FS__LAYER_HOUSEHOLDER, .n_reflections = 6 },
                                          4,
                                          0 };
static layer_case actnorm_d5 = { { .kind = FS__LAYER_ACTNORM }, 5, 0 };
static layer_case batchnorm_d5 = { { .kind = FS__LAYER_BATCHNORM, .momentum = 0.1, .eps = 1e-5 },
                                   5,
                                   0 };
static layer_case batchnorm_d5_train = {
    { .kind = FS__LAYER_BATCHNORM, .momentum = 0.1, .eps = 1e-3 }, 5, 1
};
static layer_case leaky_d5 = { { .kind = FS__LAYER_LEAKY_RELU, .alpha = 0.3 }, 5, 0 };

static void case_model(const layer_case *lc, lh_model *m)
{
    lh_model_init(m, &lc->cfg, 1, lc->n_dims, 11, 1.5, lc->training, 1);
}

/* n rows of N(0, scale^2) as float32 values, and the same values as doubles. */
static void random_rows(uint64_t seed, size_t count, double scale, float *x32, double *x64)
{
    lh_normal(seed, count, scale, x64);
    for (size_t k = 0; k < count; k++) {
        x32[k] = (float)x64[k];
        x64[k] = (double)x32[k];
    }
}

/* ---- round trip ---- */

static void test_layer_inverse_round_trip(void **state)
{
    const layer_case *lc = *state;
    lh_model m;
    const size_t n = 64;
    size_t d = (size_t)lc->n_dims, nd = n * d;
    float *x32 = malloc(nd * sizeof *x32), *y32 = malloc(nd * sizeof *y32);
    float *xr32 = malloc(nd * sizeof *xr32);
    double *x = malloc(nd * sizeof *x), *y = malloc(nd * sizeof *y), *xr = malloc(nd * sizeof *xr);
    double *ldf = malloc(n * sizeof *ldf), *ldi = malloc(n * sizeof *ldi);
    assert_non_null(ldi);
    case_model(lc, &m);
    random_rows(5, nd, 1.0, x32, x);

    lh_forward_f32(&m, x32, n, y32, ldf);
    lh_inverse_f32(&m, y32, n, xr32, ldi);
    double e32 = lh_max_abs_diff_f32(xr32, x, nd), lde32 = 0.0;
    for (size_t r = 0; r < n; r++) {
        lde32 = fmax(lde32, fabs(ldf[r] + ldi[r]));
    }
    lh_forward_f64(&m, x, n, y, ldf);
    lh_inverse_f64(&m, y, n, xr, ldi);
    double e64 = lh_max_abs_diff(xr, x, nd);
    print_message("    round trip: f32 %.3g, f64 %.3g; f32 log-det antisymmetry %.3g\n", e32, e64,
                  lde32);
    if (!(e32 < 1e-4) || !(e64 < 1e-10) || !(lde32 < 1e-4)) {
        fail_msg("round trip f32 %.3g (< 1e-4), f64 %.3g (< 1e-10), log-det %.3g (< 1e-4)", e32,
                 e64, lde32);
    }
    /* Far outside the data: |x| up to 1e3, and exact +-1e3 entries. */
    random_rows(6, nd, 300.0, x32, x);
    x32[0] = 1000.0f;
    x32[nd - 1] = -1000.0f;
    lh_forward_f32(&m, x32, n, y32, ldf);
    lh_inverse_f32(&m, y32, n, xr32, ldi);
    for (size_t k = 0; k < nd; k++) {
        if (!isfinite(y32[k]) || !isfinite(xr32[k])) {
            fail_msg("far input %zu (%g): y %g, x %g", k, (double)x32[k], (double)y32[k],
                     (double)xr32[k]);
        }
    }
    for (size_t r = 0; r < n; r++) {
        assert_true(isfinite(ldf[r]) && isfinite(ldi[r]));
    }
    lh_inverse_f32(&m, x32, n, y32, ldi); /* the inverse of far latents, too */
    for (size_t k = 0; k < nd; k++) {
        assert_true(isfinite(y32[k]));
    }
    lh_model_free(&m);
    free(x32);
    free(y32);
    free(xr32);
    free(x);
    free(y);
    free(xr);
    free(ldf);
    free(ldi);
}

/* ---- log-det against brute force, both directions ---- */

static void test_layer_log_det_matches_brute_force_jacobian(void **state)
{
    const layer_case *lc = *state;
    lh_model m, frozen;
    const size_t n = 16;
    size_t d = (size_t)lc->n_dims, nd = n * d;
    float *x32 = malloc(nd * sizeof *x32), *y32 = malloc(nd * sizeof *y32);
    double *x = malloc(nd * sizeof *x), *y = malloc(nd * sizeof *y), *xr = malloc(nd * sizeof *xr);
    double *ldf = malloc(n * sizeof *ldf), *ldi = malloc(n * sizeof *ldi);
    double *ldf32 = malloc(n * sizeof *ldf32), *ldi32 = malloc(n * sizeof *ldi32);
    assert_non_null(ldi32);
    case_model(lc, &m);
    random_rows(7, nd, 1.0, x32, x);
    lh_forward_f32(&m, x32, n, y32, ldf32);
    lh_forward_f64(&m, x, n, y, ldf);
    if (m.training) {
        /* Per row, the map is the one with the batch statistics frozen. */
        lh_model_freeze(&m, &frozen);
    } else {
        frozen = m;
    }
    lh_inverse_f64(&frozen, y, n, xr, ldi);
    {
        float *tmp = malloc(nd * sizeof *tmp);
        assert_non_null(tmp);
        lh_inverse_f32(&m, y32, n, tmp, ldi32);
        free(tmp);
    }
    double ef = 0.0, ei = 0.0, ef32 = 0.0, ei32 = 0.0;
    for (size_t r = 0; r < 6; r++) {
        double bf = lh_brute_logdet(&frozen, 0, x + r * d, 1e-5);
        double bi = lh_brute_logdet(&frozen, 1, y + r * d, 1e-5);
        ef = fmax(ef, fabs(ldf[r] - bf));
        ei = fmax(ei, fabs(ldi[r] - bi));
        ef32 = fmax(ef32, fabs(ldf32[r] - bf));
        ei32 = fmax(ei32, fabs(ldi32[r] - bi));
        if (!(fabs(ldf[r] - bf) < 1e-3) || !(fabs(ldi[r] - bi) < 1e-3) ||
            !(fabs(ldf32[r] - bf) < 1e-3) || !(fabs(ldi32[r] - bi) < 1e-3)) {
            fail_msg("row %zu: forward log-det %.9g (f32 %.9g) vs brute force %.9g; inverse "
                     "%.9g (f32 %.9g) vs brute force %.9g",
                     r, ldf[r], ldf32[r], bf, ldi[r], ldi32[r], bi);
        }
    }
    print_message("    |log-det - brute force|: forward %.3g (f32 %.3g), inverse %.3g (f32 %.3g)\n",
                  ef, ef32, ei, ei32);
    if (m.training) {
        lh_model_free(&frozen);
    }
    lh_model_free(&m);
    free(x32);
    free(y32);
    free(x);
    free(y);
    free(xr);
    free(ldf);
    free(ldi);
    free(ldf32);
    free(ldi32);
}

/* ---- gradients ---- */

static void test_layer_backward_matches_finite_differences(void **state)
{
    const layer_case *lc = *state;
    lh_model m;
    const size_t n = 8;
    size_t nd = n * (size_t)lc->n_dims;
    float *x32 = malloc(nd * sizeof *x32);
    double *x = malloc(nd * sizeof *x);
    lh_grad_report rep;
    assert_non_null(x);
    case_model(lc, &m);
    random_rows(8, nd, 1.0, x32, x);
    for (int weighted = 0; weighted <= 1; weighted++) {
        m.weighted = weighted;
        lh_check_gradients(&m, x32, n, 1e-3, 1e-6, &rep);
        print_message("    %s loss, gradient rel. error: f32 params %.3g (elem %.3g), dx %.3g "
                      "(elem %.3g); f64 params %.3g, dx %.3g; f32 reconstruction %.3g\n",
                      weighted ? "weighted" : "plain", rep.p32.norm_rel, rep.p32.elem_rel,
                      rep.x32.norm_rel, rep.x32.elem_rel, rep.p64.norm_rel, rep.x64.norm_rel,
                      rep.recon32);
    }
    lh_model_free(&m);
    free(x32);
    free(x);
}

/* ---- against a naive reference ---- */

/*
 * The coupling's forward by explicit loops in double, straight from the layout contract
 * (W{i} [out][in] as torch.nn.Linear, ReLU after hidden layers, the last layer's first d2
 * outputs s_raw then d2 t): catches what self-consistency cannot, e.g. a transposed W or
 * swapped s and t, which would still be a valid invertible layer.
 */
static void naive_coupling(const fs__layer *l, const float *p, const double *x, double *y,
                           double *ld)
{
    double a[64], b[64];
    size_t d = (size_t)l->n_dims, d1 = (size_t)l->d1, d2 = (size_t)l->d2, in = d1;
    memcpy(a, x, d1 * sizeof *a);
    for (int32_t i = 0; i <= l->n_hidden; i++) {
        size_t out = i < l->n_hidden ? (size_t)l->hidden[i]
                                     : (l->kind == FS__LAYER_AFFINE_COUPLING ? 2 * d2 : d2);
        const float *w = p, *bias = p + out * in;
        for (size_t o = 0; o < out; o++) {
            double v = (double)bias[o];
            for (size_t k = 0; k < in; k++) {
                v += (double)w[o * in + k] * a[k];
            }
            b[o] = (i < l->n_hidden && v < 0.0) ? 0.0 : v;
        }
        p += out * in + out;
        memcpy(a, b, out * sizeof *a);
        in = out;
    }
    memcpy(y, x, d * sizeof *y);
    *ld = 0.0;
    for (size_t j = 0; j < d2; j++) {
        if (l->kind == FS__LAYER_AFFINE_COUPLING) {
            double c = (double)l->clamp, s = c * tanh(a[j] / c);
            y[d1 + j] = x[d1 + j] * exp(s) + a[d2 + j];
            *ld += s;
        } else {
            y[d1 + j] = x[d1 + j] + a[j];
        }
    }
}

static void test_coupling_forward_matches_naive_reference(void **state)
{
    (void)state;
    const layer_case *cases[] = { &affine_d6,          &affine_d1,      &affine_d21,
                                  &affine_d4_linear,   &affine_d7_deep, &additive_d1,
                                  &additive_d18_split5 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lh_model m;
        const size_t n = 5;
        size_t d = (size_t)cases[c]->n_dims;
        double x[5 * 21], y[5 * 21], ld[5], want[21], want_ld;
        float x32[5 * 21], y32[5 * 21];
        case_model(cases[c], &m);
        random_rows(13, n * d, 1.0, x32, x);
        lh_forward_f32(&m, x32, n, y32, ld);
        lh_forward_f64(&m, x, n, y, ld);
        for (size_t r = 0; r < n; r++) {
            naive_coupling(&m.f.layers[0], m.params, x + r * d, want, &want_ld);
            FS_ASSERT_NEAR(ld[r], want_ld, 1e-12);
            for (size_t j = 0; j < d; j++) {
                FS_ASSERT_NEAR(y[r * d + j], want[j], 1e-12 * fmax(1.0, fabs(want[j])));
                FS_ASSERT_NEAR(y32[r * d + j], want[j], 1e-5 * fmax(1.0, fabs(want[j])));
            }
        }
        lh_model_free(&m);
    }
}

/* ---- layer-specific behaviour ---- */

static void test_flow_init_params_couplings_are_identity(void **state)
{
    (void)state;
    fs__layer_cfg cfgs[] = {
        lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 16, 8, 2.0, 0),
        lh_coupling(FS__LAYER_ADDITIVE_COUPLING, 1, 8, 0, 0.0, 2),
        lh_coupling(FS__LAYER_AFFINE_COUPLING, 0, 0, 0, 1.0, 3),
    };
    const size_t n = 32, d = 5;
    for (size_t i = 0; i < 3; i++) {
        lh_model m;
        float x[32 * 5], y[32 * 5];
        double xd[32 * 5], ld[32];
        lh_model_init(&m, &cfgs[i], 1, (int32_t)d, 3, 0.0, 0, 1);
        random_rows(9, n * d, 2.0, x, xd);
        lh_forward_f32(&m, x, n, y, ld);
        assert_memory_equal(x, y, sizeof x);
        for (size_t r = 0; r < n; r++) {
            assert_true(ld[r] == 0.0);
        }
        /* the hidden layers are not zero (PyTorch's default init), only the last one */
        fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
        fs__layer_tensors(&m.f.layers[0], desc);
        size_t nt = fs__layer_n_tensors(&m.f.layers[0]);
        if (nt > 2) {
            assert_true(m.params[desc[0].offset] != 0.0f);
        }
        for (size_t k = desc[nt - 2].offset; k < m.f.n_params; k++) {
            assert_true(m.params[k] == 0.0f);
        }
        lh_model_free(&m);
    }
}

static void test_actnorm_init_standardises_columns(void **state)
{
    (void)state;
    lh_model m;
    fs__layer_cfg cfg = lh_simple(FS__LAYER_ACTNORM, 0);
    const size_t n = 500, d = 4;
    double *x = malloc(n * d * sizeof *x), *y = malloc(n * d * sizeof *y), ld[500];
    assert_non_null(y);
    lh_model_init(&m, &cfg, 1, (int32_t)d, 1, 0.0, 0, 1);
    lh_normal(4, n * d, 1.0, x);
    for (size_t r = 0; r < n; r++) {
        x[r * d + 0] = 3.0 + 10.0 * x[r * d + 0]; /* shifted and wide */
        x[r * d + 1] = -2.0 + 1e-3 * x[r * d + 1];
        x[r * d + 2] = 7.0; /* constant */
    }
    fs__actnorm_init_f64(&m.f.layers[0], m.params, x, n);
    lh_forward_f64(&m, x, n, y, ld);
    for (size_t j = 0; j < d; j++) {
        double mean = 0.0, var = 0.0;
        for (size_t r = 0; r < n; r++) {
            mean += y[r * d + j] / (double)n;
        }
        for (size_t r = 0; r < n; r++) {
            var += (y[r * d + j] - mean) * (y[r * d + j] - mean) / (double)n;
        }
        FS_ASSERT_NEAR(mean, 0.0, 1e-5);
        FS_ASSERT_NEAR(sqrt(var), j == 2 ? 0.0 : 1.0, 1e-5);
    }
    FS_ASSERT_NEAR(m.params[2], 0.0, 0.0);      /* constant column: scale 1 */
    FS_ASSERT_NEAR(m.params[d + 2], -7.0, 0.0); /* and bias -mean */
    /* one row: std 0 everywhere, so scale 1 and bias -x */
    fs__actnorm_init_f64(&m.f.layers[0], m.params, x, 1);
    for (size_t j = 0; j < d; j++) {
        FS_ASSERT_NEAR(m.params[j], 0.0, 0.0);
        FS_ASSERT_NEAR(m.params[d + j], -(double)(float)x[j], 1e-6 * fabs(x[j]));
    }
    /* the float32 kernel gives the same parameters */
    float *x32 = malloc(n * d * sizeof *x32), p32[8];
    assert_non_null(x32);
    for (size_t k = 0; k < n * d; k++) {
        x32[k] = (float)x[k];
    }
    fs__actnorm_init_f32(&m.f.layers[0], p32, x32, n);
    fs__actnorm_init_f64(&m.f.layers[0], m.params, x, n);
    for (size_t k = 0; k < 2 * d; k++) {
        FS_ASSERT_NEAR(p32[k], m.params[k], 1e-4 * fmax(1.0, fabs((double)m.params[k])));
    }
    lh_model_free(&m);
    free(x);
    free(y);
    free(x32);
}

static void test_householder_zero_vector_is_identity(void **state)
{
    (void)state;
    lh_model m;
    fs__layer_cfg cfg = lh_simple(FS__LAYER_HOUSEHOLDER, 2);
    const size_t n = 6, d = 3;
    float x[18], y[18], xr[18], dx[18], dp[6];
    double xd[18], ld[6];
    lh_model_init(&m, &cfg, 1, (int32_t)d, 1, 1.0, 0, 1);
    memset(m.params, 0, 6 * sizeof *m.params);
    random_rows(3, n * d, 1.0, x, xd);
    lh_forward_f32(&m, x, n, y, ld);
    assert_memory_equal(x, y, sizeof x);
    lh_backward_f32(&m, y, y, n, 1.0, xr, dx, dp);
    for (size_t k = 0; k < 6; k++) {
        assert_true(dp[k] == 0.0f);
    }
    assert_memory_equal(xr, x, sizeof x);
    /* one zero and one real reflection: that one alone, no NaN anywhere */
    m.params[3] = 1.0f; /* v_1 = e_0: flips column 0 */
    lh_forward_f32(&m, x, n, y, ld);
    for (size_t r = 0; r < n; r++) {
        FS_ASSERT_NEAR(y[r * d], -x[r * d], 0.0);
        FS_ASSERT_NEAR(y[r * d + 1], x[r * d + 1], 0.0);
    }
    lh_backward_f32(&m, y, y, n, 1.0, xr, dx, dp);
    for (size_t k = 0; k < 6; k++) {
        assert_true(isfinite(dp[k]));
    }
    lh_model_free(&m);
}

static void test_batchnorm_training_uses_batch_statistics(void **state)
{
    (void)state;
    lh_model m, frozen;
    fs__layer_cfg cfg = lh_simple(FS__LAYER_BATCHNORM, 0);
    const size_t n = 40, d = 3;
    double x[120], y[120], yf[120], ld[40], ldf[40];
    lh_model_init(&m, &cfg, 1, (int32_t)d, 2, 1.0, 1, 1);
    lh_normal(12, n * d, 2.0, x);
    for (size_t r = 0; r < n; r++) {
        x[r * d] += 5.0;
    }
    lh_forward_f64(&m, x, n, y, ld);
    for (size_t j = 0; j < d; j++) {
        double mean = 0.0, var = 0.0;
        for (size_t r = 0; r < n; r++) {
            mean += x[r * d + j] / (double)n;
        }
        for (size_t r = 0; r < n; r++) {
            var += (x[r * d + j] - mean) * (x[r * d + j] - mean) / (double)n;
        }
        FS_ASSERT_NEAR(m.stats[j], mean, 1e-12);
        FS_ASSERT_NEAR(m.stats[d + j], var, 1e-12);
    }
    /* running statistics equal to the batch's give the same map (to float rounding) */
    lh_model_freeze(&m, &frozen);
    lh_forward_f64(&frozen, x, n, yf, ldf);
    assert_true(lh_max_abs_diff(y, yf, n * d) < 1e-5);
    FS_ASSERT_NEAR(ld[0], ldf[0], 1e-6);
    /* training without somewhere to put the statistics is refused */
    fs__layer_ctx c = lh_ctx(&m, malloc(fs__layer_scratch_f64(&m.f.layers[0], n) * 8 + 8));
    c.batch_stats = NULL;
    assert_int_equal(fs__layer_forward_f64(&m.f.layers[0], &c, x, n, y, ld), FS_ERR_INVALID);
    free(c.scratch);
    lh_model_free(&frozen);
    lh_model_free(&m);
}

static void test_layer_tensors_follow_spec_layout(void **state)
{
    (void)state;
    /* ref-realnvp block, D = 32, H = 128: 22,816 parameters (bench/SPEC.md sec. 2) */
    fs__layer_cfg cfg = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 128, 128, 2.0, 0);
    fs__flow f;
    fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
    assert_int_equal(fs__flow_init(&f, &cfg, 1, 32, 0, NULL), FS_OK);
    assert_int_equal(f.n_params, 22816);
    assert_int_equal(fs__layer_n_tensors(&f.layers[0]), 6);
    fs__layer_tensors(&f.layers[0], desc);
    const char *names[] = { "W0", "b0", "W1", "b1", "W2", "b2" };
    const int32_t rows[] = { 128, 128, 128, 128, 32, 32 };
    const int32_t cols[] = { 16, 1, 128, 1, 128, 1 };
    size_t off = 0;
    for (size_t t = 0; t < 6; t++) {
        assert_string_equal(desc[t].name, names[t]);
        assert_int_equal(desc[t].rows, rows[t]);
        assert_int_equal(desc[t].cols, cols[t]);
        assert_int_equal(desc[t].offset, off);
        assert_int_equal(desc[t].is_buffer, 0);
        off += (size_t)rows[t] * (size_t)cols[t];
    }
    assert_int_equal(off, f.n_params);
    fs__flow_deinit(&f);

    /* batchnorm: two parameter tensors and two buffers */
    cfg = lh_simple(FS__LAYER_BATCHNORM, 0);
    assert_int_equal(fs__flow_init(&f, &cfg, 1, 7, 0, NULL), FS_OK);
    assert_int_equal(f.n_params, 14);
    assert_int_equal(f.n_buffers, 14);
    fs__layer_tensors(&f.layers[0], desc);
    assert_string_equal(desc[2].name, "running_mean");
    assert_int_equal(desc[2].is_buffer, 1);
    assert_int_equal(desc[3].offset, 7);
    assert_string_equal(fs__layer_kind_name(f.layers[0].kind), "batchnorm");
    assert_string_equal(fs__layer_kind_name(FS__LAYER__COUNT), "unknown");
    fs__flow_deinit(&f);
}

static void test_permutation_numpy_matches_spec_appendix(void **state)
{
    (void)state;
    /* bench/SPEC.md appendix A: numpy default_rng(1001).permutation(32) and (1003, 8) */
    static const int32_t want32[32] = {
        30, 23, 5,  9,  8,  0,  1,  4, 22, 13, 27, 21, 2, 31, 20, 7,
        11, 19, 28, 17, 25, 14, 26, 6, 10, 12, 18, 16, 3, 29, 15, 24
    };
    static const int32_t want8[8] = { 6, 2, 0, 7, 3, 5, 4, 1 };
    fs__layer_cfg cfg[2] = { lh_perm(FS__PERM_NUMPY, 1001), lh_perm(FS__PERM_NUMPY, 1003) };
    fs__flow f;
    assert_int_equal(fs__flow_init(&f, cfg, 1, 32, 0, NULL), FS_OK);
    assert_memory_equal(f.layers[0].perm, want32, sizeof want32);
    for (int32_t j = 0; j < 32; j++) {
        assert_int_equal(f.layers[0].inv_perm[f.layers[0].perm[j]], j);
    }
    fs__flow_deinit(&f);
    assert_int_equal(fs__flow_init(&f, &cfg[1], 1, 8, 0, NULL), FS_OK);
    assert_memory_equal(f.layers[0].perm, want8, sizeof want8);
    fs__flow_deinit(&f);

    /* seeded: deterministic, depends on the layer index, the flow seed and perm_seed */
    fs__layer_cfg seeded[3] = { lh_perm(FS__PERM_SEED, 0), lh_perm(FS__PERM_SEED, 0),
                                lh_perm(FS__PERM_SEED, 5) };
    fs__flow a, b;
    assert_int_equal(fs__flow_init(&a, seeded, 3, 16, 42, NULL), FS_OK);
    assert_int_equal(fs__flow_init(&b, seeded, 3, 16, 42, NULL), FS_OK);
    for (size_t i = 0; i < 3; i++) {
        assert_memory_equal(a.layers[i].perm, b.layers[i].perm, 16 * sizeof(int32_t));
    }
    assert_memory_not_equal(a.layers[0].perm, a.layers[1].perm, 16 * sizeof(int32_t));
    fs__flow_deinit(&b);
    assert_int_equal(fs__flow_init(&b, seeded, 3, 16, 43, NULL), FS_OK);
    assert_memory_not_equal(a.layers[0].perm, b.layers[0].perm, 16 * sizeof(int32_t));
    fs__flow_deinit(&b);
    seeded[2].perm_seed = 6;
    assert_int_equal(fs__flow_init(&b, seeded, 3, 16, 42, NULL), FS_OK);
    assert_memory_not_equal(a.layers[2].perm, b.layers[2].perm, 16 * sizeof(int32_t));
    fs__flow_deinit(&a);
    fs__flow_deinit(&b);
}

/* The three numeric proofs of one layer case, named after it. */
#define CASE_TESTS(id)                                                                             \
    { "test_layer_inverse_round_trip_" #id, test_layer_inverse_round_trip, NULL, NULL, &(id) },    \
        { "test_layer_log_det_matches_brute_force_jacobian_" #id,                                  \
          test_layer_log_det_matches_brute_force_jacobian, NULL, NULL, &(id) },                    \
    {                                                                                              \
        "test_layer_backward_matches_finite_differences_" #id,                                     \
            test_layer_backward_matches_finite_differences, NULL, NULL, &(id)                      \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASE_TESTS(affine_d6),
        CASE_TESTS(affine_d5_split2),
        CASE_TESTS(affine_d1),
        CASE_TESTS(affine_d4_linear),
        CASE_TESTS(affine_d7_deep),
        CASE_TESTS(affine_d21),
        CASE_TESTS(additive_d18_split5),
        CASE_TESTS(additive_d6),
        CASE_TESTS(additive_d1),
        CASE_TESTS(perm_seed_d7),
        CASE_TESTS(perm_numpy_d8),
        CASE_TESTS(perm_reverse_d5),
        CASE_TESTS(householder_d5),
        CASE_TESTS(householder_d4_many),
        CASE_TESTS(actnorm_d5),
        CASE_TESTS(batchnorm_d5),
        CASE_TESTS(batchnorm_d5_train),
        CASE_TESTS(leaky_d5),
        cmocka_unit_test(test_coupling_forward_matches_naive_reference),
        cmocka_unit_test(test_flow_init_params_couplings_are_identity),
        cmocka_unit_test(test_actnorm_init_standardises_columns),
        cmocka_unit_test(test_householder_zero_vector_is_identity),
        cmocka_unit_test(test_batchnorm_training_uses_batch_statistics),
        cmocka_unit_test(test_layer_tensors_follow_spec_layout),
        cmocka_unit_test(test_permutation_numpy_matches_spec_appendix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
