/*
 * test_metrics.c: the Prometheus exposition (server/metrics.c): HELP and TYPE before each
 * family, label escaping, counters, histograms that stay consistent (+Inf == _count) while
 * other threads observe, and per-model series at zero from the start.
 */
/* labels: unit concurrency */
#include "fs_test.h"

#include <pthread.h>

#include "metrics.h"

static const char *const routes[] = { "other", "/healthz", "/v1/models/{name}/score" };

static char *render(fs_metrics *m)
{
    fs_metrics_gauges g = { 3, 4, 1, 2, 5 };
    fs_strbuf b;
    fs_strbuf_init(&b, 1024);
    fs_metrics_render(m, &g, &b);
    assert_false(b.failed);
    return fs_strbuf_take(&b, NULL);
}

/* The value of the sample line that starts with prefix (full name and labels), or -1. */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);
    while ((p = strstr(p, prefix)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p += n;
    }
    return -1;
}

static void test_label_escaping(void **state)
{
    (void)state;
    fs_strbuf b;
    fs_strbuf_init(&b, 8);
    fs_metrics_put_label_value(&b, "a\"b\\c\nd");
    assert_string_equal(b.p, "a\\\"b\\\\c\\nd");
    fs_strbuf_free(&b);
}

static void test_counters_and_families(void **state)
{
    (void)state;
    fs_metrics *m = fs_metrics_create(routes, 3);
    assert_non_null(m);
    fs_metrics_http_request(m, 2, "POST", 200);
    fs_metrics_http_request(m, 2, "POST", 200);
    fs_metrics_http_request(m, 2, "POST", 400);
    fs_metrics_http_request(m, 1, "DELETE", 405);
    fs_metrics_http_request(m, 1, "GET", 299);
    fs_metrics_http_error(m, FS_EC_INVALID_JSON);
    fs_metrics_http_error(m, "something-new");
    fs_model_metrics *mm = fs_metrics_model(m, "we\"ird");
    assert_ptr_equal(mm, fs_metrics_model(m, "we\"ird"));
    atomic_store(&mm->version, 7);
    char *text = render(m);
    assert_true(sample(text, "flowscore_http_requests_total{handler=\"/v1/models/{name}/score\","
                             "method=\"POST\",code=\"200\"}") == 2);
    assert_true(sample(text, "flowscore_http_requests_total{handler=\"/v1/models/{name}/score\","
                             "method=\"POST\",code=\"400\"}") == 1);
    assert_true(sample(text, "flowscore_http_requests_total{handler=\"/healthz\","
                             "method=\"other\",code=\"405\"}") == 1);
    assert_true(sample(text, "flowscore_http_requests_total{handler=\"/healthz\","
                             "method=\"GET\",code=\"other\"}") == 1);
    assert_true(sample(text, "flowscore_http_errors_total{code=\"invalid_json\"}") == 1);
    assert_true(sample(text, "flowscore_http_errors_total{code=\"other\"}") == 1);
    assert_true(sample(text, "flowscore_http_errors_total{code=\"body_too_large\"}") == 0);
    /* A new model's series exist at zero before any request (Triton's #2755). */
    assert_true(sample(text, "flowscore_inference_rows_total{model=\"we\\\"ird\",op=\"score\"}") ==
                0);
    assert_true(sample(text, "flowscore_model_reload_failures_total{model=\"we\\\"ird\"}") == 0);
    assert_true(sample(text, "flowscore_batch_rows_count{model=\"we\\\"ird\"}") == 0);
    assert_true(sample(text, "flowscore_model_info{model=\"we\\\"ird\",version=\"7\"}") == 1);
    assert_true(sample(text, "flowscore_queue_depth") == 3);
    assert_true(sample(text, "flowscore_worker_threads") == 4);
    assert_true(sample(text, "process_resident_memory_bytes") > 0);
    assert_true(sample(text, "process_max_fds") > 0);
    assert_true(sample(text, "process_start_time_seconds") > 1e9);
    /* HELP and TYPE come once per family, before its samples. */
    const char *families[] = { "flowscore_http_requests_total", "flowscore_batch_rows",
                               "flowscore_http_request_duration_seconds", "process_open_fds" };
    for (size_t i = 0; i < 4; i++) {
        char help[128], type[128], first[128];
        snprintf(help, sizeof help, "# HELP %s ", families[i]);
        snprintf(type, sizeof type, "# TYPE %s ", families[i]);
        snprintf(first, sizeof first, "\n%s", families[i]);
        const char *h = strstr(text, help), *t = strstr(text, type), *s = strstr(text, first);
        assert_non_null(h);
        assert_non_null(t);
        assert_null(strstr(h + 1, help));
        assert_true(h < t && (s == NULL || t < s));
    }
    assert_non_null(strstr(text, "# TYPE flowscore_batch_rows histogram"));
    free(text);
    fs_metrics_free(m);
}

typedef struct observer {
    fs_histogram *h;
    int n;
} observer;

static void *observe(void *arg)
{
    observer *o = arg;
    for (int i = 0; i < o->n; i++) {
        fs_histogram_observe(o->h, (double)(i % 300));
    }
    return NULL;
}

static void test_histogram_consistent_under_updates(void **state)
{
    (void)state;
    fs_metrics *m = fs_metrics_create(routes, 3);
    fs_model_metrics *mm = fs_metrics_model(m, "w");
    observer o = { &mm->batch_rows, 200000 };
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, observe, &o), 0);
    }
    for (int k = 0; k < 50; k++) {
        char *text = render(m);
        double inf = sample(text, "flowscore_batch_rows_bucket{model=\"w\",le=\"+Inf\"}");
        double count = sample(text, "flowscore_batch_rows_count{model=\"w\"}");
        double b1 = sample(text, "flowscore_batch_rows_bucket{model=\"w\",le=\"1\"}");
        double b256 = sample(text, "flowscore_batch_rows_bucket{model=\"w\",le=\"256\"}");
        assert_true(inf == count);
        assert_true(b1 <= b256 && b256 <= inf);
        free(text);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    char *text = render(m);
    assert_true(sample(text, "flowscore_batch_rows_count{model=\"w\"}") == 400000);
    /* Values 0 and 1 fall at or below le="1": 2 of every 300, per thread. */
    assert_true(sample(text, "flowscore_batch_rows_bucket{model=\"w\",le=\"1\"}") ==
                2.0 * (2 * (200000 / 300) + 2));
    free(text);
    fs_metrics_http_duration(m, 2, 0.003);
    text = render(m);
    assert_true(sample(text, "flowscore_http_request_duration_seconds_bucket{handler=\"/v1/"
                             "models/{name}/score\",le=\"0.0025\"}") == 0);
    assert_true(sample(text, "flowscore_http_request_duration_seconds_bucket{handler=\"/v1/"
                             "models/{name}/score\",le=\"0.005\"}") == 1);
    free(text);
    fs_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_counters_and_families),
        cmocka_unit_test(test_histogram_consistent_under_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
