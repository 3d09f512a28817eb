/* cli.h: what the subcommands share: strict option values, error reporting, exit codes.
 * Every subcommand is `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand name)
 * and returns the process exit status. Options use getopt_long. */
#ifndef LLAMIX_CLI_H
#define LLAMIX_CLI_H

#include <llamix.h>
#include <stdio.h>

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

/* Print a library error and return the exit status it calls for: 2 for a context that does
 * not fit (a usage matter: -c, -n or the prompt), 1 for everything else. */
int cli_library_error(const LxError *err);

/* Open k checkpoints into models (on failure prints the error, closes what was opened, returns
 * -1). cli_close_models accepts a partly filled array of NULLs. */
int cli_open_models(char *const *paths, int k, LxModel **models);
void cli_close_models(LxModel **models, int k);

/* Open n tokenizers of vocab_size entries each (on failure prints, frees, returns -1). The
 * checks across members (one per member or one for all, identical) are the library's. */
int cli_open_tokenizers(char *const *paths, int n, int vocab_size, LxTokenizer **tokenizers);
void cli_free_tokenizers(LxTokenizer **tokenizers, int n);
/* The -z rule (tokenizers.c): n is 1 (for all) or k (member i's is paths[i]); each is opened
 * with its member's vocabulary size. Returns 0, or, after printing one line naming the files,
 * EXIT_USAGE (a count that fits neither) or EXIT_RUNTIME (a file that does not open or fit). */
int cli_open_member_tokenizers(char *const *model_paths, LxModel **models, int k, char *const *paths, int n,
                               LxTokenizer **tokenizers);
/* 1 if the n tokenizers are not all the same (different pieces or sizes). */
int cli_tokenizers_differ(LxTokenizer *const *tokenizers, int n);

/* Write n bytes to stdout; on failure print "llamix: standard output: REASON" once and return
 * -1 (later calls return -1 silently). cli_flush flushes and checks the same way. */
int cli_write(const char *text, size_t n);
int cli_flush(void);

/* JSON values: a string with quotes and control characters escaped; a number, or null for
 * infinities and NaN (JSON has neither). */
void cli_json_string(FILE *out, const char *s);
/* A file name in a table or report line: control bytes (a newline would start a false row) and
 * backslashes written as \xHH, everything else as it is. */
void cli_table_string(FILE *out, const char *s);
void cli_json_number(FILE *out, double x);

/* --wait auto|active|passive|N: how idle OpenMP threads wait at a barrier (thread_wait in cli.c).
 * libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded, before main: so the
 * choice takes effect by setting them and re-executing the program once. cli_wait_option records
 * the value (prints and returns -1 on a bad one); cli_wait_apply, called after the options are
 * parsed and before anything is opened, puts the recorded choice (or, when the user set neither
 * the option nor either variable, CLI_WAIT_DEFAULT) into effect, returning only when it already
 * is or cannot be. cli_wait_describe writes what is in effect, for reports. auto (the default)
 * looks at the host once, at the start: spin-then-sleep when no other task is running, passive
 * when one is (why: the "Thread waiting" table in bench/NOTES.md). */
#define CLI_WAIT_DEFAULT "auto"
#define CLI_WAIT_HELP \
    "      --wait POLICY     how idle threads wait: auto (the default: by the host's load at the\n" \
    "                        start), passive (sleep at once), active (spin), or N (spin N times,\n" \
    "                        then sleep); see llamix(1)\n"
int cli_wait_option(const char *text);
void cli_wait_apply(void);
void cli_wait_describe(char *out, size_t size);

/* The most members an ensemble may have on the command line. */
#define CLI_MAX_MEMBERS 16

/* Append path (of -m, -z or a positional checkpoint; option names it in messages) to paths, of
 * which *n are taken, at most CLI_MAX_MEMBERS. 0, or EXIT_USAGE with a message. */
int cli_add_path(const char *option, char **paths, int *n, char *path);

/* -e/--ensemble: one of me, ce, ce-mixture, ce-unite. 0, or EXIT_USAGE with a message. */
int cli_mode(const char *text, LxMode *mode);

/* The sampler's options, with one meaning and one range in every command. Put
 * CLI_SAMPLER_OPTIONS in the long options; cli_sampler_option() parses one of them. */
enum { CLI_OPT_TEMP = 200, CLI_OPT_TOP_K, CLI_OPT_TOP_P, CLI_OPT_MIN_P };
#define CLI_SAMPLER_OPTIONS                                                                       \
    {"temp", required_argument, 0, CLI_OPT_TEMP}, {"top-k", required_argument, 0, CLI_OPT_TOP_K}, \
        {"top-p", required_argument, 0, CLI_OPT_TOP_P}, {"min-p", required_argument, 0, CLI_OPT_MIN_P}
/* opt one of CLI_OPT_*: its value into sp. 0, or EXIT_USAGE with a message. */
int cli_sampler_option(int opt, const char *text, LxSamplerParams *sp);

/* `llamix generate` with -N, --prompts, --parallel or -o: many sequences at once
 * (generate_batch.c). Sample j of each prompt uses seed + j. */
typedef struct {
    const char *prompt, *prompts_file; /* -p, or one prompt a line of --prompts */
    int n_samples, parallel;           /* -N; --parallel (0: min(sequences, 16)) */
    int n_predict, n_ctx, jsonl;       /* -n, -c (0: what the longest prompt needs), -o jsonl */
    const char *const *stop;
    int n_stop;
    unsigned long long seed;
    LxEnsembleParams ensemble;
} BatchOptions;
int generate_batch(const BatchOptions *o, LxModel **models, int k, LxTokenizer **toks, int n_tokenizers);

/* `llamix bench` for members with different tokenizers (bench_vocab.c): CE and ME side by side
 * and the union vocabulary's cost per token, as a markdown table on stdout. */
int bench_vocab(LxModel **models, int k, LxTokenizer **toks, const LxSamplerParams *sampler, int n_gen, int reps,
                int threads, unsigned long long seed);

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv); /* serve.c */

#endif
