/* forward.c: the transformer forward pass of llama2.c over T tokens at once.
 *
 * Per layer, for the T new rows x (T, D) at positions pos..pos+T-1:
 *   xb = rmsnorm(x);  q = xb Wq^T;  k = xb Wk^T;  v = xb Wv^T      (k, v are appended to the cache)
 *   rotate q and k by their positions (RoPE on adjacent pairs)
 *   each row attends causally to every cached position <= its own (grouped-query: query head h
 *   reads kv head h / (NH / NKV))
 *   x += attention Wo^T
 *   xb = rmsnorm(x);  x += (silu(xb W1^T) * (xb W3^T)) W2^T       (SwiGLU)
 * then logits = rmsnorm(x) Wcls^T for the rows asked for.
 * Every projection is one matrix product over all T rows: one pass over the weights serves the
 * whole batch, which is why catching up T tokens costs about as much as decoding one. */
#include "config.h"
#include "forward.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_BATCH 128

void forward_state_free(ForwardState *s)
{
    float **buffers[] = {&s->key_cache, &s->value_cache, &s->x, &s->xb, &s->xb2, &s->q, &s->k,
                         &s->v, &s->hb, &s->hb2, &s->att, &s->rope_cos, &s->rope_sin};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        free(*buffers[i]);
        *buffers[i] = NULL;
    }
    s->n_ctx = s->max_batch = 0;
}

int forward_state_init(ForwardState *s, const ModelConfig *c, int n_ctx, int max_batch, char err[])
{
    memset(s, 0, sizeof *s);
    if (n_ctx <= 0 || n_ctx > c->seq_len)
        n_ctx = c->seq_len;
    if (max_batch <= 0)
        max_batch = DEFAULT_MAX_BATCH;
    if (max_batch > n_ctx)
        max_batch = n_ctx;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, KVD = (size_t)model_kv_dim(c);
    size_t HS = (size_t)model_head_size(c), B = (size_t)max_batch, N = (size_t)n_ctx;
    size_t cache, att;
    if (size_mul((size_t)c->n_layers, N, &cache) || size_mul(cache, KVD, &cache) ||
        size_mul(B * (size_t)c->n_heads, N, &att))
        return fail(err, "run state too large for this machine");
    struct { float **p; size_t n, m; } plan[] = {
        {&s->key_cache, cache, 1}, {&s->value_cache, cache, 1}, {&s->x, B, D}, {&s->xb, B, D},
        {&s->xb2, B, D}, {&s->q, B, D}, {&s->k, B, KVD}, {&s->v, B, KVD}, {&s->hb, B, H},
        {&s->hb2, B, H}, {&s->att, att, 1}, {&s->rope_cos, N, HS / 2}, {&s->rope_sin, N, HS / 2},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        *plan[i].p = alloc_zeroed(plan[i].n, plan[i].m * sizeof(float));
        if (!*plan[i].p) {
            forward_state_free(s);
            return fail(err, "out of memory for the run state (context %d, batch %d)", n_ctx, max_batch);
        }
    }
    /* RoPE: pair i of a head turns by pos * 10000^(-2i/HS). Computed with llama2.c's float
     * expressions so the angles are bit-identical to its on-the-fly ones. */
    for (size_t p = 0; p < N; p++)
        for (size_t i = 0; i < HS / 2; i++) {
            float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)HS);
            float angle = (float)p * freq;
            s->rope_cos[p * (HS / 2) + i] = cosf(angle);
            s->rope_sin[p * (HS / 2) + i] = sinf(angle);
        }
    return 0;
}

/* The matrix products of a layer, y (T, N) = x (T, K) W^T: the fast threaded kernels, or the
 * scalar reference one product after the other. */
typedef void (*MatmulFn)(float *y, const float *x, const float *w, int T, int K, int N);
typedef void (*ManyFn)(const float *x, int T, int K, const Product *p, int n);
typedef void (*SwigluFn)(float *h, float *u, const float *x, const float *w1, const float *w3, int T, int K, int H);

static void matmul_scalar(float *y, const float *x, const float *w, int T, int K, int N)
{
    matmul_reference(y, x, w, T, K, N, 0, N);
}

static void matmul_many_scalar(const float *x, int T, int K, const Product *p, int n)
{
    for (int i = 0; i < n; i++)
        matmul_scalar(p[i].y, x, p[i].w, T, K, p[i].N);
}

static void matmul_swiglu_scalar(float *h, float *u, const float *x, const float *w1, const float *w3,
                                 int T, int K, int H)
{
    matmul_scalar(h, x, w1, T, K, H);
    matmul_scalar(u, x, w3, T, K, H);
    swiglu(h, u, T, H);
}

/* Rotate each adjacent pair (v[2i], v[2i+1]) of every head of one row by its position's angle. */
static void rope(float *v, int n_heads, int head_size, const float *cos_row, const float *sin_row)
{
    for (int h = 0; h < n_heads; h++) {
        float *head = v + (size_t)h * head_size;
        for (int i = 0; i < head_size / 2; i++) {
            float a = head[2 * i], b = head[2 * i + 1];
            head[2 * i] = a * cos_row[i] - b * sin_row[i];
            head[2 * i + 1] = a * sin_row[i] + b * cos_row[i];
        }
    }
}

/* Causal attention of one query head at position p over cached positions 0..p.
 * q (HS), keys/values (n_ctx, HS) of its kv head in this layer, out (HS), scores (p + 1) scratch. */
typedef void (*AttendFn)(float *out, const float *q, const float *keys, const float *values, int p,
                         int head_size, float *scores);

/* out (HS) = sum over t <= p of weights[t] * values[t]: the attention's output from its softmaxed
 * scores. Plain loops that vectorise as they are (along HS), in both paths. */
static inline void weighted_values(float *out, const float *weights, const float *values, int p, int head_size)
{
    memset(out, 0, (size_t)head_size * sizeof(float));
    for (int t = 0; t <= p; t++) {
        const float *v = values + (size_t)t * head_size;
        float a = weights[t];
        for (int i = 0; i < head_size; i++)
            out[i] += a * v[i];
    }
}

/* The reference: plain loops, one running sum per dot product. */
static void attend_reference(float *out, const float *q, const float *keys, const float *values, int p,
                             int head_size, float *scores)
{
    float scale = 1.0f / sqrtf((float)head_size);
    for (int t = 0; t <= p; t++) {
        const float *k = keys + (size_t)t * head_size;
        float dot = 0.0f;
        for (int i = 0; i < head_size; i++)
            dot += q[i] * k[i];
        scores[t] = dot * scale;
    }
    softmax(scores, p + 1);
    weighted_values(out, scores, values, p, head_size);
}

/* Plain C compiled for several instruction sets, the best picked when the program loads (GCC's
 * target clones, an ifunc: x86-64 with glibc). The default build targets baseline x86-64, whose
 * 4-wide vectors leave attention several times slower than AVX2/AVX-512 do; with the clones (and
 * attention going parallel from 16K multiply-adds) a 15M-shape decode step got 14% faster on a
 * 2-core AVX-512 machine. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* The same attention with each score's dot product as 16 lanes (dot_lanes), which vectorise. */
#define ATTENTION_LANES 16
VECTOR_CLONES
static void attend_fast(float *out, const float *q, const float *keys, const float *values, int p,
                        int head_size, float *scores)
{
    float scale = 1.0f / sqrtf((float)head_size);
    for (int t = 0; t <= p; t++)
        scores[t] = dot_lanes(q, keys + (size_t)t * head_size, head_size, ATTENTION_LANES) * scale;
    softmax(scores, p + 1);
    weighted_values(out, scores, values, p, head_size);
}

/* The two ways through the forward: the fast kernels, or plain loops (the tests' oracle). */
typedef struct {
    MatmulFn mm;
    ManyFn many;
    SwigluFn ffn_gate;
    AttendFn attend;
} Path;

static const Path FAST = {matmul, matmul_many, matmul_swiglu, attend_fast};
static const Path REFERENCE = {matmul_scalar, matmul_many_scalar, matmul_swiglu_scalar, attend_reference};

/* Attention of fewer multiply-adds than this runs on one thread: starting the others costs a few
 * microseconds (about 4 us for a parallel region on a 2-core VM). */
#define ATTENTION_SERIAL_WORK 16384

/* T <= max_batch rows at positions pos..pos+T-1; leaves the final hidden states in s->x. */
static void forward_rows(const Model *m, ForwardState *s, const int *tokens, int T, int pos, const Path *path)
{
    const MatmulFn mm = path->mm;
    const ModelConfig *c = &m->config;
    const ModelWeights *w = &m->w;
    const int D = c->dim, H = c->hidden_dim, KVD = model_kv_dim(c), HS = model_head_size(c);
    const int NH = c->n_heads, kv_mul = c->n_heads / c->n_kv_heads;
    const size_t DD = (size_t)D * D, KD = (size_t)KVD * D, HD = (size_t)H * D;
    const int KVH = c->n_kv_heads;
    const size_t head_cache = (size_t)s->n_ctx * HS; /* one kv head of one layer */

    for (int t = 0; t < T; t++)
        memcpy(s->x + (size_t)t * D, w->token_embedding + (size_t)tokens[t] * D, (size_t)D * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        float *keys = s->key_cache + (size_t)l * KVH * head_cache;     /* (KVH, n_ctx, HS) */
        float *values = s->value_cache + (size_t)l * KVH * head_cache; /* (KVH, n_ctx, HS) */

        /* attention */
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, w->rms_att + (size_t)l * D, D);
        const Product qkv[3] = {{s->q, w->wq + l * DD, D}, {s->k, w->wk + l * KD, KVD}, {s->v, w->wv + l * KD, KVD}};
        path->many(s->xb, T, D, qkv, 3);
        for (int t = 0; t < T; t++) {
            const float *cs = s->rope_cos + (size_t)(pos + t) * (HS / 2);
            const float *sn = s->rope_sin + (size_t)(pos + t) * (HS / 2);
            rope(s->q + (size_t)t * D, NH, HS, cs, sn);
            rope(s->k + (size_t)t * KVD, KVH, HS, cs, sn);
            for (int h = 0; h < KVH; h++) {
                size_t at = h * head_cache + (size_t)(pos + t) * HS;
                memcpy(keys + at, s->k + (size_t)t * KVD + (size_t)h * HS, (size_t)HS * sizeof(float));
                memcpy(values + at, s->v + (size_t)t * KVD + (size_t)h * HS, (size_t)HS * sizeof(float));
            }
        }
        /* about T * NH * (pos + T / 2) * HS multiply-adds each for the scores and the values.
         * Heads outermost: a thread takes whole heads with all their rows, so it reads those heads'
         * cached keys and values from memory once and the rows after the first find them in its
         * cache; split by rows, every thread would fetch every head's (a 15M-shape catch-up of 2 to
         * 8 rows took about 5% less time this way, with cold caches on 2 threads). */
        #pragma omp parallel for collapse(2) schedule(static) if ((double)T * NH * (pos + T) * HS > ATTENTION_SERIAL_WORK)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                size_t kv = (size_t)(h / kv_mul) * head_cache;
                path->attend(s->xb + (size_t)t * D + (size_t)h * HS, s->q + (size_t)t * D + (size_t)h * HS,
                             keys + kv, values + kv, pos + t, HS, s->att + ((size_t)t * NH + h) * s->n_ctx);
            }
        mm(s->xb2, s->xb, w->wo + l * DD, T, D, D);
        for (size_t i = 0; i < (size_t)T * D; i++)
            s->x[i] += s->xb2[i];

        /* feed-forward: SwiGLU */
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, w->rms_ffn + (size_t)l * D, D);
        path->ffn_gate(s->hb, s->hb2, s->xb, w->w1 + l * HD, w->w3 + l * HD, T, D, H);
        mm(s->xb2, s->hb, w->w2 + l * HD, T, H, D);
        for (size_t i = 0; i < (size_t)T * D; i++)
            s->x[i] += s->xb2[i];
    }
}

static int forward_with(const Model *m, ForwardState *s, const int *tokens, int n, int pos,
                        float *logits, int all_rows, int max_rows, const Path *path, char err[])
{
    const ModelConfig *c = &m->config;
    if (n < 1 || pos < 0 || pos > s->n_ctx - n)
        return fail(err, "%s: cannot run %d tokens at position %d: the context holds %d", m->path,
                    n, pos, s->n_ctx);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return fail(err, "%s: token id %d is outside the vocabulary (0..%d)", m->path, tokens[t],
                        c->vocab_size - 1);
    const int D = c->dim, V = c->vocab_size;
    for (int done = 0; done < n;) {
        int T = n - done < max_rows ? n - done : max_rows;
        forward_rows(m, s, tokens + done, T, pos + done, path);
        if (logits && all_rows) {
            for (int t = 0; t < T; t++)
                rmsnorm(s->x + (size_t)t * D, s->x + (size_t)t * D, m->w.rms_final, D);
            path->mm(logits + (size_t)done * V, s->x, m->w.wcls, T, D, V);
        } else if (logits && done + T == n) {
            float *last = s->x + (size_t)(T - 1) * D;
            rmsnorm(last, last, m->w.rms_final, D);
            path->mm(logits, last, m->w.wcls, 1, D, V);
        }
        done += T;
    }
    return 0;
}

int forward(const Model *m, ForwardState *s, const int *tokens, int n, int pos, float *logits,
            int all_rows, char err[])
{
    return forward_with(m, s, tokens, n, pos, logits, all_rows, s->max_batch, &FAST, err);
}

int forward_reference(const Model *m, ForwardState *s, const int *tokens, int n, int pos,
                      float *logits, int all_rows, char err[])
{
    return forward_with(m, s, tokens, n, pos, logits, all_rows, 1, &REFERENCE, err);
}
