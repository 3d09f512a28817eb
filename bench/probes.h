/* probes.h: what the bench measures of the machine and of its own process, beside the runs.
 *
 * The machine's limits, measured in the same process with the same threads as the tests (each
 * probe takes its thread count and runs its OpenMP regions with exactly that many): the memory
 * read bandwidth (a threaded sum over a buffer far larger than the caches), the decode kernel's
 * own ceiling (matmul() with one row), and the sgemm peak (BLAS on a large square product, each
 * thread on its slice as matmul() splits it; beside it matmul() itself on that product).
 * The process: peak RSS, heap in use, CPU time, threads; the machine: the CPU time every process
 * used (to tell the background load), the CPU model, the BLAS in use. */
#ifndef LLAMIX_BENCH_PROBES_H
#define LLAMIX_BENCH_PROBES_H

#include <stddef.h>

/* Read bandwidth, GB/s: every thread sums its own contiguous slice of buf (n floats), as
 * matmul() gives each thread its own slice of a weight matrix. Median of `passes` (at most 16),
 * the best in *best. */
double probe_bandwidth(const float *buf, size_t n, int threads, int passes, double *best);
/* matmul() with one input row over a weight matrix of n floats (rows of 4096): GB/s of weights,
 * median of `passes`. */
double probe_matvec(const float *w, size_t n, int threads, int passes);
/* GFLOP/s of an (S, S) x (S, S) product y = x w^T on given matrices (x and w filled by
 * probe_product_fill), median of `passes` after one untimed pass.
 *   blas = 1: the sgemm peak: CBLAS sgemm, each thread on its own slice of the output rows as
 *             matmul() splits them, so it runs with exactly our threads (BLAS itself on one);
 *             the plain kernel without BLAS.
 *   blas = 0: llamix's own matmul(), whatever kernel it picks for S rows: what prefill runs. */
void probe_product_fill(float *x, float *w, int S);
double probe_product(const float *x, const float *w, float *y, int S, int threads, int passes, int blas);

/* Peak resident set size so far, the resident size now (0 without /proc/self/statm), and heap
 * bytes in use now (0 where the C library cannot say). */
double probe_peak_rss(void);
double probe_rss(void);
size_t probe_heap_bytes(void);
/* CPU seconds this process has used; CPU seconds every process on the machine has used (busy
 * time in /proc/stat, steal included: on a VM that is the host's other guests), NAN where there
 * is no /proc/stat. */
double probe_cpu_seconds(void);
double probe_machine_busy_seconds(void);
/* Threads in this process now (OpenMP's pool, BLAS's own pool if it made one, and main), -1
 * where /proc/self/task is missing. */
int probe_process_threads(void);
/* Threads BLAS runs per call (0: no BLAS, -1: a BLAS that cannot say), and its description. */
int probe_blas_threads(void);
const char *probe_blas_config(void);
/* "model name" from /proc/cpuinfo, or "unknown". */
void probe_cpu_model(char *out, size_t size);

#endif
