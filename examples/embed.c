/* embed.c: llamix from a program of one's own, with nothing but the public header.
 *
 *     embed [-t TEMPERATURE] MODEL TOKENIZER [PROMPT [MODEL2]]
 *
 * Prints the library's version, then the prompt and up to 48 tokens generated after it, then
 * how many tokens came and why generation stopped. With MODEL2 the two models form a
 * mixture-model-like (ME) ensemble with weights 0.7 and 0.3; they must share the tokenizer. The
 * temperature is 1 by default (with top-p 0.9, seed 42); -t 0 is greedy decoding, which with one
 * model gives the same text as llama2.c's run.c.
 *
 * Build: cc embed.c $(pkg-config --cflags --libs llamix)
 * Exit status: 0 on success, 1 when a file or the run fails, 2 for bad arguments; each error is
 * one line on stderr. */
#include <llamix.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the text goes: the prompt (echoed once the library has accepted it, before the first
 * token), and the first write error (errno) met there. */
typedef struct {
    FILE *out;
    const char *prompt; /* NULL once printed */
    int write_errno;
} Output;

static int write_text(Output *o, const char *text, size_t n)
{
    if (n > 0 && fwrite(text, 1, n, o->out) != n) {
        o->write_errno = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

static int print_prompt(Output *o)
{
    const char *prompt = o->prompt;
    o->prompt = NULL;
    return prompt ? write_text(o, prompt, strlen(prompt)) : 0;
}

static int print_token(void *user, const LxTokenEvent *ev)
{
    Output *o = user;
    if (print_prompt(o) || write_text(o, ev->text, ev->text_length))
        return 1; /* stop generating: nobody would see the rest */
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: embed [-t TEMPERATURE] MODEL TOKENIZER [PROMPT [MODEL2]]\n");
    return 2;
}

int main(int argc, char **argv)
{
    float temperature = 1.0f;
    int a = 1;
    if (a + 1 < argc && strcmp(argv[a], "-t") == 0) {
        char *end;
        errno = 0;
        temperature = strtof(argv[a + 1], &end);
        if (end == argv[a + 1] || *end || errno || !isfinite(temperature) || temperature < 0) {
            fprintf(stderr, "embed: -t: '%s' is not a temperature (a number >= 0)\n", argv[a + 1]);
            return 2;
        }
        a += 2;
    }
    int n_args = argc - a;
    if (n_args < 2 || n_args > 4 || argv[a][0] == '-')
        return usage();
    const char *model_path[2] = {argv[a], n_args > 3 ? argv[a + 3] : NULL};
    const char *tokenizer_path = argv[a + 1];
    const char *prompt = n_args > 2 ? argv[a + 2] : "";
    int k = model_path[1] ? 2 : 1;

    if (printf("llamix %s\n", lx_version()) < 0 || fflush(stdout)) {
        fprintf(stderr, "embed: writing the output: %s\n", strerror(errno));
        return 1;
    }
    /* llamix runs its own threads; keep a threaded OpenBLAS from adding more (a program's choice,
     * process-wide: a library built on llamix would leave it to its program). */
    lx_blas_single_thread();

    LxError err;
    LxModel *models[2] = {NULL, NULL};
    LxTokenizer *tok = NULL;
    LxEnsemble *e = NULL;
    LxEnsembleParams p = lx_ensemble_defaults(); /* ME, uniform weights, T 1, top-p 0.9 */
    LxGenerateParams g = lx_generate_defaults(); /* stop at end of text */
    LxGenerateStats stats;
    double weights[2] = {0.7, 0.3};
    Output out = {stdout, prompt, 0};
    int status = 1;
    for (int i = 0; i < k; i++)
        if (lx_model_open(model_path[i], &models[i], &err))
            goto fail;
    if (lx_tokenizer_open(tokenizer_path, lx_model_config(models[0]).vocab_size, &tok, &err))
        goto fail;

    p.weights = k == 2 ? weights : NULL;
    p.sampler.temperature = temperature;
    p.seed = 42;
    if (lx_ensemble_new(models, k, &tok, 1, &p, &e, &err))
        goto fail;

    g.n_predict = 48;
    if (lx_generate(e, prompt, &g, print_token, &out, &stats, &err))
        goto fail;
    if (!print_prompt(&out) && !out.write_errno) { /* the prompt, if no token came */
        printf("\n%d tokens, stopped by %s\n", stats.n_generated, lx_stop_name(stats.stop));
        if (k == 2)
            for (int i = 0; i < k; i++) {
                long calls, tokens;
                lx_ensemble_member_counts(e, i, &calls, &tokens);
                printf("member %d (%s): %ld forward calls, %ld tokens\n", i + 1, model_path[i],
                       calls, tokens);
            }
    }
    if (fflush(stdout) && !out.write_errno)
        out.write_errno = errno;
    if (out.write_errno || ferror(stdout)) {
        fprintf(stderr, "embed: writing the output: %s\n",
                strerror(out.write_errno ? out.write_errno : EIO));
        goto done;
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "embed: %s\n", err.message);
done:
    lx_ensemble_free(e); /* every free accepts NULL */
    lx_tokenizer_free(tok);
    lx_model_close(models[0]);
    lx_model_close(models[1]);
    return status;
}
