/* metrics.c: counters, histograms and the Prometheus text exposition (0.0.4). */
#include "metrics.h"

#include <dirent.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#ifndef FS_VERSION
#define FS_VERSION FS_VERSION_STRING
#endif

static const int fs_codes[] = { 200, 202, 400, 401, 403, 404, 405, 408,
                                409, 413, 415, 422, 429, 500, 501, 503 };
#define FS_N_CODES (sizeof fs_codes / sizeof fs_codes[0] + 1) /* + "other" */

static const char *const fs_methods[] = { "GET", "POST", "HEAD", "other" };
#define FS_N_METHODS (sizeof fs_methods / sizeof fs_methods[0])

static const char *const fs_error_codes[] = {
    FS_EC_INVALID_JSON,
    FS_EC_INVALID_INPUT,
    FS_EC_UNKNOWN_FIELD,
    FS_EC_MISSING_FIELD,
    FS_EC_INVALID_PARAMETER,
    FS_EC_TOO_MANY_ROWS,
    FS_EC_BODY_TOO_LARGE,
    FS_EC_MODEL_NOT_FOUND,
    FS_EC_NOT_FOUND,
    FS_EC_METHOD,
    FS_EC_UNAUTHORIZED,
    FS_EC_FORBIDDEN,
    FS_EC_UNAVAILABLE,
    FS_EC_OVERLOADED,
    FS_EC_RELOAD_FAILED,
    FS_EC_CONFLICT,
    FS_EC_TRAINER_DISABLED,
    FS_EC_INTERNAL,
    "other",
};
#define FS_N_ERRORS (sizeof fs_error_codes / sizeof fs_error_codes[0])

static const char *const fs_op_names[FS_OP__COUNT] = { "score",  "encode", "decode",
                                                       "sample", "infer",  "ingest" };

/* Seconds; the 5 ms scoring target sits between two bounds. */
static const double fs_duration_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                             0.005,  0.01,    0.025,  0.05,  0.1,
                                             0.25,   0.5,     1,      2.5,   10 };
static const double fs_refit_bounds[] = { 0.1, 0.25, 0.5, 1,   2.5, 5,    10,
                                          30,  60,   120, 300, 600, 1800, 3600 };
static const double fs_batch_bounds[] = { 1,   2,   4,   8,    16,   32,    64,
                                          128, 256, 512, 1024, 4096, 16384, 65536 };

struct fs_metrics {
    const char *const *route_names;
    size_t n_routes;
    atomic_uint_fast64_t *requests;           /* atomic: [route][method][code] */
    fs_histogram *durations;                  /* [route] */
    atomic_uint_fast64_t errors[FS_N_ERRORS]; /* atomic */
    pthread_mutex_t lock;                     /* guards the models list */
    fs_model_metrics *models;                 /* guarded by lock; append-only */
    double start_time;                        /* unix seconds, from /proc */
};

const char *fs_op_name(fs_op op)
{
    return (unsigned)op < FS_OP__COUNT ? fs_op_names[op] : "other";
}

static const char *const fs_fail_reason_names[FS_FAIL__COUNT] = { "invalid_input", "unavailable",
                                                                  "model_error" };

fs_fail_reason fs_fail_reason_of_status(int status)
{
    return status < 500 ? FS_FAIL_INVALID_INPUT
                        : (status == 503 ? FS_FAIL_UNAVAILABLE : FS_FAIL_MODEL_ERROR);
}

void fs_histogram_init(fs_histogram *h, const double *bounds, size_t n_bounds)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->bounds = bounds;
    h->n_bounds = n_bounds < FS_HIST_MAX_BOUNDS ? n_bounds : FS_HIST_MAX_BOUNDS;
}

void fs_histogram_deinit(fs_histogram *h)
{
    pthread_mutex_destroy(&h->lock);
}

void fs_histogram_observe(fs_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) {
        i++;
    }
    pthread_mutex_lock(&h->lock);
    h->counts[i]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&h->lock);
}

/*
 * Field `field` (1-based, proc(5) numbering, >= 3) of /proc/self/stat as a number, and the
 * next one in *next (may be NULL); 0 when unreadable. The command name (field 2) may hold
 * spaces: fields are counted from the last ')'.
 */
static double proc_stat_field(int field, double *next)
{
    char buf[1024];
    double v = 0, w = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        char *p = strrchr(buf, ')');
        for (int k = 2; p != NULL && k < field; k++) {
            p = strchr(p + 1, ' ');
        }
        if (p != NULL) {
            char *end = NULL;
            v = strtod(p + 1, &end);
            w = end != NULL ? strtod(end, NULL) : 0;
        }
    }
    if (next != NULL) {
        *next = w;
    }
    return v;
}

/* Process start time from /proc/self/stat field 22 and the boot time in /proc/stat. */
static double read_start_time(void)
{
    char buf[1024];
    double btime = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f != NULL) {
        while (fgets(buf, sizeof buf, f) != NULL) {
            if (strncmp(buf, "btime ", 6) == 0) {
                btime = strtod(buf + 6, NULL);
                break;
            }
        }
        fclose(f);
    }
    return btime + proc_stat_field(22, NULL) / (double)sysconf(_SC_CLK_TCK);
}

fs_metrics *fs_metrics_create(const char *const *route_names, size_t n_routes)
{
    fs_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->route_names = route_names;
    m->n_routes = n_routes;
    m->requests = calloc(n_routes * FS_N_METHODS * FS_N_CODES, sizeof *m->requests);
    m->durations = calloc(n_routes, sizeof *m->durations);
    if (m->requests == NULL || m->durations == NULL) {
        free(m->requests);
        free(m->durations);
        free(m);
        return NULL;
    }
    for (size_t r = 0; r < n_routes; r++) {
        fs_histogram_init(&m->durations[r], fs_duration_bounds,
                          sizeof fs_duration_bounds / sizeof fs_duration_bounds[0]);
    }
    pthread_mutex_init(&m->lock, NULL);
    m->start_time = read_start_time();
    return m;
}

void fs_metrics_free(fs_metrics *m)
{
    if (m == NULL) {
        return;
    }
    fs_model_metrics *mm = m->models;
    while (mm != NULL) {
        fs_model_metrics *next = mm->next;
        fs_histogram_deinit(&mm->batch_rows);
        fs_histogram_deinit(&mm->refit_seconds);
        free(mm);
        mm = next;
    }
    for (size_t r = 0; r < m->n_routes; r++) {
        fs_histogram_deinit(&m->durations[r]);
    }
    pthread_mutex_destroy(&m->lock);
    free(m->durations);
    free(m->requests);
    free(m);
}

static size_t code_index(int status)
{
    for (size_t i = 0; i + 1 < FS_N_CODES; i++) {
        if (fs_codes[i] == status) {
            return i;
        }
    }
    return FS_N_CODES - 1;
}

static size_t method_index(const char *method)
{
    for (size_t i = 0; i + 1 < FS_N_METHODS; i++) {
        if (strcmp(fs_methods[i], method) == 0) {
            return i;
        }
    }
    return FS_N_METHODS - 1;
}

void fs_metrics_http_request(fs_metrics *m, size_t route, const char *method, int status)
{
    if (route >= m->n_routes) {
        return;
    }
    size_t i = (route * FS_N_METHODS + method_index(method)) * FS_N_CODES + code_index(status);
    atomic_fetch_add_explicit(&m->requests[i], 1, memory_order_relaxed);
}

void fs_metrics_http_duration(fs_metrics *m, size_t route, double seconds)
{
    if (route < m->n_routes) {
        fs_histogram_observe(&m->durations[route], seconds);
    }
}

void fs_metrics_http_error(fs_metrics *m, const char *code)
{
    size_t i = 0;
    while (i + 1 < FS_N_ERRORS && strcmp(fs_error_codes[i], code) != 0) {
        i++;
    }
    atomic_fetch_add_explicit(&m->errors[i], 1, memory_order_relaxed);
}

fs_model_metrics *fs_metrics_model(fs_metrics *m, const char *name)
{
    fs_model_metrics *mm, **tail;
    pthread_mutex_lock(&m->lock);
    for (tail = &m->models; *tail != NULL; tail = &(*tail)->next) {
        if (strcmp((*tail)->name, name) == 0) {
            mm = *tail;
            pthread_mutex_unlock(&m->lock);
            return mm;
        }
    }
    mm = calloc(1, sizeof *mm);
    if (mm != NULL) {
        snprintf(mm->name, sizeof mm->name, "%s", name);
        fs_histogram_init(&mm->batch_rows, fs_batch_bounds,
                          sizeof fs_batch_bounds / sizeof fs_batch_bounds[0]);
        fs_histogram_init(&mm->refit_seconds, fs_refit_bounds,
                          sizeof fs_refit_bounds / sizeof fs_refit_bounds[0]);
        *tail = mm;
    }
    pthread_mutex_unlock(&m->lock);
    return mm;
}

void fs_metrics_put_label_value(fs_strbuf *b, const char *v)
{
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\\') {
            fs_strbuf_put(b, "\\\\", 2);
        } else if (*p == '"') {
            fs_strbuf_put(b, "\\\"", 2);
        } else if (*p == '\n') {
            fs_strbuf_put(b, "\\n", 2);
        } else {
            fs_strbuf_put(b, p, 1);
        }
    }
}

static void family(fs_strbuf *b, const char *name, const char *type, const char *help)
{
    fs_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_u64(fs_strbuf *b, uint64_t v)
{
    fs_strbuf_printf(b, " %llu\n", (unsigned long long)v);
}

static void put_f64(fs_strbuf *b, double v)
{
    char tmp[40];
    if (fs_format_double(v, tmp, sizeof tmp) == 0) {
        memcpy(tmp, "NaN", 4); /* Prometheus reads NaN; never reached for our values */
    }
    fs_strbuf_printf(b, " %s\n", tmp);
}

/* A histogram's series; labels: "" or `key="value"` (already escaped). */
static void render_histogram(fs_strbuf *b, const char *name, const char *labels, fs_histogram *h)
{
    uint64_t counts[FS_HIST_MAX_BOUNDS + 1];
    uint64_t count, cum = 0;
    double sum;
    pthread_mutex_lock(&h->lock);
    memcpy(counts, h->counts, sizeof counts);
    count = h->count;
    sum = h->sum;
    pthread_mutex_unlock(&h->lock);
    const char *sep = labels[0] != '\0' ? "," : "";
    for (size_t i = 0; i < h->n_bounds; i++) {
        char le[40];
        cum += counts[i];
        fs_format_double(h->bounds[i], le, sizeof le);
        fs_strbuf_printf(b, "%s_bucket{%s%sle=\"%s\"}", name, labels, sep, le);
        put_u64(b, cum);
    }
    cum += counts[h->n_bounds];
    fs_strbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"}", name, labels, sep);
    put_u64(b, cum);
    fs_strbuf_printf(b, "%s_sum%s%s%s", name, labels[0] != '\0' ? "{" : "", labels,
                     labels[0] != '\0' ? "}" : "");
    put_f64(b, sum);
    fs_strbuf_printf(b, "%s_count%s%s%s", name, labels[0] != '\0' ? "{" : "", labels,
                     labels[0] != '\0' ? "}" : "");
    put_u64(b, count);
}

static void render_http(fs_metrics *m, fs_strbuf *b)
{
    family(b, "flowscore_http_requests_total", "counter", "HTTP requests answered.");
    for (size_t r = 0; r < m->n_routes; r++) {
        for (size_t me = 0; me < FS_N_METHODS; me++) {
            for (size_t c = 0; c < FS_N_CODES; c++) {
                uint64_t v = atomic_load_explicit(
                    &m->requests[(r * FS_N_METHODS + me) * FS_N_CODES + c], memory_order_relaxed);
                if (v == 0) {
                    continue;
                }
                fs_strbuf_puts(b, "flowscore_http_requests_total{handler=\"");
                fs_metrics_put_label_value(b, m->route_names[r]);
                if (c + 1 < FS_N_CODES) {
                    fs_strbuf_printf(b, "\",method=\"%s\",code=\"%d\"}", fs_methods[me],
                                     fs_codes[c]);
                } else {
                    fs_strbuf_printf(b, "\",method=\"%s\",code=\"other\"}", fs_methods[me]);
                }
                put_u64(b, v);
            }
        }
    }
    family(b, "flowscore_http_request_duration_seconds", "histogram",
           "Time from a request's headers to its response being queued.");
    for (size_t r = 0; r < m->n_routes; r++) {
        fs_strbuf lbl;
        fs_strbuf_init(&lbl, 64);
        fs_strbuf_puts(&lbl, "handler=\"");
        fs_metrics_put_label_value(&lbl, m->route_names[r]);
        fs_strbuf_puts(&lbl, "\"");
        if (!lbl.failed) {
            render_histogram(b, "flowscore_http_request_duration_seconds", lbl.p, &m->durations[r]);
        }
        fs_strbuf_free(&lbl);
    }
    family(b, "flowscore_http_errors_total", "counter", "Error answers by error code.");
    for (size_t i = 0; i < FS_N_ERRORS; i++) {
        fs_strbuf_printf(b, "flowscore_http_errors_total{code=\"%s\"}", fs_error_codes[i]);
        put_u64(b, atomic_load_explicit(&m->errors[i], memory_order_relaxed));
    }
}

/* Histogram h of model mm as name{model="..."}. */
static void render_model_histogram(fs_strbuf *b, const char *name, fs_model_metrics *mm,
                                   fs_histogram *h)
{
    fs_strbuf lbl;
    fs_strbuf_init(&lbl, 96);
    fs_strbuf_puts(&lbl, "model=\"");
    fs_metrics_put_label_value(&lbl, mm->name);
    fs_strbuf_puts(&lbl, "\"");
    if (!lbl.failed) {
        render_histogram(b, name, lbl.p, h);
    }
    fs_strbuf_free(&lbl);
}

/* One sample name{model="...",op="..."[,reason="..."]} value. */
static void put_model_op(fs_strbuf *b, const char *name, fs_model_metrics *mm, size_t op,
                         const char *reason, atomic_uint_fast64_t *v)
{
    fs_strbuf_printf(b, "%s{model=\"", name);
    fs_metrics_put_label_value(b, mm->name);
    fs_strbuf_printf(b, "\",op=\"%s\"", fs_op_names[op]);
    if (reason != NULL) {
        fs_strbuf_printf(b, ",reason=\"%s\"", reason);
    }
    fs_strbuf_puts(b, "}");
    put_u64(b, atomic_load_explicit(v, memory_order_relaxed));
}

static void render_models(fs_metrics *m, fs_strbuf *b)
{
    fs_model_metrics *head;
    pthread_mutex_lock(&m->lock);
    head = m->models; /* the list is append-only: walking it after unlock is safe */
    pthread_mutex_unlock(&m->lock);
    family(b, "flowscore_inference_requests_total", "counter",
           "Inference requests dispatched to a model.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        for (size_t op = 0; op < FS_OP__COUNT; op++) {
            put_model_op(b, "flowscore_inference_requests_total", mm, op, NULL, &mm->requests[op]);
        }
    }
    family(b, "flowscore_inference_failures_total", "counter",
           "Inference requests that failed, by reason: invalid_input (4xx, the client's), "
           "unavailable (503), model_error (other 5xx).");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        for (size_t op = 0; op < FS_OP__COUNT; op++) {
            for (size_t r = 0; r < FS_FAIL__COUNT; r++) {
                put_model_op(b, "flowscore_inference_failures_total", mm, op,
                             fs_fail_reason_names[r], &mm->failures[op][r]);
            }
        }
    }
    family(b, "flowscore_inference_rows_total", "counter",
           "Rows scored, encoded, decoded or sampled.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        for (size_t op = 0; op < FS_OP__COUNT; op++) {
            put_model_op(b, "flowscore_inference_rows_total", mm, op, NULL, &mm->rows[op]);
        }
    }
    family(b, "flowscore_inference_executions_total", "counter",
           "Batched engine scoring calls (rows / executions = mean batch size).");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        fs_strbuf_puts(b, "flowscore_inference_executions_total{model=\"");
        fs_metrics_put_label_value(b, mm->name);
        fs_strbuf_puts(b, "\"}");
        put_u64(b, atomic_load_explicit(&mm->executions, memory_order_relaxed));
    }
    family(b, "flowscore_batch_rows", "histogram", "Rows per batched engine scoring call.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        render_model_histogram(b, "flowscore_batch_rows", mm, &mm->batch_rows);
    }
    family(b, "flowscore_model_info", "gauge", "The version each model name serves (value 1).");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        int64_t v = atomic_load(&mm->version);
        if (v > 0) {
            fs_strbuf_puts(b, "flowscore_model_info{model=\"");
            fs_metrics_put_label_value(b, mm->name);
            fs_strbuf_printf(b, "\",version=\"%lld\"} 1\n", (long long)v);
        }
    }
    family(b, "flowscore_model_reloads_total", "counter", "Model versions loaded and swapped in.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        fs_strbuf_puts(b, "flowscore_model_reloads_total{model=\"");
        fs_metrics_put_label_value(b, mm->name);
        fs_strbuf_puts(b, "\"}");
        put_u64(b, atomic_load(&mm->reloads));
    }
    family(b, "flowscore_model_reload_failures_total", "counter",
           "Model files refused (unreadable, corrupt, wrong version, schema changed).");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        fs_strbuf_puts(b, "flowscore_model_reload_failures_total{model=\"");
        fs_metrics_put_label_value(b, mm->name);
        fs_strbuf_puts(b, "\"}");
        put_u64(b, atomic_load(&mm->reload_failures));
    }
}

/* One series per model with a trainer: name{model="..."<extra>} value. */
static void put_model_u64(fs_strbuf *b, const char *name, const fs_model_metrics *mm,
                          const char *extra, uint64_t v)
{
    fs_strbuf_printf(b, "%s{model=\"", name);
    fs_metrics_put_label_value(b, mm->name);
    fs_strbuf_printf(b, "\"%s}", extra);
    put_u64(b, v);
}

static void render_trainer(fs_metrics *m, fs_strbuf *b)
{
    static const char *const results[3] = { "accepted", "rejected", "failed" };
    fs_model_metrics *head;
    pthread_mutex_lock(&m->lock);
    head = m->models;
    pthread_mutex_unlock(&m->lock);
    family(b, "flowscore_ingest_records_total", "counter",
           "Records posted for training: stored in the spool, or refused by validation.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        if (atomic_load(&mm->trainer)) {
            put_model_u64(b, "flowscore_ingest_records_total", mm, ",result=\"accepted\"",
                          atomic_load(&mm->ingest_accepted));
            put_model_u64(b, "flowscore_ingest_records_total", mm, ",result=\"rejected\"",
                          atomic_load(&mm->ingest_rejected));
        }
    }
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } simple[] = {
        { "flowscore_ingest_anomalies_total", "counter",
          "Stored records that scored above the served model's threshold at ingest.",
          offsetof(fs_model_metrics, ingest_anomalies) },
        { "flowscore_ingest_anomaly_bursts_total", "counter",
          "Bursts of anomalous records in the ingest stream.",
          offsetof(fs_model_metrics, anomaly_bursts) },
        { "flowscore_spool_records", "gauge", "Records in the model's spool.",
          offsetof(fs_model_metrics, spool_records) },
        { "flowscore_spool_bytes", "gauge", "Size of the model's spool file, in bytes.",
          offsetof(fs_model_metrics, spool_bytes) },
        { "flowscore_refit_excluded_records_total", "counter",
          "Records left out of refits by the contamination guard (above the threshold).",
          offsetof(fs_model_metrics, refit_excluded) },
        { "flowscore_train_skipped_nonfinite_steps_total", "counter",
          "Refit optimiser steps skipped because their loss or gradient was not finite.",
          offsetof(fs_model_metrics, train_skipped_steps) },
    };
    for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
        family(b, simple[k].name, simple[k].type, simple[k].help);
        for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
            if (atomic_load(&mm->trainer)) {
                atomic_uint_fast64_t *v =
                    (atomic_uint_fast64_t *)(void *)((char *)mm + simple[k].off);
                put_model_u64(b, simple[k].name, mm, "", atomic_load(v));
            }
        }
    }
    family(b, "flowscore_ingest_anomaly_burst", "gauge",
           "1 while a burst of anomalous records is going on.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        if (atomic_load(&mm->trainer)) {
            put_model_u64(b, "flowscore_ingest_anomaly_burst", mm, "",
                          (uint64_t)atomic_load(&mm->anomaly_burst));
        }
    }
    family(b, "flowscore_refits_total", "counter", "Background refits by decision.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        for (size_t r = 0; r < 3 && atomic_load(&mm->trainer); r++) {
            char extra[32];
            snprintf(extra, sizeof extra, ",result=\"%s\"", results[r]);
            put_model_u64(b, "flowscore_refits_total", mm, extra, atomic_load(&mm->refits[r]));
        }
    }
    family(b, "flowscore_refit_duration_seconds", "histogram",
           "Time from a refit's start to its decision.");
    for (fs_model_metrics *mm = head; mm != NULL; mm = mm->next) {
        if (atomic_load(&mm->trainer)) {
            render_model_histogram(b, "flowscore_refit_duration_seconds", mm, &mm->refit_seconds);
        }
    }
}

static void render_process(fs_metrics *m, fs_strbuf *b)
{
    uint64_t rss = 0, fds = 0;
    struct rlimit rl;
    double stime = 0, utime = proc_stat_field(14, &stime); /* fields 14 and 15 */
    double cpu = (utime + stime) / (double)sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        char line[128];
        if (fgets(line, sizeof line, f) != NULL) {
            char *end = NULL;
            strtoull(line, &end, 10); /* total size; resident is the second field */
            unsigned long long res = strtoull(end, NULL, 10);
            rss = res * (uint64_t)sysconf(_SC_PAGESIZE);
        }
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                fds++;
            }
        }
        closedir(d);
        fds = fds > 0 ? fds - 1 : 0; /* the directory's own fd */
    }
    family(b, "process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.");
    fs_strbuf_puts(b, "process_cpu_seconds_total");
    put_f64(b, cpu);
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.");
    fs_strbuf_puts(b, "process_resident_memory_bytes");
    put_u64(b, rss);
    family(b, "process_open_fds", "gauge", "Open file descriptors.");
    fs_strbuf_puts(b, "process_open_fds");
    put_u64(b, fds);
    family(b, "process_max_fds", "gauge", "Limit on open file descriptors.");
    fs_strbuf_puts(b, "process_max_fds");
    put_u64(b, getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0);
    family(b, "process_start_time_seconds", "gauge", "Start time, in seconds since the epoch.");
    fs_strbuf_puts(b, "process_start_time_seconds");
    put_f64(b, m->start_time);
}

void fs_metrics_render(fs_metrics *m, const fs_metrics_gauges *g, fs_strbuf *b)
{
    family(b, "flowscore_build_info", "gauge", "Build metadata (value 1).");
    fs_strbuf_printf(b,
                     "flowscore_build_info{version=\"%s\",mhd_version=\"%s\","
                     "uv_version=\"%s\"} 1\n",
                     FS_VERSION, MHD_get_version(), uv_version_string());
    render_http(m, b);
    family(b, "flowscore_http_requests_in_flight", "gauge",
           "Requests received and not yet answered, including suspended ones.");
    fs_strbuf_puts(b, "flowscore_http_requests_in_flight");
    put_u64(b, g->in_flight);
    family(b, "flowscore_http_connections", "gauge", "Open HTTP connections.");
    fs_strbuf_puts(b, "flowscore_http_connections");
    put_u64(b, g->connections);
    family(b, "flowscore_queue_depth", "gauge", "Requests waiting for a scoring worker.");
    fs_strbuf_puts(b, "flowscore_queue_depth");
    put_u64(b, g->queue_depth);
    family(b, "flowscore_worker_threads", "gauge", "Scoring worker threads.");
    fs_strbuf_puts(b, "flowscore_worker_threads");
    put_u64(b, g->worker_threads);
    family(b, "flowscore_worker_threads_busy", "gauge", "Scoring worker threads at work.");
    fs_strbuf_puts(b, "flowscore_worker_threads_busy");
    put_u64(b, g->worker_threads_busy);
    render_models(m, b);
    render_trainer(m, b);
    render_process(m, b);
}
