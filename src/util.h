/* util.h: the few helpers every module shares: error messages, overflow-checked size
 * arithmetic, a monotonic clock, thread count.
 *
 * Error convention (all library code): functions return 0 on success and -1 on failure, and on
 * failure write a one-line message into a caller-supplied buffer `char err[ERR_LEN]`. Library code
 * never prints and never exits; only main() does. */
#ifndef LLAMIX_UTIL_H
#define LLAMIX_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ERR_LEN 512

/* printf-style: write a message into err (may be NULL) and return -1. */
/* (The parentheses keep the name safe from cmocka.h, which defines a fail() macro.) */
int(fail)(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* *out = a * b (or a + b); return -1 instead of wrapping around. */
int size_mul(size_t a, size_t b, size_t *out);
int size_add(size_t a, size_t b, size_t *out);

/* Seconds on a monotonic clock. */
double now_seconds(void);

/* Threads OpenMP will use (1 without OpenMP). */
int threads_available(void);

/* Set the one thread knob: OpenMP gets n threads, BLAS is pinned to one (see kernels.c). */
void threads_set(int n);

/* Allocate n * size bytes, zeroed, 64-byte aligned; NULL on overflow or failure. Free with free(). */
void *alloc_zeroed(size_t n, size_t size);

#endif
