/* mpi.c: the members of one ensemble on several MPI ranks (the contract is in mpi_members.h).
 *
 * Messages, all on MPI_COMM_WORLD between rank 0 and one other rank (MPI keeps each pair's
 * messages in order, so replies come back in the order of the requests):
 *   rank 0 -> r   INIT    {n_ctx, threads}               allocate the members' KV caches
 *                 FORWARD {member, pos, n, tokens (n)}    forward() of member at pos
 *                 SCORE   {n, context, threads, tokens (n)}   score_member() of each member of r
 *                 STOP    {status}                        leave, with that exit status
 *   r -> rank 0   CONFIG  ModelConfig bytes, one per member of r, after opening them
 *                 LOGITS  V floats: the last row's logits of one FORWARD
 *                 ROWS    n - 1 doubles: one member's log p(x_t), per member of r in order
 *                 ERROR   a message, in place of one reply (a SCORE's remaining rows too)
 *
 * Why the logits travel rather than one sampled token (ME) or a per-rank sum (CE): with every
 * member's logits on rank 0, rank 0 runs the single process's own code, sums in its order
 * (float addition is not associative: a reduction across ranks would sum q in another order and
 * change the last bits, and with them, now and then, a token) and draws from its streams: every
 * mode (CE, ME, ce-mixture, ce-unite, greedy, routers, union vocabularies) is exact by
 * construction. The price is V floats per member and token instead of V per rank (CE) or one
 * int (ME), and S(p_k) computed on rank 0: for V = 32000, 128 KB a member, microseconds on a
 * cluster's network next to a 7B forward's tens of milliseconds (bench/mpi-overhead).
 *
 * Faults: every call returns errors (MPI_ERRORS_RETURN) and is checked. A rank that dies makes
 * mpirun end the job; rank 0, waiting for a reply, catches the SIGTERM and names the rank it was
 * waiting for. */
#include "config.h"
#include "cli.h"
#include "internal.h"
#include "mpi_members.h"

#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { TAG_INIT = 1, TAG_FORWARD, TAG_SCORE, TAG_STOP, TAG_CONFIG, TAG_LOGITS, TAG_ROWS, TAG_ERROR };

static struct {
    int active;               /* MPI_Init ran (--mpi) */
    int serving;              /* the other ranks are in serve() and wait for STOP */
    int rank, size, k;
    int owner[CLI_MAX_MEMBERS]; /* member i's rank */
    LxModel *models[CLI_MAX_MEMBERS]; /* rank 0: all (shells for remote ones); others: their own */
    int outstanding[CLI_MAX_MEMBERS]; /* rank 0: forwards started on rank r, not yet finished */
    int *message;             /* rank 0: one FORWARD's buffer */
    int message_capacity;
} g;

/* The rank rank 0 waits for, and its first member's file, for the SIGTERM handler. */
static volatile sig_atomic_t waiting_for = -1;
static char lost_lines[CLI_MAX_MEMBERS][LX_ERROR_LENGTH];

static void on_terminate(int sig)
{
    (void)sig;
    static const char unknown[] = "llamix: rank 0: the job was ended from outside (a rank lost, or mpirun stopped)\n";
    if (g.rank == 0) {
        const char *line = waiting_for > 0 ? lost_lines[waiting_for] : unknown;
        ssize_t ignored = write(2, line, strlen(line));
        (void)ignored;
        /* mpirun forwards our stderr while it tears the job down: give it a moment. */
        struct timespec moment = {0, 300000000};
        nanosleep(&moment, NULL);
    }
    _exit(EXIT_RUNTIME);
}

/* Wait for the next message from rank src: spin on MPI_Iprobe for a while, then poll every 20 us,
 * so that an idle rank (ME picks one member a token) leaves its core to the ranks computing. */
static int wait_message(int src, MPI_Status *st)
{
    waiting_for = src;
    for (long polls = 0;; polls++) {
        int ready = 0;
        if (MPI_Iprobe(src, MPI_ANY_TAG, MPI_COMM_WORLD, &ready, st) != MPI_SUCCESS)
            return waiting_for = -1, -1;
        if (ready)
            break;
        if (polls > 20000) {
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
        }
    }
    waiting_for = -1;
    return 0;
}

static int count_of(MPI_Status *st, MPI_Datatype type)
{
    int n = 0;
    return MPI_Get_count(st, type, &n) == MPI_SUCCESS ? n : -1;
}

/* Rank 0: receive an ERROR that wait_message found from rank src into err. */
static int remote_error(int src, MPI_Status *st, LxError *err)
{
    char text[LX_ERROR_LENGTH] = "";
    int n = count_of(st, MPI_CHAR);
    if (n < 0 || n >= LX_ERROR_LENGTH ||
        MPI_Recv(text, n, MPI_CHAR, src, TAG_ERROR, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return fail(err, LX_ERR_FILE, "rank %d: a reply that could not be read", src);
    text[n] = '\0';
    return fail(err, LX_ERR_FILE, "rank %d: %s", src, text);
}

static void send_error(const LxError *err)
{
    MPI_Send(err->message, (int)strlen(err->message), MPI_CHAR, 0, TAG_ERROR, MPI_COMM_WORLD);
}

/* ------------------------------------------------------------------ the serving ranks */

typedef struct {
    int member;
    ForwardState state;
    float *logits;
} Local;

static void locals_free(Local *local, int n)
{
    for (int j = 0; j < n; j++) {
        forward_state_free(&local[j].state);
        free(local[j].logits);
        local[j].logits = NULL;
    }
}

static int locals_init(Local *local, int n, int n_ctx, int threads, LxError *err)
{
    locals_free(local, n);
    for (int j = 0; j < n; j++) {
        const Model *m = g.models[local[j].member];
        if (!(local[j].logits = alloc_zeroed((size_t)m->config.vocab_size, sizeof(float))))
            return fail(err, LX_ERR_MEMORY, "%s: out of memory for its logits", m->path);
        if (forward_state_init(&local[j].state, &m->config, n_ctx, 0, err))
            return -1;
        local[j].state.threads = threads_resolve(threads);
    }
    return 0;
}

/* One SCORE on this rank: every member's rows, in member order, or an ERROR in place of the rest. */
static void serve_score(Local *local, int n_local, const int *header, int length)
{
    int n = header[0], context = header[1], threads = header[2];
    LxError err = {0};
    double *row = n >= 2 && length == 3 + n ? malloc(sizeof(double) * (size_t)(n - 1)) : NULL;
    for (int j = 0; j < n_local; j++) {
        ScoreOptions so = {.context = context, .threads = threads, .member = local[j].member};
        if (!row) {
            fail(&err, LX_ERR_MEMORY, "out of memory for a score of %d tokens", n);
            send_error(&err);
            break;
        }
        if (score_member(g.models[local[j].member], header + 3, n, &so, row, &err)) {
            send_error(&err);
            break;
        }
        if (MPI_Send(row, n - 1, MPI_DOUBLE, 0, TAG_ROWS, MPI_COMM_WORLD) != MPI_SUCCESS)
            break;
    }
    free(row);
}

/* The loop of every rank but 0: requests in, replies out, until STOP. Returns the exit status. */
static int serve(void)
{
    Local local[CLI_MAX_MEMBERS];
    int n_local = 0, status = EXIT_RUNTIME, capacity = 0, *buffer = NULL;
    memset(local, 0, sizeof local);
    for (int i = 0; i < g.k; i++)
        if (g.owner[i] == g.rank)
            local[n_local++].member = i;
    for (;;) {
        MPI_Status st;
        LxError err = {0};
        if (wait_message(0, &st))
            break;
        int n = count_of(&st, MPI_INT);
        if (n > capacity) {
            int *bigger = realloc(buffer, sizeof(int) * (size_t)n);
            if (bigger)
                buffer = bigger, capacity = n;
        }
        if (n < 1 || n > capacity) {
            cli_error("rank %d: no room for a message of %d ints from rank 0", g.rank, n);
            break;
        }
        if (MPI_Recv(buffer, n, MPI_INT, 0, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            break;
        if (st.MPI_TAG == TAG_STOP) {
            status = buffer[0];
            break;
        } else if (st.MPI_TAG == TAG_INIT && n == 2) {
            if (locals_init(local, n_local, buffer[0], buffer[1], &err))
                send_error(&err);
        } else if (st.MPI_TAG == TAG_FORWARD && n >= 3 && n == 3 + buffer[2]) {
            int j = 0;
            while (j < n_local && local[j].member != buffer[0])
                j++;
            if (j == n_local || !local[j].logits) {
                fail(&err, LX_ERR_ARGUMENT, "member %d is not on this rank or not ready", buffer[0] + 1);
                send_error(&err);
            } else if (forward(g.models[buffer[0]], &local[j].state, buffer + 3, buffer[2], buffer[1], local[j].logits,
                               0, &err)) {
                send_error(&err);
            } else if (MPI_Send(local[j].logits, g.models[buffer[0]]->config.vocab_size, MPI_FLOAT, 0, TAG_LOGITS,
                                MPI_COMM_WORLD) != MPI_SUCCESS) {
                break;
            }
        } else if (st.MPI_TAG == TAG_SCORE && n >= 3) {
            serve_score(local, n_local, buffer, n);
        } else {
            cli_error("rank %d: an unknown message (tag %d, %d ints) from rank 0", g.rank, st.MPI_TAG, n);
            break;
        }
    }
    locals_free(local, n_local);
    free(buffer);
    return status;
}

/* ------------------------------------------------------------------ rank 0's remote members */

static int remote_start(void *user, int member, const int *tokens, int n, int pos, LxError *err)
{
    (void)user;
    if (n + 3 > g.message_capacity) {
        int *bigger = realloc(g.message, sizeof(int) * (size_t)(n + 3));
        if (!bigger)
            return fail(err, LX_ERR_MEMORY, "out of memory for a message of %d tokens", n);
        g.message = bigger;
        g.message_capacity = n + 3;
    }
    g.message[0] = member, g.message[1] = pos, g.message[2] = n;
    memcpy(g.message + 3, tokens, sizeof(int) * (size_t)n);
    int r = g.owner[member];
    if (MPI_Send(g.message, n + 3, MPI_INT, r, TAG_FORWARD, MPI_COMM_WORLD) != MPI_SUCCESS)
        return fail(err, LX_ERR_FILE, "rank %d (%s): the request could not be sent: the rank was lost", r,
                    lx_model_path(g.models[member]));
    g.outstanding[r]++;
    return 0;
}

static int remote_finish(void *user, int member, float *logits, LxError *err)
{
    (void)user;
    int r = g.owner[member], V = lx_model_config(g.models[member]).vocab_size;
    MPI_Status st;
    if (wait_message(r, &st))
        return fail(err, LX_ERR_FILE, "rank %d (%s) was lost", r, lx_model_path(g.models[member]));
    g.outstanding[r]--;
    if (st.MPI_TAG == TAG_ERROR)
        return remote_error(r, &st, err);
    if (st.MPI_TAG != TAG_LOGITS || count_of(&st, MPI_FLOAT) != V ||
        MPI_Recv(logits, V, MPI_FLOAT, r, TAG_LOGITS, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return fail(err, LX_ERR_FILE, "rank %d (%s): a reply that is not its %d logits", r,
                    lx_model_path(g.models[member]), V);
    return 0;
}

static const RemoteForward REMOTE = {remote_start, remote_finish};

int mpi_attach(LxEnsemble *e, int threads, LxError *err)
{
    int init[2] = {lx_ensemble_context(e), threads};
    for (int r = 1; r < g.size; r++)
        if (MPI_Send(init, 2, MPI_INT, r, TAG_INIT, MPI_COMM_WORLD) != MPI_SUCCESS)
            return fail(err, LX_ERR_FILE, "rank %d was lost", r);
    for (int i = 0; i < g.k; i++)
        if (g.owner[i] != 0)
            ensemble_set_remote(e, i, &REMOTE, NULL);
    return 0;
}

/* ------------------------------------------------------------------ score */

static int member_index(const LxModel *m)
{
    for (int i = 0; i < g.k; i++)
        if (g.models[i] == m)
            return i;
    return -1;
}

/* lx_score_text's checks and encoding, with each member's row computed on its rank. */
LxStatus mpi_score_text(LxModel *const *models, int k, const LxTokenizer *t, const char *text,
                        const LxScoreParams *params, LxScore **out, LxError *err)
{
    *out = NULL;
    int index[CLI_MAX_MEMBERS];
    for (int i = 0; i < k; i++)
        if ((index[i] = member_index(models[i])) < 0 || k > SCORE_MAX_MEMBERS)
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "mpi_score_text: not the members mpi_members_open gave");
    const Model *const *ms = (const Model *const *)models;
    for (int i = 1; i < k; i++)
        if (ms[i]->config.vocab_size != ms[0]->config.vocab_size)
            return (LxStatus)fail(err, LX_ERR_ARGUMENT, "%s has vocab_size %d but %s has %d: members must share one vocabulary",
                                  ms[i]->path, ms[i]->config.vocab_size, ms[0]->path, ms[0]->config.vocab_size);
    if (tokenizer_vocab_size(t) != ms[0]->config.vocab_size)
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "%s has %d pieces but %s has vocab_size %d", tokenizer_path(t),
                              tokenizer_vocab_size(t), ms[0]->path, ms[0]->config.vocab_size);
    int usable = models_context(ms, k), context = params->context ? params->context : usable;
    if (context < 2 || context > usable)
        return (LxStatus)fail(err, LX_ERR_CONTEXT, "a context of %d tokens is not from 2 to %s's seq_len %d",
                              context, k > 1 ? "the smallest member" : ms[0]->path, usable);
    size_t length = strlen(text);
    if (length > (size_t)INT_MAX - 6)
        return (LxStatus)fail(err, LX_ERR_ARGUMENT, "the text is too long to score (%zu bytes)", length);
    int max_tokens = (int)length + 3, n = 0, rc = 0;
    int *message = malloc(sizeof(int) * ((size_t)max_tokens + 3)), *tokens = message ? message + 3 : NULL;
    ScoreTable table = {0};
    if (!message)
        rc = fail(err, LX_ERR_MEMORY, "out of memory for a text of %zu bytes", length);
    if (!rc)
        rc = tokenizer_encode(t, text, 1, 0, tokens, max_tokens, &n, err);
    if (!rc && n < 2)
        rc = fail(err, LX_ERR_ARGUMENT, "the text has no tokens to score");
    if (!rc)
        rc = score_table_init(&table, k, n - 1, err);
    if (rc) {
        free(message);
        return (LxStatus)err->status;
    }
    if (params->context == 0 && n < context)
        context = n; /* as lx_score_text: the window is never longer than the text */
    /* Every rank with members scores them while this one scores its own. */
    message[0] = n, message[1] = context, message[2] = params->threads;
    int sent[CLI_MAX_MEMBERS] = {0}, failed[CLI_MAX_MEMBERS] = {0};
    for (int i = 0; i < k && !rc; i++) {
        int r = g.owner[index[i]];
        if (r != 0 && !sent[r]) {
            if (MPI_Send(message, n + 3, MPI_INT, r, TAG_SCORE, MPI_COMM_WORLD) != MPI_SUCCESS)
                rc = fail(err, LX_ERR_FILE, "rank %d was lost", r);
            else
                sent[r] = 1;
        }
    }
    ScoreOptions so = {.context = context, .threads = params->threads, .progress = params->progress,
                       .user = params->user};
    for (int i = 0; i < k && !rc; i++)
        if (g.owner[index[i]] == 0) {
            so.member = i;
            rc = score_member(ms[i], tokens, n, &so, table.logp + (size_t)i * (size_t)table.n, err);
        }
    /* The remote rows, each rank's in member order; all of them are read, even after an error,
     * so that no rank is left blocked in a send. */
    LxError remote = {0};
    int remote_rc = 0;
    for (int i = 0; i < k; i++) {
        int r = g.owner[index[i]];
        MPI_Status st;
        if (r == 0 || !sent[r] || failed[r])
            continue;
        if (wait_message(r, &st)) {
            remote_rc = fail(&remote, LX_ERR_FILE, "rank %d (%s) was lost", r, ms[i]->path);
            failed[r] = 1;
        } else if (st.MPI_TAG == TAG_ERROR) {
            remote_rc = remote_error(r, &st, &remote);
            failed[r] = 1;
        } else if (st.MPI_TAG != TAG_ROWS || count_of(&st, MPI_DOUBLE) != n - 1 ||
                   MPI_Recv(table.logp + (size_t)i * (size_t)table.n, n - 1, MPI_DOUBLE, r, TAG_ROWS, MPI_COMM_WORLD,
                            MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            remote_rc = fail(&remote, LX_ERR_FILE, "rank %d (%s): a reply that is not its %d log-probabilities", r,
                             ms[i]->path, n - 1);
            failed[r] = 1;
        }
    }
    if (!rc && remote_rc) {
        *err = remote;
        rc = remote_rc;
    }
    if (!rc) {
        int *kept = malloc(sizeof(int) * (size_t)n);
        if (kept)
            memcpy(kept, tokens, sizeof(int) * (size_t)n);
        if (!kept || !(*out = score_adopt(&table, kept, context, ms[0]->config.vocab_size))) {
            free(kept);
            rc = fail(err, LX_ERR_MEMORY, "out of memory for a score of %d tokens", n);
        }
    }
    score_table_free(&table);
    free(message);
    return rc ? (LxStatus)err->status : LX_OK;
}

/* ------------------------------------------------------------------ start and end */

/* The placement: member i on rank i mod R, or on the ranks listed. 0, or -1 with a message. */
static int place(const char *list, int k, int size, char *why, size_t why_size)
{
    for (int i = 0; i < k; i++)
        g.owner[i] = i % size;
    if (!list)
        return 0;
    const char *p = list;
    for (int i = 0; i < k; i++) {
        char *end;
        long r = strtol(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || (*end == '\0' && i < k - 1) || (*end == ',' && i == k - 1)) {
            snprintf(why, why_size, "--member-ranks: '%s' is not %d comma-separated ranks", list, k);
            return -1;
        }
        if (r < 0 || r >= size) {
            snprintf(why, why_size, "--member-ranks: rank %ld is not from 0 to %d (mpirun -np %d)", r, size - 1, size);
            return -1;
        }
        g.owner[i] = (int)r;
        p = *end ? end + 1 : end;
    }
    return 0;
}

int mpi_members_open(char *const *paths, int k, const char *member_ranks, LxModel **models)
{
    int provided;
    for (int i = 0; i < k; i++)
        models[i] = NULL;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        cli_error("--mpi: MPI_Init failed (run under mpirun)");
        return EXIT_RUNTIME;
    }
    g.active = 1;
    g.k = k;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    if (g.size > CLI_MAX_MEMBERS) {
        if (g.rank == 0)
            cli_error("--mpi: %d ranks, at most %d", g.size, CLI_MAX_MEMBERS);
        return EXIT_USAGE;
    }
    char why[LX_ERROR_LENGTH + 64] = "";
    if (place(member_ranks, k, g.size, why, sizeof why)) {
        if (g.rank == 0)
            cli_error("%s", why);
        return EXIT_USAGE;
    }
    /* This rank's members; the first failure is this rank's line for rank 0. */
    LxError err;
    for (int i = 0; i < k && !why[0]; i++)
        if (g.owner[i] == g.rank && lx_model_open(paths[i], &g.models[i], &err))
            snprintf(why, sizeof why, "rank %d: %s", g.rank, err.message);
    char *lines = g.rank == 0 ? calloc((size_t)g.size, sizeof why) : NULL;
    int bad = why[0] != 0, any_bad = 0;
    if (MPI_Gather(why, (int)sizeof why, MPI_CHAR, lines, (int)sizeof why, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        any_bad = 1;
    if (any_bad) {
        for (int r = 0; lines && r < g.size; r++)
            if (lines[r * sizeof why]) {
                cli_error("%s", lines + r * sizeof why);
                break;
            }
        free(lines);
        for (int i = 0; i < k; i++)
            lx_model_close(g.models[i]), g.models[i] = NULL;
        return EXIT_RUNTIME;
    }
    free(lines);
    /* Rank 0 learns the remote members' shapes and makes their shells. */
    if (g.rank != 0) {
        for (int i = 0; i < k; i++)
            if (g.owner[i] == g.rank)
                MPI_Send(&g.models[i]->config, (int)sizeof(ModelConfig), MPI_BYTE, 0, TAG_CONFIG, MPI_COMM_WORLD);
        int status = serve();
        for (int i = 0; i < k; i++)
            lx_model_close(g.models[i]), g.models[i] = NULL;
        return status;
    }
    int rc = 0;
    for (int i = 0; i < k; i++) {
        if (g.owner[i] == 0)
            continue;
        Model *m = calloc(1, sizeof *m);
        if (!m || MPI_Recv(&m->config, (int)sizeof m->config, MPI_BYTE, g.owner[i], TAG_CONFIG, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            cli_error("rank %d (%s): %s", g.owner[i], paths[i], m ? "lost before it sent its model's shape" : "out of memory");
            free(m);
            rc = 1;
            break;
        }
        snprintf(m->path, sizeof m->path, "%s", paths[i]);
        g.models[i] = m;
    }
    for (int r = 1; r < g.size; r++)
        for (int i = k - 1; i >= 0; i--)
            if (g.owner[i] == r)
                snprintf(lost_lines[r], sizeof lost_lines[r],
                         "llamix: rank 0: rank %d (holding %s) was lost: the job ends\n", r, paths[i]);
    g.serving = 1; /* from here on the other ranks wait for STOP */
    if (rc) {
        for (int i = 0; i < k; i++)
            lx_model_close(g.models[i]), g.models[i] = NULL;
        return EXIT_RUNTIME;
    }
    signal(SIGTERM, on_terminate);
    memcpy(models, g.models, sizeof(LxModel *) * (size_t)k);
    return -1;
}

int mpi_end(int status)
{
    if (!g.active)
        return status;
    if (g.rank == 0 && g.serving) {
        /* Replies still on their way (a step that failed half-way) are read first: a rank blocked
         * sending them would never see STOP. */
        for (int r = 1; r < g.size; r++)
            for (; g.outstanding[r] > 0; g.outstanding[r]--) {
                MPI_Status st;
                if (wait_message(r, &st))
                    break;
                int n = count_of(&st, MPI_BYTE);
                char *junk = malloc(n > 0 ? (size_t)n : 1);
                MPI_Recv(junk, n, MPI_BYTE, r, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                free(junk);
            }
        for (int r = 1; r < g.size; r++)
            MPI_Send(&status, 1, MPI_INT, r, TAG_STOP, MPI_COMM_WORLD);
    }
    if (g.rank == 0) /* the shells (the local models were closed by the command) */
        for (int i = 0; i < g.k; i++)
            if (g.owner[i] != 0)
                g.models[i] = NULL;
    free(g.message);
    g.message = NULL;
    signal(SIGTERM, SIG_DFL);
    MPI_Finalize();
    g.active = 0;
    return status;
}
