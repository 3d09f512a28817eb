/* util.c: error messages, checked arithmetic, clock, threads, aligned allocation. */
#include "config.h"
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

int(fail)(LxError *err, LxStatus status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return (int)status;
}

int size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lx_threads_default(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int threads_resolve(int threads)
{
    return threads > 0 ? threads : lx_threads_default();
}

void lx_blas_single_thread(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
}

void *alloc_zeroed(size_t n, size_t size)
{
    size_t bytes, rounded;
    if (size_mul(n, size, &bytes) || size_add(bytes, 63, &rounded))
        return NULL;
    rounded &= ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

const char *lx_version(void) { return PACKAGE_VERSION; }

const char *lx_status_name(LxStatus status)
{
    switch (status) {
    case LX_OK: return "ok";
    case LX_ERR_ARGUMENT: return "bad argument";
    case LX_ERR_FILE: return "bad file";
    case LX_ERR_MEMORY: return "out of memory";
    case LX_ERR_IO: return "I/O error";
    case LX_ERR_CONTEXT: return "context full";
    }
    return "unknown status";
}
