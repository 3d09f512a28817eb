/* kernels_q8_x86.c: the Q8_0 product for x86's wide vectors, AVX2 and AVX-512 (BW, and VNNI
 * where the CPU has it). kernels_q8.c picks one at run time; each function carries its own
 * target attribute, since the default build targets plain x86-64.
 *
 * Contract and shapes as matmul_q8_reference (internal.h): y (T, N) over output columns [n0, n1),
 * y[t][i] = sum_g float(sum_{j in g} wq[i][j] xq[t][j]) * ws[i][g] * xs[t][g].
 *
 * The int8 dot product. x86 has no signed x signed byte multiply; maddubs multiplies unsigned
 * bytes by signed bytes and adds adjacent pairs into int16 (saturating). So w x = |w| (x with w's
 * sign): |w| is 0..128 as an unsigned byte (-128 included), x carrying w's sign stays in
 * [-127, 127] because x does (quantize_q8), and a pair is at most 2 * 128 * 127 = 32512 < 32767:
 * never saturates, for every weight value. madd with ones then adds int16 pairs into int32 lanes,
 * each lane the exact sum of 4 adjacent products. (VNNI's dpbusd does maddubs, madd and the add
 * in one instruction, in int32, with the same operands.)
 *
 * The plan, as for the fp32 kernels (kernels_x86.c): output rows go in blocks of 4 weight rows;
 * the block is read from memory once and dotted with the input rows one (T = 1) or two at a time
 * while it sits in L1, so T = 2..8 reuse it, and the next block's rows are prefetched meanwhile.
 * Within a group the int32 lanes accumulate exactly; at the end of a group (or of a Q8_PIECE-long
 * piece of one) they become floats and are added with the group's scales ws * xs, 8 (16) lanes
 * wide; the lanes are summed once per output at the end.
 *
 * Group sizes: gs a multiple of 32 (AVX-512: of 64) runs this plan. AVX2 also takes gs = 32 m + 16
 * up to Q8_PIECE (16, 48, 80, ...; 48 is the 15M shape's default), splitting the 32-byte step that
 * straddles two groups by its 128-bit halves; and gs = 4, the group of one int32 lane, by
 * multiplying the lanes by 8 consecutive scales (the 260K real file). The portable kernel gets
 * the rest: every gs but 4 that is not a multiple of 16 (1, 2, 8, 12, 24, 40, ...), and gs =
 * 32 m + 16 above Q8_PIECE. AVX-512 hands gs not a multiple of 64 to AVX2. */
#include "config.h"
#include "internal.h"

#ifdef KERNELS_X86
#include <immintrin.h>

#include "vector_x86.h"

#define Q8_ROWS 4       /* weight rows per block */
/* Prefetch the rows this many blocks ahead: 2 beat 0, 1 and 4 at T = 1 (bench/q8_bench, 110M
 * shapes; the hardware prefetcher alone falls behind when a block's arithmetic outlasts its loads). */
#define Q8_PREFETCH 2
/* Longest exact int32 run within a group: a lane then holds at most 4096 / 8 products of at
 * most 128 * 127, far below 2^31 (longer groups go in pieces, each its own float term). */
#define Q8_PIECE 4096

int q8_avx512_available(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

int q8_avx512_vnni_available(void)
{
    return q8_avx512_available() && __builtin_cpu_supports("avx512vnni");
}

/* ------------------------------------------------------------------------------ AVX2 */

/* 8 int32 lanes, each the exact sum of 4 adjacent products w x (see the top for why |w|). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256i dot_avx2(__m256i w, __m256i x)
{
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* One 32-byte step at column j (w at W[r][j], x at x[c][j]) of R weight rows against C input rows:
 * the int32 lane sums added to isum. half: only 16 bytes, zero-extended (the zero high half
 * adds 0). Also prefetches the same columns of the rows Q8_PREFETCH blocks on, once a cache line. */
__attribute__((always_inline, target("avx2,fma")))
static inline void step_avx2(__m256i isum[Q8_ROWS][4], const int8_t *x, const int8_t *w, int j, int K, int R,
                             int C, int half)
{
    __m256i wv[Q8_ROWS];
    for (int r = 0; r < R; r++)
        wv[r] = half ? _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(w + (size_t)r * K)))
                     : _mm256_loadu_si256((const __m256i *)(w + (size_t)r * K));
    if (Q8_PREFETCH && (j & 63) == 0) /* the same columns of a later block's rows */
        for (int r = 0; r < R; r++)
            _mm_prefetch((const char *)(w + (size_t)(r + Q8_PREFETCH * R) * K), _MM_HINT_T0);
    for (int c = 0; c < C; c++) {
        __m256i xv = half ? _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(x + (size_t)c * K)))
                          : _mm256_loadu_si256((const __m256i *)(x + (size_t)c * K));
        for (int r = 0; r < R; r++)
            isum[r][c] = _mm256_add_epi32(isum[r][c], dot_avx2(wv[r], xv));
    }
}

/* acc[r][c] += float(isum[r][c]) * ws[r][g] * xs[c][g]: one group's (or piece's) term. */
__attribute__((always_inline, target("avx2,fma")))
static inline void flush_avx2(__m256 acc[Q8_ROWS][4], __m256i isum[Q8_ROWS][4], const float *xs, const float *ws,
                              int G, int g, int R, int C)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]),
                                        _mm256_set1_ps(ws[(size_t)r * G + g] * xs[(size_t)c * G + g]), acc[r][c]);
}

/* The R x C block's float sums and int32 group sums start at zero; y[c][r] gets the lane sum of
 * acc[r][c]. */
__attribute__((always_inline, target("avx2,fma")))
static inline void clear_acc_avx2(__m256 acc[Q8_ROWS][4], int R, int C)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
}

__attribute__((always_inline, target("avx2,fma")))
static inline void clear_sums_avx2(__m256i isum[Q8_ROWS][4], int R, int C)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            isum[r][c] = _mm256_setzero_si256();
}

__attribute__((always_inline, target("avx2,fma")))
static inline void store_avx2(float *y, int N, __m256 acc[Q8_ROWS][4], int R, int C)
{
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            y[(size_t)c * N + r] = sum_avx2(acc[r][c]);
}

/* y[c][r] = W[r] . x[c] for r < R weight rows, c < C input rows; y points at y[t0][i0], x at
 * xq[t0], w at wq[i0], xs and ws at their rows' scales. gs a multiple of 32. R and C are constants
 * after inlining, so acc stays in registers. */
__attribute__((always_inline, target("avx2,fma")))
static inline void block32_avx2(float *y, const int8_t *x, const float *xs, const int8_t *w, const float *ws,
                                int K, int N, int gs, int R, int C)
{
    int G = K / gs;
    __m256 acc[Q8_ROWS][4];
    clear_acc_avx2(acc, R, C);
    for (int g = 0; g < G; g++)
        for (int p = g * gs; p < (g + 1) * gs; p += Q8_PIECE) {
            int end = p + Q8_PIECE < (g + 1) * gs ? p + Q8_PIECE : (g + 1) * gs;
            __m256i isum[Q8_ROWS][4];
            clear_sums_avx2(isum, R, C);
            for (int j = p; j < end; j += 32)
                step_avx2(isum, x + j, w + j, j, K, R, C, 0);
            flush_avx2(acc, isum, xs, ws, G, g, R, C);
        }
    store_avx2(y, N, acc, R, C);
}

/* As block32_avx2 for gs = 32 m + 16 <= Q8_PIECE (16, 48, 80, ...; the 15M shape's default 48).
 * Two groups g, g + 1 are 2 gs = 32 (2 m + 1) bytes: m whole steps of g, one split step whose low
 * 16 bytes end g and high 16 begin g + 1, m whole steps of g + 1. maddubs and madd keep to 4-byte
 * lanes, so the split step's int32 lanes 0..3 are g's and 4..7 are g + 1's: a blend hands each
 * half to its group, every group sum still exact. A last unpaired group (G odd) ends in a half
 * step instead. Every step reads only bytes of the row. */
__attribute__((always_inline, target("avx2,fma")))
static inline void block16_avx2(float *y, const int8_t *x, const float *xs, const int8_t *w, const float *ws,
                                int K, int N, int gs, int R, int C)
{
    int G = K / gs, m = gs / 32;
    __m256 acc[Q8_ROWS][4];
    clear_acc_avx2(acc, R, C);
    for (int g = 0; g < G; g += 2) {
        int p = g * gs, mid = p + 32 * m; /* the split step */
        __m256i isum[Q8_ROWS][4];
        clear_sums_avx2(isum, R, C);
        for (int j = p; j < mid; j += 32)
            step_avx2(isum, x + j, w + j, j, K, R, C, 0);
        if (g + 1 == G) {
            step_avx2(isum, x + mid, w + mid, mid, K, R, C, 1);
            flush_avx2(acc, isum, xs, ws, G, g, R, C);
            break;
        }
        __m256i split[Q8_ROWS][4];
        clear_sums_avx2(split, R, C);
        step_avx2(split, x + mid, w + mid, mid, K, R, C, 0);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                __m256i low = _mm256_blend_epi32(split[r][c], _mm256_setzero_si256(), 0xF0); /* lanes 0..3 */
                isum[r][c] = _mm256_add_epi32(isum[r][c], low);
                split[r][c] = _mm256_blend_epi32(_mm256_setzero_si256(), split[r][c], 0xF0); /* lanes 4..7 */
            }
        flush_avx2(acc, isum, xs, ws, G, g, R, C);
        for (int j = mid + 32; j < p + 2 * gs; j += 32)
            step_avx2(split, x + j, w + j, j, K, R, C, 0);
        flush_avx2(acc, split, xs, ws, G, g + 1, R, C);
    }
    store_avx2(y, N, acc, R, C);
}

/* As block32_avx2 for gs = 4: int32 lane l of the 32 values at j is group j/4 + l, so the lanes
 * are scaled by 8 consecutive ws * xs. The last K % 32 values (whole groups) go one group at a
 * time. */
__attribute__((always_inline, target("avx2,fma")))
static inline void block4_avx2(float *y, const int8_t *x, const float *xs, const int8_t *w, const float *ws,
                               int K, int N, int R, int C)
{
    int G = K / 4, j = 0;
    __m256 acc[Q8_ROWS][4];
    clear_acc_avx2(acc, R, C);
    for (; j + 32 <= K; j += 32) {
        __m256i wv[Q8_ROWS];
        for (int r = 0; r < R; r++)
            wv[r] = _mm256_loadu_si256((const __m256i *)(w + (size_t)r * K + j));
        for (int c = 0; c < C; c++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * K + j));
            __m256 sx = _mm256_loadu_ps(xs + (size_t)c * G + j / 4);
            for (int r = 0; r < R; r++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_avx2(wv[r], xv)),
                                            _mm256_mul_ps(_mm256_loadu_ps(ws + (size_t)r * G + j / 4), sx),
                                            acc[r][c]);
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            float sum = sum_avx2(acc[r][c]);
            const int8_t *wr = w + (size_t)r * K, *xc = x + (size_t)c * K;
            for (int k = j; k < K; k += 4) {
                int32_t isum = 0;
                for (int l = k; l < k + 4; l++)
                    isum += (int32_t)wr[l] * (int32_t)xc[l];
                sum += (float)isum * (ws[(size_t)r * G + k / 4] * xs[(size_t)c * G + k / 4]);
            }
            y[(size_t)c * N + r] = sum;
        }
}

/* Blocks of AVX2_ROWS weight rows x AVX2_INPUTS input rows. With 16 registers the 4 x 2 block
 * already spills some sums, yet it was as fast as 4 x 1, 2 x 2 and 2 x 4 at T = 1..8 and the best
 * at T >= 8 (bench/q8_bench, hot weights): the multiplies, not the spills, set the pace. For the
 * same reason 2 x 4, 3 x 4 and 4 x 4 blocks from T = 4 on, which pay off in the load-bound fp32
 * kernel, were no faster here (cold weights, side by side), nor was prefetching on every step. */
#define AVX2_ROWS 4
#define AVX2_INPUTS 2

/* The group sizes the AVX2 plan takes (see the top); the rest go to the portable kernel. */
static int q8_avx2_group_size(int gs)
{
    return gs == 4 || gs % 32 == 0 || (gs % 32 == 16 && gs <= Q8_PIECE);
}

/* One block of R weight rows against C input rows, by group size. */
__attribute__((always_inline, target("avx2,fma")))
static inline void block_avx2(float *y, const int8_t *x, const float *xs, const int8_t *w, const float *ws,
                              int K, int N, int gs, int R, int C)
{
    if (gs == 4)
        block4_avx2(y, x, xs, w, ws, K, N, R, C);
    else
        block32_avx2(y, x, xs, w, ws, K, N, gs, R, C);
}

/* matmul_q8_avx2's row loop for gs = 32 m + 16, in a function of its own: inlined into
 * matmul_q8_avx2 beside the other group sizes it made their code up to a tenth slower at T = 1. */
__attribute__((noinline, target("avx2,fma")))
static void matmul16_avx2(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T,
                          int K, int N, int gs, int n0, int n1)
{
    int G = K / gs, i = n0;
    for (; i + AVX2_ROWS <= n1; i += AVX2_ROWS)
        for (int t = 0; t < T; t += AVX2_INPUTS) {
            float *yt = y + (size_t)t * N + i;
            const int8_t *xt = xq + (size_t)t * K, *wi = wq + (size_t)i * K;
            const float *st = xs + (size_t)t * G, *si = ws + (size_t)i * G;
            if (T - t == 1)
                block16_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, 1);
            else
                block16_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, AVX2_INPUTS);
        }
    for (; i < n1; i++)
        for (int t = 0; t < T; t++)
            block16_avx2(y + (size_t)t * N + i, xq + (size_t)t * K, xs + (size_t)t * G, wq + (size_t)i * K,
                         ws + (size_t)i * G, K, N, gs, 1, 1);
}

__attribute__((target("avx2,fma")))
void matmul_q8_avx2(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K,
                    int N, int gs, int n0, int n1)
{
    if (!q8_avx2_group_size(gs)) {
        matmul_q8_generic(y, xq, xs, wq, ws, T, K, N, gs, n0, n1);
        return;
    }
    if (gs % 32 == 16) {
        matmul16_avx2(y, xq, xs, wq, ws, T, K, N, gs, n0, n1);
        return;
    }
    int G = K / gs, i = n0;
    for (; i + AVX2_ROWS <= n1; i += AVX2_ROWS) {
        const int8_t *wi = wq + (size_t)i * K;
        const float *si = ws + (size_t)i * G;
        for (int t = 0; t < T; t += AVX2_INPUTS) {
            float *yt = y + (size_t)t * N + i;
            const int8_t *xt = xq + (size_t)t * K;
            const float *st = xs + (size_t)t * G;
            int C = T - t < AVX2_INPUTS ? T - t : AVX2_INPUTS;
            switch (C) {
            case 1: block_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, 1); break;
#if AVX2_INPUTS >= 2
            case 2: block_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, 2); break;
#endif
#if AVX2_INPUTS >= 3
            case 3: block_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, 3); break;
#endif
#if AVX2_INPUTS >= 4
            default: block_avx2(yt, xt, st, wi, si, K, N, gs, AVX2_ROWS, 4); break;
#endif
            }
        }
    }
    for (; i < n1; i++)
        for (int t = 0; t < T; t++)
            block_avx2(y + (size_t)t * N + i, xq + (size_t)t * K, xs + (size_t)t * G, wq + (size_t)i * K,
                       ws + (size_t)i * G, K, N, gs, 1, 1);
}

/* --- The float path of large batches (kernels_q8.c, q8_transpose_input): a batch of 16 rows or
 * more is bound by arithmetic, not memory, and there the int8 blocks above ran at 0.87 of the
 * fp32 kernels. So the input comes dequantized and transposed in blocks of 16 rows, and the
 * weights are dequantized 6 rows x OUTER_CHUNK columns at a time (18 KB of stack), once for the
 * whole batch, and multiplied by each block of inputs with the fp32 outer-product block
 * (vector_x86.h). Each term's exact value is the reference's, (wq xq) ws xs; only the rounding
 * differs (each factor rounded once, and one float sum over K terms where the reference sums
 * each group exactly). */

_Static_assert(TRANSPOSED_ROWS == OUTER_INPUTS, "the float copy's blocks are the outer-product block's inputs");

/* y (T, N) over output rows [n0, n1) from the float copy xt (T rounded up to 16 rows of K). The
 * columns go in chunks outermost, as in matmul_outer_avx2 (kernels_x86.c), so that a chunk of xt
 * stays in L2 while the weight rows stream past. */
__attribute__((target("avx2,fma")))
void matmul_q8_float_avx2(float *y, const float *xt, const int8_t *wq, const float *ws, int T, int K, int N, int gs,
                          int n0, int n1)
{
    float wd[OUTER_ROWS * OUTER_CHUNK];
    int G = K / gs, pieces = (K + OUTER_CHUNK - 1) / OUTER_CHUNK, chunk = (K + pieces - 1) / pieces;
    for (int j0 = 0; j0 < K; j0 += chunk) {
        int len = K - j0 < chunk ? K - j0 : chunk, add = j0 > 0;
        for (int i = n0; i < n1;) {
            int R = n1 - i >= OUTER_ROWS ? OUTER_ROWS : 1;
            for (int r = 0; r < R; r++)
                dequantize_q8(wd + r * len, wq + (size_t)(i + r) * K + j0, ws + (size_t)(i + r) * G, j0, len, gs);
            outer_rows_avx2(y + i, xt, wd, T, K, N, j0, len, len, R, add, 0);
            i += R;
        }
    }
}

/* q8_transpose_input (kernels_q8.c) for gs a multiple of 8: 8 columns of a 16-row block at a
 * time, each row's 8 int8 values widened, scaled by their group's scale and transposed as two
 * 8 x 8 tiles, as transpose_input_avx2 does with floats. */
__attribute__((target("avx2,fma")))
void q8_transpose_input_avx2(float *xt, const int8_t *xq, const float *xs, int T, int K, int gs)
{
    int G = K / gs;
    for (int t0 = 0; t0 < T; t0 += OUTER_INPUTS) {
        int rows = T - t0 < OUTER_INPUTS ? T - t0 : OUTER_INPUTS;
        float *block = xt + (size_t)t0 * K;
        for (int j = 0; j < K; j += 8)
            for (int half = 0; half < 2; half++) {
                __m256 v[8];
                for (int r = 0; r < 8; r++) {
                    int t = t0 + half * 8 + r;
                    if (half * 8 + r >= rows) {
                        v[r] = _mm256_setzero_ps();
                        continue;
                    }
                    __m128i bytes = _mm_loadl_epi64((const __m128i *)(xq + (size_t)t * K + j));
                    v[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)),
                                         _mm256_set1_ps(xs[(size_t)t * G + j / gs]));
                }
                transpose8_avx2(v);
                for (int c = 0; c < 8; c++)
                    _mm256_storeu_ps(block + (size_t)(j + c) * OUTER_INPUTS + half * 8, v[c]);
            }
    }
}

/* quantize_q8 for gs a multiple of 8, 8 values at a time, the same arithmetic as the scalar one
 * (kernels_q8.c quantize_one): the group's max|x| / 127, v = x / scale, clamp to [-127, 127]
 * (NaN to 0), trunc, then +-1 where the remainder reaches a half. */
__attribute__((target("avx2,fma")))
void quantize_q8_avx2(int8_t *xq, float *xs, const float *x, int T, int K, int gs)
{
    size_t groups = (size_t)T * (K / gs);
    const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.0f), half = _mm256_set1_ps(0.5f);
    for (size_t g = 0; g < groups; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = xq + g * gs;
        __m256 mv = _mm256_setzero_ps();
        for (int j = 0; j < gs; j += 8) /* max(a, NaN) keeps a, as the scalar comparison does */
            mv = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xg + j)), mv);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float scale = _mm_cvtss_f32(m) / 127.0f;
        xs[g] = scale;
        __m256 sv = _mm256_set1_ps(scale);
        for (int j = 0; j < gs; j += 8) {
            __m256 v = _mm256_div_ps(_mm256_loadu_ps(xg + j), sv);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN (and 0 / 0) -> 0 */
            v = _mm256_min_ps(_mm256_max_ps(v, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
            __m256i i = _mm256_cvttps_epi32(v);
            __m256 d = _mm256_sub_ps(v, _mm256_cvtepi32_ps(i));
            /* compare masks are -1 where true: i - (d >= 0.5) + (d <= -0.5) */
            i = _mm256_sub_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(d, half, _CMP_GE_OQ)));
            i = _mm256_add_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(d, _mm256_sub_ps(_mm256_setzero_ps(), half),
                                                                      _CMP_LE_OQ)));
            __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
            _mm_storel_epi64((__m128i *)(qg + j), _mm_packs_epi16(w16, w16));
        }
    }
}

/* ------------------------------------------------------------------------------ AVX-512 */
/* The AVX2 plan with 64-byte vectors, for gs a multiple of 64 (other group sizes: AVX2). AVX-512
 * has no byte sign instruction: x is negated under the mask of w's negative bytes instead (where
 * w = 0, |w| = 0 makes the product 0 either way). NOT run on the development machine (no AVX-512
 * there): the tests run it wherever the CPU has it. */

/* 16 int32 lanes, each the exact sum of 4 adjacent products, added to acc. */
__attribute__((always_inline, target("avx512f,avx512bw")))
static inline __m512i dot_add_avx512(__m512i acc, __m512i w, __m512i x)
{
    __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    __m512i pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(w), sx);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
}

__attribute__((always_inline, target("avx512f,avx512bw,avx512vnni")))
static inline __m512i dot_add_vnni(__m512i acc, __m512i w, __m512i x)
{
    __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), sx);
}

/* block32_avx2 with 64-byte steps; DOT is dot_add_avx512 or dot_add_vnni. */
#define BLOCK64(NAME, TARGET, DOT)                                                                          \
    __attribute__((always_inline, target(TARGET)))                                                         \
    static inline void NAME(float *y, const int8_t *x, const float *xs, const int8_t *w, const float *ws,  \
                            int K, int N, int gs, int R, int C)                                            \
    {                                                                                                      \
        int G = K / gs;                                                                                    \
        __m512 acc[Q8_ROWS][2];                                                                            \
        for (int r = 0; r < R; r++)                                                                        \
            for (int c = 0; c < C; c++)                                                                    \
                acc[r][c] = _mm512_setzero_ps();                                                           \
        for (int g = 0; g < G; g++)                                                                        \
            for (int p = g * gs; p < (g + 1) * gs; p += Q8_PIECE) {                                        \
                int end = p + Q8_PIECE < (g + 1) * gs ? p + Q8_PIECE : (g + 1) * gs;                       \
                __m512i isum[Q8_ROWS][2];                                                                  \
                for (int r = 0; r < R; r++)                                                                \
                    for (int c = 0; c < C; c++)                                                            \
                        isum[r][c] = _mm512_setzero_si512();                                               \
                for (int j = p; j < end; j += 64) {                                                        \
                    __m512i wv[Q8_ROWS];                                                                   \
                    for (int r = 0; r < R; r++)                                                            \
                        wv[r] = _mm512_loadu_si512((const void *)(w + (size_t)r * K + j));                 \
                    for (int r = 0; r < R; r++)                                                            \
                        _mm_prefetch((const char *)(w + (size_t)(r + Q8_PREFETCH * R) * K + j), _MM_HINT_T0); \
                    for (int c = 0; c < C; c++) {                                                          \
                        __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)c * K + j));            \
                        for (int r = 0; r < R; r++)                                                        \
                            isum[r][c] = DOT(isum[r][c], wv[r], xv);                                       \
                    }                                                                                      \
                }                                                                                          \
                for (int r = 0; r < R; r++)                                                                \
                    for (int c = 0; c < C; c++)                                                            \
                        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]),                        \
                                                    _mm512_set1_ps(ws[(size_t)r * G + g] *                 \
                                                                   xs[(size_t)c * G + g]),                 \
                                                    acc[r][c]);                                            \
            }                                                                                              \
        for (int c = 0; c < C; c++)                                                                        \
            for (int r = 0; r < R; r++)                                                                    \
                y[(size_t)c * N + r] = _mm512_reduce_add_ps(acc[r][c]);                                    \
    }

/* The row loop of matmul_q8_avx2: blocks of 4 weight rows x 2 input rows (8 float and 8 int32
 * accumulators, as AVX2; more input rows would spill the int32 sums even with 32 registers). */
#define MATMUL64(NAME, TARGET, BLOCK)                                                                      \
    __attribute__((target(TARGET)))                                                                        \
    void NAME(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K, \
              int N, int gs, int n0, int n1)                                                               \
    {                                                                                                      \
        if (gs % 64 != 0) {                                                                                \
            matmul_q8_avx2(y, xq, xs, wq, ws, T, K, N, gs, n0, n1);                                        \
            return;                                                                                        \
        }                                                                                                  \
        int G = K / gs, i = n0;                                                                            \
        for (; i + Q8_ROWS <= n1; i += Q8_ROWS) {                                                          \
            const int8_t *wi = wq + (size_t)i * K;                                                         \
            const float *si = ws + (size_t)i * G;                                                          \
            for (int t = 0; t < T; t += 2) {                                                               \
                float *yt = y + (size_t)t * N + i;                                                         \
                const int8_t *xt = xq + (size_t)t * K;                                                     \
                const float *st = xs + (size_t)t * G;                                                      \
                if (T - t == 1)                                                                            \
                    BLOCK(yt, xt, st, wi, si, K, N, gs, 4, 1);                                             \
                else                                                                                       \
                    BLOCK(yt, xt, st, wi, si, K, N, gs, 4, 2);                                             \
            }                                                                                              \
        }                                                                                                  \
        for (; i < n1; i++)                                                                                \
            for (int t = 0; t < T; t++)                                                                    \
                BLOCK(y + (size_t)t * N + i, xq + (size_t)t * K, xs + (size_t)t * G, wq + (size_t)i * K,   \
                      ws + (size_t)i * G, K, N, gs, 1, 1);                                                 \
    }

BLOCK64(block64_avx512, "avx512f,avx512bw", dot_add_avx512)
BLOCK64(block64_vnni, "avx512f,avx512bw,avx512vnni", dot_add_vnni)
MATMUL64(matmul_q8_avx512, "avx512f,avx512bw", block64_avx512)
MATMUL64(matmul_q8_avx512_vnni, "avx512f,avx512bw,avx512vnni", block64_vnni)

#endif
