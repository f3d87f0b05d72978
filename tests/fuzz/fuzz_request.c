/*
 * fuzz_request.c: the request-body parser of every endpoint that takes a body (issue 7 §1),
 * driven exactly as a scoring worker drives it: fs_api_prepare, then for score and v2 infer
 * the engine call and fs_api_finish (server/pool.c, run_batch).
 *
 * Input: byte 0 picks the endpoint (score, encode, decode, sample, v2 infer: byte % 5) and
 * the model ((byte / 5) % 2: a numeric ref-realnvp with D = 4, or a trained model with a
 * float, an integer count, a categorical and a 0/1 flag); the rest is the body.
 *
 * Promises checked on every input, beyond ASan/UBSan/LSan:
 * - a 200 answer is strict JSON (no NaN or Infinity token, every number finite), valid
 *   UTF-8, and has one result per row asked for;
 * - a 4xx answer is a JSON error body in the route's form, valid UTF-8, with a code;
 * - there is never a 5xx: every input is either served or refused as the client's fault.
 */
#include "api.h"
#include "flowscore.h"
#include "fuzz_models.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The caps of the daemon's defaults, with a smaller row cap to keep each run fast. */
static const fs_json_limits fuzz_lim = { 64, 4096, 64 };

static size_t array_size(const cJSON *a)
{
    return cJSON_IsArray(a) ? (size_t)cJSON_GetArraySize(a) : (size_t)-1;
}

/* The answer of a finished job must keep the promises of the file comment. */
static void check_answer(const fs_job *job, size_t n_rows_done)
{
    const char *end = NULL;
    if (job->resp == NULL || job->resp_len == 0) {
        die("no answer body", NULL);
    }
    if (job->status >= 500 || job->status < 200) {
        die("a 5xx (or no status) for a request", job->resp);
    }
    if (!utf8_valid((const unsigned char *)job->resp, job->resp_len)) {
        die("the answer is not valid UTF-8", job->resp);
    }
    if (memchr(job->resp, '\0', job->resp_len) != NULL) {
        die("the answer holds a NUL byte", job->resp);
    }
    cJSON *root = cJSON_ParseWithLengthOpts(job->resp, job->resp_len, &end, 0);
    if (root == NULL || !cJSON_IsObject(root) || !all_finite(root)) {
        die("the answer is not strict JSON with finite numbers", job->resp);
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (job->status != 200) {
        int ok = job->v2 ? cJSON_IsString(err)
                         : cJSON_IsObject(err) &&
                               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "code")) &&
                               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message"));
        if (!ok || job->err_code == NULL) {
            die("an error answer without a proper error body", job->resp);
        }
        cJSON_Delete(root);
        return;
    }
    size_t got = (size_t)-1;
    switch (job->op) {
    case FS_OP_SCORE:
        got = array_size(cJSON_GetObjectItemCaseSensitive(root, "results"));
        break;
    case FS_OP_ENCODE:
        got = array_size(cJSON_GetObjectItemCaseSensitive(root, "latents"));
        break;
    case FS_OP_DECODE:
    case FS_OP_SAMPLE:
        got = array_size(cJSON_GetObjectItemCaseSensitive(root, "records"));
        if (n_rows_done == (size_t)-1) {
            n_rows_done = got; /* sample: n is checked by the unit tests */
        }
        break;
    case FS_OP_INFER: {
        /* Every output tensor (none when the request asked for none) has one value a row. */
        const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
        if (!cJSON_IsArray(outs)) {
            die("a v2 answer without outputs", job->resp);
        }
        got = n_rows_done;
        for (const cJSON *o = outs->child; o != NULL; o = o->next) {
            if (array_size(cJSON_GetObjectItemCaseSensitive(o, "data")) != n_rows_done) {
                got = (size_t)-2;
            }
        }
        break;
    }
    default: /* not an operation of this target */
        break;
    }
    if (n_rows_done != (size_t)-1 && got != n_rows_done) {
        die("a 200 answer with the wrong number of rows", job->resp);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fs_op ops[5] = { FS_OP_SCORE, FS_OP_ENCODE, FS_OP_DECODE, FS_OP_SAMPLE,
                                  FS_OP_INFER };
    fuzz_models *fm = models();
    fs_job job;
    if (size < 1) {
        return 0;
    }
    memset(&job, 0, sizeof job);
    job.op = ops[data[0] % 5];
    job.model = fs_model_ref((data[0] / 5) % 2 == 0 ? fm->numeric : fm->mixed);
    job.version = 1;
    job.model_name = "fuzz";
    job.body = (const char *)data + 1;
    job.body_len = size - 1;
    job.lim = &fuzz_lim;
    job.v2 = job.op == FS_OP_INFER;
    size_t n_rows_done = (size_t)-1;
    if (fs_api_prepare(&job, fm->ws) == 1) {
        fs_err err = fs_workspace_reserve(fm->ws, job.model);
        if (err == FS_OK) {
            err = fs_model_score(job.model, fm->ws, job.rows, job.n_rows, job.scores);
        }
        fs_api_finish(&job, err);
        n_rows_done = job.n_rows;
    } else if (job.status == 200 && (job.op == FS_OP_SCORE || job.op == FS_OP_INFER)) {
        n_rows_done = 0; /* answered at once: an empty batch */
    } else if (job.status == 200 && job.op == FS_OP_ENCODE) {
        n_rows_done = job.n_rows;
    }
    check_answer(&job, n_rows_done);
    fs_model_unref(job.model);
    job.model = NULL;
    fs_api_job_release(&job);
    return 0;
}
