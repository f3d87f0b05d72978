/* labels: unit numeric */
/*
 * test_train.c: training and preprocessing end to end through the public API: the untrained
 * whitened flow is exactly the full-covariance Gaussian; log1p densities integrate to 1;
 * training beats the Gaussian on a non-Gaussian mixture; hostile columns (constant, 1e-3..1e9,
 * duplicates) stay finite; determinism; the non-finite guard; small inputs; calibration.
 */
#include "fs_test.h"

#include <zlib.h>

#include <stdbool.h>
#include <stdint.h>

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static double nrand(uint64_t *s)
{
    return sqrt(-2.0 * log(urand(s))) * cos(2 * M_PI * urand(s));
}

static fs_schema *numeric_schema(size_t d, fs_transform tr)
{
    fs_schema *s = NULL;
    FS_ASSERT_OK(fs_schema_create(&s));
    for (size_t j = 0; j < d; j++) {
        char name[32];
        snprintf(name, sizeof name, "f%zu", j);
        FS_ASSERT_OK(fs_schema_add_numeric(s, name, FS_FIELD_NUMERIC, tr, 0));
    }
    return s;
}

static fs_spec *small_spec(void)
{
    static const char *json = "{\"preset\": \"realnvp\", \"blocks\": 4, \"hidden\": [32, 32]}";
    fs_spec *sp = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(json, strlen(json), &sp, NULL));
    return sp;
}

static fs_model *train(const fs_schema *s, const fs_spec *sp, const fs_train_params *p,
                       const double *x, size_t n, fs_train_report *rep)
{
    fs_trainer *t = NULL;
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    fs_err err = fs_trainer_create(s, sp, p, x, n, &t, &dg);
    if (err != FS_OK) {
        fail_msg("create: %s %s", fs_err_name(err), dg.msg);
    }
    err = fs_trainer_fit(t, NULL, NULL, &dg);
    if (err != FS_OK) {
        fail_msg("fit: %s %s", fs_err_name(err), dg.msg);
    }
    err = fs_trainer_model(t, &m, &dg);
    if (err != FS_OK) {
        fail_msg("model: %s %s", fs_err_name(err), dg.msg);
    }
    if (rep != NULL) {
        *rep = *fs_trainer_report(t);
    }
    fs_trainer_free(t);
    return m;
}

static double mean_log_prob(const fs_model *m, const double *x, size_t n)
{
    fs_workspace *ws = NULL;
    double *lp = calloc(n, sizeof *lp), sum = 0.0;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_log_prob(m, ws, x, n, lp));
    for (size_t i = 0; i < n; i++) {
        assert_true(isfinite(lp[i]));
        sum += lp[i];
    }
    free(lp);
    fs_workspace_free(ws);
    return sum / (double)n;
}

/* log N(x; mu, C + ridge * diag(std^2)), C the population covariance, computed directly. */
static double gaussian_log_prob(const double *data, size_t n, size_t d, double ridge,
                                const double *x)
{
    double mu[8] = { 0 }, sd[8] = { 0 }, c[64] = { 0 }, l[64] = { 0 }, u[8], y[8];
    double logdet = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) {
            mu[j] += data[i * d + j] / (double)n;
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) {
            sd[j] += pow(data[i * d + j] - mu[j], 2) / (double)n;
        }
    }
    for (size_t j = 0; j < d; j++) {
        sd[j] = sqrt(sd[j]);
    }
    /* the covariance of the standardised data plus ridge * I, as the engine defines it */
    for (size_t i = 0; i < n; i++) {
        for (size_t a = 0; a < d; a++) {
            for (size_t b = 0; b < d; b++) {
                c[a * d + b] += (data[i * d + a] - mu[a]) / sd[a] * (data[i * d + b] - mu[b]) /
                                sd[b] / (double)n;
            }
        }
    }
    for (size_t a = 0; a < d; a++) {
        c[a * d + a] += ridge;
    }
    for (size_t j = 0; j < d; j++) { /* Cholesky */
        for (size_t i = j; i < d; i++) {
            double v = c[i * d + j];
            for (size_t k = 0; k < j; k++) {
                v -= l[i * d + k] * l[j * d + k];
            }
            l[i * d + j] = i == j ? sqrt(v) : v / l[j * d + j];
        }
    }
    for (size_t j = 0; j < d; j++) {
        u[j] = (x[j] - mu[j]) / sd[j];
    }
    for (size_t i = 0; i < d; i++) { /* y = L^-1 u */
        double v = u[i];
        for (size_t k = 0; k < i; k++) {
            v -= l[i * d + k] * y[k];
        }
        y[i] = v / l[i * d + i];
        sq += y[i] * y[i];
        logdet += log(l[i * d + i]) + log(sd[i]);
    }
    return -0.5 * sq - 0.5 * (double)d * log(2 * M_PI) - logdet;
}

static void test_untrained_whitened_flow_is_the_full_covariance_gaussian(void **state)
{
    (void)state;
    enum { N = 3000, DIM = 4 };
    static double x[N * DIM];
    uint64_t seed = 1;
    for (size_t i = 0; i < N; i++) {
        double a = nrand(&seed), b = nrand(&seed);
        x[i * DIM + 0] = 100 + 20 * a;
        x[i * DIM + 1] = -3 + 0.01 * (a + 0.5 * b);
        x[i * DIM + 2] = 5 * b + 2 * a;
        x[i * DIM + 3] = nrand(&seed) * 1e6;
    }
    fs_schema *s = numeric_schema(DIM, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 0;
    fs_model *m = train(s, sp, &p, x, N, NULL);
    fs_workspace *ws = NULL;
    double lp[5];
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_log_prob(m, ws, x, 5, lp));
    for (size_t i = 0; i < 5; i++) {
        double ref = gaussian_log_prob(x, N, DIM, p.whiten_ridge, x + i * DIM);
        FS_ASSERT_NEAR(lp[i], ref, 1e-4 * fmax(1.0, fabs(ref)));
    }
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_log1p_density_integrates_to_one(void **state)
{
    (void)state;
    enum { N = 2000 };
    static double x[N];
    uint64_t seed = 2;
    for (size_t i = 0; i < N; i++) {
        x[i] = floor(exp(3.0 + 1.5 * nrand(&seed))); /* heavy-tailed counts */
    }
    fs_schema *s = numeric_schema(1, FS_TRANSFORM_LOG1P);
    const char *json = "{\"layers\": [{\"type\": \"affine_coupling\", \"hidden\": [8]}]}";
    fs_spec *sp = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(json, strlen(json), &sp, NULL));
    fs_train_params p = fs_train_default_params();
    p.epochs = 0;
    fs_model *m = train(s, sp, &p, x, N, NULL);
    /* integrate p(x) over x by the trapezoid rule on a grid fine near 0 and wide at the top */
    enum { G = 200001 };
    static double grid[G], lp[G];
    for (size_t i = 0; i < G; i++) {
        double t = -12.0 + 24.0 * (double)i / (G - 1); /* in signed-log1p units */
        grid[i] = t < 0 ? -expm1(-t) : expm1(t);
    }
    fs_workspace *ws = NULL;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_log_prob(m, ws, grid, G, lp));
    double integral = 0.0;
    for (size_t i = 1; i < G; i++) {
        integral += 0.5 * (exp(lp[i]) + exp(lp[i - 1])) * (grid[i] - grid[i - 1]);
    }
    print_message("integral of the log1p model's density: %.5f\n", integral);
    FS_ASSERT_NEAR(integral, 1.0, 0.01);
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

/* Two moons-like mixture: a ring segment and a blob; far from any Gaussian. */
static void mixture(double *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        if (urand(&seed) < 0.5) {
            double a = M_PI * urand(&seed);
            x[2 * i] = cos(a) + 0.05 * nrand(&seed);
            x[2 * i + 1] = sin(a) + 0.05 * nrand(&seed);
        } else {
            x[2 * i] = 1.0 + 0.1 * nrand(&seed);
            x[2 * i + 1] = -0.5 + 0.1 * nrand(&seed);
        }
    }
}

static void test_training_beats_the_gaussian_on_a_mixture(void **state)
{
    (void)state;
    enum { N = 4000 };
    static double x[2 * N], held[2 * 2000];
    mixture(x, N, 3);
    mixture(held, 2000, 4);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    const char *json = "{\"preset\": \"realnvp\", \"blocks\": 6, \"hidden\": [64, 64]}";
    fs_spec *sp = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(json, strlen(json), &sp, NULL));
    fs_train_params p = fs_train_default_params();
    p.epochs = 0;
    fs_model *gauss = train(s, sp, &p, x, N, NULL);
    p.epochs = 40;
    p.patience = 40;
    p.lr = 1e-3;
    fs_train_report rep;
    fs_model *flow = train(s, sp, &p, x, N, &rep);
    double lg = mean_log_prob(gauss, held, 2000), lf = mean_log_prob(flow, held, 2000);
    print_message("held-out mean log p: Gaussian %.3f, flow %.3f nats (val NLL %.3f, %d "
                  "epochs, reconstruction error %.2g)\n",
                  lg, lf, rep.best_val_nll, rep.epochs_run, rep.max_recon_error);
    assert_true(lf > lg + 0.5);
    assert_true(rep.max_recon_error < 1e-4);
    assert_int_equal(rep.skipped_steps, 0);
    fs_model_unref(gauss);
    fs_model_unref(flow);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_schedules_optimizers_and_weight_decay(void **state)
{
    (void)state;
    enum { N = 2000 };
    static double x[2 * N];
    mixture(x, N, 12);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 0;
    fs_model *gauss = train(s, sp, &p, x, N, NULL);
    double lg = mean_log_prob(gauss, x, N);
    struct {
        fs_optimizer opt;
        fs_lr_schedule sched;
        double lr, wd;
        int32_t warmup;
    } runs[] = {
        { FS_OPT_ADAM, FS_LR_COSINE, 3e-3, 0.0, 20 },
        { FS_OPT_ADAM, FS_LR_STEP, 3e-3, 1e-4, 0 },
        { FS_OPT_SGD, FS_LR_STEP, 1e-2, 1e-4, 0 },
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        fs_train_report rep;
        p = fs_train_default_params();
        p.epochs = 12;
        p.patience = 12;
        p.optimizer = runs[i].opt;
        p.schedule = runs[i].sched;
        p.step_epochs = 4;
        p.lr = runs[i].lr;
        p.weight_decay = runs[i].wd;
        p.warmup_steps = runs[i].warmup;
        fs_model *m = train(s, sp, &p, x, N, &rep);
        double lm = mean_log_prob(m, x, N);
        print_message("optimizer %d schedule %d: mean log p %.3f (Gaussian %.3f), %d epochs\n",
                      (int)runs[i].opt, (int)runs[i].sched, lm, lg, rep.epochs_run);
        assert_true(lm > lg + 0.2); /* every combination learns something */
        assert_int_equal(rep.skipped_steps, 0);
        fs_model_unref(m);
    }
    fs_model_unref(gauss);
    fs_spec_free(sp);
    fs_schema_free(s);
}

/* Score the two records q with the model in the file image img (len bytes); FS_OK or why not. */
static fs_err score_image(const unsigned char *img, size_t len, const double *q, fs_score *out)
{
    fs_model *m = NULL;
    fs_workspace *ws = NULL;
    fs_err err = fs_model_load_buffer(img, len, &m, NULL);
    if (err == FS_OK) {
        FS_ASSERT_OK(fs_workspace_create(&ws));
        FS_ASSERT_OK(fs_workspace_reserve(ws, m));
        FS_ASSERT_OK(fs_model_score(m, ws, q, 2, out));
    }
    fs_workspace_free(ws);
    fs_model_unref(m);
    return err;
}

/*
 * The model file keeps constant_novelty (scores identical after a round trip); a file without
 * it (written before it existed) scores a constant column by its narrow Gaussian alone; a bad
 * value is refused.
 */
static void check_constant_novelty_in_the_file(const fs_model *m, const double *q,
                                               const fs_score *sc)
{
    void *buf = NULL;
    size_t len = 0;
    fs_score back[2];
    FS_ASSERT_OK(fs_model_save_buffer(m, &buf, &len, NULL));
    unsigned char *img = malloc(len);
    memcpy(img, buf, len);
    fs_free(buf);
    FS_ASSERT_OK(score_image(img, len, q, back));
    assert_true(back[0].score == sc[0].score && back[1].score == sc[1].score);

    char *key = NULL;
    for (size_t i = 0; key == NULL && i + 19 <= len; i++) {
        key = memcmp(img + i, "\"constant_novelty\":", 19) == 0 ? (char *)img + i : NULL;
    }
    assert_non_null(key);
    if (key == NULL) {
        return; /* not reached: for the compiler */
    }
    key[16] = '_'; /* an unknown key: as if the file had none */
    uint32_t crc = (uint32_t)crc32(0L, img, (uInt)(len - 4));
    memcpy(img + len - 4, &crc, 4);
    FS_ASSERT_OK(score_image(img, len, q, back));
    double sd = 1e-3 * 64.0;
    FS_ASSERT_NEAR(back[1].score - back[0].score, 0.5 * (64.0 / sd) * (64.0 / sd), 1e-3);
    FS_ASSERT_NEAR(back[0].score, sc[0].score, 1e-3); /* log(1 - eps) apart */

    key[16] = 'y';
    assert_true(key[19] == '0' && key[20] == '.'); /* eps = 0.00037...: 1 / (~2700 + 2) */
    key[19] = '9';                                 /* 9.00037: a weight above 0.5 */
    crc = (uint32_t)crc32(0L, img, (uInt)(len - 4));
    memcpy(img + len - 4, &crc, 4);
    FS_ASSERT_ERR(score_image(img, len, q, back), FS_ERR_FORMAT);
    free(img);
}

static void test_hostile_columns_train_to_finite_scores(void **state)
{
    (void)state;
    enum { N = 3000, DIM = 4 };
    static double x[N * DIM];
    uint64_t seed = 5;
    for (size_t i = 0; i < N; i++) {
        bool dup = i % 3 != 0; /* two thirds are one repeated row */
        x[i * DIM + 0] = 64.0; /* constant */
        x[i * DIM + 1] = dup ? 1e-3 : pow(10.0, -3.0 + 12.0 * urand(&seed)); /* 1e-3 .. 1e9 */
        x[i * DIM + 2] = dup ? 0.0 : 1e8 * urand(&seed);                     /* mostly 0 */
        x[i * DIM + 3] = dup ? 1.0 : nrand(&seed);
    }
    fs_schema *s = numeric_schema(DIM, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 8;
    fs_train_report rep;
    fs_model *m = train(s, sp, &p, x, N, &rep);
    (void)mean_log_prob(m, x, N); /* asserts every row's score is finite */
    assert_int_equal(rep.n_constant_fields, 1);
    assert_string_equal(rep.constant_fields, "f0");
    FS_ASSERT_NEAR(rep.top_duplicate_share, 2000.0 / 3000.0, 1e-9);
    /* a record that changes the constant field (64 -> 128, one scale) costs the novelty of a
     * value never seen in training: log p falls from the narrow Gaussian's peak to the broad
     * component, eps N(64; 0, 64^2) with eps = constant_novelty (engine/prep.c) */
    fs_workspace *ws = NULL;
    fs_score sc[2];
    double q[2 * DIM];
    memcpy(q, x + 3 * DIM, sizeof q / 2);
    memcpy(q + DIM, x + 3 * DIM, sizeof q / 2);
    q[DIM] = 128.0;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, q, 2, sc));
    assert_true(isfinite(sc[1].score));
    const char *hdr = fs_model_header_json(m);
    assert_non_null(strstr(hdr, "\"constant_fields\":[\"f0\"]"));
    const char *nov = strstr(hdr, "\"constant_novelty\":");
    assert_non_null(nov);
    double eps = strtod(nov + strlen("\"constant_novelty\":"), NULL);
    assert_true(eps > 1.0 / (N + 3.0) && eps < 1.0 / (0.5 * N)); /* 1 / (training rows + 2) */
    double sd = 1e-3 * 64.0;
    double at = log((1.0 - eps) / sd + eps / 64.0), off = log(eps) - 0.5 - log(64.0);
    print_message("changed constant: +%.4f nats (expected %.4f), threshold %.2f, score %.2f\n",
                  sc[1].score - sc[0].score, at - off, fs_model_threshold(m), sc[1].score);
    FS_ASSERT_NEAR(sc[1].score - sc[0].score, at - off, 1e-6);
    assert_true(at - off > log(N) + log(1e3)); /* ~15 nats: far more than any ordinary change */
    check_constant_novelty_in_the_file(m, q, sc);
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_training_is_deterministic_for_seed_and_threads(void **state)
{
    (void)state;
    enum { N = 1500 };
    static double x[2 * N];
    mixture(x, N, 6);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 3;
    p.batch_size = 64;
    for (int threads = 1; threads <= 2; threads++) {
        p.threads = threads;
        fs_model *a = train(s, sp, &p, x, N, NULL), *b = train(s, sp, &p, x, N, NULL);
        double la = mean_log_prob(a, x, N), lb = mean_log_prob(b, x, N);
        assert_true(la == lb);
        fs_model_unref(a);
        fs_model_unref(b);
    }
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_nonfinite_steps_never_reach_parameters(void **state)
{
    (void)state;
    enum { N = 800 };
    static double x[2 * N];
    mixture(x, N, 7);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.optimizer = FS_OPT_SGD;
    p.lr = 9.0; /* absurd: steps blow up */
    p.clip_norm = 0;
    p.epochs = 3;
    fs_trainer *t = NULL;
    fs_diag dg = { { 0 } };
    FS_ASSERT_OK(fs_trainer_create(s, sp, &p, x, N, &t, &dg));
    fs_err err = fs_trainer_fit(t, NULL, NULL, &dg);
    assert_true(err == FS_OK || err == FS_ERR_NUMERIC);
    if (err == FS_ERR_NUMERIC) {
        assert_non_null(strstr(dg.msg, "non-finite"));
    }
    fs_model *m = NULL;
    err = fs_trainer_model(t, &m, &dg);
    if (err == FS_OK) {
        (void)mean_log_prob(m, x, N); /* every score finite: parameters stayed finite */
        void *buf = NULL;
        size_t len = 0;
        FS_ASSERT_OK(fs_model_save_buffer(m, &buf, &len, NULL));
        fs_free(buf);
    } else {
        FS_ASSERT_ERR(err, FS_ERR_NUMERIC);
    }
    fs_model_unref(m);
    fs_trainer_free(t);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_too_few_rows_and_tiny_batches(void **state)
{
    (void)state;
    double one[2] = { 1.0, 2.0 }, five[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 11 };
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    fs_trainer *t = NULL;
    fs_diag dg = { { 0 } };
    FS_ASSERT_ERR(fs_trainer_create(s, sp, &p, one, 1, &t, &dg), FS_ERR_INVALID);
    assert_null(t);
    assert_non_null(strstr(dg.msg, "at least 2 rows"));
    p.batch_size = 1;
    p.epochs = 5;
    fs_model *m = train(s, sp, &p, five, 5, NULL);
    (void)mean_log_prob(m, five, 5);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static int stop_after_first_epoch(void *user, const fs_train_progress *pr)
{
    int *calls = user;
    (*calls)++;
    assert_true(pr->end_of_epoch == 0 || isfinite(pr->val_nll));
    return pr->end_of_epoch;
}

static void test_progress_callback_can_stop_training(void **state)
{
    (void)state;
    enum { N = 1000 };
    static double x[2 * N];
    mixture(x, N, 8);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 50;
    fs_trainer *t = NULL;
    int calls = 0;
    FS_ASSERT_OK(fs_trainer_create(s, sp, &p, x, N, &t, NULL));
    FS_ASSERT_OK(fs_trainer_fit(t, stop_after_first_epoch, &calls, NULL));
    assert_int_equal(fs_trainer_report(t)->epochs_run, 1);
    assert_true(calls >= 1);
    fs_trainer_free(t);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_trainer_step_and_categoricals(void **state)
{
    (void)state;
    enum { N = 600 };
    static double x[2 * N];
    uint64_t seed = 9;
    const char *levels[] = { "icmp", "tcp", "udp" };
    fs_schema *s = NULL;
    FS_ASSERT_OK(fs_schema_create(&s));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "bytes", FS_FIELD_INTEGER, FS_TRANSFORM_LOG1P, 1));
    FS_ASSERT_OK(fs_schema_add_categorical(s, "proto", levels, 3));
    for (size_t i = 0; i < N; i++) {
        x[2 * i] = floor(exp(5 + nrand(&seed)));
        x[2 * i + 1] = (double)(i % 7 == 0 ? 0 : (i % 3 == 0 ? 2 : 1));
    }
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 2;
    fs_model *m = train(s, sp, &p, x, N, NULL);
    /* an unseen level goes to the unknown bucket: two unknowns score the same */
    double q[6] = { 100, 1, 100, FS_LEVEL_UNKNOWN, 100, FS_LEVEL_UNKNOWN };
    fs_score sc[3];
    fs_workspace *ws = NULL;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, q, 3, sc));
    FS_ASSERT_NEAR(sc[1].score, sc[2].score, 1e-9 * fabs(sc[1].score));
    assert_true(sc[1].score > sc[0].score);
    double bad[2] = { 100, 3 };
    FS_ASSERT_ERR(fs_model_score(m, ws, bad, 1, sc), FS_ERR_INVALID);
    /* decode returns level indices; sampling gives known levels */
    double smp[20];
    FS_ASSERT_OK(fs_model_sample(m, ws, 10, 1.0, 3, smp));
    for (int i = 0; i < 10; i++) {
        assert_true(smp[2 * i + 1] >= 0 && smp[2 * i + 1] <= 2);
    }
    /* fs_trainer_step on a fresh trainer lowers the loss on its batch */
    fs_trainer *t = NULL;
    double l0, l1 = 0;
    FS_ASSERT_OK(fs_trainer_create(s, sp, &p, x, N, &t, NULL));
    FS_ASSERT_OK(fs_trainer_step(t, x, 256, &l0));
    for (int i = 0; i < 30; i++) {
        FS_ASSERT_OK(fs_trainer_step(t, x, 256, &l1));
    }
    assert_true(isfinite(l0) && l1 < l0);
    fs_trainer_free(t);
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_scores_are_bit_identical_alone_and_in_any_batch(void **state)
{
    (void)state;
    enum { N = 700 };
    static double x[2 * N];
    mixture(x, N, 11);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    p.epochs = 2;
    fs_model *m = train(s, sp, &p, x, N, NULL);
    fs_workspace *ws = NULL;
    static fs_score all[N];
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, x, N, all));
    for (size_t i = 0; i < N; i++) {
        fs_score one;
        FS_ASSERT_OK(fs_model_score(m, ws, x + 2 * i, 1, &one));
        /* score, log_prob, percentile and flags all identical (case-11) */
        assert_true(one.score == all[i].score && one.log_prob == all[i].log_prob);
        assert_true(one.percentile == all[i].percentile && one.flags == all[i].flags);
    }
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_spec_free(sp);
    fs_schema_free(s);
}

static void test_trainer_create_every_allocation_failure_is_nomem(void **state)
{
    (void)state;
    enum { N = 300 };
    static double x[2 * N];
    mixture(x, N, 10);
    fs_schema *s = numeric_schema(2, FS_TRANSFORM_NONE);
    fs_spec *sp = small_spec();
    fs_train_params p = fs_train_default_params();
    fs_test_failing_alloc fa;
    for (long n = 1;; n++) {
        fs_trainer *t = NULL;
        fs_test_fa_install(&fa, n);
        fs_err err = fs_trainer_create(s, sp, &p, x, N, &t, NULL);
        fs_trainer_free(t);
        long live = fa.live, calls = fa.calls;
        fs_set_allocator(NULL);
        assert_int_equal(live, 0);
        if (err == FS_OK) {
            assert_true(calls < n);
            break;
        }
        FS_ASSERT_ERR(err, FS_ERR_NOMEM);
    }
    fs_spec_free(sp);
    fs_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrained_whitened_flow_is_the_full_covariance_gaussian),
        cmocka_unit_test(test_log1p_density_integrates_to_one),
        cmocka_unit_test(test_training_beats_the_gaussian_on_a_mixture),
        cmocka_unit_test(test_schedules_optimizers_and_weight_decay),
        cmocka_unit_test(test_hostile_columns_train_to_finite_scores),
        cmocka_unit_test(test_training_is_deterministic_for_seed_and_threads),
        cmocka_unit_test(test_nonfinite_steps_never_reach_parameters),
        cmocka_unit_test(test_too_few_rows_and_tiny_batches),
        cmocka_unit_test(test_progress_callback_can_stop_training),
        cmocka_unit_test(test_trainer_step_and_categoricals),
        cmocka_unit_test(test_scores_are_bit_identical_alone_and_in_any_batch),
        cmocka_unit_test(test_trainer_create_every_allocation_failure_is_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
