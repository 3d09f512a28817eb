/* test_batch.c: many sequences at once. The multi-sequence forward against separate forwards
 * (with a negative control that lets rows read another sequence's cache), a batch's tokens against
 * separate runs with the matching seeds, ME's distribution within a batch against CE's exact one
 * (chi-square of 3-token continuations, PASS at p > 1e-6, negative controls rejected at
 * p < 1e-9, fixed seeds), and the scheduler (joining, leaving, the pool). */
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
#include "testutil.h"

#define TOLERANCE 1e-4 /* as test_forward.c: |a - b| <= tol (1 + |b|) */
#define PASS_P 1e-6
#define REJECT_P 1e-9
#define MIN_EXPECTED 5.0

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst))
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

static SamplerParams params(float temperature, int top_k, float top_p)
{
    SamplerParams p = {.temperature = temperature, .top_k = top_k, .top_p = top_p};
    return p;
}

/* ------------------------------------------------------------------ 1. the multi-sequence forward */

enum { SPANS = 5 };

/* Sequence j has prefix[j] tokens already in its cache and then a span of len[j] new ones; one
 * forward_spans over the five spans (cache-only states, a separate work state of max_batch rows)
 * against five separate forward() calls on full states. swap: give spans 0 and 1 each other's
 * caches (the negative control). Returns the largest relative difference of the logits. */
static double spans_vs_separate(const Model *m, int max_batch, int swap)
{
    LxError err[1];
    const ModelConfig *c = &m->config;
    const int V = c->vocab_size, n_ctx = 40;
    const int prefix[SPANS] = {6, 6, 0, 17, 3}, len[SPANS] = {1, 1, 9, 4, 1};
    const int modes[SPANS] = {FORWARD_LOGITS_LAST, FORWARD_LOGITS_ALL, FORWARD_LOGITS_ALL, FORWARD_LOGITS_LAST,
                              FORWARD_LOGITS_LAST};
    int tokens[SPANS][32];
    Rng r;
    rng_seed(&r, 7);
    for (int j = 0; j < SPANS; j++)
        for (int t = 0; t < 32; t++)
            tokens[j][t] = (int)(rng_u32(&r) % (uint32_t)V);
    ForwardState work, cache[SPANS], alone;
    assert_int_equal(forward_state_init(&work, c, n_ctx, max_batch, err), 0);
    ForwardSpan spans[SPANS];
    int rows = 0;
    for (int j = 0; j < SPANS; j++) {
        assert_int_equal(forward_cache_init(&cache[j], c, n_ctx, err), 0);
        if (prefix[j]) { /* the prefix through the batched path too, one span of its own */
            ForwardSpan p = {&cache[j], tokens[j], prefix[j], 0, FORWARD_LOGITS_NONE};
            assert_int_equal(forward_spans(m, &work, &p, 1, NULL, err), 0);
        }
        rows += modes[j] == FORWARD_LOGITS_ALL ? len[j] : 1;
    }
    for (int j = 0; j < SPANS; j++) {
        int from = swap && j < 2 ? 1 - j : j;
        spans[j] = (ForwardSpan){&cache[from], tokens[j] + prefix[j], len[j], prefix[j], modes[j]};
    }
    float *got = malloc(sizeof(float) * (size_t)rows * V), *want = malloc(sizeof(float) * (size_t)rows * V);
    assert_int_equal(forward_spans(m, &work, spans, SPANS, got, err), 0);
    float *w = want;
    for (int j = 0; j < SPANS; j++) {
        assert_int_equal(forward_state_init(&alone, c, n_ctx, 0, err), 0);
        int all = modes[j] == FORWARD_LOGITS_ALL;
        if (prefix[j])
            assert_int_equal(forward(m, &alone, tokens[j], prefix[j], 0, NULL, 0, err), 0);
        assert_int_equal(forward(m, &alone, tokens[j] + prefix[j], len[j], prefix[j], w, all, err), 0);
        w += (size_t)(all ? len[j] : 1) * V;
        forward_state_free(&alone);
    }
    double diff = max_rel_diff(got, want, (size_t)rows * V);
    free(got);
    free(want);
    for (int j = 0; j < SPANS; j++)
        forward_state_free(&cache[j]);
    forward_state_free(&work);
    return diff;
}

static void test_spans_equal_separate(void **state)
{
    (void)state;
    TestMembers ms; /* grouped-query (4/2), multi-head (2/2), multi-query (4/1) */
    test_members_open(&ms, 3, 40, 300);
    for (int i = 0; i < 3; i++)
        for (int blas = 0; blas <= 1; blas++) {
            kernels_set_blas_min_rows(blas ? 1 : 1000000);
            double one_chunk = spans_vs_separate(&ms.models[i], 0, 0);
            double chunks = spans_vs_separate(&ms.models[i], 4, 0); /* spans straddle chunks of 4 rows */
            double swapped = spans_vs_separate(&ms.models[i], 0, 1);
            print_message("    member %d (heads %d/%d), %s: batched vs separate %.3g, in chunks of 4 %.3g; "
                          "rows on another sequence's cache %.3g\n", i + 1, ms.models[i].config.n_heads,
                          ms.models[i].config.n_kv_heads, blas ? "BLAS" : "streaming", one_chunk, chunks, swapped);
            assert_true(one_chunk <= TOLERANCE);
            assert_true(chunks <= TOLERANCE);
            assert_true(swapped > 100 * TOLERANCE); /* the comparison sees a row on the wrong cache */
        }
    kernels_set_blas_min_rows(0);
    test_members_close(&ms);
}

static void test_spans_refusals(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 1, 16, 5);
    LxError err[1];
    const ModelConfig *c = &ms.models[0].config;
    ForwardState work, a, big;
    assert_int_equal(forward_state_init(&work, c, 8, 0, err), 0);
    assert_int_equal(forward_cache_init(&a, c, 8, err), 0);
    assert_int_equal(forward_cache_init(&big, c, 16, err), 0);
    int tokens[4] = {1, 2, 3, 4};
    ForwardSpan same[2] = {{&a, tokens, 2, 0, FORWARD_LOGITS_LAST}, {&a, tokens, 2, 2, FORWARD_LOGITS_LAST}};
    assert_int_equal(forward_spans(&ms.models[0], &work, same, 2, NULL, err), LX_ERR_ARGUMENT);
    assert_non_null(strstr(err->message, "share one cache"));
    ForwardSpan larger = {&big, tokens, 2, 0, FORWARD_LOGITS_LAST};
    assert_int_equal(forward_spans(&ms.models[0], &work, &larger, 1, NULL, err), LX_ERR_ARGUMENT);
    ForwardSpan full = {&a, tokens, 4, 6, FORWARD_LOGITS_LAST};
    assert_int_equal(forward_spans(&ms.models[0], &work, &full, 1, NULL, err), LX_ERR_CONTEXT);
    ForwardSpan ok = {&a, tokens, 4, 0, FORWARD_LOGITS_LAST};
    assert_int_equal(forward_spans(&ms.models[0], &a, &ok, 1, NULL, err), LX_ERR_ARGUMENT); /* no scratch */
    assert_non_null(strstr(err->message, "cache-only"));
    assert_int_equal(forward_cache_bytes(c, 8), 2 * sizeof(float) * (size_t)c->n_layers * 8 * model_kv_dim(c));
    forward_state_free(&work);
    forward_state_free(&a);
    forward_state_free(&big);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 2. batched tokens = separate runs */

enum { MAX_TOKENS = 64 };

typedef struct {
    int tokens[MAX_TOKENS], members[MAX_TOKENS], n;
    float logprobs[MAX_TOKENS];
    int ended; /* set when the batch reports it finished */
    int late;  /* events after that */
} Record;

static int record(void *user, const LxTokenEvent *ev)
{
    Record *r = user;
    if (r->ended)
        r->late++;
    if (ev->token >= 0 && r->n < MAX_TOKENS) {
        r->tokens[r->n] = ev->token;
        r->members[r->n] = ev->member;
        r->logprobs[r->n++] = ev->logprob;
    }
    return 0;
}

/* How close the draw at step `at` of a lone run was to a tie: the distance from its token coin to
 * the nearest boundary of the cumulative distribution it was drawn from (in id order). */
static double tie_margin(const TestMembers *ms, const EnsembleParams *ep, const int *prompt, int n_prompt,
                         const int *tokens, int at)
{
    LxError err[1];
    Ensemble e;
    assert_int_equal(ensemble_init(&e, ms->members, ms->k, NULL, 0, ep, err), 0);
    assert_int_equal(ensemble_append(&e, prompt, n_prompt, err), 0);
    for (int t = 0; t < at; t++) {
        int token;
        assert_int_equal(ensemble_step(&e, &token, NULL, NULL, err), 0);
        assert_int_equal(ensemble_append(&e, &tokens[t], 1, err), 0);
    }
    float q[64];
    int plan[TEST_MAX_MEMBERS];
    ensemble_plan(&e, plan, err);
    if (e.params.mode == LX_MODE_ME || e.k == 1)
        sampler_transform(&e.sampler, ensemble_sync(&e, plan[0], err), q);
    else
        assert_int_equal(ensemble_distribution(&e, q, err), 0);
    Rng coins = e.token_rng;
    double coin = rng_float(&coins), cdf = 0, margin = 1;
    for (int x = 0; x < e.vocab_size; x++) {
        cdf += q[x];
        margin = fmin(margin, fabs(coin - cdf));
    }
    ensemble_free(&e);
    return margin;
}

static void check_tokens(const TestMembers *ms, LxMode mode, SamplerParams sp, int max_active)
{
    enum { SEQS = 7 };
    LxError err[1];
    const double W[3] = {0.5, 0.3, 0.2};
    EnsembleParams ep = {.weights = ms->k > 1 ? W : NULL, .n_ctx = 48, .mode = mode, .sampler = sp};
    LxGenerateParams g = {.n_predict = 30};
    int prompts[SEQS][8];
    for (int j = 0; j < SEQS; j++)
        for (int t = 0; t < 8; t++)
            prompts[j][t] = t == 0 ? TOKEN_BOS : 3 + (j * 5 + t * 3) % 13;
    static Record batch[SEQS], alone[SEQS];
    memset(batch, 0, sizeof batch);
    memset(alone, 0, sizeof alone);
    LxBatch *b;
    assert_int_equal(lx_batch_new((LxModel *const *)ms->members, ms->k, NULL, 0, &ep, max_active, &b, err), 0);
    for (int j = 0; j < SEQS; j++) {
        int id;
        assert_int_equal(lx_batch_add(b, prompts[j], 1 + j % 6, 40 + (uint64_t)j, &g, record, &batch[j], &id, err), 0);
        assert_int_equal(id, j);
    }
    while (lx_batch_active(b) + lx_batch_waiting(b) > 0) {
        assert_int_equal(lx_batch_step(b, err), 0);
        int id;
        while (lx_batch_finished(b, &id, NULL))
            batch[id].ended = 1;
    }
    lx_batch_free(b);
    for (int j = 0; j < SEQS; j++) {
        Ensemble e;
        ep.seed = 40 + (uint64_t)j;
        assert_int_equal(ensemble_init(&e, ms->members, ms->k, NULL, 0, &ep, err), 0);
        assert_int_equal(lx_generate_tokens(&e, prompts[j], 1 + j % 6, &g, record, &alone[j], NULL, err), 0);
        ensemble_free(&e);
        assert_int_equal(batch[j].late, 0);
        int t = 0;
        while (t < batch[j].n && t < alone[j].n && batch[j].tokens[t] == alone[j].tokens[t])
            t++;
        if (t < batch[j].n || t < alone[j].n) {
            /* a flip: say how close the tie was, and fail unless it was float rounding's to make */
            double margin = tie_margin(ms, &ep, prompts[j], 1 + j % 6, alone[j].tokens, t);
            print_message("    %s K=%d sequence %d: token %d differs (batch %d, alone %d); its coin was %.3g from a "
                          "boundary of the distribution\n", lx_mode_name(mode), ms->k, j, t,
                          t < batch[j].n ? batch[j].tokens[t] : -1, t < alone[j].n ? alone[j].tokens[t] : -1, margin);
            assert_true(margin < 1e-5);
            continue;
        }
        assert_memory_equal(batch[j].members, alone[j].members, sizeof(int) * (size_t)alone[j].n);
        for (int i = 0; i < alone[j].n; i++)
            assert_true(fabsf(batch[j].logprobs[i] - alone[j].logprobs[i]) < 1e-4f);
    }
}

/* lx_batch_add_sequence: sequences with their own mode, weights and sampler, side by side in one
 * batch, each draw exactly what a lone run with those settings draws; and the distribution each
 * event carries sums to 1 and gives the chosen token exp(logprob). */
typedef struct {
    Record r;
    int checked, bad;
} DistRecord;

static int record_distribution(void *user, const LxTokenEvent *ev)
{
    DistRecord *d = user;
    if (ev->token >= 0) {
        double total = 0;
        for (int x = 0; ev->distribution && x < ev->vocab_size; x++)
            total += ev->distribution[x];
        d->bad += !ev->distribution || fabs(total - 1) > 1e-4 ||
                  fabs(ev->distribution[ev->token] - expf(ev->logprob)) > 1e-5;
        d->checked++;
    }
    return record(&d->r, ev);
}

static void test_sequence_settings(void **state)
{
    (void)state;
    enum { SEQS = 6 };
    LxError err[1];
    TestMembers ms;
    test_members_open(&ms, 3, 16, 21);
    const double W1[3] = {0.6, 0.3, 0.1}, W2[3] = {0.1, 0.2, 0.7};
    const struct {
        LxMode mode;
        const double *w;
        SamplerParams sp;
    } seq[SEQS] = {{LX_MODE_ME, W1, params(1.0f, 0, 0.9f)}, {LX_MODE_CE, W2, params(0.8f, 0, 1.0f)},
                   {LX_MODE_CE_MIXTURE, NULL, params(1.2f, 4, 1.0f)}, {LX_MODE_ME, W2, params(0.0f, 0, 1.0f)},
                   {LX_MODE_CE, NULL, params(1.0f, 3, 0.8f)}, {LX_MODE_CE, W1, params(0.0f, 0, 1.0f)}};
    EnsembleParams ep = {.n_ctx = 48, .mode = LX_MODE_ME, .sampler = params(1.0f, 0, 0.9f)};
    LxGenerateParams g = {.n_predict = 25};
    static DistRecord batch[SEQS];
    static Record alone[SEQS];
    memset(batch, 0, sizeof batch);
    memset(alone, 0, sizeof alone);
    const int prompt[3] = {TOKEN_BOS, 5, 9};
    LxBatch *b;
    assert_int_equal(lx_batch_new((LxModel *const *)ms.members, ms.k, NULL, 0, &ep, 4, &b, err), 0);
    for (int j = 0; j < SEQS; j++) {
        LxSequenceParams sp = lx_batch_sequence_defaults(b);
        sp.mode = seq[j].mode;
        sp.weights = seq[j].w;
        sp.sampler = seq[j].sp;
        sp.seed = 70 + (uint64_t)j;
        sp.generate = g;
        sp.distribution = 1;
        assert_int_equal(lx_batch_add_sequence(b, prompt, 3, &sp, record_distribution, &batch[j], NULL, err), 0);
    }
    LxSequenceParams bad = lx_batch_sequence_defaults(b);
    const double zero[3] = {1, 0, 1};
    bad.weights = zero;
    assert_int_equal(lx_batch_add_sequence(b, prompt, 3, &bad, NULL, NULL, NULL, err), LX_ERR_ARGUMENT);
    bad.weights = NULL;
    bad.mode = (LxMode)99;
    assert_int_equal(lx_batch_add_sequence(b, prompt, 3, &bad, NULL, NULL, NULL, err), LX_ERR_ARGUMENT);
    while (lx_batch_active(b) + lx_batch_waiting(b) > 0)
        assert_int_equal(lx_batch_step(b, err), 0);
    lx_batch_free(b);
    int differ_from_default = 0, checked = 0;
    for (int j = 0; j < SEQS; j++) {
        checked += batch[j].checked;
        EnsembleParams lone = {.weights = seq[j].w, .n_ctx = 48, .mode = seq[j].mode, .sampler = seq[j].sp,
                               .seed = 70 + (uint64_t)j};
        Ensemble e;
        assert_int_equal(ensemble_init(&e, ms.members, ms.k, NULL, 0, &lone, err), 0);
        assert_int_equal(lx_generate_tokens(&e, prompt, 3, &g, record, &alone[j], NULL, err), 0);
        ensemble_free(&e);
        if (batch[j].bad)
            print_message("    sequence %d: %d of %d events with a wrong distribution\n", j, batch[j].bad, batch[j].checked);
        assert_true(batch[j].bad == 0);
        int t = 0;
        while (t < batch[j].r.n && t < alone[j].n && batch[j].r.tokens[t] == alone[j].tokens[t])
            t++;
        if (t < batch[j].r.n || t < alone[j].n)
            assert_true(tie_margin(&ms, &lone, prompt, 3, alone[j].tokens, t) < 1e-5); /* float rounding only */
        /* The negative control: the batch's own settings with the same seed draw another text. */
        Record dflt = {0};
        ep.seed = lone.seed;
        assert_int_equal(ensemble_init(&e, ms.members, ms.k, NULL, 0, &ep, err), 0);
        assert_int_equal(lx_generate_tokens(&e, prompt, 3, &g, record, &dflt, NULL, err), 0);
        ensemble_free(&e);
        differ_from_default += dflt.n != alone[j].n || memcmp(dflt.tokens, alone[j].tokens, sizeof(int) * (size_t)dflt.n);
    }
    assert_true(differ_from_default >= SEQS - 1);
    assert_true(checked >= 40); /* (a sequence may end at once on end of text) */
    test_members_close(&ms);
}

static void test_tokens_equal_separate_runs(void **state)
{
    (void)state;
    TestMembers one, three;
    test_members_open(&one, 1, 16, 1000);
    test_members_open(&three, 3, 16, 1000);
    SamplerParams settings[] = {params(1, 0, 1), params(0.8f, 5, 0.9f), params(0, 0, 1)};
    for (int s = 0; s < 3; s++) {
        check_tokens(&one, LX_MODE_ME, settings[s], 3);
        for (int mode = LX_MODE_ME; mode <= LX_MODE_CE_MIXTURE; mode++) {
            check_tokens(&three, (LxMode)mode, settings[s], 3); /* joiners prefill beside decodes */
            check_tokens(&three, (LxMode)mode, settings[s], 7); /* all at once */
        }
    }
    test_members_close(&one);
    test_members_close(&three);
}

/* ------------------------------------------------------------------ 3. ME within a batch */

enum { SEQ_V = 8, SEQ_L = 3, SEQ_CELLS = SEQ_V * SEQ_V * SEQ_V };

/* Exact P(x1 x2 x3 | prompt) under CE: the product of CE's q at each prefix, enumerated. */
static void sequence_probabilities(const TestMembers *ms, const double *w, SamplerParams sp, const int *prompt,
                                   int n_prompt, double *prob)
{
    LxError err[1];
    Ensemble ce;
    assert_int_equal(test_ensemble_init(&ce, ms->members, w, ms->k, 0, LX_MODE_CE, sp, 1, err), 0);
    test_sequence_probabilities(&ce, prompt, n_prompt, prob);
    ensemble_free(&ce);
}

typedef struct {
    int cell, n;
} Cell;

static int cell_token(void *user, const LxTokenEvent *ev)
{
    Cell *c = user;
    if (ev->token >= 0) {
        c->cell = c->cell * SEQ_V + ev->token;
        c->n++;
    }
    return 0;
}

/* RUNS sequences of 3 tokens, drawn in one batch of `active` at once (seed + j for sequence j).
 * swap_caches: the negative control: after every step, neighbouring sequences trade their
 * members' KV caches, so rows attend to another sequence's cache. */
static void batch_counts(const TestMembers *ms, const double *w, SamplerParams sp, const int *prompt, int n_prompt,
                         long runs, int active, int swap_caches, long *counts)
{
    LxError err[1];
    EnsembleParams ep = {.weights = w, .mode = LX_MODE_ME, .sampler = sp};
    LxGenerateParams g = {.n_predict = SEQ_L, .ignore_eos = 1};
    LxBatch *b;
    assert_int_equal(lx_batch_new((LxModel *const *)ms->members, ms->k, NULL, 0, &ep, active, &b, err), 0);
    Cell *cells = calloc((size_t)runs, sizeof *cells);
    for (long j = 0; j < runs; j++)
        assert_int_equal(lx_batch_add(b, prompt, n_prompt, 9000 + (uint64_t)j, &g, cell_token, &cells[j], NULL, err), 0);
    while (lx_batch_active(b) + lx_batch_waiting(b) > 0) {
        assert_int_equal(lx_batch_step(b, err), 0);
        for (int s = 0; swap_caches && s + 1 < b->max_active; s += 2) {
            BatchSlot *x = &b->slots[s], *y = &b->slots[s + 1];
            for (int i = 0; x->id >= 0 && y->id >= 0 && i < ms->k; i++)
                if (x->e.members[i].n_seen == y->e.members[i].n_seen) {
                    ForwardState t = x->e.members[i].state;
                    x->e.members[i].state = y->e.members[i].state;
                    y->e.members[i].state = t;
                }
        }
        while (lx_batch_finished(b, NULL, NULL))
            ;
    }
    memset(counts, 0, sizeof(long) * SEQ_CELLS);
    for (long j = 0; j < runs; j++) {
        assert_int_equal(cells[j].n, SEQ_L);
        counts[cells[j].cell]++;
    }
    free(cells);
    lx_batch_free(b);
}

static void test_me_batch_distribution(void **state)
{
    (void)state;
    enum { RUNS = 150000 };
    TestMembers ms;
    test_members_open(&ms, 3, SEQ_V, 1000);
    const double W[3] = {0.7, 0.2, 0.1}, W_SWAPPED[3] = {0.1, 0.2, 0.7};
    int prompt[2] = {TOKEN_BOS, 4};
    SamplerParams settings[] = {params(1, 0, 1), params(0.8f, 5, 0.95f)};
    static double prob[SEQ_CELLS], prob_wrong[SEQ_CELLS];
    static long counts[SEQ_CELLS];
    for (int s = 0; s < 2; s++) {
        sequence_probabilities(&ms, W, settings[s], prompt, 2, prob);
        sequence_probabilities(&ms, W_SWAPPED, settings[s], prompt, 2, prob_wrong);
        batch_counts(&ms, W, settings[s], prompt, 2, RUNS, 16, 0, counts);
        double p = chi_square_test(counts, prob, SEQ_CELLS, MIN_EXPECTED, NULL, NULL);
        double p_wrong = chi_square_test(counts, prob_wrong, SEQ_CELLS, MIN_EXPECTED, NULL, NULL);
        batch_counts(&ms, W, settings[s], prompt, 2, RUNS, 16, 1, counts);
        double p_swapped = chi_square_test(counts, prob, SEQ_CELLS, MIN_EXPECTED, NULL, NULL);
        print_message("    ME in batches of 16, sequences of 3, T=%.1f top-k %d: vs CE p=%.3g; vs swapped weights "
                      "p=%.3g; with rows on another sequence's cache p=%.3g\n", settings[s].temperature,
                      settings[s].top_k, p, p_wrong, p_swapped);
        assert_true(p > PASS_P);
        assert_true(p_wrong < REJECT_P);
        assert_true(p_swapped < REJECT_P);
    }
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 4. the scheduler */

typedef struct {
    long *step;   /* the batch's step counter */
    long first, last, events;
    long ended_at; /* -1 until finished */
    int stop_after; /* the callback asks to stop after this many tokens (0: never) */
} Watch;

static int watch(void *user, const LxTokenEvent *ev)
{
    Watch *w = user;
    if (w->events++ == 0)
        w->first = *w->step;
    w->last = *w->step;
    (void)ev;
    return w->stop_after && w->events >= w->stop_after;
}

static void test_scheduler(void **state)
{
    (void)state;
    enum { SEQS = 12, ACTIVE = 3 };
    TestMembers ms;
    test_members_open(&ms, 2, 16, 1000);
    LxError err[1];
    EnsembleParams ep = {.mode = LX_MODE_CE, .n_ctx = 24, .sampler = params(1, 0, 1)};
    LxBatch *b;
    assert_int_equal(lx_batch_new((LxModel *const *)ms.members, 2, NULL, 0, &ep, ACTIVE, &b, err), 0);
    long step = 0;
    static Watch w[SEQS];
    int prompt[3] = {TOKEN_BOS, 5, 7};
    for (int j = 0; j < SEQS; j++) {
        w[j] = (Watch){.step = &step, .first = -1, .ended_at = -1, .stop_after = j == 5 ? 2 : 0};
        /* budgets 0..6 tokens; one that runs into the context (24 - 3 = 21 tokens at most) */
        LxGenerateParams g = {.n_predict = j == 7 ? -1 : j % 7, .ignore_eos = 1};
        assert_int_equal(lx_batch_add(b, prompt, 3, (uint64_t)j, &g, watch, &w[j], NULL, err), 0);
    }
    assert_int_equal(lx_batch_waiting(b), SEQS);
    assert_int_equal(lx_batch_remove(b, 10, err), 0); /* leaves while waiting */
    int finished[SEQS] = {0};
    LxGenerateStats stats[SEQS];
    int n_finished = 0, removed = 0;
    for (step = 0; lx_batch_active(b) + lx_batch_waiting(b) > 0; step++) {
        assert_true(step < 200); /* nobody starves */
        assert_int_equal(lx_batch_step(b, err), 0);
        if (w[4].events == 2 && !removed) /* leaves while active, halfway through its 4 tokens */
            assert_int_equal(lx_batch_remove(b, 4, err), 0), removed = 1;
        assert_true(lx_batch_active(b) <= ACTIVE);
        assert_true(lx_batch_pool_bytes(b) <= ACTIVE * lx_batch_sequence_bytes(b));
        int id;
        LxGenerateStats st;
        while (lx_batch_finished(b, &id, &st)) {
            stats[id] = st;
            assert_int_equal(finished[id], 0); /* each ends once */
            finished[id] = 1;
            w[id].ended_at = step;
            n_finished++;
        }
    }
    assert_int_not_equal(lx_batch_remove(b, 10, err), 0); /* gone */
    for (int j = 0; j < SEQS; j++) {
        if (j == 10 || j == 4) {
            assert_int_equal(finished[j], 0);
            assert_int_equal(w[j].events, j == 4 ? 2 : 0); /* none after it left */
            continue;
        }
        assert_int_equal(finished[j], 1);
        assert_true(w[j].events == 0 || w[j].last <= w[j].ended_at); /* never stepped after it ended */
        assert_int_equal(stats[j].n_generated, w[j].events);
        if (j == 5)
            assert_int_equal(stats[j].stop, LX_STOP_CALLBACK);
        else if (j == 7)
            assert_int_equal(stats[j].stop, LX_STOP_CONTEXT);
        else
            assert_int_equal(stats[j].stop, LX_STOP_BUDGET);
        if (j != 5 && j != 7)
            assert_int_equal(stats[j].n_generated, j % 7);
    }
    /* first come, first served: sequences start in the order they were added */
    for (int j = 1, prev = 0; j < SEQS; j++)
        if (w[j].events) {
            assert_true(w[j].first >= w[prev].first);
            prev = j;
        }
    /* the pool: the states of ACTIVE sequences, made once and reused */
    size_t pool = lx_batch_pool_bytes(b);
    assert_int_equal(pool, ACTIVE * lx_batch_sequence_bytes(b));
    LxGenerateParams g = {.n_predict = 2};
    for (int j = 0; j < 5; j++)
        assert_int_equal(lx_batch_add(b, prompt, 3, 99, &g, NULL, NULL, NULL, err), 0);
    while (lx_batch_active(b) + lx_batch_waiting(b) > 0)
        assert_int_equal(lx_batch_step(b, err), 0);
    assert_int_equal(lx_batch_pool_bytes(b), pool);
    /* CE: every member ran once per step for all the sequences together */
    long calls, rows;
    lx_batch_member_counts(b, 0, &calls, &rows);
    assert_true(calls > 0 && rows >= calls);
    /* refusals */
    int bad = 16;
    assert_int_equal(lx_batch_add(b, &bad, 1, 0, NULL, NULL, NULL, NULL, err), LX_ERR_ARGUMENT);
    assert_int_equal(lx_batch_add(b, prompt, 0, 0, NULL, NULL, NULL, NULL, err), LX_ERR_ARGUMENT);
    int many[25] = {0};
    assert_int_equal(lx_batch_add(b, many, 25, 0, NULL, NULL, NULL, NULL, err), LX_ERR_CONTEXT);
    lx_batch_free(b);
    LxBatch *none;
    assert_int_equal(lx_batch_new((LxModel *const *)ms.members, 2, NULL, 0, &ep, 0, &none, err), LX_ERR_ARGUMENT);
    assert_null(none);
    lx_batch_free(NULL);
    test_members_close(&ms);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_spans_equal_separate),
        cmocka_unit_test(test_spans_refusals),
        cmocka_unit_test(test_tokens_equal_separate_runs),
        cmocka_unit_test(test_me_batch_distribution),
        cmocka_unit_test(test_scheduler),
        cmocka_unit_test(test_sequence_settings),
    };
    return cmocka_run_group_tests(own, NULL, NULL);
}
