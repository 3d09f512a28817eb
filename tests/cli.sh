#!/bin/sh
# cli.sh: the command line's error cases and a few positive runs (run by make check).
#
# Every error case checks the exit status (2 for bad flags or values, 1 for a file or a run that
# fails) and that stderr is exactly ONE line that starts with "llamix: " and names the input and
# the problem (each case lists strings the line must contain).
# The fixtures are made here: random checkpoints from `llamix init` and hand-made tokenizers.
# `cli.sh real` (tests/cli-real.sh) runs instead the cases that need the real llama2.c models in
# $LLAMIX_MODELS: stories260K's greedy text against llama2.c's test_all.py, stop strings on it,
# ensembles of two real models, and mismatches; it exits 77 (automake's SKIP) without them.
# Environment: LLAMIX (the program, default ./llamix), LLAMIX_MODELS (may be absent).
# Prints one line per case and "N passed, N failed"; exits 1 if anything failed.
LLAMIX=${LLAMIX:-./llamix}
part=${1:-}
if [ ! -x "$LLAMIX" ]; then
    echo "cli.sh: no llamix program at '$LLAMIX' (set LLAMIX)" >&2
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
passed=0 failed=0

pass() { passed=$((passed + 1)); echo "ok: $1"; }
failure() { # failure NAME WHY: report, with the command and what it printed
    failed=$((failed + 1))
    echo "FAIL: $1: $2"
    echo "      command: $cmd"
    sed -n '1,6s/^/      stderr: /p' "$tmp/err"
    sed -n '1,3s/^/      stdout: /p' "$tmp/out"
}
run() { # run CMD...: stdout, stderr and status into $tmp/out, $tmp/err, $status
    cmd=$*
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
}

# error NAME STATUS STRING... -- CMD...: CMD must exit with STATUS and print to stderr one line
# that starts with "llamix: " and contains every STRING.
error() {
    name=$1 want=$2
    shift 2
    printf '' >"$tmp/strings"
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        printf '%s\n' "$1" >>"$tmp/strings"
        shift
    done
    shift
    run "$@"
    if [ "$status" -ne "$want" ]; then failure "$name" "exit status $status, want $want"; return; fi
    lines=$(wc -l <"$tmp/err")
    if [ "$lines" -ne 1 ] || [ -n "$(tail -c 1 "$tmp/err")" ]; then
        failure "$name" "stderr has $lines lines, want exactly one"; return
    fi
    case $(cat "$tmp/err") in
        "llamix: "*) ;;
        *) failure "$name" "stderr does not start with 'llamix: '"; return ;;
    esac
    while IFS= read -r s; do
        if ! grep -qF -e "$s" "$tmp/err"; then failure "$name" "stderr does not mention '$s'"; return; fi
    done <"$tmp/strings"
    pass "$name"
}

# works NAME CMD...: CMD must exit with 0 and print something on stdout.
works() {
    name=$1
    shift
    run "$@"
    if [ "$status" -ne 0 ]; then failure "$name" "exit status $status, want 0"; return; fi
    if [ ! -s "$tmp/out" ]; then failure "$name" "printed nothing on stdout"; return; fi
    pass "$name"
}

# stdout_is NAME FILE: the last run printed exactly the contents of FILE.
stdout_is() {
    if cmp -s "$tmp/out" "$2"; then pass "$1"; else
        failure "$1" "stdout differs from the expected text"
        diff "$2" "$tmp/out" | sed -n '1,10s/^/      diff: /p'
    fi
}

# ------------------------------------------------------------------ fixtures
# Tokenizer files (llama2.c tokenizer.bin) written byte by byte; POSIX sh has no locals, so the
# helpers' variables start with _.
u8() { printf "\\$(printf %03o "$(($1 & 255))")"; }
u32() { u8 "$1"; u8 $(($1 >> 8)); u8 $(($1 >> 16)); u8 $(($1 >> 24)); }
f32() { # the float32 bits of the whole number $1 (|n| < 2^24)
    _n=$1 _s=0 _e=0
    if [ "$_n" -eq 0 ]; then u32 0; return; fi
    if [ "$_n" -lt 0 ]; then _s=1 _n=$((-_n)); fi
    while [ $((1 << (_e + 1))) -le "$_n" ]; do _e=$((_e + 1)); done
    u32 $(((_s << 31) | ((_e + 127) << 23) | ((_n << (23 - _e)) & 0x7fffff)))
}
entry() { f32 "$1"; u32 "$(printf '%b' "$2" | wc -c)"; printf '%b' "$2"; } # entry SCORE PIECE
# 16 pieces, character level with merges, no byte tokens:
#   0 <unk> 1 BOS 2 EOS 3 ' ' 4 e 5 h 6 l 7 o 8 w 9 r 10 d 11 he 12 ll 13 lo 14 ' h' 15 hello
tok16() {
    u32 6; entry 0 '<unk>'; entry 0 '\n<s>\n'; entry 0 '\n</s>\n'
    entry -1 ' '; entry -2 'e'; entry -3 'h'; entry -4 'l'; entry -5 'o'; entry -6 'w'
    entry -7 'r'; entry -8 'd'; entry 1 'he'; entry 2 'll'; entry 0 'lo'; entry 3 ' h'; entry -9 "$1"
}
tok16 hello >"$tmp/tok16.bin"
tok16 hellO >"$tmp/tok16b.bin" # same size, one piece differs
{ tok16 hello; for p in a b c d; do entry -20 "$p"; done; } >"$tmp/tok20.bin"

init() { out=$1; shift; "$LLAMIX" init "$@" -o "$out" 2>"$tmp/init.err" || { cat "$tmp/init.err"; exit 1; }; }
init "$tmp/m16.bin" --shape tiny -s 1
init "$tmp/m16b.bin" --shape tiny -s 2 --version 0 --separate-classifier
init "$tmp/m20.bin" --shape tiny --vocab 20 -s 3
head -c 1000 "$tmp/m16.bin" >"$tmp/truncated.bin"
printf '' >"$tmp/empty.bin"
printf 'this is not a checkpoint, just some text that is long enough\n' >"$tmp/text.bin"
mkdir "$tmp/dir"
m=$tmp/m16.bin z=$tmp/tok16.bin
long="hello hello hello hello hello hello hello hello"

if [ "$part" != real ]; then
# ------------------------------------------------------------------ the top level
run "$LLAMIX"
if [ "$status" -eq 2 ] && grep -q "usage" "$tmp/err" && [ ! -s "$tmp/out" ]; then pass "no arguments: usage on stderr, exit 2"
else failure "no arguments" "exit status $status (want 2) with the usage on stderr"; fi
run "$LLAMIX" --help
if [ "$status" -eq 0 ] && grep -q "usage" "$tmp/out"; then pass "--help: usage on stdout, exit 0"
else failure "--help" "exit status $status (want 0) with the usage on stdout"; fi
run "$LLAMIX" --version
if [ "$status" -eq 0 ] && grep -q "^llamix [0-9]" "$tmp/out"; then pass "--version"
else failure "--version" "exit status $status (want 0), stdout should start with 'llamix VERSION'"; fi
error "unknown command" 2 frobnicate -- "$LLAMIX" frobnicate

# ------------------------------------------------------------------ generate: flags and values
error "unknown flag" 2 "--bogus" -- "$LLAMIX" generate -m "$m" -z "$z" --bogus
error "flag without its value" 2 "-n" -- "$LLAMIX" generate -m "$m" -z "$z" -n
error "-n abc" 2 "-n" "abc" -- "$LLAMIX" generate -m "$m" -z "$z" -n abc
error "-n 0" 2 "-n" -- "$LLAMIX" generate -m "$m" -z "$z" -n 0
error "-n 1x" 2 "-n" "1x" -- "$LLAMIX" generate -m "$m" -z "$z" -n 1x
error "--temp -1" 2 "--temp" "-1" -- "$LLAMIX" generate -m "$m" -z "$z" --temp -1
error "--temp nan" 2 "--temp" "nan" -- "$LLAMIX" generate -m "$m" -z "$z" --temp nan
error "--top-p 2" 2 "--top-p" "2" -- "$LLAMIX" generate -m "$m" -z "$z" --top-p 2
error "--top-k -1" 2 "--top-k" "-1" -- "$LLAMIX" generate -m "$m" -z "$z" --top-k -1
error "--min-p 1" 2 "--min-p" -- "$LLAMIX" generate -m "$m" -z "$z" --min-p 1
error "-t 0" 2 "-t" "0" -- "$LLAMIX" generate -m "$m" -z "$z" -t 0
error "-s -5" 2 "-s" "-5" -- "$LLAMIX" generate -m "$m" -z "$z" -s -5
error "-c 0" 2 "-c" "0" -- "$LLAMIX" generate -m "$m" -z "$z" -c 0
error "no model" 2 "model" -- "$LLAMIX" generate -z "$z"
error "--stop ''" 2 "--stop" "empty" -- "$LLAMIX" generate -m "$m" -z "$z" -r ""
error "-c beyond seq_len" 2 "-c" "64" -- "$LLAMIX" generate -m "$m" -z "$z" -c 65
error "output to a full disk" 1 "standard output" -- sh -c '"$0" generate -m "$1" -z "$2" -n 5 -s 1 >/dev/full' "$LLAMIX" "$m" "$z"
error "prompt longer than -c" 2 "prompt" "8" -- "$LLAMIX" generate -m "$m" -z "$z" -c 8 -p "$long"
error "unknown --ensemble mode" 2 "--ensemble" "mixture-of-experts" -- \
    "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -e mixture-of-experts
error "-w 1,x" 2 "-w" -- "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -w 1,x
error "-w with 3 weights for 2 members" 2 "-w" -- \
    "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -w 0.5,0.3,0.2
error "-w with a negative weight" 2 "-w" -- "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -w 1,-1

# ------------------------------------------------------------------ generate: many sequences at once
error "-N 0" 2 "-N" "0" -- "$LLAMIX" generate -m "$m" -z "$z" -N 0
error "--parallel 0" 2 "--parallel" -- "$LLAMIX" generate -m "$m" -z "$z" -N 2 --parallel 0
error "-o xml" 2 "-o" "xml" -- "$LLAMIX" generate -m "$m" -z "$z" -o xml
error "--prompts with -p" 2 "--prompts" -- "$LLAMIX" generate -m "$m" -z "$z" -p hello --prompts "$tmp/nope.txt"
error "missing --prompts file" 1 "$tmp/nope.txt" -- "$LLAMIX" generate -m "$m" -z "$z" --prompts "$tmp/nope.txt"
error "KV caches beyond memory" 2 "--parallel 8" "-c 64" -- env LLAMIX_MEM_AVAILABLE=100000 \
    "$LLAMIX" generate -m "$m" -z "$z" -N 8 -c 64 -s 1
error "batch output to a full disk" 1 "standard output" -- \
    sh -c '"$0" generate -m "$1" -z "$2" -n 5 -N 3 -s 1 >/dev/full' "$LLAMIX" "$m" "$z"
# sample j of -N is the run with -s s+j, token for token; jsonl has exactly the keys of the issue
run "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -p hello -n 12 -N 3 -s 7 -e me -o jsonl
cp "$tmp/out" "$tmp/batch.jsonl"
keys_ok=1 same=1
while IFS= read -r line; do
    k=$(printf '%s' "$line" | grep -o '"[a-z_]*":' | tr -d '":' | tr '\n' ' ')
    [ "$k" = "prompt_index sample seed text tokens stop members logprobs " ] || keys_ok=0
done <"$tmp/batch.jsonl"
for j in 0 1 2; do
    "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -p hello -n 12 -s $((7 + j)) -e me >"$tmp/one" 2>/dev/null
    want=$(sed -n '1s/^hello//p' "$tmp/one")
    got=$(sed -n "$((j + 1))p" "$tmp/batch.jsonl" | sed 's/.*"text":"\([^"]*\)".*/\1/')
    [ "$want" = "$got" ] || same=0
done
if [ "$status" -eq 0 ] && [ "$(wc -l <"$tmp/batch.jsonl")" -eq 3 ] && [ $keys_ok = 1 ] && [ $same = 1 ]; then
    pass "-N 3 -o jsonl: the keys, and sample j is the run with -s 7+j"
else failure "-N 3 -o jsonl" "status $status, keys ok $keys_ok, samples equal to single runs $same"; fi
printf 'hello\nhe\r\nlo\n' >"$tmp/prompts.txt"
run "$LLAMIX" generate -m "$m" -z "$z" --prompts "$tmp/prompts.txt" -N 2 --parallel 3 -n 6 -s 3 -o text
if [ "$status" -eq 0 ] && [ "$(grep -c '^=== prompt' "$tmp/out")" -eq 6 ] && grep -q '^=== prompt 3, sample 2, seed 4' "$tmp/out"; then
    pass "--prompts FILE -N 2 --parallel 3: six texts, in order"
else failure "--prompts FILE" "status $status, $(grep -c '^=== prompt' "$tmp/out") texts"; fi

# ------------------------------------------------------------------ generate: files
error "missing model" 1 "$tmp/nope.bin" "cannot open" -- "$LLAMIX" generate -m "$tmp/nope.bin" -z "$z"
error "directory as model" 1 "$tmp/dir" -- "$LLAMIX" generate -m "$tmp/dir" -z "$z"
error "empty model" 1 "$tmp/empty.bin" "empty" -- "$LLAMIX" generate -m "$tmp/empty.bin" -z "$z"
error "truncated model" 1 "$tmp/truncated.bin" "truncated" -- "$LLAMIX" generate -m "$tmp/truncated.bin" -z "$z"
error "text as model" 1 "$tmp/text.bin" -- "$LLAMIX" generate -m "$tmp/text.bin" -z "$z"
error "missing tokenizer" 1 "$tmp/nope.bin" "cannot open" -- "$LLAMIX" generate -m "$m" -z "$tmp/nope.bin"
error "directory as tokenizer" 1 "$tmp/dir" -- "$LLAMIX" generate -m "$m" -z "$tmp/dir"
error "tokenizer for another vocabulary" 1 "$tmp/tok20.bin" "20" "16" -- "$LLAMIX" generate -m "$m" -z "$tmp/tok20.bin"
error "model as tokenizer" 1 "$m" -- "$LLAMIX" generate -m "$m" -z "$m"
error "members with different vocab sizes" 1 "vocab" "$tmp/m20.bin" -- \
    "$LLAMIX" generate -m "$m" -m "$tmp/m20.bin" -z "$z" -e ce
error "members with different tokenizers" 1 "$tmp/tok16b.bin" "differ" -- \
    "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -z "$tmp/tok16b.bin"
error "prompt the vocabulary cannot encode" 1 "encode" -- "$LLAMIX" generate -m "$m" -z "$z" -p "xyz"

# ------------------------------------------------------------------ other subcommands
error "tokenize without -p" 2 "-p" -- "$LLAMIX" tokenize -z "$z"
error "tokenize: unknown flag" 2 "--bogus" -- "$LLAMIX" tokenize -z "$z" -p hello --bogus
error "tokenize: missing tokenizer" 1 "$tmp/nope.bin" -- "$LLAMIX" tokenize -z "$tmp/nope.bin" -m "$m" -p hello
error "init without -o" 2 "-o" -- "$LLAMIX" init --shape tiny
error "init --shape huge" 2 "--shape" "huge" -- "$LLAMIX" init --shape huge -o "$tmp/x.bin"
error "init --dim 0" 2 "--dim" "0" -- "$LLAMIX" init --dim 0 -o "$tmp/x.bin"
error "init: heads do not divide dim" 2 "n_heads" -- "$LLAMIX" init --heads 3 -o "$tmp/x.bin"
error "init into a missing folder" 1 "$tmp/no/x.bin" -- "$LLAMIX" init -o "$tmp/no/x.bin"

# ------------------------------------------------------------------ positive runs
works "generate with a random model" "$LLAMIX" generate -m "$m" -z "$z" -n 20 -s 1
works "empty prompt" "$LLAMIX" generate -m "$m" -z "$z" -p "" -n 5 -s 1
works "prompt echoed" "$LLAMIX" generate -m "$m" -z "$z" -p "hello world" -n 5 -s 1
if [ "$status" -eq 0 ]; then
    case $(head -c 11 "$tmp/out") in
        "hello world") pass "prompt echoed first" ;;
        *) failure "prompt echoed first" "stdout does not start with the prompt" ;;
    esac
fi
works "whole context (-n -1)" "$LLAMIX" generate -m "$m" -z "$z" -n -1 -s 1 --temp 0
# BOS ' h' e ll o ' h' e l: 8 tokens fill the context; one token is generated, then it stops.
works "prompt that fills -c exactly" "$LLAMIX" generate -m "$m" -z "$z" -c 8 -p "hello hel" -n 3 -s 1
for mode in ce me ce-mixture; do
    works "ensemble -e $mode" "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -e $mode -w 0.3,0.7 -n 20 -s 2
done
works "one tokenizer per member" "$LLAMIX" generate -m "$m" -m "$tmp/m16b.bin" -z "$z" -z "$z" -n 5 -s 2
# Routing: fit a previous-token router on one text, use it on another, in score, generate and
# bench; its file's mistakes and the flags that do not go together.
for i in $(seq 200); do printf 'hello world hello hello '; done >"$tmp/train.txt"
for i in $(seq 100); do printf 'world hello world '; done >"$tmp/held.txt"
m2="-m $m -m $tmp/m16b.bin"
works "score --fit-router" "$LLAMIX" score $m2 -z "$z" -f "$tmp/train.txt" --fit-router "$tmp/r.router" --router-prior 2 -q
if grep -q "^router " "$tmp/out" && [ -s "$tmp/r.router" ] && [ "$(ls "$tmp" | grep -c 'r\.router.')" -eq 0 ]; then
    pass "score --fit-router: a router row, the file, no temporary left"
else failure "score --fit-router: a router row, the file, no temporary left" "missing"; fi
works "score --router on held-out text" "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --router "$tmp/r.router" -q -o json
if grep -q '"router": {"path"' "$tmp/out"; then pass "score --router -o json: a router object"
else failure "score --router -o json: a router object" "missing"; fi
for mode in ce me; do
    works "generate --router -e $mode" "$LLAMIX" generate $m2 -z "$z" --router "$tmp/r.router" -e $mode -n 20 -s 2
done
works "bench --router" "$LLAMIX" bench $m2 --router "$tmp/r.router" -p 4 -n 8 -r 1 --no-limits -t 1
if grep -q "ns per token" "$tmp/out" && grep -q "me+router" "$tmp/out"; then pass "bench --router: routed tests and the router's cost"
else failure "bench --router: routed tests and the router's cost" "missing"; fi
error "generate --router with -w" 2 "-w" "--router" -- "$LLAMIX" generate $m2 -z "$z" --router "$tmp/r.router" -w 1,1
error "score --router with --fit-router" 2 "--fit-router" -- \
    "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --router "$tmp/r.router" --fit-router "$tmp/s.router"
error "score --router-prior alone" 2 "--router-prior" -- "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --router-prior 3
error "score --router-prior -1" 2 "--router-prior" -- \
    "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --fit-router "$tmp/s.router" --router-prior -1
error "generate --router of 2 members with 1" 1 "$tmp/r.router" "2 members" -- \
    "$LLAMIX" generate -m "$m" -z "$z" --router "$tmp/r.router" -n 3
error "generate --router of 16 ids with 20" 1 "$tmp/r.router" "16 token ids" -- \
    "$LLAMIX" generate -m "$tmp/m20.bin" -m "$tmp/m20.bin" --router "$tmp/r.router" -n 3 -z "$tmp/tok20.bin"
head -c 100 "$tmp/r.router" >"$tmp/cut.router"
error "generate --router truncated" 1 "$tmp/cut.router" "truncated" -- "$LLAMIX" generate $m2 -z "$z" --router "$tmp/cut.router"
error "score --router missing" 1 "$tmp/none.router" -- "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --router "$tmp/none.router"
error "score --fit-router into a missing folder" 1 "$tmp/no/r.router" -- \
    "$LLAMIX" score $m2 -z "$z" -f "$tmp/held.txt" --fit-router "$tmp/no/r.router" -q
error "bench --router of another K" 2 "--router" "2 members" -- "$LLAMIX" bench -m "$m" --router "$tmp/r.router" --no-limits
works "tokenize with -m" "$LLAMIX" tokenize -z "$z" -m "$m" -p "hello world"
# run.c's merges: " h" (score 3) first, then "ll" (2); "hello" is never reached.
printf '1 14 4 12 7 3 8 7 9 6 10\n' >"$tmp/want"
stdout_is "tokenize: the ids run.c gives" "$tmp/want"
works "tokenize --pieces --no-bos" "$LLAMIX" tokenize -z "$z" -m "$m" -p "hello" --pieces --no-bos
works "tokenize without -m (vocabulary from the file)" "$LLAMIX" tokenize -z "$z" -p "hello world"

fi

# ------------------------------------------------------------------ files that change under a run
if [ "$part" != real ]; then
# A checkpoint truncated while score reads it: one line naming the file, exit 1, no signal.
init "$tmp/big.bin" --shape 42M --vocab 16 -s 4
for i in $(seq 3000); do printf 'hello world hello hello '; done >"$tmp/long.txt"
"$LLAMIX" score -m "$tmp/big.bin" -z "$z" -f "$tmp/long.txt" -t 1 -q >/dev/null 2>"$tmp/race.err" &
pid=$!
sleep 1
truncate -s 4096 "$tmp/big.bin"
wait $pid
status=$?
cmd="score while the checkpoint is truncated"
if [ "$status" -eq 1 ] && [ "$(wc -l <"$tmp/race.err")" -eq 1 ] && grep -q "big.bin" "$tmp/race.err" &&
    grep -q "changed or was truncated" "$tmp/race.err"; then pass "$cmd"
else cp "$tmp/race.err" "$tmp/err"; : >"$tmp/out"; failure "$cmd" "exit status $status, want 1 and one line naming the file"; fi
# init over a checkpoint in use replaces it whole (a new file): the running generate goes on.
init "$tmp/big.bin" --shape 42M --vocab 16 -s 4
"$LLAMIX" generate -m "$tmp/big.bin" -z "$z" -n 200 -t 1 -s 1 >/dev/null 2>"$tmp/race.err" &
pid=$!
sleep 1
init "$tmp/big.bin" --shape tiny -s 5
wait $pid
status=$?
cmd="init over a checkpoint in use"
if [ "$status" -eq 0 ]; then pass "$cmd"; else cp "$tmp/race.err" "$tmp/err"; : >"$tmp/out"; failure "$cmd" "generate exited $status"; fi
works "the replaced checkpoint is the new one" "$LLAMIX" generate -m "$tmp/big.bin" -z "$z" -n 3 -s 1
ls -a "$tmp" | grep -q '^\.big' && failure "init leaves no temporary file" "found one in $tmp" || pass "init leaves no temporary file"
rm -f "$tmp/big.bin"
fi

# ------------------------------------------------------------------ the real models
models=${LLAMIX_MODELS:-}
if [ "$part" = real ]; then
    if [ -z "$models" ] || [ ! -f "$models/stories260K.bin" ] || [ ! -f "$models/tok512.bin" ]; then
        echo "SKIP: the real models (LLAMIX_MODELS='$models' has no stories260K.bin and tok512.bin)"
        exit 77
    fi
    s260=$models/stories260K.bin tok512=$models/tok512.bin
    # llama2.c test_all.py: run stories260K.bin -z tok512.bin -t 0.0 -n 200
    cat >"$tmp/expected" <<'EOF'
Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she
EOF
    works "stories260K greedy, 200 tokens" "$LLAMIX" generate -m "$s260" -z "$tok512" --temp 0 -n 200
    stdout_is "stories260K prints llama2.c's expected text" "$tmp/expected"
    # Stop strings: the text is cut just before the first one, wherever the tokens split it.
    works "stop string" "$LLAMIX" generate -m "$s260" -z "$tok512" --temp 0 -n 200 -r "red ball" -r "nowhere"
    printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, \n' >"$tmp/want"
    stdout_is "stop string: the text ends before it" "$tmp/want"
    case $(cat "$tmp/err") in *"stopped by a stop string"*) pass "stop string: the summary says so" ;;
        *) failure "stop string: the summary says so" "no 'stopped by a stop string' on stderr" ;; esac
    works "stop string never met" "$LLAMIX" generate -m "$s260" -z "$tok512" --temp 0 -n 200 -r "Lily's dog"
    stdout_is "stop string never met: the whole text" "$tmp/expected"
    if [ -f "$models/llama2xs_tok512.bin" ]; then
        for mode in ce me; do
            works "ensemble of stories260K and llama2xs_tok512, -e $mode" "$LLAMIX" generate \
                -m "$s260" -m "$models/llama2xs_tok512.bin" -z "$tok512" -e $mode -n 60 -s 7
        done
    else
        echo "skip: llama2xs_tok512.bin not in $models"
    fi
    if [ -f "$models/babyllama105.bin" ]; then
        error "stories260K with babyllama105: vocabularies differ" 1 "vocab" "babyllama105.bin" -- \
            "$LLAMIX" generate -m "$s260" -m "$models/babyllama105.bin" -z "$tok512"
    fi
    if [ -f "$models/tok105.bin" ]; then
        error "stories260K with tok105.bin" 1 "tok105.bin" "512" -- "$LLAMIX" generate -m "$s260" -z "$models/tok105.bin"
    fi
    if [ -f "$models/stories260K_q80_gs4.bin" ]; then
        error "a version 2 (Q8_0) checkpoint" 1 "stories260K_q80_gs4.bin" "version 2" -- \
            "$LLAMIX" generate -m "$models/stories260K_q80_gs4.bin" -z "$tok512"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
