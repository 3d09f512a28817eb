/* test_tokenizer.c: the tokenizer module: loading (and refusing corrupt files), encoding as
 * llama2.c does, decoding, and comparing vocabularies.
 *
 * Tiny vocabularies are built in memory here, so most tests run without the real models; the
 * real tokenizers (tokenizer.bin, tok512.bin, tok105.bin under $LLAMIX_MODELS) are used when
 * present and the tests that need them are skipped otherwise. The fast encoder is checked
 * against ref_encode() below, a plain transcription of llama2.c's quadratic procedure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "internal.h"

/* ------------------------------------------------------------------ building tokenizer files */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_u32(Buf *b, uint32_t v)
{
    unsigned char x[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    buf_put(b, x, 4);
}

static void buf_entry(Buf *b, float score, const char *piece, int len)
{
    uint32_t u;
    memcpy(&u, &score, 4);
    buf_u32(b, u);
    buf_u32(b, (uint32_t)len);
    buf_put(b, piece, len > 0 ? (size_t)len : 0);
}

typedef struct {
    const char *piece;
    float score;
} Piece;

/* A vocabulary laid out like llama2.c's: ids 0..2 "<unk>", "\n<s>\n", "\n</s>\n"; with_bytes
 * adds "<0x00>".."<0xFF>" at 3..258; then extra[] (ids from tiny_base(with_bytes)). */
static int tiny_base(int with_bytes) { return with_bytes ? 259 : 3; }

static Tokenizer *tiny_vocab(const Piece *extra, int n_extra, int with_bytes)
{
    Buf b = {0};
    buf_u32(&b, 16);
    buf_entry(&b, 0, "<unk>", 5);
    buf_entry(&b, 0, "\n<s>\n", 5);
    buf_entry(&b, 0, "\n</s>\n", 6);
    if (with_bytes) {
        for (int i = 0; i < 256; i++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", i);
            buf_entry(&b, 0, s, 6);
        }
    }
    for (int i = 0; i < n_extra; i++)
        buf_entry(&b, extra[i].score, extra[i].piece, (int)strlen(extra[i].piece));
    LxError err[1] = {{0}};
    Tokenizer *t = tokenizer_parse(b.p, b.n, tiny_base(with_bytes) + n_extra, "tiny", err);
    if (!t)
        fail_msg("tiny vocabulary: %s", err->message);
    free(b.p);
    return t;
}

/* ------------------------------------------------------------------ reference encoder */

/* llama2.c's encode(), written plainly: lookups by binary search over the pieces sorted by
 * bytes, and after the characters, a full rescan of all pairs for each merge. The one change:
 * byte fallback must find "<0xXX>" at byte + 3, or the text is refused (-1). */
typedef struct {
    const Tokenizer *t;
    int *sorted; /* ids sorted by piece */
} Ref;

static const Tokenizer *cmp_tok;

static int cmp_bytes(const char *a, int la, const char *b, int lb)
{
    int c = memcmp(a, b, (size_t)(la < lb ? la : lb));
    return c ? c : (la > lb) - (la < lb);
}

static int cmp_ids(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    int c = cmp_bytes(tokenizer_piece(cmp_tok, a), tokenizer_piece_length(cmp_tok, a),
                      tokenizer_piece(cmp_tok, b), tokenizer_piece_length(cmp_tok, b));
    return c ? c : a - b;
}

static Ref ref_make(const Tokenizer *t)
{
    int v = tokenizer_vocab_size(t);
    Ref r = {t, malloc((size_t)v * sizeof(int))};
    assert_non_null(r.sorted);
    for (int i = 0; i < v; i++)
        r.sorted[i] = i;
    cmp_tok = t;
    qsort(r.sorted, (size_t)v, sizeof(int), cmp_ids);
    return r;
}

static int ref_lookup(const Ref *r, const char *s, int len)
{
    int lo = 0, hi = tokenizer_vocab_size(r->t) - 1, found = -1;
    while (lo <= hi) { /* the first (lowest id) match */
        int mid = (lo + hi) / 2, id = r->sorted[mid];
        int c = cmp_bytes(tokenizer_piece(r->t, id), tokenizer_piece_length(r->t, id), s, len);
        if (c >= 0) {
            if (c == 0)
                found = id;
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    return found;
}

static int ref_encode(const Ref *r, const char *text, int bos, int eos, int *tokens)
{
    const Tokenizer *t = r->t;
    int n = 0;
    size_t len = strlen(text);
    if (bos)
        tokens[n++] = TOKEN_BOS;
    int space = ref_lookup(r, " ", 1);
    if (len > 0 && space >= 0)
        tokens[n++] = space;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && j - i < 4 && ((unsigned char)text[j] & 0xC0) == 0x80)
            j++;
        int id = ref_lookup(r, text + i, (int)(j - i));
        if (id >= 0) {
            tokens[n++] = id;
        } else {
            for (size_t k = i; k < j; k++) {
                int b = (unsigned char)text[k];
                char want[8];
                snprintf(want, sizeof want, "<0x%02X>", b);
                const char *p = tokenizer_piece(t, b + 3);
                if (!p || strcmp(p, want) != 0)
                    return -1;
                tokens[n++] = b + 3;
            }
        }
        i = j;
    }
    char *buf = malloc(2 * 65536 + 1);
    assert_non_null(buf);
    for (;;) {
        float best = -1e10f;
        int best_i = -1, best_id = -1;
        for (int i = 0; i + 1 < n; i++) {
            int la = tokenizer_piece_length(t, tokens[i]), lb = tokenizer_piece_length(t, tokens[i + 1]);
            memcpy(buf, tokenizer_piece(t, tokens[i]), (size_t)la);
            memcpy(buf + la, tokenizer_piece(t, tokens[i + 1]), (size_t)lb);
            int id = ref_lookup(r, buf, la + lb);
            if (id >= 0 && tokenizer_score(t, id) > best) {
                best = tokenizer_score(t, id);
                best_i = i;
                best_id = id;
            }
        }
        if (best_i < 0)
            break;
        tokens[best_i] = best_id;
        memmove(tokens + best_i + 1, tokens + best_i + 2, (size_t)(n - best_i - 2) * sizeof(int));
        n--;
    }
    free(buf);
    if (eos)
        tokens[n++] = TOKEN_EOS;
    return n;
}

/* ------------------------------------------------------------------ helpers */

/* Encode and fail the test on error; returns the count. tokens needs strlen(text) + 3 room. */
static int enc(const Tokenizer *t, const char *text, int bos, int eos, int *tokens)
{
    LxError err[1] = {{0}};
    int n = -1;
    if (tokenizer_encode(t, text, bos, eos, tokens, (int)strlen(text) + 3, &n, err) != 0)
        fail_msg("encode \"%s\": %s", text, err->message);
    return n;
}

static void expect_ids(const Tokenizer *t, const char *text, int bos, int eos, const int *want, int n_want)
{
    int *got = malloc((strlen(text) + 3) * sizeof(int));
    assert_non_null(got);
    int n = enc(t, text, bos, eos, got);
    int same = n == n_want && memcmp(got, want, (size_t)n * sizeof(int)) == 0;
    if (!same) {
        char line[1024];
        int k = 0;
        for (int i = 0; i < n && k < 900; i++)
            k += snprintf(line + k, sizeof line - (size_t)k, " %d", got[i]);
        line[k] = '\0';
        free(got);
        fail_msg("\"%s\" encoded to%s (%d ids, expected %d)", text, line, n, n_want);
    }
    free(got);
}

#define EXPECT_IDS(t, text, bos, eos, ...)                                                     \
    do {                                                                                      \
        const int want_[] = {__VA_ARGS__};                                                    \
        expect_ids(t, text, bos, eos, want_, (int)(sizeof want_ / sizeof want_[0]));          \
    } while (0)

/* Encoding must fail with a message containing each of the given phrases. */
static void expect_encode_error(const Tokenizer *t, const char *text, const char *p1, const char *p2)
{
    LxError err[1] = {{0}};
    int tokens[64], n = 123;
    assert_true(strlen(text) + 3 <= 64);
    assert_int_not_equal(tokenizer_encode(t, text, 1, 0, tokens, 64, &n, err), 0);
    assert_int_equal(n, 0);
    if (!strstr(err->message, p1) || (p2 && !strstr(err->message, p2)))
        fail_msg("encode error \"%s\" lacks \"%s\" / \"%s\"", err->message, p1, p2 ? p2 : "");
}

/* Concatenate decode(prev, id) over ids[from..n). */
static char *decode_all(const Tokenizer *t, const int *ids, int n, int from, int first_prev)
{
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = from; i < n; i++) {
        const char *p = tokenizer_decode(t, i > from ? ids[i - 1] : first_prev, ids[i]);
        size_t l = strlen(p);
        if (len + l + 1 > cap) {
            cap = 2 * (len + l + 1);
            s = realloc(s, cap);
            assert_non_null(s);
        }
        memcpy(s + len, p, l);
        len += l;
    }
    s[len] = '\0';
    return s;
}

static Tokenizer *open_real(const char *name, int vocab_size)
{
    const char *path = test_real_model(name);
    if (!path)
        return NULL;
    LxError err[1] = {{0}};
    Tokenizer *t = tokenizer_open(path, vocab_size, err);
    if (!t)
        fail_msg("%s", err->message);
    return t;
}

/* xorshift64*: the tests' own seeded generator. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Random valid UTF-8 of n_chars characters: mostly ASCII words, some Latin-1, Greek, CJK,
 * emoji and arbitrary code points. No control characters but \t \n \r, and no '<' (so that no
 * text spells a byte piece "<0xXX>", which llama2.c would merge into that byte). */
static char *random_utf8(uint64_t *rng, int n_chars)
{
    static const char ascii[] = "abcdefghijklmnopqrstuvwxyz     ETAOIN.,!?'\"-()0123456789\n\t\r";
    char *s = malloc((size_t)n_chars * 4 + 1);
    assert_non_null(s);
    size_t k = 0;
    for (int i = 0; i < n_chars; i++) {
        uint64_t r = rng_next(rng) % 100;
        uint32_t cp;
        if (r < 70)
            cp = (unsigned char)ascii[rng_next(rng) % (sizeof ascii - 1)];
        else if (r < 78)
            cp = 0xA0 + (uint32_t)(rng_next(rng) % 0x60);
        else if (r < 84)
            cp = 0x391 + (uint32_t)(rng_next(rng) % 0x30);
        else if (r < 90)
            cp = 0x4E00 + (uint32_t)(rng_next(rng) % 0x5000);
        else if (r < 95)
            cp = 0x1F600 + (uint32_t)(rng_next(rng) % 0x50);
        else {
            do
                cp = 0x80 + (uint32_t)(rng_next(rng) % (0x110000 - 0x80));
            while (cp >= 0xD800 && cp <= 0xDFFF);
        }
        k += put_utf8(s + k, cp);
    }
    s[k] = '\0';
    return s;
}

/* The round trip, for a vocabulary that can represent every character of text:
 *   with BOS:    the ids match ref_encode, and decode(ids[i-1], ids[i]) over i >= 1
 *                concatenates to text exactly (the dummy prefix's space is dropped after BOS);
 *   without BOS: the same ids minus the BOS, and decoding them (first prev 0, not BOS) gives
 *                " " + text (the dummy prefix is kept).
 * (Holds for texts without control characters other than whitespace, which decode to "".) */
static void check_round_trip(const Tokenizer *t, const Ref *r, const char *text)
{
    size_t len = strlen(text);
    int *ids = malloc((len + 3) * sizeof(int)), *want = malloc((len + 3) * sizeof(int));
    assert_non_null(ids);
    assert_non_null(want);
    int n = enc(t, text, 1, 0, ids);
    if (r) {
        int n_want = ref_encode(r, text, 1, 0, want);
        assert_int_equal(n, n_want);
        assert_memory_equal(ids, want, (size_t)n * sizeof(int));
    }
    for (int i = 0; i < n; i++)
        assert_true(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t));
    char *back = decode_all(t, ids, n, 1, TOKEN_BOS);
    assert_string_equal(back, text);
    free(back);

    int n2 = enc(t, text, 0, 0, want);
    assert_int_equal(n2, n - 1);
    assert_memory_equal(want, ids + 1, (size_t)n2 * sizeof(int));
    back = decode_all(t, want, n2, 0, 0);
    if (len > 0) {
        assert_true(back[0] == ' ');
        assert_string_equal(back + 1, text);
    } else {
        assert_string_equal(back, "");
    }
    free(back);
    free(ids);
    free(want);
}

/* ------------------------------------------------------------------ real tokenizers */

static void test_llama2_examples(void **state)
{
    (void)state;
    Tokenizer *t = open_real("tokenizer.bin", 32000);
    if (!t)
        skip();
    assert_int_equal(tokenizer_vocab_size(t), 32000);
    assert_string_equal(tokenizer_piece(t, 29871), " ");
    EXPECT_IDS(t, "I believe the meaning of life is", 1, 0, 1, 306, 4658, 278, 6593, 310, 2834, 338);
    EXPECT_IDS(t, "Simply put, the theory of relativity states that ", 1, 0, 1, 3439, 17632, 1925,
               29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871);
    EXPECT_IDS(t, "", 1, 0, 1);
    EXPECT_IDS(t, "I believe", 0, 1, 306, 4658, 2);
    /* Byte fallback for the emoji (F0 9F 98 80 -> ids 243 162 155 131); \x01 is a byte too. */
    EXPECT_IDS(t, "I ate \xF0\x9F\x98\x80 and \x01 ok", 1, 0, 1, 306, 263, 371, 29871, 243, 162,
               155, 131, 322, 29871, 4, 3431);
    int ids[64];
    int n = enc(t, "I believe the meaning of life is", 1, 0, ids);
    char *back = decode_all(t, ids, n, 1, TOKEN_BOS);
    assert_string_equal(back, "I believe the meaning of life is");
    free(back);
    tokenizer_free(t);
}

static void test_tok512(void **state)
{
    (void)state;
    Tokenizer *t = open_real("tok512.bin", 512);
    if (!t)
        skip();
    assert_int_equal(tokenizer_vocab_size(t), 512);
    assert_string_equal(tokenizer_piece(t, 0), "<unk>");
    assert_string_equal(tokenizer_piece(t, 1), "\n<s>\n");
    assert_string_equal(tokenizer_piece(t, 2), "\n</s>\n");
    assert_string_equal(tokenizer_piece(t, 3), "<0x00>");
    assert_string_equal(tokenizer_piece(t, 258), "<0xFF>");
    assert_string_equal(tokenizer_piece(t, 410), " ");
    assert_int_equal(tokenizer_piece_length(t, 410), 1);
    assert_true(tokenizer_score(t, 410) == -151.0f);
    assert_null(tokenizer_piece(t, 512));
    assert_int_equal(tokenizer_piece_length(t, -1), -1);
    /* Expected ids from an independent transcription of run.c's encode(). */
    EXPECT_IDS(t, "Once upon a time, there was a little girl named Lily.", 1, 0, 1, 403, 407, 261,
               378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426);
    EXPECT_IDS(t, "Hello\nworld", 1, 0, 1, 346, 306, 414, 13, 424, 304, 341);
    EXPECT_IDS(t, "a\xE2\x82\xAC" "b \xC3\xA9", 1, 0, 1, 261, 503, 430, 410, 485);
    /* Pieces in the "<0xXX>" form decode to the byte; a lone control byte to nothing. */
    assert_string_equal(tokenizer_decode(t, 5, 13), "\n");
    assert_string_equal(tokenizer_decode(t, 5, 3 + 0x41), "A");
    assert_string_equal(tokenizer_decode(t, 5, 3 + 0x01), "");
    tokenizer_free(t);
}

static void test_tok105_without_byte_tokens(void **state)
{
    (void)state;
    Tokenizer *t = open_real("tok105.bin", 105);
    if (!t)
        skip();
    /* Id 3 is " ", not "<0x00>": run.c's byte fallback (byte + 3) would give wrong ids here. */
    assert_string_equal(tokenizer_piece(t, 3), " ");
    EXPECT_IDS(t, "once upon a time", 1, 0, 1, 3, 7, 9, 22, 4, 3, 18, 20, 7, 9, 3, 5, 3, 6, 10,
               16, 4);
    EXPECT_IDS(t, "the cat sat.", 1, 0, 1, 3, 6, 8, 4, 3, 22, 5, 6, 3, 12, 5, 6, 19);
    /* é and € are pieces of this vocabulary; ü and 日 are not. */
    EXPECT_IDS(t, "\xC3\xA9\xE2\x82\xAC", 0, 0, 3, 78, 96);
    expect_encode_error(t, "\xC3\xBC", "U+00FC at byte offset 0", "no byte tokens");
    expect_encode_error(t, "ab \xE6\x97\xA5", "U+65E5 at byte offset 3", "not in the vocabulary");
    expect_encode_error(t, "\xF0\x9F\x98\x80", "U+1F600", NULL);
    expect_encode_error(t, "a\x80", "invalid UTF-8 at byte offset 0 (bytes 61 80)", NULL);
    expect_encode_error(t, "\x80" "ab", "invalid UTF-8 at byte offset 0 (bytes 80)", NULL);
    expect_encode_error(t, "a\x01", "U+0001 at byte offset 1", NULL);

    /* Random lowercase text: every id inside the vocabulary, same as the reference, decodes back. */
    Ref r = ref_make(t);
    uint64_t rng = 105;
    for (int k = 0; k < 200; k++) {
        char text[64];
        int len = (int)(rng_next(&rng) % 60);
        for (int i = 0; i < len; i++) {
            int c = (int)(rng_next(&rng) % 27);
            text[i] = c == 26 ? ' ' : (char)('a' + c);
        }
        text[len] = '\0';
        check_round_trip(t, &r, text);
    }
    free(r.sorted);
    tokenizer_free(t);
}

static void test_real_wrong_vocab_size(void **state)
{
    (void)state;
    const char *p = test_real_model("tok512.bin");
    if (!p)
        skip();
    char path[4096];
    LxError err[1] = {{0}};
    snprintf(path, sizeof path, "%s", p);
    assert_null(tokenizer_open(path, 32000, err));
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, "has 512 entries but the model's vocabulary has 32000"));
    assert_null(tokenizer_open(path, 511, err));
    assert_non_null(strstr(err->message, "has 512 entries but the model's vocabulary has 511"));
    assert_null(tokenizer_open(path, 105, err));
    assert_non_null(strstr(err->message, "has 512 entries but the model's vocabulary has 105"));
}

/* ------------------------------------------------------------------ merges on tiny vocabularies */

static void test_merges(void **state)
{
    (void)state;
    /* ids: 3 " ", 4 a, 5 b, 6 c, 7 ab, 8 bc, 9 abc */
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"c", -10},
                       {"ab", -2}, {"bc", -1}, {"abc", -3}};
    Tokenizer *t = tiny_vocab(v, 7, 0);
    /* "bc" (-1) beats "ab" (-2): a|bc, then "abc" (-3) is the only pair left. */
    EXPECT_IDS(t, "abc", 1, 0, 1, 3, 9);
    EXPECT_IDS(t, "abc", 0, 1, 3, 9, 2);
    EXPECT_IDS(t, "ab", 1, 1, 1, 3, 7, 2);
    EXPECT_IDS(t, "bcab", 1, 0, 1, 3, 8, 7);
    EXPECT_IDS(t, "cab", 1, 0, 1, 3, 6, 7);
    /* a b c b c: bc (leftmost of the two) -> a bc b c; then b c -> a bc bc; then abc bc. */
    EXPECT_IDS(t, "abcbc", 1, 0, 1, 3, 9, 8);
    EXPECT_IDS(t, "", 1, 1, 1, 2);
    tokenizer_free(t);

    /* The dummy prefix is a symbol like any other and merges: " a" is one piece. */
    const Piece w[] = {{" ", -50}, {"a", -10}, {"b", -10}, {" a", -1}, {" ab", -2}};
    t = tiny_vocab(w, 5, 0);
    EXPECT_IDS(t, "a", 1, 0, 1, 6);
    EXPECT_IDS(t, "ab", 1, 0, 1, 7);
    EXPECT_IDS(t, "ba", 1, 0, 1, 3, 5, 4);
    tokenizer_free(t);

    /* No " " in the vocabulary: no dummy prefix (run.c would emit id -1). */
    const Piece x[] = {{"a", -10}, {"b", -10}, {"ab", -1}};
    t = tiny_vocab(x, 3, 0);
    EXPECT_IDS(t, "ab", 1, 0, 1, 5);
    EXPECT_IDS(t, "ba", 0, 0, 4, 3);
    tokenizer_free(t);
}

static void test_merge_ties(void **state)
{
    (void)state;
    /* ids: 3 " ", 4 a, 5 b, 6 aa, 7 ab, 8 ba, all merges scoring -1 */
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"aa", -1}, {"ab", -1}, {"ba", -1}};
    Tokenizer *t = tiny_vocab(v, 6, 0);
    EXPECT_IDS(t, "aaa", 1, 0, 1, 3, 6, 4);    /* aa|a, not a|aa */
    EXPECT_IDS(t, "aba", 1, 0, 1, 3, 7, 4);    /* ab|a, not a|ba */
    EXPECT_IDS(t, "baa", 1, 0, 1, 3, 8, 4);    /* ba|a, not b|aa */
    EXPECT_IDS(t, "aaaa", 1, 0, 1, 3, 6, 6);
    EXPECT_IDS(t, "babab", 1, 0, 1, 3, 8, 8, 5);
    tokenizer_free(t);

    /* A better score to the right wins over leftmost. */
    const Piece w[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"aa", -1}, {"ab", -0.5f}};
    t = tiny_vocab(w, 5, 0);
    EXPECT_IDS(t, "aab", 1, 0, 1, 3, 4, 7);
    tokenizer_free(t);

    /* Merges win by score, not by order of creation: after "ab" (-1) forms, "abc" (-5) loses
     * to the later pair "cd" (-2). */
    const Piece y[] = {{" ", -50}, {"a", -9}, {"b", -9}, {"c", -9}, {"d", -9},
                       {"ab", -1}, {"cd", -2}, {"abc", -5}, {"abcd", -3}};
    t = tiny_vocab(y, 9, 0);
    EXPECT_IDS(t, "abcd", 1, 0, 1, 3, 11);
    tokenizer_free(t);
}

static void test_merge_score_floor(void **state)
{
    (void)state;
    /* run.c only merges a pair whose piece scores above -1e10 (its starting "best score"). */
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"c", -10},
                       {"ab", -2e10f}, {"bc", -1e10f}, {"ca", -9e9f}};
    Tokenizer *t = tiny_vocab(v, 7, 0);
    EXPECT_IDS(t, "ab", 1, 0, 1, 3, 4, 5);
    EXPECT_IDS(t, "bc", 1, 0, 1, 3, 5, 6);
    EXPECT_IDS(t, "ca", 1, 0, 1, 3, 9);
    tokenizer_free(t);
}

static void test_duplicates_and_bos(void **state)
{
    (void)state;
    /* Duplicate pieces are allowed; the lowest id is the one encoding uses.
     * ids: 3 " ", 4 a, 5 b, 6 ab, 7 " " again, 8 ab again (better score, but the same piece) */
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"ab", -2}, {" ", -1}, {"ab", -1}};
    Tokenizer *t = tiny_vocab(v, 6, 0);
    EXPECT_IDS(t, "ab", 1, 0, 1, 3, 6);
    EXPECT_IDS(t, "bab", 0, 0, 3, 5, 6);
    tokenizer_free(t);

    /* BOS stays out of merges even if "\n<s>\n" + " " were a piece (run.c would merge it). */
    const Piece w[] = {{" ", -50}, {"a", -10}, {"\n<s>\n ", 0}};
    t = tiny_vocab(w, 3, 0);
    EXPECT_IDS(t, "a", 1, 0, 1, 3, 4);
    tokenizer_free(t);
}

static void test_byte_fallback(void **state)
{
    (void)state;
    /* ids: 259 " ", 260 a, 261 b, 262 "ä" */
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"\xC3\xA4", -10}};
    Tokenizer *t = tiny_vocab(v, 4, 1);
    /* € (E2 82 AC) is not a piece: three byte tokens, id byte + 3. */
    EXPECT_IDS(t, "a\xE2\x82\xAC" "b", 1, 0, 1, 259, 260, 3 + 0xE2, 3 + 0x82, 3 + 0xAC, 261);
    EXPECT_IDS(t, "\xC3\xA4", 1, 0, 1, 259, 262);
    EXPECT_IDS(t, "\xF0\x9F\x98\x80", 0, 0, 259, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80);
    /* Invalid UTF-8 goes byte by byte: a stray continuation byte, a cut-off character, a lead
     * byte before ASCII, and a fifth continuation byte after a full 4-byte group. */
    EXPECT_IDS(t, "\x80", 0, 0, 259, 3 + 0x80);
    EXPECT_IDS(t, "\xE2\x82", 0, 0, 259, 3 + 0xE2, 3 + 0x82);
    EXPECT_IDS(t, "\xC3" "a", 0, 0, 259, 3 + 0xC3, 260);
    EXPECT_IDS(t, "\xF0\x9F\x98\x80\x80", 0, 0, 259, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80, 3 + 0x80);
    EXPECT_IDS(t, "\xFF\xFE", 0, 0, 259, 3 + 0xFF, 3 + 0xFE);
    /* And all of that decodes back to the same bytes. */
    const char *texts[] = {"a\xE2\x82\xAC" "b", "\xF0\x9F\x98\x80\x80", "\xC3" "a\xFF"};
    for (int i = 0; i < 3; i++) {
        int ids[32];
        int n = enc(t, texts[i], 1, 0, ids);
        char *back = decode_all(t, ids, n, 1, TOKEN_BOS);
        assert_string_equal(back, texts[i]);
        free(back);
    }
    tokenizer_free(t);
}

static void test_no_byte_tokens(void **state)
{
    (void)state;
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}};
    Tokenizer *t = tiny_vocab(v, 3, 0);
    EXPECT_IDS(t, "ab", 1, 0, 1, 3, 4, 5);
    expect_encode_error(t, "a\xE2\x82\xAC", "cannot encode character U+20AC at byte offset 1",
                        "not in the vocabulary and it has no byte tokens");
    expect_encode_error(t, "ab\xC3\xA9", "U+00E9 at byte offset 2", NULL);
    expect_encode_error(t, "c", "U+0063 at byte offset 0", NULL);
    expect_encode_error(t, "a\xE2\x82", "invalid UTF-8 at byte offset 1 (bytes E2 82)", NULL);
    expect_encode_error(t, "\xED\xA0\x80", "invalid UTF-8 at byte offset 0 (bytes ED A0 80)", NULL); /* a surrogate */
    expect_encode_error(t, "\xC0\x80", "invalid UTF-8", NULL);     /* overlong */
    tokenizer_free(t);

    /* Byte tokens at 3..258 except that id 3 + 0xE2 is something else: € must not become the
     * wrong id, while other bytes still fall back. */
    Buf b = {0};
    buf_u32(&b, 8);
    buf_entry(&b, 0, "<unk>", 5);
    buf_entry(&b, 0, "\n<s>\n", 5);
    buf_entry(&b, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, i == 0xE2 ? "xE2" : "<0x%02X>", i);
        buf_entry(&b, 0, s, (int)strlen(s));
    }
    buf_entry(&b, -1, " ", 1);
    LxError err[1] = {{0}};
    t = tokenizer_parse(b.p, b.n, 260, "holes", err);
    free(b.p);
    assert_non_null(t);
    expect_encode_error(t, "\xE2\x82\xAC", "U+20AC at byte offset 0", "no byte token for 0xE2");
    EXPECT_IDS(t, "\xC3\xA4", 0, 0, 259, 3 + 0xC3, 3 + 0xA4);
    tokenizer_free(t);
}

static void test_max_tokens(void **state)
{
    (void)state;
    const Piece v[] = {{" ", -50}, {"a", -10}, {"b", -10}, {"c", -10}};
    Tokenizer *t = tiny_vocab(v, 4, 0);
    int ids[8] = {0}, n = -1;
    LxError err[1] = {{0}};
    /* BOS, " ", a, b, c, EOS: 6 ids. */
    assert_int_not_equal(tokenizer_encode(t, "abc", 1, 1, ids, 5, &n, err), 0);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err->message, "6 tokens needed"));
    assert_int_equal(tokenizer_encode(t, "abc", 1, 1, ids, 6, &n, err), 0);
    assert_int_equal(n, 6);
    assert_int_equal(ids[5], TOKEN_EOS);
    assert_int_not_equal(tokenizer_encode(t, "", 1, 0, ids, 0, &n, err), 0);
    assert_int_equal(tokenizer_encode(t, "", 0, 0, ids, 0, &n, err), 0);
    assert_int_equal(n, 0);
    tokenizer_free(t);
}

/* ------------------------------------------------------------------ decoding */

static void test_decode(void **state)
{
    (void)state;
    /* ids: 259 " ", 260 a, 261 " a", 262 "  ", 263 "\x01" */
    const Piece v[] = {{" ", -50}, {"a", -10}, {" a", -1}, {"  ", -1}, {"\x01", -1}};
    Tokenizer *t = tiny_vocab(v, 5, 1);
    /* The space of the piece after BOS is the dummy prefix: dropped there, kept elsewhere. */
    assert_string_equal(tokenizer_decode(t, TOKEN_BOS, 261), "a");
    assert_string_equal(tokenizer_decode(t, 260, 261), " a");
    assert_string_equal(tokenizer_decode(t, TOKEN_BOS, 259), "");
    assert_string_equal(tokenizer_decode(t, TOKEN_BOS, 262), " ");
    assert_string_equal(tokenizer_decode(t, TOKEN_BOS, 260), "a");
    /* Byte pieces become their byte. */
    assert_string_equal(tokenizer_decode(t, 260, 3 + 'A'), "A");
    assert_string_equal(tokenizer_decode(t, TOKEN_BOS, 3 + ' '), " ");
    assert_string_equal(tokenizer_decode(t, 260, 3 + '\n'), "\n");
    assert_string_equal(tokenizer_decode(t, 260, 3 + '\t'), "\t");
    assert_string_equal(tokenizer_decode(t, 260, 3 + '\r'), "\r");
    assert_string_equal(tokenizer_decode(t, 260, 3 + '\v'), "\v");
    assert_string_equal(tokenizer_decode(t, 260, 3 + '\f'), "\f");
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0xE2), "\xE2"); /* part of a character */
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0xFF), "\xFF");
    /* Lone control bytes other than whitespace decode to nothing. */
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0x00), "");
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0x01), "");
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0x1B), "");
    assert_string_equal(tokenizer_decode(t, 260, 3 + 0x7F), "");
    assert_string_equal(tokenizer_decode(t, 260, 263), "");
    /* Control pieces are text like any other; ids out of range give "". */
    assert_string_equal(tokenizer_decode(t, 260, TOKEN_EOS), "\n</s>\n");
    assert_string_equal(tokenizer_decode(t, 260, -1), "");
    assert_string_equal(tokenizer_decode(t, 260, 264), "");
    /* The result stays put while the tokenizer lives. */
    const char *p = tokenizer_decode(t, 260, 3 + 'Z');
    for (int i = 0; i < 300; i++)
        tokenizer_decode(t, i, i);
    assert_string_equal(p, "Z");
    tokenizer_free(t);
}

/* ------------------------------------------------------------------ corrupt files */

/* A valid 4-entry file, then the variations on it. */
enum { C_EMPTY, C_SHORT_HEADER, C_MTL_ZERO, C_MTL_ABSURD, C_NEG_LENGTH, C_MIN_LENGTH,
       C_HUGE_LENGTH, C_ZERO_LENGTH, C_LONGER_THAN_MTL, C_PAST_END, C_TRUNCATED_ENTRY,
       C_FEWER, C_MORE, C_TRAILING, C_TRAILING_HEADER, C_NAN, C_INF, C_NEG_INF, C_NUL, C_VOCAB_ZERO,
       C_VOCAB_NEG, C_VOCAB_HUGE, N_CASES };

static void corrupt_case(int k, Buf *b, int *vocab_size, const char **expect)
{
    *vocab_size = 4;
    b->n = 0;
    const char *pieces[4] = {"<unk>", "<s>", "</s>", "abc"};
    float scores[4] = {0, 0, 0, -1};
    int lengths[4] = {5, 3, 4, 3};
    uint32_t mtl = 5;
    switch (k) {
    case C_EMPTY: *expect = "is empty"; return;
    case C_SHORT_HEADER: buf_put(b, "\5\0\0", 3); *expect = "too short for the header"; return;
    case C_MTL_ZERO: mtl = 0; *expect = "max_token_length is 0"; break;
    case C_MTL_ABSURD: mtl = 0xFFFFFFFFu; *expect = "max_token_length 4294967295 is absurd"; break;
    case C_NEG_LENGTH: lengths[3] = -5; *expect = "entry 3: piece length -5"; break;
    case C_MIN_LENGTH: lengths[2] = INT32_MIN; *expect = "entry 2: piece length -2147483648"; break;
    case C_HUGE_LENGTH: mtl = 65536; lengths[3] = INT32_MAX;
        *expect = "entry 3: piece length 2147483647 exceeds max_token_length 65536"; break;
    case C_ZERO_LENGTH: lengths[1] = 0; *expect = "entry 1: piece length 0"; break;
    case C_LONGER_THAN_MTL: mtl = 4; *expect = "entry 0: piece length 5 exceeds max_token_length 4"; break;
    case C_PAST_END: mtl = 65536; lengths[3] = 60000; *expect = "entry 3: piece of 60000 bytes runs past the end"; break;
    case C_TRUNCATED_ENTRY: *expect = "truncated in entry 3 (of 4)"; break;
    case C_FEWER: *vocab_size = 5; *expect = "has 4 entries but the model's vocabulary has 5"; break;
    case C_MORE: *vocab_size = 3; *expect = "has 4 entries but the model's vocabulary has 3"; break;
    case C_TRAILING: *expect = "3 trailing bytes after the 4 entries"; break;
    case C_TRAILING_HEADER: *expect = "8 trailing bytes after the 4 entries"; break;
    case C_NAN: scores[2] = NAN; *expect = "entry 2: score is NaN"; break;
    case C_INF: scores[3] = INFINITY; *expect = "entry 3: score is infinite"; break;
    case C_NEG_INF: scores[0] = -INFINITY; *expect = "entry 0: score is infinite"; break;
    case C_NUL: pieces[3] = "a\0c"; *expect = "entry 3: piece contains a NUL byte"; break;
    case C_VOCAB_ZERO: *vocab_size = 2; *expect = "vocab_size 2 is too small"; break;
    case C_VOCAB_NEG: *vocab_size = -1; *expect = "vocab_size -1 is too small"; break;
    case C_VOCAB_HUGE: *vocab_size = INT_MAX; *expect = "has 4 entries but the model's vocabulary has 2147483647"; break;
    }
    buf_u32(b, mtl);
    for (int i = 0; i < 4; i++) {
        if (k == C_TRUNCATED_ENTRY && i == 3) {
            buf_put(b, "\0\0\0\0\3", 5);
            break;
        }
        uint32_t u;
        memcpy(&u, &scores[i], 4);
        buf_u32(b, u);
        buf_u32(b, (uint32_t)lengths[i]);
        if (lengths[i] > 0 && lengths[i] <= 5)
            buf_put(b, pieces[i], (size_t)lengths[i]);
        else if (k == C_PAST_END && i == 3)
            buf_put(b, "abc", 3);
    }
    if (k == C_TRAILING)
        buf_put(b, "xyz", 3);
    if (k == C_TRAILING_HEADER) /* looks like the start of an entry, of length 0 */
        buf_put(b, "\0\0\0\0\0\0\0\0", 8);
}

static void test_corrupt_files(void **state)
{
    (void)state;
    Buf b = {malloc(64), 0, 64};
    assert_non_null(b.p);
    for (int k = 0; k < N_CASES; k++) {
        int vocab_size;
        const char *expect = NULL;
        corrupt_case(k, &b, &vocab_size, &expect);
        LxError err[1] = {{0}};
        Tokenizer *t = tokenizer_parse(b.p, b.n, vocab_size, "corrupt.bin", err);
        if (t)
            fail_msg("case %d (%s) was accepted", k, expect);
        if (!strstr(err->message, "corrupt.bin") || !strstr(err->message, expect))
            fail_msg("case %d: message \"%s\" lacks \"%s\"", k, err->message, expect);
        assert_null(strchr(err->message, '\n'));

        /* The same through a file: the message names the path. */
        char path[256];
        test_write_bytes(path, b.p, b.n);
        err->message[0] = '\0';
        t = tokenizer_open(path, vocab_size, err);
        test_remove(path);
        if (t)
            fail_msg("case %d (%s) was accepted from a file", k, expect);
        if (!strstr(err->message, path) || !strstr(err->message, expect))
            fail_msg("case %d: file message \"%s\" lacks the path or \"%s\"", k, err->message, expect);
    }
    /* The unmodified file loads (so the cases above fail for their own reason). */
    corrupt_case(C_TRAILING, &b, &(int){0}, &(const char *){NULL});
    b.n -= 3;
    LxError err[1] = {{0}};
    Tokenizer *t = tokenizer_parse(b.p, b.n, 4, "good.bin", err);
    if (!t)
        fail_msg("%s", err->message);
    assert_string_equal(tokenizer_piece(t, 3), "abc");
    assert_true(tokenizer_score(t, 3) == -1.0f);
    tokenizer_free(t);
    /* Every prefix of it is refused without crashing. */
    for (size_t n = 0; n < b.n; n++)
        assert_null(tokenizer_parse(b.p, n, 4, "prefix.bin", err));
    free(b.p);
}

static void test_open_errors(void **state)
{
    (void)state;
    LxError err[1] = {{0}};
    assert_null(tokenizer_open("/nonexistent-llamix/tok.bin", 512, err));
    assert_non_null(strstr(err->message, "/nonexistent-llamix/tok.bin: cannot open"));
    assert_non_null(strstr(err->message, "No such file"));

    assert_null(tokenizer_open("/tmp", 512, err));
    assert_non_null(strstr(err->message, "/tmp: is a directory"));

    char path[256];
    test_write_bytes(path, "", 0);
    assert_null(tokenizer_open(path, 512, err));
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, "is empty"));

    /* Unreadable: root reads anything, so this part only means something for other users. */
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0), 0);
        assert_null(tokenizer_open(path, 512, err));
        assert_non_null(strstr(err->message, "Permission denied"));
    }
    test_remove(path);
}

/* vocab_size 0: take as many entries as the file holds (for `llamix tokenize` without a model). */
static void test_vocab_size_from_file(void **state)
{
    (void)state;
    Buf b = {0};
    buf_u32(&b, 8);
    const char *pieces[] = {"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", " a"};
    for (int i = 0; i < 7; i++)
        buf_entry(&b, (float)i, pieces[i], (int)strlen(pieces[i]));
    LxError err[1] = {{0}};
    Tokenizer *t = tokenizer_parse(b.p, b.n, 0, "seven", err);
    assert_non_null(t);
    assert_int_equal(tokenizer_vocab_size(t), 7);
    tokenizer_free(t);
    /* a torn last entry is still an error */
    assert_null(tokenizer_parse(b.p, b.n - 1, 0, "seven", err));
    assert_non_null(strstr(err->message, "seven"));
    free(b.p);
}

/* ------------------------------------------------------------------ comparing vocabularies */

static void test_same(void **state)
{
    (void)state;
    const Piece v[] = {{" ", -1}, {"ab", -2}};
    const Piece v2[] = {{" ", -1}, {"ac", -2}};
    const Piece v3[] = {{" ", -1}, {"ab", -3}};
    const Piece v4[] = {{" ", -1}, {"ab", -2}, {"c", -4}};
    Tokenizer *a = tiny_vocab(v, 2, 0), *a2 = tiny_vocab(v, 2, 0);
    Tokenizer *b = tiny_vocab(v2, 2, 0), *c = tiny_vocab(v3, 2, 0), *d = tiny_vocab(v4, 3, 0);
    char why[LX_ERROR_LENGTH] = "";
    assert_int_equal(tokenizer_same(a, a2, why), 1);
    assert_int_equal(tokenizer_same(a, a, NULL), 1);
    assert_int_equal(tokenizer_same(a, b, why), 0);
    assert_string_equal(why, "piece 4 differs ('ab' vs 'ac')");
    assert_int_equal(tokenizer_same(a, c, why), 0);
    assert_non_null(strstr(why, "score of piece 4"));
    assert_non_null(strstr(why, "(-2 vs -3)"));
    assert_int_equal(tokenizer_same(a, d, why), 0);
    assert_string_equal(why, "vocab sizes differ (5 vs 6)");
    assert_int_equal(tokenizer_same(d, a, NULL), 0);
    tokenizer_free(a);
    tokenizer_free(a2);
    tokenizer_free(b);
    tokenizer_free(c);
    tokenizer_free(d);

    /* Control bytes in a piece are escaped so the message stays one line. */
    const Piece n1[] = {{"x\ny", 0}}, n2[] = {{"x\ty", 0}};
    a = tiny_vocab(n1, 1, 0);
    b = tiny_vocab(n2, 1, 0);
    assert_int_equal(tokenizer_same(a, b, why), 0);
    assert_string_equal(why, "piece 3 differs ('x\\ny' vs 'x\\x09y')");
    tokenizer_free(a);
    tokenizer_free(b);

    Tokenizer *t512 = open_real("tok512.bin", 512), *t105 = open_real("tok105.bin", 105);
    if (t512 && t105) {
        assert_int_equal(tokenizer_same(t512, t105, why), 0);
        assert_string_equal(why, "vocab sizes differ (512 vs 105)");
    }
    tokenizer_free(t512);
    tokenizer_free(t105);
    tokenizer_free(NULL);
}

/* ------------------------------------------------------------------ random round trips */

static void round_trips(const Tokenizer *t, uint64_t seed, int count, int max_chars)
{
    Ref r = ref_make(t);
    uint64_t rng = seed;
    check_round_trip(t, &r, "");
    for (int k = 0; k < count; k++) {
        char *text = random_utf8(&rng, (int)(rng_next(&rng) % (uint64_t)max_chars));
        check_round_trip(t, &r, text);
        free(text);
    }
    /* Random bytes, most of them invalid UTF-8 (no control bytes, which decode to ""). */
    for (int k = 0; k < count; k++) {
        char text[64];
        int len = (int)(rng_next(&rng) % 63);
        for (int i = 0; i < len; i++) {
            int c;
            do
                c = (int)(rng_next(&rng) % 256);
            while (c < 0x20 || c == 0x7F || c == '<');
            text[i] = (char)c;
        }
        text[len] = '\0';
        check_round_trip(t, &r, text);
    }
    free(r.sorted);
}

static void test_round_trip_tiny(void **state)
{
    (void)state;
    /* Every ASCII character of random_utf8 plus a few merges; the rest goes through bytes. */
    Piece v[128];
    char singles[128][2];
    int n = 0;
    v[n++] = (Piece){" ", -5};
    for (int c = 'a'; c <= 'z'; c++) {
        singles[c][0] = (char)c;
        singles[c][1] = '\0';
        v[n++] = (Piece){singles[c], -6};
    }
    const char *merges[] = {" t", "he", " a", "in", "er", "an", " the", "on", "at", "en",
                            "ll", "  ", "   ", "ee", "eee", "\xCE\xB1", "\xE4\xB8\x80"};
    for (int i = 0; i < (int)(sizeof merges / sizeof merges[0]); i++)
        v[n++] = (Piece){merges[i], -1 - (float)(i % 4)}; /* repeated scores: ties happen */
    Tokenizer *t = tiny_vocab(v, n, 1);
    round_trips(t, 12345, 300, 80);
    tokenizer_free(t);
}

static void test_round_trip_tok512(void **state)
{
    (void)state;
    Tokenizer *t = open_real("tok512.bin", 512);
    if (!t)
        skip();
    round_trips(t, 512, 300, 80);
    tokenizer_free(t);
}

static void test_round_trip_llama2(void **state)
{
    (void)state;
    Tokenizer *t = open_real("tokenizer.bin", 32000);
    if (!t)
        skip();
    round_trips(t, 32000, 200, 60);
    tokenizer_free(t);
}

/* ------------------------------------------------------------------ long prompts */

/* Prose-like text: words made of common pieces, spaces, newlines, and some non-ASCII. */
static char *long_text(size_t size, uint64_t seed)
{
    static const char *words[] = {"the", "a", "little", "girl", "named", "Lily", "was", "happy",
                                  "and", "she", "liked", "to", "play", "outside", "with", "her",
                                  "dog,", "\xC3\xA9t\xC3\xA9", "\xE2\x82\xAC\x35." /* "\u20ac5." */, "\xE6\x97\xA5",
                                  "\xF0\x9F\x98\x80", "aaaaaaaaaaaa", "\n"};
    char *s = malloc(size + 32);
    assert_non_null(s);
    size_t k = 0;
    uint64_t rng = seed;
    while (k < size) {
        const char *w = words[rng_next(&rng) % (sizeof words / sizeof words[0])];
        size_t l = strlen(w);
        memcpy(s + k, w, l);
        k += l;
        s[k++] = ' ';
    }
    s[k] = '\0';
    return s;
}

static void test_long_prompt(void **state)
{
    (void)state;
    const Piece v[] = {{" ", -5}, {"a", -6}, {"aa", -1}, {"aaaa", -1}, {"aaaaaaaa", -1}};
    Tokenizer *tiny = tiny_vocab(v, 5, 1);
    Tokenizer *real[2] = {open_real("tok512.bin", 512), open_real("tokenizer.bin", 32000)};
    Tokenizer *all[3] = {tiny, real[0], real[1]};

    /* A medium prompt, still cheap for the quadratic reference, must agree with it exactly. */
    char *medium = long_text(1500, 7);
    for (int i = 0; i < 3; i++) {
        if (!all[i])
            continue;
        Ref r = ref_make(all[i]);
        check_round_trip(all[i], &r, medium);
        free(r.sorted);
    }
    free(medium);

    /* 200 KB: only that it finishes and round-trips; the time goes to stderr for information. */
    char *text = long_text(200 * 1024, 8);
    for (int i = 0; i < 3; i++) {
        if (!all[i])
            continue;
        double t0 = now_seconds();
        int *ids = malloc((strlen(text) + 3) * sizeof(int));
        assert_non_null(ids);
        int n = enc(all[i], text, 1, 0, ids);
        double dt = now_seconds() - t0;
        fprintf(stderr, "    encoded %zu bytes into %d tokens (vocab %d) in %.3f s\n", strlen(text),
                n, tokenizer_vocab_size(all[i]), dt);
        assert_true(n > 1 && (size_t)n < strlen(text));
        free(ids);
        check_round_trip(all[i], NULL, text);
    }
    /* Worst case for merging: one character repeated. */
    memset(text, 'a', 200 * 1024);
    text[200 * 1024] = '\0';
    int *ids = malloc((200 * 1024 + 3) * sizeof(int));
    assert_non_null(ids);
    int n = enc(tiny, text, 1, 0, ids);
    assert_int_equal(n, 2 + 200 * 1024 / 8); /* BOS, " ", then "aaaaaaaa" pieces */
    free(ids);
    free(text);
    for (int i = 0; i < 3; i++)
        tokenizer_free(all[i]);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_merges),
        cmocka_unit_test(test_merge_ties),
        cmocka_unit_test(test_merge_score_floor),
        cmocka_unit_test(test_duplicates_and_bos),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_no_byte_tokens),
        cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_vocab_size_from_file),
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_round_trip_tiny),
        cmocka_unit_test(test_long_prompt),
    };
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_llama2_examples),
        cmocka_unit_test(test_tok512),
        cmocka_unit_test(test_tok105_without_byte_tokens),
        cmocka_unit_test(test_real_wrong_vocab_size),
        cmocka_unit_test(test_round_trip_tok512),
        cmocka_unit_test(test_round_trip_llama2),
    };
    TEST_MAIN(own, real);
}
