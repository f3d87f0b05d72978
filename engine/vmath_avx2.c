/*
 * vmath_avx2.c: float32 exp and soft clamp over arrays with SLEEF's AVX2 kernels
 * (Sleef_expf8_u10avx2, Sleef_tanhf8_u10avx2: max error 1.0 ULP). Compiled with -mavx2 -mfma
 * and called only after vmath.c has checked the CPU. The tail of an array goes through the
 * same vector kernel (padded), so a value's result never depends on its position: a record
 * scores bit-identically alone or in any batch (case-11).
 */
#include <immintrin.h>
#include <sleef.h>
#include <stddef.h>
#include <string.h>

void fs__vexp_f32_avx2(float *x, size_t n);
void fs__vsoftclamp_f32_avx2(float *x, size_t n, float clamp);

void fs__vexp_f32_avx2(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(x + i, Sleef_expf8_u10avx2(_mm256_loadu_ps(x + i)));
    }
    if (i < n) {
        float tail[8] = { 0 };
        memcpy(tail, x + i, (n - i) * sizeof *tail);
        _mm256_storeu_ps(tail, Sleef_expf8_u10avx2(_mm256_loadu_ps(tail)));
        memcpy(x + i, tail, (n - i) * sizeof *tail);
    }
}

void fs__vsoftclamp_f32_avx2(float *x, size_t n, float clamp)
{
    const __m256 c = _mm256_set1_ps(clamp);
    const __m256 inv = _mm256_set1_ps(1.0f / clamp);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), inv);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(c, Sleef_tanhf8_u10avx2(v)));
    }
    if (i < n) {
        float tail[8] = { 0 };
        memcpy(tail, x + i, (n - i) * sizeof *tail);
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(tail), inv);
        _mm256_storeu_ps(tail, _mm256_mul_ps(c, Sleef_tanhf8_u10avx2(v)));
        memcpy(x + i, tail, (n - i) * sizeof *tail);
    }
}
