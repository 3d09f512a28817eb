/* harness.h: the bench harness: the plan of tests, their interleaved repetitions, and what each
 * run did. Timed runs go through the library's one generation loop, lx_generate_tokens().
 *
 * What is timed. A run appends a prompt of p tokens (BOS, then random ids) and generates n tokens;
 * every sampled token is kept, end-of-text or not (ignore_eos), so every run does the same work.
 * The run draws n + 1 tokens: the first draw ends the prompt phase.
 *   pp p  everything needed to sample the first token after the prompt, including that sample
 *         (the generation's prompt_seconds):
 *           single  one batched forward of the p tokens;
 *           ce      the same for every member, then the mixture;
 *           me      one member picked, one batched forward of the p tokens through it.
 *   tg n  n more tokens, each one fed to the members the mode runs and the next one sampled
 *         (the generation's generate_seconds):
 *           single  n forwards of one token;
 *           ce      n forwards of one token in each of the K members;
 *           me      n catch-ups: the picked member runs, in one batched forward, every token it has
 *                   not seen yet (for a member's first pick that includes the prompt: ME's prefill
 *                   is lazy, and tg pays for it).
 *   "single" is an ensemble of one member: ME with one member is exactly the plain loop.
 *   tok/s is p / pp seconds and n / tg seconds. Forward calls and tokens processed per member
 *   are counted (read at the first token, so the pp and the tg work are apart), so the work
 *   behind each number is on the table.
 *
 * Why side by side. The machine is shared and noisy: absolute times from different runs are not
 * comparable, ratios of runs made next to each other are. So repetitions interleave every test
 * (repetition 1: single, CE and ME of each K; repetition 2: the same in reverse order, which
 * cancels a linear drift; ...), and the ME/CE speed-up is the median of the per-repetition
 * ratios, not a ratio of medians. The same seed is used in every repetition, so the sampled
 * tokens, ME's member picks and the counters are identical each time: only the clock varies.
 * Every test starts warm: one untimed forward through each of its members just before it.
 *
 * Expected cost. "single" runs once for every distinct member (members of one --shape are alike
 * and share member 1's measurement; files differ by path), interleaved with the ensembles, so
 * c_k, member k's single tg seconds per token, is measured in the same repetition as each
 * ensemble test. CE runs every member every token: its expected cost is sum_k c_k (ce-mixture
 * too); ME runs member k on a fraction w_k of the tokens: sum_k w_k c_k. measured / expected,
 * per repetition, then the median: ME's is 1 when a catch-up over m tokens costs what one
 * one-token forward costs (the weights streamed once either way); above 1 is the catch-ups'
 * extra cost (and the lazy prefill of the prompt on each member's first pick).
 *
 * Catch-up (--catch-up m1,m2,...): one forward over an m-token span at position P (the first
 * prompt length), through a ForwardState made as an ensemble member's is, after the P prompt
 * tokens were run once: each repetition rewinds to P and overwrites the cache rows from P on.
 * The spans interleave within each repetition (reversed in odd ones), so ratio(m) = t(m) / t(1)
 * of one repetition is a side-by-side ratio; its median and range are reported.
 *
 * Scoring (--score C1,C2,...): what `llamix score -c C` runs for each member (score_member):
 * BOS and random ids cut into windows of C tokens, every row's logits and its log-softmax, here
 * over BENCH_SCORE_WINDOWS windows (the run state allocated once, as for a text). Its GFLOP/s count
 * every row's classifier and the attention over the window so far; its efficiency is over the
 * sgemm peak at that thread count. The window lengths interleave within each repetition.
 *
 * Beside the runs the harness measures the machine's limits (probes.h): the read bandwidth at
 * every repetition, since it drifts too, and after the runs the matvec and sgemm peaks. Decode
 * efficiency = weight bytes streamed per second (forward calls x checkpoint weight bytes / tg
 * seconds) over the bandwidth of the same repetition; prefill efficiency = prefill GFLOP/s over
 * the sgemm peak. A model small enough to stay in cache can exceed 100%. The CPU time other
 * processes took during the runs is reported too: on a shared machine it tells whether the
 * absolute numbers of this run can be trusted. */
#ifndef LLAMIX_BENCH_HARNESS_H
#define LLAMIX_BENCH_HARNESS_H

#include <llamix.h>
#include <stdio.h>

#define BENCH_MAX_LIST 16    /* values in one list (-p 16,64,256) */
#define BENCH_MAX_REPS 64
#define BENCH_MAX_MEMBERS 16
#define BENCH_MAX_MODES 4
#define BENCH_SINGLE (-1)    /* a bench mode: BENCH_SINGLE or an LxMode */
#define BENCH_ROUTED 0x100   /* or'ed into an LxMode: the same mode with the plan's router */
#define BENCH_SGEMM_SIZE 2048 /* sgemm peak: a 2048^3 product, 17 GFLOP */
#define BENCH_SGEMM_PASSES 3  /* of it at each repetition (median), after one untimed */
#define BENCH_SCORE_WINDOWS 2 /* --score: windows per timed scoring call */

/* What to run: every combination of the lists, over members that the caller opened. */
typedef struct {
    LxModel *const *models; /* (n_models) borrowed; the tests of K use the first K */
    int n_models;
    const char *shape;      /* the members' shape when they are random; NULL for files */
    int ks[BENCH_MAX_LIST], nk, ps[BENCH_MAX_LIST], np, ns[BENCH_MAX_LIST], nn;
    int ts[BENCH_MAX_LIST], nt, modes[BENCH_MAX_MODES], n_modes;
    int reps;               /* 1..BENCH_MAX_REPS */
    int limits;             /* measure the bandwidth and the peaks */
    int bw_mib;             /* size of the bandwidth buffer */
    uint64_t seed;          /* of the prompt, the sampler and ME's picks */
    LxSamplerParams sampler;
    int seqs[BENCH_MAX_LIST], nseqs; /* --sequences: batch sizes S (none: one sequence per run) */
    const LxRouter *router; /* --router: each ce/me test of its K runs again with it, side by side */
    const char *router_path;
    double weights[BENCH_MAX_MEMBERS]; /* -w: the ensembles' weights (normalised), n_weights = the one K */
    int n_weights;          /* 0: uniform over each test's K */
    int spans[BENCH_MAX_LIST], nspans; /* --catch-up: span lengths m (1 first, always); 0: no catch-up test */
    int windows[BENCH_MAX_LIST], nwindows; /* --score: window lengths C; 0: no scoring test */
    FILE *log;              /* progress lines ("llamix bench: ..."), or NULL */
} BenchPlan;

typedef struct {
    long calls[BENCH_MAX_MEMBERS];  /* forward calls per member */
    long tokens[BENCH_MAX_MEMBERS]; /* tokens processed per member */
} BenchCounts;

/* One test: a mode, K members, a thread count, a prompt and a generation length, timed r times. */
typedef struct {
    int mode;            /* BENCH_SINGLE or an LxMode */
    int member;          /* single: the member it runs (a distinct one); ensembles: 0, they run 0..k-1 */
    int k, threads, n_prompt, n_gen;
    int sequences;       /* S sequences at once through an LxBatch (seeds seed + j); 0: lx_generate_tokens */
    double *pp_s, *tg_s; /* (r) seconds, one per repetition */
    BenchCounts pp, tg;  /* identical in every repetition (fixed seed) */
    double pp_flops;     /* of the pp forwards */
    double tg_bytes;     /* weight bytes streamed by the tg forwards */
} BenchTest;

/* The machine's limits at one thread count. */
typedef struct {
    int threads;
    double bw[BENCH_MAX_REPS];        /* GB/s read bandwidth, measured at each repetition */
    double bandwidth, bandwidth_best; /* GB/s: median and best of bw */
    double matvec;                    /* GB/s */
    double gemm[BENCH_MAX_REPS];      /* GFLOP/s of BLAS sgemm (the plain kernel without BLAS), at each repetition */
    double sgemm;                     /* GFLOP/s: median of gemm */
    double matmul;                    /* GFLOP/s of matmul() on the same product */
} BenchLimits;

/* One catch-up measurement: a forward over `span` tokens at `position` through one member. */
typedef struct {
    int member, threads, position, span;
    double seconds[BENCH_MAX_REPS];              /* one per repetition */
    double ratio[BENCH_MAX_REPS];                /* seconds / the same repetition's span-1 seconds */
} BenchCatchUp;

/* One scoring measurement: BENCH_SCORE_WINDOWS windows of `context` tokens through one member. */
typedef struct {
    int member, threads, context;
    long tokens;                   /* scored: BENCH_SCORE_WINDOWS x (context - 1) */
    double flops;                  /* of its forwards */
    double seconds[BENCH_MAX_REPS]; /* one per repetition */
    double sgemm[BENCH_MAX_REPS];   /* GFLOP/s: the sgemm peak just before each repetition (NAN without limits) */
} BenchScore;

/* Everything the reports print. */
typedef struct {
    int r, n_tests;
    BenchTest *tests;        /* in the order of the plan */
    double *seconds_store;   /* every test's pp_s and tg_s */
    int n_limits;
    BenchLimits limits[BENCH_MAX_LIST]; /* one per thread count; none without limits */
    float *bw_buf;           /* (bw_n) the bandwidth buffer, NULL without limits */
    float *gemm_buf;         /* (3, BENCH_SGEMM_SIZE^2) the sgemm probe's x, w and y, NULL without limits */
    double gemm_bytes;       /* resident for the sgemm probe: its matrices and the buffers BLAS keeps */
    size_t bw_n;
    LxModel *const *models;
    int n_models;
    const char *shape;       /* NULL for files */
    char label[64];          /* the model column: the shape, or the first file's name */
    LxSamplerParams sampler;
    uint64_t seed;
    double rss_peak, rss_base;   /* bytes: the whole process's peak (the probes too, measured at the end), before loading */
    double rss_runs;             /* bytes: the peak over the runs, the bandwidth buffer taken out */
    double probe_bytes;          /* the bandwidth buffer, resident from before the runs to the end */
    double checkpoint_bytes;     /* the members' files, mapped */
    double state_bytes;          /* the largest ensemble's or scoring run's heap, as measured */
    int process_threads, blas_threads;
    double started;          /* clock at bench_begin */
    double seconds;          /* the whole bench */
    double background;       /* CPUs busy with other processes during the runs, on average */
    const char *router_path; /* the plan's router, or NULL */
    double router_ns;        /* nanoseconds of one lx_router_weights call, measured alone */
    double weights[BENCH_MAX_MEMBERS]; /* the ensembles' weights, normalised (uniform without -w) */
    int n_weights;           /* -w's K; without -w the largest K, whose uniform weights these are */
    int distinct[BENCH_MAX_MEMBERS]; /* member i's single tests are those of member distinct[i] <= i */
    int catch_r;             /* repetitions of the catch-up test (at least 11) */
    int n_catch;
    BenchCatchUp *catch_up;  /* (n_catch) by member, threads, span */
    int n_score;
    BenchScore *score;       /* (n_score) by member, threads, window length; R->r repetitions */
} BenchReport;

/* Zero R and note the clock and the process's size before any member is loaded. */
void bench_begin(BenchReport *R);

/* The most tokens one test holds: the longest prompt plus the longest generation, the first
 * prompt plus the longest catch-up span, or the longest scoring window. */
int bench_context(const BenchPlan *plan);

/* Check the plan against its members, run it and fill R. LX_ERR_FILE: members that cannot be
 * ensembled; LX_ERR_CONTEXT: a test longer than a member's context; LX_ERR_ARGUMENT: a bad
 * setting; LX_ERR_MEMORY. Progress goes to plan->log. */
LxStatus bench_run(const BenchPlan *plan, BenchReport *R, LxError *err);

void bench_report_free(BenchReport *R);

/* The weights test t runs with: -w's for its K, else uniform (w[0..t->k)). */
void bench_test_weights(const BenchReport *R, const BenchTest *t, double *w);

/* "single", or lx_mode_name(). */
const char *bench_mode_name(int mode);

#endif
