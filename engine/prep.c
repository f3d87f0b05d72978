/*
 * prep.c: the fixed preprocessing map g of a model (model.h, fs__prep): transforms,
 * one-hot encoding, standardisation, constant columns and whitening, with its log-det so that
 * scores are densities of the original record.
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define FS__CONST_REL_STD 1e-12 /* std <= this * max(1, |mean|): a constant column */
#define FS__CONST_SCALE   1e-3  /* a constant column's narrow sigma: 1e-3 max(1,|mean|) */
#define FS__HALF_LOG_2PI  0.91893853320467274178
#define FS__WHITEN_CHUNK  4096

void fs__prep_deinit(fs__prep *p)
{
    fs__free(p->col_start);
    fs__free(p->mean);
    fs__free(p->std);
    fs__free(p->is_const);
    fs__free(p->dim_of_col);
    fs__free(p->chol);
    fs__free(p->chol_inv);
    memset(p, 0, sizeof *p);
}

static size_t field_cols(const fs__field *f)
{
    return f->type == FS_FIELD_CATEGORICAL ? f->n_levels + 1 : 1;
}

fs_err fs__prep_alloc(fs__prep *p, const fs_schema *s)
{
    size_t n_cols = 0;
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < s->n_fields; i++) {
        n_cols += field_cols(&s->fields[i]);
    }
    p->n_fields = s->n_fields;
    p->n_cols = n_cols;
    p->col_start = fs__calloc(s->n_fields + 1, sizeof *p->col_start);
    p->mean = fs__calloc(n_cols, sizeof *p->mean);
    p->std = fs__calloc(n_cols, sizeof *p->std);
    p->is_const = fs__calloc(n_cols, sizeof *p->is_const);
    p->dim_of_col = fs__calloc(n_cols, sizeof *p->dim_of_col);
    if (p->col_start == NULL || p->mean == NULL || p->std == NULL || p->is_const == NULL ||
        p->dim_of_col == NULL) {
        fs__prep_deinit(p);
        return FS_ERR_NOMEM;
    }
    for (size_t i = 0, c = 0; i < s->n_fields; i++) {
        p->col_start[i] = c;
        c += field_cols(&s->fields[i]);
        p->col_start[i + 1] = c;
    }
    return FS_OK;
}

static fs_err copy_array(void **dst, const void *src, size_t bytes)
{
    *dst = NULL;
    if (src == NULL) {
        return FS_OK;
    }
    *dst = fs__malloc(bytes);
    if (*dst == NULL) {
        return FS_ERR_NOMEM;
    }
    memcpy(*dst, src, bytes);
    return FS_OK;
}

fs_err fs__prep_copy(const fs__prep *src, fs__prep *dst)
{
    size_t nd2 = src->n_dims * src->n_dims;
    fs_err err = FS_OK;
    *dst = *src;
    dst->col_start = NULL;
    dst->mean = dst->std = dst->chol = dst->chol_inv = NULL;
    dst->is_const = NULL;
    dst->dim_of_col = NULL;
    if (copy_array((void **)&dst->col_start, src->col_start,
                   (src->n_fields + 1) * sizeof(size_t)) != FS_OK ||
        copy_array((void **)&dst->mean, src->mean, src->n_cols * sizeof(double)) != FS_OK ||
        copy_array((void **)&dst->std, src->std, src->n_cols * sizeof(double)) != FS_OK ||
        copy_array((void **)&dst->is_const, src->is_const, src->n_cols) != FS_OK ||
        copy_array((void **)&dst->dim_of_col, src->dim_of_col, src->n_cols * sizeof(int32_t)) !=
            FS_OK ||
        copy_array((void **)&dst->chol, src->chol, nd2 * sizeof(double)) != FS_OK ||
        copy_array((void **)&dst->chol_inv, src->chol_inv, nd2 * sizeof(double)) != FS_OK) {
        err = FS_ERR_NOMEM;
        fs__prep_deinit(dst);
    }
    return err;
}

/* Signed log1p: sign(x) log(1 + |x|); its derivative is 1 / (1 + |x|). */
static double transform_forward(fs_transform t, double x)
{
    if (t == FS_TRANSFORM_LOG1P) {
        return x < 0 ? -log1p(-x) : log1p(x);
    }
    return x;
}

static double transform_inverse(fs_transform t, double y)
{
    if (t == FS_TRANSFORM_LOG1P) {
        return y < 0 ? -expm1(-y) : expm1(y);
    }
    return y;
}

/* Value of encoded column j (0 .. n_cols of field f - 1) for raw value x of field f. */
static double column_value(const fs__field *f, size_t j, double x)
{
    if (f->type != FS_FIELD_CATEGORICAL) {
        return transform_forward(f->transform, x);
    }
    if (x < 0) {
        return j == f->n_levels ? 1.0 : 0.0; /* the unknown bucket */
    }
    return (size_t)x == j ? 1.0 : 0.0;
}

/* Validate one raw value: finite, and a level index for categorical fields. */
static fs_err check_value(const fs__field *f, double x, size_t row, fs_diag *diag)
{
    if (!isfinite(x)) {
        return fs__diag(diag, FS_ERR_NUMERIC, "row %zu: field %s is not a finite number", row,
                        f->name);
    }
    if (f->type == FS_FIELD_CATEGORICAL &&
        !(x == FS_LEVEL_UNKNOWN || (x >= 0 && x < (double)f->n_levels && x == floor(x)))) {
        return fs__diag(diag, FS_ERR_INVALID, "row %zu: field %s has no level %g", row, f->name, x);
    }
    return FS_OK;
}

/* In-place lower Cholesky factor of the n x n SPD matrix a (row-major). False if not SPD. */
static bool cholesky(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (size_t k = 0; k < j; k++) {
            d -= a[j * n + k] * a[j * n + k];
        }
        if (!(d > 0.0) || !isfinite(d)) {
            return false;
        }
        d = sqrt(d);
        a[j * n + j] = d;
        for (size_t i = j + 1; i < n; i++) {
            double v = a[i * n + j];
            for (size_t k = 0; k < j; k++) {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / d;
        }
        for (size_t k = j + 1; k < n; k++) {
            a[j * n + k] = 0.0;
        }
    }
    return true;
}

/* inv = L^-1 for lower-triangular L (n x n), by forward substitution on each unit column. */
static void lower_inverse(const double *l, double *inv, size_t n)
{
    memset(inv, 0, n * n * sizeof *inv);
    for (size_t c = 0; c < n; c++) {
        for (size_t i = c; i < n; i++) {
            double v = i == c ? 1.0 : 0.0;
            for (size_t k = c; k < i; k++) {
                v -= l[i * n + k] * inv[k * n + c];
            }
            inv[i * n + c] = v / l[i * n + i];
        }
    }
}

fs_err fs__prep_finish(fs__prep *p, fs_diag *diag)
{
    size_t d = 0;
    double log_det = 0.0;
    for (size_t c = 0; c < p->n_cols; c++) {
        if (!isfinite(p->mean[c]) || !(p->std[c] > 0.0) || !isfinite(p->std[c])) {
            return fs__diag(diag, FS_ERR_NUMERIC,
                            "preprocessing: column %zu has mean %g and std %g", c, p->mean[c],
                            p->std[c]);
        }
        if (p->is_const[c]) {
            p->dim_of_col[c] = -1;
        } else {
            p->dim_of_col[c] = (int32_t)d++;
            log_det -= log(p->std[c]);
        }
    }
    if (d != p->n_dims) {
        return fs__diag(diag, FS_ERR_SHAPE,
                        "preprocessing: %zu non-constant columns but %zu flow dimensions", d,
                        p->n_dims);
    }
    if (d == 0) {
        return fs__diag(diag, FS_ERR_SHAPE,
                        "preprocessing: every column is constant, nothing to model");
    }
    fs__free(p->chol_inv);
    p->chol_inv = NULL;
    if (p->whiten) {
        if (p->chol == NULL) {
            return fs__diag(diag, FS_ERR_SHAPE, "preprocessing: whitening without its matrix");
        }
        for (size_t i = 0; i < d; i++) {
            double lii = p->chol[i * d + i];
            if (!(lii > 0.0) || !isfinite(lii)) {
                return fs__diag(diag, FS_ERR_NUMERIC,
                                "preprocessing: whitening factor has diagonal %g at %zu", lii, i);
            }
            for (size_t j = 0; j < d; j++) {
                if (!isfinite(p->chol[i * d + j]) || (j > i && p->chol[i * d + j] != 0.0)) {
                    return fs__diag(diag, FS_ERR_FORMAT,
                                    "preprocessing: whitening factor is not lower triangular");
                }
            }
            log_det -= log(lii);
        }
        p->chol_inv = fs__calloc(d * d, sizeof *p->chol_inv);
        if (p->chol_inv == NULL) {
            return FS_ERR_NOMEM;
        }
        lower_inverse(p->chol, p->chol_inv, d);
    }
    p->log_det = log_det;
    return FS_OK;
}

/* Covariance of the standardised non-constant columns, + ridge I, factorised into p->chol. */
static fs_err fit_whitening(fs__prep *p, const fs_schema *s, const double *records, size_t n,
                            fs_diag *diag)
{
    size_t d = p->n_dims;
    size_t chunk = n < FS__WHITEN_CHUNK ? n : FS__WHITEN_CHUNK;
    double *u = fs__calloc(fs__mul_size(chunk, d), sizeof *u);
    double *cov = fs__calloc(fs__mul_size(d, d), sizeof *cov);
    fs_err err = FS_OK;
    if (u == NULL || cov == NULL) {
        err = FS_ERR_NOMEM;
        goto out;
    }
    for (size_t r0 = 0; r0 < n; r0 += chunk) {
        size_t m = n - r0 < chunk ? n - r0 : chunk;
        for (size_t r = 0; r < m; r++) {
            const double *x = records + (r0 + r) * s->n_fields;
            for (size_t f = 0; f < s->n_fields; f++) {
                const fs__field *fd = &s->fields[f];
                for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
                    if (p->dim_of_col[c] >= 0) {
                        double v = column_value(fd, c - p->col_start[f], x[f]);
                        u[r * d + (size_t)p->dim_of_col[c]] = (v - p->mean[c]) / p->std[c];
                    }
                }
            }
        }
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (blasint)d, (blasint)m, 1.0, u,
                    (blasint)d, 1.0, cov, (blasint)d);
    }
    for (size_t i = 0; i < d; i++) {
        for (size_t j = 0; j <= i; j++) {
            cov[i * d + j] /= (double)n;
        }
        cov[i * d + i] += p->ridge;
    }
    if (!cholesky(cov, d)) {
        err = fs__diag(diag, FS_ERR_NUMERIC,
                       "preprocessing: covariance is not positive definite (ridge %g)", p->ridge);
        goto out;
    }
    p->chol = cov;
    cov = NULL;
out:
    fs__free(u);
    fs__free(cov);
    return err;
}

fs_err fs__prep_fit(fs__prep *p, const fs_schema *s, const double *records, size_t n, int whiten,
                    double ridge, fs_diag *diag)
{
    fs_err err;
    size_t d = 0;
    if (n == 0) {
        return fs__diag(diag, FS_ERR_INVALID, "preprocessing: no rows");
    }
    err = fs__prep_alloc(p, s);
    if (err != FS_OK) {
        return err;
    }
    /* two passes in double: the mean, then the population variance about it */
    for (size_t r = 0; r < n; r++) {
        const double *x = records + r * s->n_fields;
        for (size_t f = 0; f < s->n_fields; f++) {
            err = check_value(&s->fields[f], x[f], r, diag);
            if (err != FS_OK) {
                fs__prep_deinit(p);
                return err;
            }
            for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
                p->mean[c] += column_value(&s->fields[f], c - p->col_start[f], x[f]);
            }
        }
    }
    for (size_t c = 0; c < p->n_cols; c++) {
        p->mean[c] /= (double)n;
    }
    for (size_t r = 0; r < n; r++) {
        const double *x = records + r * s->n_fields;
        for (size_t f = 0; f < s->n_fields; f++) {
            for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
                double v = column_value(&s->fields[f], c - p->col_start[f], x[f]) - p->mean[c];
                p->std[c] += v * v;
            }
        }
    }
    for (size_t c = 0; c < p->n_cols; c++) {
        double sd = sqrt(p->std[c] / (double)n);
        double scale = fabs(p->mean[c]) > 1.0 ? fabs(p->mean[c]) : 1.0;
        if (!isfinite(sd) || !isfinite(p->mean[c])) {
            fs__prep_deinit(p);
            return fs__diag(diag, FS_ERR_NUMERIC,
                            "preprocessing: column %zu overflows (values too large to square)", c);
        }
        if (sd <= FS__CONST_REL_STD * scale) {
            p->is_const[c] = 1;
            p->std[c] = FS__CONST_SCALE * scale;
        } else {
            p->std[c] = sd;
            d++;
        }
    }
    p->n_dims = d;
    p->whiten = whiten && d > 0;
    p->ridge = ridge;
    p->const_novelty = 1.0 / ((double)n + 2.0);
    if (d > 0) {
        for (size_t c = 0, k = 0; c < p->n_cols; c++) {
            p->dim_of_col[c] = p->is_const[c] ? -1 : (int32_t)k++;
        }
    }
    if (p->whiten) {
        err = fit_whitening(p, s, records, n, diag);
        if (err != FS_OK) {
            fs__prep_deinit(p);
            return err;
        }
    }
    err = fs__prep_finish(p, diag);
    if (err != FS_OK) {
        fs__prep_deinit(p);
    }
    return err;
}

static double clamp_flag(double u, uint32_t *flag)
{
    if (u > FS_INPUT_CLAMP) {
        *flag |= FS_SCORE_SATURATED;
        return FS_INPUT_CLAMP;
    }
    if (u < -FS_INPUT_CLAMP) {
        *flag |= FS_SCORE_SATURATED;
        return -FS_INPUT_CLAMP;
    }
    return u;
}

/*
 * log p(x_c) of constant column c at deviation dev = x_c - mean (nats): the narrow Gaussian
 * N(0, std^2), std = FS__CONST_SCALE * scale with scale = max(1, |mean|), mixed with weight
 * eps = p->const_novelty with the broad N(0, scale^2):
 *   p = (1 - eps) N(dev; 0, std^2) + eps N(dev; 0, scale^2).
 * eps = 1 / (n + 2) is Laplace's rule of succession for a value never seen in n training rows,
 * so a record that changes a constant field costs about log(n + 2) + log(1 / FS__CONST_SCALE)
 * + dev^2 / (2 scale^2) nats more than one that keeps it: well up the ranking, but not above
 * every other kind of anomaly (the narrow Gaussian alone charged ~10^5 nats for a unit change,
 * which put NSL-KDD's normal records with a non-zero wrong_fragment above every attack).
 * With eps = 0 (older files) the narrow Gaussian alone, as before. The broad term is clamped
 * at FS_INPUT_CLAMP (row flag FS_SCORE_SATURATED); the narrow one needs no flag then.
 */
static double const_log_density(const fs__prep *p, size_t c, double dev, uint32_t *flag)
{
    double sd = p->std[c], eps = p->const_novelty;
    if (!(eps > 0)) {
        double z = clamp_flag(dev / sd, flag);
        return -0.5 * z * z - log(sd) - FS__HALF_LOG_2PI;
    }
    double scale = sd / FS__CONST_SCALE;
    double zn = fmin(fabs(dev / sd), FS_INPUT_CLAMP), zb = clamp_flag(dev / scale, flag);
    double a = log1p(-eps) - 0.5 * zn * zn - log(sd) - FS__HALF_LOG_2PI;
    double b = log(eps) - 0.5 * zb * zb - log(scale) - FS__HALF_LOG_2PI;
    return fmax(a, b) + log1p(exp(-fabs(a - b)));
}

fs_err fs__prep_forward(const fs__prep *p, const fs_schema *s, const double *records, size_t n,
                        const double *noise, double *w, double *log_extra, uint32_t *flags,
                        fs_diag *diag)
{
    size_t d = p->n_dims;
    double *u = w;
    for (size_t r = 0; r < n; r++) {
        const double *x = records + r * s->n_fields;
        double extra = 0.0;
        uint32_t flag = 0;
        for (size_t f = 0; f < s->n_fields; f++) {
            const fs__field *fd = &s->fields[f];
            double v = x[f];
            fs_err err = check_value(fd, v, r, diag);
            if (err != FS_OK) {
                return err;
            }
            if (noise != NULL && fd->type != FS_FIELD_CATEGORICAL) {
                v += noise[r * s->n_fields + f];
            }
            if (fd->type != FS_FIELD_CATEGORICAL && fd->transform == FS_TRANSFORM_LOG1P) {
                extra -= log1p(fabs(v)); /* log |d/dx sign(x) log(1 + |x|)| */
            }
            for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
                double dev = column_value(fd, c - p->col_start[f], v) - p->mean[c];
                if (p->is_const[c]) {
                    extra += const_log_density(p, c, dev, &flag);
                } else {
                    u[r * d + (size_t)p->dim_of_col[c]] = clamp_flag(dev / p->std[c], &flag);
                }
            }
        }
        log_extra[r] = extra + p->log_det;
        if (flags != NULL) {
            flags[r] = flag;
        }
    }
    /*
     * w_r = L^-1 u_r in place, one row at a time: a batched gemm could round a row differently
     * depending on the rows around it, and a record must score the same in any batch (case-11).
     */
    for (size_t r = 0; p->whiten && r < n; r++) {
        cblas_dtrmv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, (blasint)d, p->chol_inv,
                    (blasint)d, w + r * d, 1);
    }
    return FS_OK;
}

fs_err fs__prep_inverse(const fs__prep *p, const fs_schema *s, const double *w, size_t n,
                        double *records, size_t *bad_row)
{
    size_t d = p->n_dims;
    for (size_t r = 0; r < n; r++) {
        const double *wr = w + r * d;
        double *x = records + r * s->n_fields;
        for (size_t f = 0; f < s->n_fields; f++) {
            const fs__field *fd = &s->fields[f];
            double best = -HUGE_VAL;
            double out = FS_LEVEL_UNKNOWN;
            for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
                double u, t;
                int32_t k = p->dim_of_col[c];
                if (k < 0) {
                    u = 0.0;
                } else if (p->whiten) {
                    u = 0.0; /* u = L w, lower triangular */
                    for (int32_t j = 0; j <= k; j++) {
                        u += p->chol[(size_t)k * d + (size_t)j] * wr[j];
                    }
                } else {
                    u = wr[k];
                }
                t = p->is_const[c] ? p->mean[c] : u * p->std[c] + p->mean[c];
                if (fd->type != FS_FIELD_CATEGORICAL) {
                    out = transform_inverse(fd->transform, t);
                } else if (c - p->col_start[f] < fd->n_levels && t > best) {
                    best = t;
                    out = (double)(c - p->col_start[f]);
                }
            }
            if (!isfinite(out)) {
                if (bad_row != NULL) {
                    *bad_row = r;
                }
                return FS_ERR_NUMERIC;
            }
            x[f] = out;
        }
    }
    return FS_OK;
}
