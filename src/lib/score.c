/* score.c: per-token log-probabilities of each member, the ensemble's NLL, and EM for the weights.
 *
 * Letters: K members, N tokens scored, C context (window length, BOS included), B rows per
 * forward call, V vocabulary. See score.h for the window scheme. */
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ the table */

int score_table_init(ScoreTable *t, int k, long n, LxError *err)
{
    memset(t, 0, sizeof *t);
    if (k < 1 || k > SCORE_MAX_MEMBERS || n < 1)
        return fail(err, LX_ERR_ARGUMENT, "score table: need 1 to %d members and at least one token (got %d, %ld)",
                    SCORE_MAX_MEMBERS, k, n);
    size_t cells;
    if (size_mul((size_t)k, (size_t)n, &cells) || !(t->logp = alloc_zeroed(cells, sizeof(double))))
        return fail(err, LX_ERR_MEMORY, "out of memory for %d x %ld log-probabilities", k, n);
    t->k = k;
    t->n = n;
    return 0;
}

void score_table_free(ScoreTable *t)
{
    free(t->logp);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ one member */

long score_windows(long n, int context)
{
    if (n < 2 || context < 2)
        return 0;
    long per = context - 1;
    return (n - 1 + per - 1) / per;
}

/* log softmax(logits)[x] in double: logits[x] - max - log sum_j exp(logits[j] - max).
 * Subtracting the max keeps every exp in (0, 1], so nothing overflows; the sum is >= 1, so its
 * log is finite. Each exp within about 1e-12 relative (exp_sum_double). logits (V). */
static double log_softmax_at(const float *logits, int V, int x)
{
    double max = max_lanes(logits, V);
    return (double)logits[x] - max - log(exp_sum_double(logits, V, max));
}

int score_member(const Model *m, const int *tokens, long n, const ScoreOptions *options,
                 double *logp, LxError *err)
{
    const int V = m->config.vocab_size, C = options->context;
    if (n < 2)
        return fail(err, LX_ERR_ARGUMENT, "nothing to score: the text has no tokens after BOS");
    if (tokens[0] != TOKEN_BOS)
        return fail(err, LX_ERR_ARGUMENT, "the tokens to score must start with BOS (id %d), not %d", TOKEN_BOS, tokens[0]);
    if (C < 2 || C > m->config.seq_len)
        return fail(err, LX_ERR_ARGUMENT, "%s: context %d must be from 2 to the model's seq_len %d", m->path, C,
                    m->config.seq_len);
    for (long i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fail(err, LX_ERR_ARGUMENT, "%s: token %ld has id %d, outside the vocabulary (0..%d)", m->path, i,
                        tokens[i], V - 1);

    ForwardState st;
    int rc = forward_state_init(&st, &m->config, C, options->max_batch, err);
    if (rc)
        return rc;
    st.threads = threads_resolve(options->threads);
    const int B = st.max_batch;
    float *logits = alloc_zeroed((size_t)B * (size_t)V, sizeof(float)); /* (B, V) */
    int *input = malloc(sizeof(int) * (size_t)C);                       /* (C) one window */
    double *row_lp = malloc(sizeof(double) * (size_t)B);                 /* (B) the chunk's rows */
    if (!logits || !input || !row_lp) {
        free(logits);
        free(input);
        free(row_lp);
        forward_state_free(&st);
        return fail(err, LX_ERR_MEMORY, "out of memory for scoring with %s", m->path);
    }

    /* Window [a, b) of text tokens (indices into tokens, a >= 1): the model reads
     * BOS tokens[a] .. tokens[b-2] at positions 0 .. b-a-1, and row r's logits predict
     * tokens[a + r]. The window's last token is only predicted, never read, so a window of C
     * tokens needs C - 1 rows. A new window overwrites the cache from position 0: each row
     * attends only to positions up to its own, which this window has already written. */
    int status = 0;
    double nll_sum = 0;
    for (long a = 1; a < n && status == 0; a += C - 1) {
        long b = a + C - 1 < n ? a + C - 1 : n;
        int rows = (int)(b - a);
        input[0] = TOKEN_BOS;
        memcpy(input + 1, tokens + a, sizeof(int) * (size_t)(rows - 1));
        for (int r0 = 0; r0 < rows && status == 0; r0 += B) {
            int T = rows - r0 < B ? rows - r0 : B;
            if ((status = forward(m, &st, input + r0, T, r0, logits, 1, err)))
                break;
            /* the rows' log-softmax on every thread (each row its own; the sums below stay in
             * row order, so the result does not depend on the thread count) */
            const long first = a + r0; /* the token row 0 predicts */
            #pragma omp parallel for schedule(static) num_threads(st.threads) if (T > 1 && st.threads > 1)
            for (int r = 0; r < T; r++)
                row_lp[r] = log_softmax_at(logits + (size_t)r * V, V, tokens[first + r]);
            for (int r = 0; r < T && status == 0; r++) {
                long target = first + r;
                double lp = row_lp[r];
                if (!isfinite(lp)) /* NaN or infinite weights reach the logits */
                    status = fail(err, LX_ERR_FILE, "%s: the log-probability of token %ld is not finite "
                                  "(the checkpoint has NaN or infinite weights?)", m->path, target);
                logp[target - 1] = lp;
                nll_sum -= lp;
            }
        }
        if (status == 0 && options->progress)
            options->progress(options->user, options->member, b - 1, n - 1, nll_sum);
    }
    free(logits);
    free(input);
    free(row_lp);
    forward_state_free(&st);
    return status;
}

/* ------------------------------------------------------------------ likelihoods */

double score_member_nll(const ScoreTable *t, int i)
{
    const double *lp = t->logp + (size_t)i * (size_t)t->n;
    double sum = 0;
    for (long j = 0; j < t->n; j++)
        sum -= lp[j];
    return sum / (double)t->n;
}

/* log q(x_t) = log sum_k w_k p_k(x_t), as max + log sum exp(a_k - max) with a_k = log w_k +
 * log p_k(x_t). If resp is not NULL it gets the responsibilities r_k = exp(a_k - log q), (K).
 * Members with w_k = 0 take no part (a_k = -inf); at least one weight must be positive. */
double score_log_mixture(const ScoreTable *t, const double *w, long j, double *resp)
{
    const size_t N = (size_t)t->n;
    double a[SCORE_MAX_MEMBERS], max = -INFINITY;
    for (int i = 0; i < t->k; i++) {
        a[i] = w[i] > 0 ? log(w[i]) + t->logp[i * N + (size_t)j] : -INFINITY;
        if (a[i] > max)
            max = a[i];
    }
    double sum = 0;
    for (int i = 0; i < t->k; i++)
        sum += w[i] > 0 ? exp(a[i] - max) : 0;
    double lq = max + log(sum);
    for (int i = 0; resp && i < t->k; i++)
        resp[i] = w[i] > 0 ? exp(a[i] - lq) : 0;
    return lq;
}

double score_ensemble_nll(const ScoreTable *t, const double *w)
{
    double sum = 0;
    for (long j = 0; j < t->n; j++)
        sum -= score_log_mixture(t, w, j, NULL);
    return sum / (double)t->n;
}

/* Token j's loss in series i: a member's -log p_i(x_j), or the mixture's -log q(x_j). */
static double token_loss(const ScoreTable *t, int i, const double *w, long j)
{
    return i == SCORE_ENSEMBLE ? -score_log_mixture(t, w, j, NULL) : -t->logp[(size_t)i * (size_t)t->n + (size_t)j];
}

static double token_value(const ScoreTable *t, int a, int b, const double *w, long j)
{
    return token_loss(t, a, w, j) - (b == SCORE_NONE ? 0 : token_loss(t, b, w, j));
}

/* Mean m = (1/N) sum_j d_j, then var = sum_j (d_j - m)^2 / (N - 1) from the deviations (no
 * cancellation of large squares), SE = sqrt(var / N). Paired: the difference's own variance,
 * which is far smaller than either series' when the two agree token by token. */
double score_nll_stats(const ScoreTable *t, int a, int b, const double *w, double *se)
{
    double sum = 0, squares = 0;
    for (long j = 0; j < t->n; j++)
        sum += token_value(t, a, b, w, j);
    double mean = sum / (double)t->n;
    for (long j = 0; j < t->n; j++) {
        double d = token_value(t, a, b, w, j) - mean;
        squares += d * d;
    }
    if (se)
        *se = t->n > 1 ? sqrt(squares / (double)(t->n - 1) / (double)t->n) : NAN;
    return mean;
}

double score_perplexity(double nll) { return exp(nll); }
double score_bits(double nll) { return nll / log(2.0); }

/* ------------------------------------------------------------------ EM for the weights
 *
 * The log-likelihood of weights w is L(w) = sum_t log sum_k w_k p_k(x_t): the likelihood of a
 * mixture whose components are fixed and only the mixing weights are free. EM for it:
 *
 * Why a step never lowers L (minorise-maximise). Fix the current w and its responsibilities
 * r_k(t) = w_k p_k(x_t) / q(x_t). For any other weights w', by Jensen's inequality (log is
 * concave and the r_k(t) are a distribution over k),
 *     log sum_k w'_k p_k(x_t) = log sum_k r_k(t) * (w'_k p_k(x_t) / r_k(t))
 *                            >= sum_k r_k(t) log(w'_k p_k(x_t) / r_k(t)),
 * with equality at w' = w (every ratio is then q(x_t)). Summed over t, the right side is
 * Q(w') = sum_k R_k log w'_k + const with R_k = sum_t r_k(t): a function below L that touches it
 * at w. Q is maximised on the simplex by w'_k = R_k / N (Gibbs' inequality), which is the update.
 * So L(w') >= Q(w') >= Q(w) = L(w).
 *
 * Where it goes. L is concave in w (a sum of logs of linear functions), so every local maximum
 * is global; EM from uniform (all weights > 0) climbs to it. A member that helps nowhere sees its
 * weight shrink towards 0, only geometrically, which is why the stopping rule is on the NLL and
 * not on the weights. */

/* One pass: returns the mean NLL at w, and writes the EM update of w to next (K). */
static double em_pass(const ScoreTable *t, const double *w, double *next)
{
    double resp[SCORE_MAX_MEMBERS], sum = 0;
    for (int i = 0; i < t->k; i++)
        next[i] = 0;
    for (long j = 0; j < t->n; j++) {
        sum -= score_log_mixture(t, w, j, resp);
        for (int i = 0; i < t->k; i++)
            next[i] += resp[i];
    }
    double total = 0;
    for (int i = 0; i < t->k; i++)
        total += next[i];
    for (int i = 0; i < t->k; i++) /* total is N up to rounding; dividing by it keeps sum 1 */
        next[i] /= total;
    return sum / (double)t->n;
}

int score_fit_weights(const ScoreTable *t, double *w, int max_iter, double tol, double *trace,
                      ScoreFit *fit, LxError *err)
{
    if (t->k < 1 || t->k > SCORE_MAX_MEMBERS || t->n < 1 || !t->logp)
        return fail(err, LX_ERR_ARGUMENT, "fit weights: the score table is empty or malformed");
    if (max_iter < 0 || !(tol >= 0))
        return fail(err, LX_ERR_ARGUMENT, "fit weights: max_iter %d and tol %g must be >= 0", max_iter, tol);
    double next[SCORE_MAX_MEMBERS];
    for (int i = 0; i < t->k; i++)
        w[i] = 1.0 / t->k;
    /* Pass `it` computes NLL(w_it) and w_{it+1}. The weights returned are the last ones whose
     * NLL is known, so fit->nll is exactly theirs. */
    memset(fit, 0, sizeof *fit);
    double prev = INFINITY;
    for (int it = 0;; it++) {
        double nll = em_pass(t, w, next);
        if (trace)
            trace[it] = nll;
        fit->iterations = it;
        fit->nll = nll;
        if (prev - nll <= tol) {
            fit->converged = 1;
            break;
        }
        if (it == max_iter)
            break;
        prev = nll;
        memcpy(w, next, sizeof(double) * (size_t)t->k);
    }
    return 0;
}

/* ------------------------------------------------------------------ the text */

/* The tokenizer takes an int count of at most strlen + 3 tokens; stay well inside it. */
#define MAX_TEXT_BYTES ((size_t)INT_MAX / 4)

char *score_read_text(const char *path, size_t *length, LxError *err)
{
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "standard input" : path;
    if (!*path) {
        fail(err, LX_ERR_ARGUMENT, "the text file name is empty");
        return NULL;
    }
    /* A named file must be a regular one: a FIFO with no writer would hang the open (hence
     * O_NONBLOCK), /dev/zero would never end. Standard input may be a pipe. */
    int fd = is_stdin ? 0 : open(path, O_RDONLY | O_NONBLOCK);
    struct stat sb;
    if (fd < 0) {
        fail(err, LX_ERR_FILE, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!is_stdin && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fail(err, LX_ERR_FILE, "%s: %s, not a text file", path,
             S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
        return NULL;
    }
    if (!is_stdin)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = is_stdin ? stdin : fdopen(fd, "rb");
    if (!f) {
        close(fd);
        fail(err, LX_ERR_MEMORY, "%s: out of memory", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    while (text) {
        if (n + 1 == cap) {
            char *bigger = cap <= MAX_TEXT_BYTES ? realloc(text, cap * 2) : NULL;
            if (!bigger) {
                free(text);
                text = NULL;
                break;
            }
            text = bigger;
            cap *= 2;
        }
        size_t got = fread(text + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(f);
    int saved = errno;
    if (!is_stdin)
        fclose(f);
    if (!text) {
        fail(err, LX_ERR_MEMORY, "%s: too large to score (at most %zu bytes) or out of memory", name, MAX_TEXT_BYTES);
        return NULL;
    }
    const char *why = read_error ? strerror(saved)
                      : n == 0 ? "the file is empty: nothing to score"
                      : n > MAX_TEXT_BYTES ? "too large to score"
                      : memchr(text, '\0', n) ? "it contains a NUL byte: not a text file" : NULL;
    if (why) {
        free(text);
        fail(err, LX_ERR_ARGUMENT, "%s: %s", name, why);
        return NULL;
    }
    text[n] = '\0';
    *length = n;
    return text;
}

/* ------------------------------------------------------------------ public API */

struct LxScore {
    ScoreTable table;
    int context;
    long windows;
    int *tokens;    /* (N + 1) the text's tokens, BOS first: what routers read */
    int vocab_size;
};

ScoreView score_view(const LxScore *s)
{
    return (ScoreView){.table = &s->table, .tokens = s->tokens, .context = s->context,
                       .vocab_size = s->vocab_size};
}

LxStatus lx_score_text(LxModel *const *models, int k, const LxTokenizer *t, const char *text,
                       const LxScoreParams *params, LxScore **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *out = NULL;
    if (k < 1 || k > SCORE_MAX_MEMBERS)
        return (LxStatus)fail(e, LX_ERR_ARGUMENT, "scoring needs 1 to %d members, not %d", SCORE_MAX_MEMBERS, k);
    const Model *const *ms = (const Model *const *)models;
    for (int i = 1; i < k; i++)
        if (ms[i]->config.vocab_size != ms[0]->config.vocab_size)
            return (LxStatus)fail(e, LX_ERR_ARGUMENT, "%s has vocab_size %d but %s has %d: members must share one vocabulary",
                                  ms[i]->path, ms[i]->config.vocab_size, ms[0]->path, ms[0]->config.vocab_size);
    if (tokenizer_vocab_size(t) != ms[0]->config.vocab_size)
        return (LxStatus)fail(e, LX_ERR_ARGUMENT, "%s has %d pieces but %s has vocab_size %d", tokenizer_path(t),
                              tokenizer_vocab_size(t), ms[0]->path, ms[0]->config.vocab_size);
    int usable = models_context(ms, k), context = params->context ? params->context : usable;
    if (context < 2 || context > usable)
        return (LxStatus)fail(e, LX_ERR_CONTEXT, "a context of %d tokens is not from 2 to %s's seq_len %d",
                              context, k > 1 ? "the smallest member" : ms[0]->path, usable);
    /* The text, encoded with BOS as a prompt is (no EOS). */
    size_t length = strlen(text);
    if (length > (size_t)INT_MAX - 3)
        return (LxStatus)fail(e, LX_ERR_ARGUMENT, "the text is too long to score (%zu bytes)", length);
    int max_tokens = (int)length + 3, n_tokens;
    int *tokens = malloc(sizeof(int) * (size_t)max_tokens);
    LxScore *sc = calloc(1, sizeof *sc);
    int rc = 0;
    if (!tokens || !sc)
        rc = fail(e, LX_ERR_MEMORY, "out of memory for a text of %zu bytes", length);
    if (!rc)
        rc = tokenizer_encode(t, text, 1, 0, tokens, max_tokens, &n_tokens, e);
    if (!rc && n_tokens < 2)
        rc = fail(e, LX_ERR_ARGUMENT, "the text has no tokens to score");
    if (!rc)
        rc = score_table_init(&sc->table, k, n_tokens - 1, e);
    /* The default window is the whole usable context, but never more than the text: the run
     * states are allocated for the window, and a header's seq_len can be far larger. */
    if (!rc && params->context == 0 && n_tokens < context)
        context = n_tokens;
    ScoreOptions so = {.context = context, .threads = params->threads, .progress = params->progress,
                       .user = params->user};
    for (int i = 0; i < k && !rc; i++) {
        so.member = i;
        rc = score_member(ms[i], tokens, n_tokens, &so, sc->table.logp + (size_t)i * (size_t)sc->table.n, e);
    }
    if (rc) {
        free(tokens);
        lx_score_free(sc);
        return e->status;
    }
    sc->tokens = tokens;
    sc->vocab_size = ms[0]->config.vocab_size;
    sc->context = context;
    sc->windows = score_windows(n_tokens, context);
    *out = sc;
    return LX_OK;
}

void lx_score_free(LxScore *s)
{
    if (s) {
        score_table_free(&s->table);
        free(s->tokens);
        free(s);
    }
}

LxScore *score_adopt(ScoreTable *t, int *tokens, int context, int vocab_size)
{
    LxScore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    *s = (LxScore){.table = *t, .context = context, .windows = score_windows(t->n + 1, context),
                   .tokens = tokens, .vocab_size = vocab_size};
    *t = (ScoreTable){0};
    return s;
}

long lx_score_tokens(const LxScore *s) { return s->table.n; }
int lx_score_context(const LxScore *s) { return s->context; }
long lx_score_windows(const LxScore *s) { return s->windows; }
double lx_score_member_nll(const LxScore *s, int i) { return score_member_nll(&s->table, i); }
double lx_score_ensemble_nll(const LxScore *s, const double *w) { return score_ensemble_nll(&s->table, w); }

static int series_ok(const LxScore *s, int i) { return i == LX_SCORE_ENSEMBLE || (i >= 0 && i < s->table.k); }

double lx_score_nll_se(const LxScore *s, int i, const double *w, double *se)
{
    if (!series_ok(s, i) || (i == LX_SCORE_ENSEMBLE && !w)) {
        if (se)
            *se = NAN;
        return NAN;
    }
    return score_nll_stats(&s->table, i, SCORE_NONE, w, se);
}

double lx_score_nll_difference(const LxScore *s, int a, int b, const double *w, double *se)
{
    if (!series_ok(s, a) || !series_ok(s, b) || ((a == LX_SCORE_ENSEMBLE || b == LX_SCORE_ENSEMBLE) && !w)) {
        if (se)
            *se = NAN;
        return NAN;
    }
    return score_nll_stats(&s->table, a, b, w, se);
}

LxStatus lx_score_fit_weights(const LxScore *s, double *w, int max_iter, double tol, LxScoreFit *fit,
                              LxError *err)
{
    LxError local, *e = err ? err : &local;
    ScoreFit ignored;
    return score_fit_weights(&s->table, w, max_iter, tol, NULL, fit ? fit : &ignored, e) ? e->status : LX_OK;
}

LxStatus lx_read_text(const char *path, char **text, size_t *length, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *text = score_read_text(path, length, e);
    return *text ? LX_OK : e->status;
}
