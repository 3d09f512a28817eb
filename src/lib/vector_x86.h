/* vector_x86.h: small AVX2 helpers shared by the fp32 and the int8 kernels (kernels_x86.c,
 * kernels_q8_x86.c). Include only inside #ifdef KERNELS_X86, after <immintrin.h>. */
#ifndef LLAMIX_VECTOR_X86_H
#define LLAMIX_VECTOR_X86_H

/* The sum of a's eight lanes: halves, then pairs, then the last two. */
__attribute__((always_inline, target("avx2,fma")))
static inline float sum_avx2(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
