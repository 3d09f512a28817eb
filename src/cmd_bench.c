/* cmd_bench.c: `llamix bench`: the speed of one model, of CE and of ME, measured side by side in
 * one process, next to the machine's own limits measured in the same run.
 *
 * What is timed. A run appends a prompt of p tokens (BOS, then random ids) and generates n tokens;
 * every sampled token is kept, end-of-text or not, so every run does the same amount of work.
 *   pp p  everything needed to sample the first token after the prompt, including that sample:
 *           single  one batched forward of the p tokens;
 *           ce      the same for every member, then the mixture;
 *           me      one member picked, one batched forward of the p tokens through it.
 *   tg n  n more tokens, each one fed to the members the mode runs and the next one sampled:
 *           single  n forwards of one token;
 *           ce      n forwards of one token in each of the K members;
 *           me      n catch-ups: the picked member runs, in one batched forward, every token it has
 *                   not seen yet (for a member's first pick that includes the prompt: ME's prefill
 *                   is lazy, and tg pays for it).
 *   tok/s is p / pp seconds and n / tg seconds. Forward calls and tokens processed per member
 *   are counted, so the work behind each number is on the table.
 *
 * Why side by side. The machine is shared and noisy: absolute times from different runs are not
 * comparable, ratios of runs made next to each other are. So repetitions interleave every test
 * (repetition 1: single, CE and ME of each K; repetition 2: the same in reverse order, which
 * cancels a linear drift; ...), and the ME/CE speed-up is the median of the per-repetition
 * ratios, not a ratio of medians. The same seed is used in every repetition, so the sampled
 * tokens, ME's member picks and the counters are identical each time: only the clock varies.
 * Every test starts warm: one untimed forward through each of its members just before it.
 *
 * The machine's limits, measured in the same process with the same threads: the memory read
 * bandwidth (a threaded sum over a buffer far larger than the caches), at every repetition since
 * it drifts too, and after the runs the sgemm peak (BLAS on a large square product, each thread
 * on its slice as matmul() splits it; beside it matmul() itself on that product). Decode
 * efficiency = weight bytes streamed per second (forward calls x checkpoint weight bytes / tg
 * seconds) over the bandwidth of the same repetition; prefill efficiency = prefill GFLOP/s over
 * the sgemm peak. A model small enough to stay in cache can exceed 100%.
 *
 * The CPU time other processes took during the runs is reported too: on a shared machine it
 * tells whether the absolute numbers of this run can be trusted. */
#include "config.h"
#include "cli.h"
#include "ensemble.h"
#include "forward.h"
#include "kernels.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"
#include "util.h"

#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

#define MAX_LIST 16             /* values in one list option (-p 16,64,256) */
#define MAX_REPS 64
#define MODE_SINGLE (-1)        /* a bench mode: MODE_SINGLE or an EnsembleMode */
#define DEFAULT_SHAPE "15M"
#define DEFAULT_MEMBERS 3
#define DEFAULT_PROMPT 16
#define DEFAULT_GEN 128
#define DEFAULT_REPS 5
#define DEFAULT_BW_MIB 1024     /* bandwidth buffer: far beyond any L3 of this class of machine */
#define SGEMM_SIZE 2048         /* sgemm peak: a 2048^3 product, 17 GFLOP */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: llamix bench [options]                      (no options: a quick demo)\n"
        "       llamix bench -m MODEL [-m MODEL ...] [options]\n"
        "       llamix bench --shape NAME [-k LIST] [options]\n\n"
        "Times prompt processing (pp) and generation (tg) of one model (single), of the\n"
        "conventional ensemble (ce: every member every token) and of the mixture-model-like\n"
        "ensemble (me: one member per token, caught up lazily), interleaved in one process, and\n"
        "measures the machine's memory bandwidth and sgemm peak in the same run.\n\n"
        "  -m, --model PATH       a checkpoint; repeat for members (or give them as arguments)\n"
        "      --shape NAME       random members of a shape instead: 260K, 15M, 42M, 110M, tiny\n"
        "                         (default " DEFAULT_SHAPE "), seeds -s, -s+1, ...; written to a temporary\n"
        "                         directory and deleted as soon as they are mapped\n"
        "  -k, --members LIST     ensemble sizes, e.g. 3 or 1,2,3,4 (default: all -m models, or %d)\n"
        "  -p, --n-prompt LIST    prompt lengths (default %d)\n"
        "  -n, --n-gen LIST       tokens generated after the prompt (default %d; 0: prompt only)\n"
        "  -r, --repetitions N    timed repetitions of every test (default %d), after a warm-up\n"
        "  -t, --threads LIST     thread counts (default: OMP_NUM_THREADS or all cores)\n"
        "  -e, --ensemble LIST    modes among single, ce, me, ce-mixture (default single,ce,me)\n"
        "  -o, --output FORMAT    md (default) or json, on stdout\n"
        "      --json-file PATH   also write the json report to PATH\n"
        "  -s, --seed N           seed of the prompt, the sampler and ME's picks (default 1)\n"
        "      --temp T  --top-p P  --top-k K\n"
        "                         the sampler (default temperature 1, top-p 1 = off, top-k off)\n"
        "      --bw-mib N         size of the bandwidth buffer in MiB (default %d)\n"
        "      --no-limits        skip the bandwidth and sgemm measurements\n"
        "  -h, --help\n\n"
        "pp P: the P prompt tokens through what the mode runs to sample the first token (single: one\n"
        "forward; ce: one per member; me: one, through the picked member). tg N: N more tokens, each\n"
        "fed to the members the mode runs (me: the picked member catches up on every token it\n"
        "missed, the prompt included on its first pick). tok/s are medians over the repetitions,\n"
        "+- the median absolute deviation. The ME/CE speed-up is the median of per-repetition\n"
        "ratios. Random members have nearly flat next-token distributions; with --top-p < 1 the\n"
        "sampler sorts most of the vocabulary every token, which real models rarely make it do.\n",
        DEFAULT_MEMBERS, DEFAULT_PROMPT, DEFAULT_GEN, DEFAULT_REPS, DEFAULT_BW_MIB);
}

/* ------------------------------------------------------------------ small statistics */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of x (n), n >= 1; x is not modified. */
static double median(const double *x, int n)
{
    double sorted[64];
    double *s = n <= 64 ? sorted : malloc(sizeof(double) * (size_t)n);
    if (!s)
        return NAN;
    memcpy(s, x, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), compare_doubles);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    if (s != sorted)
        free(s);
    return m;
}

/* Median absolute deviation: the spread that one outlier cannot inflate. */
static double mad(const double *x, int n)
{
    double m = median(x, n), dev[64];
    double *d = n <= 64 ? dev : malloc(sizeof(double) * (size_t)n);
    if (!d)
        return NAN;
    for (int i = 0; i < n; i++)
        d[i] = fabs(x[i] - m);
    double r = median(d, n);
    if (d != dev)
        free(d);
    return r;
}

static double min_of(const double *x, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] < m ? x[i] : m;
    return m;
}

static double max_of(const double *x, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
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

/* Bytes a ForwardState for n_ctx positions holds (mirrors forward_state_init's plan). */
static double state_bytes(const ModelConfig *c, int n_ctx)
{
    double D = c->dim, H = c->hidden_dim, KVD = model_kv_dim(c), L = c->n_layers;
    double N = n_ctx, B = n_ctx < 128 ? n_ctx : 128, HS = model_head_size(c);
    return 4 * (2 * L * N * KVD + B * (4 * D + 2 * KVD + 2 * H) + B * c->n_heads * N + N * HS);
}

/* Peak resident set size so far, bytes. */
static double peak_rss(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return 1024.0 * (double)u.ru_maxrss;
}

/* CPU seconds this process has used. */
static double own_cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

/* CPU seconds every process on the machine has used (busy time in /proc/stat, steal included:
 * on a VM that is the host's other guests), or NAN where there is no /proc/stat. The bench
 * reports busy minus its own as the background load it ran against. */
static double machine_busy_seconds(void)
{
    unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
    FILE *f = fopen("/proc/stat", "r");
    int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                         &v[4], &v[5], &v[6], &v[7]) : 0;
    if (f)
        fclose(f);
    if (got < 4)
        return NAN;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* ------------------------------------------------------------------ one timed run */

typedef struct {
    long calls[CLI_MAX_MEMBERS];  /* forward calls per member */
    long tokens[CLI_MAX_MEMBERS]; /* tokens processed per member */
} Counts;

typedef struct {
    double pp_s, tg_s; /* seconds */
    Counts pp, tg;
} Run;

typedef struct {
    const Model *members[CLI_MAX_MEMBERS];
    const int *prompt; /* (p) BOS then random ids */
    SamplerParams sampler;
    uint64_t seed;
} Setup;

/* single: the plain loop of one model: forward, sample, forward the sample, ... */
static int run_single(const Setup *b, int p, int n, Run *out, char err[])
{
    const Model *m = b->members[0];
    ForwardState s;
    Sampler smp;
    float *logits = alloc_zeroed((size_t)m->config.vocab_size, sizeof(float));
    int status = -1;
    memset(&smp, 0, sizeof smp);
    if (forward_state_init(&s, &m->config, p + n, 0, err) ||
        sampler_init(&smp, m->config.vocab_size, b->sampler, err) || !logits) {
        if (!logits)
            fail(err, "out of memory for the logits");
        goto done;
    }
    memset(out, 0, sizeof *out);
    Rng rng;
    rng_seed(&rng, b->seed);

    double t0 = now_seconds();
    if (forward(m, &s, b->prompt, p, 0, logits, 0, err))
        goto done;
    int token = sampler_sample(&smp, logits, &rng);
    double t1 = now_seconds();
    for (int i = 0; i < n; i++) {
        if (forward(m, &s, &token, 1, p + i, logits, 0, err))
            goto done;
        token = sampler_sample(&smp, logits, &rng);
    }
    double t2 = now_seconds();

    out->pp_s = t1 - t0;
    out->tg_s = t2 - t1;
    out->pp.calls[0] = 1;
    out->pp.tokens[0] = p;
    out->tg.calls[0] = n;
    out->tg.tokens[0] = n;
    status = 0;
done:
    free(logits);
    sampler_free(&smp);
    forward_state_free(&s);
    return status;
}

/* ce / me through the Ensemble API, exactly as `llamix generate` drives it. */
static int run_ensemble(const Setup *b, EnsembleMode mode, int k, int p, int n, Run *out, char err[])
{
    Ensemble e;
    int status = -1, token;
    if (ensemble_init(&e, b->members, NULL, k, p + n, mode, b->sampler, b->seed, err))
        goto done;
    memset(out, 0, sizeof *out);

    double t0 = now_seconds();
    if (ensemble_append(&e, b->prompt, p, err) || ensemble_step(&e, &token, err) ||
        (n > 0 && ensemble_append(&e, &token, 1, err)))
        goto done;
    double t1 = now_seconds();
    for (int i = 0; i < k; i++) {
        out->pp.calls[i] = e.members[i].forward_calls;
        out->pp.tokens[i] = e.members[i].tokens_processed;
    }
    for (int i = 0; i < n; i++)
        if (ensemble_step(&e, &token, err) || (i < n - 1 && ensemble_append(&e, &token, 1, err)))
            goto done;
    double t2 = now_seconds();

    out->pp_s = t1 - t0;
    out->tg_s = t2 - t1;
    for (int i = 0; i < k; i++) {
        out->tg.calls[i] = e.members[i].forward_calls - out->pp.calls[i];
        out->tg.tokens[i] = e.members[i].tokens_processed - out->pp.tokens[i];
    }
    status = 0;
done:
    ensemble_free(&e);
    return status;
}

/* ------------------------------------------------------------------ machine limits */

/* Sum of x (n) with 16 independent partial sums: the loop is bound by loads, not by the latency
 * of one running add, and it vectorises without reassociating anything. */
static float sum_floats(const float *x, size_t n)
{
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += x[i + l];
    float s = 0;
    for (; i < n; i++)
        s += x[i];
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

/* Read bandwidth, GB/s: every thread sums its own contiguous slice of buf (n floats), as
 * matmul() gives each thread its own slice of a weight matrix. Median of `passes` (best too). */
static double measure_bandwidth(const float *buf, size_t n, int passes, double *best)
{
    double rates[16];
    int slices = threads_available();
    size_t per = (n + (size_t)slices - 1) / (size_t)slices;
    volatile float sink = 0;
    passes = passes > 16 ? 16 : passes;
    for (int r = 0; r < passes; r++) {
        float total = 0;
        double t0 = now_seconds();
        #pragma omp parallel for schedule(static) reduction(+ : total)
        for (int s = 0; s < slices; s++) {
            size_t i0 = (size_t)s * per, i1 = i0 + per < n ? i0 + per : n;
            if (i0 < i1)
                total += sum_floats(buf + i0, i1 - i0);
        }
        double t1 = now_seconds();
        sink += total;
        rates[r] = (double)n * sizeof(float) / (t1 - t0) / 1e9;
    }
    (void)sink;
    *best = max_of(rates, passes);
    return median(rates, passes);
}

/* The decode kernel's own ceiling: matmul() with one input row over a weight matrix of n floats
 * (rows of 4096), GB/s of weights. Median of `passes`. */
static double measure_matvec(const float *w, size_t n, int passes)
{
    const int K = 4096, N = (int)(n / (size_t)K);
    float *x = alloc_zeroed((size_t)K, sizeof(float)), *y = alloc_zeroed((size_t)N, sizeof(float));
    double rates[16];
    passes = passes > 16 ? 16 : passes;
    if (!x || !y) {
        free(x);
        free(y);
        return NAN;
    }
    for (int j = 0; j < K; j++)
        x[j] = 1.0f / (float)(j + 1);
    for (int r = 0; r < passes; r++) {
        double t0 = now_seconds();
        matmul(y, x, w, 1, K, N);
        rates[r] = (double)N * K * sizeof(float) / (now_seconds() - t0) / 1e9;
    }
    free(x);
    free(y);
    return median(rates, passes);
}

/* GFLOP/s of an (S, S) x (S, S) product, median of `passes` after one untimed pass.
 *   blas = 1: the sgemm peak: CBLAS sgemm, each thread on its own slice of the output rows as
 *             matmul() splits them, so it runs with exactly our threads (BLAS itself on one).
 *   blas = 0: llamix's own matmul(), whatever kernel it picks for S rows: what prefill runs. */
static double measure_product(int S, int passes, int blas)
{
    size_t n = (size_t)S * S;
    float *x = alloc_zeroed(n, sizeof(float)), *w = alloc_zeroed(n, sizeof(float));
    float *y = alloc_zeroed(n, sizeof(float));
    double rates[16];
    double result = NAN;
    passes = passes > 16 ? 16 : passes;
    if (x && w && y) {
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)(i % 7) * 0.125f;
            w[i] = (float)(i % 5) * 0.25f;
        }
        int slices = threads_available(), rows = (S + slices - 1) / slices;
        for (int r = -1; r < passes; r++) {
            double t0 = now_seconds();
            if (blas) {
                #pragma omp parallel for schedule(static)
                for (int s = 0; s < slices; s++) {
                    int n0 = s * rows, n1 = n0 + rows < S ? n0 + rows : S;
                    matmul_blas(y, x, w, S, S, S, n0, n1);
                }
            } else {
                matmul(y, x, w, S, S, S);
            }
            if (r >= 0)
                rates[r] = 2.0 * S * (double)S * S / (now_seconds() - t0) / 1e9;
        }
        result = median(rates, passes);
    }
    free(x);
    free(w);
    free(y);
    return result;
}

typedef struct {
    int threads;
    double bw[MAX_REPS];              /* GB/s read bandwidth, measured at each repetition */
    double bandwidth, bandwidth_best; /* GB/s: median and best of bw */
    double matvec;                    /* GB/s */
    double sgemm;                     /* GFLOP/s of BLAS sgemm (the plain kernel without BLAS) */
    double matmul;                    /* GFLOP/s of matmul() on the same product */
} Limits;

/* Threads in this process now (OpenMP's pool, BLAS's own pool if it made one, and main). */
static int process_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int blas_threads(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    return openblas_get_num_threads();
#else
    return kernels_have_blas() ? -1 : 0;
#endif
}

static const char *blas_config(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    return openblas_get_config();
#else
    return BLAS_PROVIDER;
#endif
}

/* "model name" from /proc/cpuinfo, or "unknown". */
static void cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += strspn(v + 1, " \t") + 1;
                v[strcspn(v, "\n")] = '\0';
                snprintf(out, size, "%s", v);
            }
            break;
        }
    if (f)
        fclose(f);
}

/* ------------------------------------------------------------------ the plan of tests */

/* One test: a mode, K members, a thread count, a prompt and a generation length, timed r times. */
typedef struct {
    int mode;   /* MODE_SINGLE or an EnsembleMode */
    int k, threads, n_prompt, n_gen;
    double *pp_s, *tg_s; /* (r) seconds, one per repetition */
    Counts pp, tg;       /* identical in every repetition (fixed seed) */
    double pp_flops;     /* of the pp forwards */
    double tg_bytes;     /* weight bytes streamed by the tg forwards */
} Test;

static const char *mode_name(int mode) { return mode == MODE_SINGLE ? "single" : ensemble_mode_name(mode); }

/* Parse "1,2,3" into at most MAX_LIST ints in [min, max]. */
static int parse_list(const char *option, const char *text, long min, long max, int *values, int *count)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    *count = 0;
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (*count == MAX_LIST) {
            cli_error("%s: at most %d values", option, MAX_LIST);
            return -1;
        }
        if (cli_int(option, item, min, max, &values[(*count)++]))
            return -1;
    }
    if (*count == 0) {
        cli_error("%s: no values in '%s'", option, text);
        return -1;
    }
    return 0;
}

static int parse_modes(const char *text, int *modes, int *count)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    *count = 0;
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        EnsembleMode m;
        if (*count == 4) {
            cli_error("--ensemble: at most 4 modes");
            return -1;
        }
        if (strcmp(item, "single") == 0)
            modes[(*count)++] = MODE_SINGLE;
        else if (ensemble_mode_parse(item, &m) == 0)
            modes[(*count)++] = m;
        else {
            cli_error("--ensemble: '%s' is not one of single, ce, me, ce-mixture", item);
            return -1;
        }
    }
    return *count ? 0 : -1;
}

/* ------------------------------------------------------------------ random members */

/* Write k random members of config c (seeds seed, seed + 1, ...) into a fresh temporary
 * directory, map them, and delete the files and the directory at once: the mappings keep the
 * data alive and nothing is left behind, however the process ends. */
static int make_members(const ModelConfig *c, int k, uint64_t seed, Model *models, char err[])
{
    const char *base = getenv("TMPDIR");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/llamix-bench-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir))
        return fail(err, "cannot create a temporary directory %s", dir);
    int i = 0, status = 0;
    for (; i < k; i++) {
        snprintf(path, sizeof path, "%s/member-%d.bin", dir, i + 1);
        int bad = model_write_random(path, c, 1, 1, seed + (uint64_t)i, 0, err) ||
                  model_open(&models[i], path, err);
        unlink(path);
        if (bad) {
            status = -1;
            break;
        }
    }
    rmdir(dir);
    if (status)
        cli_close_models(models, i);
    return status;
}

/* ------------------------------------------------------------------ reports */

typedef struct {
    int r, n_tests;
    Test *tests;
    double *seconds_store; /* every test's pp_s and tg_s */
    int n_limits;
    Limits limits[MAX_LIST]; /* one per thread count */
    float *bw_buf;           /* (bw_n) the bandwidth buffer, NULL with --no-limits */
    size_t bw_n;
    const Model *models;
    int n_models;
    const char *shape; /* NULL for -m models */
    char label[64];    /* the model column */
    SamplerParams sampler;
    uint64_t seed;
    double rss_peak, rss_base, checkpoint_bytes, state_bytes;
    int process_threads, blas_threads;
    double seconds;    /* the whole bench */
    double background; /* CPUs busy with other processes during the runs, on average */
} Report;

static const Limits *limits_for(const Report *R, int threads)
{
    for (int i = 0; i < R->n_limits; i++)
        if (R->limits[i].threads == threads)
            return &R->limits[i];
    return NULL;
}

/* Per-repetition rates of one test: tok/s of pp or tg. */
static void rates(const Test *t, int r, int tg, double *out)
{
    for (int i = 0; i < r; i++)
        out[i] = tg ? t->n_gen / t->tg_s[i] : t->n_prompt / t->pp_s[i];
}

static const Test *find_test(const Report *R, int mode, int k, int threads, int p, int n)
{
    for (int i = 0; i < R->n_tests; i++) {
        const Test *t = &R->tests[i];
        if (t->mode == mode && t->k == k && t->threads == threads && t->n_prompt == p && t->n_gen == n)
            return t;
    }
    return NULL;
}

/* Per repetition: the rate behind a test's tok/s (tg: weight GB/s streamed, pp: GFLOP/s) and its
 * efficiency (tg: over the read bandwidth measured in the same repetition; pp: over the sgemm
 * peak). The efficiency is NAN when the limits were not measured. Returns the median efficiency
 * and leaves the median rate in *rate. */
static double efficiency(const Report *R, const Test *t, int tg, double *rate)
{
    const Limits *lim = limits_for(R, t->threads);
    double x[MAX_REPS], e[MAX_REPS];
    for (int j = 0; j < R->r; j++) {
        x[j] = tg ? t->tg_bytes / t->tg_s[j] / 1e9 : t->pp_flops / t->pp_s[j] / 1e9;
        e[j] = !lim ? NAN : tg ? x[j] / lim->bw[j] : x[j] / lim->sgemm;
    }
    *rate = median(x, R->r);
    return median(e, R->r);
}

/* Per-repetition ratios a/b of tg tok/s (end_to_end: of (p + n) / (pp + tg) seconds). */
static void ratios(const Test *a, const Test *b, int r, int end_to_end, double *out)
{
    for (int i = 0; i < r; i++)
        out[i] = end_to_end ? (b->pp_s[i] + b->tg_s[i]) / (a->pp_s[i] + a->tg_s[i]) : b->tg_s[i] / a->tg_s[i];
}

/* "256/256 x3" when every member did the same, else each member's calls/tokens. */
static void format_counts(char *out, size_t size, const Counts *c, int k)
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

static void print_md(FILE *f, const Report *R)
{
    const Model *m0 = &R->models[0];
    const ModelConfig *c = &m0->config;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    fprintf(f, "## llamix bench\n\n");
    if (R->shape)
        fprintf(f, "- members: %d random of shape %s (D %d, H %d, L %d, heads %d/%d, V %d; %.1f MB of weights per token)\n",
                R->n_models, R->shape, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                c->vocab_size, model_weight_bytes(c) / 1e6);
    else
        for (int i = 0; i < R->n_models; i++) {
            const ModelConfig *ci = &R->models[i].config;
            fprintf(f, "- member %d: %s (D %d, H %d, L %d, heads %d/%d, V %d; %.1f MB of weights per token)\n",
                    i + 1, R->models[i].path, ci->dim, ci->hidden_dim, ci->n_layers, ci->n_heads,
                    ci->n_kv_heads, ci->vocab_size, model_weight_bytes(ci) / 1e6);
        }
    fprintf(f, "- sampler: temperature %g, top-p %g, top-k %d; seed %llu; %d repetitions after a warm-up\n",
            R->sampler.temperature, R->sampler.top_p, R->sampler.top_k, (unsigned long long)R->seed, R->r);
    fprintf(f, "- machine: %s, %ld logical CPUs; kernels %s; BLAS %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
            kernels_isa_name(), blas_config());
    fprintf(f, "- pp: the prompt through what the mode runs, up to the first sample (me: one picked member). "
               "tg: the tokens after it (me: catch-ups, a member's first pick includes the prompt). "
               "tok/s: median +- median absolute deviation. calls/tokens: forward calls and tokens per member. "
               "efficiency: pp GFLOP/s (%% of sgemm peak), tg weight GB/s (%% of read bandwidth)\n\n");

    fprintf(f, "| mode       |  K | model  | threads | test   |               tok/s | calls/tokens per member   | efficiency          |\n");
    fprintf(f, "| ---------- | -: | ------ | ------: | ------ | ------------------: | ------------------------- | ------------------- |\n");
    for (int i = 0; i < R->n_tests; i++) {
        const Test *t = &R->tests[i];
        for (int tg = 0; tg <= 1; tg++) {
            int tokens = tg ? t->n_gen : t->n_prompt;
            if (tokens == 0)
                continue;
            char test[32], tps[64], counts[160], eff[64];
            snprintf(test, sizeof test, "%s%d", tg ? "tg" : "pp", tokens);
            double x[MAX_REPS];
            rates(t, R->r, tg, x);
            snprintf(tps, sizeof tps, "%.1f +- %.1f", median(x, R->r), mad(x, R->r));
            format_counts(counts, sizeof counts, tg ? &t->tg : &t->pp, t->k);
            double rate, e = efficiency(R, t, tg, &rate);
            int n = snprintf(eff, sizeof eff, tg ? "%.1f GB/s" : "%.1f GFLOP/s", rate);
            if (isfinite(e))
                snprintf(eff + n, sizeof eff - (size_t)n, " (%.0f%%)", 100 * e);
            fprintf(f, "| %-10s | %2d | %-6s | %7d | %-6s | %19s | %-25s | %-19s |\n", mode_name(t->mode),
                    t->mode == MODE_SINGLE ? 1 : t->k, R->label, t->threads, test, tps, counts, eff);
        }
    }
    fprintf(f, "\n");

    /* ME over CE, side by side */
    for (int i = 0; i < R->n_tests; i++) {
        const Test *ce = &R->tests[i];
        const Test *me = ce->mode == ENSEMBLE_CE && ce->n_gen > 0 ?
                         find_test(R, ENSEMBLE_ME, ce->k, ce->threads, ce->n_prompt, ce->n_gen) : NULL;
        if (!me)
            continue;
        double x[MAX_REPS], y[MAX_REPS];
        ratios(me, ce, R->r, 0, x);
        ratios(me, ce, R->r, 1, y);
        fprintf(f, "- ME/CE speed-up, K %d, %d thread%s, tg%d after pp%d: **%.2fx** (range %.2f-%.2f over %d "
                   "side-by-side pairs; ceiling %d); pp%d+tg%d end to end: %.2fx\n",
                ce->k, ce->threads, ce->threads > 1 ? "s" : "", ce->n_gen, ce->n_prompt, median(x, R->r),
                min_of(x, R->r), max_of(x, R->r), R->r, ce->k, ce->n_prompt, ce->n_gen, median(y, R->r));
    }
    /* thread scaling against the first thread count */
    for (int i = 0; i < R->n_tests; i++) {
        const Test *t = &R->tests[i];
        const Test *base = find_test(R, t->mode, t->k, R->tests[0].threads, t->n_prompt, t->n_gen);
        if (!base || base == t || (t->mode != MODE_SINGLE && t->k != R->tests[R->n_tests - 1].k))
            continue;
        double x[MAX_REPS], y[MAX_REPS];
        for (int j = 0; j < R->r; j++) {
            x[j] = base->pp_s[j] / t->pp_s[j];
            y[j] = t->n_gen ? base->tg_s[j] / t->tg_s[j] : NAN;
        }
        fprintf(f, "- %d threads over %d, %s K %d: pp%d %.2fx", t->threads, base->threads, mode_name(t->mode),
                t->k, t->n_prompt, median(x, R->r));
        if (t->n_gen)
            fprintf(f, ", tg%d %.2fx", t->n_gen, median(y, R->r));
        fprintf(f, " (median of side-by-side ratios)\n");
    }
    for (int i = 0; i < R->n_limits; i++) {
        const Limits *l = &R->limits[i];
        fprintf(f, "- machine, %d thread%s: read bandwidth %.1f GB/s (best %.1f), matvec %.1f GB/s; %d^3 product: "
                   "sgemm %.1f GFLOP/s%s, llamix matmul %.1f GFLOP/s\n",
                l->threads, l->threads > 1 ? "s" : "", l->bandwidth, l->bandwidth_best, l->matvec, SGEMM_SIZE,
                l->sgemm, kernels_have_blas() ? "" : " (no BLAS: the plain kernel)", l->matmul);
    }
    fprintf(f, "- memory: peak RSS %.1f MB = %.0f%% of the expected %.1f MB (checkpoints %.1f + run state %.1f + "
               "process before loading %.1f)\n",
            R->rss_peak / 1e6, 100 * R->rss_peak / (R->checkpoint_bytes + R->state_bytes + R->rss_base),
            (R->checkpoint_bytes + R->state_bytes + R->rss_base) / 1e6, R->checkpoint_bytes / 1e6,
            R->state_bytes / 1e6, R->rss_base / 1e6);
    char blas[64];
    if (R->blas_threads > 0)
        snprintf(blas, sizeof blas, "BLAS runs %d per call", R->blas_threads);
    else
        snprintf(blas, sizeof blas, R->blas_threads == 0 ? "no BLAS" : "BLAS threads unknown");
    fprintf(f, "- threads: %d in the process after the runs; %s; bench took %.1f s\n", R->process_threads, blas,
            R->seconds);
    if (isfinite(R->background))
        fprintf(f, "- background: other processes kept %.2f of the %ld CPUs busy during the runs%s\n", R->background,
                sysconf(_SC_NPROCESSORS_ONLN), R->background > 0.2 ? " (the absolute numbers suffer; the side-by-side ratios less)" : "");
}

/* JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* A number, or null for what JSON cannot say (NaN when a limit was not measured). */
static void json_number(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "%.6g", x);
    else
        fputs("null", f);
}

/* {"median":..,"mad":..,"min":..,"max":..,"samples":[..]} */
static void json_stats(FILE *f, const double *x, int n)
{
    const char *names[] = {"median", "mad", "min", "max"};
    double values[] = {median(x, n), mad(x, n), min_of(x, n), max_of(x, n)};
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s\"%s\":", i ? "," : "{", names[i]);
        json_number(f, values[i]);
    }
    fprintf(f, ",\"samples\":[");
    for (int i = 0; i < n; i++) {
        fputs(i ? "," : "", f);
        json_number(f, x[i]);
    }
    fprintf(f, "]}");
}

static void json_counts(FILE *f, const Counts *c, int k)
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
static void print_json(FILE *f, const Report *R)
{
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    fprintf(f, "{\n\"llamix\":");
    json_string(f, PACKAGE_VERSION);
    fprintf(f, ",\n\"machine\":{\"cpu\":");
    json_string(f, cpu);
    fprintf(f, ",\"logical_cpus\":%ld,\"memory_bytes\":%.0f,\"kernels\":", sysconf(_SC_NPROCESSORS_ONLN),
            (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE));
    json_string(f, kernels_isa_name());
    fprintf(f, ",\"blas\":");
    json_string(f, blas_config());
    fprintf(f, ",\"compiler\":");
    json_string(f, __VERSION__);
    fprintf(f, "},\n\"limits\":[");
    for (int i = 0; i < R->n_limits; i++) {
        const Limits *l = &R->limits[i];
        fprintf(f, "%s\n {\"threads\":%d,\"read_bandwidth_gbs\":", i ? "," : "", l->threads);
        json_number(f, l->bandwidth);
        fprintf(f, ",\"read_bandwidth_best_gbs\":");
        json_number(f, l->bandwidth_best);
        fprintf(f, ",\"matvec_gbs\":");
        json_number(f, l->matvec);
        fprintf(f, ",\"sgemm_gflops\":");
        json_number(f, l->sgemm);
        fprintf(f, ",\"matmul_gflops\":");
        json_number(f, l->matmul);
        fprintf(f, "}");
    }
    fprintf(f, "],\n\"members\":[");
    for (int i = 0; i < R->n_models; i++) {
        const ModelConfig *c = &R->models[i].config;
        fprintf(f, "%s\n {\"path\":", i ? "," : "");
        json_string(f, R->shape ? "(random)" : R->models[i].path);
        fprintf(f, ",\"shape\":");
        json_string(f, R->label);
        fprintf(f, ",\"dim\":%d,\"hidden_dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
                   "\"vocab_size\":%d,\"seq_len\":%d,\"weight_bytes\":%zu,\"file_bytes\":%zu}",
                c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
                model_weight_bytes(c), R->models[i].size);
    }
    fprintf(f, "],\n\"sampler\":{\"temperature\":%g,\"top_p\":%g,\"top_k\":%d},\"seed\":%llu,\"repetitions\":%d,\n",
            R->sampler.temperature, R->sampler.top_p, R->sampler.top_k, (unsigned long long)R->seed, R->r);
    fprintf(f, "\"results\":[");
    int first = 1;
    for (int i = 0; i < R->n_tests; i++) {
        const Test *t = &R->tests[i];
        for (int tg = 0; tg <= 1; tg++) {
            int tokens = tg ? t->n_gen : t->n_prompt;
            if (tokens == 0)
                continue;
            double x[MAX_REPS], rate, e = efficiency(R, t, tg, &rate);
            rates(t, R->r, tg, x);
            fprintf(f, "%s\n {\"mode\":\"%s\",\"k\":%d,\"shape\":", first ? "" : ",", mode_name(t->mode), t->k);
            json_string(f, R->label);
            fprintf(f, ",\"threads\":%d,\"test\":\"%s%d\",\"n_prompt\":%d,\"n_gen\":%d,\"tok_s\":", t->threads,
                    tg ? "tg" : "pp", tokens, t->n_prompt, t->n_gen);
            json_stats(f, x, R->r);
            fprintf(f, tg ? ",\"weight_gbs\":" : ",\"gflops\":");
            json_number(f, rate);
            fprintf(f, tg ? ",\"decode_efficiency\":" : ",\"prefill_efficiency\":");
            json_number(f, e);
            fprintf(f, ",\"per_member\":");
            json_counts(f, tg ? &t->tg : &t->pp, t->k);
            fprintf(f, "}");
            first = 0;
        }
    }
    fprintf(f, "],\n\"speedups\":[");
    first = 1;
    for (int i = 0; i < R->n_tests; i++) {
        const Test *ce = &R->tests[i];
        const Test *me = ce->mode == ENSEMBLE_CE && ce->n_gen > 0 ?
                         find_test(R, ENSEMBLE_ME, ce->k, ce->threads, ce->n_prompt, ce->n_gen) : NULL;
        if (!me)
            continue;
        double x[MAX_REPS];
        fprintf(f, "%s\n {\"what\":\"me/ce\",\"k\":%d,\"shape\":", first ? "" : ",", ce->k);
        json_string(f, R->label);
        fprintf(f, ",\"threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"tg\":", ce->threads, ce->n_prompt, ce->n_gen);
        ratios(me, ce, R->r, 0, x);
        json_stats(f, x, R->r);
        fprintf(f, ",\"end_to_end\":");
        ratios(me, ce, R->r, 1, x);
        json_stats(f, x, R->r);
        fprintf(f, "}");
        first = 0;
    }
    for (int i = 0; i < R->n_tests; i++) {
        const Test *t = &R->tests[i];
        const Test *base = find_test(R, t->mode, t->k, R->tests[0].threads, t->n_prompt, t->n_gen);
        if (!base || base == t)
            continue;
        double x[MAX_REPS];
        fprintf(f, "%s\n {\"what\":\"threads\",\"mode\":\"%s\",\"k\":%d,\"shape\":", first ? "" : ",",
                mode_name(t->mode), t->k);
        json_string(f, R->label);
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
    fprintf(f, "],\n\"memory\":{\"peak_rss_bytes\":%.0f,\"checkpoint_bytes\":%.0f,\"state_bytes\":%.0f,"
               "\"base_rss_bytes\":%.0f},\n",
            R->rss_peak, R->checkpoint_bytes, R->state_bytes, R->rss_base);
    fprintf(f, "\"process_threads\":%d,\"blas_threads_per_call\":%d,\"seconds\":%.2f,\"background_cpus\":",
            R->process_threads, R->blas_threads, R->seconds);
    json_number(f, R->background);
    fprintf(f, "\n}\n");
}

/* ------------------------------------------------------------------ the command */

typedef struct {
    char *paths[CLI_MAX_MEMBERS];
    int n_paths;
    const char *shape; /* NULL with -m */
    int ks[MAX_LIST], nk, ps[MAX_LIST], np, ns[MAX_LIST], nn, ts[MAX_LIST], nt, modes[4], n_modes;
    int reps, json, bw_mib, limits;
    const char *json_file;
    unsigned long long seed;
    SamplerParams sampler;
} Options;

enum { OPT_SHAPE = 256, OPT_JSON_FILE, OPT_TEMP, OPT_TOP_P, OPT_TOP_K, OPT_BW, OPT_NO_LIMITS };

/* 0: run; EXIT_OK + 1000: --help was printed; otherwise the usage error was printed. */
static int parse_options(int argc, char **argv, Options *o)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"shape", required_argument, 0, OPT_SHAPE},
        {"members", required_argument, 0, 'k'}, {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'}, {"repetitions", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'}, {"ensemble", required_argument, 0, 'e'},
        {"output", required_argument, 0, 'o'}, {"json-file", required_argument, 0, OPT_JSON_FILE},
        {"seed", required_argument, 0, 's'}, {"temp", required_argument, 0, OPT_TEMP},
        {"top-p", required_argument, 0, OPT_TOP_P}, {"top-k", required_argument, 0, OPT_TOP_K},
        {"bw-mib", required_argument, 0, OPT_BW}, {"no-limits", no_argument, 0, OPT_NO_LIMITS},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->ps[o->np++] = DEFAULT_PROMPT;
    o->ns[o->nn++] = DEFAULT_GEN;
    o->reps = DEFAULT_REPS;
    o->bw_mib = DEFAULT_BW_MIB;
    o->limits = 1;
    o->seed = 1;
    o->sampler = sampler_defaults();
    o->sampler.top_p = 1.0f; /* see usage: top-p over random members is a sorting benchmark */
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:k:p:n:r:t:e:o:s:h", options, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'm':
            if (o->n_paths == CLI_MAX_MEMBERS) {
                cli_error("at most %d members", CLI_MAX_MEMBERS);
                return EXIT_USAGE;
            }
            o->paths[o->n_paths++] = optarg;
            break;
        case OPT_SHAPE: o->shape = optarg; break;
        case 'k': bad = parse_list("-k", optarg, 1, CLI_MAX_MEMBERS, o->ks, &o->nk); break;
        case 'p': bad = parse_list("-p", optarg, 1, 1 << 20, o->ps, &o->np); break;
        case 'n': bad = parse_list("-n", optarg, 0, 1 << 20, o->ns, &o->nn); break;
        case 'r': bad = cli_int("-r", optarg, 1, MAX_REPS, &o->reps); break;
        case 't': bad = parse_list("-t", optarg, 1, 1024, o->ts, &o->nt); break;
        case 'e': bad = parse_modes(optarg, o->modes, &o->n_modes); break;
        case 'o':
            bad = strcmp(optarg, "md") && strcmp(optarg, "json");
            if (bad)
                cli_error("-o: '%s' is not md or json", optarg);
            o->json = strcmp(optarg, "json") == 0;
            break;
        case OPT_JSON_FILE: o->json_file = optarg; break;
        case 's': bad = cli_u64("-s", optarg, &o->seed); break;
        case OPT_TEMP: bad = cli_float("--temp", optarg, 0, 1e6, &o->sampler.temperature); break;
        case OPT_TOP_P: bad = cli_float("--top-p", optarg, 1e-9, 1, &o->sampler.top_p); break;
        case OPT_TOP_K: bad = cli_int("--top-k", optarg, 0, 1 << 30, &o->sampler.top_k); break;
        case OPT_BW: bad = cli_int("--bw-mib", optarg, 16, 1 << 20, &o->bw_mib); break;
        case OPT_NO_LIMITS: o->limits = 0; break;
        case 'h': usage(stdout); return EXIT_OK + 1000;
        default: usage(stderr); return EXIT_USAGE;
        }
        if (bad)
            return EXIT_USAGE;
    }
    for (; optind < argc; optind++) { /* positional checkpoints, as in generate */
        if (o->n_paths == CLI_MAX_MEMBERS) {
            cli_error("at most %d members", CLI_MAX_MEMBERS);
            return EXIT_USAGE;
        }
        o->paths[o->n_paths++] = argv[optind];
    }
    if (o->n_paths && o->shape) {
        cli_error("give models (-m) or a shape (--shape), not both");
        return EXIT_USAGE;
    }
    if (!o->n_paths && !o->shape)
        o->shape = DEFAULT_SHAPE;
    if (o->nk == 0)
        o->ks[o->nk++] = o->n_paths ? o->n_paths : DEFAULT_MEMBERS;
    for (int i = 0; i < o->nk; i++)
        if (o->n_paths && o->ks[i] > o->n_paths) {
            cli_error("-k %d: only %d models given", o->ks[i], o->n_paths);
            return EXIT_USAGE;
        }
    if (o->n_modes == 0) {
        o->modes[0] = MODE_SINGLE, o->modes[1] = ENSEMBLE_CE, o->modes[2] = ENSEMBLE_ME;
        o->n_modes = 3;
    }
    if (o->nt == 0) {
        cli_threads(0);
        o->ts[o->nt++] = threads_available();
    }
    return 0;
}

static int list_max(const int *x, int n)
{
    int m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

/* Every combination of the options, in the order they run: by thread count, prompt and
 * generation length; within those, single first, then each K with its modes side by side (CE,
 * then ME), so that the two halves of an ME/CE ratio run next to each other. */
static int plan_tests(Report *R, const Options *o)
{
    int most = o->nt * o->np * o->nn * o->n_modes * o->nk;
    R->tests = calloc((size_t)most, sizeof *R->tests);
    R->seconds_store = calloc((size_t)most * 2 * (size_t)o->reps, sizeof(double));
    if (!R->tests || !R->seconds_store)
        return -1;
    for (int ti = 0; ti < o->nt; ti++)
        for (int pi = 0; pi < o->np; pi++)
            for (int ni = 0; ni < o->nn; ni++)
                for (int ki = -1; ki < o->nk; ki++)     /* -1: single */
                    for (int mi = 0; mi < o->n_modes; mi++) {
                        int single = o->modes[mi] == MODE_SINGLE;
                        if (single != (ki < 0))
                            continue;
                        Test *t = &R->tests[R->n_tests];
                        t->mode = o->modes[mi];
                        t->k = single ? 1 : o->ks[ki];
                        t->threads = o->ts[ti];
                        t->n_prompt = o->ps[pi];
                        t->n_gen = o->ns[ni];
                        t->pp_s = R->seconds_store + (size_t)R->n_tests * 2 * (size_t)o->reps;
                        t->tg_s = t->pp_s + o->reps;
                        R->n_tests++;
                    }
    return 0;
}

/* Every member at every thread count runs a prompt and a few tokens before any clock runs: that
 * maps in all its weight pages and starts the thread pools. */
static int warm_up(const Setup *setup, int n_models, const Options *o, char err[])
{
    for (int ti = 0; ti < o->nt; ti++) {
        cli_threads(o->ts[ti]);
        for (int i = 0; i < n_models; i++) {
            Setup one = *setup;
            one.members[0] = setup->members[i];
            Run run;
            int p = list_max(o->ps, o->np), room = setup->members[i]->config.seq_len - p;
            if (run_single(&one, p, room < 4 ? room : 4, &run, err))
                return -1;
        }
    }
    return 0;
}

/* One untimed forward of one token through each of the first k members. A test's timing depends
 * on what the machine did just before it: whether its weights, and the page-table entries of
 * their mapping, are still in cache after another member's run or a bandwidth pass over a GiB
 * (a 16-token prefill of the 110M shape measured at half speed after one). So every test starts
 * from the same state, the one a running generation is in: its members' weights just read. */
static int touch_members(const Setup *setup, int k, char err[])
{
    for (int i = 0; i < k; i++) {
        Setup one = *setup;
        one.members[0] = setup->members[i];
        Run run;
        if (run_single(&one, 1, 0, &run, err))
            return -1;
    }
    return 0;
}

/* The repetitions. Odd repetitions run the whole plan backwards (thread counts, groups and the
 * tests in them), so that a slow drift of the machine's speed, or an effect of one test on the
 * next, weighs on every test alike. */
static int run_tests(Report *R, const Setup *setup, char err[])
{
    for (int rep = 0; rep < R->r; rep++) {
        fprintf(stderr, "llamix bench: repetition %d of %d\n", rep + 1, R->r);
        /* the read bandwidth of this moment, for the decode efficiencies of this repetition */
        for (int i = 0; i < R->n_limits && R->bw_buf; i++) {
            double best;
            cli_threads(R->limits[i].threads);
            R->limits[i].bw[rep] = measure_bandwidth(R->bw_buf, R->bw_n, 3, &best);
        }
        for (int j = 0; j < R->n_tests; j++) {
            Test *t = &R->tests[rep % 2 ? R->n_tests - 1 - j : j];
            Run run;
            cli_threads(t->threads);
            if (touch_members(setup, t->k, err) ||
                (t->mode == MODE_SINGLE ? run_single(setup, t->n_prompt, t->n_gen, &run, err)
                                        : run_ensemble(setup, t->mode, t->k, t->n_prompt, t->n_gen, &run, err)))
                return -1;
            t->pp_s[rep] = run.pp_s;
            t->tg_s[rep] = run.tg_s;
            t->pp = run.pp;
            t->tg = run.tg;
        }
    }
    return 0;
}

/* The work behind each test, from its counters (pp FLOPs, tg weight bytes), and the memory a
 * run should need: the checkpoints, mapped, plus the largest set of run states alive at once. */
static void account(Report *R, const Model *models, int n_models)
{
    int V = models[0].config.vocab_size;
    for (int i = 0; i < R->n_tests; i++) {
        Test *t = &R->tests[i];
        double state = 0;
        for (int j = 0; j < t->k; j++) {
            const ModelConfig *c = &models[j].config;
            if (t->pp.tokens[j])
                t->pp_flops += forward_flops(c, (int)t->pp.tokens[j], 0, 1);
            t->tg_bytes += (double)t->tg.calls[j] * (double)model_weight_bytes(c);
            state += state_bytes(c, t->n_prompt + t->n_gen) + 3.0 * V * sizeof(float); /* + logits, sampler */
        }
        R->state_bytes = state > R->state_bytes ? state : R->state_bytes;
    }
    for (int i = 0; i < n_models; i++)
        R->checkpoint_bytes += (double)models[i].size;
}

/* The bandwidth buffer, allocated and touched before the runs: the read bandwidth is measured at
 * every repetition, beside the tests it is compared with (it drifts on a shared machine). */
static int limits_init(Report *R, const Options *o)
{
    R->bw_n = (size_t)o->bw_mib * 1024 * 1024 / sizeof(float);
    R->bw_buf = alloc_zeroed(R->bw_n, sizeof(float));
    if (!R->bw_buf) {
        cli_error("out of memory for a %d MiB bandwidth buffer (--bw-mib)", o->bw_mib);
        return -1;
    }
    for (size_t i = 0; i < R->bw_n; i += 1024)
        R->bw_buf[i] = 1.0f;
    for (int ti = 0; ti < o->nt; ti++)
        R->limits[R->n_limits++].threads = o->ts[ti];
    return 0;
}

/* After the runs: the bandwidth's median over the repetitions, and the kernels' ceilings. */
static void limits_finish(Report *R)
{
    for (int i = 0; i < R->n_limits; i++) {
        Limits *l = &R->limits[i];
        cli_threads(l->threads);
        l->bandwidth = median(l->bw, R->r);
        l->bandwidth_best = max_of(l->bw, R->r);
        l->matvec = measure_matvec(R->bw_buf, R->bw_n, 5);
        l->sgemm = measure_product(SGEMM_SIZE, 3, 1);
        l->matmul = measure_product(SGEMM_SIZE, 3, 0);
    }
}

int cmd_bench(int argc, char **argv)
{
    Options o;
    int status = parse_options(argc, argv, &o);
    if (status)
        return status == EXIT_OK + 1000 ? EXIT_OK : status;
    ModelConfig config;
    if (o.shape && model_shape(o.shape, &config)) {
        cli_error("--shape: '%s' is not one of tiny, 260K, 15M, 42M, 110M", o.shape);
        return EXIT_USAGE;
    }
    int ctx = list_max(o.ps, o.np) + list_max(o.ns, o.nn), p_max = list_max(o.ps, o.np);
    double start = now_seconds(), rss_base = peak_rss();

    /* the members */
    int n_models = o.n_paths ? o.n_paths : list_max(o.ks, o.nk);
    Model models[CLI_MAX_MEMBERS];
    char err[ERR_LEN];
    if (o.shape) {
        /* A shape's seq_len only bounds the context (version 1 files store no RoPE tables), so
         * raise it when the test needs more: the weights are the same. */
        if (config.seq_len < ctx)
            config.seq_len = ctx;
        fprintf(stderr, "llamix bench: writing %d random member%s of shape %s\n", n_models,
                n_models > 1 ? "s" : "", o.shape);
        if (make_members(&config, n_models, o.seed, models, err)) {
            cli_error("%s", err);
            return EXIT_RUNTIME;
        }
    } else if (cli_open_models(o.paths, n_models, models)) {
        return EXIT_RUNTIME;
    }
    status = EXIT_RUNTIME;
    Report R = {.r = o.reps, .models = models, .n_models = n_models, .shape = o.shape,
                .sampler = o.sampler, .seed = o.seed, .rss_base = rss_base};
    int V = models[0].config.vocab_size;
    int *prompt = malloc(sizeof(int) * (size_t)p_max);
    for (int i = 0; i < n_models; i++) {
        if (models[i].config.vocab_size != V) {
            cli_error("%s has vocab_size %d but %s has %d: members must share one vocabulary",
                      models[i].path, models[i].config.vocab_size, models[0].path, V);
            goto done;
        }
        if (models[i].config.seq_len < ctx) {
            cli_error("%s: prompt + generated tokens (%d) exceed its context (seq_len %d)",
                      models[i].path, ctx, models[i].config.seq_len);
            status = EXIT_USAGE;
            goto done;
        }
    }
    if (sampler_params_check(&o.sampler, err)) {
        cli_error("%s", err);
        status = EXIT_USAGE;
        goto done;
    }
    if (!prompt || plan_tests(&R, &o)) {
        cli_error("out of memory");
        goto done;
    }

    /* the prompt: BOS, then random ids */
    Rng rng;
    rng_seed(&rng, o.seed ^ 0x5bd1e995u);
    prompt[0] = TOKEN_BOS < V ? TOKEN_BOS : 0;
    for (int i = 1; i < p_max; i++)
        prompt[i] = (int)(rng_u32(&rng) % (uint32_t)V);
    Setup setup = {.prompt = prompt, .sampler = o.sampler, .seed = o.seed};
    for (int i = 0; i < n_models; i++)
        setup.members[i] = &models[i];

    if (o.limits && limits_init(&R, &o))
        goto done;
    fprintf(stderr, "llamix bench: warming up\n");
    double busy0 = machine_busy_seconds(), own0 = own_cpu_seconds(), wall0 = now_seconds();
    if (warm_up(&setup, n_models, &o, err) || run_tests(&R, &setup, err)) {
        cli_error("%s", err);
        goto done;
    }
    R.background = (machine_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / (now_seconds() - wall0);
    account(&R, models, n_models);
    /* the bandwidth buffer was resident all along: take it out of the peak */
    R.rss_peak = peak_rss() - (double)R.bw_n * sizeof(float);
    R.process_threads = process_threads();
    R.blas_threads = blas_threads();
    if (o.limits) {
        fprintf(stderr, "llamix bench: measuring matvec and sgemm peaks\n");
        limits_finish(&R);
    }
    if (o.shape) {
        snprintf(R.label, sizeof R.label, "%s", o.shape);
    } else {
        const char *slash = strrchr(models[0].path, '/');
        snprintf(R.label, sizeof R.label, "%.40s%s", slash ? slash + 1 : models[0].path, n_models > 1 ? "+" : "");
    }
    R.seconds = now_seconds() - start;

    (o.json ? print_json : print_md)(stdout, &R);
    if (o.json_file) {
        FILE *f = fopen(o.json_file, "w");
        if (f)
            print_json(f, &R);
        if (!f || fclose(f)) {
            cli_error("%s: cannot write the report", o.json_file);
            goto done;
        }
    }
    status = EXIT_OK;
done:
    free(R.bw_buf);
    free(R.tests);
    free(R.seconds_store);
    free(prompt);
    cli_close_models(models, n_models);
    return status;
}
