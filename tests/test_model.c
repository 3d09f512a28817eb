/* test_model.c: reading and writing llama2.c checkpoints, and refusing bad ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
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
        struct { const float *a, *b; size_t n; } t[] = {
            {m0.w.token_embedding, m1.w.token_embedding, V * D}, {m0.w.rms_att, m1.w.rms_att, L * D},
            {m0.w.wq, m1.w.wq, L * D * D}, {m0.w.wk, m1.w.wk, L * KVD * D}, {m0.w.wv, m1.w.wv, L * KVD * D},
            {m0.w.wo, m1.w.wo, L * D * D}, {m0.w.rms_ffn, m1.w.rms_ffn, L * D}, {m0.w.w1, m1.w.w1, L * H * D},
            {m0.w.w2, m1.w.w2, L * D * H}, {m0.w.w3, m1.w.w3, L * H * D}, {m0.w.rms_final, m1.w.rms_final, D},
            {m0.w.wcls, m1.w.wcls, V * D},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            assert_memory_equal(t[i].a, t[i].b, t[i].n * sizeof(float));
        assert_true(shared ? m0.w.wcls == m0.w.token_embedding : m0.w.wcls != m0.w.token_embedding);
        /* the classifier is not the embedding's copy when separate */
        if (!shared)
            assert_memory_not_equal(m1.w.wcls, m1.w.token_embedding, V * D * sizeof(float));
        assert_true(m0.w.rms_att[0] == 1.0f && m1.w.rms_final[D - 1] == 1.0f);
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
    assert_memory_not_equal(a.w.wq, b.w.wq, sizeof(float) * c.dim * c.dim);
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

    memcpy(buf, v1, n1); put32(buf + 4, 2);
    expect_error(buf, n1, "not supported yet");
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
        assert_memory_equal(m0.w.w2, m1.w.w2, sizeof(float) * 5 * 64 * 172);
        assert_memory_equal(m0.w.rms_final, m1.w.rms_final, sizeof(float) * 64);
        model_close(&m1);
    }
    const char *q80 = test_real_model("stories260K_q80_gs4.bin");
    if (q80) {
        assert_int_not_equal(model_open(&m1, q80, err), 0);
        assert_non_null(strstr(err->message, "not supported yet"));
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
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_shapes),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_real_checkpoints),
    };
    TEST_MAIN(own, real);
}
