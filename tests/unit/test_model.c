/* labels: unit numeric */
/*
 * test_model.c: models as users meet them: import of a PyTorch ref-realnvp export (parity with
 * an independent float64 implementation of bench/SPEC.md and with the golden file), the model
 * file (bit-exact round trip, and each kind of damage refused with its own error), scoring
 * flags, encode/decode, sampling and batch independence.
 */
#include "fs_test.h"

#include <cjson/cJSON.h>
#include <zlib.h>

#include <stdint.h>
#include <unistd.h>

#define D 6
#define H 8
#define K 3

/* A small random ref-realnvp export (SPEC.md section 5) with non-trivial last layers. */
typedef struct peer {
    int perm[K][D];
    double W0[K][H][D / 2], b0[K][H], W1[K][H][H], b1[K][H], W2[K][2 * (D - D / 2)][H],
        b2[K][2 * (D - D / 2)];
} peer;

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* Round to float32 so that the JSON values are exact float32 numbers. */
static double f32(double v)
{
    return (double)(float)v;
}

static void peer_make(peer *p, uint64_t seed)
{
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < D; j++) {
            p->perm[k][j] = j;
        }
        for (int j = D - 1; j > 0; j--) {
            int i = (int)(urand(&seed) * (j + 1));
            int t = p->perm[k][j];
            p->perm[k][j] = p->perm[k][i];
            p->perm[k][i] = t;
        }
        for (int i = 0; i < H; i++) {
            for (int j = 0; j < D / 2; j++) {
                p->W0[k][i][j] = f32(urand(&seed) - 0.5);
            }
            for (int j = 0; j < H; j++) {
                p->W1[k][i][j] = f32((urand(&seed) - 0.5) * 0.7);
            }
            p->b0[k][i] = f32(urand(&seed) - 0.5);
            p->b1[k][i] = f32(urand(&seed) - 0.5);
        }
        for (int i = 0; i < 2 * (D - D / 2); i++) {
            for (int j = 0; j < H; j++) {
                p->W2[k][i][j] = f32((urand(&seed) - 0.5) * 0.7);
            }
            p->b2[k][i] = f32(urand(&seed) - 0.5);
        }
    }
}

static cJSON *matrix(const double *v, int rows, int cols)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < rows; i++) {
        cJSON *r = cJSON_CreateArray();
        for (int j = 0; j < cols; j++) {
            cJSON_AddItemToArray(r, cJSON_CreateNumber(v[i * cols + j]));
        }
        cJSON_AddItemToArray(a, r);
    }
    return a;
}

static cJSON *vector(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    }
    return a;
}

static char *peer_json(const peer *p)
{
    int d2 = D - D / 2;
    cJSON *root = cJSON_CreateObject(), *blocks = cJSON_AddArrayToObject(root, "blocks");
    cJSON_AddNumberToObject(root, "D", D);
    cJSON_AddNumberToObject(root, "H", H);
    cJSON_AddNumberToObject(root, "K", K);
    cJSON_AddNumberToObject(root, "d1", D / 2);
    cJSON_AddNumberToObject(root, "d2", d2);
    cJSON_AddNumberToObject(root, "clamp", 2.0);
    for (int k = 0; k < K; k++) {
        cJSON *b = cJSON_CreateObject(), *layers = cJSON_CreateArray(), *l;
        if (k == 0) {
            cJSON_AddNullToObject(b, "perm");
        } else {
            cJSON *pa = cJSON_AddArrayToObject(b, "perm");
            for (int j = 0; j < D; j++) {
                cJSON_AddItemToArray(pa, cJSON_CreateNumber(p->perm[k][j]));
            }
        }
        l = cJSON_CreateObject();
        cJSON_AddItemToObject(l, "W", matrix(&p->W0[k][0][0], H, D / 2));
        cJSON_AddItemToObject(l, "b", vector(p->b0[k], H));
        cJSON_AddItemToArray(layers, l);
        l = cJSON_CreateObject();
        cJSON_AddItemToObject(l, "W", matrix(&p->W1[k][0][0], H, H));
        cJSON_AddItemToObject(l, "b", vector(p->b1[k], H));
        cJSON_AddItemToArray(layers, l);
        l = cJSON_CreateObject();
        cJSON_AddItemToObject(l, "W", matrix(&p->W2[k][0][0], 2 * d2, H));
        cJSON_AddItemToObject(l, "b", vector(p->b2[k], 2 * d2));
        cJSON_AddItemToArray(layers, l);
        cJSON_AddItemToObject(b, "layers", layers);
        cJSON_AddItemToArray(blocks, b);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* SPEC.md section 2 in plain float64 loops: the independent reference. */
static double peer_log_prob(const peer *p, const double *x_in)
{
    double x[D], y[D], h1[H], h2[H], o[2 * D], logdet = 0.0, sq = 0.0;
    int d1 = D / 2, d2 = D - d1;
    memcpy(x, x_in, sizeof x);
    for (int k = 0; k < K; k++) {
        if (k > 0) {
            for (int j = 0; j < D; j++) {
                y[j] = x[p->perm[k][j]];
            }
            memcpy(x, y, sizeof x);
        }
        for (int i = 0; i < H; i++) {
            double v = p->b0[k][i];
            for (int j = 0; j < d1; j++) {
                v += p->W0[k][i][j] * x[j];
            }
            h1[i] = v > 0 ? v : 0;
        }
        for (int i = 0; i < H; i++) {
            double v = p->b1[k][i];
            for (int j = 0; j < H; j++) {
                v += p->W1[k][i][j] * h1[j];
            }
            h2[i] = v > 0 ? v : 0;
        }
        for (int i = 0; i < 2 * d2; i++) {
            double v = p->b2[k][i];
            for (int j = 0; j < H; j++) {
                v += p->W2[k][i][j] * h2[j];
            }
            o[i] = v;
        }
        for (int j = 0; j < d2; j++) {
            double s = 2.0 * tanh(o[j] / 2.0);
            x[d1 + j] = x[d1 + j] * exp(s) + o[d2 + j];
            logdet += s;
        }
    }
    for (int j = 0; j < D; j++) {
        sq += x[j] * x[j];
    }
    return -0.5 * sq - 0.5 * D * log(2 * M_PI) + logdet;
}

static fs_model *import_peer(const peer *p)
{
    char *json = peer_json(p);
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    fs_err err = fs_model_import_peer_json(json, strlen(json), &m, &dg);
    if (err != FS_OK) {
        fail_msg("import: %s %s", fs_err_name(err), dg.msg);
    }
    cJSON_free(json);
    return m;
}

static void rows_normal(double *x, size_t n, size_t d, uint64_t seed, double scale)
{
    for (size_t i = 0; i < n * d; i++) {
        double u1 = urand(&seed), u2 = urand(&seed);
        x[i] = scale * sqrt(-2.0 * log(u1 + 1e-300)) * cos(2 * M_PI * u2);
    }
}

static void test_import_matches_float64_reference(void **state)
{
    (void)state;
    peer p;
    double x[32 * D], lp[32];
    fs_workspace *ws = NULL;
    peer_make(&p, 42);
    fs_model *m = import_peer(&p);
    rows_normal(x, 32, D, 7, 1.0);
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_log_prob(m, ws, x, 32, lp));
    for (int i = 0; i < 32; i++) {
        double ref = peer_log_prob(&p, x + i * D);
        FS_ASSERT_NEAR(lp[i], ref, 1e-4 * fmax(1.0, fabs(ref)));
    }
    assert_int_equal(fs_model_n_dims(m), D);
    assert_int_equal(fs_model_n_fields(m), D);
    fs_workspace_free(ws);
    fs_model_unref(m);
}

static void test_import_golden_small_matches_reference_logp(void **state)
{
    (void)state;
    char path[512];
    size_t len = 0;
    if (fs_test_shared_path(path, sizeof path, "bench/golden_small.json") == NULL) {
        skip();
    }
    char *json = fs_test_read_file(path, &len);
    assert_non_null(json);
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    FS_ASSERT_OK(fs_model_import_peer_json(json, len, &m, &dg));
    cJSON *root = cJSON_Parse(json);
    cJSON *test = cJSON_GetObjectItem(root, "test");
    cJSON *xs = cJSON_GetObjectItem(test, "x"), *logp = cJSON_GetObjectItem(test, "logp");
    size_t n = (size_t)cJSON_GetArraySize(xs), d = fs_model_n_dims(m);
    double *x = calloc(n * d, sizeof *x), *lp = calloc(n, sizeof *lp);
    size_t i = 0;
    for (cJSON *row = xs->child; row != NULL; row = row->next, i++) {
        size_t j = 0;
        for (cJSON *v = row->child; v != NULL; v = v->next, j++) {
            x[i * d + j] = v->valuedouble;
        }
    }
    fs_workspace *ws = NULL;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_log_prob(m, ws, x, n, lp));
    double worst = 0.0;
    for (i = 0; i < n; i++) {
        double ref = cJSON_GetArrayItem(logp, (int)i)->valuedouble;
        worst = fmax(worst, fabs(lp[i] - ref));
        FS_ASSERT_NEAR(lp[i], ref, 1e-4);
    }
    print_message("golden_small: %zu rows, max |log_prob - reference| = %.3g nats\n", n, worst);
    fs_workspace_free(ws);
    fs_model_unref(m);
    cJSON_Delete(root);
    free(x);
    free(lp);
    free(json);
}

static void test_import_refuses_bad_exports(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{}",
        "{\"D\":6,\"H\":8,\"K\":1,\"d1\":3,\"clamp\":2,\"blocks\":[]}",
        "{\"D\":6,\"H\":8,\"K\":1,\"d1\":2,\"clamp\":2,\"blocks\":[{}]}",
        "{\"D\":6,\"H\":8,\"K\":1,\"d1\":3,\"clamp\":2,\"blocks\":[{\"perm\":null,\"layers\":[]}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_model *m = NULL;
        fs_diag dg = { { 0 } };
        fs_err err = fs_model_import_peer_json(bad[i], strlen(bad[i]), &m, &dg);
        assert_true(err != FS_OK);
        assert_null(m);
        assert_true(dg.msg[0] != '\0');
    }
}

/* ---- the model file ---- */

static void save(const fs_model *m, unsigned char **img, size_t *len)
{
    void *buf = NULL;
    FS_ASSERT_OK(fs_model_save_buffer(m, &buf, len, NULL));
    *img = malloc(*len);
    memcpy(*img, buf, *len);
    fs_free(buf);
}

static fs_err load(const unsigned char *img, size_t len)
{
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    fs_err err = fs_model_load_buffer(img, len, &m, &dg);
    if (err != FS_OK) {
        assert_null(m);
        assert_true(dg.msg[0] != '\0');
    }
    fs_model_unref(m);
    return err;
}

/* Recompute the trailing CRC-32 after a deliberate edit. */
static void fix_crc(unsigned char *img, size_t len)
{
    uint32_t crc = (uint32_t)crc32(0L, img, (uInt)(len - 4));
    memcpy(img + len - 4, &crc, 4);
}

static void test_model_file_round_trip_is_bit_exact(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 3);
    fs_model *m = import_peer(&p), *m2 = NULL;
    unsigned char *a, *b;
    size_t la, lb;
    save(m, &a, &la);
    FS_ASSERT_OK(fs_model_load_buffer(a, la, &m2, NULL));
    save(m2, &b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    /* and through the file system, atomically */
    char dir[] = "/tmp/fs_test_model_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/1.fsm", dir);
    FS_ASSERT_OK(fs_model_save(m, path, NULL));
    fs_model *m3 = NULL;
    FS_ASSERT_OK(fs_model_load(path, &m3, NULL));
    unsigned char *c;
    size_t lc;
    save(m3, &c, &lc);
    assert_int_equal(la, lc);
    assert_memory_equal(a, c, la);
    unlink(path);
    assert_int_equal(rmdir(dir), 0); /* no temporary file was left beside it */
    free(a);
    free(b);
    free(c);
    fs_model_unref(m);
    fs_model_unref(m2);
    fs_model_unref(m3);
}

static void test_model_file_damage_refused_with_its_own_error(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 4);
    fs_model *m = import_peer(&p);
    unsigned char *img, *bad;
    size_t len;
    save(m, &img, &len);
    bad = malloc(len + 16);
    FS_ASSERT_OK(load(img, len));

    /* truncated anywhere */
    size_t cuts[] = { 0, 3, 8, 23, 24, 100, len / 2, len - 5, len - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        fs_err err = load(img, cuts[i]);
        if (cuts[i] == 0 || cuts[i] == 3) {
            assert_true(err == FS_ERR_TRUNCATED || err == FS_ERR_MAGIC);
        } else {
            FS_ASSERT_ERR(err, FS_ERR_TRUNCATED);
        }
    }
    /* one flipped bit anywhere after the fixed header: the checksum catches it */
    for (size_t pos = 24; pos < len; pos += 7) {
        memcpy(bad, img, len);
        bad[pos] ^= (unsigned char)(1u << (pos % 8));
        FS_ASSERT_ERR(load(bad, len), FS_ERR_CHECKSUM);
    }
    /* wrong magic */
    memcpy(bad, img, len);
    bad[0] = 'X';
    FS_ASSERT_ERR(load(bad, len), FS_ERR_MAGIC);
    /* wrong format version, even with a valid checksum */
    memcpy(bad, img, len);
    bad[8] = 99;
    fix_crc(bad, len);
    FS_ASSERT_ERR(load(bad, len), FS_ERR_VERSION);
    /* trailing bytes */
    memcpy(bad, img, len);
    memset(bad + len, 0, 16);
    FS_ASSERT_ERR(load(bad, len + 16), FS_ERR_FORMAT);
    /* wrong shape: a header whose dimensions disagree with the tensors */
    memcpy(bad, img, len);
    char *hit = strstr((char *)bad + 24, "\"n_dims\":6");
    assert_non_null(hit);
    hit[9] = '5';
    fix_crc(bad, len);
    FS_ASSERT_ERR(load(bad, len), FS_ERR_SHAPE);
    memcpy(bad, img, len);
    hit = strstr((char *)bad + 24, "\"count\":");
    assert_non_null(hit);
    hit[8] = hit[8] == '9' ? '1' : (char)(hit[8] + 1);
    fix_crc(bad, len);
    FS_ASSERT_ERR(load(bad, len), FS_ERR_SHAPE);
    /* a non-finite parameter, checksum fixed: refused as numeric */
    memcpy(bad, img, len);
    uint32_t hlen;
    memcpy(&hlen, bad + 12, 4);
    float nan = NAN;
    memcpy(bad + 24 + ((hlen + 7u) & ~7u) + 4, &nan, sizeof nan);
    fix_crc(bad, len);
    FS_ASSERT_ERR(load(bad, len), FS_ERR_NUMERIC);
    /* a header that is not JSON, checksum fixed */
    memcpy(bad, img, len);
    bad[24] = '[';
    fix_crc(bad, len);
    FS_ASSERT_ERR(load(bad, len), FS_ERR_FORMAT);
    /* not a file at all */
    fs_model *none = NULL;
    FS_ASSERT_ERR(fs_model_load("/nonexistent/model.fsm", &none, NULL), FS_ERR_IO);
    assert_null(none);
    free(img);
    free(bad);
    fs_model_unref(m);
}

static void test_model_load_every_allocation_failure_is_nomem_without_leak(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 5);
    fs_model *m = import_peer(&p);
    unsigned char *img;
    size_t len;
    save(m, &img, &len);
    fs_model_unref(m);
    fs_test_failing_alloc fa;
    for (long n = 1;; n++) {
        fs_model *out = NULL;
        fs_test_fa_install(&fa, n);
        fs_err err = fs_model_load_buffer(img, len, &out, NULL);
        fs_model_unref(out);
        long live = fa.live, calls = fa.calls;
        fs_set_allocator(NULL);
        assert_int_equal(live, 0);
        if (err == FS_OK) {
            assert_true(calls < n); /* no allocation left to fail */
            break;
        }
        FS_ASSERT_ERR(err, FS_ERR_NOMEM);
    }
    free(img);
}

static void test_save_refuses_a_model_it_could_not_write(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 6);
    fs_model *m = import_peer(&p);
    fs_diag dg = { { 0 } };
    FS_ASSERT_ERR(fs_model_save(m, "/nonexistent-dir/x/1.fsm", &dg), FS_ERR_IO);
    assert_non_null(strstr(dg.msg, "/nonexistent-dir/x/1.fsm"));
    fs_model_unref(m);
}

/* ---- evaluation ---- */

static void test_score_is_batch_independent(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 8);
    fs_model *m = import_peer(&p);
    fs_workspace *ws = NULL;
    double x[1100 * D];
    fs_score all[1100], one;
    rows_normal(x, 1100, D, 11, 1.5);
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, x, 1100, all));
    for (size_t i = 0; i < 1100; i += 37) {
        FS_ASSERT_OK(fs_model_score(m, ws, x + i * D, 1, &one));
        FS_ASSERT_NEAR(one.score, all[i].score, 0.0); /* bit-identical (case-11) */
        FS_ASSERT_NEAR(one.score, -one.log_prob, 0.0);
    }
    fs_workspace_free(ws);
    fs_model_unref(m);
}

static void test_score_clamps_and_flags_extreme_inputs(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 9);
    fs_model *m = import_peer(&p);
    fs_workspace *ws = NULL;
    double x[4 * D] = { 0 };
    fs_score s[4];
    x[1 * D] = 50.0;
    x[2 * D] = 1e12;
    x[3 * D] = -1e150;
    x[3 * D + 1] = 1e150;
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, x, 4, s));
    for (int i = 0; i < 4; i++) {
        assert_true(isfinite(s[i].score) && isfinite(s[i].log_prob));
    }
    assert_false(s[0].flags & FS_SCORE_SATURATED);
    assert_false(s[1].flags & FS_SCORE_SATURATED);
    assert_true(s[2].flags & FS_SCORE_SATURATED);
    assert_true(s[3].flags & FS_SCORE_SATURATED);
    assert_true(s[1].score > s[0].score);
    assert_true(s[2].score > s[1].score);
    /* a NaN input is refused, never scored */
    x[0] = (double)NAN;
    FS_ASSERT_ERR(fs_model_score(m, ws, x, 1, s), FS_ERR_NUMERIC);
    /* an unreserved workspace is refused */
    fs_workspace *empty = NULL;
    FS_ASSERT_OK(fs_workspace_create(&empty));
    FS_ASSERT_ERR(fs_model_score(m, empty, x + D, 1, s), FS_ERR_SHAPE);
    fs_workspace_free(empty);
    fs_workspace_free(ws);
    fs_model_unref(m);
}

static void test_encode_decode_round_trip_float64(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 10);
    fs_model *m = import_peer(&p);
    fs_workspace *ws = NULL;
    double x[3 * D], z[3 * D], z2[3 * D], back[3 * D], back2[3 * D];
    rows_normal(x, 3, D, 12, 1.0);
    for (int j = 0; j < D; j++) {
        x[D + j] *= 50.0; /* far out */
        x[2 * D + j] *= 500.0;
    }
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_encode(m, ws, x, 3, z));
    FS_ASSERT_OK(fs_model_encode(m, ws, x, 3, z2));
    assert_memory_equal(z, z2, sizeof z);
    FS_ASSERT_OK(fs_model_decode(m, ws, z, 3, back));
    FS_ASSERT_OK(fs_model_decode(m, ws, z, 3, back2));
    assert_memory_equal(back, back2, sizeof back);
    for (int i = 0; i < 3 * D; i++) {
        FS_ASSERT_NEAR(back[i], x[i], 1e-6 * (1.0 + fabs(x[i])));
    }
    z[4] = (double)INFINITY;
    FS_ASSERT_ERR(fs_model_decode(m, ws, z, 3, back), FS_ERR_NUMERIC);
    fs_workspace_free(ws);
    fs_model_unref(m);
}

static void test_sample_is_deterministic_per_row_and_finite(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 13);
    fs_model *m = import_peer(&p);
    fs_workspace *ws = NULL;
    double a[40 * D], b[40 * D], c[10 * D];
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_sample(m, ws, 40, 1.0, 77, a));
    FS_ASSERT_OK(fs_model_sample(m, ws, 40, 1.0, 77, b));
    FS_ASSERT_OK(fs_model_sample(m, ws, 10, 1.0, 77, c));
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(a, c, sizeof c); /* row i does not depend on how many are drawn */
    for (int i = 0; i < 40 * D; i++) {
        assert_true(isfinite(a[i]));
    }
    FS_ASSERT_OK(fs_model_sample(m, ws, 10, 0.0, 1, c));
    FS_ASSERT_ERR(fs_model_sample(m, ws, 1, -1.0, 1, c), FS_ERR_INVALID);
    FS_ASSERT_ERR(fs_model_sample(m, ws, 1, FS_SAMPLE_MAX_TEMPERATURE * 2, 1, c), FS_ERR_INVALID);
    FS_ASSERT_OK(fs_model_sample(m, ws, 0, 1.0, 1, c));
    fs_workspace_free(ws);
    fs_model_unref(m);
}

static void test_uncalibrated_model_flags_nothing(void **state)
{
    (void)state;
    peer p;
    peer_make(&p, 14);
    fs_model *m = import_peer(&p);
    fs_workspace *ws = NULL;
    double x[5 * D];
    fs_score s[5];
    rows_normal(x, 5, D, 15, 3.0);
    FS_ASSERT_OK(fs_workspace_create(&ws));
    FS_ASSERT_OK(fs_workspace_reserve(ws, m));
    FS_ASSERT_OK(fs_model_score(m, ws, x, 5, s));
    for (int i = 0; i < 5; i++) {
        assert_false(s[i].flags & FS_SCORE_ANOMALY);
        FS_ASSERT_NEAR(s[i].percentile, 0.0, 0.0);
    }
    /* recalibrated on these rows, the percentiles span [0, 1] and the worst is flagged */
    fs_model *c = NULL;
    FS_ASSERT_OK(fs_model_recalibrate(m, x, 5, 0.5, 0.0, &c, NULL));
    FS_ASSERT_OK(fs_workspace_reserve(ws, c));
    FS_ASSERT_OK(fs_model_score(c, ws, x, 5, s));
    int flagged = 0;
    double lo = 1, hi = 0;
    for (int i = 0; i < 5; i++) {
        flagged += (s[i].flags & FS_SCORE_ANOMALY) != 0;
        lo = fmin(lo, s[i].percentile);
        hi = fmax(hi, s[i].percentile);
    }
    assert_int_equal(flagged, 2);
    FS_ASSERT_NEAR(lo, 0.0, 1e-12);
    FS_ASSERT_NEAR(hi, 1.0, 1e-12);
    fs_workspace_free(ws);
    fs_model_unref(m);
    fs_model_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_matches_float64_reference),
        cmocka_unit_test(test_import_golden_small_matches_reference_logp),
        cmocka_unit_test(test_import_refuses_bad_exports),
        cmocka_unit_test(test_model_file_round_trip_is_bit_exact),
        cmocka_unit_test(test_model_file_damage_refused_with_its_own_error),
        cmocka_unit_test(test_model_load_every_allocation_failure_is_nomem_without_leak),
        cmocka_unit_test(test_save_refuses_a_model_it_could_not_write),
        cmocka_unit_test(test_score_is_batch_independent),
        cmocka_unit_test(test_score_clamps_and_flags_extreme_inputs),
        cmocka_unit_test(test_encode_decode_round_trip_float64),
        cmocka_unit_test(test_sample_is_deterministic_per_row_and_finite),
        cmocka_unit_test(test_uncalibrated_model_flags_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
