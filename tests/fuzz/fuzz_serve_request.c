/* fuzz_serve_request.c: fuzz target for the server's request parser (serve_request.c): any bytes
 * as a /v1/completions body, with 2 members.
 *
 * What must hold, on top of the sanitizers: parsing either succeeds with every setting in range
 * (1..SERVE_MAX_PROMPTS prompts within SERVE_MAX_PROMPT bytes and NUL-free, n in 1..SERVE_MAX_N,
 * prompts x n <= SERVE_MAX_CHOICES, max_tokens in 0..SERVE_MAX_TOKENS, stop strings non-empty
 * and short, logprobs -1..5, finite positive weights, a known mode, sampler settings the library
 * accepts), or fails with status 400 or 413 and a message whose error body is valid JSON; the
 * UTF-8 cleaner, fed the input in two pieces, gives exactly what it gives on the whole (and
 * valid UTF-8: jansson must accept it as a string). Anything else is a crash (abort). */
#include "config.h"
#include "serve.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_serve_request: %s\n", what);
    abort();
}

static void check_clean(const uint8_t *data, size_t size)
{
    ServeBuf whole = {0}, parts = {0};
    Utf8Carry a = {{0}, 0}, b = {{0}, 0};
    size_t cut = size ? data[0] % (size + 1) : 0;
    if (serve_utf8_append(&whole, &a, (const char *)data, size, 1) ||
        serve_utf8_append(&parts, &b, (const char *)data, cut, 0) ||
        serve_utf8_append(&parts, &b, (const char *)data + cut, size - cut, 1) || serve_buf_add(&whole, "", 0) ||
        serve_buf_add(&parts, "", 0))
        die("out of memory");
    if (whole.length != parts.length || memcmp(whole.data, parts.data, whole.length) != 0)
        die("cleaning in two pieces differs from cleaning the whole");
    json_t *s = json_stringn(whole.data, whole.length);
    if (!s)
        die("the cleaned text is not valid UTF-8");
    json_decref(s);
    serve_buf_free(&whole);
    serve_buf_free(&parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_clean(data, size);
    ServeLimits lim = {2, LX_MODE_ME, {1.0f, 0, 0.9f, 0.0f}};
    ServeRequest r;
    ServeError e;
    if (serve_request_parse((const char *)data, size, &lim, &r, &e)) {
        if (e.status != 400 && e.status != 413)
            die("a refusal that is not 400 or 413");
        char *body = serve_error_body(&e);
        json_error_t jerr;
        json_t *parsed = body ? json_loads(body, 0, &jerr) : NULL;
        if (!parsed)
            die("the error body is not valid JSON");
        json_decref(parsed);
        free(body);
        fuzz_count("serve_request", data, size, 1);
        return 0;
    }
    if (r.n_prompts < 1 || r.n_prompts > SERVE_MAX_PROMPTS || r.n < 1 || r.n > SERVE_MAX_N ||
        r.n * r.n_prompts > SERVE_MAX_CHOICES || r.max_tokens < 0 || r.max_tokens > SERVE_MAX_TOKENS ||
        r.logprobs < -1 || r.logprobs > SERVE_MAX_LOGPROBS || r.n_stop < 0 || r.n_stop > SERVE_MAX_STOP ||
        (unsigned)r.mode > LX_MODE_CE_UNITE)
        die("an accepted request with a setting out of range");
    for (int i = 0; i < r.n_prompts; i++)
        if (!r.prompts[i] || strlen(r.prompts[i]) > SERVE_MAX_PROMPT)
            die("an accepted prompt out of range");
    for (int i = 0; i < r.n_stop; i++)
        if (!r.stop[i][0] || strlen(r.stop[i]) > SERVE_MAX_STOP_BYTES)
            die("an accepted stop string out of range");
    for (int i = 0; r.have_weights && i < lim.n_members; i++)
        if (!(r.weights[i] > 0 && r.weights[i] < 1e308))
            die("an accepted weight out of range");
    /* The sampler settings must be in the ranges the library documents. */
    if (!(r.sampler.temperature >= 0) || r.sampler.top_k < 0 || !(r.sampler.top_p > 0 && r.sampler.top_p <= 1) ||
        !(r.sampler.min_p >= 0 && r.sampler.min_p < 1))
        die("accepted sampler settings out of range");
    serve_request_free(&r);
    fuzz_count("serve_request", data, size, 0);
    return 0;
}
