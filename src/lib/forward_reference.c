/* forward_reference.c: the transformer forward of llama2.c's run.c, one token at a time, kept as
 * plain as run.c keeps it. It is the tests' oracle: the batched forward (forward.c) must give the
 * same logits within a tolerance. So it shares none of that code: its own state and KV cache in
 * run.c's layout, its own RoPE computed on the fly, its own scalar loops, every sum in run.c's
 * order, one thread. On stories260K it reproduces run.c's greedy output (tests/test_forward.c). */
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
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->att || !s->key_cache || !s->value_cache) {
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
    float max_val = x[0];
    for (int i = 1; i < size; i++)
        if (x[i] > max_val)
            max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < size; i++)
        x[i] /= sum;
}

/* xout (d) = W (d, n) x (n): one running sum per output, j = 0..n-1. */
static void ref_matmul(float *xout, const float *x, const float *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++)
            val += w[(size_t)i * n + j] * x[j];
        xout[i] = val;
    }
}

/* ------------------------------------------------------------------------------ the forward */

/* One token at position pos: appends its key and value to the cache and, if logits is not NULL,
 * writes its next-token logits (V). run.c's forward(), step for step. */
static void forward_token(const Model *m, ReferenceState *s, int token, int pos, float *logits)
{
    const ModelConfig *p = &m->config;
    const ModelWeights *w = &m->w;
    float *x = s->x;
    int dim = p->dim;
    int kv_dim = model_kv_dim(p);
    int kv_mul = p->n_heads / p->n_kv_heads; /* query heads per kv head */
    int hidden_dim = p->hidden_dim;
    int head_size = model_head_size(p);

    /* copy the token embedding into x */
    memcpy(x, w->token_embedding + (size_t)token * dim, (size_t)dim * sizeof(float));

    for (int l = 0; l < p->n_layers; l++) {
        /* attention rmsnorm */
        ref_rmsnorm(s->xb, x, w->rms_att + (size_t)l * dim, dim);

        /* qkv matmuls for this position; k and v go straight into the cache */
        size_t loff = (size_t)l * s->n_ctx * kv_dim; /* this layer's (n_ctx, KVD) of the cache */
        float *k = s->key_cache + loff + (size_t)pos * kv_dim;
        float *v = s->value_cache + loff + (size_t)pos * kv_dim;
        ref_matmul(s->q, s->xb, w->wq + (size_t)l * dim * dim, dim, dim);
        ref_matmul(k, s->xb, w->wk + (size_t)l * dim * kv_dim, dim, kv_dim);
        ref_matmul(v, s->xb, w->wv + (size_t)l * dim * kv_dim, dim, kv_dim);

        /* RoPE: rotate each pair (i, i+1) of every head of q and k by pos * 10000^(-(i % HS) / HS) */
        for (int i = 0; i < dim; i += 2) {
            int head_dim = i % head_size;
            float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
            float val = pos * freq;
            float fcr = cosf(val);
            float fci = sinf(val);
            int rotn = i < kv_dim ? 2 : 1; /* 2: q and k, 1: q only (k is shorter) */
            for (int r = 0; r < rotn; r++) {
                float *vec = r == 0 ? s->q : k;
                float v0 = vec[i];
                float v1 = vec[i + 1];
                vec[i] = v0 * fcr - v1 * fci;
                vec[i + 1] = v0 * fci + v1 * fcr;
            }
        }

        /* multihead attention: each query head over positions 0..pos of its kv head */
        for (int h = 0; h < p->n_heads; h++) {
            const float *q = s->q + (size_t)h * head_size;
            float *att = s->att + (size_t)h * s->n_ctx;
            /* the scores q . k / sqrt(HS) */
            for (int t = 0; t <= pos; t++) {
                const float *kt = s->key_cache + loff + (size_t)t * kv_dim + (size_t)(h / kv_mul) * head_size;
                float score = 0.0f;
                for (int i = 0; i < head_size; i++)
                    score += q[i] * kt[i];
                score /= sqrtf(head_size);
                att[t] = score;
            }
            /* softmax the scores to get attention weights */
            ref_softmax(att, pos + 1);
            /* the weighted sum of the values, into xb */
            float *xb = s->xb + (size_t)h * head_size;
            memset(xb, 0, (size_t)head_size * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                const float *vt = s->value_cache + loff + (size_t)t * kv_dim + (size_t)(h / kv_mul) * head_size;
                float a = att[t];
                for (int i = 0; i < head_size; i++)
                    xb[i] += a * vt[i];
            }
        }

        /* final matmul to get the output of the attention */
        ref_matmul(s->xb2, s->xb, w->wo + (size_t)l * dim * dim, dim, dim);

        /* residual connection back into x */
        for (int i = 0; i < dim; i++)
            x[i] += s->xb2[i];

        /* ffn rmsnorm */
        ref_rmsnorm(s->xb, x, w->rms_ffn + (size_t)l * dim, dim);

        /* w1(x) and w3(x) */
        ref_matmul(s->hb, s->xb, w->w1 + (size_t)l * dim * hidden_dim, dim, hidden_dim);
        ref_matmul(s->hb2, s->xb, w->w3 + (size_t)l * dim * hidden_dim, dim, hidden_dim);

        /* SwiGLU: hb = silu(w1(x)) * w3(x), silu(g) = g * sigmoid(g) */
        for (int i = 0; i < hidden_dim; i++) {
            float val = s->hb[i];
            val *= (1.0f / (1.0f + expf(-val)));
            val *= s->hb2[i];
            s->hb[i] = val;
        }

        /* final matmul to get the output of the ffn */
        ref_matmul(s->xb, s->hb, w->w2 + (size_t)l * dim * hidden_dim, hidden_dim, dim);

        /* residual connection */
        for (int i = 0; i < dim; i++)
            x[i] += s->xb[i];
    }

    if (!logits)
        return;
    /* final rmsnorm */
    ref_rmsnorm(x, x, w->rms_final, dim);

    /* classifier into logits */
    ref_matmul(logits, x, w->wcls, p->dim, p->vocab_size);
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
