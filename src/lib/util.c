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

/* Shorten text (n bytes, NUL-terminated, in a buffer of at least n + 1) to fit in size bytes
 * by cutting the middle out of its longest space-free word (a path, nearly always) and putting
 * "..." there, so that the problem a message states survives however long the file name before
 * it. Words are shortened longest first until the text fits; a text of no long words is cut at
 * the end as snprintf would. */
static void elide_to_fit(char *text, size_t n, size_t size)
{
    while (n + 1 > size) {
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && text[j] != ' ')
                j++;
            if (j - i > best_len)
                best = i, best_len = j - i;
            i = j + 1;
        }
        size_t excess = n + 1 - size, keep = best_len > excess + 3 ? best_len - excess - 3 : 0;
        if (best_len < 16 || keep < 8)
            break; /* nothing worth eliding: truncate */
        size_t head = keep / 2, tail = keep - head; /* word = head ... tail */
        memmove(text + best + head + 3, text + best + best_len - tail, n - (best + best_len - tail) + 1);
        memcpy(text + best + head, "...", 3);
        n = n - best_len + keep + 3;
    }
    if (n + 1 > size)
        text[size - 1] = '\0';
}

int(fail)(LxError *err, LxStatus status, const char *fmt, ...)
{
    if (err) {
        char local[4 * LX_ERROR_LENGTH], *whole = local;
        va_list ap, again;
        va_start(ap, fmt);
        va_copy(again, ap);
        int n = vsnprintf(local, sizeof local, fmt, ap);
        if (n >= (int)sizeof local && (whole = malloc((size_t)n + 1))) /* a path near PATH_MAX */
            vsnprintf(whole, (size_t)n + 1, fmt, again);
        else if (n >= (int)sizeof local)
            whole = local, n = (int)sizeof local - 1;
        va_end(again);
        va_end(ap);
        err->status = status;
        if (n < 0)
            n = 0, whole[0] = '\0';
        elide_to_fit(whole, (size_t)n, sizeof err->message);
        snprintf(err->message, sizeof err->message, "%s", whole);
        if (whole != local)
            free(whole);
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
