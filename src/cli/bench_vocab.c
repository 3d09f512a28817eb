/* bench_vocab.c: `llamix bench -m A -z tA -m B -z tB`: CE and ME side by side for members whose
 * tokenizers differ, with the cost of the union vocabulary (mapping each S(p_k) into U for CE,
 * feeding every drawn string back to every member) per generated token. The runs alternate
 * (CE, ME, ME, CE, ...) so drift on a shared machine cancels; medians over the repetitions. */
#include "config.h"
#include "cli.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_vocab(LxModel **models, int k, LxTokenizer **toks, const LxSamplerParams *sampler, int n_gen, int reps,
                int threads, unsigned long long seed)
{
    enum { MAX_REPS = 64 };
    const char *prompt = "Once upon a time";
    LxMode modes[2] = {LX_MODE_CE, LX_MODE_ME};
    double rate[2][MAX_REPS], map_us[2][MAX_REPS];
    long unknown[2][CLI_MAX_MEMBERS] = {{0}};
    int U = 0;
    reps = reps > MAX_REPS ? MAX_REPS : reps;
    LxEnsemble *e[2] = {NULL, NULL};
    LxError err;
    for (int m = 0; m < 2; m++) {
        LxEnsembleParams p = lx_ensemble_defaults();
        p.mode = modes[m];
        p.sampler = *sampler;
        p.threads = threads;
        p.seed = seed;
        if (lx_ensemble_new(models, k, toks, k, &p, &e[m], &err)) {
            lx_ensemble_free(e[0]);
            return cli_library_error(&err);
        }
        U = lx_ensemble_vocab_size(e[m]);
    }
    LxGenerateParams g = lx_generate_defaults();
    g.n_predict = n_gen;
    g.ignore_eos = 1;
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < 2; j++) {
            int m = r % 2 ? 1 - j : j;
            LxGenerateStats st;
            if (lx_generate(e[m], prompt, &g, NULL, NULL, &st, &err)) {
                lx_ensemble_free(e[0]);
                lx_ensemble_free(e[1]);
                return cli_library_error(&err);
            }
            rate[m][r] = st.n_generated > 1 && st.generate_seconds > 0 ? (st.n_generated - 1) / st.generate_seconds : 0;
            map_us[m][r] = st.n_generated ? 1e6 * lx_ensemble_mapping_seconds(e[m]) / st.n_generated : 0;
            for (int i = 0; i < k; i++)
                unknown[m][i] = lx_ensemble_member_unknown(e[m], i);
        }
    printf("| mode | tok/s (median of %d) | union mapping and feeding back, us/token | unknown ids received per member |\n", reps);
    printf("| --- | --- | --- | --- |\n");
    for (int m = 0; m < 2; m++) {
        printf("| %s | %.1f | %.2f |", lx_mode_name(modes[m]), stats_median(rate[m], reps), stats_median(map_us[m], reps));
        for (int i = 0; i < k; i++)
            printf(" %ld", unknown[m][i]);
        printf(" |\n");
    }
    printf("\n%d members with different tokenizers, union vocabulary of %d strings; tg %d tokens after \"%s\"; "
           "ME/CE %.2fx\n", k, U, n_gen, prompt, stats_median(rate[1], reps) / (stats_median(rate[0], reps) > 0 ? stats_median(rate[0], reps) : 1));
    lx_ensemble_free(e[0]);
    lx_ensemble_free(e[1]);
    return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
}
