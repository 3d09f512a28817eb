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
. "$(dirname "$0")/harness.sh"

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
tok16 hello >"$tmp/tok16.bin"
tok16 hellO >"$tmp/tok16b.bin" # same size, one piece differs
{ tok16 hello; for p in a b c d; do entry -20 "$p"; done; } >"$tmp/tok20.bin"

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
# Different tokenizers, one per member in order: the union vocabulary (issue 14).
for mode in me ce ce-unite; do
    works "members with different tokenizers, -e $mode" "$LLAMIX" generate -m "$m" -z "$z" -m "$tmp/m20.bin" \
        -z "$tmp/tok20.bin" -e $mode -n 8 -s 1
done
case $(cat "$tmp/err") in *"unknown ids received"*) pass "different tokenizers: the summary counts unknown ids" ;;
    *) failure "different tokenizers: the summary counts unknown ids" "no 'unknown ids received' on stderr" ;; esac
error "-z count that fits neither one nor every member" 2 "3 tokenizers" "$tmp/tok20.bin" "$tmp/m20.bin" -- \
    "$LLAMIX" generate -m "$m" -m "$tmp/m20.bin" -z "$z" -z "$tmp/tok20.bin" -z "$z"
error "a member's tokenizer of the wrong size" 1 "$tmp/m20.bin" "$tmp/tok16b.bin" -- \
    "$LLAMIX" generate -m "$m" -z "$z" -m "$tmp/m20.bin" -z "$tmp/tok16b.bin"
error "different tokenizers with a batch" 1 "share one tokenizer" -- \
    "$LLAMIX" generate -m "$m" -z "$z" -m "$tmp/m20.bin" -z "$tmp/tok20.bin" -N 2 -n 4 -s 1
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

# ------------------------------------------------------------------ poisoned weights
if [ "$part" != real ]; then
# One NaN in the token embedding, which is also the classifier (v1, shared): offset 256 + 4 x 160.
cp "$m" "$tmp/nan.bin"
printf '\000\000\300\177' | dd of="$tmp/nan.bin" bs=1 seek=896 conv=notrunc 2>/dev/null
printf 'hello world hello' >"$tmp/hello.txt"
error "NaN weights: generate" 1 "nan.bin" "not finite" -- "$LLAMIX" generate -m "$tmp/nan.bin" -z "$z" -n 5 -s 1
error "NaN weights: score" 1 "nan.bin" "not finite" -- "$LLAMIX" score -m "$tmp/nan.bin" -z "$z" -f "$tmp/hello.txt" -q
# Finite weights whose products overflow (the first 160 embedding values 3e38): the logits are
# not finite at run time, alone and in a batch of sequences (which once drew <unk>s from them).
cp "$m" "$tmp/huge.bin"
i=0; while [ $i -lt 160 ]; do printf '\346\261\141\177'; i=$((i + 1)); done |
    dd of="$tmp/huge.bin" bs=1 seek=256 conv=notrunc 2>/dev/null
error "overflowing weights: generate" 1 "huge.bin" "not finite" -- "$LLAMIX" generate -m "$tmp/huge.bin" -z "$z" -n 5 -s 1
error "overflowing weights: generate -N 2" 1 "huge.bin" "not finite" -- "$LLAMIX" generate -m "$tmp/huge.bin" -z "$z" -n 5 -s 1 -N 2
fi

# ------------------------------------------------------------------ interrupted bench
if [ "$part" != real ]; then
mkdir "$tmp/bt"
TMPDIR=$tmp/bt "$LLAMIX" bench --shape 110M -k 2 -r 1 -n 1 -p 1 --no-limits >/dev/null 2>&1 &
pid=$!
sleep 1
kill -INT $pid
wait $pid
if [ -z "$(ls -A "$tmp/bt")" ]; then pass "SIGINT while bench writes its members leaves nothing"
else : >"$tmp/err"; : >"$tmp/out"; cmd="bench interrupted"; failure "SIGINT while bench writes its members leaves nothing" "left: $(ls -A "$tmp/bt")"; fi
fi

# ------------------------------------------------------------------ files that change under a run
if [ "$part" != real ]; then
# A checkpoint truncated while score reads it: one line naming the file, exit 1, no signal.
init "$tmp/big.bin" --shape 42M --vocab 16 -s 4
for i in $(seq 3000); do printf 'hello world hello hello '; done >"$tmp/long.txt"
"$LLAMIX" score -m "$tmp/big.bin" -z "$z" -f "$tmp/long.txt" -t 1 -q >/dev/null 2>"$tmp/race.err" &
pid=$!
for i in $(seq 100); do grep -q big.bin "/proc/$pid/maps" 2>/dev/null && break; sleep 0.1; done # mapped
sleep 0.3
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
for i in $(seq 100); do grep -q big.bin "/proc/$pid/maps" 2>/dev/null && break; sleep 0.1; done
init "$tmp/big.bin" --shape tiny -s 5
wait $pid
status=$?
cmd="init over a checkpoint in use"
if [ "$status" -eq 0 ]; then pass "$cmd"; else cp "$tmp/race.err" "$tmp/err"; : >"$tmp/out"; failure "$cmd" "generate exited $status"; fi
works "the replaced checkpoint is the new one" "$LLAMIX" generate -m "$tmp/big.bin" -z "$z" -n 3 -s 1
ls -a "$tmp" | grep -q '^\.big' && failure "init leaves no temporary file" "found one in $tmp" || pass "init leaves no temporary file"
rm -f "$tmp/big.bin"
fi

# ------------------------------------------------------------------ issue 20: standard errors, names, bench options, thread waiting
if [ "$part" != real ]; then
# Standard errors (score): a member against itself differs by exactly 0 +- 0 on every token; two
# different members differ by a nonzero SE, and the paired difference is the difference of their
# NLLs (to the 6 printed decimals).
printf 'hello world hello hello world hello hello hello world' >"$tmp/se.txt"
works "score: the same member twice" "$LLAMIX" score -m "$m" -m "$m" -z "$z" -f "$tmp/se.txt" -q -o json
if grep -qF '"minus_member1": {"nll_nats": 0, "se": 0, "perplexity_ratio": 1}' "$tmp/out"; then
    pass "score -o json: member2 - member1 = 0 +- 0 for identical members"
else failure "score -o json: member2 - member1 = 0 +- 0 for identical members" "missing"; fi
works "score: two members" "$LLAMIX" score -m "$m" -m "$tmp/m16b.bin" -z "$z" -f "$tmp/se.txt" -q
if awk '$1 == "member1" { a = $3; sa = $4 } $1 == "member2" { b = $3; sb = $4 }
        /^# member2 - member1:/ { d = $5; s = $7 }
        END { exit !(sa > 0 && sb > 0 && s > 0 && (d - (b - a)) ^ 2 < 1e-11 && a != b) }' "$tmp/out"; then
    pass "score table: NLL +- SE per member, member2 - member1 is their difference, SE > 0"
else failure "score table: NLL +- SE per member, member2 - member1 is their difference, SE > 0" "wrong"; fi
if grep -q '^# ensemble - member[12] (the best member): [-+][0-9.]* +- [0-9.]* nats/token' "$tmp/out"; then
    pass "score table: ensemble - best member +- SE"
else failure "score table: ensemble - best member +- SE" "missing"; fi
works "score -o json: two members" "$LLAMIX" score -m "$m" -m "$tmp/m16b.bin" -z "$z" -f "$tmp/se.txt" -q -o json
if grep -q '"nll_se": [0-9.e-]*, "perplexity_se": ' "$tmp/out" && grep -q '"minus_best_member": {"member": [12], "nll_nats": ' "$tmp/out"; then
    pass "score -o json: nll_se, perplexity_se, minus_best_member"
else failure "score -o json: nll_se, perplexity_se, minus_best_member" "missing"; fi

# File names with control bytes in tables: escaped as \xHH, so a newline cannot start a row.
nl_name="$tmp/new
line.bin"
cp "$m" "$nl_name"
works "score: a model name with a newline" "$LLAMIX" score -m "$nl_name" -z "$z" -f "$tmp/se.txt" -q
if grep -qF 'new\x0aline.bin' "$tmp/out" && ! grep -q '^line.bin' "$tmp/out" && [ "$(wc -l <"$tmp/out")" -eq 5 ]; then
    pass "score table: a newline in a file name is escaped"
else failure "score table: a newline in a file name is escaped" "the table has $(wc -l <"$tmp/out") lines"; fi
works "bench: a model name with a newline" "$LLAMIX" bench -m "$nl_name" -r 1 -n 2 -p 2 --no-limits -e single
if grep -qF 'new\x0aline.bin' "$tmp/out" && ! grep -q '^line.bin' "$tmp/out"; then
    pass "bench report: a newline in a file name is escaped"
else failure "bench report: a newline in a file name is escaped" "raw"; fi
# A 600-character path: the problem stays in the message (the path is shortened in the middle).
long_dir=$tmp$(for i in 1 2 3 4 5 6 7 8 9 10; do printf '/%059d' 0; done)
error "a 600-character path keeps the problem in the message" 1 "No such file" "x.bin" -- \
    "$LLAMIX" generate -m "$long_dir/x.bin" -z "$z" -n 2

# bench's options: one line and exit 2 for each mistake; a list longer than the buffer refused.
error "bench --bogus" 2 "--bogus" -- "$LLAMIX" bench --bogus
error "bench -e ''" 2 "--ensemble" -- "$LLAMIX" bench -e ''
error "bench -k with a 300-character list" 2 "-k" "at most 255" -- "$LLAMIX" bench -k "$(printf '1,%.0s' $(seq 150))1"
error "bench -p 1x" 2 "-p" "1x" -- "$LLAMIX" bench -p 1x
error "bench -n 1,,2" 2 "-n" "empty value" -- "$LLAMIX" bench -n 1,,2
error "bench -k 1, (a trailing comma)" 2 "-k" "empty value" -- "$LLAMIX" bench -k 1,
error "bench -t x" 2 "-t" "'x'" -- "$LLAMIX" bench -t x
error "bench --bw-mib 1" 2 "--bw-mib" -- "$LLAMIX" bench --bw-mib 1
error_starts="llamix: |llamix bench: " # (bench's progress lines go to stderr too)
run "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single
cmd="bench >/dev/full"
"$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single >/dev/full 2>"$tmp/err"
status=$?
if [ "$status" -eq 1 ] && grep -q '^llamix: standard output: No space left on device$' "$tmp/err"; then pass "$cmd: exit 1, the reason"
else failure "$cmd" "exit status $status, want 1 and 'standard output: No space left on device'"; fi
cmd="bench --json-file in a missing folder"
"$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single --json-file "$tmp/no/r.json" >/dev/null 2>"$tmp/err"
status=$?
if [ "$status" -eq 1 ] && grep -q "^llamix: --json-file: $tmp/no/r.json: cannot create: No such file" "$tmp/err"; then pass "$cmd: exit 1, file and reason"
else failure "$cmd" "exit status $status, want 1 naming the file and the reason"; fi
unset error_starts
works "bench --json-file" "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 -e single --bw-mib 16 --json-file "$tmp/r.json"
if grep -q '"peak_rss_bytes":[0-9]*,"runs_rss_bytes":[0-9]*,"probe_buffer_bytes":16777216' "$tmp/r.json" &&
    ! ls -a "$tmp" | grep -q '^\.r\.json'; then pass "bench --json-file: whole, with the probe's buffer in the memory"
else failure "bench --json-file: whole, with the probe's buffer in the memory" "missing"; fi
# The whole process's peak is reported, the probe's buffer included: with a 256 MiB buffer the
# reported peak is above 268 MB (the buffer alone), and within 10% of the kernel's own at exit
# (0.2% in a plain build; ASan's shadow pages come late).
if command -v /usr/bin/time >/dev/null 2>&1; then
    /usr/bin/time -f '%M' -o "$tmp/maxrss" "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 -e single --bw-mib 256 >"$tmp/out" 2>/dev/null
    peak=$(sed -n 's/^- memory: peak RSS \([0-9.]*\) MB for the whole bench.*/\1/p' "$tmp/out")
    if awk -v p="$peak" -v k="$(tail -n 1 "$tmp/maxrss")" 'BEGIN { exit !(p > 268.4 && (p - k * 1.024e-3) ^ 2 < (0.1 * p) ^ 2) }'; then
        pass "bench: peak RSS $peak MB counts the 256 MiB probe (kernel: $(tail -n 1 "$tmp/maxrss") KB)"
    else cmd="bench --bw-mib 256"; failure "bench: the reported peak counts the probe" "reported $peak MB, kernel $(tail -n 1 "$tmp/maxrss") KB"; fi
fi

# Thread waiting: --wait re-executes the program once with the OpenMP variables set; the bench
# report says what the process runs with. The user's own variables stand when --wait is not given.
for w in passive active 1234; do
    works "bench --wait $w" "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single -t 2 --wait "$w"
    case $w in 1234) want='spin 1234 then sleep (GOMP_SPINCOUNT=1234)' ;; *) want="$w (OMP_WAIT_POLICY=$w)" ;; esac
    if grep -qF "idle threads wait: $want;" "$tmp/out"; then pass "bench --wait $w: in effect"
    else failure "bench --wait $w: in effect" "the report does not say '$want'"; fi
done
# The default, auto, decides by the host at the start: idle or busy, it says which; with two
# programs spinning beside it the host is busy for certain, and it must wait passive.
works "bench: the default wait" "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single
if grep -qE "idle threads wait: (spin 300000 then sleep \(GOMP_SPINCOUNT=300000, auto: the host was idle|passive \(OMP_WAIT_POLICY=passive, auto: the host was busy) at the start\);" "$tmp/out"
then pass "bench: auto by default"; else failure "bench: auto by default" "the report does not say auto's choice"; fi
sh -c 'while :; do :; done' & spin1=$!
sh -c 'while :; do :; done' & spin2=$!
works "bench: the default wait, busy host" "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single
kill $spin1 $spin2; wait $spin1 $spin2 2>/dev/null
if grep -qF "idle threads wait: passive (OMP_WAIT_POLICY=passive, auto: the host was busy at the start);" "$tmp/out"
then pass "bench: auto waits passive on a busy host"; else failure "bench: auto waits passive on a busy host" "not passive"; fi
run env OMP_WAIT_POLICY=active "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single
if grep -qF "idle threads wait: active (OMP_WAIT_POLICY=active);" "$tmp/out"; then pass "bench: the user's OMP_WAIT_POLICY stands"
else failure "bench: the user's OMP_WAIT_POLICY stands" "overridden"; fi
run env GOMP_SPINCOUNT=77 "$LLAMIX" bench --shape tiny -r 1 -n 2 -p 2 --no-limits -e single --wait passive
if grep -qF "idle threads wait: passive (OMP_WAIT_POLICY=passive);" "$tmp/out"; then pass "bench: --wait overrides GOMP_SPINCOUNT"
else failure "bench: --wait overrides GOMP_SPINCOUNT" "not passive"; fi
"$LLAMIX" generate -m "$m" -z "$z" -n 20 -s 3 -t 2 --wait active >"$tmp/active.txt" 2>/dev/null
works "generate --wait passive" "$LLAMIX" generate -m "$m" -z "$z" -n 20 -s 3 -t 2 --wait passive
stdout_is "generate: the same text whatever the wait policy" "$tmp/active.txt"
works "score --wait 0" "$LLAMIX" score -m "$m" -z "$z" -f "$tmp/se.txt" -q --wait 0
for c in generate score bench; do
    error "$c --wait bogus" 2 "--wait" "bogus" -- "$LLAMIX" $c --wait bogus -m "$m" -z "$z"
    error "$c --wait -5" 2 "--wait" "-5" -- "$LLAMIX" $c --wait -5 -m "$m" -z "$z"
done
fi

# ------------------------------------------------------------------ issue 16: int8 (Q8_0) files
if [ "$part" != real ]; then
    # patch FILE OFFSET OCTAL-BYTES: overwrite bytes in place
    patch() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }
    init "$tmp/f32.bin" -s 5
    init "$tmp/q8.bin" -s 5 --quant q8_0
    run "$LLAMIX" quantize "$tmp/f32.bin" "$tmp/q8b.bin"
    if [ "$status" -eq 0 ] && cmp -s "$tmp/q8.bin" "$tmp/q8b.bin"; then pass "int8: init --quant q8_0 = quantize of init"
    else failure "int8: init --quant q8_0 = quantize of init" "status $status or bytes differ"; fi
    works "int8: generate with an int8 member" "$LLAMIX" generate -m "$tmp/q8.bin" -z "$tmp/tok16.bin" -n 8 -s 1
    works "int8: mixed CE" "$LLAMIX" generate -m "$tmp/q8.bin" -m "$tmp/f32.bin" -z "$tmp/tok16.bin" -e ce -n 8 -s 1
    error "int8: quantize --group-size 32 (48 % 32)" 2 "group size 32" "hidden_dim 48" -- \
        "$LLAMIX" quantize -g 32 "$tmp/f32.bin" "$tmp/x.bin"
    error "int8: quantize --group-size 0" 2 "--group-size" -- "$LLAMIX" quantize -g 0 "$tmp/f32.bin" "$tmp/x.bin"
    error "int8: quantize without OUT" 2 "quantize" -- "$LLAMIX" quantize "$tmp/f32.bin"
    error "int8: quantize a missing file" 1 "$tmp/none.bin" -- "$LLAMIX" quantize "$tmp/none.bin" "$tmp/x.bin"
    error "int8: quantize into a missing folder" 1 "$tmp/no/x.bin" -- "$LLAMIX" quantize "$tmp/f32.bin" "$tmp/no/x.bin"
    error "int8: init --quant q4" 2 "--quant" "q4" -- "$LLAMIX" init --quant q4 -o "$tmp/x.bin"
    error "int8: bench --quant q4" 2 "--quant" "q4" -- "$LLAMIX" bench --shape tiny --quant q4
    error "int8: init --quant q8_0 --version 0" 2 "version 0" -- "$LLAMIX" init --quant q8_0 --version 0 -o "$tmp/x.bin"
    # hostile version 2 files (tiny shape: the group size at byte 37, the first scale at 1408)
    for case in "gs0:37:\000\000\000\000:group size 0" "gsneg:37:\377\377\377\377:group size -1" \
                "gs32:37:\040\000\000\000:does not divide" "gs8:37:\010\000\000\000:truncated" \
                "nan:1408:\000\000\300\177:not finite" "negative:1408:\000\000\000\277:negative scale"; do
        name=${case%%:*} rest=${case#*:}; at=${rest%%:*} rest=${rest#*:}; bytes=${rest%%:*} want=${rest#*:}
        cp "$tmp/q8.bin" "$tmp/h-$name.bin"
        patch "$tmp/h-$name.bin" "$at" "$bytes"
        error "int8: hostile file ($name)" 1 "h-$name.bin" "$want" -- "$LLAMIX" generate -m "$tmp/h-$name.bin" -z "$tmp/tok16.bin" -n 2
    done
    cp "$tmp/q8.bin" "$tmp/h-trail.bin"; printf 'x' >>"$tmp/h-trail.bin"
    error "int8: hostile file (trailing byte)" 1 "trailing bytes" -- "$LLAMIX" generate -m "$tmp/h-trail.bin" -z "$tmp/tok16.bin" -n 2
    head -c 1000 "$tmp/q8.bin" >"$tmp/h-short.bin"
    error "int8: hostile file (truncated)" 1 "truncated" -- "$LLAMIX" generate -m "$tmp/h-short.bin" -z "$tmp/tok16.bin" -n 2
fi

# ------------------------------------------------------------------ the real models
if [ "$part" = real ]; then
    real_models_or_skip
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
    # The real pair of different tokenizers (issue 14; the two-sample test of ME against CE is
    # tests/test_vocab.c's real group).
    if [ -f "$models/babyllama105.bin" ] && [ -f "$models/tok105.bin" ]; then
        b105=$models/babyllama105.bin tok105=$models/tok105.bin
        for mode in me ce ce-unite ce-mixture; do
            works "stories260K + babyllama105 with their own tokenizers, -e $mode" "$LLAMIX" generate -m "$s260" \
                -z "$tok512" -m "$b105" -z "$tok105" -w 0.6,0.4 -e $mode -p "Once upon a time" -n 40 -s 3
        done
        case $(cat "$tmp/err") in *"unknown ids received"*) pass "real pair: unknown ids in the summary" ;;
            *) failure "real pair: unknown ids in the summary" "missing on stderr" ;; esac
        error "real pair: -z once for two tokenizers' members" 1 "tok512.bin" -- \
            "$LLAMIX" generate -m "$s260" -m "$b105" -z "$tok512" -z "$tok512" -n 4
        error "real pair: tokenizers swapped" 1 "tok105.bin" "stories260K.bin" -- \
            "$LLAMIX" generate -m "$s260" -z "$tok105" -m "$b105" -z "$tok512" -n 4
        printf 'Once upon a time, there was a little girl named Lily. She loved to play outside.' >"$tmp/story.txt" # tok105 has no newline
        works "real pair: score gives each member's bits per byte" "$LLAMIX" score -m "$s260" -z "$tok512" \
            -m "$b105" -z "$tok105" -f "$tmp/story.txt" -q
        if grep -q "bits/byte" "$tmp/out" && grep -q "needs one shared vocabulary" "$tmp/err"; then
            pass "real pair: score says an ensemble score needs one vocabulary"
        else failure "real pair: score says an ensemble score needs one vocabulary" "missing"; fi
        works "real pair: bench" "$LLAMIX" bench -m "$s260" -z "$tok512" -m "$b105" -z "$tok105" -r 1 -n 16 -t 1
    fi
    # issue 16 (int8): quantize makes the real Q8_0 files byte for byte; they decode as runq.c does
    if [ -f "$models/stories260K_q80_gs4.bin" ] && [ -f "$models/llama2xs_tok512_q80.bin" ]; then
        q4=$models/stories260K_q80_gs4.bin q64=$models/llama2xs_tok512_q80.bin
        run "$LLAMIX" quantize --group-size 4 "$s260" "$tmp/q4.bin"
        if [ "$status" -eq 0 ] && cmp -s "$tmp/q4.bin" "$q4"; then pass "int8: quantize -g 4 stories260K = stories260K_q80_gs4.bin"
        else failure "int8: quantize -g 4 stories260K = stories260K_q80_gs4.bin" "status $status or bytes differ"; fi
        run "$LLAMIX" quantize "$models/llama2xs_tok512.bin" "$tmp/q64.bin" # the default group size is 64 here
        if [ "$status" -eq 0 ] && cmp -s "$tmp/q64.bin" "$q64"; then pass "int8: quantize llama2xs = llama2xs_tok512_q80.bin"
        else failure "int8: quantize llama2xs = llama2xs_tok512_q80.bin" "status $status or bytes differ"; fi
        # runq.c's greedy text (llama2.c, `runq llama2xs_tok512_q80.bin -z tok512.bin -t 0 -n 200`)
        printf '%s\n' 'Once upon a time, there was a little girl named Lily. She loved to play with her toys and all day long. One day, she saw a big box. He was very happy. He wanted to play with her toys and play with her mom.' \
            'They came to the park. The bird was very happy. He wanted to play with them. He was very happy. He said, "It'"'"'s a boy," said then said, "It'"'"'s a boy," said the cat. "It'"'"'s okay, Lily. It'"'"'s okay."' \
            'Lily was so happy and said, "It'"'"'s okay, Lily. It'"'"'s anymore. It'"'"'s animals," said the' >"$tmp/want"
        works "int8: llama2xs_tok512_q80 greedy" "$LLAMIX" generate -m "$q64" -z "$tok512" --temp 0 -n 200
        stdout_is "int8: llama2xs_tok512_q80 prints runq.c's text" "$tmp/want"
        works "int8: fp32 and int8 members in one CE" "$LLAMIX" generate -m "$s260" -m "$q4" -z "$tok512" -e ce -n 20 -s 1
        works "int8: fp32 and int8 members in one ME" "$LLAMIX" generate -m "$s260" -m "$q4" -z "$tok512" -e me -n 20 -s 1
        error "int8: quantize an int8 file" 1 "already int8" -- "$LLAMIX" quantize "$q4" "$tmp/qq.bin"
        # the fp32-to-int8 perplexity change: score's paired difference of member 2 against member 1
        printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n' >"$tmp/q-story.txt"
        works "int8: score fp32 and int8 copies" "$LLAMIX" score -m "$s260" -m "$q4" -z "$tok512" -f "$tmp/q-story.txt"
        if grep -q '^# member2 - member1: [+-][0-9.]* +- [0-9.]* nats/token' "$tmp/out" &&
            grep -q 'stories260K_q80_gs4.bin' "$tmp/out"; then pass "int8: score reports the int8 - fp32 difference"
        else failure "int8: score reports the int8 - fp32 difference" "no '# member2 - member1' line"; fi
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
