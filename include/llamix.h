/* llamix.h: the public API of llamix, LLM ensembling on the CPU.
 *
 * llamix samples text from an ensemble of K language models (llama2.c checkpoints) with weights
 * w_k. The conventional ensemble (CE) runs every member at every step and draws the next token
 * from q = sum_k w_k S(p_k), where p_k is member k's next-token distribution and S the sampling
 * transform (temperature, top-k, top-p, min-p). The mixture-model-like ensemble (ME, Fu et al.,
 * ICML 2026) draws a member k ~ w first and then a token from S(p_k): the same distribution q,
 * but only one member runs per token. A member that sat idle catches up on the tokens it missed,
 * in one batched forward, when it is next picked.
 *
 * Tutorial. Open the members and the tokenizer they share, build an ensemble, generate:
 *
 *     #include <llamix.h>
 *     #include <stdio.h>
 *
 *     static int print_token(void *user, const LxTokenEvent *ev)
 *     {
 *         (void)user;
 *         fwrite(ev->text, 1, ev->text_length, stdout);   // the text this token released
 *         return 0;                                       // nonzero would stop generation
 *     }
 *
 *     int main(void)
 *     {
 *         LxError err;
 *         LxModel *models[2] = {NULL, NULL};
 *         LxTokenizer *tok = NULL;
 *         LxEnsemble *e = NULL;
 *         if (lx_model_open("a.bin", &models[0], &err) || lx_model_open("b.bin", &models[1], &err) ||
 *             lx_tokenizer_open("tok.bin", lx_model_config(models[0]).vocab_size, &tok, &err))
 *             goto fail;
 *
 *         LxEnsembleParams p = lx_ensemble_defaults();    // ME, uniform weights, T 1, top-p 0.9
 *         double weights[2] = {0.7, 0.3};
 *         p.weights = weights;
 *         p.seed = 42;
 *         if (lx_ensemble_new(models, 2, &tok, 1, &p, &e, &err))
 *             goto fail;
 *
 *         LxGenerateParams g = lx_generate_defaults();    // 256 tokens, stop at end of text
 *         LxGenerateStats stats;
 *         if (lx_generate(e, "Once upon a time", &g, print_token, NULL, &stats, &err))
 *             goto fail;
 *         printf("\n%d tokens, stopped by %s\n", stats.n_generated, lx_stop_name(stats.stop));
 *         lx_ensemble_free(e);
 *         lx_tokenizer_free(tok);
 *         lx_model_close(models[0]);
 *         lx_model_close(models[1]);
 *         return 0;
 *     fail:
 *         fprintf(stderr, "%s\n", err.message);
 *         ...free what was opened (every free accepts NULL)...
 *         return 1;
 *     }
 *
 * Build it with `cc prog.c $(pkg-config --cflags --libs llamix)`. examples/embed.c is this
 * program in full.
 *
 * Conventions.
 *   - Every function that can fail returns an LxStatus (LX_OK is 0) and, when err is not NULL,
 *     fills it with the status and a one-line message naming the file or setting and the problem.
 *     The library never prints, never exits, and installs no signal handler.
 *   - Objects are opaque and come in pairs: lx_X_open / lx_X_new allocate, lx_X_close / lx_X_free
 *     release (NULL is accepted). On failure *out is set to NULL.
 *   - Lifetimes: a model and a tokenizer must outlive every ensemble built on them; the ensemble
 *     only borrows them. Strings returned by the library point into the object they came from and
 *     stay valid until it is freed (or, for an LxTokenEvent, until the callback returns).
 *   - Threads: a model and a tokenizer are read-only after opening and may be shared by any
 *     number of threads and ensembles. An ensemble belongs to one thread at a time. Each ensemble
 *     uses the number of threads in its parameters (OpenMP num_threads clauses): nothing here
 *     calls omp_set_num_threads, so two ensembles may use different thread counts.
 *   - Process-wide state, all of it explicit: lx_blas_single_thread() (pins a threaded OpenBLAS
 *     to one thread; the llamix program calls it, a library never does) and the choice of vector
 *     kernels (AVX-512, AVX2 or plain C), made from the CPU's features on first use and reported
 *     by lx_kernel_name().
 *   - Greedy decoding (temperature 0) is the one case where CE and ME differ: CE takes the argmax
 *     of sum_k w_k p_k, ME the argmax of the member it picked. */
#ifndef LLAMIX_H
#define LLAMIX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LX_API __attribute__((visibility("default")))
#else
#define LX_API
#endif

/* ------------------------------------------------------------------ errors, version, runtime */

typedef enum {
    LX_OK = 0,
    LX_ERR_ARGUMENT, /* a bad argument or setting */
    LX_ERR_FILE,     /* a file is missing, unreadable, or not in the expected format */
    LX_ERR_MEMORY,   /* out of memory */
    LX_ERR_IO,       /* reading or writing failed (disk full, ...) */
    LX_ERR_CONTEXT,  /* the sequence does not fit in the context */
} LxStatus;

#define LX_ERROR_LENGTH 512
typedef struct {
    LxStatus status;
    char message[LX_ERROR_LENGTH]; /* one line, no newline */
} LxError;

/* "0.2.0" and the like. */
LX_API const char *lx_version(void);
/* "ok", "bad argument", "bad file", "out of memory", "I/O error", "context full". */
LX_API const char *lx_status_name(LxStatus status);

/* Pin a threaded OpenBLAS to one thread. llamix splits every matrix product over its own threads
 * and calls BLAS (for large batches) from each of them, so BLAS threads of its own would
 * oversubscribe the cores. Process-wide: call it once at start-up if nothing else in the program
 * wants BLAS threads. Does nothing when llamix was built without OpenBLAS. */
LX_API void lx_blas_single_thread(void);
/* The threads an ensemble with threads = 0 uses: OpenMP's default (OMP_NUM_THREADS, or every
 * core); 1 without OpenMP. */
LX_API int lx_threads_default(void);
/* The vector kernels in use: "avx512", "avx2" or "generic". The choice is made from the CPU's
 * features on the first call of this or of any forward pass, once for the process. */
LX_API const char *lx_kernel_name(void);

/* ------------------------------------------------------------------ models */

typedef struct LxModel LxModel; /* a llama2.c checkpoint, mapped read-only */

typedef struct {
    int dim;        /* model width */
    int hidden_dim; /* feed-forward width */
    int n_layers;
    int n_heads;
    int n_kv_heads; /* < n_heads: grouped-query attention */
    int vocab_size;
    int seq_len;    /* the longest context the model was made for */
} LxModelConfig;

/* Map a checkpoint (llama2.c version 0 or 1, fp32; version 2, int8 Q8_0) read-only and validate
 * it: every size in the header is checked for overflow and against the file's size, the weights
 * for NaN and infinity (version 2: the norms and scales; scales must also be >= 0). Members of
 * either format mix freely in one ensemble. The caller owns *out and closes it with
 * lx_model_close() after every ensemble using it is freed. */
LX_API LxStatus lx_model_open(const char *path, LxModel **out, LxError *err);
LX_API void lx_model_close(LxModel *m);
LX_API LxModelConfig lx_model_config(const LxModel *m);
LX_API const char *lx_model_path(const LxModel *m);
/* The file's format: version 0, 1 (fp32) or 2 (Q8_0), and its group size (weights per scale;
 * 0 for fp32). */
LX_API int lx_model_version(const LxModel *m);
LX_API int lx_model_group_size(const LxModel *m);
/* The mapped file: *data and *size cover it. If the file is truncated or rewritten in place while
 * mapped, reading the lost pages raises SIGBUS; the library installs no handler (a program that
 * wants to report it can check the faulting address against this range, as llamix does). */
LX_API void lx_model_mapping(const LxModel *m, const void **data, size_t *size);
/* Bytes of weights one forward pass reads (every matrix and the classifier), in fp32; a model's
 * own (int8 values and scales for Q8_0): lx_model_stream_bytes. */
LX_API size_t lx_model_weight_bytes(const LxModelConfig *c);
LX_API size_t lx_model_stream_bytes(const LxModel *m);

/* A named shape, for random checkpoints: "tiny", "260K", "15M", "42M", "110M". */
LX_API LxStatus lx_model_shape(const char *name, LxModelConfig *out, LxError *err);
/* Write a checkpoint of config c with random weights N(0, std^2) (std 0: 1/sqrt(dim)) from
 * seed, in version 0 or 1, with a shared or separate classifier; version 2 writes the version 1
 * model of that seed quantized to Q8_0 with the default group size (as lx_model_quantize). For
 * tests and benchmarks. Written atomically (a temporary file renamed over path). */
LX_API LxStatus lx_model_write_random(const char *path, const LxModelConfig *c, int version,
                                      int shared_classifier, uint64_t seed, float std, LxError *err);
/* Write the fp32 model m as a version 2 (Q8_0) checkpoint at path, byte for byte as llama2.c's
 * export.py version2_export: groups of group_size weights of a row share one scale max|w| / 127,
 * each weight stored as round-half-even(w / scale) in int8. group_size 0 picks the largest of
 * at most 64 that divides dim and hidden_dim; a given one must divide both (else
 * LX_ERR_ARGUMENT). An int8 m is refused. Written atomically. */
LX_API LxStatus lx_model_quantize(const LxModel *m, const char *path, int group_size, LxError *err);

/* ------------------------------------------------------------------ tokenizer */

typedef struct LxTokenizer LxTokenizer; /* llama2.c's tokenizer.bin: byte-pair merges by score */

#define LX_TOKEN_BOS 1 /* beginning of text (llama2.c) */
#define LX_TOKEN_EOS 2 /* end of text */

/* Load a tokenizer of exactly vocab_size entries (0: as many as the file holds). The caller owns
 * *out and frees it with lx_tokenizer_free() after every ensemble using it. */
LX_API LxStatus lx_tokenizer_open(const char *path, int vocab_size, LxTokenizer **out, LxError *err);
LX_API void lx_tokenizer_free(LxTokenizer *t);
LX_API int lx_tokenizer_vocab_size(const LxTokenizer *t);
/* Encode UTF-8 text as llama2.c does (BOS if bos, a dummy-prefix space, merges, byte fallback),
 * then EOS if eos. Writes at most max_tokens ids and the count to *n_tokens; strlen(text) + 3
 * ids always suffice. Fails on a character the vocabulary cannot represent. */
LX_API LxStatus lx_tokenize(const LxTokenizer *t, const char *text, int bos, int eos, int *tokens,
                            int max_tokens, int *n_tokens, LxError *err);
/* The raw piece of id ("<0x0A>", "\n<s>\n", ...), and the text to print for token after prev
 * (no space after BOS, byte pieces as bytes, lone control bytes dropped). Both point into t. */
LX_API const char *lx_token_piece(const LxTokenizer *t, int id);
LX_API const char *lx_token_text(const LxTokenizer *t, int prev, int token);

/* ------------------------------------------------------------------ ensembles */

typedef struct LxEnsemble LxEnsemble; /* K members, one shared sequence, a sampler */
typedef struct LxRouter LxRouter;     /* member weights from the token history (routing, below) */

typedef enum {
    LX_MODE_ME,         /* pick k ~ w, then draw from S(p_k): one member per token */
    LX_MODE_CE,         /* every member every token, draw from sum_k w_k S(p_k): ME's distribution */
    LX_MODE_CE_MIXTURE, /* draw from S(sum_k w_k p_k), the paper's CE code: another distribution,
                           equal to the others only at temperature 1 without truncation. With
                           top-k > 0, as the paper's code: the mixture restricted to the union of
                           the members' top-k tokens and renormalised before S (with different
                           vocabularies that is LX_MODE_CE_UNITE) */
    LX_MODE_CE_UNITE,   /* UniTE-style, the paper's baseline for different vocabularies: over the
                           union X of the members' top-k tokens (k: top-k, or 10 when it is off),
                           member k scores a token by its own probability of it (of its first
                           sub-token when it lacks it), renormalised over X; S on the weighted sum */
} LxMode;

/* S: temperature, then top-k, then top-p, then min-p, renormalised; ties by the lower id. */
typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
} LxSamplerParams;

typedef struct {
    const double *weights;   /* K weights (finite, > 0; normalised here), or NULL for uniform */
    const LxRouter *router;  /* NULL: the constant router of weights; else K weights per token
                                from the history (then weights must be NULL). Borrowed: it must
                                outlive the ensemble */
    int n_ctx;               /* positions to hold; 0: the smallest member's seq_len */
    int threads;             /* 0: lx_threads_default() */
    LxMode mode;
    LxSamplerParams sampler;
    uint64_t seed;           /* the token coins and ME's member coins both derive from it */
} LxEnsembleParams;

/* ME, uniform weights, the whole context, default threads, temperature 1, top-p 0.9, seed 0. */
LX_API LxEnsembleParams lx_ensemble_defaults(void);
/* Parse "me", "ce", "ce-mixture", "ce-unite"; LX_ERR_ARGUMENT otherwise. */
LX_API LxStatus lx_mode_parse(const char *name, LxMode *mode, LxError *err);
LX_API const char *lx_mode_name(LxMode mode);
/* Parse "0.5,0.3,0.2" into exactly k weights, each finite and > 0, with a finite sum. */
LX_API LxStatus lx_weights_parse(const char *text, int k, double *weights, LxError *err);

/* The longest context every one of k models supports: the smallest seq_len. */
LX_API int lx_models_context(LxModel *const *models, int k);

/* Build an ensemble of k members. Every check that spans members is made here: the same
 * vocabulary size, the weights, the sampler settings, the usable context (n_ctx at most every
 * member's seq_len), and the tokenizers: n_tokenizers is 1 (shared) or k (one per member, each of
 * its member's vocabulary size), or 0 for an ensemble driven by token ids only
 * (lx_generate_tokens; lx_generate then fails).
 *
 * Different tokenizers (k of them, not all identical; the vocabulary sizes may then differ): the
 * members meet in a union vocabulary U, the distinct byte strings of their pieces ("<0xXX>" is
 * the byte XX) plus three symbols: id 0 unknown (every <unk>), 1 end of text (every BOS and EOS),
 * 2 reserved (never drawn). The ensemble's ids are then U's (lx_ensemble_vocab_size,
 * lx_ensemble_token_text). CE draws from q(u) = sum_k w_k sum_{ids i of k spelling u} S(p_k)(i),
 * S taken in each member's own vocabulary; ME picks k ~ w, draws i ~ S(p_k) and u = i's string.
 * Every member, the one that drew u included, then appends the same encoding of u: its one piece
 * spelling u (the non-byte one if several, then the lowest id), else its tokenizer's encoding of
 * u's bytes without BOS or dummy prefix, bytes it cannot say becoming its unknown id (counted:
 * lx_ensemble_member_unknown). The members' states are thus functions of the union sequence
 * alone, and ME's distribution over sequences is exactly CE's. lx_generate encodes the prompt
 * with each member's own tokenizer (BOS, dummy prefix); lx_generate_tokens takes U ids (1 first:
 * every member's BOS). Routers (one vocabulary's ids) are refused, as are batches. models and tokenizers
 * are borrowed and must outlive the ensemble; the arrays themselves may be freed after the call.
 * Allocates every member's KV cache for n_ctx positions. The caller owns *out. */
LX_API LxStatus lx_ensemble_new(LxModel *const *models, int k, LxTokenizer *const *tokenizers,
                                int n_tokenizers, const LxEnsembleParams *params, LxEnsemble **out,
                                LxError *err);
LX_API void lx_ensemble_free(LxEnsemble *e);

/* Members, their normalised weights, and what each has run so far (forward calls and tokens
 * processed; ME's catch-ups show up as calls of several tokens). */
LX_API int lx_ensemble_size(const LxEnsemble *e);
LX_API int lx_ensemble_context(const LxEnsemble *e);
LX_API const LxEnsembleParams *lx_ensemble_params(const LxEnsemble *e); /* weights normalised */
/* The router in use: params.router, or the constant router of the weights (owned by e). */
LX_API const LxRouter *lx_ensemble_router(const LxEnsemble *e);
LX_API const LxTokenizer *lx_ensemble_tokenizer(const LxEnsemble *e); /* member 0's if they differ */
/* The ensemble's token ids: V of the shared vocabulary, or |U|; 1 if the members share one
 * vocabulary (0: the union vocabulary). */
LX_API int lx_ensemble_vocab_size(const LxEnsemble *e);
LX_API int lx_ensemble_shared_vocabulary(const LxEnsemble *e);
/* The text to print for an ensemble token id after prev, as lx_token_text; points into e. */
LX_API const char *lx_ensemble_token_text(const LxEnsemble *e, int prev, int token);
/* Union vocabulary: unknown ids member i received by the feeding back since the last reset (0
 * for a shared vocabulary), and the seconds spent mapping into U and feeding back. */
LX_API long lx_ensemble_member_unknown(const LxEnsemble *e, int i);
LX_API double lx_ensemble_mapping_seconds(const LxEnsemble *e);
LX_API void lx_ensemble_member_counts(const LxEnsemble *e, int i, long *forward_calls,
                                      long *tokens_processed);
/* Empty the sequence and zero the counters; the members stay loaded, the random streams go on. */
LX_API void lx_ensemble_reset(LxEnsemble *e);
/* Restart the random streams from seed (it becomes the seed every later lx_generate starts from). */
LX_API void lx_ensemble_set_seed(LxEnsemble *e, uint64_t seed);

/* The step-by-step interface under lx_generate. Append tokens to the shared sequence (no forward
 * runs here); LX_ERR_CONTEXT if they would not fit. */
LX_API LxStatus lx_ensemble_append(LxEnsemble *e, const int *tokens, int n, LxError *err);
LX_API int lx_ensemble_length(const LxEnsemble *e);
/* Draw the next token after the sequence, in the ensemble's mode (it is not appended). member
 * gets the member ME picked (-1 for CE), logprob the log-probability of the token under the
 * distribution it was drawn from (0 when greedy). Either may be NULL. */
LX_API LxStatus lx_ensemble_sample(LxEnsemble *e, int *token, int *member, float *logprob,
                                   LxError *err);
/* The exact next-token distribution of the mode, q (lx_ensemble_vocab_size): sum_k w_k S(p_k) for
 * CE and ME alike, S(sum_k w_k p_k) for ce-mixture (top-k restricted as above), ce-unite's, the
 * one-hot of CE's choice when greedy. Runs every member. */
LX_API LxStatus lx_ensemble_distribution(LxEnsemble *e, float *q, LxError *err);

/* ------------------------------------------------------------------ generation */

typedef enum {
    LX_STOP_END,      /* the ensemble drew end of text (BOS or EOS) */
    LX_STOP_BUDGET,   /* n_predict tokens generated */
    LX_STOP_CONTEXT,  /* the context is full */
    LX_STOP_STRING,   /* a stop string appeared in the text */
    LX_STOP_CALLBACK, /* the callback asked to stop */
} LxStopReason;

LX_API const char *lx_stop_name(LxStopReason reason); /* "end of text", "budget", ... */

typedef struct {
    int n_predict;                 /* tokens to generate; -1: until the context is full */
    const char *const *stop;       /* n_stop stop strings (may be NULL when n_stop is 0) */
    int n_stop;
    int ignore_eos;                /* 1: keep going through end-of-text tokens (benchmarks) */
} LxGenerateParams;

/* 256 tokens, no stop strings, stop at end of text. */
LX_API LxGenerateParams lx_generate_defaults(void);

/* What the callback hears once per generated token, and once more at the end when held-back
 * text remains (token -1 then). Text is released as soon as it cannot be the start of a stop
 * string: a token that might begin one releases nothing until that is decided, and the text of
 * a found stop string and everything after it is never released. */
typedef struct {
    int token;          /* the token id, -1 on the final release */
    int member;         /* the member ME picked, -1 for CE */
    float logprob;      /* log-probability of the token under the distribution sampled */
    int index;          /* 0 for the first generated token */
    const char *text;   /* the text released now (not NUL-terminated), valid during the call */
    size_t text_length;
    /* The distribution the token was drawn from (vocab_size entries, valid during the call), for
     * a sequence added with LxSequenceParams.distribution set (lx_batch_add_sequence); NULL
     * otherwise, on the final release, and for ME over members with different tokenizers. */
    const float *distribution;
    int vocab_size;
} LxTokenEvent;

/* Return 0 to go on, nonzero to stop (LX_STOP_CALLBACK). */
typedef int (*LxTokenCallback)(void *user, const LxTokenEvent *event);

typedef struct {
    int n_prompt;            /* prompt tokens (BOS included) */
    int n_generated;         /* tokens generated (an end-of-text token that stopped is not one) */
    double prompt_seconds;   /* from the start to the first token drawn (the prefill) */
    double generate_seconds; /* from the first token drawn to the last */
    LxStopReason stop;
    int stop_index;          /* which stop string, for LX_STOP_STRING; else -1 */
} LxGenerateStats;

/* Reset the ensemble and its random streams to its seed, encode prompt (with BOS) with its
 * tokenizer, and generate: draw a token, hand it to the callback, append it, until a stop
 * condition. So the same call on the same ensemble gives the same text (lx_ensemble_set_seed for
 * another sample). callback may be NULL; stats may be NULL. The per-member counters of
 * lx_ensemble_member_counts() then cover this generation. */
LX_API LxStatus lx_generate(LxEnsemble *e, const char *prompt, const LxGenerateParams *params,
                            LxTokenCallback callback, void *user, LxGenerateStats *stats,
                            LxError *err);
/* The same from prompt token ids (n_prompt >= 1; usually BOS first). */
LX_API LxStatus lx_generate_tokens(LxEnsemble *e, const int *prompt, int n_prompt,
                                   const LxGenerateParams *params, LxTokenCallback callback,
                                   void *user, LxGenerateStats *stats, LxError *err);

/* ------------------------------------------------------------------ batches */

/* Many sequences at once over one ensemble's members. On a CPU decoding is bound by memory
 * bandwidth, so S sequences that share one pass over a member's weights cost little more than
 * one. Each sequence has its own token sequence, sampler and random streams (from its own seed)
 * and its own KV cache in every member; lx_batch_step() advances every active sequence by one
 * token. CE runs each member once per step over every sequence's pending rows; ME lets every
 * sequence pick its member, and each member runs once over the spans (catch-ups) of the
 * sequences that picked it. A sequence draws exactly the tokens lx_generate_tokens() would with
 * its seed, up to float rounding (a batch of rows sums in another order than one row).
 *
 * Sequences join at any time (lx_batch_add) and wait, first come first served, until one of the
 * max_active slots is free; at the next step their prompts run in the same forward as the
 * others' decode rows. They end independently (end of text, budget, stop string, full context,
 * the callback's request), and a slot's KV caches go back to the batch's pool for the next
 * sequence. Memory: lx_batch_sequence_bytes() per active sequence, made on first use.
 *
 * Threads: a batch belongs to one thread at a time; callbacks run inside lx_batch_step() on it.
 * It uses params->threads like an ensemble. Models and tokenizers are borrowed as by
 * lx_ensemble_new() and must outlive the batch. */
typedef struct LxBatch LxBatch;

/* Bytes of one sequence's KV cache in one member of config c, for n_ctx positions:
 * 2 (keys, values) x n_layers x n_ctx x kv_dim floats. */
LX_API size_t lx_kv_cache_bytes(const LxModelConfig *c, int n_ctx);

/* A batch of at most max_active sequences at once over k members, with every check and setting
 * of lx_ensemble_new (params->seed is unused: each sequence brings its own). params->n_ctx is
 * every sequence's context. The caller owns *out. */
LX_API LxStatus lx_batch_new(LxModel *const *models, int k, LxTokenizer *const *tokenizers, int n_tokenizers,
                             const LxEnsembleParams *params, int max_active, LxBatch **out, LxError *err);
LX_API void lx_batch_free(LxBatch *b);

/* Queue a sequence: prompt (n_prompt >= 1 token ids, copied; usually BOS first) and seed, as
 * for lx_generate_tokens on an ensemble with that seed. params (NULL: the defaults) is copied but
 * its stop strings are borrowed until the sequence ends; callback (may be NULL) hears its tokens
 * as in lx_generate, during lx_batch_step. *id (may be NULL) gets the sequence's id, unique in
 * this batch (0, 1, 2, ... in the order added). */
LX_API LxStatus lx_batch_add(LxBatch *b, const int *prompt, int n_prompt, uint64_t seed,
                             const LxGenerateParams *params, LxTokenCallback callback, void *user, int *id,
                             LxError *err);
/* A sequence's own settings, for lx_batch_add_sequence: the ensemble's mode, weights and sampler
 * and the seed, as an LxEnsembleParams of a lone run would give them, and the generation's. */
typedef struct {
    LxMode mode;
    const double *weights;     /* k weights (copied; normalised as lx_ensemble_new does), or NULL:
                                  the batch's (with a router: must be NULL) */
    LxSamplerParams sampler;
    uint64_t seed;
    LxGenerateParams generate; /* its stop strings are borrowed until the sequence ends */
    int distribution;          /* 1: every event carries the distribution drawn from (costs one
                                  pass of S over the vocabulary per token) */
} LxSequenceParams;

/* The batch's own settings (its mode, weights, sampler), seed 0, lx_generate_defaults(). */
LX_API LxSequenceParams lx_batch_sequence_defaults(const LxBatch *b);
/* lx_batch_add with a sequence's own settings: it draws exactly what lx_generate_tokens would on
 * an ensemble made with that mode, weights, sampler and seed. Checked here (LX_ERR_ARGUMENT). */
LX_API LxStatus lx_batch_add_sequence(LxBatch *b, const int *prompt, int n_prompt, const LxSequenceParams *params,
                                      LxTokenCallback callback, void *user, int *id, LxError *err);
LX_API int lx_batch_size(const LxBatch *b); /* members */
/* One token for every active sequence, after admitting waiting ones into free slots. Sequences
 * that end are moved to the finished list (lx_batch_finished). Nothing to do is not an error. */
LX_API LxStatus lx_batch_step(LxBatch *b, LxError *err);
/* Take the oldest finished sequence: returns 1 and fills *id and *stats (either may be NULL), or
 * returns 0 when none is left. */
LX_API int lx_batch_finished(LxBatch *b, int *id, LxGenerateStats *stats);
/* Drop a waiting or active sequence (its slot returns to the pool; no callback, no finished
 * entry). LX_ERR_ARGUMENT if id is neither. */
LX_API LxStatus lx_batch_remove(LxBatch *b, int id, LxError *err);

LX_API int lx_batch_active(const LxBatch *b);  /* sequences in slots */
LX_API int lx_batch_waiting(const LxBatch *b); /* sequences queued for a slot */
LX_API int lx_batch_context(const LxBatch *b); /* every sequence's context */
/* KV cache bytes one active sequence holds (all members), and the bytes of the states made so far
 * (the pool: at most max_active sequences' worth, kept for reuse until lx_batch_free). */
LX_API size_t lx_batch_sequence_bytes(const LxBatch *b);
LX_API size_t lx_batch_pool_bytes(const LxBatch *b);
/* Member i's work so far: batched forward calls and the rows they ran (all sequences). */
LX_API void lx_batch_member_counts(const LxBatch *b, int i, long *forward_calls, long *rows);

/* ------------------------------------------------------------------ scoring */

/* How well each member, and their mixture, predicts a text. The text is tokenised (BOS first)
 * and cut into non-overlapping windows of `context` tokens, each starting with BOS; every text
 * token is scored once, given its window's earlier tokens, by every member. What is kept is one
 * log-probability per (member, token), from which the ensemble's likelihood for any weights, and
 * the maximum-likelihood weights, follow without running a model again. */
typedef struct LxScore LxScore;

/* Called after each window of member (0-based) with the tokens it has scored so far, the total,
 * and their summed negative log-likelihood (nll_sum / done estimates its mean NLL). */
typedef void (*LxScoreProgress)(void *user, int member, long done, long total, double nll_sum);

typedef struct {
    int context;              /* window length in tokens, BOS included (>= 2; 0: the smallest seq_len) */
    int threads;              /* 0: lx_threads_default() */
    LxScoreProgress progress; /* may be NULL */
    void *user;
} LxScoreParams;

/* Score text (NUL-terminated) with k members sharing tokenizer t; LX_ERR_CONTEXT when the context
 * is not from 2 to the smallest seq_len. The caller owns *out. */
LX_API LxStatus lx_score_text(LxModel *const *models, int k, const LxTokenizer *t, const char *text,
                              const LxScoreParams *params, LxScore **out, LxError *err);
LX_API void lx_score_free(LxScore *s);
LX_API long lx_score_tokens(const LxScore *s);  /* tokens scored */
LX_API int lx_score_context(const LxScore *s);  /* the window length used */
LX_API long lx_score_windows(const LxScore *s); /* windows the text was cut into */
/* Mean negative log-likelihood in nats per token: of member i, and of the mixture with weights
 * w (k, summing to 1), -(1/N) sum_t log sum_k w_k p_k(x_t). */
LX_API double lx_score_member_nll(const LxScore *s, int i);
LX_API double lx_score_ensemble_nll(const LxScore *s, const double *w);
/* Standard errors over tokens. A series is member i (0-based) or LX_SCORE_ENSEMBLE, the mixture
 * with weights w (w is read only for the ensemble). lx_score_nll_se returns the series' mean NLL
 * and writes to *se its standard error sd/sqrt(N) (sd over the N per-token losses, divisor N - 1).
 * lx_score_nll_difference returns the mean of the paired per-token difference, series a minus
 * series b (e.g. the ensemble minus the best member, or an int8 copy minus its fp32 original),
 * and its standard error, which counts that both were scored on the same tokens. Tokens are
 * treated as independent, which neighbouring tokens of a text are not quite: read the SE as a
 * lower bound. Perplexity's SE by the delta method is exp(nll) * se. se is NaN when N < 2; a
 * series out of range gives NaN. */
#define LX_SCORE_ENSEMBLE (-1)
LX_API double lx_score_nll_se(const LxScore *s, int i, const double *w, double *se);
LX_API double lx_score_nll_difference(const LxScore *s, int a, int b, const double *w, double *se);
typedef struct {
    int iterations; /* EM steps applied */
    int converged;  /* 1 if a step gained at most tol before max_iter */
    double nll;     /* the mixture's mean NLL with the fitted weights */
} LxScoreFit;

/* Maximum-likelihood weights by EM from uniform, until a step gains at most tol nats per token
 * or after max_iter steps; each step never raises the NLL. Writes w (k) and *fit (may be NULL). */
LX_API LxStatus lx_score_fit_weights(const LxScore *s, double *w, int max_iter, double tol,
                                     LxScoreFit *fit, LxError *err);
/* Read a whole text file ("-": standard input) into a NUL-terminated string the caller frees
 * with free(). Fails on a missing, unreadable, empty or NUL-holding file. */
LX_API LxStatus lx_read_text(const char *path, char **text, size_t *length, LxError *err);

/* ------------------------------------------------------------------ routing */

/* A router gives the member weights r(x_<=t) (K, summing to 1) for the next token as a function
 * of the token history only, never of the members' outputs at that step. Then ME, picking
 * k ~ r(x_<=t) and drawing from S(p_k), samples exactly from q = sum_k r_k(x_<=t) S(p_k), which
 * CE computes by running every member; ME still runs one member per token. Fixed weights are the
 * constant router. Kinds:
 *   "constant"        r = w for every history;
 *   "previous-token"  a V x K table: r(x_<=t) = row x_t (the last token), fitted by EM
 *                     (lx_score_fit_router) and kept in a router file.
 * A router is read-only once made: it may be shared by any number of threads and ensembles, and
 * must outlive every ensemble using it. The caller owns it and frees it with lx_router_free(). */

/* The constant router of k weights (finite, > 0; normalised here; NULL: uniform). */
LX_API LxStatus lx_router_constant(int k, const double *weights, LxRouter **out, LxError *err);
/* Load a router file, validating its sizes against the file, every value finite, the weights and
 * each table row summing to 1 within 1e-4 (then renormalised). Errors name the file. */
LX_API LxStatus lx_router_open(const char *path, LxRouter **out, LxError *err);
/* Write r to path atomically (a temporary file in the same directory, fsync, rename; the
 * temporary is removed on failure). The constant router cannot be saved (-w says it all). */
LX_API LxStatus lx_router_save(const LxRouter *r, const char *path, LxError *err);
LX_API void lx_router_free(LxRouter *r);
LX_API const char *lx_router_name(const LxRouter *r);  /* "constant", "previous-token" */
LX_API int lx_router_size(const LxRouter *r);          /* K */
LX_API int lx_router_vocab_size(const LxRouter *r);    /* V it keys on; 0: any */
/* The fixed weights (K): the constant router's, or those a table was smoothed toward. Point into r. */
LX_API const double *lx_router_fixed_weights(const LxRouter *r);
LX_API double lx_router_prior(const LxRouter *r);      /* alpha; 0 for the constant router */
/* w (K) = r(tokens[0..n)), the weights for the token after that history (n >= 1, ids < V). */
LX_API LxStatus lx_router_weights(const LxRouter *r, const int *tokens, int n, double *w, LxError *err);

typedef struct {
    int iterations;      /* EM steps of the table */
    int converged;       /* 1 if a step gained at most tol before max_iter */
    double nll_fixed;    /* training mean NLL with the EM-fitted fixed weights */
    double nll;          /* training mean NLL with the fitted router */
    double objective;    /* the penalised NLL the table's EM minimises (see router.c) */
} LxRouterFit;

/* Fit a previous-token router to a scored text: the fixed weights w by EM first, then the table
 * by EM with a prior of strength alpha (>= 0) toward w, until a step gains at most tol (nats per
 * token) or after max_iter steps; no step raises the penalised NLL. Windows as in the score: a
 * window's first token has BOS as its previous token. The caller owns *out. fit may be NULL. */
LX_API LxStatus lx_score_fit_router(const LxScore *s, double alpha, int max_iter, double tol,
                                    LxRouter **out, LxRouterFit *fit, LxError *err);
/* The mean NLL of the text under the routed mixture, -(1/N) sum_t log sum_k r_k(h_t) p_k(x_t),
 * with h_t the token's window history; r must have the score's K (and V, if it keys on one). */
LX_API LxStatus lx_score_router_nll(const LxScore *s, const LxRouter *r, double *nll, LxError *err);

#ifdef __cplusplus
}
#endif

#endif
