/* test_router.c: routers (router.c): ME stays exact under a router that reads the history only,
 * the constant router changes nothing, EM for the previous-token table never raises its
 * penalised NLL and recovers a planted table, routing gains on held-out text only when the text
 * was routed, and bad router files are refused with one line naming the file.
 *
 * Statistical tests use fixed seeds and the thresholds of test_ensemble.c: Pearson's chi-square
 * (tests/stats.h, cells of expected count < 5 pooled); a claim PASSES at p > 1e-6, its negative
 * control is REJECTED at p < 1e-9. Estimates are checked against tolerances computed from their
 * own sample size (standard errors from the observed Fisher information). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "stats.h"
#include "testutil.h"

#define PASS_P 1e-6
#define REJECT_P 1e-9
#define MIN_EXPECTED 5.0

static const double W3[3] = {0.7, 0.2, 0.1}, W3_SWAPPED[3] = {0.1, 0.2, 0.7};

static SamplerParams params(float temperature, int top_k, float top_p)
{
    SamplerParams p = {.temperature = temperature, .top_k = top_k, .top_p = top_p};
    return p;
}

/* An ensemble of ms with weights w or a router (one of them NULL). */
static void open_ensemble(Ensemble *e, const TestMembers *ms, const double *w, const Router *router, LxMode mode,
                          SamplerParams sp, uint64_t seed)
{
    LxError err[1];
    EnsembleParams p = {.weights = w, .router = router, .mode = mode, .sampler = sp, .seed = seed};
    if (ensemble_init(e, ms->members, ms->k, NULL, 0, &p, err))
        fail_msg("ensemble_init: %s", err->message);
}

/* The planted router of the exactness tests: the weights flip with the previous token,
 * W3 after an even token, W3_SWAPPED after an odd one. */
static Router *flip_router(int vocab)
{
    LxError err[1];
    Router *r = router_table_new(3, vocab, W3, 0, err);
    assert_non_null(r);
    for (int c = 0; c < vocab; c++)
        memcpy(router_row(r, c), c % 2 ? W3_SWAPPED : W3, sizeof W3);
    return r;
}

/* ------------------------------------------------------------------ the constant router */

/* Weights w and the explicit constant router of w give the same tokens, bit for bit, and the
 * same distributions: fixed weights are nothing but the constant router. */
static void test_constant_router_is_the_weights(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 3, 16, 1000);
    LxError err[1];
    Router *c = router_constant(3, W3, err);
    assert_non_null(c);
    for (int mode = LX_MODE_ME; mode <= LX_MODE_CE_MIXTURE; mode++) {
        Ensemble a, b;
        open_ensemble(&a, &ms, W3, NULL, (LxMode)mode, params(0.9f, 0, 0.9f), 5);
        open_ensemble(&b, &ms, NULL, c, (LxMode)mode, params(0.9f, 0, 0.9f), 5);
        int bos = TOKEN_BOS;
        test_append(&a, &bos, 1);
        test_append(&b, &bos, 1);
        for (int t = 0; t < 60; t++) {
            double qa[16], qb[16];
            test_distribution(&a, qa);
            test_distribution(&b, qb);
            assert_memory_equal(qa, qb, sizeof qa);
            int x = test_step(&a), y = test_step(&b);
            assert_int_equal(x, y);
            test_append(&a, &x, 1);
            test_append(&b, &y, 1);
        }
        ensemble_free(&a);
        ensemble_free(&b);
    }
    /* weights and a router together, or a router of the wrong size, are refused */
    Ensemble e;
    EnsembleParams p = {.weights = W3, .router = c, .sampler = params(1, 0, 1)};
    assert_int_not_equal(ensemble_init(&e, ms.members, 3, NULL, 0, &p, err), 0);
    assert_non_null(strstr(err->message, "not both"));
    ensemble_free(&e);
    p.weights = NULL;
    assert_int_not_equal(ensemble_init(&e, ms.members, 2, NULL, 0, &p, err), 0);
    assert_non_null(strstr(err->message, "is for 3 members but the ensemble has 2"));
    ensemble_free(&e);
    router_free(c);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ exactness: one step */

/* sum_k r_k(c) S(p_k), from the members synced by hand and the planted row. */
static void routed_by_hand(Ensemble *e, const double *row, double *q)
{
    float probs[64];
    for (int x = 0; x < e->vocab_size; x++)
        q[x] = 0;
    for (int i = 0; i < e->k; i++) {
        const float *logits = ensemble_sync(e, i, NULL);
        assert_non_null(logits);
        sampler_transform(&e->sampler, logits, probs);
        for (int x = 0; x < e->vocab_size; x++)
            q[x] += row[i] * probs[x];
    }
}

static void draw_counts(Ensemble *e, long n, long *counts)
{
    memset(counts, 0, sizeof(long) * (size_t)e->vocab_size);
    for (long i = 0; i < n; i++)
        counts[test_step(e)]++;
}

/* At contexts ending in an even and an odd token: CE's q under the router is sum_k r_k(c) S(p_k);
 * ME's draws under the router follow it; ME's draws with the fixed weights do not (at the odd
 * contexts, where the router's row is not the fixed weights). */
static void test_routed_one_step(void **state)
{
    (void)state;
    enum { DRAWS = 200000 };
    TestMembers ms;
    test_members_open(&ms, 3, 16, 1000);
    Router *r = flip_router(16);
    SamplerParams settings[] = {params(1, 0, 1), params(0.8f, 5, 0.95f)};
    int lasts[] = {4, 7, 10, 13};
    double worst = 0;
    for (int s = 0; s < 2; s++)
        for (int li = 0; li < 4; li++) {
            Ensemble me, ce, fixed;
            open_ensemble(&me, &ms, NULL, r, LX_MODE_ME, settings[s], 300 + 10 * s + li);
            open_ensemble(&ce, &ms, NULL, r, LX_MODE_CE, settings[s], 400 + 10 * s + li);
            open_ensemble(&fixed, &ms, W3, NULL, LX_MODE_ME, settings[s], 500 + 10 * s + li);
            int prompt[4] = {TOKEN_BOS, 9, 2, lasts[li]};
            test_append(&me, prompt, 4);
            test_append(&ce, prompt, 4);
            test_append(&fixed, prompt, 4);
            double q[16], by_hand[16];
            test_distribution(&ce, q);
            routed_by_hand(&ce, router_row(r, lasts[li]), by_hand);
            for (int x = 0; x < 16; x++)
                worst = fmax(worst, fabs(q[x] - by_hand[x]));
            long counts[16], fixed_counts[16];
            draw_counts(&me, DRAWS, counts);
            draw_counts(&fixed, DRAWS, fixed_counts);
            double p = chi_square_test(counts, q, 16, MIN_EXPECTED, NULL, NULL);
            double p_fixed = chi_square_test(fixed_counts, q, 16, MIN_EXPECTED, NULL, NULL);
            print_message("    T=%.1f top-k %d, previous token %2d: ME(router) vs CE(router) p=%.3g; "
                          "ME(fixed weights) vs CE(router) p=%.3g\n", settings[s].temperature,
                          settings[s].top_k, lasts[li], p, p_fixed);
            assert_true(p > PASS_P);
            if (lasts[li] % 2)
                assert_true(p_fixed < REJECT_P);
            ensemble_free(&me);
            ensemble_free(&ce);
            ensemble_free(&fixed);
        }
    print_message("    max |CE q - sum_k r_k(c) S(p_k)| = %.3g\n", worst);
    assert_true(worst < 1e-6);
    router_free(r);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ exactness: sequences */

enum { SEQ_V = 8, SEQ_L = 3, SEQ_CELLS = SEQ_V * SEQ_V * SEQ_V };

/* Exact P(x1 x2 x3 | prompt) under CE with the router: the product of CE's q at each prefix
 * (each prefix routed by its own last token). */
static void sequence_probabilities(const TestMembers *ms, const Router *r, SamplerParams sp, const int *prompt,
                                   int n_prompt, double *prob)
{
    Ensemble ce;
    open_ensemble(&ce, ms, NULL, r, LX_MODE_CE, sp, 1);
    test_sequence_probabilities(&ce, prompt, n_prompt, prob);
    ensemble_free(&ce);
}

static void sample_sequences(Ensemble *e, const int *prompt, int n_prompt, long runs, long *counts)
{
    memset(counts, 0, sizeof(long) * SEQ_CELLS);
    for (long run = 0; run < runs; run++) {
        ensemble_reset(e);
        test_append(e, prompt, n_prompt);
        int cell = 0;
        for (int t = 0; t < SEQ_L; t++) {
            int token = test_step(e);
            cell = cell * SEQ_V + token;
            test_append(e, &token, 1);
        }
        counts[cell]++;
    }
}

static void test_routed_sequences(void **state)
{
    (void)state;
    enum { RUNS = 150000 };
    TestMembers ms;
    test_members_open(&ms, 3, SEQ_V, 1000);
    Router *r = flip_router(SEQ_V);
    int prompt[2] = {TOKEN_BOS, 5}; /* odd: the first step is routed away from W3 too */
    SamplerParams settings[] = {params(1, 0, 1), params(0.8f, 5, 0.95f)};
    static double prob[SEQ_CELLS];
    static long counts[SEQ_CELLS];
    for (int s = 0; s < 2; s++) {
        sequence_probabilities(&ms, r, settings[s], prompt, 2, prob);
        Ensemble me, fixed;
        open_ensemble(&me, &ms, NULL, r, LX_MODE_ME, settings[s], 700 + s);
        open_ensemble(&fixed, &ms, W3, NULL, LX_MODE_ME, settings[s], 710 + s);
        sample_sequences(&me, prompt, 2, RUNS, counts);
        double p = chi_square_test(counts, prob, SEQ_CELLS, MIN_EXPECTED, NULL, NULL);
        sample_sequences(&fixed, prompt, 2, RUNS, counts);
        double p_fixed = chi_square_test(counts, prob, SEQ_CELLS, MIN_EXPECTED, NULL, NULL);
        print_message("    sequences of 3, T=%.1f top-k %d: ME(router) vs CE(router) p=%.3g; "
                      "ME(fixed weights) p=%.3g\n", settings[s].temperature, settings[s].top_k, p, p_fixed);
        assert_true(p > PASS_P);
        assert_true(p_fixed < REJECT_P);
        ensemble_free(&me);
        ensemble_free(&fixed);
    }
    router_free(r);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ EM */

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static double uniform(uint64_t *s) { return (double)lcg(s) / 9007199254740992.0; }

/* On random tables of log-probabilities, random contexts, priors and starting tables, every EM
 * step lowers the penalised NLL or keeps it (slack 1e-12), and the routed NLL ends at most the
 * fixed weights' (the prior term is smallest at r = w). */
static void test_em_monotone(void **state)
{
    (void)state;
    LxError err[1];
    uint64_t seed = 12345;
    double alphas[] = {0, 0.5, 5, 100};
    int checked = 0;
    for (int trial = 0; trial < 24; trial++) {
        int K = 2 + trial % 3, V = 5 + trial % 7;
        long N = 300 + 50 * (trial % 5);
        double alpha = alphas[trial % 4];
        ScoreTable t;
        assert_int_equal(score_table_init(&t, K, N, err), 0);
        int *ctx = malloc(sizeof(int) * (size_t)N);
        for (long j = 0; j < N; j++) {
            ctx[j] = (int)(lcg(&seed) % (uint64_t)V);
            for (int i = 0; i < K; i++)
                t.logp[i * N + j] = log(1e-3 + uniform(&seed)) * (1 + i);
        }
        double w[SCORE_MAX_MEMBERS];
        ScoreFit wf;
        assert_int_equal(score_fit_weights(&t, w, 500, 1e-12, NULL, &wf, err), 0);
        Router *r = router_table_new(K, V, w, alpha, err);
        assert_non_null(r);
        if (trial % 2) /* a random positive starting table */
            for (int c = 0; c < V; c++) {
                double *row = router_row(r, c), sum = 0;
                for (int i = 0; i < K; i++)
                    sum += row[i] = 0.05 + uniform(&seed);
                for (int i = 0; i < K; i++)
                    row[i] /= sum;
            }
        enum { ITERS = 200 };
        double trace[ITERS + 1];
        LxRouterFit fit;
        assert_int_equal(router_fit_table(r, &t, ctx, ITERS, 0, trace, &fit, err), 0);
        for (int it = 0; it < fit.iterations; it++, checked++)
            if (trace[it + 1] > trace[it] + 1e-12)
                fail_msg("trial %d: penalised NLL rose at step %d: %.17g -> %.17g", trial, it, trace[it], trace[it + 1]);
        assert_true(fabs(router_table_objective(r, &t, ctx) - fit.objective) < 1e-12);
        if (trial % 2 == 0) /* from w: the routed NLL is at most the fixed weights' */
            assert_true(fit.nll <= wf.nll + 1e-12);
        router_free(r);
        free(ctx);
        score_table_free(&t);
    }
    print_message("    %d EM steps over 24 random tables: the penalised NLL never rose (slack 1e-12)\n", checked);
}

/* ------------------------------------------------------------------ recovery and held-out gain */

enum { GEN_C = 64, GEN_SEQS = 400, GEN_TRAIN = 300 };

/* GEN_SEQS sequences of GEN_C - 1 tokens sampled (ME, T = 1, no truncation) from the ensemble of
 * ms with router r, as one text BOS s_1 s_2 ...: windows of GEN_C tokens are then exactly the
 * sequences, so the score table holds the very probabilities they were drawn with. */
static int *sample_text(const TestMembers *ms, const Router *r, uint64_t seed, long *n)
{
    *n = 1 + (long)GEN_SEQS * (GEN_C - 1);
    int *text = malloc(sizeof(int) * (size_t)*n);
    text[0] = TOKEN_BOS;
    Ensemble e;
    open_ensemble(&e, ms, NULL, r, LX_MODE_ME, params(1, 0, 1), seed);
    assert_int_equal(e.n_ctx, GEN_C);
    long at = 1;
    for (int s = 0; s < GEN_SEQS; s++) {
        ensemble_reset(&e);
        int bos = TOKEN_BOS;
        test_append(&e, &bos, 1);
        for (int t = 0; t < GEN_C - 1; t++) {
            int x = test_step(&e);
            test_append(&e, &x, 1);
            text[at++] = x;
        }
    }
    ensemble_free(&e);
    return text;
}

/* The score table of tokens [from, to) of a sampled text's sequences, with their contexts. */
static void score_part(const TestMembers *ms, const int *text, int seq_from, int seq_to, ScoreTable *t, int **ctx)
{
    LxError err[1];
    long n = 1 + (long)(seq_to - seq_from) * (GEN_C - 1);
    int *tokens = malloc(sizeof(int) * (size_t)n);
    tokens[0] = TOKEN_BOS;
    memcpy(tokens + 1, text + 1 + (long)seq_from * (GEN_C - 1), sizeof(int) * (size_t)(n - 1));
    assert_int_equal(score_table_init(t, ms->k, n - 1, err), 0);
    ScoreOptions so = {.context = GEN_C, .threads = 1};
    for (int i = 0; i < ms->k; i++)
        assert_int_equal(score_member(ms->members[i], tokens, n, &so, t->logp + (size_t)i * (size_t)t->n, err), 0);
    *ctx = malloc(sizeof(int) * (size_t)t->n);
    ScoreView v = {.table = t, .tokens = tokens, .context = GEN_C, .vocab_size = 16};
    router_contexts(&v, *ctx);
    free(tokens);
}

/* Per-token log q under per-token weights: the previous-token table, or fixed w (table NULL). */
static double log_q(const ScoreTable *t, long j, const double *w)
{
    double s = 0;
    for (int i = 0; i < t->k; i++)
        s += w[i] * exp(t->logp[(size_t)i * (size_t)t->n + (size_t)j]);
    return log(s);
}

typedef struct {
    double gain, se;   /* held-out mean log q(router) - log q(fixed), and its standard error */
    double nll_fixed, nll_router;
} Heldout;

/* Fit fixed weights and a router (alpha) on the first GEN_TRAIN sequences, compare on the rest.
 * *fitted (if not NULL) gets the router and *train the training table and contexts. */
static Heldout fit_and_hold_out(const TestMembers *ms, const int *text, double alpha, Router **fitted,
                                ScoreTable *train, int **train_ctx)
{
    LxError err[1];
    ScoreTable held;
    int *held_ctx;
    score_part(ms, text, 0, GEN_TRAIN, train, train_ctx);
    score_part(ms, text, GEN_TRAIN, GEN_SEQS, &held, &held_ctx);
    double w[SCORE_MAX_MEMBERS];
    ScoreFit wf;
    assert_int_equal(score_fit_weights(train, w, 1000, 1e-12, NULL, &wf, err), 0);
    Router *r = router_table_new(ms->k, 16, w, alpha, err);
    LxRouterFit fit;
    assert_int_equal(router_fit_table(r, train, *train_ctx, 1000, 1e-12, NULL, &fit, err), 0);
    Heldout h = {0};
    double sum = 0, sum2 = 0;
    for (long j = 0; j < held.n; j++) {
        double a = log_q(&held, j, w), b = log_q(&held, j, router_row(r, held_ctx[j]));
        h.nll_fixed -= a;
        h.nll_router -= b;
        sum += b - a;
        sum2 += (b - a) * (b - a);
    }
    double n = (double)held.n, mean = sum / n;
    h.gain = mean;
    h.se = sqrt((sum2 / n - mean * mean) / n);
    h.nll_fixed /= n;
    h.nll_router /= n;
    free(held_ctx);
    score_table_free(&held);
    if (fitted)
        *fitted = r;
    else
        router_free(r);
    return h;
}

/* Text sampled from two tiny members routed by a planted table (member 1's weight 0.85 after an
 * even token, 0.15 after an odd one): for every context seen at least 300 times in training, the
 * fitted weight is within 5 standard errors (observed Fisher information, K = 2) plus the prior's
 * pull alpha / (n_c + alpha) of the planted one; on the held-out sequences the router beats
 * EM-fitted fixed weights by more than 5 standard errors of the per-token difference. Negative
 * control: text sampled from fixed weights gives no held-out gain beyond 3 standard errors. */
static void test_recovery_and_heldout(void **state)
{
    (void)state;
    LxError err[1];
    TestMembers ms;
    test_members_open(&ms, 2, 16, 2000);
    const double w0[2] = {0.5, 0.5}, alpha = 2;
    Router *planted = router_table_new(2, 16, w0, 0, err);
    for (int c = 0; c < 16; c++) {
        double a = c % 2 ? 0.15 : 0.85;
        router_row(planted, c)[0] = a;
        router_row(planted, c)[1] = 1 - a;
    }
    long n;
    int *text = sample_text(&ms, planted, 31, &n);
    Router *fitted;
    ScoreTable train;
    int *ctx;
    Heldout h = fit_and_hold_out(&ms, text, alpha, &fitted, &train, &ctx);
    int checked = 0;
    double worst = 0;
    for (int c = 0; c < 16; c++) {
        double info = 0, r = router_row(fitted, c)[0];
        long n_c = 0;
        for (long j = 0; j < train.n; j++)
            if (ctx[j] == c) {
                double p1 = exp(train.logp[j]), p2 = exp(train.logp[train.n + j]), d = (p1 - p2) / (r * p1 + (1 - r) * p2);
                info += d * d;
                n_c++;
            }
        if (n_c < 300)
            continue;
        double se = 1 / sqrt(info), tol = 5 * se + alpha / ((double)n_c + alpha);
        double off = fabs(r - router_row(planted, c)[0]);
        worst = fmax(worst, off / tol);
        print_message("    context %2d: n %5ld, fitted %.3f, planted %.2f, tolerance %.3f\n", c, n_c, r,
                      router_row(planted, c)[0], tol);
        assert_true(off <= tol);
        checked++;
    }
    assert_true(checked >= 8);
    print_message("    routed text, held out: NLL fixed %.5f, router %.5f, gain %.5f +- %.5f nats/token\n",
                  h.nll_fixed, h.nll_router, h.gain, h.se);
    assert_true(h.gain > 5 * h.se);
    router_free(fitted);
    free(ctx);
    score_table_free(&train);
    free(text);

    /* negative control: the same members, fixed weights */
    Router *constant = router_constant(2, (double[]){0.6, 0.4}, err);
    text = sample_text(&ms, constant, 32, &n);
    h = fit_and_hold_out(&ms, text, alpha, NULL, &train, &ctx);
    print_message("    fixed-weight text, held out: NLL fixed %.5f, router %.5f, gain %.5f +- %.5f nats/token\n",
                  h.nll_fixed, h.nll_router, h.gain, h.se);
    assert_true(h.gain < 3 * h.se);
    free(ctx);
    score_table_free(&train);
    free(text);
    router_free(constant);
    router_free(planted);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ score with a router */

/* The constant router scores exactly as the weights do; a planted table as its rows say. */
static void test_score_router(void **state)
{
    (void)state;
    LxError err[1];
    ScoreTable t;
    enum { N = 200, C = 9 };
    assert_int_equal(score_table_init(&t, 3, N, err), 0);
    int tokens[N + 1];
    uint64_t seed = 9;
    tokens[0] = TOKEN_BOS;
    for (int j = 0; j < N; j++) {
        tokens[j + 1] = (int)(lcg(&seed) % 16);
        for (int i = 0; i < 3; i++)
            t.logp[i * N + j] = log(0.01 + uniform(&seed));
    }
    ScoreView v = {.table = &t, .tokens = tokens, .context = C, .vocab_size = 16};
    static double routes[N * 3];
    Router *c = router_constant(3, W3, err), *r = flip_router(16);
    assert_int_equal(router_routes(c, &v, routes, err), 0);
    assert_true(fabs(router_nll(&t, routes) - score_ensemble_nll(&t, W3)) < 1e-12);
    assert_int_equal(router_routes(r, &v, routes, err), 0);
    int ctx[N];
    router_contexts(&v, ctx);
    double want = 0;
    for (int j = 0; j < N; j++) {
        /* a window's first token has BOS (odd: W3_SWAPPED) as its previous token */
        int prev = j % (C - 1) == 0 ? TOKEN_BOS : tokens[j];
        assert_int_equal(ctx[j], prev);
        const double *row = prev % 2 ? W3_SWAPPED : W3;
        assert_memory_equal(routes + 3 * j, row, sizeof W3);
        want -= log_q(&t, j, row);
    }
    assert_true(fabs(router_nll(&t, routes) - want / N) < 1e-12);
    router_free(c);
    router_free(r);
    score_table_free(&t);
}

/* ------------------------------------------------------------------ the file */

/* The files in dir other than . and .. (no temporaries may be left). */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void expect_bad(const void *data, size_t size, const char *needle)
{
    char path[256];
    LxError err[1];
    test_write_bytes(path, data, size);
    Router *r = router_open(path, err);
    if (r)
        fail_msg("a bad router file (%s) was accepted", needle);
    print_message("    %s\n", err->message);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, needle));
    assert_null(strchr(err->message, '\n'));
    test_remove(path);
}

static void test_router_file(void **state)
{
    (void)state;
    LxError err[1];
    char dir[] = "/tmp/llamix-router-XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.router", dir);
    Router *r = flip_router(16);
    r->alpha = 2.5;
    router_row(r, 3)[0] = 0.123456789, router_row(r, 3)[1] = 0.2, router_row(r, 3)[2] = 1 - 0.323456789;
    assert_int_equal(router_save(r, path, err), 0);
    assert_int_equal(router_save(r, path, err), 0); /* over an existing file */
    assert_int_equal(count_files(dir), 1);
    Router *back = router_open(path, err);
    assert_non_null(back);
    assert_int_equal(back->k, 3);
    assert_int_equal(back->vocab_size, 16);
    assert_true(back->alpha == 2.5);
    assert_string_equal(back->ops->name, "previous-token");
    for (size_t i = 0; i < r->n_params; i++)
        assert_true(fabs(back->params[i] - r->params[i]) < 1e-7);
    /* wrong K or V for an ensemble: one line naming the file */
    TestMembers two, three;
    test_members_open(&two, 2, 16, 1000);
    test_members_open(&three, 3, 12, 1000);
    Ensemble e;
    EnsembleParams p = {.router = back, .sampler = params(1, 0, 1)};
    assert_int_not_equal(ensemble_init(&e, two.members, 2, NULL, 0, &p, err), 0);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, "3 members"));
    ensemble_free(&e);
    assert_int_not_equal(ensemble_init(&e, three.members, 3, NULL, 0, &p, err), 0);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, "16 token ids"));
    ensemble_free(&e);
    test_members_close(&two);
    test_members_close(&three);
    /* a failed save (no such directory) leaves nothing behind; the constant router is refused */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/r.router", dir);
    assert_int_not_equal(router_save(r, missing, err), 0);
    assert_non_null(strstr(err->message, missing));
    Router *c = router_constant(2, NULL, err);
    assert_int_not_equal(router_save(c, path, err), 0);
    router_free(c);
    assert_int_equal(count_files(dir), 1);

    /* bad files, each a copy of the good one with one thing wrong */
    size_t size;
    unsigned char *good = test_read_file(path, &size);
    assert_non_null(good);
    assert_int_equal(size, 24 + 8 + 8 * 3 + 4 * 16 * 3);
    unsigned char *bad = malloc(size + 8);
    const size_t table = 24 + 8 + 8 * 3;
#define COPY() memcpy(bad, good, size)
    COPY(); bad[0] ^= 0xff; expect_bad(bad, size, "not a llamix router file");
    COPY(); expect_bad(bad, 10, "too short");
    COPY(); expect_bad(bad, size - 4, "truncated");
    COPY(); memset(bad + size, 0, 8); expect_bad(bad, size + 8, "trailing bytes");
    COPY(); bad[4] = 9; expect_bad(bad, size, "version 9");
    COPY(); bad[8] = 7; expect_bad(bad, size, "kind 7");
    int32_t v;
    COPY(); v = 0; memcpy(bad + 12, &v, 4); expect_bad(bad, size, "K = 0");
    COPY(); v = 65; memcpy(bad + 12, &v, 4); expect_bad(bad, size, "K = 65");
    COPY(); v = -3; memcpy(bad + 16, &v, 4); expect_bad(bad, size, "V = -3");
    COPY(); v = ROUTER_MAX_VOCAB; memcpy(bad + 16, &v, 4); v = 64; memcpy(bad + 12, &v, 4);
    expect_bad(bad, size, "truncated"); /* a 4 GiB table claimed by a small file: refused, not allocated */
    double d = NAN;
    COPY(); memcpy(bad + 24, &d, 8); expect_bad(bad, size, "alpha");
    COPY(); memcpy(bad + 32, &d, 8); expect_bad(bad, size, "fixed weight 1 is nan");
    d = 0.9;
    COPY(); memcpy(bad + 32, &d, 8); expect_bad(bad, size, "fixed weights sum to 1.2");
    float f = NAN;
    COPY(); memcpy(bad + table + 4 * (5 * 3 + 1), &f, 4); expect_bad(bad, size, "row 5");
    f = INFINITY;
    COPY(); memcpy(bad + table + 4 * (6 * 3 + 2), &f, 4); expect_bad(bad, size, "row 6");
    f = 0.5f;
    COPY(); memcpy(bad + table + 4 * (7 * 3), &f, 4); expect_bad(bad, size, "row 7 (previous token 7) sums to");
    f = -0.1f;
    COPY(); memcpy(bad + table + 4 * (8 * 3), &f, 4); expect_bad(bad, size, ">= 0");
#undef COPY
    assert_null(router_open(dir, err));
    assert_non_null(strstr(err->message, "not a regular file"));
    snprintf(missing, sizeof missing, "%s/absent.router", dir);
    assert_null(router_open(missing, err));
    assert_non_null(strstr(err->message, "cannot open"));
    free(bad);
    free(good);
    router_free(back);
    router_free(r);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------------ real models */

/* Fit on text the ensemble of stories260K and llama2xs_tok512 generates with some seeds, evaluate
 * on text it generates with others; and on data/story.txt, split in halves. The numbers are
 * reported whatever they show; the only claim checked is the training one (the routed NLL is at
 * most the fixed weights'). */
static int write_text(void *user, const LxTokenEvent *ev)
{
    fwrite(ev->text, 1, ev->text_length, user);
    return 0;
}

static char *generate_text(LxEnsemble *e, int seed0, int n_seeds)
{
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    text[0] = '\0';
    LxGenerateParams g = lx_generate_defaults();
    g.n_predict = 250;
    for (int s = 0; s < n_seeds; s++) {
        lx_ensemble_set_seed(e, (uint64_t)(seed0 + s));
        char *chunk = NULL;
        size_t chunk_len = 0;
        FILE *m = open_memstream(&chunk, &chunk_len);
        LxGenerateStats st;
        LxError err;
        assert_int_equal(lx_generate(e, "", &g, write_text, m, &st, &err), LX_OK);
        fclose(m);
        while (len + chunk_len + 2 > cap)
            text = realloc(text, cap *= 2);
        memcpy(text + len, chunk, chunk_len);
        len += chunk_len;
        text[len++] = '\n';
        text[len] = '\0';
        free(chunk);
    }
    return text;
}

static void report_heldout(LxModel **models, LxTokenizer *tok, const char *what, const char *train_text,
                           const char *held_text)
{
    LxError err;
    LxScore *train = NULL, *held = NULL;
    LxScoreParams sp = {.threads = 1};
    assert_int_equal(lx_score_text(models, 2, tok, train_text, &sp, &train, &err), LX_OK);
    assert_int_equal(lx_score_text(models, 2, tok, held_text, &sp, &held, &err), LX_OK);
    double alphas[] = {1, 10, 100};
    for (int a = 0; a < 3; a++) {
        LxRouter *r;
        LxRouterFit fit;
        assert_int_equal(lx_score_fit_router(train, alphas[a], 1000, 1e-10, &r, &fit, &err), LX_OK);
        assert_true(fit.nll <= fit.nll_fixed + 1e-12);
        const double *w = lx_router_fixed_weights(r);
        double routed;
        assert_int_equal(lx_score_router_nll(held, r, &routed, &err), LX_OK);
        double m1 = lx_score_member_nll(held, 0), m2 = lx_score_member_nll(held, 1);
        print_message("    %s, alpha %g: train %ld tokens: fixed %.4f, router %.4f | held-out %ld tokens: "
                      "best member %.4f, fixed (%.3f,%.3f) %.4f, router %.4f nats/token\n",
                      what, alphas[a], lx_score_tokens(train), fit.nll_fixed, fit.nll, lx_score_tokens(held),
                      fmin(m1, m2), w[0], w[1], lx_score_ensemble_nll(held, w), routed);
        lx_router_free(r);
    }
    lx_score_free(train);
    lx_score_free(held);
}

static void test_real_heldout(void **state)
{
    (void)state;
    char paths[3][4096];
    const char *names[3] = {"stories260K.bin", "llama2xs_tok512.bin", "tok512.bin"};
    for (int i = 0; i < 3; i++) {
        const char *p = test_real_model(names[i]);
        if (!p)
            skip();
        snprintf(paths[i], sizeof paths[i], "%s", p);
    }
    LxError err;
    LxModel *models[2];
    LxTokenizer *tok;
    assert_int_equal(lx_model_open(paths[0], &models[0], &err), LX_OK);
    assert_int_equal(lx_model_open(paths[1], &models[1], &err), LX_OK);
    assert_int_equal(lx_tokenizer_open(paths[2], 512, &tok, &err), LX_OK);
    LxEnsembleParams ep = lx_ensemble_defaults();
    ep.threads = 1;
    LxEnsemble *e;
    assert_int_equal(lx_ensemble_new(models, 2, &tok, 1, &ep, &e, &err), LX_OK);
    char *train = generate_text(e, 1, 40), *held = generate_text(e, 1001, 40);
    report_heldout(models, tok, "ensemble text (seeds 1-40 / 1001-1040)", train, held);
    free(train);
    free(held);
    lx_ensemble_free(e);
    /* data/story.txt, split at the middle line */
    char story_path[4096];
    const char *srcdir = getenv("srcdir");
    snprintf(story_path, sizeof story_path, "%s/data/story.txt", srcdir ? srcdir : ".");
    char *story;
    size_t len;
    if (lx_read_text(story_path, &story, &len, &err) == LX_OK) {
        char *mid = strchr(story + len / 2, '\n');
        if (mid) {
            *mid = '\0';
            report_heldout(models, tok, "data/story.txt (halves)", story, mid + 1);
        }
        free(story);
    }
    lx_tokenizer_free(tok);
    lx_model_close(models[0]);
    lx_model_close(models[1]);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_constant_router_is_the_weights),
        cmocka_unit_test(test_routed_one_step),
        cmocka_unit_test(test_routed_sequences),
        cmocka_unit_test(test_em_monotone),
        cmocka_unit_test(test_recovery_and_heldout),
        cmocka_unit_test(test_score_router),
        cmocka_unit_test(test_router_file),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_heldout),
    };
    TEST_MAIN(own, real);
}
