/* batch.c: many sequences over one ensemble's members, one token each per step.
 *
 * The idea in one line: a decode step of one sequence streams all of a member's weights to
 * multiply them by a single row, so S sequences that run through the member together pay that
 * stream once. A step therefore goes in three phases:
 *   1. plan: every active sequence says which members its next draw needs (ensemble_plan: ME's
 *      pick, made on a copy of its own member stream, or every member for CE);
 *   2. forward: each member that someone needs runs once, forward_spans over the pending rows of
 *      all the sequences that need it: a one-token decode, an ME catch-up of several, or a
 *      newcomer's whole prompt, side by side in every matrix product, each attending to its
 *      own cache;
 *   3. draw: every sequence steps its own ensemble, whose members are now in sync, so
 *      ensemble_step runs no forward and draws exactly what a lone run would with the same coins.
 * The sequences' member states are cache-only: the scratch of a forward is the work state each
 * member has in the batch's engine ensemble. */
#include "config.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* More sequences than this at once would not gain: the products are compute-bound long before. */
#define BATCH_MAX_ACTIVE 4096

size_t lx_kv_cache_bytes(const LxModelConfig *c, int n_ctx) { return forward_cache_bytes(c, n_ctx); }

void lx_batch_free(LxBatch *b)
{
    if (!b)
        return;
    for (int s = 0; s < b->max_active && b->slots; s++)
        if (b->slots[s].made) {
            if (b->slots[s].id >= 0)
                generation_end(&b->slots[s].g, LX_ERR_ARGUMENT, NULL); /* frees its text, no callback */
            ensemble_free(&b->slots[s].e);
        }
    for (int i = b->queue_head; i < b->n_queue; i++) {
        free(b->queue[i].prompt);
        free(b->queue[i].weights);
    }
    ensemble_free(&b->engine);
    free(b->slots);
    free(b->queue);
    free(b->done);
    free(b->weights);
    free(b->spans);
    free(b->span_slot);
    free(b->plan);
    free(b->n_plan);
    free(b->logits);
    free(b->logit_row);
    free(b->calls);
    free(b->rows);
    free(b);
}

LxStatus lx_batch_new(LxModel *const *models, int k, LxTokenizer *const *tokenizers, int n_tokenizers,
                      const LxEnsembleParams *params, int max_active, LxBatch **out, LxError *err)
{
    LxError local, *er = err ? err : &local;
    *out = NULL;
    if (max_active < 1 || max_active > BATCH_MAX_ACTIVE)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "a batch runs 1 to %d sequences at once, not %d", BATCH_MAX_ACTIVE,
                              max_active);
    Batch *b = calloc(1, sizeof *b);
    if (!b)
        return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for a batch");
    if (ensemble_init(&b->engine, (const Model *const *)models, k, (const Tokenizer *const *)tokenizers, n_tokenizers,
                      params, er)) {
        free(b);
        return er->status;
    }
    if (b->engine.vocab) { /* the slots share one token sequence layout: one vocabulary only */
        ensemble_free(&b->engine);
        free(b);
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "many sequences at once need members that share one tokenizer "
                              "(%s and %s differ)", tokenizer_path(tokenizers[0]), tokenizer_path(tokenizers[1]));
    }
    /* The sequences' ensembles are made from the settings as given (weights normalised once, as
     * in a lone run, so ME's member thresholds are the same to the last bit). */
    b->params = *params;
    b->params.n_ctx = b->engine.n_ctx;
    b->params.threads = b->engine.params.threads;
    b->n_tokenizers = n_tokenizers > 0;
    b->max_active = max_active;
    size_t A = (size_t)max_active, K = (size_t)k, V = (size_t)b->engine.vocab_size;
    b->slots = calloc(A, sizeof *b->slots);
    b->spans = calloc(A, sizeof *b->spans);
    b->span_slot = calloc(A, sizeof *b->span_slot);
    b->plan = calloc(A * K, sizeof *b->plan);
    b->n_plan = calloc(A, sizeof *b->n_plan);
    b->logits = alloc_zeroed(K * A, V * sizeof(float));
    b->logit_row = calloc(A * K, sizeof *b->logit_row);
    b->calls = calloc(K, sizeof *b->calls);
    b->rows = calloc(K, sizeof *b->rows);
    if (params->weights && (b->weights = malloc(K * sizeof *b->weights)))
        memcpy(b->weights, params->weights, K * sizeof *b->weights);
    b->params.weights = b->weights;
    if (!b->slots || !b->spans || !b->span_slot || !b->plan || !b->n_plan || !b->logits || !b->logit_row || !b->calls ||
        !b->rows ||
        (params->weights && !b->weights)) {
        lx_batch_free(b);
        return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for a batch of %d sequences", max_active);
    }
    for (int s = 0; s < max_active; s++)
        b->slots[s].id = -1;
    *out = b;
    return LX_OK;
}

/* A slot's ensemble, on its first use: the sequence's settings, and per member only a KV cache. */
static int slot_make(Batch *b, BatchSlot *slot, LxError *err)
{
    const Model *models[64];
    const Model **ms = b->engine.k <= 64 ? models : malloc(sizeof *ms * (size_t)b->engine.k);
    if (!ms)
        return fail(err, LX_ERR_MEMORY, "out of memory for a sequence");
    for (int i = 0; i < b->engine.k; i++)
        ms[i] = b->engine.members[i].model;
    const Tokenizer *tok = b->engine.tokenizer;
    int rc = ensemble_init(&slot->e, ms, b->engine.k, &tok, b->n_tokenizers, &b->params, err);
    if (ms != models)
        free(ms);
    for (int i = 0; rc == 0 && i < slot->e.k; i++) {
        Member *mb = &slot->e.members[i];
        forward_state_free(&mb->state);
        rc = forward_cache_init(&mb->state, &mb->model->config, slot->e.n_ctx, err);
    }
    if (rc) {
        ensemble_free(&slot->e);
        return rc;
    }
    slot->made = 1;
    return 0;
}

static int push_done(Batch *b, int id, const LxGenerateStats *stats, LxError *err)
{
    if (b->done_head > 0 && b->n_done == b->cap_done) { /* drop the collected ones first */
        memmove(b->done, b->done + b->done_head, sizeof *b->done * (size_t)(b->n_done - b->done_head));
        b->n_done -= b->done_head;
        b->done_head = 0;
    }
    if (b->n_done == b->cap_done) {
        int cap = b->cap_done ? 2 * b->cap_done : 16;
        BatchDone *bigger = realloc(b->done, sizeof *bigger * (size_t)cap);
        if (!bigger)
            return fail(err, LX_ERR_MEMORY, "out of memory for the finished sequences");
        b->done = bigger;
        b->cap_done = cap;
    }
    b->done[b->n_done++] = (BatchDone){id, *stats};
    return 0;
}

/* The sequence in slot s ended: its final text and stats, and the slot back to the pool. */
static int finish(Batch *b, int s, LxStatus status, LxError *err)
{
    BatchSlot *slot = &b->slots[s];
    LxGenerateStats stats;
    generation_end(&slot->g, status, &stats);
    int id = slot->id;
    slot->id = -1;
    return push_done(b, id, &stats, err);
}

/* A slot's ensemble takes the sequence's own settings: its mode, its sampler, and its weights
 * normalised exactly as lx_ensemble_new would (the weights, then the constant router's copy of
 * them), so ME's member thresholds match a lone run's to the last bit. Checked when added. */
static void slot_configure(Batch *b, BatchSlot *slot, const BatchRequest *r)
{
    Ensemble *e = &slot->e;
    e->params.mode = r->mode;
    e->params.sampler = r->sampler;
    e->sampler.params = r->sampler;
    if (e->own_router) {
        weights_normalise(r->weights ? r->weights : b->weights, e->k, e->weights, NULL);
        weights_normalise(e->weights, e->k, e->own_router->weights, NULL);
    }
}

/* The oldest waiting sequences into free slots. */
static int admit(Batch *b, LxError *err)
{
    for (int s = 0; s < b->max_active && b->queue_head < b->n_queue; s++) {
        BatchSlot *slot = &b->slots[s];
        if (slot->id >= 0)
            continue;
        if (!slot->made && slot_make(b, slot, err))
            return err ? err->status : LX_ERR_MEMORY;
        BatchRequest *r = &b->queue[b->queue_head];
        ensemble_reset(&slot->e);
        slot_configure(b, slot, r);
        ensemble_seed(&slot->e, r->seed);
        /* checked when it was added, so neither fails */
        int rc = generation_begin(&slot->g, r->prompt, r->n_prompt, slot->e.n_ctx, &r->params, r->callback, r->user, err);
        if (!rc)
            rc = ensemble_append(&slot->e, r->prompt, r->n_prompt, err);
        if (rc)
            return rc;
        slot->g.distribution = r->distribution;
        slot->id = r->id;
        free(r->prompt);
        free(r->weights);
        b->queue_head++;
        if (slot->g.done && (rc = finish(b, s, LX_OK, err))) /* nothing to generate */
            return rc;
    }
    return 0;
}

/* Member i, once, over the pending rows of every active sequence whose next draw needs it. */
static int run_member(Batch *b, int i, LxError *err)
{
    const int k = b->engine.k, V = b->engine.vocab_size;
    int n = 0;
    long rows = 0;
    for (int s = 0; s < b->max_active; s++) {
        Ensemble *e = &b->slots[s].e;
        int wanted = 0;
        for (int j = 0; b->slots[s].id >= 0 && j < b->n_plan[s]; j++)
            wanted |= b->plan[(size_t)s * k + j] == i;
        Member *mb = wanted ? &e->members[i] : NULL;
        if (!mb || e->n_tokens == mb->n_seen)
            continue;
        int pending = e->n_tokens - mb->n_seen;
        b->spans[n] = (ForwardSpan){&mb->state, e->tokens + mb->n_seen, pending, mb->n_seen, FORWARD_LOGITS_LAST};
        b->span_slot[n++] = s;
        rows += pending;
    }
    if (n == 0)
        return 0;
    Member *work = &b->engine.members[i];
    int rc = forward_spans(work->model, &work->state, b->spans, n, b->logits + (size_t)i * b->max_active * V, err);
    if (rc)
        return rc;
    for (int j = 0; j < n; j++) {
        Ensemble *e = &b->slots[b->span_slot[j]].e;
        Member *mb = &e->members[i];
        b->logit_row[(size_t)b->span_slot[j] * k + i] = j; /* taken by the draw, on its own thread */
        mb->forward_calls++;
        mb->tokens_processed += e->n_tokens - mb->n_seen;
        mb->n_seen = e->n_tokens;
    }
    b->calls[i]++;
    b->rows[i] += rows;
    return 0;
}

/* The draw of slot s this step, if it holds a sequence: its members' new logits taken from the
 * step's forwards (checked, as a lone sync checks them), then its ensemble's step. */
static void draw(Batch *b, int s)
{
    BatchSlot *slot = &b->slots[s];
    const int k = b->engine.k;
    const size_t V = (size_t)b->engine.vocab_size;
    if (slot->id < 0)
        return;
    slot->draw.member = -1;
    slot->draw.status = LX_OK;
    for (int i = 0; i < k && !slot->draw.status; i++) {
        int row = b->logit_row[(size_t)s * k + i];
        if (row >= 0)
            slot->draw.status = member_take_logits(&slot->e.members[i], b->logits + ((size_t)i * b->max_active + row) * V,
                                                   slot->e.n_tokens - 1, &slot->draw.err);
    }
    if (!slot->draw.status)
        slot->draw.status = ensemble_step(&slot->e, &slot->draw.token, &slot->draw.member, &slot->draw.prob,
                                          &slot->draw.err);
}

LxStatus lx_batch_step(LxBatch *b, LxError *err)
{
    LxError local, *er = err ? err : &local;
    const int k = b->engine.k;
    if (admit(b, er))
        return er->status;
    for (int s = 0; s < b->max_active; s++)
        if (b->slots[s].id >= 0 && (b->n_plan[s] = ensemble_plan(&b->slots[s].e, b->plan + (size_t)s * k, er)) < 0)
            return er->status;
    for (size_t r = 0; r < (size_t)b->max_active * k; r++)
        b->logit_row[r] = -1;
    for (int i = 0; i < k; i++)
        if (run_member(b, i, er))
            return er->status;
    /* Every sequence draws from its own members' logits with its own random streams, so the
     * draws are independent and go to the threads: with the products shared, the samplers'
     * softmaxes over the vocabulary are most of what is left of a step. The draws are then
     * handed on in slot order, one at a time (the callbacks are the caller's). */
    #pragma omp parallel for schedule(dynamic) num_threads(threads_resolve(b->params.threads)) if (lx_batch_active(b) > 1)
    for (int s = 0; s < b->max_active; s++)
        draw(b, s);
    LxStatus first = LX_OK; /* a sequence that fails ends alone: the others' draws are handed on */
    for (int s = 0; s < b->max_active; s++) {
        BatchSlot *slot = &b->slots[s];
        if (slot->id < 0)
            continue;
        LxError failed;
        if (slot->draw.status)
            failed = slot->draw.err;
        else if (!generation_token(&slot->g, &slot->e, slot->draw.token, slot->draw.member, slot->draw.prob, &failed))
            failed.status = LX_OK;
        if (failed.status != LX_OK) {
            LxError ignored;
            finish(b, s, failed.status, &ignored);
            if (first == LX_OK)
                first = failed.status, *er = failed;
        } else if (slot->g.done && finish(b, s, LX_OK, er)) {
            return er->status;
        }
    }
    return first;
}

LxSequenceParams lx_batch_sequence_defaults(const LxBatch *b)
{
    return (LxSequenceParams){.mode = b->params.mode, .weights = b->weights, .sampler = b->params.sampler,
                              .generate = lx_generate_defaults()};
}

int lx_batch_size(const LxBatch *b) { return b->engine.k; }

LxStatus lx_batch_add(LxBatch *b, const int *prompt, int n_prompt, uint64_t seed, const LxGenerateParams *params,
                      LxTokenCallback callback, void *user, int *id, LxError *err)
{
    LxSequenceParams p = lx_batch_sequence_defaults(b);
    p.seed = seed;
    p.generate = params ? *params : lx_generate_defaults();
    return lx_batch_add_sequence(b, prompt, n_prompt, &p, callback, user, id, err);
}

LxStatus lx_batch_add_sequence(LxBatch *b, const int *prompt, int n_prompt, const LxSequenceParams *params,
                               LxTokenCallback callback, void *user, int *id, LxError *err)
{
    LxError local, *er = err ? err : &local;
    Generation check;
    const int k = b->engine.k;
    if (generation_begin(&check, prompt, n_prompt, b->engine.n_ctx, &params->generate, callback, user, er) ||
        sampler_params_check(&params->sampler, er))
        return er->status;
    if ((unsigned)params->mode > LX_MODE_CE_UNITE)
        return (LxStatus)fail(er, LX_ERR_ARGUMENT, "unknown ensemble mode %d", (int)params->mode);
    if (params->weights && params->weights != b->weights) {
        if (b->params.router)
            return (LxStatus)fail(er, LX_ERR_ARGUMENT, "this batch's weights come from router %s: a sequence cannot "
                                  "bring its own", b->params.router->path);
        double *normalised = malloc(sizeof(double) * (size_t)k);
        if (!normalised)
            return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for %d weights", k);
        int rc = weights_normalise(params->weights, k, normalised, er);
        free(normalised);
        if (rc)
            return er->status;
    }
    for (int t = 0; t < n_prompt; t++)
        if (prompt[t] < 0 || prompt[t] >= b->engine.vocab_size)
            return (LxStatus)fail(er, LX_ERR_ARGUMENT, "token id %d is outside the vocabulary (0..%d)", prompt[t],
                                  b->engine.vocab_size - 1);
    if (b->queue_head > 0 && b->n_queue == b->cap_queue) { /* drop the admitted ones first */
        memmove(b->queue, b->queue + b->queue_head, sizeof *b->queue * (size_t)(b->n_queue - b->queue_head));
        b->n_queue -= b->queue_head;
        b->queue_head = 0;
    }
    if (b->n_queue == b->cap_queue) {
        int cap = b->cap_queue ? 2 * b->cap_queue : 16;
        BatchRequest *bigger = realloc(b->queue, sizeof *bigger * (size_t)cap);
        if (!bigger)
            return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for the waiting sequences");
        b->queue = bigger;
        b->cap_queue = cap;
    }
    BatchRequest r = {b->next_id, malloc(sizeof(int) * (size_t)n_prompt), n_prompt, params->seed, check.params,
                      callback, user, params->mode, params->sampler, NULL, params->distribution != 0};
    int own_weights = params->weights && params->weights != b->weights;
    if (own_weights && (r.weights = malloc(sizeof(double) * (size_t)k)))
        memcpy(r.weights, params->weights, sizeof(double) * (size_t)k);
    if (!r.prompt || (own_weights && !r.weights)) {
        free(r.prompt);
        free(r.weights);
        return (LxStatus)fail(er, LX_ERR_MEMORY, "out of memory for a prompt of %d tokens", n_prompt);
    }
    memcpy(r.prompt, prompt, sizeof(int) * (size_t)n_prompt);
    b->queue[b->n_queue++] = r;
    if (id)
        *id = b->next_id;
    b->next_id++;
    return LX_OK;
}

int lx_batch_finished(LxBatch *b, int *id, LxGenerateStats *stats)
{
    if (b->done_head == b->n_done)
        return 0;
    if (id)
        *id = b->done[b->done_head].id;
    if (stats)
        *stats = b->done[b->done_head].stats;
    b->done_head++;
    return 1;
}

LxStatus lx_batch_remove(LxBatch *b, int id, LxError *err)
{
    for (int i = b->queue_head; i < b->n_queue; i++)
        if (b->queue[i].id == id) {
            free(b->queue[i].prompt);
            free(b->queue[i].weights);
            memmove(b->queue + i, b->queue + i + 1, sizeof *b->queue * (size_t)(--b->n_queue - i));
            return LX_OK;
        }
    for (int s = 0; s < b->max_active; s++)
        if (b->slots[s].id == id && id >= 0) {
            generation_end(&b->slots[s].g, LX_ERR_ARGUMENT, NULL); /* no final callback */
            b->slots[s].id = -1;
            return LX_OK;
        }
    return (LxStatus)fail(err, LX_ERR_ARGUMENT, "sequence %d is neither waiting nor active", id);
}

int lx_batch_active(const LxBatch *b)
{
    int n = 0;
    for (int s = 0; s < b->max_active; s++)
        n += b->slots[s].id >= 0;
    return n;
}

int lx_batch_waiting(const LxBatch *b) { return b->n_queue - b->queue_head; }
int lx_batch_context(const LxBatch *b) { return b->engine.n_ctx; }

size_t lx_batch_sequence_bytes(const LxBatch *b)
{
    size_t bytes = 0;
    for (int i = 0; i < b->engine.k; i++)
        bytes += forward_cache_bytes(&b->engine.members[i].model->config, b->engine.n_ctx);
    return bytes;
}

size_t lx_batch_pool_bytes(const LxBatch *b)
{
    size_t made = 0;
    for (int s = 0; s < b->max_active; s++)
        made += b->slots[s].made;
    return made * lx_batch_sequence_bytes(b);
}

void lx_batch_member_counts(const LxBatch *b, int i, long *forward_calls, long *rows)
{
    *forward_calls = b->calls[i];
    *rows = b->rows[i];
}
