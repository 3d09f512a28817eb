/* test_sampler.c: tests of the sampler module (src/sampler.c), and of tests/stats.c, which the
 * distribution tests here and elsewhere rest on.
 *
 *   generator     against a second implementation in this file and values worked out by hand;
 *   S(p)          on small vectors with known answers (temperature, top-k, top-p, min-p, the order
 *                 of the stages, ties), and against a reference written from the definition in
 *                 double, without run.c's prefilter, on random and adversarial vectors;
 *   the draw      against a plain re-implementation of llama2.c run.c's sample(), token for token
 *                 and coin for coin; and in distribution: chi-square of 200,000 draws against
 *                 sampler_transform()'s vector (seed 2024, must pass at p > 1e-6), with negative
 *                 controls (wrong temperature, no truncation, one token too many or too few) that
 *                 must be rejected at p < 1e-9.
 * All randomness is seeded; the test data (logits) come from splitmix64, not from the generator
 * under test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stats.h"

/* ------------------------------------------------------------------ test data helpers */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *x)
{
    return (double)(splitmix64(x) >> 11) * 0x1.0p-53;
}

static double gaussian(uint64_t *x)
{
    double u = uniform01(x), v = uniform01(x);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

static void random_logits(uint64_t *x, float *logits, int n, double scale)
{
    for (int i = 0; i < n; i++)
        logits[i] = (float)(scale * gaussian(x));
}

static SamplerParams params(float temperature, int top_k, float top_p, float min_p)
{
    return (SamplerParams){temperature, top_k, top_p, min_p};
}

/* probs (n) = S(softmax(logits)) for these parameters, through a fresh sampler. */
static void transform(SamplerParams prm, const float *logits, int n, float *probs)
{
    Sampler s;
    LxError err[1];
    assert_int_equal(sampler_init(&s, n, prm, err), 0);
    sampler_transform(&s, logits, probs);
    sampler_free(&s);
}

/* Logits whose softmax at T = 1 is p. */
static void logits_of(const double *p, int n, float *logits)
{
    for (int i = 0; i < n; i++)
        logits[i] = (float)log(p[i]);
}

static void assert_probs_near(const float *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++) {
        if (fabs(got[i] - want[i]) > tol)
            fail_msg("probs[%d] = %.9g, want %.9g", i, got[i], want[i]);
        if ((want[i] == 0.0) != (got[i] == 0.0f))
            fail_msg("probs[%d] = %.9g, want %.9g (kept set differs)", i, got[i], want[i]);
    }
}

/* ------------------------------------------------------------------ generator */

/* xorshift64* again, each step a separate value, to check the module against. */
static uint32_t ref_xorshift(uint64_t *state)
{
    uint64_t a = *state;
    uint64_t b = a ^ (a >> 12);
    uint64_t c = b ^ (b << 25);
    uint64_t d = c ^ (c >> 27);
    *state = d;
    return (uint32_t)((d * 0x2545F4914F6CDD1Dull) >> 32);
}

static void test_rng_known_values(void **state)
{
    (void)state;
    const uint64_t M = 0x2545F4914F6CDD1Dull;
    Rng r;

    /* By hand, from state 1: 1 ^ (1 >> 12) = 1; 1 ^ (1 << 25) = 0x2000001; 0x2000001 >> 27 = 0,
     * so the state becomes 0x2000001 = 2^25 + 1 and the output is the top half of
     * M * (2^25 + 1) = M + (M << 25) (mod 2^64). */
    rng_seed(&r, 1);
    uint32_t first = rng_u32(&r);
    assert_true(r.state == 0x2000001ull);
    assert_int_equal(first, (uint32_t)((M + (M << 25)) >> 32));
    assert_int_equal(first, 0x47e4ce4bu);

    /* Seed 42, worked out with Python's exact integers. */
    const uint32_t want42[5] = {0x56ce4ab7u, 0xc841eb53u, 0xca466be0u, 0xf1acc733u, 0xc3af4dd7u};
    rng_seed(&r, 42);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rng_u32(&r), want42[i]);
    assert_true(r.state == 0x53e4a303a98ce13eull);

    /* Seed 0 would be a fixed point; it must become the documented nonzero constant. */
    Rng z, g;
    rng_seed(&z, 0);
    rng_seed(&g, 0x9E3779B97F4A7C15ull);
    assert_true(z.state != 0);
    assert_true(z.state == g.state);
    assert_int_equal(rng_u32(&z), 0x0d83b3e2u);

    /* rng_float is the top 24 bits over 2^24: seed 1 gives 0x47e4ce / 2^24 exactly. */
    rng_seed(&r, 1);
    assert_true(rng_float(&r) == (float)(0x47e4ce / 16777216.0));

    /* Long runs against the second implementation, u32 and float. */
    const uint64_t seeds[4] = {1, 42, 0xdeadbeefcafef00dull, UINT64_MAX};
    for (int s = 0; s < 4; s++) {
        uint64_t ref = seeds[s];
        Rng a, b;
        rng_seed(&a, seeds[s]);
        rng_seed(&b, seeds[s]);
        for (int i = 0; i < 20000; i++) {
            uint32_t want = ref_xorshift(&ref);
            assert_int_equal(rng_u32(&a), want);
            float f = rng_float(&b);
            assert_true(f == (float)((double)(want >> 8) / 16777216.0));
            assert_true(f >= 0.0f && f < 1.0f);
        }
        assert_true(a.state == ref && b.state == ref);
    }
}

/* rng_float is uniform: 64 bins, 640,000 draws, seed 7, pass at p > 1e-6. Negative control: the
 * same counts against bins weighted 0.9 .. 1.1 must be rejected at p < 1e-9. */
static void test_rng_uniform(void **state)
{
    (void)state;
    enum { BINS = 64, DRAWS = 640000 };
    long counts[BINS] = {0};
    double flat[BINS], tilted[BINS], tsum = 0;
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < DRAWS; i++)
        counts[(int)(rng_float(&r) * BINS)]++;
    for (int i = 0; i < BINS; i++) {
        flat[i] = 1.0 / BINS;
        tilted[i] = 0.9 + 0.2 * i / (BINS - 1);
        tsum += tilted[i];
    }
    for (int i = 0; i < BINS; i++)
        tilted[i] /= tsum;
    double p_flat = chi_square_test(counts, flat, BINS, 5.0, NULL, NULL);
    double p_tilted = chi_square_test(counts, tilted, BINS, 5.0, NULL, NULL);
    assert_true(p_flat > 1e-6);
    assert_true(p_tilted < 1e-9);
}

/* ------------------------------------------------------------------ small pieces */

static void test_argmax_and_sample_from_probs(void **state)
{
    (void)state;
    const float x[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 3.0f};
    assert_int_equal(argmax(x, 6), 1); /* first of the tied maxima */
    assert_int_equal(argmax(x, 1), 0);
    const float neg[3] = {-5.0f, -INFINITY, -2.0f};
    assert_int_equal(argmax(neg, 3), 2);

    const float p[3] = {0.2f, 0.3f, 0.5f};
    assert_int_equal(sample_from_probs(p, 3, 0.0f), 0);
    assert_int_equal(sample_from_probs(p, 3, 0.19f), 0);
    assert_int_equal(sample_from_probs(p, 3, 0.2f), 1); /* "exceeds": cdf 0.2 does not exceed 0.2 */
    assert_int_equal(sample_from_probs(p, 3, 0.49f), 1);
    assert_int_equal(sample_from_probs(p, 3, 0.51f), 2);
    assert_int_equal(sample_from_probs(p, 3, 0.99999994f), 2);

    /* Zero-mass tokens are never drawn, even at the edges. */
    const float holes[5] = {0.0f, 0.5f, 0.0f, 0.4f, 0.0f};
    assert_int_equal(sample_from_probs(holes, 5, 0.0f), 1);
    assert_int_equal(sample_from_probs(holes, 5, 0.6f), 3);
    assert_int_equal(sample_from_probs(holes, 5, 0.95f), 3); /* short of the coin: last nonzero */
}

static void test_params_check(void **state)
{
    (void)state;
    LxError err[1];
    SamplerParams d = sampler_defaults();
    assert_true(d.temperature == 1.0f && d.top_k == 0 && d.top_p == 0.9f && d.min_p == 0.0f);
    assert_int_equal(sampler_params_check(&d, err), 0);
    SamplerParams ok[4] = {params(0, 0, 1, 0), params(2.5f, 40, 0.95f, 0.05f),
                           params(1, 0, 7.0f, 0), params(0.1f, 1, 1e-6f, 0.999f)};
    for (int i = 0; i < 4; i++)
        assert_int_equal(sampler_params_check(&ok[i], err), 0);

    struct {
        SamplerParams p;
        const char *message;
    } bad[] = {
        {params(NAN, 0, 0.9f, 0), "temperature must be >= 0 and finite, got nan"},
        {params(-0.5f, 0, 0.9f, 0), "temperature must be >= 0 and finite, got -0.5"},
        {params(INFINITY, 0, 0.9f, 0), "temperature must be >= 0 and finite, got inf"},
        {params(1, -3, 0.9f, 0), "top_k must be >= 0 (0 turns it off), got -3"},
        {params(1, 0, 0.0f, 0), "top_p must be > 0 and finite (>= 1 turns it off), got 0"},
        {params(1, 0, NAN, 0), "top_p must be > 0 and finite (>= 1 turns it off), got nan"},
        {params(1, 0, 0.9f, 1.0f), "min_p must be >= 0 and < 1 (0 turns it off), got 1"},
        {params(1, 0, 0.9f, -0.25f), "min_p must be >= 0 and < 1 (0 turns it off), got -0.25"},
        {params(1, 0, 0.9f, NAN), "min_p must be >= 0 and < 1 (0 turns it off), got nan"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err->message[0] = '\0';
        assert_int_not_equal(sampler_params_check(&bad[i].p, err), 0);
        assert_string_equal(err->message, bad[i].message);
    }

    /* init refuses the same, and a vocabulary of 0; the sampler is then safe to free. */
    Sampler s;
    assert_int_not_equal(sampler_init(&s, 10, bad[0].p, err), 0);
    assert_string_equal(err->message, bad[0].message);
    sampler_free(&s);
    assert_int_not_equal(sampler_init(&s, 0, d, err), 0);
    assert_non_null(strstr(err->message, "vocab_size"));
    sampler_free(&s);
    Sampler zero;
    memset(&zero, 0, sizeof zero);
    sampler_free(&zero);
}

/* ------------------------------------------------------------------ S(p) on known vectors */

static void test_greedy(void **state)
{
    (void)state;
    const float logits[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 3.0f};
    const double one_hot[6] = {0, 1, 0, 0, 0, 0};
    float probs[6];
    Sampler s;
    LxError err[1];
    Rng r;

    /* T = 0: one-hot at the argmax (lowest id of the tie), whatever else is set; no coin. */
    transform(params(0, 3, 0.5f, 0.2f), logits, 6, probs);
    assert_probs_near(probs, one_hot, 6, 0);
    assert_int_equal(sampler_init(&s, 6, params(0, 0, 0.9f, 0), err), 0);
    rng_seed(&r, 5);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sampler_sample(&s, logits, &r, NULL), 1);
    assert_true(r.state == 5);
    sampler_free(&s);

    /* top-k 1 at T > 0 is greedy too, but spends its one coin per token. */
    transform(params(1.3f, 1, 1, 0), logits, 6, probs);
    assert_probs_near(probs, one_hot, 6, 0);
    assert_int_equal(sampler_init(&s, 6, params(1.3f, 1, 1, 0), err), 0);
    Rng shadow;
    rng_seed(&r, 5);
    rng_seed(&shadow, 5);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sampler_sample(&s, logits, &r, NULL), 1);
        rng_u32(&shadow);
        assert_true(r.state == shadow.state);
    }
    sampler_free(&s);
}

static void test_temperature(void **state)
{
    (void)state;
    const float logits[5] = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f};
    const float temps[4] = {0.25f, 0.7f, 1.0f, 2.0f};
    float probs[5];
    for (int t = 0; t < 4; t++) {
        double want[5], sum = 0;
        for (int i = 0; i < 5; i++)
            sum += want[i] = exp((logits[i] - 3.0) / temps[t]);
        for (int i = 0; i < 5; i++)
            want[i] /= sum;
        transform(params(temps[t], 0, 1.0f, 0), logits, 5, probs);
        assert_probs_near(probs, want, 5, 1e-6);
    }
    /* Higher temperature flattens: the top token's share falls as T rises. */
    float cold[5], hot[5];
    transform(params(0.5f, 0, 1, 0), logits, 5, cold);
    transform(params(5.0f, 0, 1, 0), logits, 5, hot);
    assert_true(cold[2] > 0.8f && hot[2] < 0.4f && hot[4] > 0.1f);

    /* A temperature so small that logit / T overflows: the T -> 0 limit, not NaNs. */
    const double one_hot[5] = {0, 0, 1, 0, 0};
    transform(params(1e-45f, 0, 1, 0), logits, 5, probs);
    assert_probs_near(probs, one_hot, 5, 0);
    transform(params(1e-45f, 0, 0.9f, 0), logits, 5, probs);
    assert_probs_near(probs, one_hot, 5, 0);
}

static void test_top_k(void **state)
{
    (void)state;
    const double p[4] = {0.1, 0.4, 0.2, 0.3}; /* not in sorted order on purpose */
    float logits[4], probs[4];
    logits_of(p, 4, logits);

    const double k2[4] = {0, 0.4 / 0.7, 0, 0.3 / 0.7};
    transform(params(1, 2, 1, 0), logits, 4, probs);
    assert_probs_near(probs, k2, 4, 1e-6);
    const double k3[4] = {0, 0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9};
    transform(params(1, 3, 1, 0), logits, 4, probs);
    assert_probs_near(probs, k3, 4, 1e-6);
    const double k1[4] = {0, 1, 0, 0};
    transform(params(1, 1, 1, 0), logits, 4, probs);
    assert_probs_near(probs, k1, 4, 0);
    /* k >= V is off. */
    transform(params(1, 4, 1, 0), logits, 4, probs);
    assert_probs_near(probs, p, 4, 1e-6);
    transform(params(1, 9, 1, 0), logits, 4, probs);
    assert_probs_near(probs, p, 4, 1e-6);
}

static void test_top_p(void **state)
{
    (void)state;
    const double p[4] = {0.15, 0.5, 0.05, 0.3};
    float logits[4], probs[4];
    logits_of(p, 4, logits);

    /* Sorted: 0.5, 0.3, 0.15, 0.05. Cumulative 0.5, 0.8 > 0.7: keep {0.5, 0.3}. */
    const double p70[4] = {0, 0.625, 0, 0.375};
    transform(params(1, 0, 0.7f, 0), logits, 4, probs);
    assert_probs_near(probs, p70, 4, 1e-6);
    /* 0.95 > 0.85: three tokens. */
    const double p85[4] = {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95};
    transform(params(1, 0, 0.85f, 0), logits, 4, probs);
    assert_probs_near(probs, p85, 4, 1e-6);
    /* 0.5 > 0.4: the top token alone. */
    const double p40[4] = {0, 1, 0, 0};
    transform(params(1, 0, 0.4f, 0), logits, 4, probs);
    assert_probs_near(probs, p40, 4, 0);
    /* Only the full mass exceeds 0.999: everything; and p >= 1 is off. */
    transform(params(1, 0, 0.999f, 0), logits, 4, probs);
    assert_probs_near(probs, p, 4, 1e-6);
    transform(params(1, 0, 1.0f, 0), logits, 4, probs);
    assert_probs_near(probs, p, 4, 1e-6);

    /* top_p below 1 / V on a flat distribution: run.c's cutoff (1 - p) / (V - 1) exceeds every
     * probability and its prefilter keeps nothing (run.c then reads out of bounds). The rule's
     * answer is the first token of the sorted list, id 0, since 1 / V > p already. */
    float flat[10] = {0};
    float fprobs[10];
    const double first[10] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    transform(params(1, 0, 0.05f, 0), flat, 10, fprobs);
    assert_probs_near(fprobs, first, 10, 0);
    Sampler s;
    LxError err[1];
    Rng r;
    assert_int_equal(sampler_init(&s, 10, params(1, 0, 0.05f, 0), err), 0);
    rng_seed(&r, 3);
    for (int i = 0; i < 20; i++)
        assert_int_equal(sampler_sample(&s, flat, &r, NULL), 0);
    sampler_free(&s);
}

static void test_min_p(void **state)
{
    (void)state;
    const double p[4] = {0.05, 0.3, 0.5, 0.15};
    float logits[4], probs[4];
    logits_of(p, 4, logits);

    /* Threshold 0.2 * 0.5 = 0.1 drops 0.05. */
    const double m20[4] = {0, 0.3 / 0.95, 0.5 / 0.95, 0.15 / 0.95};
    transform(params(1, 0, 1, 0.2f), logits, 4, probs);
    assert_probs_near(probs, m20, 4, 1e-6);
    /* 0.25 drops 0.15 too. */
    const double m50[4] = {0, 0.375, 0.625, 0};
    transform(params(1, 0, 1, 0.5f), logits, 4, probs);
    assert_probs_near(probs, m50, 4, 1e-6);
    /* 0.45: only the top. */
    const double m90[4] = {0, 0, 1, 0};
    transform(params(1, 0, 1, 0.9f), logits, 4, probs);
    assert_probs_near(probs, m90, 4, 0);
    /* min-p is relative to the largest, so at T = 2 the same min_p keeps more. */
    double want[4], sum = 0;
    for (int i = 0; i < 4; i++)
        sum += want[i] = sqrt(p[i]);
    for (int i = 0; i < 4; i++)
        want[i] /= sum;
    transform(params(2, 0, 1, 0.3f), logits, 4, probs); /* sqrt(0.05) / sqrt(0.5) = 0.316 >= 0.3 */
    assert_probs_near(probs, want, 4, 1e-6);
}

/* The stages in the documented order: the cases below give a different answer in any other. */
static void test_stage_order(void **state)
{
    (void)state;
    const double p[4] = {0.4, 0.3, 0.2, 0.1};
    float logits[4], probs[4];
    logits_of(p, 4, logits);

    /* top-k 2 renormalises to {4/7, 3/7}; 4/7 > 0.5 so top-p keeps one token. (top-p measured on
     * the unrenormalised p would keep two: 0.4 < 0.5 < 0.7.) */
    const double a[4] = {1, 0, 0, 0};
    transform(params(1, 2, 0.5f, 0), logits, 4, probs);
    assert_probs_near(probs, a, 4, 0);

    /* top-p 0.75 keeps three (0.4, 0.7, 0.9 > 0.75), min-p 0.3 (threshold 0.12) keeps them. (min-p
     * first would drop 0.1, renormalise to {4/9, 3/9, 2/9}, and top-p would then keep two.) */
    const double b[4] = {0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0};
    transform(params(1, 0, 0.75f, 0.3f), logits, 4, probs);
    assert_probs_near(probs, b, 4, 1e-6);

    /* All three: top-3 {4/9, 3/9, 2/9}, top-p 0.75 stops at 7/9, min-p 0.6 (threshold 4/15)
     * keeps 3/9. */
    const double c[4] = {4.0 / 7, 3.0 / 7, 0, 0};
    transform(params(1, 3, 0.75f, 0.6f), logits, 4, probs);
    assert_probs_near(probs, c, 4, 1e-6);
}

static void test_ties(void **state)
{
    (void)state;
    float probs[6];
    /* Three tokens tie for second place: top-k 2 keeps the lowest id of them. */
    const float logits[6] = {1.0f, 3.0f, 2.0f, 2.0f, 2.0f, 0.0f};
    const double e = exp(1.0);
    const double k2[6] = {0, e / (1 + e), 1 / (1 + e), 0, 0, 0};
    transform(params(1, 2, 1, 0), logits, 6, probs);
    assert_probs_near(probs, k2, 6, 1e-6);

    /* A flat distribution: top-p 0.6 keeps ids 0, 1, 2 (0.25, 0.5, 0.75 > 0.6). */
    const float flat[4] = {0, 0, 0, 0};
    const double third[4] = {1.0 / 3, 1.0 / 3, 1.0 / 3, 0};
    transform(params(1, 0, 0.6f, 0), flat, 4, probs);
    assert_probs_near(probs, third, 4, 1e-6);
    /* Here the floats are exact (1/4 each), so top-p 0.5 meets a prefix of mass exactly 0.5: that
     * does not exceed p, and a third token is kept. */
    transform(params(1, 0, 0.5f, 0), flat, 4, probs);
    assert_probs_near(probs, third, 4, 1e-6);
    /* top-p 0.25: run.c's cutoff (1 - 0.25) / 3 is exactly 0.25, every token is at it and passes
     * (the prefilter keeps p >= cutoff); the mass first exceeds 0.25 at the second token. */
    const double two[4] = {0.5, 0.5, 0, 0};
    transform(params(1, 0, 0.25f, 0), flat, 4, probs);
    assert_probs_near(probs, two, 4, 1e-6);
    /* The same with the ties placed after a smaller token. */
    const float back[5] = {-1.0f, 0, 0, 0, 0};
    float bprobs[5];
    transform(params(1, 2, 1, 0), back, 5, bprobs);
    const double pair[5] = {0, 0.5, 0.5, 0, 0};
    assert_probs_near(bprobs, pair, 5, 1e-6);
}

/* sampler_sample takes exactly one coin when T > 0 (none at T = 0), and neither function
 * modifies the logits. */
static void test_one_coin_const_input(void **state)
{
    (void)state;
    enum { V = 100 };
    const SamplerParams settings[6] = {params(1, 0, 1, 0),    params(0.8f, 0, 0.9f, 0),
                                       params(1, 10, 1, 0),   params(1, 0, 1, 0.1f),
                                       params(0.7f, 5, 0.8f, 0.05f), params(0, 0, 0.9f, 0)};
    uint64_t x = 11;
    float logits[V], copy[V], probs[V];
    for (int c = 0; c < 6; c++) {
        Sampler s;
        LxError err[1];
        Rng r, shadow;
        assert_int_equal(sampler_init(&s, V, settings[c], err), 0);
        rng_seed(&r, 100 + c);
        rng_seed(&shadow, 100 + c);
        for (int step = 0; step < 50; step++) {
            random_logits(&x, logits, V, 2.0);
            memcpy(copy, logits, sizeof logits);
            int token = sampler_sample(&s, logits, &r, NULL);
            assert_true(token >= 0 && token < V);
            if (settings[c].temperature > 0)
                rng_u32(&shadow);
            assert_true(r.state == shadow.state);
            assert_memory_equal(logits, copy, sizeof logits);
            sampler_transform(&s, logits, probs);
            assert_memory_equal(logits, copy, sizeof logits);
            assert_true(probs[token] > 0.0f); /* the draw came from the kept set */
        }
        sampler_free(&s);
    }
}

static void test_reproducible(void **state)
{
    (void)state;
    enum { V = 64, STEPS = 300 };
    float logits[STEPS][V];
    uint64_t x = 99;
    for (int t = 0; t < STEPS; t++)
        random_logits(&x, logits[t], V, 1.5);
    int runs[3][STEPS];
    const uint64_t seeds[3] = {7, 7, 8};
    for (int k = 0; k < 3; k++) {
        Sampler s;
        LxError err[1];
        Rng r;
        assert_int_equal(sampler_init(&s, V, params(0.9f, 20, 0.95f, 0.01f), err), 0);
        rng_seed(&r, seeds[k]);
        for (int t = 0; t < STEPS; t++)
            runs[k][t] = sampler_sample(&s, logits[t], &r, NULL);
        sampler_free(&s);
    }
    assert_memory_equal(runs[0], runs[1], sizeof runs[0]);
    int differ = 0;
    for (int t = 0; t < STEPS; t++)
        differ += runs[0][t] != runs[2][t];
    assert_true(differ > STEPS / 4);
}

/* ------------------------------------------------------------------ S(p) against its definition */

/* The softmax the sampler computes, restated (same float operations in the same order). */
static void ref_softmax(const float *logits, int n, float temperature, float *p)
{
    for (int i = 0; i < n; i++)
        p[i] = logits[i] / temperature;
    float max = p[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        max = p[i] > max ? p[i] : max;
    for (int i = 0; i < n; i++) {
        p[i] = expf(p[i] - max);
        sum += p[i];
    }
    for (int i = 0; i < n; i++)
        p[i] /= sum;
}

typedef struct {
    double prob;
    int id;
} RefEntry;

static int ref_entry_order(const void *a, const void *b)
{
    const RefEntry *x = a, *y = b;
    if (x->prob != y->prob)
        return x->prob > y->prob ? -1 : 1;
    return x->id - y->id;
}

/* S from sampler.h's definition, in double, sorting all V with no prefilter: keep the top k,
 * renormalise, keep the shortest prefix whose mass exceeds top_p, drop tokens below min_p times
 * the largest, renormalise. Returns 0, or 1 when a top-p or min-p decision lies within 1e-5 of its
 * threshold, where float and double may honestly disagree (the caller skips those). */
static int ref_S(const float *p, int n, SamplerParams prm, double *out, RefEntry *list)
{
    int ambiguous = 0;
    for (int i = 0; i < n; i++)
        list[i] = (RefEntry){p[i], i};
    qsort(list, (size_t)n, sizeof *list, ref_entry_order);
    int m = prm.top_k > 0 && prm.top_k < n ? prm.top_k : n;
    double total = 0;
    for (int i = 0; i < m; i++)
        total += list[i].prob;
    for (int i = 0; i < m; i++)
        list[i].prob /= total;
    if (prm.top_p < 1.0f) {
        double cumulative = 0;
        for (int i = 0; i < m; i++) {
            cumulative += list[i].prob;
            if (fabs(cumulative - prm.top_p) < 1e-5)
                ambiguous = 1;
            if (cumulative > prm.top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (prm.min_p > 0.0f) {
        double threshold = prm.min_p * list[0].prob;
        for (int i = 0; i < m; i++)
            if (fabs(list[i].prob - threshold) < 1e-5 * list[0].prob)
                ambiguous = 1;
        while (m > 1 && list[m - 1].prob < threshold)
            m--;
    }
    double kept = 0;
    for (int i = 0; i < m; i++)
        kept += list[i].prob;
    memset(out, 0, (size_t)n * sizeof *out);
    for (int i = 0; i < m; i++)
        out[list[i].id] = list[i].prob / kept;
    return ambiguous;
}

/* Adversarial for run.c's top-p prefilter, which drops tokens below (1 - top_p) / (V - 1): a few
 * large tokens, and all the others within +-5% of that cutoff, so the cut falls right among the
 * tokens the prefilter is deciding about. Returns 0 if the draw did not leave room for them. */
static int cutoff_cliff(uint64_t *x, int n, float top_p, float *logits)
{
    double c = (1.0 - top_p) / (n - 1), small = 0;
    int big = 1 + (int)(uniform01(x) * 4);
    if (big >= n)
        big = n - 1;
    double *p = malloc((size_t)n * sizeof *p);
    for (int i = big; i < n; i++)
        small += p[i] = c * (1.0 + 0.1 * (uniform01(x) - 0.5));
    double rest = 1.0 - small, w = 0;
    int ok = rest > big * c * 1.2;
    for (int i = 0; i < big; i++)
        w += p[i] = 1.0 + uniform01(x);
    for (int i = 0; i < big; i++) {
        p[i] = rest * p[i] / w;
        ok = ok && p[i] > c * 1.2;
    }
    for (int i = 0; i < n; i++) { /* shuffle so ids and ranks differ */
        int j = (int)(uniform01(x) * n);
        double t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    logits_of(p, n, logits);
    free(p);
    return ok;
}

static void test_transform_matches_definition(void **state)
{
    (void)state;
    enum { VMAX = 2000, TRIALS = 4000 };
    const int sizes[7] = {2, 3, 5, 17, 64, 300, VMAX};
    const double scales[5] = {0.05, 0.5, 1.0, 3.0, 8.0};
    const float temps[3] = {0.5f, 1.0f, 1.7f};
    const float top_ps[6] = {0.3f, 0.7f, 0.9f, 0.95f, 0.99f, 1.0f};
    const float min_ps[4] = {0.0f, 0.0f, 0.01f, 0.2f};
    float *logits = malloc(VMAX * sizeof *logits), *p = malloc(VMAX * sizeof *p);
    float *got = malloc(VMAX * sizeof *got);
    double *want = malloc(VMAX * sizeof *want);
    RefEntry *list = malloc(VMAX * sizeof *list);
    uint64_t x = 2718;
    int checked = 0, cliffs = 0;

    for (int trial = 0; trial < TRIALS; trial++) {
        int n = sizes[splitmix64(&x) % 7];
        SamplerParams prm;
        if (trial % 2 == 0) {
            random_logits(&x, logits, n, scales[splitmix64(&x) % 5]);
            if (trial % 3 == 0) /* many exact ties: logits on a grid of 0.5 */
                for (int i = 0; i < n; i++)
                    logits[i] = roundf(2.0f * logits[i]) / 2.0f;
            const int ks[6] = {0, 0, 1, 2, 5, n / 2};
            prm = params(temps[splitmix64(&x) % 3], ks[splitmix64(&x) % 6],
                         top_ps[splitmix64(&x) % 6], min_ps[splitmix64(&x) % 4]);
        } else {
            /* top-k off, top-p on: where the prefilter runs. */
            prm = params(1.0f, 0, 0.5f + 0.49f * (float)uniform01(&x),
                         trial % 3 == 0 ? 0.05f : 0.0f);
            if (n < 3 || !cutoff_cliff(&x, n, prm.top_p, logits))
                continue;
            cliffs++;
        }
        ref_softmax(logits, n, prm.temperature, p);
        if (ref_S(p, n, prm, want, list))
            continue;
        transform(prm, logits, n, got);
        for (int i = 0; i < n; i++)
            if ((want[i] == 0.0) != (got[i] == 0.0f) || fabs(got[i] - want[i]) > 1e-5)
                fail_msg("trial %d (V %d, T %g, k %d, p %g, min-p %g): probs[%d] = %.9g, want %.9g",
                         trial, n, prm.temperature, prm.top_k, prm.top_p, prm.min_p, i, got[i],
                         want[i]);
        checked++;
    }
    /* Most trials must be unambiguous, or the test tests nothing. */
    assert_true(checked > TRIALS * 3 / 4);
    assert_true(cliffs > TRIALS / 4);
    free(logits);
    free(p);
    free(got);
    free(want);
    free(list);
}

/* ------------------------------------------------------------------ llama2.c equivalence */

typedef struct {
    float prob;
    int index;
} RefPair;

/* run.c's sample(), restated from the algorithm: greedy at T = 0; otherwise divide by T, softmax,
 * one coin; plain inverse CDF when top_p is off; else the nucleus: keep probabilities >= (1 - p) /
 * (n - 1), sort them descending (stably: an insertion sort, as glibc's merge sort keeps ties in
 * id order), cut after the cumulative mass first exceeds p, and walk the cut list with coin times
 * its mass. Works on logits in place, as run.c does. */
static int llama2c_sample(float *logits, int n, float temperature, float top_p, uint64_t *rng,
                          RefPair *pairs)
{
    if (temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    ref_softmax(logits, n, temperature, logits);
    float coin = (float)(ref_xorshift(rng) >> 8) / 16777216.0f;
    if (top_p <= 0.0f || top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf)
                return i;
        }
        return n - 1;
    }
    float cutoff = (1.0f - top_p) / (float)(n - 1);
    int n0 = 0;
    for (int i = 0; i < n; i++) {
        if (logits[i] < cutoff)
            continue;
        RefPair e = {logits[i], i};
        int j = n0++;
        while (j > 0 && pairs[j - 1].prob < e.prob) {
            pairs[j] = pairs[j - 1];
            j--;
        }
        pairs[j] = e;
    }
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += pairs[i].prob;
        if (cumulative > top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += pairs[i].prob;
        if (r < cdf)
            return pairs[i].index;
    }
    return pairs[last].index;
}

/* sampler_sample against run.c's sample() for V tokens: the same token and rng state each step.
 * run.c's exps are glibc's expf, the sampler's exp_sum.c's, which differ from them by 1 ulp for
 * about 1 argument in 10,000: that could move a draw only when its coin fell within about 1e-7
 * of a boundary of the CDF, which none of these does (it would fail here, naming the step). */
static void check_matches_llama2c(int V, int seeds, int steps)
{
    const float top_ps[5] = {0.0f, 0.5f, 0.9f, 0.99f, 1.0f};
    const float temps[4] = {0.0f, 0.5f, 1.0f, 1.4f};
    const double scales[3] = {0.3, 2.0, 6.0};
    float *logits = malloc((size_t)V * sizeof *logits), *work = malloc((size_t)V * sizeof *work);
    RefPair *pairs = malloc((size_t)V * sizeof *pairs);
    assert_true(logits && work && pairs);
    uint64_t x = 314159;
    long compared = 0;

    for (int a = 0; a < 5; a++) {
        for (int b = 0; b < 4; b++) {
            Sampler s;
            LxError err[1];
            assert_int_equal(sampler_init(&s, V, params(temps[b], 0, 0.9f, 0), err), 0);
            s.params.top_p = top_ps[a]; /* 0 is refused by the check but means "off" as in run.c */
            for (int seed = 1; seed <= seeds; seed++) {
                Rng r;
                rng_seed(&r, (uint64_t)seed * 1000003u);
                uint64_t ref = r.state;
                for (int step = 0; step < steps; step++) {
                    random_logits(&x, logits, V, scales[(seed + step) % 3]);
                    memcpy(work, logits, (size_t)V * sizeof *work);
                    int want = llama2c_sample(work, V, temps[b], top_ps[a], &ref, pairs);
                    int got = sampler_sample(&s, logits, &r, NULL);
                    if (got != want || r.state != ref)
                        fail_msg("V %d top_p %g T %g seed %d step %d: token %d, run.c %d", V, top_ps[a],
                                 temps[b], seed, step, got, want);
                    compared++;
                }
            }
            sampler_free(&s);
        }
    }
    assert_int_equal(compared, 5 * 4 * seeds * steps);
    free(logits);
    free(work);
    free(pairs);
}

/* 512 tokens; and 32000 (llama2's vocabulary), where the softmax takes its exps on all threads. */
static void test_matches_llama2c(void **state)
{
    (void)state;
    check_matches_llama2c(512, 12, 60);
    check_matches_llama2c(32000, 2, 15);
}

/* ------------------------------------------------------------------ draws follow S(p) */

static long count_nonzero(const float *p, int n)
{
    long c = 0;
    for (int i = 0; i < n; i++)
        c += p[i] > 0.0f;
    return c;
}

/* 200,000 draws from sampler_sample on a fixed 50-token vocabulary, seed 2024, in six settings.
 * Each must fit sampler_transform's vector at p > 1e-6 (a false alarm once in a million runs,
 * never for a fixed seed). Negative controls on the same counts, each to be rejected at
 * p < 1e-9: a wrong temperature or the untruncated softmax; for the truncating settings also the
 * kept set grown by the next most probable token, and shrunk by its least probable one. */
static void test_draws_follow_transform(void **state)
{
    (void)state;
    enum { V = 50, DRAWS = 200000 };
    struct {
        const char *name;
        SamplerParams right, wrong;
    } settings[6] = {
        {"T=1", params(1, 0, 1, 0), params(0.85f, 0, 1, 0)},
        {"T=0.7", params(0.7f, 0, 1, 0), params(1, 0, 1, 0)},
        {"top-k 5", params(1, 5, 1, 0), params(1, 0, 1, 0)},
        {"top-p 0.8", params(1, 0, 0.8f, 0), params(1, 0, 1, 0)},
        {"min-p 0.1", params(1, 0, 1, 0.1f), params(1, 0, 1, 0)},
        {"T=0.8 k=15 p=0.9 min-p=0.05", params(0.8f, 15, 0.9f, 0.05f), params(0.8f, 0, 1, 0)},
    };
    float logits[V], right[V], wrong[V], full[V];
    double expect[V], other[V];
    long counts[V];
    uint64_t x = 4242;
    random_logits(&x, logits, V, 1.5);

    /* The combined setting must exercise every stage: each one cuts something. */
    float staged[4][V];
    transform(params(0.8f, 0, 1, 0), logits, V, staged[0]);
    transform(params(0.8f, 15, 1, 0), logits, V, staged[1]);
    transform(params(0.8f, 15, 0.9f, 0), logits, V, staged[2]);
    transform(params(0.8f, 15, 0.9f, 0.05f), logits, V, staged[3]);
    for (int i = 0; i < 3; i++)
        assert_true(count_nonzero(staged[i + 1], V) < count_nonzero(staged[i], V));

    for (int c = 0; c < 6; c++) {
        Sampler s;
        LxError err[1];
        Rng r;
        assert_int_equal(sampler_init(&s, V, settings[c].right, err), 0);
        rng_seed(&r, 2024);
        memset(counts, 0, sizeof counts);
        for (int i = 0; i < DRAWS; i++)
            counts[sampler_sample(&s, logits, &r, NULL)]++;
        sampler_transform(&s, logits, right);
        sampler_free(&s);

        double stat;
        int dof;
        for (int i = 0; i < V; i++)
            expect[i] = right[i];
        double p_right = chi_square_test(counts, expect, V, 5.0, &stat, &dof);
        print_message("  %-28s kept %2ld  X2 %7.1f  dof %2d  p %.3g\n", settings[c].name,
                      count_nonzero(right, V), stat, dof, p_right);
        assert_true(p_right > 1e-6);

        transform(settings[c].wrong, logits, V, wrong);
        for (int i = 0; i < V; i++)
            other[i] = wrong[i];
        assert_true(chi_square_test(counts, other, V, 5.0, NULL, NULL) < 1e-9);

        long kept = count_nonzero(right, V);
        if (kept == V)
            continue;
        /* One token too many: the most probable dropped one (by the untruncated softmax). */
        transform(params(settings[c].right.temperature, 0, 1, 0), logits, V, full);
        int next = -1;
        for (int i = 0; i < V; i++)
            if (right[i] == 0.0f && (next < 0 || full[i] > full[next]))
                next = i;
        double sum = 0;
        for (int i = 0; i < V; i++)
            sum += other[i] = right[i] > 0.0f || i == next ? full[i] : 0.0;
        for (int i = 0; i < V; i++)
            other[i] /= sum;
        assert_true(chi_square_test(counts, other, V, 5.0, NULL, NULL) < 1e-9);
        /* One too few: without the least probable kept token. */
        if (kept < 2)
            continue;
        int least = -1;
        for (int i = 0; i < V; i++)
            if (right[i] > 0.0f && (least < 0 || right[i] < right[least]))
                least = i;
        sum = 0;
        for (int i = 0; i < V; i++)
            sum += other[i] = i == least ? 0.0 : right[i];
        for (int i = 0; i < V; i++)
            other[i] /= sum;
        assert_true(chi_square_test(counts, other, V, 5.0, NULL, NULL) < 1e-9);
    }
}

/* ------------------------------------------------------------------ tests/stats.c */

static void assert_rel(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol * fabs(want)))
        fail_msg("got %.15g, want %.15g", got, want);
}

static void test_stats(void **state)
{
    (void)state;
    /* Table quantiles. */
    assert_true(fabs(chi_square_sf(18.307, 10) - 0.05) < 1e-4);
    assert_true(fabs(chi_square_sf(23.209, 10) - 0.01) < 1e-4);
    assert_true(fabs(chi_square_sf(3.841, 1) - 0.05) < 1e-4);
    assert_true(fabs(chi_square_sf(6.635, 1) - 0.01) < 1e-4);
    assert_true(fabs(chi_square_sf(124.342, 100) - 0.05) < 1e-4);
    /* Closed forms, on both sides of the series / continued-fraction switch at x / 2 = dof / 2 + 1:
     * with h = x / 2, dof 1: erfc(sqrt(h)); dof 2: exp(-h); dof 10: exp(-h) sum_{j<5} h^j / j!. */
    const double xs[7] = {0.01, 0.5, 2.0, 7.0, 15.0, 40.0, 150.0};
    for (int i = 0; i < 7; i++) {
        double h = xs[i] / 2, poisson = 0, term = 1;
        for (int j = 0; j < 5; j++) {
            poisson += term;
            term *= h / (j + 1);
        }
        assert_rel(chi_square_sf(xs[i], 1), erfc(sqrt(h)), 1e-9);
        assert_rel(chi_square_sf(xs[i], 2), exp(-h), 1e-9);
        assert_rel(chi_square_sf(xs[i], 10), exp(-h) * poisson, 1e-9);
    }
    assert_true(chi_square_sf(0.0, 5) == 1.0);

    /* Pearson's statistic: 60 / 40 against a fair coin is (10^2 / 50) * 2 = 4 on 1 dof. */
    double stat;
    int dof;
    const long coin[2] = {60, 40};
    const double half[2] = {0.5, 0.5};
    assert_rel(chi_square_test(coin, half, 2, 5.0, &stat, &dof), erfc(sqrt(2.0)), 1e-9);
    assert_rel(stat, 4.0, 1e-12);
    assert_int_equal(dof, 1);
    const long exact[4] = {250, 250, 250, 250};
    const double quarter[4] = {0.25, 0.25, 0.25, 0.25};
    assert_true(chi_square_test(exact, quarter, 4, 5.0, &stat, &dof) == 1.0);
    assert_true(stat == 0.0 && dof == 3);
    /* Small cells are pooled: expected 500, 490, 5, 5 with min 10 -> 3 cells, 2 dof. */
    const long pool[4] = {500, 490, 4, 6};
    const double ppool[4] = {0.5, 0.49, 0.005, 0.005};
    chi_square_test(pool, ppool, 4, 10.0, &stat, &dof);
    assert_int_equal(dof, 2);
    assert_true(stat < 1e-12);
    /* A draw where the probability is 0 is impossible. */
    const long hit[3] = {10, 10, 1};
    const double zero[3] = {0.5, 0.5, 0.0};
    assert_true(chi_square_test(hit, zero, 3, 5.0, NULL, NULL) == 0.0);

    /* Binomial, n = 1000, p = 0.5 (sd 15.81): the mean gives 1; 31 off is z = 1.961, p = 0.0499;
     * 50 off is z = 3.162, p = 0.001565. */
    assert_rel(binomial_test(500, 1000, 0.5), 1.0, 1e-12);
    assert_true(fabs(binomial_test(531, 1000, 0.5) - 0.0499) < 2e-4);
    assert_true(fabs(binomial_test(469, 1000, 0.5) - 0.0499) < 2e-4);
    assert_true(fabs(binomial_test(550, 1000, 0.5) - 0.001565) < 2e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_known_values),
        cmocka_unit_test(test_rng_uniform),
        cmocka_unit_test(test_argmax_and_sample_from_probs),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_stage_order),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_one_coin_const_input),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_transform_matches_definition),
        cmocka_unit_test(test_matches_llama2c),
        cmocka_unit_test(test_draws_follow_transform),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
