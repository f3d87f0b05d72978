/* api_score.c: POST /v1/models/{name}/score on the workers, and the job helpers. */
#include "api.h"

#include <stdlib.h>
#include <string.h>

void fs_api_set_error(fs_job *job, const fs_req_error *e)
{
    free(job->resp);
    job->status = e->status;
    job->err_code = e->code;
    job->content_type = "application/json";
    job->resp = job->v2 ? fs_req_error_format_v2(e, &job->resp_len)
                        : fs_req_error_format(e, &job->resp_len);
    if (job->mm != NULL) {
        atomic_fetch_add_explicit(&job->mm->failures[job->op][fs_fail_reason_of_status(e->status)],
                                  1, memory_order_relaxed);
    }
}

void fs_api_set_body(fs_job *job, int status, fs_strbuf *b)
{
    fs_req_error e;
    if (b->nonfinite) {
        /* Every value was checked before printing; reaching this is our bug (issue 04). */
        fs_strbuf_free(b);
        fs_req_error_set(&e, 500, FS_EC_INTERNAL, NULL,
                         "the model produced a non-finite value; nothing was returned");
        fs_api_set_error(job, &e);
        return;
    }
    if (b->failed) {
        fs_strbuf_free(b);
        fs_req_error_set(&e, 503, FS_EC_OVERLOADED, NULL, "out of memory building the answer");
        fs_api_set_error(job, &e);
        return;
    }
    free(job->resp);
    job->status = status;
    job->err_code = NULL;
    job->content_type = "application/json";
    job->resp = fs_strbuf_take(b, &job->resp_len);
}

void fs_api_job_release(fs_job *job)
{
    if (job->op == FS_OP_INFER) {
        fs_api_infer_release(job);
    } else if (job->op == FS_OP_INGEST) {
        fs_api_ingest_release(job);
    }
    free(job->rows);
    free(job->scores);
    free(job->resp);
    job->rows = NULL;
    job->scores = NULL;
    job->resp = NULL;
    job->n_rows = 0;
}

int fs_api_only_keys(const cJSON *root, const char *const *allowed, fs_req_error *e)
{
    for (const cJSON *m = root->child; m != NULL; m = m->next) {
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++) {
            ok = strcmp(m->string, allowed[i]) == 0;
        }
        if (!ok) {
            return fs_req_error_set(e, 400, FS_EC_UNKNOWN_FIELD, m->string,
                                    "unknown field \"%.64s\" in the request", m->string);
        }
    }
    return 0;
}

static void put_score_head(fs_job *job, fs_strbuf *b)
{
    fs_strbuf_puts(b, "{\"model\":");
    fs_strbuf_put_json_string(b, job->model_name, strlen(job->model_name));
    fs_strbuf_printf(b, ",\"version\":%lld,\"results\":[", (long long)job->version);
}

/* Parse {"records": [...]}; 1 when rows wait for the batch, 0 when answered. */
static int score_prepare(fs_job *job, const cJSON *root)
{
    static const char *const keys[] = { "records", NULL };
    fs_req_error e;
    if (fs_api_only_keys(root, keys, &e) != 0 ||
        fs_records_read(cJSON_GetObjectItemCaseSensitive(root, "records"),
                        fs_model_schema(job->model), job->lim, &job->rows, &job->n_rows, &e) != 0) {
        fs_api_set_error(job, &e);
        return 0;
    }
    if (job->n_rows == 0) {
        fs_strbuf b;
        fs_strbuf_init(&b, 128);
        put_score_head(job, &b);
        fs_strbuf_puts(&b, "]}\n");
        fs_api_set_body(job, 200, &b);
        return 0;
    }
    job->scores = malloc(job->n_rows * sizeof *job->scores);
    if (job->scores == NULL) {
        fs_req_error_set(&e, 503, FS_EC_OVERLOADED, NULL, "out of memory for %zu results",
                         job->n_rows);
        fs_api_set_error(job, &e);
        return 0;
    }
    return 1;
}

static void score_finish(fs_job *job)
{
    fs_strbuf b;
    fs_strbuf_init(&b, 64 + job->n_rows * 96);
    put_score_head(job, &b);
    for (size_t i = 0; i < job->n_rows; i++) {
        const fs_score *s = &job->scores[i];
        fs_strbuf_puts(&b, i > 0 ? ",{\"score\":" : "{\"score\":");
        fs_strbuf_put_double(&b, s->score);
        fs_strbuf_puts(&b, ",\"log_prob\":");
        fs_strbuf_put_double(&b, s->log_prob);
        fs_strbuf_puts(&b, ",\"percentile\":");
        fs_strbuf_put_double(&b, s->percentile);
        fs_strbuf_puts(&b,
                       (s->flags & FS_SCORE_ANOMALY) ? ",\"anomaly\":true" : ",\"anomaly\":false");
        if (s->flags & FS_SCORE_SATURATED) {
            fs_strbuf_puts(&b, ",\"saturated\":true");
        }
        if (s->flags & FS_SCORE_ATYPICAL) {
            fs_strbuf_puts(&b, ",\"atypical\":true");
        }
        fs_strbuf_puts(&b, "}");
    }
    fs_strbuf_puts(&b, "]}\n");
    fs_api_set_body(job, 200, &b);
}

int fs_api_prepare(fs_job *job, fs_workspace *ws)
{
    fs_req_error e;
    int batched = 0;
    if (job->mm != NULL) {
        atomic_fetch_add_explicit(&job->mm->requests[job->op], 1, memory_order_relaxed);
    }
    if (job->op == FS_OP_INGEST) {
        fs_api_ingest(job, ws); /* NDJSON bodies are not one JSON object */
        return 0;
    }
    cJSON *root = fs_json_parse_object(job->body, job->body_len, job->lim, &e);
    if (root == NULL) {
        fs_api_set_error(job, &e);
        return 0;
    }
    switch (job->op) {
    case FS_OP_SCORE:
        batched = score_prepare(job, root);
        break;
    case FS_OP_INFER:
        batched = fs_api_infer_prepare(job, root);
        break;
    case FS_OP_ENCODE:
        fs_api_encode(job, root, ws);
        break;
    case FS_OP_DECODE:
        fs_api_decode(job, root, ws);
        break;
    case FS_OP_SAMPLE:
        fs_api_sample(job, root, ws);
        break;
    case FS_OP_INGEST:
    case FS_OP__COUNT:
        fs_req_error_set(&e, 500, FS_EC_INTERNAL, NULL, "unknown operation");
        fs_api_set_error(job, &e);
        break;
    }
    cJSON_Delete(root);
    return batched;
}

void fs_api_finish(fs_job *job, fs_err err)
{
    if (err != FS_OK) {
        fs_req_error e;
        fs_req_error_set(&e, 500, FS_EC_INTERNAL, NULL, "scoring failed: %s (%s)", fs_strerror(err),
                         fs_err_name(err));
        fs_api_set_error(job, &e);
        return;
    }
    if (job->mm != NULL) {
        atomic_fetch_add_explicit(&job->mm->rows[job->op], job->n_rows, memory_order_relaxed);
    }
    if (job->op == FS_OP_INFER) {
        fs_api_infer_finish(job);
    } else {
        score_finish(job);
    }
}
