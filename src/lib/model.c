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

/* ------------------------------------------------------------------ reading */

/* Carve the tensors in file order. `p` walks the float array after the header. */
static void carve(Model *m, const float *p)
{
    const ModelConfig *c = &m->config;
    TensorSizes t;
    tensor_sizes(c, &t); /* checked by the caller */
    ModelWeights *w = &m->w;
    if (m->version == 0) {
        w->token_embedding = p; p += t.embedding;
        w->rms_att = p;         p += t.rms_layers;
        w->wq = p;              p += t.wq;
        w->wk = p;              p += t.wkv;
        w->wv = p;              p += t.wkv;
        w->wo = p;              p += t.wo;
        w->rms_ffn = p;         p += t.rms_layers;
        w->w1 = p;              p += t.ffn_up;
        w->w2 = p;              p += t.ffn_down;
        w->w3 = p;              p += t.ffn_up;
        w->rms_final = p;       p += t.rms_final;
        p += t.freq_cis;        /* freq_cis_real, freq_cis_imag: recomputed, not read */
    } else {
        w->rms_att = p;         p += t.rms_layers;
        w->rms_ffn = p;         p += t.rms_layers;
        w->rms_final = p;       p += t.rms_final;
        w->token_embedding = p; p += t.embedding;
        w->wq = p;              p += t.wq;
        w->wk = p;              p += t.wkv;
        w->wv = p;              p += t.wkv;
        w->wo = p;              p += t.wo;
        w->w1 = p;              p += t.ffn_up;
        w->w2 = p;              p += t.ffn_down;
        w->w3 = p;              p += t.ffn_up;
    }
    w->wcls = m->shared_classifier ? w->token_embedding : p;
}

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
        if (version == 2)
            return fail(err, LX_ERR_FILE, "%s: checkpoint version 2 (int8 Q8_0) is not supported yet; export fp32 (version 0 or 1)", name);
        if (version != 1)
            return fail(err, LX_ERR_FILE, "%s: unknown checkpoint version %d (llamix reads 0 and 1)", name, (int)version);
        if (size < V1_HEADER_BYTES)
            return fail(err, LX_ERR_FILE, "%s: truncated: %zu bytes, shorter than the 256-byte version 1 header", name, size);
        for (int i = 0; i < 7; i++)
            h[i] = read_i32(bytes + 8 + 4 * i);
        if (bytes[36] > 1)
            return fail(err, LX_ERR_FILE, "%s: bad header: shared_classifier flag is %d, not 0 or 1", name, bytes[36]);
        m->version = 1;
        m->shared_classifier = bytes[36];
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

    size_t floats;
    if (file_floats(c, m->version, m->shared_classifier, &floats) || floats > (SIZE_MAX - header) / 4)
        return fail(err, LX_ERR_FILE, "%s: bad header: the dimensions imply more weights than fit in memory", name);
    size_t expected = header + floats * 4;
    if (size != expected)
        return fail(err, LX_ERR_FILE, "%s: %s: the header implies %zu bytes (version %d, %s classifier), the file has %zu",
                    name, size < expected ? "truncated" : "trailing bytes", expected, m->version,
                    m->shared_classifier ? "shared" : "separate", size);
    carve(m, (const float *)(bytes + header));
    m->data = data;
    m->size = size;
    return 0;
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

/* Write n floats: constant `fill` if std == 0, else N(0, std^2) by Box-Muller. */
static int write_tensor(FILE *f, size_t n, float std, float fill, uint64_t *rng)
{
    float buf[4096];
    while (n > 0) {
        size_t chunk = n < 4096 ? n : 4096;
        for (size_t i = 0; i < chunk; i += 2) {
            if (std == 0.0f) {
                buf[i] = fill;
                if (i + 1 < chunk) buf[i + 1] = fill;
                continue;
            }
            double u1 = ((splitmix64(rng) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
            double u2 = (splitmix64(rng) >> 11) * 0x1.0p-53;
            double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
            buf[i] = (float)(std * r * cos(a));
            if (i + 1 < chunk) buf[i + 1] = (float)(std * r * sin(a));
        }
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

int model_write_random(const char *path, const ModelConfig *c, int version, int shared_classifier,
                       uint64_t seed, float std, LxError *err)
{
    if (version != 0 && version != 1)
        return fail(err, LX_ERR_ARGUMENT, "%s: can only write checkpoint versions 0 and 1, not %d", path, version);
    if (model_config_check(c, path, err)) { /* a shape asked for, not a file read: a bad argument */
        if (err)
            err->status = LX_ERR_ARGUMENT;
        return LX_ERR_ARGUMENT;
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
    /* Each tensor gets its own seed derived from the model seed, so the order of writing does
     * not change the values. */
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
            uint64_t tensor_rng = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
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
