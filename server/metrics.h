/*
 * metrics.h: the daemon's Prometheus metrics (text exposition format 0.0.4), computed at
 * scrape time. Names follow the Prometheus conventions (notes/serving.md section c):
 *
 *   flowscore_build_info{version,mhd_version,uv_version}            gauge 1
 *   flowscore_http_requests_total{handler,method,code}               counter
 *   flowscore_http_request_duration_seconds{handler}                 histogram
 *   flowscore_http_errors_total{code}                                counter (error codes)
 *   flowscore_http_requests_in_flight, flowscore_http_connections    gauges
 *   flowscore_inference_requests_total{model,op}                     counter
 *   flowscore_inference_failures_total{model,op,reason}              counter
 *   flowscore_inference_rows_total{model,op}                         counter
 *   flowscore_inference_executions_total{model}                      counter (engine calls)
 *   flowscore_batch_rows{model}                                      histogram (rows per call)
 *   flowscore_queue_depth, flowscore_worker_threads(_busy)           gauges
 *   flowscore_model_info{model,version}                              gauge 1
 *   flowscore_model_reloads_total{model}                             counter (loads swapped in)
 *   flowscore_model_reload_failures_total{model}                     counter (files refused)
 *   flowscore_ingest_records_total{model,result}                     counter (accepted, rejected)
 *   flowscore_ingest_anomalies_total{model}                          counter (above threshold)
 *   flowscore_ingest_anomaly_bursts_total{model}, ..._anomaly_burst  counter, gauge 0/1
 *   flowscore_spool_records{model}, flowscore_spool_bytes{model}     gauges
 *   flowscore_refits_total{model,result}                             counter (accepted, ...)
 *   flowscore_refit_duration_seconds{model}                          histogram
 *   flowscore_refit_excluded_records_total{model}                    counter (contamination)
 *   flowscore_train_skipped_nonfinite_steps_total{model}             counter
 *   process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
 *   process_max_fds, process_start_time_seconds                      from /proc/self
 *
 * Threads: counters are atomics and histograms take their own lock, so any thread may
 * update them; model entries are created on the loop thread and live until
 * fs_metrics_free. Rendering may run on any thread.
 */
#ifndef FS_METRICS_H
#define FS_METRICS_H

#include "records.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Operations of the inference metrics. */
typedef enum fs_op {
    FS_OP_SCORE = 0,
    FS_OP_ENCODE,
    FS_OP_DECODE,
    FS_OP_SAMPLE,
    FS_OP_INFER,
    FS_OP_INGEST, /* POST /v1/models/{name}/records */
    FS_OP__COUNT
} fs_op;

/* The op's label value ("score", ...). */
const char *fs_op_name(fs_op op);

/* Why an inference request failed: the reason label of flowscore_inference_failures_total. */
typedef enum fs_fail_reason {
    FS_FAIL_INVALID_INPUT = 0, /* "invalid_input": a 4xx, the client's fault */
    FS_FAIL_UNAVAILABLE,       /* "unavailable": 503, overloaded or shutting down */
    FS_FAIL_MODEL_ERROR,       /* "model_error": any other 5xx, ours */
    FS_FAIL__COUNT
} fs_fail_reason;

/* The reason of a failed answer with HTTP status (400..599). */
fs_fail_reason fs_fail_reason_of_status(int status);

#define FS_HIST_MAX_BOUNDS 24

/* A histogram: bucket counts (not cumulative) under a lock so that +Inf == _count. */
typedef struct fs_histogram {
    pthread_mutex_t lock;
    const double *bounds; /* upper bounds, increasing; static storage */
    size_t n_bounds;
    uint64_t counts[FS_HIST_MAX_BOUNDS + 1]; /* guarded by lock; last: above every bound */
    double sum;                              /* guarded by lock */
    uint64_t count;                          /* guarded by lock */
} fs_histogram;

/* Initialise h (caller's storage) with n_bounds (<= FS_HIST_MAX_BOUNDS) static bounds. */
void fs_histogram_init(fs_histogram *h, const double *bounds, size_t n_bounds);
/* Release h's lock; h is not used afterwards. */
void fs_histogram_deinit(fs_histogram *h);
/* Count one observation v (v >= 0 for a meaningful _sum). Any thread. */
void fs_histogram_observe(fs_histogram *h, double v);

/* One model name's metrics. Created on the loop; freed by fs_metrics_free only. */
typedef struct fs_model_metrics {
    char name[72];
    atomic_uint_fast64_t requests[FS_OP__COUNT];                 /* atomic */
    atomic_uint_fast64_t failures[FS_OP__COUNT][FS_FAIL__COUNT]; /* atomic */
    atomic_uint_fast64_t rows[FS_OP__COUNT];                     /* atomic */
    atomic_uint_fast64_t executions;                             /* atomic */
    atomic_uint_fast64_t reloads;                                /* atomic */
    atomic_uint_fast64_t reload_failures;                        /* atomic */
    atomic_int_fast64_t version; /* atomic: served version, 0 = none */
    fs_histogram batch_rows;
    /* The background trainer (issue 5); rendered once trainer is set. */
    atomic_int trainer;                       /* atomic: the model has a trainer state */
    atomic_uint_fast64_t ingest_accepted;     /* atomic: records stored in the spool */
    atomic_uint_fast64_t ingest_rejected;     /* atomic: records refused by validation */
    atomic_uint_fast64_t ingest_anomalies;    /* atomic: stored records above the threshold */
    atomic_uint_fast64_t anomaly_bursts;      /* atomic: bursts detected */
    atomic_int anomaly_burst;                 /* atomic: a burst is going on (0/1) */
    atomic_uint_fast64_t spool_records;       /* atomic gauge */
    atomic_uint_fast64_t spool_bytes;         /* atomic gauge */
    atomic_uint_fast64_t refits[3];           /* atomic: accepted, rejected, failed */
    atomic_uint_fast64_t refit_excluded;      /* atomic: records the guard left out */
    atomic_uint_fast64_t train_skipped_steps; /* atomic: non-finite steps skipped in refits */
    fs_histogram refit_seconds;
    struct fs_model_metrics *next; /* guarded by fs_metrics.lock */
} fs_model_metrics;

typedef struct fs_metrics fs_metrics;

/* Values the loop samples at scrape time and hands to the renderer. */
typedef struct fs_metrics_gauges {
    uint64_t queue_depth;
    uint64_t worker_threads;
    uint64_t worker_threads_busy;
    uint64_t connections;
    uint64_t in_flight;
} fs_metrics_gauges;

/*
 * Create the registry of metrics. route_names: n_routes handler labels (route templates,
 * static storage). Returns NULL when out of memory.
 */
fs_metrics *fs_metrics_create(const char *const *route_names, size_t n_routes);
/* Free m and every model entry. NULL is fine. No thread may use m afterwards. */
void fs_metrics_free(fs_metrics *m);

/*
 * One finished HTTP request: route index, method ("GET", "POST"; others count as "other"),
 * status code, and its duration in seconds. Any thread.
 */
void fs_metrics_http_request(fs_metrics *m, size_t route, const char *method, int status);
void fs_metrics_http_duration(fs_metrics *m, size_t route, double seconds);

/* One error answer, by its code (FS_EC_*; unknown codes count as "other"). Any thread. */
void fs_metrics_http_error(fs_metrics *m, const char *code);

/*
 * The entry for model name, created (with every label set at zero) on first use.
 * Loop thread. Returns NULL when out of memory.
 */
fs_model_metrics *fs_metrics_model(fs_metrics *m, const char *name);

/* The exposition text of every metric, appended to b. Any thread. */
void fs_metrics_render(fs_metrics *m, const fs_metrics_gauges *g, fs_strbuf *b);

/* Append a label value with \\, \" and \n escaped (no quotes). */
void fs_metrics_put_label_value(fs_strbuf *b, const char *v);

/* The Content-Type of the exposition. */
#define FS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* FS_METRICS_H */
