/*
 * optim.c: Adam and SGD with momentum, applied only when every result is finite.
 *
 * The common case takes one vectorisable float32 pass: when every gradient is below
 * FS__SAFE_GRAD and every parameter below FS__SAFE_PARAM in magnitude (checked first), no
 * new moment or parameter can overflow, so nothing non-finite can be written. Otherwise a
 * careful two-pass update in double checks every result before writing any (issue 3 §4).
 */
#include "optim.h"

#include <math.h>
#include <string.h>

#define FS__SAFE_GRAD 1e15f  /* g^2 stays far below FLT_MAX */
#define FS__SAFE_PARAM 1e30f /* a bounded step cannot push a parameter past FLT_MAX */

fs_err fs__optim_init(fs__optim *o, const fs_train_params *p, size_t n)
{
    memset(o, 0, sizeof *o);
    o->kind = p->optimizer;
    o->n = n;
    o->beta1 = p->beta1;
    o->beta2 = p->beta2;
    o->eps = p->eps;
    o->momentum = p->momentum;
    o->weight_decay = p->weight_decay;
    o->m = fs__calloc(n == 0 ? 1 : n, sizeof *o->m);
    if (o->m == NULL) {
        return FS_ERR_NOMEM;
    }
    if (o->kind == FS_OPT_ADAM) {
        o->v = fs__calloc(n == 0 ? 1 : n, sizeof *o->v);
        if (o->v == NULL) {
            fs__optim_deinit(o);
            return FS_ERR_NOMEM;
        }
    }
    return FS_OK;
}

void fs__optim_deinit(fs__optim *o)
{
    fs__free(o->m);
    fs__free(o->v);
    o->m = o->v = NULL;
}

/* New values of one Adam coordinate, in double; false if any is not finite. */
static inline bool adam_coord(const fs__optim *o, float w, float g, float m, float v, double lr,
                              double bc1, double bc2, float *w_out, float *m_out, float *v_out)
{
    double mn = o->beta1 * (double)m + (1.0 - o->beta1) * (double)g;
    double vn = o->beta2 * (double)v + (1.0 - o->beta2) * (double)g * (double)g;
    double wn = (double)w - lr * o->weight_decay * (double)w;
    wn -= lr * (mn / bc1) / (sqrt(vn / bc2) + o->eps);
    *w_out = (float)wn;
    *m_out = (float)mn;
    *v_out = (float)vn;
    return isfinite(*w_out) && isfinite(*m_out) && isfinite(*v_out);
}

static inline bool sgd_coord(const fs__optim *o, float w, float g, float m, double lr,
                             float *w_out, float *m_out)
{
    double mn = o->momentum * (double)m + (double)g;
    double wn = (double)w - lr * o->weight_decay * (double)w - lr * mn;
    *w_out = (float)wn;
    *m_out = (float)mn;
    return isfinite(*w_out) && isfinite(*m_out);
}

/* True when every |g| and |w| is small enough for the single float32 pass. */
static bool safe_inputs(const float *restrict params, const float *restrict g, size_t n)
{
    float gmax = 0.0f, wmax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(g[i]), b = fabsf(params[i]);
        gmax = a > gmax ? a : gmax;
        wmax = b > wmax ? b : wmax;
    }
    for (size_t i = 0; i < n; i++) {
        if (isnan(g[i]) || isnan(params[i])) {
            return false; /* a NaN never compares above the maximum: look for it */
        }
    }
    /* NaN compares false, so a NaN input takes the careful path (and is refused there) */
    return gmax < FS__SAFE_GRAD && wmax < FS__SAFE_PARAM;
}

static void adam_fast(fs__optim *o, float *restrict params, const float *restrict g, double lr,
                      double bc1, double bc2)
{
    const float b1 = (float)o->beta1, b2 = (float)o->beta2;
    const float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    const float step = (float)(lr / bc1), inv_bc2 = (float)(1.0 / bc2), eps = (float)o->eps;
    const float decay = (float)(1.0 - lr * o->weight_decay);
    float *restrict m = o->m, *restrict v = o->v;
    for (size_t i = 0; i < o->n; i++) {
        float mi = b1 * m[i] + c1 * g[i];
        float vi = b2 * v[i] + c2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        params[i] = decay * params[i] - step * mi / (sqrtf(vi * inv_bc2) + eps);
    }
}

static void sgd_fast(fs__optim *o, float *restrict params, const float *restrict g, double lr)
{
    const float mu = (float)o->momentum, step = (float)lr;
    const float decay = (float)(1.0 - lr * o->weight_decay);
    float *restrict m = o->m;
    for (size_t i = 0; i < o->n; i++) {
        float mi = mu * m[i] + g[i];
        m[i] = mi;
        params[i] = decay * params[i] - step * mi;
    }
}

bool fs__optim_step(fs__optim *o, float *params, const float *g, double lr)
{
    double bc1 = 1.0 - pow(o->beta1, (double)(o->t + 1));
    double bc2 = 1.0 - pow(o->beta2, (double)(o->t + 1));
    float w, m, v;
    if (!isfinite(lr)) {
        return false;
    }
    if (safe_inputs(params, g, o->n)) {
        if (o->kind == FS_OPT_ADAM) {
            adam_fast(o, params, g, lr, bc1, bc2);
        } else {
            sgd_fast(o, params, g, lr);
        }
        o->t++;
        return true;
    }
    /* two passes, so that a non-finite result never reaches the parameters */
    for (size_t i = 0; i < o->n; i++) {
        bool ok = o->kind == FS_OPT_ADAM
                      ? adam_coord(o, params[i], g[i], o->m[i], o->v[i], lr, bc1, bc2, &w, &m, &v)
                      : sgd_coord(o, params[i], g[i], o->m[i], lr, &w, &m);
        if (!ok) {
            return false;
        }
    }
    for (size_t i = 0; i < o->n; i++) {
        if (o->kind == FS_OPT_ADAM) {
            (void)adam_coord(o, params[i], g[i], o->m[i], o->v[i], lr, bc1, bc2, &params[i],
                             &o->m[i], &o->v[i]);
        } else {
            (void)sgd_coord(o, params[i], g[i], o->m[i], lr, &params[i], &o->m[i]);
        }
    }
    o->t++;
    return true;
}
