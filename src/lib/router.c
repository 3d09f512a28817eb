/* router.c: member weights from the token history. The interface and the two kinds (constant,
 * previous-token), the EM fit of the previous-token table, and the router file (internal.h's
 * router section has the format and the contract; its ensemble section the theorem that keeps
 * ME exact under any router that reads the history only).
 *
 * Letters: K members, V vocabulary, N tokens scored, c a context (the previous token). */
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ the kinds */

/* r(x_<=t) = w. */
static void constant_weights(const Router *r, const int *tokens, int n, double *w)
{
    (void)tokens, (void)n;
    memcpy(w, r->weights, sizeof(double) * (size_t)r->k);
}

static int constant_n_params(const Router *r, size_t *n)
{
    (void)r;
    *n = 0;
    return 0;
}

static int constant_check(Router *r, LxError *err)
{
    (void)r, (void)err;
    return 0;
}

/* r(x_<=t) = row x_t of the table: the previous token chooses the weights. */
static void table_weights(const Router *r, const int *tokens, int n, double *w)
{
    memcpy(w, router_row(r, tokens[n - 1]), sizeof(double) * (size_t)r->k);
}

static int table_n_params(const Router *r, size_t *n)
{
    return size_mul((size_t)r->vocab_size, (size_t)r->k, n);
}

/* Each row a distribution over members: entries finite and >= 0, sum 1 within the tolerance
 * (float32 storage rounds), then renormalised so the weights sum to 1 in double. */
static int table_check(Router *r, LxError *err)
{
    for (int c = 0; c < r->vocab_size; c++) {
        double *row = router_row(r, c), sum = 0;
        for (int i = 0; i < r->k; i++) {
            if (!isfinite(row[i]) || row[i] < 0)
                return fail(err, LX_ERR_FILE, "table row %d (previous token %d), member %d is %g: entries must be "
                            "finite and >= 0", c, c, i + 1, row[i]);
            sum += row[i];
        }
        if (!(fabs(sum - 1) <= ROUTER_ROW_TOLERANCE))
            return fail(err, LX_ERR_FILE, "table row %d (previous token %d) sums to %.9g, not 1 (within %g)", c, c,
                        sum, ROUTER_ROW_TOLERANCE);
        for (int i = 0; i < r->k; i++)
            row[i] /= sum;
    }
    return 0;
}

static const RouterOps CONSTANT = {"constant", 0, constant_weights, constant_n_params, constant_check};
static const RouterOps PREVIOUS_TOKEN = {"previous-token", 1, table_weights, table_n_params, table_check};

/* The kinds a router file may hold; a new router adds its RouterOps here. */
static const RouterOps *const KINDS[] = {&PREVIOUS_TOKEN};

/* ------------------------------------------------------------------ making and freeing */

void router_free(Router *r)
{
    if (r) {
        free(r->weights);
        free(r->params);
        free(r);
    }
}

/* A router of ops with K, V, room for its parameters, and weights w copied (NULL: left 0). */
static Router *router_alloc(const RouterOps *ops, int k, int vocab_size, const double *w, const char *name,
                            LxError *err)
{
    if (k < 1 || k > SCORE_MAX_MEMBERS || vocab_size < 0 || vocab_size > ROUTER_MAX_VOCAB) {
        fail(err, LX_ERR_ARGUMENT, "%s: a router needs 1 to %d members and 0 to %d tokens, not %d and %d", name,
             SCORE_MAX_MEMBERS, ROUTER_MAX_VOCAB, k, vocab_size);
        return NULL;
    }
    Router *r = calloc(1, sizeof *r);
    if (!r) {
        fail(err, LX_ERR_MEMORY, "out of memory for a router");
        return NULL;
    }
    r->ops = ops;
    r->k = k;
    r->vocab_size = vocab_size;
    snprintf(r->path, sizeof r->path, "%s", name);
    size_t n = 0;
    if (ops->n_params(r, &n) || !(r->weights = calloc((size_t)k, sizeof(double))) ||
        (n && !(r->params = alloc_zeroed(n, sizeof(double))))) {
        router_free(r);
        fail(err, LX_ERR_MEMORY, "%s: out of memory for a router of %d members and %d tokens", name, k, vocab_size);
        return NULL;
    }
    r->n_params = n;
    if (w)
        memcpy(r->weights, w, sizeof(double) * (size_t)k);
    return r;
}

Router *router_constant(int k, const double *w, LxError *err)
{
    Router *r = router_alloc(&CONSTANT, k, 0, NULL, "(constant)", err);
    if (r && weights_normalise(w, k, r->weights, err)) {
        router_free(r);
        return NULL;
    }
    return r;
}

Router *router_table_new(int k, int vocab_size, const double *w, double alpha, LxError *err)
{
    if (vocab_size < 1 || !isfinite(alpha) || alpha < 0) {
        fail(err, LX_ERR_ARGUMENT, "a previous-token router needs V >= 1 and a finite prior >= 0 (got %d, %g)",
             vocab_size, alpha);
        return NULL;
    }
    Router *r = router_alloc(&PREVIOUS_TOKEN, k, vocab_size, w, "(fitted)", err);
    if (!r)
        return NULL;
    r->alpha = alpha;
    for (int c = 0; c < vocab_size; c++)
        memcpy(router_row(r, c), w, sizeof(double) * (size_t)k);
    return r;
}

int router_check_fit(const Router *r, int k, int vocab_size, LxError *err)
{
    if (r->k != k)
        return fail(err, LX_ERR_ARGUMENT, "router %s is for %d members but the ensemble has %d", r->path, r->k, k);
    if (r->vocab_size && r->vocab_size != vocab_size)
        return fail(err, LX_ERR_ARGUMENT, "router %s keys on %d token ids but the members' vocabulary has %d "
                    "(a router keys on token ids, so it needs the vocabulary it was fitted with)",
                    r->path, r->vocab_size, vocab_size);
    return 0;
}

/* ------------------------------------------------------------------ the file */

typedef struct {
    uint32_t magic, version, kind;
    int32_t k, vocab_size;
    uint32_t zero;
} RouterHeader; /* 24 bytes, then alpha, w (K), params (float32) */

/* The header's checks, and the file's size against what the header says it holds (every step
 * overflow-checked, and before anything of that size is allocated). Returns the kind, or NULL. */
static const RouterOps *header_check(const RouterHeader *hp, size_t size, const char *name, LxError *err)
{
    RouterHeader h = *hp;
    if (h.magic != ROUTER_MAGIC) {
        fail(err, LX_ERR_FILE, "%s: not a llamix router file (magic 0x%08x, expected 0x%08x)", name, h.magic,
             ROUTER_MAGIC);
        return NULL;
    }
    if (h.version != ROUTER_VERSION) {
        fail(err, LX_ERR_FILE, "%s: router file version %u is not supported (this llamix reads %d)", name,
             h.version, ROUTER_VERSION);
        return NULL;
    }
    const RouterOps *ops = NULL;
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (KINDS[i]->kind == h.kind)
            ops = KINDS[i];
    if (!ops) {
        fail(err, LX_ERR_FILE, "%s: unknown router kind %u", name, h.kind);
        return NULL;
    }
    if (h.k < 1 || h.k > SCORE_MAX_MEMBERS || h.vocab_size < 1 || h.vocab_size > ROUTER_MAX_VOCAB || h.zero) {
        fail(err, LX_ERR_FILE, "%s: bad header: K = %d (1 to %d), V = %d (1 to %d), reserved %u (0)", name, h.k,
             SCORE_MAX_MEMBERS, h.vocab_size, ROUTER_MAX_VOCAB, h.zero);
        return NULL;
    }
    /* header + 8 (alpha) + 8 K + 4 n_params */
    Router shape = {.ops = ops, .k = h.k, .vocab_size = h.vocab_size};
    size_t n_params, want, params_bytes;
    if (ops->n_params(&shape, &n_params) || size_mul(n_params, sizeof(float), &params_bytes) ||
        size_add(sizeof h + sizeof(double) * (size_t)(1 + h.k), params_bytes, &want)) {
        fail(err, LX_ERR_FILE, "%s: a router of K %d and V %d is too large", name, h.k, h.vocab_size);
        return NULL;
    }
    if (size != want) {
        fail(err, LX_ERR_FILE, "%s: %zu bytes, but a router of K %d and V %d takes %zu (%s)", name, size, h.k,
             h.vocab_size, want, size < want ? "truncated" : "trailing bytes");
        return NULL;
    }
    return ops;
}

Router *router_parse(const void *data, size_t size, const char *name, LxError *err)
{
    RouterHeader h;
    if (size < sizeof h) {
        fail(err, LX_ERR_FILE, "%s: %zu bytes is too short for a router file (the header alone is %zu)", name, size,
             sizeof h);
        return NULL;
    }
    memcpy(&h, data, sizeof h);
    const RouterOps *ops = header_check(&h, size, name, err);
    if (!ops)
        return NULL;
    LxError why;
    Router *r = router_alloc(ops, h.k, h.vocab_size, NULL, name, &why);
    if (!r) {
        fail(err, why.status, "%s", why.message);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)data + sizeof h;
    memcpy(&r->alpha, p, sizeof(double));
    memcpy(r->weights, p + sizeof(double), sizeof(double) * (size_t)h.k);
    p += sizeof(double) * (size_t)(1 + h.k);
    for (size_t i = 0; i < r->n_params; i++) {
        float f;
        memcpy(&f, p + i * sizeof f, sizeof f);
        r->params[i] = f;
    }
    double total = 0;
    int bad = !isfinite(r->alpha) || r->alpha < 0;
    if (bad)
        fail(err, LX_ERR_FILE, "%s: the prior alpha is %g: it must be finite and >= 0", name, r->alpha);
    for (int i = 0; i < h.k && !bad; i++) {
        if ((bad = !isfinite(r->weights[i]) || r->weights[i] < 0))
            fail(err, LX_ERR_FILE, "%s: fixed weight %d is %g: the weights must be finite and >= 0", name, i + 1,
                 r->weights[i]);
        total += r->weights[i];
    }
    if (!bad && (bad = !(fabs(total - 1) <= ROUTER_ROW_TOLERANCE)))
        fail(err, LX_ERR_FILE, "%s: the fixed weights sum to %.9g, not 1 (within %g)", name, total,
             ROUTER_ROW_TOLERANCE);
    if (bad) {
        router_free(r);
        return NULL;
    }
    for (int i = 0; i < h.k; i++)
        r->weights[i] /= total;
    if (ops->check(r, &why)) {
        fail(err, why.status, "%s: %s", name, why.message);
        router_free(r);
        return NULL;
    }
    return r;
}

Router *router_open(const char *path, LxError *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, LX_ERR_FILE, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        fail(err, LX_ERR_FILE, "%s: not a regular file", path);
        return NULL;
    }
    /* The header first, so a file that is not what it says is refused before its size is read. */
    size_t size = (size_t)st.st_size;
    RouterHeader h;
    if (size >= sizeof h) {
        int bad = fread(&h, sizeof h, 1, f) != 1;
        if (bad)
            fail(err, LX_ERR_IO, "%s: read failed", path);
        if (bad || !header_check(&h, size, path, err)) {
            fclose(f);
            return NULL;
        }
    }
    rewind(f);
    void *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        fail(err, LX_ERR_MEMORY, "%s: out of memory for %zu bytes", path, size);
        return NULL;
    }
    int short_read = fread(data, 1, size, f) != size;
    fclose(f);
    Router *r = short_read ? NULL : router_parse(data, size, path, err);
    if (short_read)
        fail(err, LX_ERR_IO, "%s: read failed", path);
    free(data);
    return r;
}

/* Write everything to f; 0 or -1. */
static int router_write(const Router *r, FILE *f)
{
    RouterHeader h = {ROUTER_MAGIC, ROUTER_VERSION, r->ops->kind, r->k, r->vocab_size, 0};
    if (fwrite(&h, sizeof h, 1, f) != 1 || fwrite(&r->alpha, sizeof(double), 1, f) != 1 ||
        fwrite(r->weights, sizeof(double), (size_t)r->k, f) != (size_t)r->k)
        return -1;
    for (size_t i = 0; i < r->n_params; i++) {
        float x = (float)r->params[i];
        if (fwrite(&x, sizeof x, 1, f) != 1)
            return -1;
    }
    return 0;
}

/* Atomic (atomic_file.c): the new file appears complete under its name or not at all, and an
 * old file of that name survives a failed write. */
int router_save(const Router *r, const char *path, LxError *err)
{
    if (r->ops->kind == 0)
        return fail(err, LX_ERR_ARGUMENT, "%s: a %s router has nothing to save (give its weights with -w)", path,
                    r->ops->name);
    AtomicFile af;
    size_t bytes = sizeof(RouterHeader) + sizeof(double) * (size_t)(1 + r->k) + sizeof(float) * r->n_params;
    int rc = atomic_file_open(&af, path, bytes, err);
    if (rc)
        return rc;
    if (router_write(r, af.f)) {
        int e = errno;
        atomic_file_abort(&af);
        return fail(err, LX_ERR_IO, "%s: cannot write the router: %s", path, strerror(e ? e : EIO));
    }
    return atomic_file_commit(&af, err);
}

/* ------------------------------------------------------------------ routed likelihoods */

double router_nll(const ScoreTable *t, const double *routes)
{
    double sum = 0;
    for (long j = 0; j < t->n; j++)
        sum -= score_log_mixture(t, routes + (size_t)j * (size_t)t->k, j, NULL);
    return sum / (double)t->n;
}

void router_contexts(const ScoreView *v, int *ctx)
{
    const long per = v->context - 1;
    for (long j = 0; j < v->table->n; j++)
        ctx[j] = j % per == 0 ? TOKEN_BOS : v->tokens[j];
}

int router_routes(const Router *r, const ScoreView *v, double *routes, LxError *err)
{
    const long per = v->context - 1, N = v->table->n;
    int *history = malloc(sizeof(int) * (size_t)v->context); /* BOS and the window so far */
    if (!history)
        return fail(err, LX_ERR_MEMORY, "out of memory for a window of %d tokens", v->context);
    for (long j0 = 0; j0 < N; j0 += per) {
        history[0] = TOKEN_BOS;
        for (long j = j0; j < N && j < j0 + per; j++) {
            int n = (int)(j - j0) + 1;
            if (j > j0)
                history[n - 1] = v->tokens[j];
            r->ops->weights(r, history, n, routes + (size_t)j * (size_t)r->k);
        }
    }
    free(history);
    return 0;
}

/* ------------------------------------------------------------------ EM for the table
 *
 * The objective is the penalised log-likelihood
 *     F(r) = sum_t log sum_k r_k(c_t) p_k(x_t) + alpha sum_c sum_k w_k log r_k(c),
 * the log posterior of the table under independent Dirichlet(alpha w + 1) priors on its rows
 * (J = -F / N is what the code reports). Why an EM step never lowers F: for the current r and its
 * responsibilities g_tk, Jensen's inequality gives, for any r',
 *     log sum_k r'_k(c_t) p_k(x_t) >= sum_k g_tk log(r'_k(c_t) p_k(x_t) / g_tk),
 * with equality at r' = r. So F(r') >= Q(r') + const with
 *     Q(r') = sum_c sum_k (G_ck + alpha w_k) log r'_k(c),   G_ck = sum_{t: c_t = c} g_tk,
 * touching at r. Each row of Q is maximised on the simplex (Gibbs' inequality) by
 * r'_k(c) = (G_ck + alpha w_k) / (n_c + alpha), since sum_k G_ck = n_c: the M-step. Hence
 * F(r') >= Q(r') + const >= Q(r) + const = F(r). With alpha > 0 and w > 0 every entry stays
 * positive, so the prior term stays finite; rows no token has (n_c = 0) go to w. */

/* One pass over the text: returns J at the table r holds; if next is not NULL (V, K) it gets
 * the M-step. */
static double table_pass(const Router *r, const ScoreTable *t, const int *ctx, double *next, double *count)
{
    const int K = r->k;
    double resp[SCORE_MAX_MEMBERS], f = 0;
    if (next) {
        memset(next, 0, sizeof(double) * r->n_params);
        memset(count, 0, sizeof(double) * (size_t)r->vocab_size);
    }
    for (long j = 0; j < t->n; j++) {
        int c = ctx[j];
        f += score_log_mixture(t, router_row(r, c), j, next ? resp : NULL);
        if (next) {
            for (int i = 0; i < K; i++)
                next[(size_t)c * K + i] += resp[i];
            count[c] += 1;
        }
    }
    if (r->alpha > 0)
        for (int c = 0; c < r->vocab_size; c++)
            for (int i = 0; i < K; i++)
                if (r->weights[i] > 0)
                    f += r->alpha * r->weights[i] * log(router_row(r, c)[i]);
    for (int c = 0; next && c < r->vocab_size; c++) {
        double *row = next + (size_t)c * K, total = count[c] + r->alpha;
        for (int i = 0; i < K; i++)
            row[i] = total > 0 ? (row[i] + r->alpha * r->weights[i]) / total : router_row(r, c)[i];
    }
    return -f / (double)t->n;
}

double router_table_objective(const Router *r, const ScoreTable *t, const int *ctx)
{
    return table_pass(r, t, ctx, NULL, NULL);
}

int router_fit_table(Router *r, const ScoreTable *t, const int *ctx, int max_iter, double tol, double *trace,
                     LxRouterFit *fit, LxError *err)
{
    if (r->ops != &PREVIOUS_TOKEN || r->k != t->k)
        return fail(err, LX_ERR_ARGUMENT, "fit router: a previous-token router of the table's %d members is needed",
                    t->k);
    if (max_iter < 0 || !(tol >= 0))
        return fail(err, LX_ERR_ARGUMENT, "fit router: max_iter %d and tol %g must be >= 0", max_iter, tol);
    for (long j = 0; j < t->n; j++)
        if (ctx[j] < 0 || ctx[j] >= r->vocab_size)
            return fail(err, LX_ERR_ARGUMENT, "fit router: context %d of token %ld is outside 0..%d", ctx[j], j,
                        r->vocab_size - 1);
    double *next = alloc_zeroed(r->n_params, sizeof(double));
    double *count = alloc_zeroed((size_t)r->vocab_size, sizeof(double));
    if (!next || !count) {
        free(next);
        free(count);
        return fail(err, LX_ERR_MEMORY, "out of memory for fitting a %d x %d router", r->vocab_size, r->k);
    }
    /* As score_fit_weights: pass `it` computes J(r_it) and r_{it+1}; the table kept is the last
     * one whose J is known. */
    memset(fit, 0, sizeof *fit);
    double prev = INFINITY;
    for (int it = 0;; it++) {
        double J = table_pass(r, t, ctx, next, count);
        if (trace)
            trace[it] = J;
        fit->iterations = it;
        fit->objective = J;
        if (prev - J <= tol) {
            fit->converged = 1;
            break;
        }
        if (it == max_iter)
            break;
        prev = J;
        memcpy(r->params, next, sizeof(double) * r->n_params);
    }
    double lsum = 0;
    for (long j = 0; j < t->n; j++)
        lsum -= score_log_mixture(t, router_row(r, ctx[j]), j, NULL);
    fit->nll = lsum / (double)t->n;
    free(next);
    free(count);
    return 0;
}

/* ------------------------------------------------------------------ public API */

static LxStatus status_of(int rc, const LxError *e) { return rc ? e->status : LX_OK; }

LxStatus lx_router_constant(int k, const double *weights, LxRouter **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *out = router_constant(k, weights, e);
    return *out ? LX_OK : e->status;
}

LxStatus lx_router_open(const char *path, LxRouter **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *out = router_open(path, e);
    return *out ? LX_OK : e->status;
}

LxStatus lx_router_save(const LxRouter *r, const char *path, LxError *err)
{
    LxError local, *e = err ? err : &local;
    return status_of(router_save(r, path, e), e);
}

void lx_router_free(LxRouter *r) { router_free(r); }
const char *lx_router_name(const LxRouter *r) { return r->ops->name; }
int lx_router_size(const LxRouter *r) { return r->k; }
int lx_router_vocab_size(const LxRouter *r) { return r->vocab_size; }
const double *lx_router_fixed_weights(const LxRouter *r) { return r->weights; }
double lx_router_prior(const LxRouter *r) { return r->alpha; }

LxStatus lx_router_weights(const LxRouter *r, const int *tokens, int n, double *w, LxError *err)
{
    LxError local, *e = err ? err : &local;
    if (n < 1)
        return (LxStatus)fail(e, LX_ERR_ARGUMENT, "router %s: the history is empty (give at least BOS)", r->path);
    if (r->vocab_size)
        for (int i = 0; i < n; i++)
            if (tokens[i] < 0 || tokens[i] >= r->vocab_size)
                return (LxStatus)fail(e, LX_ERR_ARGUMENT, "router %s: token id %d is outside 0..%d", r->path,
                                      tokens[i], r->vocab_size - 1);
    r->ops->weights(r, tokens, n, w);
    return LX_OK;
}

/* The table is kept as the file stores it (float32, rows renormalised), so a saved and reloaded
 * router gives exactly the numbers reported at fitting. */
static void round_as_stored(Router *r)
{
    for (size_t i = 0; i < r->n_params; i++)
        r->params[i] = (float)r->params[i];
    table_check(r, NULL);
}

LxStatus lx_score_fit_router(const LxScore *s, double alpha, int max_iter, double tol, LxRouter **out,
                             LxRouterFit *fit, LxError *err)
{
    LxError local, *e = err ? err : &local;
    LxRouterFit ignored;
    fit = fit ? fit : &ignored;
    *out = NULL;
    ScoreView v = score_view(s);
    double w[SCORE_MAX_MEMBERS];
    ScoreFit wf;
    if (score_fit_weights(v.table, w, max_iter, tol, NULL, &wf, e))
        return e->status;
    Router *r = router_table_new(v.table->k, v.vocab_size, w, alpha, e);
    int *ctx = malloc(sizeof(int) * (size_t)v.table->n);
    int rc = !r ? (int)e->status : !ctx ? fail(e, LX_ERR_MEMORY, "out of memory for %ld contexts", v.table->n) : 0;
    if (!rc) {
        router_contexts(&v, ctx);
        rc = router_fit_table(r, v.table, ctx, max_iter, tol, NULL, fit, e);
    }
    if (!rc) {
        round_as_stored(r);
        fit->nll_fixed = wf.nll;
        fit->objective = router_table_objective(r, v.table, ctx);
        rc = lx_score_router_nll(s, r, &fit->nll, e); /* after rounding, through the interface */
    }
    free(ctx);
    if (rc) {
        router_free(r);
        return e->status;
    }
    *out = r;
    return LX_OK;
}

LxStatus lx_score_router_nll(const LxScore *s, const LxRouter *r, double *nll, LxError *err)
{
    LxError local, *e = err ? err : &local;
    ScoreView v = score_view(s);
    if (router_check_fit(r, v.table->k, v.vocab_size, e))
        return e->status;
    size_t cells;
    double *routes = NULL;
    if (size_mul((size_t)v.table->n, (size_t)r->k, &cells) || !(routes = alloc_zeroed(cells, sizeof(double))))
        return (LxStatus)fail(e, LX_ERR_MEMORY, "out of memory for %ld x %d routed weights", v.table->n, r->k);
    int rc = router_routes(r, &v, routes, e);
    if (!rc)
        *nll = router_nll(v.table, routes);
    free(routes);
    return status_of(rc, e);
}
