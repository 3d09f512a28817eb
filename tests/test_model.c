/* test_model.c: reading and writing llama2.c checkpoints, and refusing bad ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static int same_config(const ModelConfig *a, const ModelConfig *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* A v0 and a v1 file written from one seed hold the same tensors in different orders. */
static void test_v0_v1_same_model(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    for (int shared = 0; shared <= 1; shared++) {
        char p0[256], p1[256];
        LxError err[1];
        test_write_model(p0, &c, 0, shared, 7, 0);
        test_write_model(p1, &c, 1, shared, 7, 0);
        Model m0, m1;
        assert_int_equal(model_open(&m0, p0, err), 0);
        assert_int_equal(model_open(&m1, p1, err), 0);
        assert_true(same_config(&m0.config, &c) && same_config(&m1.config, &c));
        assert_int_equal(m0.version, 0);
        assert_int_equal(m1.version, 1);
        assert_int_equal(m0.shared_classifier, shared);
        assert_int_equal(m1.shared_classifier, shared);
        size_t D = c.dim, L = c.n_layers, KVD = model_kv_dim(&c), H = c.hidden_dim, V = c.vocab_size;
        const LayerWeights *a = m0.w.layers, *b = m1.w.layers; /* each tensor's layers are contiguous */
        struct { const float *a, *b; size_t n; } t[] = {
            {m0.w.token_embedding.f, m1.w.token_embedding.f, V * D}, {a->rms_att, b->rms_att, L * D},
            {a->wq.f, b->wq.f, L * D * D}, {a->wk.f, b->wk.f, L * KVD * D}, {a->wv.f, b->wv.f, L * KVD * D},
            {a->wo.f, b->wo.f, L * D * D}, {a->rms_ffn, b->rms_ffn, L * D}, {a->w1.f, b->w1.f, L * H * D},
            {a->w2.f, b->w2.f, L * D * H}, {a->w3.f, b->w3.f, L * H * D}, {m0.w.rms_final, m1.w.rms_final, D},
            {m0.w.wcls.f, m1.w.wcls.f, V * D},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            assert_memory_equal(t[i].a, t[i].b, t[i].n * sizeof(float));
        for (size_t l = 1; l < L; l++) /* layer l starts where layer l - 1 ends */
            assert_ptr_equal(a[l].w2.f, a[l - 1].w2.f + D * H);
        assert_true(shared ? m0.w.wcls.f == m0.w.token_embedding.f : m0.w.wcls.f != m0.w.token_embedding.f);
        /* the classifier is not the embedding's copy when separate */
        if (!shared)
            assert_memory_not_equal(m1.w.wcls.f, m1.w.token_embedding.f, V * D * sizeof(float));
        assert_true(a->rms_att[0] == 1.0f && m1.w.rms_final[D - 1] == 1.0f);
        model_close(&m0);
        model_close(&m1);
        test_remove(p0);
        test_remove(p1);
    }
}

static void test_seeds_differ(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    char p0[256], p1[256];
        LxError err[1];
    test_write_model(p0, &c, 1, 1, 1, 0);
    test_write_model(p1, &c, 1, 1, 2, 0);
    Model a, b;
    assert_int_equal(model_open(&a, p0, err), 0);
    assert_int_equal(model_open(&b, p1, err), 0);
    assert_memory_not_equal(a.w.layers[0].wq.f, b.w.layers[0].wq.f, sizeof(float) * c.dim * c.dim);
    model_close(&a);
    model_close(&b);
    test_remove(p0);
    test_remove(p1);
}

/* Parse `bytes` and expect failure with a message containing `needle`. */
static void expect_error(const void *bytes, size_t size, const char *needle)
{
    LxError err[1] = {{0}};
    Model m;
    int rc = model_parse(&m, bytes, size, "bad.bin", err);
    if (rc == 0 || !strstr(err->message, needle) || !strstr(err->message, "bad.bin"))
        fail_msg("expected an error containing '%s', got rc %d: '%s'", needle, rc, err->message);
    model_close(&m);
}

static unsigned char *file_bytes(int version, int shared, size_t *size)
{
    ModelConfig c = test_tiny_config();
    char path[256];
    test_write_model(path, &c, version, shared, 3, 0);
    unsigned char *bytes = test_read_file(path, size);
    assert_non_null(bytes);
    test_remove(path);
    return bytes;
}

static void put32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }

static void test_bad_files(void **state)
{
    (void)state;
    size_t n0, n1;
    unsigned char *v0 = file_bytes(0, 1, &n0), *v1 = file_bytes(1, 0, &n1);
    unsigned char *buf = malloc(n1 + 8);

    expect_error(v0, 0, "only 0 bytes");
    expect_error(v0, 27, "only 27 bytes");
    expect_error(v0, n0 - 1, "truncated");
    expect_error(v1, n1 - 4, "truncated");
    expect_error(v1, 100, "shorter than the 256-byte");
    memcpy(buf, v1, n1); buf[n1] = 0;
    expect_error(buf, n1 + 1, "trailing bytes");

    memcpy(buf, v1, n1); put32(buf + 4, 2); put32(buf + 37, 16); /* a v1 body is not a v2 one */
    expect_error(buf, n1, "trailing bytes");
    memcpy(buf, v1, n1); put32(buf + 4, 3);
    expect_error(buf, n1, "unknown checkpoint version 3");
    /* fp32 weights must be finite: a NaN in layer 1's w2, an infinity in the embedding */
    ModelConfig c = test_tiny_config();
    size_t D = c.dim, H = c.hidden_dim, L = c.n_layers, KVD = model_kv_dim(&c), V = c.vocab_size;
    size_t w2_layer1 = 256 + 4 * (2 * L * D + D + V * D + L * (2 * D * D + 2 * KVD * D + H * D) + D * H + 5);
    memcpy(buf, v1, n1); memcpy(buf + w2_layer1, &(float){NAN}, 4);
    expect_error(buf, n1, "w2 of layer 1 has a value that is not finite (nan) at index 5");
    memcpy(buf, v0, n0); memcpy(buf + 28 + 4 * 7, &(float){INFINITY}, 4);
    expect_error(buf, n0, "token_embedding has a value that is not finite (inf) at index 7");
    memcpy(buf, v0, n0); memcpy(buf + 28 + 4 * (V * D + 3), &(float){NAN}, 4);
    expect_error(buf, n0, "rms_att has a value that is not finite");
    memcpy(buf, v1, n1); put32(buf + 4, 9);
    expect_error(buf, n1, "unknown checkpoint version 9");
    memcpy(buf, v1, n1); buf[36] = 7;
    expect_error(buf, n1, "shared_classifier");

    /* header fields of v0: dim, hidden, layers, heads, kv_heads, vocab, seq */
    struct { int field; int32_t value; const char *needle; int v0_only; } cases[] = {
        {3, 0, "positive", 0}, {0, -32, "positive", 0}, {4, 3, "multiple of n_kv_heads", 0},
        {3, 5, "not a multiple of n_heads", 0}, {4, 8, "multiple of n_kv_heads", 0},
        {5, 2, "no room for BOS", 0}, {5, INT32_MIN, "positive", 0},
        {0, INT32_MAX - 31, "dim", 0}, {2, INT32_MAX, "bytes", 0},
        {6, INT32_MAX, "seq_len", 0}, /* implausible, in either version */
        {6, (1 << 22) + 1, "implausible", 0}, {6, 1 << 21, "bytes", 1}, /* v0's RoPE tables grow with seq_len */
        {1, 1 << 30, "bytes", 0}, {5, 1 << 30, "bytes", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, v0, n0);
        put32(buf + 4 * cases[i].field, cases[i].value);
        expect_error(buf, n0, cases[i].needle);
        if (cases[i].v0_only)
            continue;
        /* and the same in a v1 header */
        memcpy(buf, v1, n1);
        put32(buf + 8 + 4 * cases[i].field, cases[i].value);
        expect_error(buf, n1, cases[i].needle);
    }
    /* head size 2 * 3 = 6 ok but 32 / 8 = 4 heads... an odd head size: dim 36, heads 4 -> 9 */
    memcpy(buf, v0, n0); put32(buf, 36);
    expect_error(buf, n0, "odd");
    /* a shared v0 read as separate (negative vocab) wants the classifier too */
    memcpy(buf, v0, n0); put32(buf + 20, -16);
    expect_error(buf, n0, "truncated");

    free(buf);
    free(v0);
    free(v1);
}

/* A random version 2 file is the version 1 model of its seed quantized (model_quantize makes the
 * same bytes), and its weights dequantize to within half a step of the fp32 ones. */
static void test_v2_random_is_quantized_v1(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    LxError err[1];
    for (int shared = 0; shared <= 1; shared++) {
        char p1[256], p2[256], pq[300];
        test_write_model(p1, &c, 1, shared, 11, 0);
        test_write_model(p2, &c, 2, shared, 11, 0);
        snprintf(pq, sizeof pq, "%s.q80", p1);
        Model m1, m2;
        assert_int_equal(model_open(&m1, p1, err), 0);
        assert_int_equal(model_quantize(&m1, pq, 0, err), 0);
        size_t n2, nq;
        unsigned char *b2 = test_read_file(p2, &n2), *bq = test_read_file(pq, &nq);
        assert_true(n2 == nq && memcmp(b2, bq, n2) == 0);
        free(b2);
        free(bq);
        assert_int_equal(model_open(&m2, p2, err), 0);
        assert_int_equal(m2.version, 2);
        assert_int_equal(m2.group_size, 16); /* largest <= 64 dividing 32 and 48 */
        assert_int_equal(m2.shared_classifier, shared);
        assert_true(shared ? m2.w.wcls.q == m2.w.token_embedding.q : m2.w.wcls.q != m2.w.token_embedding.q);
        /* |w - q s| <= s / 2 (plus rounding) for every weight of every layer's w2 and the classifier */
        const int D = c.dim, H = c.hidden_dim, V = c.vocab_size;
        float row[64];
        for (int l = 0; l < c.n_layers; l++)
            for (int i = 0; i < D; i++) {
                weight_row(row, m2.w.layers[l].w2, (size_t)i, H);
                for (int j = 0; j < H; j++) {
                    float s = m2.w.layers[l].w2.s[(size_t)i * (H / 16) + j / 16];
                    assert_true(fabsf(row[j] - m1.w.layers[l].w2.f[(size_t)i * H + j]) <= 0.5f * s * 1.0001f);
                }
            }
        for (int i = 0; i < V; i++) {
            weight_row(row, m2.w.wcls, (size_t)i, D);
            for (int j = 0; j < D; j++)
                assert_true(fabsf(row[j] - m1.w.wcls.f[(size_t)i * D + j]) <= 0.5f * m2.w.wcls.s[(size_t)i * 2 + j / 16] * 1.0001f);
        }
        /* an int8 model is not quantized again; a group size must divide dim and hidden_dim */
        assert_int_equal(model_quantize(&m2, pq, 0, err), LX_ERR_ARGUMENT);
        assert_non_null(strstr(err->message, "already int8"));
        assert_int_equal(model_quantize(&m1, pq, 32, err), LX_ERR_ARGUMENT); /* 48 % 32 */
        assert_non_null(strstr(err->message, "group size 32 does not divide"));
        assert_int_equal(model_quantize(&m1, pq, -4, err), LX_ERR_ARGUMENT);
        assert_int_equal(model_quantize(&m1, pq, 8, err), 0);
        Model m8;
        assert_int_equal(model_open(&m8, pq, err), 0);
        assert_int_equal(m8.group_size, 8);
        model_close(&m8);
        model_close(&m1);
        model_close(&m2);
        test_remove(p1);
        test_remove(p2);
        test_remove(pq);
    }
}

/* Shapes whose largest matrix is a square one (D, D > V, H) or the feed-forward one: the writer's
 * buffers hold the largest, and each reads back. */
static void test_v2_shapes(void **state)
{
    (void)state;
    const ModelConfig shapes[] = {{16, 8, 1, 4, 1, 4, 4}, {8, 40, 2, 2, 2, 4, 4}, {12, 20, 1, 2, 1, 200, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char p[256];
        LxError err[1];
        test_write_model(p, &shapes[i], 2, i != 1, 3, 0);
        Model m;
        assert_int_equal(model_open(&m, p, err), 0);
        assert_int_equal(m.group_size, model_default_group_size(&shapes[i]));
        assert_int_equal(m.shared_classifier, i != 1);
        model_close(&m);
        test_remove(p);
    }
}

/* export.py's rounding: half to even in float32 (torch.round), not half away from zero (roundf);
 * an all-zero group gets scale 0 and zeros. */
static void test_quantize_rounding(void **state)
{
    (void)state;
    ModelConfig c = test_tiny_config();
    const size_t D = c.dim, L = c.n_layers, V = c.vocab_size;
    size_t n;
    char p1[256], pq[300];
    test_write_model(p1, &c, 1, 1, 5, 0);
    unsigned char *b = test_read_file(p1, &n);
    /* layer 0's wq, row 0: group 0 holds 127 and halves (scale 1); group 1 is all zero */
    float g0[16] = {127, 2.5f, 3.5f, -2.5f, 0.5f, 1.5f, -0.5f, 126.5f, -127, 0.25f, 0.75f, 0, 0, 0, 0, 0};
    const int8_t want0[16] = {127, 2, 4, -2, 0, 2, 0, 126, -127, 0, 1, 0, 0, 0, 0, 0};
    size_t wq = 256 + 4 * (2 * L * D + D + V * D);
    memcpy(b + wq, g0, sizeof g0);
    memset(b + wq + sizeof g0, 0, sizeof g0);
    test_remove(p1);
    test_write_bytes(p1, b, n);
    free(b);
    snprintf(pq, sizeof pq, "%s.q80", p1);
    Model m1, mq;
    LxError err[1];
    assert_int_equal(model_open(&m1, p1, err), 0);
    assert_int_equal(model_quantize(&m1, pq, 16, err), 0);
    assert_int_equal(model_open(&mq, pq, err), 0);
    const Weight w = mq.w.layers[0].wq;
    assert_memory_equal(w.q, want0, 16);
    assert_true(w.s[0] == 127.0f / 127.0f && w.s[1] == 0.0f);
    for (int j = 16; j < 32; j++)
        assert_int_equal(w.q[j], 0);
    model_close(&m1);
    model_close(&mq);
    test_remove(p1);
    test_remove(pq);
}

/* Hostile version 2 files: each a one-line error naming the file. */
static void test_bad_v2_files(void **state)
{
    (void)state;
    size_t n;
    unsigned char *v2 = file_bytes(2, 1, &n);
    unsigned char *buf = malloc(n + 8);
    ModelConfig c = test_tiny_config();
    const size_t D = c.dim, L = c.n_layers, V = c.vocab_size;
    const size_t first_scales = 256 + 4 * (2 * L * D + D) + V * D; /* the embedding's */
    struct { size_t at; int32_t gs; const char *needle; } gs_cases[] = {
        {37, 0, "group size 0 is not positive"}, {37, -16, "group size -16 is not positive"},
        {37, 32, "does not divide both dim 32 and hidden_dim 48"}, {37, 5, "does not divide"},
        {37, INT32_MIN, "not positive"},
    };
    for (size_t i = 0; i < sizeof gs_cases / sizeof gs_cases[0]; i++) {
        memcpy(buf, v2, n);
        put32(buf + gs_cases[i].at, gs_cases[i].gs);
        expect_error(buf, n, gs_cases[i].needle);
    }
    memcpy(buf, v2, n); put32(buf + 37, 8);
    expect_error(buf, n, "truncated"); /* a smaller group size implies more scales than there are */
    expect_error(v2, n - 1, "truncated");
    expect_error(v2, 200, "shorter than the 256-byte version 2 header");
    memcpy(buf, v2, n); buf[n] = 0;
    expect_error(buf, n + 1, "trailing bytes");
    memcpy(buf, v2, n); memcpy(buf + first_scales + 4 * 3, &(float){NAN}, 4);
    expect_error(buf, n, "token_embedding has a value that is not finite (nan) at index 3");
    memcpy(buf, v2, n); memcpy(buf + first_scales + 4 * 1, &(float){-0.5f}, 4);
    expect_error(buf, n, "token_embedding has a negative scale (-0.5) at index 1");
    memcpy(buf, v2, n); memcpy(buf + n - 4, &(float){INFINITY}, 4); /* the last scale: w3 of the last layer */
    expect_error(buf, n, "w3 of layer 1 has a value that is not finite (inf)");
    memcpy(buf, v2, n); memcpy(buf + 256, &(float){NAN}, 4);
    expect_error(buf, n, "rms_att has a value that is not finite (nan) at index 0");
    free(buf);
    free(v2);
}

static void test_open_errors(void **state)
{
    (void)state;
    LxError err[1];
    Model m;
    assert_int_not_equal(model_open(&m, "/nonexistent/model.bin", err), 0);
    assert_non_null(strstr(err->message, "/nonexistent/model.bin: cannot open"));
    model_close(&m);
    assert_int_not_equal(model_open(&m, "/tmp", err), 0);
    assert_non_null(strstr(err->message, "not a regular file"));
    model_close(&m);
    char path[256];
    test_write_bytes(path, "", 0);
    assert_int_not_equal(model_open(&m, path, err), 0);
    assert_non_null(strstr(err->message, "empty"));
    model_close(&m);
    model_close(&m); /* twice is safe */
    test_remove(path);
}

static void test_shapes(void **state)
{
    (void)state;
    ModelConfig c;
    const char *names[] = {"tiny", "260K", "15M", "42M", "110M"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(model_shape(names[i], &c), 0);
        assert_int_equal(model_config_check(&c, names[i], NULL), 0);
    }
    assert_int_equal(model_shape("110M", &c), 0);
    assert_int_equal(c.dim, 768);
    assert_int_equal(c.hidden_dim, 2048);
    /* 110M streams about 440 MB of weights per token (fp32, shared classifier) */
    size_t bytes = model_weight_bytes(&c);
    assert_true(bytes > 400e6 && bytes < 500e6);
    assert_int_equal(model_shape("7B", &c), -1);
}

static void test_real_checkpoints(void **state)
{
    (void)state;
    const char *path = test_real_model("stories260K.bin");
    if (!path)
        skip();
    LxError err[1];
    char p0[4096];
    snprintf(p0, sizeof p0, "%s", path);
    Model m0, m1;
    assert_int_equal(model_open(&m0, p0, err), 0);
    ModelConfig want = {64, 172, 5, 8, 4, 512, 512};
    assert_true(same_config(&m0.config, &want));
    assert_int_equal(m0.shared_classifier, 1);
    const char *v1 = test_real_model("stories260K_v1.bin");
    if (v1) {
        assert_int_equal(model_open(&m1, v1, err), 0);
        assert_true(same_config(&m1.config, &want));
        assert_memory_equal(m0.w.layers[0].w2.f, m1.w.layers[0].w2.f, sizeof(float) * 5 * 64 * 172);
        assert_memory_equal(m0.w.rms_final, m1.w.rms_final, sizeof(float) * 64);
        model_close(&m1);
    }
    const char *q80 = test_real_model("stories260K_q80_gs4.bin");
    if (q80) {
        assert_int_equal(model_open(&m1, q80, err), 0);
        assert_true(same_config(&m1.config, &want));
        assert_int_equal(m1.version, 2);
        assert_int_equal(m1.group_size, 4);
        assert_int_equal(m1.shared_classifier, 1);
        assert_int_equal(m1.w.layers[4].w2.type, WEIGHT_Q8_0);
        /* the norms are kept in fp32, bit for bit */
        assert_memory_equal(m0.w.layers[0].rms_att, m1.w.layers[0].rms_att, sizeof(float) * 5 * 64);
        model_close(&m1);
    }
    /* `llamix quantize` makes the two real int8 files byte for byte */
    struct { const char *fp32, *q80; int gs; } pairs[] = {
        {"stories260K.bin", "stories260K_q80_gs4.bin", 4}, {"llama2xs_tok512.bin", "llama2xs_tok512_q80.bin", 64},
    };
    for (int i = 0; i < 2; i++) {
        char in[4096], want[4096], out[256]; /* (test_real_model's answer is overwritten by the next call) */
        snprintf(in, sizeof in, "%s", test_real_model(pairs[i].fp32) ? test_real_model(pairs[i].fp32) : "");
        snprintf(want, sizeof want, "%s", test_real_model(pairs[i].q80) ? test_real_model(pairs[i].q80) : "");
        if (!in[0] || !want[0])
            continue;
        Model f;
        assert_int_equal(model_open(&f, in, err), 0);
        test_write_bytes(out, "", 0);
        assert_int_equal(model_quantize(&f, out, pairs[i].gs, err), 0);
        size_t na, nb;
        unsigned char *a = test_read_file(out, &na), *b = test_read_file(want, &nb);
        if (na != nb || memcmp(a, b, na) != 0)
            fail_msg("quantize --group-size %d %s differs from %s", pairs[i].gs, pairs[i].fp32, pairs[i].q80);
        free(a);
        free(b);
        model_close(&f);
        test_remove(out);
    }
    const char *tok = test_real_model("tok512.bin");
    if (tok) {
        assert_int_not_equal(model_open(&m1, tok, err), 0);
        assert_non_null(strstr(err->message, "tok512.bin"));
    }
    const char *xs = test_real_model("llama2xs_tok512.bin");
    if (xs) {
        assert_int_equal(model_open(&m1, xs, err), 0);
        assert_int_equal(m1.config.hidden_dim, 192);
        assert_int_equal(m1.config.seq_len, 256);
        model_close(&m1);
    }
    model_close(&m0);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_v0_v1_same_model),
        cmocka_unit_test(test_seeds_differ),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_v2_random_is_quantized_v1),
        cmocka_unit_test(test_quantize_rounding),
        cmocka_unit_test(test_v2_shapes),
        cmocka_unit_test(test_bad_v2_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_shapes),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_checkpoints),
    };
    TEST_MAIN(own, real);
}
