/* test_ensemble.c: ME samples exactly from CE's distribution.
 *
 * Every statistical test here uses a fixed seed, Pearson's chi-square (tests/stats.h) with cells
 * of expected count < 5 pooled, and two thresholds: the claim must PASS at p > 1e-6 (a true
 * claim fails this by chance once in a million runs) and its negative control must be REJECTED
 * at p < 1e-9 (showing the test has the power to see a wrong distribution of the same kind). */
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

#define PASS_P 1e-6
#define REJECT_P 1e-9
#define MIN_EXPECTED 5.0

static SamplerParams params(float temperature, int top_k, float top_p, float min_p)
{
    SamplerParams p = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .min_p = min_p};
    return p;
}

static void ensemble_open(Ensemble *e, const TestMembers *ms, const double *w, EnsembleMode mode,
                          SamplerParams p, uint64_t seed)
{
    LxError err[1];
    if (test_ensemble_init(e, ms->members, w, ms->k, 0, mode, p, seed, err))
        fail_msg("ensemble_init: %s", err->message);
}

/* sum_k w_k S(p_k) computed from scratch: each member's own state, the scalar reference forward
 * over the whole sequence, and the sampler's transform. */
static void mixture_from_scratch(const TestMembers *ms, const double *w, SamplerParams p,
                                 const int *tokens, int n, double *q)
{
    LxError err[1];
    int V = ms->models[0].config.vocab_size;
    float logits[64], probs[64];
    Sampler s;
    assert_int_equal(sampler_init(&s, V, p, err), 0);
    for (int x = 0; x < V; x++)
        q[x] = 0;
    for (int i = 0; i < ms->k; i++) {
        ReferenceState st;
        assert_int_equal(forward_reference_init(&st, &ms->models[i].config, n, err), 0);
        assert_int_equal(forward_reference(&ms->models[i], &st, tokens, n, 0, logits, 0, err), 0);
        sampler_transform(&s, logits, probs);
        for (int x = 0; x < V; x++)
            q[x] += w[i] * probs[x];
        forward_reference_free(&st);
    }
    sampler_free(&s);
}

static const double W2[2] = {0.7, 0.3}, W2_SWAPPED[2] = {0.3, 0.7};
static const double W3[3] = {0.7, 0.2, 0.1}, W3_SWAPPED[3] = {0.1, 0.2, 0.7};

/* ------------------------------------------------------------------ 1. per-step identity */

/* sum_k w_k S(p_k) from the members as ME leaves them (each synced lazily when asked). */
static void mixture_of_members(Ensemble *e, double *q)
{
    LxError err[1];
    float probs[64];
    for (int x = 0; x < e->vocab_size; x++)
        q[x] = 0;
    for (int i = 0; i < e->k; i++) {
        const float *logits = ensemble_sync(e, i, err);
        assert_non_null(logits);
        sampler_transform(&e->sampler, logits, probs);
        for (int x = 0; x < e->vocab_size; x++)
            q[x] += e->weights[i] * probs[x];
    }
}

static void test_per_step_identity(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 3, 16, 1000);
    SamplerParams settings[] = {params(1, 0, 1, 0), params(0.8f, 5, 1, 0), params(1.3f, 0, 0.7f, 0),
                                params(1, 0, 1, 0.1f), params(0.6f, 8, 0.9f, 0.05f)};
    const double *weights[] = {W3, W3_SWAPPED};
    double worst_identity = 0, worst_scratch = 0;
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++)
        for (int wi = 0; wi < 2; wi++) {
            /* ME generates a sequence lazily. At every step, CE's q for that prefix must equal
             * sum_k w_k S(p_k) over the members ME picks from (the identity, to 1e-6), and those
             * members, though caught up lazily, must agree with members that ran the whole
             * prefix from scratch with the scalar reference forward (to 1e-5: the two forwards
             * round differently). */
            Ensemble me, ce;
            ensemble_open(&me, &ms, weights[wi], LX_MODE_ME, settings[s], 77 + s);
            ensemble_open(&ce, &ms, weights[wi], LX_MODE_CE, settings[s], 78 + s);
            int prompt[3] = {TOKEN_BOS, 5, 9};
            test_append(&me, prompt, 3);
            test_append(&ce, prompt, 3);
            for (int t = 0; t < 12; t++) {
                double q[16], members[16], scratch[16];
                test_distribution(&ce, q); /* CE syncs every member every step */
                mixture_of_members(&me, members);
                mixture_from_scratch(&ms, me.weights, settings[s], me.tokens, me.n_tokens, scratch);
                for (int x = 0; x < 16; x++) {
                    worst_identity = fmax(worst_identity, fabs(q[x] - members[x]));
                    worst_scratch = fmax(worst_scratch, fabs(members[x] - scratch[x]));
                }
                /* ME steps; sometimes a token more, so the next sync catches up several */
                int token = test_step(&me);
                test_append(&me, &token, 1);
                test_append(&ce, &token, 1);
                if (t % 3 == 0) {
                    int extra = (token + 3) % 16;
                    test_append(&me, &extra, 1);
                    test_append(&ce, &extra, 1);
                }
                for (int k = 0; k < 3 && t % 4 == 1; k++) /* CE synced at every step */
                    assert_non_null(ensemble_sync(&ce, k, NULL));
            }
            ensemble_free(&me);
            ensemble_free(&ce);
        }
    print_message("    max |CE q - sum_k w_k S(p_k)| = %.3g; max |lazy - scratch| = %.3g\n",
                  worst_identity, worst_scratch);
    if (worst_identity > 1e-6 || worst_scratch > 1e-5)
        fail_msg("identity %.3g > 1e-6 or lazy vs scratch %.3g > 1e-5", worst_identity, worst_scratch);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 2. one-step marginal */

/* Draw n tokens at the same prefix (members are synced once; each draw picks anew). */
static void draw_counts(Ensemble *e, long n, long *counts)
{
    memset(counts, 0, sizeof(long) * (size_t)e->vocab_size);
    for (long i = 0; i < n; i++)
        counts[test_step(e)]++;
}

static double p_value(const long *counts, const double *q, int n)
{
    return chi_square_test(counts, q, n, MIN_EXPECTED, NULL, NULL);
}

static void check_marginal(const TestMembers *ms, const double *w, const double *w_wrong, SamplerParams sp, uint64_t seed)
{
    enum { DRAWS = 200000 };
    Ensemble me, ce, wrong;
    ensemble_open(&me, ms, w, LX_MODE_ME, sp, seed);
    ensemble_open(&ce, ms, w, LX_MODE_CE, sp, seed + 1);
    ensemble_open(&wrong, ms, w_wrong, LX_MODE_CE, sp, seed + 2);
    int prompt[4] = {TOKEN_BOS, 7, 3, 11};
    test_append(&me, prompt, 4);
    test_append(&ce, prompt, 4);
    test_append(&wrong, prompt, 4);
    double q[16], q_wrong[16];
    test_distribution(&ce, q);
    test_distribution(&wrong, q_wrong);
    long counts[16];
    draw_counts(&me, DRAWS, counts);
    double p = p_value(counts, q, 16), p_wrong = p_value(counts, q_wrong, 16);
    /* CE's own draws follow q too (the CE sampler is checked by the same statistic) */
    long ce_counts[16];
    draw_counts(&ce, DRAWS, ce_counts);
    double p_ce = p_value(ce_counts, q, 16);
    print_message("    K=%d T=%.1f top-k %d top-p %.2f: ME vs CE p=%.3g, CE vs CE p=%.3g, "
                  "ME vs swapped weights p=%.3g\n", ms->k, sp.temperature, sp.top_k, sp.top_p, p, p_ce, p_wrong);
    assert_true(p > PASS_P);
    assert_true(p_ce > PASS_P);
    assert_true(p_wrong < REJECT_P);
    ensemble_free(&me);
    ensemble_free(&ce);
    ensemble_free(&wrong);
}

static void test_one_step_marginal(void **state)
{
    (void)state;
    TestMembers two, three;
    test_members_open(&two, 2, 16, 1000);
    test_members_open(&three, 3, 16, 1000);
    SamplerParams settings[] = {params(1, 0, 1, 0), params(0.8f, 0, 1, 0), params(1, 6, 1, 0),
                                params(1, 0, 0.8f, 0), params(0.8f, 8, 0.9f, 0)};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        check_marginal(&two, W2, W2_SWAPPED, settings[s], 10 + s);
        check_marginal(&three, W3, W3_SWAPPED, settings[s], 20 + s);
    }
    test_members_close(&two);
    test_members_close(&three);
}

/* ------------------------------------------------------------------ 3. whole sequences */

enum { SEQ_V = 8, SEQ_L = 3, SEQ_CELLS = SEQ_V * SEQ_V * SEQ_V };

/* Exact P(x1 x2 x3 | prompt) under CE: the product of CE's q at each prefix, enumerated. */
static void sequence_probabilities(const TestMembers *ms, const double *w, SamplerParams sp,
                                   const int *prompt, int n_prompt, double *prob)
{
    Ensemble ce;
    ensemble_open(&ce, ms, w, LX_MODE_CE, sp, 1);
    test_sequence_probabilities(&ce, prompt, n_prompt, prob);
    ensemble_free(&ce);
}

/* A deliberately broken ME for the negative control: a picked member that missed tokens feeds
 * only the newest one (at its right position), leaving the skipped positions out of its cache. */
static int broken_me_step(Ensemble *e)
{
    LxError err[1];
    int token;
    Member *mb = NULL;
    /* peek at which member ME would pick by running a normal step on a copy of the rng */
    Rng saved = e->member_rng;
    double coin = rng_float(&e->member_rng), cdf = 0;
    int k = e->k - 1;
    for (int i = 0; i < e->k - 1; i++) {
        cdf += e->weights[i];
        if (coin < cdf) {
            k = i;
            break;
        }
    }
    e->member_rng = saved;
    mb = &e->members[k];
    if (mb->n_seen > 0 && e->n_tokens - mb->n_seen > 1)
        mb->n_seen = e->n_tokens - 1; /* the bug: forget the skipped tokens */
    if (ensemble_step(e, &token, NULL, NULL, err))
        fail_msg("%s", err->message);
    return token;
}

static void sample_sequences(Ensemble *e, const int *prompt, int n_prompt, long runs, long *counts, int broken)
{
    memset(counts, 0, sizeof(long) * SEQ_CELLS);
    for (long r = 0; r < runs; r++) {
        ensemble_reset(e);
        test_append(e, prompt, n_prompt);
        int cell = 0;
        for (int t = 0; t < SEQ_L; t++) {
            int token = broken ? broken_me_step(e) : test_step(e);
            cell = cell * SEQ_V + token;
            test_append(e, &token, 1);
        }
        counts[cell]++;
    }
}

static void test_whole_sequences(void **state)
{
    (void)state;
    enum { RUNS = 150000 };
    TestMembers ms;
    test_members_open(&ms, 3, SEQ_V, 1000);
    int prompt[2] = {TOKEN_BOS, 4};
    SamplerParams settings[] = {params(1, 0, 1, 0), params(0.8f, 5, 0.95f, 0)};
    static double prob[SEQ_CELLS], prob_wrong[SEQ_CELLS];
    static long counts[SEQ_CELLS];
    for (int s = 0; s < 2; s++) {
        sequence_probabilities(&ms, W3, settings[s], prompt, 2, prob);
        sequence_probabilities(&ms, W3_SWAPPED, settings[s], prompt, 2, prob_wrong);
        Ensemble me;
        ensemble_open(&me, &ms, W3, LX_MODE_ME, settings[s], 500 + s);
        sample_sequences(&me, prompt, 2, RUNS, counts, 0);
        double p = p_value(counts, prob, SEQ_CELLS), p_wrong = p_value(counts, prob_wrong, SEQ_CELLS);
        /* the negative control that targets the catch-up itself */
        sample_sequences(&me, prompt, 2, RUNS, counts, 1);
        double p_broken = p_value(counts, prob, SEQ_CELLS);
        print_message("    sequences of 3, T=%.1f top-k %d: ME p=%.3g; vs swapped weights p=%.3g; "
                      "ME without catch-up p=%.3g\n", settings[s].temperature, settings[s].top_k, p,
                      p_wrong, p_broken);
        assert_true(p > PASS_P);
        assert_true(p_wrong < REJECT_P);
        assert_true(p_broken < REJECT_P);
        ensemble_free(&me);
    }
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 4. catch-up */

static void test_catch_up_equals_every_step(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 2, 16, 1000);
    LxError err[1];
    for (int m = 1; m <= 40; m += 13) {
        Ensemble every, lazy;
        ensemble_open(&every, &ms, NULL, LX_MODE_CE, params(1, 0, 1, 0), 1);
        ensemble_open(&lazy, &ms, NULL, LX_MODE_CE, params(1, 0, 1, 0), 1);
        int token = TOKEN_BOS;
        test_append(&every, &token, 1);
        test_append(&lazy, &token, 1);
        for (int t = 0; t < m; t++) {
            for (int i = 0; i < 2; i++)
                assert_non_null(ensemble_sync(&every, i, err));
            token = (token * 7 + 3) % 16;
            test_append(&every, &token, 1);
            test_append(&lazy, &token, 1);
        }
        for (int i = 0; i < 2; i++) {
            const float *a = ensemble_sync(&every, i, err), *b = ensemble_sync(&lazy, i, err);
            assert_non_null(a);
            assert_non_null(b);
            for (int x = 0; x < 16; x++)
                assert_true(fabsf(a[x] - b[x]) <= 1e-4f * (1 + fabsf(a[x])));
            /* the lazy member caught up with one forward of m + 1 tokens */
            assert_int_equal(lazy.members[i].forward_calls, 1);
            assert_int_equal(lazy.members[i].tokens_processed, m + 1);
            assert_int_equal(every.members[i].forward_calls, m + 1);
        }
        ensemble_free(&every);
        ensemble_free(&lazy);
    }
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 5. ce-mixture */

static void test_ce_mixture(void **state)
{
    (void)state;
    enum { DRAWS = 200000 };
    TestMembers ms;
    test_members_open(&ms, 2, 16, 1000);
    int prompt[3] = {TOKEN_BOS, 2, 8};
    SamplerParams settings[] = {params(1, 0, 1, 0), params(0.7f, 0, 1, 0), params(1, 4, 1, 0), params(1, 0, 0.6f, 0)};
    for (int s = 0; s < 4; s++) {
        Ensemble me, ce, mix;
        ensemble_open(&me, &ms, W2, LX_MODE_ME, settings[s], 40 + s);
        ensemble_open(&ce, &ms, W2, LX_MODE_CE, settings[s], 50 + s);
        ensemble_open(&mix, &ms, W2, LX_MODE_CE_MIXTURE, settings[s], 60 + s);
        test_append(&me, prompt, 3);
        test_append(&ce, prompt, 3);
        test_append(&mix, prompt, 3);
        double q_ce[16], q_mix[16];
        test_distribution(&ce, q_ce);
        test_distribution(&mix, q_mix);
        long counts[16], mix_counts[16];
        draw_counts(&me, DRAWS, counts);
        draw_counts(&mix, DRAWS, mix_counts);
        double p_me_ce = p_value(counts, q_ce, 16), p_me_mix = p_value(counts, q_mix, 16);
        double p_mix_mix = p_value(mix_counts, q_mix, 16);
        double diff = 0;
        for (int x = 0; x < 16; x++)
            diff = fmax(diff, fabs(q_ce[x] - q_mix[x]));
        print_message("    T=%.1f top-k %d top-p %.1f: max|q_ce - q_mix| %.3g; ME vs CE p=%.3g, "
                      "ME vs ce-mixture p=%.3g, ce-mixture vs itself p=%.3g\n", settings[s].temperature,
                      settings[s].top_k, settings[s].top_p, diff, p_me_ce, p_me_mix, p_mix_mix);
        assert_true(p_me_ce > PASS_P);
        assert_true(p_mix_mix > PASS_P);
        if (s == 0) { /* T = 1 without truncation: all three agree */
            assert_true(diff < 1e-6);
            assert_true(p_me_mix > PASS_P);
        } else { /* otherwise ce-mixture is another distribution, and the test sees it */
            assert_true(p_me_mix < REJECT_P);
        }
        ensemble_free(&me);
        ensemble_free(&ce);
        ensemble_free(&mix);
    }
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 6. selection, forward counts */

static void test_selection_and_counts(void **state)
{
    (void)state;
    enum { RUNS = 1500, STEPS = 40 };
    TestMembers ms;
    test_members_open(&ms, 3, 16, 1000);
    Ensemble me, ce;
    ensemble_open(&me, &ms, W3, LX_MODE_ME, params(1, 0, 1, 0), 99);
    ensemble_open(&ce, &ms, W3, LX_MODE_CE, params(1, 0, 1, 0), 98);
    long picks[3] = {0, 0, 0};
    for (int r = 0; r < RUNS; r++) {
        ensemble_reset(&me);
        int bos = TOKEN_BOS;
        test_append(&me, &bos, 1);
        long before[3] = {0, 0, 0};
        for (int t = 0; t < STEPS; t++) {
            int token = test_step(&me);
            long calls = 0;
            for (int i = 0; i < 3; i++) {
                long d = me.members[i].forward_calls - before[i];
                picks[i] += d; /* a picked member always has >= 1 pending token: one forward */
                calls += d;
                before[i] = me.members[i].forward_calls;
            }
            assert_int_equal(calls, 1); /* ME: exactly one forward per generated token */
            test_append(&me, &token, 1);
        }
    }
    long total = (long)RUNS * STEPS;
    for (int i = 0; i < 3; i++) {
        double p = binomial_test(picks[i], total, W3[i]);
        double p_wrong = binomial_test(picks[i], total, 1.0 / 3); /* as if picked uniformly */
        print_message("    member %d: picked %ld of %ld (weight %.2f): p=%.3g; vs wrong weight p=%.3g\n",
                      i + 1, picks[i], total, W3[i], p, p_wrong);
        assert_true(p > PASS_P);
        assert_true(p_wrong < REJECT_P);
    }
    /* CE runs every member once per token */
    int bos = TOKEN_BOS;
    test_append(&ce, &bos, 1);
    for (int t = 0; t < STEPS; t++) {
        int token = test_step(&ce);
        test_append(&ce, &token, 1);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ce.members[i].forward_calls, STEPS);
        assert_int_equal(ce.members[i].tokens_processed, STEPS);
    }
    ensemble_free(&me);
    ensemble_free(&ce);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ K = 1, greedy, errors */

/* One member: ME and CE are a single model, and reproduce sampler_sample's draws for the seed. */
static void test_single_member(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 1, 16, 1000);
    LxError err[1];
    SamplerParams sp = params(1, 0, 0.9f, 0);
    for (int mode = LX_MODE_ME; mode <= LX_MODE_CE_MIXTURE; mode++) {
        Ensemble e;
        ensemble_open(&e, &ms, NULL, (EnsembleMode)mode, sp, 42);
        ForwardState st;
        assert_int_equal(forward_state_init(&st, &ms.models[0].config, 0, 0, err), 0);
        Sampler s;
        assert_int_equal(sampler_init(&s, 16, sp, err), 0);
        Rng rng;
        rng_seed(&rng, 42);
        int token = TOKEN_BOS;
        test_append(&e, &token, 1);
        float logits[16];
        for (int pos = 0; pos < 30; pos++) {
            assert_int_equal(forward(&ms.models[0], &st, &token, 1, pos, logits, 0, err), 0);
            int want = sampler_sample(&s, logits, &rng, NULL);
            int got = test_step(&e);
            assert_int_equal(got, want);
            test_append(&e, &got, 1);
            token = got;
        }
        sampler_free(&s);
        forward_state_free(&st);
        ensemble_free(&e);
    }
    test_members_close(&ms);
}

/* Greedy CE takes the argmax of sum_k w_k p_k; greedy ME the argmax of the picked member. */
static void test_greedy(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 3, 16, 1000);
    LxError err[1];
    Ensemble ce, me;
    ensemble_open(&ce, &ms, W3, LX_MODE_CE, params(0, 0, 1, 0), 3);
    ensemble_open(&me, &ms, W3, LX_MODE_ME, params(0, 0, 1, 0), 3);
    int prompt[2] = {TOKEN_BOS, 6};
    test_append(&ce, prompt, 2);
    test_append(&me, prompt, 2);
    double mix[16] = {0};
    int member_argmax[3];
    for (int i = 0; i < 3; i++) {
        float p[16];
        memcpy(p, ensemble_sync(&ce, i, err), sizeof p);
        softmax(p, 16);
        for (int x = 0; x < 16; x++)
            mix[x] += W3[i] * p[x];
        member_argmax[i] = argmax(ensemble_sync(&ce, i, err), 16);
    }
    int best = 0;
    for (int x = 1; x < 16; x++)
        if (mix[x] > mix[best])
            best = x;
    assert_int_equal(test_step(&ce), best);
    for (int t = 0; t < 50; t++) {
        int token = test_step(&me);
        assert_true(token == member_argmax[0] || token == member_argmax[1] || token == member_argmax[2]);
    }
    ensemble_free(&ce);
    ensemble_free(&me);
    test_members_close(&ms);
}

static void test_errors(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 2, 16, 1000);
    LxError err[1];
    Ensemble e;
    double bad[][2] = {{-1, 1}, {0, 1}, {NAN, 1}, {INFINITY, 1}, {1e308, 1e308}};
    for (int i = 0; i < 5; i++) {
        assert_int_not_equal(test_ensemble_init(&e, ms.members, bad[i], 2, 0, LX_MODE_ME, params(1, 0, 1, 0), 1, err), 0);
        ensemble_free(&e);
    }
    double w[3];
    assert_int_equal(lx_weights_parse("0.5,0.3,0.2", 3, w, err), 0);
    assert_true(w[0] == 0.5 && w[2] == 0.2);
    assert_int_not_equal(lx_weights_parse("0.5,0.3", 3, w, err), 0);
    assert_int_not_equal(lx_weights_parse("0.5,0.3,0.2,0.1", 3, w, err), 0);
    assert_int_not_equal(lx_weights_parse("0.5,x,0.2", 3, w, err), 0);
    assert_int_not_equal(lx_weights_parse("", 1, w, err), 0);
    /* a member with another vocabulary */
    ModelConfig c = test_tiny_config();
    c.vocab_size = 20;
    char path[256];
    test_write_model(path, &c, 1, 1, 5, 0);
    Model other;
    assert_int_equal(model_open(&other, path, err), 0);
    const Model *mixed[2] = {ms.members[0], &other};
    assert_int_not_equal(test_ensemble_init(&e, mixed, NULL, 2, 0, LX_MODE_CE, params(1, 0, 1, 0), 1, err), 0);
    assert_non_null(strstr(err->message, "vocab_size 20"));
    ensemble_free(&e);
    model_close(&other);
    test_remove(path);
    /* sampling an empty sequence, overfilling the context */
    ensemble_open(&e, &ms, NULL, LX_MODE_ME, params(1, 0, 1, 0), 1);
    int token;
    assert_int_not_equal(ensemble_step(&e, &token, NULL, NULL, err), 0);
    assert_non_null(strstr(err->message, "empty"));
    assert_int_equal(e.n_ctx, 64); /* the smallest member's seq_len */
    int many[65] = {0};
    assert_int_not_equal(ensemble_append(&e, many, 65, err), 0);
    int oov = 16;
    assert_int_not_equal(ensemble_append(&e, &oov, 1, err), 0);
    ensemble_free(&e);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 7. real models */

static void test_real_ensemble(void **state)
{
    (void)state;
    char a[4096], b[4096], tok_path[4096];
    LxError err[1];
    const char *p;
    if (!(p = test_real_model("stories260K.bin")))
        skip();
    snprintf(a, sizeof a, "%s", p);
    if (!(p = test_real_model("llama2xs_tok512.bin")))
        skip();
    snprintf(b, sizeof b, "%s", p);
    if (!(p = test_real_model("tok512.bin")))
        skip();
    snprintf(tok_path, sizeof tok_path, "%s", p);
    Model models[2];
    assert_int_equal(model_open(&models[0], a, err), 0);
    assert_int_equal(model_open(&models[1], b, err), 0);
    const Model *members[2] = {&models[0], &models[1]};
    Tokenizer *tok = tokenizer_open(tok_path, 512, err);
    assert_non_null(tok);
    for (int mode = LX_MODE_ME; mode <= LX_MODE_CE_MIXTURE; mode++) {
        Ensemble e;
        assert_int_equal(test_ensemble_init(&e, members, NULL, 2, 0, (EnsembleMode)mode, params(0.8f, 0, 0.9f, 0), 7, err), 0);
        assert_int_equal(e.n_ctx, 256);
        int prompt[64], n;
        assert_int_equal(tokenizer_encode(tok, "Once upon a time", 1, 0, prompt, 64, &n, err), 0);
        test_append(&e, prompt, n);
        char text[4096] = "";
        for (int t = 0; t < 60; t++) {
            int token = test_step(&e);
            if (token == TOKEN_BOS || token == TOKEN_EOS)
                break;
            strncat(text, tokenizer_decode(tok, e.tokens[e.n_tokens - 1], token), sizeof text - strlen(text) - 1);
            test_append(&e, &token, 1);
        }
        print_message("    %s: Once upon a time%s\n", lx_mode_name((EnsembleMode)mode), text);
        assert_true(strlen(text) > 20);
        ensemble_free(&e);
    }
    tokenizer_free(tok);
    /* a member of another vocabulary: babyllama105 */
    if ((p = test_real_model("babyllama105.bin"))) {
        Model baby;
        assert_int_equal(model_open(&baby, p, err), 0);
        const Model *mixed[2] = {&models[0], &baby};
        Ensemble e;
        assert_int_not_equal(test_ensemble_init(&e, mixed, NULL, 2, 0, LX_MODE_ME, params(1, 0, 1, 0), 1, err), 0);
        assert_non_null(strstr(err->message, "vocab_size 105"));
        assert_non_null(strstr(err->message, "members must share one vocabulary"));
        model_close(&baby);
    }
    model_close(&models[0]);
    model_close(&models[1]);
}

/* ------------------------------------------------------------------ int8 members */

/* test_members_open's members with members 0 and 2 (of 3) replaced by int8 (version 2) models of
 * the same shape and seed: the fp32 and int8 formats mixed in one ensemble. */
static void mixed_members_open(TestMembers *ms, int k, int vocab, uint64_t seed)
{
    test_members_open(ms, k, vocab, seed);
    LxError err[1];
    for (int i = 0; i < k; i += 2) {
        ModelConfig c = ms->models[i].config;
        model_close(&ms->models[i]);
        test_remove(ms->paths[i]);
        test_write_model(ms->paths[i], &c, 2, i != 1, seed + (uint64_t)i, 2.0f / sqrtf((float)c.dim));
        if (model_open(&ms->models[i], ms->paths[i], err))
            fail_msg("model_open: %s", err->message);
        assert_int_equal(ms->models[i].version, 2);
    }
}

/* ME == CE with int8 and fp32 members mixed: the one-step marginal (chi-square against CE's q,
 * with the swapped-weights negative control) and whole sequences of three tokens (with the
 * no-catch-up control), exactly as for fp32 members above. */
static void test_mixed_int8_members(void **state)
{
    (void)state;
    TestMembers three;
    mixed_members_open(&three, 3, 16, 1000);
    SamplerParams settings[] = {params(1, 0, 1, 0), params(0.8f, 8, 0.9f, 0)};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++)
        check_marginal(&three, W3, W3_SWAPPED, settings[s], 60 + s);
    test_members_close(&three);

    enum { RUNS = 150000 };
    TestMembers ms;
    mixed_members_open(&ms, 3, SEQ_V, 1000);
    int prompt[2] = {TOKEN_BOS, 4};
    static double prob[SEQ_CELLS], prob_wrong[SEQ_CELLS];
    static long counts[SEQ_CELLS];
    sequence_probabilities(&ms, W3, settings[0], prompt, 2, prob);
    sequence_probabilities(&ms, W3_SWAPPED, settings[0], prompt, 2, prob_wrong);
    Ensemble me;
    ensemble_open(&me, &ms, W3, LX_MODE_ME, settings[0], 700);
    sample_sequences(&me, prompt, 2, RUNS, counts, 0);
    double p = p_value(counts, prob, SEQ_CELLS), p_wrong = p_value(counts, prob_wrong, SEQ_CELLS);
    sample_sequences(&me, prompt, 2, RUNS, counts, 1);
    double p_broken = p_value(counts, prob, SEQ_CELLS);
    print_message("    int8 + fp32 members, sequences of 3: ME p=%.3g; vs swapped weights p=%.3g; "
                  "ME without catch-up p=%.3g\n", p, p_wrong, p_broken);
    assert_true(p > PASS_P);
    assert_true(p_wrong < REJECT_P);
    assert_true(p_broken < REJECT_P);
    ensemble_free(&me);
    test_members_close(&ms);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_per_step_identity),
        cmocka_unit_test(test_one_step_marginal),
        cmocka_unit_test(test_whole_sequences),
        cmocka_unit_test(test_catch_up_equals_every_step),
        cmocka_unit_test(test_ce_mixture),
        cmocka_unit_test(test_selection_and_counts),
        cmocka_unit_test(test_single_member),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_mixed_int8_members),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_ensemble),
    };
    TEST_MAIN(own, real);
}
