/* quantize.c: `llamix quantize IN OUT [--group-size G]`: an fp32 checkpoint as int8 Q8_0. */
#include "config.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix quantize IN OUT [--group-size G]\n\n"
        "Writes the fp32 checkpoint IN (llama2.c version 0 or 1) as OUT in version 2 (Q8_0, read by\n"
        "llama2.c's runq.c), byte for byte as llama2.c's export.py: each group of G weights of a row\n"
        "shares one scale max|w|/127, each weight stored as round(w / scale) (half to even) in int8.\n"
        "The norms stay fp32. OUT is written atomically (a temporary file renamed over it).\n"
        "  -g, --group-size G   weights per scale; must divide dim and hidden_dim (default: the\n"
        "                       largest such G of at most 64)\n");
}

int cmd_quantize(int argc, char **argv)
{
    static const struct option options[] = {
        {"group-size", required_argument, 0, 'g'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int group_size = 0, opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "g:h", options, NULL)) != -1) {
        switch (opt) {
        case 'g': if (cli_int("--group-size", optarg, 1, 1 << 20, &group_size)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return cli_bad_option("quantize", argv);
        }
    }
    if (argc - optind != 2) {
        cli_error("quantize: give the input and the output checkpoint (llamix quantize IN OUT)");
        return EXIT_USAGE;
    }
    const char *in = argv[optind], *out = argv[optind + 1];
    LxModel *m = NULL;
    LxError err;
    if (lx_model_open(in, &m, &err)) {
        cli_error("%s", err.message);
        return EXIT_RUNTIME;
    }
    /* an int8 input is a wrong file (1); a group size that does not fit, a wrong flag (2) */
    int wrong_file = lx_model_version(m) == 2;
    LxStatus status = lx_model_quantize(m, out, group_size, &err);
    lx_model_close(m);
    if (status) {
        cli_error("%s", err.message);
        return status == LX_ERR_ARGUMENT && !wrong_file ? EXIT_USAGE : EXIT_RUNTIME;
    }
    if (lx_model_open(out, &m, &err)) { /* read back: what was written, and its group size */
        cli_error("%s", err.message);
        return EXIT_RUNTIME;
    }
    LxModelConfig c = lx_model_config(m);
    fprintf(stderr, "llamix: wrote %s: version 2 (Q8_0), group size %d, dim %d, hidden_dim %d, layers %d, %zu bytes of weights\n",
            out, lx_model_group_size(m), c.dim, c.hidden_dim, c.n_layers, lx_model_stream_bytes(m));
    lx_model_close(m);
    return EXIT_OK;
}
