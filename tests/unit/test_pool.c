/*
 * test_pool.c: the scoring workers and the dynamic batcher (server/pool.c) on a real libuv
 * loop: many concurrent score jobs are coalesced into fewer engine calls, and every job's
 * answer equals scoring its own rows alone; a full queue refuses; queued jobs can be
 * cancelled with 503; the pool stops cleanly.
 */
/* labels: unit concurrency */
#include "fs_test.h"

#include <unistd.h>

#include "pool.h"

#define N_JOBS 300

static int n_done;

static void on_done(fs_job *job)
{
    (void)job;
    n_done++;
}

static fs_model *make_model(void)
{
    /* D=4, H=8, K=1 with deterministic weights. */
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json,
                                "{\"D\":4,\"H\":8,\"K\":1,\"d1\":2,\"d2\":2,\"clamp\":2.0,"
                                "\"blocks\":[{\"perm\":null,\"layers\":[");
    int rows[3] = { 8, 8, 4 }, cols[3] = { 2, 8, 8 };
    for (int l = 0; l < 3; l++) {
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"W\":[", l > 0 ? "," : "");
        for (int r = 0; r < rows[l]; r++) {
            n += (size_t)snprintf(json + n, sizeof json - n, "%s[", r > 0 ? "," : "");
            for (int c = 0; c < cols[l]; c++) {
                n += (size_t)snprintf(json + n, sizeof json - n, "%s%g", c > 0 ? "," : "",
                                      0.25 * (double)((r * 5 + c * 3 + l) % 7 - 3));
            }
            n += (size_t)snprintf(json + n, sizeof json - n, "]");
        }
        n += (size_t)snprintf(json + n, sizeof json - n, "],\"b\":[");
        for (int r = 0; r < rows[l]; r++) {
            n += (size_t)snprintf(json + n, sizeof json - n, "%s%g", r > 0 ? "," : "",
                                  0.1 * (double)(r % 3));
        }
        n += (size_t)snprintf(json + n, sizeof json - n, "]}");
    }
    snprintf(json + n, sizeof json - n, "]}]}");
    fs_model *m = NULL;
    fs_diag diag;
    FS_ASSERT_OK(fs_model_import_peer_json(json, strlen(json), &m, &diag));
    return m;
}

static double row_value(int job, int r, int f)
{
    return 0.37 * (double)((job * 13 + r * 7 + f * 3) % 17) - 3.0;
}

static void test_batched_equals_alone(void **state)
{
    (void)state;
    uv_loop_t loop;
    fs_pool *pool = NULL;
    fs_pool_params pp = { 2, 64, 2000, 10000, 0 };
    fs_json_limits lim = { 64, 4096, 1000 };
    fs_model *m = make_model();
    fs_metrics *metrics = fs_metrics_create((const char *const[]){ "x" }, 1);
    fs_model_metrics *mm = fs_metrics_model(metrics, "m");
    fs_job *jobs = calloc(N_JOBS, sizeof *jobs);
    char **bodies = calloc(N_JOBS, sizeof *bodies);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(fs_pool_create(&loop, &pp, &pool), 0);
    for (int j = 0; j < N_JOBS; j++) {
        int nr = 1 + j % 3;
        bodies[j] = malloc(1024);
        size_t n = (size_t)snprintf(bodies[j], 1024, "{\"records\":[");
        for (int r = 0; r < nr; r++) {
            n += (size_t)snprintf(bodies[j] + n, 1024 - n, "%s[%.17g,%.17g,%.17g,%.17g]",
                                  r > 0 ? "," : "", row_value(j, r, 0), row_value(j, r, 1),
                                  row_value(j, r, 2), row_value(j, r, 3));
        }
        snprintf(bodies[j] + n, 1024 - n, "]}");
        fs_job *job = &jobs[j];
        job->op = FS_OP_SCORE;
        job->model = fs_model_ref(m);
        job->version = 1;
        job->model_name = "m";
        job->mm = mm;
        job->body = bodies[j];
        job->body_len = strlen(bodies[j]);
        job->lim = &lim;
        job->done = on_done;
        assert_int_equal(fs_pool_submit(pool, job), 0);
    }
    n_done = 0;
    while (n_done < N_JOBS) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    fs_workspace *ws = NULL;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    for (int j = 0; j < N_JOBS; j++) {
        int nr = 1 + j % 3;
        double x[12];
        fs_score want[3];
        for (int r = 0; r < nr; r++) {
            for (int f = 0; f < 4; f++) {
                x[r * 4 + f] = row_value(j, r, f);
            }
        }
        FS_ASSERT_OK(fs_model_score(m, ws, x, (size_t)nr, want));
        assert_int_equal(jobs[j].status, 200);
        cJSON *root = cJSON_ParseWithLength(jobs[j].resp, jobs[j].resp_len);
        assert_non_null(root);
        cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "results");
        assert_int_equal(cJSON_GetArraySize(res), nr);
        for (int r = 0; r < nr; r++) {
            double got =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(res, r), "score")->valuedouble;
            /* Alone or in a batch of up to 64 rows: the same number (row independence). */
            FS_ASSERT_NEAR(got, want[r].score, 1e-6 * fmax(1.0, fabs(want[r].score)));
        }
        cJSON_Delete(root);
        fs_model_unref(jobs[j].model);
        fs_api_job_release(&jobs[j]);
        free(bodies[j]);
    }
    uint64_t calls = atomic_load(&mm->executions);
    print_message("%d jobs in %llu engine calls\n", N_JOBS, (unsigned long long)calls);
    assert_true(calls < N_JOBS);
    assert_int_equal(atomic_load(&mm->rows[FS_OP_SCORE]), N_JOBS * 2);
    fs_pool_stop(pool);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    fs_workspace_free(ws);
    free(jobs);
    free(bodies);
    fs_metrics_free(metrics);
    fs_model_unref(m);
}

static void test_queue_full_and_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    fs_pool *pool = NULL;
    /* A long batching delay keeps jobs queued while we cancel them. */
    fs_pool_params pp = { 1, 1000000, 1000000, 4, 0 };
    fs_json_limits lim = { 64, 4096, 1000 };
    fs_model *m = make_model();
    fs_job jobs[5];
    const char *body = "{\"records\":[[1,2,3,4]]}";
    memset(jobs, 0, sizeof jobs);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(fs_pool_create(&loop, &pp, &pool), 0);
    for (int j = 0; j < 5; j++) {
        jobs[j].op = FS_OP_SCORE;
        jobs[j].model = m;
        jobs[j].model_name = "m";
        jobs[j].body = body;
        jobs[j].body_len = strlen(body);
        jobs[j].lim = &lim;
        jobs[j].done = on_done;
        assert_int_equal(fs_pool_submit(pool, &jobs[j]), j < 4 ? 0 : -1);
    }
    /* Let the worker parse all four into the batch queue, where the delay holds them. */
    for (int i = 0; i < 2000 && (fs_pool_busy(pool) != 0 || fs_pool_queue_depth(pool) != 4); i++) {
        usleep(1000);
    }
    fs_pool_cancel_queued(pool);
    n_done = 0;
    while (n_done < 4) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    for (int j = 0; j < 4; j++) {
        assert_int_equal(jobs[j].status, 503);
        assert_non_null(strstr(jobs[j].resp, "shutting down"));
        fs_api_job_release(&jobs[j]);
    }
    assert_int_equal(fs_pool_pending(pool), 0);
    fs_pool_stop(pool);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    fs_model_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_queue_full_and_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
