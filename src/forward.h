/* forward.h: the run state of one sequence and the batched forward pass.
 *
 * A Model is shared read-only; a ForwardState belongs to one sequence (one thread at a time), so
 * one model can serve many sequences at once. The state owns the KV cache for n_ctx positions and
 * all scratch for batches of up to max_batch rows, allocated once: forward() never allocates. */
#ifndef LLAMIX_FORWARD_H
#define LLAMIX_FORWARD_H

#include "model.h"

typedef struct {
    int n_ctx;        /* positions the KV cache holds (<= S) */
    int max_batch;    /* rows processed together; longer inputs are done in chunks */
    /* (L, KVH, n_ctx, HS): a kv head's positions side by side, so attention reads them in one
     * stream (position-major, as llama2.c, they are HS-float pieces KVD floats apart; the 15M
     * shape decoded about 10% faster at 2 threads this way, with cold caches) */
    float *key_cache;
    float *value_cache; /* (L, KVH, n_ctx, HS) */
    float *x;   /* (max_batch, D) residual stream */
    float *xb;  /* (max_batch, D) normed input / attention output */
    float *xb2; /* (max_batch, D) projection output */
    float *q;   /* (max_batch, D) queries */
    float *k;   /* (max_batch, KVD) new keys */
    float *v;   /* (max_batch, KVD) new values */
    float *hb;  /* (max_batch, H) gate */
    float *hb2; /* (max_batch, H) up */
    float *att; /* (max_batch, NH, n_ctx) attention scores */
    float *rope_cos, *rope_sin; /* (n_ctx, HS/2) rotary tables */
} ForwardState;

/* Allocate a state for up to n_ctx positions (0 means the model's seq_len) and batches of up to
 * max_batch rows (0 means a default). On failure *s is safe to pass to forward_state_free. */
int forward_state_init(ForwardState *s, const ModelConfig *c, int n_ctx, int max_batch, char err[]);
void forward_state_free(ForwardState *s);

/* Run tokens[0..n) at positions pos..pos+n-1, appending their keys and values to the cache.
 * Logits: if all_rows, logits is (n, V) and gets every position's; otherwise logits is (V) and
 * gets the last position's only (the classifier runs just for the rows asked for). logits may be
 * NULL to only fill the cache. Requires 1 <= n, 0 <= pos, pos + n <= n_ctx, 0 <= token < V
 * (checked; returns -1 with a message otherwise). */
int forward(const Model *m, ForwardState *s, const int *tokens, int n, int pos, float *logits,
            int all_rows, char err[]);

/* The same maths one token at a time with matmul_reference: the oracle of the tests. */
int forward_reference(const Model *m, ForwardState *s, const int *tokens, int n, int pos,
                      float *logits, int all_rows, char err[]);

#endif
