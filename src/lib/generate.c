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

/* The generated text not yet released: at most the longest stop string plus one token's text. */
typedef struct {
    char *text;
    size_t length, capacity;
} Pending;

static int pending_add(Pending *p, const char *text, size_t n)
{
    if (p->length + n + 1 > p->capacity) {
        size_t capacity = 2 * (p->length + n + 1);
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

LxStatus lx_generate_tokens(LxEnsemble *e, const int *prompt, int n_prompt, const LxGenerateParams *params,
                            LxTokenCallback callback, void *user, LxGenerateStats *stats, LxError *err)
{
    LxError local, *er = err ? err : &local;
    LxGenerateStats st = {.n_prompt = n_prompt, .stop = LX_STOP_BUDGET, .stop_index = -1};
    const LxGenerateParams g = params ? *params : lx_generate_defaults();
    if (n_prompt < 1)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "the prompt is empty: give at least one token (BOS)");
    if (n_prompt > e->n_ctx)
        return (LxStatus)fail(er, LX_ERR_CONTEXT, "the prompt is %d tokens but the context holds %d", n_prompt, e->n_ctx);
    for (int i = 0; i < g.n_stop; i++)
        if (!g.stop[i] || !g.stop[i][0])
            return (LxStatus)fail(er, LX_ERR_ARGUMENT, "stop string %d is empty", i + 1);
    ensemble_reset(e);
    ensemble_seed(e, e->params.seed);
    if (ensemble_append(e, prompt, n_prompt, er))
        return er->status;

    Pending pending = {0};
    LxStatus status = LX_OK;
    int prev = prompt[n_prompt - 1];
    double start = now_seconds(), first = start, last = start;
    while (g.n_predict < 0 || st.n_generated < g.n_predict) {
        LxTokenEvent ev = {.member = -1, .index = st.n_generated};
        float prob;
        if (ensemble_step(e, &ev.token, &ev.member, &prob, er)) {
            status = er->status;
            break;
        }
        last = now_seconds();
        if (st.n_generated == 0)
            first = last;
        if (!g.ignore_eos && (ev.token == TOKEN_BOS || ev.token == TOKEN_EOS)) {
            st.stop = LX_STOP_END;
            break;
        }
        st.n_generated++;
        ev.logprob = logf(prob);
        /* The text: released now, held back, or cut at a stop string. */
        const char *text = e->tokenizer ? tokenizer_decode(e->tokenizer, prev, ev.token) : "";
        size_t at = 0, n_release;
        if (pending_add(&pending, text, strlen(text))) {
            status = (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for the generated text");
            break;
        }
        int hit = find_stop(&pending, &g, &at);
        n_release = hit >= 0 ? at : releasable(&pending, &g);
        ev.text = pending.text;
        ev.text_length = n_release;
        int stop_asked = callback && callback(user, &ev);
        pending_drop(&pending, n_release);
        if (hit >= 0) {
            st.stop = LX_STOP_STRING;
            st.stop_index = hit;
            pending.length = 0;
            break;
        }
        if (stop_asked) {
            st.stop = LX_STOP_CALLBACK;
            break;
        }
        if (e->n_tokens == e->n_ctx) {
            st.stop = LX_STOP_CONTEXT;
            break;
        }
        if (ensemble_append(e, &ev.token, 1, er)) {
            status = er->status;
            break;
        }
        prev = ev.token;
    }
    if (status == LX_OK && pending.length > 0 && callback) {
        /* What was held back for a stop string that never came. */
        LxTokenEvent ev = {.token = -1, .member = -1, .index = st.n_generated, .text = pending.text,
                           .text_length = pending.length};
        callback(user, &ev);
    }
    free(pending.text);
    st.prompt_seconds = first - start;
    st.generate_seconds = last - first;
    if (stats)
        *stats = st;
    return status;
}

LxStatus lx_generate(LxEnsemble *e, const char *prompt, const LxGenerateParams *params,
                     LxTokenCallback callback, void *user, LxGenerateStats *stats, LxError *err)
{
    LxError local, *er = err ? err : &local;
    if (!e->tokenizer)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "this ensemble has no tokenizer: use lx_generate_tokens");
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
