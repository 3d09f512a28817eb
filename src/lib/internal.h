/* internal.h: the library's one internal header, in reading order: util (errors, checked sizes,
 * clock), model (checkpoint files), forward (the run state and the transformer), kernels (the
 * matrix products under it), tokenizer, sampler (the transform S and the draw), ensemble (CE and
 * ME), score. The public API is include/llamix.h; everything here is for the library, its tests
 * and the bench harness, and none of it is exported from the shared library. */
#ifndef LLAMIX_INTERNAL_H
#define LLAMIX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llamix.h"

/* ============================== util ======================================================== */
/* The few helpers every module shares: error messages, overflow-checked size arithmetic, a
 * monotonic clock, threads, aligned allocation.
 *
 * Error convention (all library code): a function returns 0 on success and nonzero on failure,
 * having written the LxStatus and a one-line message naming the file or setting into
 * err (which may be NULL). Functions that return pointers return NULL instead. Library code
 * never prints and never exits. */

/* printf-style: set *err (may be NULL) to status and the message; return status.
 * (The parentheses keep the name safe from cmocka.h, which defines a fail() macro.) */
int(fail)(LxError *err, LxStatus status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* *out = a * b (or a + b); return -1 instead of wrapping around. */
int size_mul(size_t a, size_t b, size_t *out);
int size_add(size_t a, size_t b, size_t *out);

/* Seconds on a monotonic clock. */
double now_seconds(void);

/* threads if > 0, else OpenMP's default (lx_threads_default); always >= 1. */
int threads_resolve(int threads);

/* Plain C compiled for several instruction sets, the best picked when the program loads (GCC's
 * target clones, an ifunc: x86-64 with glibc). The default build targets baseline x86-64, whose
 * 4-wide vectors leave the loops they mark several times slower than AVX2/AVX-512 (bench/NOTES.md,
 * forward). */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* Allocate n * size bytes, zeroed, 64-byte aligned; NULL on overflow or failure. Free with free(). */
void *alloc_zeroed(size_t n, size_t size);

/* ============================== model ======================================================= */
/* llama2.c checkpoint files: reading them into read-only mapped weights, and writing
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
 *   version 2 (Q8_0, llama2.c's runq.c and export.py version2_export): the version 1 header with
 *     version = 2 and, right after the shared_classifier byte (offset 37), int32 group_size GS
 *     (> 0, dividing D and H), zero padding to 256 bytes. Then fp32 rms_att, rms_ffn, rms_final;
 *     then the quantized tensors token_embedding, wq (all layers), wk, wv, wo, w1, w2, w3, wcls
 *     (if unshared), each layer's matrix stored as its int8 values (rows, K) followed by its fp32
 *     scales (rows, K/GS): W[i][j] ~ q[i][j] * s[i][j/GS]. Scales must be finite and >= 0.
 * Every file's size must equal what its header implies, and its fp32 weights (or, in version 2,
 * its norms and scales) must be finite (checked at load). */


#define CHECKPOINT_MAGIC 0x616b3432u
#define Q8_MAX_GROUP 64 /* the default group size is the largest <= this dividing D and H */

/* D, H, L, NH, NKV, V, S: the public LxModelConfig. */
typedef LxModelConfig ModelConfig;

/* One weight matrix W (rows, K), row-major, read-only, in either format. The forward and the
 * kernels take it whatever the format: matmul_weight() quantizes the input when W is Q8_0. */
typedef enum { WEIGHT_F32 = 0, WEIGHT_Q8_0 = 1 } WeightType;
typedef struct {
    WeightType type;
    int group_size;   /* Q8_0: weights per scale (divides K); 0 for fp32 */
    const float *f;   /* fp32: (rows, K) */
    const int8_t *q;  /* Q8_0: (rows, K) int8 values */
    const float *s;   /* Q8_0: (rows, K / group_size) scales */
} Weight;

/* An int8 product's input x (T, K), quantized as W is (Q8_0, W's group size): scratch the caller
 * owns (the forward's state), so that products never allocate. */
typedef struct {
    int8_t *q; /* (T, K) */
    float *s;  /* (T, K / group_size) */
    float *t;  /* (T rounded up to TRANSPOSED_ROWS, K), or NULL: the float path's input */
} QuantScratch;

/* Rows [row, ...) of w (rows of K): the matrix starting at that row. */
static inline Weight weight_rows(Weight w, size_t row, int K)
{
    if (w.type == WEIGHT_Q8_0) {
        w.q += row * (size_t)K;
        w.s += row * (size_t)(K / w.group_size);
    } else {
        w.f += row * (size_t)K;
    }
    return w;
}

/* Row `row` of w (K wide) as floats into out (K): a copy (fp32) or dequantized (Q8_0). */
void weight_row(float *out, Weight w, size_t row, int K);

/* One layer's weights. */
typedef struct {
    const float *rms_att; /* (D) */
    const float *rms_ffn; /* (D) */
    Weight wq;            /* (D, D)   query projection */
    Weight wk;            /* (KVD, D) key projection */
    Weight wv;            /* (KVD, D) value projection */
    Weight wo;            /* (D, D)   attention output */
    Weight w1;            /* (H, D)   gate */
    Weight w2;            /* (D, H)   down */
    Weight w3;            /* (H, D)   up */
} LayerWeights;

/* Pointers into the mapping; read-only, never copied (layers is the one allocation). */
typedef struct {
    Weight token_embedding;  /* (V, D) */
    LayerWeights *layers;    /* (L) */
    const float *rms_final;  /* (D) */
    Weight wcls;             /* (V, D) classifier; = token_embedding when shared */
} ModelWeights;

struct LxModel {
    ModelConfig config;
    ModelWeights w;
    int version;           /* 0, 1 or 2 */
    int group_size;        /* version 2: GS; else 0 */
    int shared_classifier; /* 1 if wcls is the token embedding */
    const void *data;      /* the whole file */
    size_t size;
    int mapped;            /* data is an mmap we own (model_open) */
    char path[256];        /* for messages */
};
typedef struct LxModel Model;

/* Map `path` read-only and validate it. On failure returns nonzero with a message naming the file;
 * *m is then safe to pass to model_close. */
int model_open(Model *m, const char *path, LxError *err);

/* Validate a checkpoint already in memory (not copied: `data` must outlive *m). `name` is used in
 * messages. This is the whole parser; model_open is mmap + model_parse. */
int model_parse(Model *m, const void *data, size_t size, const char *name, LxError *err);

/* Unmap; safe on a zeroed or failed Model. */
void model_close(Model *m);

/* Check a config: positive dims, divisibility, even head size, sizes that fit. */
int model_config_check(const ModelConfig *c, const char *name, LxError *err);

/* Derived sizes. */
static inline int model_head_size(const ModelConfig *c) { return c->dim / c->n_heads; }
static inline int model_kv_dim(const ModelConfig *c) { return c->dim / c->n_heads * c->n_kv_heads; }

/* Bytes of weights one token streams in a forward (all matrices + classifier), for benchmarks:
 * fp32; model_stream_bytes counts a model's own format (Q8_0: int8 values and scales). */
size_t model_weight_bytes(const ModelConfig *c);
size_t model_stream_bytes(const Model *m);

/* The default Q8_0 group size of a shape: the largest gs <= Q8_MAX_GROUP dividing D and H. */
int model_default_group_size(const ModelConfig *c);

/* Write a checkpoint with random weights: Gaussian N(0, std^2) entries (std = 0 picks
 * 1/sqrt(D)), RMSNorm gains 1, from the given seed. version 0, 1 or 2; shared_classifier 0 or 1.
 * Version 2 is the version 1 model of the same seed quantized with the default group size, byte
 * for byte what model_quantize() makes of that version 1 file. */
int model_write_random(const char *path, const ModelConfig *c, int version, int shared_classifier,
                       uint64_t seed, float std, LxError *err);

/* Write the fp32 model m (version 0 or 1) as version 2 with group size gs (0: the default), as
 * llama2.c's export.py version2_export does: per group scale = max|w| / 127 and
 * q = round-half-even(w / scale), both in float32 (an all-zero group: scale 0, zeros). Atomic. */
int model_quantize(const Model *m, const char *path, int group_size, LxError *err);

/* Named shapes for `llamix init` and `llamix bench`: "260K", "15M", "42M", "110M", "tiny".
 * Returns -1 for an unknown name. */
int model_shape(const char *name, ModelConfig *c);

/* ============================== forward ===================================================== */
/* the run state of one sequence and the batched forward pass (forward.c), and the one-token
 * reference forward that the tests check it against (forward_reference.c).
 *
 * A Model is shared read-only; a ForwardState belongs to one sequence (one thread at a time), so
 * one model can serve many sequences at once. The state owns the KV cache for n_ctx positions and
 * all scratch for batches of up to max_batch rows, allocated once: forward() never allocates.
 * Several sequences run through one forward with forward_spans(): each brings its own state (a
 * cache-only one suffices), and one work state lends the scratch. */


typedef struct ForwardState ForwardState;

/* One row of a forward call: its token, its position, and the state whose KV cache it goes to;
 * logit: its index among the call's rows that want logits, or -1; run: how many rows from this
 * one on go through attention together (attention_run; 1: this row alone, 0: inside a run). */
typedef struct {
    ForwardState *cache;
    int token, pos, logit, run;
} ForwardRow;

struct ForwardState {
    int n_ctx;        /* positions the KV cache holds (<= S) */
    int max_batch;    /* rows processed together; longer inputs are done in chunks (0: cache only) */
    int threads;      /* threads of every product and of attention (set by the owner; init: default) */
    /* (L, KVH, n_ctx, HS): a kv head's positions side by side, so attention reads them in one
     * stream (position-major, as llama2.c, they are HS-float pieces KVD floats apart, which
     * decodes slower: bench/NOTES.md, forward) */
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
    ForwardRow *rows;           /* (max_batch) the rows of the chunk being run */
    QuantScratch qs;            /* (max_batch, max(D, H)) an int8 product's quantized input (and its
                                 * float copy for large batches) */
};

/* Allocate a state for up to n_ctx positions (0 means the model's seq_len) and batches of up to
 * max_batch rows (0 means a default). On failure *s is safe to pass to forward_state_free. */
int forward_state_init(ForwardState *s, const ModelConfig *c, int n_ctx, int max_batch, LxError *err);
/* A state with only the KV cache (max_batch 0, no scratch, no rotary tables): one sequence's cache
 * in a forward_spans() whose work state has the scratch. Its bytes: forward_cache_bytes. */
int forward_cache_init(ForwardState *s, const ModelConfig *c, int n_ctx, LxError *err);
size_t forward_cache_bytes(const ModelConfig *c, int n_ctx); /* 2 L n_ctx KVD floats */
void forward_state_free(ForwardState *s);

/* Which rows of a span get logits: none (only fill the cache), the last, or all. */
enum { FORWARD_LOGITS_NONE, FORWARD_LOGITS_LAST, FORWARD_LOGITS_ALL };

/* One sequence's part of a multi-sequence forward: tokens[0..n) at positions pos..pos+n-1 of
 * the sequence whose KV cache is in state. */
typedef struct {
    ForwardState *state;
    const int *tokens;
    int n, pos;
    int logits; /* FORWARD_LOGITS_* */
} ForwardSpan;

/* The multi-sequence forward: every span's rows through every matrix product at once (the total
 * row count picks the kernel, chunks of work->max_batch rows), attention per span over its own
 * cache. work supplies the scratch, the rotary tables and the threads; it may be one of the spans'
 * states (forward() is the case of one span whose state is the work state). logits, if not
 * NULL, is (R, V) and gets the rows asked for, in span order (R = their number). Requires
 * distinct span states, each holding at most work->n_ctx positions, and forward()'s conditions
 * per span (LX_ERR_CONTEXT or LX_ERR_ARGUMENT with a message otherwise). */
int forward_spans(const Model *m, ForwardState *work, const ForwardSpan *spans, int n_spans, float *logits,
                  LxError *err);

/* Run tokens[0..n) at positions pos..pos+n-1, appending their keys and values to the cache.
 * Logits: if all_rows, logits is (n, V) and gets every position's; otherwise logits is (V) and
 * gets the last position's only (the classifier runs just for the rows asked for). logits may be
 * NULL to only fill the cache. Requires 1 <= n, 0 <= pos, pos + n <= n_ctx, 0 <= token < V
 * (checked; otherwise returns LX_ERR_CONTEXT or LX_ERR_ARGUMENT with a message). It is
 * forward_spans() with the one span {s, tokens, n, pos}, s its own work state. */
int forward(const Model *m, ForwardState *s, const int *tokens, int n, int pos, float *logits,
            int all_rows, LxError *err);

/* The reference: llama2.c run.c's forward() with its own state, one token at a time in plain
 * loops: run.c's KV cache layout, RoPE angles computed on the fly, scalar matmul, rmsnorm and
 * softmax summing in run.c's order, one thread. It shares no code with forward(), so it is the
 * tests' oracle of the layer logic. For tests: it is slow. */
typedef struct {
    int n_ctx;          /* positions the KV cache holds (<= S) */
    float *x;           /* (D) residual stream of the current token */
    float *xb;          /* (D) normed input / attention output */
    float *xb2;         /* (D) projection output */
    float *hb;          /* (H) gate */
    float *hb2;         /* (H) up */
    float *q;           /* (D) query */
    float *att;         /* (NH, n_ctx) attention scores */
    float *key_cache;   /* (L, n_ctx, KVD) */
    float *value_cache; /* (L, n_ctx, KVD) */
    int8_t *xq;         /* (max(D, H)) an int8 product's input, quantized */
    float *xs;          /* (max(D, H)) its scales (group size >= 1) */
} ReferenceState;

/* n_ctx as forward_state_init's (0: the model's seq_len). On failure *s is safe to free. */
int forward_reference_init(ReferenceState *s, const ModelConfig *c, int n_ctx, LxError *err);
void forward_reference_free(ReferenceState *s); /* safe on a zeroed or freed state */

/* forward()'s contract (tokens, n, pos, logits, all_rows and the checks), one token at a time. */
int forward_reference(const Model *m, ReferenceState *s, const int *tokens, int n, int pos,
                      float *logits, int all_rows, LxError *err);

/* ============================== kernels ===================================================== */
/* the numeric building blocks of the forward pass (kernels.c; the x86 vector kernels in
 * kernels_x86.c).
 *
 * The heavy one is the batched matrix product. For T input rows x (T, K) and a weight matrix
 * W (N, K) it computes y (T, N) with y[t][i] = sum_j W[i][j] x[t][j]. Three implementations:
 *   matmul_reference  plain scalar loops: the oracle for tests, and readable
 *   matmul_stream     reads each weight row once and dots it with all T input rows; vectorised
 *                     for the widest instruction set the CPU has (chosen at run time). Decode
 *                     (T = 1) and ME's catch-up (T = 2..8) are memory-bound and want this.
 *   matmul_blas       CBLAS sgemm; wins for large T (prefill, scoring) where packing pays off.
 * matmul() picks between them by T and splits the N output rows across the OpenMP threads. */


/* y (T, N) = x (T, K) W^T, W (N, K); T, K, N >= 1. On `threads` threads (0: the default), each
 * taking chunks of W's rows (BLAS: one slice each); picks the kernel by T. BLAS, when used, is
 * called from each thread on its slice, so a threaded BLAS should be pinned to one thread
 * (lx_blas_single_thread). */
void matmul(float *y, const float *x, const float *w, int T, int K, int N, int threads);

/* Several products of one input, y_i (T, N_i) = x (T, K) W_i^T (the query, key and value
 * projections), threaded in one parallel region instead of one each. */
typedef struct {
    float *y;
    const float *w;
    int N;
} Product;
void matmul_many(const float *x, int T, int K, const Product *p, int n, int threads);

/* SwiGLU's gated products in one parallel region: h (T, H) = silu(x W1^T) * (x W3^T), with
 * silu(g) = g / (1 + e^-g); u (T, H) is scratch that receives x W3^T. Each thread gates the
 * columns it has just computed, so the gate costs no extra pass or fork. */
void matmul_swiglu(float *h, float *u, const float *x, const float *w1, const float *w3, int T, int K, int H,
                   int threads);

/* The same three over a Weight of either format (the forward's products): an fp32 W as above; a
 * Q8_0 W multiplies the input quantized per group as runq.c does (quantize_q8, once per call for
 * all its products, into qs, which must hold T K values and T K / group_size scales), each thread
 * running matmul_q8_slice on its chunks; from outer_min_rows() rows on, when qs->t is there
 * (room for T rounded up to 16 rows of K), matmul_q8_float_slice on its float copy instead. An
 * fp32 W takes qs->t too, when it is there, for its transposed copy (outer_min_rows below). The
 * products of one call share one format and group size. qs may be NULL when W is fp32. */
typedef struct {
    float *y;
    Weight w;
    int N;
} WeightProduct;
void matmul_weight(float *y, const float *x, Weight w, int T, int K, int N, QuantScratch *qs, int threads);
void matmul_weight_many(const float *x, int T, int K, const WeightProduct *p, int n, QuantScratch *qs, int threads);
void matmul_weight_swiglu(float *h, float *u, const float *x, Weight w1, Weight w3, int T, int K, int H,
                          QuantScratch *qs, int threads);

/* Single-threaded variants over output rows [n0, n1) (0 <= n0 <= n1 <= N; the other columns of y
 * are left alone), for tests and for matmul() itself. */
void matmul_reference(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_stream(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_blas(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);

/* The streaming kernel for x86's wide vectors (kernels_x86.c), with matmul_stream's contract
 * (T, K >= 1; no tiling of large T, which matmul_stream does). Each is compiled for its own
 * instruction set, so call it only where kernels_isa_available() says the CPU has that set. */
#if defined(__x86_64__) && defined(__GNUC__)
#define KERNELS_X86 1
void matmul_stream_avx512(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_stream_avx2(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_outer_avx2(float *y, const float *xt, const float *w, int T, int K, int N, int n0, int n1);
void matmul_outer_avx512(float *y, const float *xt, const float *w, int T, int K, int N, int n0, int n1);
void transpose_input_avx2(float *xt, const float *x, int T, int K);
#endif

/* The forward's fp32 batches from outer_min_rows() rows (AVX2: AVX2_OUTER_MIN_T, AVX-512:
 * AVX512_OUTER_MIN_T; INT_MAX without either) up to BLAS's: the input transposed once per call
 * into blocks of TRANSPOSED_ROWS rows, xt[b][j][r] = x[16 b + r][j] (rows past T zero; room for
 * T rounded up to 16 rows of K), then matmul_outer_avx2 or matmul_outer_avx512 on each thread's
 * rows. 16 rows are the input rows of the AVX2 outer-product block (vector_x86.h) and one
 * vector of the AVX-512 one. */
#define TRANSPOSED_ROWS 16
#define AVX2_OUTER_MIN_T 16
#define AVX512_OUTER_MIN_T 16
int outer_min_rows(void);
void transpose_input(float *xt, const float *x, int T, int K);

/* Instruction sets of the streaming kernel. kernels_isa_available() tells whether this CPU and
 * build can run one; kernels_set_isa() forces one (tests), KERNEL_ISA_AUTO restores the best.
 * The choice is process-wide (it describes the CPU): made lazily on first use, then kept. */
typedef enum { KERNEL_ISA_AUTO = -1, KERNEL_ISA_GENERIC = 0, KERNEL_ISA_AVX2 = 1, KERNEL_ISA_AVX512 = 2 } KernelIsa;
int kernels_isa_available(KernelIsa isa);
void kernels_set_isa(KernelIsa isa);
const char *kernels_isa_name(void); /* the one in use */

/* Batches of at least this many rows go to BLAS (when built with it); why, see kernels.c.
 * The default depends on the streaming kernel's instruction set (INT_MAX: never).
 * kernels_set_blas_min_rows() overrides it (tests, bench); 0 restores the default. */
int kernels_blas_min_rows(void);
void kernels_set_blas_min_rows(int rows);
int kernels_have_blas(void);

/* a (n) . b (n) kept as `lanes` (1..DOT_MAX_LANES) partial sums. One running sum makes every add
 * wait for the previous one (a chain of n adds); independent lanes hide that latency, and a
 * fixed-width inner loop is what a compiler turns into vector registers. Inline, so each caller
 * is vectorised for the instruction set it is compiled for. */
#define DOT_MAX_LANES 16
static inline float dot_lanes(const float *a, const float *b, int n, int lanes)
{
    float acc[DOT_MAX_LANES] = {0};
    int i = 0;
    for (; i + lanes <= n; i += lanes)
        for (int l = 0; l < lanes; l++)
            acc[l] += a[i + l] * b[i + l];
    float sum = 0.0f;
    for (; i < n; i++)
        sum += a[i] * b[i];
    for (int l = 0; l < lanes; l++)
        sum += acc[l];
    return sum;
}

/* Causal attention of one query head (attention.c). attention_row: the row at position p, q (HS),
 * the kv head's keys and values (at least p + 1 positions, HS each), out (HS), scores (p + 1)
 * scratch.
 * attention_run: n rows at positions p0 .. p0+n-1 of one sequence, row i's q, out and scores
 * (p0 + n) at q_stride, out_stride and score_stride floats from the previous row's; for runs of
 * at least attention_run_min_rows() rows (INT_MAX without BLAS). The two agree up to rounding. */
void attention_row(float *out, const float *q, const float *keys, const float *values, int p, int head_size,
                   float *scores);
void attention_run(float *out, int out_stride, const float *q, int q_stride, const float *keys, const float *values,
                   int p0, int n, int head_size, float *scores, int score_stride);
int attention_run_min_rows(void);

/* The largest of x (n >= 1), as run.c's loop finds it, in 8 lanes that vectorise: every lane
 * starts at x[0] and takes only larger values, so NaNs are skipped unless x[0] is one, as in
 * run.c's loop; a lane may hold -0 where the loop has +0 or the reverse, which changes no
 * x[i] - max. Inline, so each caller is vectorised for the instruction set it is compiled for. */
#define MAX_LANES 8
static inline float max_lanes(const float *x, int n)
{
    float lane[MAX_LANES];
    for (int l = 0; l < MAX_LANES; l++)
        lane[l] = x[0];
    int i = 0;
    for (; i + MAX_LANES <= n; i += MAX_LANES)
        for (int l = 0; l < MAX_LANES; l++)
            lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    float max = lane[0];
    for (int l = 1; l < MAX_LANES; l++)
        if (lane[l] > max)
            max = lane[l];
    for (; i < n; i++)
        if (x[i] > max)
            max = x[i];
    return max;
}

/* o (D) = x / sqrt(mean(x^2) + 1e-5) * weight; o may alias x. */
void rmsnorm(float *o, const float *x, const float *weight, int D);

/* In place: x (n) = exp(x - max) / sum. */
void softmax(float *x, int n);

/* In place: x[i] = e^(x[i] - shift) for i < n (float subtraction, then e^ correctly rounded to
 * float but for 1 argument in 6e7, where it is 1 ulp off: exp_sum.c); returns the float sum
 * x[0] + x[1] + ... in index order. The same bits on every instruction set. */
float exp_sum(float *x, int n, float shift);
/* In place: x[i] = e^x[i] for i < n, exp_sum's e^ (the same bits as exp_sum(x, n, 0)). */
void exp_floats(float *x, int n);
/* sum over i < n of e^(x[i] - shift) in double (the subtraction too), x unchanged: each e^ within
 * about 1e-12 relative (exp_sum's series, not rounded to float), the sum in 4 lanes on AVX2.
 * Arguments are clamped to [-110, 89] as in exp_sum: a term below e^-110 (2e-48) counts as that. */
double exp_sum_double(const float *x, int n, double shift);

/* The instruction set the kernels use now (KERNEL_ISA_AUTO is never returned): the Q8_0 kernels
 * follow the same choice, so kernels_set_isa() forces both. */
KernelIsa kernels_isa(void);

/* ============================== kernels_q8 ================================================= */
/* Q8_0 products (kernels_q8.c; x86 vector kernels in kernels_q8_x86.c). A Q8_0 matrix W (N, K)
 * with group size gs (gs >= 1 divides K) is wq (N, K) int8 and ws (N, K/gs) float, row-major:
 * W[i][j] ~ wq[i][j] * ws[i][j/gs] (llama2.c runq.c's layout). Activations x (T, K) are
 * quantized the same way into xq (T, K), xs (T, K/gs). */
/* Per group of gs values: scale = max|x| / 127, q = round(x / scale) (nearest, as runq.c's
 * roundf); an all-zero group gets scale 0 and zeros (runq.c divides by zero there). */
void quantize_q8(int8_t *xq, float *xs, const float *x, int T, int K, int gs);
/* x[j] = q[j] s[(j0 + j) / gs] for j < n: columns j0 .. j0 + n - 1 of a row whose values start
 * at q - j0 and scales at s (an embedding row: j0 = 0, n = K). Inline: the int8 float path
 * (kernels_q8_x86.c) gets it compiled for AVX2. */
static inline void dequantize_q8(float *x, const int8_t *q, const float *s, int j0, int n, int gs)
{
    for (int j = 0; j < n;) { /* group by group: one scale each, no division per value */
        int g = (j0 + j) / gs, end = (g + 1) * gs - j0;
        float scale = s[g];
        for (end = end < n ? end : n; j < end; j++)
            x[j] = q[j] * scale;
    }
}
/* y (T, N) over output columns [n0, n1) only: y[t][i] = sum_g float(sum_{j in g} wq[i][j] xq[t][j]) * ws[i][g] * xs[t][g]
 * (int32 sums per group, as runq.c). Plain loops: the oracle. */
void matmul_q8_reference(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                         int T, int K, int N, int gs, int n0, int n1);
/* The same contract, fast: the best kernel for this T and CPU, single thread (the caller splits
 * [0, N) across threads). Must not allocate. */
void matmul_q8_slice(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                     int T, int K, int N, int gs, int n0, int n1);
const char *kernels_q8_name(void); /* e.g. "avx2", "avx512-vnni", "generic" */

/* Large batches as floats (AVX2 only, from outer_min_rows() rows on, where the int8 blocks ran
 * at 0.87 of the fp32 kernels, bench/NOTES.md): the quantized input dequantized and transposed
 * once per product, xt[b][j][r] = xq[16 b + r][j] xs[16 b + r][j / gs] (rows past T zero; xt
 * holds ceil(T / 16) 16 K floats, 16 being TRANSPOSED_ROWS), then each thread multiplies it by
 * its weight rows, dequantized 6 at a time. The same terms as the reference up to rounding, with
 * one float sum over K terms (kernels_q8_x86.c). */
void q8_transpose_input(float *xt, const int8_t *xq, const float *xs, int T, int K, int gs);
void matmul_q8_float_slice(float *y, const float *xt, const int8_t *wq, const float *ws, int T, int K, int N, int gs,
                           int n0, int n1);

/* The portable kernel (matmul_q8_slice's contract without tiling; also the vector kernels' path
 * for group sizes they do not take). */
void matmul_q8_generic(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K,
                       int N, int gs, int n0, int n1);
/* The vector kernels (kernels_q8_x86.c), matmul_q8_slice's contract without its tiling of large T
 * (T, K >= 1, xq in [-127, 127] as quantize_q8 makes it). Each is compiled for its own
 * instruction set: call one only where q8_avx512_available() (AVX-512 F+BW),
 * q8_avx512_vnni_available() (and VNNI) or kernels_isa_available(KERNEL_ISA_AVX2) says so. */
#ifdef KERNELS_X86
void matmul_q8_avx2(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K,
                    int N, int gs, int n0, int n1);
void matmul_q8_avx512(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K,
                      int N, int gs, int n0, int n1);
void matmul_q8_avx512_vnni(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T,
                           int K, int N, int gs, int n0, int n1);
int q8_avx512_available(void);
int q8_avx512_vnni_available(void);
void quantize_q8_avx2(int8_t *xq, float *xs, const float *x, int T, int K, int gs); /* gs % 8 == 0 */
void q8_transpose_input_avx2(float *xt, const int8_t *xq, const float *xs, int T, int K, int gs);
void matmul_q8_float_avx2(float *y, const float *xt, const int8_t *wq, const float *ws, int T, int K, int N, int gs,
                          int n0, int n1);
#endif

/* ============================== tokenizer =================================================== */
/* llama2.c's tokenizer.bin: byte-pair encoding by merge scores, and decoding.
 *
 * File format (little-endian): uint32 max_token_length, then for each id 0..V-1: float32 score,
 * int32 length, `length` bytes of the piece (no terminator). V is not stored: it comes from the
 * model, and a file with fewer or more entries than V is an error. Ids 1 and 2 are BOS and EOS.
 * In the usual vocabularies ids 3..258 are the byte pieces "<0x00>".."<0xFF>". */


#define TOKEN_BOS 1
#define TOKEN_EOS 2

typedef struct LxTokenizer Tokenizer; /* defined in tokenizer.c */

/* Load a tokenizer of exactly vocab_size entries (0: as many as the file holds, for tools that
 * have no model at hand). NULL on error with a message naming path. */
Tokenizer *tokenizer_open(const char *path, int vocab_size, LxError *err);
/* The same from memory (the file's bytes; copied). `name` is used in messages. */
Tokenizer *tokenizer_parse(const void *data, size_t size, int vocab_size, const char *name, LxError *err);
void tokenizer_free(Tokenizer *t); /* NULL is fine */

int tokenizer_vocab_size(const Tokenizer *t);
const char *tokenizer_path(const Tokenizer *t); /* the file it was read from (or the name given) */
/* The piece of id (raw bytes, NUL-terminated copy), and its length. */
const char *tokenizer_piece(const Tokenizer *t, int id);
int tokenizer_piece_length(const Tokenizer *t, int id);
float tokenizer_score(const Tokenizer *t, int id);

/* Encode UTF-8 text. Writes at most max_tokens ids into tokens and the count into *n_tokens.
 * bos: prepend BOS; eos: append EOS. Returns -1 with a message if the text has a character the
 * vocabulary cannot represent (no piece and no byte fallback) or max_tokens is too small
 * (strlen(text) + 3 is always enough). */
int tokenizer_encode(const Tokenizer *t, const char *text, int bos, int eos, int *tokens,
                     int max_tokens, int *n_tokens, LxError *err);

/* The pieces that spell exactly the bytes[0..n) (which may hold NUL), for a text that is a part
 * of a longer one (the union vocabulary's feeding back, vocab.c): no BOS, no dummy prefix, no
 * EOS; merges as above; a byte with no piece and no byte token becomes the id unknown, which
 * merges with nothing, and *n_unknown counts them. n + 1 ids always suffice. */
int tokenizer_encode_bytes(const Tokenizer *t, const char *bytes, size_t n, int unknown, int *tokens,
                           int max_tokens, int *n_tokens, int *n_unknown, LxError *err);

/* The text to print for `token` following `prev`: strips the leading space after BOS, turns
 * "<0xXX>" into that byte, and returns "" for a single byte that is an ASCII control character
 * other than whitespace (bytes >= 0x80 are kept: they are parts of UTF-8 characters).
 * The result points into the tokenizer (valid until tokenizer_free). */
const char *tokenizer_decode(const Tokenizer *t, int prev, int token);

/* 1 if a and b have identical pieces (and sizes); otherwise 0 and, in why, the first difference. */
int tokenizer_same(const Tokenizer *a, const Tokenizer *b, char why[LX_ERROR_LENGTH]);

/* ============================== sampler ===================================================== */
/* the seeded generator, the sampling transform S(p), and the draw.
 *
 * S maps a member's logits to the distribution a token is drawn from, in this order:
 *   1. temperature: p = softmax(logits / T); T = 0 means greedy (a one-hot at the argmax,
 *      lowest id on ties);
 *   2. top-k: keep the k most probable tokens (k = 0: off);
 *   3. top-p (nucleus): of what is left, sorted by probability, keep the shortest prefix whose
 *      mass exceeds p (p >= 1: off);
 *   4. min-p: drop tokens below min_p times the largest probability (0: off);
 * then renormalise. Ties in sorting are broken by the lower id, so S is a function.
 *
 * sampler_sample() draws from S(p) with one coin from the generator, exactly as llama2.c's
 * run.c does when top-k and min-p are off (same generator, same top-p procedure), so a seed
 * reproduces run.c's output token for token. sampler_transform() returns the vector S(p) itself,
 * which the ensemble and the tests use. */


/* llama2.c's xorshift64* generator. State 0 is a fixed point, so rng_seed(0) uses the constant
 * 0x9E3779B97F4A7C15 instead (every other seed is the state as given). */
typedef struct {
    uint64_t state;
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint32_t rng_u32(Rng *r);   /* upper 32 bits of the xorshift64* output */
float rng_float(Rng *r);    /* (u32 >> 8) / 16777216: uniform in [0, 1) */

/* temperature (0 = greedy), top_k (0 = off), top_p (>= 1 = off), min_p (0 = off). */
typedef LxSamplerParams SamplerParams;

/* Defaults: temperature 1, top-k off, top-p 0.9 (llama2.c's run default), min-p off. */
SamplerParams sampler_defaults(void);

/* Check ranges: T >= 0 and finite, top_k >= 0, 0 < top_p and finite, 0 <= min_p < 1 (NaN fails).
 * On failure err gets one line such as "temperature must be >= 0 and finite, got nan". */
int sampler_params_check(const SamplerParams *p, LxError *err);

typedef struct {
    SamplerParams params;
    int vocab_size;
    float *probs;   /* (V) scratch */
    void *sorted;   /* (V) scratch (probability, id) pairs */
} Sampler;

int sampler_init(Sampler *s, int vocab_size, SamplerParams params, LxError *err);
void sampler_free(Sampler *s); /* safe on a zeroed Sampler */

/* probs (V) = S(softmax(logits)), normalised to sum 1. logits is not modified (probs may be the
 * same array). Exactly the distribution sampler_sample() draws from: both use one kept list. */
void sampler_transform(Sampler *s, const float *logits, float *probs);

/* Draw a token from S(softmax(logits)) using exactly one rng_float coin (none when greedy).
 * Matches llama2.c run.c when top_k and min_p are off (top_p <= 0 then also means off, as in
 * run.c). Where run.c misbehaves we choose: top_p < 1/V with a flat distribution (run.c reads out
 * of bounds) keeps the top token; logits / T overflowing (run.c: NaNs) acts as T -> 0.
 * *prob (if prob is not NULL) gets the token's probability under S (1 when greedy). */
int sampler_sample(Sampler *s, const float *logits, Rng *rng, float *prob);

/* Draw from an explicit distribution probs (n) with a coin in [0, 1): the first index whose
 * cumulative mass exceeds coin (the last index with nonzero mass if rounding leaves it short). */
int sample_from_probs(const float *probs, int n, float coin);

/* Index of the largest value, lowest index on ties. */
int argmax(const float *x, int n);

/* ============================== vocab ======================================================= */
/* the union vocabulary U of members whose tokenizers differ, each member's map into it, and the
 * rule that feeds a union token back to every member (vocab.c, which says why ME stays exact).
 * U ids: 0 the unknown symbol, 1 end of text, 2 reserved (never mass), 3.. the distinct decoded
 * piece strings, in order of first appearance (member 0's ids first). */

#define VOCAB_UNKNOWN 0
#define VOCAB_END 1
#define VOCAB_RESERVED 2

typedef struct {
    int k;              /* members */
    int size;           /* |U| */
    char **strings;     /* (|U|) each u's bytes, NUL-terminated (may hold NUL: see lengths) */
    int *lengths;       /* (|U|) */
    int **to_union;     /* (k, V_k) member id -> u */
    int **feed;         /* (k) member k's ids for every u, concatenated */
    int **feed_at;      /* (k, |U| + 1) u's ids are feed[k][feed_at[k][u] .. feed_at[k][u + 1]) */
    int **feed_unknown; /* (k, |U|) how many of them are the member's unknown id */
    int **single;       /* (k, |U|) the member's one piece spelling exactly u, or -1 */
    char *text;         /* storage of the strings */
    size_t text_used;
    int *table;         /* hash of strings -> u, open addressing, -1 empty */
    size_t table_mask;
} Vocab;

/* Build U and every member's feeding-back encodings from k tokenizers. On failure *v is zeroed. */
int vocab_init(Vocab *v, const Tokenizer *const *toks, int k, LxError *err);
void vocab_free(Vocab *v); /* safe on a zeroed Vocab */
/* q (|U|) += w p mapped: q[to_union[k][i]] += w p[i] for i < V (member k's V). */
void vocab_add(const Vocab *v, int k, const float *p, int V, float w, float *q);
/* Member k's ids for u, and their count. */
static inline const int *vocab_feed(const Vocab *v, int k, int u, int *n)
{
    *n = v->feed_at[k][u + 1] - v->feed_at[k][u];
    return v->feed[k] + v->feed_at[k][u];
}
/* The text to print for u after prev (tokenizer_decode's rules); points into v. */
const char *vocab_text(const Vocab *v, int prev, int u);

/* ============================== ensemble ==================================================== */
/* K members, one shared token sequence, and the two ways to sample from the mixture.
 *
 *   CE (conventional ensemble): every step runs every member and draws the next token from
 *        q = sum_k w_k S(p_k).
 *   ME (mixture-model-like ensemble): every step draws one member k ~ Categorical(w) and then a
 *        token from S(p_k). Marginally that token has distribution sum_k w_k S(p_k) = q, exactly
 *        CE's, but only member k ran. A member that sat idle catches up when it is next picked:
 *        ensemble_sync() runs all the tokens it has not seen in one batched forward.
 *   CE-mixture: mixes the raw p_k first and applies temperature/top-k/top-p to the mixture, as the
 *        paper's own code does. A different distribution: it equals CE and ME only at T = 1
 *        without truncation. With top-k > 0 the mixture is first restricted to the union of the
 *        members' top-k tokens and renormalised (the paper's code again); with a union vocabulary
 *        and top-k > 0 the paper's code is CE-unite.
 *   CE-unite (UniTE-style, the paper's baseline for different vocabularies): the union X of every
 *        member's top-k tokens (k from top-k, else 10); member k scores u in X by the sum of its
 *        p_k over the ids spelling u, or, lacking u, by p_k of the first id of feed(k, u); each
 *        member's scores are renormalised over X, mixed with the weights, and S applied.
 * Different vocabularies (e->vocab): the sequence holds union ids; every member keeps its own ids
 * (Member.tokens), and CE maps each S(p_k), taken in the member's own vocabulary, into U (vocab.c
 * says why ME stays exact). Routers key on one vocabulary's ids and are refused there.
 * Greedy (T = 0): CE takes the argmax of the mixture; ME can only take the argmax of the member
 * it picked, which is not CE's greedy output.
 *
 * Routing (the weights above are its simplest case). Let a router give weights r(x_<=t) (K,
 * summing to 1) that are a function of the token history only, never of the members' outputs
 * at step t. Then ME that picks k ~ r(x_<=t) and draws from S(p_k) samples exactly from
 *     q(x) = sum_k r_k(x_<=t) S(p_k)(x),
 * which CE computes by running every member: P(x | x_<=t) = sum_k P(k | x_<=t) P(x | k, x_<=t),
 * and both modes condition on the same history, so by the chain rule whole sequences agree too.
 * Fixed weights are the constant router r = w. ME keeps its cost, one member per token, for every
 * such router; weights that read the members' outputs at step t would need every member run
 * before the pick, which is CE's cost. So every step asks e->router for its weights (e->route)
 * and CE mixes, ME picks and ce-mixture mixes with them; nothing here special-cases fixed
 * weights. The routers are in the router section below. */


typedef LxMode EnsembleMode;
typedef LxEnsembleParams EnsembleParams;

typedef struct {
    const Model *model;
    ForwardState state;
    int n_seen;          /* tokens of the shared sequence already in this member's KV cache */
    float *logits;       /* (V) next-token logits after the last sync */
    long forward_calls;  /* counters */
    long tokens_processed;
    /* Only when the members' vocabularies differ (e->vocab set): */
    const Tokenizer *tokenizer; /* the member's own */
    Sampler sampler;     /* S in the member's own vocabulary */
    int *tokens;         /* (n_ctx) its own ids: its prompt, then feed(k, u) of every union token */
    int n_tokens;
    long unknown;        /* unknown ids it received by feeding back */
    /* A member whose forward runs elsewhere (another MPI rank): ensemble_set_remote. */
    const struct RemoteForward *remote;
    void *remote_user;
    int remote_started;  /* its forward of the pending tokens is under way (started, not finished) */
} Member;

/* A remote member's forward, in two halves so that several can run at once (CE starts every
 * remote member's before computing the local ones): start sends forward(tokens (n), at position
 * pos), finish waits for the logits (V) of its last row. Both return 0 or nonzero with a
 * message. The model is then a shell: its config and path only (data NULL, no KV cache here). */
typedef struct RemoteForward {
    int (*start)(void *user, int member, const int *tokens, int n, int pos, LxError *err);
    int (*finish)(void *user, int member, float *logits, LxError *err);
} RemoteForward;

struct LxEnsemble {
    int k;                /* number of members */
    Member *members;      /* (k) */
    double *weights;      /* (k) normalised to sum 1 (with a router: its fixed weights) */
    const LxRouter *router; /* the weights of each step: params.router, or own_router */
    LxRouter *own_router; /* the constant router of weights, when none was given */
    double *route;        /* (k) the router's weights for the current step */
    EnsembleParams params; /* as given, with weights = the normalised ones and threads resolved */
    const Tokenizer *tokenizer; /* shared by the members; NULL when built for token ids only */
    int vocab_size;       /* V, shared */
    int n_ctx;            /* usable context */
    int *tokens;          /* (n_ctx) the shared sequence */
    int n_tokens;
    Sampler sampler;
    Rng token_rng;        /* coins for tokens */
    Rng member_rng;       /* coins for ME's member choice: its own stream */
    float *probs;         /* (V) scratch: S(p_k) */
    float *mix;           /* (V) scratch: the mixture */
    Vocab *vocab;         /* the union vocabulary when the tokenizers differ (then V = |U|); NULL: one */
    double map_seconds;   /* time spent mapping into U and feeding back, since the reset */
    float *values;        /* (V) scratch of the top-k modes */
    unsigned char *mark;  /* (V) scratch: the union of the members' top-k */
    void *ranked;         /* (max V_k) scratch (probability, id) pairs */
};
typedef struct LxEnsemble Ensemble;

/* Every check that spans members, in one place (lx_ensemble_new's contract): k >= 1, one
 * vocabulary size, the weights, the sampler settings, n_ctx within every member's seq_len (0:
 * the smallest), and n_tokenizers 0 (token ids only), 1, or k identical ones of the members'
 * vocabulary size. On failure *e is safe to free. */
int ensemble_init(Ensemble *e, const Model *const *models, int k, const Tokenizer *const *tokenizers,
                  int n_tokenizers, const EnsembleParams *params, LxError *err);
void ensemble_free(Ensemble *e);

/* Check weights (k of them, each finite and > 0, with a finite sum) and write them normalised
 * to sum 1 into out (which may be in). NULL in: uniform. The one weight check of the library. */
int weights_normalise(const double *in, int k, double *out, LxError *err);

/* The longest context every member supports: the smallest seq_len. */
int models_context(const Model *const *models, int k);

/* Append tokens to the shared sequence (no forward runs here). LX_ERR_CONTEXT if full. With a
 * union vocabulary the tokens are union ids and every member gets feed(k, u) of each. */
int ensemble_append(Ensemble *e, const int *tokens, int n, LxError *err);
/* 1 if token can still be appended without filling any member's context. */
int ensemble_fits(const Ensemble *e, int token);
/* Union vocabulary only: reset, then give each member text encoded by its own tokenizer (BOS,
 * dummy prefix); the union sequence becomes member 0's prompt mapped into U. */
int ensemble_prompt(Ensemble *e, const char *text, LxError *err);
/* The text of token after prev: the tokenizer's, or the union string's. */
const char *ensemble_text(const Ensemble *e, int prev, int token);

/* Bring member i up to date: one batched forward over every token it has not seen (classifier on
 * the last row only). Returns its next-token logits (V), or NULL with a message. */
const float *ensemble_sync(Ensemble *e, int i, LxError *err);

/* The logits (V) a forward gave for position pos, into mb->logits (logits may be mb->logits);
 * LX_ERR_FILE with a message if any is not finite. */
int member_take_logits(Member *mb, const float *logits, int pos, LxError *err);

/* One step in the ensemble's mode: the next token into *token (not appended); *member gets ME's
 * pick (-1 for CE), *prob the token's probability under the distribution drawn from. member and
 * prob may be NULL. */
int ensemble_step(Ensemble *e, int *token, int *member, float *prob, LxError *err);

/* The members the next ensemble_step will sync, into members (k), without using a coin: ME's
 * pick (or the one member), or every member. Returns how many, or -1 with a message. */
int ensemble_plan(Ensemble *e, int *members, LxError *err);

/* The exact next-token distribution of the mode for the current sequence (syncs every member):
 * sum_k w_k S(p_k) for CE and ME (they are the same), S(sum_k w_k p_k) for CE-mixture.
 * Greedy settings give the one-hot of the token CE would take. q is (V). */
int ensemble_distribution(Ensemble *e, float *q, LxError *err);

/* Reset the sequence and every member's cache and counters (the models stay loaded); the random
 * streams go on. ensemble_seed restarts both streams from seed. */
void ensemble_reset(Ensemble *e);
void ensemble_seed(Ensemble *e, uint64_t seed);
/* Member i's forward runs elsewhere from now on (ops and user outlive e); its KV cache here is
 * freed. Everything else, the sequence, the streams and the sums, stays here, in the same order,
 * so the tokens are exactly those of a run with every member local. */
void ensemble_set_remote(Ensemble *e, int i, const RemoteForward *ops, void *user);

/* ============================== generate ==================================================== */
/* one generation in progress (generate.c): the stop conditions, the stop strings' held-back text
 * and the per-token events, for lx_generate_tokens() and for each sequence of a batch alike. */

/* The generated text not yet released: at most the longest stop string plus one token's text. */
typedef struct {
    char *text;
    size_t length, capacity;
    size_t reserve; /* what the first token allocates: the longest stop string and one token's text */
} Pending;

typedef struct {
    LxGenerateParams params; /* stop strings borrowed */
    LxTokenCallback callback;
    void *user;
    LxGenerateStats stats;
    Pending pending;
    int prev;                /* the last token of the sequence, for decoding the next */
    double start, first, last; /* clock at the start, at the first and at the latest token */
    int done;                /* 1 once a stop condition holds: draw no more tokens */
    int distribution;        /* 1: events carry the distribution drawn from (batch sequences) */
} Generation;

/* Check the prompt (1..n_ctx tokens) and the stop strings, and start the clock. */
int generation_begin(Generation *g, const int *prompt, int n_prompt, int n_ctx, const LxGenerateParams *params,
                     LxTokenCallback callback, void *user, LxError *err);
/* A token e drew (member, prob as ensemble_step gives them): end of text, or hand its text to
 * the callback and append it to e; g->done tells whether the generation is over. Nonzero on
 * an error. */
int generation_token(Generation *g, Ensemble *e, int token, int member, float prob, LxError *err);
/* The final release of held-back text (when status is LX_OK), the times, *stats (may be NULL). */
void generation_end(Generation *g, LxStatus status, LxGenerateStats *stats);

/* ============================== batch ======================================================= */
/* many sequences over one ensemble's members, one token each per step (batch.c).
 *
 * Each sequence is an Ensemble of its own (its token sequence, sampler, random streams, and per
 * member a cache-only ForwardState) and a Generation. A step asks every active sequence which
 * members its next draw needs (ensemble_plan), runs each such member once, by forward_spans over
 * the pending rows of all the sequences that need it (a newcomer's whole prompt beside the
 * others' one-token decodes), and then lets every sequence draw: its members are synced, so
 * ensemble_step runs no forward of its own. Sequences wait in a FIFO queue for a free slot; a
 * slot's states are made on first use and reused by the next sequence (the pool). A sequence may
 * bring its own mode, weights and sampler (lx_batch_add_sequence): the slot's ensemble takes them
 * when the sequence is admitted (slot_configure), so one batch serves requests of every kind. */

typedef struct {
    Ensemble e;         /* the sequence's ensemble; members hold cache-only states */
    Generation g;
    int id;             /* the sequence in it, or -1 when the slot is free */
    int made;           /* e is initialised */
    struct {            /* this step's draw, made on the threads, handed on in slot order */
        int status, token, member;
        float prob;
        LxError err;
    } draw;
} BatchSlot;

typedef struct {
    int id;
    int *prompt, n_prompt; /* a copy */
    uint64_t seed;
    LxGenerateParams params;
    LxTokenCallback callback;
    void *user;
    LxMode mode;           /* the sequence's own settings (lx_batch_add_sequence) */
    LxSamplerParams sampler;
    double *weights;       /* (k) a copy, or NULL: the batch's */
    int distribution;
} BatchRequest;

typedef struct {
    int id;
    LxGenerateStats stats;
} BatchDone;

struct LxBatch {
    Ensemble engine;      /* the checks, the settings, and per member the work state (scratch) */
    EnsembleParams params; /* as given (the sequences' ensembles are made from them), weights copied */
    double *weights;      /* (k) the weights as given, or NULL */
    int n_tokenizers;     /* 0 or 1 */
    int max_active;
    BatchSlot *slots;     /* (max_active) */
    BatchRequest *queue;  /* waiting: queue[queue_head..n_queue), oldest first */
    int queue_head, n_queue, cap_queue;
    BatchDone *done;      /* ended, not yet collected: done[done_head..n_done), oldest first */
    int done_head, n_done, cap_done;
    int next_id;
    ForwardSpan *spans;   /* (max_active) scratch of one member's forward */
    int *span_slot;       /* (max_active) the slot of each span */
    int *plan;            /* (max_active, k) members each slot's next draw needs; */
    int *n_plan;          /* (max_active) how many */
    float *logits;        /* (k, max_active, V): member i's rows of a step from i * max_active * V */
    int *logit_row;       /* (max_active, k): the row of slot s's logits from member i this step, or -1 */
    long *calls, *rows;   /* (k) per member: batched forward calls, rows run */
};
typedef struct LxBatch Batch;

/* ============================== score ======================================================= */
/* how well each member, and their mixture, predicts a text; and the mixture weights
 * that predict it best.
 *
 * CE and ME sample from the same distribution q(x) = sum_k w_k p_k(x) (at temperature 1 without
 * truncation), so they have one perplexity between them: the ensemble's log-likelihood of a token
 * x is log sum_k w_k p_k(x). Computing it needs every member's p_k(x), so scoring always runs
 * every member over the whole text; ME's saving is in sampling, not here.
 *
 * Windows (non-overlapping): the tokenised text is BOS x_1 x_2 ... x_N. It is cut into windows of
 * at most `context` tokens, each BOS followed by up to context - 1 text tokens:
 *     BOS x_1 .. x_{C-1} | BOS x_C .. x_{2C-2} | ...        (C = context)
 * and every text token is scored exactly once, given BOS and the earlier tokens of its own window.
 * A token early in a window sees little context, so these numbers are a little worse than a
 * sliding window's; in exchange each token is run through each model exactly once. All members
 * use the same windows, so their per-token probabilities refer to the same prefixes and can be
 * mixed token by token.
 *
 * What is kept: one number per (member, token), log p_k(x_t | window prefix), in a ScoreTable.
 * Memory is tokens x members, never tokens x vocabulary; the ensemble's likelihood for any
 * weights, and the EM fit of the weights, are computed from the table without running a model
 * again. */



/* The most members a table holds (the functions below keep per-member scratch on the stack). */
#define SCORE_MAX_MEMBERS 64

/* log p_k(x_t) for K members and N scored tokens. The functions that take a table assume it
 * came from score_table_init (1 <= K <= SCORE_MAX_MEMBERS, N >= 1). */
typedef struct {
    int k;        /* K members */
    long n;       /* N tokens scored */
    double *logp; /* (K, N): logp[i * n + t] = log p_i(token t + 1 of the text | its window) */
} ScoreTable;

/* Allocate a K x N table (zeroed). On failure *t is safe to pass to score_table_free. */
int score_table_init(ScoreTable *t, int k, long n, LxError *err);
void score_table_free(ScoreTable *t); /* safe on a zeroed table */


typedef struct {
    int context;            /* window length in tokens, BOS included; >= 2, <= the model's seq_len */
    int max_batch;          /* rows per forward call (the logits buffer is max_batch x V); 0 = default */
    int threads;            /* 0: the default */
    LxScoreProgress progress; /* may be NULL */
    void *user;             /* passed to progress */
    int member;             /* passed to progress: which member this is */
} ScoreOptions;

/* Tokens scored per window: context - 1. Windows needed for a text of n tokens (BOS included). */
long score_windows(long n, int context);

/* Score one member: tokens (n) is the tokenised text with tokens[0] == BOS, n >= 2; writes
 * logp[t] = log p(tokens[t + 1] | BOS and the earlier tokens of its window) for t < n - 1.
 * Runs forward() with all rows' logits, max_batch rows at a time, and keeps only the one
 * log-softmax value per row that is needed (computed in double, stable). */
int score_member(const Model *m, const int *tokens, long n, const ScoreOptions *options,
                 double *logp, LxError *err);

/* Mean negative log-likelihood, in nats per token, of member i: -(1/N) sum_t logp[i][t]. */
double score_member_nll(const ScoreTable *t, int i);

/* The ensemble's mean NLL for weights w (K, summing to 1; zeros allowed):
 *     -(1/N) sum_t log sum_k w_k exp(logp[k][t])        (log-sum-exp, so nothing underflows).
 * By Jensen (log is concave) it is at most sum_k w_k * score_member_nll(t, k). */
double score_ensemble_nll(const ScoreTable *t, const double *w);

/* One token's log sum_k w_k p_k(x_t) (t's column j), stable; resp (K), if not NULL, gets the
 * responsibilities w_k p_k(x_t) / sum. Members with w_k = 0 take no part. */
double score_log_mixture(const ScoreTable *t, const double *w, long j, double *resp);

/* A series of per-token losses l(t) = -log p(x_t): member i's (i >= 0), or the ensemble's for
 * weights w (i == SCORE_ENSEMBLE). score_nll_stats gives the mean of l_a(t), or with b >= 0 or
 * b == SCORE_ENSEMBLE of the paired difference l_a(t) - l_b(t), and its standard error
 * sd / sqrt(N), sd the sample standard deviation (divisor N - 1, two passes); se is NaN for
 * N < 2. The SE treats tokens as independent draws, which tokens of one text are not quite. */
#define SCORE_ENSEMBLE (-1)
#define SCORE_NONE (-2)
double score_nll_stats(const ScoreTable *t, int a, int b, const double *w, double *se);

/* Perplexity exp(nll) and bits per token nll / ln 2. */
double score_perplexity(double nll);
double score_bits(double nll);

/* The result of fitting the weights: iterations, converged, nll. */
typedef LxScoreFit ScoreFit;

/* Maximum-likelihood mixture weights by EM, starting from uniform. One step is
 *     r_k(t) = w_k p_k(x_t) / sum_j w_j p_j(x_t)        (responsibility of member k for token t)
 *     w_k   <- (1/N) sum_t r_k(t)
 * Stops when a step improves the mean NLL by at most tol (nats per token), or after max_iter
 * steps. The NLL never increases from one step to the next (see score.c). Writes the weights to
 * w (K). If trace is not NULL it receives the NLL before each step and after the last one:
 * fit->iterations + 1 values, so it must hold max_iter + 1. */
int score_fit_weights(const ScoreTable *t, double *w, int max_iter, double tol, double *trace,
                      ScoreFit *fit, LxError *err);

/* Read a whole text file ("-" is standard input) into a malloc'd NUL-terminated string; *length
 * gets its size. Fails, naming the file, if it is missing, unreadable, a directory, empty, has a
 * NUL byte, or is too large to tokenise. The caller frees the result. */
char *score_read_text(const char *path, size_t *length, LxError *err);

/* What a score keeps besides the table, for routing (router.c): the tokens (BOS first, N + 1 of
 * them: scored token j is tokens[j + 1]), the window length C and the vocabulary size V. */
typedef struct {
    const ScoreTable *table;
    const int *tokens;
    int context;
    int vocab_size;
} ScoreView;
ScoreView score_view(const LxScore *s);
/* The score of a table filled elsewhere (members scored by other processes, src/cli/mpi.c), as
 * lx_score_text would have made it: takes over t's rows (t is zeroed) and tokens (N + 1, BOS
 * first, malloc'd). NULL when out of memory (t and tokens are then still the caller's). */
LxScore *score_adopt(ScoreTable *t, int *tokens, int context, int vocab_size);

/* ============================== router ====================================================== */
/* member weights from the token history (the theorem that keeps ME exact is in the ensemble
 * section): the interface, the constant router, the previous-token router and its EM fit, and
 * the router file.
 *
 * A router is a kind (RouterOps) and its parameters, read-only once made. A new router (say a
 * logistic model on hashed n-gram features) is one new file: a RouterOps with its weights()
 * function, how many parameters a router of K and V has, and their check on loading; a kind
 * number in the file; and a line in router.c's table of kinds. Ensembles, scoring and the file
 * code then work with it unchanged.
 *
 * Router file (host byte order, like the checkpoints), version 1:
 *     uint32 magic 0x54524c58 ("XLRT"), uint32 version 1, uint32 kind (1: previous-token),
 *     int32 K (1..64), int32 V (1..2^24), uint32 0,
 *     float64 alpha (finite, >= 0), float64 w[K] (finite, >= 0, summing to 1 within 1e-4),
 *     float32 params[n]: the previous-token table (V, K), each entry finite and >= 0, each row
 *     summing to 1 within 1e-4.
 * Loading checks the size against the file exactly, with overflow-checked arithmetic, and
 * renormalises the weights and each row in double. */

#define ROUTER_MAGIC 0x54524c58u
#define ROUTER_VERSION 1
#define ROUTER_MAX_VOCAB (1 << 24)
#define ROUTER_ROW_TOLERANCE 1e-4

typedef struct LxRouter Router;

typedef struct {
    const char *name;   /* "constant", "previous-token" */
    uint32_t kind;      /* in the file; 0: not saved */
    /* w (K) = r(tokens[0..n)) for n >= 1, ids in 0..V-1 (the caller checks). Reads nothing but
     * the router and the history, so any number of threads may call it at once. */
    void (*weights)(const Router *r, const int *tokens, int n, double *w);
    /* Parameters a router of r->k and r->vocab_size has; -1 on overflow. */
    int (*n_params)(const Router *r, size_t *n);
    /* Check loaded parameters and normalise them; the message does not name the file. */
    int (*check)(Router *r, LxError *err);
} RouterOps;

struct LxRouter {
    const RouterOps *ops;
    int k;              /* K members */
    int vocab_size;     /* V it keys on; 0: any */
    double *weights;    /* (K) the fixed weights, summing to 1 */
    double alpha;       /* the prior strength a table was fitted with; 0 for the constant router */
    double *params;     /* (n_params) the kind's parameters: the previous-token table (V, K) */
    size_t n_params;
    char path[256];     /* for messages: the file, or "(constant)", "(fitted)" */
};

/* The constant router of k weights w (normalised; NULL: uniform). NULL with a message. */
Router *router_constant(int k, const double *w, LxError *err);
/* The previous-token router of K, V, fixed weights w (K, summing to 1) and alpha, every row w. */
Router *router_table_new(int k, int vocab_size, const double *w, double alpha, LxError *err);
void router_free(Router *r); /* NULL is fine */
/* Row c of the previous-token table: r(. | previous token c), (K). */
static inline double *router_row(const Router *r, int c) { return r->params + (size_t)c * (size_t)r->k; }

Router *router_open(const char *path, LxError *err);
int router_save(const Router *r, const char *path, LxError *err);
/* Parse a router file's bytes; name is used in messages. */
Router *router_parse(const void *data, size_t size, const char *name, LxError *err);

/* Check that r fits an ensemble of k members over V tokens (one-line error naming r->path). */
int router_check_fit(const Router *r, int k, int vocab_size, LxError *err);

/* The penalised NLL of a previous-token table on a scored text, per token:
 *     J(r) = -(1/N) [ sum_t log sum_k r_k(c_t) p_k(x_t) + alpha sum_c sum_k w_k log r_k(c) ]
 * with c_t the token's previous token (ctx, N). The second term is the log of a Dirichlet prior
 * with parameters alpha w_k + 1 on each row: it pulls rows seen rarely toward w. */
double router_table_objective(const Router *r, const ScoreTable *t, const int *ctx);

/* EM for the table, from the table r holds (usually every row w): each step
 *     g_tk   = r_k(c_t) p_k(x_t) / sum_j r_j(c_t) p_j(x_t)           (E: responsibilities)
 *     r_k(c) = (sum_{t: c_t = c} g_tk + alpha w_k) / (n_c + alpha)    (M)
 * never raises J (router.c has the proof); rows with n_c + alpha = 0 stay as they are. Stops
 * when a step lowers J by at most tol, or after max_iter steps; trace (if not NULL, max_iter + 1
 * values) gets J before each step and after the last. fit->nll gets the routed NLL without the
 * prior term, fit->objective J. */
int router_fit_table(Router *r, const ScoreTable *t, const int *ctx, int max_iter, double tol,
                     double *trace, LxRouterFit *fit, LxError *err);

/* The previous tokens of a score's tokens, as routers see them: ctx[j] (N) is BOS for the first
 * token of a window, else tokens[j]. */
void router_contexts(const ScoreView *v, int *ctx);

/* Each scored token's routed weights, routes (N, K), from its window history. */
int router_routes(const Router *r, const ScoreView *v, double *routes, LxError *err);

/* -(1/N) sum_t log sum_k routes[t][k] p_k(x_t). */
double router_nll(const ScoreTable *t, const double *routes);

/* ============================== atomic files ================================================ */
/* A file written in full or not at all (atomic_file.c): open, write through f, then commit (flush,
 * fsync, rename over the target) or abort (nothing is left). bytes, when known, is checked
 * against the free space first. */
typedef struct {
    FILE *f;
    char path[4096];  /* the target */
    char temp[4096 + 64]; /* the temporary name, once it has one */
    int named;        /* temp exists on disk */
} AtomicFile;

int atomic_file_open(AtomicFile *af, const char *path, uint64_t bytes, LxError *err);
int atomic_file_commit(AtomicFile *af, LxError *err);
void atomic_file_abort(AtomicFile *af); /* safe after a failed open or commit */

#endif
