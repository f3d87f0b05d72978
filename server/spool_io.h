/*
 * spool_io.h: the spool I/O thread: every write to the state directory (spool opens with
 * recovery, appends, fdatasync, compactions, the trainer's state files) runs here, never on
 * the loop or a scoring worker (STYLE.md, "Threads").
 *
 * Group commit: the thread takes every operation queued since its last pass, performs them
 * in order (appends are written, not yet synced), then fdatasyncs each spool it wrote to once,
 * and only then hands the whole batch back to the loop (a mutex-guarded done list and a
 * uv_async). Concurrent ingest requests therefore share one fsync, and none is answered
 * before its records are on disk. Spools above their cap are compacted after the batch is
 * handed back, so compaction never delays an acknowledgement already earned.
 *
 * Threads: create/submit/stop on the loop thread; op callbacks run on the loop thread.
 */
#ifndef FS_SPOOL_IO_H
#define FS_SPOOL_IO_H

#include "spool.h"

#include <stdint.h>
#include <uv.h>

typedef enum fs_spool_op_kind {
    FS_SPOOL_OP_OPEN = 0, /* open + recover a spool; read the model's trainer state file */
    FS_SPOOL_OP_APPEND,   /* append frames; durable before the op comes back */
    FS_SPOOL_OP_WRITE     /* write a small file atomically (the trainer state) */
} fs_spool_op_kind;

typedef struct fs_spool_op fs_spool_op;

/* Called on the loop thread once the op is done (status 0) or failed (status -1, error). */
typedef void (*fs_spool_op_fn)(fs_spool_op *op);

struct fs_spool_op {
    /* Request: set on the loop before fs_spool_io_submit. */
    fs_spool_op_kind kind;
    const char *name;       /* OPEN: model name (borrowed; lives as long as the server) */
    const char *dir;        /* OPEN: spool directory (borrowed) */
    const char *path;       /* OPEN: trainer state file to read; WRITE: file (borrowed) */
    fs_spool *spool;        /* APPEND: target; OPEN: the result */
    uint64_t cap;           /* APPEND: compact above cap + slack */
    fs_spool_policy policy; /* APPEND: how */
    unsigned char *data;    /* APPEND: frames; WRITE: content (malloc'd, the op owns it) */
    size_t len;
    fs_spool_op_fn done;
    fs_spool_op_fn io_after; /* OPEN: run on the I/O thread after a successful open, or NULL */
    void *arg;
    /* Result: written by the I/O thread, read by the loop after the hand-off. */
    int status;
    char error[320];
    fs_spool_recovery recovery; /* OPEN */
    char *text;                 /* OPEN: the state file's content (malloc'd) or NULL */
    fs_spool_op *next;          /* queues: guarded by the I/O thread's locks */
};

typedef struct fs_spool_io fs_spool_io;

/* Start the thread and its completion handle on loop. Returns NULL on failure (logged). */
fs_spool_io *fs_spool_io_create(uv_loop_t *loop);

/*
 * Queue op (the caller keeps ownership of op; the I/O thread only fills its result). After
 * fs_spool_io_stop began, op comes back at once with status -1.
 */
void fs_spool_io_submit(fs_spool_io *io, fs_spool_op *op);

/* Ops submitted and not yet handed back. */
uint64_t fs_spool_io_pending(const fs_spool_io *io);

/*
 * Finish every queued op, join the thread, deliver the last completions, and close the
 * handle (its memory is freed in the close callback: run the loop afterwards). NULL is fine.
 */
void fs_spool_io_stop(fs_spool_io *io);

#endif /* FS_SPOOL_IO_H */
