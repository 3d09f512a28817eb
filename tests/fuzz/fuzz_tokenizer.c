/* fuzz_tokenizer.c: fuzz target for the tokenizer.bin reader (tokenizer_parse) and for the
 * accessors and the decoder over every id of what it accepts.
 *
 * Input: 2 bytes, a little-endian int16 vocabulary size V (negative and tiny values included:
 * they must be refused politely), then the bytes of a tokenizer file.
 * What must hold:
 *   - tokenizer_parse either returns NULL with a one-line message that starts with the name, or
 *     a tokenizer of exactly V entries (or, if V <= 0 were ever accepted, of its own size) whose
 *     pieces and scores are the file's, read here by an independent walk over the bytes that must
 *     consume the whole file;
 *   - for every id in [0, V): the piece is NUL-free and as long as tokenizer_piece_length says,
 *     the score is finite, tokenizer_decode after BOS and after another id gives a string no
 *     longer than the piece; for ids -1 and V: NULL, -1, 0 and "";
 *   - tokenizer_same says yes for the tokenizer and itself;
 *   - a few fixed texts encode to ids in [0, V) (or fail with a one-line message).
 * Anything else is a crash (abort), as is every sanitizer report. */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected);

#define NAME "fuzz-tokenizer.bin"

static void die(const char *what, int id, const char *detail)
{
    fprintf(stderr, "fuzz_tokenizer: %s (id %d)%s%s\n", what, id, detail ? ": " : "", detail ? detail : "");
    abort();
}

static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The accepted tokenizer must hold exactly the file's entries, and the file nothing else. */
static void check_against_file(const Tokenizer *t, const uint8_t *file, size_t size)
{
    int V = tokenizer_vocab_size(t);
    if (size < 4)
        die("accepted a file without a header", -1, NULL);
    size_t off = 4;
    for (int id = 0; id < V; id++) {
        if (size - off < 8)
            die("accepted a file with fewer entries than the vocabulary", id, NULL);
        uint32_t score_bits = u32_at(file + off), len = u32_at(file + off + 4);
        off += 8;
        if (len > size - off)
            die("accepted a piece that runs past the end", id, NULL);
        float score = tokenizer_score(t, id), file_score;
        memcpy(&file_score, &score_bits, sizeof file_score);
        if (memcmp(&score, &file_score, sizeof score) != 0)
            die("score differs from the file", id, NULL);
        if ((uint32_t)tokenizer_piece_length(t, id) != len)
            die("piece length differs from the file", id, NULL);
        if (memcmp(tokenizer_piece(t, id), file + off, len) != 0)
            die("piece differs from the file", id, NULL);
        off += len;
    }
    if (off != size)
        die("accepted a file with bytes after the last entry", V, NULL);
}

static void check_ids(const Tokenizer *t)
{
    int V = tokenizer_vocab_size(t);
    for (int id = 0; id < V; id++) {
        const char *piece = tokenizer_piece(t, id);
        int len = tokenizer_piece_length(t, id);
        if (!piece || len < 0 || strlen(piece) != (size_t)len)
            die("piece and its length disagree", id, NULL);
        if (!isfinite(tokenizer_score(t, id)))
            die("score is not finite", id, NULL);
        int prevs[] = {TOKEN_BOS, id > 0 ? id - 1 : 0, -1, V};
        for (size_t i = 0; i < sizeof prevs / sizeof prevs[0]; i++) {
            const char *text = tokenizer_decode(t, prevs[i], id);
            if (!text || strlen(text) > (size_t)len)
                die("decode gave more than the piece", id, NULL);
        }
    }
    int outside[] = {-1, V, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        int id = outside[i];
        if (tokenizer_piece(t, id) != NULL || tokenizer_piece_length(t, id) != -1 ||
            tokenizer_score(t, id) != 0.0f)
            die("an id outside the vocabulary is not refused", id, NULL);
        const char *text = tokenizer_decode(t, TOKEN_BOS, id);
        if (!text || text[0] != '\0')
            die("decode of an id outside the vocabulary is not empty", id, NULL);
    }
    char why[LX_ERROR_LENGTH] = "";
    if (!tokenizer_same(t, t, why))
        die("tokenizer_same says a tokenizer differs from itself", -1, why);
}

static void check_encode(const Tokenizer *t)
{
    static const char *texts[] = {
        "", "a", " ", "Hello, world!", "\xe2\x96\x81x", "caf\xc3\xa9 \xf0\x9f\x98\x80",
        "\x80\xff\xc3", "<0x41><s>\n</s>", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    int V = tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int max = (int)strlen(texts[i]) + 3, n = -1;
        int *ids = malloc(sizeof(int) * (size_t)max);
        LxError err[1] = {{0}};
        if (!ids)
            return;
        if (tokenizer_encode(t, texts[i], 1, 1, ids, max, &n, err) == 0) {
            if (n < 2 || n > max || ids[0] != TOKEN_BOS || ids[n - 1] != TOKEN_EOS)
                die("encode gave a malformed sequence", n, texts[i]);
            for (int k = 0; k < n; k++)
                if (ids[k] < 0 || ids[k] >= V)
                    die("encode gave an id outside the vocabulary", ids[k], texts[i]);
        } else if (err->message[0] == '\0' || strchr(err->message, '\n')) {
            die("encode failed without a one-line message", (int)i, err->message);
        }
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        fuzz_count("tokenizer", data, size, 1);
        return 0;
    }
    int V = (int16_t)(uint16_t)(data[0] | data[1] << 8);
    const uint8_t *file = data + 2;
    size_t file_size = size - 2;
    LxError err[1] = {{0}};
    Tokenizer *t = tokenizer_parse(file, file_size, V, NAME, err);
    fuzz_count("tokenizer", data, size, t == NULL);
    if (!t) {
        if (strncmp(err->message, NAME ": ", strlen(NAME ": ")) != 0 || err->message[strlen(NAME ": ")] == '\0')
            die("tokenizer_parse failed without a message naming the file", V, err->message);
        if (strchr(err->message, '\n'))
            die("message is more than one line", V, err->message);
        return 0;
    }
    if (V > 0 && tokenizer_vocab_size(t) != V)
        die("the tokenizer has another size than asked for", tokenizer_vocab_size(t), NULL);
    if (tokenizer_vocab_size(t) < 3)
        die("accepted a vocabulary without room for BOS and EOS", tokenizer_vocab_size(t), NULL);
    check_against_file(t, file, file_size);
    check_ids(t);
    check_encode(t);
    tokenizer_free(t);
    return 0;
}
