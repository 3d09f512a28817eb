/* serve.c: `llamix serve`: options, start-up, and the graceful stop. SIGINT and SIGTERM are
 * blocked in every thread and taken here by sigwait: the server stops taking requests (503),
 * lets the running ones finish for --grace seconds, cuts the rest (their streams end with what
 * they have), and exits 0. */
#include "config.h"
#include "cli.h"

#include <stdio.h>

#ifndef HAVE_SERVER
int cmd_serve(int argc, char **argv)
{
    (void)argc, (void)argv;
    cli_error("serve: this llamix was built without the server (configure found no libmicrohttpd and jansson: "
              "install libmicrohttpd-dev and libjansson-dev and configure again)");
    return EXIT_RUNTIME;
}
#else
#include "serve.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix serve -m MODEL [-m MODEL ...] -z TOKENIZER [options]\n\n"
        "An OpenAI-compatible HTTP server for the ensemble: POST /v1/completions (plain or streamed),\n"
        "GET /v1/models, /health, /metrics. Requests share the batch engine (continuous batching).\n\n"
        "  -m, --model PATH      a llama2.c checkpoint; repeat for an ensemble\n"
        "  -z, --tokenizer PATH  tokenizer.bin, shared by every member (default: tokenizer.bin)\n"
        "  -w, --weights LIST    member weights (default: uniform); a request may bring its own\n"
        "  -e, --ensemble MODE   me (default), ce, ce-mixture or ce-unite; a request may choose\n"
        "      --temp T, --top-k K, --top-p P, --min-p P\n"
        "                        the sampler for requests that do not say (defaults 1, 0, 0.9, 0:\n"
        "                        llamix generate's)\n"
        "  -c, --ctx-size N      every sequence's context (default: the smallest seq_len)\n"
        "      --host ADDR       the address to listen on (default 127.0.0.1)\n"
        "      --port N          the port (default 8080; 0: a free one, printed on stderr)\n"
        "      --parallel P      sequences decoded at once (default 16)\n"
        "      --queue Q         sequences that may wait for a slot; beyond that 429 (default 64)\n"
        "      --api-key KEY     require Authorization: Bearer KEY (all but /health)\n"
        "      --timeout S       seconds a connection may sit idle (default 30)\n"
        "      --max-connections N  at most N connections at once (default 128)\n"
        "      --grace S         on SIGINT/SIGTERM, seconds to let running requests finish (default 5)\n"
        "  -t, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
        CLI_WAIT_HELP
        "  -h, --help\n");
}

enum { OPT_HOST = 256, OPT_PORT, OPT_PARALLEL, OPT_QUEUE, OPT_KEY,
       OPT_TIMEOUT, OPT_MAX_CONN, OPT_GRACE, OPT_WAIT };

typedef struct {
    char *model_paths[CLI_MAX_MEMBERS], *tokenizer_paths[CLI_MAX_MEMBERS];
    int k, n_tokenizers, n_ctx, port, parallel, queue, timeout, max_connections, grace;
    const char *weights_text, *host, *api_key;
    LxEnsembleParams ensemble;
} Options;

static int parse(int argc, char **argv, Options *o)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
        {"weights", required_argument, 0, 'w'}, {"ensemble", required_argument, 0, 'e'},
        CLI_SAMPLER_OPTIONS,
        {"ctx-size", required_argument, 0, 'c'}, {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT}, {"parallel", required_argument, 0, OPT_PARALLEL},
        {"queue", required_argument, 0, OPT_QUEUE}, {"api-key", required_argument, 0, OPT_KEY},
        {"timeout", required_argument, 0, OPT_TIMEOUT}, {"max-connections", required_argument, 0, OPT_MAX_CONN},
        {"grace", required_argument, 0, OPT_GRACE}, {"threads", required_argument, 0, 't'},
        {"wait", required_argument, 0, OPT_WAIT},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "m:z:w:e:c:t:h", options, NULL)) != -1) {
        switch (opt) {
        case 'm': if (cli_add_path("-m", o->model_paths, &o->k, optarg)) return EXIT_USAGE; break;
        case 'z': if (cli_add_path("-z", o->tokenizer_paths, &o->n_tokenizers, optarg)) return EXIT_USAGE; break;
        case 'w': o->weights_text = optarg; break;
        case 'e': if (cli_mode(optarg, &o->ensemble.mode)) return EXIT_USAGE; break;
        case CLI_OPT_TEMP: case CLI_OPT_TOP_K: case CLI_OPT_TOP_P: case CLI_OPT_MIN_P:
            if (cli_sampler_option(opt, optarg, &o->ensemble.sampler)) return EXIT_USAGE;
            break;
        case 'c': if (cli_int("-c", optarg, 1, 1 << 30, &o->n_ctx)) return EXIT_USAGE; break;
        case OPT_HOST: o->host = optarg; break;
        case OPT_PORT: if (cli_int("--port", optarg, 0, 65535, &o->port)) return EXIT_USAGE; break;
        case OPT_PARALLEL: if (cli_int("--parallel", optarg, 1, 4096, &o->parallel)) return EXIT_USAGE; break;
        case OPT_QUEUE: if (cli_int("--queue", optarg, 0, 1 << 20, &o->queue)) return EXIT_USAGE; break;
        case OPT_KEY:
            if (!optarg[0]) {
                cli_error("--api-key: the key is empty");
                return EXIT_USAGE;
            }
            o->api_key = optarg;
            break;
        case OPT_TIMEOUT: if (cli_int("--timeout", optarg, 1, 86400, &o->timeout)) return EXIT_USAGE; break;
        case OPT_MAX_CONN: if (cli_int("--max-connections", optarg, 1, 65536, &o->max_connections)) return EXIT_USAGE; break;
        case OPT_GRACE: if (cli_int("--grace", optarg, 0, 3600, &o->grace)) return EXIT_USAGE; break;
        case 't': if (cli_int("-t", optarg, 1, 4096, &o->ensemble.threads)) return EXIT_USAGE; break;
        case OPT_WAIT: if (cli_wait_option(optarg)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return cli_flush() ? EXIT_RUNTIME : EXIT_OK;
        default: return cli_bad_option("serve", argv);
        }
    }
    for (; optind < argc; optind++) {
        if (cli_add_path("a checkpoint", o->model_paths, &o->k, argv[optind]))
            return EXIT_USAGE;
    }
    if (o->k == 0) {
        cli_error("serve: give at least one model (-m MODEL)");
        return EXIT_USAGE;
    }
    if (o->n_tokenizers > 1) {
        cli_error("serve: -z: give one tokenizer for every member (the batch engine needs one vocabulary)");
        return EXIT_USAGE;
    }
    if (o->n_tokenizers == 0)
        o->tokenizer_paths[o->n_tokenizers++] = "tokenizer.bin";
    return -2;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

typedef struct {
    ServeEngine *engine;
    int grace;
} Stopper;

/* SIGINT and SIGTERM may land on any thread, libraries' threads started before main included:
 * the handler only writes the signal's number to a pipe (async-signal-safe); the stopper reads it. */
static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    unsigned char c = (unsigned char)sig;
    ssize_t ignored = write(stop_pipe[1], &c, 1);
    (void)ignored;
}

/* The stopper thread: the first SIGINT/SIGTERM stops new requests (503), waits up to the grace
 * period for the running ones, cuts the rest, and ends the engine's loop. */
static void *stopper(void *arg)
{
    Stopper *s = arg;
    unsigned char c = 0;
    while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    int sig = c;
    int running = serve_engine_outstanding(s->engine);
    fprintf(stderr, "llamix: %s: stopping (%d request%s running, up to %d s to finish)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", running, running == 1 ? "" : "s", s->grace);
    serve_engine_stop_accepting(s->engine);
    for (int waited = 0; waited < 1000 * s->grace && serve_engine_outstanding(s->engine) > 0; waited += 20)
        sleep_ms(20);
    running = serve_engine_outstanding(s->engine);
    serve_engine_cut(s->engine);
    if (running > 0)
        fprintf(stderr, "llamix: cut %d request%s short\n", running, running == 1 ? "" : "s");
    sleep_ms(200); /* the connections write their last chunks */
    serve_engine_quit(s->engine);
    return NULL;
}

int cmd_serve(int argc, char **argv)
{
    Options o = {.host = "127.0.0.1", .port = 8080, .parallel = 16, .queue = 64, .timeout = 30,
                 .max_connections = 128, .grace = 5, .ensemble = lx_ensemble_defaults()};
    int status = parse(argc, argv, &o);
    if (status != -2)
        return status < 0 ? EXIT_USAGE : status;
    /* Idle OpenMP threads sleep by default (--wait): a server also has its connection threads to
     * run, and with libgomp's spinning default 92% of a busy host's time went to spinning
     * workers (tokens 10x slower). May re-execute the program once. */
    cli_wait_apply();
    double weights[CLI_MAX_MEMBERS];
    LxError err;
    if (o.weights_text) {
        if (lx_weights_parse(o.weights_text, o.k, weights, &err)) {
            cli_error("-w: %s", err.message);
            return EXIT_USAGE;
        }
        o.ensemble.weights = weights;
    }
    LxModel *models[CLI_MAX_MEMBERS];
    LxTokenizer *toks[CLI_MAX_MEMBERS] = {NULL};
    if (cli_open_models(o.model_paths, o.k, models))
        return EXIT_RUNTIME;
    status = cli_open_member_tokenizers(o.model_paths, models, o.k, o.tokenizer_paths, o.n_tokenizers, toks);
    if (status) {
        cli_close_models(models, o.k);
        return status;
    }
    int usable = lx_models_context(models, o.k);
    if (o.n_ctx > usable) {
        cli_error("-c: %d is more than the %d positions %s holds (seq_len)", o.n_ctx, usable, o.model_paths[0]);
        cli_free_tokenizers(toks, o.n_tokenizers);
        cli_close_models(models, o.k);
        return EXIT_USAGE;
    }
    o.ensemble.n_ctx = o.n_ctx ? o.n_ctx : usable;
    LxBatch *batch = NULL;
    if (lx_batch_new(models, o.k, toks, o.n_tokenizers, &o.ensemble, o.parallel, &batch, &err)) {
        status = cli_library_error(&err);
        cli_free_tokenizers(toks, o.n_tokenizers);
        cli_close_models(models, o.k);
        return status;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (pipe(stop_pipe) || sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
        cli_error("serve: cannot set up the signal handlers: %s", strerror(errno));
        lx_batch_free(batch);
        cli_free_tokenizers(toks, o.n_tokenizers);
        cli_close_models(models, o.k);
        return EXIT_RUNTIME;
    }
    ServeMetrics metrics;
    serve_metrics_init(&metrics, o.k);
    double normalised[CLI_MAX_MEMBERS];
    for (int i = 0; i < o.k; i++)
        normalised[i] = o.ensemble.weights ? o.ensemble.weights[i] : 1.0;
    double total = 0;
    for (int i = 0; i < o.k; i++)
        total += normalised[i];
    for (int i = 0; i < o.k; i++)
        normalised[i] /= total;
    char name[512] = "";
    for (int i = 0; i < o.k; i++) { /* the members' file names, joined by '+' */
        const char *base = strrchr(o.model_paths[i], '/');
        size_t used = strlen(name);
        snprintf(name + used, sizeof name - used, "%s%s", i ? "+" : "", base ? base + 1 : o.model_paths[i]);
    }
    ServeEngine *engine = serve_engine_new(batch, toks[0], o.parallel + o.queue, &metrics);
    ServeHttp *http = NULL;
    int port = 0;
    char why[512] = "out of memory for the engine";
    ServeConfig c = {o.host, o.port, o.api_key, o.timeout, o.max_connections, name, o.model_paths, o.k, normalised,
                     o.ensemble.mode, {o.k, o.ensemble.mode, o.ensemble.sampler}, lx_batch_context(batch), toks[0],
                     engine, &metrics};
    if (!engine || !(http = serve_http_start(&c, &port, why, sizeof why))) {
        cli_error("serve: %s", why);
        status = EXIT_RUNTIME;
    } else {
        int v6 = strchr(o.host, ':') != NULL;
        fprintf(stderr, "llamix: listening on http://%s%s%s:%d (%s, %d member%s, %s, parallel %d, queue %d, context %d)\n",
                v6 ? "[" : "", o.host, v6 ? "]" : "", port, name, o.k, o.k > 1 ? "s" : "",
                lx_mode_name(o.ensemble.mode), o.parallel, o.queue, lx_batch_context(batch));
        fflush(stderr);
        Stopper s = {engine, o.grace};
        pthread_t thread;
        if (pthread_create(&thread, NULL, stopper, &s)) {
            cli_error("serve: cannot start a thread");
            status = EXIT_RUNTIME;
        } else {
            serve_engine_run(engine);
            pthread_join(thread, NULL);
            status = EXIT_OK;
        }
    }
    serve_http_stop(http);
    serve_engine_free(engine);
    lx_batch_free(batch);
    serve_metrics_free(&metrics);
    cli_free_tokenizers(toks, o.n_tokenizers);
    cli_close_models(models, o.k);
    return status;
}
#endif
