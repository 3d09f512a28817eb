/* forward.c: the transformer forward pass of llama2.c over T rows at once, the fast path.
 *
 * The T rows may belong to several sequences (spans): each span has its own KV cache, its own
 * position and its own length, and forward_spans() runs them all through every matrix product
 * together, so one pass over the weights serves every sequence. forward() is the case of one span.
 *
 * Per layer, for the T new rows x (T, D), row r at position pos_r of its own sequence:
 *   xb = rmsnorm(x);  q = xb Wq^T;  k = xb Wk^T;  v = xb Wv^T      (k, v are appended to the
 *                                                                  row's own cache)
 *   rotate q and k by their positions (RoPE on adjacent pairs)
 *   each row attends causally to the positions <= pos_r of its own sequence's cache
 *   (grouped-query: query head h reads kv head h / (NH / NKV))
 *   x += attention Wo^T
 *   xb = rmsnorm(x);  x += (silu(xb W1^T) * (xb W3^T)) W2^T       (SwiGLU)
 * then logits = rmsnorm(x) Wcls^T for the rows asked for.
 * Every projection is one matrix product over all T rows: one pass over the weights serves the
 * whole batch, which is why catching up T tokens, or decoding S sequences, costs about as much
 * as decoding one. forward_reference.c computes the same one token at a time, as run.c does; the
 * tests compare. */
#include "config.h"
#include "internal.h"

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
    free(s->rows);
    free(s->qs.q);
    free(s->qs.s);
    free(s->qs.t);
    s->rows = NULL;
    s->qs = (QuantScratch){NULL, NULL, NULL};
    s->n_ctx = s->max_batch = 0;
}

/* The KV cache (and, with scratch, everything a forward of max_batch rows needs). */
static int state_init(ForwardState *s, const ModelConfig *c, int n_ctx, int max_batch, int scratch, LxError *err)
{
    memset(s, 0, sizeof *s);
    if (n_ctx <= 0 || n_ctx > c->seq_len)
        n_ctx = c->seq_len;
    if (max_batch <= 0)
        max_batch = DEFAULT_MAX_BATCH;
    if (max_batch > n_ctx)
        max_batch = n_ctx;
    s->n_ctx = n_ctx;
    s->max_batch = scratch ? max_batch : 0;
    s->threads = threads_resolve(0);
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, KVD = (size_t)model_kv_dim(c);
    size_t HS = (size_t)model_head_size(c), B = scratch ? (size_t)max_batch : 0, N = (size_t)n_ctx;
    size_t R = scratch ? N : 0; /* the rotary tables live with the scratch */
    size_t cache, att;
    if (size_mul((size_t)c->n_layers, N, &cache) || size_mul(cache, KVD, &cache) ||
        size_mul(B * (size_t)c->n_heads, N, &att))
        return fail(err, LX_ERR_MEMORY, "run state too large for this machine");
    struct { float **p; size_t n, m; } plan[] = {
        {&s->key_cache, cache, 1}, {&s->value_cache, cache, 1}, {&s->x, B, D}, {&s->xb, B, D},
        {&s->xb2, B, D}, {&s->q, B, D}, {&s->k, B, KVD}, {&s->v, B, KVD}, {&s->hb, B, H},
        {&s->hb2, B, H}, {&s->att, att, 1}, {&s->rope_cos, R, HS / 2}, {&s->rope_sin, R, HS / 2},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        if (plan[i].n == 0)
            continue;
        *plan[i].p = alloc_zeroed(plan[i].n, plan[i].m * sizeof(float));
        if (!*plan[i].p) {
            forward_state_free(s);
            return fail(err, LX_ERR_MEMORY, "out of memory for the run state (context %d, batch %d)", n_ctx, max_batch);
        }
    }
    /* the quantized input of an int8 product: at most B rows of max(D, H), group size >= 1 */
    size_t widest = D > H ? D : H;
    size_t blocks = (B + TRANSPOSED_ROWS - 1) / TRANSPOSED_ROWS * TRANSPOSED_ROWS; /* whole blocks */
    if (scratch && (!(s->rows = calloc(B, sizeof *s->rows)) || !(s->qs.q = alloc_zeroed(B, widest)) ||
                    !(s->qs.s = alloc_zeroed(B, widest * sizeof(float))) ||
                    !(s->qs.t = alloc_zeroed(blocks, widest * sizeof(float))))) {
        forward_state_free(s);
        return fail(err, LX_ERR_MEMORY, "out of memory for the run state (context %d, batch %d)", n_ctx, max_batch);
    }
    /* RoPE: pair i of a head turns by pos * 10000^(-2i/HS). Computed with llama2.c's float
     * expressions so the angles are bit-identical to its on-the-fly ones. */
    for (size_t p = 0; p < R; p++)
        for (size_t i = 0; i < HS / 2; i++) {
            float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)HS);
            float angle = (float)p * freq;
            s->rope_cos[p * (HS / 2) + i] = cosf(angle);
            s->rope_sin[p * (HS / 2) + i] = sinf(angle);
        }
    return 0;
}

int forward_state_init(ForwardState *s, const ModelConfig *c, int n_ctx, int max_batch, LxError *err)
{
    return state_init(s, c, n_ctx, max_batch, 1, err);
}

int forward_cache_init(ForwardState *s, const ModelConfig *c, int n_ctx, LxError *err)
{
    return state_init(s, c, n_ctx, 0, 0, err);
}

size_t forward_cache_bytes(const ModelConfig *c, int n_ctx)
{
    return 2 * sizeof(float) * (size_t)c->n_layers * (size_t)n_ctx * (size_t)model_kv_dim(c);
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

/* Attention of fewer multiply-adds than this runs on one thread: starting the others costs a few
 * microseconds (bench/NOTES.md, forward). */
#define ATTENTION_SERIAL_WORK 16384

/* Set rows[].run: runs of at least attention_run_min_rows() rows of one cache at consecutive
 * positions (a prompt, a catch-up, a scoring window) go through attention_run together; every
 * other row goes alone. */
static void mark_runs(ForwardRow *rows, int T)
{
    const int min_rows = attention_run_min_rows();
    for (int t0 = 0; t0 < T;) {
        int t1 = t0 + 1;
        while (t1 < T && rows[t1].cache == rows[t0].cache && rows[t1].pos == rows[t1 - 1].pos + 1)
            t1++;
        int n = t1 - t0, together = n >= min_rows;
        for (int t = t0; t < t1; t++)
            rows[t].run = together ? (t == t0 ? n : 0) : 1;
        t0 = t1;
    }
}

/* T <= max_batch rows described by s->rows (each row's token, position and the state whose KV
 * cache it belongs to); leaves the final hidden states in s->x. s is the work state: its scratch
 * and rotary tables serve every row. attention_work is the multiply-adds of the attention. */
static void forward_rows(const Model *m, ForwardState *s, int T, double attention_work)
{
    const ModelConfig *c = &m->config;
    const int D = c->dim, H = c->hidden_dim, KVD = model_kv_dim(c), HS = model_head_size(c);
    const int NH = c->n_heads, KVH = c->n_kv_heads, kv_mul = NH / KVH; /* query heads per kv head */
    const int threads = s->threads;
    (void)attention_work; /* read only by the attention's parallel pragma */
    const ForwardRow *rows = s->rows;
    QuantScratch *qs = &s->qs; /* the input of an int8 product, quantized */

    mark_runs(s->rows, T);

    /* the token embeddings into x (T, D): copied, or dequantized row by row */
    for (int t = 0; t < T; t++)
        weight_row(s->x + (size_t)t * D, m->w.token_embedding, (size_t)rows[t].token, D);

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->w.layers[l];
        /* attention rmsnorm: xb (T, D) */
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, w->rms_att, D);

        /* qkv: q (T, D), k and v (T, KVD), three products in one parallel region */
        const WeightProduct qkv[3] = {{s->q, w->wq, D}, {s->k, w->wk, KVD}, {s->v, w->wv, KVD}};
        matmul_weight_many(s->xb, T, D, qkv, 3, qs, threads);

        /* RoPE on q and k, then k and v into the row's own cache (L, KVH, n_ctx, HS) at its position */
        for (int t = 0; t < T; t++) {
            const int pos = rows[t].pos;
            const size_t head_cache = (size_t)rows[t].cache->n_ctx * HS; /* one kv head of one layer */
            float *keys = rows[t].cache->key_cache + (size_t)l * KVH * head_cache;
            float *values = rows[t].cache->value_cache + (size_t)l * KVH * head_cache;
            const float *cs = s->rope_cos + (size_t)pos * (HS / 2);
            const float *sn = s->rope_sin + (size_t)pos * (HS / 2);
            rope(s->q + (size_t)t * D, NH, HS, cs, sn);
            rope(s->k + (size_t)t * KVD, KVH, HS, cs, sn);
            for (int h = 0; h < KVH; h++) {
                size_t at = h * head_cache + (size_t)pos * HS;
                memcpy(keys + at, s->k + (size_t)t * KVD + (size_t)h * HS, (size_t)HS * sizeof(float));
                memcpy(values + at, s->v + (size_t)t * KVD + (size_t)h * HS, (size_t)HS * sizeof(float));
            }
        }

        /* multihead attention: row t, head h into xb (T, D), over its own sequence's cache, a run
         * of rows at once where mark_runs found one. Heads outermost: a thread takes whole heads
         * with all their rows, so it reads those heads' cached keys and values from memory once
         * and the rows after the first (of the same sequence) find them in its cache
         * (bench/NOTES.md, forward). */
        #pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (attention_work > ATTENTION_SERIAL_WORK)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                if (rows[t].run == 0)
                    continue;
                const ForwardState *cache = rows[t].cache;
                const size_t head_cache = (size_t)cache->n_ctx * HS;
                size_t kv = (size_t)l * KVH * head_cache + (size_t)(h / kv_mul) * head_cache;
                float *out = s->xb + (size_t)t * D + (size_t)h * HS, *scores = s->att + ((size_t)t * NH + h) * s->n_ctx;
                const float *q = s->q + (size_t)t * D + (size_t)h * HS;
                if (rows[t].run == 1)
                    attention_row(out, q, cache->key_cache + kv, cache->value_cache + kv, rows[t].pos, HS, scores);
                else
                    attention_run(out, D, q, D, cache->key_cache + kv, cache->value_cache + kv, rows[t].pos,
                                  rows[t].run, HS, scores, NH * s->n_ctx);
            }

        /* output projection xb2 = xb Wo^T, and the residual connection */
        matmul_weight(s->xb2, s->xb, w->wo, T, D, D, qs, threads);
        for (size_t i = 0; i < (size_t)T * D; i++)
            s->x[i] += s->xb2[i];

        /* ffn rmsnorm: xb (T, D) */
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, w->rms_ffn, D);

        /* SwiGLU: hb (T, H) = silu(xb W1^T) * (xb W3^T), hb2 the scratch for xb W3^T; the gate is
         * applied by each thread to the columns it computed, in the products' parallel region */
        matmul_weight_swiglu(s->hb, s->hb2, s->xb, w->w1, w->w3, T, D, H, qs, threads);

        /* down projection xb2 = hb W2^T, and the residual connection */
        matmul_weight(s->xb2, s->hb, w->w2, T, H, D, qs, threads);
        for (size_t i = 0; i < (size_t)T * D; i++)
            s->x[i] += s->xb2[i];
    }
}

/* The checks of forward_spans: a work state with scratch, and spans that fit their caches. */
static int check_spans(const Model *m, const ForwardState *work, const ForwardSpan *spans, int n_spans,
                       LxError *err)
{
    const ModelConfig *c = &m->config;
    if (!work->x || !work->rows)
        return fail(err, LX_ERR_ARGUMENT, "%s: the work state of a forward has no scratch (a cache-only state)", m->path);
    if (n_spans < 1)
        return fail(err, LX_ERR_ARGUMENT, "%s: a forward needs at least one span", m->path);
    for (int j = 0; j < n_spans; j++) {
        const ForwardSpan *sp = &spans[j];
        int n_ctx = sp->state->n_ctx;
        if (sp->n < 1 || sp->pos < 0 || sp->pos > n_ctx - sp->n)
            return fail(err, LX_ERR_CONTEXT, "%s: cannot run %d tokens at position %d: the context holds %d", m->path,
                        sp->n, sp->pos, n_ctx);
        if (n_ctx > work->n_ctx || !sp->state->key_cache)
            return fail(err, LX_ERR_ARGUMENT, "%s: span %d has a cache of %d positions but the work state holds %d",
                        m->path, j, n_ctx, work->n_ctx);
        for (int i = 0; i < j; i++)
            if (spans[i].state == sp->state)
                return fail(err, LX_ERR_ARGUMENT, "%s: spans %d and %d share one cache", m->path, i, j);
        for (int t = 0; t < sp->n; t++)
            if (sp->tokens[t] < 0 || sp->tokens[t] >= c->vocab_size)
                return fail(err, LX_ERR_ARGUMENT, "%s: token id %d is outside the vocabulary (0..%d)", m->path,
                            sp->tokens[t], c->vocab_size - 1);
    }
    return 0;
}

int forward_spans(const Model *m, ForwardState *work, const ForwardSpan *spans, int n_spans, float *logits,
                  LxError *err)
{
    int rc = check_spans(m, work, spans, n_spans, err);
    if (rc)
        return rc;
    const ModelConfig *c = &m->config;
    const int D = c->dim, V = c->vocab_size, B = work->max_batch;
    const double head_work = (double)c->n_heads * model_head_size(c);
    /* Chunks of at most B rows, filled span after span (a long span may straddle chunks: its
     * earlier rows are in its cache before its later ones attend to them). */
    int j = 0, done = 0;  /* the span being filled, and how many of its rows are done */
    long logit_row = 0;   /* the next row of logits (R, V) to write */
    while (j < n_spans) {
        int T = 0, logit_rows = 0;
        double attention_work = 0;
        while (j < n_spans && T < B) {
            const ForwardSpan *sp = &spans[j];
            int take = sp->n - done < B - T ? sp->n - done : B - T;
            for (int t = 0; t < take; t++) {
                /* the rows whose logits are asked for move to the front of x after the layers:
                 * mark them by their index among this chunk's logit rows */
                int last = done + t == sp->n - 1;
                int wanted = sp->logits == FORWARD_LOGITS_ALL || (sp->logits == FORWARD_LOGITS_LAST && last);
                work->rows[T + t] = (ForwardRow){sp->state, sp->tokens[done + t], sp->pos + done + t,
                                                 wanted ? logit_rows++ : -1, 0 /* mark_runs */};
            }
            /* sum over its rows of (pos + take): row t attends to pos + t + 1 positions */
            attention_work += (double)take * (sp->pos + done + take) * head_work;
            T += take;
            done += take;
            if (done == sp->n)
                j++, done = 0;
        }
        forward_rows(m, work, T, attention_work);
        if (logits && logit_rows > 0) {
            /* final rmsnorm and the classifier for the rows asked for, gathered in order at the
             * front of x, so the classifier too is one product over them: logits (rows, V) */
            for (int t = 0; t < T; t++) {
                int r = work->rows[t].logit;
                if (r < 0)
                    continue;
                float *row = work->x + (size_t)r * D;
                if (r != t)
                    memcpy(row, work->x + (size_t)t * D, (size_t)D * sizeof(float));
                rmsnorm(row, row, m->w.rms_final, D);
            }
            matmul_weight(logits + (size_t)logit_row * V, work->x, m->w.wcls, logit_rows, D, V, &work->qs, work->threads);
        }
        logit_row += logit_rows;
    }
    return 0;
}

int forward(const Model *m, ForwardState *s, const int *tokens, int n, int pos, float *logits,
            int all_rows, LxError *err)
{
    ForwardSpan span = {s, tokens, n, pos, all_rows ? FORWARD_LOGITS_ALL : FORWARD_LOGITS_LAST};
    return forward_spans(m, s, &span, 1, logits, err);
}
