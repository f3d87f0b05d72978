/*
 * http.h: what http.c (libmicrohttpd in the libuv loop, the request life cycle) and
 * http_routes.c (the URL table and each route's handling) share.
 *
 * libmicrohttpd runs in external epoll mode with suspend/resume and no thread of its own:
 * its epoll fd sits under a uv_poll, and a uv_timer is re-armed from MHD_get_timeout after
 * every MHD_run (notes/serving.md section e, pitfall 1). A request's body is accumulated up
 * to max_body_bytes; work goes to the scoring pool or the registry while the connection is
 * suspended; the answer is queued when MHD calls the handler again after the resume.
 * Threads: loop thread only.
 */
#ifndef FS_HTTP_H
#define FS_HTTP_H

#include "server.h"

#include <microhttpd.h>

/* The routes; their templates are the `handler` label of the HTTP metrics. */
typedef enum fs_route {
    FS_ROUTE_NOT_FOUND = 0,
    FS_ROUTE_HEALTHZ,
    FS_ROUTE_READYZ,
    FS_ROUTE_METRICS,
    FS_ROUTE_MODELS,
    FS_ROUTE_MODEL,
    FS_ROUTE_SCORE,
    FS_ROUTE_SAMPLE,
    FS_ROUTE_ENCODE,
    FS_ROUTE_DECODE,
    FS_ROUTE_RELOAD,
    FS_ROUTE_RECORDS,
    FS_ROUTE_TRAINING,
    FS_ROUTE_V2,
    FS_ROUTE_V2_LIVE,
    FS_ROUTE_V2_READY,
    FS_ROUTE_V2_MODEL,
    FS_ROUTE_V2_MODEL_READY,
    FS_ROUTE_V2_INFER,
    FS_ROUTE__COUNT
} fs_route;

/* Route templates, indexed by fs_route (static storage). */
extern const char *const fs_route_names[FS_ROUTE__COUNT];

typedef enum fs_req_state {
    FS_REQ_READING = 0, /* headers seen, body arriving */
    FS_REQ_WAITING,     /* suspended: a job or a reload is running */
    FS_REQ_READY,       /* the answer is ready to queue */
    FS_REQ_ANSWERED     /* queued with MHD */
} fs_req_state;

typedef struct fs_req fs_req;

struct fs_req {
    fs_http *http;
    struct MHD_Connection *conn;
    fs_route route;
    const char *method; /* "GET", "POST", "HEAD" or "other" */
    int is_head;
    int after_drain; /* its headers arrived after the drain began: refused with 503 */
    char name[72];   /* the {name} of the URL */
    size_t name_len;
    int64_t url_version; /* /v2/models/{name}/versions/{v}: v, else 0 */
    uint64_t t0_ns;
    char *body;
    size_t body_len, body_cap;
    uint64_t body_seen; /* bytes received, kept or not */
    int too_large;      /* the body crossed max_body_bytes */
    int raw_answered;   /* a 413 was written to the socket directly */
    int lingering;      /* suspended between two reads of a body we discard */
    uint64_t linger_deadline_ns;
    fs_req_state state;
    int orphaned; /* MHD completed the request while its job was still out */
    fs_job job;
    int job_out; /* job submitted and not yet back */
    fs_reload_waiter waiter;
    struct fs_tmodel *tm; /* ingest: the model's trainer state while the records are stored */
    /* The answer. */
    int status;
    char *resp; /* malloc'd */
    size_t resp_len;
    const char *content_type;
    const char *err_code;
    const char *allow;    /* Allow header of a 405 */
    int www_authenticate; /* add WWW-Authenticate to a 401 */
    fs_req *prev, *next;  /* every live request (for the drain) */
};

struct fs_http {
    fs_server *srv;
    struct MHD_Daemon *daemon;
    int listen_fd; /* returned by MHD_quiesce_daemon: ours to close, -1 until then */
    uint16_t port;
    int tls;
    uv_poll_t poll;    /* MHD's epoll fd */
    uv_timer_t timer;  /* MHD_get_timeout */
    uv_check_t check;  /* MHD_run after resumes, once per loop iteration */
    uv_timer_t linger; /* resumes lingering connections so that MHD reads them again */
    unsigned n_lingering;
    int need_run;
    int handles_open;
    uint64_t in_flight;
    fs_req *reqs; /* live requests */
};

/* Parse url into r's route, name and version. */
void fs__http_route(fs_req *r, const char *url, const char *method);

/* Decide a request whose headers (and, for POST, body) are complete: set the answer, or
 * submit work and leave the request waiting. */
void fs__http_dispatch(fs_req *r);

/* Set an error answer (in the route's error form) and its metrics code. */
void fs__http_error(fs_req *r, const fs_req_error *e);

/* Set a JSON (or other) answer from b (taken). */
void fs__http_answer(fs_req *r, int status, fs_strbuf *b, const char *content_type);

/* Mark r's work finished and resume its connection (loop thread, outside MHD callbacks). */
void fs__http_resume(fs_req *r);

/* Resume every lingering connection now (shutdown): their next read closes them. */
void fs__http_unlinger_all(fs_http *h);

/* Requests suspended while their work runs. */
uint64_t fs__http_waiting(const fs_http *h);

/* Whether r is allowed to use an admin endpoint; sets a 401/403 answer when not. */
int fs__http_admin_ok(fs_req *r);

#endif /* FS_HTTP_H */
