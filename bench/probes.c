/* probes.c: the machine's limits and the process's resources (see probes.h). */
#include "config.h"
#include "internal.h"
#include "probes.h"
#include "stats.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

/* Sum of x (n) with 16 independent partial sums: the loop is bound by loads, not by the latency
 * of one running add, and it vectorises without reassociating anything. */
static float sum_floats(const float *x, size_t n)
{
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += x[i + l];
    float s = 0;
    for (; i < n; i++)
        s += x[i];
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

double probe_bandwidth(const float *buf, size_t n, int threads, int passes, double *best)
{
    double rates[16];
    int slices = threads_resolve(threads);
    size_t per = (n + (size_t)slices - 1) / (size_t)slices;
    volatile float sink = 0;
    passes = passes > 16 ? 16 : passes;
    for (int r = 0; r < passes; r++) {
        float total = 0;
        double t0 = now_seconds();
        #pragma omp parallel for schedule(static) num_threads(slices) reduction(+ : total)
        for (int s = 0; s < slices; s++) {
            size_t i0 = (size_t)s * per, i1 = i0 + per < n ? i0 + per : n;
            if (i0 < i1)
                total += sum_floats(buf + i0, i1 - i0);
        }
        double t1 = now_seconds();
        sink += total;
        rates[r] = (double)n * sizeof(float) / (t1 - t0) / 1e9;
    }
    (void)sink;
    *best = stats_max(rates, passes);
    return stats_median(rates, passes);
}

double probe_matvec(const float *w, size_t n, int threads, int passes)
{
    const int K = 4096, N = (int)(n / (size_t)K);
    float *x = alloc_zeroed((size_t)K, sizeof(float)), *y = alloc_zeroed((size_t)N, sizeof(float));
    double rates[16];
    passes = passes > 16 ? 16 : passes;
    if (!x || !y) {
        free(x);
        free(y);
        return NAN;
    }
    for (int j = 0; j < K; j++)
        x[j] = 1.0f / (float)(j + 1);
    for (int r = 0; r < passes; r++) {
        double t0 = now_seconds();
        matmul(y, x, w, 1, K, N, threads);
        rates[r] = (double)N * K * sizeof(float) / (now_seconds() - t0) / 1e9;
    }
    free(x);
    free(y);
    return stats_median(rates, passes);
}

void probe_product_fill(float *x, float *w, int S)
{
    for (size_t i = 0; i < (size_t)S * S; i++) {
        x[i] = (float)(i % 7) * 0.125f;
        w[i] = (float)(i % 5) * 0.25f;
    }
}

double probe_product(const float *x, const float *w, float *y, int S, int threads, int passes, int blas)
{
    double rates[16];
    passes = passes > 16 ? 16 : passes;
    int slices = threads_resolve(threads), rows = (S + slices - 1) / slices;
    for (int r = -1; r < passes; r++) {
        double t0 = now_seconds();
        if (blas) {
            #pragma omp parallel for schedule(static) num_threads(slices)
            for (int s = 0; s < slices; s++) {
                int n0 = s * rows, n1 = n0 + rows < S ? n0 + rows : S;
                if (n0 < n1)
                    matmul_blas(y, x, w, S, S, S, n0, n1);
            }
        } else {
            matmul(y, x, w, S, S, S, slices);
        }
        if (r >= 0)
            rates[r] = 2.0 * S * (double)S * S / (now_seconds() - t0) / 1e9;
    }
    return stats_median(rates, passes);
}

double probe_peak_rss(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return 1024.0 * (double)u.ru_maxrss;
}

double probe_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    int ok = f && fscanf(f, "%ld %ld", &size, &resident) == 2;
    if (f)
        fclose(f);
    return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) : 0.0;
}

/* The heap's bytes in use, every arena and mmapped block included. */
size_t probe_heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

double probe_cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

double probe_machine_busy_seconds(void)
{
    unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
    FILE *f = fopen("/proc/stat", "r");
    int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                         &v[4], &v[5], &v[6], &v[7]) : 0;
    if (f)
        fclose(f);
    if (got < 4)
        return NAN;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

int probe_process_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int probe_blas_threads(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    return openblas_get_num_threads();
#else
    return kernels_have_blas() ? -1 : 0;
#endif
}

const char *probe_blas_config(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    return openblas_get_config();
#else
    return BLAS_PROVIDER;
#endif
}

void probe_cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += strspn(v + 1, " \t") + 1;
                v[strcspn(v, "\n")] = '\0';
                snprintf(out, size, "%s", v);
            }
            break;
        }
    if (f)
        fclose(f);
}
