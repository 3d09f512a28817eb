/* ensemble.h: K members, one shared token sequence, and the two ways to sample from the mixture.
 *
 *   CE (conventional ensemble): every step runs every member and draws the next token from
 *        q = sum_k w_k S(p_k).
 *   ME (mixture-model-like ensemble): every step draws one member k ~ Categorical(w) and then a
 *        token from S(p_k). Marginally that token has distribution sum_k w_k S(p_k) = q, exactly
 *        CE's, but only member k ran. A member that sat idle catches up when it is next picked:
 *        ensemble_sync() runs all the tokens it has not seen in one batched forward.
 *   CE-mixture: mixes the raw p_k first and applies temperature/top-k/top-p to the mixture, as the
 *        paper's own code does. A different distribution: it equals CE and ME only at T = 1
 *        without truncation.
 * Greedy (T = 0): CE takes the argmax of the mixture; ME can only take the argmax of the member
 * it picked, which is not CE's greedy output. */
#ifndef LLAMIX_ENSEMBLE_H
#define LLAMIX_ENSEMBLE_H

#include "forward.h"
#include "model.h"
#include "sampler.h"

typedef enum { ENSEMBLE_CE, ENSEMBLE_CE_MIXTURE, ENSEMBLE_ME } EnsembleMode;

/* Parse "ce", "ce-mixture", "me"; -1 if unknown. */
int ensemble_mode_parse(const char *name, EnsembleMode *mode);
const char *ensemble_mode_name(EnsembleMode mode);

typedef struct {
    const Model *model;
    ForwardState state;
    int n_seen;          /* tokens of the shared sequence already in this member's KV cache */
    float *logits;       /* (V) next-token logits after the last sync */
    long forward_calls;  /* counters */
    long tokens_processed;
} Member;

typedef struct {
    int k;                /* number of members */
    Member *members;      /* (k) */
    double *weights;      /* (k) normalised to sum 1 */
    int vocab_size;       /* V, shared */
    int n_ctx;            /* usable context: the smallest member's seq_len, or less if asked */
    int *tokens;          /* (n_ctx) the shared sequence */
    int n_tokens;
    EnsembleMode mode;
    Sampler sampler;
    Rng token_rng;        /* coins for tokens */
    Rng member_rng;       /* coins for ME's member choice: its own stream */
    float *probs;         /* (V) scratch: S(p_k) */
    float *mix;           /* (V) scratch: the mixture */
} Ensemble;

/* Weights: NULL means uniform; otherwise k finite values > 0, normalised here. Members must have
 * the same vocab_size. n_ctx = 0 means the smallest seq_len. On failure *e is safe to free. */
int ensemble_init(Ensemble *e, const Model *const *models, const double *weights, int k,
                  int n_ctx, EnsembleMode mode, SamplerParams params, uint64_t seed, char err[]);
void ensemble_free(Ensemble *e);

/* Parse "0.5,0.3,0.2" into k weights (k must match); -1 with a message otherwise. */
int ensemble_parse_weights(const char *text, int k, double *weights, char err[]);

/* Append tokens to the shared sequence (no forward runs here). -1 if the context is full. */
int ensemble_append(Ensemble *e, const int *tokens, int n, char err[]);

/* Bring member i up to date: one batched forward over every token it has not seen (classifier on
 * the last row only). Returns its next-token logits (V), or NULL with a message. */
const float *ensemble_sync(Ensemble *e, int i, char err[]);

/* One step in e->mode: computes the next token into *token. Does not append it. */
int ensemble_step(Ensemble *e, int *token, char err[]);

/* The exact next-token distribution of e->mode for the current sequence (syncs every member):
 * sum_k w_k S(p_k) for CE and ME (they are the same), S(sum_k w_k p_k) for CE-mixture.
 * Greedy settings give the one-hot of the token CE would take. q is (V). */
int ensemble_distribution(Ensemble *e, float *q, char err[]);

/* Reset the sequence and every member's cache and counters (the models stay loaded). */
void ensemble_reset(Ensemble *e);

#endif
