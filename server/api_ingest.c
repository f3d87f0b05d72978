/*
 * api_ingest.c: POST /v1/models/{name}/records on the scoring workers (issue 5): records in,
 * spool frames and the 202 answer out. The loop appends the frames through the spool I/O
 * thread and answers once they are on disk (trainer.c).
 *
 * Memory: the body is held once (max_body_bytes); an NDJSON body is parsed one line at a
 * time, so at most one line's JSON tree exists at once; valid records are scored and framed
 * in chunks of FS_INGEST_CHUNK rows. The frames take about as much as the body.
 */
#include "api.h"

#include "spool.h"

#include <stdlib.h>
#include <string.h>

#define FS_INGEST_CHUNK 256

typedef struct ingest_state {
    fs_job *job;
    fs_workspace *ws;
    const fs_schema *schema;
    size_t n_fields;
    fs_ingest_result *res;
    fs_strbuf rejected; /* ,{"index":..} entries */
    unsigned char *seen;
    double *rows; /* FS_INGEST_CHUNK x n_fields */
    fs_score *scores;
    fs_strbuf payloads;              /* this chunk's payloads, back to back */
    size_t pay_end[FS_INGEST_CHUNK]; /* end offset of each payload in payloads */
    size_t n_chunk;
    size_t anomalous_cap;
    int failed; /* out of memory */
} ingest_state;

static void reject(ingest_state *st, size_t index, const fs_req_error *e, int line)
{
    fs_strbuf *b = &st->rejected;
    fs_strbuf_printf(b, "%s{\"index\":%zu", st->res->n_rejected > 0 ? "," : "", index);
    if (line) {
        fs_strbuf_printf(b, ",\"line\":%zu", index + 1);
    }
    if (e->field[0] != '\0') {
        fs_strbuf_puts(b, ",\"field\":");
        fs_strbuf_put_json_string(b, e->field, strlen(e->field));
    }
    fs_strbuf_puts(b, ",\"code\":");
    fs_strbuf_put_json_string(b, e->code, strlen(e->code));
    fs_strbuf_puts(b, ",\"error\":");
    fs_strbuf_put_json_string(b, e->message, strlen(e->message));
    fs_strbuf_puts(b, "}");
    st->res->n_rejected++;
}

/* Score the chunk with the served model (if any) and frame its records. */
static void flush_chunk(ingest_state *st)
{
    fs_job *job = st->job;
    fs_ingest_result *res = st->res;
    int scored = 0;
    if (st->n_chunk == 0) {
        return;
    }
    if (job->model != NULL && fs_workspace_reserve(st->ws, job->model) == FS_OK &&
        fs_model_score(job->model, st->ws, st->rows, st->n_chunk, st->scores) == FS_OK) {
        scored = 1;
    }
    if (res->n_accepted + st->n_chunk > st->anomalous_cap) {
        size_t cap = st->anomalous_cap == 0 ? FS_INGEST_CHUNK : st->anomalous_cap * 2;
        while (cap < res->n_accepted + st->n_chunk) {
            cap *= 2;
        }
        unsigned char *a = realloc(res->anomalous, cap);
        if (a == NULL) {
            st->failed = 1;
            return;
        }
        res->anomalous = a;
        st->anomalous_cap = cap;
    }
    size_t start = 0;
    for (size_t i = 0; i < st->n_chunk; i++) {
        int anomalous = scored && (st->scores[i].flags & FS_SCORE_ANOMALY) != 0;
        fs_spool_frame_put(&res->frames, st->payloads.p + start, st->pay_end[i] - start,
                           anomalous ? FS_SPOOL_FLAG_ANOMALY : 0u);
        res->anomalous[res->n_accepted++] = (unsigned char)anomalous;
        res->n_anomalous += (size_t)anomalous;
        start = st->pay_end[i];
    }
    st->n_chunk = 0;
    st->payloads.len = 0;
}

/* The JSON value of field f in rec (object or array form). */
static const cJSON *field_value(const cJSON *rec, const fs_schema *s, size_t f)
{
    if (cJSON_IsObject(rec)) {
        return cJSON_GetObjectItemCaseSensitive(rec, fs_schema_field_name(s, f));
    }
    return cJSON_GetArrayItem(rec, (int)f);
}

/* Validate one record; on success add its row and payload to the chunk. */
static void take_record(ingest_state *st, const cJSON *rec, size_t index, int line)
{
    fs_req_error e;
    double *row = st->rows + st->n_chunk * st->n_fields;
    if (fs_record_read(rec, st->schema, index, st->seen, row, &e) != 0) {
        reject(st, index, &e, line);
        return;
    }
    /* The payload keeps each record in schema order, categorical levels as their text: a
     * model trained later from the spool may know levels the served one does not. */
    size_t before = st->payloads.len;
    fs_strbuf_puts(&st->payloads, "[");
    for (size_t f = 0; f < st->n_fields; f++) {
        if (f > 0) {
            fs_strbuf_puts(&st->payloads, ",");
        }
        if (fs_schema_field_type(st->schema, f) == FS_FIELD_CATEGORICAL) {
            const cJSON *v = field_value(rec, st->schema, f);
            const char *text = cJSON_IsString(v) ? v->valuestring : "";
            fs_strbuf_put_json_string(&st->payloads, text, strlen(text));
        } else {
            fs_strbuf_put_double(&st->payloads, row[f]);
        }
    }
    fs_strbuf_puts(&st->payloads, "]");
    if (st->payloads.len - before > FS_SPOOL_MAX_PAYLOAD) {
        st->payloads.len = before;
        fs_req_error_set(&e, 400, FS_EC_INVALID_INPUT, NULL,
                         "the record is longer than %u bytes, the spool's limit",
                         FS_SPOOL_MAX_PAYLOAD);
        reject(st, index, &e, line);
        return;
    }
    st->pay_end[st->n_chunk++] = st->payloads.len;
    if (st->n_chunk == FS_INGEST_CHUNK) {
        flush_chunk(st);
    }
}

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
            return 0;
        }
    }
    return 1;
}

/* One NDJSON line (len bytes, without its newline): a record object or array. */
static void take_line(ingest_state *st, const char *line, size_t len, size_t index)
{
    fs_req_error e;
    cJSON *rec = NULL;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) {
        i++;
    }
    if (i < len && line[i] == '[') {
        /* The array form: scalars only, so no object (and no duplicate key) to check. */
        const char *end = NULL;
        if (fs_json_prescan(line, len, st->job->lim, &e) == 0) {
            rec = cJSON_ParseWithLengthOpts(line, len, &end, 0);
            size_t off = end != NULL && end >= line ? (size_t)(end - line) : 0;
            if (rec == NULL || !is_blank(line + off, len - off)) {
                cJSON_Delete(rec);
                rec = NULL;
                fs_req_error_set(&e, 400, FS_EC_INVALID_JSON, NULL,
                                 "malformed JSON at byte %zu of the line", off);
                e.offset = (long)off;
            }
        }
    } else {
        rec = fs_json_parse_object(line, len, st->job->lim, &e);
    }
    if (rec == NULL) {
        reject(st, index, &e, 1);
        return;
    }
    take_record(st, rec, index, 1);
    cJSON_Delete(rec);
}

/* Lines of the body that hold something, for the rows cap. */
static size_t count_lines(const char *body, size_t len)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || body[i] == '\n') {
            n += !is_blank(body + start, i - start);
            start = i + 1;
        }
    }
    return n;
}

static int parse_ndjson(ingest_state *st, fs_req_error *e)
{
    const char *body = st->job->body;
    size_t len = st->job->body_len, start = 0, index = 0;
    size_t n = count_lines(body, len);
    if (n > st->job->lim->max_rows) {
        return fs_req_error_set(e, 413, FS_EC_TOO_MANY_ROWS, NULL,
                                "%zu records exceed max_rows_per_request=%u", n,
                                st->job->lim->max_rows);
    }
    while (start < len && !st->failed) {
        const char *nl = memchr(body + start, '\n', len - start);
        size_t end = nl != NULL ? (size_t)(nl - body) : len;
        size_t stop = end;
        while (stop > start && (body[stop - 1] == '\r' || body[stop - 1] == ' ')) {
            stop--;
        }
        if (!is_blank(body + start, stop - start)) {
            take_line(st, body + start, stop - start, index);
        }
        index++; /* an entry's index is its 0-based line number */
        start = end + 1;
    }
    return 0;
}

static int parse_object(ingest_state *st, fs_req_error *e)
{
    fs_job *job = st->job;
    if (is_blank(job->body, job->body_len)) {
        return 0; /* an empty body stores nothing */
    }
    cJSON *root = fs_json_parse_object(job->body, job->body_len, job->lim, e);
    if (root == NULL) {
        return -1;
    }
    const cJSON *recs = NULL;
    int rc = 0;
    for (const cJSON *m = root->child; m != NULL && rc == 0; m = m->next) {
        if (strcmp(m->string, "records") == 0) {
            recs = m;
        } else {
            rc = fs_req_error_set(e, 400, FS_EC_UNKNOWN_FIELD, m->string,
                                  "unknown field \"%.64s\" in the request", m->string);
        }
    }
    if (rc == 0 && recs == NULL) {
        rc = fs_req_error_set(e, 400, FS_EC_MISSING_FIELD, "records",
                              "missing field records (an array of records)");
    } else if (rc == 0 && !cJSON_IsArray(recs)) {
        rc = fs_req_error_set(e, 400, FS_EC_INVALID_INPUT, "records",
                              "expected an array of records");
    } else if (rc == 0 && (size_t)cJSON_GetArraySize(recs) > job->lim->max_rows) {
        rc = fs_req_error_set(e, 413, FS_EC_TOO_MANY_ROWS, "records",
                              "%d records exceed max_rows_per_request=%u", cJSON_GetArraySize(recs),
                              job->lim->max_rows);
    }
    size_t i = 0;
    for (const cJSON *r = rc == 0 ? recs->child : NULL; r != NULL && !st->failed; r = r->next) {
        take_record(st, r, i++, 0);
    }
    cJSON_Delete(root);
    return rc;
}

void fs_api_ingest(fs_job *job, fs_workspace *ws)
{
    fs_req_error e;
    ingest_state st;
    memset(&st, 0, sizeof st);
    st.job = job;
    st.ws = ws;
    st.schema = job->schema;
    st.n_fields = fs_schema_n_fields(job->schema);
    st.res = calloc(1, sizeof *st.res);
    st.seen = malloc(st.n_fields + 1);
    st.rows = malloc((FS_INGEST_CHUNK * st.n_fields + 1) * sizeof *st.rows);
    st.scores = malloc(FS_INGEST_CHUNK * sizeof *st.scores);
    fs_strbuf_init(&st.rejected, 256);
    fs_strbuf_init(&st.payloads, 4096);
    if (st.res != NULL) {
        fs_strbuf_init(&st.res->frames, job->body_len + 64);
    }
    int rc = 0;
    if (st.res == NULL || st.seen == NULL || st.rows == NULL || st.scores == NULL) {
        st.failed = 1;
    } else {
        rc = job->ndjson ? parse_ndjson(&st, &e) : parse_object(&st, &e);
        flush_chunk(&st);
    }
    if (st.failed || (st.res != NULL && st.res->frames.failed) || st.rejected.failed ||
        st.payloads.failed) {
        fs_req_error_set(&e, 503, FS_EC_OVERLOADED, NULL, "out of memory reading the records");
        rc = -1;
    }
    job->op_state = st.res;
    if (rc != 0) {
        fs_api_set_error(job, &e);
    } else {
        fs_strbuf b;
        if (job->mm != NULL) {
            atomic_fetch_add_explicit(&job->mm->rows[FS_OP_INGEST], st.res->n_accepted,
                                      memory_order_relaxed);
        }
        fs_strbuf_init(&b, 64 + st.rejected.len);
        fs_strbuf_printf(&b, "{\"accepted\":%zu,\"rejected\":[", st.res->n_accepted);
        fs_strbuf_put(&b, st.rejected.p != NULL ? st.rejected.p : "", st.rejected.len);
        fs_strbuf_puts(&b, "]}\n");
        fs_api_set_body(job, 202, &b);
    }
    fs_strbuf_free(&st.rejected);
    fs_strbuf_free(&st.payloads);
    free(st.seen);
    free(st.rows);
    free(st.scores);
}

void fs_api_ingest_release(fs_job *job)
{
    fs_ingest_result *res = job->op_state;
    if (res == NULL) {
        return;
    }
    fs_strbuf_free(&res->frames);
    free(res->anomalous);
    free(res);
    job->op_state = NULL;
}
