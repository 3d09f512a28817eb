#!/bin/sh
# embed.sh: examples/embed, the program that uses only <llamix.h> and the shared library, as an
# outside program would (run by make check).
#
# Its fixtures are random checkpoints from `llamix init` and a tokenizer written byte by byte
# (as in tests/cli.sh). `embed.sh real` (tests/embed-real.sh) runs instead the cases that need
# the real llama2.c models in $LLAMIX_MODELS: the greedy text of stories260K must be the start of
# llama2.c's test_all.py text, and a two-model ensemble must run; it exits 77 (automake's SKIP)
# without them.
# Environment: LLAMIX_EMBED (the example, default examples/embed), LLAMIX (the program, for
# `llamix init`, default ./llamix), LLAMIX_MODELS (may be absent).
# Prints one line per case and "N passed, N failed"; exits 1 if anything failed.
LLAMIX_EMBED=${LLAMIX_EMBED:-examples/embed}
LLAMIX=${LLAMIX:-./llamix}
part=${1:-}
for p in "$LLAMIX_EMBED" "$LLAMIX"; do
    if [ ! -x "$p" ]; then
        echo "embed.sh: no program at '$p' (set LLAMIX_EMBED and LLAMIX)" >&2
        exit 1
    fi
done
. "$(dirname "$0")/harness.sh"
error_starts="embed: |usage: embed "

# works NAME CMD...: CMD must exit with 0, print nothing on stderr, and print the version line,
# the text and the closing "N tokens, stopped by ..." line. The text goes to $tmp/text (with
# the newline embed adds after it).
works() {
    name=$1
    shift
    run "$@"
    if [ "$status" -ne 0 ]; then failure "$name" "exit status $status, want 0"; return 1; fi
    if [ -s "$tmp/err" ]; then failure "$name" "printed on stderr"; return 1; fi
    if ! head -n 1 "$tmp/out" | grep -q '^llamix [0-9][0-9.]*$'; then
        failure "$name" "the first line is not 'llamix VERSION'"; return 1
    fi
    if ! grep -q '^[0-9][0-9]* tokens, stopped by ' "$tmp/out"; then
        failure "$name" "no 'N tokens, stopped by ...' line"; return 1
    fi
    sed -n '2,$p' "$tmp/out" | sed '/^[0-9][0-9]* tokens, stopped by /,$d' >"$tmp/text"
    pass "$name"
}

# starts_with NAME FILE: the last text ($tmp/text without its final newline) is a prefix of FILE.
starts_with() {
    _n=$(($(wc -c <"$tmp/text") - 1))
    head -c "$_n" "$tmp/text" >"$tmp/got"
    head -c "$_n" "$2" >"$tmp/want"
    if [ "$_n" -gt 0 ] && cmp -s "$tmp/got" "$tmp/want"; then pass "$1"; else
        failure "$1" "the text ($_n bytes) is not the start of the expected text"
        diff "$tmp/want" "$tmp/got" | sed -n '1,10s/^/      diff: /p'
    fi
}

if [ "$part" != real ]; then
# ------------------------------------------------------------------ fixtures
# A llama2.c tokenizer.bin written byte by byte (see tests/cli.sh): 16 pieces, character level
# with merges, no byte tokens:
#   0 <unk> 1 BOS 2 EOS 3 ' ' 4 e 5 h 6 l 7 o 8 w 9 r 10 d 11 he 12 ll 13 lo 14 ' h' 15 hello
tok16 hello >"$tmp/tok16.bin"
{ tok16 hello; for p in a b c d; do entry -20 "$p"; done; } >"$tmp/tok20.bin"

init "$tmp/m16.bin" --shape tiny --vocab 16 -s 1
init "$tmp/m16b.bin" --shape tiny --vocab 16 -s 2 --version 0 --separate-classifier
init "$tmp/m20.bin" --shape tiny --vocab 20 -s 3
m=$tmp/m16.bin z=$tmp/tok16.bin

# ------------------------------------------------------------------ errors
run "$LLAMIX_EMBED"
if [ "$status" -eq 2 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^usage: embed ' "$tmp/err"
then pass "no arguments: one usage line on stderr, exit 2"
else failure "no arguments" "exit status $status (want 2) with one usage line on stderr and nothing on stdout"; fi
error "one argument" 2 "usage" -- "$LLAMIX_EMBED" "$m"
error "too many arguments" 2 "usage" -- "$LLAMIX_EMBED" "$m" "$z" hello "$m" extra
error "-t abc" 2 "-t" "abc" -- "$LLAMIX_EMBED" -t abc "$m" "$z"
error "-t -1" 2 "-t" "-1" -- "$LLAMIX_EMBED" -t -1 "$m" "$z"
error "missing model" 1 "$tmp/nope.bin" -- "$LLAMIX_EMBED" "$tmp/nope.bin" "$z"
error "missing second model" 1 "$tmp/nope.bin" -- "$LLAMIX_EMBED" "$m" "$z" hello "$tmp/nope.bin"
error "model as tokenizer" 1 "$m" -- "$LLAMIX_EMBED" "$m" "$m"
error "tokenizer for another vocabulary" 1 "$tmp/tok20.bin" "20" "16" -- "$LLAMIX_EMBED" "$m" "$tmp/tok20.bin"
error "members with different vocab sizes" 1 "vocab" "$tmp/m20.bin" -- "$LLAMIX_EMBED" "$m" "$z" hello "$tmp/m20.bin"
error "prompt the vocabulary cannot encode" 1 "encode" -- "$LLAMIX_EMBED" "$m" "$z" xyz
if [ -w /dev/full ]; then
    cmd="$LLAMIX_EMBED $m $z hello >/dev/full"
    "$LLAMIX_EMBED" "$m" "$z" hello >/dev/full 2>"$tmp/err" </dev/null
    status=$? && : >"$tmp/out"
    if [ "$status" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^embed: writing the output: ' "$tmp/err"
    then pass "a full disk (/dev/full): one error line, exit 1"
    else failure "a full disk (/dev/full)" "exit status $status (want 1) with one 'embed: writing the output' line"; fi
else
    echo "skip: no /dev/full to test write errors with"
fi

# ------------------------------------------------------------------ a random model
if works "one random model" "$LLAMIX_EMBED" "$m" "$z" hello; then
    case $(head -c 5 "$tmp/text") in
        hello) pass "the prompt comes first" ;;
        *) failure "the prompt comes first" "the text does not start with 'hello'" ;;
    esac
    v=$("$LLAMIX" --version 2>/dev/null | head -n 1 | cut -d ' ' -f 1-2)
    if [ "$v" = "$(head -n 1 "$tmp/out")" ]; then pass "the library's version is the program's ($v)"
    else failure "lx_version()" "'$(head -n 1 "$tmp/out")' but llamix --version says '$v'"; fi
fi
cp "$tmp/out" "$tmp/first"
works "the same run again" "$LLAMIX_EMBED" "$m" "$z" hello
if cmp -s "$tmp/out" "$tmp/first"; then pass "seed 42 gives the same text every run"
else failure "seed 42 gives the same text every run" "two runs printed different text"; fi
works "an empty prompt" "$LLAMIX_EMBED" "$m" "$z" ""
if works "greedy (-t 0)" "$LLAMIX_EMBED" -t 0 "$m" "$z" hello; then
    # The library the example links and the llamix program must agree.
    run "$LLAMIX" generate -m "$m" -z "$z" --temp 0 -n 48 -p hello
    if [ "$status" -eq 0 ] && cmp -s "$tmp/out" "$tmp/text"; then pass "greedy: the same text as llamix generate --temp 0"
    else failure "greedy: the same text as llamix generate --temp 0" "llamix exited $status or printed other text"; fi
fi
if works "an ensemble of two random models" "$LLAMIX_EMBED" "$m" "$z" hello "$tmp/m16b.bin"; then
    if grep -q '^member 1 (' "$tmp/out" && grep -q '^member 2 (' "$tmp/out"; then pass "the ensemble reports both members"
    else failure "the ensemble reports both members" "no 'member 1' and 'member 2' lines"; fi
fi

fi

# ------------------------------------------------------------------ the real models
if [ "$part" = real ]; then
    real_models_or_skip
    if works "stories260K greedy" "$LLAMIX_EMBED" -t 0 "$s260" "$tok512"; then
        starts_with "stories260K greedy: the start of llama2.c's text" "$tmp/expected"
    fi
    if [ -f "$models/llama2xs_tok512.bin" ]; then
        if works "an ensemble of stories260K and llama2xs_tok512" "$LLAMIX_EMBED" "$s260" "$tok512" \
            "Once upon a time" "$models/llama2xs_tok512.bin"; then
            if grep -q '^member 1 (' "$tmp/out" && grep -q '^member 2 (' "$tmp/out"; then pass "the ensemble reports both members"
            else failure "the ensemble reports both members" "no 'member 1' and 'member 2' lines"; fi
        fi
    else
        echo "skip: llama2xs_tok512.bin not in $models"
    fi
    if [ -f "$models/tok105.bin" ]; then
        error "stories260K with tok105.bin" 1 "tok105.bin" "512" -- "$LLAMIX_EMBED" "$s260" "$models/tok105.bin"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
