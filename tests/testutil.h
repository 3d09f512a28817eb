/* testutil.h: what the tests share: tiny random models written to temporary files, and the
 * location of the real llama2.c models (../shared/models, or $LLAMIX_MODELS). */
#ifndef LLAMIX_TESTUTIL_H
#define LLAMIX_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"

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

/* Write bytes to a new temporary file named into path (>= 256 bytes). */
void test_write_bytes(char *path, const void *data, size_t size);
void test_remove(const char *path);

/* Full path of a file in the real-models folder, or NULL if that file (or folder) is absent.
 * The result is static: copy it before calling again. */
const char *test_real_model(const char *name);

/* Read a whole file into a malloc'd buffer; NULL if it cannot. */
void *test_read_file(const char *path, size_t *size);

#endif
