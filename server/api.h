/*
 * api.h: the endpoints' work that runs on the scoring workers (api_score.c, api_latent.c,
 * api_v2.c), and the job that carries one request from the loop to a worker and back.
 *
 * A job's life: the loop fills the request part and takes a model reference
 * (fs_model_ref), then fs_pool_submit. A worker calls fs_api_prepare: it parses and validates
 * the body (never on the loop), and either answers at once (errors, encode, decode, sample,
 * empty batches) or leaves rows for a batched fs_model_score, after which fs_api_finish
 * prints the answer. The pool then hands the job back to the loop, which queues the answer
 * and calls fs_api_job_release.
 */
#ifndef FS_API_H
#define FS_API_H

#include "metrics.h"
#include "records.h"

#include <stdint.h>

typedef struct fs_job fs_job;

/* Called on the loop thread when a job has its answer. */
typedef void (*fs_job_done_fn)(fs_job *job);

struct fs_job {
    /* Request part: set on the loop before submission, read-only afterwards. */
    fs_op op;
    fs_model *model;        /* a reference owned by the job */
    int64_t version;        /* the version of model */
    const char *model_name; /* the registry entry's name (lives as long as the server) */
    fs_model_metrics *mm;   /* the model's metrics (lives as long as the server) */
    const char *body;       /* the request body, borrowed from the HTTP request */
    size_t body_len;
    const fs_json_limits *lim; /* the configuration's caps */
    int v2;                    /* answer errors in the Open Inference Protocol form */
    uint64_t submitted_ns;     /* monotonic, for the queue timeout */
    fs_job_done_fn done;
    void *owner;             /* the HTTP request */
    const fs_schema *schema; /* ingest: validates the records (borrowed; outlives the job) */
    int ndjson;              /* ingest: the body is NDJSON, one record per line */

    /* Worker part: between fs_api_prepare and fs_api_finish (one worker at a time). */
    double *rows; /* n_rows x n_fields, for a batched score */
    size_t n_rows;
    fs_score *scores; /* n_rows, filled by the batch */
    void *op_state;   /* per-operation parse results (v2 infer: id, outputs) */
    uint64_t ready_ns;

    /* Answer: written by the worker (or the loop when cancelling), read by the loop after
     * the pool's hand-off (its mutex orders the two). */
    int status;
    char *resp; /* malloc'd body */
    size_t resp_len;
    const char *content_type;
    const char *err_code; /* FS_EC_* of an error answer, else NULL */

    fs_job *next; /* pool queues: guarded by the pool's locks */
};

/*
 * Worker: parse and validate job->body for job->op. Returns 1 when job->rows, n_rows and
 * scores are ready for a batched fs_model_score (score and v2 infer), 0 when the job already
 * has its answer (an error, an empty batch, or encode/decode/sample, computed here with ws).
 */
int fs_api_prepare(fs_job *job, fs_workspace *ws);

/* Worker: the batch ended with err (FS_OK: job->scores is filled); print the answer. */
void fs_api_finish(fs_job *job, fs_err err);

/* Set an error answer from e (in the job's error form) and count the failure. */
void fs_api_set_error(fs_job *job, const fs_req_error *e);

/*
 * Refuse top-level keys of the request object root other than allowed (NULL-terminated):
 * 400 unknown_field naming the key in e, returns -1; 0 when every key is allowed.
 */
int fs_api_only_keys(const cJSON *root, const char *const *allowed, fs_req_error *e);

/* Set a 2xx answer from b (taken); a refused non-finite number or OOM becomes a 500. */
void fs_api_set_body(fs_job *job, int status, fs_strbuf *b);

/* Free what the worker part and the answer hold (not the model reference). Loop thread. */
void fs_api_job_release(fs_job *job);

/*
 * What an ingest job produced (job->op_state, api_ingest.c): the frames to append to the
 * model's spool (fs_spool_frame_put, seq and CRC still zero), and the counts. The 202 answer
 * {"accepted", "rejected"} is already in job->resp; the loop sends it once the frames are on
 * disk.
 */
typedef struct fs_ingest_result {
    fs_strbuf frames;
    size_t n_accepted;
    size_t n_rejected;
    size_t n_anomalous;       /* accepted records above the served threshold */
    unsigned char *anomalous; /* n_accepted flags (1 = anomalous), in order (malloc'd) */
} fs_ingest_result;

/*
 * Worker: POST /v1/models/{name}/records. Parse the body ({"records": [...]} or NDJSON, one
 * record per line), validate each record against job->schema (the rules of fs_record_read),
 * score the valid ones with job->model when there is one (for the anomaly-burst detector),
 * and leave the frames in an fs_ingest_result (job->op_state) and the 202 answer in job->resp.
 * Invalid records are listed by index and do not stop the others; a body that is not JSON
 * at all (the object form), or more records than max_rows_per_request, is answered 400/413.
 */
void fs_api_ingest(fs_job *job, fs_workspace *ws);

/* Free an ingest job's op_state (NULL is fine). */
void fs_api_ingest_release(fs_job *job);

/* Workers' operations, by endpoint (api_latent.c, api_v2.c). */
void fs_api_encode(fs_job *job, const cJSON *root, fs_workspace *ws);
void fs_api_decode(fs_job *job, const cJSON *root, fs_workspace *ws);
void fs_api_sample(fs_job *job, const cJSON *root, fs_workspace *ws);
int fs_api_infer_prepare(fs_job *job, const cJSON *root);
void fs_api_infer_finish(fs_job *job);
void fs_api_infer_release(fs_job *job);

#endif /* FS_API_H */
