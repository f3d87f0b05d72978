/*
 * registry.h: the model repository <models_dir>/<name>/<version>.fsm and the model each
 * name serves.
 *
 * The highest version that loads is served. Loads run off the loop (libuv's threadpool, never
 * the scoring workers); the swap runs on the loop: `e->current = next; fs_model_unref(old)`.
 * Jobs in flight hold their own reference, so an old model is freed when its last request
 * ends. A file that fails to load (unreadable, corrupt, wrong format version, or a schema
 * other than the served one's) is refused: the served model stays, the error is kept in
 * last_error and counted in flowscore_model_reload_failures_total, and the next good file
 * loads. Reloads come from SIGHUP and start-up (rounds over every name), from
 * POST /v1/models/{name}/reload (one name, answered when its load has finished), and from
 * the file watcher and the periodic rescan (only when a file changed).
 *
 * Threads: every function runs on the loop thread. Entries live until fs_registry_free.
 */
#ifndef FS_REGISTRY_H
#define FS_REGISTRY_H

#include "config.h"
#include "metrics.h"

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* A file's identity: a rewrite or a rename shows up as a change of one of these. */
typedef struct fs_file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} fs_file_id;

typedef struct fs_reload_waiter fs_reload_waiter;
typedef struct fs_entry fs_entry;

/* Called when the load a waiter waited for has finished; ok is 0 when it failed. */
typedef void (*fs_reload_done_fn)(fs_reload_waiter *w, fs_entry *e, int ok);

struct fs_reload_waiter {
    fs_reload_done_fn done;
    void *arg;
    fs_model *published; /* fs_registry_publish: the model to write (a reference) */
    fs_reload_waiter *next;
};

/* One model name. Fields are loop-owned. */
struct fs_entry {
    char name[72];
    fs_model *current;  /* loop: served model (NULL until the first load) */
    int64_t version;    /* loop: its version, 0 when none */
    fs_file_id file_id; /* loop: the file it came from */
    char *schema_json;  /* loop: fs_schema_format_json of current (malloc'd) */
    char *header_extra; /* loop: ,"created":..,"spec":..,"training":.. of current (malloc'd) */
    double loaded_at;   /* loop: unix seconds of the swap */
    double load_seconds;
    char last_error[512]; /* loop: the last refusal, "" when the last load was clean */
    int64_t *versions;    /* loop: versions on disk at the last scan, descending */
    size_t n_versions;
    fs_model_metrics *mm;
    /* Load state: one load job per entry at a time. */
    int loading;
    int again, again_force;         /* another load was asked for meanwhile */
    fs_reload_waiter *waiting;      /* answered by the job in flight */
    fs_reload_waiter *waiting_next; /* answered by the next job */
    fs_reload_waiter *publishing;   /* a model to publish once the job in flight ends */
    fs_file_id *refused;            /* files refused and unchanged since: not retried by rescans */
    size_t n_refused;
    uv_fs_event_t *watch; /* inotify on the entry's directory, or NULL */
    int stream;           /* loop: trained from the stream (issue 5): may have no version yet */
    fs_entry *next;
};

/* Why a round over every name ran (a bit mask in the round-done callback). */
enum {
    FS_ROUND_START = 1,  /* start-up */
    FS_ROUND_SIGHUP = 2, /* SIGHUP: forced reload of every name */
    FS_ROUND_RESCAN = 4  /* watcher or periodic rescan: changed files only */
};

typedef struct fs_registry fs_registry;

/* Called on the loop when a round ends; kinds: the FS_ROUND_* bits it served. */
typedef void (*fs_round_done_fn)(void *arg, unsigned kinds);

/* Create the registry for cfg->models_dir (nothing is read yet). NULL when out of memory. */
fs_registry *fs_registry_create(uv_loop_t *loop, const fs_config *cfg, fs_metrics *metrics,
                                fs_round_done_fn round_done, void *arg);

/*
 * Start a round: scan models_dir for names (off the loop), then load each name, forced when
 * kind is FS_ROUND_SIGHUP or FS_ROUND_START. Rounds run one at a time; rounds asked for
 * meanwhile are merged into the next one.
 */
void fs_registry_round(fs_registry *reg, unsigned kind);

/* Start watching models_dir (inotify, debounced) and the periodic rescan, per cfg. */
int fs_registry_watch(fs_registry *reg);

/* The entry for name (len bytes), or NULL. */
fs_entry *fs_registry_find(fs_registry *reg, const char *name, size_t len);

/* The first entry (follow ->next), in name order of discovery. */
fs_entry *fs_registry_first(fs_registry *reg);

/*
 * The entry for name (a valid model name), created when missing, for a model the background
 * trainer creates from the stream: stream marks it as one that may have no version yet
 * (readiness does not wait for it, and a missing directory is not an error). NULL when out
 * of memory.
 */
fs_entry *fs_registry_ensure(fs_registry *reg, const char *name, int stream);

/* 1 when every entry serves a model (entries from the stream without a version yet aside)
 * and no start-up round is pending. */
int fs_registry_ready(const fs_registry *reg);

/* Entries, and entries serving a model. */
void fs_registry_counts(const fs_registry *reg, size_t *n_entries, size_t *n_loaded);

/*
 * Reload e from disk (forced). w (caller-owned, alive until its done call) is answered after
 * a load that started after this call has finished.
 */
void fs_registry_reload(fs_registry *reg, fs_entry *e, fs_reload_waiter *w);

/*
 * Publish a freshly trained model (a background trainer): write it as
 * <models_dir>/<name>/<highest version + 1>.fsm atomically off the loop (fs_model_save;
 * the directory is created when missing), then swap it in. w->published holds a reference that the
 * registry releases. Its schema must equal the served one. w is answered like a reload. Returns 0,
 * or -1 if e already has a publication waiting.
 */
int fs_registry_publish(fs_registry *reg, fs_entry *e, fs_reload_waiter *w);

/*
 * Stop watching and rescanning, and answer waiters not yet started with failure. Loads in
 * flight finish (run the loop until it is empty), then fs_registry_free.
 */
void fs_registry_close(fs_registry *reg);

/* Free every entry and its model reference. After the loop has no more registry work. */
void fs_registry_free(fs_registry *reg);

/* Loads (and rounds) in flight. */
int fs_registry_busy(const fs_registry *reg);

#endif /* FS_REGISTRY_H */
