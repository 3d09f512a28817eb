/* attention.c: causal attention of one query head over its kv head's cached positions, for one
 * row (a decode step, a short catch-up) or for a run of consecutive rows of one sequence (a
 * prompt, a scoring window).
 *
 * Row i at position p_i, with q_i, keys k_t and values v_t of the cached positions t <= p_i:
 *   s_it = q_i . k_t / sqrt(HS);  a_i = softmax(s_i over t <= p_i);  out_i = sum_t a_it v_t
 * One row at a time reads every key and value once per row. A run of n rows at positions
 * p0 .. p0+n-1 is two matrix products instead, S (n, P) = Q K^T and O (n, HS) = A V with
 * P = p0 + n, so each key and value is read once for the whole run and the arithmetic runs at
 * the product's pace. The products cover all P positions for every row; the softmax zeroes the
 * scores past each row's own position, so those positions add nothing (the causal mask). */
#include "config.h"
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef HAVE_CBLAS
#include <cblas.h>
#endif

/* Each dot product is kept as 16 lanes (dot_lanes), which vectorise. */
#define ATTENTION_LANES 16

VECTOR_CLONES
void attention_row(float *out, const float *q, const float *keys, const float *values, int p, int head_size,
                   float *scores)
{
    float scale = 1.0f / sqrtf((float)head_size);
    for (int t = 0; t <= p; t++)
        scores[t] = dot_lanes(q, keys + (size_t)t * head_size, head_size, ATTENTION_LANES) * scale;
    softmax(scores, p + 1);
    memset(out, 0, (size_t)head_size * sizeof(float));
    for (int t = 0; t <= p; t++) {
        const float *v = values + (size_t)t * head_size;
        float a = scores[t];
        for (int i = 0; i < head_size; i++)
            out[i] += a * v[i];
    }
}

/* Runs of at least this many rows go through the two products (with BLAS; without it every row
 * is one attention_row). */
#define ATTENTION_RUN_MIN_ROWS 16

int attention_run_min_rows(void)
{
    return kernels_have_blas() ? ATTENTION_RUN_MIN_ROWS : INT_MAX;
}

void attention_run(float *out, int out_stride, const float *q, int q_stride, const float *keys, const float *values,
                   int p0, int n, int head_size, float *scores, int score_stride)
{
#ifdef HAVE_CBLAS
    const int P = p0 + n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, P, head_size, 1.0f / sqrtf((float)head_size), q,
                q_stride, keys, head_size, 0.0f, scores, score_stride);
    for (int i = 0; i < n; i++) {
        float *s = scores + (size_t)i * score_stride;
        softmax(s, p0 + i + 1);
        memset(s + p0 + i + 1, 0, (size_t)(n - i - 1) * sizeof(float)); /* the causal mask */
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, head_size, P, 1.0f, scores, score_stride, values,
                head_size, 0.0f, out, out_stride);
#else /* (not reached: attention_run_min_rows is INT_MAX without BLAS) */
    for (int i = 0; i < n; i++)
        attention_row(out + (size_t)i * out_stride, q + (size_t)i * q_stride, keys, values, p0 + i, head_size,
                      scores + (size_t)i * score_stride);
#endif
}
