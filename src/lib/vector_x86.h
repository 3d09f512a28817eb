/* vector_x86.h: small AVX2 helpers shared by the fp32 and the int8 kernels (kernels_x86.c,
 * kernels_q8_x86.c). Include only inside #ifdef KERNELS_X86, after <immintrin.h>. */
#ifndef LLAMIX_VECTOR_X86_H
#define LLAMIX_VECTOR_X86_H

/* The sum of a's eight lanes: halves, then pairs, then the last two. */
__attribute__((always_inline, target("avx2,fma")))
static inline float sum_avx2(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The eight columns of an 8 x 8 tile: v[r] holds row r on entry, column r on return (the
 * usual three rounds of unpack, shuffle and lane permute). */
__attribute__((always_inline, target("avx2,fma")))
static inline void transpose8_avx2(__m256 v[8])
{
    __m256 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        a[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        b[i] = _mm256_shuffle_ps(a[i], a[i + 2], 0x44);
        b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], 0xEE);
        b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0x44);
        b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x31);
    }
}

/* The block of the AVX2 outer products (T >= AVX2_OUTER_MIN_T), for fp32 weights (kernels_x86.c,
 * whose comment gives the plan) and for int8 ones dequantized (kernels_q8_x86.c, float path). */
#define OUTER_INPUTS 16  /* input rows per block: two vectors */
#define OUTER_ROWS 6     /* weight rows per block: 12 accumulators of 16 registers */
#define OUTER_CHUNK 768  /* columns of the transposed copy: 16 x 768 floats, 48 KB */

/* y[t][i] (+)= sum over len columns of W[i][j] xT[j][t] for the R weight rows at w (rows K apart)
 * and the first `rows` of the 16 transposed input rows; y points at y[t0][i0]; add: accumulate
 * (the chunks after the first); prefetch: ask for the next R rows' lines meanwhile, into L2.
 * R is a constant after inlining. */
__attribute__((always_inline, target("avx2,fma")))
static inline void outer_block_avx2(float *y, const float *xT, const float *w, int len, int K, int N, int R,
                                    int rows, int add, int prefetch)
{
    __m256 acc[OUTER_ROWS][2];
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int j0 = 0; j0 < len; j0 += 16) { /* 16 columns: one cache line of each weight row */
        if (prefetch)
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)(w + (size_t)(r + R) * K + j0), _MM_HINT_T1);
        int j1 = len - j0 < 16 ? len : j0 + 16;
        for (int j = j0; j < j1; j++) {
            __m256 lo = _mm256_loadu_ps(xT + (size_t)j * OUTER_INPUTS);
            __m256 hi = _mm256_loadu_ps(xT + (size_t)j * OUTER_INPUTS + 8);
            for (int r = 0; r < R; r++) {
                __m256 wv = _mm256_broadcast_ss(w + (size_t)r * K + j);
                acc[r][0] = _mm256_fmadd_ps(lo, wv, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(hi, wv, acc[r][1]);
            }
        }
    }
    float sums[OUTER_ROWS][OUTER_INPUTS] __attribute__((aligned(32)));
    for (int r = 0; r < R; r++) {
        _mm256_store_ps(sums[r], acc[r][0]);
        _mm256_store_ps(sums[r] + 8, acc[r][1]);
    }
    for (int t = 0; t < rows; t++) /* once per block: the transposed store costs little */
        for (int r = 0; r < R; r++)
            y[(size_t)t * N + r] = (add ? y[(size_t)t * N + r] : 0.0f) + sums[r][t];
}

/* Columns [j0, j0 + len) of the R weight rows at w (R is 6 or 1, rows w_stride floats apart)
 * against every 16-row block of the transposed copy xt of T input rows of K columns (xt[b][j][r]);
 * y points at y[0][i0]. prefetch: the first block's pass asks for the next 6 rows. */
__attribute__((always_inline, target("avx2,fma")))
static inline void outer_rows_avx2(float *y, const float *xt, const float *w, int T, int K, int N, int j0, int len,
                                   int w_stride, int R, int add, int prefetch)
{
    for (int t0 = 0; t0 < T; t0 += OUTER_INPUTS) {
        int rows = T - t0 < OUTER_INPUTS ? T - t0 : OUTER_INPUTS;
        const float *block = xt + (size_t)t0 * K + (size_t)j0 * OUTER_INPUTS;
        float *yt = y + (size_t)t0 * N;
        if (R == OUTER_ROWS)
            outer_block_avx2(yt, block, w, len, w_stride, N, OUTER_ROWS, rows, add, prefetch && t0 == 0);
        else
            outer_block_avx2(yt, block, w, len, w_stride, N, 1, rows, add, 0);
    }
}

#endif
