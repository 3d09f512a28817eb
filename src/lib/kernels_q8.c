/* kernels_q8.c: the Q8_0 (int8) matrix products: quantizing activations, the plain reference
 * product (the oracle), a portable kernel, and the run-time choice of the vector kernels of
 * kernels_q8_x86.c.
 *
 * The format is llama2.c's version 2 (runq.c): a matrix W (N, K) is int8 values wq (N, K) and one
 * float scale per group of gs consecutive values of a row, ws (N, K/gs), W[i][j] ~ wq[i][j] *
 * ws[i][j/gs]. The activations x (T, K) are quantized the same way just before each product, so
 * a product is, per output y[t][i], a sum over groups g of
 *     float(sum_{j in g} wq[i][j] xq[t][j]) * ws[i][g] * xs[t][g],
 * the inner sum exact in int32. The fast kernels add the same group terms in another order (in
 * vector lanes, each an exact partial sum of its group, and long groups in exact pieces), so they
 * equal the reference up to float rounding of the outer sum. Every product of a forward quantizes its input with quantize_q8,
 * whatever T, so a k-token forward and k one-token forwards see the same int8 activations.
 *
 * Why the kernels need activations in [-127, 127] (quantize_q8 gives nothing else): the x86
 * kernels multiply |w| (unsigned, 0..128: -128 included) by x carrying w's sign; negating x =
 * -128 would wrap. Weights may hold any int8 value, -128 too (a hostile file). */
#include "config.h"
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------ quantize */

/* One value v = x / scale rounded to the nearest int8, halves away from zero: runq.c's round()
 * (and roundf), written without a libm call or branches so the loop vectorises: i = trunc(v), and
 * the remainder v - i (exact for |v| < 2^23) decides (checked against roundf for every float of
 * magnitude below 127 when written). |x| <= max|x| makes |v| <= 127 up to rounding; the clamp keeps anything
 * else defined (NaN gives 0, infinities the extremes). */
static inline int8_t quantize_one(float v)
{
    v = v == v ? v : 0.0f;
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    int i = (int)v;
    float d = v - (float)i;
    i += (d >= 0.5f) - (d <= -0.5f);
    return (int8_t)i;
}

void quantize_q8(int8_t *xq, float *xs, const float *x, int T, int K, int gs)
{
#ifdef KERNELS_X86
    if (gs % 8 == 0 && kernels_isa() >= KERNEL_ISA_AVX2) {
        quantize_q8_avx2(xq, xs, x, T, K, gs);
        return;
    }
#endif
    size_t groups = (size_t)T * (K / gs);
    for (size_t g = 0; g < groups; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = xq + g * gs;
        float max = 0.0f;
        for (int j = 0; j < gs; j++) {
            float a = fabsf(xg[j]);
            if (a > max)
                max = a;
        }
        float scale = max / 127.0f;
        xs[g] = scale;
        if (scale == 0.0f) { /* an all-zero group: runq.c would divide 0 by 0 here */
            for (int j = 0; j < gs; j++)
                qg[j] = 0;
            continue;
        }
        /* x / scale, not x * (1 / scale): the division is what runq.c and export.py compute, and
         * the two differ in the last bit, which can move a value across a rounding boundary. */
        for (int j = 0; j < gs; j++)
            qg[j] = quantize_one(xg[j] / scale);
    }
}

/* ------------------------------------------------------------------------------ reference */

/* runq.c's matmul, per group an exact integer sum then one float term, over T input rows and
 * output columns [n0, n1). The group sum is taken in 64 bits: equal to runq.c's int32 whenever
 * that does not overflow (groups up to 132104 values), and defined beyond. */
void matmul_q8_reference(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                         int T, int K, int N, int gs, int n0, int n1)
{
    int G = K / gs;
    for (int t = 0; t < T; t++) {
        const int8_t *xt = xq + (size_t)t * K;
        const float *st = xs + (size_t)t * G;
        for (int i = n0; i < n1; i++) {
            const int8_t *wi = wq + (size_t)i * K;
            const float *si = ws + (size_t)i * G;
            float sum = 0.0f;
            for (int g = 0; g < G; g++) {
                int64_t isum = 0;
                for (int j = g * gs; j < (g + 1) * gs; j++)
                    isum += (int32_t)wi[j] * (int32_t)xt[j];
                sum += (float)isum * si[g] * st[g];
            }
            y[(size_t)t * N + i] = sum;
        }
    }
}

/* ------------------------------------------------------------------------------ portable */

/* Values per exact integer piece: a group longer than this is summed in pieces, each turned into
 * a float term with the group's scales, so an int32 never holds more than 4096 products of at
 * most 128 * 127 (2^31 / 16256 would allow 132104). */
#define Q8_PIECE 4096

/* One weight row against one input row: the reference's sum with int32 group sums and the
 * inner loop in a shape the compiler vectorises. */
static float dot_q8_generic(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int K, int gs)
{
    float sum = 0.0f;
    for (int j0 = 0; j0 < K; j0 += gs) {
        float scale = ws[j0 / gs] * xs[j0 / gs];
        for (int p = j0; p < j0 + gs; p += Q8_PIECE) {
            int end = p + Q8_PIECE < j0 + gs ? p + Q8_PIECE : j0 + gs;
            int32_t isum = 0;
            for (int j = p; j < end; j++)
                isum += (int32_t)w[j] * (int32_t)x[j];
            sum += (float)isum * scale;
        }
    }
    return sum;
}

/* Each weight row once, dotted with all T input rows while it is in L1. */
void matmul_q8_generic(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T,
                       int K, int N, int gs, int n0, int n1)
{
    int G = K / gs;
    for (int i = n0; i < n1; i++)
        for (int t = 0; t < T; t++)
            y[(size_t)t * N + i] = dot_q8_generic(wq + (size_t)i * K, ws + (size_t)i * G, xq + (size_t)t * K,
                                                  xs + (size_t)t * G, K, gs);
}

/* ------------------------------------------------------------------------------ choice */

typedef void Q8Fn(float *, const int8_t *, const float *, const int8_t *, const float *, int, int, int, int, int,
                  int);

/* The kernel for the instruction set kernels_set_isa() chose (kernels.c): AVX-512 needs BW for
 * bytes (VNNI, where present, for the 4-way multiply-add), AVX2 needs FMA too. */
static Q8Fn *q8_kernel(const char **name)
{
    const char *n = "generic";
    Q8Fn *fn = matmul_q8_generic;
#ifdef KERNELS_X86
    KernelIsa isa = kernels_isa();
    if (isa == KERNEL_ISA_AVX512 && q8_avx512_available()) {
        int vnni = q8_avx512_vnni_available();
        n = vnni ? "avx512-vnni" : "avx512";
        fn = vnni ? matmul_q8_avx512_vnni : matmul_q8_avx512;
    } else if (isa >= KERNEL_ISA_AVX2) {
        n = "avx2";
        fn = matmul_q8_avx2;
    }
#endif
    if (name)
        *name = n;
    return fn;
}

const char *kernels_q8_name(void)
{
    const char *name;
    q8_kernel(&name);
    return name;
}

/* Input rows per tile: every block of weight rows meets all the input rows of a tile, so the
 * tile's int8 rows must stay in L2 while W streams past (half of this machine's 1 MB). */
#define Q8_TILE_BYTES (512 * 1024)

void matmul_q8_slice(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                     int T, int K, int N, int gs, int n0, int n1)
{
    if (n1 <= n0)
        return;
    Q8Fn *fn = q8_kernel(NULL);
    int G = K / gs;
    int tile = Q8_TILE_BYTES / K / 8 * 8;
    if (tile < 8)
        tile = 8;
    for (int t = 0; t < T; t += tile)
        fn(y + (size_t)t * N, xq + (size_t)t * K, xs + (size_t)t * G, wq, ws, T - t < tile ? T - t : tile, K, N,
           gs, n0, n1);
}

/* ------------------------------------------------------------------------------ float path */

void q8_transpose_input(float *xt, const int8_t *xq, const float *xs, int T, int K, int gs)
{
#ifdef KERNELS_X86
    if (gs % 8 == 0 && kernels_isa() == KERNEL_ISA_AVX2) {
        q8_transpose_input_avx2(xt, xq, xs, T, K, gs);
        return;
    }
#endif
    int G = K / gs;
    for (int b = 0; b < (T + TRANSPOSED_ROWS - 1) / TRANSPOSED_ROWS; b++) {
        float *block = xt + (size_t)b * K * TRANSPOSED_ROWS;
        for (int r = 0; r < TRANSPOSED_ROWS; r++) {
            int t = b * TRANSPOSED_ROWS + r;
            if (t >= T) { /* the last block's rows past T */
                for (int j = 0; j < K; j++)
                    block[(size_t)j * TRANSPOSED_ROWS + r] = 0.0f;
                continue;
            }
            for (int g = 0; g < G; g++) { /* group g: columns g gs .. (g + 1) gs - 1, one scale */
                float scale = xs[(size_t)t * G + g];
                for (int j = g * gs; j < (g + 1) * gs; j++)
                    block[(size_t)j * TRANSPOSED_ROWS + r] = xq[(size_t)t * K + j] * scale;
            }
        }
    }
}

void matmul_q8_float_slice(float *y, const float *xt, const int8_t *wq, const float *ws, int T, int K, int N, int gs,
                           int n0, int n1)
{
#ifdef KERNELS_X86
    if (kernels_isa() >= KERNEL_ISA_AVX2) {
        matmul_q8_float_avx2(y, xt, wq, ws, T, K, N, gs, n0, n1);
        return;
    }
#endif
    int G = K / gs; /* plain loops without AVX2 (where run_products never takes this path; the tests do) */
    for (int t = 0; t < T; t++) {
        const float *block = xt + (size_t)(t / TRANSPOSED_ROWS) * K * TRANSPOSED_ROWS + t % TRANSPOSED_ROWS;
        for (int i = n0; i < n1; i++) {
            float sum = 0.0f;
            for (int j = 0; j < K; j++)
                sum += block[(size_t)j * TRANSPOSED_ROWS] * (wq[(size_t)i * K + j] * ws[(size_t)i * G + j / gs]);
            y[(size_t)t * N + i] = sum;
        }
    }
}
