/*
 * vmath.c: in-place float32 exp and soft clamp. Uses SLEEF's AVX2 kernels when the CPU has
 * AVX2 and FMA (checked once), else libm. Both are within 1 ULP, so results agree to float32
 * precision whichever runs.
 */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>

void fs__vexp_f32_avx2(float *x, size_t n);
void fs__vsoftclamp_f32_avx2(float *x, size_t n, float clamp);

/* 0 unknown, 1 AVX2, 2 scalar; a benign race: every thread computes the same answer. */
static atomic_int fs_vmath_kind;

static int vmath_kind(void)
{
    int k = atomic_load_explicit(&fs_vmath_kind, memory_order_relaxed);
    if (k == 0) {
        __builtin_cpu_init();
        k = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 2;
        atomic_store_explicit(&fs_vmath_kind, k, memory_order_relaxed);
    }
    return k;
}

void fs__vexp_f32(float *x, size_t n)
{
    if (vmath_kind() == 1) {
        fs__vexp_f32_avx2(x, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i]);
    }
}

void fs__vsoftclamp_f32(float *x, size_t n, float clamp)
{
    if (vmath_kind() == 1) {
        fs__vsoftclamp_f32_avx2(x, n, clamp);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = clamp * tanhf(x[i] / clamp);
    }
}
