/* cli.c: strict parsing of option values, and error reporting, for every subcommand. */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("llamix: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_long(const char *option, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min || v > max) {
        cli_error("%s: '%s' is not a whole number from %ld to %ld", option, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_int(const char *option, const char *text, long min, long max, int *out)
{
    long v;
    if (cli_long(option, text, min, max, &v))
        return -1;
    *out = (int)v;
    return 0;
}

int cli_u64(const char *option, const char *text, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || text[0] == '-') {
        cli_error("%s: '%s' is not a non-negative whole number", option, text);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *option, const char *text, double min, double max, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < min || v > max) {
        cli_error("%s: '%s' is not a number from %g to %g", option, text, min, max);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_open_models(char *const *paths, int k, Model *models)
{
    char err[ERR_LEN];
    for (int i = 0; i < k; i++)
        if (model_open(&models[i], paths[i], err)) {
            cli_error("%s", err);
            cli_close_models(models, i);
            return -1;
        }
    return 0;
}

void cli_close_models(Model *models, int k)
{
    for (int i = 0; i < k; i++)
        model_close(&models[i]);
}

Tokenizer *cli_open_tokenizer(char *const *paths, int n_paths, const Model *models, int k)
{
    char err[ERR_LEN];
    int V = models[0].config.vocab_size;
    for (int i = 1; i < k; i++)
        if (models[i].config.vocab_size != V) {
            cli_error("%s has vocab_size %d but %s has %d: members must share one vocabulary",
                      models[i].path, models[i].config.vocab_size, models[0].path, V);
            return NULL;
        }
    if (n_paths != 1 && n_paths != k) {
        cli_error("give one tokenizer (-z) for all members, or one per member: %d for %d members", n_paths, k);
        return NULL;
    }
    Tokenizer *first = tokenizer_open(paths[0], V, err);
    if (!first) {
        cli_error("%s", err);
        return NULL;
    }
    for (int i = 1; i < n_paths; i++) {
        Tokenizer *other = tokenizer_open(paths[i], V, err);
        char why[ERR_LEN];
        if (!other || !tokenizer_same(first, other, why)) {
            if (other)
                cli_error("%s and %s differ (%s): members must share one tokenizer", paths[0], paths[i], why);
            else
                cli_error("%s", err);
            tokenizer_free(other);
            tokenizer_free(first);
            return NULL;
        }
        tokenizer_free(other);
    }
    return first;
}

void cli_getopt_reset(void)
{
    optind = 1;
    opterr = 0;
}

int cli_bad_option(const char *command, char **argv)
{
    /* A long option is named by its word; a short one by its letter (it may sit in a cluster). */
    const char *arg = argv[optind - 1];
    char name[3] = {'-', (char)optopt, '\0'};
    if (strncmp(arg, "--", 2) != 0 && optopt > ' ' && optopt < 127)
        arg = name;
    cli_error("%s: option '%s' is unknown or needs a value (see llamix %s --help)", command, arg, command);
    return EXIT_USAGE;
}

void cli_threads(int threads)
{
    threads_set(threads);
}
