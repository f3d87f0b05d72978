/* optim.c: Adam and SGD with momentum, applied only when every result is finite. */
#include "optim.h"

#include <math.h>
#include <string.h>

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

/* New values of one Adam coordinate; false if any is not finite. */
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

static inline bool sgd_coord(const fs__optim *o, float w, float g, float m, double lr, float *w_out,
                             float *m_out)
{
    double mn = o->momentum * (double)m + (double)g;
    double wn = (double)w - lr * o->weight_decay * (double)w - lr * mn;
    *w_out = (float)wn;
    *m_out = (float)mn;
    return isfinite(*w_out) && isfinite(*m_out);
}

bool fs__optim_step(fs__optim *o, float *params, const float *g, double lr)
{
    double bc1 = 1.0 - pow(o->beta1, (double)(o->t + 1));
    double bc2 = 1.0 - pow(o->beta2, (double)(o->t + 1));
    float w, m, v;
    /* two passes, so that a non-finite result never reaches the parameters (issue 3 §4) */
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
