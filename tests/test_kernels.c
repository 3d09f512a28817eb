/* test_kernels.c: the kernels module. Every fast matrix kernel (each instruction set of the
 * streaming kernel, BLAS, the threaded dispatcher on both sides of its crossover) must match the
 * scalar reference on awkward sizes and on slices of the output rows; rmsnorm and softmax must
 * give hand-computed values and survive huge logits.
 *
 * Tolerance: |y - y_ref| <= 1e-5 * sum_j |W[i][j] x[t][j]| for every output. Float sums of up to
 * 257 terms in different orders differ by about sqrt(K) * 6e-8 of that sum (under 1e-6), so 1e-5
 * leaves room, while one wrong weight moves an output by far more (negative control below).
 * Random data comes from a fixed-seed xorshift generator local to this file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TOLERANCE 1e-5
#define SENTINEL 12345.0f /* written into y outside the slice; must survive */

static const int odd_sizes[] = {1, 3, 7, 17, 33, 65, 257, 1031}; /* 1031: over one chunk */
#define N_ODD (int)(sizeof odd_sizes / sizeof odd_sizes[0])
#define MAX_T 37
/* Batches checked: every T up to 20, then two past blocks of 16 (the AVX2 outer products). */
static const int batches[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 31, MAX_T};
#define N_BATCHES (int)(sizeof batches / sizeof batches[0])

static float uniform(uint64_t *state)
{
    *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17; /* xorshift64 */
    return (float)(*state >> 40) / (float)(1 << 24) * 2.0f - 1.0f;  /* [-1, 1) */
}

static float *random_floats(size_t n, uint64_t *state)
{
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = uniform(state);
    return v;
}

static float *filled(size_t n, float value)
{
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = value;
    return v;
}

/* The largest |y - ref| over the outputs of rows [n0, n1), in units of the tolerance (so <= 1
 * passes); fails outright if an output outside the slice was touched. */
static double worst_error(const float *y, const float *ref, const float *x, const float *w, int T, int K, int N,
                          int n0, int n1)
{
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            float got = y[(size_t)t * N + i];
            if (i < n0 || i >= n1) {
                assert_true(got == SENTINEL);
                continue;
            }
            double scale = 0;
            for (int j = 0; j < K; j++)
                scale += fabs((double)w[(size_t)i * K + j] * x[(size_t)t * K + j]);
            double err = fabs((double)got - ref[(size_t)t * N + i]) / (TOLERANCE * scale + 1e-30);
            worst = err > worst ? err : worst;
        }
    return worst;
}

/* |got - want| <= eps, and false for NaN (unlike a plain difference test that NaN slips through). */
static void assert_close(float got, float want, float eps)
{
    if (!(fabsf(got - want) <= eps))
        fail_msg("got %.9g, want %.9g within %g", got, want, eps);
}

typedef void SliceKernel(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);

/* One kernel against matmul_reference for every T in batches and every K, N in odd_sizes, on the
 * whole range of output rows and (if also_slice) on a slice that starts and ends off any block
 * boundary. */
static void check_against_reference(SliceKernel *kernel, const char *name, int also_slice)
{
    uint64_t rng = 0x5EED0001;
    for (int a = 0; a < N_ODD; a++)
        for (int b = 0; b < N_ODD; b++) {
            int K = odd_sizes[a], N = odd_sizes[b];
            float *x = random_floats((size_t)MAX_T * K, &rng);
            float *w = random_floats((size_t)N * K, &rng);
            float *ref = filled((size_t)MAX_T * N, SENTINEL);
            float *y = malloc((size_t)MAX_T * N * sizeof(float));
            assert_non_null(y);
            int slices[2][2] = {{0, N}, {N / 3, N - N / 5}};
            for (int s = 0; s < 1 + also_slice; s++) {
                int n0 = slices[s][0], n1 = slices[s][1];
                for (int c = 0; c < N_BATCHES; c++) {
                    int T = batches[c];
                    for (size_t i = 0; i < (size_t)T * N; i++)
                        y[i] = ref[i] = SENTINEL;
                    matmul_reference(ref, x, w, T, K, N, n0, n1);
                    kernel(y, x, w, T, K, N, n0, n1);
                    double err = worst_error(y, ref, x, w, T, K, N, n0, n1);
                    if (err > 1.0)
                        fail_msg("%s: T %d K %d N %d rows [%d, %d): error %.2f x tolerance", name, T, K, N, n0, n1,
                                 err);
                }
            }
            free(x);
            free(w);
            free(ref);
            free(y);
        }
}

/* The dispatcher's thread count (the tests that use it set it; 0 is the default). */
static int dispatcher_threads = 0;

/* matmul() on dispatcher_threads as a slice kernel, for check_against_reference: it always does
 * all N rows, so it is checked on the whole range only. */
static void dispatcher_whole(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    (void)n0, (void)n1;
    matmul(y, x, w, T, K, N, dispatcher_threads);
}

/* The oracle itself, against sums in double precision. */
static void test_reference_against_double(void **state)
{
    (void)state;
    uint64_t rng = 0x5EED0002;
    int T = 5, K = 257, N = 33;
    float *x = random_floats((size_t)T * K, &rng), *w = random_floats((size_t)N * K, &rng);
    float *y = filled((size_t)T * N, SENTINEL);
    float exact[5 * 33];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            double sum = 0;
            for (int j = 0; j < K; j++)
                sum += (double)w[i * K + j] * x[t * K + j];
            exact[t * N + i] = (float)sum;
        }
    matmul_reference(y, x, w, T, K, N, 0, N);
    assert_true(worst_error(y, exact, x, w, T, K, N, 0, N) <= 1.0);
    free(x);
    free(w);
    free(y);
}

/* The instruction sets this machine can run; the test name of each. */
static const struct { KernelIsa isa; const char *name; } isas[] = {
    {KERNEL_ISA_GENERIC, "generic"}, {KERNEL_ISA_AVX2, "avx2"}, {KERNEL_ISA_AVX512, "avx512"}};
#define N_ISAS (int)(sizeof isas / sizeof isas[0])

static void test_stream_every_isa(void **state)
{
    (void)state;
    assert_true(kernels_isa_available(KERNEL_ISA_GENERIC));
    for (int i = 0; i < N_ISAS; i++) {
        if (!kernels_isa_available(isas[i].isa)) {
            print_message("stream-%s: not available on this CPU or build, skipped\n", isas[i].name);
            continue;
        }
        kernels_set_isa(isas[i].isa);
        assert_string_equal(kernels_isa_name(), isas[i].name);
        check_against_reference(matmul_stream, isas[i].name, 1);
    }
}

/* Long rows: the wide kernels take K in chunks (partial sums added up in y), and only a few input
 * rows fit the cache budget, so matmul_stream takes the batch in tiles of input rows. Checked
 * against sums in double precision, since a float sum of 65537 terms drifts by itself. */
static void test_stream_long_rows(void **state)
{
    (void)state;
    uint64_t rng = 0x5EED0003;
    int T = 11, K = 65537, N = 6;
    float *x = random_floats((size_t)T * K, &rng), *w = random_floats((size_t)N * K, &rng);
    float *y = malloc((size_t)T * N * sizeof(float)), *exact = filled((size_t)T * N, SENTINEL);
    assert_non_null(y);
    for (int t = 0; t < T; t++)
        for (int i = 1; i < N; i++) {
            double sum = 0;
            for (int j = 0; j < K; j++)
                sum += (double)w[(size_t)i * K + j] * x[(size_t)t * K + j];
            exact[t * N + i] = (float)sum;
        }
    for (int i = 0; i < N_ISAS; i++) {
        if (!kernels_isa_available(isas[i].isa))
            continue;
        kernels_set_isa(isas[i].isa);
        for (int k = 0; k < T * N; k++)
            y[k] = SENTINEL;
        matmul_stream(y, x, w, T, K, N, 1, N);
        double err = worst_error(y, exact, x, w, T, K, N, 1, N);
        if (err > 1.0)
            fail_msg("%s: T %d K %d N %d: error %.2f x tolerance", isas[i].name, T, K, N, err);
    }
    free(x);
    free(w);
    free(y);
    free(exact);
}

#ifdef KERNELS_X86
typedef void OuterKernel(float *y, const float *xt, const float *w, int T, int K, int N, int n0, int n1);

/* An outer-product kernel as a slice kernel: the input transposed first, as run_products does. */
static void on_copy(OuterKernel *kernel, float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    size_t rows = (size_t)(T + TRANSPOSED_ROWS - 1) / TRANSPOSED_ROWS * TRANSPOSED_ROWS;
    float *xt = malloc(rows * K * sizeof(float));
    assert_non_null(xt);
    transpose_input(xt, x, T, K);
    kernel(y, xt, w, T, K, N, n0, n1);
    free(xt);
}

static void outer_on_copy(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    on_copy(matmul_outer_avx2, y, x, w, T, K, N, n0, n1);
}

/* The forward's kernel on a CPU with AVX-512. */
static void outer_on_copy_avx512(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1)
{
    on_copy(matmul_outer_avx512, y, x, w, T, K, N, n0, n1);
}
#endif

/* The outer products on one transposed copy (the forward's batches of 16 rows up to BLAS's on
 * AVX2, every batch from 16 rows on AVX-512), and the copy itself: the AVX2 transposition must
 * write what the plain loops write, the rows past T included. */
static void test_outer_on_copy(void **state)
{
    (void)state;
#ifdef KERNELS_X86
    if (!kernels_isa_available(KERNEL_ISA_AVX2)) {
        skip();
        return;
    }
    uint64_t rng = 0x5EED0007;
    const int T = 37, K = 1031, rows = 48; /* 3 blocks, the last with 5 rows; 1031: a tail of 7 columns */
    float *x = random_floats((size_t)T * K, &rng);
    float *plain = filled((size_t)rows * K, SENTINEL), *vector = filled((size_t)rows * K, -SENTINEL);
    kernels_set_isa(KERNEL_ISA_GENERIC);
    transpose_input(plain, x, T, K);
    kernels_set_isa(KERNEL_ISA_AVX2);
    transpose_input(vector, x, T, K);
    assert_memory_equal(plain, vector, (size_t)rows * K * sizeof(float));
    for (int j = 0; j < K; j++)
        assert_true(plain[(size_t)2 * 16 * K + (size_t)j * 16 + 5] == 0.0f && plain[(size_t)j * 16 + 3] == x[(size_t)3 * K + j]);
    free(x);
    free(plain);
    free(vector);
    check_against_reference(outer_on_copy, "outer products on a copy", 1);
    if (kernels_isa_available(KERNEL_ISA_AVX512))
        check_against_reference(outer_on_copy_avx512, "AVX-512 outer products on a copy", 1);
    else
        print_message("AVX-512 outer products: not available on this CPU or build, skipped\n");
#else
    skip();
#endif
}

static void test_blas(void **state)
{
    (void)state;
    if (!kernels_have_blas())
        print_message("built without BLAS: matmul_blas is the streaming kernel\n");
    check_against_reference(matmul_blas, "blas", 1);
}

/* Both sides of the crossover, with 3 threads so the row slices do not divide evenly. */
static void test_dispatcher(void **state)
{
    (void)state;
    int default_rows = kernels_blas_min_rows();
    assert_true(default_rows >= 1);
    dispatcher_threads = 3;
    kernels_set_blas_min_rows(INT_MAX); /* always the streaming kernel */
    assert_int_equal(kernels_blas_min_rows(), INT_MAX);
    check_against_reference(dispatcher_whole, "matmul (stream)", 0);
    kernels_set_blas_min_rows(1); /* always BLAS */
    check_against_reference(dispatcher_whole, "matmul (blas)", 0);
    kernels_set_blas_min_rows(0);
    assert_int_equal(kernels_blas_min_rows(), default_rows);

    /* Big enough to be split across the threads, around the default crossover (capped at 200 rows;
     * with AVX-512 the default is never, and this is the streaming kernel throughout). */
    uint64_t rng = 0x5EED0004;
    int K = 129, N = 1001, d = default_rows < 200 ? default_rows : 200;
    int Ts[] = {1, d > 1 ? d - 1 : 1, d, d + 3};
    for (int c = 0; c < 4; c++) {
        int T = Ts[c];
        float *x = random_floats((size_t)T * K, &rng), *w = random_floats((size_t)N * K, &rng);
        float *y = filled((size_t)T * N, SENTINEL), *ref = filled((size_t)T * N, SENTINEL);
        matmul_reference(ref, x, w, T, K, N, 0, N);
        matmul(y, x, w, T, K, N, 3);
        double err = worst_error(y, ref, x, w, T, K, N, 0, N);
        if (err > 1.0)
            fail_msg("matmul T %d K %d N %d: error %.2f x tolerance", T, K, N, err);
        free(x);
        free(w);
        free(y);
        free(ref);
    }
}

/* matmul_many and matmul_swiglu: products of one input in one parallel region, the threads claiming
 * chunks of every product's rows (1001 rows on 3 threads: 7 chunks, the last short; a row left
 * out keeps its sentinel). Against the reference for small (one thread) and split shapes, with
 * products of different N (query 1001 rows, key and value 333 as with grouped-query heads). */
static void test_grouped_products(void **state)
{
    (void)state;
    const int threads = 3;
    uint64_t rng = 0x5EED0006;
    const int shapes[][3] = {{1, 17, 7}, {3, 33, 65}, {1, 129, 1001}, {4, 288, 768}, {9, 129, 1001}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        int T = shapes[c][0], K = shapes[c][1], N = shapes[c][2], M = N / 3 > 0 ? N / 3 : 1;
        float *x = random_floats((size_t)T * K, &rng);
        float *w[3] = {random_floats((size_t)N * K, &rng), random_floats((size_t)M * K, &rng),
                       random_floats((size_t)M * K, &rng)};
        float *y[3] = {filled((size_t)T * N, SENTINEL), filled((size_t)T * M, SENTINEL), filled((size_t)T * M, SENTINEL)};
        float *ref = filled((size_t)T * N, SENTINEL);
        Product p[3] = {{y[0], w[0], N}, {y[1], w[1], M}, {y[2], w[2], M}};
        matmul_many(x, T, K, p, 3, threads);
        for (int i = 0; i < 3; i++) {
            matmul_reference(ref, x, w[i], T, K, p[i].N, 0, p[i].N);
            double err = worst_error(y[i], ref, x, w[i], T, K, p[i].N, 0, p[i].N);
            if (err > 1.0)
                fail_msg("matmul_many product %d, T %d K %d N %d: error %.2f x tolerance", i, T, K, p[i].N, err);
        }

        /* h = silu(x W1^T) * (x W3^T), W1 = w[1], W3 = w[2] (both M rows) */
        float *u = filled((size_t)T * M, SENTINEL), *g = filled((size_t)T * M, SENTINEL);
        matmul_swiglu(y[1], u, x, w[1], w[2], T, K, M, threads);
        matmul_reference(g, x, w[1], T, K, M, 0, M);
        matmul_reference(ref, x, w[2], T, K, M, 0, M);
        for (int i = 0; i < T * M; i++) {
            float want = g[i] / (1.0f + expf(-g[i])) * ref[i];
            assert_close(y[1][i], want, 1e-4f * (1.0f + fabsf(want)));
        }
        free(u);
        free(g);
        free(x);
        free(ref);
        for (int i = 0; i < 3; i++) {
            free(w[i]);
            free(y[i]);
        }
    }
}

/* Negative control: the comparison must notice one wrong weight in a kernel's input. */
static void test_tolerance_catches_one_wrong_weight(void **state)
{
    (void)state;
    uint64_t rng = 0x5EED0005;
    int T = 3, K = 257, N = 17;
    float *x = random_floats((size_t)T * K, &rng), *w = random_floats((size_t)N * K, &rng);
    float *y = filled((size_t)T * N, SENTINEL), *ref = filled((size_t)T * N, SENTINEL);
    matmul_reference(ref, x, w, T, K, N, 0, N);
    matmul_stream(y, x, w, T, K, N, 0, N);
    assert_true(worst_error(y, ref, x, w, T, K, N, 0, N) <= 1.0);
    /* Nudge one weight by 0.1 (weights are in [-1, 1)): output 5 moves by 0.1 x[t][100], tens of
     * times the tolerance (1e-5 * 257 * 0.25 = 6e-4) for a typical x. */
    w[5 * K + 100] += 0.1f;
    matmul_stream(y, x, w, T, K, N, 0, N);
    assert_true(worst_error(y, ref, x, w, T, K, N, 0, N) > 1.0);
    free(x);
    free(w);
    free(y);
    free(ref);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    /* mean(x^2) = 30 / 4 = 7.5, so every x is scaled by 1 / sqrt(7.5 + 1e-5) = 0.3651481 */
    float x[4] = {1, 2, 3, 4}, weight[4] = {1, 0.5f, 2, -1}, o[4];
    const float expect[4] = {0.36514813f, 0.36514813f, 2.19088877f, -1.46059251f};
    rmsnorm(o, x, weight, 4);
    for (int i = 0; i < 4; i++)
        assert_close(o[i], expect[i], 1e-6);
    rmsnorm(x, x, weight, 4); /* in place */
    for (int i = 0; i < 4; i++)
        assert_close(x[i], expect[i], 1e-6);
}

static void test_softmax(void **state)
{
    (void)state;
    float a[3] = {1, 2, 3};
    const float expect_a[3] = {0.09003057f, 0.24472847f, 0.66524096f};
    softmax(a, 3);
    for (int i = 0; i < 3; i++)
        assert_close(a[i], expect_a[i], 1e-6);

    /* exp(1000) overflows a float (and a double); after subtracting the max nothing does. */
    float huge[3] = {1001, 1002, 1003};
    softmax(huge, 3);
    for (int i = 0; i < 3; i++)
        assert_close(huge[i], expect_a[i], 1e-6);

    float extremes[4] = {3e38f, -3e38f, 3e38f, -INFINITY};
    softmax(extremes, 4);
    const float expect_e[4] = {0.5f, 0, 0.5f, 0};
    for (int i = 0; i < 4; i++)
        assert_close(extremes[i], expect_e[i], 1e-7);

    float one[1] = {-7};
    softmax(one, 1);
    assert_close(one[0], 1.0f, 0);
}

/* exp_sum (exp_sum.c) against e^x rounded to float from double's exp (whose own error, 2^-53
 * relative, decides a float rounding only in a vanishing fraction of cases). Counted: outputs
 * that differ from that rounding, and the largest difference in ulps. */
static int misrounded(const float *x, const float *y, int n, float shift, int *worst_ulps)
{
    int count = 0;
    *worst_ulps = 0;
    for (int i = 0; i < n; i++) {
        float want = (float)exp((double)(x[i] - shift));
        if (y[i] == want)
            continue;
        count++;
        int32_t a, b;
        memcpy(&a, &want, sizeof a);
        memcpy(&b, &y[i], sizeof b);
        int ulps = a > b ? a - b : b - a;
        *worst_ulps = ulps > *worst_ulps ? ulps : *worst_ulps;
    }
    return count;
}

#define EXP_N 200011
/* exp_sum was correctly rounded for all but 36 of the 2.2e9 floats in [-110, 89]; glibc's expf
 * misrounds about 7 in 100,000 of them (bench/NOTES.md). Threshold: at most 2 of these EXP_N
 * random arguments, none by more than 1 ulp; glibc's expf must fail it (the negative control). */
#define EXP_MAX_MISROUNDED 2

static void test_exp_sum(void **state)
{
    (void)state;
    uint64_t rng = 99;
    float *x = malloc(EXP_N * sizeof *x), *y = malloc(EXP_N * sizeof *y), *first = malloc(EXP_N * sizeof *first);
    assert_true(x && y && first);
    for (int i = 0; i < EXP_N; i++)
        x[i] = -10.5f + 99.5f * uniform(&rng); /* [-110, 89) */
    const float shifts[] = {0.0f, 3.25f};
    const KernelIsa isas[] = {KERNEL_ISA_GENERIC, KERNEL_ISA_AVX2};
    const int lengths[] = {0, 1, 7, 8, 9, 31, EXP_N};
    for (int si = 0; si < 2; si++)
        for (int li = 0; li < 7; li++) {
            int n = lengths[li];
            float sums[2];
            for (int a = 0; a < 2; a++) {
                if (!kernels_isa_available(isas[a])) {
                    print_message("exp_sum: no %s on this CPU\n", a ? "AVX2" : "generic");
                    sums[a] = sums[0];
                    continue;
                }
                kernels_set_isa(isas[a]);
                memcpy(y, x, (size_t)n * sizeof *y);
                sums[a] = exp_sum(y, n, shifts[si]);
                float sum = 0.0f; /* the sum in index order */
                for (int i = 0; i < n; i++)
                    sum += y[i];
                assert_true(sum == sums[a]);
                int ulps, bad = misrounded(x, y, n, shifts[si], &ulps);
                if (bad > EXP_MAX_MISROUNDED || ulps > 1)
                    fail_msg("exp_sum (%s, shift %g, n %d): %d misrounded, worst by %d ulps", a ? "avx2" : "generic",
                             shifts[si], n, bad, ulps);
                if (a == 0)
                    memcpy(first, y, (size_t)n * sizeof *y);
                else if (memcmp(first, y, (size_t)n * sizeof *y) != 0)
                    fail_msg("exp_sum: AVX2 and generic differ (shift %g, n %d)", shifts[si], n);
            }
            assert_true(sums[0] == sums[1]);
        }

    /* the negative control: glibc's expf over the same arguments */
    for (int i = 0; i < EXP_N; i++)
        y[i] = expf(x[i]);
    int ulps, glibc_bad = misrounded(x, y, EXP_N, 0.0f, &ulps);
    print_message("exp_sum: glibc's expf misrounds %d of %d (the threshold is %d)\n", glibc_bad, EXP_N,
                  EXP_MAX_MISROUNDED);
    assert_true(glibc_bad > EXP_MAX_MISROUNDED);

    /* the edges: NaN stays NaN, -inf and anything below -110 give 0, overflow gives inf */
    for (int a = 0; a < 2; a++) {
        if (!kernels_isa_available(isas[a]))
            continue;
        kernels_set_isa(isas[a]);
        float v[10] = {NAN, -INFINITY, INFINITY, 0.0f, -0.0f, -200.0f, 89.5f, -103.0f, 88.5f, 1.0f};
        exp_sum(v, 10, 0.0f);
        assert_true(isnan(v[0]));
        assert_true(v[1] == 0.0f && v[5] == 0.0f);
        assert_true(isinf(v[2]) && v[2] > 0 && isinf(v[6]));
        assert_true(v[3] == 1.0f && v[4] == 1.0f);
        assert_true(v[7] > 0.0f && v[7] == (float)exp(-103.0)); /* a subnormal */
        assert_true(v[8] == (float)exp(88.5) && v[9] == (float)exp(1.0));
    }
    free(x);
    free(y);
    free(first);
}

/* exp_sum_double against the sum of double's exp in index order, over logits less their max
 * ([-40, 0]) and a tail of each length mod 4: within EXP_SUM_DOUBLE_TOL relative on both
 * instruction sets. The negative control: exp_sum, the float version, misses that tolerance. */
#define EXP_SUM_DOUBLE_TOL 1e-11
static void test_exp_sum_double(void **state)
{
    (void)state;
    uint64_t rng = 7;
    float *x = malloc(EXP_N * sizeof *x);
    assert_true(x != NULL);
    for (int i = 0; i < EXP_N; i++)
        x[i] = -40.0f * uniform(&rng);
    const KernelIsa isas[] = {KERNEL_ISA_GENERIC, KERNEL_ISA_AVX2};
    const int lengths[] = {1, 5, 6, 7, 8, 1001, EXP_N};
    const double shift = -0.375; /* the sums then start near e^0.375: no term is exactly 1 */
    for (int li = 0; li < 7; li++) {
        int n = lengths[li];
        double want = 0;
        for (int i = 0; i < n; i++)
            want += exp((double)x[i] - shift);
        for (int a = 0; a < 2; a++) {
            if (!kernels_isa_available(isas[a]))
                continue;
            kernels_set_isa(isas[a]);
            double got = exp_sum_double(x, n, shift);
            if (!(fabs(got - want) <= EXP_SUM_DOUBLE_TOL * want))
                fail_msg("exp_sum_double (%s, n %d): %.17g against %.17g", a ? "avx2" : "generic", n, got, want);
        }
    }
    double want = 0;
    for (int i = 0; i < EXP_N; i++)
        want += exp((double)x[i] - shift);
    float got = exp_sum(x, EXP_N, (float)shift); /* (overwrites x, which is not used again) */
    assert_false(fabs(got - want) <= EXP_SUM_DOUBLE_TOL * want);
    free(x);
}

/* exp_floats (SwiGLU's e^) gives exp_sum's bits with shift 0 on every instruction set and length
 * (the vector loop and its tail), and is within 1 ulp of expf; the control: x itself (e^ left
 * out) fails the comparison. */
static void test_exp_floats(void **state)
{
    (void)state;
    enum { N = 1037 };
    static float x[N], want[N], got[N];
    uint64_t rng = 11;
    for (int i = 0; i < N; i++)
        x[i] = 60.0f * uniform(&rng) - 40.0f;
    memcpy(want, x, sizeof want);
    kernels_set_isa(KERNEL_ISA_GENERIC);
    exp_sum(want, N, 0.0f);
    const KernelIsa isas[] = {KERNEL_ISA_GENERIC, KERNEL_ISA_AVX2};
    const int lengths[] = {1, 7, 8, 9, N};
    for (int a = 0; a < 2; a++) {
        if (!kernels_isa_available(isas[a]))
            continue;
        kernels_set_isa(isas[a]);
        for (int li = 0; li < 5; li++) {
            int n = lengths[li];
            memcpy(got, x, sizeof got);
            exp_floats(got, n);
            if (memcmp(got, want, (size_t)n * sizeof *got) != 0)
                fail_msg("exp_floats (%s, n %d) differs from exp_sum's e^", a ? "avx2" : "generic", n);
            for (int i = 0; i < n; i++)
                if (!(fabsf(got[i] - expf(x[i])) <= 1.2e-7f * expf(x[i])))
                    fail_msg("exp_floats(%.9g) = %.9g, expf %.9g", x[i], got[i], expf(x[i]));
            assert_true(n == N || got[n] == x[n]); /* nothing written past n */
        }
    }
    assert_false(memcmp(x, want, sizeof x) == 0);
}

/* Tests that force an instruction set, a crossover or a thread count put the defaults back here,
 * so a failure in one cannot leak into the next. */
static int restore_defaults(void **state)
{
    (void)state;
    kernels_set_isa(KERNEL_ISA_AUTO);
    kernels_set_blas_min_rows(0);
    dispatcher_threads = 0;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_against_double),
        cmocka_unit_test_teardown(test_stream_every_isa, restore_defaults),
        cmocka_unit_test_teardown(test_stream_long_rows, restore_defaults),
        cmocka_unit_test_teardown(test_outer_on_copy, restore_defaults),
        cmocka_unit_test(test_blas),
        cmocka_unit_test_teardown(test_dispatcher, restore_defaults),
        cmocka_unit_test_teardown(test_grouped_products, restore_defaults),
        cmocka_unit_test(test_tolerance_catches_one_wrong_weight),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test_teardown(test_exp_sum, restore_defaults),
        cmocka_unit_test_teardown(test_exp_sum_double, restore_defaults),
        cmocka_unit_test_teardown(test_exp_floats, restore_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
