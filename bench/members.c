/* members.c: random members written to a temporary directory and deleted once mapped. */
#include "config.h"
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

LxStatus bench_random_members(const LxModelConfig *c, int k, uint64_t seed, LxModel **models, LxError *err)
{
    const char *base = getenv("TMPDIR");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/llamix-bench-XXXXXX", base && *base ? base : "/tmp");
    for (int i = 0; i < k; i++)
        models[i] = NULL;
    if (!mkdtemp(dir)) {
        err->status = LX_ERR_IO;
        snprintf(err->message, sizeof err->message, "cannot create a temporary directory %.400s", dir);
        return LX_ERR_IO;
    }
    LxStatus status = LX_OK;
    for (int i = 0; i < k && status == LX_OK; i++) {
        snprintf(path, sizeof path, "%s/member-%d.bin", dir, i + 1);
        status = lx_model_write_random(path, c, 1, 1, seed + (uint64_t)i, 0, err);
        if (status == LX_OK)
            status = lx_model_open(path, &models[i], err);
        unlink(path);
    }
    rmdir(dir);
    if (status != LX_OK)
        for (int i = 0; i < k; i++) {
            lx_model_close(models[i]);
            models[i] = NULL;
        }
    return status;
}
