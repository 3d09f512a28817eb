/* test_generate.c: the library's one generation loop (lx_generate): stop conditions, stop strings
 * cut before the string with text held back only while it may begin one, the callback's events
 * (member, log-probability, released text) and the statistics; and the public API's error
 * contract (statuses, messages naming the problem, NULL-safe frees).
 *
 * Members: tiny random models of a 16-id vocabulary; the tokenizer gives ids 3..15 the letters
 * "a".."m" (ids 0, 1 and 2 print "<unk>" and llama2.c's BOS and EOS pieces, since these runs go
 * on through end of text). Everything is seeded, so a run is reproducible and a second run with a
 * stop string can be checked against the text of a first run without one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

#define V 16
#define MAX_EVENTS 128

/* The tokenizer file: "<unk>", BOS, EOS, then "a".."m". */
static Tokenizer *letters(void)
{
    unsigned char buf[512];
    size_t n = 0;
    uint32_t mtl = 6;
    memcpy(buf, &mtl, 4);
    n = 4;
    const char *pieces[V] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    char letter[V][2];
    for (int i = 3; i < V; i++) {
        letter[i][0] = (char)('a' + i - 3);
        letter[i][1] = '\0';
        pieces[i] = letter[i];
    }
    for (int i = 0; i < V; i++) {
        float score = 0;
        int32_t len = (int32_t)strlen(pieces[i]);
        memcpy(buf + n, &score, 4);
        memcpy(buf + n + 4, &len, 4);
        memcpy(buf + n + 8, pieces[i], (size_t)len);
        n += 8 + (size_t)len;
    }
    LxError err[1];
    Tokenizer *t = tokenizer_parse(buf, n, V, "letters.bin", err);
    if (!t)
        fail_msg("tokenizer_parse: %s", err->message);
    return t;
}

/* What the callback heard. */
typedef struct {
    int n;
    LxTokenEvent ev[MAX_EVENTS];
    char text[4096];
    size_t length;
    int stop_after; /* ask to stop after this many events (0: never) */
} Heard;

static int hear(void *user, const LxTokenEvent *ev)
{
    Heard *h = user;
    assert_true(h->n < MAX_EVENTS);
    h->ev[h->n++] = *ev;
    assert_true(h->length + ev->text_length < sizeof h->text);
    memcpy(h->text + h->length, ev->text, ev->text_length);
    h->length += ev->text_length;
    h->text[h->length] = '\0';
    return h->stop_after > 0 && h->n >= h->stop_after;
}

typedef struct {
    TestMembers ms;
    Tokenizer *tok;
    LxEnsemble *e;
} Fixture;

static void open_fixture(Fixture *f, int k, LxMode mode, int n_ctx, uint64_t seed)
{
    test_members_open(&f->ms, k, V, 900);
    f->tok = letters();
    LxEnsembleParams p = lx_ensemble_defaults();
    p.mode = mode;
    p.n_ctx = n_ctx;
    p.seed = seed;
    p.sampler.top_p = 1.0f;
    LxModel *models[TEST_MAX_MEMBERS];
    for (int i = 0; i < k; i++)
        models[i] = &f->ms.models[i];
    LxError err;
    if (lx_ensemble_new(models, k, &f->tok, 1, &p, &f->e, &err))
        fail_msg("lx_ensemble_new: %s", err.message);
}

static void close_fixture(Fixture *f)
{
    lx_ensemble_free(f->e);
    tokenizer_free(f->tok);
    test_members_close(&f->ms);
}

static LxGenerateStats run(Fixture *f, const LxGenerateParams *g, Heard *h)
{
    LxGenerateStats st;
    LxError err;
    memset(h->ev, 0, sizeof h->ev);
    h->n = 0;
    h->length = 0;
    h->text[0] = '\0';
    if (lx_generate(f->e, "abc", g, hear, h, &st, &err))
        fail_msg("lx_generate: %s", err.message);
    return st;
}

/* The budget, the statistics, and one event per token with its index; the text released is the
 * concatenation of the tokens' pieces when no stop string is set. */
static void test_budget_and_events(void **state)
{
    (void)state;
    Fixture f;
    open_fixture(&f, 2, LX_MODE_ME, 0, 5);
    LxGenerateParams g = lx_generate_defaults();
    g.n_predict = 30;
    g.ignore_eos = 1;
    Heard h = {0};
    LxGenerateStats st = run(&f, &g, &h);
    assert_int_equal(st.stop, LX_STOP_BUDGET);
    assert_int_equal(st.n_generated, 30);
    assert_int_equal(h.n, 30);
    assert_int_equal(st.n_prompt, 4); /* BOS + "a" "b" "c" (each letter is one piece; no space id) */
    char want[64] = "";
    for (int i = 0; i < h.n; i++) {
        assert_int_equal(h.ev[i].index, i);
        assert_true(h.ev[i].member == 0 || h.ev[i].member == 1);
        assert_true(h.ev[i].logprob <= 0.0f && isfinite(h.ev[i].logprob));
        strcat(want, tokenizer_decode(f.tok, i ? h.ev[i - 1].token : 5, h.ev[i].token));
    }
    assert_string_equal(h.text, want);
    assert_int_equal(lx_ensemble_length(f.e), 4 + 30); /* every generated token is appended */
    /* The same seed gives the same run. */
    Heard again = {0};
    run(&f, &g, &again);
    assert_string_equal(again.text, h.text);
    close_fixture(&f);
}

/* A stop string: the text is cut just before its first occurrence, including one that spans
 * tokens; the events release the same prefix; a string that never completes is held back only
 * while it might, and released at the end (the token -1 event). Checked against the text of a run
 * without stop strings, same seed. */
static void test_stop_strings(void **state)
{
    (void)state;
    Fixture f;
    open_fixture(&f, 2, LX_MODE_CE, 0, 11);
    LxGenerateParams g = lx_generate_defaults();
    g.n_predict = 60;
    g.ignore_eos = 1;
    Heard full = {0};
    run(&f, &g, &full);
    assert_true(full.length >= 40);

    /* A 3-letter string starting at letter 20, so it spans three tokens. */
    char stop[4];
    memcpy(stop, full.text + 20, 3);
    stop[3] = '\0';
    size_t first = (size_t)(strstr(full.text, stop) - full.text);
    const char *stops[2] = {"zzzz", stop};
    g.stop = stops;
    g.n_stop = 2;
    Heard cut = {0};
    LxGenerateStats st = run(&f, &g, &cut);
    if (st.stop != LX_STOP_STRING)
        fail_msg("stop '%s' (first at %zu) not found; full '%s', cut '%s'", stop, first, full.text, cut.text);
    assert_int_equal(st.stop_index, 1);
    assert_int_equal(cut.length, first);
    assert_memory_equal(cut.text, full.text, first);
    /* It stopped at the token that completed the string: the first whose text reaches past it. */
    size_t upto = 0;
    int completing = 0;
    while (upto < first + 3)
        upto += full.ev[completing++].text_length;
    assert_int_equal(st.n_generated, completing);
    for (int i = 0; i < cut.n; i++)
        assert_int_not_equal(cut.ev[i].token, -1);

    /* Never completes: the last letter followed by a letter the text never has next. */
    char tail[3] = {full.text[full.length - 1], 'z', '\0'};
    const char *never[1] = {tail};
    g.stop = never;
    g.n_stop = 1;
    Heard held = {0};
    st = run(&f, &g, &held);
    assert_int_equal(st.stop, LX_STOP_BUDGET);
    assert_string_equal(held.text, full.text);
    assert_int_equal(held.ev[held.n - 1].token, -1); /* the held-back last letter, released at the end */
    assert_int_equal(held.ev[held.n - 1].text_length, 1);

    /* Negative control: a stop string that is not in the text changes nothing. */
    const char *absent[1] = {"zz"};
    g.stop = absent;
    Heard same = {0};
    run(&f, &g, &same);
    assert_string_equal(same.text, full.text);
    close_fixture(&f);
}

/* A full context, the callback's stop, end of text, and the prompt that does not fit. */
static void test_other_stops(void **state)
{
    (void)state;
    Fixture f;
    open_fixture(&f, 1, LX_MODE_ME, 10, 3);
    LxGenerateParams g = lx_generate_defaults();
    g.n_predict = -1;
    g.ignore_eos = 1;
    Heard h = {0};
    LxGenerateStats st = run(&f, &g, &h);
    assert_int_equal(st.stop, LX_STOP_CONTEXT);
    assert_int_equal(st.n_generated, 10 - 4 + 1);

    g.n_predict = 100;
    h.stop_after = 3;
    st = run(&f, &g, &h);
    assert_int_equal(st.stop, LX_STOP_CALLBACK);
    assert_int_equal(st.n_generated, 3);

    /* End of text: without ignore_eos, the first BOS or EOS drawn ends the run and is no token. */
    g.ignore_eos = 0;
    g.n_predict = 10;
    h.stop_after = 0;
    int ended = 0;
    for (int seed = 0; seed < 200 && !ended; seed++) {
        close_fixture(&f);
        open_fixture(&f, 1, LX_MODE_ME, 0, (uint64_t)seed);
        st = run(&f, &g, &h);
        if (st.stop == LX_STOP_END) {
            ended = 1;
            assert_int_equal(st.n_generated, h.n);
            for (int i = 0; i < h.n; i++)
                assert_true(h.ev[i].token != LX_TOKEN_BOS && h.ev[i].token != LX_TOKEN_EOS);
        }
    }
    assert_true(ended); /* 200 seeds of 10 draws from a 16-id vocabulary: some draw ends */

    LxError err;
    char long_prompt[64];
    memset(long_prompt, 'a', sizeof long_prompt - 1);
    long_prompt[sizeof long_prompt - 1] = '\0';
    close_fixture(&f);
    open_fixture(&f, 1, LX_MODE_ME, 10, 3);
    assert_int_equal(lx_generate(f.e, long_prompt, &g, NULL, NULL, NULL, &err), LX_ERR_CONTEXT);
    assert_non_null(strstr(err.message, "context"));
    const char *empty[1] = {""};
    g.stop = empty;
    g.n_stop = 1;
    assert_int_equal(lx_generate(f.e, "a", &g, NULL, NULL, NULL, &err), LX_ERR_ARGUMENT);
    close_fixture(&f);
}

/* The log-probability reported is that of the distribution the token was drawn from: for ME the
 * picked member's S(p_k), for CE the mixture q, both recomputed here by replaying the prefix. */
static void test_logprobs(void **state)
{
    (void)state;
    for (int mode = LX_MODE_ME; mode <= LX_MODE_CE; mode++) {
        Fixture f;
        open_fixture(&f, 2, (LxMode)mode, 0, 21);
        LxGenerateParams g = lx_generate_defaults();
        g.n_predict = 12;
        g.ignore_eos = 1;
        Heard h = {0};
        run(&f, &g, &h);
        int prefix[64] = {LX_TOKEN_BOS, 3, 4, 5}, n = 4;
        EnsembleParams p = f.e->params;
        p.weights = f.e->weights;
        p.mode = LX_MODE_CE;
        Ensemble check;
        LxError err[1];
        assert_int_equal(ensemble_init(&check, f.ms.members, 2, NULL, 0, &p, err), 0);
        float q[V], probs[V];
        for (int i = 0; i < h.n; i++) {
            ensemble_reset(&check);
            assert_int_equal(ensemble_append(&check, prefix, n, err), 0);
            int x = h.ev[i].token;
            double want;
            if (mode == LX_MODE_CE) {
                assert_int_equal(ensemble_distribution(&check, q, err), 0);
                want = q[x];
            } else {
                const float *logits = ensemble_sync(&check, h.ev[i].member, err);
                assert_non_null(logits);
                sampler_transform(&check.sampler, logits, probs);
                want = probs[x];
            }
            if (fabs(exp(h.ev[i].logprob) - want) > 1e-5)
                fail_msg("%s token %d: reported p %.7f, recomputed %.7f", lx_mode_name((LxMode)mode), i,
                         exp(h.ev[i].logprob), want);
            prefix[n++] = x;
        }
        ensemble_free(&check);
        close_fixture(&f);
    }
}

/* The public contract: statuses and messages, NULL out-pointers on failure, NULL-safe frees. */
static void test_public_errors(void **state)
{
    (void)state;
    LxError err;
    LxModel *m = (LxModel *)1;
    assert_int_equal(lx_model_open("/nonexistent/x.bin", &m, &err), LX_ERR_FILE);
    assert_null(m);
    assert_int_equal(err.status, LX_ERR_FILE);
    assert_non_null(strstr(err.message, "/nonexistent/x.bin"));
    assert_int_equal(lx_model_open("/nonexistent/x.bin", &m, NULL), LX_ERR_FILE); /* err may be NULL */
    LxTokenizer *t = (LxTokenizer *)1;
    assert_int_equal(lx_tokenizer_open("/nonexistent/t.bin", 0, &t, &err), LX_ERR_FILE);
    assert_null(t);
    LxMode mode;
    assert_int_equal(lx_mode_parse("mixture", &mode, &err), LX_ERR_ARGUMENT);
    double w[2];
    assert_int_equal(lx_weights_parse("1,1,", 2, w, &err), LX_ERR_ARGUMENT); /* trailing comma */
    assert_int_equal(lx_weights_parse("1,2", 2, w, &err), LX_OK);
    lx_model_close(NULL);
    lx_tokenizer_free(NULL);
    lx_ensemble_free(NULL);
    lx_score_free(NULL);
    assert_string_equal(lx_status_name(LX_ERR_MEMORY), "out of memory");
    assert_non_null(lx_version());

    /* Cross-member checks happen in lx_ensemble_new: a context beyond a member's seq_len. */
    TestMembers ms;
    test_members_open(&ms, 2, V, 1);
    LxModel *models[2] = {&ms.models[0], &ms.models[1]};
    LxEnsembleParams p = lx_ensemble_defaults();
    p.n_ctx = 65;
    LxEnsemble *e = (LxEnsemble *)1;
    assert_int_equal(lx_ensemble_new(models, 2, NULL, 0, &p, &e, &err), LX_ERR_ARGUMENT);
    assert_null(e);
    assert_non_null(strstr(err.message, "64"));
    assert_int_equal(lx_models_context(models, 2), 64);
    p.n_ctx = 0;
    double bad[2] = {1, -1};
    p.weights = bad;
    assert_int_equal(lx_ensemble_new(models, 2, NULL, 0, &p, &e, &err), LX_ERR_ARGUMENT);
    p.weights = NULL;
    assert_int_equal(lx_ensemble_new(models, 2, NULL, 0, &p, &e, &err), LX_OK);
    assert_int_equal(lx_generate(e, "a", NULL, NULL, NULL, NULL, &err), LX_ERR_ARGUMENT); /* no tokenizer */
    int prompt[1] = {LX_TOKEN_BOS};
    LxGenerateStats st;
    assert_int_equal(lx_generate_tokens(e, prompt, 1, NULL, NULL, NULL, &st, &err), LX_OK);
    lx_ensemble_free(e);
    test_members_close(&ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_and_events),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_other_stops),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_public_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
