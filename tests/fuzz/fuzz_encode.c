/* fuzz_encode.c: fuzz target for the BPE encoder (tokenizer_encode) and the decoder.
 *
 * Input: one flags byte, then
 *   flags & 3 == 0: text, encoded with a fixed vocabulary that has the 256 byte tokens
 *                   "<0x00>".."<0xFF>" at ids 3..258 plus letters, UTF-8 characters and merges;
 *   flags & 3 == 1: text, with a fixed character-level vocabulary without byte tokens (so some
 *                   characters cannot be encoded: that must be an error, not a wrong id);
 *   flags & 3 == 2: text, with a vocabulary that has only some byte tokens at their ids;
 *   flags & 3 == 3: uint16 V, uint16 N, N bytes of a tokenizer file (parsed with V entries),
 *                   then the text.
 *   flags & 4: prepend BOS; flags & 8: append EOS.
 * The text is the rest of the input up to its first NUL byte.
 *
 * What must hold, on top of the sanitizers:
 *   - every id is in [0, V), BOS/EOS are where asked, the count is at most strlen + 3;
 *   - the ids are exactly those of a plain re-implementation of llama2.c run.c's encode() below
 *     (rescan every adjacent pair, merge the best score, leftmost on ties), with the differences
 *     tokenizer.c documents: byte fallback only through real "<0xXX>" pieces, else an error; no
 *     dummy prefix without a " " piece; the lowest id wins among equal pieces;
 *   - the encoder refuses max_tokens one short of what it needs, and gives the same ids when it
 *     has exactly enough;
 *   - with a fixed vocabulary and BOS, decoding the ids gives back the text (minus the control
 *     bytes the decoder deliberately drops).
 * Anything else is a crash (abort). */
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected);

/* The plain reference is quadratic: longer texts are only checked for valid ids. */
#define REFERENCE_MAX_TEXT 1024

static void die(const char *what, const char *text)
{
    fprintf(stderr, "fuzz_encode: %s (text of %zu bytes)\n", what, text ? strlen(text) : 0);
    abort();
}

/* ------------------------------------------------------------------ building vocabularies */

typedef struct {
    uint8_t *bytes;
    size_t size, cap;
    int n; /* entries */
} File;

static void put(File *f, const void *p, size_t n)
{
    if (f->size + n > f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 4096;
        while (cap < f->size + n)
            cap *= 2;
        uint8_t *b = realloc(f->bytes, cap);
        if (!b)
            abort();
        f->bytes = b;
        f->cap = cap;
    }
    memcpy(f->bytes + f->size, p, n);
    f->size += n;
}

static void put_u32(File *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(f, b, 4);
}

static void entry(File *f, float score, const char *piece)
{
    uint32_t bits;
    memcpy(&bits, &score, sizeof bits);
    put_u32(f, bits);
    put_u32(f, (uint32_t)strlen(piece));
    put(f, piece, strlen(piece));
    f->n++;
}

/* Letters, digits, punctuation, whitespace and a few multi-byte characters, then merges. Some
 * scores tie (leftmost wins), one is at llama2.c's floor of -1e10 (never merged), "th" appears
 * twice (the lower id wins) and one merge ("ab") is reachable from two pieces of equal score. */
static const char *const CHARS[] = {
    " ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
    "s", "t", "u", "v", "w", "x", "y", "z", "A", "B", "H", "L", "O", "T", "W", "0", "1", "2", ".",
    ",", "!", "?", "'", "<", ">", "\n", "\t", "\xc3\xa9", "\xe6\x97\xa5", "\xe6\x9c\xac",
    "\xf0\x9f\x98\x80", "\xe2\x96\x81",
};
static const struct { const char *piece; float score; } MERGES[] = {
    {"th", -1}, {"he", -2}, {"the", -3}, {" the", -4}, {" t", -5}, {" a", -5}, {"an", -6},
    {"in", -7}, {"er", -7}, {"re", -7}, {"on", -8}, {"at", -9}, {"en", -10}, {"nd", -11},
    {"ing", -12}, {"ed", -13}, {" s", -14}, {"ll", -15}, {"ell", -16}, {"hell", -17},
    {"hello", -18}, {" hello", -19}, {"lo", -20}, {"ab", -21}, {"abc", -22}, {"bc", -21},
    {"aa", -30}, {"aaaa", -29}, {"zz", -1e10f}, {"th", 5}, {"  ", -25}, {"    ", -24},
    {"\xc3\xa9t", -26}, {" \xc3\xa9", -27}, {"\xe6\x97\xa5\xe6\x9c\xac", -28}, {"\n\n", -31},
    {"or", -3}, {"wor", -32}, {"world", -33}, {" world", -34}, {"Hello", -35}, {"He", -36},
    {"O,", -37}, {"<s", -38}, {"s>", -38},
};

/* kind 0: byte tokens 3..258; kind 1: none; kind 2: only those whose hex is written the same in
 * lower and upper case (the rest are lower-case look-alikes the encoder must not use). */
static uint8_t *build_vocab(int kind, size_t *size, int *V)
{
    File f = {0};
    put_u32(&f, 8);
    entry(&f, 0, "<unk>");
    entry(&f, 0, "\n<s>\n");
    entry(&f, 0, "\n</s>\n");
    if (kind != 1)
        for (int b = 0; b < 256; b++) {
            char piece[8];
            snprintf(piece, sizeof piece, kind == 0 ? "<0x%02X>" : "<0x%02x>", b);
            entry(&f, 0, piece);
        }
    for (size_t i = 0; i < sizeof CHARS / sizeof CHARS[0]; i++)
        entry(&f, -100.0f - (float)i, CHARS[i]);
    for (size_t i = 0; i < sizeof MERGES / sizeof MERGES[0]; i++)
        entry(&f, MERGES[i].score, MERGES[i].piece);
    *size = f.size;
    *V = f.n;
    return f.bytes;
}

/* ------------------------------------------------------------------ the plain reference */

/* Ids sorted by (piece, id), for finding the lowest id of a piece by binary search. */
typedef struct {
    const Tokenizer *t;
    int V;
    int *sorted;
    int space_id;
    int byte_id[256];
    size_t max_piece; /* the longest piece */
} Reference;

static const Tokenizer *sort_tokenizer;

static int piece_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int by_piece_then_id(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    int c = piece_cmp(tokenizer_piece(sort_tokenizer, a), (size_t)tokenizer_piece_length(sort_tokenizer, a),
                      tokenizer_piece(sort_tokenizer, b), (size_t)tokenizer_piece_length(sort_tokenizer, b));
    return c ? c : (a > b) - (a < b);
}

/* The lowest id whose piece is s[0..len), or -1. */
static int ref_lookup(const Reference *r, const char *s, size_t len)
{
    int lo = 0, hi = r->V; /* first index whose piece is >= s */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, id = r->sorted[mid];
        if (piece_cmp(tokenizer_piece(r->t, id), (size_t)tokenizer_piece_length(r->t, id), s, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->V) {
        int id = r->sorted[lo];
        if (piece_cmp(tokenizer_piece(r->t, id), (size_t)tokenizer_piece_length(r->t, id), s, len) == 0)
            return id;
    }
    return -1;
}

static int ref_init(Reference *r, const Tokenizer *t)
{
    r->t = t;
    r->V = tokenizer_vocab_size(t);
    r->sorted = malloc(sizeof(int) * (size_t)r->V);
    if (!r->sorted)
        return -1;
    for (int i = 0; i < r->V; i++)
        r->sorted[i] = i;
    r->max_piece = 0;
    for (int i = 0; i < r->V; i++)
        if ((size_t)tokenizer_piece_length(t, i) > r->max_piece)
            r->max_piece = (size_t)tokenizer_piece_length(t, i);
    sort_tokenizer = t;
    qsort(r->sorted, (size_t)r->V, sizeof(int), by_piece_then_id);
    r->space_id = ref_lookup(r, " ", 1);
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        r->byte_id[b] = b + 3 < r->V && strcmp(tokenizer_piece(t, b + 3), want) == 0 ? b + 3 : -1;
    }
    return 0;
}

/* The lowest id whose piece is piece(a) + piece(b), or -1; buf has room for two pieces. */
static int ref_pair(const Reference *r, int a, int b, char *buf)
{
    size_t la = (size_t)tokenizer_piece_length(r->t, a), lb = (size_t)tokenizer_piece_length(r->t, b);
    memcpy(buf, tokenizer_piece(r->t, a), la);
    memcpy(buf + la, tokenizer_piece(r->t, b), lb);
    return ref_lookup(r, buf, la + lb);
}

/* run.c's encode(): returns the number of ids written to out (room for strlen + 3), or -1 if a
 * character has neither a piece nor byte tokens. */
static int ref_encode(const Reference *r, const char *text, int bos, int eos, int *out)
{
    size_t n = strlen(text);
    int *sym = malloc(sizeof(int) * (n + 1));
    char *buf = malloc(2 * r->max_piece + 1); /* two pieces side by side */
    if (!sym || !buf)
        abort();
    int k = 0;
    if (n > 0 && r->space_id >= 0)
        sym[k++] = r->space_id;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && j - i < 4 && (s[j] & 0xC0) == 0x80)
            j++;
        int id = ref_lookup(r, text + i, j - i);
        if (id >= 0) {
            sym[k++] = id;
        } else {
            for (size_t b = i; b < j; b++) {
                if (r->byte_id[s[b]] < 0) {
                    free(sym);
                    free(buf);
                    return -1;
                }
                sym[k++] = r->byte_id[s[b]];
            }
        }
        i = j;
    }
    /* pair[i]: the id of sym[i] + sym[i + 1] as one piece, or -1. run.c looks every pair up
     * again after each merge; only the two pairs next to a merge can change, so they are the
     * only ones looked up again here. The choice is run.c's: the best score above -1e10, the
     * leftmost on ties. */
    int *pair = malloc(sizeof(int) * (n + 1));
    if (!pair)
        abort();
    for (int i = 0; i + 1 < k; i++)
        pair[i] = ref_pair(r, sym[i], sym[i + 1], buf);
    for (;;) {
        float best_score = -1e10f;
        int best_at = -1;
        for (int i = 0; i + 1 < k; i++)
            if (pair[i] >= 0 && tokenizer_score(r->t, pair[i]) > best_score) {
                best_score = tokenizer_score(r->t, pair[i]);
                best_at = i;
            }
        if (best_at < 0)
            break;
        sym[best_at] = pair[best_at];
        memmove(sym + best_at + 1, sym + best_at + 2, sizeof(int) * (size_t)(k - best_at - 2));
        memmove(pair + best_at + 1, pair + best_at + 2, sizeof(int) * (size_t)(k > best_at + 2 ? k - best_at - 3 : 0));
        k--;
        if (best_at > 0)
            pair[best_at - 1] = ref_pair(r, sym[best_at - 1], sym[best_at], buf);
        if (best_at + 1 < k)
            pair[best_at] = ref_pair(r, sym[best_at], sym[best_at + 1], buf);
    }
    free(pair);
    int m = 0;
    if (bos)
        out[m++] = TOKEN_BOS;
    for (int i = 0; i < k; i++)
        out[m++] = sym[i];
    if (eos)
        out[m++] = TOKEN_EOS;
    free(sym);
    free(buf);
    return m;
}

/* ------------------------------------------------------------------ the target */

static struct {
    Tokenizer *t;
    Reference ref;
} fixed[3];

static void load_fixed(void)
{
    for (int kind = 0; kind < 3; kind++) {
        size_t size;
        int V;
        uint8_t *bytes = build_vocab(kind, &size, &V);
        LxError err[1];
        fixed[kind].t = tokenizer_parse(bytes, size, V, "fixed", err);
        free(bytes);
        if (!fixed[kind].t) {
            fprintf(stderr, "fuzz_encode: the fixed vocabulary %d does not load: %s\n", kind, err->message);
            abort();
        }
        if (ref_init(&fixed[kind].ref, fixed[kind].t))
            abort();
    }
}

static int is_dropped_control(unsigned char c)
{
    return (c < 0x20 && !(c >= '\t' && c <= '\r')) || c == 0x7F;
}

/* Decoding after BOS must give the text back, minus the control bytes the decoder drops. */
static void check_round_trip(const Tokenizer *t, const char *text, const int *ids, int n, int eos)
{
    size_t len = strlen(text);
    char *got = malloc(64 * (size_t)n + 1), *want = malloc(len + 1);
    if (!got || !want)
        abort();
    size_t g = 0, w = 0;
    for (int i = 1; i < n - (eos != 0); i++) {
        const char *piece = tokenizer_decode(t, ids[i - 1], ids[i]);
        size_t pl = strlen(piece);
        if (pl > 63)
            die("a decoded piece is longer than any piece", text);
        memcpy(got + g, piece, pl);
        g += pl;
    }
    for (size_t i = 0; i < len; i++)
        if (!is_dropped_control((unsigned char)text[i]))
            want[w++] = text[i];
    if (g != w || memcmp(got, want, g) != 0)
        die("decoding the ids does not give the text back", text);
    free(got);
    free(want);
}

/* Encode text and check everything above; returns 1 if the encoder (rightly) refused it. */
static int check_encoding(const Tokenizer *t, const Reference *ref, const char *text, int bos,
                          int eos, int round_trip)
{
    size_t len = strlen(text);
    int V = tokenizer_vocab_size(t);
    int max = (int)len + 3, n = -1;
    int *ids = malloc(sizeof(int) * (size_t)max);
    if (!ids)
        abort();
    LxError err[1] = {{0}};
    int rc = tokenizer_encode(t, text, bos, eos, ids, max, &n, err);
    int *want = NULL, n_want = -2;
    if (ref && len <= REFERENCE_MAX_TEXT) {
        if (!(want = malloc(sizeof(int) * (size_t)max)))
            abort();
        n_want = ref_encode(ref, text, bos, eos, want);
    }
    if (rc != 0) {
        if (rc != (int)err->status || err->message[0] == '\0' || strchr(err->message, '\n'))
            die("encode failed without a one-line message", text);
        if (n_want >= 0)
            die("encode failed on a text the reference encodes", text);
        free(ids);
        free(want);
        return 1;
    }
    if (n_want == -1)
        die("encode succeeded on a text the reference cannot encode", text);
    if (n < 0 || n > max || n < (bos != 0) + (eos != 0))
        die("encode gave a bad count", text);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            die("encode gave an id outside [0, V)", text);
    if ((bos && ids[0] != TOKEN_BOS) || (eos && ids[n - 1] != TOKEN_EOS))
        die("BOS or EOS missing", text);
    if (n_want >= 0) {
        if (n != n_want || memcmp(ids, want, sizeof(int) * (size_t)n) != 0) {
            fprintf(stderr, "fuzz_encode: got %d ids:", n);
            for (int i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\nfuzz_encode: run.c gives %d:", n_want);
            for (int i = 0; i < n_want; i++)
                fprintf(stderr, " %d", want[i]);
            fputc('\n', stderr);
            die("the ids differ from run.c's encode()", text);
        }
    }
    /* Exactly enough room gives the same ids; one less is refused. */
    int *exact = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    int n2 = -1;
    if (!exact)
        abort();
    if (tokenizer_encode(t, text, bos, eos, exact, n, &n2, err) != 0 || n2 != n ||
        memcmp(exact, ids, sizeof(int) * (size_t)n) != 0)
        die("encode with exactly enough room differs", text);
    if (n > 0) {
        if (tokenizer_encode(t, text, bos, eos, exact, n - 1, &n2, err) == 0)
            die("encode with too little room did not fail", text);
        if (err->message[0] == '\0' || strchr(err->message, '\n'))
            die("encode with too little room failed without a one-line message", text);
    }
    free(exact);
    if (round_trip && bos)
        check_round_trip(t, text, ids, n, eos);
    /* The decoder on every adjacent pair, in any case. */
    for (int i = 0; i < n; i++)
        if (!tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i]))
            die("decode returned NULL", text);
    free(ids);
    free(want);
    return 0;
}

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
    if (!fixed[0].t)
        load_fixed();
    if (input_size < 1) {
        fuzz_count("encode", input, input_size, 1);
        return 0;
    }
    int flags = input[0], kind = flags & 3, bos = (flags & 4) != 0, eos = (flags & 8) != 0;
    const uint8_t *data = input + 1;
    size_t size = input_size - 1;
    const Tokenizer *t;
    Tokenizer *own = NULL;
    Reference own_ref = {0}, *ref;
    if (kind < 3) {
        t = fixed[kind].t;
        ref = &fixed[kind].ref;
    } else {
        if (size < 4) {
            fuzz_count("encode", input, input_size, 1);
            return 0;
        }
        int V = u16_at(data);
        size_t n = u16_at(data + 2);
        data += 4, size -= 4;
        if (n > size)
            n = size;
        LxError err[1] = {{0}};
        own = tokenizer_parse(data, n, V, "fuzz-tokenizer.bin", err);
        data += n, size -= n;
        if (!own) {
            if (err->message[0] == '\0' || strchr(err->message, '\n'))
                die("tokenizer_parse failed without a one-line message", NULL);
            fuzz_count("encode", input, input_size, 1);
            return 0;
        }
        if (ref_init(&own_ref, own))
            abort();
        t = own;
        ref = &own_ref;
    }
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    int refused = check_encoding(t, ref, text, bos, eos, kind < 3);
    fuzz_count("encode", input, input_size, refused);
    free(text);
    free(own_ref.sorted);
    tokenizer_free(own);
    return 0;
}
