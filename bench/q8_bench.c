/* q8_bench.c: times the Q8_0 product (matmul_q8_slice, threaded by output rows as a forward
 * does) against the read bandwidth and against the fp32 product (matmul(): streaming kernel, or
 * BLAS sgemm from T = kernels_blas_min_rows() on), on the llama2.c 110M weight shapes.
 *
 *   make bench/q8_bench && ./bench/q8_bench [-t THREADS] [-T T1,T2,..] [-g GS] [-r REPS] [K N ...]
 *
 * Needs about 1.5 GB of memory. Every repetition measures, interleaved, the read bandwidth (a
 * threaded sum over 512 MB of floats) and every (shape, T, kernel) pair, each as one pass over
 * enough copies of W to overflow the caches (cold weights, as in a forward, where each matrix is
 * touched once a token); the table gives medians over the repetitions. For the int8 product,
 * GB/s counts the bytes it must read: N K int8 weights + N K/gs float scales; "of bw" is that
 * rate over the bandwidth measured in the same repetitions. The activations are quantized once
 * per call (quantize_q8, single thread, inside the timing), as the forward does.
 * The last lines weigh the shapes into the matrix work of one 110M forward (48 x 768x768,
 * 24 x 2048x768, 12 x 768x2048, 1 x 32000x768 per token). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define POOL_BYTES (512.0 * 1024 * 1024)
#define MAX_T 16
#define MAX_SHAPES 16
#define MAX_REPS 64
#define SLICE_ALIGN 16

typedef struct {
    int K, N, per_forward;
} Shape;

static Shape shapes[MAX_SHAPES] = {{768, 768, 48}, {768, 2048, 24}, {2048, 768, 12}, {768, 32000, 1}};
static int n_shapes = 4;
static int batch[MAX_T] = {1, 2, 4, 8, 16, 32, 64, 128};
static int n_batch = 8;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *must_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "q8_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* GB/s of a threaded sum over buf (n floats). */
static double bandwidth(const float *buf, size_t n, int threads)
{
    volatile float sink;
    double t0 = now_seconds();
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int s = 0; s < threads; s++) {
        size_t per = (n + threads - 1) / threads, i0 = (size_t)s * per, i1 = i0 + per < n ? i0 + per : n;
        float acc[16] = {0};
        size_t i = i0;
        for (; i + 16 <= i1; i += 16)
            for (int l = 0; l < 16; l++)
                acc[l] += buf[i + l];
        for (int l = 0; l < 16; l++)
            total += acc[l];
    }
    sink = total;
    (void)sink;
    return (double)n * sizeof(float) / (now_seconds() - t0) / 1e9;
}

/* y (T, N) = the int8 product with W copy w/ws, split across threads as the forward does. */
static void q8_product(float *y, int8_t *xq, float *xs, const float *x, const int8_t *wq, const float *ws, int T,
                       int K, int N, int gs, int threads)
{
    quantize_q8(xq, xs, x, T, K, gs);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int s = 0; s < threads; s++) {
        int rows = ((N + threads - 1) / threads + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN;
        int n0 = s * rows < N ? s * rows : N, n1 = n0 + rows < N ? n0 + rows : N;
        matmul_q8_slice(y, xq, xs, wq, ws, T, K, N, gs, n0, n1);
    }
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    int threads = 1, gs = 64, reps = 7;
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a += 2) {
        if (a + 1 >= argc) {
            fprintf(stderr, "q8_bench: %s needs a value\n", argv[a]);
            return 2;
        }
        if (!strcmp(argv[a], "-t"))
            threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "-g"))
            gs = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "-r"))
            reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "-T")) {
            n_batch = parse_list(argv[a + 1], batch, MAX_T);
            if (n_batch < 1) {
                fprintf(stderr, "q8_bench: -T wants a list of batch sizes 1..4096\n");
                return 2;
            }
        } else {
            fprintf(stderr, "q8_bench: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (threads < 1 || gs < 1 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "q8_bench: -t, -g want >= 1, -r 1..%d\n", MAX_REPS);
        return 2;
    }
    if (a < argc) {
        n_shapes = 0;
        for (; a + 1 < argc && n_shapes < MAX_SHAPES; a += 2)
            shapes[n_shapes++] = (Shape){atoi(argv[a]), atoi(argv[a + 1]), 0};
    }
    for (int s = 0; s < n_shapes; s++)
        if (shapes[s].K < 1 || shapes[s].N < 1 || shapes[s].K % gs) {
            fprintf(stderr, "q8_bench: shape %d x %d: K must be a multiple of the group size %d\n", shapes[s].N,
                    shapes[s].K, gs);
            return 2;
        }
    lx_blas_single_thread();
    int max_T = 1, max_K = 1, max_N = 1;
    for (int b = 0; b < n_batch; b++)
        max_T = batch[b] > max_T ? batch[b] : max_T;
    for (int s = 0; s < n_shapes; s++) {
        max_K = shapes[s].K > max_K ? shapes[s].K : max_K;
        max_N = shapes[s].N > max_N ? shapes[s].N : max_N;
    }

    size_t pool_n = (size_t)(POOL_BYTES / sizeof(float));
    float *pool = must_alloc(pool_n * sizeof(float)); /* fp32 weights, and the bandwidth buffer */
    int8_t *qpool = must_alloc((size_t)POOL_BYTES);
    float *spool = must_alloc((size_t)POOL_BYTES); /* scales: room for gs >= 1... capped below */
    for (size_t i = 0; i < pool_n; i++)
        pool[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)POOL_BYTES; i++)
        qpool[i] = (int8_t)((i * 2654435761u) >> 7);
    for (size_t i = 0; i < pool_n; i++)
        spool[i] = 1e-3f;
    float *x = must_alloc((size_t)max_T * max_K * sizeof(float));
    for (size_t i = 0; i < (size_t)max_T * max_K; i++)
        x[i] = (float)((i * 7919) % 255) - 127.0f;
    int8_t *xq = must_alloc((size_t)max_T * max_K);
    float *xs = must_alloc((size_t)max_T * (max_K / gs) * sizeof(float));
    float *y = must_alloc((size_t)max_T * max_N * sizeof(float));

    /* time[s][b][0: q8, 1: fp32][rep], seconds per product */
    static double times[MAX_SHAPES][MAX_T][2][MAX_REPS];
    double bw[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        bw[r] = bandwidth(pool, pool_n, threads);
        for (int s = 0; s < n_shapes; s++)
            for (int b = 0; b < n_batch; b++) {
                int K = shapes[s].K, N = shapes[s].N, T = batch[b], G = K / gs;
                size_t wbytes = (size_t)N * K, sbytes = (size_t)N * G * sizeof(float);
                int copies = (int)(POOL_BYTES / (wbytes > sbytes ? wbytes : sbytes));
                copies = copies > 64 ? 64 : copies < 1 ? 1 : copies;
                double t0 = now_seconds();
                for (int c = 0; c < copies; c++)
                    q8_product(y, xq, xs, x, qpool + (size_t)c * wbytes, spool + (size_t)c * N * G, T, K, N, gs,
                               threads);
                times[s][b][0][r] = (now_seconds() - t0) / copies;
                int fcopies = (int)(POOL_BYTES / (4.0 * N * K));
                fcopies = fcopies > 64 ? 64 : fcopies < 1 ? 1 : fcopies;
                t0 = now_seconds();
                for (int c = 0; c < fcopies; c++)
                    matmul(y, x, pool + (size_t)c * N * K, T, K, N, threads);
                times[s][b][1][r] = (now_seconds() - t0) / fcopies;
            }
    }
    double bw_med = median(bw, reps);
    printf("q8 kernel %s, fp32 kernel %s (BLAS from T = %d), %d thread(s), gs %d, %d repetitions\n",
           kernels_q8_name(), kernels_isa_name(), kernels_blas_min_rows(), threads, gs, reps);
    printf("read bandwidth (median) %.2f GB/s\n\n", bw_med);
    printf("%6s %6s %5s %10s %8s %7s %10s %8s %9s %9s\n", "N", "K", "T", "q8 us", "q8 GB/s", "of bw", "fp32 us",
           "fp32/q8", "q8 T/T1", "fp32 T/T1");
    double fwd[MAX_T][2] = {{0}};
    int weighted = 0;
    for (int s = 0; s < n_shapes; s++) {
        double q1 = 0, f1 = 0;
        for (int b = 0; b < n_batch; b++) {
            int K = shapes[s].K, N = shapes[s].N, T = batch[b];
            double q = median(times[s][b][0], reps), f = median(times[s][b][1], reps);
            if (b == 0)
                q1 = q, f1 = f;
            double bytes = (double)N * K + (double)N * (K / gs) * 4;
            printf("%6d %6d %5d %10.1f %8.2f %6.0f%% %10.1f %8.2f %9.2f %9.2f\n", N, K, T, q * 1e6, bytes / q / 1e9,
                   100 * bytes / q / 1e9 / bw_med, f * 1e6, f / q, q / q1, f / f1);
            fwd[b][0] += shapes[s].per_forward * q;
            fwd[b][1] += shapes[s].per_forward * f;
        }
        weighted += shapes[s].per_forward > 0;
    }
    if (weighted == n_shapes) {
        printf("\n110M forward's matrix work (per token: T tokens at once):\n");
        printf("%5s %12s %12s %8s\n", "T", "q8 tok/s", "fp32 tok/s", "q8/fp32");
        for (int b = 0; b < n_batch; b++)
            printf("%5d %12.1f %12.1f %8.2f\n", batch[b], batch[b] / fwd[b][0], batch[b] / fwd[b][1],
                   fwd[b][1] / fwd[b][0]);
    }
    free(pool), free(qpool), free(spool), free(x), free(xq), free(xs), free(y);
    return 0;
}
