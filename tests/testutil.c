/* testutil.c: temporary model files and real-model lookup for the tests. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "testutil.h"
#include "internal.h"

ModelConfig test_tiny_config(void)
{
    ModelConfig c = {.dim = 32, .hidden_dim = 48, .n_layers = 2, .n_heads = 4,
                     .n_kv_heads = 2, .vocab_size = 16, .seq_len = 64};
    return c;
}

static void temp_name(char *path)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, 256, "%s/llamix-test-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

void test_write_model(char *path, const ModelConfig *c, int version, int shared, uint64_t seed, float std)
{
    LxError err[1];
    temp_name(path);
    if (model_write_random(path, c, version, shared, seed, std, err) != 0)
        fail_msg("model_write_random: %s", err->message);
}

void test_members_open(TestMembers *ms, int k, int vocab, uint64_t seed)
{
    ModelConfig shapes[TEST_MAX_MEMBERS] = {
        {.dim = 32, .hidden_dim = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .seq_len = 64},
        {.dim = 24, .hidden_dim = 64, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .seq_len = 64},
        {.dim = 16, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 1, .seq_len = 80},
    };
    LxError err[1];
    assert_true(k >= 1 && k <= TEST_MAX_MEMBERS);
    ms->k = k;
    for (int i = 0; i < k; i++) {
        shapes[i].vocab_size = vocab;
        test_write_model(ms->paths[i], &shapes[i], i % 2, i != 1, seed + (uint64_t)i,
                         2.0f / sqrtf((float)shapes[i].dim));
        if (model_open(&ms->models[i], ms->paths[i], err))
            fail_msg("model_open: %s", err->message);
        ms->members[i] = &ms->models[i];
    }
}

void test_members_close(TestMembers *ms)
{
    for (int i = 0; i < ms->k; i++) {
        model_close(&ms->models[i]);
        test_remove(ms->paths[i]);
    }
}

void test_write_bytes(char *path, const void *data, size_t size)
{
    temp_name(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

void test_remove(const char *path) { unlink(path); }

const char *test_real_models_dir(void)
{
    const char *dir = getenv("LLAMIX_MODELS");
    return dir && *dir ? dir : "../shared/models";
}

int test_real_models_present(void)
{
    return test_real_model("stories260K.bin") && test_real_model("tok512.bin");
}

const char *test_real_model(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_real_models_dir(), name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    return path;
}

void *test_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

int test_ensemble_init(Ensemble *e, const Model *const *models, const double *w, int k, int n_ctx,
                       LxMode mode, SamplerParams p, uint64_t seed, LxError *err)
{
    EnsembleParams params = {.weights = w, .n_ctx = n_ctx, .mode = mode, .sampler = p, .seed = seed};
    return ensemble_init(e, models, k, NULL, 0, &params, err);
}

void test_append(Ensemble *e, const int *tokens, int n)
{
    LxError err[1];
    if (ensemble_append(e, tokens, n, err))
        fail_msg("ensemble_append: %s", err->message);
}

int test_step(Ensemble *e)
{
    LxError err[1];
    int token;
    if (ensemble_step(e, &token, NULL, NULL, err))
        fail_msg("ensemble_step: %s", err->message);
    return token;
}

void test_distribution(Ensemble *e, double *q)
{
    LxError err[1];
    float f[256];
    assert_true(e->vocab_size <= 256);
    if (ensemble_distribution(e, f, err))
        fail_msg("ensemble_distribution: %s", err->message);
    for (int i = 0; i < e->vocab_size; i++)
        q[i] = f[i];
}

void test_sequence_probabilities(Ensemble *ce, const int *prompt, int n_prompt, double *prob)
{
    const int V = ce->vocab_size;
    double *q1 = malloc(sizeof(double) * 3 * (size_t)V), *q2 = q1 + V, *q3 = q2 + V;
    assert_non_null(q1);
    ensemble_reset(ce);
    test_append(ce, prompt, n_prompt);
    test_distribution(ce, q1);
    for (int a = 0; a < V; a++) {
        ensemble_reset(ce);
        test_append(ce, prompt, n_prompt);
        test_append(ce, &a, 1);
        test_distribution(ce, q2);
        for (int b = 0; b < V; b++) {
            ensemble_reset(ce);
            test_append(ce, prompt, n_prompt);
            test_append(ce, &a, 1);
            test_append(ce, &b, 1);
            test_distribution(ce, q3);
            for (int c = 0; c < V; c++)
                prob[((size_t)a * V + b) * V + c] = q1[a] * q2[b] * q3[c];
        }
    }
    free(q1);
}
