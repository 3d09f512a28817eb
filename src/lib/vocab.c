/* vocab.c: the union vocabulary of members whose tokenizers differ, the map of each member's ids
 * into it, and the deterministic rule that feeds a union token back to every member.
 *
 * U is the set of distinct byte strings the members' pieces decode to ("<0xXX>" is the byte XX),
 * plus three symbols: 0 unknown (every member's <unk>, id 0), 1 end of text (every member's BOS
 * and EOS), 2 reserved (no member id maps to it; kept so that ids 1 and 2 both mean end of text,
 * as in llama2.c). Several ids of one member may spell the same string (a byte token and a
 * one-character piece): their probabilities add in U.
 *
 * Feeding back. After u is drawn, member k appends feed(k, u), which depends on u and k's
 * tokenizer only: its one piece spelling exactly u (the non-byte one if several, then the lowest
 * id), else its tokenizer's encoding of u's bytes (no BOS, no dummy prefix), a byte it cannot say
 * becoming its unknown id. So every member's ids are a function of the union sequence alone, and
 * CE and ME, which both grow that sequence one u at a time, drive the members through the same
 * states: ME's distribution over whole sequences is CE's (the chain rule). An ME whose sampling
 * member kept its own sampled id would put that member in a state that depends on which member
 * drew u, and the identity would break. */
#include "config.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a of s (n bytes). */
static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 1 if piece p (n bytes) is a byte token "<0xXX>", with the byte in *b. */
static int byte_piece(const char *p, int n, unsigned char *b)
{
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>' || hex_digit(p[3]) < 0 || hex_digit(p[4]) < 0)
        return 0;
    *b = (unsigned char)(hex_digit(p[3]) * 16 + hex_digit(p[4]));
    return 1;
}

/* The string of member id i, as a pointer and length (into t, or into byte for byte tokens);
 * returns the symbol (0, 1) for <unk>, BOS and EOS, else -1. */
static int piece_string(const Tokenizer *t, int i, unsigned char *byte, const char **s, int *n)
{
    if (i == 0)
        return VOCAB_UNKNOWN;
    if (i == TOKEN_BOS || i == TOKEN_EOS)
        return VOCAB_END;
    *s = tokenizer_piece(t, i);
    *n = tokenizer_piece_length(t, i);
    if (byte_piece(*s, *n, byte)) {
        *s = (const char *)byte;
        *n = 1;
    }
    return -1;
}

void vocab_free(Vocab *v)
{
    for (int k = 0; v->to_union && k < v->k; k++)
        free(v->to_union[k]);
    for (int k = 0; v->feed && k < v->k; k++) {
        free(v->feed[k]);
        free(v->feed_at[k]);
        free(v->feed_unknown[k]);
        free(v->single[k]);
    }
    free(v->to_union);
    free(v->feed);
    free(v->feed_at);
    free(v->feed_unknown);
    free(v->single);
    free(v->strings);
    free(v->lengths);
    free(v->text);
    free(v->table);
    memset(v, 0, sizeof *v);
}

/* The U id of string s (n bytes), adding it if new. */
static int intern(Vocab *v, const char *s, int n)
{
    for (size_t h = hash(s, (size_t)n) & v->table_mask;; h = (h + 1) & v->table_mask) {
        int u = v->table[h];
        if (u < 0) {
            u = v->size++;
            memcpy(v->text + v->text_used, s, (size_t)n);
            v->text[v->text_used + (size_t)n] = '\0';
            v->strings[u] = v->text + v->text_used;
            v->lengths[u] = n;
            v->text_used += (size_t)n + 1;
            v->table[h] = u;
            return u;
        }
        if (v->lengths[u] == n && memcmp(v->strings[u], s, (size_t)n) == 0)
            return u;
    }
}

/* Member k's encoding of every u: the rule above, into feed/feed_at/feed_unknown. */
static int make_feed(Vocab *v, int k, const Tokenizer *t, LxError *err)
{
    const int V = tokenizer_vocab_size(t), U = v->size;
    int *single = v->single[k] = malloc(sizeof(int) * (size_t)U);
    int cap = 0;
    for (int u = 3; u < U; u++)
        cap += v->lengths[u] + 1;
    cap += 3;
    v->feed[k] = malloc(sizeof(int) * (size_t)cap);
    v->feed_at[k] = malloc(sizeof(int) * ((size_t)U + 1));
    v->feed_unknown[k] = calloc((size_t)U, sizeof(int));
    if (!single || !v->feed[k] || !v->feed_at[k] || !v->feed_unknown[k])
        return fail(err, LX_ERR_MEMORY, "out of memory for the union vocabulary");
    /* The single piece spelling u: a non-byte piece beats a byte token, then the lowest id. */
    for (int u = 0; u < U; u++)
        single[u] = -1;
    for (int i = V - 1; i >= 0; i--) {
        int u = v->to_union[k][i];
        unsigned char b;
        if (u < 3)
            continue;
        int is_byte = byte_piece(tokenizer_piece(t, i), tokenizer_piece_length(t, i), &b);
        if (single[u] < 0 || !is_byte ||
            byte_piece(tokenizer_piece(t, single[u]), tokenizer_piece_length(t, single[u]), &b))
            single[u] = i;
    }
    int at = 0, rc = 0;
    for (int u = 0; u < U && !rc; u++) {
        v->feed_at[k][u] = at;
        if (u == VOCAB_UNKNOWN) {
            v->feed[k][at++] = 0;
            v->feed_unknown[k][u] = 1;
        } else if (u == VOCAB_END || u == VOCAB_RESERVED) {
            v->feed[k][at++] = u == VOCAB_END ? TOKEN_BOS : TOKEN_EOS;
        } else if (single[u] >= 0) {
            v->feed[k][at++] = single[u];
        } else {
            int n = 0;
            rc = tokenizer_encode_bytes(t, v->strings[u], (size_t)v->lengths[u], 0, v->feed[k] + at, cap - at, &n,
                                        &v->feed_unknown[k][u], err);
            at += n;
        }
    }
    v->feed_at[k][U] = at;
    return rc;
}

int vocab_init(Vocab *v, const Tokenizer *const *toks, int k, LxError *err)
{
    memset(v, 0, sizeof *v);
    size_t n_ids = 3, n_text = 1;
    for (int m = 0; m < k; m++) {
        int V = tokenizer_vocab_size(toks[m]);
        n_ids += (size_t)V;
        for (int i = 0; i < V; i++)
            n_text += (size_t)tokenizer_piece_length(toks[m], i) + 1;
    }
    size_t slots = 16;
    while (slots < 2 * n_ids)
        slots *= 2;
    v->k = k;
    v->table_mask = slots - 1;
    v->table = malloc(sizeof(int) * slots);
    v->strings = calloc(n_ids, sizeof *v->strings);
    v->lengths = calloc(n_ids, sizeof *v->lengths);
    v->text = malloc(n_text);
    v->to_union = calloc((size_t)k, sizeof *v->to_union);
    v->feed = calloc((size_t)k, sizeof *v->feed);
    v->feed_at = calloc((size_t)k, sizeof *v->feed_at);
    v->feed_unknown = calloc((size_t)k, sizeof *v->feed_unknown);
    v->single = calloc((size_t)k, sizeof *v->single);
    if (!v->single || !v->table || !v->strings || !v->lengths || !v->text || !v->to_union || !v->feed || !v->feed_at ||
        !v->feed_unknown) {
        vocab_free(v);
        return fail(err, LX_ERR_MEMORY, "out of memory for the union vocabulary");
    }
    memset(v->table, 0xff, sizeof(int) * slots);
    /* The three symbols have no string; they never enter the table. */
    for (int u = 0; u < 3; u++)
        v->strings[u] = v->text, v->lengths[u] = 0;
    v->text[0] = '\0';
    v->text_used = 1;
    v->size = 3;
    for (int m = 0; m < k; m++) {
        int V = tokenizer_vocab_size(toks[m]);
        if (!(v->to_union[m] = malloc(sizeof(int) * (size_t)V))) {
            vocab_free(v);
            return fail(err, LX_ERR_MEMORY, "out of memory for the union vocabulary");
        }
        for (int i = 0; i < V; i++) {
            unsigned char byte;
            const char *s = NULL;
            int n = 0, sym = piece_string(toks[m], i, &byte, &s, &n);
            v->to_union[m][i] = sym >= 0 ? sym : intern(v, s, n);
        }
    }
    for (int m = 0; m < k; m++)
        if (make_feed(v, m, toks[m], err)) {
            vocab_free(v);
            return err ? err->status : LX_ERR_MEMORY;
        }
    return 0;
}

void vocab_add(const Vocab *v, int k, const float *p, int V, float w, float *q)
{
    const int *map = v->to_union[k];
    for (int i = 0; i < V; i++)
        q[map[i]] += w * p[i];
}

const char *vocab_text(const Vocab *v, int prev, int u)
{
    if (u < 3 || u >= v->size)
        return "";
    const char *s = v->strings[u];
    int n = v->lengths[u];
    /* The first piece after BOS carries the dummy prefix's space; lone control bytes are dropped
     * (tokenizer_decode's rules). */
    if (prev == VOCAB_END && s[0] == ' ')
        s++, n--;
    if (n == 1 && (((unsigned char)s[0] < 0x20 && !(s[0] >= '\t' && s[0] <= '\r')) || s[0] == 0x7F))
        return "";
    return s;
}
