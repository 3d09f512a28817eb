/* main.c: `llamix COMMAND ...`: hands the command line to the subcommand. */
#include "config.h"
#include "cli.h"
#include "mpi_members.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} COMMANDS[] = {
    {"generate", cmd_generate, "generate text with one model or an ensemble (CE or ME)"},
    {"score", cmd_score, "perplexity of members and of the ensemble; fit the weights"},
    {"bench", cmd_bench, "measure single, CE and ME speed (no arguments: a quick demo)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"init", cmd_init, "write a random checkpoint of a given shape"},
    {"quantize", cmd_quantize, "write an fp32 checkpoint as int8 (llama2.c version 2, Q8_0)"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server for the ensemble"},
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0] };

static void usage(FILE *out)
{
    fprintf(out, "usage: llamix COMMAND [OPTIONS]   (llamix COMMAND --help for its options)\n\n"
                 "llamix samples from ensembles of llama2.c models: the conventional ensemble (CE)\n"
                 "runs every member each step; the mixture-model-like ensemble (ME) runs one.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nsee llamix(1).\n");
}

int main(int argc, char **argv)
{
    /* The one process-wide choice, made here and not in the library: llamix's threads split every
     * product and call BLAS on their own slices, so BLAS must not start threads of its own. */
    lx_blas_single_thread();
    /* A closed pipe on stdout is a write error to report (EPIPE), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("%s %s (library %s, BLAS: %s, kernels: %s)\n", PACKAGE_NAME, PACKAGE_VERSION, lx_version(),
               BLAS_PROVIDER, lx_kernel_name());
        return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return mpi_end(COMMANDS[i].run(argc - 1, argv + 1)); /* (--mpi: leaves MPI) */
    cli_error("unknown command '%s' (try llamix --help)", argv[1]);
    return EXIT_USAGE;
}
