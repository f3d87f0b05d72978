/* spool_io.c: the spool I/O thread, group commit, and the hand-off back to the loop. */
#include "spool_io.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FS_STATE_FILE_MAX (1u << 20)

struct fs_spool_io {
    uv_async_t async; /* loop: completion wake-up; memory freed in its close callback */
    pthread_t thread;
    int started;
    pthread_mutex_t lock; /* guards the inbound queue and stopping */
    pthread_cond_t cond;
    fs_spool_op *in_head, *in_tail; /* guarded by lock */
    int stopping;                   /* guarded by lock */
    pthread_mutex_t done_lock;      /* guards the done list */
    fs_spool_op *done_head, *done_tail;
    atomic_uint_fast64_t pending; /* atomic: submitted, not yet handed back */
    uint64_t rng;                 /* I/O thread: compaction's random choices */
};

/* I/O thread: the trainer state file, if there is one (a missing file is not an error). */
static void read_state(fs_spool_op *op)
{
    int fd = open(op->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    char *buf = malloc(FS_STATE_FILE_MAX + 1);
    ssize_t n = buf != NULL ? read(fd, buf, FS_STATE_FILE_MAX) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        return;
    }
    buf[n] = '\0';
    op->text = buf;
}

static void do_open(fs_spool_op *op)
{
    if (fs_spool_open(op->dir, op->name, &op->spool, &op->recovery, op->error, sizeof op->error) !=
        0) {
        op->status = -1;
        return;
    }
    read_state(op);
    if (op->io_after != NULL) {
        op->io_after(op);
    }
}

/* Remember a spool written in this batch (at most once). */
static int add_dirty(fs_spool **dirty, size_t *n, size_t cap, fs_spool *s)
{
    for (size_t i = 0; i < *n; i++) {
        if (dirty[i] == s) {
            return 0;
        }
    }
    if (*n == cap) {
        return -1;
    }
    dirty[(*n)++] = s;
    return 0;
}

/* I/O thread: one batch, in order; appends synced once per spool before anything returns. */
static void run_batch(fs_spool_io *io, fs_spool_op *batch)
{
    (void)io;
    enum { MAX_DIRTY = 64 };
    fs_spool *dirty[MAX_DIRTY];
    size_t n_dirty = 0;
    for (fs_spool_op *op = batch; op != NULL; op = op->next) {
        op->status = 0;
        switch (op->kind) {
        case FS_SPOOL_OP_OPEN:
            do_open(op);
            break;
        case FS_SPOOL_OP_APPEND:
            if (add_dirty(dirty, &n_dirty, MAX_DIRTY, op->spool) != 0) {
                /* More spools than slots in one batch: sync the earlier ones now. */
                for (size_t i = 0; i < n_dirty; i++) {
                    char err[320];
                    if (fs_spool_sync(dirty[i], err, sizeof err) != 0) {
                        fs_log(FS_LOG_ERROR, "spool", "fdatasync failed error=\"%s\"", err);
                    }
                }
                n_dirty = 0;
                add_dirty(dirty, &n_dirty, MAX_DIRTY, op->spool);
            }
            if (fs_spool_append(op->spool, op->data, op->len, op->error, sizeof op->error) != 0) {
                op->status = -1;
            }
            break;
        case FS_SPOOL_OP_WRITE:
            if (fs_file_write_atomic(op->path, op->data, op->len, op->error, sizeof op->error) !=
                0) {
                op->status = -1;
            }
            break;
        }
    }
    for (size_t i = 0; i < n_dirty; i++) {
        char err[320];
        if (fs_spool_sync(dirty[i], err, sizeof err) == 0) {
            continue;
        }
        fs_log(FS_LOG_ERROR, "spool", "fdatasync failed error=\"%s\"", err);
        for (fs_spool_op *op = batch; op != NULL; op = op->next) {
            if (op->kind == FS_SPOOL_OP_APPEND && op->spool == dirty[i] && op->status == 0) {
                op->status = -1;
                snprintf(op->error, sizeof op->error, "%s", err);
            }
        }
    }
}

/* A spool appended to in a batch, and how to compact it. */
typedef struct compact_item {
    fs_spool *spool;
    uint64_t cap;
    fs_spool_policy policy;
} compact_item;

/* I/O thread: the spools of a batch that may need compaction (collected before the batch is
 * handed back: the loop may free an op as soon as it has it). */
static size_t compact_list(const fs_spool_op *batch, compact_item *items, size_t max)
{
    size_t n = 0;
    for (const fs_spool_op *op = batch; op != NULL; op = op->next) {
        int seen = 0;
        if (op->kind != FS_SPOOL_OP_APPEND || op->status != 0 || op->cap == 0) {
            continue;
        }
        for (size_t i = 0; i < n && !seen; i++) {
            seen = items[i].spool == op->spool;
        }
        if (!seen && n < max) {
            items[n].spool = op->spool;
            items[n].cap = op->cap;
            items[n++].policy = op->policy;
        }
    }
    return n;
}

/* I/O thread: compact the spools that grew past cap + slack. */
static void compact(fs_spool_io *io, const compact_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char err[320];
        uint64_t before, after, seen, bytes;
        if (!fs_spool_over(items[i].spool, items[i].cap)) {
            continue;
        }
        fs_spool_stats(items[i].spool, &before, &seen, &bytes);
        if (fs_spool_compact(items[i].spool, items[i].cap, items[i].policy, &io->rng, err,
                             sizeof err) != 0) {
            fs_log(FS_LOG_ERROR, "spool", "compaction failed error=\"%s\"", err);
            continue;
        }
        fs_spool_stats(items[i].spool, &after, &seen, &bytes);
        fs_log(FS_LOG_DEBUG, "spool", "compacted policy=%s records=%llu kept=%llu seen=%llu",
               fs_spool_policy_name((int)items[i].policy), (unsigned long long)before,
               (unsigned long long)after, (unsigned long long)seen);
    }
}

static void hand_back(fs_spool_io *io, fs_spool_op *first, fs_spool_op *last);

static void *io_main(void *arg)
{
    fs_spool_io *io = arg;
    compact_item items[64];
    pthread_mutex_lock(&io->lock);
    for (;;) {
        while (io->in_head == NULL && !io->stopping) {
            pthread_cond_wait(&io->cond, &io->lock);
        }
        if (io->in_head == NULL) {
            break; /* stopping, and everything queued is done */
        }
        fs_spool_op *batch = io->in_head;
        io->in_head = io->in_tail = NULL;
        pthread_mutex_unlock(&io->lock);
        run_batch(io, batch);
        size_t n_items = compact_list(batch, items, sizeof items / sizeof items[0]);
        fs_spool_op *last = batch;
        while (last->next != NULL) {
            last = last->next;
        }
        hand_back(io, batch, last);
        uv_async_send(&io->async);
        compact(io, items, n_items);
        pthread_mutex_lock(&io->lock);
    }
    pthread_mutex_unlock(&io->lock);
    return NULL;
}

static void deliver(fs_spool_io *io)
{
    pthread_mutex_lock(&io->done_lock);
    fs_spool_op *op = io->done_head;
    io->done_head = io->done_tail = NULL;
    pthread_mutex_unlock(&io->done_lock);
    while (op != NULL) {
        fs_spool_op *next = op->next;
        op->next = NULL;
        atomic_fetch_sub(&io->pending, 1);
        op->done(op);
        op = next;
    }
}

static void on_async(uv_async_t *h)
{
    deliver(h->data);
}

fs_spool_io *fs_spool_io_create(uv_loop_t *loop)
{
    fs_spool_io *io = calloc(1, sizeof *io);
    struct timespec ts;
    if (io == NULL) {
        return NULL;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    io->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    pthread_mutex_init(&io->lock, NULL);
    pthread_cond_init(&io->cond, NULL);
    pthread_mutex_init(&io->done_lock, NULL);
    if (uv_async_init(loop, &io->async, on_async) != 0) {
        pthread_mutex_destroy(&io->lock);
        pthread_cond_destroy(&io->cond);
        pthread_mutex_destroy(&io->done_lock);
        free(io);
        return NULL;
    }
    io->async.data = io;
    if (pthread_create(&io->thread, NULL, io_main, io) != 0) {
        fs_log(FS_LOG_ERROR, "spool", "cannot start the spool I/O thread");
        fs_spool_io_stop(io);
        return NULL;
    }
    io->started = 1;
    return io;
}

/* Put op on the done list (the thread's hand-off, or a refusal after the stop). */
static void hand_back(fs_spool_io *io, fs_spool_op *first, fs_spool_op *last)
{
    pthread_mutex_lock(&io->done_lock);
    if (io->done_tail != NULL) {
        io->done_tail->next = first;
    } else {
        io->done_head = first;
    }
    io->done_tail = last;
    pthread_mutex_unlock(&io->done_lock);
}

void fs_spool_io_submit(fs_spool_io *io, fs_spool_op *op)
{
    op->next = NULL;
    op->status = 0;
    op->error[0] = '\0';
    atomic_fetch_add(&io->pending, 1);
    pthread_mutex_lock(&io->lock);
    if (io->stopping && !io->started) {
        pthread_mutex_unlock(&io->lock);
        op->status = -1;
        snprintf(op->error, sizeof op->error, "the server is shutting down");
        hand_back(io, op, op); /* delivered by fs_spool_io_stop's last pass */
        return;
    }
    if (io->in_tail != NULL) {
        io->in_tail->next = op;
    } else {
        io->in_head = op;
    }
    io->in_tail = op;
    pthread_cond_signal(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

uint64_t fs_spool_io_pending(const fs_spool_io *io)
{
    return io != NULL ? atomic_load(&((fs_spool_io *)(uintptr_t)io)->pending) : 0;
}

static void on_closed(uv_handle_t *h)
{
    fs_spool_io *io = h->data;
    pthread_mutex_destroy(&io->lock);
    pthread_cond_destroy(&io->cond);
    pthread_mutex_destroy(&io->done_lock);
    free(io);
}

void fs_spool_io_stop(fs_spool_io *io)
{
    if (io == NULL) {
        return;
    }
    pthread_mutex_lock(&io->lock);
    io->stopping = 1;
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->lock);
    if (io->started) {
        pthread_join(io->thread, NULL);
        pthread_mutex_lock(&io->lock);
        io->started = 0;
        pthread_mutex_unlock(&io->lock);
    }
    /* Callbacks may submit more (refused now): deliver until nothing is left. */
    while (atomic_load(&io->pending) > 0) {
        deliver(io);
    }
    uv_close((uv_handle_t *)&io->async, on_closed);
}
