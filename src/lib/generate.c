/* generate.c: the generation loop, the one every caller shares (the CLI's generate and bench,
 * and any program embedding the library): draw a token, hand its text to the caller, append it,
 * until end of text, the token budget, a full context, a stop string, or the caller says stop.
 *
 * Stop strings. The text is cut before the first stop string, so text that might be the start
 * of one is held back until the next tokens decide: after each token the pending text is
 * searched for a complete stop string (then everything before it is released and generation
 * ends), otherwise everything but its longest suffix that begins some stop string is released. */
#include "config.h"
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

LxGenerateParams lx_generate_defaults(void)
{
    return (LxGenerateParams){.n_predict = 256};
}

const char *lx_stop_name(LxStopReason reason)
{
    switch (reason) {
    case LX_STOP_END: return "end of text";
    case LX_STOP_BUDGET: return "the token budget";
    case LX_STOP_CONTEXT: return "a full context";
    case LX_STOP_STRING: return "a stop string";
    case LX_STOP_CALLBACK: return "the caller's request";
    }
    return "unknown";
}


/* Room for one token's text: more than any real piece needs (the pending text grows past it
 * only for a longer one). */
#define PENDING_TOKEN_BYTES 1024

static int pending_add(Pending *p, const char *text, size_t n)
{
    if (p->length + n + 1 > p->capacity) {
        size_t capacity = 2 * (p->length + n + 1) > p->reserve ? 2 * (p->length + n + 1) : p->reserve;
        char *bigger = realloc(p->text, capacity);
        if (!bigger)
            return -1;
        p->text = bigger;
        p->capacity = capacity;
    }
    memcpy(p->text + p->length, text, n);
    p->length += n;
    p->text[p->length] = '\0';
    return 0;
}

/* The first complete stop string in the pending text: its index, and its offset in *at. */
static int find_stop(const Pending *p, const LxGenerateParams *g, size_t *at)
{
    int found = -1;
    for (int i = 0; i < g->n_stop; i++) {
        size_t n = strlen(g->stop[i]);
        for (size_t o = 0; n > 0 && o + n <= p->length && (found < 0 || o < *at); o++)
            if (memcmp(p->text + o, g->stop[i], n) == 0) {
                found = i;
                *at = o;
                break;
            }
    }
    return found;
}

/* How many bytes of the pending text are safe to release: all but the longest suffix that is a
 * proper prefix of some stop string. */
static size_t releasable(const Pending *p, const LxGenerateParams *g)
{
    size_t keep = 0;
    for (int i = 0; i < g->n_stop; i++) {
        size_t n = strlen(g->stop[i]);
        for (size_t len = n - 1 < p->length ? n - 1 : p->length; len > keep; len--)
            if (memcmp(p->text + p->length - len, g->stop[i], len) == 0) {
                keep = len;
                break;
            }
    }
    return p->length - keep;
}

static void pending_drop(Pending *p, size_t n)
{
    memmove(p->text, p->text + n, p->length - n + 1);
    p->length -= n;
}

int generation_begin(Generation *g, const int *prompt, int n_prompt, int n_ctx, const LxGenerateParams *params,
                     LxTokenCallback callback, void *user, LxError *err)
{
    memset(g, 0, sizeof *g);
    g->params = params ? *params : lx_generate_defaults();
    g->callback = callback;
    g->user = user;
    g->stats = (LxGenerateStats){.n_prompt = n_prompt, .stop = LX_STOP_BUDGET, .stop_index = -1};
    if (n_prompt < 1)
        return fail(err, LX_ERR_ARGUMENT, "the prompt is empty: give at least one token (BOS)");
    if (n_prompt > n_ctx)
        return fail(err, LX_ERR_CONTEXT, "the prompt is %d tokens but the context holds %d", n_prompt, n_ctx);
    for (int i = 0; i < g->params.n_stop; i++)
        if (!g->params.stop[i] || !g->params.stop[i][0])
            return fail(err, LX_ERR_ARGUMENT, "stop string %d is empty", i + 1);
    /* The pending text never holds more than the longest stop string and one token's text: the
     * first token allocates that once, so memory stays flat however long the generation (and
     * a Generation that never sees a token holds nothing). */
    size_t longest = 0;
    for (int i = 0; i < g->params.n_stop; i++)
        if (strlen(g->params.stop[i]) > longest)
            longest = strlen(g->params.stop[i]);
    g->pending.reserve = longest + PENDING_TOKEN_BYTES;
    g->prev = prompt[n_prompt - 1];
    g->start = g->first = g->last = now_seconds();
    g->done = g->params.n_predict == 0;
    return 0;
}

/* The distribution ensemble_step just drew from, rebuilt from what the step left behind: ME's
 * (or one member's) S(p_k) from the picked member's logits; CE's q = sum_k w_k S(p_k), which the
 * step left in e->mix; for ce-mixture, ce-unite and greedy CE, S of the log-mixture the step left
 * in e->mix. sampler_transform is the vector of the very list sampler_sample walked. e->probs is
 * free scratch after a step. NULL for ME with a union vocabulary (member k's S is in its own ids). */
static const float *drawn_distribution(Ensemble *e, int member)
{
    if (member >= 0) {
        if (e->vocab)
            return NULL;
        sampler_transform(&e->sampler, e->members[member].logits, e->probs);
        return e->probs;
    }
    if (e->params.mode == LX_MODE_CE && e->sampler.params.temperature != 0.0f)
        return e->mix;
    sampler_transform(&e->sampler, e->mix, e->probs);
    return e->probs;
}

int generation_token(Generation *g, Ensemble *e, int token, int member, float prob, LxError *err)
{
    LxGenerateStats *st = &g->stats;
    const LxGenerateParams *p = &g->params;
    Pending *pending = &g->pending;
    LxTokenEvent ev = {.token = token, .member = member, .index = st->n_generated};
    g->last = now_seconds();
    if (st->n_generated == 0)
        g->first = g->last;
    if (!p->ignore_eos && (token == TOKEN_BOS || token == TOKEN_EOS)) {
        st->stop = LX_STOP_END;
        g->done = 1;
        return 0;
    }
    st->n_generated++;
    ev.logprob = logf(prob);
    if (g->distribution && (ev.distribution = drawn_distribution(e, member)))
        ev.vocab_size = e->vocab_size;
    /* The text: released now, held back, or cut at a stop string. */
    const char *text = ensemble_text(e, g->prev, token);
    size_t at = 0, n_release;
    if (pending_add(pending, text, strlen(text))) {
        g->done = 1;
        return fail(err, LX_ERR_MEMORY, "out of memory for the generated text");
    }
    int hit = find_stop(pending, p, &at);
    n_release = hit >= 0 ? at : releasable(pending, p);
    ev.text = pending->text;
    ev.text_length = n_release;
    int stop_asked = g->callback && g->callback(g->user, &ev);
    pending_drop(pending, n_release);
    if (hit >= 0) {
        st->stop = LX_STOP_STRING;
        st->stop_index = hit;
        pending->length = 0;
        g->done = 1;
        return 0;
    }
    if (stop_asked) {
        st->stop = LX_STOP_CALLBACK;
        g->done = 1;
        return 0;
    }
    if (!ensemble_fits(e, token)) {
        st->stop = LX_STOP_CONTEXT;
        g->done = 1;
        return 0;
    }
    if (ensemble_append(e, &token, 1, err)) {
        g->done = 1;
        return err ? err->status : LX_ERR_CONTEXT;
    }
    g->prev = token;
    g->done = p->n_predict >= 0 && st->n_generated >= p->n_predict; /* the budget (stop is BUDGET) */
    return 0;
}

void generation_end(Generation *g, LxStatus status, LxGenerateStats *stats)
{
    if (status == LX_OK && g->pending.length > 0 && g->callback) {
        /* What was held back for a stop string that never came. */
        LxTokenEvent ev = {.token = -1, .member = -1, .index = g->stats.n_generated, .text = g->pending.text,
                           .text_length = g->pending.length};
        g->callback(g->user, &ev);
    }
    free(g->pending.text);
    g->pending = (Pending){0};
    g->stats.prompt_seconds = g->first - g->start;
    g->stats.generate_seconds = g->last - g->first;
    if (stats)
        *stats = g->stats;
}

/* The loop, once the prompt is in e and g has begun. */
static LxStatus generate_loop(LxEnsemble *e, Generation *g, LxGenerateStats *stats, LxError *er)
{
    LxStatus status = LX_OK;
    while (!g->done) {
        int token, member = -1;
        float prob;
        if (ensemble_step(e, &token, &member, &prob, er) || generation_token(g, e, token, member, prob, er)) {
            status = er->status;
            break;
        }
    }
    generation_end(g, status, stats);
    return status;
}

LxStatus lx_generate_tokens(LxEnsemble *e, const int *prompt, int n_prompt, const LxGenerateParams *params,
                            LxTokenCallback callback, void *user, LxGenerateStats *stats, LxError *err)
{
    LxError local, *er = err ? err : &local;
    Generation g;
    if (generation_begin(&g, prompt, n_prompt, e->n_ctx, params, callback, user, er))
        return er->status;
    ensemble_reset(e);
    ensemble_seed(e, e->params.seed);
    if (ensemble_append(e, prompt, n_prompt, er))
        return er->status;
    return generate_loop(e, &g, stats, er);
}

LxStatus lx_generate(LxEnsemble *e, const char *prompt, const LxGenerateParams *params,
                     LxTokenCallback callback, void *user, LxGenerateStats *stats, LxError *err)
{
    LxError local, *er = err ? err : &local;
    if (!e->tokenizer)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "this ensemble has no tokenizer: use lx_generate_tokens");
    if (e->vocab) {
        /* Different vocabularies: each member encodes the prompt with its own tokenizer. */
        Generation g;
        ensemble_seed(e, e->params.seed);
        if (ensemble_prompt(e, prompt, er) ||
            generation_begin(&g, e->tokens, e->n_tokens, e->n_ctx, params, callback, user, er))
            return er->status;
        return generate_loop(e, &g, stats, er);
    }
    size_t length = strlen(prompt);
    if (length > (size_t)INT_MAX - 3)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "the prompt is too long (%zu bytes)", length);
    int max_tokens = (int)length + 3, n_prompt;
    int *tokens = malloc(sizeof(int) * (size_t)max_tokens);
    if (!tokens)
        return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for a prompt of %zu bytes", length);
    LxStatus status = LX_OK;
    if (tokenizer_encode(e->tokenizer, prompt, 1, 0, tokens, max_tokens, &n_prompt, er))
        status = er->status;
    else
        status = lx_generate_tokens(e, tokens, n_prompt, params, callback, user, stats, er);
    free(tokens);
    return status;
}
