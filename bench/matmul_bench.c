/* matmul_bench.c: times y (T, N) = x (T, K) W^T for the weight shapes of the llama2.c 15M and
 * 110M models (or the K N pairs given), T = 1..64 (or -T), with each kernel, to find where BLAS
 * starts to beat the streaming kernel (kernels.c, BLAS_MIN_ROWS_*).
 *
 *   make bench/matmul_bench && ./bench/matmul_bench [-t THREADS] [-T T1,T2,..] [-s SECONDS] [K N ...]
 *
 * Needs about 600 MB of memory. Run it on an otherwise idle machine: with 2 threads on 2 cores,
 * any other busy process stalls the parallel regions by whole scheduler time slices (ms).
 *
 * Kernels (all but blas-whole go through matmul_weight() with the forward's scratch, so they are
 * threaded, and large batches transposed, as in a forward):
 *   stream-ISA  the streaming kernel forced to one instruction set
 *   blas        sgemm on each thread's slice of W, BLAS pinned to one thread
 *   blas-whole  one sgemm on the whole W, OpenBLAS running THREADS threads itself
 *   matmul      the dispatcher with its default crossover
 * Each line gives the median and the fastest time of one product (the fastest is the better guide
 * on a machine shared with other work), and at the median GFLOP/s (2 T N K flops) and the GB/s of
 * weights streamed (4 N K bytes). Weights are cold: every call uses the next of enough copies
 * of W to overflow the caches, as in a forward pass, where each matrix is touched once a token.
 * The last table sums the shapes into the matrix work of one forward of each model. */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

#include "internal.h"

#define POOL_BYTES (512.0 * 1024 * 1024) /* copies of W: well past the last-level cache */
#define MAX_BATCHES 16

static int batch_sizes[MAX_BATCHES] = {1, 2, 3, 4, 8, 16, 32, 64};
static int n_batches = 8;

/* Shapes and how many times one forward uses each: 15M is D 288, H 768, L 6, V 32000; 110M is
 * D 768, H 2048, L 12, V 32000. Per layer: wq wk wv wo (D, D), w1 w3 (H, D), w2 (D, H). */
typedef struct {
    int K, N;
    const char *model;
    int per_forward;
} Shape;

static const Shape model_shapes[] = {
    {288, 288, "15M", 24},   {288, 768, "15M", 12},   {768, 288, "15M", 6},    {288, 32000, "15M", 1},
    {768, 768, "110M", 48},  {768, 2048, "110M", 24}, {2048, 768, "110M", 12}, {768, 32000, "110M", 1},
};
#define N_MODEL_SHAPES (int)(sizeof model_shapes / sizeof model_shapes[0])

typedef enum {
    STREAM_GENERIC, STREAM_AVX2, STREAM_AVX512, BLAS_SLICES, BLAS_WHOLE, DISPATCHER, N_KERNELS
} Kernel;
static const char *kernel_names[N_KERNELS] = {"stream-generic", "stream-avx2", "stream-avx512",
                                              "blas", "blas-whole", "matmul"};

static int kernel_available(Kernel k)
{
    switch (k) {
    case STREAM_GENERIC: return kernels_isa_available(KERNEL_ISA_GENERIC);
    case STREAM_AVX2: return kernels_isa_available(KERNEL_ISA_AVX2);
    case STREAM_AVX512: return kernels_isa_available(KERNEL_ISA_AVX512);
    case BLAS_SLICES: return kernels_have_blas();
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    case BLAS_WHOLE: return 1;
#endif
    case DISPATCHER: return 1;
    default: return 0;
    }
}

/* Set the kernels module up for kernel k (and back to defaults afterwards with k = DISPATCHER). */
static void kernel_select(Kernel k, int threads)
{
    kernels_set_isa(KERNEL_ISA_AUTO);
    kernels_set_blas_min_rows(0);
    if (k <= STREAM_AVX512) {
        const KernelIsa isa[] = {KERNEL_ISA_GENERIC, KERNEL_ISA_AVX2, KERNEL_ISA_AVX512};
        kernels_set_isa(isa[k]);
        kernels_set_blas_min_rows(INT_MAX);
    } else if (k == BLAS_SLICES) {
        kernels_set_blas_min_rows(1);
    }
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(k == BLAS_WHOLE ? threads : 1);
#else
    (void)threads;
#endif
}

/* The transposed copy of the input the forward's products get (QuantScratch.t), for matmul_weight. */
static QuantScratch scratch;

static void kernel_run(Kernel k, float *y, const float *x, const float *w, int T, int K, int N, int threads)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    if (k == BLAS_WHOLE) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        return;
    }
#endif
    (void)k;
    matmul_weight(y, x, (Weight){WEIGHT_F32, 0, w, NULL, NULL}, T, K, N, &scratch, threads);
}

static void fill_uniform(float *v, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17; /* xorshift64 */
        v[i] = (float)(*state >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
    }
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and fastest seconds of one product for each available kernel. The kernels take turns
 * call by call, so a slow spell of the machine hits them all alike; each gets at least 5 calls
 * and the round goes on for about `budget` seconds per kernel. blas-whole goes last, on its own:
 * OpenBLAS's threads wait for work by spinning, and would take the cores from the others. */
static void time_kernels(double seconds[N_KERNELS], double fastest[N_KERNELS], float *y, const float *x,
                         const float *pool, int copies, int T, int K, int N, int threads, double budget)
{
    enum { MAX_REPS = 500 };
    static double times[N_KERNELS][MAX_REPS];
    static size_t next_copy = 0;
    size_t size = (size_t)N * K;
    for (int whole = 0; whole < 2; whole++) {
        int reps = 0, n_kernels = 0;
        for (Kernel k = 0; k < N_KERNELS; k++)
            if (kernel_available(k) && (k == BLAS_WHOLE) == whole) {
                kernel_select(k, threads);
                kernel_run(k, y, x, pool, T, K, N, threads); /* warm up threads and code */
                n_kernels++;
            }
        double start = now_seconds();
        while (reps < MAX_REPS && (reps < 5 || now_seconds() - start < budget * n_kernels)) {
            for (Kernel k = 0; k < N_KERNELS; k++)
                if (kernel_available(k) && (k == BLAS_WHOLE) == whole) {
                    const float *w = pool + (size_t)(next_copy++ % copies) * size; /* never a warm one */
                    kernel_select(k, threads);
                    double t0 = now_seconds();
                    kernel_run(k, y, x, w, T, K, N, threads);
                    times[k][reps] = now_seconds() - t0;
                }
            reps++;
        }
        for (Kernel k = 0; k < N_KERNELS; k++)
            if (kernel_available(k) && (k == BLAS_WHOLE) == whole) {
                qsort(times[k], reps, sizeof times[k][0], compare_doubles);
                seconds[k] = times[k][reps / 2];
                fastest[k] = times[k][0];
            }
    }
    kernel_select(DISPATCHER, threads);
}

int main(int argc, char **argv)
{
    int threads = 0;
    double budget = 0.2;
    Shape shapes[64];
    int n_shapes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
            n_batches = 0;
            for (char *p = argv[++i]; *p && n_batches < MAX_BATCHES; p += strspn(p, ","))
                batch_sizes[n_batches++] = (int)strtol(p, &p, 10);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            budget = atof(argv[++i]);
        } else if (i + 1 < argc && atoi(argv[i]) > 0 && atoi(argv[i + 1]) > 0 && n_shapes < 64) {
            shapes[n_shapes++] = (Shape){atoi(argv[i]), atoi(argv[i + 1]), NULL, 0};
            i++;
        } else {
            fprintf(stderr, "usage: %s [-t THREADS] [-T 1,2,4,...] [-s SECONDS per timing] [K N ...]\n",
                    argv[0]);
            return 1;
        }
    }
    int max_t = 0;
    for (int b = 0; b < n_batches; b++) {
        if (batch_sizes[b] <= 0) {
            fprintf(stderr, "-T wants positive batch sizes separated by commas\n");
            return 1;
        }
        max_t = batch_sizes[b] > max_t ? batch_sizes[b] : max_t;
    }
    if (n_shapes == 0) {
        memcpy(shapes, model_shapes, sizeof model_shapes);
        n_shapes = N_MODEL_SHAPES;
    }
    threads = threads_resolve(threads); /* -t, or OpenMP's default */
    char crossover[32] = "never";
    if (kernels_blas_min_rows() < INT_MAX)
        snprintf(crossover, sizeof crossover, "T >= %d", kernels_blas_min_rows());
    printf("threads %d, streaming isa %s, blas %s, matmul uses blas: %s\n", threads, kernels_isa_name(),
           BLAS_PROVIDER, crossover);
    printf("%6s %6s %3s %-15s %9s %9s %8s %8s\n", "K", "N", "T", "kernel", "ms", "min ms", "GFLOP/s", "GB/s");

    /* ms[shape][batch][kernel], for the per-forward sums */
    static double ms[64][MAX_BATCHES][N_KERNELS];
    uint64_t rng = 0x9E3779B97F4A7C15u;
    for (int s = 0; s < n_shapes; s++) {
        int K = shapes[s].K, N = shapes[s].N;
        size_t size = (size_t)N * K;
        int copies = (int)(POOL_BYTES / (4.0 * size)) + 1;
        float *pool = alloc_zeroed(size * copies, sizeof(float));
        float *x = alloc_zeroed((size_t)max_t * K, sizeof(float));
        float *y = alloc_zeroed((size_t)max_t * N, sizeof(float));
        scratch.t = alloc_zeroed((size_t)(max_t + TRANSPOSED_ROWS - 1) / TRANSPOSED_ROWS * TRANSPOSED_ROWS * K,
                                 sizeof(float));
        if (!pool || !x || !y || !scratch.t) {
            fprintf(stderr, "out of memory for K %d N %d\n", K, N);
            return 1;
        }
        fill_uniform(pool, size * copies, &rng);
        fill_uniform(x, (size_t)max_t * K, &rng);
        for (int b = 0; b < n_batches; b++) {
            int T = batch_sizes[b];
            double seconds[N_KERNELS] = {0}, fastest[N_KERNELS] = {0};
            time_kernels(seconds, fastest, y, x, pool, copies, T, K, N, threads, budget);
            for (Kernel k = 0; k < N_KERNELS; k++) {
                ms[s][b][k] = 1e3 * seconds[k];
                if (kernel_available(k))
                    printf("%6d %6d %3d %-15s %9.4f %9.4f %8.1f %8.1f\n", K, N, T, kernel_names[k],
                           1e3 * seconds[k], 1e3 * fastest[k], 2.0 * T * size / seconds[k] * 1e-9,
                           4.0 * size / seconds[k] * 1e-9);
            }
            fflush(stdout);
        }
        free(pool);
        free(x);
        free(y);
        free(scratch.t);
    }

    /* Matrix work of one forward of T tokens, from the shape times above. */
    const char *models[] = {"15M", "110M"};
    for (int m = 0; m < 2; m++) {
        int complete = 0;
        for (int s = 0; s < n_shapes; s++)
            complete += shapes[s].model && !strcmp(shapes[s].model, models[m]);
        if (complete != N_MODEL_SHAPES / 2)
            continue;
        printf("\none %s forward, all matrices, ms (per row in brackets)\n%3s", models[m], "T");
        for (Kernel k = 0; k < N_KERNELS; k++)
            if (kernel_available(k))
                printf(" %21s", kernel_names[k]);
        printf("\n");
        for (int b = 0; b < n_batches; b++) {
            printf("%3d", batch_sizes[b]);
            for (Kernel k = 0; k < N_KERNELS; k++) {
                if (!kernel_available(k))
                    continue;
                double total = 0;
                for (int s = 0; s < n_shapes; s++)
                    if (shapes[s].model && !strcmp(shapes[s].model, models[m]))
                        total += shapes[s].per_forward * ms[s][b][k];
                printf(" %11.2f (%7.3f)", total, total / batch_sizes[b]);
            }
            printf("\n");
        }
    }
    return 0;
}
