/*
 * trainer_internal.h: what the background trainer's parts share (trainer.c on the loop,
 * trainer_run.c on the trainer thread, trainer_state.c for status and persistence). Not for
 * other modules; the unit tests use the run and decision functions directly.
 */
#ifndef FS_TRAINER_INTERNAL_H
#define FS_TRAINER_INTERNAL_H

#include "config.h"
#include "metrics.h"
#include "records.h"
#include "registry.h"
#include "spool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* How a refit ended. */
typedef enum fs_refit_decision {
    FS_REFIT_ACCEPTED = 0, /* published as the next version */
    FS_REFIT_REJECTED,     /* trained, but not better (or a non-finite holdout score) */
    FS_REFIT_FAILED,       /* could not train (too few rows, non-finite training, I/O) */
    FS_REFIT__COUNT
} fs_refit_decision;

/* "accepted", "rejected", "failed". Static storage. */
const char *fs_refit_decision_name(int decision);

/* Standard errors of the paired holdout difference that count as noise in the acceptance
 * rule (one-sided, about 2.3% of candidates that are no better pass by chance). */
#define FS_REFIT_NOISE_Z 2.0

/* One refit, from the loop to the trainer thread and back. */
typedef struct fs_refit_job {
    /* In: set on the loop, read-only for the thread. */
    char name[72];
    fs_model *current;       /* the served model (a reference), or NULL for a first version */
    int64_t version;         /* its version, 0 when none */
    fs_spool *spool;         /* the model's spool (snapshots are thread-safe) */
    const fs_schema *schema; /* configured schema (a stream-created model), or NULL */
    const fs_spec *spec;     /* configured spec, or NULL */
    fs_trainer_config cfg;   /* this model's trainer settings */
    char trigger[16];        /* "records", "interval", "manual" */
    atomic_int picked;       /* atomic: the thread has started it */
    /* Out: written by the thread, read by the loop after the mailbox hand-off. */
    double started, ended; /* unix seconds */
    uint64_t snapshot_records;
    uint64_t rows, train_rows, holdout_rows, excluded, undecodable;
    double candidate_nll, current_nll; /* trimmed holdout means, nats/row; NAN = none */
    double noise_nats;                 /* FS_REFIT_NOISE_Z standard errors; NAN = none */
    uint64_t calibration_rows;         /* rows the published threshold comes from; 0 = none */
    int64_t skipped_steps;
    int32_t epochs_run;
    int32_t best_epoch; /* 0: no epoch beat the starting point */
    int warm;           /* started from the served model */
    int decision;       /* fs_refit_decision */
    char reason[320];
    fs_model *candidate; /* accepted: the model to publish (a reference) */
    struct fs_refit_job *next;
} fs_refit_job;

/* Cancellation shared by the loop (SIGTERM) and the trainer thread. */
typedef struct fs_refit_cancel {
    pthread_mutex_t lock;
    fs_trainer *active; /* guarded by lock: the engine trainer now fitting, or NULL */
    atomic_bool stop;   /* atomic: set once; every later step of a fit stops */
} fs_refit_cancel;

void fs__refit_cancel_init(fs_refit_cancel *c);
void fs__refit_cancel_deinit(fs_refit_cancel *c);
/* Any thread: stop the fit in progress (after its current step) and every later one. */
void fs__refit_cancel(fs_refit_cancel *c);

/*
 * Trainer thread (or a test): run one refit: snapshot, policy, decode, contamination guard,
 * holdout split, train, compare, recalibrate. Fills job's out part; never publishes.
 * Threads: touches only job, the spool (snapshot) and its own engine objects.
 */
void fs__refit_run(fs_refit_job *job, fs_refit_cancel *cancel);

/* Holdout rows of a refit over n rows: round(n * fraction), at least 1 when n >= 3 (the
 * refit then checks trainer.min_holdout_rows). */
size_t fs__refit_holdout_rows(size_t n, double fraction);

/*
 * The engine's trimmed validation metric (fs_train_params.val_trim): the mean of nll
 * (n values, sorted in place; NaN counts as +inf) without its floor(n * trim) largest.
 * +inf when n is 0.
 */
double fs__refit_trimmed_mean(double *nll, size_t n, double trim);

/*
 * The noise of the holdout comparison: FS_REFIT_NOISE_Z standard errors of the trimmed mean
 * of the paired differences diff (candidate NLL - served NLL of each holdout row, n finite
 * values, sorted in place), trimming floor(n * trim) from each end. +inf when n < 2.
 * Math: Tukey-McLaughlin, SE = s_w / ((1 - 2g/n) sqrt(n)) with s_w the standard deviation of
 * the g-winsorized sample (Wilcox, Introduction to Robust Estimation, 3.6).
 */
double fs__refit_noise(double *diff, size_t n, double trim);

/*
 * The acceptance rule: a candidate (trimmed holdout NLL cand) replaces the served model (cur;
 * NAN when there is none, +inf when it cannot score the holdout) when cand is finite and
 * cand + noise <= cur + margin: "not worse than the served model by more than the margin"
 * once the holdout's noise is taken off, so that with margin 0 only a real improvement
 * publishes (a user saw a 0.0002-nat "gain" on 298 rows accepted and its threshold moved).
 * A non-finite noise rejects. Returns FS_REFIT_ACCEPTED or FS_REFIT_REJECTED with the reason
 * in reason (len bytes).
 */
int fs__refit_decide(double cand, double cur, double margin, double noise, char *reason,
                     size_t len);

/*
 * Decode spool payloads (JSON arrays in schema order) into rows (n x n_fields, malloc'd) by
 * schema; categorical fields of schema without levels get the sorted distinct levels of the
 * records first (fs_schema_set_levels on schema, which must be the caller's copy).
 * Undecodable records are skipped and counted. Returns 0, or -1 when out of memory.
 */
int fs__refit_decode(const fs_spool_rec *recs, const size_t *idx, size_t n, fs_schema *schema,
                     int learn_levels, double **rows, uint64_t **seqs, size_t *n_rows,
                     uint64_t *undecodable);

/* The trainer thread: a queue of jobs in, a mailbox of finished jobs out (uv_async). */
typedef struct fs_refit_thread fs_refit_thread;

/* Called on the loop for each finished job. */
typedef void (*fs_refit_done_fn)(void *arg, fs_refit_job *job);

/*
 * Start the thread at the given fs_trainer_priority; done runs on the loop for every job
 * handed back. Returns NULL on failure (logged).
 */
fs_refit_thread *fs__refit_thread_start(uv_loop_t *loop, int priority, fs_refit_done_fn done,
                                        void *arg);
/* Queue a job (loop thread). */
void fs__refit_thread_submit(fs_refit_thread *t, fs_refit_job *job);
/* Cancel the fit in progress and every queued one (loop thread, SIGTERM). */
void fs__refit_thread_cancel(fs_refit_thread *t);
/*
 * Cancel, join, hand back whatever is left (queued jobs as failed "shutting down"), close
 * the async handle (freed in its close callback). Loop thread. NULL is fine.
 */
void fs__refit_thread_stop(fs_refit_thread *t);

/* Free a job and its model references. NULL is fine. */
void fs__refit_job_free(fs_refit_job *job);

/* A finished refit as GET .../training shows it and the state file keeps it. */
typedef struct fs_refit_record {
    int present;
    char trigger[16];
    double started, ended; /* unix seconds */
    uint64_t snapshot_records, rows, train_rows, holdout_rows, excluded;
    double candidate_nll, current_nll; /* NAN = null */
    double noise_nats;                 /* NAN = null */
    uint64_t calibration_rows;
    int decision; /* fs_refit_decision */
    char reason[320];
    int64_t version;      /* the version served after the run */
    int64_t from_version; /* the version it was compared with; 0 = none */
    int warm;
    int64_t skipped_steps;
    int32_t epochs_run, best_epoch;
} fs_refit_record;

/* What the state file <state_dir>/trainer/<name>.json keeps across restarts. */
typedef struct fs_refit_saved {
    uint64_t last_refit_seen; /* records_seen when the last refit started */
    double last_refit_at;     /* unix seconds; 0 = never */
    uint64_t runs, bursts;
    fs_refit_record last;
} fs_refit_saved;

/* Where a model's trainer stands. */
typedef enum fs_tstate {
    FS_TSTATE_IDLE = 0,
    FS_TSTATE_TRAINING,  /* a job is with the trainer thread */
    FS_TSTATE_PUBLISHING /* an accepted candidate is being written and swapped in */
} fs_tstate;

typedef struct fs_store_req fs_store_req;
typedef struct fs_refit fs_refit;
typedef struct fs_tmodel fs_tmodel;

/* One model's trainer state. Loop-owned, except where a field says otherwise. */
struct fs_tmodel {
    char name[72];
    fs_refit *r;
    fs_trainer_config cfg; /* resolved settings (read-only) */
    fs_schema *schema;     /* configured schema of a stream-created model, or NULL */
    fs_spec *spec;         /* configured spec, or NULL */
    char state_path[FS_CONFIG_PATH_MAX + 96];
    fs_model_metrics *mm;
    fs_spool *spool; /* set when the open op came back; thread-safe itself */
    int opening;     /* an open op is out */
    int open_failed;
    char open_error[320];
    fs_store_req *waiting; /* stores that wait for the open */
    fs_refit_saved saved;  /* counters and the last run */
    int state;             /* fs_tstate */
    fs_refit_job *running; /* the job out (training or publishing), or NULL */
    fs_reload_waiter waiter;
    /* The anomaly-burst detector over the last burst_window ingested records. */
    unsigned char *ring;
    uint32_t ring_pos, ring_fill, ring_count;
    int burst_active;
    double burst_since;
    uint64_t anomalous_total; /* since start */
    struct fs_tmodel *next;
};

/* The document of GET /v1/models/{name}/training for tm (spool counts read now). */
void fs__refit_put_status(fs_strbuf *b, fs_tmodel *tm);

/* The state file's text for tm (malloc'd, *len bytes), or NULL when out of memory. */
char *fs__refit_state_format(const fs_tmodel *tm, size_t *len);

/* Parse a state file (any thread). Returns 0, or -1 when it is not one (out untouched). */
int fs__refit_state_parse(const char *text, fs_refit_saved *out);

/* A finished job as a record; version is the version served afterwards. */
void fs__refit_record_set(fs_refit_record *rec, const fs_refit_job *job, int64_t version);

#endif /* FS_TRAINER_INTERNAL_H */
