/* kernels.c: the numeric building blocks of the forward pass: the matrix product in its three
 * forms (scalar reference, weight-streaming, BLAS), the threaded dispatcher that picks one, and
 * rmsnorm and softmax.
 *
 * Shapes: x (T, K) holds T input rows, W (N, K) one row per output, y (T, N) = x W^T, that is
 * y[t][i] = sum_j W[i][j] x[t][j]. Every kernel below works on the output rows [n0, n1), so the
 * dispatcher can hand each thread a contiguous slice of W.
 *
 * Why two fast kernels. For small T (decode is T = 1, ME's catch-up T = 2..8) the product is
 * memory-bound: each weight is used T times per load, and the weights (tens to hundreds of MB) do
 * not fit in cache, so the time is bytes of W / memory bandwidth. The streaming kernel reads each
 * weight row once and dots it with all T input rows while it is in L1, so T = 2..8 cost little
 * more than T = 1. BLAS sgemm packs its operands into cache-sized panels first; that costs a copy
 * of W, which pays off only once T is large enough for the multiply to dominate, and only if the
 * streaming kernel is much slower at multiplying than BLAS. The crossover is measured per
 * instruction set (BLAS_MIN_ROWS_* below): with AVX-512 the streaming kernel wins throughout. */
#include "config.h"
#include "kernels.h"
#include "util.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#ifdef HAVE_CBLAS
#include <cblas.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KERNELS_X86 1
#endif

/* ------------------------------------------------------------------------------ reference */

/* y (T, N), x (T, K), W (N, K); output rows [n0, n1). One float accumulator summed in order
 * j = 0..K-1, exactly as llama2.c's matmul, so a forward built on it reproduces llama2.c. */
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

/* The plan (measured on a 2-core AMD EPYC, Zen 5; numbers from bench/matmul_bench).
 *
 * T = 1 (decode): one weight row after the other, a straight sequential read of W, with a few
 * independent accumulators. This is pure bandwidth, and the hardware prefetcher follows one
 * sequential stream best: reading blocks of 4 rows side by side (4 streams K floats apart) got
 * 6 to 34% less bandwidth.
 *
 * T >= 2 (AVX-512, AVX2): output rows go in blocks of 4 weight rows; each block is dotted with the
 * input rows a few at a time (4 with AVX-512, 2 with AVX2), keeping one vector accumulator per
 * (weight row, input row) pair in registers.
 *  - The 4 weight rows are read from memory once; the later input blocks find them in L1. That
 *    is what makes T = 2..8 nearly free.
 *  - Within a step every loaded weight vector meets every loaded input vector, so a 4 x 4 block
 *    does 16 multiply-adds per 8 loads. One weight row against one input row is 2 loads per
 *    multiply-add, and load-bound as soon as the data sits in cache (T >= 8): one row at a time
 *    was 20 to 130% slower than the blocks for T = 2..8.
 *  - The accumulators are independent, which hides the multiply-add latency.
 *  - Long rows are taken in chunks of at most STREAM_CHUNK columns (the partial sums add up in
 *    y), so that the block of weight rows stays in L1 while the input rows stream past it: at
 *    K = 2048 four whole rows are 32 KB and the inputs would push them out of a 48 KB L1.
 *  - While a block is being worked on, the same columns of the next block's rows are prefetched.
 *    The hardware prefetcher alone stalls whenever a block's arithmetic outlasts its loads
 *    (T = 4..16); with the next rows already on their way the memory stays busy (the 110M
 *    classifier at T = 8 went from 8.0 to 5.3 ms on one core).
 *  - Rows left over when n1 - n0 is not a multiple of 4 go one at a time.
 * Large batches are split into tiles of input rows that fit in L2 (matmul_stream).
 *
 * T = 2..4 with short rows (AVX-512, K <= ONE_ROW_MAX_K): as for T = 1, one weight row after the
 * other (one stream), each dotted with all T inputs; the blocks lose there (numbers below). */
#define STREAM_ROWS 4
/* K = 2048, T = 64 on one core: 1.5 ms in chunks of 1024, 1.7 in chunks of 512, 2.4 unchunked */
#define STREAM_CHUNK 1024

/* Short rows and few inputs (AVX-512: T = 2..4, K <= this) go one weight row at a time. With
 * cold weights on 2 threads, K = 288 (the 15M shape; N = 768 and 32000) took 10 to 20% less time
 * at T = 2..4 than in blocks of rows; at K = 768 the two were level, at K = 2048 one row at a time
 * was 10% slower. For T = 5..8 (two groups of inputs per row) the forward got no faster. */
#define ONE_ROW_MAX_K 512

/* Input rows per tile (matmul_stream): half of this machine's 1 MB L2; measured best of 128 KB to
 * 1 MB (256 KB is 10% slower at T = 256, 1 MB no faster). */
#define STREAM_TILE_BYTES (512 * 1024)

/* Columns per chunk: K split into equal pieces of at most STREAM_CHUNK, whole vectors each. */
static int stream_chunk(int K)
{
    int pieces = (K + STREAM_CHUNK - 1) / STREAM_CHUNK;
    return ((K + pieces - 1) / pieces + 15) / 16 * 16;
}

#ifdef KERNELS_X86

/* --- AVX-512: 16 floats a vector, 32 registers: blocks of 4 weight rows x 4 input rows. */
#define AVX512_INPUTS 4

/* One step of 16 columns for an R x C block; mask selects the columns that exist (the tail).
 * Rows of x and W are K floats apart. */
__attribute__((always_inline, target("avx512f")))
static inline void step_avx512(__m512 acc[STREAM_ROWS][AVX512_INPUTS], const float *x, const float *w,
                               int K, int R, int C, __mmask16 mask)
{
    __m512 wv[STREAM_ROWS];
    for (int r = 0; r < R; r++)
        wv[r] = _mm512_maskz_loadu_ps(mask, w + (size_t)r * K);
    for (int r = 0; r < R; r++) /* the same columns of the next block's rows: see the plan above */
        _mm_prefetch((const char *)(w + (size_t)(r + STREAM_ROWS) * K), _MM_HINT_T0);
    for (int c = 0; c < C; c++) {
        __m512 xv = _mm512_maskz_loadu_ps(mask, x + (size_t)c * K);
        for (int r = 0; r < R; r++)
            acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
    }
}

/* The four sums of a, b, c, d, as one 4-float vector: fold 512 -> 256 bits, then a tree of
 * horizontal adds. Cheaper than four separate reductions, which matters when K is short. */
__attribute__((always_inline, target("avx512f")))
static inline __m128 sum4_avx512(__m512 a, __m512 b, __m512 c, __m512 d)
{
#define FOLD(v) _mm256_add_ps(_mm512_castps512_ps256(v), \
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    __m256 ab = _mm256_hadd_ps(FOLD(a), FOLD(b));
    __m256 cd = _mm256_hadd_ps(FOLD(c), FOLD(d));
#undef FOLD
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* y[c][r] (+)= sum over `len` columns of W[r][j] x[c][j], for r < R weight rows and c < C input
 * rows; y points at y[t0][i0], x at x[t0][j0], w at W[i0][j0]; add: accumulate into y (the
 * chunks after the first). R and C are constants after inlining, so the loops unroll and acc
 * stays in registers. */
__attribute__((always_inline, target("avx512f")))
static inline void block_avx512(float *y, const float *x, const float *w, int len, int K, int N, int R, int C,
                                int add)
{
    __m512 acc[STREAM_ROWS][AVX512_INPUTS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= len; j += 16)
        step_avx512(acc, x + j, w + j, K, R, C, 0xFFFF);
    if (j < len)
        step_avx512(acc, x + j, w + j, K, R, C, (__mmask16)((1u << (len - j)) - 1));
    for (int c = 0; c < C; c++) {
        float *yc = y + (size_t)c * N;
        if (R == 4) {
            __m128 sums = sum4_avx512(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
            _mm_storeu_ps(yc, add ? _mm_add_ps(_mm_loadu_ps(yc), sums) : sums);
        } else {
            for (int r = 0; r < R; r++)
                yc[r] = (add ? yc[r] : 0.0f) + _mm512_reduce_add_ps(acc[r][c]);
        }
    }
}

/* T = 1: y[i] = W[i] . x for i in [n0, n1), one weight row after the other with four
 * accumulators (four multiply-add chains in flight). */
__attribute__((target("avx512f")))
static void gemv_avx512(float *y, const float *x, const float *w, int K, int n0, int n1)
{
    for (int i = n0; i < n1; i++) {
        const float *wi = w + (size_t)i * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j + 64 <= K; j += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wi + j), _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wi + j + 16), _mm512_loadu_ps(x + j + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(wi + j + 32), _mm512_loadu_ps(x + j + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(wi + j + 48), _mm512_loadu_ps(x + j + 48), a3);
        }
        for (; j < K; j += 16) {
            __mmask16 mask = K - j >= 16 ? 0xFFFF : (__mmask16)((1u << (K - j)) - 1);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, wi + j), _mm512_maskz_loadu_ps(mask, x + j), a0);
        }
        y[i] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). */
__attribute__((target("avx512f")))
static void stream_avx512(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    if (T == 1) {
        gemv_avx512(y, x, w, K, n0, n1);
        return;
    }
    if (T <= AVX512_INPUTS && K <= ONE_ROW_MAX_K) {
        for (int i = n0; i < n1; i++) {
            const float *wi = w + (size_t)i * K;
            switch (T) {
            case 2: block_avx512(y + i, x, wi, K, K, N, 1, 2, 0); break;
            case 3: block_avx512(y + i, x, wi, K, K, N, 1, 3, 0); break;
            default: block_avx512(y + i, x, wi, K, K, N, 1, 4, 0); break;
            }
        }
        return;
    }
    int chunk = stream_chunk(K), i = n0;
    for (; i + STREAM_ROWS <= n1; i += STREAM_ROWS)
        for (int j = 0; j < K; j += chunk) {
            int len = K - j < chunk ? K - j : chunk, add = j > 0;
            const float *wi = w + (size_t)i * K + j;
            for (int t = 0; t < T; t += AVX512_INPUTS) {
                float *yt = y + (size_t)t * N + i;
                const float *xt = x + (size_t)t * K + j;
                switch (T - t) {
                case 1: block_avx512(yt, xt, wi, len, K, N, 4, 1, add); break;
                case 2: block_avx512(yt, xt, wi, len, K, N, 4, 2, add); break;
                case 3: block_avx512(yt, xt, wi, len, K, N, 4, 3, add); break;
                default: block_avx512(yt, xt, wi, len, K, N, 4, 4, add); break;
                }
            }
        }
    for (; i < n1; i++)
        for (int t = 0; t < T; t++)
            block_avx512(y + (size_t)t * N + i, x + (size_t)t * K, w + (size_t)i * K, K, K, N, 1, 1, 0);
}

/* --- AVX2 + FMA: 8 floats a vector, only 16 registers: blocks of 4 weight rows x 2 input rows
 * (8 accumulators, 4 weight vectors, 1 input vector). */
#define AVX2_INPUTS 2

/* One step of 8 columns; in the tail step only the columns under mask are loaded. */
__attribute__((always_inline, target("avx2,fma")))
static inline void step_avx2(__m256 acc[STREAM_ROWS][AVX2_INPUTS], const float *x, const float *w,
                             int K, int R, int C, int tail, __m256i mask)
{
    __m256 wv[STREAM_ROWS];
    for (int r = 0; r < R; r++)
        wv[r] = tail ? _mm256_maskload_ps(w + (size_t)r * K, mask) : _mm256_loadu_ps(w + (size_t)r * K);
    for (int r = 0; r < R; r++) /* the next block's rows: see the plan above */
        _mm_prefetch((const char *)(w + (size_t)(r + STREAM_ROWS) * K), _MM_HINT_T0);
    for (int c = 0; c < C; c++) {
        __m256 xv = tail ? _mm256_maskload_ps(x + (size_t)c * K, mask) : _mm256_loadu_ps(x + (size_t)c * K);
        for (int r = 0; r < R; r++)
            acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
}

/* The four sums of a, b, c, d as one vector (a tree of horizontal adds). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m128 sum4_avx2(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

__attribute__((always_inline, target("avx2,fma")))
static inline float sum_avx2(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* As block_avx512. */
__attribute__((always_inline, target("avx2,fma")))
static inline void block_avx2(float *y, const float *x, const float *w, int len, int K, int N, int R, int C,
                              int add)
{
    __m256 acc[STREAM_ROWS][AVX2_INPUTS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= len; j += 8)
        step_avx2(acc, x + j, w + j, K, R, C, 0, _mm256_setzero_si256());
    if (j < len) {
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(len - j), lanes);
        step_avx2(acc, x + j, w + j, K, R, C, 1, mask);
    }
    for (int c = 0; c < C; c++) {
        float *yc = y + (size_t)c * N;
        if (R == 4) {
            __m128 sums = sum4_avx2(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
            _mm_storeu_ps(yc, add ? _mm_add_ps(_mm_loadu_ps(yc), sums) : sums);
        } else {
            for (int r = 0; r < R; r++)
                yc[r] = (add ? yc[r] : 0.0f) + sum_avx2(acc[r][c]);
        }
    }
}

/* T = 1: as gemv_avx512. */
__attribute__((target("avx2,fma")))
static void gemv_avx2(float *y, const float *x, const float *w, int K, int n0, int n1)
{
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i = n0; i < n1; i++) {
        const float *wi = w + (size_t)i * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j + 32 <= K; j += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wi + j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wi + j + 8), _mm256_loadu_ps(x + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wi + j + 16), _mm256_loadu_ps(x + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wi + j + 24), _mm256_loadu_ps(x + j + 24), a3);
        }
        for (; j < K; j += 8) {
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(K - j), lanes);
            a0 = _mm256_fmadd_ps(_mm256_maskload_ps(wi + j, mask), _mm256_maskload_ps(x + j, mask), a0);
        }
        y[i] = sum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). */
__attribute__((target("avx2,fma")))
static void stream_avx2(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    if (T == 1) {
        gemv_avx2(y, x, w, K, n0, n1);
        return;
    }
    int chunk = stream_chunk(K), i = n0;
    for (; i + STREAM_ROWS <= n1; i += STREAM_ROWS)
        for (int j = 0; j < K; j += chunk) {
            int len = K - j < chunk ? K - j : chunk, add = j > 0;
            const float *wi = w + (size_t)i * K + j;
            for (int t = 0; t < T; t += AVX2_INPUTS) {
                float *yt = y + (size_t)t * N + i;
                const float *xt = x + (size_t)t * K + j;
                if (T - t == 1)
                    block_avx2(yt, xt, wi, len, K, N, 4, 1, add);
                else
                    block_avx2(yt, xt, wi, len, K, N, 4, 2, add);
            }
        }
    for (; i < n1; i++)
        for (int t = 0; t < T; t++)
            block_avx2(y + (size_t)t * N + i, x + (size_t)t * K, w + (size_t)i * K, K, K, N, 1, 1, 0);
}

#endif /* KERNELS_X86 */

/* --- Portable C: one weight row at a time, dotted with each input row in turn (the row stays in
 * L1), each dot product kept as 8 partial sums. Eight independent chains hide the add latency
 * (one running sum would wait on each add in turn), and the fixed-width inner loop is easy for a
 * compiler to vectorise. Blocks of 4 weight rows, as in the wide kernels, were 2 to 3 times
 * slower here (GCC 12, -O3, SSE2 code). */
#define GENERIC_LANES 8

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). */
static void stream_generic(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    for (int i = n0; i < n1; i++)
        for (int t = 0; t < T; t++)
            y[(size_t)t * N + i] = dot_lanes(w + (size_t)i * K, x + (size_t)t * K, K, GENERIC_LANES);
}

/* --- Run-time choice of instruction set. The default build targets plain x86-64, so the wide
 * variants are compiled per function (target attributes) and picked by asking the CPU. Atomic
 * because the first call may come from several threads at once. */
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
    stream = isa == KERNEL_ISA_AVX512 ? stream_avx512 : isa == KERNEL_ISA_AVX2 ? stream_avx2 : stream_generic;
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
 * kernel BLAS is up against, so there is one per instruction set. Measured with
 * bench/matmul_bench on a 2-core AMD EPYC (Zen 5, AVX-512) with OpenBLAS 0.3.21, which runs its
 * Haswell (AVX2) kernels on this CPU. All the matrices of one forward, in ms, streaming / BLAS
 * (sgemm on each thread's slice of W, BLAS pinned to one thread):
 *
 *   110M, 2 threads   T=1      2      3      4      8      16     32     64    128    256
 *     stream-avx512   7.7    9.2    9.7   10.5   13.6   19.3   30.8   52.2   94.1    185
 *     stream-avx2     7.9    9.4   10.2   13.4   19.4   31.5   56.3    107    209    420
 *     stream-generic  8.6   11.1   16.5   20.6   44.0   80.5    152    289    565   1139
 *     blas           24.3   25.5   32.8   22.7   28.0   36.6   55.6   93.1    165    315
 *   110M, 1 thread
 *     stream-avx512  14.5   17.1   18.0   19.4   25.6   36.9   56.1   99.1    175    352
 *     stream-avx2    14.7   17.7   18.7   25.4   37.1   60.5    108    210    410    829
 *     blas           48.7   49.9   63.1   44.1   49.6   69.3    104    177    315    599
 *   15M, 2 threads
 *     stream-avx512  1.30   1.68   1.74   1.72   2.29   2.56   3.75   6.60   12.4   24.5
 *     blas           3.51   3.31   4.31   3.03   3.77   5.17   7.77   12.6   23.2   43.9
 *
 * AVX-512: the streaming kernel wins at every T measured, up to 256 (by 1.7x there), at 1 and 2
 * threads, so BLAS is never used. That is against a BLAS running AVX2 code; with a BLAS that has
 * AVX-512 kernels for this CPU, measure again (bench/matmul_bench).
 * AVX2: level with BLAS at T = 24..32, BLAS 10 to 15% ahead from 40 on.
 * Plain C: level at T = 4..5, BLAS ahead from 6 on. */
#define BLAS_MIN_ROWS_AVX512 INT_MAX
#define BLAS_MIN_ROWS_AVX2 32
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

/* Split a product across the threads only when there is enough to split. A parallel region costs
 * about 3 us here, as long as one core takes to stream some 100 KB of weights or do some 100K
 * multiply-adds. Measured: 288 x 288 at T = 1 (330 KB) takes 10.9 us on one thread and 9.8 us on
 * two; 128 x 128 at T = 8 takes 3.9 us on one and 6.0 us on two. */
#define PARALLEL_MIN_WEIGHTS 65536.0 /* N K */
#define PARALLEL_MIN_WORK 262144.0   /* T N K */
/* Thread slices start on multiples of this many rows (whole cache lines of y, whole blocks). */
#define SLICE_ALIGN 16

/* One threading authority: OpenMP owns the cores and splits every product by output rows; BLAS
 * must not start threads of its own inside ours. threads_set() pins it; this makes sure of it
 * once for programs that never called threads_set(). */
static void blas_pin_once(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    static atomic_int pinned = 0;
    if (!atomic_exchange(&pinned, 1))
        openblas_set_num_threads(1);
#endif
}

static void matmul_slice(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1,
                         int use_blas)
{
    if (use_blas)
        matmul_blas(y, x, w, T, K, N, n0, n1);
    else
        matmul_stream(y, x, w, T, K, N, n0, n1);
}

/* silu(g) * u = g / (1 + e^-g) * u, the SwiGLU gate, over columns [n0, n1) of T rows of N. */
static void swiglu_columns(float *g, const float *u, int T, int N, int n0, int n1)
{
    for (int t = 0; t < T; t++)
        for (int i = n0; i < n1; i++) {
            size_t at = (size_t)t * N + i;
            g[at] = g[at] * (1.0f / (1.0f + expf(-g[at]))) * u[at];
        }
}

/* The products p[0..n) of one input, each thread taking a contiguous slice of every product's
 * output rows (its own part of each W, so the threads never share a weight), all in one
 * parallel region: a fork and join costs about as much as streaming 100 KB, and a 15M-shape
 * layer has seven products of 330 to 900 KB. With gate, p[0] and p[1] have the same N and
 * p[0].y becomes silu(p[0].y) * p[1].y, each thread gating the columns it computed. */
static void run_products(const float *x, int T, int K, const Product *p, int n, int gate)
{
    blas_pin_once();
    current_isa(); /* settle the choice before the threads start */
    int use_blas = kernels_have_blas() && T >= kernels_blas_min_rows();
    int slices = threads_available();
    double weights = 0;
    for (int i = 0; i < n; i++)
        weights += (double)p[i].N * K;
    if (weights < PARALLEL_MIN_WEIGHTS && T * weights < PARALLEL_MIN_WORK)
        slices = 1;
#ifdef _OPENMP /* (only to keep -Wunknown-pragmas quiet in builds without OpenMP) */
#pragma omp parallel for schedule(static) if (slices > 1)
#endif
    for (int s = 0; s < slices; s++)
        for (int i = 0; i < n; i++) {
            int rows = (p[i].N + slices - 1) / slices;
            rows = (rows + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN;
            int n0 = s * rows < p[i].N ? s * rows : p[i].N, n1 = n0 + rows < p[i].N ? n0 + rows : p[i].N;
            if (n0 < n1)
                matmul_slice(p[i].y, x, p[i].w, T, K, p[i].N, n0, n1, use_blas);
            if (gate && i == 1 && n0 < n1)
                swiglu_columns(p[0].y, p[1].y, T, p[0].N, n0, n1);
        }
}

void matmul(float *y, const float *x, const float *w, int T, int K, int N)
{
    Product p = {y, w, N};
    run_products(x, T, K, &p, 1, 0);
}

void matmul_many(const float *x, int T, int K, const Product *p, int n)
{
    run_products(x, T, K, p, n, 0);
}

void matmul_swiglu(float *h, float *u, const float *x, const float *w1, const float *w3, int T, int K, int H)
{
    Product p[2] = {{h, w1, H}, {u, w3, H}};
    run_products(x, T, K, p, 2, 1);
}

void swiglu(float *h, const float *u, int T, int H)
{
    swiglu_columns(h, u, T, H, 0, H);
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
 * large logits cannot overflow. */
void softmax(float *x, int n)
{
    if (n <= 0)
        return;
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}
