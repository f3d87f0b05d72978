/*
 * real.h: the scalar type of the precision-generic kernels (layer_*.c, stack.c).
 *
 * Each kernel file is compiled twice (engine/CMakeLists.txt): as float32 (fs_real = float,
 * names suffixed _f32) for scoring and training, and with FS_REAL_F64 as float64 (names
 * suffixed _f64) for exact encode/decode and the numeric tests. Parameters are always stored
 * as float32; the float64 kernels widen them into scratch memory.
 */
#ifndef FS_REAL_H
#define FS_REAL_H

#include "internal.h"

#include <cblas.h>
#include <math.h>

#ifdef FS_REAL_F64
typedef double fs_real;
#define FS_R(name)     name##_f64
#define FS_REAL_IS_F64 1
#define fs_gemm        cblas_dgemm
#define fs_r_exp       exp
#define fs_r_tanh      tanh
#define fs_r_log       log
#define fs_r_sqrt      sqrt
#define fs_r_fabs      fabs
#define FS_R_C(x)      (x)
#else
typedef float fs_real;
#define FS_R(name)     name##_f32
#define FS_REAL_IS_F64 0
#define fs_gemm        cblas_sgemm
#define fs_r_exp       expf
#define fs_r_tanh      tanhf
#define fs_r_log       logf
#define fs_r_sqrt      sqrtf
#define fs_r_fabs      fabsf
#define FS_R_C(x)      (x##f)
#endif

/* In-place exp over n values. */
static inline void fs_r_vexp(fs_real *x, size_t n)
{
#ifdef FS_REAL_F64
    for (size_t i = 0; i < n; i++) {
        x[i] = exp(x[i]);
    }
#else
    fs__vexp_f32(x, n);
#endif
}

/* In-place soft clamp: x = c * tanh(x / c) (RealNVP scale bound; c > 0). */
static inline void fs_r_vsoftclamp(fs_real *x, size_t n, fs_real c)
{
#ifdef FS_REAL_F64
    for (size_t i = 0; i < n; i++) {
        x[i] = c * tanh(x[i] / c);
    }
#else
    fs__vsoftclamp_f32(x, n, c);
#endif
}

/*
 * Parameters as fs_real: the float32 array itself in the float32 build; in the float64 build
 * a widened copy in dst (n elements of scratch), returned.
 */
static inline const fs_real *fs_r_params(const float *src, size_t n, fs_real *dst)
{
#ifdef FS_REAL_F64
    for (size_t i = 0; i < n; i++) {
        dst[i] = (double)src[i];
    }
    return dst;
#else
    (void)n;
    (void)dst;
    return src;
#endif
}

/* Elements of scratch that fs_r_params needs for n parameters. */
static inline size_t fs_r_params_scratch(size_t n)
{
    return FS_REAL_IS_F64 ? n : 0;
}

#endif /* FS_REAL_H */
