/* mpi_none.c: --mpi in a llamix configured without Open MPI: one line and exit 2, as for any
 * option this program cannot honour. */
#include "config.h"
#include "cli.h"
#include "mpi_members.h"

int mpi_members_open(char *const *paths, int k, const char *member_ranks, LxModel **models)
{
    (void)paths, (void)k, (void)member_ranks, (void)models;
    cli_error("--mpi: this llamix was built without MPI (install libopenmpi-dev and configure --with-mpi)");
    return EXIT_USAGE;
}

int mpi_attach(LxEnsemble *e, int threads, LxError *err)
{
    (void)e, (void)threads, (void)err;
    return 0;
}

LxStatus mpi_score_text(LxModel *const *models, int k, const LxTokenizer *t, const char *text,
                        const LxScoreParams *params, LxScore **out, LxError *err)
{
    return lx_score_text(models, k, t, text, params, out, err);
}

int mpi_end(int status) { return status; }
