/*
 * test_registry.c: the model repository (server/registry.c, registry_scan.c) on a real libuv
 * loop: the start-up round, a refused file that leaves the served model in place and is
 * counted once, the trainer's publish path (next version written atomically, then swapped
 * in), a publication with another schema refused, and a clean teardown (uv_loop_close == 0).
 */
/* labels: unit */
#include "fs_test.h"

#include <unistd.h>

#include "registry.h"

typedef struct waited {
    fs_reload_waiter w;
    int done, ok;
} waited;

static unsigned rounds_done;

static void on_round(void *arg, unsigned kinds)
{
    (void)arg;
    rounds_done |= kinds;
}

static void on_done(fs_reload_waiter *w, fs_entry *e, int ok)
{
    waited *x = (waited *)w;
    (void)e;
    x->done = 1;
    x->ok = ok;
}

/* A small ref-realnvp export with d fields x0.. (weights from a fixed formula). */
static fs_model *make_model(int d, double shift)
{
    char *json = malloc(1 << 16);
    size_t n = 0;
    int h = 4, d1 = d / 2, d2 = d - d1;
    assert_non_null(json);
    n += (size_t)snprintf(json + n, (1 << 16) - n,
                          "{\"D\":%d,\"H\":%d,\"K\":2,\"d1\":%d,\"d2\":%d,\"clamp\":2.0,"
                          "\"blocks\":[",
                          d, h, d1, d2);
    for (int k = 0; k < 2; k++) {
        int rows[3] = { h, h, 2 * d2 }, cols[3] = { d1, h, h };
        n += (size_t)snprintf(json + n, (1 << 16) - n, "%s{\"perm\":", k > 0 ? "," : "");
        if (k == 0) {
            n += (size_t)snprintf(json + n, (1 << 16) - n, "null");
        } else {
            n += (size_t)snprintf(json + n, (1 << 16) - n, "[");
            for (int i = 0; i < d; i++) {
                n += (size_t)snprintf(json + n, (1 << 16) - n, "%s%d", i > 0 ? "," : "", d - 1 - i);
            }
            n += (size_t)snprintf(json + n, (1 << 16) - n, "]");
        }
        n += (size_t)snprintf(json + n, (1 << 16) - n, ",\"layers\":[");
        for (int l = 0; l < 3; l++) {
            n += (size_t)snprintf(json + n, (1 << 16) - n, "%s{\"W\":[", l > 0 ? "," : "");
            for (int r = 0; r < rows[l]; r++) {
                n += (size_t)snprintf(json + n, (1 << 16) - n, "%s[", r > 0 ? "," : "");
                for (int c = 0; c < cols[l]; c++) {
                    n += (size_t)snprintf(json + n, (1 << 16) - n, "%s%g", c > 0 ? "," : "",
                                          0.125 * (double)((r * 7 + c * 3 + k + l) % 5 - 2));
                }
                n += (size_t)snprintf(json + n, (1 << 16) - n, "]");
            }
            n += (size_t)snprintf(json + n, (1 << 16) - n, "],\"b\":[");
            for (int r = 0; r < rows[l]; r++) {
                n += (size_t)snprintf(json + n, (1 << 16) - n, "%s%g", r > 0 ? "," : "",
                                      shift * (double)(r % 3));
            }
            n += (size_t)snprintf(json + n, (1 << 16) - n, "]}");
        }
        n += (size_t)snprintf(json + n, (1 << 16) - n, "]}");
    }
    snprintf(json + n, (1 << 16) - n, "]}");
    fs_model *m = NULL;
    fs_diag diag;
    fs_err err = fs_model_import_peer_json(json, strlen(json), &m, &diag);
    if (err != FS_OK) {
        fail_msg("import: %s", diag.msg);
    }
    free(json);
    return m;
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    for (int i = 0; i < 100000 && !*flag; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_true(*flag);
}

static void test_registry_round_refuse_publish(void **state)
{
    (void)state;
    char dir[] = "/tmp/fs-reg-XXXXXX";
    char path[256];
    uv_loop_t loop;
    fs_config cfg;
    fs_diag diag;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    fs_model *m1 = make_model(2, 0.0), *m2 = make_model(2, 0.25), *m3 = make_model(3, 0.0);
    snprintf(path, sizeof path, "%s/m/1.fsm", dir);
    FS_ASSERT_OK(fs_model_save(m1, path, &diag));
    snprintf(path, sizeof path, "%s/m/2.fsm", dir);
    FILE *f = fopen(path, "wb");
    fputs("not a model", f);
    fclose(f);

    fs_config_defaults(&cfg);
    snprintf(cfg.models_dir, sizeof cfg.models_dir, "%s", dir);
    cfg.watch = 0;
    cfg.rescan_interval_s = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    fs_metrics *metrics = fs_metrics_create((const char *const[]){ "x" }, 1);
    fs_registry *reg = fs_registry_create(&loop, &cfg, metrics, on_round, NULL);
    fs_registry_watch(reg);
    rounds_done = 0;
    fs_registry_round(reg, FS_ROUND_START);
    int started = 0;
    for (int i = 0; i < 100000 && !(rounds_done & FS_ROUND_START); i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    started = (rounds_done & FS_ROUND_START) != 0;
    assert_true(started);
    fs_entry *e = fs_registry_find(reg, "m", 1);
    assert_non_null(e);
    /* 2.fsm is refused; the round falls back to 1.fsm. */
    assert_int_equal(e->version, 1);
    assert_true(fs_registry_ready(reg));
    assert_int_equal(atomic_load(&e->mm->reload_failures), 1);
    assert_non_null(strstr(e->last_error, "2.fsm"));

    /* A rescan does not count the unchanged bad file again. */
    rounds_done = 0;
    fs_registry_round(reg, FS_ROUND_RESCAN);
    for (int i = 0; i < 100000 && !(rounds_done & FS_ROUND_RESCAN); i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(atomic_load(&e->mm->reload_failures), 1);

    /* A forced reload tries it again and says it failed; version 1 stays. */
    waited w = { { on_done, NULL, NULL, NULL }, 0, 0 };
    fs_registry_reload(reg, e, &w.w);
    run_until(&loop, &w.done);
    assert_false(w.ok);
    assert_int_equal(e->version, 1);
    assert_int_equal(atomic_load(&e->mm->reload_failures), 2);

    /* The trainer's path: the next version after every file on disk, written and served. */
    waited p = { { on_done, NULL, fs_model_ref(m2), NULL }, 0, 0 };
    assert_int_equal(fs_registry_publish(reg, e, &p.w), 0);
    run_until(&loop, &p.done);
    assert_true(p.ok);
    assert_int_equal(e->version, 3);
    assert_ptr_equal(e->current, m2);
    snprintf(path, sizeof path, "%s/m/3.fsm", dir);
    fs_model *back = NULL;
    FS_ASSERT_OK(fs_model_load(path, &back, &diag));
    fs_model_unref(back);
    assert_int_equal(atomic_load(&e->mm->version), 3);

    /* Another schema is refused. */
    waited q = { { on_done, NULL, fs_model_ref(m3), NULL }, 0, 0 };
    assert_int_equal(fs_registry_publish(reg, e, &q.w), 0);
    run_until(&loop, &q.done);
    assert_false(q.ok);
    assert_int_equal(e->version, 3);
    assert_non_null(strstr(e->last_error, "schema changed"));
    snprintf(path, sizeof path, "%s/m/4.fsm", dir);
    assert_int_equal(access(path, F_OK), -1);

    fs_registry_close(reg);
    uv_run(&loop, UV_RUN_DEFAULT);
    fs_registry_free(reg);
    fs_metrics_free(metrics);
    assert_int_equal(uv_loop_close(&loop), 0);
    fs_model_unref(m1);
    fs_model_unref(m2);
    fs_model_unref(m3);
    for (int v = 1; v <= 3; v++) {
        snprintf(path, sizeof path, "%s/m/%d.fsm", dir, v);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/m", dir);
    rmdir(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_round_refuse_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
