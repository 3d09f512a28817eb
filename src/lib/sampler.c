/* sampler.c: the seeded generator, the sampling transform S(p), and the draw (see sampler.h).
 *
 * Why S(p) is a vector and not just a draw: the ensemble's CE mode mixes q = sum_k w_k S(p_k)
 * and ME draws a member and then a token from its S(p_k). The two agree only if the vector
 * sampler_transform() returns is exactly the distribution sampler_sample() draws from. So both go
 * through one function, sampler_keep(), that decides which tokens survive and with what weight;
 * the draw and the vector differ only in what they do with that list.
 *
 * The sampling path of llama2.c's run.c (temperature, softmax, then either a plain inverse-CDF
 * draw or its top-p procedure) is reproduced float operation for float operation, so that a seed
 * gives run.c's tokens. That is why the softmax sums in float, in index order, and why the top-p
 * keeps run.c's cutoff prefilter (explained at sampler_keep). */
#include "config.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------------ generator */

/* xorshift64* maps state 0 to 0 forever, so seed 0 is replaced by this constant (2^64 divided by
 * the golden ratio, a common "any well-mixed nonzero value"). */
#define RNG_SEED_FOR_ZERO 0x9E3779B97F4A7C15ull

void rng_seed(Rng *r, uint64_t seed)
{
    r->state = seed ? seed : RNG_SEED_FOR_ZERO;
}

uint32_t rng_u32(Rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* 24 random bits, the float mantissa's worth: every value is exact and the largest is 1 - 2^-24. */
float rng_float(Rng *r)
{
    return (float)(rng_u32(r) >> 8) / 16777216.0f;
}

/* ------------------------------------------------------------------ parameters */

SamplerParams sampler_defaults(void)
{
    return (SamplerParams){.temperature = 1.0f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f};
}

/* The comparisons are written so that NaN fails them. */
int sampler_params_check(const SamplerParams *p, LxError *err)
{
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return fail(err, LX_ERR_ARGUMENT, "temperature must be >= 0 and finite, got %g", p->temperature);
    if (p->top_k < 0)
        return fail(err, LX_ERR_ARGUMENT, "top_k must be >= 0 (0 turns it off), got %d", p->top_k);
    if (!(p->top_p > 0.0f) || isinf(p->top_p))
        return fail(err, LX_ERR_ARGUMENT, "top_p must be > 0 and finite (>= 1 turns it off), got %g", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return fail(err, LX_ERR_ARGUMENT, "min_p must be >= 0 and < 1 (0 turns it off), got %g", p->min_p);
    return 0;
}

/* ------------------------------------------------------------------ sampler object */

typedef struct {
    float prob;
    int index;
} ProbIndex;

int sampler_init(Sampler *s, int vocab_size, SamplerParams params, LxError *err)
{
    memset(s, 0, sizeof *s);
    if (vocab_size <= 0)
        return fail(err, LX_ERR_ARGUMENT, "sampler: vocab_size must be > 0, got %d", vocab_size);
    int rc = sampler_params_check(&params, err);
    if (rc)
        return rc;
    s->params = params;
    s->vocab_size = vocab_size;
    s->probs = alloc_zeroed((size_t)vocab_size, sizeof(float));
    s->sorted = alloc_zeroed((size_t)vocab_size, sizeof(ProbIndex));
    if (!s->probs || !s->sorted) {
        sampler_free(s);
        return fail(err, LX_ERR_MEMORY, "sampler: out of memory for a vocabulary of %d", vocab_size);
    }
    return 0;
}

void sampler_free(Sampler *s)
{
    free(s->probs);
    free(s->sorted);
    s->probs = NULL;
    s->sorted = NULL;
}

/* ------------------------------------------------------------------ small pieces */

int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

int sample_from_probs(const float *probs, int n, float coin)
{
    float cdf = 0.0f;
    int last_nonzero = -1;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf)
            return i;
        if (probs[i] > 0.0f)
            last_nonzero = i;
    }
    return last_nonzero >= 0 ? last_nonzero : n - 1;
}

/* run.c's inverse-CDF draw: like sample_from_probs, but when float rounding leaves the total
 * short of the coin it returns n - 1, whatever that token's mass. Kept separate for exactness. */
static int sample_mult(const float *probs, int n, float coin)
{
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf)
            return i;
    }
    return n - 1;
}

/* out (n) = softmax(logits / T) with run.c's float operations in run.c's order: divide, subtract
 * the max (so exp never overflows), exp, sum in float in index order, divide by the sum; only the
 * exp is our own (exp_sum.c: the same as glibc's expf but for about 8 arguments in 100,000, by
 * 1 ulp), since 32,000 scalar expf calls were most of a sample's time. If the
 * scaled logits are not finite (T so small that logit / T overflows, or all logits -inf) run.c
 * would produce NaNs; we take the limit T -> 0 instead, the one-hot at the argmax.
 * The max in lanes (max_lanes) is run.c's max. None of these loops has a product to fuse into a
 * multiply-add, so the vector clones compute what the plain build does. */
VECTOR_CLONES
static void softmax_temperature(const float *logits, int n, float temperature, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = logits[i] / temperature;
    float max = max_lanes(out, n);
    if (!isfinite(max)) {
        int best = argmax(logits, n);
        memset(out, 0, (size_t)n * sizeof *out);
        out[best] = 1.0f;
        return;
    }
    float sum = exp_sum(out, n, max);
    for (int j = 0; j < n; j++)
        out[j] /= sum;
}

/* Descending probability; equal probabilities by ascending id, so the order (and S) is a function
 * of the input. run.c's comparator returns 0 on ties and relies on glibc's qsort, a stable merge
 * sort, over a list built in id order: the same order. */
static int by_prob_desc(const void *a, const void *b)
{
    const ProbIndex *x = a, *y = b;
    if (x->prob > y->prob)
        return -1;
    if (x->prob < y->prob)
        return 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Move the k best of list[0..n) (in by_prob_desc's order) into list[0..k), unordered, in
 * O(n log k): a heap of the k best so far with the worst at its root, which each newcomer must
 * beat. For top-k 40 of 32000 this is ~20x faster than sorting everything. */
static void sift_down(ProbIndex *heap, int k, int i)
{
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < k && by_prob_desc(&heap[l], &heap[worst]) > 0)
            worst = l;
        if (r < k && by_prob_desc(&heap[r], &heap[worst]) > 0)
            worst = r;
        if (worst == i)
            return;
        ProbIndex t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

static void select_best(ProbIndex *list, int n, int k)
{
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(list, k, i);
    for (int j = k; j < n; j++) {
        if (by_prob_desc(&list[j], &list[0]) < 0) {
            list[0] = list[j];
            sift_down(list, k, 0);
        }
    }
}

/* True when S is plain softmax(logits / T): nothing is cut. top_p <= 0 counts as off, as in
 * run.c (sampler_params_check rejects it, but run.c's convention costs nothing). */
static int sampler_truncates(const Sampler *s)
{
    const SamplerParams *p = &s->params;
    int top_k_on = p->top_k > 0 && p->top_k < s->vocab_size;
    int top_p_on = p->top_p > 0.0f && p->top_p < 1.0f;
    return top_k_on || top_p_on || p->min_p > 0.0f;
}

/* ------------------------------------------------------------------ S(p) */

/* Given p = s->probs (V), put the tokens S keeps into s->sorted[0..n), most probable first, and
 * return n; *mass gets the float sum of their weights in that order (the normaliser: token i of
 * the list has S-probability sorted[i].prob / mass).
 *
 * Every stage keeps a prefix of the sorted list, so S is "sort, then cut at the shortest of the
 * cuts". The stages do not commute freely, though: top-p measures mass on the top-k list
 * renormalised, so when top-k truncates, top-p's cut depends on k. Min-p compares with the
 * largest probability, which every renormalisation scales alike, so it can go anywhere.
 *
 * The prefilter. Sorting all V = 32000 tokens per step is wasteful when only a few dozen survive,
 * so like run.c we first drop tokens that provably cannot survive:
 *   - min-p: tokens below min_p * max (final anyway, as just said);
 *   - top-p (when top-k is off): tokens below cutoff = (1 - top_p) / (V - 1). Why that is safe:
 *     if n0 >= 1 tokens pass and the shortest prefix whose mass exceeds top_p needed a token below
 *     the cutoff, then the passing tokens would hold mass <= top_p, so the other V - n0 <= V - 1
 *     tokens would hold >= 1 - top_p; yet each is below (1 - top_p) / (V - 1), so together they
 *     hold less than 1 - top_p: a contradiction.
 *     In exact arithmetic the prefilter never changes the kept set. In float, if the cumulative
 *     mass of all passing tokens rounds to <= top_p, run.c keeps all of them rather than look
 *     further; we do the same (it is also the exact-arithmetic answer). If nothing passes (only
 *     possible when top_p < 1 / V, e.g. a flat distribution) run.c reads out of bounds; the
 *     exact rule keeps the single most probable token (its mass >= 1 / V > top_p), and so do we.
 * When top-k and top-p are both on, the top-p cutoff would have to be taken on the renormalised
 * top-k list, whose mass is not known before sorting, so we do not prefilter; neither the min-p
 * one, since the top-k mass needs every one of the k tokens. This path selects the k best of all V
 * with a heap. */
static int sampler_keep(Sampler *s, float *mass)
{
    const SamplerParams *prm = &s->params;
    const float *p = s->probs;
    ProbIndex *list = s->sorted;
    int V = s->vocab_size;
    int k = prm->top_k > 0 && prm->top_k < V ? prm->top_k : V; /* k == V: top-k off */
    int top_p_on = prm->top_p > 0.0f && prm->top_p < 1.0f;
    int renormalise_top_k = k < V && top_p_on;

    float cutoff = 0.0f;
    if (!renormalise_top_k) {
        if (top_p_on && k == V && V > 1)
            cutoff = (1.0f - prm->top_p) / (float)(V - 1);
        if (prm->min_p > 0.0f) {
            float threshold = prm->min_p * p[argmax(p, V)];
            if (threshold > cutoff)
                cutoff = threshold;
        }
    }
    int n = 0;
    for (int i = 0; i < V; i++)
        if (p[i] >= cutoff)
            list[n++] = (ProbIndex){p[i], i};
    if (n == 0) {
        int best = argmax(p, V);
        list[n++] = (ProbIndex){p[best], best};
    }
    /* top-k */
    if (n > k) {
        select_best(list, n, k);
        n = k;
    }
    qsort(list, (size_t)n, sizeof *list, by_prob_desc);

    /* top-p: on the top-k list renormalised (on p itself when top-k is off, as run.c). */
    if (top_p_on) {
        if (renormalise_top_k) {
            float sum = 0.0f;
            for (int i = 0; i < n; i++)
                sum += list[i].prob;
            for (int i = 0; i < n; i++)
                list[i].prob /= sum;
        }
        float cumulative = 0.0f;
        for (int i = 0; i < n; i++) {
            cumulative += list[i].prob;
            if (cumulative > prm->top_p) {
                n = i + 1;
                break;
            }
        }
    }

    /* min-p: the largest is list[0]; the same float threshold as the prefilter when it ran. */
    if (prm->min_p > 0.0f) {
        float threshold = prm->min_p * list[0].prob;
        while (n > 1 && list[n - 1].prob < threshold)
            n--;
    }

    /* Summed in list order: with top-k and min-p off, bit for bit run.c's cumulative_prob. */
    float sum = 0.0f;
    for (int i = 0; i < n; i++)
        sum += list[i].prob;
    *mass = sum;
    return n;
}

void sampler_transform(Sampler *s, const float *logits, float *probs)
{
    int V = s->vocab_size;
    if (s->params.temperature == 0.0f) {
        int best = argmax(logits, V);
        memset(probs, 0, (size_t)V * sizeof *probs);
        probs[best] = 1.0f;
        return;
    }
    softmax_temperature(logits, V, s->params.temperature, s->probs);
    if (!sampler_truncates(s)) {
        memcpy(probs, s->probs, (size_t)V * sizeof *probs);
        return;
    }
    float mass;
    int n = sampler_keep(s, &mass);
    const ProbIndex *list = s->sorted;
    memset(probs, 0, (size_t)V * sizeof *probs);
    for (int i = 0; i < n; i++)
        probs[list[i].index] = list[i].prob / mass;
}

/* The draw walks the kept list, most probable first, with r = coin * mass: token i of the list
 * comes out when its cumulative weight first exceeds r, i.e. with probability weight / mass (up
 * to the coin's 2^-24 grid), which is S's entry for it. */
int sampler_sample(Sampler *s, const float *logits, Rng *rng, float *prob)
{
    int V = s->vocab_size;
    float unused;
    if (!prob)
        prob = &unused;
    *prob = 1.0f;
    if (s->params.temperature == 0.0f)
        return argmax(logits, V);
    softmax_temperature(logits, V, s->params.temperature, s->probs);
    float coin = rng_float(rng);
    if (!sampler_truncates(s)) {
        int token = sample_mult(s->probs, V, coin);
        *prob = s->probs[token];
        return token;
    }
    float mass;
    int n = sampler_keep(s, &mass);
    const ProbIndex *list = s->sorted;
    float r = coin * mass, cdf = 0.0f;
    int i = 0;
    for (; i < n - 1; i++) {
        cdf += list[i].prob;
        if (r < cdf)
            break;
    }
    *prob = list[i].prob / mass;
    return list[i].index;
}
