/* forward_reference.c: the transformer forward of llama2.c's run.c, one token at a time, kept as
 * plain as run.c keeps it. It is the tests' oracle: the batched forward (forward.c) must give the
 * same logits within a tolerance. So it shares none of that code: its own state and KV cache in
 * run.c's layout, its own RoPE computed on the fly, its own scalar loops, every sum in run.c's
 * order, one thread. On stories260K it reproduces run.c's greedy output (tests/test_forward.c).
 * Int8 (version 2) models run as runq.c runs them: each matrix product's input quantized per
 * group, integer sums per group (matmul_q8_reference). */
#include "config.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ state */

void forward_reference_free(ReferenceState *s)
{
    float **buffers[] = {&s->x, &s->xb, &s->xb2, &s->hb, &s->hb2, &s->q, &s->att, &s->key_cache, &s->value_cache};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        free(*buffers[i]);
        *buffers[i] = NULL;
    }
    free(s->xq);
    free(s->xs);
    s->xq = NULL;
    s->xs = NULL;
    s->n_ctx = 0;
}

int forward_reference_init(ReferenceState *s, const ModelConfig *c, int n_ctx, LxError *err)
{
    memset(s, 0, sizeof *s);
    if (n_ctx <= 0 || n_ctx > c->seq_len)
        n_ctx = c->seq_len;
    s->n_ctx = n_ctx;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, KVD = (size_t)model_kv_dim(c);
    size_t cache, att;
    if (size_mul((size_t)c->n_layers * (size_t)n_ctx, KVD, &cache) || size_mul((size_t)c->n_heads, (size_t)n_ctx, &att))
        return fail(err, LX_ERR_MEMORY, "reference state too large for this machine");
    s->x = calloc(D, sizeof(float));
    s->xb = calloc(D, sizeof(float));
    s->xb2 = calloc(D, sizeof(float));
    s->hb = calloc(H, sizeof(float));
    s->hb2 = calloc(H, sizeof(float));
    s->q = calloc(D, sizeof(float));
    s->att = calloc(att, sizeof(float));
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    s->xq = calloc(D > H ? D : H, 1);
    s->xs = calloc(D > H ? D : H, sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->att || !s->key_cache || !s->value_cache ||
        !s->xq || !s->xs) {
        forward_reference_free(s);
        return fail(err, LX_ERR_MEMORY, "out of memory for the reference state (context %d)", n_ctx);
    }
    return 0;
}

/* ------------------------------------------------------------------------------ neural net blocks */

/* o (size) = weight * x / sqrt(mean(x^2) + 1e-5); o may alias x. */
static void ref_rmsnorm(float *o, const float *x, const float *weight, int size)
{
    float ss = 0.0f;
    for (int j = 0; j < size; j++)
        ss += x[j] * x[j];
    ss /= size;
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++)
        o[j] = weight[j] * (ss * x[j]);
}

/* x (size) = exp(x - max) / sum, in place (the max keeps every exponent <= 0). */
static void ref_softmax(float *x, int size)
{
    float max = x[0];
    for (int i = 1; i < size; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < size; i++)
        x[i] /= sum;
}

/* y (d) = W (d, n) x (n). fp32 (run.c): one running sum per output, over j = 0..n-1 in order.
 * Q8_0 (runq.c): x quantized per group like W, then per output the int32 sum of each group's
 * products times the two scales, summed over the groups in order (matmul_q8_reference). */
static void ref_matmul(ReferenceState *s, float *y, const float *x, Weight w, int n, int d)
{
    if (w.type == WEIGHT_Q8_0) {
        quantize_q8(s->xq, s->xs, x, 1, n, w.group_size);
        matmul_q8_reference(y, s->xq, s->xs, w.q, w.s, 1, n, d, w.group_size, 0, d);
        return;
    }
    for (int i = 0; i < d; i++) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++)
            sum += w.f[(size_t)i * n + j] * x[j];
        y[i] = sum;
    }
}

/* ------------------------------------------------------------------------------ the forward */

/* One token at position pos: its key and value go into the cache and, if logits is not NULL, its
 * next-token logits (V) are written. The same arithmetic as run.c, in the same order. */
static void forward_token(const Model *m, ReferenceState *s, int token, int pos, float *logits)
{
    const ModelConfig *c = &m->config;
    const ModelWeights *w = &m->w;
    const int D = c->dim, H = c->hidden_dim, KVD = model_kv_dim(c), HS = model_head_size(c);
    const int group = c->n_heads / c->n_kv_heads; /* query heads that share one kv head */
    float *x = s->x;                               /* (D) the residual stream */

    /* the token's embedding row; runq.c dequantizes the int8 table: q * scale per group */
    const Weight e = w->token_embedding;
    for (int i = 0; i < D; i++) {
        size_t at = (size_t)token * D + i;
        x[i] = e.type == WEIGHT_Q8_0 ? e.q[at] * e.s[at / e.group_size] : e.f[at];
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];
        float *keys = s->key_cache + (size_t)l * s->n_ctx * KVD;     /* (n_ctx, KVD) of layer l */
        float *values = s->value_cache + (size_t)l * s->n_ctx * KVD; /* (n_ctx, KVD) */
        float *k = keys + (size_t)pos * KVD, *v = values + (size_t)pos * KVD;

        /* Attention. Normalise, project to the query, and to this position's key and value. */
        ref_rmsnorm(s->xb, x, lw->rms_att, D);
        ref_matmul(s, s->q, s->xb, lw->wq, D, D);
        ref_matmul(s, k, s->xb, lw->wk, D, KVD);
        ref_matmul(s, v, s->xb, lw->wv, D, KVD);

        /* RoPE: the pair (2i, 2i+1) of each head turns by the angle pos * 10000^(-2i / HS); the
         * query has D entries, the key KVD <= D of them. */
        for (int j = 0; j < D; j += 2) {
            float theta = pos * (1.0f / powf(10000.0f, (j % HS) / (float)HS));
            float cos_t = cosf(theta), sin_t = sinf(theta);
            float *rotated[2] = {s->q, k};
            for (int r = 0; r < (j < KVD ? 2 : 1); r++) {
                float a = rotated[r][j], b = rotated[r][j + 1];
                rotated[r][j] = a * cos_t - b * sin_t;
                rotated[r][j + 1] = a * sin_t + b * cos_t;
            }
        }

        /* Each query head attends to positions 0..pos of its kv head: weights are the softmax
         * of q . k_t / sqrt(HS), the output the weighted sum of the v_t, into xb. */
        for (int h = 0; h < c->n_heads; h++) {
            const float *q = s->q + (size_t)h * HS;
            size_t head = (size_t)(h / group) * HS; /* the kv head's offset in a cache row */
            float *weights = s->att + (size_t)h * s->n_ctx;
            for (int t = 0; t <= pos; t++) {
                const float *kt = keys + (size_t)t * KVD + head;
                float dot = 0.0f;
                for (int i = 0; i < HS; i++)
                    dot += q[i] * kt[i];
                weights[t] = dot / sqrtf(HS);
            }
            ref_softmax(weights, pos + 1);
            float *out = s->xb + (size_t)h * HS;
            memset(out, 0, (size_t)HS * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                const float *vt = values + (size_t)t * KVD + head;
                for (int i = 0; i < HS; i++)
                    out[i] += weights[t] * vt[i];
            }
        }

        /* The heads' outputs projected back and added to the stream. */
        ref_matmul(s, s->xb2, s->xb, lw->wo, D, D);
        for (int i = 0; i < D; i++)
            x[i] += s->xb2[i];

        /* Feed-forward, SwiGLU: x += W2 (silu(W1 xb) * (W3 xb)), silu(g) = g / (1 + e^-g). */
        ref_rmsnorm(s->xb, x, lw->rms_ffn, D);
        ref_matmul(s, s->hb, s->xb, lw->w1, D, H);
        ref_matmul(s, s->hb2, s->xb, lw->w3, D, H);
        for (int i = 0; i < H; i++) {
            float g = s->hb[i];
            g *= 1.0f / (1.0f + expf(-g));
            s->hb[i] = g * s->hb2[i];
        }
        ref_matmul(s, s->xb, s->hb, lw->w2, H, D);
        for (int i = 0; i < D; i++)
            x[i] += s->xb[i];
    }
    if (!logits)
        return;
    /* The classifier on the normalised final state. */
    ref_rmsnorm(x, x, w->rms_final, D);
    ref_matmul(s, logits, x, w->wcls, D, c->vocab_size);
}

int forward_reference(const Model *m, ReferenceState *s, const int *tokens, int n, int pos,
                      float *logits, int all_rows, LxError *err)
{
    const ModelConfig *c = &m->config;
    if (n < 1 || pos < 0 || pos > s->n_ctx - n)
        return fail(err, LX_ERR_CONTEXT, "%s: cannot run %d tokens at position %d: the context holds %d", m->path,
                    n, pos, s->n_ctx);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "%s: token id %d is outside the vocabulary (0..%d)", m->path, tokens[t],
                        c->vocab_size - 1);
    for (int t = 0; t < n; t++) {
        float *row = NULL; /* where this token's logits go, if anywhere */
        if (logits && all_rows)
            row = logits + (size_t)t * c->vocab_size;
        else if (logits && t == n - 1)
            row = logits;
        forward_token(m, s, tokens[t], pos + t, row);
    }
    return 0;
}
