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

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A member's probability of an id, for ranking its top-k (probability down, then id up). */
typedef struct {
    float p;
    int id;
} RankedProb;

/* ME's member coins come from their own stream, so that with one member ME draws exactly the
 * token coins a single model would (and reproduces llama2.c for a seed). */
#define MEMBER_STREAM 0xD1B54A32D192ED03ull

static const char *MODE_NAMES[] = {"me", "ce", "ce-mixture", "ce-unite"}; /* in LxMode's order */
#define N_MODES 4

/* ce-unite's k when top-k is off: the paper's UniTE setting. */
#define UNITE_DEFAULT_TOP 10

LxStatus lx_mode_parse(const char *name, LxMode *mode, LxError *err)
{
    for (int i = 0; i < N_MODES; i++)
        if (strcmp(name, MODE_NAMES[i]) == 0) {
            *mode = (LxMode)i;
            return LX_OK;
        }
    return (LxStatus)fail(err, LX_ERR_ARGUMENT, "ensemble mode '%s' is not one of me, ce, ce-mixture, ce-unite", name);
}

const char *lx_mode_name(LxMode mode)
{
    return (unsigned)mode < N_MODES ? MODE_NAMES[mode] : "unknown";
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
            free(e->members[i].tokens);
            sampler_free(&e->members[i].sampler);
        }
    if (e->vocab)
        vocab_free(e->vocab);
    free(e->vocab);
    free(e->values);
    free(e->mark);
    free(e->ranked);
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

/* The tokenizers: none, one shared, or one per member, each of its member's vocabulary size.
 * *differ gets 1 when the members' tokenizers are not all the same: they then meet in a union
 * vocabulary (vocab.c). */
static int check_tokenizers(const Model *const *models, int k, const Tokenizer *const *tokenizers, int n,
                            int *differ, LxError *err)
{
    *differ = 0;
    if (n != 0 && n != 1 && n != k)
        return fail(err, LX_ERR_ARGUMENT, "give one tokenizer for all members, or one per member: %d for %d members", n, k);
    for (int i = 0; i < n; i++) {
        const Model *m = models[n == k ? i : 0];
        if (tokenizer_vocab_size(tokenizers[i]) != m->config.vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "%s has %d pieces but %s has vocab_size %d",
                        tokenizer_path(tokenizers[i]), tokenizer_vocab_size(tokenizers[i]), m->path, m->config.vocab_size);
        char why[LX_ERROR_LENGTH];
        if (i > 0 && !tokenizer_same(tokenizers[0], tokenizers[i], why))
            *differ = 1;
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
    int rc, differ;
    if ((rc = check_tokenizers(models, k, tokenizers, n_tokenizers, &differ, err)) ||
        (rc = sampler_params_check(&params->sampler, err)))
        return rc;
    for (int i = 1; i < k && !differ; i++)
        if (models[i]->config.vocab_size != first->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "%s has vocab_size %d but %s has %d: members must share one vocabulary, "
                        "or each bring its own tokenizer", models[i]->path, models[i]->config.vocab_size, models[0]->path,
                        first->vocab_size);
    if (differ && params->router)
        return fail(err, LX_ERR_ARGUMENT, "router %s keys on the ids of one vocabulary, but %s and %s differ: "
                    "routing needs members that share one tokenizer", params->router->path,
                    tokenizer_path(tokenizers[0]), tokenizer_path(tokenizers[1]));
    if ((unsigned)params->mode > LX_MODE_CE_UNITE)
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
    if (differ) {
        if (!(e->vocab = calloc(1, sizeof *e->vocab)))
            return fail(err, LX_ERR_MEMORY, "out of memory for the union vocabulary");
        if ((rc = vocab_init(e->vocab, tokenizers, k, err))) {
            ensemble_free(e);
            return rc;
        }
        e->vocab_size = e->vocab->size;
    }
    /* Scratch of every member's V and of the ensemble's (|U| with a union vocabulary). */
    int most = e->vocab_size;
    for (int i = 0; i < k; i++)
        most = models[i]->config.vocab_size > most ? models[i]->config.vocab_size : most;
    e->members = calloc((size_t)k, sizeof *e->members);
    e->weights = calloc((size_t)k, sizeof *e->weights);
    e->tokens = calloc((size_t)e->n_ctx, sizeof *e->tokens);
    e->probs = alloc_zeroed((size_t)most, sizeof(float));
    e->mix = alloc_zeroed((size_t)most, sizeof(float));
    e->values = alloc_zeroed((size_t)most, sizeof(float));
    e->mark = calloc((size_t)most, 1);
    e->ranked = calloc((size_t)most, sizeof(RankedProb));
    if (!e->members || !e->weights || !e->tokens || !e->probs || !e->mix || !e->values || !e->mark || !e->ranked) {
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
        mb->logits = alloc_zeroed((size_t)models[i]->config.vocab_size, sizeof(float));
        LxError why = {LX_ERR_MEMORY, "out of memory"};
        /* A shell (no weights: a member on another machine) needs no KV cache here. */
        if (!mb->logits || (models[i]->data && forward_state_init(&mb->state, &models[i]->config, e->n_ctx, 0, &why))) {
            ensemble_free(e);
            return fail(err, why.status, "%s: %s (a smaller context needs less)", models[i]->path, why.message);
        }
        mb->state.threads = e->params.threads;
        if (e->vocab) {
            mb->tokenizer = tokenizers[i];
            if (!(mb->tokens = calloc((size_t)e->n_ctx, sizeof *mb->tokens)) ||
                (rc = sampler_init(&mb->sampler, models[i]->config.vocab_size, params->sampler, err))) {
                ensemble_free(e);
                return mb->tokens ? rc : fail(err, LX_ERR_MEMORY, "out of memory for an ensemble");
            }
        }
    }
    if ((rc = sampler_init(&e->sampler, e->vocab_size, params->sampler, err))) {
        ensemble_free(e);
        return rc;
    }
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
    e->map_seconds = 0;
    for (int i = 0; i < e->k; i++) {
        e->members[i].n_seen = 0;
        e->members[i].forward_calls = 0;
        e->members[i].tokens_processed = 0;
        e->members[i].n_tokens = 0;
        e->members[i].unknown = 0;
        e->members[i].remote_started = 0;
    }
}

void ensemble_set_remote(Ensemble *e, int i, const RemoteForward *ops, void *user)
{
    Member *mb = &e->members[i];
    forward_state_free(&mb->state);
    mb->remote = ops;
    mb->remote_user = user;
    mb->remote_started = 0;
}

/* Member i's own sequence (its ids with a union vocabulary, else the shared one) and length. */
static const int *member_sequence(const Ensemble *e, int i, int *n)
{
    *n = e->vocab ? e->members[i].n_tokens : e->n_tokens;
    return e->vocab ? e->members[i].tokens : e->tokens;
}

/* A remote member's forward: started now unless remote_start() already did, then awaited. */
static int remote_forward(Member *mb, int i, const int *tokens, int n, int pos, LxError *err)
{
    if (!mb->remote_started && mb->remote->start(mb->remote_user, i, tokens, n, pos, err))
        return -1;
    mb->remote_started = 0;
    return mb->remote->finish(mb->remote_user, i, mb->logits, err);
}

/* Start every remote member's pending forward, so that they all run while this process computes
 * its own members: the sums below still take the members in order 0..k-1, as a local run does. */
static int remote_start(Ensemble *e, LxError *err)
{
    for (int i = 0; i < e->k; i++) {
        Member *mb = &e->members[i];
        int n;
        const int *seq = member_sequence(e, i, &n);
        if (!mb->remote || mb->remote_started || n - mb->n_seen <= 0)
            continue;
        if (mb->remote->start(mb->remote_user, i, seq + mb->n_seen, n - mb->n_seen, mb->n_seen, err))
            return err ? err->status : LX_ERR_ARGUMENT;
        mb->remote_started = 1;
    }
    return 0;
}

int ensemble_append(Ensemble *e, const int *tokens, int n, LxError *err)
{
    if (n > e->n_ctx - e->n_tokens)
        return fail(err, LX_ERR_CONTEXT, "the sequence would hold %d tokens but the context is %d", e->n_tokens + n, e->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= e->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "token id %d is outside the vocabulary (0..%d)", tokens[i], e->vocab_size - 1);
    if (e->vocab) {
        /* Every member gets feed(k, u) of each union token: check the room first, then copy. */
        double t0 = now_seconds();
        for (int m = 0; m < e->k; m++) {
            long need = e->members[m].n_tokens;
            for (int i = 0; i < n; i++) {
                int len;
                vocab_feed(e->vocab, m, tokens[i], &len);
                need += len;
            }
            if (need > e->n_ctx)
                return fail(err, LX_ERR_CONTEXT, "%s would hold %ld tokens but the context is %d",
                            e->members[m].model->path, need, e->n_ctx);
        }
        for (int m = 0; m < e->k; m++) {
            Member *mb = &e->members[m];
            for (int i = 0; i < n; i++) {
                int len;
                const int *ids = vocab_feed(e->vocab, m, tokens[i], &len);
                memcpy(mb->tokens + mb->n_tokens, ids, sizeof(int) * (size_t)len);
                mb->n_tokens += len;
                mb->unknown += e->vocab->feed_unknown[m][tokens[i]];
            }
        }
        e->map_seconds += now_seconds() - t0;
    }
    memcpy(e->tokens + e->n_tokens, tokens, sizeof(int) * (size_t)n);
    e->n_tokens += n;
    return 0;
}

int ensemble_fits(const Ensemble *e, int token)
{
    if (e->n_tokens >= e->n_ctx)
        return 0;
    for (int m = 0; e->vocab && m < e->k; m++) {
        int len;
        vocab_feed(e->vocab, m, token, &len);
        if (e->members[m].n_tokens + len > e->n_ctx)
            return 0;
    }
    return 1;
}

int ensemble_prompt(Ensemble *e, const char *text, LxError *err)
{
    if (!e->vocab)
        return fail(err, LX_ERR_ARGUMENT, "ensemble_prompt is for members of different vocabularies");
    ensemble_reset(e);
    size_t length = strlen(text);
    if (length > (size_t)INT_MAX - 3)
        return fail(err, LX_ERR_ARGUMENT, "the prompt is too long (%zu bytes)", length);
    int max_tokens = (int)length + 3, rc = 0;
    int *ids = malloc(sizeof(int) * (size_t)max_tokens);
    if (!ids)
        return fail(err, LX_ERR_MEMORY, "out of memory for a prompt of %zu bytes", length);
    for (int m = 0; m < e->k && !rc; m++) {
        Member *mb = &e->members[m];
        int n = 0;
        LxError why;
        if (tokenizer_encode(mb->tokenizer, text, 1, 0, ids, max_tokens, &n, &why))
            rc = fail(err, why.status, "prompt: %s: %s", tokenizer_path(mb->tokenizer), why.message);
        else if (n > e->n_ctx)
            rc = fail(err, LX_ERR_CONTEXT, "the prompt is %d tokens for %s but the context holds %d",
                      n, tokenizer_path(mb->tokenizer), e->n_ctx);
        else {
            memcpy(mb->tokens, ids, sizeof(int) * (size_t)n);
            mb->n_tokens = n;
        }
        if (m == 0 && !rc) /* the union sequence: member 0's prompt mapped into U */
            for (int i = 0; i < n; i++)
                e->tokens[i] = e->vocab->to_union[0][ids[i]];
        if (m == 0)
            e->n_tokens = rc ? 0 : n;
    }
    free(ids);
    return rc;
}

const char *ensemble_text(const Ensemble *e, int prev, int token)
{
    if (e->vocab)
        return vocab_text(e->vocab, prev, token);
    return e->tokenizer ? tokenizer_decode(e->tokenizer, prev, token) : "";
}

/* The catch-up: every token member i has not seen, in one batched forward. */
const float *ensemble_sync(Ensemble *e, int i, LxError *err)
{
    Member *mb = &e->members[i];
    if (e->n_tokens == 0) {
        fail(err, LX_ERR_ARGUMENT, "the sequence is empty: give at least one token (BOS) before sampling");
        return NULL;
    }
    int n;
    const int *seq = member_sequence(e, i, &n);
    int pending = n - mb->n_seen;
    if (pending > 0) {
        if (!mb->remote && !mb->model->data) {
            fail(err, LX_ERR_ARGUMENT, "%s is a shell without weights: its forward must run elsewhere", mb->model->path);
            return NULL;
        }
        if (mb->remote ? remote_forward(mb, i, seq + mb->n_seen, pending, mb->n_seen, err)
                       : forward(mb->model, &mb->state, seq + mb->n_seen, pending, mb->n_seen, mb->logits, 0, err))
            return NULL;
        mb->forward_calls++;
        mb->tokens_processed += pending;
        mb->n_seen = n;
        if (member_take_logits(mb, mb->logits, n - 1, err))
            return NULL;
    }
    return mb->logits;
}

int member_take_logits(Member *mb, const float *logits, int pos, LxError *err)
{
    const int V = mb->model->config.vocab_size;
    int finite = 1;
    if (logits != mb->logits)
        memcpy(mb->logits, logits, sizeof(float) * (size_t)V);
    for (int x = 0; x < V; x++)
        finite &= isfinite(mb->logits[x]) != 0;
    /* One NaN or infinity in a weight reaches every logit: say so instead of sampling garbage. */
    if (!finite)
        return fail(err, LX_ERR_FILE, "%s: the logits at position %d are not finite (the checkpoint has NaN or infinite weights?)",
                    mb->model->path, pos);
    return 0;
}

/* The router's weights for the next token, into e->route: r(the whole sequence so far). */
static int route(Ensemble *e, LxError *err)
{
    if (e->n_tokens == 0)
        return fail(err, LX_ERR_ARGUMENT, "the sequence is empty: give at least one token (BOS) before sampling");
    e->router->ops->weights(e->router, e->tokens, e->n_tokens, e->route);
    return 0;
}

/* Member i's V, and its id x as an ensemble id (its union id, or x itself). */
static int member_vocab(const Ensemble *e, int i) { return e->members[i].model->config.vocab_size; }
static int to_ensemble(const Ensemble *e, int i, int x) { return e->vocab ? e->vocab->to_union[i][x] : x; }

/* e->probs (V_i) = the plain softmax p_i of member i, synced. */
static int member_probs(Ensemble *e, int i, LxError *err)
{
    const float *logits = ensemble_sync(e, i, err);
    if (!logits)
        return err ? err->status : LX_ERR_ARGUMENT;
    memcpy(e->probs, logits, sizeof(float) * (size_t)member_vocab(e, i));
    softmax(e->probs, member_vocab(e, i));
    return 0;
}

/* mix (V) = sum_k r_k X_k with r = e->route, X_k = S(p_k) if transformed, else the plain
 * softmax p_k. With a union vocabulary X_k is taken in member k's own vocabulary (its own S)
 * and then mapped into U, ids spelling the same string adding. */
static int mixture(Ensemble *e, int transformed, float *mix, LxError *err)
{
    const int V = e->vocab_size;
    memset(mix, 0, sizeof(float) * (size_t)V);
    for (int i = 0; i < e->k; i++) {
        const float *logits = ensemble_sync(e, i, err);
        if (!logits)
            return err ? err->status : LX_ERR_ARGUMENT;
        int Vi = member_vocab(e, i);
        if (transformed) {
            sampler_transform(e->vocab ? &e->members[i].sampler : &e->sampler, logits, e->probs);
        } else {
            memcpy(e->probs, logits, sizeof(float) * (size_t)Vi);
            softmax(e->probs, Vi);
        }
        float w = (float)e->route[i];
        if (e->vocab) {
            double t0 = now_seconds();
            vocab_add(e->vocab, i, e->probs, Vi, w, mix);
            e->map_seconds += now_seconds() - t0;
        } else {
            for (int x = 0; x < V; x++)
                mix[x] += w * e->probs[x];
        }
    }
    return 0;
}

static int ranked_before(const void *a, const void *b)
{
    const RankedProb *x = a, *y = b;
    return x->p > y->p ? -1 : x->p < y->p ? 1 : (x->id > y->id) - (x->id < y->id);
}

/* e->mark (V) = 1 for the ensemble ids of the union of every member's top `top` ids by p_k. */
static int mark_top(Ensemble *e, int top, LxError *err)
{
    RankedProb *r = e->ranked;
    memset(e->mark, 0, (size_t)e->vocab_size);
    for (int i = 0; i < e->k; i++) {
        int rc = member_probs(e, i, err), Vi = member_vocab(e, i);
        if (rc)
            return rc;
        for (int x = 0; x < Vi; x++)
            r[x] = (RankedProb){e->probs[x], x};
        qsort(r, (size_t)Vi, sizeof *r, ranked_before);
        for (int j = 0; j < top && j < Vi; j++)
            e->mark[to_ensemble(e, i, r[j].id)] = 1;
    }
    return 0;
}

/* The paper's ce-mixture with top-k on one vocabulary: sum_k r_k p_k restricted to the union X
 * of the members' top-k ids and renormalised (S, with its own top-k, comes after). */
static int top_mixture(Ensemble *e, int top, float *mix, LxError *err)
{
    int rc = mark_top(e, top, err);
    if (rc || (rc = mixture(e, 0, mix, err)))
        return rc;
    double total = 0;
    for (int x = 0; x < e->vocab_size; x++)
        total += e->mark[x] ? mix[x] : (mix[x] = 0.0f);
    for (int x = 0; x < e->vocab_size && total > 0; x++)
        mix[x] = (float)(mix[x] / total);
    return 0;
}

/* UniTE (ce-unite): over the union X of the members' top-k ids, member k scores u by the sum of
 * p_k over its ids spelling u, or, lacking u, by p_k of the first id of feed(k, u); each member's
 * scores are renormalised over X and mixed with the weights (S comes after). */
static int unite(Ensemble *e, int top, float *mix, LxError *err)
{
    const int V = e->vocab_size;
    int rc = mark_top(e, top, err);
    if (rc)
        return rc;
    memset(mix, 0, sizeof(float) * (size_t)V);
    for (int i = 0; i < e->k; i++) {
        if ((rc = member_probs(e, i, err)))
            return rc;
        const float *p = e->probs;
        float *score = e->values;
        if (e->vocab) {
            memset(score, 0, sizeof(float) * (size_t)V);
            vocab_add(e->vocab, i, p, member_vocab(e, i), 1.0f, score);
            for (int u = 0; u < V; u++)
                if (e->mark[u] && e->vocab->single[i][u] < 0 && u >= 3) {
                    int n;
                    const int *ids = vocab_feed(e->vocab, i, u, &n);
                    score[u] = n > 0 ? p[ids[0]] : 0.0f;
                }
        } else {
            memcpy(score, p, sizeof(float) * (size_t)V);
        }
        double total = 0;
        for (int u = 0; u < V; u++)
            total += e->mark[u] ? score[u] : 0.0;
        float w = (float)e->route[i];
        for (int u = 0; u < V && total > 0; u++)
            if (e->mark[u])
                mix[u] += (float)(w * score[u] / total);
    }
    return 0;
}

/* The mixture that the modes applying S after mixing draw from, before S: ce-unite's, the
 * paper's ce-mixture (top-k restricted; with a union vocabulary and top-k that is ce-unite), or
 * the plain sum_k r_k p_k (ce-mixture without top-k, greedy CE). */
static int mixed(Ensemble *e, float *mix, LxError *err)
{
    int top = e->sampler.params.top_k;
    if (e->params.mode == LX_MODE_CE_UNITE || (e->params.mode == LX_MODE_CE_MIXTURE && e->vocab && top > 0))
        return unite(e, top > 0 ? top : UNITE_DEFAULT_TOP, mix, err);
    if (e->params.mode == LX_MODE_CE_MIXTURE && top > 0 && e->k > 1)
        return top_mixture(e, top, mix, err);
    return mixture(e, 0, mix, err);
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
        /* Different vocabularies: i ~ S(p_k) in the member's own vocabulary, u = its string. */
        Sampler *s = e->vocab ? &e->members[picked].sampler : &e->sampler;
        *token = to_ensemble(e, picked, sampler_sample(s, logits, &e->token_rng, &p));
    } else if ((rc = remote_start(e, err))) {
        return rc;
    } else if (e->params.mode == LX_MODE_CE_MIXTURE || e->params.mode == LX_MODE_CE_UNITE || greedy(e)) {
        /* The mixture of raw distributions, then the sampler on it (greedy: its argmax). */
        rc = mixed(e, e->mix, err);
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
    if (rc || (rc = remote_start(e, err)))
        return rc;
    if (e->params.mode == LX_MODE_ME || (e->params.mode == LX_MODE_CE && !greedy(e)) || e->k == 1)
        return mixture(e, 1, q, err);
    rc = mixed(e, q, err);
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

int lx_ensemble_vocab_size(const LxEnsemble *e) { return e->vocab_size; }
int lx_ensemble_shared_vocabulary(const LxEnsemble *e) { return e->vocab == NULL; }
long lx_ensemble_member_unknown(const LxEnsemble *e, int i) { return e->vocab ? e->members[i].unknown : 0; }
double lx_ensemble_mapping_seconds(const LxEnsemble *e) { return e->map_seconds; }
const char *lx_ensemble_token_text(const LxEnsemble *e, int prev, int token) { return ensemble_text(e, prev, token); }

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
