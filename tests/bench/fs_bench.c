/*
 * fs_bench.c: flowscore's side of the workloads of bench/SPEC.md, one JSON line per
 * measurement (scripts/bench-engine.sh and scripts/bench-train.sh run it beside the PyTorch
 * peer and print the ratios).
 *
 *   fs_bench w1 [--threads N] [--rows N] [--batch N] [--repeats N]   batch scoring, rows/s
 *   fs_bench w2 [--threads N] [--steps N] [--batch N]                training, samples/s
 *   fs_bench w3 --K N [--batch N] [--steps N]                         training peak RSS
 *
 * The model is ref-realnvp (D=32, H=128, K=8 unless --D/--H/--K say otherwise): W1 with random
 * last layers (imported through the engine's peer-JSON importer, as a user would), W2/W3 with
 * the zero last layer of a fresh trainer.
 */
#include "flowscore.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct opts {
    int D, H, K, threads, rows, batch, repeats, steps, warmup;
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x853c49e6748fea9bull;

static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double nrand(void)
{
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* A ref-realnvp export with every layer U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (SPEC.md §2). */
static char *peer_json(int D, int H, int K)
{
    int d1 = D / 2, d2 = D - d1;
    size_t cap = (size_t)K * (size_t)(d1 * H + H * H + 2 * d2 * H + 4 * H) * 24 + 4096, len = 0;
    char *s = malloc(cap);
    int dims[3][2] = { { H, d1 }, { H, H }, { 2 * d2, H } };
#define EMIT(...) len += (size_t)snprintf(s + len, cap - len, __VA_ARGS__)
    EMIT("{\"D\":%d,\"H\":%d,\"K\":%d,\"d1\":%d,\"d2\":%d,\"clamp\":2.0,\"blocks\":[", D, H, K, d1,
         d2);
    for (int k = 0; k < K; k++) {
        EMIT("%s{\"perm\":", k ? "," : "");
        if (k == 0) {
            EMIT("null");
        } else {
            int *perm = malloc((size_t)D * sizeof *perm);
            for (int j = 0; j < D; j++) {
                perm[j] = j;
            }
            for (int j = D - 1; j > 0; j--) {
                int i = (int)(urand() * (j + 1)), t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
            EMIT("[");
            for (int j = 0; j < D; j++) {
                EMIT("%s%d", j ? "," : "", perm[j]);
            }
            EMIT("]");
            free(perm);
        }
        EMIT(",\"layers\":[");
        for (int l = 0; l < 3; l++) {
            double bound = 1.0 / sqrt((double)dims[l][1]);
            EMIT("%s{\"W\":[", l ? "," : "");
            for (int i = 0; i < dims[l][0]; i++) {
                EMIT("%s[", i ? "," : "");
                for (int j = 0; j < dims[l][1]; j++) {
                    EMIT("%s%.9g", j ? "," : "", (double)(float)((2 * urand() - 1) * bound));
                }
                EMIT("]");
            }
            EMIT("],\"b\":[");
            for (int i = 0; i < dims[l][0]; i++) {
                EMIT("%s%.9g", i ? "," : "", (double)(float)((2 * urand() - 1) * bound));
            }
            EMIT("]}");
        }
        EMIT("]}");
    }
    EMIT("]}");
#undef EMIT
    return s;
}

typedef struct w1_job {
    const fs_model *m;
    const double *x;
    size_t n, batch, D;
    double *lp;
} w1_job;

static void *w1_worker(void *arg)
{
    w1_job *j = arg;
    fs_workspace *ws = NULL;
    if (fs_workspace_create(&ws) != FS_OK || fs_workspace_reserve(ws, j->m) != FS_OK) {
        fprintf(stderr, "fs_bench: workspace failed\n");
        exit(1);
    }
    for (size_t r = 0; r < j->n; r += j->batch) {
        size_t n = j->n - r < j->batch ? j->n - r : j->batch;
        if (fs_model_log_prob(j->m, ws, j->x + r * j->D, n, j->lp + r) != FS_OK) {
            fprintf(stderr, "fs_bench: scoring failed\n");
            exit(1);
        }
    }
    fs_workspace_free(ws);
    return NULL;
}

/* One pass over all rows, split evenly across threads; returns seconds. */
static double w1_pass(const fs_model *m, const double *x, double *lp, const opts *o)
{
    pthread_t th[64];
    w1_job jobs[64];
    size_t per = ((size_t)o->rows + (size_t)o->threads - 1) / (size_t)o->threads;
    double t0 = now_s();
    for (int t = 0; t < o->threads; t++) {
        size_t r0 = (size_t)t * per, n = r0 < (size_t)o->rows ? (size_t)o->rows - r0 : 0;
        jobs[t] = (w1_job){
            m, x + r0 * (size_t)o->D, n < per ? n : per, (size_t)o->batch, (size_t)o->D, lp + r0
        };
        pthread_create(&th[t], NULL, w1_worker, &jobs[t]);
    }
    for (int t = 0; t < o->threads; t++) {
        pthread_join(th[t], NULL);
    }
    return now_s() - t0;
}

static int run_w1(const opts *o)
{
    char *json = peer_json(o->D, o->H, o->K);
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    if (fs_model_import_peer_json(json, strlen(json), &m, &dg) != FS_OK) {
        fprintf(stderr, "fs_bench: import failed: %s\n", dg.msg);
        return 1;
    }
    double *x = malloc((size_t)o->rows * (size_t)o->D * sizeof *x);
    double *lp = malloc((size_t)o->rows * sizeof *lp);
    double times[64];
    for (size_t i = 0; i < (size_t)o->rows * (size_t)o->D; i++) {
        x[i] = (double)(float)nrand();
    }
    w1_pass(m, x, lp, o); /* warm-up */
    for (int r = 0; r < o->repeats; r++) {
        times[r] = w1_pass(m, x, lp, o);
    }
    qsort(times, (size_t)o->repeats, sizeof *times, cmp_double);
    double med = times[o->repeats / 2];
    printf("{\"workload\": \"W1\", \"engine\": \"flowscore\", \"rows_per_s\": %.0f, "
           "\"threads\": %d, \"D\": %d, \"H\": %d, \"K\": %d, \"rows\": %d, \"batch\": %d, "
           "\"pass_s_median\": %.4f}\n",
           (double)o->rows / med, o->threads, o->D, o->H, o->K, o->rows, o->batch, med);
    fs_model_unref(m);
    free(json);
    free(x);
    free(lp);
    return 0;
}

/* W2/W3 data: g @ M, g ~ N(0, I), M ~ N(0, 1/D) (a correlated Gaussian). */
static double *correlated_rows(int n, int D)
{
    double *mix = malloc((size_t)D * (size_t)D * sizeof *mix);
    double *g = malloc((size_t)D * sizeof *g);
    double *x = malloc((size_t)n * (size_t)D * sizeof *x);
    for (int i = 0; i < D * D; i++) {
        mix[i] = nrand() / sqrt((double)D);
    }
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < D; j++) {
            g[j] = nrand();
        }
        for (int j = 0; j < D; j++) {
            double v = 0.0;
            for (int k = 0; k < D; k++) {
                v += g[k] * mix[k * D + j];
            }
            x[(size_t)r * (size_t)D + (size_t)j] = v;
        }
    }
    free(mix);
    free(g);
    return x;
}

static fs_trainer *make_trainer(const opts *o, const double *x, int n)
{
    fs_schema *s = NULL;
    fs_spec *sp = NULL;
    fs_trainer *t = NULL;
    fs_diag dg = { { 0 } };
    char spec[128];
    fs_train_params p = fs_train_default_params();
    p.threads = o->threads;
    p.whiten = 0;    /* the peer trains on the raw rows */
    p.clip_norm = 0; /* SPEC.md: no clipping */
    p.val_fraction = 0;
    fs_schema_create(&s);
    for (int j = 0; j < o->D; j++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", j);
        fs_schema_add_numeric(s, name, FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0);
    }
    snprintf(spec, sizeof spec, "{\"preset\": \"realnvp\", \"blocks\": %d, \"hidden\": [%d, %d]}",
             o->K, o->H, o->H);
    if (fs_spec_parse_json(spec, strlen(spec), &sp, &dg) != FS_OK ||
        fs_trainer_create(s, sp, &p, x, (size_t)n, &t, &dg) != FS_OK) {
        fprintf(stderr, "fs_bench: trainer: %s\n", dg.msg);
        exit(1);
    }
    fs_schema_free(s);
    fs_spec_free(sp);
    return t;
}

static int run_w2(const opts *o)
{
    int n = 65536;
    double *x = correlated_rows(n, o->D);
    double *batch = malloc((size_t)o->batch * (size_t)o->D * sizeof *batch);
    fs_trainer *t = make_trainer(o, x, n);
    double loss = 0, first = 0, t0 = 0;
    for (int s = 0; s < o->warmup + o->steps; s++) {
        if (s == o->warmup) {
            t0 = now_s();
        }
        for (int r = 0; r < o->batch; r++) { /* uniform with replacement */
            size_t i = (size_t)(urand() * n);
            memcpy(batch + (size_t)r * (size_t)o->D, x + i * (size_t)o->D,
                   (size_t)o->D * sizeof *batch);
        }
        if (fs_trainer_step(t, batch, (size_t)o->batch, &loss) != FS_OK) {
            fprintf(stderr, "fs_bench: step failed\n");
            return 1;
        }
        if (s == 0) {
            first = loss;
        }
    }
    double dt = now_s() - t0;
    printf("{\"workload\": \"W2\", \"engine\": \"flowscore\", \"samples_per_s\": %.0f, "
           "\"threads\": %d, \"D\": %d, \"H\": %d, \"K\": %d, \"batch\": %d, \"steps\": %d, "
           "\"seconds\": %.3f, \"loss_first\": %.4f, \"loss_last\": %.4f}\n",
           (double)o->steps * o->batch / dt, o->threads, o->D, o->H, o->K, o->batch, o->steps, dt,
           first, loss);
    fs_trainer_free(t);
    free(x);
    free(batch);
    return 0;
}

static double maxrss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int run_w3(const opts *o)
{
    double *x = correlated_rows(o->batch, o->D);
    float a[256 * 256], c[256 * 256];
    for (int i = 0; i < 256 * 256; i++) {
        a[i] = 1.0f;
    }
    /* touch OpenBLAS before the baseline, as the peer does */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 256, 256, 256, 1.0f, a, 256, a, 256,
                0.0f, c, 256);
    double baseline = maxrss_mib(), loss;
    fs_trainer *t = make_trainer(o, x, o->batch);
    for (int s = 0; s < o->steps; s++) {
        if (fs_trainer_step(t, x, (size_t)o->batch, &loss) != FS_OK) {
            fprintf(stderr, "fs_bench: step failed\n");
            return 1;
        }
    }
    double peak = maxrss_mib();
    long params = (long)o->K * (long)((o->D / 2) * o->H + o->H + o->H * o->H + o->H +
                                      o->H * 2 * (o->D - o->D / 2) + 2 * (o->D - o->D / 2));
    printf("{\"workload\": \"W3\", \"engine\": \"flowscore\", \"K\": %d, \"peak_rss_mb\": %.1f, "
           "\"baseline_rss_mb\": %.1f, \"delta_mb\": %.1f, \"params\": %ld, "
           "\"param_state_mb\": %.1f, \"batch\": %d, \"steps\": %d, \"loss_last\": %.4f}\n",
           o->K, peak, baseline, peak - baseline, params, 16.0 * (double)params / 1048576.0,
           o->batch, o->steps, loss);
    fs_trainer_free(t);
    free(x);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: fs_bench w1|w2|w3 [--threads N] [--D N] [--H N] [--K N] "
                    "[--rows N] [--batch N] [--repeats N] [--steps N]\n");
}

int main(int argc, char **argv)
{
    opts o = { 32, 128, 8, 1, 65536, 0, 5, 0, 10 };
    if (argc < 2) {
        usage();
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        char *end;
        long v = strtol(argv[i + 1], &end, 10);
        int *dst = !strcmp(argv[i], "--threads")   ? &o.threads
                   : !strcmp(argv[i], "--D")       ? &o.D
                   : !strcmp(argv[i], "--H")       ? &o.H
                   : !strcmp(argv[i], "--K")       ? &o.K
                   : !strcmp(argv[i], "--rows")    ? &o.rows
                   : !strcmp(argv[i], "--batch")   ? &o.batch
                   : !strcmp(argv[i], "--repeats") ? &o.repeats
                   : !strcmp(argv[i], "--steps")   ? &o.steps
                                                   : NULL;
        if (dst == NULL || *end != '\0' || v < 1 || v > 100000000) {
            usage();
            return 2;
        }
        *dst = (int)v;
    }
    if (o.threads > 64 || o.repeats > 64) {
        usage();
        return 2;
    }
    openblas_set_num_threads(1); /* parallelism comes from our own threads */
    /* each workload's defaults are those of SPEC.md section 3 */
    if (!strcmp(argv[1], "w1")) {
        o.batch = o.batch == 0 ? 4096 : o.batch;
        return run_w1(&o);
    }
    if (!strcmp(argv[1], "w2")) {
        o.batch = o.batch == 0 ? 256 : o.batch;
        o.steps = o.steps == 0 ? 200 : o.steps;
        return run_w2(&o);
    }
    if (!strcmp(argv[1], "w3")) {
        o.batch = o.batch == 0 ? 1024 : o.batch;
        o.steps = o.steps == 0 ? 5 : o.steps;
        return run_w3(&o);
    }
    usage();
    return 2;
}
