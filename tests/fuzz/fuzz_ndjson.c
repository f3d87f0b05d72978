/*
 * fuzz_ndjson.c: the ingest body parser of POST /v1/models/{name}/records (issue 5, fuzzed
 * under issue 7 §1), driven as a worker drives it: fs_api_ingest on a job, NDJSON (one record
 * per line) or the {"records": [...]} form.
 *
 * Input: byte 0 picks the form (bit 0: NDJSON), whether a served model scores the records
 * for the anomaly-burst detector (bit 1), and the schema (bit 2: the mixed model's float,
 * integer, categorical and flag fields, else the numeric x0..x3); the rest is the body.
 *
 * Promises checked, beyond ASan/UBSan/LSan:
 * - a 202 is strict JSON, valid UTF-8: {"accepted": N, "rejected": [{"index", "code",
 *   "error", ...}]} with indices strictly increasing, NDJSON entries carrying "line" =
 *   index + 1, and accepted + rejected = the records sent (non-blank lines, or the array);
 *   the job's result agrees (n_accepted, n_rejected, frames only when something was taken);
 * - any other answer is a 4xx with a JSON error body; never a 5xx.
 */
#include "api.h"
#include "flowscore.h"
#include "fuzz_models.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const fs_json_limits fuzz_lim = { 64, 4096, 64 };

/* Records the body holds: non-blank lines (NDJSON, as the parser counts them), else -1. */
static long ndjson_records(const char *body, size_t len)
{
    long n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || body[i] == '\n') {
            int blank = 1;
            for (size_t k = start; k < i && blank; k++) {
                blank = body[k] == ' ' || body[k] == '\t' || body[k] == '\r';
            }
            n += !blank;
            start = i + 1;
        }
    }
    return n;
}

static void check_accepted(const fs_job *job, const cJSON *root, long sent)
{
    const fs_ingest_result *res = job->op_state;
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(root, "accepted");
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(root, "rejected");
    double last = -1;
    long n_rej = 0;
    if (res == NULL || !cJSON_IsNumber(acc) || !cJSON_IsArray(rej)) {
        die("a 202 without accepted and rejected", job->resp);
    }
    for (const cJSON *e = rej->child; e != NULL; e = e->next, n_rej++) {
        const cJSON *index = cJSON_GetObjectItemCaseSensitive(e, "index");
        const cJSON *line = cJSON_GetObjectItemCaseSensitive(e, "line");
        if (!cJSON_IsNumber(index) || index->valuedouble <= last ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "error")) ||
            (job->ndjson &&
             (!cJSON_IsNumber(line) || line->valuedouble != index->valuedouble + 1))) {
            die("a rejected entry out of order or without index, line, code or error", job->resp);
        }
        last = index->valuedouble;
    }
    if ((double)res->n_accepted != acc->valuedouble || (long)res->n_rejected != n_rej) {
        die("the answer and the job's result disagree", job->resp);
    }
    if (sent >= 0 && (long)res->n_accepted + n_rej != sent) {
        die("accepted + rejected is not the number of records sent", job->resp);
    }
    if ((res->n_accepted > 0) != (res->frames.len > 0)) {
        die("frames without accepted records, or accepted records without frames", job->resp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_models *fm = models();
    fs_job job;
    const char *end = NULL;
    if (size < 1) {
        return 0;
    }
    fs_model *schema_model = (data[0] & 4) != 0 ? fm->mixed : fm->numeric;
    memset(&job, 0, sizeof job);
    job.op = FS_OP_INGEST;
    job.model = (data[0] & 2) != 0 ? fs_model_ref(schema_model) : NULL; /* NULL: no version yet */
    job.version = 1;
    job.model_name = "fuzz";
    job.schema = fs_model_schema(schema_model);
    job.ndjson = data[0] & 1;
    job.body = (const char *)data + 1;
    job.body_len = size - 1;
    job.lim = &fuzz_lim;
    fs_api_ingest(&job, fm->ws);
    if (job.resp == NULL || job.status >= 500 || job.status < 200 ||
        !utf8_valid((const unsigned char *)job.resp, job.resp_len)) {
        die("no answer, a 5xx, or invalid UTF-8", job.resp);
    }
    cJSON *root = cJSON_ParseWithLengthOpts(job.resp, job.resp_len, &end, 0);
    if (root == NULL || !cJSON_IsObject(root) || !all_finite(root)) {
        die("the answer is not strict JSON", job.resp);
    }
    if (job.status == 202) {
        long sent = job.ndjson ? ndjson_records(job.body, job.body_len) : -1;
        if (!job.ndjson) {
            /* The object form: the parser accepted it, so it is one object with records. */
            cJSON *body = cJSON_ParseWithLength(job.body, job.body_len);
            const cJSON *recs = cJSON_GetObjectItemCaseSensitive(body, "records");
            sent = cJSON_IsArray(recs) ? cJSON_GetArraySize(recs) : 0;
            cJSON_Delete(body);
        }
        check_accepted(&job, root, sent);
    } else if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "error")) ||
               job.status == 200) {
        die("an error answer without an error body", job.resp);
    }
    cJSON_Delete(root);
    fs_model_unref(job.model);
    job.model = NULL;
    fs_api_job_release(&job);
    return 0;
}
