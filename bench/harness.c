/* harness.c: the plan of tests, the warm-up, the interleaved repetitions, one run through
 * lx_generate_tokens(), and the work accounting (see harness.h). */
#include "config.h"
#include "harness.h"
#include "internal.h"
#include "probes.h"
#include "stats.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *bench_mode_name(int mode)
{
    static const char *routed[] = {"me+router", "ce+router", "ce-mixture+router"}; /* LxMode's order */
    if (mode == BENCH_SINGLE)
        return "single";
    return mode & BENCH_ROUTED ? routed[(mode & ~BENCH_ROUTED) % 3] : lx_mode_name((LxMode)mode);
}

static void say(const BenchPlan *plan, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const BenchPlan *plan, const char *fmt, ...)
{
    if (plan->log) {
        va_list ap;
        va_start(ap, fmt);
        fputs("llamix bench: ", plan->log);
        vfprintf(plan->log, fmt, ap);
        fputc('\n', plan->log);
        va_end(ap);
    }
}

static int list_max(const int *x, int n)
{
    int m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

static int generation_context(const BenchPlan *plan) { return list_max(plan->ps, plan->np) + list_max(plan->ns, plan->nn); }

static int catch_up_context(const BenchPlan *plan) { return plan->nspans ? plan->ps[0] + list_max(plan->spans, plan->nspans) : 0; }

static int score_context(const BenchPlan *plan) { return plan->nwindows ? list_max(plan->windows, plan->nwindows) : 0; }

int bench_context(const BenchPlan *plan)
{
    int needs[] = {generation_context(plan), catch_up_context(plan), score_context(plan)};
    return list_max(needs, 3);
}

void bench_test_weights(const BenchReport *R, const BenchTest *t, double *w)
{
    for (int i = 0; i < t->k; i++)
        w[i] = R->n_weights == t->k && t->mode != BENCH_SINGLE ? R->weights[i] : 1.0 / t->k;
}

/* ------------------------------------------------------------------ one run */

typedef struct {
    double pp_s, tg_s; /* seconds */
    BenchCounts pp, tg;
    size_t heap;       /* bytes the ensemble allocated */
} Run;

typedef struct {
    const LxEnsemble *e;
    BenchCounts *pp;
} Recorder;

/* At the first token drawn the prompt phase is over: its counters are the pp work. */
static int record_prompt_work(void *user, const LxTokenEvent *ev)
{
    Recorder *r = user;
    if (ev->index == 0 && ev->token >= 0)
        for (int i = 0; i < lx_ensemble_size(r->e); i++)
            lx_ensemble_member_counts(r->e, i, &r->pp->calls[i], &r->pp->tokens[i]);
    return 0;
}

/* members[0..k) in mode on `threads` threads: the p prompt tokens, then n + 1 draws, every one
 * kept. A fresh ensemble, sized for p + n tokens, as `llamix generate` makes one. */
/* The ensemble and generation settings of a test in mode: a context of p + n tokens, n + 1 draws
 * with end of text ignored, so every run does the same work. */
static void test_params(const BenchPlan *plan, int mode, int threads, int p, int n, LxEnsembleParams *ep,
                        LxGenerateParams *g)
{
    *ep = lx_ensemble_defaults();
    ep->n_ctx = p + n;
    ep->threads = threads;
    ep->mode = mode == BENCH_SINGLE ? LX_MODE_ME : (LxMode)(mode & ~BENCH_ROUTED);
    ep->router = mode != BENCH_SINGLE && (mode & BENCH_ROUTED) ? plan->router : NULL;
    ep->sampler = plan->sampler;
    ep->seed = plan->seed;
    if (mode != BENCH_SINGLE && !ep->router && plan->n_weights) /* -w: the plan has one K, so it is this one */
        ep->weights = plan->weights;
    *g = lx_generate_defaults();
    g->n_predict = n + 1;
    g->ignore_eos = 1;
}

static LxStatus run_once(const BenchPlan *plan, LxModel *const *members, int k, int mode, int threads,
                         const int *prompt, int p, int n, Run *out, LxError *err)
{
    LxEnsembleParams ep;
    LxGenerateParams g;
    test_params(plan, mode, threads, p, n, &ep, &g);
    memset(out, 0, sizeof *out);

    LxEnsemble *e;
    size_t heap0 = probe_heap_bytes();
    LxStatus status = lx_ensemble_new(members, k, NULL, 0, &ep, &e, err);
    if (status != LX_OK)
        return status;
    size_t heap1 = probe_heap_bytes();
    out->heap = heap1 > heap0 ? heap1 - heap0 : 0;
    Recorder rec = {e, &out->pp};
    LxGenerateStats st;
    status = lx_generate_tokens(e, prompt, p, &g, record_prompt_work, &rec, &st, err);
    if (status == LX_OK) {
        out->pp_s = st.prompt_seconds;
        out->tg_s = st.generate_seconds;
        for (int i = 0; i < k; i++) {
            lx_ensemble_member_counts(e, i, &out->tg.calls[i], &out->tg.tokens[i]);
            out->tg.calls[i] -= out->pp.calls[i];
            out->tg.tokens[i] -= out->pp.tokens[i];
        }
    }
    lx_ensemble_free(e);
    return status;
}

/* The router alone: nanoseconds per weights() call, as an ensemble step makes it (no id checks),
 * over histories of every length up to the prompt's (a router may read the whole history), best
 * of 5 rounds. */
static double router_cost(const LxRouter *r, const int *prompt, int p)
{
    enum { CALLS = 200000 };
    double w[SCORE_MAX_MEMBERS], best = INFINITY;
    double sink = 0; /* read at the end, so the calls cannot be optimised away */
    for (int round = 0; round < 5; round++) {
        double t0 = now_seconds();
        for (int i = 0; i < CALLS; i++) {
            r->ops->weights(r, prompt, 1 + i % p, w);
            sink += w[0];
        }
        double ns = 1e9 * (now_seconds() - t0) / CALLS;
        best = ns < best ? ns : best;
    }
    return sink >= 0 ? best : NAN; /* weights are >= 0: always best */
}

/* S sequences of the same prompt at once through one LxBatch (sequence j: seed + j), n + 1 draws
 * each: pp is the first step (every prompt, then every first draw), tg the n steps after it; the
 * counters are the batched forward calls and the rows they ran. */
static LxStatus run_batch_once(const BenchPlan *plan, LxModel *const *members, int k, int mode, int threads,
                               int S, const int *prompt, int p, int n, Run *out, LxError *err)
{
    LxEnsembleParams ep;
    LxGenerateParams g;
    test_params(plan, mode, threads, p, n, &ep, &g); /* (each sequence gets its own seed below) */
    memset(out, 0, sizeof *out);
    LxBatch *b;
    size_t heap0 = probe_heap_bytes();
    LxStatus status = lx_batch_new(members, k, NULL, 0, &ep, S, &b, err);
    for (int j = 0; status == LX_OK && j < S; j++)
        status = lx_batch_add(b, prompt, p, plan->seed + (uint64_t)j, &g, NULL, NULL, NULL, err);
    if (status != LX_OK) {
        lx_batch_free(b);
        return status;
    }
    double t0 = now_seconds();
    status = lx_batch_step(b, err);
    double t1 = now_seconds();
    size_t heap1 = probe_heap_bytes(); /* the pool is made at the first step */
    out->heap = heap1 > heap0 ? heap1 - heap0 : 0;
    for (int i = 0; i < k; i++)
        lx_batch_member_counts(b, i, &out->pp.calls[i], &out->pp.tokens[i]);
    while (status == LX_OK && lx_batch_active(b) > 0)
        status = lx_batch_step(b, err);
    out->pp_s = t1 - t0;
    out->tg_s = now_seconds() - t1;
    for (int i = 0; i < k; i++) {
        lx_batch_member_counts(b, i, &out->tg.calls[i], &out->tg.tokens[i]);
        out->tg.calls[i] -= out->pp.calls[i];
        out->tg.tokens[i] -= out->pp.tokens[i];
    }
    lx_batch_free(b);
    return status;
}

/* ------------------------------------------------------------------ the plan */

/* Every combination of the lists, in the order they run: by thread count, prompt and generation
 * length; within those, single first (once per distinct member: the c_k of the expected costs),
 * then each K with its modes side by side (CE, then ME), so that the two halves of an ME/CE ratio
 * run next to each other. */
static int plan_tests(BenchReport *R, const BenchPlan *o)
{
    int most = o->nt * o->np * o->nn * o->n_modes * (o->nk + o->n_models) * (o->router ? 2 : 1) * (o->nseqs ? o->nseqs : 1);
    R->tests = calloc((size_t)most, sizeof *R->tests);
    R->seconds_store = calloc((size_t)most * 2 * (size_t)o->reps, sizeof(double));
    if (!R->tests || !R->seconds_store)
        return -1;
    for (int ti = 0; ti < o->nt; ti++)
        for (int pi = 0; pi < o->np; pi++)
            for (int ni = 0; ni < o->nn; ni++)
                for (int si = 0; si < (o->nseqs ? o->nseqs : 1); si++) /* batch sizes, outside K: CE and ME of one S side by side */
                for (int ki = -1; ki < o->nk; ki++)     /* -1: single */
                    for (int mi = 0; mi < o->n_modes * 2; mi++) {
                        /* the second round: the ce/me modes again with the router, for its K */
                        int mode = o->modes[mi % o->n_modes], single = mode == BENCH_SINGLE, routed = mi >= o->n_modes;
                        if (single != (ki < 0) ||
                            (routed && (single || !o->router || o->ks[ki] != lx_router_size(o->router))))
                            continue;
                        for (int d = 0; d < (single ? o->n_models : 1); d++) {
                            if (R->distinct[d] != d)
                                continue; /* the same as an earlier member: measured once */
                            BenchTest *t = &R->tests[R->n_tests];
                            t->member = d;
                            t->mode = routed ? mode | BENCH_ROUTED : mode;
                            t->k = single ? 1 : o->ks[ki];
                            t->threads = o->ts[ti];
                            t->n_prompt = o->ps[pi];
                            t->n_gen = o->ns[ni];
                            t->sequences = o->nseqs ? o->seqs[si] : 0;
                            t->pp_s = R->seconds_store + (size_t)R->n_tests * 2 * (size_t)o->reps;
                            t->tg_s = t->pp_s + o->reps;
                            R->n_tests++;
                        }
                    }
    return 0;
}

/* Every member at every thread count runs a prompt and a few tokens before any clock runs: that
 * maps in all its weight pages and starts the thread pools. */
static LxStatus warm_up(const BenchPlan *o, const int *prompt, LxError *err)
{
    int p = list_max(o->ps, o->np);
    for (int ti = 0; ti < o->nt; ti++)
        for (int i = 0; i < o->n_models; i++) {
            Run run;
            int room = lx_model_config(o->models[i]).seq_len - p;
            LxStatus status = run_once(o, &o->models[i], 1, BENCH_SINGLE, o->ts[ti], prompt, p,
                                       room < 4 ? room : 4, &run, err);
            if (status != LX_OK)
                return status;
        }
    return LX_OK;
}

/* One untimed forward of one token through each of the first k members. A test's timing depends
 * on what the machine did just before it: whether its weights, and the page-table entries of
 * their mapping, are still in cache after another member's run or a bandwidth pass over a GiB
 * (a 16-token prefill of the 110M shape measured at half speed after one). So every test starts
 * from the same state, the one a running generation is in: its members' weights just read. */
static LxStatus touch_members(const BenchPlan *o, LxModel *const *members, int k, int threads, const int *prompt,
                              LxError *err)
{
    for (int i = 0; i < k; i++) {
        Run run;
        LxStatus status = run_once(o, &members[i], 1, BENCH_SINGLE, threads, prompt, 1, 0, &run, err);
        if (status != LX_OK)
            return status;
    }
    return LX_OK;
}

/* The 2048^3 product on the probe's matrices (x, w, y, resident since limits_init), at this
 * moment: BLAS sgemm (blas = 1, the sgemm peak) or llamix matmul(). */
#define SGEMM_FLOATS ((size_t)BENCH_SGEMM_SIZE * BENCH_SGEMM_SIZE)
static double gemm_probe(const BenchReport *R, int threads, int blas)
{
    return probe_product(R->gemm_buf, R->gemm_buf + SGEMM_FLOATS, R->gemm_buf + 2 * SGEMM_FLOATS, BENCH_SGEMM_SIZE,
                         threads, BENCH_SGEMM_PASSES, blas);
}

/* The repetitions. Odd repetitions run the whole plan backwards (thread counts, groups and the
 * tests in them), so that a slow drift of the machine's speed, or an effect of one test on the
 * next, weighs on every test alike. */
static LxStatus run_tests(BenchReport *R, const BenchPlan *o, const int *prompt, LxError *err)
{
    for (int rep = 0; rep < R->r; rep++) {
        say(o, "repetition %d of %d", rep + 1, R->r);
        /* the read bandwidth and sgemm peak of this moment, for the decode and prefill
         * efficiencies of this repetition */
        for (int i = 0; i < R->n_limits && R->bw_buf; i++) {
            double best;
            R->limits[i].bw[rep] = probe_bandwidth(R->bw_buf, R->bw_n, R->limits[i].threads, 3, &best);
            R->limits[i].gemm[rep] = gemm_probe(R, R->limits[i].threads, 1);
        }
        for (int j = 0; j < R->n_tests; j++) {
            BenchTest *t = &R->tests[rep % 2 ? R->n_tests - 1 - j : j];
            Run run;
            LxModel *const *members = o->models + t->member; /* single: its member; ensembles: 0..k-1 */
            LxStatus status = touch_members(o, members, t->k, t->threads, prompt, err);
            if (status == LX_OK)
                status = t->sequences ? run_batch_once(o, members, t->k, t->mode, t->threads, t->sequences, prompt,
                                                       t->n_prompt, t->n_gen, &run, err)
                                      : run_once(o, members, t->k, t->mode, t->threads, prompt, t->n_prompt, t->n_gen, &run, err);
            if (status != LX_OK)
                return status;
            t->pp_s[rep] = run.pp_s;
            t->tg_s[rep] = run.tg_s;
            t->pp = run.pp;
            t->tg = run.tg;
            if ((double)run.heap > R->state_bytes)
                R->state_bytes = (double)run.heap;
        }
    }
    return LX_OK;
}

/* ------------------------------------------------------------------ catch-up */

/* --catch-up (harness.h): for each distinct member and thread count, a ForwardState made as an
 * ensemble member's (forward_state_init with the default batch, raised if a span needs more;
 * the threads as the ensemble sets them) runs the P prompt tokens once; then every repetition
 * runs one forward over each span at position P, its last row's logits computed as a catch-up
 * computes them. Rewinding to P is all it takes: the cache rows from P on are overwritten. One
 * untimed round of every span first. */
static LxStatus run_catch_up(BenchReport *R, const BenchPlan *o, const int *prompt, LxError *err)
{
    int P = o->ps[0], m_max = list_max(o->spans, o->nspans), p_max = list_max(o->ps, o->np), nd = 0;
    for (int i = 0; i < o->n_models; i++)
        nd += R->distinct[i] == i;
    R->catch_r = o->reps < 11 ? 11 : o->reps; /* a short test: more repetitions cost little */
    R->catch_up = calloc((size_t)nd * (size_t)o->nt * (size_t)o->nspans, sizeof *R->catch_up);
    int *tokens = malloc(sizeof(int) * (size_t)m_max);
    float *logits = malloc(sizeof(float) * (size_t)o->models[0]->config.vocab_size);
    LxStatus status = LX_OK;
    if (!R->catch_up || !tokens || !logits) {
        status = (LxStatus)fail(err, LX_ERR_MEMORY, "out of memory for the catch-up test");
        goto done;
    }
    for (int i = 0; i < m_max; i++) /* the tokens after the prompt: any valid ids do */
        tokens[i] = prompt[i % p_max];
    for (int d = 0; d < o->n_models && status == LX_OK; d++) {
        if (R->distinct[d] != d)
            continue;
        const Model *m = o->models[d];
        for (int ti = 0; ti < o->nt && status == LX_OK; ti++) {
            say(o, "catch-up: member %d, %d thread%s, spans at position %d", d + 1, o->ts[ti], o->ts[ti] > 1 ? "s" : "", P);
            ForwardState st;
            int rc = forward_state_init(&st, &m->config, P + m_max, 0, err);
            if (rc == 0 && st.max_batch < m_max) {
                forward_state_free(&st); /* a span longer than the default batch: one forward all the same */
                rc = forward_state_init(&st, &m->config, P + m_max, m_max, err);
            }
            if (rc) {
                forward_state_free(&st);
                status = (LxStatus)rc;
                break;
            }
            st.threads = threads_resolve(o->ts[ti]);
            BenchCatchUp *c = R->catch_up + R->n_catch;
            status = (LxStatus)forward(m, &st, prompt, P, 0, NULL, 0, err);
            for (int rep = -1; rep < R->catch_r && status == LX_OK; rep++) /* -1: the warm-up */
                for (int j = 0; j < o->nspans && status == LX_OK; j++) {
                    int si = rep % 2 ? o->nspans - 1 - j : j; /* odd repetitions backwards, against drift */
                    double t0 = now_seconds();
                    status = (LxStatus)forward(m, &st, tokens, o->spans[si], P, logits, 0, err);
                    if (rep >= 0)
                        c[si].seconds[rep] = now_seconds() - t0;
                }
            forward_state_free(&st);
            for (int j = 0; j < o->nspans && status == LX_OK; j++) {
                c[j].member = d, c[j].threads = o->ts[ti], c[j].position = P, c[j].span = o->spans[j];
                for (int rep = 0; rep < R->catch_r; rep++) /* spans[0] is 1: the same repetition's base */
                    c[j].ratio[rep] = c[j].seconds[rep] / c[0].seconds[rep];
            }
            if (status == LX_OK)
                R->n_catch += o->nspans;
        }
    }
done:
    free(tokens);
    free(logits);
    return status;
}

/* ------------------------------------------------------------------ work accounting */

/* Floating-point operations of one forward of T tokens at positions pos..pos+T-1 with the
 * classifier on `logit_rows` rows: every projection is T x (its parameters) multiply-adds, and
 * row t attends to pos + t + 1 positions with D multiply-adds for the scores and D for the
 * values, per layer. Two FLOPs per multiply-add. RMSNorm, RoPE, softmax and SwiGLU are O(T D)
 * and left out. */
static double forward_flops(const ModelConfig *c, int T, int pos, int logit_rows)
{
    double D = c->dim, H = c->hidden_dim, KVD = model_kv_dim(c), L = c->n_layers, V = c->vocab_size;
    double per_row = L * (2 * D * D + 2 * D * KVD + 3 * D * H);
    double positions = (double)T * pos + (double)T * (T + 1) / 2; /* sum over t of pos + t + 1 */
    return 2 * (T * per_row + L * 2 * D * positions + logit_rows * V * D);
}

/* The work behind each test, from its counters (pp FLOPs, tg weight bytes), and the memory a
 * run should need: the checkpoints, mapped, plus the run state (state_bytes, measured). */
static void account(BenchReport *R)
{
    for (int i = 0; i < R->n_tests; i++) {
        BenchTest *t = &R->tests[i];
        for (int j = 0; j < t->k; j++) {
            const Model *m = R->models[t->member + j];
            int S = t->sequences ? t->sequences : 1; /* S prompts of the same length side by side */
            if (t->pp.tokens[j])
                t->pp_flops += S * forward_flops(&m->config, (int)(t->pp.tokens[j] / S), 0, 1);
            t->tg_bytes += (double)t->tg.calls[j] * (double)model_stream_bytes(m);
        }
    }
    for (int i = 0; i < R->n_models; i++)
        R->checkpoint_bytes += (double)R->models[i]->size;
}

/* ------------------------------------------------------------------ scoring */

/* --score (harness.h): for each distinct member and thread count, score_member over
 * BENCH_SCORE_WINDOWS windows of each length C, the lengths interleaved within a repetition
 * (reversed in odd ones) after one untimed round. score_member runs each window's C - 1 rows
 * in forwards of up to max_batch rows, every row's classifier included; by the sums in
 * forward_flops that is the work of one forward of C - 1 rows at position 0. Its run state
 * counts toward the expected memory as an ensemble's does. */
/* score_member's progress call comes after each window with its run state alive: the heap then,
 * over the heap before the call, is the state the memory line's expectation must include. */
typedef struct {
    double base, state; /* bytes */
} HeapWatch;

static void watch_heap(void *user, int member, long done, long total, double nll_sum)
{
    HeapWatch *h = user;
    double state = (double)probe_heap_bytes() - h->base;
    (void)member, (void)done, (void)total, (void)nll_sum;
    if (state > h->state)
        h->state = state;
}

static LxStatus run_score(BenchReport *R, const BenchPlan *o, LxError *err)
{
    int nd = 0, c_max = score_context(o), V = o->models[0]->config.vocab_size;
    for (int i = 0; i < o->n_models; i++)
        nd += R->distinct[i] == i;
    long n_max = 1 + (long)BENCH_SCORE_WINDOWS * (c_max - 1);
    R->score = calloc((size_t)nd * (size_t)o->nt * (size_t)o->nwindows, sizeof *R->score);
    int *tokens = malloc(sizeof(int) * (size_t)n_max);
    double *logp = malloc(sizeof(double) * (size_t)n_max);
    if (!R->score || !tokens || !logp) {
        free(tokens);
        free(logp);
        return (LxStatus)fail(err, LX_ERR_MEMORY, "out of memory for the scoring test");
    }
    Rng rng;
    rng_seed(&rng, o->seed ^ 0x9e3779b9u);
    tokens[0] = TOKEN_BOS;
    for (long i = 1; i < n_max; i++)
        tokens[i] = (int)(rng_u32(&rng) % (uint32_t)V);
    LxStatus status = LX_OK;
    for (int d = 0; d < o->n_models && status == LX_OK; d++) {
        if (R->distinct[d] != d)
            continue;
        const Model *m = o->models[d];
        for (int ti = 0; ti < o->nt && status == LX_OK; ti++) {
            say(o, "scoring: member %d, %d thread%s, windows of %d tokens at most", d + 1, o->ts[ti],
                o->ts[ti] > 1 ? "s" : "", c_max);
            BenchScore *s = R->score + R->n_score;
            for (int rep = -1; rep < R->r && status == LX_OK; rep++) /* -1: the warm-up */
                for (int j = 0; j < o->nwindows && status == LX_OK; j++) {
                    int wi = rep % 2 ? o->nwindows - 1 - j : j;
                    int C = o->windows[wi];
                    if (rep >= 0) /* the sgemm peak of this moment, as run_tests measures it */
                        s[wi].sgemm[rep] = R->gemm_buf ? gemm_probe(R, o->ts[ti], 1) : NAN;
                    HeapWatch heap = {(double)probe_heap_bytes(), 0};
                    ScoreOptions so = {.context = C, .threads = o->ts[ti], .member = d, .progress = watch_heap,
                                       .user = &heap};
                    double t0 = now_seconds();
                    status = (LxStatus)score_member(m, tokens, 1 + (long)BENCH_SCORE_WINDOWS * (C - 1), &so, logp, err);
                    if (rep >= 0)
                        s[wi].seconds[rep] = now_seconds() - t0;
                    if (heap.state > R->state_bytes)
                        R->state_bytes = heap.state;
                }
            for (int j = 0; j < o->nwindows && status == LX_OK; j++) {
                s[j].member = d, s[j].threads = o->ts[ti], s[j].context = o->windows[j];
                s[j].tokens = (long)BENCH_SCORE_WINDOWS * (o->windows[j] - 1);
                s[j].flops = BENCH_SCORE_WINDOWS * forward_flops(&m->config, o->windows[j] - 1, 0, o->windows[j] - 1);
            }
            if (status == LX_OK)
                R->n_score += o->nwindows;
        }
    }
    free(tokens);
    free(logp);
    return status;
}

/* ------------------------------------------------------------------ machine limits */

/* The bandwidth buffer and the sgemm probe's matrices, allocated and touched before the runs: the
 * read bandwidth and the sgemm peak are measured at every repetition, beside the tests they are
 * compared with (they drift on a shared machine). */
static LxStatus limits_init(BenchReport *R, const BenchPlan *o, LxError *err)
{
    R->bw_n = (size_t)o->bw_mib * 1024 * 1024 / sizeof(float);
    R->bw_buf = alloc_zeroed(R->bw_n, sizeof(float));
    if (!R->bw_buf)
        return (LxStatus)fail(err, LX_ERR_MEMORY, "out of memory for a %d MiB bandwidth buffer (--bw-mib)", o->bw_mib);
    for (size_t i = 0; i < R->bw_n; i += 1024)
        R->bw_buf[i] = 1.0f;
    if (!(R->gemm_buf = alloc_zeroed(3 * SGEMM_FLOATS, sizeof(float))))
        return (LxStatus)fail(err, LX_ERR_MEMORY, "out of memory for the sgemm probe's matrices");
    probe_product_fill(R->gemm_buf, R->gemm_buf + SGEMM_FLOATS, BENCH_SGEMM_SIZE);
    for (int ti = 0; ti < o->nt; ti++)
        R->limits[R->n_limits++].threads = o->ts[ti];
    /* one probe at the most threads before the runs: the work buffers BLAS allocates for it on
     * each thread stay resident, and count with the probe, not with the runs */
    double before = probe_rss();
    gemm_probe(R, list_max(o->ts, o->nt), 1); /* (writes y: all three resident from here on) */
    R->gemm_bytes = 3.0 * (double)SGEMM_FLOATS * sizeof(float) + (probe_rss() - before);
    return LX_OK;
}

/* After the runs: the medians of the bandwidth and the sgemm peak over the repetitions, and the
 * kernels' ceilings. */
static void limits_finish(BenchReport *R)
{
    for (int i = 0; i < R->n_limits; i++) {
        BenchLimits *l = &R->limits[i];
        l->bandwidth = stats_median(l->bw, R->r);
        l->bandwidth_best = stats_max(l->bw, R->r);
        l->matvec = probe_matvec(R->bw_buf, R->bw_n, l->threads, 5);
        l->sgemm = stats_median(l->gemm, R->r);
        l->matmul = gemm_probe(R, l->threads, 0);
    }
}

/* ------------------------------------------------------------------ the bench */

void bench_begin(BenchReport *R)
{
    memset(R, 0, sizeof *R);
    R->started = now_seconds();
    R->rss_base = probe_peak_rss();
}

static LxStatus check_plan(const BenchPlan *o, LxError *err)
{
    const Model *m0 = o->models[0];
    int ctx = generation_context(o), V = m0->config.vocab_size;
    for (int i = 0; i < o->n_models; i++) {
        const Model *m = o->models[i];
        if (m->config.vocab_size != V)
            return (LxStatus)fail(err, LX_ERR_FILE, "%s has vocab_size %d but %s has %d: members must share one vocabulary",
                                  m->path, m->config.vocab_size, m0->path, V);
        if (m->config.seq_len < ctx)
            return (LxStatus)fail(err, LX_ERR_CONTEXT, "%s: prompt + generated tokens (%d) exceed its context (seq_len %d)",
                                  m->path, ctx, m->config.seq_len);
        if (m->config.seq_len < catch_up_context(o))
            return (LxStatus)fail(err, LX_ERR_CONTEXT, "--catch-up %d: the first prompt (-p %d) plus the span, %d "
                                  "tokens, exceed the context of %s (seq_len %d)", list_max(o->spans, o->nspans),
                                  o->ps[0], catch_up_context(o), m->path, m->config.seq_len);
        if (m->config.seq_len < score_context(o))
            return (LxStatus)fail(err, LX_ERR_CONTEXT, "--score %d: the window exceeds the context of %s (seq_len %d)",
                                  score_context(o), m->path, m->config.seq_len);
    }
    for (int i = 0; i < o->nwindows; i++)
        if (o->windows[i] < 2)
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "--score %d: a window is at least 2 tokens (BOS and one to score)",
                                  o->windows[i]);
    for (int i = 0; i < o->nspans; i++)
        if (o->spans[i] < 1)
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "--catch-up %d: a span is at least 1 token", o->spans[i]);
    if (o->nspans && o->spans[0] != 1)
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "--catch-up: the span list must start with the base span 1");
    return sampler_params_check(&o->sampler, err) ? LX_ERR_ARGUMENT : LX_OK;
}

LxStatus bench_run(const BenchPlan *o, BenchReport *R, LxError *err)
{
    LxStatus status = check_plan(o, err);
    if (status != LX_OK)
        return status;
    R->r = o->reps;
    R->models = o->models;
    R->n_models = o->n_models;
    R->shape = o->shape;
    R->sampler = o->sampler;
    R->seed = o->seed;
    R->router_path = o->router ? o->router_path : NULL;
    /* members alike share their single tests: every --shape member, or files of one path */
    for (int i = 0; i < o->n_models; i++) {
        R->distinct[i] = i;
        for (int j = 0; j < i && R->distinct[i] == i; j++)
            if (o->shape || strcmp(o->models[i]->path, o->models[j]->path) == 0)
                R->distinct[i] = j;
    }
    R->n_weights = o->n_weights ? o->n_weights : list_max(o->ks, o->nk);
    for (int i = 0; i < R->n_weights; i++)
        R->weights[i] = o->n_weights ? o->weights[i] : 1.0 / R->n_weights;

    /* the prompt: BOS, then random ids */
    int V = o->models[0]->config.vocab_size, p_max = list_max(o->ps, o->np);
    int *prompt = malloc(sizeof(int) * (size_t)p_max);
    if (!prompt || plan_tests(R, o)) {
        free(prompt);
        return (LxStatus)fail(err, LX_ERR_MEMORY, "out of memory");
    }
    Rng rng;
    rng_seed(&rng, o->seed ^ 0x5bd1e995u);
    prompt[0] = TOKEN_BOS < V ? TOKEN_BOS : 0;
    for (int i = 1; i < p_max; i++)
        prompt[i] = (int)(rng_u32(&rng) % (uint32_t)V);

    if (o->limits && (status = limits_init(R, o, err)) != LX_OK)
        goto done;
    say(o, "warming up");
    double busy0 = probe_machine_busy_seconds(), own0 = probe_cpu_seconds(), wall0 = now_seconds();
    if ((status = warm_up(o, prompt, err)) != LX_OK || (status = run_tests(R, o, prompt, err)) != LX_OK ||
        (o->nspans && (status = run_catch_up(R, o, prompt, err)) != LX_OK) ||
        (o->nwindows && (status = run_score(R, o, err)) != LX_OK))
        goto done;
    R->background = (probe_machine_busy_seconds() - busy0 - (probe_cpu_seconds() - own0)) / (now_seconds() - wall0);
    account(R);
    /* The runs' peak: the bandwidth buffer and the sgemm probe's memory were resident all along,
     * so they come out. The whole process's peak, probes included, is taken again at the end. */
    R->probe_bytes = (double)R->bw_n * sizeof(float);
    R->rss_runs = probe_peak_rss() - R->probe_bytes - R->gemm_bytes;
    R->process_threads = probe_process_threads();
    if (o->router)
        R->router_ns = router_cost(o->router, prompt, p_max);
    R->blas_threads = probe_blas_threads();
    if (o->limits) {
        say(o, "measuring matvec and sgemm peaks");
        limits_finish(R);
    }
    if (o->shape) {
        snprintf(R->label, sizeof R->label, "%s", o->shape);
    } else {
        const char *path = o->models[0]->path, *slash = strrchr(path, '/');
        snprintf(R->label, sizeof R->label, "%.40s%s", slash ? slash + 1 : path, o->n_models > 1 ? "+" : "");
        for (char *c = R->label; *c; c++) /* a table cell: no control bytes (a newline ends the row) */
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    }
    R->rss_peak = probe_peak_rss(); /* after the matvec probe too */
    R->seconds = now_seconds() - R->started;
done:
    free(prompt);
    return status;
}

void bench_report_free(BenchReport *R)
{
    free(R->bw_buf);
    free(R->gemm_buf);
    free(R->tests);
    free(R->seconds_store);
    free(R->catch_up);
    free(R->score);
    R->catch_up = NULL;
    R->score = NULL;
    R->bw_buf = NULL;
    R->gemm_buf = NULL;
    R->tests = NULL;
    R->seconds_store = NULL;
}
