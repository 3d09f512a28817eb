/* kernels.h: the numeric building blocks of the forward pass.
 *
 * The heavy one is the batched matrix product. For T input rows x (T, K) and a weight matrix
 * W (N, K) it computes y (T, N) with y[t][i] = sum_j W[i][j] x[t][j]. Three implementations:
 *   matmul_reference  plain scalar loops: the oracle for tests, and readable
 *   matmul_stream     reads each weight row once and dots it with all T input rows; vectorised
 *                     for the widest instruction set the CPU has (chosen at run time). Decode
 *                     (T = 1) and ME's catch-up (T = 2..8) are memory-bound and want this.
 *   matmul_blas       CBLAS sgemm; wins for large T (prefill, scoring) where packing pays off.
 * matmul() picks between them by T and splits the N output rows across the OpenMP threads. */
#ifndef LLAMIX_KERNELS_H
#define LLAMIX_KERNELS_H

#include <stddef.h>

/* y (T, N) = x (T, K) W^T, W (N, K); T, K, N >= 1. Threaded; picks the kernel. */
void matmul(float *y, const float *x, const float *w, int T, int K, int N);

/* Several products of one input, y_i (T, N_i) = x (T, K) W_i^T (the query, key and value
 * projections), threaded in one parallel region instead of one each. */
typedef struct {
    float *y;
    const float *w;
    int N;
} Product;
void matmul_many(const float *x, int T, int K, const Product *p, int n);

/* SwiGLU's gated products in one parallel region: h (T, H) = silu(x W1^T) * (x W3^T), with
 * silu(g) = g / (1 + e^-g); u (T, H) is scratch that receives x W3^T. */
void matmul_swiglu(float *h, float *u, const float *x, const float *w1, const float *w3, int T, int K, int H);
/* The gate alone, h = silu(h) * u over (T, H): the plain path of the same step. */
void swiglu(float *h, const float *u, int T, int H);

/* Single-threaded variants over output rows [n0, n1) (0 <= n0 <= n1 <= N; the other columns of y
 * are left alone), for tests and for matmul() itself. */
void matmul_reference(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_stream(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);
void matmul_blas(float *y, const float *x, const float *w, int T, int K, int N, int n0, int n1);

/* Instruction sets of the streaming kernel. kernels_isa_available() tells whether this CPU and
 * build can run one; kernels_set_isa() forces one (tests), KERNEL_ISA_AUTO restores the best. */
typedef enum { KERNEL_ISA_AUTO = -1, KERNEL_ISA_GENERIC = 0, KERNEL_ISA_AVX2 = 1, KERNEL_ISA_AVX512 = 2 } KernelIsa;
int kernels_isa_available(KernelIsa isa);
void kernels_set_isa(KernelIsa isa);
const char *kernels_isa_name(void); /* the one in use */

/* Batches of at least this many rows go to BLAS (when built with it); measured, see kernels.c.
 * The default depends on the streaming kernel's instruction set (INT_MAX: never).
 * kernels_set_blas_min_rows() overrides it (tests, bench); 0 restores the default. */
int kernels_blas_min_rows(void);
void kernels_set_blas_min_rows(int rows);
int kernels_have_blas(void);

/* a (n) . b (n) kept as `lanes` (1..DOT_MAX_LANES) partial sums. One running sum makes every add
 * wait for the previous one (a chain of n adds); independent lanes hide that latency, and a
 * fixed-width inner loop is what a compiler turns into vector registers. Inline, so each caller
 * is vectorised for the instruction set it is compiled for. */
#define DOT_MAX_LANES 16
static inline float dot_lanes(const float *a, const float *b, int n, int lanes)
{
    float acc[DOT_MAX_LANES] = {0};
    int i = 0;
    for (; i + lanes <= n; i += lanes)
        for (int l = 0; l < lanes; l++)
            acc[l] += a[i + l] * b[i + l];
    float sum = 0.0f;
    for (; i < n; i++)
        sum += a[i] * b[i];
    for (int l = 0; l < lanes; l++)
        sum += acc[l];
    return sum;
}

/* o (D) = x / sqrt(mean(x^2) + 1e-5) * weight; o may alias x. */
void rmsnorm(float *o, const float *x, const float *weight, int D);

/* In place: x (n) = exp(x - max) / sum. */
void softmax(float *x, int n);

#endif
