/* test_forward.c: the batched forward pass against the one-token-at-a-time reference forward
 * (forward_reference.c, llama2.c run.c's maths in its own code), and both against llama2.c's
 * published output for a real model. A T-token batch and T single-token steps sum in different
 * orders, so logits are compared with a tolerance, never bitwise. */
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
#include "testutil.h"

/* |a - b| <= tol * (1 + |b|) for every entry; logits of these models are O(1). */
#define TOLERANCE 1e-4
/* Int8 models: both forwards quantize each product's input, and an input that differs in the last
 * float bit can round to the next int8 step (1/127 of its group's largest value), so their logits
 * agree less closely (the tolerance is a fifth of the int8-vs-dequantized one below). */
#define TOLERANCE_Q8 2e-2

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) /* also catches NaN */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

static void random_tokens(int *tokens, int n, int vocab, uint64_t seed)
{
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        tokens[i] = (int)(rng_u32(&r) % (uint32_t)vocab);
}

/* Forward n tokens three ways and compare all rows' logits:
 *   reference: forward_reference, one token at a time in plain loops;
 *   batched: all n at once (in chunks of max_batch) with the fast kernels on `threads` threads
 *            (0: the default);
 *   stepwise: n single-token calls with the fast kernels. */
static void check_batched(const ModelConfig *c, int version, int shared, int n, int max_batch, int threads)
{
    char path[256];
    LxError err[1];
    test_write_model(path, c, version, shared, 11 + n, 0);
    Model m;
    assert_int_equal(model_open(&m, path, err), 0);
    ReferenceState ref;
    ForwardState fast;
    assert_int_equal(forward_reference_init(&ref, c, n, err), 0);
    assert_int_equal(forward_state_init(&fast, c, n, max_batch, err), 0);
    if (threads > 0)
        fast.threads = threads;
    size_t V = (size_t)c->vocab_size;
    int *tokens = malloc(sizeof(int) * n);
    float *want = malloc(sizeof(float) * n * V), *got = malloc(sizeof(float) * n * V);
    random_tokens(tokens, n, c->vocab_size, 5);

    assert_int_equal(forward_reference(&m, &ref, tokens, n, 0, want, 1, err), 0);
    assert_int_equal(forward(&m, &fast, tokens, n, 0, got, 1, err), 0);
    double batched = max_rel_diff(got, want, n * V);

    for (int t = 0; t < n; t++)
        assert_int_equal(forward(&m, &fast, tokens + t, 1, t, got + t * V, 0, err), 0);
    double stepwise = max_rel_diff(got, want, n * V);

    /* last-row-only logits equal the last row of all-rows logits */
    assert_int_equal(forward(&m, &fast, tokens, n, 0, got, 0, err), 0);
    double last = max_rel_diff(got, want + (n - 1) * V, V);

    double tolerance = version == 2 ? TOLERANCE_Q8 : TOLERANCE;
    if (batched > tolerance || stepwise > tolerance || last > tolerance)
        fail_msg("v%d shared %d n %d batch %d threads %d: batched %.3g stepwise %.3g last %.3g > %g", version,
                 shared, n, max_batch, fast.threads, batched, stepwise, last, tolerance);

    /* the reference's last-row-only logits are its all-rows ones' last row, bit for bit */
    forward_reference_free(&ref);
    assert_int_equal(forward_reference_init(&ref, c, n, err), 0);
    assert_int_equal(forward_reference(&m, &ref, tokens, n, 0, got, 0, err), 0);
    assert_memory_equal(got, want + (n - 1) * V, sizeof(float) * V);
    free(tokens);
    free(want);
    free(got);
    forward_reference_free(&ref);
    forward_state_free(&fast);
    model_close(&m);
    test_remove(path);
}

static void test_batched_equals_sequential(void **state)
{
    (void)state;
    ModelConfig gqa = test_tiny_config(); /* NH 4, NKV 2 */
    ModelConfig mha = {.dim = 24, .hidden_dim = 40, .n_layers = 3, .n_heads = 3, .n_kv_heads = 3,
                       .vocab_size = 37, .seq_len = 48};
    ModelConfig mqa = {.dim = 40, .hidden_dim = 72, .n_layers = 1, .n_heads = 5, .n_kv_heads = 1,
                       .vocab_size = 300, .seq_len = 40};
    const ModelConfig *configs[] = {&gqa, &mha, &mqa};
    for (int i = 0; i < 3; i++)
        for (int version = 0; version <= 2; version++)
            for (int shared = 0; shared <= 1; shared++) {
                check_batched(configs[i], version, shared, 1, 0, 0);
                check_batched(configs[i], version, shared, 7, 0, 0);
                check_batched(configs[i], version, shared, 33, 0, 0);
                check_batched(configs[i], version, shared, 33, 5, 0); /* chunks of 5 */
            }
}

/* attention_run against attention_row, row by row, for runs that start a cache (p0 = 0) and that
 * continue one (p0 > 0), q and out rows strided as in a forward. The negative control: the same
 * run read one position short (p0 - 1, so every row misses its own key) is far outside the
 * tolerance, so the comparison can see a wrong causal mask. */
static void test_attention_run_equals_rows(void **state)
{
    (void)state;
    enum { HS = 16, STRIDE = 3 * HS, MAX_P = 64 };
    Rng r;
    rng_seed(&r, 21);
    float keys[MAX_P * HS], values[MAX_P * HS], q[MAX_P * STRIDE];
    for (int i = 0; i < MAX_P * HS; i++)
        keys[i] = 2 * rng_float(&r) - 1, values[i] = 2 * rng_float(&r) - 1;
    for (int i = 0; i < MAX_P * STRIDE; i++)
        q[i] = 4 * rng_float(&r) - 2;
    static float scores[MAX_P * MAX_P], one[MAX_P];
    float run[MAX_P * STRIDE], rows[MAX_P * HS];
    const int cases[][2] = {{0, 16}, {0, 33}, {7, 20}, {40, 24}}; /* p0, n */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int p0 = cases[c][0], n = cases[c][1];
        attention_run(run, STRIDE, q, STRIDE, keys, values, p0, n, HS, scores, MAX_P);
        for (int i = 0; i < n; i++)
            attention_row(rows + i * HS, q + i * STRIDE, keys, values, p0 + i, HS, one);
        for (int i = 0; i < n; i++) {
            double d = max_rel_diff(run + i * STRIDE, rows + i * HS, HS);
            if (d > TOLERANCE)
                fail_msg("p0 %d n %d row %d: run and rows differ by %.3g > %g", p0, n, i, d, TOLERANCE);
        }
        if (p0 == 0)
            continue;
        attention_run(run, STRIDE, q, STRIDE, keys, values, p0 - 1, n, HS, scores, MAX_P);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double d = max_rel_diff(run + i * STRIDE, rows + i * HS, HS);
            worst = d > worst ? d : worst;
        }
        assert_true(worst > 100 * TOLERANCE);
    }
}

/* An int8 model against its dequantized fp32 copy (every weight q * s written as a float): they
 * differ only by the activations' quantization, a relative error of at most 1/254 per input of each
 * product, so logits agree to within Q8_DEQUANT_TOLERANCE; a copy of another seed (the negative
 * control) is far outside it. */
#define Q8_DEQUANT_TOLERANCE 5e-2
static void write_dequantized(char *path, const Model *q)
{
    const ModelConfig *c = &q->config;
    const size_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size, KVD = model_kv_dim(c);
    size_t floats = 2 * L * D + D + V * D * (q->shared_classifier ? 1 : 2) + L * (2 * D * D + 2 * KVD * D + 3 * H * D);
    unsigned char *b = calloc(1, 256 + 4 * floats);
    float *f = (float *)(b + 256);
    int32_t head[9] = {(int32_t)CHECKPOINT_MAGIC, 1, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab_size, c->seq_len};
    memcpy(b, head, sizeof head);
    b[36] = (unsigned char)q->shared_classifier;
    for (size_t l = 0; l < L; l++)
        memcpy(f + l * D, q->w.layers[l].rms_att, 4 * D), memcpy(f + (L + l) * D, q->w.layers[l].rms_ffn, 4 * D);
    f += 2 * L * D;
    memcpy(f, q->w.rms_final, 4 * D);
    f += D;
    for (size_t i = 0; i < V; i++, f += D)
        weight_row(f, q->w.token_embedding, i, (int)D);
    for (int t = 0; t < 7; t++)
        for (size_t l = 0; l < L; l++) {
            const LayerWeights *w = &q->w.layers[l];
            const Weight *m[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w1, &w->w2, &w->w3};
            const size_t rows[7] = {D, KVD, KVD, D, H, D, H}, cols[7] = {D, D, D, D, D, H, D};
            for (size_t i = 0; i < rows[t]; i++, f += cols[t])
                weight_row(f, *m[t], i, (int)cols[t]);
        }
    for (size_t i = 0; !q->shared_classifier && i < V; i++, f += D)
        weight_row(f, q->w.wcls, i, (int)D);
    test_write_bytes(path, b, 256 + 4 * floats);
    free(b);
}

static void test_q8_against_dequantized(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    LxError err[1];
    for (int shared = 0; shared <= 1; shared++) {
        char pq[256], pf[256], po[256];
        test_write_model(pq, &c, 2, shared, 21, 0);
        test_write_model(po, &c, 2, shared, 22, 0);
        Model q, f, o;
        assert_int_equal(model_open(&q, pq, err), 0);
        write_dequantized(pf, &q);
        assert_int_equal(model_open(&f, pf, err), 0);
        assert_int_equal(model_open(&o, po, err), 0);
        enum { N = 24 };
        int tokens[N];
        random_tokens(tokens, N, c.vocab_size, 9);
        size_t V = c.vocab_size;
        float *lq = malloc(sizeof(float) * N * V), *lf = malloc(sizeof(float) * N * V), *lo = malloc(sizeof(float) * N * V);
        ForwardState s;
        assert_int_equal(forward_state_init(&s, &c, N, 0, err), 0);
        assert_int_equal(forward(&q, &s, tokens, N, 0, lq, 1, err), 0);
        assert_int_equal(forward(&f, &s, tokens, N, 0, lf, 1, err), 0);
        assert_int_equal(forward(&o, &s, tokens, N, 0, lo, 1, err), 0);
        double d = max_rel_diff(lq, lf, N * V), control = max_rel_diff(lo, lf, N * V);
        if (d > Q8_DEQUANT_TOLERANCE || control < 10 * Q8_DEQUANT_TOLERANCE)
            fail_msg("shared %d: int8 vs dequantized %.3g (want <= %g), another seed %.3g (want >= %g)", shared, d,
                     Q8_DEQUANT_TOLERANCE, control, 10 * Q8_DEQUANT_TOLERANCE);
        free(lq), free(lf), free(lo);
        forward_state_free(&s);
        model_close(&q), model_close(&f), model_close(&o);
        test_remove(pq), test_remove(pf), test_remove(po);
    }
}

/* Several sequences of an int8 model in one forward_spans (a k-token span, a one-token span, a
 * span straddling chunks) against each sequence's one-token steps. */
static void test_q8_spans(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    LxError err[1];
    char p[256];
    test_write_model(p, &c, 2, 1, 31, 0);
    Model m;
    assert_int_equal(model_open(&m, p, err), 0);
    enum { SPANS = 3, MAX_N = 9 };
    const int n[SPANS] = {5, 1, 9}, pos0[SPANS] = {0, 3, 2};
    int tokens[SPANS][MAX_N + 3];
    ForwardState work, cache[SPANS], step;
    assert_int_equal(forward_state_init(&work, &c, 16, 4, err), 0); /* chunks of 4 rows */
    assert_int_equal(forward_state_init(&step, &c, 16, 0, err), 0);
    size_t V = c.vocab_size;
    float got[SPANS * MAX_N * 16], want[16];
    ForwardSpan spans[SPANS];
    for (int j = 0; j < SPANS; j++) {
        random_tokens(tokens[j], pos0[j] + n[j], c.vocab_size, 40 + j);
        assert_int_equal(forward_cache_init(&cache[j], &c, 16, err), 0);
        if (pos0[j] > 0) /* the earlier positions already in the cache */
            assert_int_equal(forward_spans(&m, &work, &(ForwardSpan){&cache[j], tokens[j], pos0[j], 0, FORWARD_LOGITS_NONE},
                                           1, NULL, err), 0);
        spans[j] = (ForwardSpan){&cache[j], tokens[j] + pos0[j], n[j], pos0[j], FORWARD_LOGITS_ALL};
    }
    assert_int_equal(forward_spans(&m, &work, spans, SPANS, got, err), 0);
    double worst = 0;
    size_t row = 0;
    for (int j = 0; j < SPANS; j++)
        for (int t = 0; t < pos0[j] + n[j]; t++) {
            assert_int_equal(forward(&m, &step, &tokens[j][t], 1, t, want, 0, err), 0);
            if (t < pos0[j])
                continue;
            double d = max_rel_diff(got + row++ * V, want, V);
            worst = d > worst ? d : worst;
        }
    if (worst > TOLERANCE_Q8)
        fail_msg("int8 spans vs one-token steps: %.3g > %g", worst, TOLERANCE_Q8);
    for (int j = 0; j < SPANS; j++)
        forward_state_free(&cache[j]);
    forward_state_free(&work);
    forward_state_free(&step);
    model_close(&m);
    test_remove(p);
}

/* Both kernel paths of the dispatcher (stream and BLAS) inside a whole forward, on 1 and 3
 * threads (3 slices do not divide the rows evenly). */
static void test_blas_and_stream_paths(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    for (int threads = 1; threads <= 3; threads += 2) {
        kernels_set_blas_min_rows(1);
        check_batched(&c, 1, 1, 20, 0, threads);
        kernels_set_blas_min_rows(1000000);
        check_batched(&c, 1, 1, 20, 0, threads);
    }
    kernels_set_blas_min_rows(0);
}

/* The tolerance has the power to see a wrong model: a forward of another seed differs. */
static void test_tolerance_detects_difference(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    char p1[256], p2[256];
    LxError err[1];
    test_write_model(p1, &c, 1, 1, 1, 0);
    test_write_model(p2, &c, 1, 1, 2, 0);
    Model a, b;
    assert_int_equal(model_open(&a, p1, err), 0);
    assert_int_equal(model_open(&b, p2, err), 0);
    ForwardState s;
    assert_int_equal(forward_state_init(&s, &c, 8, 0, err), 0);
    int tokens[4] = {1, 5, 9, 3};
    float la[16], lb[16];
    assert_int_equal(forward(&a, &s, tokens, 4, 0, la, 0, err), 0);
    assert_int_equal(forward(&b, &s, tokens, 4, 0, lb, 0, err), 0);
    assert_true(max_rel_diff(la, lb, 16) > 100 * TOLERANCE);
    /* and a different prefix at the same position differs too (the cache is used) */
    int other[4] = {1, 6, 9, 3};
    assert_int_equal(forward(&a, &s, other, 4, 0, lb, 0, err), 0);
    assert_true(max_rel_diff(la, lb, 16) > 100 * TOLERANCE);
    /* the same two controls for the reference */
    ReferenceState r;
    assert_int_equal(forward_reference_init(&r, &c, 8, err), 0);
    assert_int_equal(forward_reference(&a, &r, tokens, 4, 0, la, 0, err), 0);
    assert_int_equal(forward_reference(&b, &r, tokens, 4, 0, lb, 0, err), 0);
    assert_true(max_rel_diff(la, lb, 16) > 100 * TOLERANCE);
    assert_int_equal(forward_reference(&a, &r, other, 4, 0, lb, 0, err), 0);
    assert_true(max_rel_diff(la, lb, 16) > 100 * TOLERANCE);
    forward_reference_free(&r);
    forward_state_free(&s);
    model_close(&a);
    model_close(&b);
    test_remove(p1);
    test_remove(p2);
}

/* The refusals of forward (fast = 1) or forward_reference (fast = 0) on a context of 8. */
static int run_either(int fast, const Model *m, ForwardState *s, ReferenceState *r, const int *tokens, int n,
                      int pos, float *logits, LxError *err)
{
    return fast ? forward(m, s, tokens, n, pos, logits, 0, err) : forward_reference(m, r, tokens, n, pos, logits, 0, err);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    char path[256];
    LxError err[1];
    test_write_model(path, &c, 1, 1, 1, 0);
    Model m;
    assert_int_equal(model_open(&m, path, err), 0);
    ForwardState s;
    ReferenceState r;
    assert_int_equal(forward_state_init(&s, &c, 8, 4, err), 0);
    assert_int_equal(forward_reference_init(&r, &c, 8, err), 0);
    assert_int_equal(s.n_ctx, 8);
    assert_int_equal(r.n_ctx, 8);
    int tokens[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float logits[16];
    for (int fast = 0; fast <= 1; fast++) {
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 9, 0, logits, err), LX_ERR_CONTEXT);
        assert_int_equal(err->status, LX_ERR_CONTEXT);
        assert_non_null(strstr(err->message, "context holds 8"));
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 1, 8, logits, err), LX_ERR_CONTEXT);
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 0, 0, logits, err), LX_ERR_CONTEXT);
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 1, -1, logits, err), LX_ERR_CONTEXT);
        int bad[2] = {1, 16}, negative[2] = {1, -1};
        assert_int_equal(run_either(fast, &m, &s, &r, bad, 2, 0, logits, err), LX_ERR_ARGUMENT);
        assert_int_equal(err->status, LX_ERR_ARGUMENT);
        assert_non_null(strstr(err->message, "outside the vocabulary"));
        assert_int_equal(run_either(fast, &m, &s, &r, negative, 2, 0, logits, err), LX_ERR_ARGUMENT);
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 8, 0, logits, err), 0);
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 8, 0, logits, NULL), 0); /* err may be NULL */
        assert_int_equal(run_either(fast, &m, &s, &r, tokens, 9, 0, logits, NULL), LX_ERR_CONTEXT);
    }
    forward_state_free(&s);
    forward_state_free(&s); /* twice is safe */
    forward_reference_free(&r);
    forward_reference_free(&r);
    model_close(&m);
    test_remove(path);
}

/* llama2.c's test_all.py: run stories260K.bin -z tok512.bin -t 0.0 -n 200 prints exactly this. */
static const char *STORIES260K_GREEDY_200 =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she";

/* Greedy decoding from BOS, one token per forward (the fast one, or the reference); returns the
 * decoded text (malloc'd). */
static char *greedy_text(const Model *m, const Tokenizer *tok, int steps, int reference)
{
    LxError err[1];
    ForwardState s;
    ReferenceState r;
    assert_int_equal(forward_state_init(&s, &m->config, steps, 0, err), 0);
    assert_int_equal(forward_reference_init(&r, &m->config, steps, err), 0);
    float *logits = malloc(sizeof(float) * m->config.vocab_size);
    char *text = calloc(1, 16 * (size_t)steps + 1);
    int token = TOKEN_BOS;
    for (int pos = 0; pos < steps; pos++) {
        if (reference)
            assert_int_equal(forward_reference(m, &r, &token, 1, pos, logits, 0, err), 0);
        else
            assert_int_equal(forward(m, &s, &token, 1, pos, logits, 0, err), 0);
        int next = argmax(logits, m->config.vocab_size);
        if (next == TOKEN_BOS)
            break;
        strcat(text, tokenizer_decode(tok, token, next));
        token = next;
    }
    free(logits);
    forward_state_free(&s);
    forward_reference_free(&r);
    return text;
}

static void test_stories260K_greedy(void **state)
{
    (void)state;
    char model_path[4096], v1_path[4096] = "";
    LxError err[1];
    const char *p = test_real_model("stories260K.bin");
    if (!p)
        skip();
    snprintf(model_path, sizeof model_path, "%s", p); /* p is overwritten by the next lookup */
    if (!test_real_model("tok512.bin"))
        skip();
    if ((p = test_real_model("stories260K_v1.bin")))
        snprintf(v1_path, sizeof v1_path, "%s", p);
    Model m;
    assert_int_equal(model_open(&m, model_path, err), 0);
    Tokenizer *tok = tokenizer_open(test_real_model("tok512.bin"), m.config.vocab_size, err);
    assert_non_null(tok);
    char *text = greedy_text(&m, tok, 200, 0);
    assert_string_equal(text, STORIES260K_GREEDY_200);
    free(text);
    text = greedy_text(&m, tok, 200, 1); /* the reference too: it is run.c's maths */
    assert_string_equal(text, STORIES260K_GREEDY_200);
    free(text);

    /* The v0 and v1 copies give identical logits for a prompt (same weights, same code). */
    if (*v1_path) {
        Model m1;
        assert_int_equal(model_open(&m1, v1_path, err), 0);
        ForwardState s0, s1;
        assert_int_equal(forward_state_init(&s0, &m.config, 64, 0, err), 0);
        assert_int_equal(forward_state_init(&s1, &m1.config, 64, 0, err), 0);
        int tokens[64];
        random_tokens(tokens, 64, 512, 3);
        float *l0 = malloc(sizeof(float) * 64 * 512), *l1 = malloc(sizeof(float) * 64 * 512);
        assert_int_equal(forward(&m, &s0, tokens, 64, 0, l0, 1, err), 0);
        assert_int_equal(forward(&m1, &s1, tokens, 64, 0, l1, 1, err), 0);
        assert_memory_equal(l0, l1, sizeof(float) * 64 * 512);
        free(l0);
        free(l1);
        forward_state_free(&s0);
        forward_state_free(&s1);
        model_close(&m1);
    }
    tokenizer_free(tok);
    model_close(&m);
}

/* llama2.c's runq.c (built from karpathy/llama2.c), `runq FILE -z tok512.bin -t 0 -n 200`, prints
 * exactly these (and a newline) for the two int8 files of the models folder. */
static const char *RUNQ_GREEDY_200[2][2] = {
    {"stories260K_q80_gs4.bin",
     "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
     "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
     "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
     "She said, \"I want to play with your ball, but I can't find it.\"\n"
     "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
     "Lily didn't want to help, but she did"},
    {"llama2xs_tok512_q80.bin",
     "Once upon a time, there was a little girl named Lily. She loved to play with her toys and all day long. "
     "One day, she saw a big box. He was very happy. He wanted to play with her toys and play with her mom.\n"
     "They came to the park. The bird was very happy. He wanted to play with them. He was very happy. "
     "He said, \"It's a boy,\" said then said, \"It's a boy,\" said the cat. \"It's okay, Lily. It's okay.\"\n"
     "Lily was so happy and said, \"It's okay, Lily. It's anymore. It's animals,\" said the"},
};

static void test_q80_greedy(void **state)
{
    (void)state;
    LxError err[1];
    char tok_path[4096];
    if (!test_real_model("tok512.bin"))
        skip();
    snprintf(tok_path, sizeof tok_path, "%s", test_real_model("tok512.bin"));
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        const char *p = test_real_model(RUNQ_GREEDY_200[i][0]);
        if (!p)
            continue;
        Model m;
        assert_int_equal(model_open(&m, p, err), 0);
        Tokenizer *tok = tokenizer_open(tok_path, m.config.vocab_size, err);
        assert_non_null(tok);
        /* The reference is runq.c's arithmetic: the same text. The fast forward sums in other
         * orders, and with groups of 4 one activation rounded the other way moves a logit by up
         * to 0.08 (measured), enough to flip a near-tie: for gs 4 it agreed on 448 bytes in the
         * -O3 build and 429 under the sanitizers (the compiler's float order moves it), so it must
         * agree on the first 256 (the first two sentences' lines); for gs 64 on all of it. */
        for (int reference = 1; reference >= 0; reference--) {
            char *text = greedy_text(&m, tok, 200, reference);
            const char *want = RUNQ_GREEDY_200[i][1];
            size_t need = reference || m.group_size >= 64 ? strlen(want) + 1 : 256, same = 0;
            while (text[same] && text[same] == want[same])
                same++;
            if (text[same] == want[same])
                same++; /* both ended: count the terminator */
            if (same < need)
                fail_msg("%s, %s forward: greedy text agrees with runq.c's on %zu bytes, want %zu:\n%s",
                         RUNQ_GREEDY_200[i][0], reference ? "reference" : "fast", same, need, text);
            free(text);
        }
        tokenizer_free(tok);
        model_close(&m);
        ran++;
    }
    if (!ran)
        skip();
}

/* One model, several states in different threads: the model is read-only, so each sequence
 * gives the same logits as when run alone. */
static void test_shared_model_threads(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    char path[256];
    LxError err[1];
    test_write_model(path, &c, 1, 1, 4, 0);
    Model m;
    assert_int_equal(model_open(&m, path, err), 0);
    enum { SEQS = 4, N = 24 };
    int tokens[SEQS][N];
    float alone[SEQS][16], together[SEQS][16];
    for (int i = 0; i < SEQS; i++) {
        random_tokens(tokens[i], N, 16, 100 + i);
        ForwardState s;
        assert_int_equal(forward_state_init(&s, &c, N, 0, err), 0);
        assert_int_equal(forward(&m, &s, tokens[i], N, 0, alone[i], 0, err), 0);
        forward_state_free(&s);
    }
    int failures = 0;
    #pragma omp parallel for num_threads(SEQS) reduction(+ : failures)
    for (int i = 0; i < SEQS; i++) {
        LxError e[1];
        ForwardState s;
        if (forward_state_init(&s, &c, N, 0, e) != 0) {
            failures++;
            continue;
        }
        for (int t = 0; t < N; t++) /* one token at a time, to interleave with the others */
            failures += forward(&m, &s, &tokens[i][t], 1, t, together[i], 0, e) != 0;
        forward_state_free(&s);
    }
    assert_int_equal(failures, 0);
    for (int i = 0; i < SEQS; i++)
        assert_true(max_rel_diff(together[i], alone[i], 16) <= TOLERANCE);
    model_close(&m);
    test_remove(path);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_batched_equals_sequential),
        cmocka_unit_test(test_attention_run_equals_rows),
        cmocka_unit_test(test_blas_and_stream_paths),
        cmocka_unit_test(test_q8_against_dequantized),
        cmocka_unit_test(test_q8_spans),
        cmocka_unit_test(test_tolerance_detects_difference),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_shared_model_threads),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_stories260K_greedy),
        cmocka_unit_test(test_q80_greedy),
    };
    TEST_MAIN(own, real);
}
