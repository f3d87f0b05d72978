/*
 * calib.c: the calibration sketch of a model: the distribution of the scores of held-out
 * training rows, kept as up to FS__CALIB_MAX_POINTS quantiles (all sorted scores when there
 * are fewer), from which percentiles and the anomaly thresholds are read.
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fs__calib_deinit(fs__calib *c)
{
    fs__free(c->points);
    memset(c, 0, sizeof *c);
    c->upper_threshold = HUGE_VAL;
    c->lower_threshold = -HUGE_VAL;
}

fs_err fs__calib_copy(const fs__calib *src, fs__calib *dst)
{
    *dst = *src;
    dst->points = NULL;
    if (src->n_points > 0) {
        dst->points = fs__calloc(src->n_points, sizeof *dst->points);
        if (dst->points == NULL) {
            return FS_ERR_NOMEM;
        }
        memcpy(dst->points, src->points, src->n_points * sizeof *dst->points);
    }
    return FS_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Quantile p of n ascending values, linear between order statistics (numpy's default). */
static double sorted_quantile(const double *v, size_t n, double p)
{
    double pos, frac;
    size_t i;
    if (n == 1 || p <= 0.0) {
        return v[0];
    }
    if (p >= 1.0) {
        return v[n - 1];
    }
    pos = p * (double)(n - 1);
    i = (size_t)pos;
    frac = pos - (double)i;
    if (i + 1 >= n) {
        return v[n - 1];
    }
    return v[i] + frac * (v[i + 1] - v[i]);
}

double fs__calib_quantile(const fs__calib *c, double p)
{
    if (c->n_points == 0) {
        return HUGE_VAL;
    }
    return sorted_quantile(c->points, c->n_points, p);
}

double fs__calib_percentile(const fs__calib *c, double score)
{
    size_t lo = 0, hi, n = c->n_points;
    double a, b;
    if (n == 0 || !(score >= c->points[0])) {
        return 0.0;
    }
    if (score >= c->points[n - 1]) {
        return 1.0;
    }
    /* the last point <= score */
    hi = n - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->points[mid] <= score) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    a = c->points[lo];
    b = c->points[lo + 1];
    return ((double)lo + (b > a ? (score - a) / (b - a) : 0.0)) / (double)(n - 1);
}

fs_err fs__calib_finish(fs__calib *c, fs_diag *diag)
{
    if (!(c->upper_quantile > 0.0 && c->upper_quantile <= 1.0) ||
        !(c->lower_quantile >= 0.0 && c->lower_quantile < c->upper_quantile)) {
        return fs__diag(diag, FS_ERR_INVALID,
                        "calibration: quantiles must satisfy 0 <= lower < upper <= 1 (got %g, %g)",
                        c->lower_quantile, c->upper_quantile);
    }
    for (size_t i = 0; i < c->n_points; i++) {
        if (!isfinite(c->points[i]) || (i > 0 && c->points[i] < c->points[i - 1])) {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "calibration: points must be finite and ascending (index %zu)", i);
        }
    }
    c->upper_threshold = c->n_points > 0 ? fs__calib_quantile(c, c->upper_quantile) : HUGE_VAL;
    c->lower_threshold = (c->n_points > 0 && c->lower_quantile > 0.0)
                             ? fs__calib_quantile(c, c->lower_quantile)
                             : -HUGE_VAL;
    return FS_OK;
}

fs_err fs__calib_build(fs__calib *c, double *scores, size_t n, double upper_q, double lower_q)
{
    size_t m;
    fs__calib_deinit(c);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            return FS_ERR_NUMERIC;
        }
    }
    c->upper_quantile = upper_q;
    c->lower_quantile = lower_q;
    c->n_rows = (int64_t)n;
    if (n == 0) {
        return fs__calib_finish(c, NULL);
    }
    qsort(scores, n, sizeof *scores, cmp_double);
    m = n < FS__CALIB_MAX_POINTS ? n : FS__CALIB_MAX_POINTS;
    c->points = fs__calloc(m, sizeof *c->points);
    if (c->points == NULL) {
        return FS_ERR_NOMEM;
    }
    c->n_points = m;
    for (size_t i = 0; i < m; i++) {
        c->points[i] = m == n ? scores[i] : sorted_quantile(scores, n, (double)i / (double)(m - 1));
    }
    return fs__calib_finish(c, NULL);
}
