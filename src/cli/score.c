/* score.c: `llamix score`: perplexity of each member and of the ensemble on a text, and the
 * weights that fit it best. */
#include "config.h"
#include "cli.h"
#include "score_report.h"
#include "mpi_members.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_ITER 1000
#define EM_TOL 1e-10 /* nats per token: stop EM when a step gains less */
#define DEFAULT_ROUTER_PRIOR 10.0

/* Members of different tokenizers: each scored alone with its own, in bits per byte (their
 * token counts differ, so per-token numbers do not compare); no ensemble score. */
static int score_each_member(char **model_paths, LxModel **models, int k, LxTokenizer **toks, char **tok_paths,
                             const char *text_path, int context, int threads, int quiet)
{
    char *text = NULL;
    size_t length;
    LxError err;
    if (lx_read_text(text_path, &text, &length, &err)) {
        cli_error("%s", err.message);
        return EXIT_RUNTIME;
    }
    printf("%-9s %8s %10s %10s %10s  %s\n", "#name", "tokens", "nll_nats", "bits/tok", "bits/byte", "model (tokenizer)");
    for (int i = 0; i < k; i++) {
        LxScore *s = NULL;
        LxScoreParams sp = {.context = context, .threads = threads};
        if (lx_score_text(&models[i], 1, toks[i], text, &sp, &s, &err)) {
            cli_error("%s%s: %s", err.status == LX_ERR_CONTEXT && context ? "-c: " : "", model_paths[i], err.message);
            free(text);
            return err.status == LX_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUNTIME;
        }
        double nll = lx_score_member_nll(s, 0), n = (double)lx_score_tokens(s);
        printf("member%-3d %8ld %10.4f %10.4f %10.4f  ", i + 1, lx_score_tokens(s), nll, nll / log(2.0),
               n * nll / ((double)length * log(2.0)));
        cli_table_string(stdout, model_paths[i]); /* (names escaped: one row each) */
        fputs(" (", stdout);
        cli_table_string(stdout, tok_paths[i]);
        fputs(")\n", stdout);
        lx_score_free(s);
    }
    free(text);
    if (cli_flush())
        return EXIT_RUNTIME;
    (void)quiet;
    fprintf(stderr, "llamix: the members' tokenizers differ: each is scored alone in bits per byte; an ensemble "
            "score needs one shared vocabulary\n");
    return EXIT_OK;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix score -m MODEL [-m MODEL ...] -z TOKENIZER -f TEXT [options]\n\n"
        "Scores a text with each member and with their mixture: tokens scored, mean negative\n"
        "log-likelihood (nats per token), bits per token, and perplexity.\n\n"
        "  -m, --model PATH      a llama2.c checkpoint; repeat for an ensemble\n"
        "  -z, --tokenizer PATH  tokenizer.bin (default: tokenizer.bin); one, or one per member (if\n"
        "                        they differ, each member is scored alone, in bits per byte)\n"
        "  -f, --file PATH       the text to score (UTF-8; - for standard input)\n"
        "  -c, --ctx-size N      window length in tokens, BOS included (default: the smallest\n"
        "                        member's seq_len; from 2 to that)\n"
        "  -w, --weights LIST    ensemble weights, e.g. 0.7,0.3 (default: uniform)\n"
        "      --fit-weights     also fit the weights to the text by EM and score with them\n"
        "      --max-iter N      EM steps at most (default %d)\n"
        "      --fit-router OUT  fit a previous-token router to the text by EM and write it to OUT\n"
        "      --router-prior A  its prior strength toward the fitted fixed weights (default %g)\n"
        "      --router FILE     also score with a router file (its fixed weights replace -w)\n"
        "  -o, --output FORMAT   table (default) or json\n"
        "  -q, --quiet           no progress on stderr\n"
        "  -t, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
        CLI_WAIT_HELP
        "      --mpi             members on MPI ranks (mpirun -np R llamix score --mpi ...), each\n"
        "                        scored on its rank; the same report\n"
        "      --member-ranks L  with --mpi: each member's rank, e.g. 0,1,1 (default: round-robin)\n"
        "  -h, --help\n\n"
        "Windows: the text is encoded with BOS as generate does and cut into non-overlapping\n"
        "windows, each BOS followed by up to N-1 text tokens; every text token is scored exactly\n"
        "once, given BOS and the earlier tokens of its window. All members use the same windows.\n\n"
        "The ensemble's log-likelihood of a token x is log sum_k w_k p_k(x): CE and ME sample from\n"
        "that same distribution (at temperature 1 without truncation), so they share this number.\n"
        "--fit-weights maximises it over the weights by EM, starting from uniform; every EM step\n"
        "keeps or improves it. The fitted weights are printed in a form -w accepts.\n\n"
        "Routing: a router gives each token its own weights from the tokens before it (in its\n"
        "window), log sum_k r_k(history) p_k(x). --fit-router fits the fixed weights w by EM, then\n"
        "a table r(. | previous token) by EM on the penalised likelihood sum_t log sum_k\n"
        "r_k(c_t) p_k(x_t) + A sum_c sum_k w_k log r_k(c) (each step keeps or improves it), and\n"
        "prints the training NLL of both. Fit on one text and score another with --router to see\n"
        "whether it generalises; generate and bench take --router too.\n",
        DEFAULT_MAX_ITER, DEFAULT_ROUTER_PRIOR);
}

/* ------------------------------------------------------------------ the command */

enum { OPT_FIT = 256, OPT_MAX_ITER, OPT_FIT_ROUTER, OPT_ROUTER_PRIOR, OPT_ROUTER, OPT_MPI, OPT_MEMBER_RANKS, OPT_WAIT };

int cmd_score(int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
        {"file", required_argument, 0, 'f'}, {"ctx-size", required_argument, 0, 'c'},
        {"weights", required_argument, 0, 'w'}, {"fit-weights", no_argument, 0, OPT_FIT},
        {"max-iter", required_argument, 0, OPT_MAX_ITER}, {"output", required_argument, 0, 'o'},
        {"fit-router", required_argument, 0, OPT_FIT_ROUTER}, {"router-prior", required_argument, 0, OPT_ROUTER_PRIOR},
        {"router", required_argument, 0, OPT_ROUTER}, {"wait", required_argument, 0, OPT_WAIT},
        {"quiet", no_argument, 0, 'q'}, {"threads", required_argument, 0, 't'},
        {"mpi", no_argument, 0, OPT_MPI}, {"member-ranks", required_argument, 0, OPT_MEMBER_RANKS},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    char *model_paths[CLI_MAX_MEMBERS], *tokenizer_paths[CLI_MAX_MEMBERS];
    int k = 0, n_tokenizers = 0, context = 0, threads = 0, fit_weights = 0, json = 0, quiet = 0;
    int max_iter = DEFAULT_MAX_ITER;
    const char *text_path = NULL, *weights_text = NULL, *fit_router_path = NULL, *router_path = NULL;
    int mpi = 0; const char *member_ranks = NULL; /* --mpi (mpi_members.h) */
    float router_prior = DEFAULT_ROUTER_PRIOR;
    int have_prior = 0;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:f:c:w:o:qt:h", options, NULL)) != -1) {
        switch (opt) {
        case 'm': if (cli_add_path("-m", model_paths, &k, optarg)) return EXIT_USAGE; break;
        case 'z': if (cli_add_path("-z", tokenizer_paths, &n_tokenizers, optarg)) return EXIT_USAGE; break;
        case 'f': text_path = optarg; break;
        case 'c': if (cli_int("-c", optarg, 2, 1 << 30, &context)) return EXIT_USAGE; break;
        case 'w': weights_text = optarg; break;
        case OPT_FIT: fit_weights = 1; break;
        case OPT_MAX_ITER: if (cli_int("--max-iter", optarg, 0, 1 << 30, &max_iter)) return EXIT_USAGE; break;
        case OPT_FIT_ROUTER: fit_router_path = optarg; break;
        case OPT_ROUTER_PRIOR:
            if (cli_float("--router-prior", optarg, 0, 1e12, &router_prior))
                return EXIT_USAGE;
            have_prior = 1;
            break;
        case OPT_ROUTER: router_path = optarg; break;
        case OPT_WAIT: if (cli_wait_option(optarg)) return EXIT_USAGE; break;
        case OPT_MPI: mpi = 1; break;
        case OPT_MEMBER_RANKS: member_ranks = optarg; break;
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
        case 'h': usage(stdout); return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
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
    if ((router_path && (fit_router_path || weights_text)) || (have_prior && !fit_router_path)) {
        cli_error(have_prior && !fit_router_path ? "--router-prior: it goes with --fit-router"
                  : fit_router_path ? "give --fit-router or --router, not both"
                                    : "give -w or --router, not both (a router file holds its fixed weights)");
        return EXIT_USAGE;
    }
    double weights[CLI_MAX_MEMBERS];
    LxError err;
    for (int i = 0; i < k; i++)
        weights[i] = 1.0 / k;
    if (weights_text && lx_weights_parse(weights_text, k, weights, &err)) {
        cli_error("-w: %s", err.message);
        return EXIT_USAGE;
    }
    double total = 0;
    for (int i = 0; i < k; i++)
        total += weights[i];
    for (int i = 0; i < k; i++)
        weights[i] /= total;
    if (n_tokenizers == 0)
        tokenizer_paths[n_tokenizers++] = "tokenizer.bin";

    cli_wait_apply(); /* (may re-execute the program with the wait policy set) */
    LxModel *models[CLI_MAX_MEMBERS];
    LxTokenizer *toks[CLI_MAX_MEMBERS];
    if (member_ranks && !mpi) {
        cli_error("--member-ranks: it goes with --mpi");
        return EXIT_USAGE;
    }
    int status = EXIT_RUNTIME;
    if (mpi) { /* members on MPI ranks: only rank 0 goes on (mpi_members.h) */
        if ((status = mpi_members_open(model_paths, k, member_ranks, models)) >= 0)
            return status;
    } else if (cli_open_models(model_paths, k, models))
        return EXIT_RUNTIME;
    status = EXIT_RUNTIME;
    char *text = NULL;
    LxScore *score = NULL;
    LxRouter *router = NULL, *fitted_router = NULL;
    if ((status = cli_open_member_tokenizers(model_paths, models, k, tokenizer_paths, n_tokenizers, toks))) {
        cli_close_models(models, k);
        return status;
    }
    status = EXIT_RUNTIME;
    if (cli_tokenizers_differ(toks, n_tokenizers)) {
        if (fit_weights || router_path || fit_router_path || mpi) {
            cli_error("--fit-weights, --router, --fit-router and --mpi need members that share one tokenizer");
            status = EXIT_USAGE;
        } else {
            status = score_each_member(model_paths, models, k, toks, tokenizer_paths, text_path, context, threads, quiet);
        }
        cli_free_tokenizers(toks, n_tokenizers);
        cli_close_models(models, k);
        return status;
    }
    if (router_path && lx_router_open(router_path, &router, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    if (router && (lx_router_size(router) != k ||
                   (lx_router_vocab_size(router) && lx_router_vocab_size(router) != lx_model_config(models[0]).vocab_size))) {
        cli_error("--router: %s is for %d members and %d token ids, not these %d members with %d", router_path,
                  lx_router_size(router), lx_router_vocab_size(router), k, lx_model_config(models[0]).vocab_size);
        goto done;
    }
    if (router)
        memcpy(weights, lx_router_fixed_weights(router), sizeof(double) * (size_t)k);
    /* Each member's log p(x_t) once; everything after this works on the table. */
    size_t length;
    Progress progress = {.quiet = quiet, .tty = isatty(2), .member = -1, .k = k};
    LxScoreParams sp = {.context = context, .threads = threads, .progress = score_progress, .user = &progress};
    double start = score_seconds();
    if (lx_read_text(text_path, &text, &length, &err) ||
        (mpi ? mpi_score_text : lx_score_text)(models, k, toks[0], text, &sp, &score, &err)) {
        score_progress_end(&progress);
        status = err.status == LX_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUNTIME;
        cli_error("%s%s", err.status == LX_ERR_CONTEXT && context ? "-c: " : "", err.message);
        goto done;
    }
    score_progress_end(&progress);
    double scored = score_seconds();

    double fitted[CLI_MAX_MEMBERS];
    LxScoreFit fit = {0};
    if (fit_weights && lx_score_fit_weights(score, fitted, max_iter, EM_TOL, &fit, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    /* Routing: the router's NLL on this text, or a router fitted to it and written out. */
    LxRouterFit router_fit = {0};
    double router_nll = 0;
    if ((router && lx_score_router_nll(score, router, &router_nll, &err)) ||
        (fit_router_path && (lx_score_fit_router(score, router_prior, max_iter, EM_TOL, &fitted_router, &router_fit, &err) ||
                             lx_router_save(fitted_router, fit_router_path, &err)))) {
        cli_error("%s", err.message);
        goto done;
    }
    if (fitted_router)
        router_nll = router_fit.nll;
    Report report = {.text_path = text_path, .k = k, .model_paths = model_paths, .score = score,
                     .weights = weights, .fitted = fit_weights ? fitted : NULL, .fit = &fit,
                     .router_path = router ? router_path : fit_router_path, .router_nll = router_nll,
                     .router_fit = fitted_router ? &router_fit : NULL, .router_prior = router_prior};
    if (json)
        score_print_json(stdout, &report);
    else
        score_print_table(stdout, &report);
    if (!json) {
        /* Bits per byte: the measure that stays comparable when tokenizers differ. */
        double bytes_ln2 = (double)length * log(2.0), n = (double)lx_score_tokens(score);
        printf("# bits per byte (%zu bytes):", length);
        for (int i = 0; i < k; i++)
            printf(" member %d %.4f", i + 1, n * lx_score_member_nll(score, i) / bytes_ln2);
        if (k > 1)
            printf(", ensemble %.4f", n * lx_score_ensemble_nll(score, weights) / bytes_ln2);
        printf("\n");
    }
    if (cli_flush())
        goto done;
    if (!quiet)
        fprintf(stderr, "llamix: scored %ld tokens with %d member%s in %.2f s (%.0f tok/s per member)%s\n",
                lx_score_tokens(score), k, k > 1 ? "s" : "", scored - start,
                scored > start ? (double)lx_score_tokens(score) * k / (scored - start) : 0.0,
                fit_weights ? "; EM fit done" : "");
    status = EXIT_OK;
done:
    lx_router_free(router);
    lx_router_free(fitted_router);
    lx_score_free(score);
    free(text);
    cli_free_tokenizers(toks, n_tokenizers);
    cli_close_models(models, k);
    return status;
}
