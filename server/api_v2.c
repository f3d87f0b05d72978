/*
 * api_v2.c: POST /v2/models/{name}/infer (Open Inference Protocol v2) on the workers.
 *
 * One input tensor of shape [N, D] (D = the model's fields, all numeric), datatype FP32 or
 * FP64, data nested ([[...], ...]) or flat, row-major. A model with a categorical field has
 * no v2 input (its metadata says "inputs": [] and "parameters": {"v2_infer": false}), and
 * infer answers 400 naming the field and the v1 route. Outputs: "score" and "log_prob" (FP64)
 * by default; "percentile" (FP64) and "anomaly" (BOOL) on request. Errors are
 * {"error": "..."} with status 400, as the protocol specifies.
 */
#include "api.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OUT_SCORE = 0, OUT_LOG_PROB, OUT_PERCENTILE, OUT_ANOMALY, OUT__COUNT };
static const char *const out_names[OUT__COUNT] = { "score", "log_prob", "percentile", "anomaly" };

typedef struct infer_state {
    char *id; /* the request's id, echoed; NULL if none */
    int want[OUT__COUNT];
    int order[OUT__COUNT]; /* outputs in the order requested */
    int n_out;
} infer_state;

static int bad(fs_req_error *e, const char *field, const char *msg)
{
    return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, field, "%s", msg);
}

static int parse_outputs(const cJSON *outputs, infer_state *st, fs_req_error *e)
{
    if (outputs == NULL) {
        st->want[OUT_SCORE] = st->want[OUT_LOG_PROB] = 1;
        st->order[0] = OUT_SCORE;
        st->order[1] = OUT_LOG_PROB;
        st->n_out = 2;
        return 0;
    }
    if (!cJSON_IsArray(outputs)) {
        return bad(e, "outputs", "outputs must be an array of {\"name\": ...}");
    }
    for (const cJSON *o = outputs->child; o != NULL; o = o->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        int k = -1;
        if (!cJSON_IsObject(o) || !cJSON_IsString(name)) {
            return bad(e, "outputs", "each requested output must be {\"name\": string}");
        }
        for (int i = 0; i < OUT__COUNT; i++) {
            if (strcmp(name->valuestring, out_names[i]) == 0) {
                k = i;
            }
        }
        if (k < 0) {
            return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, "outputs",
                                    "unknown output \"%.64s\" (this model has score, log_prob, "
                                    "percentile, anomaly)",
                                    name->valuestring);
        }
        if (!st->want[k]) {
            st->want[k] = 1;
            st->order[st->n_out++] = k;
        }
    }
    return 0;
}

/* The shape [N, D] as integers; D must equal n_fields. */
static int parse_shape(const cJSON *shape, size_t n_fields, size_t max_rows, size_t *n_rows,
                       fs_req_error *e)
{
    double dims[2];
    size_t k = 0;
    if (!cJSON_IsArray(shape)) {
        return bad(e, "inputs[0].shape", "shape must be an array [N, D]");
    }
    for (const cJSON *d = shape->child; d != NULL; d = d->next, k++) {
        if (k >= 2 || !cJSON_IsNumber(d) || d->valuedouble < 0 ||
            floor(d->valuedouble) != d->valuedouble || d->valuedouble > 1e15) {
            return bad(e, "inputs[0].shape", "shape must be [N, D] with non-negative integers");
        }
        dims[k] = d->valuedouble;
    }
    if (k != 2) {
        return bad(e, "inputs[0].shape", "shape must be [N, D] (two dimensions)");
    }
    if ((size_t)dims[1] != n_fields) {
        return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, "inputs[0].shape",
                                "shape[1] must be %zu (the model's fields), got %.0f", n_fields,
                                dims[1]);
    }
    if (dims[0] > (double)max_rows) {
        return fs_req_error_set(e, 413, FS_EC_TOO_MANY_ROWS, "inputs[0].shape",
                                "%.0f rows exceed max_rows_per_request=%zu", dims[0], max_rows);
    }
    *n_rows = (size_t)dims[0];
    return 0;
}

/* One element of the tensor into out[*k]; fp32 requires it to fit a float. */
static int take_number(const cJSON *v, int fp32, double *out, size_t want, size_t *k,
                       fs_req_error *e)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        (fp32 && fabs(v->valuedouble) > (double)FLT_MAX)) {
        char field[64];
        snprintf(field, sizeof field, "inputs[0].data[%zu]", *k);
        return bad(e, field,
                   !cJSON_IsNumber(v) ? "tensor data must be numbers"
                   : fp32             ? "value does not fit FP32"
                                      : "value overflows FP64");
    }
    if (*k >= want) {
        return bad(e, "inputs[0].data", "more data elements than the shape holds");
    }
    out[(*k)++] = v->valuedouble;
    return 0;
}

/* Flat [v, ...] or nested [[v, ...], ...] with rows of exactly n_fields. */
static int parse_data(const cJSON *data, int fp32, size_t n_rows, size_t n_fields, double *out,
                      fs_req_error *e)
{
    size_t want = n_rows * n_fields, k = 0;
    if (!cJSON_IsArray(data)) {
        return bad(e, "inputs[0].data", "data must be an array");
    }
    for (const cJSON *v = data->child; v != NULL; v = v->next) {
        if (cJSON_IsArray(v)) {
            size_t start = k;
            for (const cJSON *x = v->child; x != NULL; x = x->next) {
                if (take_number(x, fp32, out, want, &k, e) != 0) {
                    return -1;
                }
            }
            if (k - start != n_fields) {
                return bad(e, "inputs[0].data", "each nested row must hold D values");
            }
        } else if (take_number(v, fp32, out, want, &k, e) != 0) {
            return -1;
        }
    }
    if (k != want) {
        return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, "inputs[0].data",
                                "data holds %zu elements but shape needs %zu", k, want);
    }
    return 0;
}

static int infer_parse(fs_job *job, const cJSON *root, infer_state *st, fs_req_error *e)
{
    const fs_schema *s = fs_model_schema(job->model);
    size_t n_fields = fs_schema_n_fields(s);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    for (const cJSON *m = root->child; m != NULL; m = m->next) {
        if (strcmp(m->string, "id") != 0 && strcmp(m->string, "parameters") != 0 &&
            strcmp(m->string, "inputs") != 0 && strcmp(m->string, "outputs") != 0) {
            return fs_req_error_set(e, 400, FS_EC_UNKNOWN_FIELD, m->string,
                                    "unknown field \"%.64s\" in the request", m->string);
        }
    }
    if (id != NULL) {
        if (!cJSON_IsString(id)) {
            return bad(e, "id", "id must be a string");
        }
        st->id = strdup(id->valuestring);
        if (st->id == NULL) {
            return fs_req_error_set(e, 503, FS_EC_OVERLOADED, NULL, "out of memory");
        }
    }
    if (params != NULL && !cJSON_IsObject(params)) {
        return bad(e, "parameters", "parameters must be an object");
    }
    if (parse_outputs(cJSON_GetObjectItemCaseSensitive(root, "outputs"), st, e) != 0) {
        return -1;
    }
    for (size_t f = 0; f < n_fields; f++) {
        if (fs_schema_field_type(s, f) == FS_FIELD_CATEGORICAL) {
            /* the same sentence as GET /v2/models/{name}'s "v2_infer_note" (api_models.c) */
            return fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, "inputs",
                                    "v2 infer is not available for this model: field %s is "
                                    "categorical and v2 infer takes numeric tensors only; "
                                    "score it with POST /v1/models/%s/score",
                                    fs_schema_field_name(s, f), job->model_name);
        }
    }
    if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) != 1 ||
        !cJSON_IsObject(inputs->child)) {
        return bad(e, "inputs", "inputs must be an array of exactly one tensor [N, D]");
    }
    const cJSON *in = inputs->child;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    if (!cJSON_IsString(name)) {
        return bad(e, "inputs[0].name", "the input needs a name (a string)");
    }
    if (!cJSON_IsString(dt) ||
        (strcmp(dt->valuestring, "FP32") != 0 && strcmp(dt->valuestring, "FP64") != 0)) {
        return bad(e, "inputs[0].datatype", "datatype must be \"FP32\" or \"FP64\"");
    }
    if (parse_shape(cJSON_GetObjectItemCaseSensitive(in, "shape"), n_fields, job->lim->max_rows,
                    &job->n_rows, e) != 0) {
        return -1;
    }
    job->rows = malloc((job->n_rows * n_fields + 1) * sizeof *job->rows);
    job->scores = malloc((job->n_rows + 1) * sizeof *job->scores);
    if (job->rows == NULL || job->scores == NULL) {
        return fs_req_error_set(e, 503, FS_EC_OVERLOADED, NULL, "out of memory");
    }
    return parse_data(cJSON_GetObjectItemCaseSensitive(in, "data"),
                      strcmp(dt->valuestring, "FP32") == 0, job->n_rows, n_fields, job->rows, e);
}

int fs_api_infer_prepare(fs_job *job, const cJSON *root)
{
    fs_req_error e;
    infer_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        fs_req_error_set(&e, 503, FS_EC_OVERLOADED, NULL, "out of memory");
        fs_api_set_error(job, &e);
        return 0;
    }
    job->op_state = st;
    if (infer_parse(job, root, st, &e) != 0) {
        fs_api_set_error(job, &e);
        return 0;
    }
    if (job->n_rows == 0) {
        fs_api_infer_finish(job);
        return 0;
    }
    return 1;
}

void fs_api_infer_finish(fs_job *job)
{
    infer_state *st = job->op_state;
    fs_strbuf b;
    fs_strbuf_init(&b, 128 + job->n_rows * 48 * (size_t)st->n_out);
    fs_strbuf_puts(&b, "{\"model_name\":");
    fs_strbuf_put_json_string(&b, job->model_name, strlen(job->model_name));
    fs_strbuf_printf(&b, ",\"model_version\":\"%lld\"", (long long)job->version);
    if (st->id != NULL) {
        fs_strbuf_puts(&b, ",\"id\":");
        fs_strbuf_put_json_string(&b, st->id, strlen(st->id));
    }
    fs_strbuf_puts(&b, ",\"outputs\":[");
    for (int o = 0; o < st->n_out; o++) {
        int k = st->order[o];
        fs_strbuf_printf(&b, "%s{\"name\":\"%s\",\"shape\":[%zu],\"datatype\":\"%s\",\"data\":[",
                         o > 0 ? "," : "", out_names[k], job->n_rows,
                         k == OUT_ANOMALY ? "BOOL" : "FP64");
        for (size_t i = 0; i < job->n_rows; i++) {
            const fs_score *s = &job->scores[i];
            if (i > 0) {
                fs_strbuf_put(&b, ",", 1);
            }
            if (k == OUT_ANOMALY) {
                fs_strbuf_puts(&b, (s->flags & FS_SCORE_ANOMALY) ? "true" : "false");
            } else {
                fs_strbuf_put_double(&b, k == OUT_SCORE      ? s->score
                                         : k == OUT_LOG_PROB ? s->log_prob
                                                             : s->percentile);
            }
        }
        fs_strbuf_puts(&b, "]}");
    }
    fs_strbuf_puts(&b, "]}\n");
    fs_api_set_body(job, 200, &b);
}

void fs_api_infer_release(fs_job *job)
{
    infer_state *st = job->op_state;
    if (st != NULL) {
        free(st->id);
        free(st);
    }
    job->op_state = NULL;
}
