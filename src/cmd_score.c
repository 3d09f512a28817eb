/* cmd_score.c: `llamix score`: perplexity of each member and of the ensemble on a text, and the
 * weights that fit it best. */
#include "config.h"
#include "cli.h"
#include "ensemble.h"
#include "score.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_ITER 1000
#define EM_TOL 1e-10 /* nats per token: stop EM when a step gains less */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix score -m MODEL [-m MODEL ...] -z TOKENIZER -f TEXT [options]\n\n"
        "Scores a text with each member and with their mixture: tokens scored, mean negative\n"
        "log-likelihood (nats per token), bits per token, and perplexity.\n\n"
        "  -m, --model PATH      a llama2.c checkpoint; repeat for an ensemble\n"
        "  -z, --tokenizer PATH  tokenizer.bin (default: tokenizer.bin); one, or one per member\n"
        "  -f, --file PATH       the text to score (UTF-8; - for standard input)\n"
        "  -c, --ctx-size N      window length in tokens, BOS included (default: the smallest\n"
        "                        member's seq_len; from 2 to that)\n"
        "  -w, --weights LIST    ensemble weights, e.g. 0.7,0.3 (default: uniform)\n"
        "      --fit-weights     also fit the weights to the text by EM and score with them\n"
        "      --max-iter N      EM steps at most (default %d)\n"
        "  -o, --output FORMAT   table (default) or json\n"
        "  -q, --quiet           no progress on stderr\n"
        "  -t, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
        "  -h, --help\n\n"
        "Windows: the text is encoded with BOS as generate does and cut into non-overlapping\n"
        "windows, each BOS followed by up to N-1 text tokens; every text token is scored exactly\n"
        "once, given BOS and the earlier tokens of its window. All members use the same windows.\n\n"
        "The ensemble's log-likelihood of a token x is log sum_k w_k p_k(x): CE and ME sample from\n"
        "that same distribution (at temperature 1 without truncation), so they share this number.\n"
        "--fit-weights maximises it over the weights by EM, starting from uniform; every EM step\n"
        "keeps or improves it. The fitted weights are printed in a form -w accepts.\n",
        DEFAULT_MAX_ITER);
}

/* ------------------------------------------------------------------ progress on stderr */

typedef struct {
    int quiet;
    int tty;          /* stderr is a terminal: one line rewritten in place */
    int member, k;    /* which member is running (1-based), of k */
    double start;     /* when this member started */
    int last_decile;  /* not a terminal: the last 10% step printed */
    int printed;      /* something is on the current terminal line */
} Progress;

/* Off a terminal, progress lines appear only once a member has run this long, so short runs
 * (and the tests) stay quiet. */
#define PROGRESS_QUIET_SECONDS 5.0

static void progress_report(void *user, long done, long total, double nll_sum)
{
    Progress *p = user;
    if (p->quiet)
        return;
    double elapsed = now_seconds() - p->start, ppl = score_perplexity(nll_sum / (double)done);
    if (p->tty) {
        fprintf(stderr, "\rllamix: member %d/%d: %ld/%ld tokens (%3.0f%%), perplexity so far %.4g, %.0f tok/s\033[K",
                p->member, p->k, done, total, 100.0 * (double)done / (double)total, ppl,
                elapsed > 0 ? (double)done / elapsed : 0.0);
        p->printed = 1;
        fflush(stderr);
        return;
    }
    int decile = (int)(10 * done / total);
    if (elapsed >= PROGRESS_QUIET_SECONDS && decile > p->last_decile) {
        fprintf(stderr, "llamix: member %d/%d: %ld/%ld tokens (%d%%), perplexity so far %.4g\n",
                p->member, p->k, done, total, 10 * decile, ppl);
        p->last_decile = decile;
    }
}

static void progress_end(Progress *p)
{
    if (p->printed) {
        fputc('\n', stderr);
        p->printed = 0;
    }
}

/* ------------------------------------------------------------------ output */

/* Weights as "0.7,0.3", the form -w takes. A weight EM drove all the way to 0 is written as
 * 1e-300: -w needs weights > 0, and that is 0 for every practical purpose. */
static void print_weights(FILE *out, const double *w, int k)
{
    for (int i = 0; i < k; i++)
        fprintf(out, "%s%.6g", i ? "," : "", w[i] > 0 ? w[i] : 1e-300);
}

/* A JSON number; JSON has no infinity or NaN, so those become null. */
static void json_number(FILE *out, double x)
{
    if (isfinite(x))
        fprintf(out, "%.10g", x);
    else
        fputs("null", out);
}

static void json_string(FILE *out, const char *s)
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

static void json_score(FILE *out, long tokens, double nll)
{
    fprintf(out, "\"tokens\": %ld, \"nll_nats\": ", tokens);
    json_number(out, nll);
    fputs(", \"bits_per_token\": ", out);
    json_number(out, score_bits(nll));
    fputs(", \"perplexity\": ", out);
    json_number(out, score_perplexity(nll));
}

static void json_weights(FILE *out, const double *w, int k)
{
    fputc('[', out);
    for (int i = 0; i < k; i++) {
        if (i)
            fputs(", ", out);
        json_number(out, w[i]);
    }
    fputc(']', out);
}

typedef struct {
    const char *text_path;
    int context;
    long windows;
    char *const *model_paths;
    const ScoreTable *table;
    const double *weights;  /* (k) normalised */
    const double *fitted;   /* (k) or NULL */
    const ScoreFit *fit;
} Report;

static void print_json(FILE *out, const Report *r)
{
    const ScoreTable *t = r->table;
    fputs("{\"text\": ", out);
    json_string(out, r->text_path);
    fprintf(out, ", \"tokens\": %ld, \"context\": %d, \"windows\": %ld, "
                 "\"window_scheme\": \"non-overlapping: BOS + up to %d text tokens each\",\n",
            t->n, r->context, r->windows, r->context - 1);
    fputs(" \"members\": [", out);
    for (int i = 0; i < t->k; i++) {
        fputs(i ? ",\n  {\"path\": " : "\n  {\"path\": ", out);
        json_string(out, r->model_paths[i]);
        fputs(", ", out);
        json_score(out, t->n, score_member_nll(t, i));
        fputc('}', out);
    }
    fputs("],\n \"ensemble\": {\"weights\": ", out);
    json_weights(out, r->weights, t->k);
    fputs(", ", out);
    json_score(out, t->n, score_ensemble_nll(t, r->weights));
    fputc('}', out);
    if (r->fitted) {
        fputs(",\n \"fitted\": {\"weights\": ", out);
        json_weights(out, r->fitted, t->k);
        fputs(", \"weights_arg\": \"", out);
        print_weights(out, r->fitted, t->k);
        fprintf(out, "\", \"iterations\": %d, \"converged\": %s, ", r->fit->iterations,
                r->fit->converged ? "true" : "false");
        json_score(out, t->n, r->fit->nll);
        fputc('}', out);
    }
    fputs("}\n", out);
}

/* One row of the table: name, tokens, nll, bits, perplexity, weights, path. */
static void table_row(FILE *out, const char *name, long tokens, double nll, const double *w, int k,
                      const char *path)
{
    fprintf(out, "%-9s %8ld %10.6f %10.6f %12.6g  ", name, tokens, nll, score_bits(nll),
            score_perplexity(nll));
    if (w)
        print_weights(out, w, k);
    else
        fputc('-', out);
    fprintf(out, "  %s\n", path);
}

static void print_table(FILE *out, const Report *r)
{
    const ScoreTable *t = r->table;
    fprintf(out, "# text %s: %ld tokens scored in %ld non-overlapping window%s, each BOS + up to %d "
                 "text tokens (context %d); each token scored once\n",
            r->text_path, t->n, r->windows, r->windows == 1 ? "" : "s", r->context - 1, r->context);
    fprintf(out, "%-9s %8s %10s %10s %12s  %s  %s\n", "#name", "tokens", "nll_nats", "bits/tok",
            "perplexity", "weights", "path");
    for (int i = 0; i < t->k; i++) {
        char name[24];
        snprintf(name, sizeof name, "member%d", i + 1);
        table_row(out, name, t->n, score_member_nll(t, i), NULL, t->k, r->model_paths[i]);
    }
    table_row(out, "ensemble", t->n, score_ensemble_nll(t, r->weights), r->weights, t->k, "-");
    if (r->fitted) {
        table_row(out, "fitted", t->n, r->fit->nll, r->fitted, t->k, "-");
        fprintf(out, "# fitted by EM from uniform: %d steps, %s; use them with -w ", r->fit->iterations,
                r->fit->converged ? "converged" : "stopped at --max-iter");
        print_weights(out, r->fitted, t->k);
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------ the command */

enum { OPT_FIT = 256, OPT_MAX_ITER };

int cmd_score(int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
        {"file", required_argument, 0, 'f'}, {"ctx-size", required_argument, 0, 'c'},
        {"weights", required_argument, 0, 'w'}, {"fit-weights", no_argument, 0, OPT_FIT},
        {"max-iter", required_argument, 0, OPT_MAX_ITER}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'}, {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    char *model_paths[CLI_MAX_MEMBERS], *tokenizer_paths[CLI_MAX_MEMBERS];
    int k = 0, n_tokenizers = 0, context = 0, threads = 0, fit_weights = 0, json = 0, quiet = 0;
    int max_iter = DEFAULT_MAX_ITER;
    const char *text_path = NULL, *weights_text = NULL;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:f:c:w:o:qt:h", options, NULL)) != -1) {
        switch (opt) {
        case 'm':
        case 'z': {
            int *count = opt == 'm' ? &k : &n_tokenizers;
            if (*count == CLI_MAX_MEMBERS) {
                cli_error("at most %d members", CLI_MAX_MEMBERS);
                return EXIT_USAGE;
            }
            (opt == 'm' ? model_paths : tokenizer_paths)[(*count)++] = optarg;
            break;
        }
        case 'f': text_path = optarg; break;
        case 'c': if (cli_int("-c", optarg, 2, 1 << 30, &context)) return EXIT_USAGE; break;
        case 'w': weights_text = optarg; break;
        case OPT_FIT: fit_weights = 1; break;
        case OPT_MAX_ITER: if (cli_int("--max-iter", optarg, 0, 1 << 30, &max_iter)) return EXIT_USAGE; break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                json = 1;
            else if (strcmp(optarg, "table") == 0)
                json = 0;
            else {
                cli_error("-o: '%s' is not one of table, json", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'q': quiet = 1; break;
        case 't': if (cli_int("-t", optarg, 1, 1024, &threads)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return cli_bad_option("score", argv);
        }
    }
    if (optind < argc) {
        cli_error("score: unexpected argument '%s' (models go after -m, the text after -f)", argv[optind]);
        return EXIT_USAGE;
    }
    if (k == 0) {
        cli_error("score: no model given (-m MODEL)");
        return EXIT_USAGE;
    }
    if (!text_path) {
        cli_error("score: no text given (-f FILE)");
        return EXIT_USAGE;
    }
    double weights[CLI_MAX_MEMBERS];
    char err[ERR_LEN];
    if (weights_text) {
        if (ensemble_parse_weights(weights_text, k, weights, err) ||
            score_weights_normalise(weights, k, err)) {
            cli_error("-w: %s", err);
            return EXIT_USAGE;
        }
    } else
        for (int i = 0; i < k; i++)
            weights[i] = 1.0 / k;
    if (n_tokenizers == 0)
        tokenizer_paths[n_tokenizers++] = "tokenizer.bin";
    cli_threads(threads);

    Model models[CLI_MAX_MEMBERS];
    if (cli_open_models(model_paths, k, models))
        return EXIT_RUNTIME;
    int status = EXIT_RUNTIME;
    char *text = NULL;
    int *tokens = NULL;
    ScoreTable table = {0};
    Tokenizer *tok = cli_open_tokenizer(tokenizer_paths, n_tokenizers, models, k);
    if (!tok)
        goto done;

    int smallest = models[0].config.seq_len;
    for (int i = 1; i < k; i++)
        if (models[i].config.seq_len < smallest)
            smallest = models[i].config.seq_len;
    if (context == 0)
        context = smallest;
    if (context > smallest) {
        cli_error("-c: %d is more than the smallest member's seq_len %d", context, smallest);
        status = EXIT_USAGE;
        goto done;
    }

    /* The text, encoded with BOS as generate encodes a prompt (no EOS). */
    size_t length;
    if (!(text = score_read_text(text_path, &length, err))) {
        cli_error("%s", err);
        goto done;
    }
    int max_tokens = (int)length + 3, n_tokens;
    tokens = malloc(sizeof(int) * (size_t)max_tokens);
    if (!tokens || tokenizer_encode(tok, text, 1, 0, tokens, max_tokens, &n_tokens, err)) {
        cli_error("%s: %s", text_path, tokens ? err : "out of memory");
        goto done;
    }
    if (n_tokens < 2) {
        cli_error("%s: no tokens to score", text_path);
        goto done;
    }
    if (score_table_init(&table, k, n_tokens - 1, err)) {
        cli_error("%s", err);
        goto done;
    }

    /* Each member's log p(x_t) once; everything after this works on the table. */
    Progress progress = {.quiet = quiet, .tty = isatty(2), .k = k};
    ScoreOptions so = {.context = context, .progress = progress_report, .user = &progress};
    double start = now_seconds();
    for (int i = 0; i < k; i++) {
        progress.member = i + 1;
        progress.start = now_seconds();
        progress.last_decile = 0;
        int rc = score_member(&models[i], tokens, n_tokens, &so, table.logp + (size_t)i * (size_t)table.n, err);
        progress_end(&progress);
        if (rc) {
            cli_error("%s", err);
            goto done;
        }
    }
    double scored = now_seconds();

    double fitted[CLI_MAX_MEMBERS];
    ScoreFit fit = {0};
    if (fit_weights && score_fit_weights(&table, fitted, max_iter, EM_TOL, NULL, &fit, err)) {
        cli_error("%s", err);
        goto done;
    }
    Report report = {.text_path = text_path, .context = context,
                     .windows = score_windows(n_tokens, context), .model_paths = model_paths,
                     .table = &table, .weights = weights, .fitted = fit_weights ? fitted : NULL,
                     .fit = &fit};
    if (json)
        print_json(stdout, &report);
    else
        print_table(stdout, &report);
    fflush(stdout);
    if (!quiet)
        fprintf(stderr, "llamix: scored %ld tokens with %d member%s in %.2f s (%.0f tok/s per member)%s\n",
                table.n, k, k > 1 ? "s" : "", scored - start,
                scored > start ? (double)table.n * k / (scored - start) : 0.0,
                fit_weights ? "; EM fit done" : "");
    status = EXIT_OK;
done:
    score_table_free(&table);
    free(tokens);
    free(text);
    tokenizer_free(tok);
    cli_close_models(models, k);
    return status;
}
