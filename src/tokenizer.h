/* tokenizer.h: llama2.c's tokenizer.bin: byte-pair encoding by merge scores, and decoding.
 *
 * File format (little-endian): uint32 max_token_length, then for each id 0..V-1: float32 score,
 * int32 length, `length` bytes of the piece (no terminator). V is not stored: it comes from the
 * model, and a file with fewer or more entries than V is an error. Ids 1 and 2 are BOS and EOS.
 * In the usual vocabularies ids 3..258 are the byte pieces "<0x00>".."<0xFF>". */
#ifndef LLAMIX_TOKENIZER_H
#define LLAMIX_TOKENIZER_H

#include <stddef.h>

#define TOKEN_BOS 1
#define TOKEN_EOS 2

typedef struct Tokenizer Tokenizer; /* opaque */

/* Load a tokenizer of exactly vocab_size entries (0: as many as the file holds, for tools that
 * have no model at hand). NULL on error with a message naming path. */
Tokenizer *tokenizer_open(const char *path, int vocab_size, char err[]);
/* The same from memory (the file's bytes; copied). `name` is used in messages. */
Tokenizer *tokenizer_parse(const void *data, size_t size, int vocab_size, const char *name, char err[]);
void tokenizer_free(Tokenizer *t); /* NULL is fine */

int tokenizer_vocab_size(const Tokenizer *t);
/* The piece of id (raw bytes, NUL-terminated copy), and its length. */
const char *tokenizer_piece(const Tokenizer *t, int id);
int tokenizer_piece_length(const Tokenizer *t, int id);
float tokenizer_score(const Tokenizer *t, int id);

/* Encode UTF-8 text. Writes at most max_tokens ids into tokens and the count into *n_tokens.
 * bos: prepend BOS; eos: append EOS. Returns -1 with a message if the text has a character the
 * vocabulary cannot represent (no piece and no byte fallback) or max_tokens is too small
 * (strlen(text) + 3 is always enough). */
int tokenizer_encode(const Tokenizer *t, const char *text, int bos, int eos, int *tokens,
                     int max_tokens, int *n_tokens, char err[]);

/* The text to print for `token` following `prev`: strips the leading space after BOS, turns
 * "<0xXX>" into that byte, and returns "" for a single byte that is an ASCII control character
 * other than whitespace (bytes >= 0x80 are kept: they are parts of UTF-8 characters).
 * The result points into the tokenizer (valid until tokenizer_free). */
const char *tokenizer_decode(const Tokenizer *t, int prev, int token);

/* 1 if a and b have identical pieces (and sizes); otherwise 0 and, in why, the first difference. */
int tokenizer_same(const Tokenizer *a, const Tokenizer *b, char why[]);

#endif
