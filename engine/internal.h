/*
 * internal.h: helpers shared by the engine's files (allocation, diagnostics, logging, RNG).
 * Not installed; never included by server code.
 */
#ifndef FS_INTERNAL_H
#define FS_INTERNAL_H

#include "flowscore.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FS__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FS__PRINTF(f, a)
#endif

/* ---- allocation through the installed fs_allocator (alloc.c) ---- */
void *fs__malloc(size_t bytes);
void *fs__calloc(size_t count, size_t size); /* zeroed; NULL on overflow */
void *fs__realloc(void *ptr, size_t bytes);
void fs__free(void *ptr);
char *fs__strdup(const char *s);
char *fs__strndup(const char *s, size_t len);
/* count * size without overflow, else SIZE_MAX */
size_t fs__mul_size(size_t count, size_t size);

/* ---- diagnostics (error.c) ---- */
/* Format a message into diag (if non-NULL) and return err. */
fs_err fs__diag(fs_diag *diag, fs_err err, const char *fmt, ...) FS__PRINTF(3, 4);
/* Thread-safe strerror. */
const char *fs__errno_str(int errnum, char *buf, size_t len);

/* ---- logging (error.c) ---- */
bool fs__log_enabled(fs_log_level level);
void fs__log(fs_log_level level, const char *fmt, ...) FS__PRINTF(2, 3);

/* ---- random numbers (rng.c) ---- */

/*
 * PCG64 (XSL-RR 128/64, O'Neill 2014) seeded through numpy's SeedSequence, so that
 * fs__rng_seed_numpy(r, s) followed by fs__permutation_numpy reproduces
 * numpy.random.default_rng(s).permutation(n) exactly (bench/SPEC.md, appendix A).
 */
typedef struct fs__rng {
    uint64_t state_hi, state_lo;
    uint64_t inc_hi, inc_lo;
    uint32_t buffered;
    int has_buffered;
} fs__rng;

void fs__rng_seed_numpy(fs__rng *r, uint64_t seed);
/* A seed and a stream index, mixed (used per row and per shard). */
void fs__rng_seed2(fs__rng *r, uint64_t seed, uint64_t stream);
uint64_t fs__rng_u64(fs__rng *r);
uint32_t fs__rng_u32(fs__rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double fs__rng_uniform(fs__rng *r);
/* Standard normal (polar Box-Muller on two uniforms; no cached second value). */
double fs__rng_normal(fs__rng *r);
/* Uniform integer in [0, max] by masked rejection, as numpy's random_interval. */
uint64_t fs__rng_interval(fs__rng *r, uint64_t max);
/* numpy Generator.permutation(n): Fisher-Yates from the top with fs__rng_interval. */
void fs__permutation_numpy(fs__rng *r, int32_t *perm, int32_t n);

/* ---- vector math (vmath.c): in-place, float32, SLEEF AVX2 when the CPU has it ---- */
void fs__vexp_f32(float *x, size_t n);
/* x[i] = clamp * tanh(x[i] / clamp) */
void fs__vsoftclamp_f32(float *x, size_t n, float clamp);

#endif /* FS_INTERNAL_H */
