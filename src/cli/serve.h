/* serve.h: `llamix serve`, an OpenAI-compatible HTTP server for an ensemble. The parts:
 *   serve.c          options, start and graceful stop (SIGINT/SIGTERM);
 *   serve_http.c     libmicrohttpd handlers: routes, the API key, bodies, errors, SSE streams;
 *   serve_request.c  a JSON body to request settings, with every check (no HTTP here: fuzzed);
 *   serve_engine.c   the one thread that owns the LxBatch: a bounded queue of jobs in, tokens out;
 *   serve_metrics.c  counters and histograms, as Prometheus text.
 * Threads: libmicrohttpd runs one thread per connection; they hand jobs to the engine (the main
 * thread) through its queue and wait on the job's condition variable. Only the engine touches
 * the batch. A third kind, the stopper, waits for SIGINT/SIGTERM. */
#ifndef LLAMIX_SERVE_H
#define LLAMIX_SERVE_H

#include <llamix.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_BODY_MAX (1 << 20)      /* request bodies above this get 413 */
#define SERVE_MAX_DEPTH 8             /* JSON nesting: the API needs 3 */
#define SERVE_MAX_PROMPT (256 * 1024) /* bytes of one prompt string */
#define SERVE_MAX_PROMPTS 32          /* strings in a prompt array */
#define SERVE_MAX_N 16                /* choices per prompt */
#define SERVE_MAX_CHOICES 64          /* prompts x n */
#define SERVE_MAX_STOP 4              /* as OpenAI */
#define SERVE_MAX_STOP_BYTES 256
#define SERVE_MAX_LOGPROBS 5
#define SERVE_MAX_MEMBERS 16
#define SERVE_MAX_TOKENS (1 << 20)

/* ------------------------------------------------------------------ byte buffers, UTF-8 */
typedef struct {
    char *data;
    size_t length, capacity;
} ServeBuf;
int serve_buf_add(ServeBuf *b, const void *bytes, size_t n); /* -1 out of memory */
void serve_buf_free(ServeBuf *b);

/* Append bytes to out as valid UTF-8: each maximal ill-formed subpart becomes U+FFFD (Unicode's
 * recommended practice, what Python's errors='replace' does). A well-formed but incomplete
 * sequence at the end waits in carry (up to 3 bytes) for the next call, unless final. So the
 * pieces of a stream cleaned one by one concatenate to the whole text cleaned at once. */
typedef struct {
    unsigned char bytes[4];
    int n;
} Utf8Carry;
int serve_utf8_append(ServeBuf *out, Utf8Carry *carry, const char *bytes, size_t n, int final);

/* ------------------------------------------------------------------ requests */
typedef struct {
    int status;        /* HTTP status: 400, 401, ... */
    const char *type;  /* OpenAI's error type: "invalid_request_error", ... */
    char param[32];    /* the field at fault, or "" */
    char message[320];
} ServeError;

/* Fill e and return -1. */
int serve_fail(ServeError *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"error": {"message", "type", "param", "code"}} as a malloc'd NUL-terminated string (NULL: no memory). */
char *serve_error_body(const ServeError *e);

/* What a request may ask for: the members' count (for ensemble.weights) and the server's
 * settings, which fields left out keep. */
typedef struct {
    int n_members;
    LxMode mode;
    LxSamplerParams sampler;
} ServeLimits;

typedef struct {
    char **prompts;      /* (n_prompts) UTF-8, NUL-free */
    int n_prompts;
    int max_tokens;      /* default 16 */
    int n;               /* choices per prompt */
    LxMode mode;
    int have_weights;
    double weights[SERVE_MAX_MEMBERS];
    LxSamplerParams sampler;
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    int have_seed;
    uint64_t seed;
    int stream;
    int logprobs;        /* alternatives per token (0..5), or -1: no logprobs */
} ServeRequest;

/* Parse and check a completions body (length bytes, not NUL-terminated). On failure r holds
 * nothing, e says why (status 400). */
int serve_request_parse(const char *body, size_t length, const ServeLimits *lim, ServeRequest *r, ServeError *e);
void serve_request_free(ServeRequest *r);

/* ------------------------------------------------------------------ metrics */
#define SERVE_BUCKETS 12
typedef struct {
    double bounds[SERVE_BUCKETS]; /* upper bounds, seconds; +Inf implied */
    long counts[SERVE_BUCKETS + 1];
    double sum;
    long n;
} ServeHistogram;

typedef struct {
    pthread_mutex_t lock;
    long by_status[600];
    long prompt_tokens, generated_tokens;
    int active, queued;               /* sequences in slots; requests waiting for the engine */
    int n_members;
    long member_calls[SERVE_MAX_MEMBERS], member_rows[SERVE_MAX_MEMBERS];
    ServeHistogram ttft, per_token;
} ServeMetrics;

void serve_metrics_init(ServeMetrics *m, int n_members);
void serve_metrics_free(ServeMetrics *m);
void serve_metrics_status(ServeMetrics *m, int status);
void serve_metrics_observe(ServeHistogram *h, double seconds); /* with m->lock held */
int serve_metrics_render(ServeMetrics *m, ServeBuf *out);

/* ------------------------------------------------------------------ the engine */
typedef struct {
    int token;          /* -1: the final release of held-back text */
    float logprob;
    size_t offset;      /* where its released text starts in the choice's text */
    int n_top;
    int top[SERVE_MAX_LOGPROBS];
    float top_logprob[SERVE_MAX_LOGPROBS];
} ServeToken;

struct ServeJob;
typedef struct {
    struct ServeJob *job;
    int index;            /* the choice's index: prompt i, sample j -> i * n + j */
    int *prompt, n_prompt;
    uint64_t seed;
    int id;               /* in the batch, while added; -1 otherwise */
    ServeBuf text;        /* released so far, cleaned UTF-8 */
    Utf8Carry carry;
    ServeToken *tokens;   /* one per event */
    int n_tokens, cap_tokens;
    int prev;             /* the last token, for a token's text */
    int n_generated;
    int finished;
    LxStopReason stop;
    double t_last;        /* clock at its latest token */
} ServeChoice;

/* One request: made by a connection thread, run by the engine; freed by whoever lets go last.
 * Everything below the request is guarded by the engine's lock. */
typedef struct ServeJob {
    ServeRequest req;
    ServeChoice *choices;
    int n_choices;
    int prompt_tokens;
    int n_finished;
    int done;                /* every choice finished (or the job failed or was cut) */
    int failed;              /* the engine could not run it: 500 */
    int cancelled;           /* the client went away */
    int refs;                /* the connection's, and the engine's while it holds the job */
    int added;               /* the engine added its sequences to the batch */
    int n_sequences;         /* counted against --queue while not yet finished */
    double t_submit, t_first;
    pthread_cond_t cond;     /* signalled on every token and at the end */
    struct ServeJob *next;   /* the engine's intake queue */
    struct ServeEngine *engine;
} ServeJob;

typedef struct ServeEngine ServeEngine;
/* The engine over batch b: at most max_outstanding sequences in the batch or queued for it. */
ServeEngine *serve_engine_new(LxBatch *b, const LxTokenizer *tok, int max_outstanding, ServeMetrics *m);
/* The scheduler loop, in the calling thread (the program's main thread: OpenMP's teams then
 * behave as in `llamix generate`), until serve_engine_quit. */
void serve_engine_run(ServeEngine *en);
void serve_engine_quit(ServeEngine *en);
/* Free, after serve_engine_run returned; the batch stays the caller's. */
void serve_engine_free(ServeEngine *en);
/* Hand a job over (its choices ready); 429 when the queue is full, 503 once stopping. */
int serve_engine_submit(ServeEngine *en, ServeJob *job, ServeError *err);
/* The client is gone: the engine removes its sequences at the next step. Drops the caller's ref. */
void serve_engine_release(ServeEngine *en, ServeJob *job, int cancel);
void serve_engine_lock(ServeEngine *en);
void serve_engine_unlock(ServeEngine *en);
/* With the lock held: wait for news of job, at most ms milliseconds. */
void serve_engine_wait(ServeEngine *en, ServeJob *job, int ms);
/* Stop taking jobs (503 from now on); sequences still running. */
void serve_engine_stop_accepting(ServeEngine *en);
int serve_engine_outstanding(ServeEngine *en); /* jobs not yet done */
/* End every job now (their streams end with what they have) and stop the thread. */
void serve_engine_cut(ServeEngine *en);
int serve_engine_stopping(ServeEngine *en);

ServeJob *serve_job_new(ServeRequest *req); /* takes req's contents; NULL out of memory */
void serve_job_free(ServeJob *job);
const char *serve_finish_reason(LxStopReason stop); /* "stop" or "length" */

/* ------------------------------------------------------------------ HTTP */
typedef struct {
    const char *host;
    int port;
    const char *api_key;     /* NULL: none */
    int timeout;             /* seconds a connection may sit idle */
    int max_connections;
    const char *model_name;  /* the ensemble's name in responses */
    char *const *member_paths;
    int n_members;
    const double *weights;   /* (n_members) normalised */
    LxMode mode;
    ServeLimits limits;
    int n_ctx;
    const LxTokenizer *tokenizer;
    ServeEngine *engine;
    ServeMetrics *metrics;
} ServeConfig;

typedef struct ServeHttp ServeHttp;
/* Listen; *port gets the port bound (for --port 0). NULL with a message in err (one line). */
ServeHttp *serve_http_start(const ServeConfig *c, int *port, char *err, size_t err_size);
void serve_http_stop(ServeHttp *h);

#endif
