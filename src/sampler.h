/* sampler.h: the seeded generator, the sampling transform S(p), and the draw.
 *
 * S maps a member's logits to the distribution a token is drawn from, in this order:
 *   1. temperature: p = softmax(logits / T); T = 0 means greedy (a one-hot at the argmax,
 *      lowest id on ties);
 *   2. top-k: keep the k most probable tokens (k = 0: off);
 *   3. top-p (nucleus): of what is left, sorted by probability, keep the shortest prefix whose
 *      mass exceeds p (p >= 1: off);
 *   4. min-p: drop tokens below min_p times the largest probability (0: off);
 * then renormalise. Ties in sorting are broken by the lower id, so S is a function.
 *
 * sampler_sample() draws from S(p) with one coin from the generator, exactly as llama2.c's
 * run.c does when top-k and min-p are off (same generator, same top-p procedure), so a seed
 * reproduces run.c's output token for token. sampler_transform() returns the vector S(p) itself,
 * which the ensemble and the tests use. */
#ifndef LLAMIX_SAMPLER_H
#define LLAMIX_SAMPLER_H

#include <stdint.h>

/* llama2.c's xorshift64* generator. State 0 is a fixed point, so rng_seed(0) uses the constant
 * 0x9E3779B97F4A7C15 instead (every other seed is the state as given). */
typedef struct {
    uint64_t state;
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint32_t rng_u32(Rng *r);   /* upper 32 bits of the xorshift64* output */
float rng_float(Rng *r);    /* (u32 >> 8) / 16777216: uniform in [0, 1) */

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* >= 1 = off */
    float min_p;       /* 0 = off */
} SamplerParams;

/* Defaults: temperature 1, top-k off, top-p 0.9 (llama2.c's run default), min-p off. */
SamplerParams sampler_defaults(void);

/* Check ranges: T >= 0 and finite, top_k >= 0, 0 < top_p and finite, 0 <= min_p < 1 (NaN fails).
 * On failure err gets one line such as "temperature must be >= 0 and finite, got nan". */
int sampler_params_check(const SamplerParams *p, char err[]);

typedef struct {
    SamplerParams params;
    int vocab_size;
    float *probs;   /* (V) scratch */
    void *sorted;   /* (V) scratch (probability, id) pairs */
} Sampler;

int sampler_init(Sampler *s, int vocab_size, SamplerParams params, char err[]);
void sampler_free(Sampler *s); /* safe on a zeroed Sampler */

/* probs (V) = S(softmax(logits)), normalised to sum 1. logits is not modified (probs may be the
 * same array). Exactly the distribution sampler_sample() draws from: both use one kept list. */
void sampler_transform(Sampler *s, const float *logits, float *probs);

/* Draw a token from S(softmax(logits)) using exactly one rng_float coin (none when greedy).
 * Matches llama2.c run.c when top_k and min_p are off (top_p <= 0 then also means off, as in
 * run.c). Where run.c misbehaves we choose: top_p < 1/V with a flat distribution (run.c reads out
 * of bounds) keeps the top token; logits / T overflowing (run.c: NaNs) acts as T -> 0. */
int sampler_sample(Sampler *s, const float *logits, Rng *rng);

/* Draw from an explicit distribution probs (n) with a coin in [0, 1): the first index whose
 * cumulative mass exceeds coin (the last index with nonzero mass if rounding leaves it short). */
int sample_from_probs(const float *probs, int n, float coin);

/* Index of the largest value, lowest index on ties. */
int argmax(const float *x, int n);

#endif
