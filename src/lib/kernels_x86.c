/* kernels_x86.c: the streaming matrix kernels for x86's wide vectors, AVX-512 and AVX2 + FMA.
 * kernels.c picks one at run time (the default build targets plain x86-64, so each function here
 * carries its own target attribute) and calls it on a slice of the output rows.
 *
 * Shapes as in kernels.c: x (T, K), W (N, K), y (T, N) = x W^T over output rows [n0, n1).
 *
 * The plan.
 * T = 1 (decode): one weight row after the other, a straight sequential read of W, with a few
 * independent accumulators. This is pure bandwidth, and the hardware prefetcher follows one
 * sequential stream best (reading 4 rows side by side, 4 streams K floats apart, got less
 * bandwidth: bench/NOTES.md, kernel measurements).
 *
 * T >= 2: output rows go in blocks of R weight rows; each block is dotted with the input rows C
 * at a time, keeping one vector accumulator per (weight row, input row) pair in registers
 * (AVX-512: 4 x 4; AVX2, with half the registers: 4 x 2 or 3 x 4, see its section).
 *  - The R weight rows are read from memory once; the later input groups find them in L1. That
 *    is what makes T = 2..8 nearly free.
 *  - Within a step every loaded weight vector meets every loaded input vector, so a 4 x 4 block
 *    does 16 multiply-adds per 8 loads. One weight row against one input row is 2 loads per
 *    multiply-add, and load-bound as soon as the data sits in cache (T >= 8).
 *  - The accumulators are independent, which hides the multiply-add latency.
 *  - Long rows are taken in chunks of at most STREAM_CHUNK columns (the partial sums add up in
 *    y), so that the block of weight rows stays in L1 while the input rows stream past it: at
 *    K = 2048 four whole rows are 32 KB and the inputs would push them out of a 48 KB L1.
 *  - While a block is being worked on, the next block is prefetched. The hardware prefetcher
 *    alone stalls whenever a block's arithmetic outlasts its loads (T = 4..16); with the next
 *    rows already on their way the memory stays busy. Every step asks again, in every input
 *    group: asking once per cache line, or only in the first group, lost up to a fifth at T = 8
 *    (AVX2; the lines asked for early are pushed out of L1 again). AVX-512 asks for the next
 *    block in address order (its R rows are contiguous: R lines a step, one sequential stream),
 *    not for the same columns of its R rows (R streams): a catch-up forward over 2..4 tokens
 *    of the 110M shape went from 1.16-1.22 to 1.05-1.15 times a one-token forward at 2 threads
 *    (bench/NOTES.md, catch-up on AVX-512).
 *  - Rows left over when n1 - n0 is not a multiple of R go one at a time.
 * Large batches are split into tiles of input rows that fit in L2 before they get here
 * (matmul_stream in kernels.c).
 *
 * T = 2..4 with short rows (AVX-512, K <= ONE_ROW_MAX_K): as for T = 1, one weight row after the
 * other (one stream), each dotted with all T inputs; the blocks lose there.
 *
 * T >= 16 (AVX2): outer products instead of dot products, see their section: a batch that large
 * is bound by arithmetic, and a block of 16 input rows by 6 weight rows needs fewer loads per
 * multiply-add and no horizontal sums. */
#include "config.h"
#include "internal.h"

#ifdef KERNELS_X86
#include <immintrin.h>

#include "vector_x86.h"

#define STREAM_ROWS 4 /* weight rows per block */
/* Chunks of 1024 columns keep a block of 4 weight rows in L1 (bench/NOTES.md, chunk size). */
#define STREAM_CHUNK 1024

/* Short rows and few inputs (AVX-512: T = 2..4, K <= this) go one weight row at a time: one
 * sequential stream beats blocks of rows at the 15M shape's K = 288, and loses at K = 2048
 * (bench/NOTES.md, one row at a time). */
#define ONE_ROW_MAX_K 512

/* Columns per chunk: K split into equal pieces of at most STREAM_CHUNK, whole vectors each. */
static int stream_chunk(int K)
{
    int pieces = (K + STREAM_CHUNK - 1) / STREAM_CHUNK;
    return ((K + pieces - 1) / pieces + 15) / 16 * 16;
}

/* --- AVX-512: 16 floats a vector, 32 registers: blocks of 4 weight rows x 4 input rows. */
#define AVX512_INPUTS 4

/* One step of 16 columns for an R x C block; mask selects the columns that exist (the tail).
 * Rows of x and W are K floats apart. */
__attribute__((always_inline, target("avx512f")))
static inline void step_avx512(__m512 acc[STREAM_ROWS][AVX512_INPUTS], const float *x, const float *w,
                               int K, int R, int C, __mmask16 mask, const float *ahead)
{
    __m512 wv[STREAM_ROWS];
    for (int r = 0; r < R; r++)
        wv[r] = _mm512_maskz_loadu_ps(mask, w + (size_t)r * K);
    for (int r = 0; r < R; r++) /* R lines of what comes next, in address order: see the plan */
        _mm_prefetch((const char *)(ahead + 16 * r), _MM_HINT_T0);
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
 * chunks after the first); the step at column j prefetches R lines from ahead + R j. R and C are
 * constants after inlining, so the loops unroll and acc stays in registers. */
__attribute__((always_inline, target("avx512f")))
static inline void block_avx512(float *y, const float *x, const float *w, int len, int K, int N, int R, int C,
                                int add, const float *ahead)
{
    __m512 acc[STREAM_ROWS][AVX512_INPUTS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= len; j += 16)
        step_avx512(acc, x + j, w + j, K, R, C, 0xFFFF, ahead + (size_t)R * j);
    if (j < len)
        step_avx512(acc, x + j, w + j, K, R, C, (__mmask16)((1u << (len - j)) - 1), ahead + (size_t)R * j);
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

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). T, K >= 1. */
__attribute__((target("avx512f")))
void matmul_stream_avx512(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    if (T == 1) {
        gemv_avx512(y, x, w, K, n0, n1);
        return;
    }
    /* One row at a time, and the rows left over after the blocks, prefetch the row STREAM_ROWS
     * further on; a block of STREAM_ROWS rows the next block, R lines a step over all its
     * chunks, so the whole of it while this one is worked on. */
    if (T <= AVX512_INPUTS && K <= ONE_ROW_MAX_K) {
        for (int i = n0; i < n1; i++) {
            const float *wi = w + (size_t)i * K, *ahead = wi + (size_t)STREAM_ROWS * K;
            switch (T) {
            case 2: block_avx512(y + i, x, wi, K, K, N, 1, 2, 0, ahead); break;
            case 3: block_avx512(y + i, x, wi, K, K, N, 1, 3, 0, ahead); break;
            default: block_avx512(y + i, x, wi, K, K, N, 1, 4, 0, ahead); break;
            }
        }
        return;
    }
    int chunk = stream_chunk(K), i = n0;
    for (; i + STREAM_ROWS <= n1; i += STREAM_ROWS)
        for (int j = 0; j < K; j += chunk) {
            int len = K - j < chunk ? K - j : chunk, add = j > 0;
            const float *wi = w + (size_t)i * K + j;
            const float *ahead = w + (size_t)(i + STREAM_ROWS) * K + (size_t)STREAM_ROWS * j;
            for (int t = 0; t < T; t += AVX512_INPUTS) {
                float *yt = y + (size_t)t * N + i;
                const float *xt = x + (size_t)t * K + j;
                switch (T - t) {
                case 1: block_avx512(yt, xt, wi, len, K, N, 4, 1, add, ahead); break;
                case 2: block_avx512(yt, xt, wi, len, K, N, 4, 2, add, ahead); break;
                case 3: block_avx512(yt, xt, wi, len, K, N, 4, 3, add, ahead); break;
                default: block_avx512(yt, xt, wi, len, K, N, 4, 4, add, ahead); break;
                }
            }
        }
    for (; i < n1; i++) {
        const float *wi = w + (size_t)i * K;
        for (int t = 0; t < T; t++)
            block_avx512(y + (size_t)t * N + i, x + (size_t)t * K, wi, K, K, N, 1, 1, 0, wi + (size_t)STREAM_ROWS * K);
    }
}

/* --- AVX-512 outer products, for the forward's batches from AVX512_OUTER_MIN_T rows on, on the
 * transposed copy (xt[b][j][r] = x[16 b + r][j], kernels.c transpose_input). A block is 8 weight
 * rows by two 16-row input blocks: each column j loads the two input vectors and broadcasts the 8
 * weights, 10 loads for 16 multiply-adds, so the multiply-add units, not the loads, set the pace
 * (the dot-product blocks above need 8 loads for 16 and a horizontal sum per pair). The 8 rows
 * divide the threads' 16-row chunks. Columns go in chunks of OUTER512_CHUNK, outermost, so that 8
 * rows of a chunk (32 KB) stay in L1 while every input block streams past from L2 (1024 columns:
 * ahead of 256, 512 and 2048 against sgemm at T = 64 and 256; bench/NOTES.md). */
#define OUTER512_ROWS 8
#define OUTER512_BLOCKS 2 /* input blocks of 16 rows per step */
#define OUTER512_CHUNK 1024

/* y[t][r] (+)= sum over j < len of W[r][j] xt rows t, for r < R (8 or 1, rows K floats apart) and
 * the B (1 or 2) input blocks at xt (16 K floats apart); rows: input rows that exist (the rest of
 * the last block is padding). prefetch: ask for the R rows after these, a line of each per 16
 * columns. */
__attribute__((always_inline, target("avx512f")))
static inline void outer_block_avx512(float *y, const float *xt, const float *w, int len, int K, int N, int R, int B,
                                      int rows, int add, int prefetch)
{
    __m512 acc[OUTER512_ROWS][OUTER512_BLOCKS];
    for (int r = 0; r < R; r++)
        for (int b = 0; b < B; b++)
            acc[r][b] = _mm512_setzero_ps();
    const size_t block = (size_t)TRANSPOSED_ROWS * K;
    for (int j0 = 0; j0 < len; j0 += 16) { /* 16 columns: one cache line of each weight row */
        if (prefetch)
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)(w + (size_t)(r + R) * K + j0), _MM_HINT_T0);
        int j1 = len - j0 < 16 ? len : j0 + 16;
        for (int j = j0; j < j1; j++) {
            __m512 xv[OUTER512_BLOCKS];
            for (int b = 0; b < B; b++)
                xv[b] = _mm512_loadu_ps(xt + b * block + (size_t)j * TRANSPOSED_ROWS);
            for (int r = 0; r < R; r++) {
                __m512 wv = _mm512_set1_ps(w[(size_t)r * K + j]);
                for (int b = 0; b < B; b++)
                    acc[r][b] = _mm512_fmadd_ps(xv[b], wv, acc[r][b]);
            }
        }
    }
    float sums[OUTER512_ROWS][OUTER512_BLOCKS * TRANSPOSED_ROWS] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++)
        for (int b = 0; b < B; b++)
            _mm512_store_ps(sums[r] + b * TRANSPOSED_ROWS, acc[r][b]);
    for (int t = 0; t < rows; t++) /* once per block and chunk: the transposed store costs little */
        for (int r = 0; r < R; r++)
            y[(size_t)t * N + r] = (add ? y[(size_t)t * N + r] : 0.0f) + sums[r][t];
}

/* y (T, N) over output rows [n0, n1) from the transposed copy xt of T input rows of K columns. */
__attribute__((target("avx512f")))
void matmul_outer_avx512(float *y, const float *xt, const float *w, int T, int K, int N, int n0, int n1)
{
    int pieces = (K + OUTER512_CHUNK - 1) / OUTER512_CHUNK, chunk = (K + pieces - 1) / pieces;
    const int step = OUTER512_BLOCKS * TRANSPOSED_ROWS;
    for (int j0 = 0; j0 < K; j0 += chunk) {
        int len = K - j0 < chunk ? K - j0 : chunk, add = j0 > 0;
        for (int i = n0; i < n1;) {
            int R = n1 - i >= OUTER512_ROWS ? OUTER512_ROWS : 1, next = i + 2 * R <= n1;
            const float *wi = w + (size_t)i * K + j0;
            for (int t0 = 0; t0 < T; t0 += step) {
                int rows = T - t0 < step ? T - t0 : step, first = next && t0 == 0;
                const float *xb = xt + (size_t)t0 * K + (size_t)j0 * TRANSPOSED_ROWS;
                float *yt = y + (size_t)t0 * N + i;
                if (R == OUTER512_ROWS && rows > TRANSPOSED_ROWS)
                    outer_block_avx512(yt, xb, wi, len, K, N, OUTER512_ROWS, 2, rows, add, first);
                else if (R == OUTER512_ROWS)
                    outer_block_avx512(yt, xb, wi, len, K, N, OUTER512_ROWS, 1, rows, add, first);
                else if (rows > TRANSPOSED_ROWS)
                    outer_block_avx512(yt, xb, wi, len, K, N, 1, 2, rows, add, 0);
                else
                    outer_block_avx512(yt, xb, wi, len, K, N, 1, 1, rows, add, 0);
            }
            i += R;
        }
    }
}

/* --- AVX2 + FMA: 8 floats a vector, only 16 registers. A tile of R weight rows x C input rows
 * keeps R C accumulators; each step of 8 columns loads R + C vectors for R C multiply-adds, and
 * the two load ports, not the two multiply-add units, bound the small tiles. The tiles, by row
 * length K and batch T (each the best of 1 x 4, 2 x 4, 3 x 4, 4 x 2, 4 x 3 where it is used:
 * bench/NOTES.md, AVX2 tiles):
 *   long rows (K > 512), T >= 6 (T >= 4 for rows over one chunk): 3 x 4, 12 accumulators,
 *     7 loads for 12 multiply-adds, ahead by a fifth at T = 8 and a quarter at T = 16;
 *   long rows, smaller T: 4 x 2 (8 accumulators, 6 loads for 8), 3-8% ahead there;
 *   short rows, T <= 4: 1 x T, one weight row after the other, a single stream as at T = 1
 *     (4 streams a row length apart lost a fifth to a third at K = 288);
 *   short rows, T > 4: 4 x 2;
 *   T = 1: one row after the other up to K = 1024; 4 x 1 above, 10-13% faster at K = 2048;
 *   T >= AVX2_OUTER_MIN_T: none of these, the outer products at the end of this section. */
#define AVX2_WIDE_ROWS 3      /* weight rows of a wide tile (3 x 4) */
#define AVX2_WIDE_INPUTS 4    /* its input rows; also those of a one-row tile (1 x 4) */
#define AVX2_PAIR_ROWS 4      /* weight rows of a 4 x 2 tile */
#define AVX2_WIDE_MIN_K 513   /* rows of at least this many columns are long */
#define AVX2_WIDE_MIN_T 6     /* long rows: 3 x 4 tiles from this T on (4 above one chunk), 4 x 2 below */
#define AVX2_ONE_ROW_MAX_T 4  /* short rows: one row at a time up to this T, 4 x 2 above */
#define AVX2_GEMV_MAX_K 1024  /* T = 1: one row after the other up to here, 4 x 1 tiles above */

/* The four sums of a, b, c, d as one vector (a tree of horizontal adds). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m128 sum4_avx2(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* One step of 8 columns of an R x C tile (see tile_avx2): the R weight vectors are loaded and
 * held, each input vector loaded once and met by all of them; in the tail step only the
 * columns under mask are loaded. */
__attribute__((always_inline, target("avx2,fma")))
static inline void tile_step_avx2(__m256 acc[AVX2_PAIR_ROWS][AVX2_WIDE_INPUTS], const float *x, const float *w,
                                  int K, int R, int C, int tail, __m256i mask)
{
    __m256 wv[AVX2_PAIR_ROWS];
    for (int r = 0; r < R; r++)
        wv[r] = tail ? _mm256_maskload_ps(w + (size_t)r * K, mask) : _mm256_loadu_ps(w + (size_t)r * K);
    for (int c = 0; c < C; c++) {
        __m256 xv = tail ? _mm256_maskload_ps(x + (size_t)c * K, mask) : _mm256_loadu_ps(x + (size_t)c * K);
        for (int r = 0; r < R; r++)
            acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
}

/* y[c][r] (+)= sum over `len` columns of W[r][j] x[c][j], r < R weight rows, c < C input rows;
 * y points at y[t0][i0], x at x[t0][j0], w at W[i0][j0], rows K floats apart; add: accumulate
 * into y (the chunks after the first). prefetch: also ask for the same columns of the next R
 * rows, on every step (see the plan at the top). R and C are constants after inlining, so the
 * loops unroll and the accumulators stay in registers. */
__attribute__((always_inline, target("avx2,fma")))
static inline void tile_avx2(float *y, const float *x, const float *w, int len, int K, int N, int R, int C,
                             int add, int prefetch)
{
    __m256 acc[AVX2_PAIR_ROWS][AVX2_WIDE_INPUTS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= len; j += 8) {
        if (prefetch)
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)(w + (size_t)(r + R) * K + j), _MM_HINT_T0);
        tile_step_avx2(acc, x + j, w + j, K, R, C, 0, _mm256_setzero_si256());
    }
    if (j < len) {
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        tile_step_avx2(acc, x + j, w + j, K, R, C, 1, _mm256_cmpgt_epi32(_mm256_set1_epi32(len - j), lanes));
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

/* The tile's R and C as constants, so that each shape gets its own unrolled copy. */
#define TILE(RR, CC) tile_avx2(yt, xt, wi, len, K, N, RR, CC, add, prefetch)

/* All T input rows against the R weight rows at wi (columns [j0, j0 + len); y, x and wi point
 * at column j0 of row 0), in groups of C input rows; prefetch: the next R rows meanwhile. */
__attribute__((always_inline, target("avx2,fma")))
static inline void rows_avx2(float *y, const float *x, const float *wi, int T, int len, int K, int N, int R,
                             int add, int prefetch)
{
    int C = R == AVX2_PAIR_ROWS ? 2 : AVX2_WIDE_INPUTS;
    for (int t = 0; t < T; t += C) {
        float *yt = y + (size_t)t * N;
        const float *xt = x + (size_t)t * K;
        int c = T - t < C ? T - t : C;
        if (R == AVX2_PAIR_ROWS)
            c == 1 ? TILE(AVX2_PAIR_ROWS, 1) : TILE(AVX2_PAIR_ROWS, 2);
        else if (R == AVX2_WIDE_ROWS)
            c == 1 ? TILE(AVX2_WIDE_ROWS, 1) : c == 2 ? TILE(AVX2_WIDE_ROWS, 2)
                   : c == 3 ? TILE(AVX2_WIDE_ROWS, 3) : TILE(AVX2_WIDE_ROWS, 4);
        else
            c == 1 ? TILE(1, 1) : c == 2 ? TILE(1, 2) : c == 3 ? TILE(1, 3) : TILE(1, 4);
    }
}
#undef TILE

/* --- AVX2, T >= AVX2_OUTER_MIN_T: outer products. Past a dozen input rows the product is bound
 * by how fast values reach the multiply-add units, no longer by memory. The tiles above take a
 * dot product per (weight row, input row) pair: each step loads R + C vectors, the input rows'
 * from L2 (a batch does not fit in L1), and each pair ends in a horizontal sum. Here a block of
 * 16 input rows x 6 weight rows keeps its 96 sums as 12 vectors y[t0..t0 + 16)[i]: a step at
 * column j loads x[t0..t0 + 16)[j] as two vectors and broadcasts the 6 weights W[i][j], 8 loads
 * (most from L1) for 12 multiply-adds, and a block needs no horizontal sums. For those two
 * loads, the 16 input rows are first copied transposed (xT[j][t]), OUTER_CHUNK columns at a time
 * (48 KB of stack); W is read in place, 6 sequential streams. 1.2-1.4x the tiles at T = 16..64
 * on the 110M shapes (2x at K = 2048), level with sgemm at T = 64 (bench/NOTES.md, outer
 * products). The block is in vector_x86.h. The forward's products take matmul_outer_avx2 below
 * instead, on an input transposed once for all threads; outer_avx2 serves the callers without
 * that scratch (matmul_stream). */

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1), in blocks of 16 input rows (the last
 * padded with zeros) by 6 weight rows (the rows left over one at a time). */
__attribute__((target("avx2,fma")))
static void outer_avx2(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    float xT[OUTER_CHUNK * OUTER_INPUTS] __attribute__((aligned(32)));
    int pieces = (K + OUTER_CHUNK - 1) / OUTER_CHUNK, chunk = (K + pieces - 1) / pieces;
    int prefetch = pieces == 1; /* rows in one chunk gain 5-40%; longer ones lost a fifth (NOTES.md) */
    for (int t0 = 0; t0 < T; t0 += OUTER_INPUTS) {
        int rows = T - t0 < OUTER_INPUTS ? T - t0 : OUTER_INPUTS;
        float *yt = y + (size_t)t0 * N;
        for (int j0 = 0; j0 < K; j0 += chunk) {
            int len = K - j0 < chunk ? K - j0 : chunk, add = j0 > 0;
            for (int t = 0; t < OUTER_INPUTS; t++)
                for (int j = 0; j < len; j++)
                    xT[j * OUTER_INPUTS + t] = t < rows ? x[(size_t)(t0 + t) * K + j0 + j] : 0.0f;
            int i = n0;
            for (; i + OUTER_ROWS <= n1; i += OUTER_ROWS)
                outer_block_avx2(yt + i, xT, w + (size_t)i * K + j0, len, K, N, OUTER_ROWS, rows, add,
                                 prefetch && i + 2 * OUTER_ROWS <= n1);
            for (; i < n1; i++)
                outer_block_avx2(yt + i, xT, w + (size_t)i * K + j0, len, K, N, 1, rows, add, 0);
        }
    }
}

_Static_assert(TRANSPOSED_ROWS == OUTER_INPUTS, "the transposed copy's blocks are the outer-product block's inputs");

/* transpose_input's copy (kernels.c), 8 columns of a 16-row block at a time as two 8 x 8 tiles
 * (rows 0-7 and 8-15 of the block); the last columns one by one. */
__attribute__((target("avx2,fma")))
void transpose_input_avx2(float *xt, const float *x, int T, int K)
{
    for (int t0 = 0; t0 < T; t0 += OUTER_INPUTS) {
        int rows = T - t0 < OUTER_INPUTS ? T - t0 : OUTER_INPUTS;
        float *block = xt + (size_t)t0 * K;
        int j = 0;
        for (; j + 8 <= K; j += 8)
            for (int half = 0; half < 2; half++) {
                __m256 v[8];
                for (int r = 0; r < 8; r++) {
                    int t = half * 8 + r;
                    v[r] = t < rows ? _mm256_loadu_ps(x + (size_t)(t0 + t) * K + j) : _mm256_setzero_ps();
                }
                transpose8_avx2(v);
                for (int c = 0; c < 8; c++)
                    _mm256_storeu_ps(block + (size_t)(j + c) * OUTER_INPUTS + half * 8, v[c]);
            }
        for (; j < K; j++)
            for (int t = 0; t < OUTER_INPUTS; t++)
                block[(size_t)j * OUTER_INPUTS + t] = t < rows ? x[(size_t)(t0 + t) * K + j] : 0.0f;
    }
}

/* The same products on an input transposed once for the whole product, in blocks of 16 rows
 * (xt[b][j][r] = x[16 b + r][j], rows past T zero: transpose_input in kernels.c), which the
 * forward's products get (run_products). Each block of 6 weight rows meets every block of inputs
 * while it is in cache, so W is read from memory once, not once per 16 input rows, and no thread
 * copies the input again for each slice it claims. The columns go in chunks of at most
 * OUTER_COPY_CHUNK, outermost, so that a chunk of xt stays in L2 while the weights stream past
 * (1024 columns: 5-7% ahead of 683 and level with 2048 at K = 2048, T = 16..64; bench/NOTES.md,
 * outer products on one copy). y (T, N) over output rows [n0, n1). */
#define OUTER_COPY_CHUNK 1024
__attribute__((target("avx2,fma")))
void matmul_outer_avx2(float *y, const float *xt, const float *w, int T, int K, int N, int n0, int n1)
{
    int pieces = (K + OUTER_COPY_CHUNK - 1) / OUTER_COPY_CHUNK, chunk = (K + pieces - 1) / pieces;
    for (int j0 = 0; j0 < K; j0 += chunk) {
        int len = K - j0 < chunk ? K - j0 : chunk, add = j0 > 0;
        for (int i = n0; i < n1;) {
            int R = n1 - i >= OUTER_ROWS ? OUTER_ROWS : 1;
            outer_rows_avx2(y + i, xt, w + (size_t)i * K + j0, T, K, N, j0, len, K, R, add, i + 2 * OUTER_ROWS <= n1);
            i += R;
        }
    }
}

/* x (T, K), W (N, K), y (T, N); output rows [n0, n1). T, K >= 1. */
__attribute__((target("avx2,fma")))
void matmul_stream_avx2(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    if (T == 1 && K <= AVX2_GEMV_MAX_K) {
        gemv_avx2(y, x, w, K, n0, n1);
        return;
    }
    if (T >= AVX2_OUTER_MIN_T) {
        outer_avx2(y, x, w, T, K, N, n0, n1);
        return;
    }
    int R = AVX2_PAIR_ROWS; /* the tile: see the top of this section */
    if (K < AVX2_WIDE_MIN_K && T <= AVX2_ONE_ROW_MAX_T)
        R = 1;
    else if (K >= AVX2_WIDE_MIN_K && (T >= AVX2_WIDE_MIN_T || (T >= 4 && K > STREAM_CHUNK)))
        R = AVX2_WIDE_ROWS;
    const int chunk = stream_chunk(K);
    int i = n0;
    for (; i + R <= n1; i += R)
        for (int j = 0; j < K; j += chunk) {
            int len = K - j < chunk ? K - j : chunk, add = j > 0, next = i + 2 * R <= n1;
            const float *wi = w + (size_t)i * K + j;
            if (R == AVX2_PAIR_ROWS)
                rows_avx2(y + i, x + j, wi, T, len, K, N, AVX2_PAIR_ROWS, add, next);
            else if (R == AVX2_WIDE_ROWS)
                rows_avx2(y + i, x + j, wi, T, len, K, N, AVX2_WIDE_ROWS, add, next);
            else
                rows_avx2(y + i, x + j, wi, T, len, K, N, 1, add, next);
        }
    for (; i < n1; i++) /* the rows left over */
        rows_avx2(y + i, x, w + (size_t)i * K, T, K, K, N, 1, 0, 0);
}

#endif /* KERNELS_X86 */
