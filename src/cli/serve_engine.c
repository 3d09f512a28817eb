/* serve_engine.c: the scheduler, the one thread that owns the LxBatch.
 *
 * Continuous batching: connection threads put jobs on a queue (bounded: at most
 * max_outstanding sequences queued or running, else 429); between two steps the engine takes
 * every new job's sequences into the batch (lx_batch_add_sequence: they wait there, first come
 * first served, for one of the --parallel slots, and their prompts run in the same forward as
 * the others' decode rows), removes the sequences of jobs whose client went away
 * (lx_batch_remove), then runs one lx_batch_step. Tokens arrive in the batch's callbacks, on
 * this thread, and are appended to the job under the lock, waking its connection. */
#include "config.h"
#include "serve.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ServeEngine {
    LxBatch *batch;
    const LxTokenizer *tokenizer;
    ServeMetrics *metrics;
    pthread_mutex_t lock;
    pthread_cond_t work;       /* a new job, a cancellation, or the stop */
    ServeJob *intake, *intake_tail;
    int n_intake;
    ServeJob **jobs;           /* held by the engine: added to the batch, or about to be */
    int n_jobs, cap_jobs;
    int outstanding, max_outstanding; /* sequences of jobs submitted and not done */
    int n_open;                /* jobs submitted and not done */
    int accepting, cut, quit;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

const char *serve_finish_reason(LxStopReason stop)
{
    return stop == LX_STOP_END || stop == LX_STOP_STRING ? "stop" : "length";
}

ServeJob *serve_job_new(ServeRequest *req)
{
    ServeJob *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->n_choices = req->n_prompts * req->n;
    job->choices = calloc((size_t)job->n_choices, sizeof *job->choices);
    if (!job->choices || pthread_cond_init(&job->cond, NULL)) {
        free(job->choices);
        free(job);
        return NULL;
    }
    job->req = *req;
    memset(req, 0, sizeof *req);
    job->refs = 1;
    for (int i = 0; i < job->n_choices; i++)
        job->choices[i] = (ServeChoice){.job = job, .index = i, .id = -1};
    return job;
}

void serve_job_free(ServeJob *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->n_choices; i++) {
        free(job->choices[i].prompt);
        serve_buf_free(&job->choices[i].text);
        free(job->choices[i].tokens);
    }
    free(job->choices);
    serve_request_free(&job->req);
    pthread_cond_destroy(&job->cond);
    free(job);
}

/* ------------------------------------------------------------------ the batch's callback */

/* The n most probable tokens of q (V), most probable first, ties by the lower id. */
static int top_tokens(const float *q, int V, int n, int *ids, float *logprobs)
{
    int have = 0;
    for (int x = 0; x < V; x++) {
        if (!(q[x] > 0))
            continue;
        int at = have < n ? have++ : n;
        if (at == n && !(q[x] > q[ids[n - 1]]))
            continue;
        if (at == n)
            at = n - 1;
        while (at > 0 && q[x] > q[ids[at - 1]]) {
            ids[at] = ids[at - 1];
            at--;
        }
        ids[at] = x;
    }
    for (int i = 0; i < have; i++)
        logprobs[i] = logf(q[ids[i]]);
    return have;
}

static int on_token(void *user, const LxTokenEvent *ev)
{
    ServeChoice *c = user;
    ServeJob *job = c->job;
    ServeEngine *en = job->engine;
    ServeToken t = {.token = ev->token, .logprob = ev->logprob};
    if (ev->token >= 0 && job->req.logprobs > 0 && ev->distribution)
        t.n_top = top_tokens(ev->distribution, ev->vocab_size, job->req.logprobs, t.top, t.top_logprob);
    double clock = now();
    int rc = 0;
    pthread_mutex_lock(&en->lock);
    t.offset = c->text.length;
    if (c->n_tokens == c->cap_tokens) {
        int cap = c->cap_tokens ? 2 * c->cap_tokens : 16;
        ServeToken *bigger = realloc(c->tokens, sizeof *bigger * (size_t)cap);
        if (bigger)
            c->tokens = bigger, c->cap_tokens = cap;
    }
    if (c->n_tokens == c->cap_tokens || serve_utf8_append(&c->text, &c->carry, ev->text, ev->text_length, ev->token < 0)) {
        job->failed = 1;
        rc = 1;
    } else {
        c->tokens[c->n_tokens++] = t;
        if (ev->token >= 0) {
            c->n_generated++;
            pthread_mutex_lock(&en->metrics->lock);
            en->metrics->generated_tokens++;
            if (job->t_first == 0) {
                job->t_first = clock;
                serve_metrics_observe(&en->metrics->ttft, clock - job->t_submit);
            }
            if (c->t_last > 0)
                serve_metrics_observe(&en->metrics->per_token, clock - c->t_last);
            pthread_mutex_unlock(&en->metrics->lock);
            c->t_last = clock;
        }
    }
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&en->lock);
    return rc;
}

/* ------------------------------------------------------------------ the thread */

/* With the lock: the job leaves the engine (done, failed, cancelled or cut). */
static void job_leave(ServeEngine *en, int j)
{
    ServeJob *job = en->jobs[j];
    for (int i = 0; i < job->n_choices; i++) {
        ServeChoice *c = &job->choices[i];
        if (c->id >= 0)
            lx_batch_remove(en->batch, c->id, NULL);
        if (!c->finished) {
            c->finished = 1;
            c->stop = LX_STOP_CALLBACK;
            serve_utf8_append(&c->text, &c->carry, NULL, 0, 1);
        }
        c->id = -1;
    }
    job->done = 1;
    pthread_cond_broadcast(&job->cond);
    en->outstanding -= job->n_choices;
    en->n_open--;
    en->jobs[j] = en->jobs[--en->n_jobs];
    if (--job->refs == 0)
        serve_job_free(job);
}

static void job_add(ServeEngine *en, ServeJob *job)
{
    LxSequenceParams p = lx_batch_sequence_defaults(en->batch);
    p.mode = job->req.mode;
    p.sampler = job->req.sampler;
    p.weights = job->req.have_weights ? job->req.weights : NULL;
    p.generate.n_predict = job->req.max_tokens;
    p.generate.stop = (const char *const *)job->req.stop;
    p.generate.n_stop = job->req.n_stop;
    p.distribution = job->req.logprobs > 0;
    for (int i = 0; i < job->n_choices && !job->failed; i++) {
        ServeChoice *c = &job->choices[i];
        p.seed = c->seed;
        if (lx_batch_add_sequence(en->batch, c->prompt, c->n_prompt, &p, on_token, c, &c->id, NULL)) {
            c->id = -1;
            job->failed = 1;
        }
    }
    job->added = 1;
}

static ServeChoice *find_choice(ServeEngine *en, int id, int *j)
{
    for (*j = 0; *j < en->n_jobs; (*j)++)
        for (int i = 0; i < en->jobs[*j]->n_choices; i++)
            if (en->jobs[*j]->choices[i].id == id)
                return &en->jobs[*j]->choices[i];
    return NULL;
}

static void update_gauges(ServeEngine *en)
{
    ServeMetrics *m = en->metrics;
    pthread_mutex_lock(&m->lock);
    m->active = lx_batch_active(en->batch);
    m->queued = lx_batch_waiting(en->batch) + en->n_intake;
    for (int i = 0; i < m->n_members; i++)
        lx_batch_member_counts(en->batch, i, &m->member_calls[i], &m->member_rows[i]);
    pthread_mutex_unlock(&m->lock);
}

void serve_engine_run(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    for (;;) {
        while (!en->quit && !en->intake && en->n_jobs == 0)
            pthread_cond_wait(&en->work, &en->lock);
        if (en->quit)
            break;
        /* Between steps: take new jobs, drop the ones that ended or whose client left. */
        while (en->intake) {
            ServeJob *job = en->intake;
            en->intake = job->next;
            en->n_intake--;
            if (en->n_jobs == en->cap_jobs) {
                int cap = en->cap_jobs ? 2 * en->cap_jobs : 64;
                ServeJob **bigger = realloc(en->jobs, sizeof *bigger * (size_t)cap);
                if (!bigger) { /* cannot hold it: fail it */
                    job->failed = job->done = 1;
                    en->outstanding -= job->n_choices;
                    en->n_open--;
                    pthread_cond_broadcast(&job->cond);
                    if (--job->refs == 0)
                        serve_job_free(job);
                    continue;
                }
                en->jobs = bigger, en->cap_jobs = cap;
            }
            en->jobs[en->n_jobs++] = job;
        }
        if (!en->intake)
            en->intake_tail = NULL;
        for (int j = en->n_jobs - 1; j >= 0; j--) {
            ServeJob *job = en->jobs[j];
            if (!job->added && !job->cancelled && !en->cut)
                job_add(en, job);
            if (job->cancelled || job->failed || en->cut || job->n_finished == job->n_choices)
                job_leave(en, j);
        }
        update_gauges(en);
        if (en->n_jobs == 0)
            continue;
        pthread_mutex_unlock(&en->lock);
        LxError err;
        LxStatus status = lx_batch_step(en->batch, &err);
        pthread_mutex_lock(&en->lock);
        int id, j;
        LxGenerateStats stats;
        while (lx_batch_finished(en->batch, &id, &stats)) {
            ServeChoice *c = find_choice(en, id, &j);
            if (!c)
                continue;
            c->id = -1;
            c->finished = 1;
            c->stop = stats.stop;
            serve_utf8_append(&c->text, &c->carry, NULL, 0, 1);
            if (++c->job->n_finished == c->job->n_choices)
                job_leave(en, j);
        }
        if (status) /* the batch could not go on (out of memory): fail what it holds */
            for (int k = en->n_jobs - 1; k >= 0; k--) {
                en->jobs[k]->failed = 1;
                job_leave(en, k);
            }
        update_gauges(en);
    }
    pthread_mutex_unlock(&en->lock);
}

ServeEngine *serve_engine_new(LxBatch *b, const LxTokenizer *tok, int max_outstanding, ServeMetrics *m)
{
    ServeEngine *en = calloc(1, sizeof *en);
    if (!en)
        return NULL;
    *en = (ServeEngine){.batch = b, .tokenizer = tok, .metrics = m, .max_outstanding = max_outstanding, .accepting = 1};
    if (pthread_mutex_init(&en->lock, NULL)) {
        free(en);
        return NULL;
    }
    if (pthread_cond_init(&en->work, NULL)) {
        pthread_mutex_destroy(&en->lock);
        free(en);
        return NULL;
    }
    return en;
}

void serve_engine_cut(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    en->accepting = 0;
    en->cut = 1;
    pthread_cond_broadcast(&en->work);
    pthread_mutex_unlock(&en->lock);
}

void serve_engine_quit(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    en->accepting = 0;
    en->cut = en->quit = 1;
    pthread_cond_broadcast(&en->work);
    pthread_mutex_unlock(&en->lock);
}

void serve_engine_free(ServeEngine *en)
{
    if (!en)
        return;
    /* Jobs still held (a stop without a cut): end them for their connections. */
    while (en->n_jobs > 0)
        job_leave(en, en->n_jobs - 1);
    while (en->intake) {
        ServeJob *job = en->intake;
        en->intake = job->next;
        job->done = 1;
        if (--job->refs == 0)
            serve_job_free(job);
    }
    free(en->jobs);
    pthread_cond_destroy(&en->work);
    pthread_mutex_destroy(&en->lock);
    free(en);
}

int serve_engine_submit(ServeEngine *en, ServeJob *job, ServeError *err)
{
    pthread_mutex_lock(&en->lock);
    int rc = 0;
    if (!en->accepting)
        rc = serve_fail(err, 503, "server_error", NULL, "the server is shutting down");
    else if (en->outstanding + job->n_choices > en->max_outstanding)
        rc = serve_fail(err, 429, "rate_limit_error", NULL,
                        "the queue is full (%d sequences running or waiting, at most %d): retry later", en->outstanding,
                        en->max_outstanding);
    if (rc == 0) {
        job->engine = en;
        job->refs++;
        job->t_submit = now();
        en->outstanding += job->n_choices;
        en->n_open++;
        en->n_intake++;
        if (en->intake_tail)
            en->intake_tail->next = job;
        else
            en->intake = job;
        en->intake_tail = job;
        pthread_cond_broadcast(&en->work);
    }
    pthread_mutex_unlock(&en->lock);
    return rc;
}

void serve_engine_release(ServeEngine *en, ServeJob *job, int cancel)
{
    pthread_mutex_lock(&en->lock);
    if (cancel && !job->done) {
        job->cancelled = 1;
        pthread_cond_broadcast(&en->work);
    }
    int last = --job->refs == 0;
    pthread_mutex_unlock(&en->lock);
    if (last)
        serve_job_free(job);
}

void serve_engine_lock(ServeEngine *en) { pthread_mutex_lock(&en->lock); }
void serve_engine_unlock(ServeEngine *en) { pthread_mutex_unlock(&en->lock); }

void serve_engine_wait(ServeEngine *en, ServeJob *job, int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&job->cond, &en->lock, &t);
}

void serve_engine_stop_accepting(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    en->accepting = 0;
    pthread_mutex_unlock(&en->lock);
}

int serve_engine_stopping(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    int stopping = !en->accepting;
    pthread_mutex_unlock(&en->lock);
    return stopping;
}

int serve_engine_outstanding(ServeEngine *en)
{
    pthread_mutex_lock(&en->lock);
    int n = en->n_open;
    pthread_mutex_unlock(&en->lock);
    return n;
}
