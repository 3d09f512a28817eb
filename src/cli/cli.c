/* cli.c: strict parsing of option values, and error reporting, for every subcommand. */
#include "config.h"
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    if (end == text || *end != '\0' || errno == ERANGE || v < min || v > max || isspace((unsigned char)text[0])) {
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
    if (end == text || *end != '\0' || errno == ERANGE || !isdigit((unsigned char)text[0])) {
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
    if (end == text || *end != '\0' || isspace((unsigned char)text[0])) {
        cli_error("%s: '%s' is not a number", option, text);
        return -1;
    }
    if (errno == ERANGE) {
        cli_error("%s: '%s' is too %s to represent", option, text, v == 0 ? "close to 0" : "large");
        return -1;
    }
    if (!isfinite(v) || v < min || v > max) {
        cli_error("%s: '%s' is not a number from %g to %g", option, text, min, max);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_add_path(const char *option, char **paths, int *n, char *path)
{
    if (*n == CLI_MAX_MEMBERS) {
        cli_error("%s: at most %d members", option, CLI_MAX_MEMBERS);
        return EXIT_USAGE;
    }
    paths[(*n)++] = path;
    return 0;
}

int cli_mode(const char *text, LxMode *mode)
{
    if (lx_mode_parse(text, mode, NULL) == LX_OK)
        return 0;
    cli_error("--ensemble: '%s' is not one of me, ce, ce-mixture, ce-unite", text);
    return EXIT_USAGE;
}

int cli_sampler_option(int opt, const char *text, LxSamplerParams *sp)
{
    int bad;
    switch (opt) {
    case CLI_OPT_TEMP: bad = cli_float("--temp", text, 0, 1e6, &sp->temperature); break;
    case CLI_OPT_TOP_K: bad = cli_int("--top-k", text, 0, 1 << 30, &sp->top_k); break;
    case CLI_OPT_TOP_P: bad = cli_float("--top-p", text, 1e-9, 1, &sp->top_p); break;
    default: bad = cli_float("--min-p", text, 0, 0.999999, &sp->min_p); break;
    }
    return bad ? EXIT_USAGE : 0;
}

int cli_library_error(const LxError *err)
{
    cli_error("%s", err->message);
    return err->status == LX_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUNTIME;
}

/* The mapped checkpoints, for the SIGBUS handler: a file truncated or rewritten in place while
 * mapped makes its lost pages fault. The handler names the file and exits instead of dying of
 * the signal; any other fault goes on to the default action. */
static struct {
    const char *start;
    size_t size;
    char message[300];
    size_t length;
} mapped[CLI_MAX_MEMBERS];
static volatile sig_atomic_t n_mapped;

static void on_fault(int sig, siginfo_t *info, void *context)
{
    (void)context;
    const char *addr = info->si_addr;
    for (int i = 0; i < n_mapped; i++)
        if (addr >= mapped[i].start && addr < mapped[i].start + mapped[i].size) {
            ssize_t ignored = write(2, mapped[i].message, mapped[i].length);
            (void)ignored;
            _exit(EXIT_RUNTIME);
        }
    signal(sig, SIG_DFL); /* not ours: fault again, this time fatally */
}

static void guard_mapping(const LxModel *m)
{
    if (n_mapped == CLI_MAX_MEMBERS)
        return;
    const void *data;
    size_t size;
    lx_model_mapping(m, &data, &size);
    int i = n_mapped;
    mapped[i].start = data;
    mapped[i].size = size;
    int n = snprintf(mapped[i].message, sizeof mapped[i].message,
                     "llamix: the checkpoint changed or was truncated while in use: %s\n", lx_model_path(m));
    mapped[i].length = n > 0 && (size_t)n < sizeof mapped[i].message ? (size_t)n : sizeof mapped[i].message - 1;
    mapped[i].message[mapped[i].length - 1] = '\n'; /* (a cut path still ends the line) */
    n_mapped = i + 1;
    if (i == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
        sigaction(SIGSEGV, &sa, NULL);
    }
}

int cli_open_models(char *const *paths, int k, LxModel **models)
{
    LxError err;
    for (int i = 0; i < k; i++)
        models[i] = NULL;
    for (int i = 0; i < k; i++) {
        if (lx_model_open(paths[i], &models[i], &err)) {
            cli_error("%s", err.message);
            cli_close_models(models, i);
            return -1;
        }
        guard_mapping(models[i]);
    }
    return 0;
}

void cli_close_models(LxModel **models, int k)
{
    n_mapped = 0; /* (a process opens its models once; the guard ends when they close) */
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

/* A terminal interprets control characters (ESC ] 0 ; ... sets its title, and worse), and a
 * model or tokenizer can produce any byte: on a terminal every control character other than tab,
 * newline and carriage return is shown as \xHH instead. Pipes and files get the bytes as they are. */
static int stdout_is_terminal(void)
{
    static int known = -1;
    if (known < 0)
        known = isatty(1);
    return known;
}

int cli_write(const char *text, size_t n)
{
    if (stdout_failed)
        return -1;
    errno = 0;
    if (!stdout_is_terminal()) {
        if (n > 0 && fwrite(text, 1, n, stdout) != n)
            return stdout_error();
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        int ok = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f ? printf("\\x%02x", c) == 4
                                                                              : putchar(c) != EOF;
        if (!ok)
            return stdout_error();
    }
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

/* ------------------------------------------------------------------ thread waiting
 *
 * Every product splits over the threads, so each layer ends in barriers. A thread that arrives
 * early either spins (a core busy doing nothing, but it wakes at once) or sleeps in the kernel
 * (the core free, a wake-up of some microseconds). On an idle machine spinning is a little
 * faster; on a busy one a spinning thread holds the core that the thread it waits for needs,
 * and -t 2 can fall to a tenth of -t 1 (bench/NOTES.md, "Thread waiting"). The policy is the
 * OpenMP runtime's, read from the environment when the runtime loads: OMP_WAIT_POLICY
 * (active/passive, standard) and libgomp's GOMP_SPINCOUNT (spin that many times, then sleep).
 * Measured on the 2-core host, neither wins both ways: passive is half the speed of spinning
 * when the host is idle (a futex wake per barrier, dozens of barriers per token), and spinning a
 * fifth of passive's when two other programs run. So auto looks before it starts: spinning
 * (libgomp's own 300000, which sleeps when a wait is long) when no other task is running, passive
 * when one is. */

/* The spin-then-sleep count of auto on an idle host: libgomp's own default, as fast as active in
 * the table and asleep when the program idles. */
#define WAIT_IDLE_SPIN "300000"

static const char *wait_choice; /* --wait's value, or NULL */

int cli_wait_option(const char *text)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (strcmp(text, "auto") == 0 || strcmp(text, "active") == 0 || strcmp(text, "passive") == 0 ||
        (isdigit((unsigned char)text[0]) && *end == '\0' && errno == 0 && n <= 1000000000000LL)) {
        wait_choice = text;
        return 0;
    }
    cli_error("--wait: '%s' is not auto, active, passive or a spin count from 0 to 1e12", text);
    return -1;
}

/* 1 if the variable's value is want (NULL: unset). */
static int env_is(const char *name, const char *want)
{
    const char *v = getenv(name);
    return want ? v && strcmp(v, want) == 0 : v == NULL;
}

/* The program's own command line as the kernel keeps it (getopt has permuted argv's pointers
 * but not the strings): the arguments to re-execute with. NULL if it cannot be read. */
static char **own_command_line(void)
{
    static char buf[1 << 17];
    static char *args[4096];
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int complete = feof(f) && !ferror(f);
    fclose(f);
    if (!complete || n == 0)
        return NULL;
    buf[n] = '\0';
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof args / sizeof args[0]; i += strlen(buf + i) + 1)
        args[k++] = buf + i;
    args[k] = NULL;
    return k ? args : NULL;
}

/* This process's threads that are running now (state R in /proc/self/task/N/stat): BLAS's own
 * workers spin for a while after they start, and they must not count as another program. */
static int own_running(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *t; d && (t = readdir(d));) {
        char path[64], state = 0;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", t->d_name);
        FILE *f = t->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (f && fscanf(f, "%*d (%*[^)]) %c", &state) == 1 && state == 'R')
            n++;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* 1 if another program's task was running in each of a few looks at /proc/loadavg (its fourth
 * field, running/total, counts this process's running threads too); the least of the looks, so
 * that a passing task does not count. 0 if it cannot be read. */
static int host_busy(void)
{
    int least = -1;
    for (int look = 0; look < 5; look++) {
        FILE *f = fopen("/proc/loadavg", "r");
        int running = 0;
        int got = f && fscanf(f, "%*s %*s %*s %d/", &running) == 1;
        if (f)
            fclose(f);
        if (!got)
            return 0;
        running -= own_running();
        if (least < 0 || running < least)
            least = running;
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    return least > 0;
}

void cli_wait_apply(void)
{
    const char *choice = wait_choice;
    if (!choice) {
        if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
            return; /* the user's own setting stands */
        choice = CLI_WAIT_DEFAULT;
    }
    const char *tag = choice; /* what the re-executed program finds in LLAMIX_WAIT_REEXEC */
    if (strcmp(choice, "auto") == 0) {
        if (getenv("LLAMIX_WAIT_REEXEC"))
            return; /* decided and re-executed already */
        choice = host_busy() ? "passive" : WAIT_IDLE_SPIN;
    }
    int spin = isdigit((unsigned char)choice[0]);
    const char *policy = spin ? NULL : choice, *count = spin ? choice : NULL;
    if (env_is("OMP_WAIT_POLICY", policy) && env_is("GOMP_SPINCOUNT", count))
        return; /* in effect: this is the re-executed program, or the user set the same */
    if (getenv("LLAMIX_WAIT_REEXEC"))
        return; /* re-executed once already: never loop */
    char **args = own_command_line();
    int ok = args && setenv("LLAMIX_WAIT_REEXEC", tag, 1) == 0 &&
             (policy ? setenv("OMP_WAIT_POLICY", policy, 1) : unsetenv("OMP_WAIT_POLICY")) == 0 &&
             (count ? setenv("GOMP_SPINCOUNT", count, 1) : unsetenv("GOMP_SPINCOUNT")) == 0;
    /* The program's path as readlink tells it (under valgrind that is the program, not the
     * tool that /proc/self/exe itself would start), else /proc/self/exe. */
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    if (ok) {
        fflush(NULL);
        execv(n > 0 ? exe : "/proc/self/exe", args);
    }
    if (wait_choice) /* asked for and not had: say so once; the run goes on with the runtime's default */
        cli_error("--wait: cannot re-execute with the policy set (%s); going on with the OpenMP default",
                  ok ? strerror(errno) : "no command line");
}

void cli_wait_describe(char *out, size_t size)
{
    const char *policy = getenv("OMP_WAIT_POLICY"), *count = getenv("GOMP_SPINCOUNT");
    const char *how = env_is("LLAMIX_WAIT_REEXEC", "auto") ? (count ? ", auto: the host was idle at the start"
                                                                    : ", auto: the host was busy at the start")
                                                           : "";
    if (count)
        snprintf(out, size, "spin %s then sleep (GOMP_SPINCOUNT=%s%s)", count, count, how);
    else if (policy)
        snprintf(out, size, "%s (OMP_WAIT_POLICY=%s%s)", policy, policy, how);
    else
        snprintf(out, size, "the OpenMP runtime's default (neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT set)");
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

/* Bytes in a well-formed UTF-8 sequence starting at s (1..4), or 0 if it is not one. */
static int utf8_length(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (n == 2 && s[0] < 0xC2) || (n == 4 && s[0] > 0xF4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (n == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (n == 4 && s[0] == 0xF0 && s[1] < 0x90) || (n == 4 && s[0] == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong, a surrogate, or beyond U+10FFFF */
    return n;
}

/* JSON strings must be valid UTF-8: a byte that is not part of a well-formed sequence (a file
 * name in another encoding) is written as \u00XX, its Latin-1 reading. */
void cli_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        int n = utf8_length(c);
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f || n == 0)
            fprintf(out, "\\u%04x", *c);
        else
            fwrite(c, 1, (size_t)n, out);
        c += n ? n : 1;
    }
    fputc('"', out);
}

void cli_table_string(FILE *out, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            fprintf(out, "\\x%02x", *c);
        else
            fputc(*c, out);
}

void cli_json_number(FILE *out, double x)
{
    if (isfinite(x))
        fprintf(out, "%.10g", x);
    else
        fputs("null", out);
}
