/*
 * test_refit.c: the background trainer's decisions (server/trainer_run.c), without the
 * daemon: the holdout size, the trimmed holdout metric (the engine's val_trim rule), the
 * noise of the paired holdout comparison, the acceptance rule (better by more than the noise,
 * within the margin), decoding spool payloads (with categorical levels learned for a model
 * created from the stream), and whole refits over a real spool: a first version accepted, a
 * too-small spool failed, a candidate that cannot beat the served model by the margin
 * rejected, the contamination guard leaving anomalies out, cancellation, and the minimums
 * (min_refit_records, min_holdout_rows) failing a refit with the key in the reason.
 */
/* labels: unit */
#include "fs_test.h"

#include <unistd.h>

#include "spool.h"
#include "trainer_internal.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/fs-refit-XXXXXX");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_refit_holdout_rows(void **state)
{
    (void)state;
    assert_int_equal(fs__refit_holdout_rows(0, 0.2), 0);
    assert_int_equal(fs__refit_holdout_rows(2, 0.2), 0);
    assert_int_equal(fs__refit_holdout_rows(3, 0.2), 1);
    assert_int_equal(fs__refit_holdout_rows(10, 0.2), 2);
    assert_int_equal(fs__refit_holdout_rows(1000, 0.25), 250);
    assert_int_equal(fs__refit_holdout_rows(5, 0.9), 5);
}

static void test_refit_trimmed_mean_matches_engine_rule(void **state)
{
    (void)state;
    double v[200];
    for (int i = 0; i < 200; i++) {
        v[i] = (double)(i % 10);
    }
    v[7] = 1e9; /* one far-out row */
    v[8] = (double)NAN;
    /* floor(200 * 0.01) = 2 worst rows are dropped: the NaN (as +inf) and 1e9. */
    double want = 0;
    for (int i = 0; i < 200; i++) {
        want += (i == 7 || i == 8) ? 0.0 : (double)(i % 10);
    }
    FS_ASSERT_NEAR(fs__refit_trimmed_mean(v, 200, 0.01), want / 198.0, 1e-12);
    double few[3] = { 1, 2, 100 };
    FS_ASSERT_NEAR(fs__refit_trimmed_mean(few, 3, 0.01), 103.0 / 3.0, 1e-12); /* 0 dropped */
    assert_true(isinf(fs__refit_trimmed_mean(few, 0, 0.01)));
}

static void test_refit_decide(void **state)
{
    (void)state;
    char why[320];
    assert_int_equal(fs__refit_decide(2.0, 2.5, 0.0, 0.1, why, sizeof why), FS_REFIT_ACCEPTED);
    assert_int_equal(fs__refit_decide(2.6, 2.5, 0.0, 0.1, why, sizeof why), FS_REFIT_REJECTED);
    assert_non_null(strstr(why, "worse"));
    assert_int_equal(fs__refit_decide(2.6, 2.5, 0.2, 0.05, why, sizeof why), FS_REFIT_ACCEPTED);
    assert_int_equal(fs__refit_decide(2.0, 2.5, -1.0, 0.0, why, sizeof why), FS_REFIT_REJECTED);
    assert_int_equal(fs__refit_decide(HUGE_VAL, 2.5, 1e6, 0.0, why, sizeof why), FS_REFIT_REJECTED);
    assert_int_equal(fs__refit_decide((double)NAN, (double)NAN, 0, 0, why, sizeof why),
                     FS_REFIT_REJECTED);
    assert_int_equal(fs__refit_decide(3.0, (double)NAN, 0, (double)NAN, why, sizeof why),
                     FS_REFIT_ACCEPTED);
    assert_non_null(strstr(why, "first version"));
    /* A served model that cannot score the holdout loses to any finite candidate. */
    assert_int_equal(fs__refit_decide(3.0, HUGE_VAL, 0, (double)NAN, why, sizeof why),
                     FS_REFIT_ACCEPTED);
}

/* A gain inside the holdout's noise is not an improvement (a user saw a 0.0002-nat "gain" on
 * 298 rows accepted, and its threshold moved); the margin still tolerates a worse candidate
 * once the noise is taken off. */
static void test_refit_decide_needs_more_than_noise(void **state)
{
    (void)state;
    char why[320];
    assert_int_equal(fs__refit_decide(9.0764, 9.0766, 0.0, 0.006, why, sizeof why),
                     FS_REFIT_REJECTED);
    assert_non_null(strstr(why, "not a significant improvement"));
    assert_non_null(strstr(why, "noise"));
    assert_int_equal(fs__refit_decide(9.0700, 9.0766, 0.0, 0.006, why, sizeof why),
                     FS_REFIT_ACCEPTED);
    /* margin 0.5: up to 0.5 nats worse once the noise is counted against the candidate. */
    assert_int_equal(fs__refit_decide(3.4, 3.0, 0.5, 0.05, why, sizeof why), FS_REFIT_ACCEPTED);
    assert_int_equal(fs__refit_decide(3.47, 3.0, 0.5, 0.05, why, sizeof why), FS_REFIT_REJECTED);
    assert_int_equal(fs__refit_decide(2.0, 3.0, 0.0, HUGE_VAL, why, sizeof why), FS_REFIT_REJECTED);
    assert_non_null(strstr(why, "cannot be estimated"));
}

static void test_refit_noise_is_trimmed_standard_error(void **state)
{
    (void)state;
    double d[4] = { 4, 1, 3, 2 };
    /* No trimming: 2 * sd / sqrt(n), sd = sqrt(5 / 3). */
    FS_ASSERT_NEAR(fs__refit_noise(d, 4, 0.0), FS_REFIT_NOISE_Z * sqrt(5.0 / 3.0) / 2.0, 1e-12);
    /* Trim 0.25 (g = 1): winsorized {2, 2, 3, 3}, s_w = sqrt(1 / 3), SE = s_w / (0.5 * 2). */
    double e[4] = { 1, 3, 2, 4 };
    FS_ASSERT_NEAR(fs__refit_noise(e, 4, 0.25), FS_REFIT_NOISE_Z * sqrt(1.0 / 3.0), 1e-12);
    /* One far-out row does not decide the noise of a trimmed comparison. */
    double f[200];
    for (int i = 0; i < 200; i++) {
        f[i] = (i % 2 == 0) ? -0.01 : 0.01;
    }
    f[17] = 1e6;
    assert_true(fs__refit_noise(f, 200, 0.01) < 0.01);
    double one = 1.0;
    assert_true(isinf(fs__refit_noise(&one, 1, 0.01)));
}

static fs_schema *schema_xyc(void)
{
    fs_schema *s = NULL;
    FS_ASSERT_OK(fs_schema_create(&s));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "x", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "y", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_categorical(s, "proto", NULL, 0));
    return s;
}

static void test_refit_decode_learns_levels(void **state)
{
    (void)state;
    static const char *const payloads[] = { "[1.5,2,\"udp\"]", "[3,4,\"tcp\"]",   "[1,2]",
                                            "[5,6,\"udp\"]",   "[1e999,1,\"x\"]", "garbage" };
    fs_spool_rec recs[6];
    for (size_t i = 0; i < 6; i++) {
        recs[i].payload = payloads[i];
        recs[i].len = (uint32_t)strlen(payloads[i]);
        recs[i].seq = i;
    }
    fs_schema *s = schema_xyc();
    double *rows = NULL;
    uint64_t *seqs = NULL, bad = 0;
    size_t n = 0;
    assert_int_equal(fs__refit_decode(recs, NULL, 6, s, 1, &rows, &seqs, &n, &bad), 0);
    assert_int_equal(n, 3);
    assert_int_equal(bad, 3); /* wrong length, an overflowing number, not JSON */
    assert_int_equal(fs_schema_n_levels(s, 2), 3); /* tcp, udp, x (sorted) */
    assert_string_equal(fs_schema_level_name(s, 2, 0), "tcp");
    FS_ASSERT_NEAR(rows[0], 1.5, 0);
    FS_ASSERT_NEAR(rows[2], 1.0, 0); /* udp */
    FS_ASSERT_NEAR(rows[5], 0.0, 0); /* tcp */
    assert_int_equal(seqs[2], 3);
    free(rows);
    free(seqs);
    fs_schema_free(s);
}

static uint64_t g_rng = 12345;

/* A standard normal draw (Box-Muller over the spool's own generator). */
static double gauss(void)
{
    double u = ((double)fs_spool_rand_below(&g_rng, 1u << 30) + 0.5) / (double)(1u << 30);
    double v = ((double)fs_spool_rand_below(&g_rng, 1u << 30) + 0.5) / (double)(1u << 30);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* A spool of n records (x, y) ~ N(shift, 1). */
static fs_spool *make_spool(const char *name, size_t n, double shift)
{
    fs_spool *sp = NULL;
    fs_spool_recovery rec;
    fs_strbuf b;
    char err[320];
    if (fs_spool_open(g_dir, name, &sp, &rec, err, sizeof err) != 0) {
        fail_msg("%s", err);
    }
    fs_strbuf_init(&b, 4096);
    for (size_t i = 0; i < n; i++) {
        char p[96];
        int len = snprintf(p, sizeof p, "[%.17g,%.17g]", shift + gauss(), shift + gauss());
        fs_spool_frame_put(&b, p, (size_t)len, 0);
    }
    if (n > 0) {
        assert_int_equal(fs_spool_append(sp, (unsigned char *)b.p, b.len, err, sizeof err), 0);
        assert_int_equal(fs_spool_sync(sp, err, sizeof err), 0);
    }
    fs_strbuf_free(&b);
    return sp;
}

static fs_schema *schema_xy(void)
{
    fs_schema *s = NULL;
    FS_ASSERT_OK(fs_schema_create(&s));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "x", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "y", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    return s;
}

static fs_spec *small_spec(void)
{
    static const char text[] = "{\"preset\":\"realnvp\",\"blocks\":2,\"hidden\":[16]}";
    fs_spec *spec = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(text, strlen(text), &spec, NULL));
    return spec;
}

static fs_refit_job *new_job(fs_spool *sp, const fs_schema *schema, const fs_spec *spec)
{
    fs_refit_job *job = calloc(1, sizeof *job);
    fs_config cfg;
    fs_config_defaults(&cfg);
    job->cfg = cfg.trainer;
    /* Spools of a few hundred records: the smallest minimums the keys allow. */
    job->cfg.min_refit_records = 100;
    job->cfg.min_holdout_rows = 50;
    job->cfg.epochs = 3;
    job->cfg.lr = 1e-3;
    job->spool = sp;
    job->schema = schema;
    job->spec = spec;
    snprintf(job->name, sizeof job->name, "t");
    snprintf(job->trigger, sizeof job->trigger, "manual");
    return job;
}

/* Version 1 trained from a fresh spool of n N(0, I) rows (the model's reference). */
static fs_model *first_version(const char *name, size_t n, const fs_schema *schema,
                               const fs_spec *spec, fs_refit_cancel *cancel)
{
    fs_spool *sp = make_spool(name, n, 0.0);
    fs_refit_job *job = new_job(sp, schema, spec);
    fs__refit_run(job, cancel);
    assert_int_equal(job->decision, FS_REFIT_ACCEPTED);
    fs_model *v1 = fs_model_ref(job->candidate);
    fs__refit_job_free(job);
    fs_spool_close(sp);
    return v1;
}

static void test_refit_runs_first_version_then_judges(void **state)
{
    (void)state;
    fs_refit_cancel cancel;
    fs__refit_cancel_init(&cancel);
    fs_schema *schema = schema_xy();
    fs_spec *spec = small_spec();
    fs_spool *sp = make_spool("first", 600, 0.0);
    /* No served model: the candidate is the first version. */
    fs_refit_job *job = new_job(sp, schema, spec);
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_ACCEPTED);
    assert_non_null(job->candidate);
    assert_true(isfinite(job->candidate_nll));
    assert_true(isnan(job->current_nll));
    assert_int_equal(job->rows, 600);
    assert_int_equal(job->holdout_rows, 120);
    /* 120 holdout rows and a 48-row engine split: the threshold comes from the holdout, not
     * from the 480 training rows in-sample. */
    assert_int_equal(job->calibration_rows, 120);
    fs_model *v1 = fs_model_ref(job->candidate);
    fs__refit_job_free(job);

    /* Served v1; a negative margin no candidate can meet: rejected, nothing to publish. */
    job = new_job(sp, NULL, NULL);
    job->current = fs_model_ref(v1);
    job->version = 1;
    job->cfg.accept_margin_nats = -1e3;
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_REJECTED);
    assert_null(job->candidate);
    assert_true(isfinite(job->candidate_nll) && isfinite(job->current_nll));
    assert_true(job->warm);
    fs__refit_job_free(job);

    /* From scratch with the served model's spec (its header), a generous margin. */
    job = new_job(sp, NULL, NULL);
    job->current = fs_model_ref(v1);
    job->cfg.warm_start = 0;
    job->cfg.accept_margin_nats = 1e3;
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_ACCEPTED);
    assert_false(job->warm);
    fs__refit_job_free(job);

    /* The contamination guard: shifted records score above v1's threshold and are left out. */
    fs_spool_close(sp);
    sp = make_spool("mixed", 0, 0.0);
    fs_spool_close(sp);
    sp = make_spool("guard", 400, 8.0);
    job = new_job(sp, NULL, NULL);
    job->current = fs_model_ref(v1);
    fs__refit_run(job, &cancel);
    assert_true(job->excluded >= 390);
    assert_int_equal(job->decision, FS_REFIT_FAILED); /* what is left is too little */
    assert_non_null(strstr(job->reason, "too few records"));
    assert_non_null(strstr(job->reason, "excluded as anomalies"));
    fs__refit_job_free(job);
    /* ... unless the operator lets them in. */
    job = new_job(sp, NULL, NULL);
    job->current = fs_model_ref(v1);
    job->cfg.exclude_anomalies = 0;
    job->cfg.accept_margin_nats = 0;
    job->cfg.epochs = 10;
    job->cfg.lr = 3e-3;
    fs__refit_run(job, &cancel);
    assert_int_equal(job->excluded, 0);
    assert_int_equal(job->decision, FS_REFIT_ACCEPTED);
    assert_true(job->candidate_nll + job->noise_nats < job->current_nll);
    assert_true(job->noise_nats > 0);
    fs__refit_job_free(job);

    fs_model_unref(v1);
    fs_spool_close(sp);
    fs_spec_free(spec);
    fs_schema_free(schema);
    fs__refit_cancel_deinit(&cancel);
}

static void test_refit_too_few_rows_and_cancel_fail(void **state)
{
    (void)state;
    fs_refit_cancel cancel;
    fs__refit_cancel_init(&cancel);
    fs_schema *schema = schema_xy();
    fs_spec *spec = small_spec();
    fs_spool *sp = make_spool("one", 1, 0.0);
    fs_refit_job *job = new_job(sp, schema, spec);
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_FAILED);
    assert_non_null(strstr(job->reason, "too few records"));
    assert_null(job->candidate);
    fs__refit_job_free(job);
    fs_spool_close(sp);
    sp = make_spool("cancel", 300, 0.0);
    fs__refit_cancel(&cancel);
    job = new_job(sp, schema, spec);
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_FAILED);
    assert_non_null(strstr(job->reason, "cancelled"));
    fs__refit_job_free(job);
    fs_spool_close(sp);
    fs_spec_free(spec);
    fs_schema_free(schema);
    fs__refit_cancel_deinit(&cancel);
}

/*
 * The minimums, for every trigger: a refit of 4 records (3 to train, 1 to judge) published a
 * threshold from 3 rows that flagged 4952 of 5000 training rows (a user's report).
 */
static void test_refit_minimums_fail_naming_the_keys(void **state)
{
    (void)state;
    fs_refit_cancel cancel;
    fs__refit_cancel_init(&cancel);
    fs_schema *schema = schema_xy();
    fs_spec *spec = small_spec();
    fs_model *v1 = first_version("v1data", 600, schema, spec, &cancel);

    fs_config defaults;
    fs_config_defaults(&defaults);
    fs_spool *sp = make_spool("four", 4, 0.0);
    fs_refit_job *job = new_job(sp, NULL, NULL);
    job->cfg.min_refit_records = defaults.trainer.min_refit_records;
    job->cfg.min_holdout_rows = defaults.trainer.min_holdout_rows;
    job->current = fs_model_ref(v1);
    job->version = 1;
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_FAILED);
    assert_null(job->candidate);
    assert_int_equal(job->rows, 4);
    assert_non_null(strstr(job->reason, "4 usable rows"));
    assert_non_null(strstr(job->reason, "min_refit_records is 1000"));
    fs__refit_job_free(job);
    fs_spool_close(sp);

    /* Enough records, but 400 * 0.2 = 80 holdout rows: too few to judge and calibrate. */
    sp = make_spool("smallhold", 400, 0.0);
    job = new_job(sp, NULL, NULL);
    job->cfg.min_holdout_rows = 200;
    job->current = fs_model_ref(v1);
    job->version = 1;
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_FAILED);
    assert_null(job->candidate);
    assert_int_equal(job->holdout_rows, 80);
    assert_non_null(strstr(job->reason, "min_holdout_rows is 200"));
    fs__refit_job_free(job);
    fs_spool_close(sp);

    fs_model_unref(v1);
    fs_spec_free(spec);
    fs_schema_free(schema);
    fs__refit_cancel_deinit(&cancel);
}

/* The share of n fresh N(0, I) rows that m flags. */
static double flagged_share(const fs_model *m, size_t n)
{
    fs_workspace *ws = NULL;
    double *x = malloc(2 * n * sizeof *x);
    fs_score *s = malloc(n * sizeof *s);
    size_t flagged = 0;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    for (size_t i = 0; i < 2 * n; i++) {
        x[i] = gauss();
    }
    for (size_t i = 0; i < n; i += 256) {
        size_t k = n - i < 256 ? n - i : 256;
        FS_ASSERT_OK(fs_model_score(m, ws, x + 2 * i, k, s + i));
    }
    for (size_t i = 0; i < n; i++) {
        flagged += (s[i].flags & FS_SCORE_ANOMALY) != 0;
    }
    fs_workspace_free(ws);
    free(x);
    free(s);
    return (double)flagged / (double)n;
}

/*
 * With the contamination guard on, the holdout lacks the records above the served threshold;
 * calibrated on it alone, each version flagged about (1 - q) more of ordinary traffic than
 * the last. The guarded-out records of the holdout's stretch, up to (1 - q) of it, calibrate
 * too: a refit on the same distribution keeps the flagged share where it was.
 */
static void test_refit_calibration_counts_guarded_tail(void **state)
{
    (void)state;
    fs_refit_cancel cancel;
    fs__refit_cancel_init(&cancel);
    fs_schema *schema = schema_xy();
    fs_spec *spec = small_spec();
    fs_model *v1 = first_version("calib1", 3000, schema, spec, &cancel);

    fs_spool *sp = make_spool("calib2", 6000, 0.0);
    fs_refit_job *job = new_job(sp, NULL, NULL);
    job->current = fs_model_ref(v1);
    job->version = 1;
    job->cfg.accept_margin_nats = 1e3; /* publish whatever it is */
    fs__refit_run(job, &cancel);
    assert_int_equal(job->decision, FS_REFIT_ACCEPTED);
    assert_true(job->excluded > 0);
    /* The holdout and about (1 - 0.99) of its stretch from the guarded-out records. */
    uint64_t extra = job->calibration_rows - job->holdout_rows;
    assert_true(extra > 0);
    assert_true(extra <= job->excluded);
    assert_true(extra <= (uint64_t)(0.02 * (double)job->holdout_rows) + 1);
    double before = flagged_share(v1, 40000), after = flagged_share(job->candidate, 40000);
    print_message("flagged share of fresh rows: v1 %.4f, refit %.4f (calibration rows %llu)\n",
                  before, after, (unsigned long long)job->calibration_rows);
    /* The design share is 1 - 0.99 = 1% (about +-0.3% from 1,200 calibration rows); the
     * holdout alone gave 1.95% here, with v1 at 0.77%. */
    assert_true(after < 0.015);
    fs__refit_job_free(job);
    fs_spool_close(sp);
    fs_model_unref(v1);
    fs_spec_free(spec);
    fs_schema_free(schema);
    fs__refit_cancel_deinit(&cancel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refit_holdout_rows),
        cmocka_unit_test(test_refit_trimmed_mean_matches_engine_rule),
        cmocka_unit_test(test_refit_decide),
        cmocka_unit_test(test_refit_decide_needs_more_than_noise),
        cmocka_unit_test(test_refit_noise_is_trimmed_standard_error),
        cmocka_unit_test(test_refit_decode_learns_levels),
        cmocka_unit_test(test_refit_runs_first_version_then_judges),
        cmocka_unit_test(test_refit_too_few_rows_and_cancel_fail),
        cmocka_unit_test(test_refit_minimums_fail_naming_the_keys),
        cmocka_unit_test(test_refit_calibration_counts_guarded_tail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
