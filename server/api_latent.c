/* api_latent.c: encode, decode and sample on the workers (float64, deterministic). */
#include "api.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void engine_error(fs_job *job, fs_err err, const char *field, const char *what)
{
    fs_req_error e;
    if (err == FS_ERR_NUMERIC) {
        fs_req_error_set(&e, 422, FS_EC_INVALID_INPUT, field, "%s gives a non-finite value", what);
    } else if (err == FS_ERR_NOMEM) {
        fs_req_error_set(&e, 503, FS_EC_OVERLOADED, NULL, "out of memory");
    } else {
        fs_req_error_set(&e, 500, FS_EC_INTERNAL, NULL, "%s failed: %s (%s)", what,
                         fs_strerror(err), fs_err_name(err));
    }
    fs_api_set_error(job, &e);
}

void fs_api_encode(fs_job *job, const cJSON *root, fs_workspace *ws)
{
    static const char *const keys[] = { "records", NULL };
    fs_req_error e;
    double *z = NULL;
    size_t n_dims = fs_model_n_dims(job->model);
    fs_strbuf b;
    if (fs_api_only_keys(root, keys, &e) != 0 ||
        fs_records_read(cJSON_GetObjectItemCaseSensitive(root, "records"),
                        fs_model_schema(job->model), job->lim, &job->rows, &job->n_rows, &e) != 0) {
        fs_api_set_error(job, &e);
        return;
    }
    z = malloc((job->n_rows * n_dims + 1) * sizeof *z);
    if (z == NULL) {
        engine_error(job, FS_ERR_NOMEM, NULL, "encode");
        return;
    }
    fs_err err = FS_OK;
    if (job->n_rows > 0) {
        err = fs_workspace_reserve(ws, job->model);
        if (err == FS_OK) {
            err = fs_model_encode(job->model, ws, job->rows, job->n_rows, z);
        }
    }
    if (err != FS_OK) {
        engine_error(job, err, "records", "encoding the records");
        free(z);
        return;
    }
    fs_strbuf_init(&b, 32 + job->n_rows * n_dims * 24);
    fs_strbuf_puts(&b, "{\"latents\":[");
    for (size_t i = 0; i < job->n_rows; i++) {
        fs_strbuf_puts(&b, i > 0 ? ",[" : "[");
        for (size_t j = 0; j < n_dims; j++) {
            if (j > 0) {
                fs_strbuf_put(&b, ",", 1);
            }
            fs_strbuf_put_double(&b, z[i * n_dims + j]);
        }
        fs_strbuf_put(&b, "]", 1);
    }
    fs_strbuf_puts(&b, "]}\n");
    free(z);
    if (job->mm != NULL) {
        atomic_fetch_add_explicit(&job->mm->rows[job->op], job->n_rows, memory_order_relaxed);
    }
    fs_api_set_body(job, 200, &b);
}

/* Print {"records":[...]} from n rows of decoded values; 500 on a non-finite value. */
static void answer_records(fs_job *job, const double *x, size_t n)
{
    const fs_schema *s = fs_model_schema(job->model);
    size_t n_fields = fs_schema_n_fields(s);
    fs_strbuf b;
    fs_strbuf_init(&b, 32 + n * n_fields * 24);
    fs_strbuf_puts(&b, "{\"records\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            fs_strbuf_put(&b, ",", 1);
        }
        if (fs_strbuf_put_record(&b, s, x + i * n_fields) != 0) {
            b.nonfinite = 1;
            break;
        }
    }
    fs_strbuf_puts(&b, "]}\n");
    if (job->mm != NULL && !b.nonfinite) {
        atomic_fetch_add_explicit(&job->mm->rows[job->op], n, memory_order_relaxed);
    }
    fs_api_set_body(job, 200, &b);
}

void fs_api_decode(fs_job *job, const cJSON *root, fs_workspace *ws)
{
    static const char *const keys[] = { "latents", NULL };
    fs_req_error e;
    double *z = NULL, *x = NULL;
    size_t n = 0, n_fields = fs_model_n_fields(job->model);
    if (fs_api_only_keys(root, keys, &e) != 0 ||
        fs_latents_read(cJSON_GetObjectItemCaseSensitive(root, "latents"),
                        fs_model_n_dims(job->model), job->lim, &z, &n, &e) != 0) {
        fs_api_set_error(job, &e);
        return;
    }
    x = malloc((n * n_fields + 1) * sizeof *x);
    fs_err err = x == NULL ? FS_ERR_NOMEM : FS_OK;
    if (err == FS_OK && n > 0) {
        err = fs_workspace_reserve(ws, job->model);
        if (err == FS_OK) {
            err = fs_model_decode(job->model, ws, z, n, x);
        }
    }
    if (err != FS_OK) {
        engine_error(job, err, "latents", "decoding the latents");
    } else {
        answer_records(job, x, n);
    }
    free(x);
    free(z);
}

/* A JSON number that is an integer in [0, max], for n and seed. */
static int read_uint(const cJSON *v, const char *name, double max, uint64_t *out, fs_req_error *e)
{
    if (!cJSON_IsNumber(v)) {
        return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, name,
                                "expected a non-negative integer for %s", name);
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || floor(d) != d || d > max) {
        return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, name,
                                "%s must be an integer in [0, %.0f]", name, max);
    }
    *out = (uint64_t)d;
    return 0;
}

/* A seed for requests that give none: different on every call. */
static uint64_t fresh_seed(void)
{
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u);
    x ^= x >> 33; /* splitmix64 finaliser */
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return x;
}

void fs_api_sample(fs_job *job, const cJSON *root, fs_workspace *ws)
{
    static const char *const keys[] = { "n", "temperature", "seed", NULL };
    fs_req_error e;
    uint64_t n = 0, seed = 0;
    double temperature = 1.0;
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(root, "n");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(root, "temperature");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (fs_api_only_keys(root, keys, &e) != 0) {
        goto bad;
    }
    if (jn == NULL) {
        fs_req_error_set(&e, 400, FS_EC_MISSING_FIELD, "n", "missing field n (rows to draw)");
        goto bad;
    }
    if (read_uint(jn, "n", 1e15, &n, &e) != 0) {
        goto bad;
    }
    if (n > job->lim->max_rows) {
        fs_req_error_set(&e, 422, FS_EC_INVALID_PARAMETER, "n",
                         "n=%llu exceeds max_rows_per_request=%u", (unsigned long long)n,
                         job->lim->max_rows);
        goto bad;
    }
    if (jt != NULL) {
        if (!cJSON_IsNumber(jt)) {
            fs_req_error_set(&e, 400, FS_EC_INVALID_INPUT, "temperature",
                             "expected a number for temperature");
            goto bad;
        }
        temperature = jt->valuedouble;
        if (!isfinite(temperature) || temperature < 0 || temperature > FS_SAMPLE_MAX_TEMPERATURE) {
            fs_req_error_set(&e, 422, FS_EC_INVALID_PARAMETER, "temperature",
                             "temperature must be in [0, %g]", FS_SAMPLE_MAX_TEMPERATURE);
            goto bad;
        }
    }
    if (js != NULL) {
        /* 2^53: every integer up to it is exact in a JSON number read as a double. */
        if (read_uint(js, "seed", 9007199254740992.0, &seed, &e) != 0) {
            goto bad;
        }
    } else {
        seed = fresh_seed();
    }
    size_t n_fields = fs_model_n_fields(job->model);
    double *x = malloc(((size_t)n * n_fields + 1) * sizeof *x);
    fs_err err = x == NULL ? FS_ERR_NOMEM : FS_OK;
    if (err == FS_OK && n > 0) {
        err = fs_workspace_reserve(ws, job->model);
        if (err == FS_OK) {
            err = fs_model_sample(job->model, ws, (size_t)n, temperature, seed, x);
        }
    }
    if (err != FS_OK) {
        engine_error(job, err, "temperature", "sampling");
    } else {
        answer_records(job, x, (size_t)n);
    }
    free(x);
    return;
bad:
    fs_api_set_error(job, &e);
}
