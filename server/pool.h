/*
 * pool.h: the scoring workers and the dynamic batcher.
 *
 * A fixed set of threads (never libuv's pool, which does file work) take jobs from one
 * inbound queue, parse them (fs_api_prepare), and coalesce the score jobs that hold the same
 * fs_model pointer into one fs_model_score call of at most max_batch_rows rows, as Triton's
 * dynamic batcher does. A batch waits at most max_queue_delay_us for more rows (0: it takes
 * what is queued now). Jobs of different model objects never share a batch, so every answer
 * comes from exactly one model version. Finished jobs go back to the loop through a
 * mutex-guarded list and a uv_async; the loop calls each job's done function.
 *
 * Threads: fs_pool_create/submit/cancel_queued/stop/free on the loop thread only; the
 * counters may be read from any thread.
 */
#ifndef FS_POOL_H
#define FS_POOL_H

#include "api.h"

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

typedef struct fs_pool fs_pool;

typedef struct fs_pool_params {
    uint32_t workers;             /* threads (>= 1) */
    uint32_t max_batch_rows;      /* rows per engine call (>= 1) */
    uint32_t max_queue_delay_us;  /* longest wait to fill a batch */
    uint32_t max_queued_requests; /* inbound capacity */
    uint32_t queue_timeout_ms;    /* queued longer: 503 without work; 0 = never */
} fs_pool_params;

/* Start the workers and the completion handle on loop. Returns 0, or -1 (errno-style log). */
int fs_pool_create(uv_loop_t *loop, const fs_pool_params *params, fs_pool **out);

/*
 * Queue job (the loop keeps ownership; the worker only touches the job). Returns 0, or -1
 * when the queue is full or the pool is stopping: the caller answers 503 itself.
 */
int fs_pool_submit(fs_pool *p, fs_job *job);

/*
 * Answer every job not yet taken by a worker with 503 "draining" (through the normal
 * completion path). Used when the drain timeout expires. Loop thread.
 */
void fs_pool_cancel_queued(fs_pool *p);

/* Jobs submitted and not yet handed back to the loop. */
uint64_t fs_pool_pending(const fs_pool *p);
/* Jobs waiting for a worker (inbound and parsed-but-unbatched). */
uint64_t fs_pool_queue_depth(const fs_pool *p);
uint64_t fs_pool_busy(const fs_pool *p);
uint64_t fs_pool_completed(const fs_pool *p);
uint32_t fs_pool_workers(const fs_pool *p);

/*
 * Stop: workers finish every queued job, then exit and are joined; the completion handle is
 * closed (its memory is released in the close callback, so run the loop afterwards).
 * Loop thread. Jobs still to hand back are delivered before the handle closes.
 */
void fs_pool_stop(fs_pool *p);

#endif /* FS_POOL_H */
