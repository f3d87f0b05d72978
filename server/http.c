/* http.c: libmicrohttpd driven by the libuv loop, and the life of one request. */
#include "http.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* After a raw 413, how long the rest of the body is read and dropped before closing: a
 * close with unread data sends a reset, which can destroy the 413 before the client reads
 * it (the "lingering close" of HTTP servers). */
#define FS_LINGER_NS      2000000000u
#define FS_LINGER_TICK_MS 20

/*
 * A body must keep arriving at this average rate once connection_timeout_s has passed since
 * its headers: slower uploads are closed (issue 7: slow clients must not hold slots).
 */
#define FS_MIN_BODY_BYTES_PER_S 1024u

/* One TCP connection, from MHD_CONNECTION_NOTIFY_STARTED to _CLOSED. Loop thread. */
typedef struct fs_conn {
    int fd;
    uint64_t since_ns; /* accepted, or its last request completed: waiting for headers since */
    int in_request;    /* a request's headers arrived and the request is not completed */
    int shut;          /* shut down for missing the header deadline; MHD closes it */
    struct fs_conn *prev, *next;
} fs_conn;

/*
 * fs_http and what only this file uses (http.h is shared with http_routes.c): MHD's
 * connection timeout is an idle timeout, so a client that trickles a byte of its headers
 * every few seconds held its connection slot for ever (slowloris; issue 7, security
 * review). Every connection is tracked, and one that has not sent complete headers
 * connection_timeout_s after it was accepted (or after its previous request) is shut down.
 */
typedef struct fs_http_impl {
    fs_http pub;         /* first: an fs_http * points at its fs_http_impl */
    uv_timer_t deadline; /* once a second: the header deadline */
    fs_conn *conns;      /* every open connection */
} fs_http_impl;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_timer(uv_timer_t *t);

/* Re-arm the timer from MHD_get_timeout: after EVERY MHD_run (pitfall 1). */
static void rearm(fs_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (h->handles_open == 0) {
        return;
    }
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES) {
        uv_timer_start(&h->timer, on_timer, ms, 0);
    } else {
        uv_timer_stop(&h->timer);
    }
}

static unsigned current_connections(fs_http *h)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i != NULL ? i->num_connections : 0;
}

static void run_and_rearm(fs_http *h)
{
    unsigned before = current_connections(h);
    h->need_run = 0;
    MHD_run(h->daemon);
    if (before >= h->srv->cfg.connection_limit && current_connections(h) < before) {
        /* At the connection limit MHD takes its listen socket out of the epoll set and puts
         * it back only at the start of the next run: without that run, connections waiting
         * in the backlog are never accepted (nothing else wakes us). */
        MHD_run(h->daemon);
    }
    rearm(h);
}

static void on_timer(uv_timer_t *t)
{
    run_and_rearm(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_and_rearm(p->data);
}

static void on_check(uv_check_t *c)
{
    fs_http *h = c->data;
    if (h->need_run) {
        run_and_rearm(h);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) FS_LOG_PRINTF(2, 0);

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fs_vlog(FS_LOG_DEBUG, "mhd", fmt, ap);
}

/* ---------------------------------------------------------------------- requests */

static fs_req *req_new(fs_http *h, struct MHD_Connection *conn, const char *url, const char *method)
{
    fs_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->http = h;
    r->conn = conn;
    r->t0_ns = now_ns();
    r->after_drain = h->srv->draining;
    fs__http_route(r, url, method);
    r->next = h->reqs;
    if (h->reqs != NULL) {
        h->reqs->prev = r;
    }
    h->reqs = r;
    h->in_flight++;
    return r;
}

static void req_free(fs_req *r)
{
    fs_http *h = r->http;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        h->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    fs_model_unref(r->job.model);
    r->job.model = NULL;
    fs_api_job_release(&r->job);
    free(r->body);
    free(r->resp);
    free(r);
}

void fs__http_error(fs_req *r, const fs_req_error *e)
{
    int v2 = r->route >= FS_ROUTE_V2 && r->route <= FS_ROUTE_V2_INFER;
    free(r->resp);
    r->status = e->status;
    r->err_code = e->code;
    r->content_type = "application/json";
    r->resp = v2 ? fs_req_error_format_v2(e, &r->resp_len) : fs_req_error_format(e, &r->resp_len);
    r->state = FS_REQ_READY;
}

void fs__http_answer(fs_req *r, int status, fs_strbuf *b, const char *content_type)
{
    if (b->failed || b->nonfinite) {
        fs_req_error e;
        fs_strbuf_free(b);
        fs_req_error_set(&e, 500, FS_EC_INTERNAL, NULL, "could not build the answer");
        fs__http_error(r, &e);
        return;
    }
    free(r->resp);
    r->status = status;
    r->err_code = NULL;
    r->content_type = content_type;
    r->resp = fs_strbuf_take(b, &r->resp_len);
    r->state = FS_REQ_READY;
}

void fs__http_resume(fs_req *r)
{
    r->state = FS_REQ_READY;
    if (r->orphaned) {
        req_free(r);
        return;
    }
    MHD_resume_connection(r->conn);
    r->http->need_run = 1; /* on_check runs MHD once for every resume of this iteration */
}

static void count_answer(fs_req *r)
{
    fs_metrics *m = r->http->srv->metrics;
    fs_metrics_http_request(m, r->route, r->method, r->status);
    if (r->err_code != NULL) {
        fs_metrics_http_error(m, r->err_code);
    }
}

static enum MHD_Result queue_answer(fs_req *r)
{
    static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
    fs_http *h = r->http;
    struct MHD_Response *resp;
    if (r->resp != NULL) {
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL) {
            r->resp = NULL; /* MHD frees it with free() */
        }
    } else {
        r->status = 500;
        r->err_code = FS_EC_INTERNAL;
        r->content_type = "application/json";
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)(uintptr_t)oom,
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type != NULL ? r->content_type : "application/json");
    if (r->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    }
    if (r->www_authenticate) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"flowscore\"");
    }
    if (h->srv->draining || r->too_large) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) {
        r->state = FS_REQ_ANSWERED;
        count_answer(r);
    }
    return ret;
}

/* A 413 for a body without Content-Length that crossed the limit: MHD cannot queue a
 * response while the body is arriving, so write it to the socket ourselves and let MHD
 * close the connection at the end (case-12: answer as soon as the limit is crossed). */
static void answer_too_large_raw(fs_req *r)
{
    const fs_config *cfg = &r->http->srv->cfg;
    char body[200], msg[512];
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"body_too_large\",\"message\":\"body exceeds "
                     "max_body_bytes=%llu\"}}\n",
                     (unsigned long long)cfg->max_body_bytes);
    int m = snprintf(msg, sizeof msg,
                     "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     n, body);
    if (ci == NULL || r->http->tls || m <= 0 || (size_t)m >= sizeof msg) {
        return; /* TLS: answered in the final call instead */
    }
    ssize_t w = send(ci->connect_fd, msg, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == m) {
        r->raw_answered = 1;
        r->linger_deadline_ns = now_ns() + FS_LINGER_NS;
        r->status = 413;
        r->err_code = FS_EC_BODY_TOO_LARGE;
        count_answer(r);
    }
}

static void set_too_large(fs_req *r)
{
    fs_req_error e;
    fs_req_error_set(&e, 413, FS_EC_BODY_TOO_LARGE, NULL, "body exceeds max_body_bytes=%llu",
                     (unsigned long long)r->http->srv->cfg.max_body_bytes);
    fs__http_error(r, &e);
}

/* The headers-only call. Returns MHD_YES, or queues an immediate answer (413 from
 * Content-Length, before a byte of the body is read). */
static enum MHD_Result on_headers(fs_req *r)
{
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t max = r->http->srv->cfg.max_body_bytes;
    if (cl == NULL) {
        return MHD_YES;
    }
    uint64_t n = 0;
    for (const char *p = cl; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || n > UINT64_MAX / 10) {
            return MHD_YES; /* MHD itself refuses a malformed Content-Length */
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (n > max) {
        r->too_large = 1;
        set_too_large(r);
        return queue_answer(r);
    }
    if (n > 0) {
        /* Up to 1 MiB at once: a client that announces a large body must send it before it
         * costs that much memory (the buffer grows as bytes arrive). */
        size_t first = n < (1u << 20) ? (size_t)n + 1 : (1u << 20);
        r->body = malloc(first);
        r->body_cap = r->body != NULL ? first : 0;
    }
    return MHD_YES;
}

/* Whether a body is arriving slower than FS_MIN_BODY_BYTES_PER_S after the grace time. */
static int body_too_slow(const fs_req *r)
{
    uint64_t grace_ns = (uint64_t)r->http->srv->cfg.connection_timeout_s * 1000000000u;
    uint64_t earned_ns = r->body_seen / FS_MIN_BODY_BYTES_PER_S * 1000000000u;
    return now_ns() - r->t0_ns > grace_ns + earned_ns;
}

/* Take size bytes of the body. Returns -1 when the connection must be closed (too slow). */
static int on_body(fs_req *r, const char *data, size_t size)
{
    uint64_t max = r->http->srv->cfg.max_body_bytes;
    r->body_seen += size;
    if (!r->raw_answered && body_too_slow(r)) {
        return -1;
    }
    if (r->too_large) {
        return 0; /* discard: memory stays bounded */
    }
    if (r->body_seen > max) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        answer_too_large_raw(r);
        return 0;
    }
    if (r->body_len + size + 1 > r->body_cap) {
        size_t cap = r->body_cap > 0 ? r->body_cap : 4096;
        while (cap < r->body_len + size + 1) {
            cap *= 2;
        }
        if (cap > max + 1) {
            cap = (size_t)max + 1;
        }
        char *b = realloc(r->body, cap);
        if (b == NULL) {
            r->too_large = 1; /* answered as 413 in the final call: we cannot hold it */
            return 0;
        }
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, size);
    r->body_len += size;
    r->body[r->body_len] = '\0';
    return 0;
}

static void on_linger_tick(uv_timer_t *t)
{
    fs_http *h = t->data;
    int resumed = 0;
    for (fs_req *r = h->reqs; r != NULL; r = r->next) {
        if (r->lingering) {
            r->lingering = 0;
            h->n_lingering--;
            MHD_resume_connection(r->conn);
            resumed = 1;
        }
    }
    if (h->n_lingering == 0) {
        uv_timer_stop(&h->linger);
    }
    if (resumed) {
        /* A resumed connection is read again: MHD's edge-triggered epoll would otherwise miss
         * a client's close that arrived while we were not reading (case-12). */
        run_and_rearm(h);
    }
}

/* After a raw 413: drop this part of the body, then pause reading for a tick. Returns what
 * the access handler returns. */
static enum MHD_Result linger(fs_req *r)
{
    fs_http *h = r->http;
    if (now_ns() > r->linger_deadline_ns || h->srv->closing) {
        return MHD_NO; /* close: the client had its time to read the answer */
    }
    if (r->lingering) {
        return MHD_YES; /* MHD hands over what it had buffered before the suspension bites */
    }
    MHD_suspend_connection(r->conn);
    r->lingering = 1;
    if (h->n_lingering++ == 0 && h->handles_open > 0) {
        uv_timer_start(&h->linger, on_linger_tick, FS_LINGER_TICK_MS, FS_LINGER_TICK_MS);
    }
    return MHD_YES;
}

void fs__http_unlinger_all(fs_http *h)
{
    for (fs_req *r = h->reqs; r != NULL; r = r->next) {
        r->linger_deadline_ns = 0;
    }
    if (h->n_lingering > 0) {
        on_linger_tick(&h->linger);
    }
}

/* ---------------------------------------------------------------------- connections */

static fs_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        conn != NULL ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    return ci != NULL ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    fs_http_impl *hi = cls;
    fs_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof *c);
        if (c == NULL) {
            return; /* untracked: only the idle timeout applies to it */
        }
        c->fd = ci != NULL ? ci->connect_fd : -1;
        c->since_ns = now_ns();
        c->next = hi->conns;
        if (hi->conns != NULL) {
            hi->conns->prev = c;
        }
        hi->conns = c;
        *socket_context = c;
        return;
    }
    if (c == NULL) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        hi->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c);
    *socket_context = NULL;
}

/* Once a second: shut down connections whose headers are overdue. MHD sees the shutdown on
 * its next read and closes the connection (and tells on_connection). */
static void on_deadline_tick(uv_timer_t *t)
{
    fs_http_impl *hi = t->data;
    uint64_t timeout_ns = (uint64_t)hi->pub.srv->cfg.connection_timeout_s * 1000000000u;
    uint64_t now = now_ns();
    int shut = 0;
    for (fs_conn *c = hi->conns; c != NULL; c = c->next) {
        if (!c->in_request && !c->shut && c->fd >= 0 && now - c->since_ns > timeout_ns) {
            shutdown(c->fd, SHUT_RDWR);
            c->shut = 1;
            shut = 1;
        }
    }
    if (shut) {
        run_and_rearm(&hi->pub);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    fs_http *h = cls;
    fs_req *r = *con_cls;
    (void)version;
    if (r == NULL) {
        fs_conn *c = conn_of(conn);
        if (c != NULL) {
            c->in_request = 1;
        }
        r = req_new(h, conn, url, method);
        if (r == NULL) {
            return MHD_NO;
        }
        *con_cls = r;
        return on_headers(r);
    }
    if (*upload_data_size > 0) {
        if (on_body(r, upload_data, *upload_data_size) != 0) {
            return MHD_NO; /* a body trickling in: close, the slot is for other clients */
        }
        *upload_data_size = 0;
        if (r->raw_answered) {
            return linger(r);
        }
        return MHD_YES;
    }
    switch (r->state) {
    case FS_REQ_READING:
        if (r->raw_answered) {
            return MHD_NO; /* the 413 is on the wire: close */
        }
        if (r->too_large) {
            set_too_large(r);
            return queue_answer(r);
        }
        fs__http_dispatch(r);
        if (r->state == FS_REQ_WAITING) {
            MHD_suspend_connection(conn);
            return MHD_YES;
        }
        return queue_answer(r);
    case FS_REQ_READY:
        return queue_answer(r);
    case FS_REQ_WAITING:
    case FS_REQ_ANSWERED:
        break;
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    fs_http *h = cls;
    fs_req *r = *con_cls;
    fs_conn *c = conn_of(conn);
    (void)toe;
    if (c != NULL) {
        c->in_request = 0;
        c->since_ns = now_ns(); /* the next request's headers are due from now */
    }
    if (r == NULL) {
        return;
    }
    *con_cls = NULL;
    h->in_flight--;
    fs_metrics_http_duration(h->srv->metrics, r->route, (double)(now_ns() - r->t0_ns) * 1e-9);
    if (r->state == FS_REQ_WAITING) {
        r->orphaned = 1; /* freed when its work comes back */
        return;
    }
    req_free(r);
}

/* ---------------------------------------------------------------------- daemon */

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    struct addrinfo hints, *res = NULL;
    char ports[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    snprintf(ports, sizeof ports, "%u", (unsigned)port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0 || res == NULL) {
        fs_log(FS_LOG_ERROR, "http", "cannot resolve listen address host=%s error=\"%s\"", host,
               gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f == NULL) {
        fs_log(FS_LOG_ERROR, "http", "cannot open TLS file path=%s", path);
        return NULL;
    }
    buf = calloc(1, 1 << 20);
    if (buf != NULL && fread(buf, 1, (1 << 20) - 1, f) == 0) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Free a PEM buffer from read_pem after wiping it: a private key must not linger in freed
 * heap memory (core dumps, later allocations). NULL is fine. */
static void free_pem(char *pem)
{
    if (pem != NULL) {
        explicit_bzero(pem, strlen(pem));
        free(pem);
    }
}

int fs_http_start(fs_server *srv, fs_http **out)
{
    const fs_config *cfg = &srv->cfg;
    struct sockaddr_storage ss;
    char *cert = NULL, *key = NULL;
    struct MHD_OptionItem opts[8];
    size_t n_opts = 0;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    fs_http_impl *hi = calloc(1, sizeof *hi);
    fs_http *h = hi != NULL ? &hi->pub : NULL;
    *out = NULL;
    if (h == NULL || resolve(cfg->listen_host, cfg->listen_port, &ss) != 0) {
        free(hi);
        return -1;
    }
    h->srv = srv;
    h->listen_fd = -1;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    if (cfg->per_ip_connection_limit > 0) {
        opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                                  (intptr_t)cfg->per_ip_connection_limit, NULL };
    }
    if (cfg->tls_cert_file[0] != '\0') {
        cert = read_pem(cfg->tls_cert_file);
        key = read_pem(cfg->tls_key_file);
        if (cert == NULL || key == NULL || !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            fs_log(FS_LOG_ERROR, "http", "TLS is configured but cannot be used");
            goto fail;
        }
        flags |= MHD_USE_TLS;
        h->tls = 1;
        opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, key };
        opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, cert };
    }
    opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
    h->daemon = MHD_start_daemon(
        flags, cfg->listen_port, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->connection_memory_limit_bytes, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, hi, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (h->daemon == NULL) {
        fs_log(FS_LOG_ERROR, "http", "cannot listen address=%s port=%u (in use, or not local?)",
               cfg->listen_host, (unsigned)cfg->listen_port);
        goto fail;
    }
    free_pem(cert); /* MHD parsed the PEM text into its credentials */
    free_pem(key);
    cert = key = NULL;
    const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi != NULL ? pi->port : cfg->listen_port;
    if (ep == NULL || uv_poll_init(&srv->loop, &h->poll, ep->epoll_fd) != 0) {
        fs_log(FS_LOG_ERROR, "http", "cannot watch libmicrohttpd's epoll fd");
        MHD_stop_daemon(h->daemon);
        goto fail;
    }
    uv_timer_init(&srv->loop, &h->timer);
    uv_check_init(&srv->loop, &h->check);
    uv_timer_init(&srv->loop, &h->linger);
    uv_timer_init(&srv->loop, &hi->deadline);
    h->poll.data = h->timer.data = h->check.data = h->linger.data = h;
    hi->deadline.data = hi;
    h->handles_open = 5;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_check_start(&h->check, on_check);
    uv_timer_start(&hi->deadline, on_deadline_tick, 1000, 1000);
    rearm(h);
    fs_log(FS_LOG_INFO, "http", "listening address=%s port=%u tls=%s", cfg->listen_host,
           (unsigned)h->port, h->tls ? "yes" : "no");
    *out = h;
    return 0;
fail:
    free_pem(cert);
    free_pem(key);
    free(hi);
    return -1;
}

void fs_http_quiesce(fs_http *h)
{
    if (h->listen_fd < 0) {
        h->listen_fd = MHD_quiesce_daemon(h->daemon);
        run_and_rearm(h);
    }
}

uint64_t fs_http_in_flight(const fs_http *h)
{
    return h->in_flight;
}

uint64_t fs_http_connections(fs_http *h)
{
    return current_connections(h);
}

uint64_t fs__http_waiting(const fs_http *h)
{
    uint64_t n = 0;
    for (const fs_req *r = h->reqs; r != NULL; r = r->next) {
        n += r->state == FS_REQ_WAITING;
    }
    return n;
}

uint16_t fs_http_port(const fs_http *h)
{
    return h->port;
}

static void on_handle_closed(uv_handle_t *handle)
{
    fs_http *h = handle->data;
    h->handles_open--;
}

void fs_http_close(fs_http *h)
{
    if (h->handles_open == 0) {
        return;
    }
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->check, on_handle_closed);
    uv_close((uv_handle_t *)&h->linger, on_handle_closed);
    uv_close((uv_handle_t *)&((fs_http_impl *)h)->deadline, on_handle_closed);
}

void fs_http_free(fs_http *h)
{
    if (h == NULL) {
        return;
    }
    /* Every connection was resumed before this (shutdown order): stopping with suspended
     * connections is an API violation (pitfall 3). */
    MHD_stop_daemon(h->daemon);
    if (h->listen_fd >= 0) {
        close(h->listen_fd);
    }
    while (h->reqs != NULL) {
        req_free(h->reqs);
    }
    fs_http_impl *hi = (fs_http_impl *)h;
    while (hi->conns != NULL) { /* MHD reports each close while stopping; this is a backstop */
        fs_conn *c = hi->conns;
        hi->conns = c->next;
        free(c);
    }
    free(hi);
}
