# harness.sh: what the shell tests share (sourced by cli.sh and embed.sh): a temporary folder
# removed at exit, the pass/fail tally, running a command with its output captured, the check of
# a one-line error, and llama2.c tokenizer files written byte by byte.
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
# that starts with one of the '|'-separated $error_starts (default "llamix: ") and contains every
# STRING.
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
    _line=$(cat "$tmp/err") _ok=0 _rest=${error_starts:-llamix: }
    while :; do # the '|'-separated starts, one by one
        _start=${_rest%%|*}
        case $_line in "$_start"*) _ok=1 ;; esac
        [ "$_rest" = "$_start" ] && break
        _rest=${_rest#*|}
    done
    if [ "$_ok" -eq 0 ]; then failure "$name" "stderr does not start with '${error_starts:-llamix: }'"; return; fi
    while IFS= read -r s; do
        if ! grep -qF -e "$s" "$tmp/err"; then failure "$name" "stderr does not mention '$s'"; return; fi
    done <"$tmp/strings"
    pass "$name"
}

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
init() { out=$1; shift; "$LLAMIX" init "$@" -o "$out" 2>"$tmp/init.err" || { cat "$tmp/init.err"; exit 1; }; }

# The real models' part of a script: set models, s260 and tok512 and write $tmp/expected, the
# text llama2.c's test_all.py expects from `run stories260K.bin -z tok512.bin -t 0.0 -n 200`;
# or, without the models, say so and exit 77 (automake's SKIP).
real_models_or_skip() {
    models=${LLAMIX_MODELS:-}
    if [ -z "$models" ] || [ ! -f "$models/stories260K.bin" ] || [ ! -f "$models/tok512.bin" ]; then
        echo "SKIP: the real models (LLAMIX_MODELS='$models' has no stories260K.bin and tok512.bin)"
        exit 77
    fi
    s260=$models/stories260K.bin tok512=$models/tok512.bin
    cat >"$tmp/expected" <<'EOF'
Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she
EOF
}
