/* score_report.c: what `llamix score` prints (see score_report.h). */
#include "config.h"
#include "cli.h"
#include "score_report.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

/* ------------------------------------------------------------------ progress on stderr */


/* Off a terminal, progress lines appear only once a member has run this long, so short runs
 * (and the tests) stay quiet. */
#define PROGRESS_QUIET_SECONDS 5.0

double score_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void score_progress_end(Progress *p)
{
    if (p->printed) {
        fputc('\n', stderr);
        p->printed = 0;
    }
}

void score_progress(void *user, int member, long done, long total, double nll_sum)
{
    Progress *p = user;
    if (p->quiet)
        return;
    if (member != p->member) { /* the next member started */
        score_progress_end(p);
        p->member = member;
        p->start = score_seconds();
        p->last_decile = 0;
    }
    double elapsed = score_seconds() - p->start, ppl = exp(nll_sum / (double)done);
    if (p->tty) {
        fprintf(stderr, "\rllamix: member %d/%d: %ld/%ld tokens (%3.0f%%), perplexity so far %.4g, %.0f tok/s\033[K",
                member + 1, p->k, done, total, 100.0 * (double)done / (double)total, ppl,
                elapsed > 0 ? (double)done / elapsed : 0.0);
        p->printed = 1;
        fflush(stderr);
        return;
    }
    int decile = (int)(10 * done / total);
    if (elapsed >= PROGRESS_QUIET_SECONDS && decile > p->last_decile) {
        fprintf(stderr, "llamix: member %d/%d: %ld/%ld tokens (%d%%), perplexity so far %.4g\n",
                member + 1, p->k, done, total, 10 * decile, ppl);
        p->last_decile = decile;
    }
}

/* ------------------------------------------------------------------ output */

/* Weights as "0.7,0.3", the form -w takes. A weight EM drove all the way to 0 is written as
 * 1e-300: -w needs weights > 0, and that is 0 for every practical purpose. */
static void print_weights(FILE *out, const double *w, int k)
{
    for (int i = 0; i < k; i++)
        fprintf(out, "%s%.6g", i ? "," : "", w[i] > 0 ? w[i] : 1e-300);
}

static void json_score(FILE *out, long tokens, double nll)
{
    fprintf(out, "\"tokens\": %ld, \"nll_nats\": ", tokens);
    cli_json_number(out, nll);
    fputs(", \"bits_per_token\": ", out);
    cli_json_number(out, nll / log(2.0));
    fputs(", \"perplexity\": ", out);
    cli_json_number(out, exp(nll));
}

static void json_weights(FILE *out, const double *w, int k)
{
    fputc('[', out);
    for (int i = 0; i < k; i++) {
        if (i)
            fputs(", ", out);
        cli_json_number(out, w[i]);
    }
    fputc(']', out);
}


void score_print_json(FILE *out, const Report *r)
{
    const LxScore *t = r->score;
    long n = lx_score_tokens(t);
    int context = lx_score_context(t);
    fputs("{\"text\": ", out);
    cli_json_string(out, r->text_path);
    fprintf(out, ", \"tokens\": %ld, \"context\": %d, \"windows\": %ld, "
                 "\"window_scheme\": \"non-overlapping: BOS + up to %d text tokens each\",\n",
            n, context, lx_score_windows(t), context - 1);
    fputs(" \"members\": [", out);
    for (int i = 0; i < r->k; i++) {
        fputs(i ? ",\n  {\"path\": " : "\n  {\"path\": ", out);
        cli_json_string(out, r->model_paths[i]);
        fputs(", ", out);
        json_score(out, n, lx_score_member_nll(t, i));
        fputc('}', out);
    }
    fputs("],\n \"ensemble\": {\"weights\": ", out);
    json_weights(out, r->weights, r->k);
    fputs(", ", out);
    json_score(out, n, lx_score_ensemble_nll(t, r->weights));
    fputc('}', out);
    if (r->fitted) {
        fputs(",\n \"fitted\": {\"weights\": ", out);
        json_weights(out, r->fitted, r->k);
        fputs(", \"weights_arg\": \"", out);
        print_weights(out, r->fitted, r->k);
        fprintf(out, "\", \"iterations\": %d, \"converged\": %s, ", r->fit->iterations,
                r->fit->converged ? "true" : "false");
        json_score(out, n, r->fit->nll);
        fputc('}', out);
    }
    if (r->router_path) {
        fputs(",\n \"router\": {\"path\": ", out);
        cli_json_string(out, r->router_path);
        if (r->router_fit) {
            fprintf(out, ", \"fitted\": true, \"prior\": %.17g, \"iterations\": %d, \"converged\": %s, "
                         "\"nll_fixed\": ", r->router_prior, r->router_fit->iterations,
                    r->router_fit->converged ? "true" : "false");
            cli_json_number(out, r->router_fit->nll_fixed);
        }
        fputs(", ", out);
        json_score(out, n, r->router_nll);
        fputc('}', out);
    }
    fputs("}\n", out);
}

/* One row of the table: name, tokens, nll, bits, perplexity, weights, path. */
static void table_row(FILE *out, const char *name, long tokens, double nll, const double *w, int k,
                      const char *path)
{
    fprintf(out, "%-9s %8ld %10.6f %10.6f %12.6g  ", name, tokens, nll, nll / log(2.0),
            exp(nll));
    if (w)
        print_weights(out, w, k);
    else
        fputc('-', out);
    fprintf(out, "  %s\n", path);
}

void score_print_table(FILE *out, const Report *r)
{
    const LxScore *t = r->score;
    long n = lx_score_tokens(t), windows = lx_score_windows(t);
    int context = lx_score_context(t);
    fprintf(out, "# text %s: %ld tokens scored in %ld non-overlapping window%s, each BOS + up to %d "
                 "text tokens (context %d); each token scored once\n",
            r->text_path, n, windows, windows == 1 ? "" : "s", context - 1, context);
    fprintf(out, "%-9s %8s %10s %10s %12s  %s  %s\n", "#name", "tokens", "nll_nats", "bits/tok",
            "perplexity", "weights", "path");
    for (int i = 0; i < r->k; i++) {
        char name[24];
        snprintf(name, sizeof name, "member%d", i + 1);
        table_row(out, name, n, lx_score_member_nll(t, i), NULL, r->k, r->model_paths[i]);
    }
    table_row(out, "ensemble", n, lx_score_ensemble_nll(t, r->weights), r->weights, r->k, "-");
    if (r->fitted) {
        table_row(out, "fitted", n, r->fit->nll, r->fitted, r->k, "-");
        fprintf(out, "# fitted by EM from uniform: %d steps, %s; use them with -w ", r->fit->iterations,
                r->fit->converged ? "converged" : "stopped at --max-iter");
        print_weights(out, r->fitted, r->k);
        fputc('\n', out);
    }
    if (r->router_fit) {
        table_row(out, "em-fixed", n, r->router_fit->nll_fixed, NULL, r->k, "- (EM fixed weights, the router's prior)");
        table_row(out, "router", n, r->router_nll, NULL, r->k, r->router_path);
        fprintf(out, "# previous-token router fitted by EM (prior %g toward the fitted weights): %d steps, %s; "
                     "training NLL fixed %.6f, routed %.6f; written to %s (use it with --router)\n",
                r->router_prior, r->router_fit->iterations, r->router_fit->converged ? "converged" : "stopped at --max-iter",
                r->router_fit->nll_fixed, r->router_nll, r->router_path);
    } else if (r->router_path) {
        table_row(out, "router", n, r->router_nll, NULL, r->k, r->router_path);
    }
}
