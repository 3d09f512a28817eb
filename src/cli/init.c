/* cmd_init.c: `llamix init`: write a random checkpoint of a named or custom shape. */
#include "config.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix init [--shape NAME] [dimension options] [-s SEED] -o PATH\n\n"
        "Writes a llama2.c checkpoint with random weights (Gaussian, std 1/sqrt(dim) unless --std;\n"
        "RMSNorm gains 1). Useful for speed tests and as test fixtures.\n"
        "  --shape NAME         tiny, 260K, 15M, 42M or 110M (default tiny); the options below\n"
        "                       change single dimensions of it\n"
        "  --dim N  --hidden-dim N  --layers N  --heads N  --kv-heads N  --vocab N  --seq-len N\n"
        "  -s, --seed N         weights seed (default 1)\n"
        "  --std X              standard deviation of the weights\n"
        "  --version V          checkpoint version 0 (legacy), 1 (default) or 2 (int8 Q8_0)\n"
        "  --quant q8_0         int8 weights: version 2, the version 1 model of the same seed\n"
        "                       quantized as `llamix quantize` does (default group size)\n"
        "  --separate-classifier  store a classifier apart from the token embedding\n"
        "  -o, --output PATH    the file to write\n");
}

enum { OPT_SHAPE = 256, OPT_DIM, OPT_HIDDEN, OPT_LAYERS, OPT_HEADS, OPT_KV_HEADS, OPT_VOCAB,
       OPT_SEQ, OPT_STD, OPT_VERSION, OPT_SEPARATE, OPT_QUANT };

int cmd_init(int argc, char **argv)
{
    static const struct option options[] = {
        {"shape", required_argument, 0, OPT_SHAPE}, {"dim", required_argument, 0, OPT_DIM},
        {"hidden-dim", required_argument, 0, OPT_HIDDEN}, {"layers", required_argument, 0, OPT_LAYERS},
        {"heads", required_argument, 0, OPT_HEADS}, {"kv-heads", required_argument, 0, OPT_KV_HEADS},
        {"vocab", required_argument, 0, OPT_VOCAB}, {"seq-len", required_argument, 0, OPT_SEQ},
        {"seed", required_argument, 0, 's'}, {"std", required_argument, 0, OPT_STD},
        {"version", required_argument, 0, OPT_VERSION},
        {"separate-classifier", no_argument, 0, OPT_SEPARATE}, {"quant", required_argument, 0, OPT_QUANT},
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    LxModelConfig c;
    LxError err;
    lx_model_shape("tiny", &c, &err);
    unsigned long long seed = 1;
    float std = 0;
    int version = 1, shared = 1, quant = -1, opt; /* quant: -1 not given, 0 f32, 1 q8_0 */
    const char *output = NULL;
    const long big = 1 << 20;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "s:o:h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_SHAPE:
            if (lx_model_shape(optarg, &c, &err)) {
                cli_error("--shape: '%s' is not one of tiny, 260K, 15M, 42M, 110M", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_DIM: if (cli_int("--dim", optarg, 1, big, &c.dim)) return EXIT_USAGE; break;
        case OPT_HIDDEN: if (cli_int("--hidden-dim", optarg, 1, big, &c.hidden_dim)) return EXIT_USAGE; break;
        case OPT_LAYERS: if (cli_int("--layers", optarg, 1, 4096, &c.n_layers)) return EXIT_USAGE; break;
        case OPT_HEADS: if (cli_int("--heads", optarg, 1, 4096, &c.n_heads)) return EXIT_USAGE; break;
        case OPT_KV_HEADS: if (cli_int("--kv-heads", optarg, 1, 4096, &c.n_kv_heads)) return EXIT_USAGE; break;
        case OPT_VOCAB: if (cli_int("--vocab", optarg, 3, big, &c.vocab_size)) return EXIT_USAGE; break;
        case OPT_SEQ: if (cli_int("--seq-len", optarg, 1, big, &c.seq_len)) return EXIT_USAGE; break;
        case 's': if (cli_u64("-s", optarg, &seed)) return EXIT_USAGE; break;
        case OPT_STD: if (cli_float("--std", optarg, 1e-9, 100, &std)) return EXIT_USAGE; break;
        case OPT_VERSION: if (cli_int("--version", optarg, 0, 2, &version)) return EXIT_USAGE; break;
        case OPT_QUANT:
            if (strcmp(optarg, "q8_0") != 0 && strcmp(optarg, "f32") != 0) {
                cli_error("--quant: '%s' is not q8_0 or f32", optarg);
                return EXIT_USAGE;
            }
            quant = optarg[0] == 'q';
            break;
        case OPT_SEPARATE: shared = 0; break;
        case 'o': output = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return cli_bad_option("init", argv);
        }
    }
    if (optind < argc) {
        cli_error("init: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (!output) {
        cli_error("init: give the output file (-o PATH)");
        return EXIT_USAGE;
    }
    if (quant == 1 && version == 0) {
        cli_error("init: --quant q8_0 writes version 2, not --version 0");
        return EXIT_USAGE;
    }
    if (quant == 0 && version == 2) {
        cli_error("init: --version 2 is int8 (q8_0), not --quant f32");
        return EXIT_USAGE;
    }
    if (quant == 1)
        version = 2;
    if (lx_model_write_random(output, &c, version, shared, seed, std, &err)) {
        cli_error("%s", err.message);
        return err.status == LX_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME;
    }
    fprintf(stderr, "llamix: wrote %s: version %d, dim %d, hidden_dim %d, layers %d, heads %d, "
            "kv_heads %d, vocab %d, seq_len %d, %s classifier, seed %llu\n", output, version, c.dim,
            c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
            shared ? "shared" : "separate", seed);
    return EXIT_OK;
}
