/* testutil.h: what the tests share: tiny random models written to temporary files, and the
 * location of the real llama2.c models (../shared/models, or $LLAMIX_MODELS). */
#ifndef LLAMIX_TESTUTIL_H
#define LLAMIX_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "internal.h"

/* A small config: D 32, H 48, L 2, NH 4, NKV 2 (grouped-query), V 16, S 64. */
ModelConfig test_tiny_config(void);

/* Write a random checkpoint (model_write_random) to a new temporary file; path receives its name
 * (at least 256 bytes). Fails the test on error. Remove it with test_remove(). */
void test_write_model(char *path, const ModelConfig *c, int version, int shared, uint64_t seed, float std);

/* Up to three tiny members of different shapes (grouped-query, multi-head, multi-query; v0 and
 * v1 files; shared and separate classifiers) sharing one vocabulary of `vocab` ids; seq_len 64,
 * 64 and 80. Weights have std 2/sqrt(D), so distributions are peaked and the members differ. */
#define TEST_MAX_MEMBERS 3
typedef struct {
    int k;
    char paths[TEST_MAX_MEMBERS][256];
    Model models[TEST_MAX_MEMBERS];
    const Model *members[TEST_MAX_MEMBERS];
} TestMembers;

void test_members_open(TestMembers *ms, int k, int vocab, uint64_t seed);
void test_members_close(TestMembers *ms);

/* ensemble_init with the parameters spelt out, no tokenizer (the tests drive it by token ids):
 * weights w (NULL: uniform), context n_ctx (0: the smallest seq_len). */
int test_ensemble_init(Ensemble *e, const Model *const *models, const double *w, int k, int n_ctx,
                       LxMode mode, SamplerParams p, uint64_t seed, LxError *err);

/* ensemble_append, ensemble_step and ensemble_distribution (q as doubles, V <= 256) that fail the
 * test on error. */
void test_append(Ensemble *e, const int *tokens, int n);
int test_step(Ensemble *e);
void test_distribution(Ensemble *e, double *q);

/* The exact probabilities of every 3-token continuation of prompt under CE ensemble ce (whose
 * distribution is the one ME must match), V^3 of them with index (a V + b) V + c. */
void test_sequence_probabilities(Ensemble *ce, const int *prompt, int n_prompt, double *prob);

/* Write bytes to a new temporary file named into path (>= 256 bytes). */
void test_write_bytes(char *path, const void *data, size_t size);
void test_remove(const char *path);

/* The main of a test program whose cases fall in two groups: `own`, which build their data
 * themselves, and `real`, which need the real llama2.c models (../shared/models or
 * $LLAMIX_MODELS). The program is built twice (Makefile.am): plain it runs `own`; with
 * TEST_REAL_MODELS defined it runs `real`, or exits 77, automake's SKIP, when the models folder
 * is absent, so a fresh clone's test summary shows what did not run. */
#ifdef TEST_REAL_MODELS
#define TEST_MAIN(own, real)                                                                   \
    do {                                                                                       \
        (void)own;                                                                             \
        if (!test_real_models_present()) {                                                     \
            printf("SKIP: no real models in %s (set LLAMIX_MODELS)\n", test_real_models_dir()); \
            return 77;                                                                         \
        }                                                                                      \
        return cmocka_run_group_tests(real, NULL, NULL);                                       \
    } while (0)
#else
#define TEST_MAIN(own, real)                           \
    do {                                               \
        (void)real;                                    \
        return cmocka_run_group_tests(own, NULL, NULL); \
    } while (0)
#endif

/* The real-models folder, and whether it holds the two files every real-model case needs
 * (stories260K.bin and tok512.bin). */
const char *test_real_models_dir(void);
int test_real_models_present(void);

/* Full path of a file in the real-models folder, or NULL if that file (or folder) is absent.
 * The result is static: copy it before calling again. */
const char *test_real_model(const char *name);

/* Read a whole file into a malloc'd buffer; NULL if it cannot. */
void *test_read_file(const char *path, size_t *size);

#endif
