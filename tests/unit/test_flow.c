/* labels: unit numeric */
/*
 * test_flow.c: the flow stack (fs__flow_*): a 16-layer stack mixing every layer kind, with
 * batchnorm in inference mode (non-trivial running statistics) and in training mode, gets
 * the same numeric proof as each layer (round trip, log-det against brute-force Jacobians in
 * both directions, gradients of the reversible backward against finite differences); plus
 * the reconstruction drift of deep stacks, densities that integrate to 1, batch
 * independence, in-place calls, and fs__flow_init's validation and allocation failures.
 */
#include "test_layers_harness.h"

#include <cjson/cJSON.h>

#define MIXED_LAYERS 16
#define MIXED_DIMS   6

/* Every kind, each more than once, with different splits, widths and depths. */
static void mixed_cfgs(fs__layer_cfg *c)
{
    c[0] = lh_simple(FS__LAYER_ACTNORM, 0);
    c[1] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 16, 12, 2.0, 0);
    c[2] = lh_perm(FS__PERM_SEED, 0);
    c[3] = lh_simple(FS__LAYER_HOUSEHOLDER, 3);
    c[4] = lh_coupling(FS__LAYER_ADDITIVE_COUPLING, 1, 16, 0, 0.0, 0);
    c[5] = lh_simple(FS__LAYER_LEAKY_RELU, 0.7);
    c[6] = lh_simple(FS__LAYER_BATCHNORM, 0);
    c[7] = lh_perm(FS__PERM_REVERSE, 0);
    c[8] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 0, 1.5, 2);
    c[9] = lh_perm(FS__PERM_NUMPY, 1001);
    c[10] = lh_simple(FS__LAYER_HOUSEHOLDER, 6);
    c[11] = lh_simple(FS__LAYER_ACTNORM, 0);
    c[12] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 16, 16, 1.5, 0);
    c[13] = lh_simple(FS__LAYER_LEAKY_RELU, 0.5);
    c[14] = lh_coupling(FS__LAYER_ADDITIVE_COUPLING, 1, 12, 0, 0.0, 4);
    c[15] = lh_simple(FS__LAYER_BATCHNORM, 0);
}

static void mixed_model(lh_model *m, int training)
{
    fs__layer_cfg cfgs[MIXED_LAYERS];
    mixed_cfgs(cfgs);
    lh_model_init(m, cfgs, MIXED_LAYERS, MIXED_DIMS, 21, 1.0, training, 0);
}

static void random_rows(uint64_t seed, size_t count, double scale, float *x32, double *x64)
{
    lh_normal(seed, count, scale, x64);
    for (size_t k = 0; k < count; k++) {
        x32[k] = (float)x64[k];
        x64[k] = (double)x32[k];
    }
}

/* ---- the mixed stack ---- */

static void check_round_trip(const lh_model *m, const lh_model *inv, double *e32_out,
                             double *e64_out)
{
    const size_t n = 128, nd = n * MIXED_DIMS;
    float x32[128 * MIXED_DIMS], z32[128 * MIXED_DIMS], xr32[128 * MIXED_DIMS];
    double x[128 * MIXED_DIMS], z[128 * MIXED_DIMS], xr[128 * MIXED_DIMS];
    double ldf[128], ldi[128];
    random_rows(31, nd, 1.0, x32, x);
    lh_forward_f32(m, x32, n, z32, ldf);
    lh_inverse_f32(inv, z32, n, xr32, ldi);
    double e32 = lh_max_abs_diff_f32(xr32, x, nd), ld32 = 0.0;
    for (size_t r = 0; r < n; r++) {
        ld32 = fmax(ld32, fabs(ldf[r] + ldi[r]));
    }
    lh_forward_f64(m, x, n, z, ldf);
    lh_inverse_f64(inv, z, n, xr, ldi);
    double e64 = lh_max_abs_diff(xr, x, nd);
    print_message("    round trip: f32 %.3g, f64 %.3g; f32 log-det antisymmetry %.3g\n", e32, e64,
                  ld32);
    if (!(e32 < 1e-4) || !(e64 < 1e-10) || !(ld32 < 1e-4)) {
        fail_msg("round trip f32 %.3g (< 1e-4), f64 %.3g (< 1e-10), log-det %.3g (< 1e-4)", e32,
                 e64, ld32);
    }
    /* far outside: |x| up to 1e3 */
    random_rows(32, nd, 300.0, x32, x);
    x32[0] = 1000.0f;
    x32[nd - 1] = -1000.0f;
    lh_forward_f32(m, x32, n, z32, ldf);
    lh_inverse_f32(inv, z32, n, xr32, ldi);
    for (size_t k = 0; k < nd; k++) {
        if (!isfinite(z32[k]) || !isfinite(xr32[k])) {
            fail_msg("far input %zu (%g): z %g, x %g", k, (double)x32[k], (double)z32[k],
                     (double)xr32[k]);
        }
    }
    for (size_t r = 0; r < n; r++) {
        assert_true(isfinite(ldf[r]) && isfinite(ldi[r]));
    }
    *e32_out = e32;
    *e64_out = e64;
}

static void test_flow_inverse_round_trip_mixed(void **state)
{
    (void)state;
    lh_model m, frozen;
    double e32, e64;
    mixed_model(&m, 0);
    check_round_trip(&m, &m, &e32, &e64);
    /* training mode: the stack inverts with running statistics, so the inverse is the frozen
     * model (running = the forward's batch statistics, rounded to float) */
    m.training = 1;
    {
        const size_t n = 128, nd = n * MIXED_DIMS;
        float x32[128 * MIXED_DIMS], z32[128 * MIXED_DIMS], xr32[128 * MIXED_DIMS];
        double x[128 * MIXED_DIMS], ld[128];
        random_rows(31, nd, 1.0, x32, x);
        lh_forward_f32(&m, x32, n, z32, ld);
        lh_model_freeze(&m, &frozen);
        lh_inverse_f32(&frozen, z32, n, xr32, ld);
        double e = lh_max_abs_diff_f32(xr32, x, nd);
        print_message("    training mode (inverted with the batch statistics frozen): f32 %.3g\n",
                      e);
        assert_true(e < 1e-4);
    }
    lh_model_free(&frozen);
    lh_model_free(&m);
}

static void check_log_det(lh_model *m)
{
    const size_t n = 16, d = MIXED_DIMS, nd = n * d;
    float x32[16 * MIXED_DIMS], z32[16 * MIXED_DIMS], xr32[16 * MIXED_DIMS];
    double x[16 * MIXED_DIMS], z[16 * MIXED_DIMS], xr[16 * MIXED_DIMS];
    double ldf[16], ldi[16], ldf32[16], ldi32[16];
    lh_model frozen;
    random_rows(41, nd, 1.0, x32, x);
    lh_forward_f32(m, x32, n, z32, ldf32);
    lh_forward_f64(m, x, n, z, ldf);
    if (m->training) {
        lh_model_freeze(m, &frozen);
    } else {
        frozen = *m;
    }
    lh_inverse_f64(&frozen, z, n, xr, ldi);
    lh_inverse_f32(&frozen, z32, n, xr32, ldi32);
    double ef = 0.0, ei = 0.0, ef32 = 0.0, ei32 = 0.0;
    for (size_t r = 0; r < 8; r++) {
        double bf = lh_brute_logdet(&frozen, 0, x + r * d, 1e-5);
        double bi = lh_brute_logdet(&frozen, 1, z + r * d, 1e-5);
        if (!(fabs(ldf[r] - bf) < 1e-3) || !(fabs(ldi[r] - bi) < 1e-3) ||
            !(fabs(ldf32[r] - bf) < 1e-3) || !(fabs(ldi32[r] - bi) < 1e-3)) {
            fail_msg("row %zu: forward log-det %.9g (f32 %.9g) vs brute force %.9g; inverse "
                     "%.9g (f32 %.9g) vs brute force %.9g",
                     r, ldf[r], ldf32[r], bf, ldi[r], ldi32[r], bi);
        }
        ef = fmax(ef, fabs(ldf[r] - bf));
        ei = fmax(ei, fabs(ldi[r] - bi));
        ef32 = fmax(ef32, fabs(ldf32[r] - bf));
        ei32 = fmax(ei32, fabs(ldi32[r] - bi));
    }
    print_message("    |log-det - brute force|: forward %.3g (f32 %.3g), inverse %.3g (f32 %.3g); "
                  "log-det of row 0: %.6g\n",
                  ef, ef32, ei, ei32, ldf[0]);
    if (m->training) {
        lh_model_free(&frozen);
    }
}

static void test_flow_log_det_matches_brute_force_jacobian_mixed(void **state)
{
    (void)state;
    lh_model m;
    mixed_model(&m, 0);
    check_log_det(&m);
    lh_model_free(&m);
}

static void test_flow_log_det_matches_brute_force_jacobian_mixed_training(void **state)
{
    (void)state;
    lh_model m;
    mixed_model(&m, 1);
    check_log_det(&m);
    lh_model_free(&m);
}

static void check_gradients(lh_model *m)
{
    const size_t n = 8, nd = n * MIXED_DIMS;
    float x32[8 * MIXED_DIMS];
    double x[8 * MIXED_DIMS];
    lh_grad_report rep;
    random_rows(51, nd, 1.0, x32, x);
    for (int weighted = 0; weighted <= 1; weighted++) {
        m->weighted = weighted;
        lh_check_gradients(m, x32, n, 1e-3, 1e-5, &rep);
        print_message("    %s loss, gradient rel. error: f32 params %.3g (elem %.3g), dx %.3g "
                      "(elem %.3g); f64 params %.3g, dx %.3g; f32 reconstruction %.3g\n",
                      weighted ? "weighted" : "plain", rep.p32.norm_rel, rep.p32.elem_rel,
                      rep.x32.norm_rel, rep.x32.elem_rel, rep.p64.norm_rel, rep.x64.norm_rel,
                      rep.recon32);
    }
}

static void test_flow_backward_matches_finite_differences_mixed(void **state)
{
    (void)state;
    lh_model m;
    mixed_model(&m, 0);
    check_gradients(&m);
    lh_model_free(&m);
}

static void test_flow_backward_matches_finite_differences_mixed_training(void **state)
{
    (void)state;
    lh_model m;
    mixed_model(&m, 1);
    check_gradients(&m);
    lh_model_free(&m);
}

/* ---- reconstruction drift of deep stacks ---- */

/*
 * Blocks of [permutation, affine coupling, actnorm, householder] (D = 16, hidden [64, 64],
 * clamp 2) with random weights, every coupling layer (the last included) U(+-gain/sqrt(fan_in))
 * (gain 1: ref-realnvp's random-last-layer init, bench/SPEC.md sec. 2): max |x - x_rec| of
 * fs__flow_backward's reconstruction against the input, on 256 rows. The drift is the
 * float32 round-off amplified by the conditioning of the random stack, which grows
 * exponentially with depth (the float64 figure shows the same growth, 1e9 times smaller).
 */
static double drift(size_t n_layers, double gain, double *drift64)
{
    enum { D = 16, N = 256 };
    fs__layer_cfg *cfgs = calloc(n_layers, sizeof *cfgs);
    lh_model m;
    assert_non_null(cfgs);
    for (size_t i = 0; i < n_layers; i++) {
        switch (i % 4) {
        case 0:
            cfgs[i] = lh_perm(FS__PERM_SEED, 0);
            break;
        case 1:
            cfgs[i] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 64, 64, 2.0, 0);
            break;
        case 2:
            cfgs[i] = lh_simple(FS__LAYER_ACTNORM, 0);
            break;
        default:
            cfgs[i] = lh_simple(FS__LAYER_HOUSEHOLDER, 4);
            break;
        }
    }
    lh_model_init(&m, cfgs, n_layers, D, 61, gain, 0, 0);
    float *x32 = malloc(N * D * sizeof *x32), *z32 = malloc(N * D * sizeof *z32);
    float *xr32 = malloc(N * D * sizeof *xr32), *dx32 = malloc(N * D * sizeof *dx32);
    float *dp32 = malloc((m.f.n_params + 1) * sizeof *dp32);
    double *x = malloc(N * D * sizeof *x), *z = malloc(N * D * sizeof *z);
    double *xr = malloc(N * D * sizeof *xr), *dx = malloc(N * D * sizeof *dx);
    double *dp = malloc((m.f.n_params + 1) * sizeof *dp), ld[N];
    assert_non_null(dp);
    random_rows(62, N * D, 1.0, x32, x);
    lh_forward_f32(&m, x32, N, z32, ld);
    lh_backward_f32(&m, z32, z32, N, 1.0 / N, xr32, dx32, dp32);
    lh_forward_f64(&m, x, N, z, ld);
    lh_backward_f64(&m, z, z, N, 1.0 / N, xr, dx, dp);
    double e = lh_max_abs_diff_f32(xr32, x, N * D);
    *drift64 = lh_max_abs_diff(xr, x, N * D);
    lh_model_free(&m);
    free(cfgs);
    free(x32);
    free(z32);
    free(xr32);
    free(dx32);
    free(dp32);
    free(x);
    free(z);
    free(xr);
    free(dx);
    free(dp);
    return e;
}

static void test_flow_backward_reconstruction_drift_16_and_64_layers(void **state)
{
    (void)state;
    const double gains[] = { 0.5, 1.0 };
    for (size_t i = 0; i < 2; i++) {
        double d64_16, d64_64;
        double d16 = drift(16, gains[i], &d64_16);
        double d64 = drift(64, gains[i], &d64_64);
        print_message("    gain %.2f: reconstruction drift max |x - x_rec|: 16 layers f32 %.3g "
                      "(f64 %.3g); 64 layers f32 %.3g (f64 %.3g)\n",
                      gains[i], d16, d64_16, d64, d64_64);
        assert_true(d16 < 1e-4);
        assert_true(d64_16 < 1e-10);
        assert_true(isfinite(d64));
        if (gains[i] <= 0.5) {
            /* a tripwire 20x above what this stack measures (4.7e-4) */
            assert_true(d64 < 1e-2);
            assert_true(d64_64 < 1e-9);
        }
    }
}

/* ---- densities integrate to 1 ---- */

static double log_normal(const double *z, size_t d)
{
    double q = 0.0;
    for (size_t j = 0; j < d; j++) {
        q += z[j] * z[j];
    }
    return -0.5 * q - 0.5 * (double)d * log(2.0 * M_PI);
}

static void test_flow_density_integrates_to_one_1d(void **state)
{
    (void)state;
    fs__layer_cfg cfgs[4] = { lh_simple(FS__LAYER_ACTNORM, 0), lh_simple(FS__LAYER_LEAKY_RELU, 0.4),
                              lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 4, 0, 2.0, 0),
                              lh_simple(FS__LAYER_BATCHNORM, 0) };
    lh_model m;
    lh_model_init(&m, cfgs, 4, 1, 71, 1.5, 0, 0);
    /* the x interval that maps onto z in [-12, 12] (the map is increasing) */
    double zb[2] = { -12.0, 12.0 }, xb[2], ld[2];
    lh_inverse_f64(&m, zb, 2, xb, ld);
    assert_true(xb[0] < xb[1]);
    enum { CHUNK = 4096 };
    const size_t steps = 400000;
    double h = (xb[1] - xb[0]) / (double)steps, sum = 0.0;
    double x[CHUNK], z[CHUNK], lds[CHUNK];
    for (size_t i0 = 0; i0 < steps; i0 += CHUNK) {
        size_t k = steps - i0 < CHUNK ? steps - i0 : CHUNK;
        for (size_t i = 0; i < k; i++) {
            x[i] = xb[0] + ((double)(i0 + i) + 0.5) * h; /* midpoint rule */
        }
        lh_forward_f64(&m, x, k, z, lds);
        for (size_t i = 0; i < k; i++) {
            sum += exp(log_normal(&z[i], 1) + lds[i]) * h;
        }
    }
    print_message("    1-D density integral over [%.4g, %.4g]: %.9f\n", xb[0], xb[1], sum);
    FS_ASSERT_NEAR(sum, 1.0, 1e-2);
    lh_model_free(&m);
}

static void test_flow_density_integrates_to_one_2d(void **state)
{
    (void)state;
    fs__layer_cfg cfgs[7] = { lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 16, 16, 2.0, 0),
                              lh_perm(FS__PERM_REVERSE, 0),
                              lh_simple(FS__LAYER_HOUSEHOLDER, 2),
                              lh_simple(FS__LAYER_ACTNORM, 0),
                              lh_coupling(FS__LAYER_ADDITIVE_COUPLING, 1, 8, 0, 0.0, 0),
                              lh_perm(FS__PERM_SEED, 0),
                              lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 0, 1.0, 0) };
    lh_model m;
    lh_model_init(&m, cfgs, 7, 2, 81, 1.0, 0, 0);
    /* bounding box of the preimage of the circle |z| = 8.5 (outside: mass 2e-16) */
    enum { RING = 720, CHUNK = 4096 };
    double zr[2 * RING], xr[2 * RING], ld[CHUNK];
    for (size_t i = 0; i < RING; i++) {
        double a = 2.0 * M_PI * (double)i / RING;
        zr[2 * i] = 8.5 * cos(a);
        zr[2 * i + 1] = 8.5 * sin(a);
    }
    lh_inverse_f64(&m, zr, RING, xr, ld);
    double lo[2] = { HUGE_VAL, HUGE_VAL }, hi[2] = { -HUGE_VAL, -HUGE_VAL };
    for (size_t i = 0; i < RING; i++) {
        for (size_t j = 0; j < 2; j++) {
            lo[j] = fmin(lo[j], xr[2 * i + j]);
            hi[j] = fmax(hi[j], xr[2 * i + j]);
        }
    }
    const size_t g = 1200;
    double hx = (hi[0] - lo[0]) / (double)g, hy = (hi[1] - lo[1]) / (double)g, sum = 0.0;
    double *x = malloc(2 * CHUNK * sizeof *x), *z = malloc(2 * CHUNK * sizeof *z);
    assert_non_null(z);
    size_t total = g * g;
    for (size_t i0 = 0; i0 < total; i0 += CHUNK) {
        size_t k = total - i0 < CHUNK ? total - i0 : CHUNK;
        for (size_t i = 0; i < k; i++) {
            size_t col = (i0 + i) % g, row = (i0 + i) / g; /* grid indices */
            x[2 * i] = lo[0] + ((double)col + 0.5) * hx;
            x[2 * i + 1] = lo[1] + ((double)row + 0.5) * hy;
        }
        lh_forward_f64(&m, x, k, z, ld);
        for (size_t i = 0; i < k; i++) {
            sum += exp(log_normal(&z[2 * i], 2) + ld[i]) * hx * hy;
        }
    }
    print_message("    2-D density integral over [%.3g, %.3g] x [%.3g, %.3g]: %.9f\n", lo[0], hi[0],
                  lo[1], hi[1], sum);
    FS_ASSERT_NEAR(sum, 1.0, 1e-2);
    free(x);
    free(z);
    lh_model_free(&m);
}

/* ---- parity with the golden file ---- */

static double json_number(const cJSON *a, size_t i)
{
    const cJSON *v = cJSON_GetArrayItem(a, (int)i);
    assert_non_null(v);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/*
 * bench/SPEC.md sec. 5: golden_small.json (ref-realnvp D=8, H=16, K=4, random last layer)
 * holds float32 weights and 8 rows with z, log-det and log p computed in float64. The
 * weights go into our parameter layout by tensor name; the permutations must come out of
 * FS__PERM_NUMPY(1000 + k) as the file has them. Float64 matches to 1e-10 (relative where
 * |log p| > 1), float32 to 1e-5 (SPEC's bar for a float32 implementation).
 */
static void test_flow_forward_matches_golden_small(void **state)
{
    (void)state;
    char path[512];
    size_t len = 0;
    if (fs_test_shared_path(path, sizeof path, "bench/golden_small.json") == NULL) {
        skip();
    }
    char *text = fs_test_read_file(path, &len);
    assert_non_null(text);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    assert_non_null(doc);
    const int32_t d = cJSON_GetObjectItem(doc, "D")->valueint;
    const int32_t h = cJSON_GetObjectItem(doc, "H")->valueint;
    const cJSON *blocks = cJSON_GetObjectItem(doc, "blocks");
    const size_t k_blocks = (size_t)cJSON_GetArraySize(blocks);
    assert_int_equal(d, 8);
    fs__layer_cfg cfgs[16];
    size_t n_layers = 0;
    for (size_t k = 0; k < k_blocks; k++) {
        if (k > 0) {
            cfgs[n_layers++] = lh_perm(FS__PERM_NUMPY, 1000 + k);
        }
        cfgs[n_layers++] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, h, h,
                                       cJSON_GetObjectItem(doc, "clamp")->valuedouble, 0);
    }
    lh_model m;
    lh_model_init(&m, cfgs, n_layers, d, 0, 0.0, 0, 0);
    for (size_t k = 0, li = 0; k < k_blocks; k++, li++) {
        const cJSON *blk = cJSON_GetArrayItem(blocks, (int)k);
        const cJSON *perm = cJSON_GetObjectItem(blk, "perm");
        if (k > 0) {
            for (int32_t j = 0; j < d; j++) {
                assert_int_equal(m.f.layers[li].perm[j], (int32_t)json_number(perm, (size_t)j));
            }
            li++;
        } else {
            assert_true(cJSON_IsNull(perm));
        }
        const fs__layer *l = &m.f.layers[li];
        fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
        fs__layer_tensors(l, desc);
        const cJSON *lin = cJSON_GetObjectItem(blk, "layers");
        for (size_t t = 0; t < fs__layer_n_tensors(l); t++) {
            const cJSON *layer = cJSON_GetArrayItem(lin, (int)(t / 2));
            float *dst = m.params + l->param_offset + desc[t].offset;
            if (t % 2 == 0) { /* W [out][in] */
                const cJSON *rows = cJSON_GetObjectItem(layer, "W");
                assert_int_equal(cJSON_GetArraySize(rows), desc[t].rows);
                for (int32_t o = 0; o < desc[t].rows; o++) {
                    const cJSON *row = cJSON_GetArrayItem(rows, o);
                    assert_int_equal(cJSON_GetArraySize(row), desc[t].cols);
                    for (int32_t i = 0; i < desc[t].cols; i++) {
                        dst[o * desc[t].cols + i] = (float)json_number(row, (size_t)i);
                    }
                }
            } else {
                const cJSON *b = cJSON_GetObjectItem(layer, "b");
                assert_int_equal(cJSON_GetArraySize(b), desc[t].rows);
                for (int32_t o = 0; o < desc[t].rows; o++) {
                    dst[o] = (float)json_number(b, (size_t)o);
                }
            }
        }
    }
    const cJSON *test = cJSON_GetObjectItem(doc, "test");
    const cJSON *xs = cJSON_GetObjectItem(test, "x"), *zs = cJSON_GetObjectItem(test, "z");
    const cJSON *lps = cJSON_GetObjectItem(test, "logp"),
                *lds = cJSON_GetObjectItem(test, "logdet");
    const size_t n = (size_t)cJSON_GetArraySize(xs);
    double x[16 * 8], z[16 * 8], ld[16], ld32[16];
    float x32[16 * 8], z32[16 * 8];
    assert_true(n <= 16);
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < (size_t)d; j++) {
            x32[r * 8 + j] = (float)json_number(cJSON_GetArrayItem(xs, (int)r), j);
            x[r * 8 + j] = (double)x32[r * 8 + j];
        }
    }
    lh_forward_f64(&m, x, n, z, ld);
    lh_forward_f32(&m, x32, n, z32, ld32);
    double e64 = 0.0, e32 = 0.0, ez = 0.0;
    for (size_t r = 0; r < n; r++) {
        double want = json_number(lps, r), scale = fmax(1.0, fabs(want));
        double z2 = 0.0, z2f = 0.0;
        for (size_t j = 0; j < (size_t)d; j++) {
            double zw = json_number(cJSON_GetArrayItem(zs, (int)r), j);
            ez = fmax(ez, fabs(z[r * 8 + j] - zw));
            z2 += z[r * 8 + j] * z[r * 8 + j];
            z2f += (double)z32[r * 8 + j] * (double)z32[r * 8 + j];
        }
        double c = 0.5 * (double)d * log(2.0 * M_PI);
        e64 = fmax(e64, fabs(-0.5 * z2 - c + ld[r] - want) / scale);
        e32 = fmax(e32, fabs(-0.5 * z2f - c + ld32[r] - want) / scale);
        FS_ASSERT_NEAR(ld[r], json_number(lds, r), 1e-10);
    }
    print_message("    golden_small.json: log p max err f64 %.3g, f32 %.3g; max |z - z_golden| "
                  "f64 %.3g\n",
                  e64, e32, ez);
    assert_true(e64 < 1e-10);
    assert_true(ez < 1e-10);
    assert_true(e32 < 1e-5);
    lh_model_free(&m);
    cJSON_Delete(doc);
    free(text);
}

/* ---- batch independence, in place, empty ---- */

/* ref-realnvp (bench/SPEC.md sec. 2): [perm (k >= 1), affine coupling [128, 128], clamp 2] */
static size_t realnvp_cfgs(fs__layer_cfg *c, size_t blocks)
{
    size_t n = 0;
    for (size_t k = 0; k < blocks; k++) {
        if (k > 0) {
            c[n++] = lh_perm(FS__PERM_NUMPY, 1000 + k);
        }
        c[n++] = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 128, 128, 2.0, 0);
    }
    return n;
}

static void check_batch_independence(const lh_model *m, const char *what)
{
    enum { N = 300 };
    size_t d = (size_t)m->f.n_dims;
    float *x = malloc(N * d * sizeof *x), *z = malloc(N * d * sizeof *z), z1[64];
    double *xd = malloc(N * d * sizeof *xd), ld[N], ld1[1];
    double worst = 0.0, worst_ld = 0.0;
    assert_non_null(xd);
    random_rows(91, N * d, 1.0, x, xd);
    lh_forward_f32(m, x, N, z, ld);
    const size_t rows[] = { 0, 1, 17, 150, 299 };
    for (size_t i = 0; i < 5; i++) {
        size_t r = rows[i];
        lh_forward_f32(m, x + r * d, 1, z1, ld1);
        for (size_t j = 0; j < d; j++) {
            double a = (double)z1[j], b = (double)z[r * d + j];
            worst = fmax(worst, fabs(a - b) / fmax(1.0, fabs(b)));
        }
        worst_ld = fmax(worst_ld, fabs(ld1[0] - ld[r]) / fmax(1.0, fabs(ld[r])));
    }
    print_message("    %s: one row vs a batch of 300: max rel. diff z %.3g, log-det %.3g\n", what,
                  worst, worst_ld);
    /*
     * Unpadded, a lone row may take other BLAS micro-kernels than a batch, so float32 rounding
     * differs slightly; fs_model_score pads every pass and is bit-identical (test_model.c).
     */
    assert_true(worst <= 1e-5);
    assert_true(worst_ld <= 1e-5);
    free(x);
    free(z);
    free(xd);
}

static void test_flow_forward_row_alone_matches_batch(void **state)
{
    (void)state;
    lh_model m;
    fs__layer_cfg cfgs[16];
    mixed_model(&m, 0);
    check_batch_independence(&m, "mixed stack");
    lh_model_free(&m);
    size_t n = realnvp_cfgs(cfgs, 8);
    lh_model_init(&m, cfgs, n, 32, 5, 1.0, 0, 0);
    check_batch_independence(&m, "ref-realnvp D=32 K=8");
    lh_model_free(&m);
}

static void test_flow_forward_inverse_in_place(void **state)
{
    (void)state;
    enum { N = 50 };
    float x[N * MIXED_DIMS], z[N * MIXED_DIMS], buf[N * MIXED_DIMS];
    double xd[N * MIXED_DIMS], ld[N], ld2[N];
    lh_model m;
    random_rows(3, N * MIXED_DIMS, 1.0, x, xd);
    for (size_t layers = 1; layers <= 3; layers++) {
        fs__layer_cfg cfgs[MIXED_LAYERS];
        mixed_cfgs(cfgs);
        lh_model_init(&m, cfgs + 1, layers, MIXED_DIMS, 4, 1.0, 0, 0);
        void *s = malloc(fs__flow_scratch_f32(&m.f, N) * sizeof(float));
        assert_non_null(s);
        lh_forward_f32(&m, x, N, z, ld);
        memcpy(buf, x, sizeof buf);
        memset(ld2, 0, sizeof ld2);
        FS_ASSERT_OK(fs__flow_forward_f32(&m.f, m.params, m.buffers, s, buf, N, buf, ld2));
        assert_memory_equal(buf, z, sizeof z);
        assert_memory_equal(ld, ld2, sizeof ld);
        FS_ASSERT_OK(fs__flow_inverse_f32(&m.f, m.params, m.buffers, s, buf, N, buf, ld2));
        assert_true(lh_max_abs_diff_f32(buf, xd, N * MIXED_DIMS) < 1e-5);
        free(s);
        lh_model_free(&m);
    }
    /* no layers: the identity */
    fs__flow empty;
    double xe[4] = { 1, 2, 3, 4 }, ze[4], lde[2] = { 0, 0 };
    FS_ASSERT_OK(fs__flow_init(&empty, NULL, 0, 2, 0, NULL));
    FS_ASSERT_OK(fs__flow_forward_f64(&empty, NULL, NULL, NULL, xe, 2, ze, lde));
    assert_memory_equal(xe, ze, sizeof xe);
    fs__flow_deinit(&empty);
    /* no rows */
    mixed_model(&m, 0);
    void *s = malloc(fs__flow_scratch_f32(&m.f, 0) * sizeof(float) + 64);
    FS_ASSERT_OK(fs__flow_forward_f32(&m.f, m.params, m.buffers, s, x, 0, z, ld));
    FS_ASSERT_OK(fs__flow_inverse_f32(&m.f, m.params, m.buffers, s, x, 0, z, ld));
    free(s);
    lh_model_free(&m);
}

/* ---- fs__flow_init ---- */

static void expect_invalid(const fs__layer_cfg *cfg, size_t n, int32_t d, const char *what)
{
    fs__flow f;
    fs_diag diag = { "" };
    fs_err err = fs__flow_init(&f, cfg, n, d, 0, &diag);
    if (err != FS_ERR_INVALID) {
        fail_msg("%s: %s, expected FS_ERR_INVALID", what, fs_err_name(err));
    }
    assert_true(strlen(diag.msg) > 0);
    assert_null(f.layers);
    assert_int_equal(f.n_layers, 0);
    fs__flow_deinit(&f);
}

static void test_flow_init_rejects_bad_configs(void **state)
{
    (void)state;
    fs__layer_cfg c;
    int32_t perm_short[3] = { 0, 1, 2 }, perm_dup[4] = { 0, 1, 1, 3 }, perm_big[4] = { 0, 1, 2, 4 };
    int32_t perm_neg[4] = { 0, -1, 2, 3 };

    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 0, 8, 2.0, 0);
    expect_invalid(&c, 1, 4, "hidden width 0");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 2, 8, FS__MAX_WIDTH + 1, 2.0, 0);
    expect_invalid(&c, 1, 4, "hidden width too large");
    c = lh_coupling(FS__LAYER_ADDITIVE_COUPLING, FS__MAX_HIDDEN + 1, 8, 8, 2.0, 0);
    expect_invalid(&c, 1, 4, "too many hidden layers");
    c = lh_coupling(FS__LAYER_ADDITIVE_COUPLING, -1, 8, 8, 2.0, 0);
    expect_invalid(&c, 1, 4, "negative hidden layers");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 0.0, 0);
    expect_invalid(&c, 1, 4, "clamp 0");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, -1.0, 0);
    expect_invalid(&c, 1, 4, "clamp < 0");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, (double)NAN, 0);
    expect_invalid(&c, 1, 4, "clamp NaN");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 1e300, 0);
    expect_invalid(&c, 1, 4, "clamp beyond float");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 2.0, 4);
    expect_invalid(&c, 1, 4, "split = D");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 2.0, -1);
    expect_invalid(&c, 1, 4, "split < 0");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 2.0, 1);
    expect_invalid(&c, 1, 1, "split with one dimension");
    c = lh_coupling(FS__LAYER_AFFINE_COUPLING, 1, 8, 8, 2.0, 0);
    expect_invalid(&c, 1, 0, "0 dimensions");
    expect_invalid(&c, 1, FS__MAX_DIMS + 1, "too many dimensions");
    expect_invalid(&c, FS__MAX_LAYERS + 1, 4, "too many layers");
    expect_invalid(NULL, 2, 4, "no configuration");
    c.kind = FS__LAYER__COUNT;
    expect_invalid(&c, 1, 4, "unknown kind");
    c = lh_simple(FS__LAYER_LEAKY_RELU, 0.0);
    expect_invalid(&c, 1, 4, "alpha 0");
    c = lh_simple(FS__LAYER_LEAKY_RELU, 1.5);
    expect_invalid(&c, 1, 4, "alpha > 1");
    c = lh_simple(FS__LAYER_LEAKY_RELU, (double)NAN);
    expect_invalid(&c, 1, 4, "alpha NaN");
    c = lh_simple(FS__LAYER_BATCHNORM, 0);
    c.eps = 0.0;
    expect_invalid(&c, 1, 4, "eps 0");
    c.eps = 1e-5;
    c.momentum = 0.0;
    expect_invalid(&c, 1, 4, "momentum 0");
    c.momentum = 1.5;
    expect_invalid(&c, 1, 4, "momentum > 1");
    c = lh_simple(FS__LAYER_HOUSEHOLDER, 0);
    expect_invalid(&c, 1, 4, "0 reflections");
    c = lh_simple(FS__LAYER_HOUSEHOLDER, FS__MAX_REFLECTIONS + 1);
    expect_invalid(&c, 1, 4, "too many reflections");
    c = lh_perm(FS__PERM_EXPLICIT, 0);
    expect_invalid(&c, 1, 4, "explicit permutation missing");
    c.perm = perm_short;
    c.n_perm = 3;
    expect_invalid(&c, 1, 4, "explicit permutation too short");
    c.perm = perm_dup;
    c.n_perm = 4;
    expect_invalid(&c, 1, 4, "explicit permutation with a repeat");
    c.perm = perm_big;
    expect_invalid(&c, 1, 4, "explicit permutation out of range");
    c.perm = perm_neg;
    expect_invalid(&c, 1, 4, "explicit permutation negative");
    c = lh_perm((fs__perm_source)9, 0);
    expect_invalid(&c, 1, 4, "unknown permutation source");

    /* a bad layer after good ones names its index, and frees the earlier permutations */
    fs__layer_cfg two[3] = { lh_perm(FS__PERM_SEED, 1), lh_perm(FS__PERM_REVERSE, 0),
                             lh_simple(FS__LAYER_LEAKY_RELU, 2.0) };
    fs__flow f;
    fs_diag diag = { "" };
    assert_int_equal(fs__flow_init(&f, two, 3, 4, 0, &diag), FS_ERR_INVALID);
    assert_non_null(strstr(diag.msg, "layer 2"));
    /* and a valid explicit permutation is accepted */
    int32_t perm_ok[4] = { 2, 0, 3, 1 };
    c = lh_perm(FS__PERM_EXPLICIT, 0);
    c.perm = perm_ok;
    c.n_perm = 4;
    FS_ASSERT_OK(fs__flow_init(&f, &c, 1, 4, 0, NULL));
    assert_memory_equal(f.layers[0].perm, perm_ok, sizeof perm_ok);
    assert_int_equal(f.layers[0].inv_perm[2], 0);
    fs__flow_deinit(&f);
    fs__flow_deinit(NULL);
}

static void test_flow_init_nomem_does_not_leak(void **state)
{
    (void)state;
    fs__layer_cfg cfgs[MIXED_LAYERS];
    fs_test_failing_alloc fa;
    mixed_cfgs(cfgs);
    long n_ok = 0;
    for (long fail_at = 1;; fail_at++) {
        fs__flow f;
        fs_test_fa_install(&fa, fail_at);
        fs_err err = fs__flow_init(&f, cfgs, MIXED_LAYERS, MIXED_DIMS, 7, NULL);
        if (err == FS_OK) {
            n_ok = fail_at;
            fs__flow_deinit(&f);
            fs_set_allocator(NULL);
            assert_int_equal(fa.live, 0);
            break;
        }
        fs_set_allocator(NULL);
        if (err != FS_ERR_NOMEM) {
            fail_msg("allocation %ld failing: %s, expected FS_ERR_NOMEM", fail_at,
                     fs_err_name(err));
        }
        assert_int_equal(fa.live, 0);
        assert_null(f.layers);
    }
    /* fs__flow_copy, likewise */
    fs__flow src;
    FS_ASSERT_OK(fs__flow_init(&src, cfgs, MIXED_LAYERS, MIXED_DIMS, 7, NULL));
    for (long fail_at = 1;; fail_at++) {
        fs__flow dst;
        fs_test_fa_install(&fa, fail_at);
        fs_err err = fs__flow_copy(&src, &dst);
        if (err == FS_OK) {
            assert_int_equal(dst.n_params, src.n_params);
            for (size_t i = 0; i < src.n_layers; i++) {
                if (src.layers[i].perm != NULL) {
                    assert_memory_equal(dst.layers[i].perm, src.layers[i].perm,
                                        MIXED_DIMS * sizeof(int32_t));
                    assert_true(dst.layers[i].perm != src.layers[i].perm);
                }
            }
            fs__flow_deinit(&dst);
            fs_set_allocator(NULL);
            assert_int_equal(fa.live, 0);
            break;
        }
        fs_set_allocator(NULL);
        assert_int_equal(err, FS_ERR_NOMEM);
        assert_int_equal(fa.live, 0);
    }
    fs__flow_deinit(&src);
    print_message("    fs__flow_init of 16 layers: %ld allocations, each failure leak-free\n",
                  n_ok - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_inverse_round_trip_mixed),
        cmocka_unit_test(test_flow_log_det_matches_brute_force_jacobian_mixed),
        cmocka_unit_test(test_flow_log_det_matches_brute_force_jacobian_mixed_training),
        cmocka_unit_test(test_flow_backward_matches_finite_differences_mixed),
        cmocka_unit_test(test_flow_backward_matches_finite_differences_mixed_training),
        cmocka_unit_test(test_flow_backward_reconstruction_drift_16_and_64_layers),
        cmocka_unit_test(test_flow_density_integrates_to_one_1d),
        cmocka_unit_test(test_flow_density_integrates_to_one_2d),
        cmocka_unit_test(test_flow_forward_matches_golden_small),
        cmocka_unit_test(test_flow_forward_row_alone_matches_batch),
        cmocka_unit_test(test_flow_forward_inverse_in_place),
        cmocka_unit_test(test_flow_init_rejects_bad_configs),
        cmocka_unit_test(test_flow_init_nomem_does_not_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
