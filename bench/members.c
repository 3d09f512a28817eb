/* members.c: random members for `llamix bench --shape`, written to TMPDIR and deleted as soon as
 * they are mapped. The file is written atomically (it has no name until it is complete), so an
 * interrupt while it is being written leaves nothing; its name lives only between the rename
 * that completes it and the unlink after mapping. */
#include "config.h"
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

LxStatus bench_random_members(const LxModelConfig *c, int k, uint64_t seed, int version, LxModel **models,
                              LxError *err)
{
    const char *dir = getenv("TMPDIR");
    char path[4200];
    for (int i = 0; i < k; i++)
        models[i] = NULL;
    LxStatus status = LX_OK;
    for (int i = 0; i < k && status == LX_OK; i++) {
        snprintf(path, sizeof path, "%s/llamix-bench-%ld-member-%d.bin", dir && *dir ? dir : "/tmp", (long)getpid(),
                 i + 1);
        status = lx_model_write_random(path, c, version, 1, seed + (uint64_t)i, 0, err);
        if (status == LX_OK) {
            status = lx_model_open(path, &models[i], err);
            unlink(path);
        }
    }
    if (status != LX_OK)
        for (int i = 0; i < k; i++) {
            lx_model_close(models[i]);
            models[i] = NULL;
        }
    return status;
}
