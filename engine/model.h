/*
 * model.h: the engine's model-side internals: schema, spec, preprocessing, calibration and the
 * fs_model object. Not installed.
 */
#ifndef FS_MODEL_H
#define FS_MODEL_H

#include "internal.h"
#include "layer.h"

#include <stdatomic.h>

/* ---- schema (schema.c) ---- */

typedef struct fs__field {
    char name[FS_NAME_MAX];
    fs_field_type type;
    fs_transform transform;
    int dequantize;
    size_t n_levels;
    char **levels;         /* owned; in the order given */
    uint32_t *level_order; /* indices of levels sorted by name, for binary search */
} fs__field;

struct fs_schema {
    size_t n_fields, cap;
    fs__field *fields;
};

/* Valid field or level name: 1..FS_NAME_MAX-1 bytes, printable ASCII or UTF-8, no control. */
bool fs__name_ok(const char *s, size_t len);
/* Schema equality (names, types, transforms, levels): used to refuse a schema change. */
bool fs__schema_equal(const fs_schema *a, const fs_schema *b);

struct cJSON;
/*
 * Print root unformatted into *out (engine allocator; free with fs__free) and delete root, in
 * every case. root NULL (an earlier allocation failed) gives FS_ERR_NOMEM.
 */
fs_err fs__json_take_text(struct cJSON *root, char **out);
/* The schema as a cJSON object ({"fields": [...]}), or NULL when out of memory. */
struct cJSON *fs__schema_json(const fs_schema *s);
/* Parse a {"fields": [...]} object. Errors: FS_ERR_FORMAT naming the field, FS_ERR_NOMEM. */
fs_err fs__schema_from_json(const struct cJSON *root, fs_schema **out, fs_diag *diag);

/* ---- spec (spec.c) ---- */

struct fs_spec {
    size_t n_layers;
    fs__layer_cfg *layers; /* owned, each cfg's perm owned */
};

void fs__layer_cfg_deinit(fs__layer_cfg *c);
fs_err fs__spec_copy(const fs_spec *src, fs_spec **out);
/*
 * The spec as a cJSON object {"layers": [...]}. With resolved non-NULL (the flow built from
 * this spec), every permutation is written out explicitly, so that a model file does not
 * depend on any random generator to be rebuilt. NULL when out of memory.
 */
struct cJSON *fs__spec_json(const fs_spec *spec, const fs__flow *resolved);
/* Parse a spec object (layers or preset form). Errors: FS_ERR_FORMAT naming the key. */
fs_err fs__spec_from_json(const struct cJSON *root, fs_spec **out, fs_diag *diag);

/* ---- preprocessing (prep.c) ---- */

/*
 * g: record (n_fields doubles) -> flow input (n_dims doubles), fixed after training.
 *   numeric/integer field: t = transform(x); u = (t - mean) / std            (1 column)
 *   categorical field: one-hot over its levels, then one "unknown" column,
 *                      each standardised the same way                      (n_levels + 1)
 * Columns whose training std is ~0 are "constant": they are left out of the flow and scored
 * as a narrow Gaussian N(mean, const_std^2) of their own, so that a record that changes a
 * constant field scores far above the training records (case-02) while nothing divides by 0.
 * The remaining n_dims columns are optionally whitened, w = L^-1 u, with L the Cholesky
 * factor of their covariance plus ridge * I (a fixed map of constant log-det, so that an
 * untrained flow is exactly the full-covariance Gaussian; notes/nsl-kdd-recipe.md step 4).
 */
typedef struct fs__prep {
    size_t n_fields;
    size_t n_cols;       /* encoded columns */
    size_t n_dims;       /* non-constant columns: the flow's dimension */
    size_t *col_start;   /* n_fields + 1: first encoded column of each field */
    double *mean, *std;  /* n_cols: standardisation; std of a constant column is its const_std */
    uint8_t *is_const;   /* n_cols */
    int32_t *dim_of_col; /* n_cols: flow dimension of a column, -1 if constant */
    int whiten;
    double ridge;
    double *chol;     /* n_dims x n_dims lower triangular L (whiten only) */
    double *chol_inv; /* L^-1, computed from L */
    double log_det;   /* constant log|det dg/dx|: -sum log std - sum log L_ii (non-const) */
    /* Weight of the broad component of a constant column's density, 1 / (n_train + 2)
     * (Laplace's rule of succession); 0 in files written before it: narrow Gaussian only. */
    double const_novelty;
} fs__prep;

void fs__prep_deinit(fs__prep *p);
fs_err fs__prep_copy(const fs__prep *src, fs__prep *dst);
/* Allocate the arrays for schema s (n_cols from its fields); values zeroed. */
fs_err fs__prep_alloc(fs__prep *p, const fs_schema *s);
/* Recompute dim_of_col, n_dims from is_const; and log_det, chol_inv from mean/std/chol. */
fs_err fs__prep_finish(fs__prep *p, fs_diag *diag);

/*
 * Fit on records (n x n_fields): means, stds, constant columns, whitening. Non-finite input
 * or a categorical index out of range: FS_ERR_NUMERIC naming row and field.
 */
fs_err fs__prep_fit(fs__prep *p, const fs_schema *s, const double *records, size_t n, int whiten,
                    double ridge, fs_diag *diag);

/*
 * Forward map of n records into w (n x n_dims), with per-row log|det dg/dx| + the constant
 * columns' log-density written to log_extra[i] (nats). Standardised values beyond
 * FS_INPUT_CLAMP are clamped and row flag FS_SCORE_SATURATED set in flags (may be NULL).
 * noise: if non-NULL, n x n_fields values added to the raw record first (dequantisation).
 * Errors: FS_ERR_NUMERIC for non-finite input, FS_ERR_INVALID for a categorical value that is
 * not a level index (row and field in diag).
 */
fs_err fs__prep_forward(const fs__prep *p, const fs_schema *s, const double *records, size_t n,
                        const double *noise, double *w, double *log_extra, uint32_t *flags,
                        fs_diag *diag);

/*
 * Inverse map of n flow inputs w (n x n_dims) to records (n x n_fields): categorical fields
 * decode to the level of largest one-hot value, constant columns to their constant.
 * Returns FS_ERR_NUMERIC if a decoded value is not finite (row index in *bad_row).
 */
fs_err fs__prep_inverse(const fs__prep *p, const fs_schema *s, const double *w, size_t n,
                        double *records, size_t *bad_row);

/* ---- calibration (calib.c) ---- */

#define FS__CALIB_MAX_POINTS 2001

typedef struct fs__calib {
    size_t n_points; /* 0: uncalibrated */
    double *points;  /* ascending scores at probabilities i / (n_points - 1) */
    int64_t n_rows;  /* rows the calibration was built from */
    double upper_quantile, lower_quantile;
    double upper_threshold, lower_threshold; /* nats; +inf / -inf when disabled */
} fs__calib;

void fs__calib_deinit(fs__calib *c);
fs_err fs__calib_copy(const fs__calib *src, fs__calib *dst);
/* Build from n finite scores (sorted in place). Errors: FS_ERR_NUMERIC, FS_ERR_NOMEM. */
fs_err fs__calib_build(fs__calib *c, double *scores, size_t n, double upper_q, double lower_q);
/* Empirical percentile of score in [0, 1], interpolated; 0 when uncalibrated. */
double fs__calib_percentile(const fs__calib *c, double score);
/* Quantile p of the calibration scores (interpolated). */
double fs__calib_quantile(const fs__calib *c, double p);
/* Recompute thresholds from points and quantiles; validates. */
fs_err fs__calib_finish(fs__calib *c, fs_diag *diag);

/* ---- the model (model.c) ---- */

struct fs_model {
    atomic_int refcount;
    fs_schema *schema;
    fs_spec *spec;
    fs__prep prep;
    fs__flow flow;
    float *params;  /* flow.n_params */
    float *buffers; /* flow.n_buffers */
    fs__calib calib;
    uint64_t flow_seed;
    char *training_json; /* the "training" object of the header, or NULL */
    char *header_json;   /* the full header, kept verbatim so that saves are bit-exact */
};

/*
 * Assemble a model from parts (ownership of every part moves in, even on error; *parts are
 * cleared) and build its header and file image. Errors: FS_ERR_NUMERIC (a non-finite
 * parameter), FS_ERR_NOMEM.
 */
typedef struct fs__model_parts {
    fs_schema *schema;
    fs_spec *spec;
    fs__prep prep;
    fs__flow flow;
    float *params, *buffers;
    fs__calib calib;
    uint64_t flow_seed;
    char *training_json;
    char *header_json; /* set by the loader to keep the file's header verbatim; else NULL */
} fs__model_parts;

fs_err fs__model_create(fs__model_parts *parts, fs_model **out, fs_diag *diag);
void fs__model_parts_deinit(fs__model_parts *parts);

/* Build the header JSON of a newly assembled model (modelfile.c). */
fs_err fs__model_build_header(fs_model *m, fs_diag *diag);

/* Scores of records under flow parameters params (a trainer's current state): n doubles. */
fs_err fs__score_raw(const fs_schema *s, const fs__prep *prep, const fs__flow *flow,
                     const float *params, const float *buffers, const double *records, size_t n,
                     double *score, fs_diag *diag);

#endif /* FS_MODEL_H */
