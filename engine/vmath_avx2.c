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

/*
 * clamp * tanh(x / clamp) as clamp * (1 - 2 / (1 + exp(2 x / clamp))): one SLEEF exp instead of
 * SLEEF's tanh, which costs about five times as much. The absolute error stays below 1e-7 of
 * clamp (the cancellation near 0 is absolute, not relative), far inside what the scales need.
 * Saturates correctly: exp overflowing to inf gives clamp, underflowing to 0 gives -clamp.
 */
static __m256 softclamp8(__m256 v, __m256 two_over_c, __m256 c)
{
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    __m256 e = Sleef_expf8_u10avx2(_mm256_mul_ps(v, two_over_c));
    __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, e)));
    return _mm256_mul_ps(c, t);
}

void fs__vsoftclamp_f32_avx2(float *x, size_t n, float clamp)
{
    const __m256 c = _mm256_set1_ps(clamp);
    const __m256 two_over_c = _mm256_set1_ps(2.0f / clamp);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(x + i, softclamp8(_mm256_loadu_ps(x + i), two_over_c, c));
    }
    if (i < n) {
        float tail[8] = { 0 };
        memcpy(tail, x + i, (n - i) * sizeof *tail);
        _mm256_storeu_ps(tail, softclamp8(_mm256_loadu_ps(tail), two_over_c, c));
        memcpy(x + i, tail, (n - i) * sizeof *tail);
    }
}
