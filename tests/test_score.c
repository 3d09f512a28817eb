/* test_score.c: per-token scores, the ensemble's NLL, and EM for the weights.
 *
 * Oracles: the scalar reference forward run afresh for every scored token on exactly the prefix
 * the window scheme promises (BOS and the earlier tokens of its window), with log-softmax and
 * mixtures computed here in double. The EM recovery test samples text from a CE mixture with
 * known weights (fixed seeds) and states its tolerance from the standard error of the fit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define MAX_K 3
#define V_TEST 32

/* BOS then n - 1 ids from a small LCG (any ids will do for exactness tests). */
static int *random_tokens(long n, uint64_t seed)
{
    int *t = malloc(sizeof(int) * (size_t)n);
    assert_non_null(t);
    t[0] = TOKEN_BOS;
    for (long i = 1; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int)((seed >> 33) % V_TEST);
    }
    return t;
}

/* Score every member into a table (the code under test). */
static void score_all(const TestMembers *ms, const int *tokens, long n, int context, int max_batch,
                      ScoreTable *table)
{
    LxError err[1];
    if (score_table_init(table, ms->k, n - 1, err))
        fail_msg("score_table_init: %s", err->message);
    ScoreOptions o = {.context = context, .max_batch = max_batch};
    for (int i = 0; i < ms->k; i++)
        if (score_member(&ms->models[i], tokens, n, &o, table->logp + (size_t)i * (size_t)table->n, err))
            fail_msg("score_member: %s", err->message);
}

/* The oracle: p_m(tokens[j] | BOS, tokens[a..j)) for every vocabulary id, where a is the first
 * text token of j's window, from the scalar reference forward run on just that prefix. probs (V). */
static void reference_probs(const Model *m, const int *tokens, long j, int context, double *probs)
{
    LxError err[1];
    long a = 1 + (j - 1) / (context - 1) * (context - 1);
    int prefix[128], len = 0;
    prefix[len++] = TOKEN_BOS;
    for (long i = a; i < j; i++)
        prefix[len++] = tokens[i];
    assert_true(len <= context - 1);
    ReferenceState st;
    float logits[V_TEST];
    if (forward_reference_init(&st, &m->config, len, err) ||
        forward_reference(m, &st, prefix, len, 0, logits, 0, err))
        fail_msg("reference forward: %s", err->message);
    forward_reference_free(&st);
    double max = logits[0], sum = 0;
    for (int x = 1; x < V_TEST; x++)
        max = fmax(max, logits[x]);
    for (int x = 0; x < V_TEST; x++)
        sum += probs[x] = exp(logits[x] - max);
    for (int x = 0; x < V_TEST; x++)
        probs[x] /= sum;
}

/* ------------------------------------------------------------------ 1. a member's score */

typedef struct {
    long calls, last_done, last_total;
    double last_sum;
} Seen;

static void record(void *user, int member, long done, long total, double nll_sum)
{
    Seen *s = user;
    (void)member;
    s->calls++;
    s->last_done = done;
    s->last_total = total;
    s->last_sum = nll_sum;
}

/* Each log p equals log-softmax of the reference forward on the promised prefix (to 1e-4: the
 * batched and scalar forwards round differently, by about 1e-6 in the logits), and so does
 * their sum. max_batch 7 with context 20 makes each window of 19 rows take 3 forward calls
 * (7 + 7 + 5), so the chunking within a window is exercised too; the default batch must give
 * the same numbers. The text is 150 tokens: 8 windows, the last one partial. */
static void test_member_matches_reference(void **state)
{
    (void)state;
    enum { N = 150, CONTEXT = 20 };
    TestMembers ms;
    test_members_open(&ms, 2, V_TEST, 500);
    int *tokens = random_tokens(N, 7);
    for (int i = 0; i < ms.k; i++) {
        LxError err[1];
        double lp[N - 1], lp_default[N - 1];
        Seen seen = {0};
        ScoreOptions o = {.context = CONTEXT, .max_batch = 7, .progress = record, .user = &seen};
        if (score_member(&ms.models[i], tokens, N, &o, lp, err))
            fail_msg("score_member: %s", err->message);
        ScoreOptions d = {.context = CONTEXT};
        if (score_member(&ms.models[i], tokens, N, &d, lp_default, err))
            fail_msg("score_member: %s", err->message);
        double worst = 0, sum = 0, ref_sum = 0;
        for (long j = 1; j < N; j++) {
            double probs[V_TEST];
            reference_probs(&ms.models[i], tokens, j, CONTEXT, probs);
            double ref = log(probs[tokens[j]]);
            worst = fmax(worst, fabs(lp[j - 1] - ref));
            worst = fmax(worst, fabs(lp_default[j - 1] - ref));
            sum += lp[j - 1];
            ref_sum += ref;
        }
        print_message("    member %d: max |log p - reference| = %.3g over %d tokens; sum %.6f vs %.6f\n",
                      i + 1, worst, N - 1, sum, ref_sum);
        assert_true(worst < 1e-4);
        assert_true(fabs(sum - ref_sum) < 1e-3);
        /* progress: once per window, ending with every token and the running sum */
        assert_int_equal(seen.calls, score_windows(N, CONTEXT));
        assert_int_equal(seen.calls, 8);
        assert_int_equal(seen.last_done, N - 1);
        assert_int_equal(seen.last_total, N - 1);
        assert_true(fabs(seen.last_sum + sum) < 1e-9 * fabs(sum));
    }
    free(tokens);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 2. the ensemble's NLL */

/* score_ensemble_nll equals -mean log sum_k w_k p_k(x) computed directly from the reference
 * probabilities (to 1e-6, loose against float rounding in the forward), lies below the weighted
 * mean of the members' NLLs (Jensen), and below it strictly here since the members differ (a
 * weighted mean of log p instead of log of a weighted mean of p would fail that). A weight of 1
 * on one member gives exactly that member's NLL. */
static void test_ensemble_nll(void **state)
{
    (void)state;
    enum { N = 130, CONTEXT = 33 };
    TestMembers ms;
    test_members_open(&ms, 3, V_TEST, 600);
    int *tokens = random_tokens(N, 11);
    ScoreTable table;
    score_all(&ms, tokens, N, CONTEXT, 0, &table);
    const double w[3] = {0.5, 0.3, 0.2};

    double direct = 0;
    for (long j = 1; j < N; j++) {
        double q = 0;
        for (int i = 0; i < ms.k; i++) {
            double probs[V_TEST];
            reference_probs(&ms.models[i], tokens, j, CONTEXT, probs);
            q += w[i] * probs[tokens[j]];
        }
        direct -= log(q);
    }
    direct /= N - 1;
    double ens = score_ensemble_nll(&table, w), mean = 0;
    for (int i = 0; i < ms.k; i++)
        mean += w[i] * score_member_nll(&table, i);
    print_message("    ensemble NLL %.6f, direct %.6f, weighted mean of members %.6f\n", ens, direct, mean);
    assert_true(fabs(ens - direct) < 1e-6);
    assert_true(ens <= mean + 1e-12);
    assert_true(mean - ens > 1e-3);

    for (int i = 0; i < ms.k; i++) {
        double one[3] = {0, 0, 0};
        one[i] = 1;
        assert_true(fabs(score_ensemble_nll(&table, one) - score_member_nll(&table, i)) < 1e-12);
    }
    /* a table of tiny probabilities: log-sum-exp must not underflow to log 0 */
    for (long j = 0; j < table.n; j++)
        for (int i = 0; i < ms.k; i++)
            table.logp[(size_t)i * (size_t)table.n + (size_t)j] = -2000.0 - i;
    double tiny = score_ensemble_nll(&table, w);
    assert_true(isfinite(tiny));
    assert_true(fabs(tiny - (2000.0 - log(0.5 + 0.3 * exp(-1.0) + 0.2 * exp(-2.0)))) < 1e-9);
    score_table_free(&table);
    free(tokens);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 2b. standard errors */

/* Hand-computed: member 1's losses 1,2,3,4 have mean 2.5 and sample variance 5/3, so the SE is
 * sqrt(5/3 / 4) = sqrt(5/12); member 2's 2,2,4,4 mean 3, variance 4/3, SE sqrt(1/3). Their
 * paired difference 1,0,1,0 has mean 0.5, variance 1/3, SE sqrt(1/12) = 0.2887, well below the
 * unpaired sqrt(5/12 + 1/3) = 0.866 (negative control: an SE computed without pairing fails the
 * paired check). An ensemble with all weight on member 1 is member 1: difference 0 +- 0. One
 * token has no SE (NaN). */
static void test_standard_errors(void **state)
{
    (void)state;
    LxError err[1];
    ScoreTable t;
    assert_int_equal(score_table_init(&t, 2, 4, err), 0);
    const double l1[4] = {1, 2, 3, 4}, l2[4] = {2, 2, 4, 4};
    for (int j = 0; j < 4; j++) {
        t.logp[j] = -l1[j];
        t.logp[4 + j] = -l2[j];
    }
    double se, only1[2] = {1, 0};
    assert_true(fabs(score_nll_stats(&t, 0, SCORE_NONE, NULL, &se) - 2.5) < 1e-12);
    assert_true(fabs(se - sqrt(5.0 / 12)) < 1e-12);
    assert_true(fabs(score_nll_stats(&t, 1, SCORE_NONE, NULL, &se) - 3.0) < 1e-12);
    assert_true(fabs(se - sqrt(1.0 / 3)) < 1e-12);
    assert_true(fabs(score_nll_stats(&t, 1, 0, NULL, &se) - 0.5) < 1e-12);
    assert_true(fabs(se - sqrt(1.0 / 12)) < 1e-12);
    double unpaired = sqrt(5.0 / 12 + 1.0 / 3);
    assert_false(fabs(unpaired - sqrt(1.0 / 12)) < 1e-3); /* the control: pairing matters here */
    assert_true(fabs(score_nll_stats(&t, 0, 1, NULL, &se) + 0.5) < 1e-12); /* a - b = -(b - a) */
    assert_true(fabs(se - sqrt(1.0 / 12)) < 1e-12);
    assert_true(fabs(score_nll_stats(&t, SCORE_ENSEMBLE, SCORE_NONE, only1, &se) - 2.5) < 1e-12);
    assert_true(fabs(se - sqrt(5.0 / 12)) < 1e-12);
    assert_true(fabs(score_nll_stats(&t, SCORE_ENSEMBLE, 0, only1, &se)) < 1e-12);
    assert_true(se < 1e-12);
    /* equal weights: the ensemble's mean agrees with score_ensemble_nll */
    const double half[2] = {0.5, 0.5};
    assert_true(fabs(score_nll_stats(&t, SCORE_ENSEMBLE, SCORE_NONE, half, &se) - score_ensemble_nll(&t, half)) < 1e-12);
    score_table_free(&t);

    assert_int_equal(score_table_init(&t, 1, 1, err), 0);
    t.logp[0] = -2;
    assert_true(fabs(score_nll_stats(&t, 0, SCORE_NONE, NULL, &se) - 2) < 1e-12);
    assert_true(isnan(se));
    score_table_free(&t);
}

/* A message whose path is longer than the message buffer keeps its problem: util.c's fail()
 * cuts the middle out of the longest word (the path) instead of the end. A path of 3000 and of
 * 600 characters, and a short message that is left exactly as it is (control). */
static void test_long_path_message(void **state)
{
    (void)state;
    static char path[3001];
    LxError err[1];
    for (int len = 600; len <= 3000; len += 2400) {
        memset(path, 'd', (size_t)len);
        path[len] = '\0';
        (fail)(err, LX_ERR_FILE, "%s: cannot open: No such file or directory", path);
        size_t n = strlen(err->message);
        assert_true(n < LX_ERROR_LENGTH);
        assert_non_null(strstr(err->message, "...d"));
        const char *tail = "d: cannot open: No such file or directory"; /* the whole problem, at the end */
        assert_true(n > strlen(tail) && strcmp(err->message + n - strlen(tail), tail) == 0);
        assert_true(n >= LX_ERROR_LENGTH - 1); /* shortened only as much as needed */
    }
    (fail)(err, LX_ERR_FILE, "%s: cannot open: %s", "a.bin", "No such file or directory");
    assert_string_equal(err->message, "a.bin: cannot open: No such file or directory");
}

/* ------------------------------------------------------------------ 3. EM on known tables */

static void check_monotone(const double *trace, int steps)
{
    for (int s = 1; s <= steps; s++)
        if (trace[s] > trace[s - 1] + 1e-12)
            fail_msg("EM step %d raised the NLL: %.17g -> %.17g", s, trace[s - 1], trace[s]);
}

/* Two "members" that are each sure of their own kind of token: member 1 gives 30 of 100 tokens
 * probability 1 and the rest e^-40, member 2 the opposite. The likelihood is then
 * (0.3 log w1 + 0.7 log w2) up to e^-40 terms, maximised at w = (0.3, 0.7). A random 4-member
 * table checks monotonicity in the generic case, and the optimality condition of a maximum on
 * the simplex: mean_t p_k(x_t) / q(x_t) = 1 for every member with weight > 0 (it is the
 * gradient of the mean log-likelihood, which must be equal across the members in use). */
static void test_em_known_tables(void **state)
{
    (void)state;
    LxError err[1];
    ScoreTable t;
    assert_int_equal(score_table_init(&t, 2, 100, err), 0);
    for (long j = 0; j < 100; j++) {
        t.logp[j] = j < 30 ? 0 : -40;
        t.logp[100 + j] = j < 30 ? -40 : 0;
    }
    double w[4], trace[1001];
    ScoreFit fit;
    assert_int_equal(score_fit_weights(&t, w, 1000, 1e-12, trace, &fit, err), 0);
    print_message("    two sure members: w = (%.9f, %.9f) after %d steps\n", w[0], w[1], fit.iterations);
    assert_true(fit.converged);
    assert_true(fabs(w[0] - 0.3) < 1e-6 && fabs(w[1] - 0.7) < 1e-6);
    assert_true(fabs(trace[0] - score_ensemble_nll(&t, (double[]){0.5, 0.5})) < 1e-12);
    assert_true(fabs(fit.nll - score_ensemble_nll(&t, w)) < 1e-12);
    assert_true(fabs(fit.nll - -(0.3 * log(0.3) + 0.7 * log(0.7))) < 1e-9);
    check_monotone(trace, fit.iterations);
    score_table_free(&t);

    uint64_t seed = 99;
    assert_int_equal(score_table_init(&t, 4, 500, err), 0);
    for (size_t c = 0; c < 4 * 500; c++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t.logp[c] = -6.0 * (double)(seed >> 11) / 9007199254740992.0; /* log p in (-6, 0] */
    }
    assert_int_equal(score_fit_weights(&t, w, 1000, 1e-14, trace, &fit, err), 0);
    check_monotone(trace, fit.iterations);
    assert_true(fit.nll <= trace[0]);
    double wsum = 0;
    for (int i = 0; i < 4; i++) {
        double grad = 0;
        for (long j = 0; j < t.n; j++) {
            double lq = 0, q = 0;
            for (int m = 0; m < 4; m++)
                q += w[m] * exp(t.logp[m * 500 + j]);
            lq = log(q);
            grad += exp(t.logp[i * 500 + j] - lq);
        }
        grad /= (double)t.n;
        print_message("    random table: w%d = %.6f, mean p/q = %.6f\n", i + 1, w[i], grad);
        if (w[i] > 1e-3)
            assert_true(fabs(grad - 1) < 1e-4);
        else
            assert_true(grad < 1 + 1e-4);
        wsum += w[i];
    }
    assert_true(fabs(wsum - 1) < 1e-12);
    /* max_iter is respected, and 0 steps leaves the uniform start */
    assert_int_equal(score_fit_weights(&t, w, 3, 0, trace, &fit, err), 0);
    assert_int_equal(fit.iterations, 3);
    assert_false(fit.converged);
    assert_int_equal(score_fit_weights(&t, w, 0, 0, trace, &fit, err), 0);
    assert_true(fit.iterations == 0 && w[0] == 0.25 && w[3] == 0.25);
    assert_true(fabs(fit.nll - trace[0]) < 1e-15);
    score_table_free(&t);
}

/* ------------------------------------------------------------------ 4. EM recovers weights */

/* Text of n_seq sequences, each BOS + 63 tokens sampled from an ensemble of `models` (CE, T = 1,
 * no truncation: exactly q = sum_k w_k p_k), concatenated after one BOS. Scoring it with context
 * 64 makes every window exactly one sampled sequence, so each token is scored on the prefix it
 * was sampled from. Returns the token count. */
static long sample_text(const Model *const *models, const double *w, int k, int n_seq,
                        uint64_t seed, int *out)
{
    LxError err[1];
    Ensemble e;
    SamplerParams p = {.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0};
    if (test_ensemble_init(&e, models, w, k, 64, LX_MODE_CE, p, seed, err))
        fail_msg("ensemble_init: %s", err->message);
    long n = 0;
    out[n++] = TOKEN_BOS;
    for (int s = 0; s < n_seq; s++) {
        ensemble_reset(&e);
        int bos = TOKEN_BOS;
        if (ensemble_append(&e, &bos, 1, err))
            fail_msg("ensemble_append: %s", err->message);
        while (e.n_tokens < 64) {
            int token;
            if (ensemble_step(&e, &token, NULL, NULL, err) || ensemble_append(&e, &token, 1, err))
                fail_msg("sampling: %s", err->message);
            out[n++] = token;
        }
    }
    ensemble_free(&e);
    return n;
}

/* Standard error of the fitted w1 for two members, from the observed information:
 * d^2/dw1^2 of -sum_t log(w1 p1 + (1 - w1) p2) = sum_t ((p1 - p2) / q)^2. */
static double fit_standard_error(const ScoreTable *t, const double *w)
{
    double info = 0;
    for (long j = 0; j < t->n; j++) {
        double p1 = exp(t->logp[j]), p2 = exp(t->logp[t->n + j]);
        double d = (p1 - p2) / (w[0] * p1 + w[1] * p2);
        info += d * d;
    }
    return 1 / sqrt(info);
}

static double fit(const TestMembers *ms, const int *tokens, long n, double *w, const char *label)
{
    LxError err[1];
    ScoreTable t;
    score_all(ms, tokens, n, 64, 0, &t);
    double trace[2001];
    ScoreFit f;
    if (score_fit_weights(&t, w, 2000, 1e-12, trace, &f, err))
        fail_msg("score_fit_weights: %s", err->message);
    check_monotone(trace, f.iterations);
    double se = fit_standard_error(&t, w);
    print_message("    %s: %ld tokens, fitted w = (%.4f, %.4f), standard error %.4f, %d EM steps, "
                  "NLL %.4f -> %.4f\n", label, t.n, w[0], w[1], se, f.iterations, trace[0], f.nll);
    score_table_free(&t);
    return se;
}

/* Seeds 4242 (text) and 700 (members). 64 sequences give 4032 tokens. The tolerance 0.05 is
 * more than 5 standard errors of the fitted weight (asserted below, so a change that weakened
 * the fit's power would show), which a correct fit misses by chance with probability < 1e-6;
 * and a wrong target is caught: the negative control, text from member 1 alone, must fit w1 >
 * 0.95, clearly outside 0.8 +- 0.05. A third text with the weights swapped fits near 0.2. */
static void test_em_recovers_weights(void **state)
{
    (void)state;
    enum { N_SEQ = 64, TOL_PERCENT = 5 };
    const double tol = TOL_PERCENT / 100.0;
    TestMembers ms;
    test_members_open(&ms, 2, V_TEST, 700);
    int *tokens = malloc(sizeof(int) * (1 + N_SEQ * 63));
    assert_non_null(tokens);
    double w[2];

    const double truth[2] = {0.8, 0.2};
    long n = sample_text(ms.members, truth, 2, N_SEQ, 4242, tokens);
    assert_int_equal(n, 1 + N_SEQ * 63);
    double se = fit(&ms, tokens, n, w, "CE mixture (0.8, 0.2)");
    assert_true(se < tol / 5);
    assert_true(fabs(w[0] - 0.8) < tol);

    const double swapped[2] = {0.2, 0.8};
    n = sample_text(ms.members, swapped, 2, N_SEQ, 4343, tokens);
    fit(&ms, tokens, n, w, "CE mixture (0.2, 0.8)");
    assert_true(fabs(w[0] - 0.2) < tol);

    /* negative control: member 1 alone */
    n = sample_text(ms.members, NULL, 1, N_SEQ, 4444, tokens);
    fit(&ms, tokens, n, w, "member 1 alone (control)");
    assert_true(w[0] > 0.95);
    assert_true(fabs(w[0] - 0.8) > tol);

    free(tokens);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 5. errors */

static void test_errors(void **state)
{
    (void)state;
    LxError err[1];
    char path[256];
    TestMembers ms;
    test_members_open(&ms, 1, V_TEST, 800);
    int tokens[5] = {TOKEN_BOS, 3, 4, 5, 6};
    double lp[4];
    ScoreOptions o = {.context = 4};
    assert_int_equal(score_member(&ms.models[0], tokens, 5, &o, lp, err), 0);
    assert_int_not_equal(score_member(&ms.models[0], tokens, 1, &o, lp, err), 0);
    assert_non_null(strstr(err->message, "nothing to score"));
    assert_int_not_equal(score_member(&ms.models[0], tokens + 1, 4, &o, lp, err), 0);
    assert_non_null(strstr(err->message, "BOS"));
    ScoreOptions too_long = {.context = 65}, too_short = {.context = 1};
    assert_int_not_equal(score_member(&ms.models[0], tokens, 5, &too_long, lp, err), 0);
    assert_non_null(strstr(err->message, "seq_len 64"));
    assert_int_not_equal(score_member(&ms.models[0], tokens, 5, &too_short, lp, err), 0);
    tokens[4] = V_TEST; /* only ever predicted, never fed to forward: must still be checked */
    assert_int_not_equal(score_member(&ms.models[0], tokens, 5, &o, lp, err), 0);
    assert_non_null(strstr(err->message, "outside the vocabulary"));
    test_members_close(&ms);

    double w[3] = {2, 1, 1};
    assert_int_equal(weights_normalise(w, 3, w, err), 0);
    assert_true(w[0] == 0.5 && w[1] == 0.25);
    double bad[2][2] = {{1, 0}, {1, NAN}};
    for (int i = 0; i < 2; i++)
        assert_int_not_equal(weights_normalise(bad[i], 2, bad[i], err), 0);

    ScoreTable t;
    assert_int_not_equal(score_table_init(&t, 0, 10, err), 0);
    score_table_free(&t);
    assert_int_not_equal(score_table_init(&t, SCORE_MAX_MEMBERS + 1, 10, err), 0);
    score_table_free(&t);

    /* the text file: missing, a directory, empty, binary; then a good one */
    size_t len;
    assert_null(score_read_text("/nonexistent/llamix.txt", &len, err));
    assert_non_null(strstr(err->message, "/nonexistent/llamix.txt"));
    assert_null(score_read_text("/tmp", &len, err));
    assert_non_null(strstr(err->message, "directory"));
    test_write_bytes(path, "", 0);
    assert_null(score_read_text(path, &len, err));
    assert_non_null(strstr(err->message, "empty"));
    test_remove(path);
    test_write_bytes(path, "a\0b", 3);
    assert_null(score_read_text(path, &len, err));
    assert_non_null(strstr(err->message, "NUL"));
    test_remove(path);
    /* longer than the first read buffer, so the growing path runs */
    size_t big = 200000;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    test_write_bytes(path, data, big);
    char *text = score_read_text(path, &len, err);
    assert_non_null(text);
    assert_int_equal(len, big);
    assert_int_equal(strlen(text), big);
    assert_memory_equal(text, data, big);
    free(text);
    free(data);
    test_remove(path);
}

/* ------------------------------------------------------------------ 6. real models */

static const char STORY[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside with her "
    "friends. One day, she found a big red ball in the park. She was very happy and ran to show "
    "her mom. Her mom smiled and said, \"What a nice ball! Let's play together.\" They played "
    "with the ball all day long. When the sun went down, Lily was tired but happy. She hugged "
    "her mom and went to bed.\nOne day, a little dog named Max went for a walk. He saw a cat on "
    "a fence. Max wanted to be friends, so he wagged his tail. The cat jumped down and they "
    "played in the grass until it was time to go home.";

static int *encode_story(const char *tok_path, int vocab, int *n)
{
    LxError err[1];
    Tokenizer *tok = tokenizer_open(tok_path, vocab, err);
    if (!tok)
        fail_msg("tokenizer_open: %s", err->message);
    int max = (int)sizeof STORY + 3;
    int *tokens = malloc(sizeof(int) * (size_t)max);
    assert_non_null(tokens);
    if (tokenizer_encode(tok, STORY, 1, 0, tokens, max, n, err))
        fail_msg("tokenizer_encode: %s", err->message);
    tokenizer_free(tok);
    return tokens;
}

static double real_nll(const char *model_path, const int *tokens, int n, int context)
{
    LxError err[1];
    Model m;
    if (model_open(&m, model_path, err))
        fail_msg("model_open: %s", err->message);
    double *lp = malloc(sizeof(double) * (size_t)(n - 1)), sum = 0;
    assert_non_null(lp);
    ScoreOptions o = {.context = context};
    if (score_member(&m, tokens, n, &o, lp, err))
        fail_msg("score_member: %s", err->message);
    for (int i = 0; i < n - 1; i++)
        sum -= lp[i];
    free(lp);
    model_close(&m);
    return sum / (n - 1);
}

/* stories260K on a TinyStories-like text: a finite perplexity well below the vocabulary size
 * (512; a model that had learnt nothing would score about 512, we require < 512 / 16 = 32),
 * the same from the v0 and v1 files (bit-identical tensors; the number must agree to 1e-6),
 * also with a short context (more windows), and with llama2xs_tok512 as a second member the
 * ensemble obeys Jensen. */
static void test_real_models(void **state)
{
    (void)state;
    char v0[4096], v1[4096], tok_path[4096], xs[4096];
    const char *p;
    if (!(p = test_real_model("stories260K.bin")))
        skip();
    snprintf(v0, sizeof v0, "%s", p);
    if (!(p = test_real_model("stories260K_v1.bin")))
        skip();
    snprintf(v1, sizeof v1, "%s", p);
    if (!(p = test_real_model("tok512.bin")))
        skip();
    snprintf(tok_path, sizeof tok_path, "%s", p);
    int n;
    int *tokens = encode_story(tok_path, 512, &n);
    double nll0 = real_nll(v0, tokens, n, 512), nll1 = real_nll(v1, tokens, n, 512);
    double nll_short = real_nll(v0, tokens, n, 32);
    print_message("    stories260K: %d tokens, perplexity %.4f (v0) %.4f (v1), %.4f with context 32\n",
                  n - 1, exp(nll0), exp(nll1), exp(nll_short));
    assert_true(isfinite(nll0) && exp(nll0) < 512.0 / 16);
    assert_true(fabs(nll0 - nll1) < 1e-6);
    assert_true(isfinite(nll_short) && exp(nll_short) < 512.0 / 16);

    if ((p = test_real_model("llama2xs_tok512.bin"))) {
        snprintf(xs, sizeof xs, "%s", p);
        LxError err[1];
        Model m[2];
        if (model_open(&m[0], v0, err) || model_open(&m[1], xs, err))
            fail_msg("model_open: %s", err->message);
        ScoreTable t;
        assert_int_equal(score_table_init(&t, 2, n - 1, err), 0);
        ScoreOptions o = {.context = 256}; /* llama2xs has seq_len 256 */
        for (int i = 0; i < 2; i++)
            if (score_member(&m[i], tokens, n, &o, t.logp + (size_t)i * (size_t)t.n, err))
                fail_msg("score_member: %s", err->message);
        double w[2] = {0.5, 0.5}, fitted[2];
        double ens = score_ensemble_nll(&t, w);
        double mean = 0.5 * (score_member_nll(&t, 0) + score_member_nll(&t, 1));
        ScoreFit f;
        assert_int_equal(score_fit_weights(&t, fitted, 1000, 1e-12, NULL, &f, err), 0);
        print_message("    with llama2xs_tok512: members %.4f %.4f, ensemble %.4f, fitted (%.3f, %.3f) %.4f\n",
                      exp(score_member_nll(&t, 0)), exp(score_member_nll(&t, 1)), exp(ens),
                      fitted[0], fitted[1], exp(f.nll));
        assert_true(ens <= mean + 1e-12);
        assert_true(f.nll <= ens + 1e-12);
        score_table_free(&t);
        model_close(&m[0]);
        model_close(&m[1]);
    }
    free(tokens);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_member_matches_reference),
        cmocka_unit_test(test_ensemble_nll),
        cmocka_unit_test(test_standard_errors),
        cmocka_unit_test(test_long_path_message),
        cmocka_unit_test(test_em_known_tables),
        cmocka_unit_test(test_em_recovers_weights),
        cmocka_unit_test(test_errors),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_models),
    };
    TEST_MAIN(own, real);
}
