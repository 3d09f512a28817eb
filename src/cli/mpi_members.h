/* mpi_members.h: `generate --mpi` and `score --mpi`, the members of one ensemble on several MPI ranks
 * (mpi.c; built with Open MPI only: without it mpi_none.c says --mpi was not built in).
 *
 * Rank 0 owns everything a single process has, the tokenizer, the sequence, the random streams,
 * the sums and the output, and runs the ordinary code: its ensemble holds every member, the
 * remote ones as shells (config and path) whose forward() runs on their rank
 * (ensemble_set_remote). The other ranks only map their members and serve forwards (and score
 * rows) until rank 0 is done. Since the logits of every member are the same bits wherever they
 * are computed, and rank 0 does everything else in the single process's order, an MPI run prints
 * exactly the single process's tokens, in every mode. */
#ifndef LLAMIX_MPI_MEMBERS_H
#define LLAMIX_MPI_MEMBERS_H

#include <llamix.h>

/* --mpi: start MPI, place member i on rank i mod R (or on rank member_ranks[i], "0,1,1"), and
 * open this rank's members. Rank 0 gets all k in models, shells for the remote ones, and -1 (go
 * on). Every other rank serves until rank 0 ends it and returns the exit status to end with; so
 * does every rank when one fails to open its members (rank 0 prints one line naming the rank and
 * the file; status 1), or when the placement is bad (status 2). */
int mpi_members_open(char *const *paths, int k, const char *member_ranks, LxModel **models);

/* Rank 0: hand e's remote members to their ranks (threads: -t, 0 for each rank's default). */
int mpi_attach(LxEnsemble *e, int threads, LxError *err);

/* Rank 0: lx_score_text, the remote members scored on their ranks and their rows gathered. */
LxStatus mpi_score_text(LxModel *const *models, int k, const LxTokenizer *t, const char *text,
                        const LxScoreParams *params, LxScore **out, LxError *err);

/* After the command (main.c): rank 0 ends the serving ranks with its status; every rank leaves
 * MPI. Returns status; nothing happens when --mpi was not given. */
int mpi_end(int status);

#endif
