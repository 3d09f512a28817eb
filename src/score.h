/* score.h: how well each member, and their mixture, predicts a text; and the mixture weights
 * that predict it best.
 *
 * CE and ME sample from the same distribution q(x) = sum_k w_k p_k(x) (at temperature 1 without
 * truncation), so they have one perplexity between them: the ensemble's log-likelihood of a token
 * x is log sum_k w_k p_k(x). Computing it needs every member's p_k(x), so scoring always runs
 * every member over the whole text; ME's saving is in sampling, not here.
 *
 * Windows (non-overlapping): the tokenised text is BOS x_1 x_2 ... x_N. It is cut into windows of
 * at most `context` tokens, each BOS followed by up to context - 1 text tokens:
 *     BOS x_1 .. x_{C-1} | BOS x_C .. x_{2C-2} | ...        (C = context)
 * and every text token is scored exactly once, given BOS and the earlier tokens of its own window.
 * A token early in a window sees little context, so these numbers are a little worse than a
 * sliding window's; in exchange each token is run through each model exactly once. All members
 * use the same windows, so their per-token probabilities refer to the same prefixes and can be
 * mixed token by token.
 *
 * What is kept: one number per (member, token), log p_k(x_t | window prefix), in a ScoreTable.
 * Memory is tokens x members, never tokens x vocabulary; the ensemble's likelihood for any
 * weights, and the EM fit of the weights, are computed from the table without running a model
 * again. */
#ifndef LLAMIX_SCORE_H
#define LLAMIX_SCORE_H

#include <stddef.h>

#include "model.h"

/* The most members a table holds (the functions below keep per-member scratch on the stack). */
#define SCORE_MAX_MEMBERS 64

/* log p_k(x_t) for K members and N scored tokens. The functions that take a table assume it
 * came from score_table_init (1 <= K <= SCORE_MAX_MEMBERS, N >= 1). */
typedef struct {
    int k;        /* K members */
    long n;       /* N tokens scored */
    double *logp; /* (K, N): logp[i * n + t] = log p_i(token t + 1 of the text | its window) */
} ScoreTable;

/* Allocate a K x N table (zeroed). On failure *t is safe to pass to score_table_free. */
int score_table_init(ScoreTable *t, int k, long n, char err[]);
void score_table_free(ScoreTable *t); /* safe on a zeroed table */

/* Called after each window: `done` of `total` tokens scored so far, with nll_sum the sum of
 * -log p over them (so nll_sum / done is a running estimate of the mean NLL). */
typedef void (*ScoreProgress)(void *user, long done, long total, double nll_sum);

typedef struct {
    int context;            /* window length in tokens, BOS included; >= 2, <= the model's seq_len */
    int max_batch;          /* rows per forward call (the logits buffer is max_batch x V); 0 = default */
    ScoreProgress progress; /* may be NULL */
    void *user;             /* passed to progress */
} ScoreOptions;

/* Tokens scored per window: context - 1. Windows needed for a text of n tokens (BOS included). */
long score_windows(long n, int context);

/* Score one member: tokens (n) is the tokenised text with tokens[0] == BOS, n >= 2; writes
 * logp[t] = log p(tokens[t + 1] | BOS and the earlier tokens of its window) for t < n - 1.
 * Runs forward() with all rows' logits, max_batch rows at a time, and keeps only the one
 * log-softmax value per row that is needed (computed in double, stable). */
int score_member(const Model *m, const int *tokens, long n, const ScoreOptions *options,
                 double *logp, char err[]);

/* Mean negative log-likelihood, in nats per token, of member i: -(1/N) sum_t logp[i][t]. */
double score_member_nll(const ScoreTable *t, int i);

/* The ensemble's mean NLL for weights w (K, summing to 1; zeros allowed):
 *     -(1/N) sum_t log sum_k w_k exp(logp[k][t])        (log-sum-exp, so nothing underflows).
 * By Jensen (log is concave) it is at most sum_k w_k * score_member_nll(t, k). */
double score_ensemble_nll(const ScoreTable *t, const double *w);

/* Perplexity exp(nll) and bits per token nll / ln 2. */
double score_perplexity(double nll);
double score_bits(double nll);

/* The result of fitting the weights. */
typedef struct {
    int iterations; /* EM steps applied */
    int converged;  /* 1 if the NLL stopped improving by more than tol before max_iter */
    double nll;     /* the ensemble's mean NLL with the fitted weights */
} ScoreFit;

/* Maximum-likelihood mixture weights by EM, starting from uniform. One step is
 *     r_k(t) = w_k p_k(x_t) / sum_j w_j p_j(x_t)        (responsibility of member k for token t)
 *     w_k   <- (1/N) sum_t r_k(t)
 * Stops when a step improves the mean NLL by at most tol (nats per token), or after max_iter
 * steps. The NLL never increases from one step to the next (see score.c). Writes the weights to
 * w (K). If trace is not NULL it receives the NLL before each step and after the last one:
 * fit->iterations + 1 values, so it must hold max_iter + 1. */
int score_fit_weights(const ScoreTable *t, double *w, int max_iter, double tol, double *trace,
                      ScoreFit *fit, char err[]);

/* Check weights the way -w and ensemble_init do (finite, > 0, a finite sum) and normalise them
 * to sum 1 in place. */
int score_weights_normalise(double *w, int k, char err[]);

/* Read a whole text file ("-" is standard input) into a malloc'd NUL-terminated string; *length
 * gets its size. Fails, naming the file, if it is missing, unreadable, a directory, empty, has a
 * NUL byte, or is too large to tokenise. The caller frees the result. */
char *score_read_text(const char *path, size_t *length, char err[]);

#endif
