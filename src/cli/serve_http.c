/* serve_http.c: the HTTP side of `llamix serve`, on libmicrohttpd with one thread per
 * connection: routes, the API key, request bodies (at most 1 MiB), errors in OpenAI's shape, and
 * completions, whole or streamed as server-sent events.
 *
 * A connection thread parses and tokenises its request, hands the job to the engine and waits on
 * the job's condition variable: for the whole answer, or, when streaming, inside libmicrohttpd's
 * content reader for the next tokens (one SSE chunk per token). While it waits it peeks at its
 * socket every WAIT_MS: a client that has gone (EOF or reset) cancels the job, and the engine
 * removes its sequences before the next step. libmicrohttpd's idle timeout and connection cap
 * keep slow or numerous clients from holding the server. */
#include "config.h"
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WAIT_MS 100

struct ServeHttp {
    struct MHD_Daemon *daemon;
    ServeConfig c;
    pthread_mutex_t id_lock;
    unsigned long next_id;
};

/* Per connection: the body so far. */
typedef struct {
    ServeBuf body;
    int too_big;
} Upload;

/* ------------------------------------------------------------------ plain responses */

static enum MHD_Result respond(ServeHttp *h, struct MHD_Connection *conn, int status, const char *type,
                               const char *body, size_t length)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    serve_metrics_status(h->c.metrics, status);
    return ok;
}

static enum MHD_Result respond_json(ServeHttp *h, struct MHD_Connection *conn, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    enum MHD_Result ok = text ? respond(h, conn, status, "application/json", text, strlen(text))
                              : respond(h, conn, 500, "text/plain", "out of memory\n", 14);
    free(text);
    return ok;
}

static enum MHD_Result respond_error(ServeHttp *h, struct MHD_Connection *conn, const ServeError *e)
{
    char *text = serve_error_body(e);
    enum MHD_Result ok = text ? respond(h, conn, e->status, "application/json", text, strlen(text))
                              : respond(h, conn, 500, "text/plain", "out of memory\n", 14);
    free(text);
    return ok;
}

static enum MHD_Result fail(ServeHttp *h, struct MHD_Connection *conn, int status, const char *type,
                            const char *message)
{
    ServeError e;
    serve_fail(&e, status, type, NULL, "%s", message);
    return respond_error(h, conn, &e);
}

/* 1 if the peer closed or reset its side (peeking never consumes a pipelined request). */
static int client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return 0;
    char c;
    ssize_t n = recv(info->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ------------------------------------------------------------------ completions as JSON */

static json_t *clean_string(const char *bytes, size_t n)
{
    ServeBuf b = {0};
    Utf8Carry carry = {{0}, 0};
    if (serve_utf8_append(&b, &carry, bytes, n, 1) || serve_buf_add(&b, "", 0))
        return serve_buf_free(&b), NULL;
    json_t *s = json_stringn(b.data, b.length);
    serve_buf_free(&b);
    return s;
}

/* OpenAI's legacy logprobs object for tokens [from, to) of a choice (final releases skipped). */
static json_t *logprobs_json(ServeHttp *h, const ServeChoice *c, int from, int to)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offsets = json_array();
    json_t *o = json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                          "text_offset", offsets);
    if (!o)
        return NULL;
    for (int t = 0; t < to; t++) {
        const ServeToken *tk = &c->tokens[t];
        if (tk->token < 0 || t < from)
            continue;
        int prev = c->prompt[c->n_prompt - 1];
        for (int u = t - 1; u >= 0; u--)
            if (c->tokens[u].token >= 0) {
                prev = c->tokens[u].token;
                break;
            }
        const char *text = lx_token_text(h->c.tokenizer, prev, tk->token);
        json_array_append_new(tokens, clean_string(text, strlen(text)));
        json_array_append_new(lps, json_real(tk->logprob));
        json_array_append_new(offsets, json_integer((json_int_t)tk->offset));
        json_t *top = json_object();
        for (int i = 0; i < tk->n_top && top; i++) {
            const char *alt = lx_token_text(h->c.tokenizer, prev, tk->top[i]);
            json_t *key = clean_string(alt, strlen(alt));
            if (key && !json_object_get(top, json_string_value(key)))
                json_object_set_new(top, json_string_value(key), json_real(tk->top_logprob[i]));
            json_decref(key);
        }
        json_array_append_new(tops, top);
    }
    return o;
}

static json_t *completion_head(ServeHttp *h, const char *id)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", id, "object", "text_completion", "created", (json_int_t)time(NULL),
                     "model", h->c.model_name);
}

static void new_id(ServeHttp *h, char *id, size_t size)
{
    pthread_mutex_lock(&h->id_lock);
    unsigned long n = h->next_id++;
    pthread_mutex_unlock(&h->id_lock);
    snprintf(id, size, "cmpl-%lx-%lu", (unsigned long)time(NULL), n);
}

/* The whole answer, with the engine's lock held. */
static json_t *completion_json(ServeHttp *h, const ServeJob *job, const char *id)
{
    json_t *o = completion_head(h, id), *choices = json_array();
    long generated = 0;
    for (int i = 0; i < job->n_choices && o && choices; i++) {
        const ServeChoice *c = &job->choices[i];
        json_t *lp = job->req.logprobs >= 0 ? logprobs_json(h, c, 0, c->n_tokens) : json_null();
        json_array_append_new(choices, json_pack("{s:s%,s:i,s:o,s:s}", "text", c->text.data ? c->text.data : "",
                                                 c->text.length, "index", c->index, "logprobs", lp, "finish_reason",
                                                 serve_finish_reason(c->stop)));
        generated += c->n_generated;
    }
    if (!o || !choices) {
        json_decref(o);
        json_decref(choices);
        return NULL;
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", json_pack("{s:i,s:I,s:I}", "prompt_tokens", job->prompt_tokens,
                                              "completion_tokens", (json_int_t)generated, "total_tokens",
                                              (json_int_t)(job->prompt_tokens + generated)));
    return o;
}

/* ------------------------------------------------------------------ streams */

typedef struct {
    ServeHttp *h;
    struct MHD_Connection *conn;
    ServeJob *job;
    char id[64];
    int *sent_tokens;      /* (n_choices) events sent */
    size_t *sent_bytes;    /* (n_choices) text bytes sent */
    unsigned char *closed; /* (n_choices) finish chunk sent */
    ServeBuf out;          /* SSE bytes not yet handed to MHD: out.data[out_at..) */
    size_t out_at;
    int done_sent;
} Stream;

static int sse_chunk(Stream *s, const ServeChoice *c, size_t from, size_t to, json_t *logprobs, const char *finish)
{
    json_t *o = completion_head(s->h, s->id);
    json_t *choice = json_pack("{s:s%,s:i,s:o,s:o}", "text", c->text.data ? c->text.data + from : "", to - from,
                               "index", c->index, "logprobs", logprobs ? logprobs : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    if (!o || !choice) {
        json_decref(o);
        json_decref(choice);
        return -1;
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    int rc = !text || serve_buf_add(&s->out, "data: ", 6) || serve_buf_add(&s->out, text, strlen(text)) ||
             serve_buf_add(&s->out, "\n\n", 2);
    free(text);
    return rc ? -1 : 0;
}

/* With the lock: SSE chunks for whatever the engine added since the last call. */
static int stream_collect(Stream *s)
{
    ServeJob *job = s->job;
    for (int i = 0; i < job->n_choices; i++) {
        ServeChoice *c = &job->choices[i];
        for (; s->sent_tokens[i] < c->n_tokens; s->sent_tokens[i]++) {
            int t = s->sent_tokens[i];
            size_t end = t + 1 < c->n_tokens ? c->tokens[t + 1].offset : c->text.length;
            if (c->tokens[t].token < 0 && end == s->sent_bytes[i])
                continue;
            json_t *lp = job->req.logprobs >= 0 && c->tokens[t].token >= 0 ? logprobs_json(s->h, c, t, t + 1) : NULL;
            if (sse_chunk(s, c, s->sent_bytes[i], end, lp, NULL))
                return -1;
            s->sent_bytes[i] = end;
        }
        if (c->finished && !s->closed[i]) {
            if (sse_chunk(s, c, s->sent_bytes[i], c->text.length, NULL, serve_finish_reason(c->stop)))
                return -1;
            s->sent_bytes[i] = c->text.length;
            s->closed[i] = 1;
        }
    }
    if (job->done && !s->done_sent) {
        if (job->failed && sse_chunk(s, &job->choices[0], 0, 0, NULL, "error"))
            return -1;
        if (serve_buf_add(&s->out, "data: [DONE]\n\n", 14))
            return -1;
        s->done_sent = 1;
    }
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    Stream *s = cls;
    if (s->out_at == s->out.length) {
        s->out.length = s->out_at = 0;
        if (s->done_sent)
            return MHD_CONTENT_READER_END_OF_STREAM;
        ServeEngine *en = s->h->c.engine;
        serve_engine_lock(en);
        int rc = 0;
        while ((rc = stream_collect(s)) == 0 && s->out.length == 0) {
            serve_engine_wait(en, s->job, WAIT_MS);
            if (!s->job->done && s->out.length == 0 && client_gone(s->conn)) {
                rc = -1;
                break;
            }
        }
        serve_engine_unlock(en);
        if (rc)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->out.length - s->out_at < max ? s->out.length - s->out_at : max;
    memcpy(buf, s->out.data + s->out_at, n);
    s->out_at += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    Stream *s = cls;
    serve_engine_release(s->h->c.engine, s->job, 1);
    free(s->sent_tokens);
    free(s->sent_bytes);
    free(s->closed);
    serve_buf_free(&s->out);
    free(s);
}

/* ------------------------------------------------------------------ POST /v1/completions */

static uint64_t random_seed(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t counter;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    pthread_mutex_lock(&lock);
    uint64_t x = ((uint64_t)t.tv_sec * 1000000007u) ^ (uint64_t)t.tv_nsec ^ (++counter * 0x9E3779B97F4A7C15u);
    pthread_mutex_unlock(&lock);
    x ^= x >> 31; /* a splitmix-style finish, so nearby clocks give unrelated seeds */
    x *= 0xBF58476D1CE4E5B9u;
    return (x ^ (x >> 29)) & 0x7fffffffffffffffu;
}

/* The job's choices: prompt i's tokens (BOS first, as lx_generate) and sample j's seed + j. */
static int prepare(ServeHttp *h, ServeJob *job, ServeError *e)
{
    const ServeRequest *r = &job->req;
    uint64_t seed = r->have_seed ? r->seed : random_seed();
    for (int i = 0; i < r->n_prompts; i++) {
        size_t length = strlen(r->prompts[i]);
        int *tokens = malloc(sizeof(int) * (length + 3)), n_tokens = 0;
        LxError err;
        if (!tokens)
            return serve_fail(e, 500, "server_error", NULL, "out of memory");
        if (lx_tokenize(h->c.tokenizer, r->prompts[i], 1, 0, tokens, (int)length + 3, &n_tokens, &err)) {
            free(tokens);
            return serve_fail(e, 400, "invalid_request_error", "prompt", "%s", err.message);
        }
        if (n_tokens > h->c.n_ctx) {
            free(tokens);
            return serve_fail(e, 400, "invalid_request_error", "prompt",
                              "the prompt is %d tokens but the context holds %d", n_tokens, h->c.n_ctx);
        }
        job->prompt_tokens += n_tokens;
        for (int j = 0; j < r->n; j++) {
            ServeChoice *c = &job->choices[i * r->n + j];
            c->prompt = j == 0 ? tokens : malloc(sizeof(int) * (size_t)n_tokens);
            if (!c->prompt)
                return serve_fail(e, 500, "server_error", NULL, "out of memory");
            if (j > 0)
                memcpy(c->prompt, tokens, sizeof(int) * (size_t)n_tokens);
            c->n_prompt = n_tokens;
            c->seed = seed + (uint64_t)j;
        }
    }
    return 0;
}

static enum MHD_Result completions(ServeHttp *h, struct MHD_Connection *conn, const Upload *up)
{
    ServeRequest req;
    ServeError e;
    if (serve_request_parse(up->body.data ? up->body.data : "", up->body.length, &h->c.limits, &req, &e))
        return respond_error(h, conn, &e);
    ServeJob *job = serve_job_new(&req);
    if (!job) {
        serve_request_free(&req);
        return fail(h, conn, 500, "server_error", "out of memory");
    }
    ServeEngine *en = h->c.engine;
    if (prepare(h, job, &e) || serve_engine_submit(en, job, &e)) {
        serve_job_free(job);
        return respond_error(h, conn, &e);
    }
    pthread_mutex_lock(&h->c.metrics->lock);
    h->c.metrics->prompt_tokens += job->prompt_tokens;
    pthread_mutex_unlock(&h->c.metrics->lock);
    char id[64];
    new_id(h, id, sizeof id);
    if (job->req.stream) {
        Stream *s = calloc(1, sizeof *s);
        int n = job->n_choices;
        if (s && (!(s->sent_tokens = calloc((size_t)n, sizeof(int))) || !(s->sent_bytes = calloc((size_t)n, sizeof(size_t))) ||
                  !(s->closed = calloc((size_t)n, 1)))) {
            free(s->sent_tokens);
            free(s->sent_bytes);
            free(s);
            s = NULL;
        }
        struct MHD_Response *r = NULL;
        if (s) {
            s->h = h;
            s->conn = conn;
            s->job = job;
            snprintf(s->id, sizeof s->id, "%s", id);
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
            if (!r)
                stream_free(s);
        } else {
            serve_engine_release(en, job, 1);
        }
        if (!r)
            return fail(h, conn, 500, "server_error", "out of memory");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        serve_metrics_status(h->c.metrics, 200);
        return ok;
    }
    serve_engine_lock(en);
    while (!job->done) {
        serve_engine_wait(en, job, WAIT_MS);
        if (!job->done && client_gone(conn)) {
            serve_engine_unlock(en);
            serve_engine_release(en, job, 1);
            return MHD_NO; /* close it: nobody is listening */
        }
    }
    json_t *body = job->failed ? NULL : completion_json(h, job, id);
    int failed = job->failed;
    serve_engine_unlock(en);
    serve_engine_release(en, job, 0);
    if (failed)
        return fail(h, conn, 500, "server_error", "the engine could not run this request (out of memory)");
    return respond_json(h, conn, 200, body);
}

/* ------------------------------------------------------------------ the other routes */

static enum MHD_Result models(ServeHttp *h, struct MHD_Connection *conn)
{
    const ServeConfig *c = &h->c;
    json_t *members = json_array(), *data = json_array();
    for (int i = 0; i < c->n_members && members; i++)
        json_array_append_new(members, json_pack("{s:s,s:f}", "path", c->member_paths[i], "weight", c->weights[i]));
    json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:s,s:i,s:o}", "id", c->model_name, "object", "model",
                                          "created", (json_int_t)time(NULL), "owned_by", "llamix", "mode",
                                          lx_mode_name(c->mode), "context", c->n_ctx, "members", members));
    for (int i = 0; i < c->n_members; i++) {
        const char *base = strrchr(c->member_paths[i], '/');
        json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", base ? base + 1 : c->member_paths[i],
                                              "object", "model", "created", (json_int_t)time(NULL), "owned_by",
                                              "llamix", "parent", c->model_name));
    }
    return respond_json(h, conn, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static enum MHD_Result metrics(ServeHttp *h, struct MHD_Connection *conn)
{
    ServeBuf b = {0};
    if (serve_metrics_render(h->c.metrics, &b) || !b.data) {
        serve_buf_free(&b);
        return fail(h, conn, 500, "server_error", "out of memory");
    }
    enum MHD_Result ok = respond(h, conn, 200, "text/plain; version=0.0.4", b.data, b.length);
    serve_buf_free(&b);
    return ok;
}

/* Constant time in the key's length: no early exit on the first differing byte. */
static int key_matches(const char *header, const char *key)
{
    if (!header || strncmp(header, "Bearer ", 7) != 0)
        return 0;
    header += 7;
    size_t n = strlen(key), m = strlen(header);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? header[i] : 0);
    return diff == 0;
}

static enum MHD_Result route(ServeHttp *h, struct MHD_Connection *conn, const char *url, const char *method,
                             const Upload *up)
{
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    static const struct {
        const char *path;
        int post;
    } ROUTES[] = {{"/v1/completions", 1}, {"/v1/models", 0}, {"/health", 0}, {"/metrics", 0}};
    int r = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(url, ROUTES[i].path) == 0)
            r = i;
    if (r < 0)
        return fail(h, conn, 404, "invalid_request_error", "unknown path (try POST /v1/completions)");
    if (h->c.api_key && r != 2 &&
        !key_matches(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), h->c.api_key))
        return fail(h, conn, 401, "invalid_request_error", "a missing or wrong API key (send Authorization: Bearer KEY)");
    if (ROUTES[r].post ? !post : !get)
        return fail(h, conn, 405, "invalid_request_error", ROUTES[r].post ? "use POST here" : "use GET here");
    if (up->too_big) {
        ServeError e;
        serve_fail(&e, 413, "invalid_request_error", NULL, "the body is more than %d bytes", SERVE_BODY_MAX);
        return respond_error(h, conn, &e);
    }
    int stopping = serve_engine_stopping(h->c.engine);
    if (r == 2)
        return respond_json(h, conn, stopping ? 503 : 200, json_pack("{s:s}", "status", stopping ? "shutting down" : "ok"));
    if (r == 3)
        return metrics(h, conn);
    if (stopping)
        return fail(h, conn, 503, "server_error", "the server is shutting down");
    if (r == 1)
        return models(h, conn);
    return completions(h, conn, up);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **con_cls)
{
    (void)version;
    ServeHttp *h = cls;
    Upload *up = *con_cls;
    if (!up) {
        if (!(up = calloc(1, sizeof *up)))
            return MHD_NO;
        *con_cls = up;
        /* A declared length over the limit: refused before a byte of the body is read when the
         * client waits for a go-ahead ("Expect: 100-continue", as curl does) or the length is
         * absurd (the connection then closes under the sender, who may miss the answer);
         * otherwise the body is read and dropped, and 413 follows, so every client sees it. */
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        unsigned long long declared = length ? strtoull(length, NULL, 10) : 0;
        up->too_big = declared > SERVE_BODY_MAX;
        if (up->too_big && (expect || declared > 16ull * SERVE_BODY_MAX)) {
            ServeError e;
            serve_fail(&e, 413, "invalid_request_error", NULL, "the body is %s bytes, more than %d", length,
                       SERVE_BODY_MAX);
            return respond_error(h, conn, &e);
        }
        return MHD_YES;
    }
    if (*size > 0) {
        if (!up->too_big && up->body.length + *size > SERVE_BODY_MAX) {
            up->too_big = 1;
            serve_buf_free(&up->body);
        }
        if (!up->too_big && serve_buf_add(&up->body, data, *size))
            return MHD_NO;
        *size = 0;
        return MHD_YES;
    }
    return route(h, conn, url, method, up);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    Upload *up = *con_cls;
    if (up) {
        serve_buf_free(&up->body);
        free(up);
        *con_cls = NULL;
    }
}

ServeHttp *serve_http_start(const ServeConfig *c, int *port, char *err, size_t err_size)
{
    ServeHttp *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    h->c = *c;
    pthread_mutex_init(&h->id_lock, NULL);
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET, c->host, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons((uint16_t)c->port);
        addr = (struct sockaddr *)&v4;
    } else if (inet_pton(AF_INET6, c->host, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons((uint16_t)c->port);
        addr = (struct sockaddr *)&v6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_size, "--host: '%s' is not an IPv4 or IPv6 address", c->host);
        pthread_mutex_destroy(&h->id_lock);
        free(h);
        return NULL;
    }
    h->daemon = MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)c->max_connections, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, err_size, "cannot listen on %s port %d: %s", c->host, c->port,
                 errno ? strerror(errno) : "libmicrohttpd refused");
        pthread_mutex_destroy(&h->id_lock);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : c->port;
    return h;
}

void serve_http_stop(ServeHttp *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    pthread_mutex_destroy(&h->id_lock);
    free(h);
}
