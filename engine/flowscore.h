/*
 * flowscore.h: the flow engine's only public header.
 *
 * A normalizing flow over tabular records: a preprocessing map (standardisation, log1p,
 * one-hot categoricals, optional whitening) followed by a stack of invertible layers onto a
 * standard-normal latent z. Every density is in nats of the original feature space:
 *
 *     log p(x) = log N(f(g(x)); 0, I) + log|det df/dg| + log|det dg/dx|
 *
 * with g the preprocessing and f the flow (change of variables; RealNVP, Dinh et al. 2017).
 *
 * Conventions
 * - Matrices are row-major: a batch of n_rows records is n_rows x n_fields doubles; latents
 *   are n_rows x n_dims doubles. Categorical fields are given as their level index (a double
 *   holding 0 .. n_levels-1), or FS_LEVEL_UNKNOWN for a level the model has not seen.
 * - Errors: every fallible function returns an fs_err. `*out` is NULL on entry and set only on
 *   FS_OK; the caller then owns it and releases it with the matching verb (free / unref). All
 *   release functions accept NULL. An optional fs_diag receives a sentence saying what failed.
 * - Threads: an fs_model is immutable and reference-counted; any number of threads may score
 *   with it at once, each with its own fs_workspace. Nothing in the engine prints or exits.
 */
#ifndef FLOWSCORE_H
#define FLOWSCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FS_VERSION_STRING       "0.1.0"
#define FS_MODEL_FORMAT_VERSION 1

/* ------------------------------------------------------------------------------ errors */

typedef enum fs_err {
    FS_OK = 0,
    FS_ERR_NOMEM,     /* an allocation failed */
    FS_ERR_INVALID,   /* a bad argument or value (a name, an option, a parameter) */
    FS_ERR_SHAPE,     /* sizes or shapes that do not fit together */
    FS_ERR_IO,        /* open, read, write, fsync or rename failed */
    FS_ERR_FORMAT,    /* a model file or JSON document is malformed */
    FS_ERR_VERSION,   /* a model file of a format version this build cannot read */
    FS_ERR_NUMERIC,   /* NaN or infinity where a finite number is required */
    FS_ERR_MAGIC,     /* not a flowscore model file (wrong magic bytes) */
    FS_ERR_TRUNCATED, /* a model file shorter than its own header says */
    FS_ERR_CHECKSUM,  /* a model file whose CRC-32 does not match its bytes */
    FS_ERR_CANCELLED, /* stopped on request (training progress callback, cancel flag) */
    FS_ERR__COUNT
} fs_err;

/* A sentence for an error code. Static storage, never NULL. */
const char *fs_strerror(fs_err err);

/* The code's identifier, e.g. "FS_ERR_IO". Static storage, never NULL. */
const char *fs_err_name(fs_err err);

/* Optional caller-owned detail: set by any function that takes one, on error only. */
typedef struct fs_diag {
    char msg[256];
} fs_diag;

/* ------------------------------------------------------------------------------ logging */

typedef enum fs_log_level { FS_LOG_ERROR = 0, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG } fs_log_level;

typedef void (*fs_log_fn)(void *user, fs_log_level level, const char *msg);

/*
 * Route the engine's few log events (training warnings) to fn. NULL silences them (the
 * default). Not thread-safe: call once at start-up.
 */
void fs_set_log(fs_log_fn fn, void *user);

/* ------------------------------------------------------------------------------ allocation */

/*
 * Memory functions used by every engine allocation. Tests install one that fails the Nth
 * call to prove that constructors return FS_ERR_NOMEM without leaking. NULL restores libc.
 * Not thread-safe: install before creating anything and restore after freeing everything.
 */
typedef struct fs_allocator {
    void *(*malloc_fn)(void *user, size_t bytes);
    void *(*realloc_fn)(void *user, void *ptr, size_t bytes);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} fs_allocator;

void fs_set_allocator(const fs_allocator *alloc);

/* ------------------------------------------------------------------------------ schema */

#define FS_LEVEL_UNKNOWN (-1.0)
#define FS_NAME_MAX      64 /* field names and level names: 1..63 bytes */

typedef enum fs_field_type {
    FS_FIELD_NUMERIC = 0, /* a real value */
    FS_FIELD_INTEGER,     /* an integer count or flag: a candidate for dequantisation */
    FS_FIELD_CATEGORICAL  /* one of a set of named levels, one-hot encoded */
} fs_field_type;

typedef enum fs_transform {
    FS_TRANSFORM_NONE = 0,
    FS_TRANSFORM_LOG1P /* signed log1p: sign(x) log(1 + |x|), for heavy-tailed counts */
} fs_transform;

/*
 * The named fields of a record, in order. A schema is built (add_*) or parsed, then copied
 * into a trainer or model; it is immutable once a model holds it.
 *
 * JSON form ({"fields": [...]}; the same object is stored in model files):
 *   {"name": "src_bytes", "type": "numeric" | "integer" | "categorical",
 *    "transform": "none" | "log1p",        (numeric and integer only; default none)
 *    "dequantize": true | false,           (integer only; default false)
 *    "levels": ["icmp", "tcp", "udp"]}     (categorical only; omitted: learned in training)
 * Fields of type "ignore" or "label" are accepted and skipped: they name CSV columns that
 * are not features.
 */
typedef struct fs_schema fs_schema;

fs_err fs_schema_create(fs_schema **out);
void fs_schema_free(fs_schema *s);

/* Append a numeric or integer field. Errors: FS_ERR_INVALID on a bad or duplicate name. */
fs_err fs_schema_add_numeric(fs_schema *s, const char *name, fs_field_type type,
                             fs_transform transform, int dequantize);

/*
 * Append a categorical field with its levels (borrowed, copied). n_levels 0 means the levels
 * are learned from the training data. Errors: FS_ERR_INVALID (bad or duplicate name/level).
 */
fs_err fs_schema_add_categorical(fs_schema *s, const char *name, const char *const *levels,
                                 size_t n_levels);

/* Parse the JSON form. Errors: FS_ERR_FORMAT with the offending field in diag. */
fs_err fs_schema_parse_json(const char *json, size_t len, fs_schema **out, fs_diag *diag);

/* The JSON form, NUL-terminated, allocated with the engine allocator: free with fs_free. */
fs_err fs_schema_format_json(const fs_schema *s, char **out);

fs_err fs_schema_copy(const fs_schema *s, fs_schema **out);

size_t fs_schema_n_fields(const fs_schema *s);
/* Index of the field called name (len bytes), or -1. */
int32_t fs_schema_field_index(const fs_schema *s, const char *name, size_t len);
const char *fs_schema_field_name(const fs_schema *s, size_t field);
fs_field_type fs_schema_field_type(const fs_schema *s, size_t field);
fs_transform fs_schema_field_transform(const fs_schema *s, size_t field);
size_t fs_schema_n_levels(const fs_schema *s, size_t field);
const char *fs_schema_level_name(const fs_schema *s, size_t field, size_t level);
/* Level index of a categorical value (len bytes), or FS_LEVEL_UNKNOWN as a double. */
double fs_schema_level_index(const fs_schema *s, size_t field, const char *value, size_t len);

/*
 * Turn uniform dequantisation on or off for an integer field (used by `flowscore train
 * --dequantize`). Errors: FS_ERR_INVALID if the field is not an integer field.
 */
fs_err fs_schema_set_dequantize(fs_schema *s, size_t field, int dequantize);

/* Replace the levels of a categorical field (used while reading training data). */
fs_err fs_schema_set_levels(fs_schema *s, size_t field, const char *const *levels, size_t n_levels);

/* Free memory the engine handed out (formatted JSON strings). NULL is fine. */
void fs_free(void *ptr);

/* ------------------------------------------------------------------------------ spec */

/*
 * An architecture: the list of invertible layers between the preprocessed record and z.
 * JSON form:
 *   {"layers": [ {"type": "affine_coupling", "hidden": [128, 128], "clamp": 2.0},
 *                {"type": "additive_coupling", "hidden": [64]},
 *                {"type": "permutation", "seed": 7} | {"type": "permutation", "reverse": true}
 *                  | {"type": "permutation", "numpy_seed": 1001}
 *                  | {"type": "permutation", "perm": [2, 0, 1]},
 *                {"type": "householder", "reflections": 4},
 *                {"type": "actnorm"},
 *                {"type": "batchnorm", "momentum": 0.1, "eps": 1e-5},
 *                {"type": "leaky_relu", "alpha": 0.1} ]}
 * or a preset with overrides: {"preset": "realnvp", "blocks": 8, "hidden": [128, 128]}.
 * The number of dimensions is not part of a spec: it comes from the data.
 */
typedef struct fs_spec fs_spec;

/* Errors: FS_ERR_FORMAT naming the layer index and key; FS_ERR_INVALID for bad values. */
fs_err fs_spec_parse_json(const char *json, size_t len, fs_spec **out, fs_diag *diag);

/*
 * A named preset:
 * - "realnvp": ref-realnvp of bench/SPEC.md exactly: 8 affine coupling blocks, subnet
 *   d1 -> 128 -> 128 -> 2*d2 with ReLU, clamp 2 (s = 2 tanh(s_raw/2)), numpy permutation
 *   default_rng(1000 + k) before block k >= 1, zero last layer.
 * - "default": what `flowscore train` uses without --spec (see README).
 * Errors: FS_ERR_INVALID for an unknown name.
 */
fs_err fs_spec_preset(const char *name, fs_spec **out, fs_diag *diag);
fs_err fs_spec_format_json(const fs_spec *spec, char **out);
size_t fs_spec_n_layers(const fs_spec *spec);
void fs_spec_free(fs_spec *spec);

/* ------------------------------------------------------------------------------ model */

/*
 * An immutable, reference-counted trained model: schema, preprocessing, flow parameters and
 * calibration. Created by fs_model_load, fs_model_import_peer_json or fs_trainer_model.
 */
typedef struct fs_model fs_model;

/* Per-thread scratch memory for scoring; reserve it once per model, then calls never malloc. */
typedef struct fs_workspace fs_workspace;

fs_err fs_workspace_create(fs_workspace **out);
void fs_workspace_free(fs_workspace *ws);
/* Grow ws so that every fs_model_* call on m needs no allocation. Errors: FS_ERR_NOMEM. */
fs_err fs_workspace_reserve(fs_workspace *ws, const fs_model *m);

/*
 * Load a model file. Every size, count and value is validated before use; no byte string can
 * crash the loader or make it read out of bounds.
 * Errors: FS_ERR_IO (open/read), FS_ERR_MAGIC, FS_ERR_VERSION, FS_ERR_TRUNCATED,
 * FS_ERR_CHECKSUM, FS_ERR_FORMAT (bad header), FS_ERR_SHAPE (tensor shapes that do not match
 * the spec and schema), FS_ERR_NUMERIC (a non-finite parameter), FS_ERR_NOMEM.
 */
fs_err fs_model_load(const char *path, fs_model **out, fs_diag *diag);

/* The same from memory (len bytes, borrowed). */
fs_err fs_model_load_buffer(const void *buf, size_t len, fs_model **out, fs_diag *diag);

/*
 * Write m to path atomically: a temporary file in the same directory, fsync, rename, fsync
 * of the directory. On error nothing is left at path or beside it. Errors: FS_ERR_IO,
 * FS_ERR_NUMERIC (a non-finite parameter: such a model is never written), FS_ERR_NOMEM.
 */
fs_err fs_model_save(const fs_model *m, const char *path, fs_diag *diag);

/* The file image (*out_buf allocated, free with fs_free). Same errors as fs_model_save. */
fs_err fs_model_save_buffer(const fs_model *m, void **out_buf, size_t *out_len, fs_diag *diag);

fs_model *fs_model_ref(fs_model *m);
void fs_model_unref(fs_model *m);

const fs_schema *fs_model_schema(const fs_model *m);
size_t fs_model_n_fields(const fs_model *m);
/* Dimension of z (and of the flow): the encoded, non-constant feature columns. */
size_t fs_model_n_dims(const fs_model *m);
size_t fs_model_n_params(const fs_model *m);
size_t fs_model_n_layers(const fs_model *m);
/* Upper quantile of the calibration scores above which a record is an anomaly (0.99). */
double fs_model_threshold_quantile(const fs_model *m);
/* The score at that quantile, in nats; NAN-free: +HUGE_VAL if the model is uncalibrated. */
double fs_model_threshold(const fs_model *m);
/*
 * The model file's header as a NUL-terminated JSON text: format, schema, spec, preprocessing
 * summary, training metadata and calibration. Owned by the model.
 */
const char *fs_model_header_json(const fs_model *m);

/* Result flags of fs_score.flags. */
#define FS_SCORE_ANOMALY   0x1u /* score above the model's upper threshold */
#define FS_SCORE_ATYPICAL  0x2u /* score below the lower threshold (too likely; Nalisnick 2019) */
#define FS_SCORE_SATURATED 0x4u /* an input was clamped to the finite range before the flow */

typedef struct fs_score {
    double score;      /* -log_prob, nats */
    double log_prob;   /* log density of the record in its original units, nats */
    double percentile; /* fraction of calibration scores <= score, in [0, 1] */
    uint32_t flags;    /* FS_SCORE_* */
} fs_score;

/*
 * Score each record. records: n_rows x n_fields (borrowed). out: n_rows, caller-allocated.
 * Errors: FS_ERR_NUMERIC if a record holds NaN/inf or a categorical index out of range
 * (nothing is scored then); FS_ERR_SHAPE if ws was not reserved for m.
 * A row whose float32 pass is non-finite is recomputed in float64; inputs beyond
 * FS_INPUT_CLAMP standard deviations are clamped and flagged FS_SCORE_SATURATED.
 * Threads: concurrent calls on one model are safe with distinct workspaces.
 * Math: log p(x) = log N(z; 0, I) + sum of layer log|det J| + preprocessing log|det|
 * (change of variables; Dinh et al. 2017, eq. 3) + the log density of each column constant in
 * training, (1 - eps) N(m, (1e-3 s)^2) + eps N(m, s^2) with s = max(1, |m|) and
 * eps = 1 / (n_train + 2) (Laplace's rule of succession; engine/prep.c).
 */
#define FS_INPUT_CLAMP 1.0e4
fs_err fs_model_score(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                      fs_score *out);

/* log p per record, nats (n_rows doubles). Same contract as fs_model_score. */
fs_err fs_model_log_prob(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                         double *log_prob);

/*
 * Latents z = f(g(x)) in float64 arithmetic (deterministic). z: n_rows x n_dims.
 * Errors as fs_model_score.
 */
fs_err fs_model_encode(const fs_model *m, fs_workspace *ws, const double *records, size_t n_rows,
                       double *z);

/*
 * Records x = g^-1(f^-1(z)) in float64. records: n_rows x n_fields; categorical fields are
 * decoded to the level with the largest one-hot value, numeric fields to their value.
 * Errors: FS_ERR_NUMERIC if z holds a non-finite value or a decoded value is not finite.
 */
fs_err fs_model_decode(const fs_model *m, fs_workspace *ws, const double *z, size_t n_rows,
                       double *records);

/*
 * Draw n_rows records: z ~ N(0, temperature^2 I), decoded. Row i uses its own random stream
 * derived from (seed, i), so results do not depend on how a request is split. A draw that
 * decodes to a non-finite value is redrawn (FS_SAMPLE_MAX_REDRAWS times at most, then
 * FS_ERR_NUMERIC). temperature in [0, FS_SAMPLE_MAX_TEMPERATURE], else FS_ERR_INVALID.
 */
#define FS_SAMPLE_MAX_TEMPERATURE 10.0
#define FS_SAMPLE_MAX_REDRAWS     64
fs_err fs_model_sample(const fs_model *m, fs_workspace *ws, size_t n_rows, double temperature,
                       uint64_t seed, double *records);

/*
 * Import a ref-realnvp model from the JSON export of bench/SPEC.md section 5 (json: len
 * bytes, borrowed). Fields are numeric and named x0 .. x{D-1}; preprocessing is the identity;
 * the model is uncalibrated (percentile 0, never an anomaly) until recalibrated.
 * Errors: FS_ERR_FORMAT / FS_ERR_SHAPE naming the key, FS_ERR_NUMERIC, FS_ERR_NOMEM.
 */
fs_err fs_model_import_peer_json(const char *json, size_t len, fs_model **out, fs_diag *diag);

/*
 * A copy of m whose calibration is rebuilt from the scores of records (n_rows x n_fields),
 * with the given upper and lower quantiles (lower 0 disables the lower flag).
 */
fs_err fs_model_recalibrate(const fs_model *m, const double *records, size_t n_rows,
                            double upper_quantile, double lower_quantile, fs_model **out,
                            fs_diag *diag);

/* ------------------------------------------------------------------------------ training */

typedef enum fs_optimizer { FS_OPT_ADAM = 0, FS_OPT_SGD } fs_optimizer;
typedef enum fs_lr_schedule { FS_LR_CONSTANT = 0, FS_LR_COSINE, FS_LR_STEP } fs_lr_schedule;

typedef struct fs_train_params {
    int32_t epochs;              /* maximum passes over the training rows (5) */
    int32_t batch_size;          /* rows per step (256) */
    double lr;                   /* initial learning rate (1e-4) */
    fs_optimizer optimizer;      /* FS_OPT_ADAM */
    double beta1, beta2, eps;    /* Adam (0.9, 0.999, 1e-8) */
    double momentum;             /* SGD momentum (0.9) */
    double weight_decay;         /* decoupled, per step: w -= lr * wd * w (0) */
    double clip_norm;            /* global gradient-norm clip; 0 disables (10) */
    fs_lr_schedule schedule;     /* FS_LR_CONSTANT */
    int32_t step_epochs;         /* FS_LR_STEP: multiply by step_gamma every step_epochs (10) */
    double step_gamma;           /* (0.5) */
    int32_t warmup_steps;        /* linear warm-up (0) */
    double val_fraction;         /* held out for early stopping and calibration (0.1) */
    int32_t patience;            /* epochs without improvement > min_delta before stopping (5) */
    double min_delta;            /* nats (1e-4) */
    double val_trim;             /* early stopping compares the mean validation NLL over all but
                                    this share of worst rows (0.01): a few far-out rows would
                                    otherwise decide it alone */
    uint64_t seed;               /* shuffling, splits, initialisation, dequantisation (0) */
    int32_t threads;             /* data-parallel shards of each batch (1) */
    int32_t whiten;              /* fixed whitening map after standardisation (1) */
    double whiten_ridge;         /* added to the covariance diagonal (1e-3) */
    double threshold_quantile;   /* upper anomaly quantile of calibration scores (0.99) */
    double low_quantile;         /* lower "atypical" quantile; 0 disables (0) */
    int32_t max_nonfinite_steps; /* consecutive skipped steps before giving up (20) */
    int32_t max_bad_steps_total; /* all skipped steps before giving up (1000) */
    int32_t actnorm_init_rows;   /* rows for ActNorm data-dependent init (4096) */
} fs_train_params;

fs_train_params fs_train_default_params(void);

/* Progress handed to the callback after every epoch (and, for live lines, every ~0.5 s). */
typedef struct fs_train_progress {
    int32_t epoch;     /* 1-based; 0 before the first epoch ends */
    int32_t epochs;    /* the maximum */
    int64_t step;      /* optimiser steps taken */
    int64_t rows_done; /* rows processed in this epoch */
    int64_t rows_per_epoch;
    double train_nll; /* mean over this epoch's steps so far, nats per row */
    double val_nll;   /* after the epoch: mean NLL of the validation rows, less the
                         worst val_trim share (the early-stopping metric); NAN while
                         the epoch runs */
    double best_val_nll;
    int32_t best_epoch;
    double rows_per_s;
    double elapsed_s;
    double lr;
    int64_t skipped_steps; /* non-finite loss or gradient: skipped, never applied */
    int32_t end_of_epoch;  /* 1 on the line that closes an epoch */
    double recon_error;    /* max |x - reconstructed x| of the last step's reversible pass */
} fs_train_progress;

/* Return nonzero to stop training; the best state so far is kept. */
typedef int (*fs_progress_fn)(void *user, const fs_train_progress *p);

/* What training found in its data and did, for summaries and the model header. */
typedef struct fs_train_report {
    int64_t train_rows, val_rows;
    int32_t epochs_run, best_epoch;
    double best_val_nll, final_train_nll;
    int64_t skipped_steps;
    double duplicate_share;     /* share of rows equal to an earlier row, in [0, 1] */
    double top_duplicate_share; /* share of the single most repeated row */
    size_t n_constant_fields;
    char constant_fields[1024]; /* comma-separated names of fields constant in training */
    int32_t stopped_early;
    double max_recon_error;
} fs_train_report;

typedef struct fs_trainer fs_trainer;

/*
 * A trainer for a new model over schema and spec (both copied), fitting preprocessing on
 * records (n_rows x n_fields, borrowed for this call only; categorical levels must be set).
 * Errors: FS_ERR_INVALID (too few rows: at least FS_TRAIN_MIN_ROWS; bad params),
 * FS_ERR_NUMERIC (a non-finite value), FS_ERR_SHAPE, FS_ERR_NOMEM.
 */
#define FS_TRAIN_MIN_ROWS 2
fs_err fs_trainer_create(const fs_schema *schema, const fs_spec *spec, const fs_train_params *p,
                         const double *records, size_t n_rows, fs_trainer **out, fs_diag *diag);

/* A trainer that starts from init's preprocessing and parameters (warm start). */
fs_err fs_trainer_create_warm(const fs_model *init, const fs_train_params *p, const double *records,
                              size_t n_rows, fs_trainer **out, fs_diag *diag);

/*
 * Train to completion (epochs, early stopping, or the callback's stop), then restore the best
 * validation state and calibrate. Errors: FS_ERR_NUMERIC if non-finite steps cannot be
 * recovered from (the parameters are left at their last finite state), FS_ERR_CANCELLED if
 * fs_trainer_cancel was called.
 */
fs_err fs_trainer_fit(fs_trainer *t, fs_progress_fn fn, void *user, fs_diag *diag);

/*
 * One optimiser step on the given rows (n_rows x n_fields, borrowed), outside any epoch loop:
 * for benchmarks and online refits. The preprocessing fixed at creation is applied (with
 * dequantisation noise where the schema asks for it). loss: the batch's mean NLL (nats per
 * row) before the step. A non-finite loss or gradient skips the step (counted, learning rate
 * halved) and returns FS_OK with a non-finite *loss; FS_ERR_NUMERIC once recovery fails.
 */
fs_err fs_trainer_step(fs_trainer *t, const double *records, size_t n_rows, double *loss);

/* Ask a running fs_trainer_fit (on another thread) to stop after its current step. */
void fs_trainer_cancel(fs_trainer *t);

/* The trained, calibrated model (a new reference). Errors: FS_ERR_NUMERIC, FS_ERR_NOMEM. */
fs_err fs_trainer_model(fs_trainer *t, fs_model **out, fs_diag *diag);

const fs_train_report *fs_trainer_report(const fs_trainer *t);
void fs_trainer_free(fs_trainer *t);

#ifdef __cplusplus
}
#endif

#endif /* FLOWSCORE_H */
