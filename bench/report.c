/* report.c: the Markdown and JSON reports of a bench (see report.h). */
#include "config.h"
#include "cli.h"
#include "internal.h"
#include "probes.h"
#include "report.h"
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const BenchLimits *limits_for(const BenchReport *R, int threads)
{
    for (int i = 0; i < R->n_limits; i++)
        if (R->limits[i].threads == threads)
            return &R->limits[i];
    return NULL;
}

/* Per-repetition rates of one test: tok/s of pp or tg. */
static void rates(const BenchTest *t, int r, int tg, double *out)
{
    for (int i = 0; i < r; i++)
        out[i] = (t->sequences ? t->sequences : 1) * (tg ? t->n_gen / t->tg_s[i] : t->n_prompt / t->pp_s[i]);
}

/* The test of these settings; member: a single test's member (0 for the ensembles). */
static const BenchTest *find_test(const BenchReport *R, int mode, int k, int threads, int p, int n, int sequences,
                                  int member)
{
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        if (t->mode == mode && t->k == k && t->threads == threads && t->n_prompt == p && t->n_gen == n &&
            t->sequences == sequences && t->member == member)
            return t;
    }
    return NULL;
}

static int n_distinct(const BenchReport *R)
{
    int n = 0;
    for (int i = 0; i < R->n_models; i++)
        n += R->distinct[i] == i;
    return n;
}

/* The model column: the run's label, or for the single test of one of several distinct files
 * that file's name. */
static void test_label(const BenchReport *R, const BenchTest *t, char *out, size_t size)
{
    if (t->mode != BENCH_SINGLE || R->shape || n_distinct(R) < 2) {
        snprintf(out, size, "%s", R->label);
        return;
    }
    const char *path = R->models[t->member]->path, *slash = strrchr(path, '/');
    snprintf(out, size, "%.40s", slash ? slash + 1 : path);
    for (char *c = out; *c; c++) /* a table cell: no control bytes */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

#define DASHES "------------------------------------------------------------" /* a column's rule, up to 60 */

/* The width of the model column: 6, or the longest label (at most 41 characters, test_label's). */
static int label_width(const BenchReport *R)
{
    char label[64];
    int w = 6;
    for (int i = 0; i < R->n_tests; i++) {
        test_label(R, &R->tests[i], label, sizeof label);
        w = (int)strlen(label) > w ? (int)strlen(label) : w;
    }
    for (int i = 0; i < R->n_models; i++) {
        BenchTest t = {.mode = BENCH_SINGLE, .member = i};
        test_label(R, &t, label, sizeof label);
        w = (int)strlen(label) > w ? (int)strlen(label) : w;
    }
    return w;
}

/* Expected cost (harness.h) of an unrouted ce, ce-mixture or me test with a tg part, per
 * repetition: expected[j] = sum_k v_k c_k[j], v_k = w_k for ME and 1 for CE, c_k[j] member k's
 * single tg seconds per token in repetition j; over[j] = the test's own seconds per token over
 * it. 0 when the test has no expected cost (another mode, no tg, single not measured). */
static int expected_cost(const BenchReport *R, const BenchTest *t, double *expected, double *over)
{
    if ((t->mode != LX_MODE_CE && t->mode != LX_MODE_ME && t->mode != LX_MODE_CE_MIXTURE) || t->n_gen == 0)
        return 0;
    const BenchTest *single[BENCH_MAX_MEMBERS];
    double w[BENCH_MAX_MEMBERS];
    bench_test_weights(R, t, w);
    for (int i = 0; i < t->k; i++)
        if (!(single[i] = find_test(R, BENCH_SINGLE, 1, t->threads, t->n_prompt, t->n_gen, t->sequences,
                                    R->distinct[i])))
            return 0;
    for (int j = 0; j < R->r; j++) {
        expected[j] = 0;
        for (int i = 0; i < t->k; i++)
            expected[j] += (t->mode == LX_MODE_ME ? w[i] : 1.0) * single[i]->tg_s[j] / t->n_gen;
        over[j] = t->tg_s[j] / t->n_gen / expected[j];
    }
    return 1;
}

/* Member i's single tg seconds per token (median) at each thread count, from the first single
 * test of its distinct member with a tg part at that count. Returns how many, up to `most`. */
static int single_costs(const BenchReport *R, int i, int *threads, double *seconds, int most)
{
    int n = 0;
    for (int j = 0; j < R->n_tests && n < most; j++) {
        const BenchTest *t = &R->tests[j];
        int seen = 0;
        for (int q = 0; q < n; q++)
            seen |= threads[q] == t->threads;
        if (t->mode != BENCH_SINGLE || t->member != R->distinct[i] || t->n_gen == 0 || seen)
            continue;
        double x[BENCH_MAX_REPS];
        for (int q = 0; q < R->r; q++)
            x[q] = t->tg_s[q] / t->n_gen;
        threads[n] = t->threads;
        seconds[n++] = stats_median(x, R->r);
    }
    return n;
}

/* The shape column of a catch-up row: the run's shape, or the member's file name. */
static void member_label(const BenchReport *R, int i, char *out, size_t size)
{
    BenchTest t = {.mode = BENCH_SINGLE, .member = i};
    if (R->shape)
        snprintf(out, size, "%s", R->shape);
    else if (n_distinct(R) < 2)
        snprintf(out, size, "%s", R->label);
    else
        test_label(R, &t, out, size);
}

/* Per repetition: the rate behind a test's tok/s (tg: weight GB/s streamed, pp: GFLOP/s) and its
 * efficiency (tg: over the read bandwidth measured in the same repetition; pp: over the sgemm
 * peak). The efficiency is NAN when the limits were not measured. Returns the median efficiency
 * and leaves the median rate in *rate. */
static double efficiency(const BenchReport *R, const BenchTest *t, int tg, double *rate)
{
    const BenchLimits *lim = limits_for(R, t->threads);
    double x[BENCH_MAX_REPS], e[BENCH_MAX_REPS];
    for (int j = 0; j < R->r; j++) {
        x[j] = tg ? t->tg_bytes / t->tg_s[j] / 1e9 : t->pp_flops / t->pp_s[j] / 1e9;
        e[j] = !lim ? NAN : x[j] / (tg ? lim->bw[j] : lim->gemm[j]);
    }
    *rate = stats_median(x, R->r);
    return stats_median(e, R->r);
}

/* Per-repetition ratios a/b of tg tok/s (end_to_end: of (p + n) / (pp + tg) seconds). */
static void ratios(const BenchTest *a, const BenchTest *b, int r, int end_to_end, double *out)
{
    for (int i = 0; i < r; i++)
        out[i] = end_to_end ? (b->pp_s[i] + b->tg_s[i]) / (a->pp_s[i] + a->tg_s[i]) : b->tg_s[i] / a->tg_s[i];
}

/* "256/256 x3" when every member did the same, else each member's calls/tokens. */
static void format_counts(char *out, size_t size, const BenchCounts *c, int k)
{
    int same = 1;
    for (int i = 1; i < k; i++)
        same &= c->calls[i] == c->calls[0] && c->tokens[i] == c->tokens[0];
    if (same) {
        snprintf(out, size, k > 1 ? "%ld/%ld x%d" : "%ld/%ld", c->calls[0], c->tokens[0], k);
        return;
    }
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < k && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%ld/%ld", i ? " " : "", c->calls[i], c->tokens[i]);
}

/* The expected-cost table (harness.h), when there are single tests to build it from. */
static void expected_markdown(FILE *f, const BenchReport *R)
{
    int header = 0;
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        double e[BENCH_MAX_REPS], x[BENCH_MAX_REPS], own[BENCH_MAX_REPS];
        if (!expected_cost(R, t, e, x))
            continue;
        if (!header) {
            fprintf(f, "Expected cost: c_k is member k's single tg seconds per token in the same repetition; "
                       "ce/sum is CE's (and ce-mixture's) measured cost over sum_k c_k, me/expected ME's over "
                       "sum_k w_k c_k (near 1 when a catch-up costs what one token costs; above 1 is the catch-ups' "
                       "overhead, the prompt on each member's first pick included); medians of per-repetition "
                       "ratios%s.\n\n", n_distinct(R) < R->n_models ? "; members alike (of one --shape, or one "
                       "file given twice) share the first one's single measurement" : "");
            fprintf(f, "| mode       |  K |  S | threads | test   | expected ms/token | ms/token | ratio       |   value | range       |\n");
            fprintf(f, "| ---------- | -: | -: | ------: | ------ | ----------------: | -------: | ----------- | ------: | ----------- |\n");
            header = 1;
        }
        for (int j = 0; j < R->r; j++)
            own[j] = t->tg_s[j] / t->n_gen;
        char test[32], range[32];
        snprintf(test, sizeof test, "tg%d", t->n_gen);
        snprintf(range, sizeof range, "%.2f-%.2f", stats_min(x, R->r), stats_max(x, R->r));
        fprintf(f, "| %-10s | %2d | %2d | %7d | %-6s | %17.3f | %8.3f | %-11s | %7.2f | %-11s |\n",
                bench_mode_name(t->mode), t->k, t->sequences ? t->sequences : 1, t->threads, test,
                1e3 * stats_median(e, R->r), 1e3 * stats_median(own, R->r),
                t->mode == LX_MODE_ME ? "me/expected" : "ce/sum", stats_median(x, R->r), range);
    }
    if (header)
        fprintf(f, "\n");
}

/* The catch-up table (--catch-up). */
static void catch_up_markdown(FILE *f, const BenchReport *R)
{
    if (!R->n_catch)
        return;
    fprintf(f, "Catch-up: cost of one forward over an m-token span (ME's catch-up) relative to a one-token forward; "
               "the roofline target (issue 21) is <= 1.10 for m <= 4 and <= 1.30 for m = 8. At position %d, "
               "median of %d repetitions (min-max of ms), ratio = median of the same repetition's m / 1 ratios "
               "(range: their min-max).\n\n", R->catch_up[0].position, R->catch_r);
    int lw = label_width(R);
    fprintf(f, "| member | %-*s | threads |    m |       ms | ms range        | ratio | range       |\n", lw, "shape");
    fprintf(f, "| -----: | %.*s | ------: | ---: | -------: | --------------- | ----: | ----------- |\n", lw, DASHES);
    for (int i = 0; i < R->n_catch; i++) {
        const BenchCatchUp *c = &R->catch_up[i];
        char label[64], ms[48], range[32];
        member_label(R, c->member, label, sizeof label);
        snprintf(ms, sizeof ms, "%.3f-%.3f", 1e3 * stats_min(c->seconds, R->catch_r), 1e3 * stats_max(c->seconds, R->catch_r));
        snprintf(range, sizeof range, "%.2f-%.2f", stats_min(c->ratio, R->catch_r), stats_max(c->ratio, R->catch_r));
        fprintf(f, "| %6d | %-*s | %7d | %4d | %8.3f | %-15s | %5.2f | %-11s |\n", c->member + 1, lw, label, c->threads,
                c->span, 1e3 * stats_median(c->seconds, R->catch_r), ms, stats_median(c->ratio, R->catch_r), range);
    }
    fprintf(f, "\n");
}

/* A scoring measurement's medians over the repetitions: tok/s, GFLOP/s and GFLOP/s over the sgemm
 * peak at its thread count (NAN without limits). */
static void score_rates(const BenchReport *R, const BenchScore *s, double *tok_s, double *gflops, double *eff)
{
    const BenchLimits *lim = limits_for(R, s->threads);
    double t[BENCH_MAX_REPS] = {0}, g[BENCH_MAX_REPS] = {0}, e[BENCH_MAX_REPS] = {0};
    for (int j = 0; j < R->r; j++) {
        t[j] = (double)s->tokens / s->seconds[j];
        g[j] = s->flops / s->seconds[j] / 1e9;
        e[j] = g[j] / s->sgemm[j];
    }
    *tok_s = stats_median(t, R->r);
    *gflops = stats_median(g, R->r);
    *eff = lim ? stats_median(e, R->r) : NAN;
}

/* The scoring table (--score). */
static void score_markdown(FILE *f, const BenchReport *R)
{
    if (!R->n_score)
        return;
    fprintf(f, "Scoring: what llamix score -c C runs per member, over %d windows of C tokens (every row's classifier "
               "and log-softmax, attention over the window so far); the target (issue 21) is >= 80%% of the sgemm "
               "peak. Medians of %d repetitions.\n\n", BENCH_SCORE_WINDOWS, R->r);
    int lw = label_width(R);
    fprintf(f, "| member | %-*s | threads |    C | tokens |    tok/s | GFLOP/s | of sgemm |\n", lw, "shape");
    fprintf(f, "| -----: | %.*s | ------: | ---: | -----: | -------: | ------: | -------: |\n", lw, DASHES);
    for (int i = 0; i < R->n_score; i++) {
        const BenchScore *s = &R->score[i];
        char label[64], pct[16] = "-";
        double tok_s, gflops, eff;
        member_label(R, s->member, label, sizeof label);
        score_rates(R, s, &tok_s, &gflops, &eff);
        if (isfinite(eff))
            snprintf(pct, sizeof pct, "%.0f%%", 100 * eff);
        fprintf(f, "| %6d | %-*s | %7d | %4d | %6ld | %8.1f | %7.1f | %8s |\n", s->member + 1, lw, label, s->threads,
                s->context, s->tokens, tok_s, gflops, pct);
    }
    fprintf(f, "\n");
}

void report_markdown(FILE *f, const BenchReport *R)
{
    const ModelConfig *c = &R->models[0]->config;
    char cpu[256];
    probe_cpu_model(cpu, sizeof cpu);
    fprintf(f, "## llamix bench\n\n");
    if (R->shape)
        fprintf(f, "- members: %d random of shape %s (D %d, H %d, L %d, heads %d/%d, V %d; %.1f MB of weights per token)\n",
                R->n_models, R->shape, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                c->vocab_size, model_stream_bytes(R->models[0]) / 1e6);
    else
        for (int i = 0; i < R->n_models; i++) {
            const ModelConfig *ci = &R->models[i]->config;
            fprintf(f, "- member %d: ", i + 1);
            cli_table_string(f, R->models[i]->path); /* a newline in a name must not break the list */
            fprintf(f, " (D %d, H %d, L %d, heads %d/%d, V %d; %.1f MB of weights per token)\n",
                    ci->dim, ci->hidden_dim, ci->n_layers, ci->n_heads,
                    ci->n_kv_heads, ci->vocab_size, model_stream_bytes(R->models[i]) / 1e6);
        }
    fprintf(f, "- sampler: temperature %g, top-p %g, top-k %d; seed %llu; %d repetitions after a warm-up\n",
            R->sampler.temperature, R->sampler.top_p, R->sampler.top_k, (unsigned long long)R->seed, R->r);
    fprintf(f, "- weights of ce, me, ce-mixture (K %d):", R->n_weights);
    for (int i = 0; i < R->n_weights; i++)
        fprintf(f, "%s %.4g", i ? "," : "", R->weights[i]);
    fprintf(f, "%s\n", R->n_weights > 1 && R->weights[0] == 1.0 / R->n_weights && R->weights[R->n_weights - 1] ==
                       1.0 / R->n_weights ? " (uniform)" : "");
    fprintf(f, "- machine: %s, %ld logical CPUs; kernels %s; BLAS %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
            lx_kernel_name(), probe_blas_config());
    fprintf(f, "- pp: the prompt through what the mode runs, up to the first sample (me: one picked member). "
               "tg: the tokens after it (me: catch-ups, a member's first pick includes the prompt). "
               "tok/s: median +- median absolute deviation. calls/tokens: forward calls and tokens per member. "
               "efficiency: pp GFLOP/s (%% of sgemm peak), tg weight GB/s (%% of read bandwidth)\n\n");

    int lw = label_width(R);
    fprintf(f, "| mode       |  K |  S | %-*s | threads | test   |               tok/s | calls/tokens per member   | efficiency          |\n", lw, "model");
    fprintf(f, "| ---------- | -: | -: | %.*s | ------: | ------ | ------------------: | ------------------------- | ------------------- |\n", lw, DASHES);
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        for (int tg = 0; tg <= 1; tg++) {
            int tokens = tg ? t->n_gen : t->n_prompt;
            if (tokens == 0)
                continue;
            char test[32], tps[64], counts[160], eff[64], label[64];
            snprintf(test, sizeof test, "%s%d", tg ? "tg" : "pp", tokens);
            test_label(R, t, label, sizeof label);
            double x[BENCH_MAX_REPS];
            rates(t, R->r, tg, x);
            snprintf(tps, sizeof tps, "%.1f +- %.1f", stats_median(x, R->r), stats_mad(x, R->r));
            format_counts(counts, sizeof counts, tg ? &t->tg : &t->pp, t->k);
            double rate, e = efficiency(R, t, tg, &rate);
            int n = snprintf(eff, sizeof eff, tg ? "%.1f GB/s" : "%.1f GFLOP/s", rate);
            if (isfinite(e))
                snprintf(eff + n, sizeof eff - (size_t)n, " (%.0f%%)", 100 * e);
            fprintf(f, "| %-10s | %2d | %2d | %-*s | %7d | %-6s | %19s | %-25s | %-19s |\n", bench_mode_name(t->mode),
                    t->mode == BENCH_SINGLE ? 1 : t->k, t->sequences ? t->sequences : 1, lw, label, t->threads, test,
                    tps, counts, eff);
        }
    }
    fprintf(f, "\n");
    expected_markdown(f, R);
    catch_up_markdown(f, R);
    score_markdown(f, R);

    /* ME over CE, side by side */
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *ce = &R->tests[i];
        int routed = ce->mode != BENCH_SINGLE ? ce->mode & BENCH_ROUTED : 0;
        const BenchTest *me = ce->mode == (LX_MODE_CE | routed) && ce->n_gen > 0 ?
                         find_test(R, LX_MODE_ME | routed, ce->k, ce->threads, ce->n_prompt, ce->n_gen, ce->sequences, 0) : NULL;
        if (!me)
            continue;
        double x[BENCH_MAX_REPS], y[BENCH_MAX_REPS];
        ratios(me, ce, R->r, 0, x);
        ratios(me, ce, R->r, 1, y);
        fprintf(f, "- ME/CE speed-up%s, K %d, S %d, %d thread%s, tg%d after pp%d: **%.2fx** (range %.2f-%.2f over %d "
                   "side-by-side pairs; ceiling %d); pp%d+tg%d end to end: %.2fx\n",
                routed ? " with the router" : "", ce->k, ce->sequences ? ce->sequences : 1, ce->threads, ce->threads > 1 ? "s" : "", ce->n_gen,
                ce->n_prompt, stats_median(x, R->r), stats_min(x, R->r), stats_max(x, R->r), R->r, ce->k,
                ce->n_prompt, ce->n_gen, stats_median(y, R->r));
    }
    /* aggregate throughput of S sequences at once over the first S of the list, side by side */
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        const BenchTest *base = t->sequences ? find_test(R, t->mode, t->k, t->threads, t->n_prompt, t->n_gen,
                                                         R->tests[0].sequences, t->member) : NULL;
        if (!base || base == t || t->n_gen == 0)
            continue;
        double x[BENCH_MAX_REPS];
        for (int j = 0; j < R->r; j++)
            x[j] = t->sequences * base->tg_s[j] / (base->sequences * t->tg_s[j]);
        fprintf(f, "- S %d over S %d, %s K %d, %d thread%s, tg%d after pp%d: aggregate tok/s **%.2fx** (range %.2f-%.2f, "
                   "side by side)\n", t->sequences, base->sequences, bench_mode_name(t->mode), t->k, t->threads,
                t->threads > 1 ? "s" : "", t->n_gen, t->n_prompt, stats_median(x, R->r), stats_min(x, R->r),
                stats_max(x, R->r));
    }
    /* the router's cost: each routed test against the same test with fixed weights */
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *rt = &R->tests[i];
        const BenchTest *fx = rt->mode != BENCH_SINGLE && (rt->mode & BENCH_ROUTED) ?
                         find_test(R, rt->mode & ~BENCH_ROUTED, rt->k, rt->threads, rt->n_prompt, rt->n_gen, rt->sequences, 0) : NULL;
        if (!fx || rt->n_gen == 0)
            continue;
        double x[BENCH_MAX_REPS];
        for (int j = 0; j < R->r; j++)
            x[j] = rt->tg_s[j] / fx->tg_s[j];
        fputs("- router ", f);
        cli_table_string(f, R->router_path);
        fprintf(f, ", %s K %d, %d thread%s, tg%d: time with the router / with fixed weights **%.3fx** "
                   "(range %.3f-%.3f over %d side-by-side pairs)\n", lx_mode_name((LxMode)fx->mode),
                rt->k, rt->threads, rt->threads > 1 ? "s" : "", rt->n_gen, stats_median(x, R->r), stats_min(x, R->r),
                stats_max(x, R->r), R->r);
    }
    if (R->router_path) {
        fputs("- router ", f);
        cli_table_string(f, R->router_path);
        fprintf(f, " alone: %.1f ns per token (its weights() as a step calls it, best of 5 rounds)\n", R->router_ns);
    }
    /* thread scaling against the first thread count */
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        const BenchTest *base = find_test(R, t->mode, t->k, R->tests[0].threads, t->n_prompt, t->n_gen, t->sequences, t->member);
        if (!base || base == t || (t->mode != BENCH_SINGLE && t->k != R->tests[R->n_tests - 1].k))
            continue;
        double x[BENCH_MAX_REPS], y[BENCH_MAX_REPS];
        for (int j = 0; j < R->r; j++) {
            x[j] = base->pp_s[j] / t->pp_s[j];
            y[j] = t->n_gen ? base->tg_s[j] / t->tg_s[j] : NAN;
        }
        fprintf(f, "- %d threads over %d, %s K %d: pp%d %.2fx", t->threads, base->threads, bench_mode_name(t->mode),
                t->k, t->n_prompt, stats_median(x, R->r));
        if (t->mode == BENCH_SINGLE && n_distinct(R) > 1)
            fprintf(f, " (member %d)", t->member + 1);
        if (t->n_gen)
            fprintf(f, ", tg%d %.2fx", t->n_gen, stats_median(y, R->r));
        fprintf(f, " (median of side-by-side ratios)\n");
    }
    for (int i = 0; i < R->n_limits; i++) {
        const BenchLimits *l = &R->limits[i];
        fprintf(f, "- machine, %d thread%s: read bandwidth %.1f GB/s (best %.1f), matvec %.1f GB/s; %d^3 product: "
                   "sgemm %.1f GFLOP/s%s, llamix matmul %.1f GFLOP/s\n",
                l->threads, l->threads > 1 ? "s" : "", l->bandwidth, l->bandwidth_best, l->matvec, BENCH_SGEMM_SIZE,
                l->sgemm, kernels_have_blas() ? "" : " (no BLAS: the plain kernel)", l->matmul);
    }
    /* Two numbers: the whole process's peak (what a machine must have free for this bench, the
     * probes' buffers included), and the runs' own (their peak minus the bandwidth buffer and the
     * sgemm probe's memory, which stayed resident through them) against what the members and
     * their states should take. */
    double expected = R->checkpoint_bytes + R->state_bytes + R->rss_base;
    fprintf(f, "- memory: peak RSS %.1f MB for the whole bench, probes included (bandwidth buffer %.1f MB, --bw-mib; "
               "sgemm probe %.1f MB, its matrices and BLAS's buffers; none with --no-limits); the runs %.1f MB, "
               "%.0f%% of their expected %.1f MB (checkpoints %.1f + run state %.1f + process before loading %.1f)\n",
            R->rss_peak / 1e6, R->probe_bytes / 1e6, R->gemm_bytes / 1e6,
            R->rss_runs / 1e6, 100 * R->rss_runs / expected, expected / 1e6,
            R->checkpoint_bytes / 1e6, R->state_bytes / 1e6, R->rss_base / 1e6);
    char blas[64];
    if (R->blas_threads > 0)
        snprintf(blas, sizeof blas, "BLAS runs %d per call", R->blas_threads);
    else
        snprintf(blas, sizeof blas, R->blas_threads == 0 ? "no BLAS" : "BLAS threads unknown");
    char wait[128];
    cli_wait_describe(wait, sizeof wait);
    fprintf(f, "- threads: %d in the process after the runs; %s; idle threads wait: %s; bench took %.1f s\n",
            R->process_threads, blas, wait, R->seconds);
    if (isfinite(R->background))
        fprintf(f, "- background: other processes kept %.2f of the %ld CPUs busy during the runs%s\n", R->background,
                sysconf(_SC_NPROCESSORS_ONLN), R->background > 0.2 ? " (the absolute numbers suffer; the side-by-side ratios less)" : "");
}

/* JSON string: quotes, backslashes and control characters escaped. */
/* {"median":..,"mad":..,"min":..,"max":..,"samples":[..]} */
static void json_stats(FILE *f, const double *x, int n)
{
    const char *names[] = {"median", "mad", "min", "max"};
    double values[] = {stats_median(x, n), stats_mad(x, n), stats_min(x, n), stats_max(x, n)};
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s\"%s\":", i ? "," : "{", names[i]);
        cli_json_number(f, values[i]);
    }
    fprintf(f, ",\"samples\":[");
    for (int i = 0; i < n; i++) {
        fputs(i ? "," : "", f);
        cli_json_number(f, x[i]);
    }
    fprintf(f, "]}");
}

static void json_counts(FILE *f, const BenchCounts *c, int k)
{
    fprintf(f, "{\"calls\":[");
    for (int i = 0; i < k; i++)
        fprintf(f, "%s%ld", i ? "," : "", c->calls[i]);
    fprintf(f, "],\"tokens\":[");
    for (int i = 0; i < k; i++)
        fprintf(f, "%s%ld", i ? "," : "", c->tokens[i]);
    fprintf(f, "]}");
}

/* One object; every result and ratio on a line of its own, so line tools (grep, awk) can read it. */
void report_json(FILE *f, const BenchReport *R)
{
    char cpu[256];
    probe_cpu_model(cpu, sizeof cpu);
    fprintf(f, "{\n\"llamix\":");
    cli_json_string(f, PACKAGE_VERSION);
    fprintf(f, ",\n\"machine\":{\"cpu\":");
    cli_json_string(f, cpu);
    fprintf(f, ",\"logical_cpus\":%ld,\"memory_bytes\":%.0f,\"kernels\":", sysconf(_SC_NPROCESSORS_ONLN),
            (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE));
    cli_json_string(f, lx_kernel_name());
    fprintf(f, ",\"blas\":");
    cli_json_string(f, probe_blas_config());
    fprintf(f, ",\"compiler\":");
    cli_json_string(f, __VERSION__);
    fprintf(f, "},\n");
    if (R->router_path) {
        fprintf(f, "\"router\":{\"path\":");
        cli_json_string(f, R->router_path);
        fprintf(f, ",\"ns_per_token\":");
        cli_json_number(f, R->router_ns);
        fprintf(f, "},\n");
    }
    fprintf(f, "\"limits\":[");
    for (int i = 0; i < R->n_limits; i++) {
        const BenchLimits *l = &R->limits[i];
        fprintf(f, "%s\n {\"threads\":%d,\"read_bandwidth_gbs\":", i ? "," : "", l->threads);
        cli_json_number(f, l->bandwidth);
        fprintf(f, ",\"read_bandwidth_best_gbs\":");
        cli_json_number(f, l->bandwidth_best);
        fprintf(f, ",\"matvec_gbs\":");
        cli_json_number(f, l->matvec);
        fprintf(f, ",\"sgemm_gflops\":");
        cli_json_number(f, l->sgemm);
        fprintf(f, ",\"matmul_gflops\":");
        cli_json_number(f, l->matmul);
        fprintf(f, "}");
    }
    fprintf(f, "],\n\"members\":[");
    for (int i = 0; i < R->n_models; i++) {
        const ModelConfig *c = &R->models[i]->config;
        fprintf(f, "%s\n {\"path\":", i ? "," : "");
        cli_json_string(f, R->shape ? "(random)" : R->models[i]->path);
        fprintf(f, ",\"shape\":");
        cli_json_string(f, R->label);
        fprintf(f, ",\"dim\":%d,\"hidden_dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
                   "\"vocab_size\":%d,\"seq_len\":%d,\"weight_bytes\":%zu,\"file_bytes\":%zu",
                c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
                model_stream_bytes(R->models[i]), R->models[i]->size);
        int threads[BENCH_MAX_LIST];
        double seconds[BENCH_MAX_LIST];
        int n = single_costs(R, i, threads, seconds, BENCH_MAX_LIST);
        if (n) { /* c_k of the expected costs (a --shape member: member 0's, they are alike) */
            fprintf(f, ",\"single_s_per_token\":[");
            for (int j = 0; j < n; j++) {
                fprintf(f, "%s{\"threads\":%d,\"seconds\":", j ? "," : "", threads[j]);
                cli_json_number(f, seconds[j]);
                fputc('}', f);
            }
            fputc(']', f);
        }
        fputc('}', f);
    }
    fprintf(f, "],\n\"sampler\":{\"temperature\":%g,\"top_p\":%g,\"top_k\":%d},\"seed\":%llu,\"repetitions\":%d,\n",
            R->sampler.temperature, R->sampler.top_p, R->sampler.top_k, (unsigned long long)R->seed, R->r);
    fprintf(f, "\"weights\":[");
    for (int i = 0; i < R->n_weights; i++) {
        fputs(i ? "," : "", f);
        cli_json_number(f, R->weights[i]);
    }
    fprintf(f, "],\n");
    if (R->n_catch) {
        fprintf(f, "\"catch_up\":[");
        for (int i = 0; i < R->n_catch; i++) {
            const BenchCatchUp *c = &R->catch_up[i];
            char label[64];
            member_label(R, c->member, label, sizeof label);
            fprintf(f, "%s\n {\"member\":%d,\"shape\":", i ? "," : "", c->member);
            cli_json_string(f, label);
            fprintf(f, ",\"threads\":%d,\"position\":%d,\"span\":%d,\"seconds\":", c->threads, c->position, c->span);
            cli_json_number(f, stats_median(c->seconds, R->catch_r));
            fprintf(f, ",\"ratio\":");
            cli_json_number(f, stats_median(c->ratio, R->catch_r));
            fprintf(f, ",\"ratio_min\":");
            cli_json_number(f, stats_min(c->ratio, R->catch_r));
            fprintf(f, ",\"ratio_max\":");
            cli_json_number(f, stats_max(c->ratio, R->catch_r));
            fputc('}', f);
        }
        fprintf(f, "],\n");
    }
    if (R->n_score) {
        fprintf(f, "\"score\":[");
        for (int i = 0; i < R->n_score; i++) {
            const BenchScore *s = &R->score[i];
            char label[64];
            double tok_s, gflops, eff;
            member_label(R, s->member, label, sizeof label);
            score_rates(R, s, &tok_s, &gflops, &eff);
            fprintf(f, "%s\n {\"member\":%d,\"shape\":", i ? "," : "", s->member);
            cli_json_string(f, label);
            fprintf(f, ",\"threads\":%d,\"context\":%d,\"tokens\":%ld,\"tok_s\":", s->threads, s->context, s->tokens);
            cli_json_number(f, tok_s);
            fprintf(f, ",\"gflops\":");
            cli_json_number(f, gflops);
            fprintf(f, ",\"score_efficiency\":");
            cli_json_number(f, eff);
            fputc('}', f);
        }
        fprintf(f, "],\n");
    }
    fprintf(f, "\"results\":[");
    int first = 1;
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        for (int tg = 0; tg <= 1; tg++) {
            int tokens = tg ? t->n_gen : t->n_prompt;
            if (tokens == 0)
                continue;
            double x[BENCH_MAX_REPS], rate, e = efficiency(R, t, tg, &rate);
            rates(t, R->r, tg, x);
            char label[64];
            test_label(R, t, label, sizeof label);
            fprintf(f, "%s\n {\"mode\":\"%s\",\"k\":%d,\"shape\":", first ? "" : ",", bench_mode_name(t->mode), t->k);
            cli_json_string(f, label);
            if (t->mode == BENCH_SINGLE && n_distinct(R) > 1) /* one single test per distinct member */
                fprintf(f, ",\"member\":%d", t->member);
            fprintf(f, ",\"threads\":%d,", t->threads);
            if (t->sequences) /* batch tests only: tok/s are aggregate over the S sequences */
                fprintf(f, "\"sequences\":%d,", t->sequences);
            fprintf(f, "\"test\":\"%s%d\",\"n_prompt\":%d,\"n_gen\":%d,\"tok_s\":", tg ? "tg" : "pp", tokens,
                    t->n_prompt, t->n_gen);
            json_stats(f, x, R->r);
            fprintf(f, tg ? ",\"weight_gbs\":" : ",\"gflops\":");
            cli_json_number(f, rate);
            fprintf(f, tg ? ",\"decode_efficiency\":" : ",\"prefill_efficiency\":");
            cli_json_number(f, e);
            fprintf(f, ",\"per_member\":");
            json_counts(f, tg ? &t->tg : &t->pp, t->k);
            double ex[BENCH_MAX_REPS], over[BENCH_MAX_REPS];
            if (tg && expected_cost(R, t, ex, over)) {
                fprintf(f, ",\"expected_s_per_token\":");
                cli_json_number(f, stats_median(ex, R->r));
                fprintf(f, ",\"over_expected\":");
                cli_json_number(f, stats_median(over, R->r));
            }
            fprintf(f, "}");
            first = 0;
        }
    }
    fprintf(f, "],\n\"speedups\":[");
    first = 1;
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *ce = &R->tests[i];
        const BenchTest *me = ce->mode == LX_MODE_CE && ce->n_gen > 0 ?
                         find_test(R, LX_MODE_ME, ce->k, ce->threads, ce->n_prompt, ce->n_gen, ce->sequences, 0) : NULL;
        if (!me)
            continue;
        double x[BENCH_MAX_REPS];
        fprintf(f, "%s\n {\"what\":\"me/ce\",\"k\":%d,\"shape\":", first ? "" : ",", ce->k);
        cli_json_string(f, R->label);
        fprintf(f, ",\"threads\":%d,", ce->threads);
        if (ce->sequences)
            fprintf(f, "\"sequences\":%d,", ce->sequences);
        fprintf(f, "\"n_prompt\":%d,\"n_gen\":%d,\"tg\":", ce->n_prompt, ce->n_gen);
        ratios(me, ce, R->r, 0, x);
        json_stats(f, x, R->r);
        fprintf(f, ",\"end_to_end\":");
        ratios(me, ce, R->r, 1, x);
        json_stats(f, x, R->r);
        fprintf(f, "}");
        first = 0;
    }
    for (int i = 0; i < R->n_tests; i++) {
        const BenchTest *t = &R->tests[i];
        const BenchTest *base = find_test(R, t->mode, t->k, R->tests[0].threads, t->n_prompt, t->n_gen, t->sequences, t->member);
        if (!base || base == t)
            continue;
        double x[BENCH_MAX_REPS];
        char label[64];
        test_label(R, t, label, sizeof label);
        fprintf(f, "%s\n {\"what\":\"threads\",\"mode\":\"%s\",\"k\":%d,\"shape\":", first ? "" : ",",
                bench_mode_name(t->mode), t->k);
        cli_json_string(f, label);
        if (t->mode == BENCH_SINGLE && n_distinct(R) > 1)
            fprintf(f, ",\"member\":%d", t->member);
        fprintf(f, ",\"threads\":%d,\"over_threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"pp\":", t->threads,
                base->threads, t->n_prompt, t->n_gen);
        for (int j = 0; j < R->r; j++)
            x[j] = base->pp_s[j] / t->pp_s[j];
        json_stats(f, x, R->r);
        if (t->n_gen) {
            fprintf(f, ",\"tg\":");
            for (int j = 0; j < R->r; j++)
                x[j] = base->tg_s[j] / t->tg_s[j];
            json_stats(f, x, R->r);
        }
        fprintf(f, "}");
        first = 0;
    }
    for (int i = 0; i < R->n_tests; i++) { /* aggregate tg tok/s at S over the first S */
        const BenchTest *t = &R->tests[i];
        const BenchTest *base = t->sequences ? find_test(R, t->mode, t->k, t->threads, t->n_prompt, t->n_gen,
                                                         R->tests[0].sequences, t->member) : NULL;
        if (!base || base == t || t->n_gen == 0)
            continue;
        double x[BENCH_MAX_REPS];
        fprintf(f, "%s\n {\"what\":\"sequences\",\"mode\":\"%s\",\"k\":%d,\"shape\":", first ? "" : ",",
                bench_mode_name(t->mode), t->k);
        cli_json_string(f, R->label);
        fprintf(f, ",\"threads\":%d,\"sequences\":%d,\"over_sequences\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"tg\":",
                t->threads, t->sequences, base->sequences, t->n_prompt, t->n_gen);
        for (int j = 0; j < R->r; j++)
            x[j] = t->sequences * base->tg_s[j] / (base->sequences * t->tg_s[j]);
        json_stats(f, x, R->r);
        fprintf(f, "}");
        first = 0;
    }
    fprintf(f, "],\n\"memory\":{\"peak_rss_bytes\":%.0f,\"runs_rss_bytes\":%.0f,\"probe_buffer_bytes\":%.0f,"
               "\"sgemm_probe_bytes\":%.0f,\"checkpoint_bytes\":%.0f,\"state_bytes\":%.0f,\"base_rss_bytes\":%.0f},\n",
            R->rss_peak, R->rss_runs, R->probe_bytes, R->gemm_bytes, R->checkpoint_bytes, R->state_bytes, R->rss_base);
    char wait[128];
    cli_wait_describe(wait, sizeof wait);
    fprintf(f, "\"process_threads\":%d,\"blas_threads_per_call\":%d,\"thread_wait\":", R->process_threads,
            R->blas_threads);
    cli_json_string(f, wait);
    fprintf(f, ",\"seconds\":%.2f,\"background_cpus\":", R->seconds);
    cli_json_number(f, R->background);
    fprintf(f, "\n}\n");
}
