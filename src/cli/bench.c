/* bench.c: `llamix bench`: the speed of one model, of CE and of ME, measured side by side in one
 * process, next to the machine's own limits measured in the same run. This is the command: its
 * options, the members, and the report on stdout. The harness itself (what is timed and why it
 * is trustworthy) is bench/harness.h; the probes of the machine bench/probes.h; the reports
 * bench/report.h. */
#include "config.h"
#include "cli.h"
#include "harness.h"
#include "internal.h"
#include "members.h"
#include "report.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SHAPE "15M"
#define DEFAULT_MEMBERS 3
#define DEFAULT_PROMPT 16
#define DEFAULT_GEN 128
#define DEFAULT_REPS 5
#define DEFAULT_BW_MIB 1024 /* bandwidth buffer: far beyond any L3 of this class of machine */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix bench [options]                      (no options: a quick demo)\n"
        "       llamix bench -m MODEL [-m MODEL ...] [options]\n"
        "       llamix bench --shape NAME [-k LIST] [options]\n\n"
        "Times prompt processing (pp) and generation (tg) of one model (single), of the\n"
        "conventional ensemble (ce: every member every token) and of the mixture-model-like\n"
        "ensemble (me: one member per token, caught up lazily), interleaved in one process, and\n"
        "measures the machine's memory bandwidth and sgemm peak in the same run.\n\n"
        "  -m, --model PATH       a checkpoint; repeat for members (or give them as arguments)\n"
        "  -z, --tokenizer PATH   one per member when their tokenizers differ: then CE and ME of the\n"
        "                         real text path side by side, with the union vocabulary's cost per token\n"
        "      --shape NAME       random members of a shape instead: 260K, 15M, 42M, 110M, tiny\n"
        "                         (default " DEFAULT_SHAPE "), seeds -s, -s+1, ...; written to TMPDIR\n"
        "                         (atomically) and deleted as soon as they are mapped\n"
        "      --quant q8_0       the --shape members in int8 (llama2.c version 2, Q8_0), or f32\n"
        "  -k, --members LIST     ensemble sizes, e.g. 3 or 1,2,3,4 (default: all -m models, or %d)\n"
        "  -w, --weights LIST     the ce, me and ce-mixture weights, e.g. 0.5,0.25,0.25 (one per member\n"
        "                         of the one K; normalised; default uniform)\n"
        "  -p, --n-prompt LIST    prompt lengths (default %d)\n"
        "  -n, --n-gen LIST       tokens generated after the prompt (default %d; 0: prompt only)\n"
        "  -r, --repetitions N    timed repetitions of every test (default %d), after a warm-up\n"
        "  -t, --threads LIST     thread counts (default: OMP_NUM_THREADS or all cores)\n"
        "  -e, --ensemble LIST    modes among single, ce, me, ce-mixture (default single,ce,me)\n"
        "  -o, --output FORMAT    md (default) or json, on stdout\n"
        "      --json-file PATH   also write the json report to PATH\n"
        "  -s, --seed N           seed of the prompt, the sampler and ME's picks (default 1)\n"
        "      --temp T  --top-p P  --top-k K  --min-p P\n"
        "                         the sampler (default temperature 1, top-p 1 = off, top-k off)\n"
        "      --bw-mib N         size of the bandwidth buffer in MiB (default %d)\n"
        "      --no-limits        skip the bandwidth and sgemm measurements\n"
        "      --sequences LIST   also run S sequences at once through one batch, e.g. 1,2,4,8,16:\n"
        "                         aggregate tok/s (S x tokens / seconds) of every mode at each S, ME/CE\n"
        "                         at each S, and each S over the first (sequence j: seed -s + j)\n"
        "      --catch-up LIST    also time one forward over an m-token span at position -p (ME's\n"
        "                         catch-up), e.g. 1,2,4,8, for every distinct member and -t, against\n"
        "                         m = 1 (always measured), at least 11 repetitions\n"
        "      --score LIST       also time scoring as llamix score -c C does it, e.g. 1024: two\n"
        "                         windows of C random tokens, every row's log-softmax, for every\n"
        "                         distinct member and -t; GFLOP/s against the sgemm peak\n"
        "      --router FILE      also run each ce and me test of the router's K with it, side by\n"
        "                         side, and time the router alone (its cost per token)\n"
        "      --wait POLICY      how idle threads wait: auto (the default: by the host's load at the\n"
        "                         start), passive (sleep at once), active (spin), or N (spin N\n"
        "                         times, then sleep); the report says which\n"
        "  -h, --help\n\n"
        "pp P: the P prompt tokens through what the mode runs to sample the first token (single: one\n"
        "forward; ce: one per member; me: one, through the picked member). tg N: N more tokens, each\n"
        "fed to the members the mode runs (me: the picked member catches up on every token it\n"
        "missed, the prompt included on its first pick). tok/s are medians over the repetitions,\n"
        "+- the median absolute deviation. The ME/CE speed-up is the median of per-repetition\n"
        "ratios. Expected cost (with single among the modes): c_k = member k's single tg seconds per\n"
        "token, CE's expected cost sum_k c_k, ME's sum_k w_k c_k; measured/expected per repetition.\n"
        "Random members have nearly flat next-token distributions; with --top-p < 1 the\n"
        "sampler sorts most of the vocabulary every token, which real models rarely make it do.\n",
        DEFAULT_MEMBERS, DEFAULT_PROMPT, DEFAULT_GEN, DEFAULT_REPS, DEFAULT_BW_MIB);
}

/* Parse "1,2,3" into at most BENCH_MAX_LIST ints in [min, max], or with modes set "single,ce,me"
 * into at most BENCH_MAX_MODES modes (BENCH_SINGLE or an LxMode). */
static int parse_list(const char *option, const char *text, long min, long max, int modes, int *values, int *count)
{
    char buf[256];
    int most = modes ? BENCH_MAX_MODES : BENCH_MAX_LIST;
    if (strlen(text) >= sizeof buf) { /* refused, not cut: a cut list would run other tests */
        cli_error("%s: the list is %zu characters long, at most %zu", option, strlen(text), sizeof buf - 1);
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", text);
    *count = 0;
    for (char *item = buf, *next; *text && item; item = next) {
        LxMode m;
        if ((next = strchr(item, ',')))
            *next++ = '\0';
        if (!*item) { /* "1,,2" or "1,2,": a slip, not a list */
            cli_error("%s: an empty value in '%s'", option, text);
            return -1;
        }
        if (*count == most) {
            cli_error("%s: at most %d %s", option, most, modes ? "modes" : "values");
            return -1;
        }
        if (!modes) {
            if (cli_int(option, item, min, max, &values[(*count)++]))
                return -1;
        } else if (strcmp(item, "single") == 0) {
            values[(*count)++] = BENCH_SINGLE;
        } else if (lx_mode_parse(item, &m, NULL) == LX_OK) {
            values[(*count)++] = (int)m;
        } else {
            cli_error("%s: '%s' is not one of single, ce, me, ce-mixture", option, item);
            return -1;
        }
    }
    if (*count == 0)
        cli_error("%s: no values in '%s'", option, text);
    return *count ? 0 : -1;
}

typedef struct {
    char *paths[CLI_MAX_MEMBERS], *tok_paths[CLI_MAX_MEMBERS];
    int n_paths, n_toks, json;
    int shape_version; /* --quant: the --shape members' checkpoint version, 1 fp32 or 2 int8 */
    const char *json_file;
    const char *weights_text; /* -w, parsed once K is known */
    BenchPlan plan;
} Options;

enum { OPT_SHAPE = 256, OPT_QUANT, OPT_JSON_FILE, OPT_BW, OPT_NO_LIMITS, OPT_ROUTER, OPT_SEQUENCES,
       OPT_WAIT, OPT_CATCH_UP, OPT_SCORE };

/* --catch-up LIST: the spans with the base span 1 first (added when not listed), each once. */
static int parse_spans(const char *text, BenchPlan *p)
{
    int values[BENCH_MAX_LIST], n;
    if (parse_list("--catch-up", text, 1, 4096, 0, values, &n))
        return -1;
    p->spans[0] = 1;
    p->nspans = 1;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < p->nspans; j++)
            seen |= p->spans[j] == values[i];
        if (seen)
            continue;
        if (p->nspans == BENCH_MAX_LIST) {
            cli_error("--catch-up: at most %d spans, 1 included", BENCH_MAX_LIST);
            return -1;
        }
        p->spans[p->nspans++] = values[i];
    }
    return 0;
}

/* -1: run; otherwise the exit status to return now (after --help, or a usage error printed). */
static int parse_options(int argc, char **argv, Options *o)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"shape", required_argument, 0, OPT_SHAPE},
        {"quant", required_argument, 0, OPT_QUANT},
        {"members", required_argument, 0, 'k'}, {"weights", required_argument, 0, 'w'},
        {"catch-up", required_argument, 0, OPT_CATCH_UP}, {"score", required_argument, 0, OPT_SCORE},
        {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'}, {"repetitions", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'}, {"ensemble", required_argument, 0, 'e'},
        {"output", required_argument, 0, 'o'}, {"json-file", required_argument, 0, OPT_JSON_FILE},
        {"seed", required_argument, 0, 's'}, CLI_SAMPLER_OPTIONS,
        {"bw-mib", required_argument, 0, OPT_BW}, {"no-limits", no_argument, 0, OPT_NO_LIMITS},
        {"router", required_argument, 0, OPT_ROUTER}, {"sequences", required_argument, 0, OPT_SEQUENCES},
        {"tokenizer", required_argument, 0, 'z'}, {"wait", required_argument, 0, OPT_WAIT},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    BenchPlan *p = &o->plan;
    memset(o, 0, sizeof *o);
    p->ps[p->np++] = DEFAULT_PROMPT;
    p->ns[p->nn++] = DEFAULT_GEN;
    p->reps = DEFAULT_REPS;
    p->bw_mib = DEFAULT_BW_MIB;
    p->limits = 1;
    p->seed = 1;
    p->sampler = lx_ensemble_defaults().sampler;
    p->sampler.top_p = 1.0f; /* see usage: top-p over random members is a sorting benchmark */
    p->log = stderr;
    o->shape_version = 1;
    unsigned long long seed = 1;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:k:w:p:n:r:t:e:o:s:h", options, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'm': bad = cli_add_path("-m", o->paths, &o->n_paths, optarg); break;
        case 'z': bad = cli_add_path("-z", o->tok_paths, &o->n_toks, optarg); break;
        case OPT_SHAPE: p->shape = optarg; break;
        case OPT_QUANT:
            bad = strcmp(optarg, "q8_0") != 0 && strcmp(optarg, "f32") != 0;
            if (bad)
                cli_error("--quant: '%s' is not q8_0 or f32", optarg);
            o->shape_version = optarg[0] == 'q' ? 2 : 1;
            break;
        case 'k': bad = parse_list("-k", optarg, 1, CLI_MAX_MEMBERS, 0, p->ks, &p->nk); break;
        case 'w': o->weights_text = optarg; break;
        case OPT_CATCH_UP: bad = parse_spans(optarg, p); break;
        case OPT_SCORE: bad = parse_list("--score", optarg, 2, 1 << 20, 0, p->windows, &p->nwindows); break;
        case 'p': bad = parse_list("-p", optarg, 1, 1 << 20, 0, p->ps, &p->np); break;
        case 'n': bad = parse_list("-n", optarg, 0, 1 << 20, 0, p->ns, &p->nn); break;
        case 'r': bad = cli_int("-r", optarg, 1, BENCH_MAX_REPS, &p->reps); break;
        case 't': bad = parse_list("-t", optarg, 1, 1024, 0, p->ts, &p->nt); break;
        case 'e': bad = parse_list("--ensemble", optarg, 0, 0, 1, p->modes, &p->n_modes); break;
        case 'o':
            bad = strcmp(optarg, "md") && strcmp(optarg, "json");
            if (bad)
                cli_error("-o: '%s' is not md or json", optarg);
            o->json = strcmp(optarg, "json") == 0;
            break;
        case OPT_JSON_FILE: o->json_file = optarg; break;
        case 's': bad = cli_u64("-s", optarg, &seed); p->seed = seed; break;
        case CLI_OPT_TEMP: case CLI_OPT_TOP_K: case CLI_OPT_TOP_P: case CLI_OPT_MIN_P:
            bad = cli_sampler_option(opt, optarg, &p->sampler);
            break;
        case OPT_BW: bad = cli_int("--bw-mib", optarg, 16, 1 << 20, &p->bw_mib); break;
        case OPT_NO_LIMITS: p->limits = 0; break;
        case OPT_ROUTER: p->router_path = optarg; break;
        case OPT_SEQUENCES: bad = parse_list("--sequences", optarg, 1, 1024, 0, p->seqs, &p->nseqs); break;
        case OPT_WAIT: bad = cli_wait_option(optarg); break;
        case 'h': usage(stdout); return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
        default: return cli_bad_option("bench", argv);
        }
        if (bad)
            return EXIT_USAGE;
    }
    for (; optind < argc; optind++) { /* positional checkpoints, as in generate */
        if (cli_add_path("a checkpoint", o->paths, &o->n_paths, argv[optind]))
            return EXIT_USAGE;
    }
    if (o->n_paths && p->shape) {
        cli_error("give models (-m) or a shape (--shape), not both");
        return EXIT_USAGE;
    }
    if (!o->n_paths && !p->shape)
        p->shape = DEFAULT_SHAPE;
    if (p->nk == 0)
        p->ks[p->nk++] = o->n_paths ? o->n_paths : DEFAULT_MEMBERS;
    for (int i = 0; i < p->nk; i++)
        if (o->n_paths && p->ks[i] > o->n_paths) {
            cli_error("-k %d: only %d models given", p->ks[i], o->n_paths);
            return EXIT_USAGE;
        }
    if (o->weights_text) { /* one K, one weight per member; normalised as the ensemble will */
        double w[CLI_MAX_MEMBERS];
        LxError err;
        if (p->nk != 1) {
            cli_error("--weights: one ensemble size needed, not -k with %d values", p->nk);
            return EXIT_USAGE;
        }
        if (lx_weights_parse(o->weights_text, p->ks[0], w, &err) != LX_OK ||
            weights_normalise(w, p->ks[0], p->weights, &err)) {
            cli_error("--weights: %s (K is %d)", err.message, p->ks[0]);
            return EXIT_USAGE;
        }
        p->n_weights = p->ks[0];
    }
    if (p->n_modes == 0) {
        p->modes[0] = BENCH_SINGLE, p->modes[1] = LX_MODE_CE, p->modes[2] = LX_MODE_ME;
        p->n_modes = 3;
    }
    if (p->nt == 0)
        p->ts[p->nt++] = lx_threads_default();
    p->n_models = o->n_paths;
    for (int i = 0; i < p->nk; i++)
        p->n_models = p->ks[i] > p->n_models ? p->ks[i] : p->n_models;
    return -1;
}

int cmd_bench(int argc, char **argv)
{
    Options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    cli_wait_apply(); /* (may re-execute the program with the wait policy set) */
    BenchPlan *p = &o.plan;
    LxModelConfig config;
    LxError err;
    if (p->shape && lx_model_shape(p->shape, &config, &err) != LX_OK) {
        cli_error("--shape: '%s' is not one of tiny, 260K, 15M, 42M, 110M", p->shape);
        return EXIT_USAGE;
    }
    lx_blas_single_thread(); /* llamix's threads split every product: BLAS runs on one */
    BenchReport R;
    bench_begin(&R); /* the process's size before the members, for the memory line */
    LxModel *models[CLI_MAX_MEMBERS] = {NULL};
    if (p->shape) {
        /* A shape's seq_len only bounds the context (version 1 files store no RoPE tables), so
         * raise it when the test needs more: the weights are the same. */
        if (config.seq_len < bench_context(p))
            config.seq_len = bench_context(p);
        fprintf(stderr, "llamix bench: writing %d random member%s of shape %s\n", p->n_models,
                p->n_models > 1 ? "s" : "", p->shape);
        if (bench_random_members(&config, p->n_models, p->seed, o.shape_version, models, &err) != LX_OK) {
            cli_error("%s", err.message);
            return EXIT_RUNTIME;
        }
    } else if (cli_open_models(o.paths, p->n_models, models)) {
        return EXIT_RUNTIME;
    }
    if (o.n_toks > 0) { /* -z: tokenizers per member; different ones take the union path */
        LxTokenizer *toks[CLI_MAX_MEMBERS];
        status = cli_open_member_tokenizers(o.paths, models, o.n_paths, o.tok_paths, o.n_toks, toks);
        if (status == 0) {
            if (o.n_toks > 1 && cli_tokenizers_differ(toks, o.n_toks) && o.weights_text) {
                cli_error("--weights: not with different tokenizers (-z): that bench runs uniform weights");
                status = EXIT_USAGE;
            } else if (o.n_toks > 1 && cli_tokenizers_differ(toks, o.n_toks))
                status = bench_vocab(models, o.n_paths, toks, &p->sampler, p->ns[0] ? p->ns[0] : DEFAULT_GEN, p->reps,
                                     p->ts[0], p->seed);
            else
                status = -1; /* one vocabulary: the tokenizer is not needed, go on as without -z */
            cli_free_tokenizers(toks, o.n_toks);
        }
        if (status >= 0) {
            bench_report_free(&R);
            cli_close_models(models, p->n_models);
            return status;
        }
    }
    p->models = models;
    status = EXIT_RUNTIME;
    LxRouter *router = NULL;
    if (p->router_path) {
        int V = lx_model_config(models[0]).vocab_size, fits = 0;
        if (lx_router_open(p->router_path, &router, &err) != LX_OK) {
            cli_error("--router: %s", err.message);
            goto done;
        }
        for (int i = 0; i < p->nk; i++)
            fits |= p->ks[i] == lx_router_size(router);
        if (!fits || (lx_router_vocab_size(router) && lx_router_vocab_size(router) != V)) {
            cli_error("--router: %s is for %d members and %d token ids; these tests have -k %d.. and %d", p->router_path,
                      lx_router_size(router), lx_router_vocab_size(router), p->ks[0], V);
            status = EXIT_USAGE;
            goto done;
        }
        p->router = router;
    }
    if (bench_run(p, &R, &err) != LX_OK) {
        cli_error("%s", err.message);
        status = err.status == LX_ERR_ARGUMENT || err.status == LX_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUNTIME;
        goto done;
    }
    (o.json ? report_json : report_markdown)(stdout, &R);
    if (cli_flush())
        goto done;
    if (o.json_file) { /* written whole or not at all, like every file llamix writes */
        AtomicFile af;
        if (atomic_file_open(&af, o.json_file, 0, &err) == 0) {
            report_json(af.f, &R);
            if (atomic_file_commit(&af, &err) == 0)
                err.status = LX_OK;
        }
        if (err.status != LX_OK) {
            atomic_file_abort(&af);
            cli_error("--json-file: %s", err.message);
            goto done;
        }
    }
    status = EXIT_OK;
done:
    lx_router_free(router);
    bench_report_free(&R);
    cli_close_models(models, p->n_models);
    return status;
}
