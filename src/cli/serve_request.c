/* serve_request.c: a /v1/completions body to request settings, every check in one place, and
 * the small pieces the rest of the server shares (buffers, UTF-8 cleaning, error bodies). No
 * HTTP here, so tests/fuzz/fuzz_serve_request.c can drive it directly.
 *
 * Limits on top of jansson's strict parse (valid UTF-8, no NUL, no duplicate keys): nesting
 * depth SERVE_MAX_DEPTH (checked by a scan before parsing, so a deep body costs nothing), and
 * the string, array and count limits of serve.h. Unknown fields are ignored, as OpenAI's
 * clients send some of their own; null means "left out". */
#include "config.h"
#include "serve.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_buf_add(ServeBuf *b, const void *bytes, size_t n)
{
    if (b->length + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 64;
        while (capacity < b->length + n + 1)
            capacity *= 2;
        char *bigger = realloc(b->data, capacity);
        if (!bigger)
            return -1;
        b->data = bigger;
        b->capacity = capacity;
    }
    if (n)
        memcpy(b->data + b->length, bytes, n);
    b->length += n;
    b->data[b->length] = '\0';
    return 0;
}

void serve_buf_free(ServeBuf *b)
{
    free(b->data);
    *b = (ServeBuf){0};
}

/* The bytes a well-formed sequence starting with lead has (0: lead cannot start one), and the
 * range its second byte must fall in (excluding overlongs, surrogates, beyond U+10FFFF). */
static int utf8_expect(unsigned char lead, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (lead < 0x80)
        return 1;
    if (lead < 0xC2 || lead > 0xF4)
        return 0;
    if (lead < 0xE0)
        return 2;
    if (lead == 0xE0)
        *lo = 0xA0;
    else if (lead == 0xED)
        *hi = 0x9F;
    else if (lead == 0xF0)
        *lo = 0x90;
    else if (lead == 0xF4)
        *hi = 0x8F;
    return lead < 0xF0 ? 3 : 4;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

int serve_utf8_append(ServeBuf *out, Utf8Carry *carry, const char *bytes, size_t n, int final)
{
    /* The carry (an incomplete sequence) goes in front; at most 3 + n bytes to scan. */
    unsigned char small[64];
    size_t total = (size_t)carry->n + n;
    unsigned char *s = total <= sizeof small ? small : malloc(total);
    if (!s)
        return -1;
    memcpy(s, carry->bytes, (size_t)carry->n);
    if (n)
        memcpy(s + carry->n, bytes, n);
    carry->n = 0;
    int rc = 0;
    size_t i = 0, start = 0; /* [start, i): well-formed, not yet copied */
    while (i < total && rc == 0) {
        unsigned char lo, hi;
        int need = utf8_expect(s[i], &lo, &hi);
        if (need == 1) {
            i++;
            continue;
        }
        size_t got = 0; /* bytes of the longest well-formed prefix of a sequence at i */
        if (need > 0) {
            got = 1;
            while (got < (size_t)need && i + got < total &&
                   s[i + got] >= (got == 1 ? lo : 0x80) && s[i + got] <= (got == 1 ? hi : 0xBF))
                got++;
        }
        if (need > 0 && got == (size_t)need) {
            i += got;
            continue;
        }
        rc = serve_buf_add(out, s + start, i - start);
        if (need > 0 && i + got == total && !final) { /* incomplete so far: wait for more */
            memcpy(carry->bytes, s + i, got);
            carry->n = (int)got;
            i = start = total;
            break;
        }
        if (rc == 0)
            rc = serve_buf_add(out, REPLACEMENT, 3);
        i += got ? got : 1;
        start = i;
    }
    if (rc == 0)
        rc = serve_buf_add(out, s + start, i - start);
    if (s != small)
        free(s);
    return rc;
}

int serve_fail(ServeError *e, int status, const char *type, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

char *serve_error_body(const ServeError *e)
{
    /* The message may quote a client's bytes: clean them so the body is valid JSON. */
    ServeBuf message = {0};
    Utf8Carry carry = {{0}, 0};
    if (serve_utf8_append(&message, &carry, e->message, strlen(e->message), 1) || !message.data)
        return NULL;
    json_t *body = json_pack("{s:{s:s,s:s,s:o,s:n}}", "error", "message", message.data, "type",
                             e->type ? e->type : "invalid_request_error", "param",
                             e->param[0] ? json_string(e->param) : json_null(), "code");
    serve_buf_free(&message);
    if (!body)
        return NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

/* The deepest nesting of arrays and objects in a JSON text, outside strings (a malformed text
 * may give any number: the parser rejects it afterwards). */
static int json_depth(const char *s, size_t n)
{
    int depth = 0, most = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > most)
                most = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return most;
}

static int bad(ServeError *e, const char *param, const char *what)
{
    return serve_fail(e, 400, "invalid_request_error", param, "'%s' %s", param, what);
}

/* An optional number field in [lo, hi] (null or absent: leave *out). */
static int get_number(json_t *body, const char *name, double lo, double hi, int lo_open, float *out, ServeError *e)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad(e, name, "must be a number");
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
        return serve_fail(e, 400, "invalid_request_error", name, "'%s' must be %s %g and at most %g, not %g", name,
                          lo_open ? "above" : "at least", lo, hi, x);
    *out = (float)x;
    return 0;
}

static int get_integer(json_t *body, const char *name, long long lo, long long hi, long long *out, ServeError *e)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e15)
        *out = (long long)json_real_value(v); /* 16.0 is 16 */
    else if (!json_is_integer(v))
        return bad(e, name, "must be a whole number");
    else
        *out = json_integer_value(v);
    if (*out < lo || *out > hi)
        return serve_fail(e, 400, "invalid_request_error", name, "'%s' must be from %lld to %lld, not %lld", name, lo,
                          hi, *out);
    return 0;
}

static char *copy_string(json_t *v)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, json_string_value(v), n);
        s[n] = '\0';
    }
    return s;
}

static int get_prompts(json_t *body, ServeRequest *r, ServeError *e)
{
    json_t *v = json_object_get(body, "prompt");
    if (!v || json_is_null(v))
        return serve_fail(e, 400, "invalid_request_error", "prompt", "'prompt' is required");
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v))
        return bad(e, "prompt", "must be a string or an array of strings");
    if (n == 0 || n > SERVE_MAX_PROMPTS)
        return serve_fail(e, 400, "invalid_request_error", "prompt", "'prompt' must hold 1 to %d strings, not %zu",
                          SERVE_MAX_PROMPTS, n);
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return serve_fail(e, 500, "server_error", NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s))
            return bad(e, "prompt", "must be a string or an array of strings (token ids are not supported)");
        if (json_string_length(s) > SERVE_MAX_PROMPT)
            return serve_fail(e, 400, "invalid_request_error", "prompt", "a prompt is %zu bytes, more than %d",
                              json_string_length(s), SERVE_MAX_PROMPT);
        if (!(r->prompts[i] = copy_string(s)))
            return serve_fail(e, 500, "server_error", NULL, "out of memory");
        r->n_prompts = (int)i + 1;
    }
    return 0;
}

static int get_stop(json_t *body, ServeRequest *r, ServeError *e)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) && !json_is_array(v))
        return bad(e, "stop", "must be a string or an array of strings");
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > SERVE_MAX_STOP)
        return serve_fail(e, 400, "invalid_request_error", "stop", "'stop' holds at most %d strings, not %zu",
                          SERVE_MAX_STOP, n);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s))
            return bad(e, "stop", "must be a string or an array of strings");
        size_t len = json_string_length(s);
        if (len == 0 || len > SERVE_MAX_STOP_BYTES)
            return serve_fail(e, 400, "invalid_request_error", "stop", "a stop string must be 1 to %d bytes, not %zu",
                              SERVE_MAX_STOP_BYTES, len);
        if (!(r->stop[i] = copy_string(s)))
            return serve_fail(e, 500, "server_error", NULL, "out of memory");
        r->n_stop = (int)i + 1;
    }
    return 0;
}

static int get_ensemble(json_t *body, const ServeLimits *lim, ServeRequest *r, ServeError *e)
{
    json_t *v = json_object_get(body, "ensemble");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(e, "ensemble", "must be an object {\"mode\": ..., \"weights\": [...]}");
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value) {
        if (strcmp(key, "mode") != 0 && strcmp(key, "weights") != 0)
            return serve_fail(e, 400, "invalid_request_error", "ensemble", "'ensemble' has an unknown field '%.40s'", key);
    }
    json_t *mode = json_object_get(v, "mode");
    if (mode && !json_is_null(mode)) {
        LxError err;
        if (!json_is_string(mode) || lx_mode_parse(json_string_value(mode), &r->mode, &err))
            return bad(e, "ensemble.mode", "must be one of \"me\", \"ce\", \"ce-mixture\", \"ce-unite\"");
    }
    json_t *w = json_object_get(v, "weights");
    if (w && !json_is_null(w)) {
        if (!json_is_array(w) || json_array_size(w) != (size_t)lim->n_members)
            return serve_fail(e, 400, "invalid_request_error", "ensemble.weights",
                              "'ensemble.weights' must be an array of %d numbers, one per member", lim->n_members);
        double total = 0;
        for (int i = 0; i < lim->n_members; i++) {
            json_t *x = json_array_get(w, (size_t)i);
            double wi = json_is_number(x) ? json_number_value(x) : NAN;
            if (!(isfinite(wi) && wi > 0))
                return bad(e, "ensemble.weights", "must hold finite numbers above 0");
            r->weights[i] = wi;
            total += wi;
        }
        if (!isfinite(total))
            return bad(e, "ensemble.weights", "must have a finite sum");
        r->have_weights = 1;
    }
    return 0;
}

static int parse_body(json_t *body, const ServeLimits *lim, ServeRequest *r, ServeError *e)
{
    long long x;
    if (!json_is_object(body))
        return serve_fail(e, 400, "invalid_request_error", NULL, "the body must be a JSON object");
    if (get_prompts(body, r, e) || get_stop(body, r, e) || get_ensemble(body, lim, r, e))
        return -1;
    x = r->max_tokens;
    if (get_integer(body, "max_tokens", 0, SERVE_MAX_TOKENS, &x, e))
        return -1;
    r->max_tokens = (int)x;
    x = r->n;
    if (get_integer(body, "n", 1, SERVE_MAX_N, &x, e))
        return -1;
    r->n = (int)x;
    if ((long)r->n * r->n_prompts > SERVE_MAX_CHOICES)
        return serve_fail(e, 400, "invalid_request_error", "n", "%d prompts x n %d is more than %d choices",
                          r->n_prompts, r->n, SERVE_MAX_CHOICES);
    x = 0;
    json_t *seed = json_object_get(body, "seed");
    if (get_integer(body, "seed", 0, INT64_MAX, &x, e))
        return -1;
    r->have_seed = seed && !json_is_null(seed);
    r->seed = (uint64_t)x;
    x = r->sampler.top_k;
    if (get_integer(body, "top_k", 0, 1 << 30, &x, e))
        return -1;
    r->sampler.top_k = (int)x;
    if (get_number(body, "temperature", 0, 100, 0, &r->sampler.temperature, e) ||
        get_number(body, "top_p", 0, 1, 1, &r->sampler.top_p, e) ||
        get_number(body, "min_p", 0, 0.999999, 0, &r->sampler.min_p, e))
        return -1;
    json_t *v = json_object_get(body, "stream");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return bad(e, "stream", "must be true or false");
    r->stream = v && json_is_true(v);
    v = json_object_get(body, "logprobs");
    if (v && !json_is_null(v)) {
        if (get_integer(body, "logprobs", 0, SERVE_MAX_LOGPROBS, &x, e))
            return -1;
        r->logprobs = (int)x;
    }
    v = json_object_get(body, "echo");
    if (v && json_is_true(v))
        return bad(e, "echo", "is not supported");
    v = json_object_get(body, "best_of");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == r->n))
        return bad(e, "best_of", "is not supported (other than equal to n)");
    return 0;
}

int serve_request_parse(const char *body, size_t length, const ServeLimits *lim, ServeRequest *r, ServeError *e)
{
    memset(r, 0, sizeof *r);
    r->max_tokens = 16;
    r->n = 1;
    r->mode = lim->mode;
    r->sampler = lim->sampler;
    r->logprobs = -1;
    if (length > SERVE_BODY_MAX)
        return serve_fail(e, 413, "invalid_request_error", NULL, "the body is %zu bytes, more than %d", length,
                          SERVE_BODY_MAX);
    if (json_depth(body, length) > SERVE_MAX_DEPTH)
        return serve_fail(e, 400, "invalid_request_error", NULL, "the JSON nests deeper than %d levels", SERVE_MAX_DEPTH);
    json_error_t jerr;
    json_t *root = json_loadb(body, length, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return serve_fail(e, 400, "invalid_request_error", NULL, "malformed JSON at line %d column %d: %s", jerr.line,
                          jerr.column, jerr.text);
    int rc = parse_body(root, lim, r, e);
    json_decref(root);
    if (rc)
        serve_request_free(r);
    return rc;
}

void serve_request_free(ServeRequest *r)
{
    for (int i = 0; r->prompts && i < r->n_prompts; i++)
        free(r->prompts[i]);
    free(r->prompts);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    r->prompts = NULL;
    r->n_prompts = r->n_stop = 0;
}
