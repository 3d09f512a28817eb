/* cli.h: what the subcommands share: strict option values, error reporting, exit codes.
 * Every subcommand is `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand name)
 * and returns the process exit status. Options use getopt_long. */
#ifndef LLAMIX_CLI_H
#define LLAMIX_CLI_H

#include "model.h"
#include "tokenizer.h"

#define EXIT_OK 0
#define EXIT_RUNTIME 1 /* a file or a run failed */
#define EXIT_USAGE 2   /* bad flags or values */

/* Print "llamix: <message>" and a newline on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse a whole string as a number in [min, max]; on failure print
 * "llamix: OPTION: 'TEXT' is not ... " and return -1. */
int cli_int(const char *option, const char *text, long min, long max, int *out);
int cli_long(const char *option, const char *text, long min, long max, long *out);
int cli_u64(const char *option, const char *text, unsigned long long *out);
int cli_float(const char *option, const char *text, double min, double max, float *out);

/* Reset getopt for a subcommand and silence its own messages (we print one line ourselves). */
void cli_getopt_reset(void);

/* getopt_long returned '?': print one line naming the bad option of `command`; returns
 * EXIT_USAGE. */
int cli_bad_option(const char *command, char **argv);

/* Set the thread knob from -t (0 = keep OMP_NUM_THREADS / all cores). */
void cli_threads(int threads);

/* Open k checkpoints (on failure prints the error, closes what was opened, returns -1). */
int cli_open_models(char *const *paths, int k, Model *models);
void cli_close_models(Model *models, int k);

/* Open the tokenizer for k members: n_paths is 1 (shared) or k (one each, then they must be
 * identical). The vocabulary size comes from the models, which must agree. NULL on error
 * (printed). */
Tokenizer *cli_open_tokenizer(char *const *paths, int n_paths, const Model *models, int k);

/* The most members an ensemble may have on the command line. */
#define CLI_MAX_MEMBERS 16

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
