/* exp_sum.c: x[i] = e^(x[i] - shift) over a vector, and the float sum of the results in index
 * order: the inner loop of every softmax (the sampler's over the vocabulary, the attention's).
 * exp_floats: the same e^ without shift or sum, for SwiGLU's gate.
 * exp_sum_double: the same e^ kept in double and summed in double, x unchanged: the sum of
 * scoring's log-softmax.
 *
 * The maths, in double so that the one rounding that matters is the last one, to float:
 *   v = clamp(x - shift, -110, 89)   (e^-110 is below half the least float, e^89 above FLT_MAX)
 *   k = round(v / ln 2),  r = v - k ln 2, |r| <= ln 2 / 2
 *   e^v = 2^k e^r, e^r by its Taylor series to r^10 (the first term left out, r^11 / 11!, is
 *   below 3e-13 relative), 2^k written straight into the exponent bits.
 * The double result is within about 1e-12 relative of e^v, so its rounding to float is the
 * correctly rounded e^v except where e^v lies that close to a halfway point between two floats:
 * over all 2.24e9 float arguments in [-110, 89], 36 are 1 ulp off. glibc's expf (within 0.502
 * ulp) is 1 ulp off for 7 to 9 in 100,000 of them, so the two differ there (bench/NOTES.md, the
 * sampler's exp).
 *
 * Why not expf: at 32,000 exps per sampled token, glibc's scalar expf was most of a sample's
 * time; this runs 4 doubles per vector. The AVX2 version and the portable one do the same IEEE
 * operations in the same order (every product is an explicit fused multiply-add), so they give
 * the same bits; a NaN stays NaN and -inf gives 0. */
#include "config.h"
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define EXP_MIN (-110.0)
#define EXP_MAX 89.0
#define LOG2E 1.4426950408889634
#define LN2 0.6931471805599453
/* Adding 1.5 * 2^52 rounds a double of magnitude below 2^51 to an integer (round to nearest,
 * even on ties), which then sits in the low bits of the sum's mantissa. */
#define ROUNDER 0x1.8p52

/* 1/n! for n = 10 down to 0: e^r = sum r^n / n!, evaluated by Horner's rule. */
static const double taylor[11] = {1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                  1.0 / 24,      1.0 / 6,      0.5,          1.0,          1.0};

/* e^v in double, v clamped to [EXP_MIN, EXP_MAX] */
static double exp_double(double v)
{
    v = v < EXP_MIN ? EXP_MIN : v; /* a NaN passes both */
    v = v > EXP_MAX ? EXP_MAX : v;
    double t = fma(v, LOG2E, ROUNDER), k = t - ROUNDER;
    double r = fma(-k, LN2, v), p = taylor[0];
    for (int i = 1; i < 11; i++)
        p = fma(p, r, taylor[i]);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52; /* the low bits of t hold k: 2^k's exponent field is k + 1023 */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static float exp_one(float x, float shift)
{
    return (float)exp_double(x - shift); /* subtracted in float, as expf(x - shift) would be */
}

/* x[0..n) in plain C, added to sum in order (the vector version's tail too). */
static float exp_sum_generic(float *x, int n, float shift, float sum)
{
    for (int i = 0; i < n; i++) {
        x[i] = exp_one(x[i], shift);
        sum += x[i];
    }
    return sum;
}

/* exp_floats in plain C (the vector version's tail too). */
static void exp_floats_generic(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = exp_one(x[i], 0.0f);
}

/* exp_sum_double in plain C, added to sum in order (the vector version's tail too). */
static double exp_sum_double_generic(const float *x, int n, double shift, double sum)
{
    for (int i = 0; i < n; i++)
        sum += exp_double((double)x[i] - shift);
    return sum;
}

#ifdef KERNELS_X86
#include <immintrin.h>

/* exp_one on 4 doubles. max_pd and min_pd return their second operand when either is NaN, so
 * with v second a NaN passes, as in exp_one's comparisons. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256d exp_avx2(__m256d v)
{
    v = _mm256_max_pd(_mm256_set1_pd(EXP_MIN), v);
    v = _mm256_min_pd(_mm256_set1_pd(EXP_MAX), v);
    const __m256d rounder = _mm256_set1_pd(ROUNDER);
    __m256d t = _mm256_fmadd_pd(v, _mm256_set1_pd(LOG2E), rounder);
    __m256d k = _mm256_sub_pd(t, rounder);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2), v); /* fma(-k, LN2, v) */
    __m256d p = _mm256_set1_pd(taylor[0]);
    for (int i = 1; i < 11; i++)
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(taylor[i]));
    __m256i bits = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}

/* e^ of 8 floats, through exp_avx2 on each half, rounded to float. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 exp8_avx2(__m256 v)
{
    __m128 lo = _mm256_cvtpd_ps(exp_avx2(_mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    __m128 hi = _mm256_cvtpd_ps(exp_avx2(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
    return _mm256_set_m128(hi, lo);
}

/* 8 at a time; the sum takes the 8 results one by one in order, a chain of dependent adds that
 * runs while the next vector's exps are computed. */
__attribute__((target("avx2,fma")))
static float exp_sum_avx2(float *x, int n, float shift)
{
    float sum = 0.0f;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(x + i, exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(shift))));
        for (int j = 0; j < 8; j++)
            sum += x[i + j];
    }
    return exp_sum_generic(x + i, n - i, shift, sum);
}

/* exp_floats 8 at a time. */
__attribute__((target("avx2,fma")))
static void exp_floats_avx2(float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, exp8_avx2(_mm256_loadu_ps(x + i)));
    exp_floats_generic(x + i, n - i);
}

/* exp_sum_double 4 at a time, in 4 lanes of sums. */
__attribute__((target("avx2,fma")))
static double exp_sum_double_avx2(const float *x, int n, double shift)
{
    __m256d lanes = _mm256_setzero_pd();
    int i = 0;
    for (; i + 4 <= n; i += 4)
        lanes = _mm256_add_pd(lanes, exp_avx2(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), _mm256_set1_pd(shift))));
    double lane[4];
    _mm256_storeu_pd(lane, lanes);
    return exp_sum_double_generic(x + i, n - i, shift, (lane[0] + lane[1]) + (lane[2] + lane[3]));
}
#endif

double exp_sum_double(const float *x, int n, double shift)
{
#ifdef KERNELS_X86
    if (kernels_isa() != KERNEL_ISA_GENERIC)
        return exp_sum_double_avx2(x, n, shift);
#endif
    return exp_sum_double_generic(x, n, shift, 0.0);
}

float exp_sum(float *x, int n, float shift)
{
#ifdef KERNELS_X86
    if (kernels_isa() != KERNEL_ISA_GENERIC) /* AVX-512 CPUs have AVX2 and FMA too */
        return exp_sum_avx2(x, n, shift);
#endif
    return exp_sum_generic(x, n, shift, 0.0f);
}

void exp_floats(float *x, int n)
{
#ifdef KERNELS_X86
    if (kernels_isa() != KERNEL_ISA_GENERIC) {
        exp_floats_avx2(x, n);
        return;
    }
#endif
    exp_floats_generic(x, n);
}
