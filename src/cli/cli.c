/* cli.c: strict parsing of option values, and error reporting, for every subcommand. */
#include "config.h"
#include "cli.h"

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

int cli_library_error(const LxError *err)
{
    cli_error("%s", err->message);
    return err->status == LX_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUNTIME;
}

int cli_open_models(char *const *paths, int k, LxModel **models)
{
    LxError err;
    for (int i = 0; i < k; i++)
        models[i] = NULL;
    for (int i = 0; i < k; i++)
        if (lx_model_open(paths[i], &models[i], &err)) {
            cli_error("%s", err.message);
            cli_close_models(models, i);
            return -1;
        }
    return 0;
}

void cli_close_models(LxModel **models, int k)
{
    for (int i = 0; i < k; i++) {
        lx_model_close(models[i]);
        models[i] = NULL;
    }
}

int cli_open_tokenizers(char *const *paths, int n, int vocab_size, LxTokenizer **tokenizers)
{
    LxError err;
    for (int i = 0; i < n; i++)
        tokenizers[i] = NULL;
    for (int i = 0; i < n; i++)
        if (lx_tokenizer_open(paths[i], vocab_size, &tokenizers[i], &err)) {
            cli_error("%s", err.message);
            cli_free_tokenizers(tokenizers, i);
            return -1;
        }
    return 0;
}

void cli_free_tokenizers(LxTokenizer **tokenizers, int n)
{
    for (int i = 0; i < n; i++) {
        lx_tokenizer_free(tokenizers[i]);
        tokenizers[i] = NULL;
    }
}

/* Output is the product: a failed write (disk full, a closed pipe) is an error, reported once. */
static int stdout_failed;

static int stdout_error(void)
{
    if (!stdout_failed)
        cli_error("standard output: %s", strerror(errno ? errno : EIO));
    stdout_failed = 1;
    return -1;
}

int cli_write(const char *text, size_t n)
{
    if (stdout_failed)
        return -1;
    errno = 0;
    if (n > 0 && fwrite(text, 1, n, stdout) != n)
        return stdout_error();
    return 0;
}

int cli_flush(void)
{
    if (stdout_failed)
        return -1;
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout))
        return stdout_error();
    return 0;
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

void cli_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(out, "\\u%04x", *c);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

void cli_json_number(FILE *out, double x)
{
    if (isfinite(x))
        fprintf(out, "%.10g", x);
    else
        fputs("null", out);
}
