/* fuzz_model.c: fuzz target for the checkpoint reader (model_parse), and for a short forward
 * pass over whatever it accepts.
 *
 * The input is a whole checkpoint file. What must hold for every input:
 *   - model_parse either fails with a one-line message that starts with the file's name, or
 *     succeeds with a model whose every tensor lies inside the input (version 2: in Q8_0 with
 *     the header's group size, scales aligned, finite and >= 0) and whose header passes
 *     model_config_check, and whose size is exactly what the header implies;
 *   - model_close is safe in both cases;
 *   - on an accepted model that is small enough (at most 8 MB of weights per token, which the
 *     input size already bounds when fuzzing), a context of 4 positions: forward of up to two
 *     token ids taken from the input, then one more at the next position, then the reference
 *     forward, then a cache-only forward (logits NULL); all succeed, and forward refuses an id
 *     outside [0, V), a position past the context, a negative position and an empty batch with
 *     a status and a message.
 * Anything else is a crash (abort), as is every sanitizer report. */
#include "internal.h"

#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected);

#define NAME "fuzz-model.bin"
#define MAX_FORWARD_WEIGHT_BYTES (8u << 20)

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_model: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* A message must be one non-empty line that names the input. */
static void check_message(const char *err, const char *context)
{
    if (strncmp(err, NAME ": ", strlen(NAME ": ")) != 0 || err[strlen(NAME ": ")] == '\0')
        die(context, err);
    if (strchr(err, '\n'))
        die("message is more than one line", err);
}

/* [p, p + n bytes) must lie inside [lo, hi). */
static void check_inside(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi, const char *what)
{
    const uint8_t *b = p;
    if (!p || b < lo || b > hi || n > (size_t)(hi - b))
        die("a tensor lies outside the file", what);
}

/* A matrix (rows, K) in the model's format: inside the file, and its size (bytes) added to *total. */
static void check_weight(const Model *m, Weight w, size_t rows, size_t K, const uint8_t *lo, const uint8_t *hi,
                         const char *what, size_t *total)
{
    size_t n, bytes = 0;
    if (size_mul(rows, K, &n))
        die("accepted a shape whose tensors overflow", what);
    if (m->version == 2) {
        if (w.type != WEIGHT_Q8_0 || w.group_size != m->group_size || K % (size_t)w.group_size != 0)
            die("a version 2 tensor is not Q8_0 with the file's group size", what);
        check_inside(w.q, n, lo, hi, what);
        check_inside(w.s, n / (size_t)w.group_size * 4, lo, hi, what);
        if ((uintptr_t)w.s % 4 != 0)
            die("misaligned scales", what);
        for (size_t i = 0; i < n / (size_t)w.group_size; i++)
            if (!(w.s[i] >= 0.0f && w.s[i] <= FLT_MAX)) /* finite: 3.4e38f was below FLT_MAX */
                die("accepted a scale that is negative or not finite", what);
        bytes = n + n / (size_t)w.group_size * 4;
    } else {
        if (w.type != WEIGHT_F32 || size_mul(n, 4, &bytes))
            die("a fp32 tensor is not fp32, or overflows", what);
        check_inside(w.f, bytes, lo, hi, what);
    }
    if (size_add(*total, bytes, total))
        die("accepted a shape whose size overflows", what);
}

static void check_model(const Model *m, const uint8_t *data, size_t size)
{
    const ModelConfig *c = &m->config;
    LxError err[1];
    if (model_config_check(c, NAME, err))
        die("accepted a header that model_config_check refuses", err->message);
    if (m->version < 0 || m->version > 2 || (m->version == 2) != (m->group_size > 0))
        die("accepted an unknown version, or a group size outside version 2", NULL);
    if (m->data != data || m->size != size)
        die("the model does not point at the input", NULL);
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t V = (size_t)c->vocab_size, KVD = (size_t)model_kv_dim(c);
    const uint8_t *start = data + (m->version == 0 ? 28 : 256), *end = data + size;
    /* The size, counted here independently: every tensor, the classifier once more if separate,
     * and version 0's two RoPE tables (S, HS/2). */
    size_t total = 0, part;
    check_weight(m, m->w.token_embedding, V, D, start, end, "token_embedding", &total);
    for (size_t l = 0; l < L; l++) {
        const LayerWeights *w = &m->w.layers[l];
        check_inside(w->rms_att, 4 * D, start, end, "rms_att");
        check_inside(w->rms_ffn, 4 * D, start, end, "rms_ffn");
        struct { Weight w; size_t rows, K; const char *name; } t[] = {
            {w->wq, D, D, "wq"}, {w->wk, KVD, D, "wk"}, {w->wv, KVD, D, "wv"}, {w->wo, D, D, "wo"},
            {w->w1, H, D, "w1"}, {w->w2, D, H, "w2"}, {w->w3, H, D, "w3"},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            check_weight(m, t[i].w, t[i].rows, t[i].K, start, end, t[i].name, &total);
        if (size_add(total, 8 * D, &total))
            die("accepted a shape whose size overflows", "norms");
    }
    check_inside(m->w.rms_final, 4 * D, start, end, "rms_final");
    total += 4 * D;
    const void *cls = m->version == 2 ? (const void *)m->w.wcls.q : (const void *)m->w.wcls.f;
    const void *emb = m->version == 2 ? (const void *)m->w.token_embedding.q : (const void *)m->w.token_embedding.f;
    if (m->shared_classifier != (cls == emb))
        die("shared_classifier disagrees with wcls", NULL);
    if (!m->shared_classifier)
        check_weight(m, m->w.wcls, V, D, start, end, "wcls", &total);
    if (m->version == 0 && (size_mul((size_t)c->seq_len, (size_t)model_head_size(c) * 4, &part) ||
                            size_add(total, part, &total)))
        die("accepted a shape whose size overflows", "freq_cis");
    if (total != size - (size_t)(start - data))
        die("accepted a file whose size is not what its header implies", NULL);
}

/* forward must refuse this call with its status (the one in err) and a one-line message. */
static void expect_refused(const Model *m, ForwardState *s, const int *tokens, int n, int pos,
                           float *logits, const char *what)
{
    LxError err[1] = {{0}};
    int rc = forward(m, s, tokens, n, pos, logits, 0, err);
    if (rc == 0)
        die("forward accepted", what);
    if (rc != (int)err->status)
        die("forward returned another status than it reported", what);
    if (err->message[0] == '\0' || strchr(err->message, '\n'))
        die("forward refused without a one-line message", what);
}

static void run_forward(const Model *m, const uint8_t *data, size_t size)
{
    const ModelConfig *c = &m->config;
    size_t bytes = model_weight_bytes(c);
    if (bytes == 0 || bytes > MAX_FORWARD_WEIGHT_BYTES)
        return;
    ForwardState s;
    LxError err[1];
    if (forward_state_init(&s, c, 4, 0, err)) {
        forward_state_free(&s);
        die("forward_state_init failed on a small model", err->message);
    }
    if (s.n_ctx < 1 || s.n_ctx > 4 || s.n_ctx > c->seq_len)
        die("forward_state_init chose a bad context", NULL);
    int V = c->vocab_size;
    int n = s.n_ctx < 2 ? s.n_ctx : 2;
    /* Token ids from the last bytes of the input, so the fuzzer steers them too. */
    int tokens[3] = {data[size - 1] % V, (data[size - 2] * 7 + 3) % V, data[size - 3] % V};
    float *logits = malloc(sizeof(float) * (size_t)V * 2);
    if (!logits)
        die("out of memory", NULL);
    if (forward(m, &s, tokens, n, 0, logits, 1, err))
        die("forward failed on valid tokens", err->message);
    if (n < s.n_ctx && forward(m, &s, tokens + 2, 1, n, logits, 0, err))
        die("forward failed on the next position", err->message);
    ReferenceState r;
    if (forward_reference_init(&r, c, n, err) || forward_reference(m, &r, tokens, n, 0, logits, 1, err))
        die("forward_reference failed on valid tokens", err->message);
    forward_reference_free(&r);
    if (forward(m, &s, tokens, 1, 0, NULL, 0, err))
        die("forward failed with logits NULL (cache only)", err->message);
    /* The documented refusals. */
    int bad_high = V, bad_low = -1;
    expect_refused(m, &s, &bad_high, 1, 0, logits, "token id V");
    expect_refused(m, &s, &bad_low, 1, 0, logits, "token id -1");
    expect_refused(m, &s, tokens, 1, s.n_ctx, logits, "a position past the context");
    expect_refused(m, &s, tokens, 0, 0, logits, "an empty batch");
    expect_refused(m, &s, tokens, 1, -1, logits, "a negative position");
    free(logits);
    forward_state_free(&s);
    forward_state_free(&s); /* twice: the free must leave a state that is safe to free */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Model m;
    LxError err[1] = {{0}};
    /* The parser reads floats in place: it needs the 4-byte alignment any mmap or malloc gives. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    int rc = model_parse(&m, copy, size, NAME, err);
    fuzz_count("model", data, size, rc != 0);
    if (rc != 0) {
        if (rc != (int)err->status || (rc != LX_ERR_FILE && rc != LX_ERR_MEMORY))
            die("model_parse failed with a status other than the one it reported, or not a file error", NULL);
        check_message(err->message, "model_parse failed without a message naming the file");
    } else {
        check_model(&m, copy, size);
        run_forward(&m, copy, size);
    }
    model_close(&m);
    model_close(&m);
    free(copy);
    return 0;
}
