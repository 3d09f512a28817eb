/* members.h: random members for the bench (--shape), which leave nothing behind on disk. */
#ifndef LLAMIX_BENCH_MEMBERS_H
#define LLAMIX_BENCH_MEMBERS_H

#include <llamix.h>

/* Write k random members of config c (seeds seed, seed + 1, ...; checkpoint version 1, fp32, or
 * 2, int8 Q8_0, the same models quantized) into a fresh temporary
 * directory ($TMPDIR, else /tmp), map them, and delete the files and the directory at once: the
 * mappings keep the data alive and nothing is left behind, however the process ends. The caller
 * closes models[0..k) with lx_model_close; on failure none is left open. */
LxStatus bench_random_members(const LxModelConfig *c, int k, uint64_t seed, int version, LxModel **models,
                              LxError *err);

#endif
