/* model.h: llama2.c checkpoint files: reading them into read-only mapped weights, and writing
 * random ones (for tests, benchmarks and `llamix init`).
 *
 * Shape letters used throughout llamix:
 *   D  dim (model width)          H   hidden_dim (feed-forward width)
 *   L  n_layers                   V   vocab_size
 *   NH n_heads                    NKV n_kv_heads     HS head_size = D / NH
 *   KVD kv_dim = NKV * HS         S   seq_len (the model's maximum context)
 *   T  tokens in one forward call
 * Every matrix is row-major with one row per output: W (out, in), so y = W x is
 * y[i] = sum_j W[i][j] x[j].
 *
 * Formats read:
 *   version 0 (legacy run.c): 7 int32 (D, H, L, NH, NKV, V, S); a negative V means the
 *     classifier is stored separately at the end. Then the tensors in this order:
 *     token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
 *     freq_cis_real (S, HS/2), freq_cis_imag (S, HS/2) [skipped], wcls (if unshared).
 *   version 1: uint32 magic 0x616b3432 ("ak42"), int32 version = 1, the 7 int32 above, uint8
 *     shared_classifier, zero padding to 256 bytes. Then: rms_att, rms_ffn, rms_final,
 *     token_embedding, wq, wk, wv, wo, w1, w2, w3, wcls (if unshared). No freq_cis tables.
 *   version 2 (Q8_0) is recognised and refused as not supported yet. */
#ifndef LLAMIX_MODEL_H
#define LLAMIX_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define CHECKPOINT_MAGIC 0x616b3432u

typedef struct {
    int dim;        /* D */
    int hidden_dim; /* H */
    int n_layers;   /* L */
    int n_heads;    /* NH */
    int n_kv_heads; /* NKV */
    int vocab_size; /* V */
    int seq_len;    /* S */
} ModelConfig;

/* Pointers into the mapping; read-only, never copied. */
typedef struct {
    const float *token_embedding; /* (V, D) */
    const float *rms_att;         /* (L, D) */
    const float *wq;              /* (L, D, D)   query projection */
    const float *wk;              /* (L, KVD, D) key projection */
    const float *wv;              /* (L, KVD, D) value projection */
    const float *wo;              /* (L, D, D)   attention output */
    const float *rms_ffn;         /* (L, D) */
    const float *w1;              /* (L, H, D)   gate */
    const float *w2;              /* (L, D, H)   down */
    const float *w3;              /* (L, H, D)   up */
    const float *rms_final;       /* (D) */
    const float *wcls;            /* (V, D)      classifier; = token_embedding when shared */
} ModelWeights;

typedef struct {
    ModelConfig config;
    ModelWeights w;
    int version;           /* 0 or 1 */
    int shared_classifier; /* 1 if wcls is the token embedding */
    const void *data;      /* the whole file */
    size_t size;
    int mapped;            /* data is an mmap we own (model_open) */
    char path[256];        /* for messages */
} Model;

/* Map `path` read-only and validate it. On failure returns -1 with a message naming the file;
 * *m is then safe to pass to model_close. */
int model_open(Model *m, const char *path, char err[]);

/* Validate a checkpoint already in memory (not copied: `data` must outlive *m). `name` is used in
 * messages. This is the whole parser; model_open is mmap + model_parse. */
int model_parse(Model *m, const void *data, size_t size, const char *name, char err[]);

/* Unmap; safe on a zeroed or failed Model. */
void model_close(Model *m);

/* Check a config: positive dims, divisibility, even head size, sizes that fit. */
int model_config_check(const ModelConfig *c, const char *name, char err[]);

/* Derived sizes. */
static inline int model_head_size(const ModelConfig *c) { return c->dim / c->n_heads; }
static inline int model_kv_dim(const ModelConfig *c) { return c->dim / c->n_heads * c->n_kv_heads; }

/* Bytes of weights one token streams in a forward (all matrices + classifier), for benchmarks. */
size_t model_weight_bytes(const ModelConfig *c);

/* Write a checkpoint with random weights: Gaussian N(0, std^2) entries (std = 0 picks
 * 1/sqrt(D)), RMSNorm gains 1, from the given seed. version 0 or 1; shared_classifier 0 or 1. */
int model_write_random(const char *path, const ModelConfig *c, int version, int shared_classifier,
                       uint64_t seed, float std, char err[]);

/* Named shapes for `llamix init` and `llamix bench`: "260K", "15M", "42M", "110M", "tiny".
 * Returns -1 for an unknown name. */
int model_shape(const char *name, ModelConfig *c);

#endif
