/* ensemble.c: CE and ME over one shared token sequence (the maths is in ensemble.h).
 *
 * The one invariant: member i has run the first n_seen tokens of the shared sequence through its
 * own KV cache, so its cache is exactly what it would be had it run every step. ensemble_sync()
 * restores "n_seen == n_tokens" by feeding the missing tokens in one batched forward; after that
 * its logits are p_i(. | the whole sequence), the same whether it ran every step (CE) or sat idle
 * for the last m steps (ME). Everything else is the mixture identity:
 *     P(token = x) = sum_k P(member k) P(x | member k) = sum_k w_k S(p_k)(x). */
#include "config.h"
#include "ensemble.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ME's member coins come from their own stream, so that with one member ME draws exactly the
 * token coins a single model would (and reproduces llama2.c for a seed). */
#define MEMBER_STREAM 0xD1B54A32D192ED03ull

static const char *MODE_NAMES[] = {"ce", "ce-mixture", "me"};

int ensemble_mode_parse(const char *name, EnsembleMode *mode)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, MODE_NAMES[i]) == 0) {
            *mode = (EnsembleMode)i;
            return 0;
        }
    return -1;
}

const char *ensemble_mode_name(EnsembleMode mode) { return MODE_NAMES[mode]; }

int ensemble_parse_weights(const char *text, int k, double *weights, char err[])
{
    const char *p = text;
    for (int i = 0; i < k; i++) {
        char *end;
        weights[i] = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || (*end == '\0' && i < k - 1))
            return fail(err, "weights '%s': expected %d comma-separated numbers", text, k);
        if (!isfinite(weights[i]) || weights[i] <= 0)
            return fail(err, "weights '%s': weight %d is %g; weights must be finite and > 0", text,
                        i + 1, weights[i]);
        p = *end == ',' ? end + 1 : end;
    }
    if (*p != '\0')
        return fail(err, "weights '%s': expected %d comma-separated numbers, got more", text, k);
    return 0;
}

void ensemble_free(Ensemble *e)
{
    if (e->members)
        for (int i = 0; i < e->k; i++) {
            forward_state_free(&e->members[i].state);
            free(e->members[i].logits);
        }
    free(e->members);
    free(e->weights);
    free(e->tokens);
    free(e->probs);
    free(e->mix);
    sampler_free(&e->sampler);
    memset(e, 0, sizeof *e);
}

int ensemble_init(Ensemble *e, const Model *const *models, const double *weights, int k,
                  int n_ctx, EnsembleMode mode, SamplerParams params, uint64_t seed, char err[])
{
    memset(e, 0, sizeof *e);
    if (k < 1)
        return fail(err, "an ensemble needs at least one member");
    double total = 0;
    for (int i = 0; i < k && weights; i++) {
        if (!isfinite(weights[i]) || weights[i] <= 0)
            return fail(err, "weight %d is %g: weights must be finite and > 0", i + 1, weights[i]);
        total += weights[i];
    }
    if (weights && !isfinite(total))
        return fail(err, "the weights do not sum to a finite number");
    const ModelConfig *first = &models[0]->config;
    int smallest = first->seq_len;
    for (int i = 1; i < k; i++) {
        const ModelConfig *c = &models[i]->config;
        if (c->vocab_size != first->vocab_size)
            return fail(err, "%s has vocab_size %d but %s has %d: members must share one vocabulary",
                        models[i]->path, c->vocab_size, models[0]->path, first->vocab_size);
        if (c->seq_len < smallest)
            smallest = c->seq_len;
    }
    if (sampler_params_check(&params, err))
        return -1;
    e->k = k;
    e->mode = mode;
    e->vocab_size = first->vocab_size;
    e->n_ctx = n_ctx > 0 && n_ctx < smallest ? n_ctx : smallest;
    e->members = calloc((size_t)k, sizeof *e->members);
    e->weights = calloc((size_t)k, sizeof *e->weights);
    e->tokens = calloc((size_t)e->n_ctx, sizeof *e->tokens);
    e->probs = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
    e->mix = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
    if (!e->members || !e->weights || !e->tokens || !e->probs || !e->mix) {
        ensemble_free(e);
        return fail(err, "out of memory for an ensemble with a context of %d tokens (choose a smaller one with -c)", e->n_ctx);
    }
    for (int i = 0; i < k; i++) {
        Member *mb = &e->members[i];
        mb->model = models[i];
        e->weights[i] = weights ? weights[i] / total : 1.0 / k;
        mb->logits = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
        char why[ERR_LEN] = "out of memory";
        if (!mb->logits || forward_state_init(&mb->state, &models[i]->config, e->n_ctx, 0, why)) {
            ensemble_free(e);
            return fail(err, "%s: %s (choose a smaller context with -c)", models[i]->path, why);
        }
    }
    if (sampler_init(&e->sampler, e->vocab_size, params, err)) {
        ensemble_free(e);
        return -1;
    }
    rng_seed(&e->token_rng, seed);
    rng_seed(&e->member_rng, seed ^ MEMBER_STREAM);
    return 0;
}

void ensemble_reset(Ensemble *e)
{
    e->n_tokens = 0;
    for (int i = 0; i < e->k; i++) {
        e->members[i].n_seen = 0;
        e->members[i].forward_calls = 0;
        e->members[i].tokens_processed = 0;
    }
}

int ensemble_append(Ensemble *e, const int *tokens, int n, char err[])
{
    if (n > e->n_ctx - e->n_tokens)
        return fail(err, "the sequence would hold %d tokens but the context is %d", e->n_tokens + n, e->n_ctx);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= e->vocab_size)
            return fail(err, "token id %d is outside the vocabulary (0..%d)", tokens[i], e->vocab_size - 1);
        e->tokens[e->n_tokens + i] = tokens[i];
    }
    e->n_tokens += n;
    return 0;
}

/* The catch-up: every token member i has not seen, in one batched forward. */
const float *ensemble_sync(Ensemble *e, int i, char err[])
{
    Member *mb = &e->members[i];
    if (e->n_tokens == 0) {
        fail(err, "the sequence is empty: give at least one token (BOS) before sampling");
        return NULL;
    }
    int pending = e->n_tokens - mb->n_seen;
    if (pending > 0) {
        if (forward(mb->model, &mb->state, e->tokens + mb->n_seen, pending, mb->n_seen, mb->logits, 0, err))
            return NULL;
        mb->forward_calls++;
        mb->tokens_processed += pending;
        mb->n_seen = e->n_tokens;
    }
    return mb->logits;
}

/* mix (V) = sum_k w_k X_k, with X_k = S(p_k) if transformed, else the plain softmax p_k. */
static int mixture(Ensemble *e, int transformed, float *mix, char err[])
{
    const int V = e->vocab_size;
    memset(mix, 0, sizeof(float) * (size_t)V);
    for (int i = 0; i < e->k; i++) {
        const float *logits = ensemble_sync(e, i, err);
        if (!logits)
            return -1;
        if (transformed) {
            sampler_transform(&e->sampler, logits, e->probs);
        } else {
            memcpy(e->probs, logits, sizeof(float) * (size_t)V);
            softmax(e->probs, V);
        }
        float w = (float)e->weights[i];
        for (int x = 0; x < V; x++)
            mix[x] += w * e->probs[x];
    }
    return 0;
}

/* Probabilities as logits, so the sampler's temperature/top-k/top-p apply to a distribution:
 * softmax(log q / T) is q^(1/T), renormalised. */
static void log_probs(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = x[i] > 0 ? logf(x[i]) : -INFINITY;
}

static int greedy(const Ensemble *e) { return e->sampler.params.temperature == 0.0f; }

/* ME's member coin: the first k whose cumulative weight exceeds a uniform draw. */
static int pick_member(Ensemble *e)
{
    double coin = rng_float(&e->member_rng), cdf = 0;
    for (int i = 0; i < e->k - 1; i++) {
        cdf += e->weights[i];
        if (coin < cdf)
            return i;
    }
    return e->k - 1;
}

int ensemble_step(Ensemble *e, int *token, char err[])
{
    const int V = e->vocab_size;
    if (e->mode == ENSEMBLE_ME || e->k == 1) {
        /* ME: run only the picked member (catching it up), sample from S(p_k). With one member
         * CE is the same thing, and this path reproduces llama2.c's run for a seed. */
        const float *logits = ensemble_sync(e, e->k == 1 ? 0 : pick_member(e), err);
        if (!logits)
            return -1;
        *token = sampler_sample(&e->sampler, logits, &e->token_rng);
        return 0;
    }
    if (e->mode == ENSEMBLE_CE_MIXTURE || greedy(e)) {
        /* The mixture of raw distributions, then the sampler on it (greedy: its argmax). */
        if (mixture(e, 0, e->mix, err))
            return -1;
        log_probs(e->mix, V);
        *token = sampler_sample(&e->sampler, e->mix, &e->token_rng);
        return 0;
    }
    /* CE: q = sum_k w_k S(p_k), one coin. */
    if (mixture(e, 1, e->mix, err))
        return -1;
    *token = sample_from_probs(e->mix, V, rng_float(&e->token_rng));
    return 0;
}

int ensemble_distribution(Ensemble *e, float *q, char err[])
{
    const int V = e->vocab_size;
    if (e->mode == ENSEMBLE_ME || (e->mode == ENSEMBLE_CE && !greedy(e)) || e->k == 1)
        return mixture(e, 1, q, err);
    if (mixture(e, 0, q, err))
        return -1;
    log_probs(q, V);
    memcpy(e->mix, q, sizeof(float) * (size_t)V);
    sampler_transform(&e->sampler, e->mix, q);
    return 0;
}
