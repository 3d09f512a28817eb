/* kernels.c: the numeric building blocks of the forward pass: the matrix product in its three
 * forms (scalar reference, weight-streaming, BLAS), the threaded dispatcher that picks one, and
 * rmsnorm and softmax. The streaming kernels for x86's wide vectors are in kernels_x86.c; the
 * portable one, and the run-time choice between them, are here.
 *
 * Shapes: x (T, K) holds T input rows, W (N, K) one row per output, y (T, N) = x W^T, that is
 * y[t][i] = sum_j W[i][j] x[t][j]. Every kernel below works on the output rows [n0, n1), so the
 * dispatcher can hand each thread contiguous chunks of W.
 *
 * Why two fast kernels. For small T (decode is T = 1, ME's catch-up T = 2..8) the product is
 * memory-bound: each weight is used T times per load, and the weights (tens to hundreds of MB) do
 * not fit in cache, so the time is bytes of W / memory bandwidth. The streaming kernel reads each
 * weight row once and dots it with all T input rows while it is in L1, so T = 2..8 cost little
 * more than T = 1. BLAS sgemm packs its operands into cache-sized panels first; that costs a copy
 * of W, which pays off only once T is large enough for the multiply to dominate, and only if the
 * streaming kernel is much slower at multiplying than BLAS. The crossover depends on the
 * instruction set (BLAS_MIN_ROWS_* below): with AVX-512 the streaming kernels (dot-product
 * blocks for small T, outer products from 16 rows on) are used throughout. */
#include "config.h"
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#ifdef HAVE_CBLAS
#include <cblas.h>
#endif

/* ------------------------------------------------------------------------------ reference */

/* y (T, N), x (T, K), W (N, K); output rows [n0, n1). One float accumulator summed in order
 * j = 0..K-1, as llama2.c's matmul: the oracle the fast kernels are tested against. */
void matmul_reference(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * K;
        for (int i = n0; i < n1; i++) {
            const float *wi = w + (size_t)i * K;
            float sum = 0.0f;
            for (int j = 0; j < K; j++)
                sum += wi[j] * xt[j];
            y[(size_t)t * N + i] = sum;
        }
    }
}

/* ------------------------------------------------------------------------------ streaming */

/* Input rows per tile (matmul_stream): half of this machine's 1 MB L2, the best of the sizes
 * tried (bench/NOTES.md, tile size). */
#define STREAM_TILE_BYTES (512 * 1024)

/* --- Portable C: one weight row at a time, dotted with each input row in turn (the row stays in
 * L1), each dot product kept as 8 partial sums. Eight independent chains hide the add latency
 * (one running sum would wait on each add in turn), and the fixed-width inner loop is easy for a
 * compiler to vectorise. (Blocks of 4 weight rows, as in the wide kernels, lose here:
 * bench/NOTES.md, portable kernel.) */
#define GENERIC_LANES 8

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). */
static void stream_generic(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    for (int i = n0; i < n1; i++)
        for (int t = 0; t < T; t++)
            y[(size_t)t * N + i] = dot_lanes(w + (size_t)i * K, x + (size_t)t * K, K, GENERIC_LANES);
}

/* --- Run-time choice of instruction set. The default build targets plain x86-64, so the wide
 * variants are compiled per function (target attributes, kernels_x86.c) and picked by asking the
 * CPU. The choice is process-wide, since it describes the CPU, not a caller. It is made lazily,
 * by the first call that needs it (a product, kernels_isa_name, kernels_blas_min_rows), and kept;
 * kernels_set_isa() replaces it (tests, the bench). Atomic because that first call may come from
 * several threads at once; they all compute the same answer. */
static atomic_int isa_in_use = KERNEL_ISA_AUTO; /* AUTO until first use */

int kernels_isa_available(KernelIsa isa)
{
    switch (isa) {
    case KERNEL_ISA_GENERIC:
        return 1;
#ifdef KERNELS_X86
    case KERNEL_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KERNEL_ISA_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

static KernelIsa best_isa(void)
{
    if (kernels_isa_available(KERNEL_ISA_AVX512))
        return KERNEL_ISA_AVX512;
    if (kernels_isa_available(KERNEL_ISA_AVX2))
        return KERNEL_ISA_AVX2;
    return KERNEL_ISA_GENERIC;
}

/* Forcing an instruction set this CPU lacks gets the best one it has instead. */
void kernels_set_isa(KernelIsa isa)
{
    atomic_store(&isa_in_use, isa != KERNEL_ISA_AUTO && kernels_isa_available(isa) ? isa : best_isa());
}

static KernelIsa current_isa(void)
{
    KernelIsa isa = atomic_load(&isa_in_use);
    if (isa == KERNEL_ISA_AUTO) {
        isa = best_isa();
        atomic_store(&isa_in_use, isa);
    }
    return isa;
}

KernelIsa kernels_isa(void) { return current_isa(); }

const char *lx_kernel_name(void) { return kernels_isa_name(); }

const char *kernels_isa_name(void)
{
    switch (current_isa()) {
    case KERNEL_ISA_AVX512: return "avx512";
    case KERNEL_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

/* y (T, N) = x (T, K) W^T for output rows [n0, n1), W (N, K); single-threaded. */
void matmul_stream(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    typedef void StreamFn(float *, const float *, const float *, int, int, int, int, int);
    StreamFn *stream = stream_generic;
#ifdef KERNELS_X86
    KernelIsa isa = current_isa();
    stream = isa == KERNEL_ISA_AVX512 ? matmul_stream_avx512 : isa == KERNEL_ISA_AVX2 ? matmul_stream_avx2 : stream_generic;
#endif
    /* Every block of weight rows meets all the input rows, so x must stay in cache (L2) while W
     * streams past. A large batch goes in tiles of input rows that fit in STREAM_TILE_BYTES; W is
     * then read once per tile, which is cheap by then since each weight serves a whole tile. */
    int tile = STREAM_TILE_BYTES / ((int)sizeof(float) * K) / 4 * 4;
    if (tile < 4)
        tile = 4;
    for (int t = 0; t < T; t += tile)
        stream(y + (size_t)t * N, x + (size_t)t * K, w, T - t < tile ? T - t : tile, K, N, n0, n1);
}

/* --- The transposed input of the outer products (kernels_x86.c, matmul_outer_avx2 and
 * matmul_outer_avx512): the forward's batches from AVX2_OUTER_MIN_T or AVX512_OUTER_MIN_T rows
 * up to BLAS's (INT_MAX where the CPU has neither). */
int outer_min_rows(void)
{
    switch (current_isa()) {
    case KERNEL_ISA_AVX2: return AVX2_OUTER_MIN_T;
    case KERNEL_ISA_AVX512: return AVX512_OUTER_MIN_T;
    default: return INT_MAX;
    }
}

/* xt[b][j][r] = x[16 b + r][j] for blocks b of 16 rows, rows past T zero. */
void transpose_input(float *xt, const float *x, int T, int K)
{
#ifdef KERNELS_X86
    if (current_isa() >= KERNEL_ISA_AVX2) { /* (every AVX-512 CPU has AVX2) */
        transpose_input_avx2(xt, x, T, K);
        return;
    }
#endif
    for (int t0 = 0; t0 < T; t0 += TRANSPOSED_ROWS) {
        float *block = xt + (size_t)t0 * K;
        int rows = T - t0 < TRANSPOSED_ROWS ? T - t0 : TRANSPOSED_ROWS;
        for (int j = 0; j < K; j++) {
            float *column = block + (size_t)j * TRANSPOSED_ROWS;
            for (int r = 0; r < rows; r++)
                column[r] = x[(size_t)(t0 + r) * K + j];
            for (int r = rows; r < TRANSPOSED_ROWS; r++)
                column[r] = 0.0f;
        }
    }
}

/* ------------------------------------------------------------------------------ BLAS */

/* y (T, N) = x (T, K) W^T for output rows [n0, n1): one sgemm on the slice. W rows n0..n1 give
 * y columns n0..n1, so C starts at y + n0 with row stride N. */
void matmul_blas(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
#ifdef HAVE_CBLAS
    if (n1 > n0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n1 - n0, K, 1.0f, x, K,
                    w + (size_t)n0 * K, K, 0.0f, y + n0, N);
#else
    matmul_stream(y, x, w, T, K, N, n0, n1);
#endif
}

int kernels_have_blas(void)
{
#ifdef HAVE_CBLAS
    return 1;
#else
    return 0;
#endif
}

/* The crossover: batches of at least this many rows go to BLAS. It depends on which streaming
 * kernel BLAS is up against, so there is one per instruction set, measured with bench/matmul_bench
 * against OpenBLAS running its AVX2 kernels (bench/NOTES.md, kernel crossover):
 *   AVX-512: BLAS never wins against the streaming kernel (up to T = 256, 1 and 2 threads) when
 *            it runs AVX2 code (Zen 5). On an Intel host where OpenBLAS runs its AVX-512
 *            (SkylakeX) kernels, the outer products from T = 16 on (matmul_outer_avx512) are
 *            ahead up to T = 128 and 3-15% behind at T = 256; kept at never, so that one
 *            kernel serves every batch on AVX-512 (bench/NOTES.md, AVX-512 outer products).
 *   AVX2:    with the outer products on one transposed copy from T = 16 on (kernels_x86.c,
 *            matmul_outer_avx2), one 110M layer's matrices take 10.2 ms at T = 128 against
 *            BLAS's 11.0 and are level at T = 192 (15.5 ms both; 2 threads); the 15M shape's
 *            are 1.2-1.4x ahead at 128 and 192, and BLAS is ahead on all from T = 256.
 *   Plain C: level at T = 4..5, BLAS ahead from 6 on. */
#define BLAS_MIN_ROWS_AVX512 INT_MAX
#define BLAS_MIN_ROWS_AVX2 192
#define BLAS_MIN_ROWS_GENERIC 6

static atomic_int blas_min_rows = 0; /* 0: the default for the instruction set in use */

int kernels_blas_min_rows(void)
{
    int rows = atomic_load(&blas_min_rows);
    if (rows > 0)
        return rows;
    switch (current_isa()) {
    case KERNEL_ISA_AVX512: return BLAS_MIN_ROWS_AVX512;
    case KERNEL_ISA_AVX2: return BLAS_MIN_ROWS_AVX2;
    default: return BLAS_MIN_ROWS_GENERIC;
    }
}

void kernels_set_blas_min_rows(int rows)
{
    atomic_store(&blas_min_rows, rows > 0 ? rows : 0);
}

/* ------------------------------------------------------------------------------ dispatcher */

/* Split a product across the threads only when there is enough to split: a parallel region costs
 * a few microseconds, as long as one core takes to stream some 100 KB of weights or do some 100K
 * multiply-adds (bench/NOTES.md, parallel thresholds). */
#define PARALLEL_MIN_WEIGHTS 65536.0 /* N K */
#define PARALLEL_MIN_WORK 262144.0   /* T N K */
/* Thread slices start on multiples of this many rows (whole cache lines of y, whole blocks). */
#define SLICE_ALIGN 16

/* Output rows [n0, n1) of p's product on one thread: fp32 by BLAS or the streaming kernel; Q8_0
 * on the input already quantized into qs. */
static void product_slice(const WeightProduct *p, const float *x, const QuantScratch *qs, int T, int K, int n0,
                          int n1, int use_blas, int transposed)
{
    const Weight *w = &p->w;
#ifdef KERNELS_X86
    if (w->type == WEIGHT_F32 && transposed) {
        (current_isa() == KERNEL_ISA_AVX512 ? matmul_outer_avx512 : matmul_outer_avx2)(p->y, qs->t, w->f, T, K, p->N,
                                                                                       n0, n1);
        return;
    }
#endif
    if (w->type == WEIGHT_Q8_0 && transposed)
        matmul_q8_float_slice(p->y, qs->t, w->q, w->s, T, K, p->N, w->group_size, n0, n1);
    else if (w->type == WEIGHT_Q8_0)
        matmul_q8_slice(p->y, qs->q, qs->s, w->q, w->s, T, K, p->N, w->group_size, n0, n1);
    else if (use_blas)
        matmul_blas(p->y, x, w->f, T, K, p->N, n0, n1);
    else
        matmul_stream(p->y, x, w->f, T, K, p->N, n0, n1);
}

/* silu(g) * u = g / (1 + e^-g) * u, the SwiGLU gate, over columns [n0, n1) of T rows of N; the
 * e^-g of a piece of a row at a time by exp_floats (a vector exp, where expf is scalar). */
#define SWIGLU_PIECE 256
static void swiglu_columns(float *g, const float *u, int T, int N, int n0, int n1)
{
    float e[SWIGLU_PIECE];
    for (int t = 0; t < T; t++)
        for (int i0 = n0; i0 < n1; i0 += SWIGLU_PIECE) {
            int len = n1 - i0 < SWIGLU_PIECE ? n1 - i0 : SWIGLU_PIECE;
            float *gt = g + (size_t)t * N + i0;
            const float *ut = u + (size_t)t * N + i0;
            for (int i = 0; i < len; i++)
                e[i] = -gt[i];
            exp_floats(e, len);
            for (int i = 0; i < len; i++)
                gt[i] = gt[i] * (1.0f / (1.0f + e[i])) * ut[i];
        }
}

/* How threads share a product's output rows. A fixed slice per thread leaves one waiting at the
 * end whenever the other ran slower (a busy neighbour, a core served by memory a little later):
 * up to a tenth of a decode step on this 2-core host (bench/NOTES.md, chunked rows). So the
 * streaming products hand out chunks from a shared counter instead, each what is left over the
 * thread count: long sequential runs of weights first, short ones at the end to even the threads
 * out. The chunks' bounds depend only on N and the thread count, never on timing, so neither do
 * the results. BLAS keeps one slice per thread: each call repacks its input. */
#define CHUNK_MIN_ROWS 64 /* the smallest chunk (the last may be shorter) */

/* Claims the next chunk [*n0, *n1) of a product of N rows from *next; 0 when none is left. */
static int claim_rows(atomic_int *next, int N, int slices, int fixed_slices, int *n0, int *n1)
{
    int at = atomic_load_explicit(next, memory_order_relaxed);
    for (;;) {
        if (at >= N)
            return 0;
        int len = fixed_slices ? (N + slices - 1) / slices : (N - at) / slices;
        if (!fixed_slices && len < CHUNK_MIN_ROWS)
            len = CHUNK_MIN_ROWS;
        len = (len + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN;
        int end = len < N - at ? at + len : N;
        if (atomic_compare_exchange_weak_explicit(next, &at, end, memory_order_relaxed, memory_order_relaxed)) {
            *n0 = at;
            *n1 = end;
            return 1;
        }
    }
}

/* The products p[0..n) (n <= MAX_PRODUCTS) of one input, all in one parallel region: a fork and
 * join costs about as much as streaming 100 KB, and a 15M-shape layer has seven products of 330
 * to 900 KB. Each chunk of a product's output rows goes to one thread, so the threads never share
 * a weight; a thread done with one product goes on to the next. With gate (SwiGLU), p[0] and
 * p[1] have the same N and are run on the same chunks, and p[0].y becomes silu(p[0].y) * p[1].y,
 * each thread gating the columns it computed.
 * Q8_0 weights: the input is quantized once, before the threads start, for all the products (and
 * for a large batch also dequantized into its transposed float copy). */
#define MAX_PRODUCTS 8
static void run_products(const float *x, int T, int K, const WeightProduct *p, int n, int gate, QuantScratch *qs,
                         int threads)
{
    current_isa(); /* settle the choice before the threads start */
    int use_blas = kernels_have_blas() && T >= kernels_blas_min_rows();
    int transposed = 0; /* the input copied once into qs->t for every thread and product */
    if (p[0].w.type == WEIGHT_Q8_0) {
        quantize_q8(qs->q, qs->s, x, T, K, p[0].w.group_size);
        /* the float path on AVX2 only: on AVX-512 it measured no faster than the int8 kernel
         * (bench/NOTES.md, AVX-512 outer products) */
        transposed = qs->t && current_isa() == KERNEL_ISA_AVX2 && T >= outer_min_rows();
        if (transposed)
            q8_transpose_input(qs->t, qs->q, qs->s, T, K, p[0].w.group_size);
    } else if (qs && qs->t && !use_blas && T >= outer_min_rows()) {
        transposed = 1;
        transpose_input(qs->t, x, T, K);
    }
    int slices = threads_resolve(threads);
    double weights = 0;
    for (int i = 0; i < n; i++)
        weights += (double)p[i].N * K;
    if (weights < PARALLEL_MIN_WEIGHTS && T * weights < PARALLEL_MIN_WORK)
        slices = 1;
    atomic_int next[MAX_PRODUCTS];
    for (int i = 0; i < n; i++)
        atomic_init(&next[i], 0);
    int fixed_slices = use_blas || slices == 1;
#ifdef _OPENMP /* (only to keep -Wunknown-pragmas quiet in builds without OpenMP) */
#pragma omp parallel num_threads(slices) if (slices > 1)
#endif
    for (int i = 0; i < n; i += gate ? 2 : 1) {
        int n0, n1;
        while (claim_rows(&next[i], p[i].N, slices, fixed_slices, &n0, &n1)) {
            product_slice(&p[i], x, qs, T, K, n0, n1, use_blas, transposed);
            if (gate) {
                product_slice(&p[1], x, qs, T, K, n0, n1, use_blas, transposed);
                swiglu_columns(p[0].y, p[1].y, T, p[0].N, n0, n1);
            }
        }
    }
}

void matmul_weight(float *y, const float *x, Weight w, int T, int K, int N, QuantScratch *qs, int threads)
{
    WeightProduct p = {y, w, N};
    run_products(x, T, K, &p, 1, 0, qs, threads);
}

void matmul_weight_many(const float *x, int T, int K, const WeightProduct *p, int n, QuantScratch *qs, int threads)
{
    for (int i = 0; i < n; i += MAX_PRODUCTS)
        run_products(x, T, K, p + i, n - i < MAX_PRODUCTS ? n - i : MAX_PRODUCTS, 0, qs, threads);
}

void matmul_weight_swiglu(float *h, float *u, const float *x, Weight w1, Weight w3, int T, int K, int H,
                          QuantScratch *qs, int threads)
{
    WeightProduct p[2] = {{h, w1, H}, {u, w3, H}};
    run_products(x, T, K, p, 2, 1, qs, threads);
}

/* The fp32 forms: the same, with plain float matrices. */
static Weight fp32_weight(const float *w) { return (Weight){WEIGHT_F32, 0, w, NULL, NULL}; }

void matmul(float *y, const float *x, const float *w, int T, int K, int N, int threads)
{
    matmul_weight(y, x, fp32_weight(w), T, K, N, NULL, threads);
}

void matmul_many(const float *x, int T, int K, const Product *p, int n, int threads)
{
    enum { GROUP = MAX_PRODUCTS };
    for (int i = 0; i < n; i += GROUP) { /* in groups of MAX_PRODUCTS per parallel region */
        WeightProduct wp[GROUP];
        int m = n - i < GROUP ? n - i : GROUP;
        for (int j = 0; j < m; j++)
            wp[j] = (WeightProduct){p[i + j].y, fp32_weight(p[i + j].w), p[i + j].N};
        run_products(x, T, K, wp, m, 0, NULL, threads);
    }
}

void matmul_swiglu(float *h, float *u, const float *x, const float *w1, const float *w3, int T, int K, int H,
                   int threads)
{
    matmul_weight_swiglu(h, u, x, fp32_weight(w1), fp32_weight(w3), T, K, H, NULL, threads);
}

/* ------------------------------------------------------------------------------ small ops */

/* o (D) = weight * x / sqrt(mean(x^2) + 1e-5), the llama2.c expressions; o may alias x. */
void rmsnorm(float *o, const float *x, const float *weight, int D)
{
    float ss = 0.0f;
    for (int j = 0; j < D; j++)
        ss += x[j] * x[j];
    ss /= D;
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < D; j++)
        o[j] = weight[j] * (ss * x[j]);
}

/* x (n) = exp(x - max) / sum, in place. Subtracting the max first keeps every exponent <= 0, so
 * large logits cannot overflow. The vector clones compute what the plain build does (no product
 * to fuse into a multiply-add). */
VECTOR_CLONES
void softmax(float *x, int n)
{
    if (n <= 0)
        return;
    float max = max_lanes(x, n);
    float sum = exp_sum(x, n, max);
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}
