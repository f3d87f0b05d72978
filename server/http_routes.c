/* http_routes.c: the URL table, methods, admin authorisation, and each route's handling. */
#include "http.h"

#include "log.h"
#include "trainer.h"

#include <strings.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const fs_route_names[FS_ROUTE__COUNT] = {
    [FS_ROUTE_NOT_FOUND] = "other",
    [FS_ROUTE_HEALTHZ] = "/healthz",
    [FS_ROUTE_READYZ] = "/readyz",
    [FS_ROUTE_METRICS] = "/metrics",
    [FS_ROUTE_MODELS] = "/v1/models",
    [FS_ROUTE_MODEL] = "/v1/models/{name}",
    [FS_ROUTE_SCORE] = "/v1/models/{name}/score",
    [FS_ROUTE_SAMPLE] = "/v1/models/{name}/sample",
    [FS_ROUTE_ENCODE] = "/v1/models/{name}/encode",
    [FS_ROUTE_DECODE] = "/v1/models/{name}/decode",
    [FS_ROUTE_RELOAD] = "/v1/models/{name}/reload",
    [FS_ROUTE_RECORDS] = "/v1/models/{name}/records",
    [FS_ROUTE_TRAINING] = "/v1/models/{name}/training",
    [FS_ROUTE_V2] = "/v2",
    [FS_ROUTE_V2_LIVE] = "/v2/health/live",
    [FS_ROUTE_V2_READY] = "/v2/health/ready",
    [FS_ROUTE_V2_MODEL] = "/v2/models/{name}",
    [FS_ROUTE_V2_MODEL_READY] = "/v2/models/{name}/ready",
    [FS_ROUTE_V2_INFER] = "/v2/models/{name}/infer",
};

/* Whether the route takes POST (else GET and HEAD). */
static int route_is_post(fs_route r)
{
    return r == FS_ROUTE_SCORE || r == FS_ROUTE_SAMPLE || r == FS_ROUTE_ENCODE ||
           r == FS_ROUTE_DECODE || r == FS_ROUTE_RELOAD || r == FS_ROUTE_V2_INFER ||
           r == FS_ROUTE_RECORDS;
}

/* Whether the route's URL holds a {name} (an empty one is an unknown model: 404). */
static int route_has_name(fs_route r)
{
    return r == FS_ROUTE_MODEL || r == FS_ROUTE_SCORE || r == FS_ROUTE_SAMPLE ||
           r == FS_ROUTE_ENCODE || r == FS_ROUTE_DECODE || r == FS_ROUTE_RELOAD ||
           r == FS_ROUTE_RECORDS || r == FS_ROUTE_TRAINING || r == FS_ROUTE_V2_MODEL ||
           r == FS_ROUTE_V2_MODEL_READY || r == FS_ROUTE_V2_INFER;
}

/* Split "/a/b/c" into at most 8 segments (pointers into buf). */
static size_t split_path(char *buf, char **seg, size_t max)
{
    size_t n = 0;
    char *p = buf;
    while (*p == '/') {
        p++;
    }
    while (*p != '\0' && n < max) {
        seg[n++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL) {
            break;
        }
        *slash = '\0';
        p = slash + 1;
    }
    return *p == '\0' || n < max ? n : max + 1;
}

static int parse_version(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (s[0] < '1' || s[0] > '9' || strlen(s) > 18) {
        return -1;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

/* /v2/models/{name}[/versions/{v}][/ready|/infer], seg[0..1] = "v2","models". */
static fs_route route_v2_model(fs_req *r, char **seg, size_t n)
{
    size_t i = 3;
    if (n >= 5 && strcmp(seg[3], "versions") == 0) {
        if (parse_version(seg[4], &r->url_version) != 0) {
            return FS_ROUTE_NOT_FOUND;
        }
        i = 5;
    }
    if (n == i) {
        return FS_ROUTE_V2_MODEL;
    }
    if (n == i + 1 && strcmp(seg[i], "ready") == 0) {
        return FS_ROUTE_V2_MODEL_READY;
    }
    if (n == i + 1 && strcmp(seg[i], "infer") == 0) {
        return FS_ROUTE_V2_INFER;
    }
    return FS_ROUTE_NOT_FOUND;
}

static fs_route match(fs_req *r, const char *url)
{
    char buf[512];
    char *seg[8];
    if (strlen(url) >= sizeof buf) {
        return FS_ROUTE_NOT_FOUND;
    }
    memcpy(buf, url, strlen(url) + 1);
    size_t n = split_path(buf, seg, 8);
    if (n == 1 && strcmp(seg[0], "healthz") == 0) {
        return FS_ROUTE_HEALTHZ;
    }
    if (n == 1 && strcmp(seg[0], "readyz") == 0) {
        return FS_ROUTE_READYZ;
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        return FS_ROUTE_METRICS;
    }
    if (n == 1 && strcmp(seg[0], "v2") == 0) {
        return FS_ROUTE_V2;
    }
    if (n == 3 && strcmp(seg[0], "v2") == 0 && strcmp(seg[1], "health") == 0) {
        return strcmp(seg[2], "live") == 0    ? FS_ROUTE_V2_LIVE
               : strcmp(seg[2], "ready") == 0 ? FS_ROUTE_V2_READY
                                              : FS_ROUTE_NOT_FOUND;
    }
    if (n == 2 && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "models") == 0) {
        return FS_ROUTE_MODELS;
    }
    if (n < 3 || strcmp(seg[1], "models") != 0 ||
        (strcmp(seg[0], "v1") != 0 && strcmp(seg[0], "v2") != 0)) {
        return FS_ROUTE_NOT_FOUND;
    }
    r->name_len = strlen(seg[2]);
    if (r->name_len >= sizeof r->name) {
        r->name_len = sizeof r->name - 1;
    }
    memcpy(r->name, seg[2], r->name_len);
    r->name[r->name_len] = '\0';
    if (strcmp(seg[0], "v2") == 0) {
        return route_v2_model(r, seg, n);
    }
    if (n == 3) {
        return FS_ROUTE_MODEL;
    }
    if (n != 4) {
        return FS_ROUTE_NOT_FOUND;
    }
    static const struct {
        const char *verb;
        fs_route route;
    } verbs[] = { { "score", FS_ROUTE_SCORE },      { "sample", FS_ROUTE_SAMPLE },
                  { "encode", FS_ROUTE_ENCODE },    { "decode", FS_ROUTE_DECODE },
                  { "reload", FS_ROUTE_RELOAD },    { "records", FS_ROUTE_RECORDS },
                  { "training", FS_ROUTE_TRAINING } };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(seg[3], verbs[i].verb) == 0) {
            return verbs[i].route;
        }
    }
    return FS_ROUTE_NOT_FOUND;
}

void fs__http_route(fs_req *r, const char *url, const char *method)
{
    r->route = match(r, url);
    if (strcmp(method, "GET") == 0) {
        r->method = "GET";
    } else if (strcmp(method, "POST") == 0) {
        r->method = "POST";
    } else if (strcmp(method, "HEAD") == 0) {
        r->method = "HEAD";
        r->is_head = 1;
    } else {
        r->method = "other";
    }
}

int fs__http_admin_ok(fs_req *r)
{
    const fs_config *cfg = &r->http->srv->cfg;
    fs_req_error e;
    if (cfg->admin_token_len == 0) {
        return 1;
    }
    const char *auth =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* the scheme is case-insensitive (RFC 7235, section 2.1); the token is not */
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
        fs_req_error_set(&e, 401, FS_EC_UNAUTHORIZED, NULL,
                         "this endpoint needs an Authorization: Bearer token");
        fs__http_error(r, &e);
        r->www_authenticate = 1;
        return 0;
    }
    /* Constant time in the token's length: no early exit on the first differing byte. */
    const char *given = auth + 7;
    size_t given_len = strlen(given);
    unsigned char diff = (unsigned char)(given_len != cfg->admin_token_len);
    for (size_t i = 0; i < cfg->admin_token_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)cfg->admin_token[i]);
    }
    if (diff != 0) {
        fs_req_error_set(&e, 403, FS_EC_FORBIDDEN, NULL, "the bearer token is not valid");
        fs__http_error(r, &e);
        return 0;
    }
    return 1;
}

/* Move a finished job's answer to its request (the request stays suspended). */
static void on_job_done_keep(fs_job *job)
{
    fs_req *r = job->owner;
    r->job_out = 0;
    fs_model_unref(job->model);
    job->model = NULL;
    free(r->resp);
    r->status = job->status;
    r->resp = job->resp;
    r->resp_len = job->resp_len;
    r->content_type = job->content_type;
    r->err_code = job->err_code;
    job->resp = NULL;
}

static void on_job_done(fs_job *job)
{
    fs_req *r = job->owner;
    on_job_done_keep(job);
    fs_api_job_release(job);
    fs__http_resume(r);
}

/* Queue job (filled in, holding its model reference) on the worker pool and suspend r until
 * it is done; a full queue answers 503 and drops the reference. */
static void hand_to_pool(fs_req *r, fs_job *job)
{
    fs_server *srv = r->http->srv;
    fs_req_error err;
    if (fs_pool_submit(srv->pool, job) != 0) {
        fs_model_unref(job->model);
        job->model = NULL;
        fs_req_error_set(&err, 503, FS_EC_OVERLOADED, NULL,
                         "too many requests are queued (max_queued_requests=%u)",
                         srv->cfg.max_queued_requests);
        fs__http_error(r, &err);
        return;
    }
    r->job_out = 1;
    r->state = FS_REQ_WAITING;
}

static void submit_job(fs_req *r, fs_entry *e, fs_op op)
{
    fs_server *srv = r->http->srv;
    fs_req_error err;
    fs_job *job = &r->job;
    if (e == NULL || e->current == NULL) {
        fs_req_error_set(&err, 503, FS_EC_UNAVAILABLE, NULL,
                         "model %s is not loaded yet (see GET /v1/models/%s)", r->name, r->name);
        fs__http_error(r, &err);
        return;
    }
    if (r->url_version != 0 && r->url_version != e->version) {
        fs_req_error_set(&err, 404, FS_EC_MODEL_NOT_FOUND, NULL,
                         "version %lld of model %s is not served (serving %lld)",
                         (long long)r->url_version, e->name, (long long)e->version);
        fs__http_error(r, &err);
        return;
    }
    memset(job, 0, sizeof *job);
    job->op = op;
    job->model = fs_model_ref(e->current); /* the job keeps this version alive */
    job->version = e->version;
    job->model_name = e->name;
    job->mm = e->mm;
    job->body = r->body != NULL ? r->body : "";
    job->body_len = r->body_len;
    job->lim = &srv->lim;
    job->v2 = op == FS_OP_INFER;
    job->done = on_job_done;
    job->owner = r;
    hand_to_pool(r, job);
}

static void on_reloaded(fs_reload_waiter *w, fs_entry *e, int ok)
{
    fs_req *r = w->arg;
    fs_strbuf b;
    fs_req_error err;
    fs_strbuf_init(&b, 256);
    int status = fs_api_reload_answer(e, ok, &b, &err);
    if (status >= 400) {
        fs_strbuf_free(&b);
        fs__http_error(r, &err);
    } else {
        fs__http_answer(r, status, &b, "application/json");
    }
    if (r->job_out == 2) {
        return; /* answered synchronously, inside fs__http_dispatch */
    }
    fs__http_resume(r);
}

static void start_reload(fs_req *r, fs_entry *e)
{
    fs_server *srv = r->http->srv;
    r->waiter.done = on_reloaded;
    r->waiter.arg = r;
    r->state = FS_REQ_WAITING;
    r->job_out = 2; /* a synchronous answer must not resume a connection not yet suspended */
    fs_registry_reload(srv->reg, e, &r->waiter);
    r->job_out = 0;
}

static void on_ingest_stored(void *arg, int ok, const char *error)
{
    fs_req *r = arg;
    if (!ok) {
        fs_req_error e;
        fs_req_error_set(&e, 503, FS_EC_UNAVAILABLE, NULL,
                         "the records could not be stored (%.200s); none was accepted: retry",
                         error != NULL ? error : "error");
        fs__http_error(r, &e);
    }
    fs__http_resume(r);
}

/* An ingest job is back from the worker: store its records, then answer (or answer now). */
static void on_ingest_job_done(fs_job *job)
{
    fs_req *r = job->owner;
    fs_ingest_result *res = job->op_state;
    fs_server *srv = r->http->srv;
    char err[400];
    on_job_done_keep(job);
    if (r->status == 202 && res != NULL && res->n_accepted > 0) {
        if (fs_refit_store(srv->refit, r->tm, res, on_ingest_stored, r, err, sizeof err) == 0) {
            fs_api_job_release(job);
            return; /* answered once the records are on disk */
        }
        fs_req_error e;
        fs_req_error_set(&e, 503, FS_EC_UNAVAILABLE, NULL, "%s", err);
        fs__http_error(r, &e);
    } else if (r->status == 202 && res != NULL && job->mm != NULL) {
        atomic_fetch_add(&job->mm->ingest_rejected, res->n_rejected);
    }
    fs_api_job_release(job);
    fs__http_resume(r);
}

/* POST /v1/models/{name}/records: validation on a worker, then the spool. */
static void submit_ingest(fs_req *r, fs_entry *e)
{
    fs_server *srv = r->http->srv;
    fs_req_error err;
    fs_job *job = &r->job;
    fs_tmodel *tm = fs_refit_model(srv->refit, e);
    if (tm == NULL) {
        fs_req_error_set(&err, 409, FS_EC_TRAINER_DISABLED, NULL,
                         "the background trainer is disabled for model %s (trainer.enabled)",
                         e->name);
        fs__http_error(r, &err);
        return;
    }
    const fs_schema *schema =
        e->current != NULL ? fs_model_schema(e->current) : fs_refit_schema(tm);
    if (schema == NULL) {
        fs_req_error_set(&err, 503, FS_EC_UNAVAILABLE, NULL,
                         "model %s is not loaded and has no configured schema", e->name);
        fs__http_error(r, &err);
        return;
    }
    const char *ctype =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    memset(job, 0, sizeof *job);
    job->op = FS_OP_INGEST;
    job->model = e->current != NULL ? fs_model_ref(e->current) : NULL; /* keeps schema alive */
    job->version = e->version;
    job->model_name = e->name;
    job->mm = e->mm;
    job->schema = schema;
    job->ndjson = ctype != NULL && strncasecmp(ctype, "application/x-ndjson", 20) == 0;
    job->body = r->body != NULL ? r->body : "";
    job->body_len = r->body_len;
    job->lim = &srv->lim;
    job->done = on_ingest_job_done;
    job->owner = r;
    r->tm = tm;
    hand_to_pool(r, job);
}

/* GET (status) and POST (admin: refit now) /v1/models/{name}/training, on the loop. */
static void training(fs_req *r, fs_entry *e)
{
    fs_server *srv = r->http->srv;
    fs_req_error err;
    fs_strbuf b;
    int status;
    fs_strbuf_init(&b, 1024);
    if (strcmp(r->method, "POST") != 0) {
        status = srv->refit != NULL ? fs_refit_status(srv->refit, e, &b) : 200;
        if (srv->refit == NULL) {
            fs_strbuf_puts(&b, "{\"model\":");
            fs_strbuf_put_json_string(&b, e->name, strlen(e->name));
            fs_strbuf_puts(&b, ",\"enabled\":false,\"state\":\"disabled\",\"last_run\":null}\n");
        }
        fs__http_answer(r, status, &b, "application/json");
        return;
    }
    if (!fs__http_admin_ok(r)) {
        fs_strbuf_free(&b);
        return;
    }
    if (srv->refit == NULL) {
        fs_req_error_set(&err, 409, FS_EC_TRAINER_DISABLED, NULL,
                         "the background trainer is disabled (trainer.enabled)");
        status = 409;
    } else {
        status = fs_refit_trigger(srv->refit, e, &b, &err);
    }
    if (status >= 400) {
        fs_strbuf_free(&b);
        fs__http_error(r, &err);
        return;
    }
    fs__http_answer(r, status, &b, "application/json");
}

/* GET routes answered on the loop: small, bounded documents. */
static void answer_get(fs_req *r, fs_entry *e)
{
    fs_server *srv = r->http->srv;
    fs_strbuf b;
    int status = 200;
    const char *ctype = "application/json";
    if (e == NULL && (r->route == FS_ROUTE_MODEL || r->route == FS_ROUTE_V2_MODEL ||
                      r->route == FS_ROUTE_V2_MODEL_READY)) {
        fs_req_error err;
        fs_req_error_set(&err, 404, FS_EC_MODEL_NOT_FOUND, NULL, "no such model");
        fs__http_error(r, &err);
        return;
    }
    fs_strbuf_init(&b, 1024);
    switch (r->route) {
    case FS_ROUTE_HEALTHZ:
        fs_strbuf_puts(&b, "{\"status\":\"ok\"}\n");
        break;
    case FS_ROUTE_READYZ:
    case FS_ROUTE_V2_READY:
        status = fs_server_ready(srv) ? 200 : (r->route == FS_ROUTE_READYZ ? 503 : 400);
        fs_strbuf_printf(&b, "{\"ready\":%s}\n", status == 200 ? "true" : "false");
        break;
    case FS_ROUTE_V2_LIVE:
        fs_strbuf_puts(&b, "{\"live\":true}\n");
        break;
    case FS_ROUTE_METRICS: {
        fs_metrics_gauges g = { fs_pool_queue_depth(srv->pool), fs_pool_workers(srv->pool),
                                fs_pool_busy(srv->pool), fs_http_connections(r->http),
                                fs_http_in_flight(r->http) };
        fs_metrics_render(srv->metrics, &g, &b);
        ctype = FS_METRICS_CONTENT_TYPE;
        break;
    }
    case FS_ROUTE_MODELS:
        status = fs_api_models_list(srv, &b);
        break;
    case FS_ROUTE_MODEL:
        status = fs_api_model_detail(srv, e, &b);
        break;
    case FS_ROUTE_V2:
        status = fs_api_v2_server(srv, &b);
        break;
    case FS_ROUTE_V2_MODEL:
        status = fs_api_v2_model(srv, e, &b);
        break;
    case FS_ROUTE_V2_MODEL_READY: {
        int ready = e->current != NULL && (r->url_version == 0 || r->url_version == e->version);
        status = ready ? 200 : 400;
        fs_strbuf_puts(&b, "{\"name\":");
        fs_strbuf_put_json_string(&b, e->name, strlen(e->name));
        fs_strbuf_printf(&b, ",\"ready\":%s}\n", ready ? "true" : "false");
        break;
    }
    default:
        break;
    }
    fs__http_answer(r, status, &b, ctype);
}

void fs__http_dispatch(fs_req *r)
{
    fs_server *srv = r->http->srv;
    fs_req_error err;
    fs_entry *e = NULL;
    int post = route_is_post(r->route) ||
               (r->route == FS_ROUTE_TRAINING && strcmp(r->method, "POST") == 0);
    if (r->route == FS_ROUTE_NOT_FOUND) {
        fs_req_error_set(&err, 404, FS_EC_NOT_FOUND, NULL, "no such endpoint");
        fs__http_error(r, &err);
        return;
    }
    if (r->route == FS_ROUTE_TRAINING && strcmp(r->method, "other") == 0) {
        fs_req_error_set(&err, 405, FS_EC_METHOD, NULL, "method not allowed: use GET or POST");
        fs__http_error(r, &err);
        r->allow = "GET, HEAD, POST";
        return;
    }
    if (post ? strcmp(r->method, "POST") != 0 : (strcmp(r->method, "GET") != 0 && !r->is_head)) {
        fs_req_error_set(&err, 405, FS_EC_METHOD, NULL, "method not allowed: use %s",
                         post ? "POST" : "GET");
        fs__http_error(r, &err);
        r->allow = post ? "POST" : "GET, HEAD";
        return;
    }
    if (r->after_drain && post) {
        /* Requests already in flight when the drain began are answered; new ones are not. */
        fs_req_error_set(&err, 503, FS_EC_UNAVAILABLE, NULL, "the server is shutting down");
        fs__http_error(r, &err);
        return;
    }
    if (r->name_len > 0 || route_has_name(r->route)) {
        e = fs_model_name_valid(r->name, r->name_len)
                ? fs_registry_find(srv->reg, r->name, r->name_len)
                : NULL;
        if (e == NULL) {
            fs_req_error_set(&err, 404, FS_EC_MODEL_NOT_FOUND, NULL, "no model named \"%.64s\"",
                             r->name);
            fs__http_error(r, &err);
            return;
        }
        if ((r->route == FS_ROUTE_V2_MODEL) && r->url_version != 0 &&
            r->url_version != e->version) {
            fs_req_error_set(&err, 404, FS_EC_MODEL_NOT_FOUND, NULL,
                             "version %lld of model %s is not served", (long long)r->url_version,
                             e->name);
            fs__http_error(r, &err);
            return;
        }
    }
    switch (r->route) {
    case FS_ROUTE_SCORE:
        submit_job(r, e, FS_OP_SCORE);
        return;
    case FS_ROUTE_SAMPLE:
        submit_job(r, e, FS_OP_SAMPLE);
        return;
    case FS_ROUTE_ENCODE:
        submit_job(r, e, FS_OP_ENCODE);
        return;
    case FS_ROUTE_DECODE:
        submit_job(r, e, FS_OP_DECODE);
        return;
    case FS_ROUTE_V2_INFER:
        submit_job(r, e, FS_OP_INFER);
        return;
    case FS_ROUTE_RELOAD:
        if (e != NULL && fs__http_admin_ok(r)) {
            start_reload(r, e);
        }
        return;
    case FS_ROUTE_RECORDS:
        /*
         * Ingested records decide the next refit, and with it what is anomalous (data
         * poisoning): with a token configured, ingest is an admin endpoint like training.
         */
        if (e != NULL && fs__http_admin_ok(r)) {
            submit_ingest(r, e);
        }
        return;
    case FS_ROUTE_TRAINING:
        training(r, e);
        return;
    default:
        answer_get(r, e);
        return;
    }
}
