/* model.c: llama2.c checkpoint files (format in model.h). Reading maps the file read-only and
 * carves the weight pointers out of the mapping after checking every size against the file;
 * writing produces random checkpoints of any shape. */
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define V0_HEADER_BYTES 28
#define V1_HEADER_BYTES 256

/* ------------------------------------------------------------------ shapes and sizes */

/* Longer contexts than any model has been trained for; a header claiming more is corrupt. */
#define MAX_SEQ_LEN (1 << 22)

int model_config_check(const ModelConfig *c, const char *name, LxError *err)
{
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0 || c->seq_len <= 0)
        return fail(err, LX_ERR_FILE, "%s: bad header: every dimension must be positive (dim %d, hidden_dim %d, "
                    "n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d)",
                    name, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->vocab_size, c->seq_len);
    if (c->dim % c->n_heads != 0)
        return fail(err, LX_ERR_FILE, "%s: bad header: dim %d is not a multiple of n_heads %d", name, c->dim, c->n_heads);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return fail(err, LX_ERR_FILE, "%s: bad header: n_heads %d is not a multiple of n_kv_heads %d", name,
                    c->n_heads, c->n_kv_heads);
    if (model_head_size(c) % 2 != 0)
        return fail(err, LX_ERR_FILE, "%s: bad header: head size %d is odd (RoPE rotates pairs)", name, model_head_size(c));
    if (c->seq_len > MAX_SEQ_LEN)
        return fail(err, LX_ERR_FILE, "%s: bad header: seq_len %d is implausible (llamix reads at most %d)", name,
                    c->seq_len, MAX_SEQ_LEN);
    if (c->vocab_size < 3)
        return fail(err, LX_ERR_FILE, "%s: bad header: vocab_size %d has no room for BOS and EOS", name, c->vocab_size);
    return 0;
}

/* Number of floats of each tensor group; -1 on overflow. */
typedef struct {
    size_t embedding, rms_layers, wq, wkv, wo, ffn_up, ffn_down, rms_final, freq_cis, classifier;
} TensorSizes;

static int tensor_sizes(const ModelConfig *c, TensorSizes *t)
{
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t V = (size_t)c->vocab_size, S = (size_t)c->seq_len, KVD = (size_t)model_kv_dim(c);
    size_t HS = (size_t)model_head_size(c);
    size_t LD;
    if (size_mul(V, D, &t->embedding) || size_mul(L, D, &LD) || size_mul(LD, D, &t->wq) ||
        size_mul(LD, KVD, &t->wkv) || size_mul(LD, H, &t->ffn_up) || size_mul(S, HS, &t->freq_cis))
        return -1;
    t->rms_layers = LD;
    t->wo = t->wq;
    t->ffn_down = t->ffn_up;
    t->rms_final = D;
    t->classifier = t->embedding;
    return 0;
}

/* Total floats of the tensors present in a file of this version; -1 on overflow. Each group is
 * at most SIZE_MAX/4 so that bytes also fit. */
static int file_floats(const ModelConfig *c, int version, int shared, size_t *total)
{
    TensorSizes t;
    if (tensor_sizes(c, &t))
        return -1;
    size_t parts[] = {t.embedding, t.rms_layers, t.wq, t.wkv, t.wkv, t.wo, t.rms_layers,
                      t.ffn_up, t.ffn_down, t.ffn_up, t.rms_final,
                      version == 0 ? t.freq_cis : 0, shared ? 0 : t.classifier};
    size_t sum = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (size_add(sum, parts[i], &sum))
            return -1;
    if (sum > SIZE_MAX / 4)
        return -1;
    *total = sum;
    return 0;
}

size_t model_weight_bytes(const ModelConfig *c)
{
    TensorSizes t;
    if (tensor_sizes(c, &t))
        return 0;
    size_t per_token = 2 * t.rms_layers + 2 * t.wq + 2 * t.wkv + 3 * t.ffn_up + t.rms_final + t.classifier;
    return per_token * sizeof(float);
}

size_t model_stream_bytes(const Model *m)
{
    size_t fp32 = model_weight_bytes(&m->config);
    if (m->version != 2)
        return fp32;
    TensorSizes t;
    tensor_sizes(&m->config, &t);
    size_t norms = (2 * t.rms_layers + t.rms_final) * sizeof(float);
    size_t matrices = (fp32 - norms) / sizeof(float); /* weights, each 1 byte + 4 / GS */
    return norms + matrices + matrices / (size_t)m->group_size * sizeof(float);
}

int model_default_group_size(const ModelConfig *c)
{
    int gs = Q8_MAX_GROUP;
    while (gs > 1 && (c->dim % gs != 0 || c->hidden_dim % gs != 0))
        gs--;
    return gs;
}

/* ------------------------------------------------------------------ reading */

/* The walk over a file's tensors in file order, shared by the size check and the carving: with
 * base NULL it only adds up the bytes (overflow-checked); with base it also sets the pointers
 * and checks the values (fp32: finite; Q8_0 scales: finite and >= 0), noting the first bad one. */
typedef struct {
    const unsigned char *base; /* the first byte after the header, or NULL: count only */
    size_t at;                 /* bytes walked */
    int overflow;              /* the sizes do not fit in size_t */
    int misaligned;            /* a float tensor does not start on a 4-byte boundary */
    int scan;                  /* check fp32 values (the norms and Q8_0 scales are always checked) */
    int layer;                 /* the layer being walked (-1: none) */
    const char *bad;           /* the first tensor with a bad value, or NULL */
    int bad_layer;             /* its layer, or -1 */
    size_t bad_index;          /* its index in that tensor */
    float bad_value;
} Walk;

/* Tensors by name, for the walk and the messages. */
typedef enum { T_EMBEDDING, T_WQ, T_WK, T_WV, T_WO, T_W1, T_W2, T_W3, T_CLASSIFIER } TensorId;
static const char *const tensor_names[] = {"token_embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls"};

/* Non-finite floats have every exponent bit set; tested on the bits, in blocks without an early
 * exit, so the loop vectorises. */
static inline int bits_non_finite(const float *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

static size_t first_non_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096) {
        size_t end = n - i < 4096 ? n : i + 4096;
        int any = 0;
        for (size_t j = i; j < end; j++)
            any |= bits_non_finite(p + j);
        if (any)
            for (size_t j = i; j < end; j++)
                if (bits_non_finite(p + j))
                    return j;
    }
    return n;
}

/* n floats (or bytes, unit 1) of the walk; their address when carving. */
static const void *walk_take(Walk *w, size_t n, size_t unit)
{
    size_t bytes, start = w->at;
    if (w->overflow || size_mul(n, unit, &bytes) || size_add(w->at, bytes, &w->at)) {
        w->overflow = 1;
        return NULL;
    }
    if (unit == sizeof(float) && start % sizeof(float) != 0)
        w->misaligned = 1;
    return w->base && !w->misaligned ? w->base + start : NULL;
}

/* n floats that must be finite (checked when carving, if `check`); `what` names them. */
static const float *walk_floats(Walk *w, size_t n, int check, const char *what, int nonnegative)
{
    const float *p = walk_take(w, n, sizeof(float));
    if (!p || !check || w->bad)
        return p;
    size_t i = first_non_finite(p, n);
    if (i == n && nonnegative)
        for (i = 0; i < n && !(p[i] < 0.0f); i++)
            ;
    if (i < n) {
        w->bad = what;
        w->bad_layer = w->layer;
        w->bad_index = i;
        w->bad_value = p[i];
    }
    return p;
}

/* A matrix of rows x K: fp32 (gs 0), or Q8_0 values then scales. */
static Weight walk_weight(Walk *w, size_t rows, size_t K, int gs, const char *what)
{
    Weight out = {gs ? WEIGHT_Q8_0 : WEIGHT_F32, gs, NULL, NULL, NULL};
    size_t n;
    if (size_mul(rows, K, &n)) {
        w->overflow = 1;
        return out;
    }
    if (gs) {
        out.q = walk_take(w, n, 1);
        out.s = walk_floats(w, n / (size_t)gs, 1, what, 1);
    } else {
        out.f = walk_floats(w, n, w->scan, what, 0);
    }
    return out;
}

static Weight *layer_weight(LayerWeights *lw, TensorId t)
{
    switch (t) {
    case T_WQ: return &lw->wq;
    case T_WK: return &lw->wk;
    case T_WV: return &lw->wv;
    case T_WO: return &lw->wo;
    case T_W1: return &lw->w1;
    case T_W2: return &lw->w2;
    default: return &lw->w3;
    }
}

/* A layer tensor of every layer, each layer's matrix (rows, K) after the previous one's (fp32:
 * one (L, rows, K) array; Q8_0: values and scales per layer, as runq.c reads them). */
static void walk_layers(Walk *w, LayerWeights *layers, int L, TensorId t, size_t rows, size_t K, int gs)
{
    if (!layers) { /* counting only: one layer's bytes times L (a hostile header may claim 2^31 layers) */
        size_t start = w->at, total;
        walk_weight(w, rows, K, gs, tensor_names[t]);
        size_t per = w->at - start;
        if (w->overflow || size_mul(per, (size_t)L, &total) || size_add(start, total, &w->at))
            w->overflow = 1;
        if (L > 1 && per % sizeof(float) != 0)
            w->misaligned = 1;
        return;
    }
    for (int l = 0; l < L; l++) {
        w->layer = l;
        Weight m = walk_weight(w, rows, K, gs, tensor_names[t]);
        if (layers)
            *layer_weight(&layers[l], t) = m;
    }
    w->layer = -1;
}

/* An (L, D) norm array, split into the layers. */
static void walk_layer_norms(Walk *w, LayerWeights *layers, int L, size_t D, int ffn)
{
    const float *p = walk_floats(w, (size_t)L * D, 1, ffn ? "rms_ffn" : "rms_att", 0);
    for (int l = 0; layers && p && l < L; l++)
        *(ffn ? &layers[l].rms_ffn : &layers[l].rms_att) = p + (size_t)l * D;
}

/* Every tensor of a file of m's version, shape and classifier, in file order (the format comment
 * in internal.h). layers may be NULL (counting only). */
static void walk_model(Walk *w, Model *m, LayerWeights *layers)
{
    const ModelConfig *c = &m->config;
    const size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    const size_t KVD = (size_t)model_kv_dim(c);
    const int L = c->n_layers, gs = m->group_size;
    ModelWeights *mw = &m->w;
    static const TensorId order[] = {T_WQ, T_WK, T_WV, T_WO, T_W1, T_W2, T_W3};
    const size_t rows[] = {D, KVD, KVD, D, H, D, H}, cols[] = {D, D, D, D, D, H, D};
    if (m->version == 0) {
        mw->token_embedding = walk_weight(w, V, D, 0, "token_embedding");
        walk_layer_norms(w, layers, L, D, 0);
        for (int i = 0; i < 4; i++)
            walk_layers(w, layers, L, order[i], rows[i], cols[i], 0);
        walk_layer_norms(w, layers, L, D, 1);
        for (int i = 4; i < 7; i++)
            walk_layers(w, layers, L, order[i], rows[i], cols[i], 0);
        mw->rms_final = walk_floats(w, D, 1, "rms_final", 0);
        walk_take(w, (size_t)c->seq_len * (size_t)model_head_size(c), sizeof(float)); /* freq_cis: not read */
    } else {
        walk_layer_norms(w, layers, L, D, 0);
        walk_layer_norms(w, layers, L, D, 1);
        mw->rms_final = walk_floats(w, D, 1, "rms_final", 0);
        mw->token_embedding = walk_weight(w, V, D, gs, "token_embedding");
        for (int i = 0; i < 7; i++)
            walk_layers(w, layers, L, order[i], rows[i], cols[i], gs);
    }
    mw->wcls = m->shared_classifier ? mw->token_embedding : walk_weight(w, V, D, gs, "wcls");
}

/* The fp32 weights are scanned for NaN and infinity at load when the file is at most this big: a
 * scan touches every page of the mapping once, about the time of some 20 tokens of decode on
 * the 110M shape (mostly the page-ins that the first forward would pay anyway), and for a 7B
 * file it would be tens of seconds. Bigger files get their norms (and, in version 2, their
 * scales, a 1/gs fraction of the file) checked only; a NaN in their weights shows in the logits,
 * which the ensemble checks at every step. */
#define FULL_SCAN_MAX_BYTES ((size_t)1 << 31)

static int32_t read_i32(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

int model_parse(Model *m, const void *data, size_t size, const char *name, LxError *err)
{
    const unsigned char *bytes = data;
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", name);
    if (size < V0_HEADER_BYTES)
        return fail(err, LX_ERR_FILE, "%s: not a llama2.c checkpoint: only %zu bytes", name, size);

    size_t header;
    int32_t h[7];
    if ((uint32_t)read_i32(bytes) == CHECKPOINT_MAGIC) {
        int32_t version = read_i32(bytes + 4);
        if (version != 1 && version != 2)
            return fail(err, LX_ERR_FILE, "%s: unknown checkpoint version %d (llamix reads 0, 1 and 2)", name, (int)version);
        if (size < V1_HEADER_BYTES)
            return fail(err, LX_ERR_FILE, "%s: truncated: %zu bytes, shorter than the 256-byte version %d header", name,
                        size, (int)version);
        for (int i = 0; i < 7; i++)
            h[i] = read_i32(bytes + 8 + 4 * i);
        if (bytes[36] > 1)
            return fail(err, LX_ERR_FILE, "%s: bad header: shared_classifier flag is %d, not 0 or 1", name, bytes[36]);
        m->version = version;
        m->shared_classifier = bytes[36];
        if (version == 2) {
            int32_t gs = read_i32(bytes + 37);
            if (gs <= 0)
                return fail(err, LX_ERR_FILE, "%s: bad header: group size %d is not positive", name, (int)gs);
            m->group_size = gs;
        }
        header = V1_HEADER_BYTES;
    } else {
        for (int i = 0; i < 7; i++)
            h[i] = read_i32(bytes + 4 * i);
        m->version = 0;
        /* Legacy convention: a negative vocab_size flags a separate classifier. */
        m->shared_classifier = h[5] > 0;
        if (h[5] < 0 && h[5] != INT32_MIN)
            h[5] = -h[5];
        header = V0_HEADER_BYTES;
    }
    ModelConfig *c = &m->config;
    *c = (ModelConfig){h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
    int rc = model_config_check(c, name, err);
    if (rc)
        return rc;
    /* Every row length is dim or hidden_dim; export.py checks only dim, and runq.c then skips
     * the tail of each w2 row. */
    if (m->group_size && (c->dim % m->group_size != 0 || c->hidden_dim % m->group_size != 0))
        return fail(err, LX_ERR_FILE, "%s: bad header: group size %d does not divide both dim %d and hidden_dim %d",
                    name, m->group_size, c->dim, c->hidden_dim);

    Walk count = {.layer = -1};
    walk_model(&count, m, NULL);
    size_t expected;
    if (count.overflow || size_add(header, count.at, &expected))
        return fail(err, LX_ERR_FILE, "%s: bad header: the dimensions imply more weights than fit in memory", name);
    if (size != expected)
        return fail(err, LX_ERR_FILE, "%s: %s: the header implies %zu bytes (version %d, %s classifier), the file has %zu",
                    name, size < expected ? "truncated" : "trailing bytes", expected, m->version,
                    m->shared_classifier ? "shared" : "separate", size);
    /* Q8_0 scales follow int8 tensors of rows * K bytes; with D and H even that is a multiple of 4
     * except for odd V or H with D = 2 mod 4, which no real model has. */
    if (count.misaligned)
        return fail(err, LX_ERR_FILE, "%s: unsupported shape: an int8 tensor's size is not a multiple of 4 bytes, so "
                    "its scales are not aligned (dim %d, hidden_dim %d, vocab_size %d)",
                    name, c->dim, c->hidden_dim, c->vocab_size);

    LayerWeights *layers = calloc((size_t)c->n_layers, sizeof *layers);
    if (!layers)
        return fail(err, LX_ERR_MEMORY, "%s: out of memory", name);
    Walk carve = {.base = bytes + header, .layer = -1, .scan = size <= FULL_SCAN_MAX_BYTES};
    walk_model(&carve, m, layers);
    m->w.layers = layers;
    if (carve.bad) {
        free(layers);
        memset(&m->w, 0, sizeof m->w);
        char layer[32] = "";
        if (carve.bad_layer >= 0)
            snprintf(layer, sizeof layer, " of layer %d", carve.bad_layer);
        return fail(err, LX_ERR_FILE, "%s: bad weights: %s%s has %s (%g) at index %zu", name, carve.bad, layer,
                    isfinite(carve.bad_value) ? "a negative scale" : "a value that is not finite",
                    (double)carve.bad_value, carve.bad_index);
    }
    m->data = data;
    m->size = size;
    return 0;
}

void weight_row(float *out, Weight w, size_t row, int K)
{
    Weight r = weight_rows(w, row, K);
    if (r.type == WEIGHT_Q8_0)
        dequantize_q8(out, r.q, r.s, 0, K, r.group_size);
    else
        memcpy(out, r.f, (size_t)K * sizeof(float));
}

int model_open(Model *m, const char *path, LxError *err)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO must not hang us: refused below */
    if (fd < 0)
        return fail(err, LX_ERR_FILE, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, LX_ERR_FILE, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return fail(err, LX_ERR_FILE, "%s: not a llama2.c checkpoint: the file is empty", path);
    }
    void *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED)
        return fail(err, LX_ERR_FILE, "%s: cannot map: %s", path, strerror(errno));
    int rc = model_parse(m, data, size, path, err);
    if (rc) {
        munmap(data, size);
        memset(m, 0, sizeof *m);
        return rc;
    }
    m->mapped = 1;
    return 0;
}

void model_close(Model *m)
{
    if (m->mapped && m->data)
        munmap((void *)m->data, m->size);
    free(m->w.layers);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ writing random checkpoints */

/* splitmix64: a tiny, well-mixed generator for weights (not the sampler's generator). */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* buf (n) = constant `fill` if std == 0, else N(0, std^2) by Box-Muller, two values per pair of
 * draws, pairs counted from the start of each block of 4096 (so a tensor drawn in pieces of even
 * length gets the same values as drawn whole). */
#define DRAW_BLOCK 4096
static void draw_tensor(float *buf, size_t n, float std, float fill, uint64_t *rng)
{
    for (size_t i = 0; i < n; i += 2) {
        if (std == 0.0f) {
            buf[i] = fill;
            if (i + 1 < n) buf[i + 1] = fill;
            continue;
        }
        double u1 = ((splitmix64(rng) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
        double u2 = (splitmix64(rng) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        buf[i] = (float)(std * r * cos(a));
        if (i + 1 < n) buf[i + 1] = (float)(std * r * sin(a));
    }
}

/* Write n floats drawn as draw_tensor's, in blocks. */
static int write_tensor(FILE *f, size_t n, float std, float fill, uint64_t *rng)
{
    float buf[DRAW_BLOCK];
    while (n > 0) {
        size_t chunk = n < DRAW_BLOCK ? n : DRAW_BLOCK;
        draw_tensor(buf, chunk, std, fill, rng);
        if (fwrite(buf, sizeof(float), chunk, f) != chunk)
            return -1;
        n -= chunk;
    }
    return 0;
}

static void put_i32(unsigned char *p, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

/* The random stream of tensor i of the canonical order (token_embedding 0, rms_att 1, wq 2, wk 3,
 * wv 4, wo 5, rms_ffn 6, w1 7, w2 8, w3 9, rms_final 10, wcls 11). */
static uint64_t tensor_seed(uint64_t seed, int i) { return seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)); }

/* Where the fp32 values to quantize come from: an fp32 model, or (model NULL) the random draws
 * of model_write_random's version 1 file. */
typedef struct {
    const Model *model;
    uint64_t seed;
    float std;
    uint64_t rng;   /* random: the stream of the tensor being drawn */
    int rng_tensor; /* its canonical index, or -1 */
} Source;

/* The fp32 values of tensor t (layer l; n floats): pointed at in the model, or drawn into buf.
 * The layers of one tensor are asked for in order, so the draws continue one stream. */
static const float *source_tensor(Source *src, TensorId t, int l, float *buf, size_t n)
{
    static const int canonical[] = {0, 2, 3, 4, 5, 7, 8, 9, 11}; /* by TensorId */
    if (src->model) {
        const ModelWeights *w = &src->model->w;
        return t == T_EMBEDDING ? w->token_embedding.f : t == T_CLASSIFIER ? w->wcls.f : layer_weight(&w->layers[l], t)->f;
    }
    if (src->rng_tensor != canonical[t]) {
        src->rng_tensor = canonical[t];
        src->rng = tensor_seed(src->seed, canonical[t]);
    }
    for (size_t i = 0; i < n; i += DRAW_BLOCK) /* in draw_tensor's blocks, as the fp32 writer */
        draw_tensor(buf + i, n - i < DRAW_BLOCK ? n - i : DRAW_BLOCK, src->std, 1.0f, &src->rng);
    return buf;
}

/* export.py's quantize_q80 on n values (groups of gs): scale = max|w| / 127 and q = round(w / scale),
 * all in float32, rounding half to even as torch.round (nearbyintf in the default rounding mode).
 * An all-zero group gets scale 0 and zeros (export.py would divide 0 by 0). */
static void quantize_export(int8_t *q, float *s, const float *w, size_t n, int gs)
{
    for (size_t g = 0; g < n / (size_t)gs; g++) {
        const float *x = w + g * (size_t)gs;
        float wmax = 0.0f;
        for (int j = 0; j < gs; j++)
            wmax = fabsf(x[j]) > wmax ? fabsf(x[j]) : wmax;
        float scale = wmax / 127.0f;
        s[g] = scale;
        for (int j = 0; j < gs; j++)
            q[g * (size_t)gs + j] = scale > 0.0f ? (int8_t)nearbyintf(x[j] / scale) : 0;
    }
}

/* Write a version 2 file of shape c from src: the header, the norms in fp32, then every matrix
 * quantized, in export.py version2_export's order (the format in internal.h). */
static int write_q8(const char *path, const ModelConfig *c, int shared, int gs, Source *src, LxError *err)
{
    Model shape = {.config = *c, .version = 2, .group_size = gs, .shared_classifier = shared};
    Walk count = {.layer = -1};
    walk_model(&count, &shape, NULL);
    size_t bytes;
    if (count.overflow || size_add(V1_HEADER_BYTES, count.at, &bytes))
        return fail(err, LX_ERR_ARGUMENT, "%s: shape too large", path);
    const size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    const size_t KVD = (size_t)model_kv_dim(c), L = (size_t)c->n_layers;
    /* the largest matrix: the embedding (V, D), a feed-forward one (H, D) or a square one (D, D);
     * the walk checked these products */
    size_t largest = V > H ? V : H;
    largest = (largest > D ? largest : D) * D;
    float *buf = src->model ? NULL : malloc(largest * sizeof(float));
    int8_t *q = malloc(largest);
    float *scales = malloc(largest / (size_t)gs * sizeof(float));
    float *ones = malloc(L * D * sizeof(float));
    if ((!src->model && !buf) || !q || !scales || !ones) {
        free(buf), free(q), free(scales), free(ones);
        return fail(err, LX_ERR_MEMORY, "%s: out of memory", path);
    }
    for (size_t i = 0; i < L * D; i++)
        ones[i] = 1.0f;

    unsigned char header[V1_HEADER_BYTES] = {0};
    int32_t dims[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len};
    put_i32(header, (int32_t)CHECKPOINT_MAGIC);
    put_i32(header + 4, 2);
    for (int i = 0; i < 7; i++)
        put_i32(header + 8 + 4 * i, dims[i]);
    header[36] = (unsigned char)shared;
    put_i32(header + 37, gs);

    AtomicFile af;
    int rc = atomic_file_open(&af, path, bytes, err);
    if (rc) {
        free(buf), free(q), free(scales), free(ones);
        return rc;
    }
    FILE *f = af.f;
    int bad = fwrite(header, 1, sizeof header, f) != sizeof header;
    /* the norms: rms_att (L, D), rms_ffn (L, D), rms_final (D); each (L, D) array is contiguous in
     * a version 0 or 1 file */
    const ModelWeights *w = src->model ? &src->model->w : NULL;
    const float *norms[3] = {w ? w->layers[0].rms_att : ones, w ? w->layers[0].rms_ffn : ones, w ? w->rms_final : ones};
    const size_t norm_n[3] = {L * D, L * D, D};
    for (int i = 0; i < 3 && !bad; i++)
        bad = fwrite(norms[i], sizeof(float), norm_n[i], f) != norm_n[i];
    /* the matrices, each layer's values then its scales */
    static const TensorId order[] = {T_EMBEDDING, T_WQ, T_WK, T_WV, T_WO, T_W1, T_W2, T_W3, T_CLASSIFIER};
    const size_t rows[] = {V, D, KVD, KVD, D, H, D, H, V}, cols[] = {D, D, D, D, D, D, H, D, D};
    for (int i = 0; i < 9 && !bad; i++) {
        TensorId t = order[i];
        int layers = t == T_EMBEDDING || t == T_CLASSIFIER ? 1 : (int)L;
        if (t == T_CLASSIFIER && shared)
            break;
        size_t n = rows[i] * cols[i];
        for (int l = 0; l < layers && !bad; l++) {
            quantize_export(q, scales, source_tensor(src, t, l, buf, n), n, gs);
            bad = fwrite(q, 1, n, f) != n || fwrite(scales, sizeof(float), n / (size_t)gs, f) != n / (size_t)gs;
        }
    }
    free(buf), free(q), free(scales), free(ones);
    if (bad) {
        int e = errno;
        atomic_file_abort(&af);
        return fail(err, LX_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return atomic_file_commit(&af, err);
}

int model_quantize(const Model *m, const char *path, int group_size, LxError *err)
{
    const ModelConfig *c = &m->config;
    if (m->version == 2)
        return fail(err, LX_ERR_ARGUMENT, "%s: already int8 (version 2, group size %d); quantize an fp32 checkpoint",
                    m->path, m->group_size);
    if (group_size == 0)
        group_size = model_default_group_size(c);
    if (group_size < 0 || c->dim % group_size != 0 || c->hidden_dim % group_size != 0)
        return fail(err, LX_ERR_ARGUMENT, "group size %d does not divide both dim %d and hidden_dim %d of %s",
                    group_size, c->dim, c->hidden_dim, m->path);
    Source source = {m, 0, 0.0f, 0, -1};
    return write_q8(path, c, m->shared_classifier, group_size, &source, err);
}

int model_write_random(const char *path, const ModelConfig *c, int version, int shared_classifier,
                       uint64_t seed, float std, LxError *err)
{
    if (version < 0 || version > 2)
        return fail(err, LX_ERR_ARGUMENT, "%s: can only write checkpoint versions 0, 1 and 2, not %d", path, version);
    if (model_config_check(c, path, err)) { /* a shape asked for, not a file read: a bad argument */
        if (err)
            err->status = LX_ERR_ARGUMENT;
        return LX_ERR_ARGUMENT;
    }
    if (version == 2) {
        Source random = {NULL, seed, std == 0.0f ? 1.0f / sqrtf((float)c->dim) : std, 0, -1};
        return write_q8(path, c, shared_classifier != 0, model_default_group_size(c), &random, err);
    }
    TensorSizes t;
    size_t floats;
    if (tensor_sizes(c, &t) || file_floats(c, version, shared_classifier, &floats))
        return fail(err, LX_ERR_ARGUMENT, "%s: shape too large", path);
    if (std == 0.0f)
        std = 1.0f / sqrtf((float)c->dim);

    unsigned char header[V1_HEADER_BYTES] = {0};
    size_t header_bytes;
    int32_t dims[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab_size, c->seq_len};
    if (version == 0) {
        if (!shared_classifier)
            dims[5] = -dims[5];
        for (int i = 0; i < 7; i++)
            put_i32(header + 4 * i, dims[i]);
        header_bytes = V0_HEADER_BYTES;
    } else {
        put_i32(header, (int32_t)CHECKPOINT_MAGIC);
        put_i32(header + 4, 1);
        for (int i = 0; i < 7; i++)
            put_i32(header + 8 + 4 * i, dims[i]);
        header[36] = (unsigned char)(shared_classifier != 0);
        header_bytes = V1_HEADER_BYTES;
    }

    AtomicFile af;
    size_t bytes = header_bytes + 4 * floats;
    int rc = atomic_file_open(&af, path, bytes, err);
    if (rc)
        return rc;
    FILE *f = af.f;
    int bad = fwrite(header, 1, header_bytes, f) != header_bytes;
    /* The same random tensors in each version's file order, so v0 and v1 files written from one
     * seed hold the same model: draw every tensor in a fixed canonical order into its slot. */
    struct { size_t n; float std; int v0_slot, v1_slot; } tensors[] = {
        {t.embedding, std, 0, 3}, {t.rms_layers, 0, 1, 0}, {t.wq, std, 2, 4},
        {t.wkv, std, 3, 5}, {t.wkv, std, 4, 6}, {t.wo, std, 5, 7}, {t.rms_layers, 0, 6, 1},
        {t.ffn_up, std, 7, 8}, {t.ffn_down, std, 8, 9}, {t.ffn_up, std, 9, 10},
        {t.rms_final, 0, 10, 2}, {shared_classifier ? 0 : t.classifier, std, 12, 11},
    };
    enum { N_TENSORS = sizeof tensors / sizeof tensors[0] };
    /* Each tensor gets its own seed derived from the model seed (tensor_seed), so the order of
     * writing does not change the values. */
    for (int slot = 0; slot < 13 && !bad; slot++) {
        if (version == 0 && slot == 11) { /* freq_cis_real and _imag: llama2.c's RoPE tables */
            int HS = model_head_size(c);
            for (int part = 0; part < 2 && !bad; part++)
                for (int pos = 0; pos < c->seq_len && !bad; pos++)
                    for (int i = 0; i < HS / 2 && !bad; i++) {
                        double a = pos * pow(10000.0, -2.0 * i / HS);
                        float v = (float)(part == 0 ? cos(a) : sin(a));
                        bad = fwrite(&v, sizeof v, 1, f) != 1;
                    }
            continue;
        }
        for (int i = 0; i < N_TENSORS; i++) {
            int s = version == 0 ? tensors[i].v0_slot : tensors[i].v1_slot;
            if (s != slot || tensors[i].n == 0)
                continue;
            uint64_t tensor_rng = tensor_seed(seed, i);
            bad = write_tensor(f, tensors[i].n, tensors[i].std, 1.0f, &tensor_rng);
        }
    }
    if (bad) {
        int e = errno;
        atomic_file_abort(&af);
        return fail(err, LX_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return atomic_file_commit(&af, err);
}

int model_shape(const char *name, ModelConfig *c)
{
    static const struct { const char *name; ModelConfig c; } shapes[] = {
        {"tiny", {32, 48, 2, 4, 2, 16, 64}},
        {"260K", {64, 172, 5, 8, 4, 512, 512}},
        {"15M", {288, 768, 6, 6, 6, 32000, 256}},
        {"42M", {512, 1376, 8, 8, 8, 32000, 1024}},
        {"110M", {768, 2048, 12, 12, 12, 32000, 1024}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(name, shapes[i].name) == 0) {
            *c = shapes[i].c;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------ public API */

LxStatus lx_model_open(const char *path, LxModel **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    Model *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m)
        return (LxStatus)fail(e, LX_ERR_MEMORY, "%s: out of memory", path);
    if (model_open(m, path, e)) {
        free(m);
        return e->status;
    }
    *out = m;
    return LX_OK;
}

void lx_model_close(LxModel *m)
{
    if (m) {
        model_close(m);
        free(m);
    }
}

LxModelConfig lx_model_config(const LxModel *m) { return m->config; }
int lx_model_version(const LxModel *m) { return m->version; }
int lx_model_group_size(const LxModel *m) { return m->group_size; }
size_t lx_model_stream_bytes(const LxModel *m) { return model_stream_bytes(m); }

LxStatus lx_model_quantize(const LxModel *m, const char *path, int group_size, LxError *err)
{
    LxError local, *e = err ? err : &local;
    return model_quantize(m, path, group_size, e) ? e->status : LX_OK;
}
const char *lx_model_path(const LxModel *m) { return m->path; }

void lx_model_mapping(const LxModel *m, const void **data, size_t *size)
{
    *data = m->data;
    *size = m->size;
}
size_t lx_model_weight_bytes(const LxModelConfig *c) { return model_weight_bytes(c); }

LxStatus lx_model_shape(const char *name, LxModelConfig *out, LxError *err)
{
    if (model_shape(name, out))
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "unknown shape '%s' (tiny, 260K, 15M, 42M, 110M)", name);
    return LX_OK;
}

LxStatus lx_model_write_random(const char *path, const LxModelConfig *c, int version, int shared_classifier,
                               uint64_t seed, float std, LxError *err)
{
    LxError local, *e = err ? err : &local;
    return model_write_random(path, c, version, shared_classifier, seed, std, e) ? e->status : LX_OK;
}
