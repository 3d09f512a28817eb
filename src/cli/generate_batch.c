/* generate_batch.c: `llamix generate` with -N, --prompts, --parallel or -o: many sequences at
 * once through one LxBatch. Sample j of every prompt uses seed s + j, so it is the text a single
 * run with `-s s+j` gives. Outputs are printed in input order (prompt, then sample) as soon as
 * every earlier one is done. */
#include "config.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One sequence's output, gathered by its callback. */
typedef struct {
    int prompt_index, sample;
    unsigned long long seed;
    char *text;
    size_t text_length, text_capacity;
    int *tokens, *members;
    float *logprobs;
    int n, capacity;
    LxGenerateStats stats;
    int done, failed;
} Output;

static int grow(void **p, size_t elem, size_t n)
{
    void *bigger = realloc(*p, elem * n);
    if (!bigger)
        return -1;
    *p = bigger;
    return 0;
}

static int collect(void *user, const LxTokenEvent *ev)
{
    Output *o = user;
    if (o->text_length + ev->text_length + 1 > o->text_capacity) {
        size_t cap = 2 * (o->text_length + ev->text_length + 1);
        if (grow((void **)&o->text, 1, cap))
            return o->failed = 1;
        o->text_capacity = cap;
    }
    memcpy(o->text + o->text_length, ev->text, ev->text_length);
    o->text_length += ev->text_length;
    o->text[o->text_length] = '\0';
    if (ev->token < 0)
        return 0;
    if (o->n == o->capacity) {
        int cap = o->capacity ? 2 * o->capacity : 64;
        if (grow((void **)&o->tokens, sizeof(int), (size_t)cap) || grow((void **)&o->members, sizeof(int), (size_t)cap) ||
            grow((void **)&o->logprobs, sizeof(float), (size_t)cap))
            return o->failed = 1;
        o->capacity = cap;
    }
    o->tokens[o->n] = ev->token;
    o->members[o->n] = ev->member;
    o->logprobs[o->n++] = ev->logprob;
    return 0;
}

/* The stop reason as a JSON value. */
static const char *stop_key(LxStopReason r)
{
    switch (r) {
    case LX_STOP_END: return "end";
    case LX_STOP_BUDGET: return "budget";
    case LX_STOP_CONTEXT: return "context";
    case LX_STOP_STRING: return "string";
    case LX_STOP_CALLBACK: return "callback";
    }
    return "unknown";
}

/* One output: a JSON line, or the prompt and text under a header. */
static int print_output(const Output *o, const char *prompt, int jsonl)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return -1;
    if (jsonl) {
        fprintf(f, "{\"prompt_index\":%d,\"sample\":%d,\"seed\":%llu,\"text\":", o->prompt_index, o->sample, o->seed);
        cli_json_string(f, o->text ? o->text : "");
        fprintf(f, ",\"tokens\":[");
        for (int i = 0; i < o->n; i++)
            fprintf(f, "%s%d", i ? "," : "", o->tokens[i]);
        fprintf(f, "],\"stop\":\"%s\",\"members\":[", stop_key(o->stats.stop));
        for (int i = 0; i < o->n; i++)
            fprintf(f, "%s%d", i ? "," : "", o->members[i]);
        fprintf(f, "],\"logprobs\":[");
        for (int i = 0; i < o->n; i++) {
            fputs(i ? "," : "", f);
            cli_json_number(f, o->logprobs[i]);
        }
        fprintf(f, "]}\n");
    } else {
        fprintf(f, "=== prompt %d, sample %d, seed %llu (%d tokens, stopped by %s) ===\n%s%s\n\n", o->prompt_index + 1,
                o->sample + 1, o->seed, o->n, lx_stop_name(o->stats.stop), prompt, o->text ? o->text : "");
    }
    int bad = fclose(f);
    int rc = bad ? -1 : cli_write(buf, size);
    free(buf);
    return rc;
}

/* The prompts: -p's one, or every line of --prompts FILE (a final newline ends the last line;
 * a CR before a newline is dropped). The strings point into *text, which the caller frees. */
static int read_prompts(const BatchOptions *o, char **text, char ***prompts, int *n)
{
    *text = NULL;
    *prompts = NULL;
    *n = 0;
    if (!o->prompts_file) {
        *prompts = malloc(sizeof **prompts);
        if (!*prompts)
            return -1;
        (*prompts)[(*n)++] = (char *)o->prompt;
        return 0;
    }
    LxError err;
    size_t length;
    if (lx_read_text(o->prompts_file, text, &length, &err)) {
        cli_error("--prompts: %s", err.message);
        return -1;
    }
    int lines = 1;
    for (size_t i = 0; i < length; i++)
        lines += (*text)[i] == '\n';
    *prompts = malloc(sizeof **prompts * (size_t)lines);
    if (!*prompts)
        return -1;
    for (char *p = *text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r')
            p[len - 1] = '\0';
        (*prompts)[(*n)++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* MemAvailable from /proc/meminfo, in bytes (LLAMIX_MEM_AVAILABLE overrides it, for tests); 0 if
 * unknown. */
static double memory_available(void)
{
    const char *forced = getenv("LLAMIX_MEM_AVAILABLE");
    if (forced && *forced)
        return strtod(forced, NULL);
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

int generate_batch(const BatchOptions *o, LxModel **models, int k, LxTokenizer **toks, int n_tokenizers)
{
    char *file_text = NULL, **prompts = NULL;
    int n_prompts = 0, status = EXIT_RUNTIME;
    int **tokens = NULL, *n_tokens = NULL;
    Output *outs = NULL;
    LxBatch *b = NULL;
    LxError err;
    if (read_prompts(o, &file_text, &prompts, &n_prompts)) {
        if (!o->prompts_file)
            cli_error("out of memory");
        goto done;
    }
    long total = (long)n_prompts * o->n_samples;
    if (total > (1L << 24)) {
        cli_error("-N %d x %d prompts: too many sequences", o->n_samples, n_prompts);
        status = EXIT_USAGE;
        goto done;
    }
    tokens = calloc((size_t)n_prompts, sizeof *tokens);
    n_tokens = calloc((size_t)n_prompts, sizeof *n_tokens);
    outs = calloc((size_t)total, sizeof *outs);
    if (!tokens || !n_tokens || !outs) {
        cli_error("out of memory for %ld sequences", total);
        goto done;
    }
    int longest = 0;
    for (int i = 0; i < n_prompts; i++) {
        size_t max = strlen(prompts[i]) + 3;
        if (!(tokens[i] = malloc(sizeof(int) * max))) {
            cli_error("out of memory");
            goto done;
        }
        if (lx_tokenize(toks[0], prompts[i], 1, 0, tokens[i], (int)max, &n_tokens[i], &err)) {
            if (o->prompts_file)
                cli_error("%s: line %d: %s", o->prompts_file, i + 1, err.message);
            else
                cli_error("prompt: %s", err.message);
            goto done;
        }
        longest = n_tokens[i] > longest ? n_tokens[i] : longest;
    }
    /* The context: -c, or what the longest prompt + -n needs, at most every member's seq_len. */
    LxEnsembleParams ep = o->ensemble;
    int usable = lx_models_context(models, k);
    if (o->n_ctx > usable) {
        cli_error("-c: %d is more than the %d positions %s holds (seq_len)", o->n_ctx, usable,
                  k > 1 ? "the smallest member" : lx_model_path(models[0]));
        status = EXIT_USAGE;
        goto done;
    }
    ep.n_ctx = o->n_ctx ? o->n_ctx : o->n_predict < 0 || o->n_predict > usable - longest ? usable : longest + o->n_predict;
    if (longest > ep.n_ctx) {
        cli_error("the longest prompt is %d tokens but the context is %d (%s)", longest, ep.n_ctx,
                  o->n_ctx ? "-c" : "the smallest member's seq_len");
        status = EXIT_USAGE;
        goto done;
    }
    int parallel = o->parallel ? o->parallel : total < 16 ? (int)total : 16;
    if (parallel > total)
        parallel = (int)total;
    /* Memory: every active sequence holds a KV cache in every member. */
    double per_sequence = 0, per_member[CLI_MAX_MEMBERS], available = memory_available();
    for (int i = 0; i < k; i++) {
        LxModelConfig c = lx_model_config(models[i]);
        per_sequence += per_member[i] = (double)lx_kv_cache_bytes(&c, ep.n_ctx);
    }
    double need = per_sequence * parallel;
    if (available > 0 && need > 0.8 * available) {
        cli_error("--parallel %d with -c %d needs %.1f MB of KV caches (%.1f MB per sequence over %d member%s), "
                  "more than 80%% of the %.1f MB available: lower --parallel or -c", parallel, ep.n_ctx, need / 1e6,
                  per_sequence / 1e6, k, k > 1 ? "s" : "", available / 1e6);
        status = EXIT_USAGE;
        goto done;
    }
    if (lx_batch_new(models, k, toks, n_tokenizers, &ep, parallel, &b, &err)) {
        status = cli_library_error(&err);
        goto done;
    }
    LxGenerateParams g = {.n_predict = o->n_predict, .stop = o->stop, .n_stop = o->n_stop};
    for (int i = 0; i < n_prompts; i++)
        for (int j = 0; j < o->n_samples; j++) {
            Output *out = &outs[(long)i * o->n_samples + j];
            out->prompt_index = i;
            out->sample = j;
            out->seed = o->seed + (unsigned long long)j;
            if (lx_batch_add(b, tokens[i], n_tokens[i], out->seed, &g, collect, out, NULL, &err)) {
                status = cli_library_error(&err);
                goto done;
            }
        }
    long next = 0, generated = 0; /* the next output to print, in input order */
    double start = seconds();
    int id;
    LxGenerateStats st;
    while (next < total) {
        if (lx_batch_step(b, &err)) {
            status = cli_library_error(&err);
            goto done;
        }
        while (lx_batch_finished(b, &id, &st)) {
            outs[id].stats = st;
            outs[id].done = 1;
            generated += st.n_generated;
            if (outs[id].failed) {
                cli_error("out of memory for the generated text");
                goto done;
            }
        }
        for (; next < total && outs[next].done; next++)
            if (print_output(&outs[next], prompts[outs[next].prompt_index], o->jsonl) || cli_flush())
                goto done;
    }
    double elapsed = seconds() - start;
    for (int i = 0; i < k; i++) {
        long calls, rows;
        lx_batch_member_counts(b, i, &calls, &rows);
        fprintf(stderr, "llamix: member %d (%s): %ld batched forward calls, %ld rows; KV cache %.2f MB per sequence\n",
                i + 1, lx_model_path(models[i]), calls, rows, per_member[i] / 1e6);
    }
    fprintf(stderr, "llamix: %s, %d member%s, seeds %llu..%llu: %ld sequences, %ld tokens generated in %.2f s "
            "(%.1f tok/s aggregate, prompts included)\n", k > 1 ? lx_mode_name(ep.mode) : "one model", k, k > 1 ? "s" : "",
            o->seed, o->seed + (unsigned long long)o->n_samples - 1, total, generated, elapsed,
            elapsed > 0 ? generated / elapsed : 0.0);
    fprintf(stderr, "llamix: KV caches: %.2f MB per sequence (context %d) x %d at once (--parallel) = %.2f MB\n",
            per_sequence / 1e6, ep.n_ctx, parallel, need / 1e6);
    status = EXIT_OK;
done:
    lx_batch_free(b);
    if (outs)
        for (long i = 0; i < total; i++) {
            free(outs[i].text);
            free(outs[i].tokens);
            free(outs[i].members);
            free(outs[i].logprobs);
        }
    free(outs);
    for (int i = 0; tokens && i < n_prompts; i++)
        free(tokens[i]);
    free(tokens);
    free(n_tokens);
    free(prompts);
    free(file_text);
    return status;
}
