/* pool.c: scoring worker threads, the dynamic batcher, and the hand-off back to the loop. */
#include "pool.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct fs_worker {
    fs_pool *pool;
    pthread_t thread;
    fs_workspace *ws;
    double *batch_x; /* coalesced rows; grown as needed (outside the engine) */
    size_t batch_x_cap;
    fs_score *batch_out;
    size_t batch_out_cap;
} fs_worker;

struct fs_pool {
    fs_pool_params params;
    uv_async_t async; /* loop: completion wake-up; memory freed in its close callback */
    fs_worker *workers;
    uint32_t n_started;

    pthread_mutex_t lock; /* guards inbound, ready, stopping */
    pthread_cond_t cond;
    fs_job *in_head, *in_tail;       /* guarded by lock: raw jobs to parse */
    fs_job *ready_head, *ready_tail; /* guarded by lock: parsed score jobs to batch */
    uint64_t n_inbound, n_ready;     /* guarded by lock */
    int stopping;                    /* guarded by lock */

    pthread_mutex_t done_lock; /* guards the done list */
    fs_job *done_head, *done_tail;

    atomic_uint_fast64_t pending;   /* atomic: submitted, not yet handed back */
    atomic_uint_fast64_t depth;     /* atomic: inbound + ready */
    atomic_uint_fast64_t busy;      /* atomic */
    atomic_uint_fast64_t completed; /* atomic */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Any thread: queue job for the loop and wake it. */
static void complete(fs_pool *p, fs_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->done_lock);
    if (p->done_tail != NULL) {
        p->done_tail->next = job;
    } else {
        p->done_head = job;
    }
    p->done_tail = job;
    pthread_mutex_unlock(&p->done_lock);
    atomic_fetch_add(&p->completed, 1);
    uv_async_send(&p->async); /* the only uv_* call a worker makes */
}

static void deliver_done(fs_pool *p)
{
    pthread_mutex_lock(&p->done_lock);
    fs_job *job = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_lock);
    while (job != NULL) {
        fs_job *next = job->next;
        job->next = NULL;
        atomic_fetch_sub(&p->pending, 1);
        job->done(job);
        job = next;
    }
}

static void on_async(uv_async_t *h)
{
    deliver_done(h->data);
}

static void set_unavailable(fs_job *job, const char *code, const char *msg)
{
    fs_req_error e;
    fs_req_error_set(&e, 503, code, NULL, "%s", msg);
    fs_api_set_error(job, &e);
}

/* Grow a worker's batch buffers; -1 when out of memory. */
static int worker_reserve(fs_worker *w, size_t n_rows, size_t n_fields)
{
    size_t need_x = n_rows * n_fields;
    if (need_x > w->batch_x_cap) {
        double *x = realloc(w->batch_x, need_x * sizeof *x);
        if (x == NULL) {
            return -1;
        }
        w->batch_x = x;
        w->batch_x_cap = need_x;
    }
    if (n_rows > w->batch_out_cap) {
        fs_score *o = realloc(w->batch_out, n_rows * sizeof *o);
        if (o == NULL) {
            return -1;
        }
        w->batch_out = o;
        w->batch_out_cap = n_rows;
    }
    return 0;
}

/* Score one batch of jobs that share a model; answer each. No lock held. */
static void run_batch(fs_worker *w, fs_job *batch)
{
    fs_pool *p = w->pool;
    fs_model *model = batch->model;
    size_t n_fields = fs_model_n_fields(model);
    size_t total = 0, n_jobs = 0;
    fs_err err;
    for (fs_job *j = batch; j != NULL; j = j->next) {
        total += j->n_rows;
        n_jobs++;
    }
    err = fs_workspace_reserve(w->ws, model);
    if (err == FS_OK && n_jobs == 1) {
        err = fs_model_score(model, w->ws, batch->rows, batch->n_rows, batch->scores);
    } else if (err == FS_OK) {
        if (worker_reserve(w, total, n_fields) != 0) {
            err = FS_ERR_NOMEM;
        } else {
            size_t off = 0;
            for (fs_job *j = batch; j != NULL; j = j->next) {
                memcpy(w->batch_x + off * n_fields, j->rows, j->n_rows * n_fields * sizeof(double));
                off += j->n_rows;
            }
            err = fs_model_score(model, w->ws, w->batch_x, total, w->batch_out);
            off = 0;
            for (fs_job *j = batch; err == FS_OK && j != NULL; j = j->next) {
                memcpy(j->scores, w->batch_out + off, j->n_rows * sizeof(fs_score));
                off += j->n_rows;
            }
        }
    }
    if (err != FS_OK && n_jobs > 1) {
        /* One job's rows must not fail its neighbours: score each alone. */
        fs_log(FS_LOG_DEBUG, "pool", "batch failed, scoring jobs alone jobs=%zu err=%s", n_jobs,
               fs_err_name(err));
    }
    if (batch->mm != NULL) {
        atomic_fetch_add_explicit(&batch->mm->executions, 1, memory_order_relaxed);
        fs_histogram_observe(&batch->mm->batch_rows, (double)total);
    }
    fs_job *j = batch;
    while (j != NULL) {
        fs_job *next = j->next;
        fs_err jerr = err;
        if (err != FS_OK && n_jobs > 1) {
            jerr = fs_model_score(model, w->ws, j->rows, j->n_rows, j->scores);
        }
        j->next = NULL;
        fs_api_finish(j, jerr);
        complete(p, j);
        j = next;
    }
}

/*
 * With the lock held: the first ready job whose batch may run now, and the rows ready for
 * its model. *wait_ns receives how long until the oldest batch becomes due (0 if none).
 */
static fs_job *due_batch_locked(fs_pool *p, uint64_t now, size_t *rows, uint64_t *wait_ns)
{
    fs_job *first = p->ready_head;
    *rows = 0;
    *wait_ns = 0;
    if (first == NULL) {
        return NULL;
    }
    for (fs_job *j = first; j != NULL; j = j->next) {
        if (j->model == first->model) {
            *rows += j->n_rows;
        }
    }
    uint64_t delay = (uint64_t)p->params.max_queue_delay_us * 1000u;
    if (delay == 0 || *rows >= p->params.max_batch_rows || now - first->ready_ns >= delay ||
        p->stopping) {
        return first;
    }
    *wait_ns = delay - (now - first->ready_ns);
    return NULL;
}

/* With the lock held: unlink up to max_batch_rows rows of first's model (first included). */
static fs_job *take_batch_locked(fs_pool *p, fs_job *first)
{
    fs_job *batch = NULL, **tail = &batch, *prev = NULL;
    size_t rows = 0;
    fs_job *j = p->ready_head;
    while (j != NULL) {
        fs_job *next = j->next;
        int take = j->model == first->model &&
                   (j == first || rows + j->n_rows <= p->params.max_batch_rows);
        if (take) {
            if (prev != NULL) {
                prev->next = next;
            } else {
                p->ready_head = next;
            }
            if (p->ready_tail == j) {
                p->ready_tail = prev;
            }
            j->next = NULL;
            *tail = j;
            tail = &j->next;
            rows += j->n_rows;
            p->n_ready--;
            atomic_fetch_sub(&p->depth, 1);
            if (rows >= p->params.max_batch_rows) {
                break;
            }
        } else {
            prev = j;
        }
        j = next;
    }
    return batch;
}

static void add_ready_locked(fs_pool *p, fs_job *job)
{
    job->next = NULL;
    job->ready_ns = now_ns();
    if (p->ready_tail != NULL) {
        p->ready_tail->next = job;
    } else {
        p->ready_head = job;
    }
    p->ready_tail = job;
    p->n_ready++;
    atomic_fetch_add(&p->depth, 1);
}

/* Parse one raw job; a score job joins the ready list, others are answered here. */
static void run_inbound(fs_worker *w, fs_job *job)
{
    fs_pool *p = w->pool;
    uint64_t timeout = (uint64_t)p->params.queue_timeout_ms * 1000000u;
    if (timeout != 0 && now_ns() - job->submitted_ns > timeout) {
        set_unavailable(job, FS_EC_OVERLOADED, "the request waited longer than queue_timeout_ms");
        complete(p, job);
        return;
    }
    if (fs_api_prepare(job, w->ws) == 1) {
        pthread_mutex_lock(&p->lock);
        add_ready_locked(p, job);
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    complete(p, job);
}

static void *worker_main(void *arg)
{
    fs_worker *w = arg;
    fs_pool *p = w->pool;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        size_t rows = 0;
        uint64_t wait_ns = 0;
        fs_job *first = due_batch_locked(p, now_ns(), &rows, &wait_ns);
        /* A full batch first; then parse what came in (so that concurrent requests can
         * coalesce); then a due batch; then wait. */
        if (first != NULL && (rows >= p->params.max_batch_rows || p->in_head == NULL)) {
            fs_job *batch = take_batch_locked(p, first);
            atomic_fetch_add(&p->busy, 1);
            pthread_mutex_unlock(&p->lock);
            run_batch(w, batch);
            atomic_fetch_sub(&p->busy, 1);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->in_head != NULL) {
            fs_job *job = p->in_head;
            p->in_head = job->next;
            if (p->in_head == NULL) {
                p->in_tail = NULL;
            }
            p->n_inbound--;
            atomic_fetch_sub(&p->depth, 1);
            atomic_fetch_add(&p->busy, 1);
            pthread_mutex_unlock(&p->lock);
            run_inbound(w, job);
            atomic_fetch_sub(&p->busy, 1);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->stopping && p->ready_head == NULL) {
            break;
        }
        if (wait_ns > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t t = (uint64_t)ts.tv_nsec + wait_ns;
            ts.tv_sec += (time_t)(t / 1000000000u);
            ts.tv_nsec = (long)(t % 1000000000u);
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        } else {
            pthread_cond_wait(&p->cond, &p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int fs_pool_create(uv_loop_t *loop, const fs_pool_params *params, fs_pool **out)
{
    fs_pool *p = calloc(1, sizeof *p);
    *out = NULL;
    if (p == NULL) {
        return -1;
    }
    p->params = *params;
    if (p->params.workers == 0) {
        p->params.workers = 1;
    }
    if (p->params.max_batch_rows == 0) {
        p->params.max_batch_rows = 1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_init(&p->done_lock, NULL);
    p->workers = calloc(p->params.workers, sizeof *p->workers);
    if (p->workers == NULL || uv_async_init(loop, &p->async, on_async) != 0) {
        free(p->workers);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->done_lock);
        free(p);
        return -1;
    }
    p->async.data = p;
    for (uint32_t i = 0; i < p->params.workers; i++) {
        fs_worker *w = &p->workers[i];
        w->pool = p;
        if (fs_workspace_create(&w->ws) != FS_OK) {
            break;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fs_workspace_free(w->ws);
            w->ws = NULL;
            break;
        }
        p->n_started++;
    }
    *out = p;
    if (p->n_started < p->params.workers) {
        fs_log(FS_LOG_ERROR, "pool", "could not start every worker started=%u wanted=%u",
               p->n_started, p->params.workers);
        fs_pool_stop(p);
        *out = NULL;
        return -1;
    }
    return 0;
}

int fs_pool_submit(fs_pool *p, fs_job *job)
{
    job->next = NULL;
    job->submitted_ns = now_ns();
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->n_inbound + p->n_ready >= p->params.max_queued_requests) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    if (p->in_tail != NULL) {
        p->in_tail->next = job;
    } else {
        p->in_head = job;
    }
    p->in_tail = job;
    p->n_inbound++;
    atomic_fetch_add(&p->depth, 1);
    atomic_fetch_add(&p->pending, 1);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void fs_pool_cancel_queued(fs_pool *p)
{
    pthread_mutex_lock(&p->lock);
    fs_job *in = p->in_head, *ready = p->ready_head;
    p->in_head = p->in_tail = NULL;
    p->ready_head = p->ready_tail = NULL;
    atomic_fetch_sub(&p->depth, p->n_inbound + p->n_ready);
    p->n_inbound = p->n_ready = 0;
    pthread_mutex_unlock(&p->lock);
    fs_job *lists[2] = { in, ready };
    for (int l = 0; l < 2; l++) {
        fs_job *job = lists[l];
        while (job != NULL) {
            fs_job *next = job->next;
            set_unavailable(job, FS_EC_UNAVAILABLE,
                            "the server is shutting down (drain_timeout_s expired)");
            complete(p, job);
            job = next;
        }
    }
}

uint64_t fs_pool_pending(const fs_pool *p)
{
    return atomic_load(&((fs_pool *)(uintptr_t)p)->pending);
}

uint64_t fs_pool_queue_depth(const fs_pool *p)
{
    return atomic_load(&((fs_pool *)(uintptr_t)p)->depth);
}

uint64_t fs_pool_busy(const fs_pool *p)
{
    return atomic_load(&((fs_pool *)(uintptr_t)p)->busy);
}

uint64_t fs_pool_completed(const fs_pool *p)
{
    return atomic_load(&((fs_pool *)(uintptr_t)p)->completed);
}

uint32_t fs_pool_workers(const fs_pool *p)
{
    return p->n_started;
}

static void on_async_closed(uv_handle_t *h)
{
    fs_pool *p = h->data;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->done_lock);
    free(p);
}

void fs_pool_stop(fs_pool *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < p->n_started; i++) {
        pthread_join(p->workers[i].thread, NULL);
    }
    for (uint32_t i = 0; i < p->params.workers; i++) {
        fs_workspace_free(p->workers[i].ws);
        free(p->workers[i].batch_x);
        free(p->workers[i].batch_out);
    }
    free(p->workers);
    p->workers = NULL;
    p->n_started = 0;
    deliver_done(p);
    uv_close((uv_handle_t *)&p->async, on_async_closed);
}
