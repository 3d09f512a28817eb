/* ensemble.c: CE and ME over one shared token sequence (the maths is in ensemble.h).
 *
 * The one invariant: member i has run the first n_seen tokens of the shared sequence through its
 * own KV cache, so its cache is exactly what it would be had it run every step. ensemble_sync()
 * restores "n_seen == n_tokens" by feeding the missing tokens in one batched forward; after that
 * its logits are p_i(. | the whole sequence), the same whether it ran every step (CE) or sat idle
 * for the last m steps (ME). Everything else is the mixture identity, with the router's weights
 * r = r(the sequence so far) (the constant router: r = w):
 *     P(token = x) = sum_k P(member k) P(x | member k) = sum_k r_k S(p_k)(x). */
#include "config.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ME's member coins come from their own stream, so that with one member ME draws exactly the
 * token coins a single model would (and reproduces llama2.c for a seed). */
#define MEMBER_STREAM 0xD1B54A32D192ED03ull

static const char *MODE_NAMES[] = {"me", "ce", "ce-mixture"}; /* in LxMode's order */

LxStatus lx_mode_parse(const char *name, LxMode *mode, LxError *err)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, MODE_NAMES[i]) == 0) {
            *mode = (LxMode)i;
            return LX_OK;
        }
    return (LxStatus)fail(err, LX_ERR_ARGUMENT, "ensemble mode '%s' is not one of me, ce, ce-mixture", name);
}

const char *lx_mode_name(LxMode mode)
{
    return (unsigned)mode < 3 ? MODE_NAMES[mode] : "unknown";
}

LxStatus lx_weights_parse(const char *text, int k, double *weights, LxError *err)
{
    const char *p = text;
    for (int i = 0; i < k; i++) {
        char *end;
        weights[i] = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || (*end == '\0' && i < k - 1))
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "weights '%s': expected %d comma-separated numbers", text, k);
        if (!isfinite(weights[i]) || weights[i] <= 0)
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "weights '%s': weight %d is %g; weights must be finite and > 0",
                                  text, i + 1, weights[i]);
        p = end;
        if (*p == ',' && i < k - 1)
            p++;
    }
    if (*p != '\0')
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "weights '%s': expected %d comma-separated numbers, got more", text, k);
    double total = 0;
    for (int i = 0; i < k; i++)
        total += weights[i];
    if (!isfinite(total))
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "weights '%s': their sum is not a finite number", text);
    return LX_OK;
}

int weights_normalise(const double *in, int k, double *out, LxError *err)
{
    if (k < 1)
        return fail(err, LX_ERR_ARGUMENT, "an ensemble needs at least one member");
    double total = 0;
    for (int i = 0; i < k && in; i++) {
        if (!isfinite(in[i]) || in[i] <= 0)
            return fail(err, LX_ERR_ARGUMENT, "weight %d is %g: weights must be finite and > 0", i + 1, in[i]);
        total += in[i];
    }
    if (in && !isfinite(total))
        return fail(err, LX_ERR_ARGUMENT, "the weights do not sum to a finite number");
    for (int i = 0; i < k; i++)
        out[i] = in ? in[i] / total : 1.0 / k;
    return 0;
}

int models_context(const Model *const *models, int k)
{
    int smallest = models[0]->config.seq_len;
    for (int i = 1; i < k; i++)
        if (models[i]->config.seq_len < smallest)
            smallest = models[i]->config.seq_len;
    return smallest;
}

int lx_models_context(LxModel *const *models, int k)
{
    return k > 0 ? models_context((const Model *const *)models, k) : 0;
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
    free(e->route);
    router_free(e->own_router);
    free(e->tokens);
    free(e->probs);
    free(e->mix);
    sampler_free(&e->sampler);
    memset(e, 0, sizeof *e);
}

/* The tokenizers: none, one shared, or one per member that must all be the same. */
static int check_tokenizers(const Model *const *models, int k, const Tokenizer *const *tokenizers, int n,
                            LxError *err)
{
    if (n != 0 && n != 1 && n != k)
        return fail(err, LX_ERR_ARGUMENT, "give one tokenizer for all members, or one per member: %d for %d members", n, k);
    int V = models[0]->config.vocab_size;
    for (int i = 0; i < n; i++) {
        if (tokenizer_vocab_size(tokenizers[i]) != V)
            return fail(err, LX_ERR_ARGUMENT, "%s has %d pieces but %s has vocab_size %d",
                        tokenizer_path(tokenizers[i]), tokenizer_vocab_size(tokenizers[i]), models[0]->path, V);
        char why[LX_ERROR_LENGTH];
        if (i > 0 && !tokenizer_same(tokenizers[0], tokenizers[i], why))
            return fail(err, LX_ERR_ARGUMENT, "%s and %s differ (%s): members must share one tokenizer",
                        tokenizer_path(tokenizers[0]), tokenizer_path(tokenizers[i]), why);
    }
    return 0;
}

int ensemble_init(Ensemble *e, const Model *const *models, int k, const Tokenizer *const *tokenizers,
                  int n_tokenizers, const EnsembleParams *params, LxError *err)
{
    memset(e, 0, sizeof *e);
    if (k < 1)
        return fail(err, LX_ERR_ARGUMENT, "an ensemble needs at least one member");
    const ModelConfig *first = &models[0]->config;
    for (int i = 1; i < k; i++)
        if (models[i]->config.vocab_size != first->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "%s has vocab_size %d but %s has %d: members must share one vocabulary",
                        models[i]->path, models[i]->config.vocab_size, models[0]->path, first->vocab_size);
    int rc;
    if ((rc = check_tokenizers(models, k, tokenizers, n_tokenizers, err)) ||
        (rc = sampler_params_check(&params->sampler, err)))
        return rc;
    if ((unsigned)params->mode > LX_MODE_CE_MIXTURE)
        return fail(err, LX_ERR_ARGUMENT, "unknown ensemble mode %d", (int)params->mode);
    int usable = models_context(models, k);
    if (params->n_ctx < 0 || params->n_ctx > usable)
        return fail(err, LX_ERR_ARGUMENT, "a context of %d tokens is more than %s%s holds (seq_len %d)",
                    params->n_ctx, k > 1 ? "the smallest member " : "", models[0]->path, usable);
    e->k = k;
    e->params = *params;
    e->params.threads = threads_resolve(params->threads);
    e->tokenizer = n_tokenizers > 0 ? tokenizers[0] : NULL;
    e->vocab_size = first->vocab_size;
    e->n_ctx = params->n_ctx > 0 ? params->n_ctx : usable;
    e->members = calloc((size_t)k, sizeof *e->members);
    e->weights = calloc((size_t)k, sizeof *e->weights);
    e->tokens = calloc((size_t)e->n_ctx, sizeof *e->tokens);
    e->probs = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
    e->mix = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
    if (!e->members || !e->weights || !e->tokens || !e->probs || !e->mix) {
        ensemble_free(e);
        return fail(err, LX_ERR_MEMORY, "out of memory for an ensemble with a context of %d tokens", params->n_ctx);
    }
    e->params.weights = e->weights;
    /* The router: the one given (its fixed weights are the ones reported), or the constant
     * router of the weights. */
    if (params->router && params->weights) {
        ensemble_free(e);
        return fail(err, LX_ERR_ARGUMENT, "give the ensemble weights or a router, not both");
    }
    if (params->router)
        rc = router_check_fit(params->router, k, first->vocab_size, err);
    else if ((rc = weights_normalise(params->weights, k, e->weights, err)) == 0 &&
             !(e->own_router = router_constant(k, e->weights, err)))
        rc = err ? err->status : LX_ERR_MEMORY;
    if (rc || !(e->route = calloc((size_t)k, sizeof *e->route))) {
        ensemble_free(e);
        return rc ? rc : fail(err, LX_ERR_MEMORY, "out of memory for an ensemble");
    }
    if (params->router)
        memcpy(e->weights, params->router->weights, sizeof(double) * (size_t)k);
    e->router = params->router ? params->router : e->own_router;
    for (int i = 0; i < k; i++) {
        Member *mb = &e->members[i];
        mb->model = models[i];
        mb->logits = alloc_zeroed((size_t)e->vocab_size, sizeof(float));
        LxError why = {LX_ERR_MEMORY, "out of memory"};
        if (!mb->logits || forward_state_init(&mb->state, &models[i]->config, e->n_ctx, 0, &why)) {
            ensemble_free(e);
            return fail(err, why.status, "%s: %s (a smaller context needs less)", models[i]->path, why.message);
        }
        mb->state.threads = e->params.threads;
    }
    if ((rc = sampler_init(&e->sampler, e->vocab_size, params->sampler, err))) {
        ensemble_free(e);
        return rc;
    }
    e->sampler.threads = e->params.threads;
    ensemble_seed(e, params->seed);
    return 0;
}

void ensemble_seed(Ensemble *e, uint64_t seed)
{
    e->params.seed = seed;
    rng_seed(&e->token_rng, seed);
    rng_seed(&e->member_rng, seed ^ MEMBER_STREAM);
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

int ensemble_append(Ensemble *e, const int *tokens, int n, LxError *err)
{
    if (n > e->n_ctx - e->n_tokens)
        return fail(err, LX_ERR_CONTEXT, "the sequence would hold %d tokens but the context is %d", e->n_tokens + n, e->n_ctx);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= e->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "token id %d is outside the vocabulary (0..%d)", tokens[i], e->vocab_size - 1);
        e->tokens[e->n_tokens + i] = tokens[i];
    }
    e->n_tokens += n;
    return 0;
}

/* The catch-up: every token member i has not seen, in one batched forward. */
const float *ensemble_sync(Ensemble *e, int i, LxError *err)
{
    Member *mb = &e->members[i];
    if (e->n_tokens == 0) {
        fail(err, LX_ERR_ARGUMENT, "the sequence is empty: give at least one token (BOS) before sampling");
        return NULL;
    }
    int pending = e->n_tokens - mb->n_seen;
    if (pending > 0) {
        if (forward(mb->model, &mb->state, e->tokens + mb->n_seen, pending, mb->n_seen, mb->logits, 0, err))
            return NULL;
        mb->forward_calls++;
        mb->tokens_processed += pending;
        mb->n_seen = e->n_tokens;
        /* One NaN or infinity in a weight reaches every logit: say so instead of sampling garbage. */
        for (int x = 0; x < e->vocab_size; x++)
            if (!isfinite(mb->logits[x])) {
                fail(err, LX_ERR_FILE, "%s: the logits at position %d are not finite (the checkpoint has NaN or infinite weights?)",
                     mb->model->path, e->n_tokens - 1);
                return NULL;
            }
    }
    return mb->logits;
}

/* The router's weights for the next token, into e->route: r(the whole sequence so far). */
static int route(Ensemble *e, LxError *err)
{
    if (e->n_tokens == 0)
        return fail(err, LX_ERR_ARGUMENT, "the sequence is empty: give at least one token (BOS) before sampling");
    e->router->ops->weights(e->router, e->tokens, e->n_tokens, e->route);
    return 0;
}

/* mix (V) = sum_k r_k X_k with r = e->route, X_k = S(p_k) if transformed, else the plain
 * softmax p_k. */
static int mixture(Ensemble *e, int transformed, float *mix, LxError *err)
{
    const int V = e->vocab_size;
    memset(mix, 0, sizeof(float) * (size_t)V);
    for (int i = 0; i < e->k; i++) {
        const float *logits = ensemble_sync(e, i, err);
        if (!logits)
            return err ? err->status : LX_ERR_ARGUMENT;
        if (transformed) {
            sampler_transform(&e->sampler, logits, e->probs);
        } else {
            memcpy(e->probs, logits, sizeof(float) * (size_t)V);
            softmax(e->probs, V);
        }
        float w = (float)e->route[i];
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

/* ME's member coin: the first k whose cumulative routed weight exceeds a uniform draw. */
static int pick_member(Ensemble *e)
{
    double coin = rng_float(&e->member_rng), cdf = 0;
    for (int i = 0; i < e->k - 1; i++) {
        cdf += e->route[i];
        if (coin < cdf)
            return i;
    }
    return e->k - 1;
}

int ensemble_step(Ensemble *e, int *token, int *member, float *prob, LxError *err)
{
    const int V = e->vocab_size;
    float p = 1.0f;
    int picked = -1, rc = route(e, err);
    if (rc)
        return rc;
    if (e->params.mode == LX_MODE_ME || e->k == 1) {
        /* ME: run only the picked member (catching it up), sample from S(p_k). With one member
         * CE is the same thing, and this path reproduces llama2.c's run for a seed. */
        picked = e->k == 1 ? 0 : pick_member(e);
        const float *logits = ensemble_sync(e, picked, err);
        if (!logits)
            return err ? err->status : LX_ERR_ARGUMENT;
        *token = sampler_sample(&e->sampler, logits, &e->token_rng, &p);
    } else if (e->params.mode == LX_MODE_CE_MIXTURE || greedy(e)) {
        /* The mixture of raw distributions, then the sampler on it (greedy: its argmax). */
        rc = mixture(e, 0, e->mix, err);
        if (rc)
            return rc;
        log_probs(e->mix, V);
        *token = sampler_sample(&e->sampler, e->mix, &e->token_rng, &p);
    } else {
        /* CE: q = sum_k r_k S(p_k), one coin. */
        rc = mixture(e, 1, e->mix, err);
        if (rc)
            return rc;
        *token = sample_from_probs(e->mix, V, rng_float(&e->token_rng));
        p = e->mix[*token];
    }
    if (member)
        *member = e->params.mode == LX_MODE_ME || e->k == 1 ? picked : -1;
    if (prob)
        *prob = p;
    return 0;
}

/* The batch (batch.c) runs the members' forwards for many sequences at once before each of them
 * steps, so it asks first which members the step will sync: ME's pick is made on a copy of the
 * member stream, so the step itself then draws the same member. */
int ensemble_plan(Ensemble *e, int *members, LxError *err)
{
    if (e->params.mode == LX_MODE_ME || e->k == 1) {
        if (route(e, err))
            return -1;
        Rng saved = e->member_rng;
        members[0] = e->k == 1 ? 0 : pick_member(e);
        e->member_rng = saved;
        return 1;
    }
    for (int i = 0; i < e->k; i++)
        members[i] = i;
    return e->k;
}

int ensemble_distribution(Ensemble *e, float *q, LxError *err)
{
    const int V = e->vocab_size;
    int rc = route(e, err);
    if (rc)
        return rc;
    if (e->params.mode == LX_MODE_ME || (e->params.mode == LX_MODE_CE && !greedy(e)) || e->k == 1)
        return mixture(e, 1, q, err);
    rc = mixture(e, 0, q, err);
    if (rc)
        return rc;
    log_probs(q, V);
    memcpy(e->mix, q, sizeof(float) * (size_t)V);
    sampler_transform(&e->sampler, e->mix, q);
    return 0;
}

/* ------------------------------------------------------------------ public API */

LxEnsembleParams lx_ensemble_defaults(void)
{
    return (LxEnsembleParams){.mode = LX_MODE_ME, .sampler = sampler_defaults()};
}

LxStatus lx_ensemble_new(LxModel *const *models, int k, LxTokenizer *const *tokenizers, int n_tokenizers,
                         const LxEnsembleParams *params, LxEnsemble **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *out = NULL;
    Ensemble *en = calloc(1, sizeof *en);
    if (!en)
        return (LxStatus)fail(e, LX_ERR_MEMORY, "out of memory for an ensemble");
    if (ensemble_init(en, (const Model *const *)models, k, (const Tokenizer *const *)tokenizers, n_tokenizers,
                      params, e)) {
        free(en);
        return e->status;
    }
    *out = en;
    return LX_OK;
}

void lx_ensemble_free(LxEnsemble *e)
{
    if (e) {
        ensemble_free(e);
        free(e);
    }
}

int lx_ensemble_size(const LxEnsemble *e) { return e->k; }
int lx_ensemble_context(const LxEnsemble *e) { return e->n_ctx; }
int lx_ensemble_length(const LxEnsemble *e) { return e->n_tokens; }
const LxEnsembleParams *lx_ensemble_params(const LxEnsemble *e) { return &e->params; }
const LxTokenizer *lx_ensemble_tokenizer(const LxEnsemble *e) { return e->tokenizer; }
const LxRouter *lx_ensemble_router(const LxEnsemble *e) { return e->router; }
void lx_ensemble_reset(LxEnsemble *e) { ensemble_reset(e); }
void lx_ensemble_set_seed(LxEnsemble *e, uint64_t seed) { ensemble_seed(e, seed); }

void lx_ensemble_member_counts(const LxEnsemble *e, int i, long *forward_calls, long *tokens_processed)
{
    *forward_calls = e->members[i].forward_calls;
    *tokens_processed = e->members[i].tokens_processed;
}

LxStatus lx_ensemble_append(LxEnsemble *e, const int *tokens, int n, LxError *err)
{
    LxError local, *er = err ? err : &local;
    return ensemble_append(e, tokens, n, er) ? er->status : LX_OK;
}

LxStatus lx_ensemble_sample(LxEnsemble *e, int *token, int *member, float *logprob, LxError *err)
{
    LxError local, *er = err ? err : &local;
    float prob = 1.0f;
    if (ensemble_step(e, token, member, &prob, er))
        return er->status;
    if (logprob)
        *logprob = logf(prob);
    return LX_OK;
}

LxStatus lx_ensemble_distribution(LxEnsemble *e, float *q, LxError *err)
{
    LxError local, *er = err ? err : &local;
    return ensemble_distribution(e, q, er) ? er->status : LX_OK;
}
