/* tokenizers.c: the -z rule of generate, score and bench: one tokenizer for every member, or one
 * per member in member order (their vocabularies may then differ: the library builds the union). */
#include "config.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* "a.bin, b.bin" of n paths, cut to fit. */
static void list_paths(char *out, size_t size, char *const *paths, int n)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", i ? ", " : "", paths[i]);
    }
}

int cli_open_member_tokenizers(char *const *model_paths, LxModel **models, int k, char *const *paths, int n,
                               LxTokenizer **tokenizers)
{
    for (int i = 0; i < n; i++)
        tokenizers[i] = NULL;
    if (n != 1 && n != k) {
        char m[1024], z[1024];
        list_paths(m, sizeof m, model_paths, k);
        list_paths(z, sizeof z, paths, n);
        cli_error("-z: %d tokenizers (%s) for %d members (%s): give one for all, or one per member in order", n, z, k, m);
        return EXIT_USAGE;
    }
    for (int i = 0; i < n; i++) {
        LxError err;
        if (lx_tokenizer_open(paths[i], lx_model_config(models[i]).vocab_size, &tokenizers[i], &err)) {
            cli_error("%s: tokenizer %s", model_paths[i], err.message);
            cli_free_tokenizers(tokenizers, i);
            return EXIT_RUNTIME;
        }
    }
    return 0;
}

int cli_tokenizers_differ(LxTokenizer *const *tokenizers, int n)
{
    for (int i = 1; i < n; i++) {
        int V = lx_tokenizer_vocab_size(tokenizers[0]);
        if (lx_tokenizer_vocab_size(tokenizers[i]) != V)
            return 1;
        for (int id = 0; id < V; id++)
            if (strcmp(lx_token_piece(tokenizers[0], id), lx_token_piece(tokenizers[i], id)))
                return 1;
    }
    return 0;
}
