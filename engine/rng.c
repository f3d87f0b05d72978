/*
 * rng.c: PCG64 (XSL-RR 128/64; M. O'Neill, "PCG: A Family of Simple Fast Space-Efficient
 * Statistically Good Algorithms for Random Number Generation", 2014) with numpy's
 * SeedSequence seeding, so that the permutations of bench/SPEC.md (numpy default_rng(seed)
 * .permutation(D)) are reproduced exactly for any D. Written from the published algorithms.
 */
#include "internal.h"

#include <math.h>

/* 128-bit arithmetic on (hi, lo) pairs, so that no compiler extension is needed. */
static void u128_mul(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo, uint64_t *rhi,
                     uint64_t *rlo)
{
    uint64_t a0 = alo & 0xffffffffu, a1 = alo >> 32;
    uint64_t b0 = blo & 0xffffffffu, b1 = blo >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    uint64_t lo = (mid << 32) | (p00 & 0xffffffffu);
    uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    hi += ahi * blo + alo * bhi;
    *rhi = hi;
    *rlo = lo;
}

static void u128_add(uint64_t *hi, uint64_t *lo, uint64_t bhi, uint64_t blo)
{
    uint64_t l = *lo + blo;
    *hi = *hi + bhi + (l < *lo ? 1u : 0u);
    *lo = l;
}

/* The default 128-bit LCG multiplier of PCG. */
#define PCG_MUL_HI 0x2360ED051FC65DA4ull
#define PCG_MUL_LO 0x4385DF649FCCF645ull

static void pcg_step(fs__rng *r)
{
    u128_mul(r->state_hi, r->state_lo, PCG_MUL_HI, PCG_MUL_LO, &r->state_hi, &r->state_lo);
    u128_add(&r->state_hi, &r->state_lo, r->inc_hi, r->inc_lo);
}

static void pcg_seed(fs__rng *r, uint64_t s_hi, uint64_t s_lo, uint64_t q_hi, uint64_t q_lo)
{
    r->state_hi = 0;
    r->state_lo = 0;
    /* inc = (initseq << 1) | 1 */
    r->inc_hi = (q_hi << 1) | (q_lo >> 63);
    r->inc_lo = (q_lo << 1) | 1u;
    pcg_step(r);
    u128_add(&r->state_hi, &r->state_lo, s_hi, s_lo);
    pcg_step(r);
    r->has_buffered = 0;
    r->buffered = 0;
}

uint64_t fs__rng_u64(fs__rng *r)
{
    pcg_step(r);
    uint64_t x = r->state_hi ^ r->state_lo;
    unsigned rot = (unsigned)(r->state_hi >> 58);
    return (x >> rot) | (x << ((64u - rot) & 63u));
}

uint32_t fs__rng_u32(fs__rng *r)
{
    /* numpy hands out the two halves of one 64-bit draw, low half first. */
    if (r->has_buffered) {
        r->has_buffered = 0;
        return r->buffered;
    }
    uint64_t v = fs__rng_u64(r);
    r->has_buffered = 1;
    r->buffered = (uint32_t)(v >> 32);
    return (uint32_t)(v & 0xffffffffu);
}

/* numpy SeedSequence(entropy).generate_state(4, uint64) for one non-negative integer. */
#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L  0xca01f9ddu
#define SS_MIX_R  0x4973f715u
#define SS_POOL   4

static uint32_t ss_hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static uint32_t ss_mix(uint32_t x, uint32_t y)
{
    uint32_t result = SS_MIX_L * x - SS_MIX_R * y;
    result ^= result >> 16;
    return result;
}

static void seed_sequence(uint64_t seed, uint64_t out[4])
{
    uint32_t entropy[2];
    size_t n_entropy = 0;
    uint32_t pool[SS_POOL];
    uint32_t hash_const = SS_INIT_A;
    /* an integer is split into 32-bit words, least significant first */
    entropy[n_entropy++] = (uint32_t)(seed & 0xffffffffu);
    if ((seed >> 32) != 0) {
        entropy[n_entropy++] = (uint32_t)(seed >> 32);
    }
    for (size_t i = 0; i < SS_POOL; i++) {
        pool[i] = ss_hashmix(i < n_entropy ? entropy[i] : 0u, &hash_const);
    }
    for (size_t src = 0; src < SS_POOL; src++) {
        for (size_t dst = 0; dst < SS_POOL; dst++) {
            if (src != dst) {
                pool[dst] = ss_mix(pool[dst], ss_hashmix(pool[src], &hash_const));
            }
        }
    }
    uint32_t words[8];
    uint32_t hb = SS_INIT_B;
    for (size_t i = 0; i < 8; i++) {
        uint32_t v = pool[i % SS_POOL];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        words[i] = v;
    }
    for (size_t i = 0; i < 4; i++) {
        out[i] = (uint64_t)words[2 * i] | ((uint64_t)words[2 * i + 1] << 32);
    }
}

void fs__rng_seed_numpy(fs__rng *r, uint64_t seed)
{
    uint64_t st[4];
    seed_sequence(seed, st);
    /* PCG64 takes state = (st[0] << 64) | st[1], increment = (st[2] << 64) | st[3] */
    pcg_seed(r, st[0], st[1], st[2], st[3]);
}

void fs__rng_seed2(fs__rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t st[4];
    seed_sequence(seed, st);
    /* a distinct odd increment per stream gives independent sequences (PCG streams) */
    uint64_t z = stream + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    pcg_seed(r, st[0], st[1] ^ stream, st[2] ^ z, st[3] ^ stream);
}

double fs__rng_uniform(fs__rng *r)
{
    return (double)(fs__rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double fs__rng_normal(fs__rng *r)
{
    for (;;) {
        double u = 2.0 * fs__rng_uniform(r) - 1.0;
        double v = 2.0 * fs__rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) {
            return u * sqrt(-2.0 * log(s) / s);
        }
    }
}

uint64_t fs__rng_interval(fs__rng *r, uint64_t max)
{
    uint64_t mask = max, value;
    if (max == 0) {
        return 0;
    }
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffu) {
        do {
            value = fs__rng_u32(r) & mask;
        } while (value > max);
    } else {
        do {
            value = fs__rng_u64(r) & mask;
        } while (value > max);
    }
    return value;
}

void fs__permutation_numpy(fs__rng *r, int32_t *perm, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        perm[i] = i;
    }
    for (int32_t i = n - 1; i >= 1; i--) {
        int32_t j = (int32_t)fs__rng_interval(r, (uint64_t)i);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
