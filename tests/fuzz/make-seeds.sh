#!/bin/sh
# make-seeds.sh [LLAMIX]: (re)write the seed corpus of the fuzz targets, tests/fuzz/corpus/*.
# LLAMIX is a built llamix program (default: $LLAMIX, else ./llamix); it writes the checkpoints
# (`llamix init` with small custom shapes so every seed stays under 8 KB, the targets' max_len).
# The tokenizers are hand-made here, byte by byte: none is copied from elsewhere.
# The output is deterministic; commit it after running.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
llamix=${1:-${LLAMIX:-./llamix}}
[ -x "$llamix" ] || { echo "make-seeds.sh: no llamix program at '$llamix' (give its path)" >&2; exit 2; }
corpus=$here/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------ binary helpers (POSIX sh)
u8() { printf "\\$(printf %03o "$(($1 & 255))")"; }
u16() { u8 "$1"; u8 $(($1 >> 8)); }
u32() { u8 "$1"; u8 $(($1 >> 8)); u8 $(($1 >> 16)); u8 $(($1 >> 24)); }
# f32 N: the float32 bits of the whole number N (|N| < 2^24).
f32() { # (the helpers' variables start with _: POSIX sh has no locals)
    _n=$1 _s=0 _e=0
    if [ "$_n" -eq 0 ]; then u32 0; return; fi
    if [ "$_n" -lt 0 ]; then _s=1 _n=$((-_n)); fi
    while [ $((1 << (_e + 1))) -le "$_n" ]; do _e=$((_e + 1)); done
    u32 $(((_s << 31) | ((_e + 127) << 23) | ((_n << (23 - _e)) & 0x7fffff)))
}
# entry SCORE PIECE: one tokenizer entry; PIECE takes printf %b escapes (\n, \0NNN octal).
entry() { f32 "$1"; u32 "$(printf '%b' "$2" | wc -c)"; printf '%b' "$2"; }
# entry_bits BITS PIECE: the same with the raw bits of the score (NaN, infinity, -1e10).
entry_bits() { u32 "$1"; u32 "$(printf '%b' "$2" | wc -c)"; printf '%b' "$2"; }

specials() { entry 0 '<unk>'; entry 0 '\n<s>\n'; entry 0 '\n</s>\n'; }
byte_tokens() { # "<0x00>".."<0xFF>" at ids 3..258
    _b=0
    while [ $_b -lt 256 ]; do entry 0 "$(printf '<0x%02X>' $_b)"; _b=$((_b + 1)); done
}
# A 16-entry character-level vocabulary with a few merges (no byte tokens).
vocab16() {
    u32 6; specials
    entry -1 ' '; entry -2 'e'; entry -3 'h'; entry -4 'l'; entry -5 'o'; entry -6 'w'
    entry -7 'r'; entry -8 'd'; entry 1 'he'; entry 2 'll'; entry 0 'lo'; entry 3 ' h'; entry -9 'hello'
}
# byte tokens, letters and merges: 259 + 14 entries.
vocab_bytes() {
    u32 6; specials; byte_tokens
    entry -1 ' '; entry -2 'a'; entry -3 'b'; entry -4 'c'; entry -5 't'; entry -6 'h'; entry -7 'e'
    entry -8 '\303\251'; entry 1 'th'; entry 1 'he'; entry 2 'the'; entry 3 ' the'; entry 0 'ab'
    entry 0 'bc'
}

rm -f "$corpus"/model/* "$corpus"/tokenizer/* "$corpus"/encode/*
mkdir -p "$corpus/model" "$corpus/tokenizer" "$corpus/encode"

# ------------------------------------------------------------------ checkpoints
small="--dim 8 --hidden-dim 16 --layers 1 --heads 2 --kv-heads 1 --vocab 16 --seq-len 8"
init() { name=$1; shift; "$llamix" init "$@" -s 7 -o "$corpus/model/$name" 2>/dev/null; }
init v1-shared.bin $small --version 1
init v1-separate.bin $small --version 1 --separate-classifier
init v0-shared.bin $small --version 0
init v0-separate.bin $small --version 0 --separate-classifier
init v1-mha-2layers.bin --dim 4 --hidden-dim 6 --layers 2 --heads 2 --kv-heads 2 --vocab 5 --seq-len 3 --version 1
init v0-seq1.bin --dim 4 --hidden-dim 4 --layers 1 --heads 1 --kv-heads 1 --vocab 3 --seq-len 1 --version 0
init v1-gqa4.bin --dim 16 --hidden-dim 8 --layers 1 --heads 4 --kv-heads 1 --vocab 4 --seq-len 4 --version 1
# Bad ones: a version 2 (Q8_0) header alone, an unknown version, a cut file, a bare v0 header.
{ u32 0x616b3432; u32 2; for d in 8 16 1 2 1 16 8; do u32 $d; done; u8 1; u32 4
  i=41; while [ $i -lt 256 ]; do u8 0; i=$((i + 1)); done; u32 0; u32 0; } >"$corpus/model/v2-header.bin"
{ u32 0x616b3432; u32 3; for d in 8 16 1 2 1 16 8; do u32 $d; done
  i=36; while [ $i -lt 256 ]; do u8 0; i=$((i + 1)); done; } >"$corpus/model/v3-header.bin"
head -c 300 "$corpus/model/v1-shared.bin" >"$corpus/model/v1-truncated.bin"
head -c 28 "$corpus/model/v0-shared.bin" >"$corpus/model/v0-header-only.bin"
# Version 2 (int8 Q8_0; the small shape's default group size is 8, its first scale at byte 480),
# good and hostile: group size 0, negative, not dividing dim, a NaN and a negative scale, a
# trailing byte, a cut file.
init v2-shared.bin $small --quant q8_0
init v2-separate.bin $small --quant q8_0 --separate-classifier
init v2-gqa4.bin --dim 16 --hidden-dim 8 --layers 1 --heads 4 --kv-heads 1 --vocab 4 --seq-len 4 --quant q8_0
v2_patched() { # NAME OFFSET BYTES...: v2-shared.bin with BYTES written at OFFSET
    _name=$1 _at=$2; shift 2
    { head -c "$_at" "$corpus/model/v2-shared.bin"; for _b in "$@"; do u8 "$_b"; done
      tail -c +$((_at + $# + 1)) "$corpus/model/v2-shared.bin"; } >"$corpus/model/$_name"
}
v2_patched v2-gs0.bin 37 0 0 0 0
v2_patched v2-gs-negative.bin 37 255 255 255 255
v2_patched v2-gs3.bin 37 3 0 0 0
v2_patched v2-scale-nan.bin 480 0 0 192 127
v2_patched v2-scale-negative.bin 484 0 0 128 191
{ cat "$corpus/model/v2-shared.bin"; u8 0; } >"$corpus/model/v2-trailing.bin"
head -c 500 "$corpus/model/v2-shared.bin" >"$corpus/model/v2-truncated.bin"

# ------------------------------------------------------------------ tokenizers: int16 V, then the file
t=$corpus/tokenizer
{ u16 5; u32 6; specials; entry 0 ' '; entry -1 'a'; } >"$t/v5.bin"
{ u16 16; vocab16; } >"$t/v16-chars.bin"
{ u16 273; vocab_bytes; } >"$t/v273-bytes.bin"
{ u16 15; vocab16; } >"$t/v15-too-many-entries.bin"
{ u16 17; vocab16; } >"$t/v17-too-few-entries.bin"
{ u16 3; u32 6; specials; } >"$t/v3-specials-only.bin"
{ u16 4; u32 6; specials; entry_bits 0x7fc00000 'x'; } >"$t/v4-nan-score.bin"
{ u16 4; u32 6; specials; entry_bits 0xff800000 'x'; } >"$t/v4-inf-score.bin"
{ u16 4; u32 6; specials; entry_bits 0xd01502f9 'x'; } >"$t/v4-score-floor.bin"
{ u16 4; u32 6; specials; entry 0 ''; } >"$t/v4-empty-piece.bin"
{ u16 4; u32 6; specials; entry 0 'a\0000b'; } >"$t/v4-nul-in-piece.bin"
{ u16 4; u32 5; specials; } >"$t/v4-piece-too-long.bin"
{ u16 4; u32 0; } >"$t/v4-mtl-zero.bin"
{ u16 65535; u32 6; specials; } >"$t/v-negative.bin"

# ------------------------------------------------------------------ encoder inputs: flags, then text
# flags: bits 0-1 vocabulary (0 bytes, 1 characters, 2 some bytes, 3 from the input), 4 BOS, 8 EOS.
e=$corpus/encode
{ u8 4; printf 'Hello world, the end.'; } >"$e/bytes-bos.bin"
{ u8 12; printf 'caf\303\251 \346\227\245\346\234\254 \360\237\230\200!'; } >"$e/bytes-utf8-bos-eos.bin"
{ u8 4; printf 'ctl\001\177\ttab\r\n\nx'; } >"$e/bytes-control.bin"
{ u8 4; printf '\200\377\303 bad \355\240\200 utf8'; } >"$e/bytes-invalid-utf8.bin"
{ u8 4; printf 'aaaaaaaaaaaaaaaaaaa abcabc   the zz'; } >"$e/bytes-ties.bin"
{ u8 0; printf 'the other'; } >"$e/bytes-no-bos.bin"
{ u8 4; } >"$e/bytes-empty.bin"
{ u8 5; printf 'hello there'; } >"$e/chars-bos.bin"
{ u8 13; printf 'hello \303\251t\303\251'; } >"$e/chars-unknown.bin"
{ u8 6; printf 'partial <0x41> \303\251 \302\261'; } >"$e/partial-bos.bin"
{ vocab16 >"$tmp/v16"; u8 7; u16 16; u16 "$(wc -c <"$tmp/v16")"; cat "$tmp/v16"; printf 'hello world'; } >"$e/own-v16.bin"
{ u32 6; specials; b=0; while [ $b -lt 8 ]; do entry 0 "$(printf '<0x%02X>' $b)"; b=$((b + 1)); done
  entry -1 ' '; entry -2 'a'; entry -3 'b'; entry 1 'ab'; entry 2 ' ab'; } >"$tmp/v16b"
{ u8 15; u16 16; u16 "$(wc -c <"$tmp/v16b")"; cat "$tmp/v16b"; printf 'ab ba\001\007 abab\010'; } >"$e/own-some-bytes.bin"

echo "make-seeds.sh: wrote $(find "$corpus" -type f ! -name '.*' | wc -l) seeds, $(cat "$corpus"/*/* | wc -c) bytes"
ls -l "$corpus"/*/ | awk '$5 > 8192 { print "make-seeds.sh: WARNING: over 8192 bytes: " $NF }'
