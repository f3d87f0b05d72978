/*
 * trainer.h: the background trainer service (issue 5), as the loop sees it.
 *
 * Records posted to /v1/models/{name}/records are validated on the scoring workers
 * (api_ingest.c), appended to the model's spool by the spool I/O thread (spool_io.h) and
 * acknowledged once fdatasync'd. Refits start when min_new_records new records arrived,
 * every refit_interval_s, or on POST /v1/models/{name}/training; each runs on the trainer
 * thread (trainer_thread.c, trainer_run.c) below the scoring workers in priority. An accepted
 * candidate comes back through a mailbox (mutex + uv_async) and is published with
 * fs_registry_publish: written as the next version atomically and swapped in like a reload.
 * A rejected or failed refit changes nothing but last_run.
 *
 * Files: <state_dir>/trainer/<name>.spool (spool.h) and <name>.json (last run, counters).
 * Threads: every function here runs on the loop thread.
 */
#ifndef FS_TRAINER_H
#define FS_TRAINER_H

#include "api.h"
#include "config.h"
#include "metrics.h"
#include "registry.h"

#include <stdint.h>
#include <uv.h>

typedef struct fs_refit fs_refit;
typedef struct fs_tmodel fs_tmodel;

/*
 * Start the service: parse the configured schemas and specs of "models" (start-up file
 * reads), add a registry entry for each model to be trained from the stream, start the spool
 * I/O and trainer threads, and open (recover) every spool found under the state directory.
 * Returns 0 with *out set (NULL when the trainer is disabled everywhere), or -1 (logged).
 */
int fs_refit_create(uv_loop_t *loop, const fs_config *cfg, fs_registry *reg, fs_metrics *metrics,
                    fs_refit **out);

/* Every spool opened at start-up has been recovered (part of readiness). NULL: 1. */
int fs_refit_ready(const fs_refit *r);

/* The trainer state of e's model, created (and its spool opened) on first use; NULL when
 * the trainer is disabled for it. */
fs_tmodel *fs_refit_model(fs_refit *r, const fs_entry *e);

/* The configured schema of a model trained from the stream, or NULL. */
const fs_schema *fs_refit_schema(const fs_tmodel *tm);

/* Called when an ingest's records are on disk (ok 1) or could not be stored (ok 0, error). */
typedef void (*fs_refit_stored_fn)(void *arg, int ok, const char *error);

/*
 * Append an ingest job's frames to tm's spool (taking them from res) and call done once they
 * are durable. Returns 0, or -1 with a sentence in err (the spool cannot be opened, the
 * server is stopping): then done is not called.
 */
int fs_refit_store(fs_refit *r, fs_tmodel *tm, fs_ingest_result *res, fs_refit_stored_fn done,
                   void *arg, char *err, size_t errlen);

/* GET /v1/models/{name}/training: the document into b; returns the HTTP status. */
int fs_refit_status(fs_refit *r, const fs_entry *e, fs_strbuf *b);

/*
 * POST /v1/models/{name}/training: start a refit now. Returns 202 with the document in b, or
 * an error status with err set (409 already running or disabled, 503 spool not ready).
 */
int fs_refit_trigger(fs_refit *r, fs_entry *e, fs_strbuf *b, fs_req_error *err);

/* SIGTERM: start no more refits and cancel the one running (it ends as failed). */
void fs_refit_begin_stop(fs_refit *r);

/* Spool writes not yet acknowledged (the drain waits for them). */
uint64_t fs_refit_pending(const fs_refit *r);

/*
 * Shutdown, after the drain: join the trainer thread (its last job is dropped), let the
 * spool I/O thread finish and join it, close the handles (run the loop afterwards).
 */
void fs_refit_stop(fs_refit *r);

/* Free everything (spools closed). After fs_refit_stop and the loop's last run. NULL ok. */
void fs_refit_free(fs_refit *r);

#endif /* FS_TRAINER_H */
