/* test_kernels_q8.c: the Q8_0 kernels. quantize_q8 must give hand-worked values (runq.c's
 * rounding, all-zero groups, signs); every instruction set's matmul_q8_slice, and the portable
 * kernel, must match matmul_q8_reference on awkward shapes, group sizes, row counts 1..300 (across
 * the tiling of large batches), slices of the output columns, and extreme values (-128 weights,
 * +-127 activations, huge scales).
 *
 * Tolerance: the kernels add the same per-group float terms f_g = float(isum_g) ws xs as the
 * reference, in another order, split into vector lanes (each lane an exact partial sum of the
 * group) and, for long groups, pieces. Each side's float sum has G terms per lane plus a few
 * levels of lane and scale arithmetic, so with M = sum_g sum_{j in g} |wq xq| ws xs (a bound on
 * every partial term's size) the check is
 *     |y - y_ref| <= (2 G + 16) * FLT_EPSILON * M   (+ FLT_MIN),
 * a bound on rounding only: one swapped pair of scales or a result off by 1e-4 of that sum is far
 * outside it (negative controls below). The float path of large batches (matmul_q8_float_slice:
 * each term rounded, then one float sum of K terms) is held to (K + 2 G + 16) FLT_EPSILON M.
 * Data from a fixed-seed xorshift generator. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SENTINEL 12345.0f /* written into y outside the slice; must survive */

static uint64_t next(uint64_t *state)
{
    *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17; /* xorshift64 */
    return *state;
}

static float uniform(uint64_t *state) /* [-1, 1) */
{
    return (float)(next(state) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ------------------------------------------------------------------------------ quantize */

static void test_quantize_hand_worked(void **state)
{
    (void)state;
    /* Groups of 4. Scales chosen exact (max 127 -> 1, 254 -> 2, 63.5 -> 0.5), so the quotients
     * are exact and the rounding is what is tested: halves go away from zero (runq.c's round;
     * half to even would give 2, -2, 2, -0). */
    const float x[] = {127, -2.5f, 2.5f, 0.49f,  /* scale 1 */
                       -254, 5, -1, 3,           /* scale 2: -127, 2.5 -> 3, -0.5 -> -1, 1.5 -> 2 */
                       0, 0, 0, 0,               /* all zero: scale 0, zeros */
                       -63.5f, 1, 0, -0.25f};    /* scale 0.5: -127, 2, 0, -0.5 -> -1 */
    const int8_t want_q[] = {127, -3, 3, 0, -127, 3, -1, 2, 0, 0, 0, 0, -127, 2, 0, -1};
    const float want_s[] = {1, 2, 0, 0.5f};
    int8_t q[16];
    float s[4];
    memset(q, 99, sizeof q);
    quantize_q8(q, s, x, 2, 8, 4); /* T = 2 rows of K = 8 */
    for (int j = 0; j < 16; j++)
        assert_int_equal(q[j], want_q[j]);
    for (int g = 0; g < 4; g++)
        assert_true(s[g] == want_s[g]);
    float back[16];
    dequantize_q8(back, q, s, 0, 16, 4);
    for (int j = 0; j < 16; j++)
        assert_true(back[j] == q[j] * s[j / 4]);
    /* A span from column 6 on, 7 long: the first two values end group 1, the last is group 3's. */
    memset(back, 0, sizeof back);
    dequantize_q8(back, q + 6, s, 6, 7, 4);
    for (int j = 0; j < 7; j++)
        assert_true(back[j] == q[6 + j] * s[(6 + j) / 4]);
    assert_true(back[7] == 0.0f);

    /* Group size 1: every value is +-127 times its own scale (or 0). */
    const float y[] = {3, -7, 0};
    quantize_q8(q, s, y, 1, 3, 1);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -127);
    assert_int_equal(q[2], 0);
    assert_true(s[0] == 3.0f / 127.0f && s[1] == 7.0f / 127.0f && s[2] == 0.0f);

    /* Non-finite input stays defined: never outside [-127, 127]. */
    const float bad[] = {NAN, 1, INFINITY, -2};
    quantize_q8(q, s, bad, 1, 4, 4);
    for (int j = 0; j < 4; j++)
        assert_true(q[j] >= -127 && q[j] <= 127);
}

/* Random rows: the quantized values reproduce x within half a step, and each group's largest
 * value maps to +-127. */
static void test_quantize_random(void **state)
{
    (void)state;
    uint64_t rs = 7;
    const int T = 3, K = 96, gs = 32;
    float x[3 * 96], s[3 * 3];
    int8_t q[3 * 96];
    for (int j = 0; j < T * K; j++)
        x[j] = uniform(&rs) * 10.0f;
    quantize_q8(q, s, x, T, K, gs);
    for (int g = 0; g < T * K / gs; g++) {
        int top = 0;
        for (int j = g * gs; j < (g + 1) * gs; j++) {
            assert_true(fabsf(q[j] * s[g] - x[j]) <= 0.5f * s[g] * (1 + 1e-5f));
            assert_true(q[j] >= -127 && q[j] <= 127);
            top = abs(q[j]) > top ? abs(q[j]) : top;
        }
        assert_int_equal(top, 127);
    }
}

static const struct {
    KernelIsa isa;
    const char *name; /* kernels_q8_name() must start with this */
} isas[] = {{KERNEL_ISA_GENERIC, "generic"}, {KERNEL_ISA_AVX2, "avx2"}, {KERNEL_ISA_AVX512, "avx512"}};
#define N_ISAS (int)(sizeof isas / sizeof isas[0])

/* Every instruction set's quantize_q8 gives the scalar one's bytes and scales exactly, on
 * values that stress it: exact halves (k + 0.5 after the division), an all-zero group, NaN and
 * infinities, and random values, for group sizes 8 to 64. */
static void test_quantize_every_isa(void **state)
{
    (void)state;
    enum { K = 256 };
    float x[2 * K];
    uint64_t rs = 11;
    for (int j = 0; j < 2 * K; j++)
        x[j] = uniform(&rs) * 3.0f;
    for (int j = 0; j < 64; j++) /* group 0 (gs <= 64): max 127, so v = x exactly, halves */
        x[j] = j == 0 ? 127.0f : (float)(j % 21) - 10.5f;
    for (int j = 64; j < 128; j++) /* all zero */
        x[j] = 0.0f;
    x[130] = NAN, x[200] = INFINITY, x[300] = -INFINITY, x[301] = NAN;
    static const int sizes[] = {8, 16, 32, 64};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int gs = sizes[s], G = K / gs;
        int8_t want_q[2 * K], q[2 * K];
        float want_s[2 * K], sc[2 * K];
        kernels_set_isa(KERNEL_ISA_GENERIC);
        quantize_q8(want_q, want_s, x, 2, K, gs);
        for (int j = 1; j < 64 && j < gs; j++) /* the halves went away from zero */
            assert_int_equal(want_q[j], (int)roundf(x[j]));
        for (int k = 1; k < N_ISAS; k++) {
            if (!kernels_isa_available(isas[k].isa))
                continue;
            kernels_set_isa(isas[k].isa);
            memset(q, 99, sizeof q);
            quantize_q8(q, sc, x, 2, K, gs);
            assert_memory_equal(q, want_q, (size_t)2 * K);
            for (int g = 0; g < 2 * G; g++)
                assert_true(memcmp(&sc[g], &want_s[g], sizeof(float)) == 0 || (isnan(sc[g]) && isnan(want_s[g])));
        }
    }
    kernels_set_isa(KERNEL_ISA_AUTO);
}

/* ------------------------------------------------------------------------------ products */

typedef struct {
    int T, K, N, gs;
    int float_path; /* checked against the float path's bound */
    int8_t *xq, *wq;
    float *xs, *ws;
    float *y, *ref;
} Case;

enum { DATA_RANDOM, DATA_EXTREME };

/* Random (or extreme) weights: every int8 value, -128 included; activations quantized from
 * random floats by quantize_q8 (so in [-127, 127], as the kernels require). */
static void case_make(Case *c, int T, int K, int N, int gs, int data, uint64_t seed)
{
    uint64_t rs = seed;
    int G = K / gs;
    c->T = T, c->K = K, c->N = N, c->gs = gs, c->float_path = 0;
    c->xq = xmalloc((size_t)T * K);
    c->wq = xmalloc((size_t)N * K);
    c->xs = xmalloc((size_t)T * G * sizeof(float));
    c->ws = xmalloc((size_t)N * G * sizeof(float));
    c->y = xmalloc((size_t)T * N * sizeof(float));
    c->ref = xmalloc((size_t)T * N * sizeof(float));
    float *x = xmalloc((size_t)T * K * sizeof(float));
    for (size_t j = 0; j < (size_t)T * K; j++)
        x[j] = uniform(&rs);
    quantize_q8(c->xq, c->xs, x, T, K, gs);
    free(x);
    for (size_t j = 0; j < (size_t)N * K; j++)
        c->wq[j] = (int8_t)(next(&rs) >> 56);
    for (size_t g = 0; g < (size_t)N * G; g++)
        c->ws[g] = 0.5f + (uniform(&rs) + 1.0f) / 2.0f; /* [0.5, 1.5) */
    if (data == DATA_EXTREME) {
        /* The largest products the kernels may see: -128 weights against +-127 activations (the
         * two signs of x in alternate rows), some +127 rows, and scales near 1e15 each (group
         * terms about 1e34 for K <= 256, still far from FLT_MAX). */
        for (int i = 0; i < N; i++)
            for (int j = 0; j < K; j++)
                c->wq[(size_t)i * K + j] = i % 3 == 2 ? 127 : -128;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                c->xq[(size_t)t * K + j] = (t + j / gs) % 2 ? -127 : 127;
        for (size_t g = 0; g < (size_t)N * G; g++)
            c->ws[g] = 1e15f;
        for (size_t g = 0; g < (size_t)T * G; g++)
            c->xs[g] = 1e15f * (1.0f + (float)(g % 5) / 8.0f);
    }
}

static void case_free(Case *c)
{
    free(c->xq), free(c->wq), free(c->xs), free(c->ws), free(c->y), free(c->ref);
}

/* sum_g sum_{j in g} |wq xq| ws xs for output (t, i): the scale of its rounding error whatever
 * way a kernel splits the groups into partial sums (lanes, pieces). */
static double magnitude(const Case *c, int t, int i)
{
    int G = c->K / c->gs;
    double mag = 0;
    for (int g = 0; g < G; g++) {
        int64_t isum = 0;
        for (int j = g * c->gs; j < (g + 1) * c->gs; j++)
            isum += abs(c->wq[(size_t)i * c->K + j] * c->xq[(size_t)t * c->K + j]);
        mag += (double)isum * c->ws[(size_t)i * G + g] * c->xs[(size_t)t * G + g];
    }
    return mag;
}

/* The largest |y - ref| over the slice's outputs in units of the tolerance (<= 1 passes); fails
 * outright if an output outside [n0, n1) was touched or one inside is not finite. */
static double worst_error(const Case *c, const float *y, int n0, int n1)
{
    int G = c->K / c->gs;
    double worst = 0;
    for (int t = 0; t < c->T; t++)
        for (int i = 0; i < c->N; i++) {
            float v = y[(size_t)t * c->N + i];
            if (i < n0 || i >= n1) {
                assert_true(v == SENTINEL);
                continue;
            }
            assert_true(isfinite(v));
            double tol = ((c->float_path ? c->K : 0) + 2.0 * G + 16) * FLT_EPSILON * magnitude(c, t, i) + FLT_MIN;
            double err = fabs((double)v - c->ref[(size_t)t * c->N + i]) / tol;
            worst = err > worst ? err : worst;
        }
    return worst;
}

typedef void ProductFn(float *, const int8_t *, const float *, const int8_t *, const float *, int, int, int, int,
                       int, int);

/* fn on slice [n0, n1) against the reference on the same slice; returns the worst error. */
static double run_case(Case *c, ProductFn *fn, int n0, int n1)
{
    size_t ny = (size_t)c->T * c->N;
    for (size_t k = 0; k < ny; k++)
        c->y[k] = c->ref[k] = SENTINEL;
    matmul_q8_reference(c->ref, c->xq, c->xs, c->wq, c->ws, c->T, c->K, c->N, c->gs, n0, n1);
    fn(c->y, c->xq, c->xs, c->wq, c->ws, c->T, c->K, c->N, c->gs, n0, n1);
    double worst = worst_error(c, c->y, n0, n1);
    if (worst > 1.0)
        printf("T %d K %d N %d gs %d [%d, %d): error %.3g tolerances (%s)\n", c->T, c->K, c->N, c->gs, n0, n1,
               worst, kernels_q8_name());
    return worst;
}

/* (K, gs) pairs: group sizes 1..128 on both vector paths and the portable one, K not a multiple
 * of the vector width where gs allows (172 = 5 * 32 + 12, as the 260K real file's hidden_dim).
 * gs = 32 m + 16 (16, 48, 80: AVX2 splits a step between two groups) with an even and an odd
 * number of groups (the odd one ends in a half step), and the 15M shapes' K at gs 48. */
static const int shapes[][2] = {{10, 1}, {14, 2}, {36, 4}, {64, 4}, {172, 4}, {24, 8}, {48, 16}, {80, 16},
                                {96, 32}, {160, 32}, {96, 48}, {144, 48}, {240, 48}, {288, 48}, {768, 48},
                                {240, 80}, {128, 64}, {192, 64}, {320, 64}, {256, 128}, {768, 64}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
static const int rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 33};
#define N_ROWS (int)(sizeof rows / sizeof rows[0])

static void test_every_isa(void **state)
{
    (void)state;
    int ran = 0;
    for (int k = 0; k < N_ISAS; k++) {
        if (!kernels_isa_available(isas[k].isa))
            continue;
        kernels_set_isa(isas[k].isa);
        const char *name = kernels_q8_name();
        /* AVX-512 without BW runs the AVX2 kernel; otherwise the q8 kernel follows the choice. */
        if (isas[k].isa != KERNEL_ISA_AVX512 || q8_avx512_available())
            assert_memory_equal(name, isas[k].name, strlen(isas[k].name));
        printf("q8 kernel %s\n", name);
        ran++;
        for (int s = 0; s < N_SHAPES; s++)
            for (int r = 0; r < N_ROWS; r++) {
                Case c;
                int N = 13; /* 3 blocks of 4 and a row left over */
                case_make(&c, rows[r], shapes[s][0], N, shapes[s][1], DATA_RANDOM, 1000 + 31 * s + r);
                assert_true(run_case(&c, matmul_q8_slice, 0, N) <= 1.0);
                assert_true(run_case(&c, matmul_q8_slice, 3, 10) <= 1.0); /* slices off the blocks */
                assert_true(run_case(&c, matmul_q8_slice, 12, 13) <= 1.0);
                assert_true(run_case(&c, matmul_q8_slice, 5, 5) <= 1.0);  /* empty: touches nothing */
                case_free(&c);
                case_make(&c, rows[r], shapes[s][0], N, shapes[s][1], DATA_EXTREME, 7);
                if (shapes[s][0] <= 256)
                    assert_true(run_case(&c, matmul_q8_slice, 0, N) <= 1.0);
                case_free(&c);
            }
    }
    assert_true(ran >= 1);
    printf("(instruction sets this CPU lacks were not run)\n");
}

/* Large batches: T up to 300 across the row tiling of matmul_q8_slice (tiles of 512 KB of int8
 * rows: 64 rows at K = 8192), the prefill sizes, groups longer than the exact integer piece
 * (gs = 8192 > 4096; 4112 = 32 m + 16 > 4096, which AVX2 leaves to the portable kernel), and
 * gs 16 and 48 (the 15M shapes at their default group size). */
static void test_large_batches(void **state)
{
    (void)state;
    static const int big[][4] = {/* T, K, N, gs */
                                 {64, 768, 37, 64},  {65, 256, 20, 32}, {128, 288, 9, 32},
                                 {300, 128, 11, 64}, {300, 64, 6, 4},   {70, 8192, 5, 8192},
                                 {130, 4096, 5, 64}, {31, 8192, 6, 128}, {300, 288, 7, 48},
                                 {65, 768, 9, 48},   {130, 144, 11, 16}, {300, 80, 5, 16},
                                 {9, 8224, 5, 4112}};
    for (int k = 0; k < N_ISAS; k++) {
        if (!kernels_isa_available(isas[k].isa))
            continue;
        kernels_set_isa(isas[k].isa);
        for (size_t b = 0; b < sizeof big / sizeof big[0]; b++) {
            Case c;
            case_make(&c, big[b][0], big[b][1], big[b][2], big[b][3], DATA_RANDOM, 50 + b);
            assert_true(run_case(&c, matmul_q8_slice, 0, big[b][2]) <= 1.0);
            assert_true(run_case(&c, matmul_q8_slice, 1, big[b][2] - 1) <= 1.0);
            case_free(&c);
        }
    }
}

/* matmul_q8_float_slice with its input made by q8_transpose_input, as run_products makes it. */
static void float_path(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int T, int K,
                       int N, int gs, int n0, int n1)
{
    size_t blocks = (size_t)(T + TRANSPOSED_ROWS - 1) / TRANSPOSED_ROWS;
    float *xt = xmalloc(blocks * TRANSPOSED_ROWS * K * sizeof(float));
    q8_transpose_input(xt, xq, xs, T, K, gs);
    matmul_q8_float_slice(y, xt, wq, ws, T, K, N, gs, n0, n1);
    free(xt);
}

/* The float path of large batches, on every instruction set (the vector one where the CPU has
 * it, the plain loops otherwise): awkward shapes, 1 to 3 blocks of 16 rows, slices, extreme
 * values; and its bound must still catch a result off by 1e-4 of its magnitude. */
static void test_float_path(void **state)
{
    (void)state;
    static const int batches[] = {16, 17, 33, 40};
    for (int k = 0; k < N_ISAS; k++) {
        if (!kernels_isa_available(isas[k].isa))
            continue;
        kernels_set_isa(isas[k].isa);
        for (int s = 0; s < N_SHAPES; s++)
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                Case c;
                int N = 19; /* 3 blocks of 6 and a row left over */
                case_make(&c, batches[b], shapes[s][0], N, shapes[s][1], DATA_RANDOM, 700 + 7 * s + b);
                c.float_path = 1;
                assert_true(run_case(&c, float_path, 0, N) <= 1.0);
                assert_true(run_case(&c, float_path, 5, 13) <= 1.0);
                assert_true(run_case(&c, float_path, 4, 4) <= 1.0);
                case_free(&c);
                case_make(&c, batches[b], shapes[s][0], N, shapes[s][1], DATA_EXTREME, 8);
                c.float_path = 1;
                if (shapes[s][0] <= 256)
                    assert_true(run_case(&c, float_path, 0, N) <= 1.0);
                case_free(&c);
            }
        Case c;
        case_make(&c, 17, 768, 8, 64, DATA_RANDOM, 77);
        c.float_path = 1;
        assert_true(run_case(&c, float_path, 0, 8) <= 1.0);
        c.y[5] += (float)(1e-4 * magnitude(&c, 0, 5));
        assert_true(worst_error(&c, c.y, 0, 8) > 1.0);
        case_free(&c);
    }
}

/* The AVX2 copy of the float path's input must write what the plain loops write, bit for bit
 * (one exact widening and one multiply per value in both), the zero rows past T included. */
static void test_float_copy(void **state)
{
    (void)state;
    if (!kernels_isa_available(KERNEL_ISA_AVX2)) {
        skip();
        return;
    }
    const int T = 21, K = 192, gs = 32, rows = 32; /* 2 blocks, the second with 5 rows */
    Case c;
    case_make(&c, T, K, 1, gs, DATA_RANDOM, 91);
    float *plain = xmalloc((size_t)rows * K * sizeof(float)), *vector = xmalloc((size_t)rows * K * sizeof(float));
    memset(vector, 0x7f, (size_t)rows * K * sizeof(float));
    kernels_set_isa(KERNEL_ISA_GENERIC);
    q8_transpose_input(plain, c.xq, c.xs, T, K, gs);
    kernels_set_isa(KERNEL_ISA_AVX2);
    q8_transpose_input(vector, c.xq, c.xs, T, K, gs);
    assert_memory_equal(plain, vector, (size_t)rows * K * sizeof(float));
    assert_true(plain[(size_t)16 * K + 3 * 16 + 5] == 0.0f); /* row 21 of column 3: past T */
    assert_true(plain[(size_t)16 * K + 3 * 16 + 4] == c.xq[(size_t)20 * K + 3] * c.xs[(size_t)20 * (K / gs)]);
    free(plain);
    free(vector);
    case_free(&c);
}

/* The portable kernel on its own (the vector kernels hand it the group sizes they skip). */
static void test_generic(void **state)
{
    (void)state;
    for (int s = 0; s < N_SHAPES; s++) {
        Case c;
        case_make(&c, 5, shapes[s][0], 9, shapes[s][1], DATA_RANDOM, 300 + s);
        assert_true(run_case(&c, matmul_q8_generic, 0, 9) <= 1.0);
        assert_true(run_case(&c, matmul_q8_generic, 2, 7) <= 1.0);
        case_free(&c);
    }
}

/* A batch of T rows equals T one-row products up to rounding (ME's exactness). */
static void test_batch_equals_rows(void **state)
{
    (void)state;
    Case c;
    case_make(&c, 9, 192, 21, 64, DATA_RANDOM, 4242);
    assert_true(run_case(&c, matmul_q8_slice, 0, 21) <= 1.0);
    float *one = xmalloc(21 * sizeof(float));
    int G = c.K / c.gs;
    for (int t = 0; t < c.T; t++) {
        matmul_q8_slice(one, c.xq + (size_t)t * c.K, c.xs + (size_t)t * G, c.wq, c.ws, 1, c.K, 21, c.gs, 0, 21);
        for (int i = 0; i < 21; i++) {
            float a = one[i], b = c.y[(size_t)t * 21 + i];
            assert_true(fabsf(a - b) <= 1e-5f * (fabsf(a) + fabsf(b)) + FLT_MIN);
        }
    }
    free(one);
    case_free(&c);
}

/* Negative controls: the same comparison catches a result off by 1e-4 of its magnitude, and a
 * kernel that swapped the scales of two groups (for gs 48 and 16, groups 0 and 1: the two that
 * share AVX2's split step, as a kernel that handed its halves to the wrong groups would). */
static void test_tolerance_catches_errors(void **state)
{
    (void)state;
    static const int cases[][4] = {/* K, gs, the two groups swapped */
                                   {128, 32, 0, 3}, {144, 48, 0, 1}, {96, 16, 0, 1}, {96, 16, 4, 5}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case c;
        int K = cases[k][0], gs = cases[k][1], G = K / gs, a = cases[k][2], b = cases[k][3];
        case_make(&c, 3, K, 8, gs, DATA_RANDOM, 99 + k);
        assert_true(run_case(&c, matmul_q8_slice, 0, 8) <= 1.0);
        /* perturb one output (t = 0, i = 5) by 1e-4 of its magnitude */
        float keep = c.y[5];
        c.y[5] = keep + (float)(1e-4 * magnitude(&c, 0, 5));
        assert_true(worst_error(&c, c.y, 0, 8) > 1.0);
        c.y[5] = keep;
        /* swap two weight scales of row 2: the kernel's answer for different data */
        float *ws2 = xmalloc((size_t)8 * G * sizeof(float));
        memcpy(ws2, c.ws, (size_t)8 * G * sizeof(float));
        float tmp = ws2[G * 2 + a];
        ws2[G * 2 + a] = ws2[G * 2 + b], ws2[G * 2 + b] = tmp;
        matmul_q8_slice(c.y, c.xq, c.xs, c.wq, ws2, c.T, c.K, c.N, c.gs, 0, 8);
        assert_true(worst_error(&c, c.y, 0, 8) > 1.0);
        free(ws2);
        case_free(&c);
    }
}

static int restore_defaults(void **state)
{
    (void)state;
    kernels_set_isa(KERNEL_ISA_AUTO);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_hand_worked),
        cmocka_unit_test(test_quantize_random),
        cmocka_unit_test(test_quantize_every_isa),
        cmocka_unit_test_teardown(test_every_isa, restore_defaults),
        cmocka_unit_test_teardown(test_large_batches, restore_defaults),
        cmocka_unit_test_teardown(test_float_path, restore_defaults),
        cmocka_unit_test_teardown(test_float_copy, restore_defaults),
        cmocka_unit_test(test_generic),
        cmocka_unit_test(test_batch_equals_rows),
        cmocka_unit_test(test_tolerance_catches_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
