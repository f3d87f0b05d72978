/*
 * train.h: the trainer's state, shared by train.c (steps, epochs, early stopping) and
 * train_setup.c (data, initialisation, the trained model). Internal.
 */
#ifndef FS_TRAIN_H
#define FS_TRAIN_H

#include "model.h"
#include "optim.h"

#include <pthread.h>
#include <stdatomic.h>

#define FS__MAX_THREADS        64
#define FS__HALF_LOG_2PI       0.91893853320467274178
#define FS__CALIB_MIN_VAL_ROWS 200 /* fewer validation rows: calibrate on every row */

typedef struct shard {
    size_t r0, n;  /* rows of the current batch */
    void *scratch; /* flow scratch for up to `cap` rows */
    float *z, *x_rec, *dz, *dx;
    double *log_det;
    double *batch_stats; /* n_layers * 2 * n_dims */
    float *grad;         /* this shard's gradient (shard 0 uses the trainer's) */
    double loss_sum;     /* sum over its rows of -log p excluding preprocessing terms */
    double recon_err;
    fs_err err;
} shard;

struct fs_trainer {
    fs_train_params p;
    fs_schema *schema;
    fs_spec *spec;
    fs__prep prep;
    fs__flow flow;
    uint64_t flow_seed;
    float *params, *buffers, *grad;
    float *best_params, *best_buffers;
    fs__optim opt;
    size_t d, n_fields;
    /* data: preprocessed float rows and per-row preprocessing log terms */
    size_t n_train, n_val;
    float *x_train, *x_val;
    double *extra_train, *extra_val;
    double *raw_train; /* n_train x n_fields, kept only when a field is dequantised */
    bool dequant;
    /* per step */
    size_t cap;                   /* rows per batch the buffers hold */
    float *xb;                    /* cap x d */
    double *extra_b;              /* cap */
    double *raw_b, *noise_b, *wb; /* dequantisation path */
    int n_shards;
    shard shards[FS__MAX_THREADS];
    /* helper threads for shards 1..n_shards-1 */
    pthread_t threads[FS__MAX_THREADS];
    struct thread_arg {
        struct fs_trainer *t;
        int index;
    } args[FS__MAX_THREADS];
    int n_threads_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    uint64_t generation;
    int pending;
    bool quit;
    /* state */
    fs__rng rng;
    atomic_bool cancel;
    int64_t step, consecutive_bad;
    double lr_scale;
    double epoch_loss_sum;
    int64_t epoch_loss_rows;
    fs_train_report report;
    double duration_s;
};

/* train.c */
/*
 * -log p of n preprocessed rows (float32 flow, float64 fallback per row), into nll (may be
 * NULL); returns the mean, or a non-finite value if a row cannot be evaluated.
 */
double fs__train_eval_nll(fs_trainer *t, const float *x, const double *extra, size_t n,
                          double *nll);

#endif /* FS_TRAIN_H */
