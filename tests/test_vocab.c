/* test_vocab.c: members with different tokenizers: the union vocabulary, the feeding-back rule,
 * CE over the union, and ME still exactly CE.
 *
 * Two tiny tokenizers over the alphabet of bytes 1..4, built here:
 *   A (12 ids, merged BPE): byte tokens for bytes 0..3, the pieces "\1" "\2" "\3" that duplicate
 *     three of them, and the merges "\1\2" and "\2\3"; no byte 4.
 *   B (8 ids, character level, no byte tokens): "\1" "\2" "\4" "\3", and the merge "\3\1".
 * So U = {unknown, end, reserved, "\0", "\1", "\2", "\3", "\1\2", "\2\3", "\4", "\3\1"}. A's byte
 * tokens for "\1".."\3" share strings with its pieces (their probabilities add, and the rule feeds
 * the piece back, not the byte token), A cannot say "\4" (its unknown id) and B cannot say "\0".
 *
 * Statistics as in test_ensemble.c: fixed seeds, Pearson's chi-square (tests/stats.h) with cells of
 * expected count < 5 pooled; a claim must PASS at p > 1e-6, a negative control must be REJECTED
 * at p < 1e-9. The controls: swapped weights; an ME whose sampling member appends its own sampled
 * id instead of the rule (this changes A's state whenever it draws a byte token); an ME that
 * applies S after mapping into U instead of in the member's own vocabulary. */
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
#define U_SIZE 11

typedef struct {
    const char *piece;
    int length;
    float score;
} Piece;

static const Piece A_PIECES[] = {
    {"<unk>", 5, 0}, {"\n<s>\n", 5, 0}, {"\n</s>\n", 6, 0}, {"<0x00>", 6, 0}, {"<0x01>", 6, 0}, {"<0x02>", 6, 0},
    {"<0x03>", 6, 0}, {"\1", 1, -1}, {"\2", 1, -1}, {"\3", 1, -1}, {"\1\2", 2, 5}, {"\2\3", 2, 4},
};
static const Piece B_PIECES[] = {
    {"<unk>", 5, 0}, {"\n<s>\n", 5, 0}, {"\n</s>\n", 6, 0}, {"\1", 1, -1}, {"\2", 1, -1}, {"\4", 1, -1},
    {"\3\1", 2, 3}, {"\3", 1, -1},
};
#define VA 12
#define VB 8

/* Worked out by hand from the rule (independent of vocab.c): each member's id -> u, and each u's
 * feeding-back ids (-1 ends a list) and unknown count. */
static const int A_TO_U[VA] = {0, 1, 1, 3, 4, 5, 6, 4, 5, 6, 7, 8};
static const int B_TO_U[VB] = {0, 1, 1, 4, 5, 9, 10, 6};
static const int A_FEED[U_SIZE][3] = {{0, -1}, {1, -1}, {2, -1}, {3, -1}, {7, -1}, {8, -1}, {9, -1},
                                      {10, -1}, {11, -1}, {0, -1}, {9, 7, -1}};
static const int B_FEED[U_SIZE][3] = {{0, -1}, {1, -1}, {2, -1}, {0, -1}, {3, -1}, {4, -1}, {7, -1},
                                      {3, 4, -1}, {4, 7, -1}, {5, -1}, {6, -1}};
static const int A_UNKNOWN[U_SIZE] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
static const int B_UNKNOWN[U_SIZE] = {1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};

static Tokenizer *make_tokenizer(const Piece *pieces, int n, const char *name)
{
    unsigned char buf[512];
    size_t at = 0;
    uint32_t mtl = 6;
    memcpy(buf, &mtl, 4), at = 4;
    for (int i = 0; i < n; i++) {
        int32_t len = pieces[i].length;
        memcpy(buf + at, &pieces[i].score, 4);
        memcpy(buf + at + 4, &len, 4);
        memcpy(buf + at + 8, pieces[i].piece, (size_t)len);
        at += 8 + (size_t)len;
    }
    LxError err[1];
    Tokenizer *t = tokenizer_parse(buf, at, n, name, err);
    if (!t)
        fail_msg("tokenizer_parse: %s", err->message);
    return t;
}

/* The two members, their tokenizers and models. */
typedef struct {
    Tokenizer *tok[2];
    char paths[2][256];
    Model models[2];
    const Model *members[2];
} Pair;

static void pair_open(Pair *p, uint64_t seed)
{
    ModelConfig a = {.dim = 32, .hidden_dim = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = VA, .seq_len = 64};
    ModelConfig b = {.dim = 24, .hidden_dim = 64, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .vocab_size = VB, .seq_len = 64};
    ModelConfig c[2] = {a, b};
    LxError err[1];
    p->tok[0] = make_tokenizer(A_PIECES, VA, "A");
    p->tok[1] = make_tokenizer(B_PIECES, VB, "B");
    for (int i = 0; i < 2; i++) {
        test_write_model(p->paths[i], &c[i], i, 1, seed + (uint64_t)i, 2.0f / sqrtf((float)c[i].dim));
        if (model_open(&p->models[i], p->paths[i], err))
            fail_msg("model_open: %s", err->message);
        p->members[i] = &p->models[i];
    }
}

static void pair_close(Pair *p)
{
    for (int i = 0; i < 2; i++) {
        model_close(&p->models[i]);
        test_remove(p->paths[i]);
        tokenizer_free(p->tok[i]);
    }
}

static void open_ensemble(Ensemble *e, Pair *p, const double *w, LxMode mode, SamplerParams sp, uint64_t seed)
{
    LxError err[1];
    EnsembleParams params = {.weights = w, .mode = mode, .sampler = sp, .seed = seed};
    if (ensemble_init(e, p->members, 2, (const Tokenizer *const *)p->tok, 2, &params, err))
        fail_msg("ensemble_init: %s", err->message);
    int bos = VOCAB_END;
    test_append(e, &bos, 1);
}

static SamplerParams S(float t, int top_k, float top_p)
{
    return (SamplerParams){.temperature = t, .top_k = top_k, .top_p = top_p};
}

static const double W[2] = {0.65, 0.35}, W_SWAPPED[2] = {0.35, 0.65};

/* ------------------------------------------------------------------ 1. the union and the rule */

static void test_union_and_rule(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, 500);
    Ensemble e;
    open_ensemble(&e, &p, W, LX_MODE_CE, S(1, 0, 1), 1);
    const Vocab *v = e.vocab;
    assert_non_null(v);
    assert_int_equal(v->size, U_SIZE);
    assert_int_equal(e.vocab_size, U_SIZE);
    for (int i = 0; i < VA; i++)
        assert_int_equal(v->to_union[0][i], A_TO_U[i]);
    for (int i = 0; i < VB; i++)
        assert_int_equal(v->to_union[1][i], B_TO_U[i]);
    for (int u = 0; u < U_SIZE; u++)
        for (int m = 0; m < 2; m++) {
            const int(*want)[3] = m == 0 ? A_FEED : B_FEED;
            int n;
            const int *ids = vocab_feed(v, m, u, &n);
            for (int j = 0; j < n; j++)
                assert_int_equal(ids[j], want[u][j]);
            assert_int_equal(want[u][n], -1);
            assert_int_equal(v->feed_unknown[m][u], (m == 0 ? A_UNKNOWN : B_UNKNOWN)[u]);
        }
    /* Unknown ids received are counted: "\4" costs A one, "\0" costs B one. */
    int seq[3] = {9, 3, 10};
    test_append(&e, seq, 3);
    assert_int_equal(lx_ensemble_member_unknown(&e, 0), 1);
    assert_int_equal(lx_ensemble_member_unknown(&e, 1), 1);
    assert_int_equal(e.members[0].n_tokens, 1 + 1 + 1 + 2);
    assert_int_equal(e.members[1].n_tokens, 1 + 1 + 1 + 1);
    assert_string_equal(ensemble_text(&e, 4, 7), "\1\2");
    /* A router is refused (it keys on one vocabulary's ids), and so is a batch. */
    LxError err[1];
    Router *r = router_constant(2, NULL, err);
    EnsembleParams params = {.router = r, .sampler = S(1, 0, 1)};
    Ensemble bad;
    assert_int_not_equal(ensemble_init(&bad, p.members, 2, (const Tokenizer *const *)p.tok, 2, &params, err), 0);
    assert_non_null(strstr(err->message, "share one tokenizer"));
    router_free(r);
    LxBatch *batch = NULL;
    params.router = NULL;
    assert_int_not_equal(lx_batch_new((LxModel *const *)p.members, 2, p.tok, 2, &params, 2, &batch, err), LX_OK);
    assert_null(batch);
    ensemble_free(&e);
    pair_close(&p);
}

/* ------------------------------------------------------------------ 2. CE over U, independently */

/* q (U) = sum_k w_k sum_{i -> u} S(p_k)(i) for the union sequence useq, from scratch: each
 * member's ids by the hand-made feeds, the reference forward, S in its own vocabulary. */
static void ce_from_scratch(Pair *p, const double *w, SamplerParams sp, const int *useq, int n, double *q)
{
    LxError err[1];
    for (int u = 0; u < U_SIZE; u++)
        q[u] = 0;
    for (int m = 0; m < 2; m++) {
        const int(*feed)[3] = m == 0 ? A_FEED : B_FEED;
        const int *to_u = m == 0 ? A_TO_U : B_TO_U;
        int V = m == 0 ? VA : VB, ids[64], n_ids = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; feed[useq[t]][j] >= 0; j++)
                ids[n_ids++] = feed[useq[t]][j];
        ReferenceState st;
        Sampler s;
        float logits[16], probs[16];
        assert_int_equal(forward_reference_init(&st, &p->models[m].config, n_ids, err), 0);
        assert_int_equal(forward_reference(&p->models[m], &st, ids, n_ids, 0, logits, 0, err), 0);
        assert_int_equal(sampler_init(&s, V, sp, err), 0);
        sampler_transform(&s, logits, probs);
        for (int i = 0; i < V; i++)
            q[to_u[i]] += w[m] * probs[i];
        sampler_free(&s);
        forward_reference_free(&st);
    }
}

static void test_ce_over_union(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, 510);
    SamplerParams settings[] = {S(1, 0, 1), S(0.7f, 3, 1), S(1.2f, 0, 0.8f)};
    double worst = 0;
    for (size_t s = 0; s < 3; s++) {
        Ensemble me, ce;
        open_ensemble(&me, &p, W, LX_MODE_ME, settings[s], 30 + s);
        open_ensemble(&ce, &p, W, LX_MODE_CE, settings[s], 40 + s);
        for (int t = 0; t < 10; t++) {
            double q[U_SIZE], scratch[U_SIZE];
            test_distribution(&ce, q);
            ce_from_scratch(&p, W, settings[s], ce.tokens, ce.n_tokens, scratch);
            for (int u = 0; u < U_SIZE; u++)
                worst = fmax(worst, fabs(q[u] - scratch[u]));
            assert_true(q[VOCAB_RESERVED] == 0);
            int u = test_step(&me); /* ME leads, so its lazy members catch up on union tokens */
            if (u == VOCAB_END)
                u = 7;
            test_append(&me, &u, 1);
            test_append(&ce, &u, 1);
        }
        ensemble_free(&me);
        ensemble_free(&ce);
    }
    print_message("    max |CE over U - independent| = %.3g\n", worst);
    assert_true(worst < 1e-5);
    pair_close(&p);
}

/* ------------------------------------------------------------------ 3. ME against CE, one step */

/* The control that applies S after mapping: k ~ w, then u ~ S(map(p_k)) over U. */
static int me_s_after_mapping(Ensemble *e, Rng *rng, Sampler *su)
{
    float coin = rng_float(rng), mapped[U_SIZE] = {0};
    int k = coin < e->weights[0] ? 0 : 1;
    const float *logits = ensemble_sync(e, k, NULL);
    int V = e->members[k].model->config.vocab_size;
    float p[16];
    memcpy(p, logits, sizeof(float) * (size_t)V);
    softmax(p, V);
    vocab_add(e->vocab, k, p, V, 1.0f, mapped);
    for (int u = 0; u < U_SIZE; u++)
        mapped[u] = mapped[u] > 0 ? logf(mapped[u]) : -INFINITY;
    return sampler_sample(su, mapped, rng, NULL);
}

static void test_me_one_step(void **state)
{
    (void)state;
    enum { DRAWS = 200000 };
    Pair p;
    pair_open(&p, 520);
    SamplerParams sp = S(0.5f, 4, 1);
    Ensemble me, swapped, ce;
    open_ensemble(&me, &p, W, LX_MODE_ME, sp, 11);
    open_ensemble(&swapped, &p, W_SWAPPED, LX_MODE_ME, sp, 12);
    open_ensemble(&ce, &p, W, LX_MODE_CE, sp, 13);
    int prefix[2] = {7, 10};
    test_append(&me, prefix, 2);
    test_append(&swapped, prefix, 2);
    test_append(&ce, prefix, 2);
    double q[U_SIZE];
    test_distribution(&ce, q);
    long c_me[U_SIZE] = {0}, c_sw[U_SIZE] = {0}, c_ce[U_SIZE] = {0}, c_after[U_SIZE] = {0};
    LxError err[1];
    Sampler su;
    assert_int_equal(sampler_init(&su, U_SIZE, sp, err), 0);
    Rng rng;
    rng_seed(&rng, 14);
    for (long d = 0; d < DRAWS; d++) {
        c_me[test_step(&me)]++;
        c_sw[test_step(&swapped)]++;
        c_ce[test_step(&ce)]++;
        c_after[me_s_after_mapping(&me, &rng, &su)]++;
    }
    double pm = chi_square_test(c_me, q, U_SIZE, MIN_EXPECTED, NULL, NULL);
    double pc = chi_square_test(c_ce, q, U_SIZE, MIN_EXPECTED, NULL, NULL);
    double ps = chi_square_test(c_sw, q, U_SIZE, MIN_EXPECTED, NULL, NULL);
    double pa = chi_square_test(c_after, q, U_SIZE, MIN_EXPECTED, NULL, NULL);
    print_message("    one step: ME p=%.3g, CE p=%.3g; controls: swapped weights p=%.3g, S after mapping p=%.3g\n",
                  pm, pc, ps, pa);
    assert_true(pm > PASS_P);
    assert_true(pc > PASS_P);
    assert_true(ps < REJECT_P);
    assert_true(pa < REJECT_P);
    sampler_free(&su);
    ensemble_free(&me);
    ensemble_free(&swapped);
    ensemble_free(&ce);
    pair_close(&p);
}

/* ------------------------------------------------------------------ 4. 3-token sequences */

/* The control that breaks the rule: the sampling member appends its own sampled id i (the
 * others follow the rule). For A's byte tokens i differs from the rule's piece. */
static int me_own_id_step(Ensemble *e, Rng *rng)
{
    float coin = rng_float(rng);
    int k = coin < e->weights[0] ? 0 : 1;
    const float *logits = ensemble_sync(e, k, NULL);
    int i = sampler_sample(&e->members[k].sampler, logits, rng, NULL), u = e->vocab->to_union[k][i];
    for (int m = 0; m < 2; m++) {
        Member *mb = &e->members[m];
        int n;
        const int *ids = vocab_feed(e->vocab, m, u, &n);
        if (m == k)
            mb->tokens[mb->n_tokens++] = i;
        else
            for (int j = 0; j < n; j++)
                mb->tokens[mb->n_tokens++] = ids[j];
    }
    e->tokens[e->n_tokens++] = u;
    return u;
}

static void test_me_sequences(void **state)
{
    (void)state;
    enum { N = 60000, CELLS = U_SIZE * U_SIZE * U_SIZE };
    Pair p;
    pair_open(&p, 530);
    SamplerParams sp = S(0.9f, 0, 1);
    /* Exact P(u1 u2 u3) = q(u1) q(u2 | u1) q(u3 | u1 u2), from CE's distributions. */
    static double exact[CELLS];
    Ensemble ce;
    open_ensemble(&ce, &p, W, LX_MODE_CE, sp, 3);
    double q1[U_SIZE], q2[U_SIZE], q3[U_SIZE];
    test_distribution(&ce, q1);
    for (int a = 0; a < U_SIZE; a++) {
        ensemble_reset(&ce);
        int s1[2] = {VOCAB_END, a};
        test_append(&ce, s1, 2);
        test_distribution(&ce, q2);
        for (int b = 0; b < U_SIZE; b++) {
            ensemble_reset(&ce);
            int s2[3] = {VOCAB_END, a, b};
            test_append(&ce, s2, 3);
            test_distribution(&ce, q3);
            for (int c = 0; c < U_SIZE; c++)
                exact[(a * U_SIZE + b) * U_SIZE + c] = q1[a] * q2[b] * q3[c];
        }
    }
    ensemble_free(&ce);
    static long c_me[CELLS], c_own[CELLS];
    memset(c_me, 0, sizeof c_me);
    memset(c_own, 0, sizeof c_own);
    Ensemble me, own;
    open_ensemble(&me, &p, W, LX_MODE_ME, sp, 4);
    open_ensemble(&own, &p, W, LX_MODE_ME, sp, 5);
    Rng rng;
    rng_seed(&rng, 6);
    for (long n = 0; n < N; n++) {
        int seq[3], bos = VOCAB_END;
        ensemble_reset(&me);
        test_append(&me, &bos, 1);
        for (int t = 0; t < 3; t++) {
            seq[t] = test_step(&me);
            test_append(&me, &seq[t], 1);
        }
        c_me[(seq[0] * U_SIZE + seq[1]) * U_SIZE + seq[2]]++;
        ensemble_reset(&own);
        test_append(&own, &bos, 1);
        for (int t = 0; t < 3; t++)
            seq[t] = me_own_id_step(&own, &rng);
        c_own[(seq[0] * U_SIZE + seq[1]) * U_SIZE + seq[2]]++;
    }
    double pm = chi_square_test(c_me, exact, CELLS, MIN_EXPECTED, NULL, NULL);
    double po = chi_square_test(c_own, exact, CELLS, MIN_EXPECTED, NULL, NULL);
    print_message("    3-token sequences (%d): ME p=%.3g; control: sampling member keeps its own id p=%.3g\n", N, pm, po);
    assert_true(pm > PASS_P);
    assert_true(po < REJECT_P);
    ensemble_free(&me);
    ensemble_free(&own);
    pair_close(&p);
}

/* ------------------------------------------------------------------ 5. ce-unite and ce-mixture's top-k */

static void test_unite(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, 540);
    SamplerParams sp = S(1, 3, 1);
    Ensemble unite, ce;
    open_ensemble(&unite, &p, W, LX_MODE_CE_UNITE, sp, 1);
    open_ensemble(&ce, &p, W, LX_MODE_CE_MIXTURE, sp, 1);
    int prefix[2] = {4, 8};
    test_append(&unite, prefix, 2);
    test_append(&ce, prefix, 2);
    double q[U_SIZE], qm[U_SIZE];
    test_distribution(&unite, q);
    test_distribution(&ce, qm); /* with a union vocabulary and top-k, ce-mixture is ce-unite */
    /* Independently: X = the union of each member's top-3 ids (in U); member k's score of u is
     * the sum of its probabilities of ids spelling u, or of the first id of its encoding. */
    double mix[U_SIZE] = {0};
    int in_x[U_SIZE] = {0};
    float pk[2][16];
    for (int m = 0; m < 2; m++) {
        const float *logits = ensemble_sync(&unite, m, NULL);
        int V = m ? VB : VA;
        memcpy(pk[m], logits, sizeof(float) * (size_t)V);
        softmax(pk[m], V);
        for (int j = 0; j < 3; j++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (pk[m][i] >= 0 && (best < 0 || pk[m][i] > pk[m][best]))
                    best = i;
            in_x[(m ? B_TO_U : A_TO_U)[best]] = 1;
            pk[m][best] = -1 - pk[m][best]; /* taken; restored below */
        }
        for (int i = 0; i < V; i++)
            if (pk[m][i] < 0)
                pk[m][i] = -1 - pk[m][i];
    }
    for (int m = 0; m < 2; m++) {
        double score[U_SIZE] = {0}, total = 0;
        const int *to_u = m ? B_TO_U : A_TO_U;
        int has[U_SIZE] = {0};
        for (int i = 0; i < (m ? VB : VA); i++)
            score[to_u[i]] += pk[m][i], has[to_u[i]] = 1;
        for (int u = 0; u < U_SIZE; u++)
            if (in_x[u] && !has[u])
                score[u] = pk[m][(m ? B_FEED : A_FEED)[u][0]];
        for (int u = 0; u < U_SIZE; u++)
            total += in_x[u] ? score[u] : 0;
        for (int u = 0; u < U_SIZE; u++)
            mix[u] += in_x[u] ? W[m] * score[u] / total : 0;
    }
    /* S: top-3 of the mixture, renormalised (temperature 1). */
    double kept[U_SIZE] = {0}, sum = 0;
    for (int j = 0; j < 3; j++) {
        int best = -1;
        for (int u = 0; u < U_SIZE; u++)
            if (kept[u] == 0 && (best < 0 || mix[u] > mix[best] || kept[best] != 0))
                best = u;
        kept[best] = mix[best];
        sum += mix[best];
    }
    double worst = 0, diff_ce = 0;
    Ensemble plain;
    open_ensemble(&plain, &p, W, LX_MODE_CE, sp, 1);
    test_append(&plain, prefix, 2);
    double qc[U_SIZE];
    test_distribution(&plain, qc);
    for (int u = 0; u < U_SIZE; u++) {
        worst = fmax(worst, fabs(q[u] - kept[u] / sum));
        worst = fmax(worst, fabs(q[u] - qm[u]));
        diff_ce += fabs(q[u] - qc[u]);
    }
    print_message("    ce-unite vs independent: max diff %.3g; L1 distance to CE (= ME) %.3g\n", worst, diff_ce);
    assert_true(worst < 1e-5);
    assert_true(diff_ce > 0.05);
    ensemble_free(&unite);
    ensemble_free(&ce);
    ensemble_free(&plain);
    pair_close(&p);
}

/* ce-mixture on one vocabulary with top-k: the mixture restricted to the union of the members'
 * top-k ids, renormalised, then S (the paper's code), against a direct computation. */
static void test_mixture_top_k(void **state)
{
    (void)state;
    TestMembers ms;
    test_members_open(&ms, 2, 16, 550);
    SamplerParams sp = S(0.8f, 2, 1);
    Ensemble e;
    LxError err[1];
    if (test_ensemble_init(&e, ms.members, W, 2, 0, LX_MODE_CE_MIXTURE, sp, 1, err))
        fail_msg("%s", err->message);
    int prefix[3] = {TOKEN_BOS, 3, 9};
    test_append(&e, prefix, 3);
    double q[16];
    test_distribution(&e, q);
    float pk[2][16], mix[16] = {0};
    int in_x[16] = {0};
    for (int m = 0; m < 2; m++) {
        memcpy(pk[m], ensemble_sync(&e, m, NULL), sizeof(float) * 16);
        softmax(pk[m], 16);
        int first = 0, second = -1;
        for (int i = 1; i < 16; i++)
            if (pk[m][i] > pk[m][first])
                first = i;
        for (int i = 0; i < 16; i++)
            if (i != first && (second < 0 || pk[m][i] > pk[m][second]))
                second = i;
        in_x[first] = in_x[second] = 1;
        for (int i = 0; i < 16; i++)
            mix[i] += (float)W[m] * pk[m][i];
    }
    float restricted[16];
    for (int i = 0; i < 16; i++)
        restricted[i] = in_x[i] ? logf(mix[i]) : -INFINITY; /* S renormalises: no need to here */
    Sampler s;
    float want[16];
    assert_int_equal(sampler_init(&s, 16, sp, err), 0);
    sampler_transform(&s, restricted, want);
    double worst = 0;
    for (int i = 0; i < 16; i++)
        worst = fmax(worst, fabs(q[i] - want[i]));
    print_message("    ce-mixture top-k vs direct: max diff %.3g\n", worst);
    assert_true(worst < 1e-5);
    sampler_free(&s);
    ensemble_free(&e);
    test_members_close(&ms);
}

/* ------------------------------------------------------------------ 6. the real pair */

/* Counts of 3-token continuations (as union-id triples hashed to strings of ids). */
typedef struct {
    int ids[3];
    long count[2];
} Outcome;

typedef struct {
    int n;
    int ids[3];
} Collect;

static int collect(void *user, const LxTokenEvent *ev)
{
    Collect *c = user;
    if (ev->token >= 0 && c->n < 3)
        c->ids[c->n++] = ev->token;
    return 0;
}

/* Two-sample chi-square of homogeneity on a 2 x m table, categories whose pooled expected count
 * is under MIN_EXPECTED in either row merged into one. */
static double two_sample(const Outcome *o, int m, long n0, long n1)
{
    double stat = 0, rest0 = 0, rest1 = 0;
    int cells = 0;
    long N = n0 + n1;
    for (int i = 0; i < m; i++) {
        double tot = (double)(o[i].count[0] + o[i].count[1]);
        double e0 = tot * n0 / N, e1 = tot * n1 / N;
        if (e0 < MIN_EXPECTED || e1 < MIN_EXPECTED) {
            rest0 += (double)o[i].count[0], rest1 += (double)o[i].count[1];
            continue;
        }
        stat += (o[i].count[0] - e0) * (o[i].count[0] - e0) / e0 + (o[i].count[1] - e1) * (o[i].count[1] - e1) / e1;
        cells++;
    }
    double tot = rest0 + rest1, e0 = tot * n0 / N, e1 = tot * n1 / N;
    if (tot > 0 && e0 > 0) {
        stat += (rest0 - e0) * (rest0 - e0) / e0 + (rest1 - e1) * (rest1 - e1) / e1;
        cells++;
    }
    return cells > 1 ? chi_square_sf(stat, cells - 1) : 1.0;
}

static void test_real_pair(void **state)
{
    (void)state;
    enum { N = 400, MAX_OUTCOMES = 2 * N };
    const char *names[2][2] = {{"stories260K.bin", "tok512.bin"}, {"babyllama105.bin", "tok105.bin"}};
    LxModel *models[2] = {NULL, NULL};
    LxTokenizer *toks[2] = {NULL, NULL};
    LxError err;
    for (int i = 0; i < 2; i++) {
        const char *path = test_real_model(names[i][0]);
        if (!path) {
            print_message("    SKIP: %s not in %s\n", names[i][0], test_real_models_dir());
            for (int j = 0; j < i; j++)
                lx_model_close(models[j]), lx_tokenizer_free(toks[j]);
            skip();
        }
        assert_int_equal(lx_model_open(path, &models[i], &err), LX_OK);
        path = test_real_model(names[i][1]);
        assert_non_null(path);
        assert_int_equal(lx_tokenizer_open(path, lx_model_config(models[i]).vocab_size, &toks[i], &err), LX_OK);
    }
    double w[2] = {0.6, 0.4};
    LxMode modes[3] = {LX_MODE_ME, LX_MODE_CE, LX_MODE_CE_UNITE};
    static Outcome out[3][MAX_OUTCOMES];
    int m_out[3] = {0, 0, 0};
    double seconds[3] = {0};
    long unknown[3][2] = {{0}};
    for (int md = 0; md < 3; md++) {
        LxEnsembleParams p = lx_ensemble_defaults();
        p.weights = w;
        p.mode = modes[md];
        p.threads = 1;
        p.n_ctx = 64;
        LxEnsemble *e = NULL;
        if (lx_ensemble_new(models, 2, toks, 2, &p, &e, &err) != LX_OK)
            fail_msg("%s", err.message);
        LxGenerateParams g = lx_generate_defaults();
        g.n_predict = 3;
        g.ignore_eos = 1;
        double t0 = now_seconds();
        for (int s = 0; s < N; s++) {
            Collect c = {0};
            lx_ensemble_set_seed(e, 1000 + (uint64_t)s + 100000 * (uint64_t)md);
            if (lx_generate(e, "Once upon a time", &g, collect, &c, NULL, &err) != LX_OK)
                fail_msg("%s", err.message);
            assert_int_equal(c.n, 3);
            for (int i = 0; i < 2; i++)
                unknown[md][i] += lx_ensemble_member_unknown(e, i);
            int j = 0;
            while (j < m_out[md] && memcmp(out[md][j].ids, c.ids, sizeof c.ids))
                j++;
            if (j == m_out[md])
                memcpy(out[md][m_out[md]++].ids, c.ids, sizeof c.ids);
            out[md][j].count[0]++;
        }
        seconds[md] = now_seconds() - t0;
        lx_ensemble_free(e);
    }
    /* ME against CE, and ce-unite against CE: one table of the union of outcomes each. */
    double pvals[2];
    for (int other = 0; other < 2; other++) {
        int a = other == 0 ? 0 : 2;
        static Outcome table[2 * MAX_OUTCOMES];
        int m = 0;
        for (int side = 0; side < 2; side++) {
            int md = side == 0 ? a : 1;
            for (int j = 0; j < m_out[md]; j++) {
                int i = 0;
                while (i < m && memcmp(table[i].ids, out[md][j].ids, sizeof table[i].ids))
                    i++;
                if (i == m) {
                    memcpy(table[m].ids, out[md][j].ids, sizeof table[m].ids);
                    table[m].count[0] = table[m].count[1] = 0;
                    m++;
                }
                table[i].count[side] += out[md][j].count[0];
            }
        }
        pvals[other] = two_sample(table, m, N, N);
    }
    print_message("    real pair, %d 3-token continuations each: ME vs CE p=%.3g; ce-unite vs CE p=%.3g\n", N,
                  pvals[0], pvals[1]);
    print_message("    time for %d runs (-t 1): ME %.2f s, CE %.2f s, ce-unite %.2f s; unknown ids received: "
                  "ME %ld/%ld, CE %ld/%ld\n", N, seconds[0], seconds[1], seconds[2], unknown[0][0], unknown[0][1],
                  unknown[1][0], unknown[1][1]);
    assert_true(pvals[0] > PASS_P);
    assert_true(pvals[1] < REJECT_P); /* ce-unite is another distribution, and the test sees it */
    for (int i = 0; i < 2; i++) {
        lx_model_close(models[i]);
        lx_tokenizer_free(toks[i]);
    }
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_union_and_rule),
        cmocka_unit_test(test_ce_over_union),
        cmocka_unit_test(test_me_one_step),
        cmocka_unit_test(test_me_sequences),
        cmocka_unit_test(test_unite),
        cmocka_unit_test(test_mixture_top_k),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_pair),
    };
    TEST_MAIN(own, real);
}
