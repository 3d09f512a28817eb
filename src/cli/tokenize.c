/* cmd_tokenize.c: `llamix tokenize`: the token ids of a text, as the model would see them. */
#include "config.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix tokenize -z TOKENIZER [-m MODEL] -p TEXT [--pieces] [--no-bos]\n\n"
        "Prints the token ids of TEXT, space-separated, BOS first, as generate feeds them.\n"
        "  -z, --tokenizer PATH  tokenizer.bin\n"
        "  -m, --model PATH      take the vocabulary size from this checkpoint (default: the\n"
        "                        number of entries in the tokenizer file)\n"
        "  -p, --prompt TEXT     the text\n"
        "      --pieces          one line per token: id and piece\n"
        "      --no-bos          no BOS at the start\n");
}

enum { OPT_PIECES = 256, OPT_NO_BOS };

int cmd_tokenize(int argc, char **argv)
{
    static const struct option options[] = {
        {"tokenizer", required_argument, 0, 'z'}, {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'}, {"pieces", no_argument, 0, OPT_PIECES},
        {"no-bos", no_argument, 0, OPT_NO_BOS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *tokenizer_path = NULL, *model_path = NULL, *text = NULL;
    int pieces = 0, bos = 1, opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "z:m:p:h", options, NULL)) != -1) {
        switch (opt) {
        case 'z': tokenizer_path = optarg; break;
        case 'm': model_path = optarg; break;
        case 'p': text = optarg; break;
        case OPT_PIECES: pieces = 1; break;
        case OPT_NO_BOS: bos = 0; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return cli_bad_option("tokenize", argv);
        }
    }
    if (optind < argc) {
        cli_error("tokenize: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (!tokenizer_path || !text) {
        cli_error("tokenize: give -z TOKENIZER and -p TEXT");
        return EXIT_USAGE;
    }
    LxError err;
    int vocab_size = 0;
    if (model_path) {
        LxModel *m;
        if (lx_model_open(model_path, &m, &err)) {
            cli_error("%s", err.message);
            return EXIT_RUNTIME;
        }
        vocab_size = lx_model_config(m).vocab_size;
        lx_model_close(m);
    }
    LxTokenizer *tok;
    if (lx_tokenizer_open(tokenizer_path, vocab_size, &tok, &err)) {
        cli_error("%s", err.message);
        return EXIT_RUNTIME;
    }
    size_t max_tokens = strlen(text) + 3;
    int *tokens = malloc(sizeof(int) * max_tokens), n = 0, status = EXIT_OK;
    if (!tokens || lx_tokenize(tok, text, bos, 0, tokens, (int)max_tokens, &n, &err)) {
        cli_error("-p: %s", tokens ? err.message : "out of memory");
        status = EXIT_RUNTIME;
    }
    for (int i = 0; i < n && status == EXIT_OK; i++) {
        if (pieces) {
            printf("%d\t", tokens[i]);
            /* show the piece with control characters escaped */
            for (const unsigned char *c = (const unsigned char *)lx_token_piece(tok, tokens[i]); *c; c++)
                if (*c == '\n') fputs("\\n", stdout);
                else if (*c < 0x20 || *c == 0x7f) printf("\\x%02x", *c);
                else putchar(*c);
            putchar('\n');
        } else {
            printf(i ? " %d" : "%d", tokens[i]);
        }
    }
    if (!pieces && status == EXIT_OK)
        putchar('\n');
    if (status == EXIT_OK && cli_flush())
        status = EXIT_RUNTIME;
    free(tokens);
    lx_tokenizer_free(tok);
    return status;
}
