/* tokenizer.c: llama2.c's tokenizer.bin: loading it defensively, byte-pair encoding by merge
 * scores, and decoding ids back to text.
 *
 * Encoding follows llama2.c run.c's encode() and must give the same ids:
 *   1. optional BOS (id 1);
 *   2. the "dummy prefix": the piece " " when the text is not empty (sentencepiece adds it so
 *      that a first word is spelt like the same word mid-sentence, " Hello");
 *   3. one symbol per UTF-8 character (a byte plus up to 3 continuation bytes), looked up in the
 *      vocabulary; a character that is not a piece becomes one byte token per byte ("<0xXX>",
 *      id byte + 3);
 *   4. merging: while some adjacent pair of symbols concatenates to a piece scoring above
 *      -1e10, replace the pair whose piece has the highest score by that piece (ties: the
 *      leftmost pair). Like run.c, literal text such as "<0x41>" can merge into a byte piece;
 *   5. optional EOS (id 2).
 * llama2.c rescans every pair after each merge, which is quadratic in the prompt length. Here
 * the symbols form a doubly linked list and the candidate pairs sit in a max-heap ordered by
 * (score, position); a merge pushes the two new pairs it creates, and entries made stale by
 * earlier merges are recognised and dropped when popped. The heap's top valid entry is always
 * the pair llama2.c would pick, so the result is the same, in O(n log n).
 *
 * Deliberate differences from run.c, all on inputs where run.c misbehaves:
 *   - byte fallback is used only if the vocabulary really has "<0xXX>" at id byte + 3 (run.c
 *     blindly emits byte + 3, which for a character-level vocabulary is a wrong, valid-looking
 *     id); otherwise the character is an error;
 *   - if the vocabulary has no " " piece, the dummy prefix is skipped (run.c emits id -1);
 *   - BOS never takes part in merges (run.c would merge it if "\n<s>\n" + piece were a piece,
 *     which no real vocabulary has);
 *   - pieces containing a NUL byte are rejected at load (run.c's strcmp/sprintf logic would see
 *     a shorter piece); duplicate pieces are allowed and the lowest id wins. */
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* No real piece is anywhere near this long (Llama 2: 27 bytes); a larger header value means the
 * file is not a tokenizer. */
#define MAX_TOKEN_LENGTH_LIMIT 65536

/* llama2.c only merges pairs scoring above its initial "best score" of -1e10. */
#define MERGE_SCORE_FLOOR -1e10f

struct LxTokenizer {
    char path[256];        /* the file (or name) it came from, for messages */
    int vocab_size;        /* V */
    int max_token_length;  /* from the header; every piece is at most this long */
    char **pieces;         /* (V) NUL-terminated pointers into text */
    int *lengths;          /* (V) */
    float *scores;         /* (V) */
    char *text;            /* all pieces, each followed by a NUL */
    int *table;            /* hash table of ids by piece, open addressing, -1 = empty */
    size_t table_mask;     /* table size - 1 (a power of two) */
    int space_id;          /* id of " " (the dummy prefix), or -1 */
    int byte_id[256];      /* id of "<0xXX>" for byte XX (always XX + 3), or -1 */
    int n_byte_tokens;     /* how many of byte_id are set */
    char byte_text[256][2]; /* the decoded byte pieces, NUL-terminated */
};

/* ------------------------------------------------------------------ piece lookup */

/* FNV-1a over the concatenation a + b (b may be empty). */
static uint32_t hash_bytes(const char *a, size_t la, const char *b, size_t lb)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < la; i++)
        h = (h ^ (unsigned char)a[i]) * 16777619u;
    for (size_t i = 0; i < lb; i++)
        h = (h ^ (unsigned char)b[i]) * 16777619u;
    return h;
}

/* The id whose piece is a + b, or -1. Taking the two halves separately spares the merge loop
 * from building the concatenation. */
static int lookup2(const Tokenizer *t, const char *a, size_t la, const char *b, size_t lb)
{
    size_t len = la + lb;
    if (len == 0 || len > (size_t)t->max_token_length)
        return -1;
    for (size_t s = hash_bytes(a, la, b, lb) & t->table_mask;; s = (s + 1) & t->table_mask) {
        int id = t->table[s];
        if (id < 0)
            return -1;
        if ((size_t)t->lengths[id] == len && memcmp(t->pieces[id], a, la) == 0 &&
            memcmp(t->pieces[id] + la, b, lb) == 0)
            return id;
    }
}

static int lookup(const Tokenizer *t, const char *s, size_t len) { return lookup2(t, s, len, "", 0); }

/* ------------------------------------------------------------------ loading */

static uint32_t read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float read_f32(const unsigned char *p)
{
    uint32_t u = read_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Check entry i at data[*off] and on success advance *off past it. expect is how many entries
 * the model wants (for the message). */
static int check_entry(const unsigned char *data, size_t size, size_t *off, uint32_t mtl, int i,
                       int expect, const char *name, LxError *err)
{
    if (size - *off < 8) {
        if (size == *off)
            return fail(err, LX_ERR_FILE, "%s: has %d entries but the model's vocabulary has %d", name, i, expect);
        return fail(err, LX_ERR_FILE, "%s: truncated in entry %d (of %d)", name, i, expect);
    }
    float score = read_f32(data + *off);
    int32_t len = (int32_t)read_u32(data + *off + 4);
    *off += 8;
    if (isnan(score))
        return fail(err, LX_ERR_FILE, "%s: entry %d: score is NaN", name, i);
    if (isinf(score))
        return fail(err, LX_ERR_FILE, "%s: entry %d: score is infinite", name, i);
    if (len <= 0)
        return fail(err, LX_ERR_FILE, "%s: entry %d: piece length %ld (must be at least 1)", name, i, (long)len);
    if ((uint32_t)len > mtl)
        return fail(err, LX_ERR_FILE, "%s: entry %d: piece length %ld exceeds max_token_length %lu", name, i,
                    (long)len, (unsigned long)mtl);
    if ((size_t)len > size - *off)
        return fail(err, LX_ERR_FILE, "%s: entry %d: piece of %ld bytes runs past the end of the file", name, i,
                    (long)len);
    if (memchr(data + *off, 0, (size_t)len))
        return fail(err, LX_ERR_FILE, "%s: entry %d: piece contains a NUL byte", name, i);
    *off += (size_t)len;
    return 0;
}

/* Validate the whole file without trusting any of it. On success *text_bytes is the room the
 * pieces need with their terminators. */
static int check_file(const unsigned char *data, size_t size, int vocab_size, const char *name,
                      size_t *text_bytes, LxError *err)
{
    if (size == 0)
        return fail(err, LX_ERR_FILE, "%s: is empty", name);
    if (size < 4)
        return fail(err, LX_ERR_FILE, "%s: too short for the header (%zu bytes)", name, size);
    if (vocab_size < 3)
        return fail(err, LX_ERR_FILE, "%s: vocab_size %d is too small (ids 1 and 2 are BOS and EOS)", name,
                    vocab_size);
    uint32_t mtl = read_u32(data);
    if (mtl == 0)
        return fail(err, LX_ERR_FILE, "%s: max_token_length is 0", name);
    if (mtl > MAX_TOKEN_LENGTH_LIMIT)
        return fail(err, LX_ERR_FILE, "%s: max_token_length %lu is absurd (limit %d)", name, (unsigned long)mtl,
                    MAX_TOKEN_LENGTH_LIMIT);
    size_t off = 4;
    for (int i = 0; i < vocab_size; i++) {
        int rc = check_entry(data, size, &off, mtl, i, vocab_size, name, err);
        if (rc)
            return rc;
    }
    /* Each piece is at least 1 byte plus its 8-byte prefix, so the text fits in the file size. */
    *text_bytes = off - 4 - 8 * (size_t)vocab_size + (size_t)vocab_size;
    if (off == size)
        return 0;
    /* Say whether the rest is more entries (the wrong tokenizer for this model) or junk. */
    size_t rest = off;
    long extra = 0;
    LxError ignore;
    for (size_t at = rest; rest < size && check_entry(data, size, &at, mtl, 0, 0, name, &ignore) == 0;
         rest = at)
        extra++;
    if (rest == size)
        return fail(err, LX_ERR_FILE, "%s: has %ld entries but the model's vocabulary has %d", name,
                    vocab_size + extra, vocab_size);
    return fail(err, LX_ERR_FILE, "%s: %zu trailing bytes after the %d entries", name, size - off, vocab_size);
}

/* For vocab_size 0: the number of well-formed entries the file holds, all of it. */
static int count_entries(const unsigned char *data, size_t size, const char *name, int *count, LxError *err)
{
    if (size < 4)
        return fail(err, LX_ERR_FILE, "%s: too short for the header (%zu bytes)", name, size);
    uint32_t mtl = read_u32(data);
    if (mtl == 0 || mtl > MAX_TOKEN_LENGTH_LIMIT)
        return fail(err, LX_ERR_FILE, "%s: max_token_length %lu is out of range", name, (unsigned long)mtl);
    size_t off = 4;
    int n = 0;
    while (off < size) {
        if (n == INT_MAX)
            return fail(err, LX_ERR_FILE, "%s: too many entries", name);
        int rc = check_entry(data, size, &off, mtl, n, 0, name, err);
        if (rc)
            return rc;
        n++;
    }
    *count = n;
    return 0;
}

void tokenizer_free(Tokenizer *t)
{
    if (!t)
        return;
    free(t->pieces);
    free(t->lengths);
    free(t->scores);
    free(t->text);
    free(t->table);
    free(t);
}

static const char hex_digits[] = "0123456789ABCDEF";

/* Byte fallback is only sound if the vocabulary has the byte pieces where run.c expects them. */
static void find_byte_tokens(Tokenizer *t)
{
    t->n_byte_tokens = 0;
    for (int b = 0; b < 256; b++) {
        char want[6] = {'<', '0', 'x', hex_digits[b >> 4], hex_digits[b & 15], '>'};
        int id = b + 3;
        t->byte_id[b] = -1;
        if (id < t->vocab_size && t->lengths[id] == 6 && memcmp(t->pieces[id], want, 6) == 0) {
            t->byte_id[b] = id;
            t->n_byte_tokens++;
        }
        t->byte_text[b][0] = (char)b;
        t->byte_text[b][1] = '\0';
    }
}

Tokenizer *tokenizer_parse(const void *data, size_t size, int vocab_size, const char *name, LxError *err)
{
    const unsigned char *bytes = data;
    if (vocab_size == 0 && count_entries(bytes, size, name, &vocab_size, err))
        return NULL;
    size_t text_bytes = 0;
    if (!name)
        name = "tokenizer";
    if (!data && size > 0) {
        fail(err, LX_ERR_FILE, "%s: no data", name);
        return NULL;
    }
    if (check_file(bytes, size, vocab_size, name, &text_bytes, err))
        return NULL;

    /* A power-of-two table at most half full keeps probe sequences short. */
    size_t table_size = 1;
    while (table_size < 2 * (size_t)vocab_size)
        table_size *= 2;
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        fail(err, LX_ERR_MEMORY, "%s: out of memory", name);
        return NULL;
    }
    snprintf(t->path, sizeof t->path, "%s", name);
    t->vocab_size = vocab_size;
    t->max_token_length = (int)read_u32(bytes);
    t->pieces = calloc((size_t)vocab_size, sizeof *t->pieces);
    t->lengths = calloc((size_t)vocab_size, sizeof *t->lengths);
    t->scores = calloc((size_t)vocab_size, sizeof *t->scores);
    t->text = malloc(text_bytes);
    t->table = malloc(table_size * sizeof *t->table);
    if (!t->pieces || !t->lengths || !t->scores || !t->text || !t->table) {
        tokenizer_free(t);
        fail(err, LX_ERR_MEMORY, "%s: out of memory for %d pieces", name, vocab_size);
        return NULL;
    }
    t->table_mask = table_size - 1;
    memset(t->table, 0xff, table_size * sizeof *t->table); /* all -1 */

    size_t off = 4;
    char *out = t->text;
    for (int i = 0; i < vocab_size; i++) {
        t->scores[i] = read_f32(bytes + off);
        t->lengths[i] = (int)read_u32(bytes + off + 4);
        off += 8;
        memcpy(out, bytes + off, (size_t)t->lengths[i]);
        out[t->lengths[i]] = '\0';
        t->pieces[i] = out;
        out += t->lengths[i] + 1;
        off += (size_t)t->lengths[i];
        /* Insert unless an earlier id has the same piece: the lowest id wins. */
        size_t s = hash_bytes(t->pieces[i], (size_t)t->lengths[i], "", 0) & t->table_mask;
        while (t->table[s] >= 0 && !(t->lengths[t->table[s]] == t->lengths[i] &&
                                     memcmp(t->pieces[t->table[s]], t->pieces[i], (size_t)t->lengths[i]) == 0))
            s = (s + 1) & t->table_mask;
        if (t->table[s] < 0)
            t->table[s] = i;
    }
    t->space_id = lookup(t, " ", 1);
    find_byte_tokens(t);
    return t;
}

Tokenizer *tokenizer_open(const char *path, int vocab_size, LxError *err)
{
    if (!path) {
        fail(err, LX_ERR_ARGUMENT, "tokenizer: no path given");
        return NULL;
    }
    /* O_NONBLOCK: a FIFO must not hang the open; it is refused below like any non-file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        fail(err, LX_ERR_FILE, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fail(err, LX_ERR_FILE, "%s: %s, not a tokenizer file", path,
             S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
        return NULL;
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *data = malloc(size ? size : 1);
    while (data && got < size) {
        ssize_t n = read(fd, data + got, size - got);
        if (n <= 0) {
            int saved = errno;
            close(fd);
            free(data);
            fail(err, LX_ERR_IO, "%s: read error: %s", path, n == 0 ? "the file shrank" : strerror(saved));
            return NULL;
        }
        got += (size_t)n;
    }
    close(fd);
    if (!data) {
        fail(err, LX_ERR_MEMORY, "%s: out of memory reading it", path);
        return NULL;
    }
    Tokenizer *t = tokenizer_parse(data, size, vocab_size, path, err);
    free(data);
    return t;
}

/* ------------------------------------------------------------------ accessors */

int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
const char *tokenizer_path(const Tokenizer *t) { return t->path; }

/* These three return NULL, -1 and 0 for an id out of range. */
const char *tokenizer_piece(const Tokenizer *t, int id)
{
    return id >= 0 && id < t->vocab_size ? t->pieces[id] : NULL;
}

int tokenizer_piece_length(const Tokenizer *t, int id)
{
    return id >= 0 && id < t->vocab_size ? t->lengths[id] : -1;
}

float tokenizer_score(const Tokenizer *t, int id)
{
    return id >= 0 && id < t->vocab_size ? t->scores[id] : 0.0f;
}

/* ------------------------------------------------------------------ encoding */

/* The code point of s[0..len) if it is exactly one well-formed UTF-8 character, else -1. */
static long utf8_code_point(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need;
    long cp, min;
    if (c < 0x80)
        return len == 1 ? c : -1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 4, cp = c & 0x07, min = 0x10000;
    else
        return -1;
    if (len != need)
        return -1;
    for (size_t i = 1; i < len; i++)
        cp = cp << 6 | (s[i] & 0x3F); /* grouping guarantees these are continuation bytes */
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    return cp;
}

/* A symbol in the merge list: a token id and its neighbours (-1 at the ends). */
typedef struct {
    int id;
    int prev, next;
} Symbol;

/* A candidate merge of symbols left and right (adjacent when pushed) into id `merged`. The ids
 * the two had are kept so that an entry outdated by a later merge can be recognised: a merge
 * always makes a piece longer, so a symbol never gets its old id back. */
typedef struct {
    float score;
    int left, right;
    int left_id, right_id;
    int merged;
} Pair;

/* Heap order: higher score first; on equal scores the leftmost pair. Symbols keep their
 * positions in the array (a merge keeps the left one), so a smaller index is further left. */
static int pair_before(const Pair *a, const Pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(Pair *heap, int *n, Pair p)
{
    int i = (*n)++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!pair_before(&p, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = p;
}

static Pair heap_pop(Pair *heap, int *n)
{
    Pair top = heap[0], last = heap[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pair_before(&heap[c + 1], &heap[c]))
            c++;
        if (!pair_before(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n > 0)
        heap[i] = last;
    return top;
}

/* Push the pair (left, right) if their concatenation is a piece llama2.c would merge. */
static void push_pair(const Tokenizer *t, const Symbol *sym, Pair *heap, int *n, int left, int right, int barrier)
{
    if (left < 0 || right < 0)
        return;
    int a = sym[left].id, b = sym[right].id;
    if (a == barrier || b == barrier)
        return; /* an unknown id stands for bytes the vocabulary lacks: it merges with nothing */
    int id = lookup2(t, t->pieces[a], (size_t)t->lengths[a], t->pieces[b], (size_t)t->lengths[b]);
    if (id < 0 || !(t->scores[id] > MERGE_SCORE_FLOOR))
        return;
    Pair p = {t->scores[id], left, right, a, b, id};
    heap_push(heap, n, p);
}

/* Steps 2 and 3: the dummy prefix (if prefix) and one symbol per character (or per byte), into
 * sym[]. A byte the vocabulary cannot say is an error, or, with unknown >= 0, that id (counted
 * in *n_unknown). */
static int initial_symbols(const Tokenizer *t, const char *text, size_t n, int prefix, int unknown,
                           Symbol *sym, int *n_sym, int *n_unknown, LxError *err)
{
    const unsigned char *s = (const unsigned char *)text;
    int k = 0;
    if (prefix && n > 0 && t->space_id >= 0)
        sym[k++].id = t->space_id;
    size_t i = 0;
    while (i < n) {
        /* A character: this byte and the continuation bytes (10xxxxxx) after it, at most 4 bytes
         * in all. A stray continuation byte starts its own group, as in run.c. */
        size_t j = i + 1;
        while (j < n && j - i < 4 && (s[j] & 0xC0) == 0x80)
            j++;
        int id = lookup(t, text + i, j - i);
        if (id >= 0) {
            sym[k++].id = id;
        } else {
            /* Byte fallback: sentencepiece's byte pieces "<0x00>".."<0xFF>" sit at ids 3..258. A
             * vocabulary without them (character-level ones) has no way to say this character. */
            for (size_t b = i; b < j; b++) {
                if (t->byte_id[s[b]] >= 0 || unknown >= 0)
                    continue;
                char why[64];
                if (t->n_byte_tokens == 0)
                    snprintf(why, sizeof why, "it has no byte tokens");
                else
                    snprintf(why, sizeof why, "it has no byte token for 0x%02X", s[b]);
                long cp = utf8_code_point(s + i, j - i);
                if (cp >= 0)
                    return fail(err, LX_ERR_ARGUMENT, "cannot encode character U+%04lX at byte offset %zu: "
                                     "not in the vocabulary and %s", cp, i, why);
                char hex[16] = "";
                for (size_t h = i; h < j; h++)
                    snprintf(hex + 3 * (h - i), sizeof hex - 3 * (h - i), " %02X", s[h]);
                return fail(err, LX_ERR_ARGUMENT, "cannot encode invalid UTF-8 at byte offset %zu (bytes%s): %s", i,
                            hex, why);
            }
            for (size_t b = i; b < j; b++) {
                sym[k++].id = t->byte_id[s[b]] >= 0 ? t->byte_id[s[b]] : unknown;
                *n_unknown += t->byte_id[s[b]] < 0;
            }
        }
        i = j;
    }
    *n_sym = k;
    return 0;
}

/* The encoder under tokenizer_encode and tokenizer_encode_bytes: text (n bytes), BOS, the dummy
 * prefix and EOS as asked, unrepresentable bytes an error or the id unknown. */
static int encode(const Tokenizer *t, const char *text, size_t n, int bos, int prefix, int eos, int unknown,
                  int *tokens, int max_tokens, int *n_tokens, int *n_unknown, LxError *err)
{
    *n_tokens = 0;
    *n_unknown = 0;
    /* At most one symbol per byte plus the dummy prefix; the heap holds the initial pairs plus
     * two per merge, under 3 per symbol. */
    size_t cap = n + 1;
    if (cap > (size_t)INT_MAX / 3)
        return fail(err, LX_ERR_ARGUMENT, "cannot encode: text of %zu bytes is too long", n);
    Symbol *sym = malloc(cap * sizeof *sym);
    Pair *heap = malloc(3 * cap * sizeof *heap);
    if (!sym || !heap) {
        free(sym);
        free(heap);
        return fail(err, LX_ERR_MEMORY, "cannot encode: out of memory for %zu bytes of text", n);
    }
    int n_sym = 0, rc = initial_symbols(t, text, n, prefix, unknown, sym, &n_sym, n_unknown, err);
    if (rc) {
        free(sym);
        free(heap);
        return rc;
    }
    for (int i = 0; i < n_sym; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < n_sym ? i + 1 : -1;
    }

    /* Step 4: the merges, best score first, leftmost on ties. */
    int n_heap = 0, alive = n_sym;
    for (int i = 0; i + 1 < n_sym; i++)
        push_pair(t, sym, heap, &n_heap, i, i + 1, unknown);
    while (n_heap > 0) {
        Pair p = heap_pop(heap, &n_heap);
        Symbol *l = &sym[p.left], *r = &sym[p.right];
        if (l->id != p.left_id || r->id != p.right_id || l->next != p.right)
            continue; /* stale: one side has merged since this entry was pushed */
        l->id = p.merged;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        r->id = -1; /* dead: no entry can match it again */
        alive--;
        push_pair(t, sym, heap, &n_heap, l->prev, p.left, unknown);
        push_pair(t, sym, heap, &n_heap, p.left, l->next, unknown);
    }

    int need = alive + (bos != 0) + (eos != 0);
    if (need > max_tokens) {
        free(sym);
        free(heap);
        return fail(err, LX_ERR_ARGUMENT, "cannot encode: %d tokens needed but room for only %d", need, max_tokens);
    }
    int k = 0;
    if (bos)
        tokens[k++] = TOKEN_BOS;
    for (int i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next)
        tokens[k++] = sym[i].id;
    if (eos)
        tokens[k++] = TOKEN_EOS;
    *n_tokens = k;
    free(sym);
    free(heap);
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, int bos, int eos, int *tokens,
                     int max_tokens, int *n_tokens, LxError *err)
{
    int n_unknown;
    *n_tokens = 0;
    if (!text)
        return fail(err, LX_ERR_ARGUMENT, "tokenizer_encode: text is NULL");
    return encode(t, text, strlen(text), bos, 1, eos, -1, tokens, max_tokens, n_tokens, &n_unknown, err);
}

int tokenizer_encode_bytes(const Tokenizer *t, const char *bytes, size_t n, int unknown, int *tokens,
                           int max_tokens, int *n_tokens, int *n_unknown, LxError *err)
{
    if (unknown < 0 || unknown >= t->vocab_size)
        return fail(err, LX_ERR_ARGUMENT, "unknown id %d is outside %s's vocabulary", unknown, t->path);
    return encode(t, bytes, n, 0, 0, 0, unknown, tokens, max_tokens, n_tokens, n_unknown, err);
}

/* ------------------------------------------------------------------ decoding */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

const char *tokenizer_decode(const Tokenizer *t, int prev, int token)
{
    if (token < 0 || token >= t->vocab_size)
        return "";
    const char *piece = t->pieces[token];
    int len = t->lengths[token];
    /* The first piece after BOS carries the dummy prefix's space, which is not in the text. */
    if (prev == TOKEN_BOS && piece[0] == ' ') {
        piece++;
        len--;
    }
    if (len == 6 && memcmp(piece, "<0x", 3) == 0 && piece[5] == '>' && hex_value(piece[3]) >= 0 &&
        hex_value(piece[4]) >= 0) {
        piece = t->byte_text[hex_value(piece[3]) * 16 + hex_value(piece[4])];
        len = 1;
    }
    /* A lone control byte (other than whitespace) would garble a terminal. Bytes >= 0x80 stay:
     * they are pieces of UTF-8 characters split over byte tokens. */
    if (len == 1) {
        unsigned char c = (unsigned char)piece[0];
        if ((c < 0x20 && !(c >= '\t' && c <= '\r')) || c == 0x7F)
            return "";
    }
    return len > 0 ? piece : "";
}

/* ------------------------------------------------------------------ comparison */

/* piece as a short printable quote for messages: "\n<s>\n" becomes '\n<s>\n'. */
static void quote_piece(const char *p, int len, char *out, size_t size)
{
    size_t k = 0;
    out[k++] = '\'';
    for (int i = 0; i < len && k + 8 < size; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            k += (size_t)snprintf(out + k, size - k, "\\n");
        else if (c == '\'' || c == '\\')
            k += (size_t)snprintf(out + k, size - k, "\\%c", c);
        else if (c < 0x20 || c >= 0x7F)
            k += (size_t)snprintf(out + k, size - k, "\\x%02X", c);
        else
            out[k++] = (char)c;
        if (i + 1 < len && k + 8 >= size) {
            k += (size_t)snprintf(out + k, size - k, "...");
            break;
        }
    }
    snprintf(out + k, size - k, "'");
}

/* printf into why (LX_ERROR_LENGTH bytes) unless it is NULL. */
__attribute__((format(printf, 2, 3)))
static void explain(char *why, const char *fmt, ...)
{
    if (why) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, LX_ERROR_LENGTH, fmt, ap);
        va_end(ap);
    }
}

int tokenizer_same(const Tokenizer *a, const Tokenizer *b, char why[LX_ERROR_LENGTH])
{
    if (a->vocab_size != b->vocab_size) {
        explain(why, "vocab sizes differ (%d vs %d)", a->vocab_size, b->vocab_size);
        return 0;
    }
    for (int i = 0; i < a->vocab_size; i++) {
        if (a->lengths[i] != b->lengths[i] ||
            memcmp(a->pieces[i], b->pieces[i], (size_t)a->lengths[i]) != 0) {
            char qa[64], qb[64];
            quote_piece(a->pieces[i], a->lengths[i], qa, sizeof qa);
            quote_piece(b->pieces[i], b->lengths[i], qb, sizeof qb);
            explain(why, "piece %d differs (%s vs %s)", i, qa, qb);
            return 0;
        }
    }
    /* Same pieces with other scores would merge differently, so the ids would not mean the
     * same text sequences. */
    for (int i = 0; i < a->vocab_size; i++) {
        if (a->scores[i] != b->scores[i]) {
            char q[64];
            quote_piece(a->pieces[i], a->lengths[i], q, sizeof q);
            explain(why, "score of piece %d %s differs (%g vs %g)", i, q, (double)a->scores[i],
                 (double)b->scores[i]);
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ public API */

LxStatus lx_tokenizer_open(const char *path, int vocab_size, LxTokenizer **out, LxError *err)
{
    LxError local, *e = err ? err : &local;
    *out = tokenizer_open(path, vocab_size, e);
    return *out ? LX_OK : e->status;
}

void lx_tokenizer_free(LxTokenizer *t) { tokenizer_free(t); }
int lx_tokenizer_vocab_size(const LxTokenizer *t) { return t->vocab_size; }

LxStatus lx_tokenize(const LxTokenizer *t, const char *text, int bos, int eos, int *tokens, int max_tokens,
                     int *n_tokens, LxError *err)
{
    LxError local, *e = err ? err : &local;
    return tokenizer_encode(t, text, bos, eos, tokens, max_tokens, n_tokens, e) ? e->status : LX_OK;
}

const char *lx_token_piece(const LxTokenizer *t, int id) { return tokenizer_piece(t, id); }
const char *lx_token_text(const LxTokenizer *t, int prev, int token) { return tokenizer_decode(t, prev, token); }
