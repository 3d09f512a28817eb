/* serve_metrics.c: what /metrics reports, in Prometheus' text format (version 0.0.4): requests
 * by status, prompt and generated tokens, active sequences and queue depth, each member's
 * batched forward calls and rows, and histograms of time to first token and of the time between
 * a sequence's tokens. One lock guards it all; the engine takes it inside its own lock. */
#include "config.h"
#include "serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void histogram_init(ServeHistogram *h, double first)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < SERVE_BUCKETS; i++) /* first, 2 first, 4 first, ...: a factor 2048 in all */
        h->bounds[i] = first * (double)(1 << i);
}

void serve_metrics_init(ServeMetrics *m, int n_members)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->n_members = n_members < SERVE_MAX_MEMBERS ? n_members : SERVE_MAX_MEMBERS;
    histogram_init(&m->ttft, 0.001);
    histogram_init(&m->per_token, 0.0005);
}

void serve_metrics_free(ServeMetrics *m) { pthread_mutex_destroy(&m->lock); }

void serve_metrics_status(ServeMetrics *m, int status)
{
    pthread_mutex_lock(&m->lock);
    if (status >= 100 && status < 600)
        m->by_status[status]++;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_observe(ServeHistogram *h, double seconds)
{
    int i = 0;
    while (i < SERVE_BUCKETS && seconds > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += seconds;
    h->n++;
}

static int add(ServeBuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add(ServeBuf *out, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof line ? -1 : serve_buf_add(out, line, (size_t)n);
}

static int histogram(ServeBuf *out, const char *name, const char *help, const ServeHistogram *h)
{
    int rc = add(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cumulative = 0;
    for (int i = 0; i < SERVE_BUCKETS && !rc; i++) {
        cumulative += h->counts[i];
        rc = add(out, "%s_bucket{le=\"%g\"} %ld\n", name, h->bounds[i], cumulative);
    }
    return rc || add(out, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->n, name, h->sum, name, h->n);
}

int serve_metrics_render(ServeMetrics *m, ServeBuf *out)
{
    pthread_mutex_lock(&m->lock);
    int rc = add(out, "# HELP llamix_requests_total HTTP requests answered, by status.\n"
                      "# TYPE llamix_requests_total counter\n");
    for (int s = 100; s < 600 && !rc; s++)
        if (m->by_status[s])
            rc = add(out, "llamix_requests_total{status=\"%d\"} %ld\n", s, m->by_status[s]);
    rc = rc || add(out, "# HELP llamix_prompt_tokens_total Prompt tokens of the completions accepted.\n"
                        "# TYPE llamix_prompt_tokens_total counter\nllamix_prompt_tokens_total %ld\n"
                        "# HELP llamix_generated_tokens_total Tokens generated.\n"
                        "# TYPE llamix_generated_tokens_total counter\nllamix_generated_tokens_total %ld\n"
                        "# HELP llamix_active_sequences Sequences in the batch's slots.\n"
                        "# TYPE llamix_active_sequences gauge\nllamix_active_sequences %d\n"
                        "# HELP llamix_queue_depth Sequences and requests waiting for a slot.\n"
                        "# TYPE llamix_queue_depth gauge\nllamix_queue_depth %d\n",
                   m->prompt_tokens, m->generated_tokens, m->active, m->queued);
    rc = rc || add(out, "# HELP llamix_member_forward_calls_total Batched forward calls of each member.\n"
                        "# TYPE llamix_member_forward_calls_total counter\n");
    for (int i = 0; i < m->n_members && !rc; i++)
        rc = add(out, "llamix_member_forward_calls_total{member=\"%d\"} %ld\n", i, m->member_calls[i]);
    rc = rc || add(out, "# HELP llamix_member_tokens_total Token rows each member ran (prompts, decodes, catch-ups).\n"
                        "# TYPE llamix_member_tokens_total counter\n");
    for (int i = 0; i < m->n_members && !rc; i++)
        rc = add(out, "llamix_member_tokens_total{member=\"%d\"} %ld\n", i, m->member_rows[i]);
    rc = rc || histogram(out, "llamix_time_to_first_token_seconds", "From a request's arrival to its first token.",
                         &m->ttft);
    rc = rc || histogram(out, "llamix_time_per_token_seconds", "Between two tokens of one sequence.", &m->per_token);
    pthread_mutex_unlock(&m->lock);
    return rc ? -1 : 0;
}
