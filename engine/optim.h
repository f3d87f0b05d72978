/* optim.h: first-order optimisers over one flat float32 parameter vector (internal). */
#ifndef FS_OPTIM_H
#define FS_OPTIM_H

#include "internal.h"

typedef struct fs__optim {
    fs_optimizer kind;
    size_t n;
    float *m, *v; /* Adam moments, or (m only) SGD momentum buffer */
    int64_t t;    /* steps applied */
    double beta1, beta2, eps, momentum, weight_decay;
} fs__optim;

fs_err fs__optim_init(fs__optim *o, const fs_train_params *p, size_t n);
void fs__optim_deinit(fs__optim *o);

/*
 * Apply one step with gradient g (n values) and learning rate lr to params, unless a new
 * parameter or moment would not be finite: then nothing is written and false is returned
 * (the caller counts a skipped step). Adam: Kingma & Ba 2015, Algorithm 1, with decoupled
 * weight decay (Loshchilov & Hutter 2019). SGD: heavy-ball momentum.
 */
bool fs__optim_step(fs__optim *o, float *params, const float *g, double lr);

#endif /* FS_OPTIM_H */
