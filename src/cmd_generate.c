/* cmd_generate.c: `llamix generate`: text from one model or an ensemble. */
#include "config.h"
#include "cli.h"
#include "ensemble.h"
#include "util.h"

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
        "  -z, --tokenizer PATH  tokenizer.bin (default: tokenizer.bin); one, or one per member\n"
        "  -p, --prompt TEXT     the prompt (default: empty, generation starts from BOS)\n"
        "  -n, --n-predict N     tokens to generate (default 256; -1: until the context is full)\n"
        "  -c, --ctx-size N      context length (default: prompt + N, at most the smallest seq_len)\n"
        "      --temp T          temperature (default 1.0; 0 = greedy, see below)\n"
        "      --top-k K         keep the K most probable tokens (default 0 = off)\n"
        "      --top-p P         nucleus sampling (default 0.9; 1 = off)\n"
        "      --min-p P         drop tokens below P x the top probability (default 0 = off)\n"
        "  -s, --seed N          random seed (default: from the clock, printed on stderr)\n"
        "  -w, --weights LIST    member weights, e.g. 0.5,0.3,0.2 (default: uniform)\n"
        "  -e, --ensemble MODE   me (default), ce, or ce-mixture\n"
        "  -t, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
        "  -h, --help\n\n"
        "Modes: ce runs every member each step and samples from q = sum_k w_k S(p_k), where S is\n"
        "temperature, then top-k, then top-p, then min-p, applied to each member. me picks one member\n"
        "k ~ w per token and samples from S(p_k): the same distribution, one forward per token.\n"
        "ce-mixture applies S to the mixture sum_k w_k p_k instead (the paper's code): a different\n"
        "distribution, equal to the others only at temperature 1 without truncation.\n"
        "Greedy (--temp 0): ce and ce-mixture take the argmax of sum_k w_k p_k; me can only take the\n"
        "argmax of the member it picked, which is not the same output.\n");
}

enum { OPT_TEMP = 256, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P };

int cmd_generate(int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
        {"prompt", required_argument, 0, 'p'}, {"n-predict", required_argument, 0, 'n'},
        {"ctx-size", required_argument, 0, 'c'}, {"temp", required_argument, 0, OPT_TEMP},
        {"top-k", required_argument, 0, OPT_TOP_K}, {"top-p", required_argument, 0, OPT_TOP_P},
        {"min-p", required_argument, 0, OPT_MIN_P}, {"seed", required_argument, 0, 's'},
        {"weights", required_argument, 0, 'w'}, {"ensemble", required_argument, 0, 'e'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    char *model_paths[CLI_MAX_MEMBERS], *tokenizer_paths[CLI_MAX_MEMBERS];
    int k = 0, n_tokenizers = 0, n_predict = 256, n_ctx = 0, threads = 0;
    const char *prompt = "", *weights_text = NULL;
    unsigned long long seed = 0;
    int have_seed = 0;
    EnsembleMode mode = ENSEMBLE_ME;
    SamplerParams params = sampler_defaults();
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:p:n:c:s:w:e:t:h", options, NULL)) != -1) {
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
        case 'p': prompt = optarg; break;
        case 'n': if (cli_int("-n", optarg, -1, 1 << 30, &n_predict)) return EXIT_USAGE; break;
        case 'c': if (cli_int("-c", optarg, 1, 1 << 30, &n_ctx)) return EXIT_USAGE; break;
        case OPT_TEMP: if (cli_float("--temp", optarg, 0, 1e6, &params.temperature)) return EXIT_USAGE; break;
        case OPT_TOP_K: if (cli_int("--top-k", optarg, 0, 1 << 30, &params.top_k)) return EXIT_USAGE; break;
        case OPT_TOP_P: if (cli_float("--top-p", optarg, 1e-9, 1, &params.top_p)) return EXIT_USAGE; break;
        case OPT_MIN_P: if (cli_float("--min-p", optarg, 0, 0.999999, &params.min_p)) return EXIT_USAGE; break;
        case 's': if (cli_u64("-s", optarg, &seed)) return EXIT_USAGE; have_seed = 1; break;
        case 'w': weights_text = optarg; break;
        case 'e':
            if (ensemble_mode_parse(optarg, &mode)) {
                cli_error("--ensemble: '%s' is not one of me, ce, ce-mixture", optarg);
                return EXIT_USAGE;
            }
            break;
        case 't': if (cli_int("-t", optarg, 1, 1024, &threads)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return cli_bad_option("generate", argv);
        }
    }
    for (; optind < argc; optind++) { /* positional checkpoints, the llama2.c habit */
        if (k == CLI_MAX_MEMBERS) {
            cli_error("at most %d members", CLI_MAX_MEMBERS);
            return EXIT_USAGE;
        }
        model_paths[k++] = argv[optind];
    }
    if (k == 0) {
        cli_error("generate: no model given (-m MODEL)");
        return EXIT_USAGE;
    }
    if (n_predict == 0) {
        cli_error("-n: 0 tokens to generate: nothing to do (use -1 for the whole context)");
        return EXIT_USAGE;
    }
    double weights[CLI_MAX_MEMBERS];
    char err[ERR_LEN];
    if (weights_text && ensemble_parse_weights(weights_text, k, weights, err)) {
        cli_error("-w: %s", err);
        return EXIT_USAGE;
    }
    if (n_tokenizers == 0)
        tokenizer_paths[n_tokenizers++] = "tokenizer.bin";
    if (!have_seed)
        seed = (unsigned long long)time(NULL);
    cli_threads(threads);

    Model models[CLI_MAX_MEMBERS];
    if (cli_open_models(model_paths, k, models))
        return EXIT_RUNTIME;
    int status = EXIT_RUNTIME;
    Ensemble e = {0};
    int *prompt_tokens = NULL;
    Tokenizer *tok = cli_open_tokenizer(tokenizer_paths, n_tokenizers, models, k);
    if (!tok)
        goto done;

    /* The context: the smallest member's seq_len, or only what this run needs. */
    int smallest = models[0].config.seq_len;
    for (int i = 1; i < k; i++)
        if (models[i].config.seq_len < smallest)
            smallest = models[i].config.seq_len;
    size_t max_prompt = strlen(prompt) + 3;
    prompt_tokens = malloc(sizeof(int) * max_prompt);
    int n_prompt;
    if (!prompt_tokens ||
        tokenizer_encode(tok, prompt, 1, 0, prompt_tokens, (int)max_prompt, &n_prompt, err)) {
        cli_error("prompt: %s", prompt_tokens ? err : "out of memory");
        goto done;
    }
    int limit = n_ctx > 0 && n_ctx < smallest ? n_ctx : smallest;
    if (n_prompt > limit) {
        cli_error("the prompt is %d tokens but the context is %d (%s)", n_prompt, limit,
                  n_ctx > 0 && n_ctx < smallest ? "-c" : "the smallest member's seq_len");
        status = EXIT_USAGE;
        goto done;
    }
    int want = n_predict < 0 || n_predict > limit - n_prompt ? limit : n_prompt + n_predict;
    if (n_ctx == 0)
        n_ctx = want;
    const Model *members[CLI_MAX_MEMBERS];
    for (int i = 0; i < k; i++)
        members[i] = &models[i];
    if (ensemble_init(&e, members, weights_text ? weights : NULL, k, n_ctx, mode, params, seed, err) ||
        ensemble_append(&e, prompt_tokens, n_prompt, err)) {
        cli_error("%s", err);
        goto done;
    }

    /* Echo the prompt, then sample until -n, BOS/EOS, or the end of the context. */
    for (int i = 1; i < n_prompt; i++)
        fputs(tokenizer_decode(tok, prompt_tokens[i - 1], prompt_tokens[i]), stdout);
    fflush(stdout);
    const char *stop = "-n tokens generated";
    int generated = 0, prev = prompt_tokens[n_prompt - 1];
    double start = now_seconds(), first_token = 0;
    while (n_predict < 0 || generated < n_predict) {
        int token;
        if (ensemble_step(&e, &token, err)) {
            cli_error("%s", err);
            goto done;
        }
        if (generated == 0)
            first_token = now_seconds();
        if (token == TOKEN_BOS || token == TOKEN_EOS) {
            stop = token == TOKEN_BOS ? "BOS" : "EOS";
            break;
        }
        fputs(tokenizer_decode(tok, prev, token), stdout);
        fflush(stdout);
        generated++;
        prev = token;
        if (e.n_tokens == e.n_ctx) {
            stop = "the context is full";
            break;
        }
        if (ensemble_append(&e, &token, 1, err)) {
            cli_error("%s", err);
            goto done;
        }
    }
    double end = now_seconds();
    fputc('\n', stdout);
    fflush(stdout);

    fprintf(stderr, "llamix: %s, %d member%s, seed %llu, stopped at %s\n",
            k > 1 ? ensemble_mode_name(mode) : "one model", k, k > 1 ? "s" : "", seed, stop);
    /* The first step runs the prompt (one batched forward per member it syncs) and samples. */
    fprintf(stderr, "llamix: prompt %d tokens in %.1f ms (%.1f tok/s, with the first sample); "
            "generated %d tokens, %.1f tok/s\n", n_prompt, 1e3 * (first_token - start),
            n_prompt / (first_token - start), generated,
            generated > 1 ? (generated - 1) / (end - first_token) : 0.0);
    for (int i = 0; i < k; i++)
        fprintf(stderr, "llamix: member %d (%s, weight %.3f): %ld forward calls, %ld tokens processed\n",
                i + 1, models[i].path, e.weights[i], e.members[i].forward_calls, e.members[i].tokens_processed);
    status = EXIT_OK;
done:
    ensemble_free(&e);
    free(prompt_tokens);
    tokenizer_free(tok);
    cli_close_models(models, k);
    return status;
}
