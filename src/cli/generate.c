/* cmd_generate.c: `llamix generate`: text from one model or an ensemble. */
#include "config.h"
#include "cli.h"
#include "mpi_members.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix generate -m MODEL [-m MODEL ...] -z TOKENIZER [options]\n"
        "       llamix generate MODEL [MODEL ...] -z TOKENIZER [options]\n\n"
        "  -m, --model PATH      a llama2.c checkpoint; repeat for an ensemble\n"
        "  -z, --tokenizer PATH  tokenizer.bin (default: tokenizer.bin); one for all, or one per member\n"
        "                        in member order (different ones meet in a union vocabulary)\n"
        "  -p, --prompt TEXT     the prompt (default: empty, generation starts from BOS)\n"
        "  -n, --n-predict N     tokens to generate (default 256; -1: until the context is full)\n"
        "  -c, --ctx-size N      context length (default: prompt + N, at most the smallest seq_len)\n"
        "      --temp T          temperature (default 1.0; 0 = greedy, see below)\n"
        "      --top-k K         keep the K most probable tokens (default 0 = off)\n"
        "      --top-p P         nucleus sampling (default 0.9; 1 = off)\n"
        "      --min-p P         drop tokens below P x the top probability (default 0 = off)\n"
        "  -s, --seed N          random seed (default: from the clock, printed on stderr)\n"
        "  -w, --weights LIST    member weights, e.g. 0.5,0.3,0.2 (default: uniform)\n"
        "  -e, --ensemble MODE   me (default), ce, ce-mixture, or ce-unite\n"
        "      --router FILE     member weights per token from a router file (llamix score\n"
        "                        --fit-router) instead of -w; ME stays exact and one member per token\n"
        "  -r, --stop STR        stop before the first STR in the text (repeatable)\n"
        "  -t, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
        CLI_WAIT_HELP
        "      --mpi             members on MPI ranks (mpirun -np R llamix generate --mpi ...); the\n"
        "                        same tokens as without it\n"
        "      --member-ranks L  with --mpi: each member's rank, e.g. 0,1,1 (default: round-robin)\n"
        "  -N, --samples N       N independent samples of each prompt; sample j uses seed s + j, so it\n"
        "                        is what a single run with -s s+j prints (default 1)\n"
        "      --prompts FILE    one prompt a line, each sampled -N times\n"
        "      --parallel P      at most P sequences at once, sharing each forward (default: up to 16)\n"
        "  -o, --output FORMAT   text or jsonl: one JSON object per sequence with prompt_index, sample,\n"
        "                        seed, text, tokens, stop, members, logprobs (any of -N, --prompts,\n"
        "                        --parallel, -o runs the sequences as one batch)\n"
        "  -h, --help\n\n"
        "Modes: ce runs every member each step and samples from q = sum_k w_k S(p_k), where S is\n"
        "temperature, then top-k, then top-p, then min-p, applied to each member. me picks one member\n"
        "k ~ w per token and samples from S(p_k): the same distribution, one forward per token.\n"
        "ce-mixture applies S to the mixture sum_k w_k p_k instead (the paper's code): a different\n"
        "distribution, equal to the others only at temperature 1 without truncation.\n"
        "With --top-k K, ce-mixture first keeps only the union of the members' top-K tokens, as the\n"
        "paper's code does. ce-unite is the paper's UniTE-style baseline (K from --top-k, default 10).\n"
        "Greedy (--temp 0): ce and ce-mixture take the argmax of sum_k w_k p_k; me can only take the\n"
        "argmax of the member it picked, which is not the same output.\n"
        "Members with different tokenizers (-z once per member) meet in the union of their pieces'\n"
        "strings; every member is fed each drawn string by one fixed rule, so me is still exactly ce.\n");
}

enum { OPT_PROMPTS = 256, OPT_PARALLEL, OPT_ROUTER, OPT_MPI, OPT_MEMBER_RANKS,
       OPT_WAIT };
#define MAX_STOP 16

/* Streams each released piece of text to stdout; a failed write stops generation. */
static int print_token(void *user, const LxTokenEvent *ev)
{
    (void)user;
    return cli_write(ev->text, ev->text_length) || cli_flush();
}

typedef struct {
    char *model_paths[CLI_MAX_MEMBERS], *tokenizer_paths[CLI_MAX_MEMBERS];
    const char *stop[MAX_STOP];
    int k, n_tokenizers, n_stop, n_predict, n_ctx, have_seed;
    int n_samples, parallel, jsonl, batch; /* batch: -N, --prompts, --parallel or -o given */
    const char *prompts_file;
    const char *prompt, *weights_text, *router_path;
    int mpi; const char *member_ranks; /* --mpi, --member-ranks (mpi_members.h) */
    unsigned long long seed;
    LxEnsembleParams ensemble;
} Options;

/* Parse the command line into o; returns -1 (after printing) or an exit status to return now
 * (EXIT_OK for --help), or -2 to go on. */
static int parse(int argc, char **argv, Options *o)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
        {"prompt", required_argument, 0, 'p'}, {"n-predict", required_argument, 0, 'n'},
        {"ctx-size", required_argument, 0, 'c'}, CLI_SAMPLER_OPTIONS, {"seed", required_argument, 0, 's'},
        {"weights", required_argument, 0, 'w'}, {"ensemble", required_argument, 0, 'e'},
        {"router", required_argument, 0, OPT_ROUTER},
        {"stop", required_argument, 0, 'r'}, {"threads", required_argument, 0, 't'},
        {"samples", required_argument, 0, 'N'}, {"prompts", required_argument, 0, OPT_PROMPTS},
        {"parallel", required_argument, 0, OPT_PARALLEL}, {"output", required_argument, 0, 'o'},
        {"mpi", no_argument, 0, OPT_MPI}, {"member-ranks", required_argument, 0, OPT_MEMBER_RANKS},
        {"wait", required_argument, 0, OPT_WAIT},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:p:n:c:s:w:e:r:t:N:o:h", options, NULL)) != -1) {
        switch (opt) {
        case 'm': if (cli_add_path("-m", o->model_paths, &o->k, optarg)) return EXIT_USAGE; break;
        case 'z': if (cli_add_path("-z", o->tokenizer_paths, &o->n_tokenizers, optarg)) return EXIT_USAGE; break;
        case 'p': o->prompt = optarg; break;
        case 'n': if (cli_int("-n", optarg, -1, 1 << 30, &o->n_predict)) return EXIT_USAGE; break;
        case 'c': if (cli_int("-c", optarg, 1, 1 << 30, &o->n_ctx)) return EXIT_USAGE; break;
        case CLI_OPT_TEMP: case CLI_OPT_TOP_K: case CLI_OPT_TOP_P: case CLI_OPT_MIN_P:
            if (cli_sampler_option(opt, optarg, &o->ensemble.sampler)) return EXIT_USAGE;
            break;
        case 's': if (cli_u64("-s", optarg, &o->seed)) return EXIT_USAGE; o->have_seed = 1; break;
        case 'w': o->weights_text = optarg; break;
        case OPT_ROUTER: o->router_path = optarg; break;
        case OPT_MPI: o->mpi = 1; break;
        case OPT_MEMBER_RANKS: o->member_ranks = optarg; break;
        case OPT_WAIT: if (cli_wait_option(optarg)) return EXIT_USAGE; break;
        case 'e': if (cli_mode(optarg, &o->ensemble.mode)) return EXIT_USAGE; break;
        case 'r':
            if (o->n_stop == MAX_STOP || !optarg[0]) {
                cli_error("--stop: %s", optarg[0] ? "at most 16 stop strings" : "a stop string cannot be empty");
                return EXIT_USAGE;
            }
            o->stop[o->n_stop++] = optarg;
            break;
        case 't': if (cli_int("-t", optarg, 1, 1024, &o->ensemble.threads)) return EXIT_USAGE; break;
        case 'N': if (cli_int("-N", optarg, 1, 1 << 20, &o->n_samples)) return EXIT_USAGE; o->batch = 1; break;
        case OPT_PROMPTS: o->prompts_file = optarg; o->batch = 1; break;
        case OPT_PARALLEL: if (cli_int("--parallel", optarg, 1, 4096, &o->parallel)) return EXIT_USAGE; o->batch = 1; break;
        case 'o':
            if (strcmp(optarg, "text") && strcmp(optarg, "jsonl")) {
                cli_error("-o: '%s' is not text or jsonl", optarg);
                return EXIT_USAGE;
            }
            o->jsonl = strcmp(optarg, "jsonl") == 0;
            o->batch = 1;
            break;
        case 'h': usage(stdout); return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
        default: return cli_bad_option("generate", argv);
        }
    }
    for (; optind < argc; optind++) { /* positional checkpoints, the llama2.c habit */
        if (cli_add_path("a checkpoint", o->model_paths, &o->k, argv[optind]))
            return EXIT_USAGE;
    }
    if (o->k == 0) {
        cli_error("generate: no model given (-m MODEL)");
        return EXIT_USAGE;
    }
    if (o->prompts_file && o->prompt[0]) {
        cli_error("give a prompt (-p) or a prompt file (--prompts), not both");
        return EXIT_USAGE;
    }
    if (o->n_predict == 0) {
        cli_error("-n: 0 tokens to generate: nothing to do (use -1 for the whole context)");
        return EXIT_USAGE;
    }
    if ((o->member_ranks && !o->mpi) || (o->mpi && o->batch)) {
        cli_error(o->mpi ? "--mpi: one sequence at a time: -N, --prompts, --parallel and -o are not supported with it"
                         : "--member-ranks: it goes with --mpi");
        return EXIT_USAGE;
    }
    return -2;
}

/* The stderr summary: mode, seed, why it stopped, speeds, and each member's work. */
static void summary(const Options *o, LxEnsemble *e, LxModel **models, const LxGenerateStats *st)
{
    fprintf(stderr, "llamix: %s, %d member%s, seed %llu, stopped by %s\n",
            o->k > 1 ? lx_mode_name(o->ensemble.mode) : "one model", o->k, o->k > 1 ? "s" : "", o->seed,
            lx_stop_name(st->stop));
    if (o->router_path)
        fprintf(stderr, "llamix: weights per token from router %s (%s; the weights below are its fixed ones)\n",
                o->router_path, lx_router_name(lx_ensemble_router(e)));
    /* The first draw runs the prompt (one batched forward per member it syncs) and samples. */
    fprintf(stderr, "llamix: prompt %d tokens in %.1f ms (%.1f tok/s, with the first sample); "
            "generated %d tokens, %.1f tok/s\n", st->n_prompt, 1e3 * st->prompt_seconds,
            st->prompt_seconds > 0 ? st->n_prompt / st->prompt_seconds : 0.0, st->n_generated,
            st->n_generated > 1 && st->generate_seconds > 0 ? (st->n_generated - 1) / st->generate_seconds : 0.0);
    const double *w = lx_ensemble_params(e)->weights;
    for (int i = 0; i < o->k; i++) {
        long calls, tokens;
        lx_ensemble_member_counts(e, i, &calls, &tokens);
        fprintf(stderr, "llamix: member %d (%s, weight %.3f): %ld forward calls, %ld tokens processed",
                i + 1, lx_model_path(models[i]), w[i], calls, tokens);
        if (!lx_ensemble_shared_vocabulary(e))
            fprintf(stderr, ", %ld unknown ids received", lx_ensemble_member_unknown(e, i));
        fprintf(stderr, "\n");
    }
    if (!lx_ensemble_shared_vocabulary(e))
        fprintf(stderr, "llamix: union vocabulary of %d strings; mapping and feeding back %.2f us per token\n",
                lx_ensemble_vocab_size(e), st->n_generated ? 1e6 * lx_ensemble_mapping_seconds(e) / st->n_generated : 0.0);
}

int cmd_generate(int argc, char **argv)
{
    Options o = {.n_predict = 256, .prompt = "", .n_samples = 1, .ensemble = lx_ensemble_defaults()};
    int rc = parse(argc, argv, &o);
    if (rc != -2)
        return rc;
    double weights[CLI_MAX_MEMBERS];
    LxError err;
    if (o.weights_text) {
        if (lx_weights_parse(o.weights_text, o.k, weights, &err)) {
            cli_error("-w: %s", err.message);
            return EXIT_USAGE;
        }
        o.ensemble.weights = weights;
    }
    if (o.router_path && o.weights_text) {
        cli_error("give -w or --router, not both (a router file holds its fixed weights)");
        return EXIT_USAGE;
    }
    if (o.n_tokenizers == 0)
        o.tokenizer_paths[o.n_tokenizers++] = "tokenizer.bin";
    if (!o.have_seed)
        o.seed = (unsigned long long)time(NULL);
    o.ensemble.seed = o.seed;

    cli_wait_apply(); /* (may re-execute the program with the wait policy set) */
    LxModel *models[CLI_MAX_MEMBERS];
    LxTokenizer *toks[CLI_MAX_MEMBERS];
    if (o.mpi) { /* members on MPI ranks: only rank 0 goes on (mpi_members.h) */
        if ((rc = mpi_members_open(o.model_paths, o.k, o.member_ranks, models)) >= 0)
            return rc;
    } else if (cli_open_models(o.model_paths, o.k, models))
        return EXIT_RUNTIME;
    int status = EXIT_RUNTIME, n_prompt = 0;
    LxEnsemble *e = NULL;
    LxRouter *router = NULL;
    size_t max_prompt = strlen(o.prompt) + 3;
    int *prompt = malloc(sizeof(int) * max_prompt);
    if ((status = cli_open_member_tokenizers(o.model_paths, models, o.k, o.tokenizer_paths, o.n_tokenizers, toks))) {
        cli_close_models(models, o.k);
        free(prompt);
        return status;
    }
    status = EXIT_RUNTIME;
    if (o.router_path) {
        if (lx_router_open(o.router_path, &router, &err)) {
            cli_error("--router: %s", err.message);
            goto done;
        }
        o.ensemble.router = router;
    }
    if (o.batch) {
        BatchOptions bo = {o.prompt, o.prompts_file, o.n_samples, o.parallel, o.n_predict, o.n_ctx, o.jsonl,
                           o.stop, o.n_stop, o.seed, o.ensemble};
        status = generate_batch(&bo, models, o.k, toks, o.n_tokenizers);
        goto done;
    }
    /* The prompt's tokens: with one tokenizer per member, the longest of their encodings bounds
     * the context. */
    int longest = 0;
    for (int i = o.n_tokenizers - 1; i >= 0; i--) { /* member 0's last: it stays in prompt */
        if (!prompt || lx_tokenize(toks[i], o.prompt, 1, 0, prompt, (int)max_prompt, &n_prompt, &err)) {
            cli_error("prompt: %s%s%s", o.n_tokenizers > 1 ? o.tokenizer_paths[i] : "", o.n_tokenizers > 1 ? ": " : "",
                      prompt ? err.message : "out of memory");
            goto done;
        }
        longest = n_prompt > longest ? n_prompt : longest;
    }
    /* The context: -c, or only what this run needs (prompt + -n), at most every member's seq_len.
     * With a tokenizer per member a drawn string may take several of a member's ids: all of it. */
    int usable = lx_models_context(models, o.k);
    if (o.n_ctx == 0)
        o.ensemble.n_ctx = o.n_predict < 0 || o.n_tokenizers > 1 || o.n_predict > usable - longest ? usable
                                                                                                : longest + o.n_predict;
    else if (o.n_ctx > usable) {
        cli_error("-c: %d is more than the %d positions %s holds (seq_len)", o.n_ctx, usable,
                  o.k > 1 ? "the smallest member" : o.model_paths[0]);
        status = EXIT_USAGE;
        goto done;
    } else
        o.ensemble.n_ctx = o.n_ctx;
    if (longest > o.ensemble.n_ctx) {
        cli_error("the prompt is %d tokens but the context is %d (%s)", longest, o.ensemble.n_ctx,
                  o.n_ctx ? "-c" : "the smallest member's seq_len");
        status = EXIT_USAGE;
        goto done;
    }
    if (lx_ensemble_new(models, o.k, toks, o.n_tokenizers, &o.ensemble, &e, &err) ||
        (o.mpi && mpi_attach(e, o.ensemble.threads, &err))) {
        status = cli_library_error(&err);
        goto done;
    }

    /* Echo the prompt, then the generated text as it is released. Different vocabularies: each
     * member encodes the prompt itself (lx_generate), and the echo is member 0's. */
    int shared = lx_ensemble_shared_vocabulary(e);
    for (int i = 1; i < n_prompt; i++) {
        const char *piece = lx_token_text(toks[0], prompt[i - 1], prompt[i]);
        if (cli_write(piece, strlen(piece)))
            goto done;
    }
    if (cli_flush())
        goto done;
    LxGenerateParams g = {.n_predict = o.n_predict, .stop = o.stop, .n_stop = o.n_stop};
    LxGenerateStats stats;
    if (shared ? lx_generate_tokens(e, prompt, n_prompt, &g, print_token, NULL, &stats, &err)
               : lx_generate(e, o.prompt, &g, print_token, NULL, &stats, &err)) {
        status = cli_library_error(&err);
        goto done;
    }
    if (stats.stop == LX_STOP_CALLBACK || cli_write("\n", 1) || cli_flush())
        goto done; /* the only way the callback stops is a failed write, already reported */
    summary(&o, e, models, &stats);
    status = EXIT_OK;
done:
    lx_ensemble_free(e);
    lx_router_free(router);
    free(prompt);
    cli_free_tokenizers(toks, o.n_tokenizers);
    cli_close_models(models, o.k);
    return status;
}
