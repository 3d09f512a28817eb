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

/* The same with standard errors over tokens: the NLL's, and the perplexity's by the delta
 * method, exp(nll) * se (null when there is one token). */
static void json_score_se(FILE *out, long tokens, double nll, double se)
{
    json_score(out, tokens, nll);
    fputs(", \"nll_se\": ", out);
    cli_json_number(out, se);
    fputs(", \"perplexity_se\": ", out);
    cli_json_number(out, exp(nll) * se);
}

/* A paired difference of mean NLLs, a - b, with its SE and the perplexity ratio exp(a - b). */
static void json_difference(FILE *out, double d, double se)
{
    fputs("\"nll_nats\": ", out);
    cli_json_number(out, d);
    fputs(", \"se\": ", out);
    cli_json_number(out, se);
    fputs(", \"perplexity_ratio\": ", out);
    cli_json_number(out, exp(d));
}

/* The member of lowest NLL (the first of equals). */
static int best_member(const LxScore *t, int k)
{
    int best = 0;
    for (int i = 1; i < k; i++)
        if (lx_score_member_nll(t, i) < lx_score_member_nll(t, best))
            best = i;
    return best;
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
    /* (standard errors are over tokens, treated as independent: see llamix.h) */
    cli_json_string(out, r->text_path);
    fprintf(out, ", \"tokens\": %ld, \"context\": %d, \"windows\": %ld, "
                 "\"window_scheme\": \"non-overlapping: BOS + up to %d text tokens each\",\n",
            n, context, lx_score_windows(t), context - 1);
    fputs(" \"members\": [", out);
    for (int i = 0; i < r->k; i++) {
        fputs(i ? ",\n  {\"path\": " : "\n  {\"path\": ", out);
        cli_json_string(out, r->model_paths[i]);
        fputs(", ", out);
        double se, nll = lx_score_nll_se(t, i, NULL, &se);
        json_score_se(out, n, nll, se);
        if (i > 0) {
            fputs(", \"minus_member1\": {", out);
            double d = lx_score_nll_difference(t, i, 0, NULL, &se);
            json_difference(out, d, se);
            fputc('}', out);
        }
        fputc('}', out);
    }
    fputs("],\n \"ensemble\": {\"weights\": ", out);
    json_weights(out, r->weights, r->k);
    fputs(", ", out);
    double se, nll = lx_score_nll_se(t, LX_SCORE_ENSEMBLE, r->weights, &se);
    json_score_se(out, n, nll, se);
    int best = best_member(t, r->k);
    fprintf(out, ", \"minus_best_member\": {\"member\": %d, ", best + 1);
    double d = lx_score_nll_difference(t, LX_SCORE_ENSEMBLE, best, r->weights, &se);
    json_difference(out, d, se);
    fputs("}}", out);
    if (r->fitted) {
        fputs(",\n \"fitted\": {\"weights\": ", out);
        json_weights(out, r->fitted, r->k);
        fputs(", \"weights_arg\": \"", out);
        print_weights(out, r->fitted, r->k);
        fprintf(out, "\", \"iterations\": %d, \"converged\": %s, ", r->fit->iterations,
                r->fit->converged ? "true" : "false");
        lx_score_nll_se(t, LX_SCORE_ENSEMBLE, r->fitted, &se);
        json_score_se(out, n, r->fit->nll, se);
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

/* One row of the table: name, tokens, nll +- se, bits, perplexity +- se, weights, path. An SE of
 * "-": none known (the router's rows, or a single token). */
static void table_row(FILE *out, const char *name, long tokens, double nll, double se, const double *w, int k,
                      const char *path)
{
    fprintf(out, "%-9s %8ld %10.6f ", name, tokens, nll);
    if (isfinite(se))
        fprintf(out, "%9.6f", se);
    else
        fprintf(out, "%9s", "-");
    fprintf(out, " %10.6f %12.6g ", nll / log(2.0), exp(nll));
    if (isfinite(se))
        fprintf(out, "%10.4g  ", exp(nll) * se);
    else
        fprintf(out, "%10s  ", "-");
    if (w)
        print_weights(out, w, k);
    else
        fputc('-', out);
    fputs("  ", out);
    cli_table_string(out, path);
    fputc('\n', out);
}

/* "# NAME - OTHER: d +- se nats per token (perplexity x exp(d))". */
static void difference_line(FILE *out, const char *what, double d, double se)
{
    if (isfinite(se))
        fprintf(out, "# %s: %+.6f +- %.6f nats/token (perplexity x%.6g)\n", what, d, se, exp(d));
    else
        fprintf(out, "# %s: %+.6f +- - nats/token (perplexity x%.6g)\n", what, d, exp(d));
}

void score_print_table(FILE *out, const Report *r)
{
    const LxScore *t = r->score;
    long n = lx_score_tokens(t), windows = lx_score_windows(t);
    int context = lx_score_context(t);
    double se;
    fputs("# text ", out);
    cli_table_string(out, r->text_path);
    fprintf(out, ": %ld tokens scored in %ld non-overlapping window%s, each BOS + up to %d "
                 "text tokens (context %d); each token scored once; +-: standard errors over tokens\n",
            n, windows, windows == 1 ? "" : "s", context - 1, context);
    fprintf(out, "%-9s %8s %10s %9s %10s %12s %10s  %s  %s\n", "#name", "tokens", "nll_nats", "+-", "bits/tok",
            "perplexity", "+-", "weights", "path");
    for (int i = 0; i < r->k; i++) {
        char name[24];
        snprintf(name, sizeof name, "member%d", i + 1);
        double nll = lx_score_nll_se(t, i, NULL, &se);
        table_row(out, name, n, nll, se, NULL, r->k, r->model_paths[i]);
    }
    double nll = lx_score_nll_se(t, LX_SCORE_ENSEMBLE, r->weights, &se);
    table_row(out, "ensemble", n, nll, se, r->weights, r->k, "-");
    if (r->fitted) {
        lx_score_nll_se(t, LX_SCORE_ENSEMBLE, r->fitted, &se);
        table_row(out, "fitted", n, r->fit->nll, se, r->fitted, r->k, "-");
        fprintf(out, "# fitted by EM from uniform: %d steps, %s; use them with -w ", r->fit->iterations,
                r->fit->converged ? "converged" : "stopped at --max-iter");
        print_weights(out, r->fitted, r->k);
        fputc('\n', out);
    }
    if (r->router_fit) {
        table_row(out, "em-fixed", n, r->router_fit->nll_fixed, NAN, NULL, r->k, "- (EM fixed weights, the router's prior)");
        table_row(out, "router", n, r->router_nll, NAN, NULL, r->k, r->router_path);
        fprintf(out, "# previous-token router fitted by EM (prior %g toward the fitted weights): %d steps, %s; "
                     "training NLL fixed %.6f, routed %.6f; written to ",
                r->router_prior, r->router_fit->iterations, r->router_fit->converged ? "converged" : "stopped at --max-iter",
                r->router_fit->nll_fixed, r->router_nll);
        cli_table_string(out, r->router_path);
        fputs(" (use it with --router)\n", out);
    } else if (r->router_path) {
        table_row(out, "router", n, r->router_nll, NAN, NULL, r->k, r->router_path);
    }
    if (r->k > 1) {
        /* Paired differences: both series are over the same tokens, so the SE is that of the
         * per-token difference, much smaller than either NLL's own when they move together. */
        char what[64];
        int best = best_member(t, r->k);
        snprintf(what, sizeof what, "ensemble - member%d (the best member)", best + 1);
        double d = lx_score_nll_difference(t, LX_SCORE_ENSEMBLE, best, r->weights, &se);
        difference_line(out, what, d, se);
        for (int i = 1; i < r->k; i++) {
            snprintf(what, sizeof what, "member%d - member1", i + 1);
            d = lx_score_nll_difference(t, i, 0, NULL, &se);
            difference_line(out, what, d, se);
        }
    }
}
