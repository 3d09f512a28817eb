#!/usr/bin/env bash
# leakcheck.sh: memory checks of the llamix program (run by .ci/run after the builds).
#
# 1. Valgrind (memcheck) over generate (one model, CE, ME and CE-mixture ensembles, whole-context
#    runs), the error paths of generate, tokenize, init, score and bench (the last two skipped
#    with a note while they are not written yet). Each run must end with no memory error and no
#    definitely or indirectly lost bytes, and memory must stay flat: a run that generates the
#    whole context makes exactly as many allocations as one that generates 4 tokens.
# 2. ThreadSanitizer over tests/test_forward (test_shared_model_threads: several threads share one
#    model) and over generate with 2 OpenMP threads, built with clang, LLVM's libomp and its
#    Archer tool (which tells TSan about OpenMP's synchronisation). A report from inside libomp
#    itself (not instrumented) is suppressed; a deliberate race is run first as a negative
#    control, so a TSan that sees nothing cannot pass silently.
#
# It builds what it needs itself, in a temporary folder, straight from the sources with a
# minimal config.h: no autotools (so it does not mind an already configured source tree), no
# BLAS (OpenBLAS keeps thread pools that valgrind reports as possibly lost) and, for valgrind, no
# OpenMP. Installs valgrind (and clang/libomp for part 2) with apt-get when missing and root;
# otherwise skips that part with a message.
# Environment: LLAMIX_MODELS (real models, optional: adds runs on stories260K), BENCH_ARGS
# (default "--shape tiny -k 2 -p 8 -n 8 -r 1 -t 1 --no-limits"), KEEP=1 keeps the temporary folder.
# Exit status: 0 if every check passed or was skipped, 1 otherwise. Ends with "N passed, N failed".
set -u
# A wait policy of our own, so that llamix does not re-execute itself for --wait's default: the
# re-executed program would run outside valgrind.
export OMP_WAIT_POLICY=passive
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/llamix-leak.XXXXXX") || exit 1
trap '[ "${KEEP:-0}" = 1 ] && echo "leakcheck: kept $work" || rm -rf "$work"' EXIT
models=${LLAMIX_MODELS:-$top/../shared/models}
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
skip() { skipped=$((skipped + 1)); echo "skip: $1"; }

as_root_install() { # as_root_install PACKAGE...: apt-get install when root, else return 1
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    echo "leakcheck: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

version=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' "$top/configure.ac")
cat >"$work/config.h" <<EOF
/* config.h for tests/leakcheck.sh: no BLAS. */
#define PACKAGE_NAME "llamix"
#define PACKAGE_VERSION "${version:-unknown}"
#define BLAS_PROVIDER "none"
EOF
# The library's sources, and the program's (the library, the commands and the bench harness),
# built as configure builds it without Open MPI and the server: mpi_none.c and serve.c's stub, not
# mpi.c and serve_*.c; and not the kernel benchmarks, which are programs of their own.
lib_sources=$(echo "$top"/src/lib/*.c)
program_sources="$lib_sources $(echo "$top"/src/cli/*.c "$top"/bench/[a-z]*.c |
    tr ' ' '\n' | grep -v -e '/mpi\.c$' -e '/serve_[a-z]*\.c$' -e '/matmul_bench\.c$' -e '/q8_bench\.c$' | tr '\n' ' ')"
includes="-I$work -I$top/include -I$top/src/lib -I$top/src/cli -I$top/bench"

# ------------------------------------------------------------------ fixtures
# A 16-piece tokenizer written byte by byte (llama2.c tokenizer.bin), for the random models.
u8() { printf "\\$(printf %03o "$(($1 & 255))")"; }
u32() { u8 "$1"; u8 $(($1 >> 8)); u8 $(($1 >> 16)); u8 $(($1 >> 24)); }
entry() { u32 "$1"; u32 "$(printf '%b' "$2" | wc -c)"; printf '%b' "$2"; } # entry SCORE-BITS PIECE
{
    u32 6
    for p in '<unk>' '\n<s>\n' '\n</s>\n' ' ' e h l o w r d; do entry 0 "$p"; done
    entry 0x3f800000 he; entry 0x40000000 ll; entry 0 lo; entry 0x40400000 ' h'; entry 0xc1100000 hello
} >"$work/tok16.bin"
z=$work/tok16.bin
# (only characters the 16 pieces have: the file ends without a newline)
for _ in 1 2 3 4 5 6; do printf 'hello world he held her old red rod '; done >"$work/text.txt"

# ================================================================== 1. valgrind
echo "leakcheck: valgrind"
if ! command -v valgrind >/dev/null 2>&1; then as_root_install valgrind; fi
if ! command -v valgrind >/dev/null 2>&1; then
    skip "valgrind is not installed (apt-get install valgrind, as root)"
elif ! gcc -std=gnu11 -O1 -g -Wno-unknown-pragmas $includes $program_sources -lm \
        -o "$work/llamix" >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    fail "building llamix for valgrind"
else
    L=$work/llamix
    "$L" init --shape tiny -s 1 -o "$work/a.bin" 2>/dev/null &&
        "$L" init --shape tiny -s 2 --version 0 --separate-classifier -o "$work/b.bin" 2>/dev/null &&
        "$L" init --shape tiny --vocab 20 -s 3 -o "$work/v20.bin" 2>/dev/null ||
        { echo "leakcheck: llamix init failed"; exit 1; }
    a=$work/a.bin b=$work/b.bin
    head -c 1000 "$a" >"$work/truncated.bin"
    n=0
    # vg NAME STATUS CMD...: llamix under valgrind must exit with STATUS, with no memory error
    # and no definitely or indirectly lost bytes. Leaves the log in $log.
    vg() {
        local name=$1 want=$2
        shift 2
        n=$((n + 1))
        log=$work/vg.$n.log
        valgrind --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$log" \
            "$L" "$@" >"$work/out" 2>"$work/err" </dev/null
        local status=$?
        if [ $status -eq 99 ]; then
            fail "$name: valgrind found errors or leaks"
            grep -v '^==[0-9]*== *$' "$log" | sed -n '1,60p'
        elif [ $status -ne "$want" ]; then
            fail "$name: exit status $status, want $want"
            sed -n '1,5s/^/    stderr: /p' "$work/err"
        else
            pass "$name ($(sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1 allocs/p' "$log"))"
        fi
    }
    allocs() { sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$log" | tr -d ,; }
    # flat NAME ARGS...: generating 4 tokens and the whole context make as many allocations
    flat() {
        local name=$1
        shift
        vg "$name, 4 tokens" 0 "$@" -n 4
        local few; few=$(allocs)
        vg "$name, the whole context" 0 "$@" -n -1
        local all; all=$(allocs)
        if [ -n "$few" ] && [ "$few" = "$all" ]; then pass "$name: memory flat ($few allocations either way)"
        else fail "$name: allocations grow with the tokens generated (${few:-?} for 4, ${all:-?} for the whole context)"; fi
    }

    flat "generate, one model" generate -m "$a" -z "$z" -s 1 -p "hello"
    flat "generate, CE" generate -m "$a" -m "$b" -z "$z" -e ce -s 2 -w 0.3,0.7
    flat "generate, ME" generate -m "$a" -m "$b" -z "$z" -e me -s 3
    flat "generate, CE-mixture" generate -m "$a" -m "$b" -z "$z" -e ce-mixture -s 4 --top-k 5
    vg "generate, greedy, one tokenizer per member" 0 generate -m "$a" -m "$b" -z "$z" -z "$z" --temp 0 -n -1
    vg "generate, a prompt that fills -c" 0 generate -m "$a" -z "$z" -c 8 -p "hello hel" -s 1
    # Error paths: everything opened so far must still be freed.
    vg "error: missing model" 1 generate -m "$a" -m "$work/nope.bin" -z "$z"
    vg "error: truncated model" 1 generate -m "$a" -m "$work/truncated.bin" -z "$z"
    vg "error: a tokenizer given as the model" 1 generate -m "$z" -z "$z"
    vg "error: tokenizer for another vocabulary" 1 generate -m "$work/v20.bin" -z "$z"
    vg "error: members with different vocabularies" 1 generate -m "$a" -m "$work/v20.bin" -z "$z"
    vg "error: tokenizers that differ" 1 generate -m "$a" -m "$b" -z "$z" -z "$work/text.txt"
    vg "error: prompt the vocabulary cannot encode" 1 generate -m "$a" -z "$z" -p "xyz"
    vg "error: prompt longer than -c" 2 generate -m "$a" -z "$z" -c 4 -p "hello hello hello"
    vg "error: bad -w" 2 generate -m "$a" -m "$b" -z "$z" -w 1,x
    vg "tokenize" 0 tokenize -z "$z" -m "$a" -p "hello world" --pieces
    vg "init" 0 init --shape tiny --version 0 -o "$work/c.bin"
    if [ -f "$models/stories260K.bin" ] && [ -f "$models/tok512.bin" ]; then
        vg "generate, stories260K, 100 tokens" 0 generate -m "$models/stories260K.bin" -z "$models/tok512.bin" \
            --temp 0 -n 100 -p "Once upon a time"
        if [ -f "$models/llama2xs_tok512.bin" ]; then
            vg "generate, ME of stories260K and llama2xs_tok512" 0 generate -m "$models/stories260K.bin" \
                -m "$models/llama2xs_tok512.bin" -z "$models/tok512.bin" -e me -n 60 -s 5
        fi
    else
        skip "runs on the real models (no stories260K.bin and tok512.bin in $models)"
    fi
    # score and bench, once they exist.
    "$L" score --help >"$work/out" 2>&1
    if grep -q "not written yet" "$work/out"; then
        skip "score: $(head -1 "$work/out")"
    else
        vg "score, one model" 0 score -m "$a" -z "$z" -f "$work/text.txt" -c 16 -q
        vg "score, two models, --fit-weights, json" 0 score -m "$a" -m "$b" -z "$z" -f "$work/text.txt" \
            -c 16 --fit-weights -o json -q
        vg "score: error: missing text" 1 score -m "$a" -z "$z" -f "$work/nope.txt"
    fi
    "$L" bench --help >"$work/out" 2>&1
    if grep -q "not written yet" "$work/out"; then
        skip "bench: $(head -1 "$work/out")"
    else
        bench_args=${BENCH_ARGS:---shape tiny -k 2 -p 8 -n 8 -r 1 -t 1 --no-limits}
        # shellcheck disable=SC2086
        vg "bench $bench_args" 0 bench $bench_args
    fi
fi

# ================================================================== 2. ThreadSanitizer
echo "leakcheck: ThreadSanitizer (clang, libomp + Archer)"
archer=""
tsan_ready() {
    command -v clang >/dev/null 2>&1 || return 1
    archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | sort -V | tail -1)
    [ -n "$archer" ] || return 1
    printf '#include <stdio.h>\nint main(void)\n{\n    int sum = 0;\n    #pragma omp parallel for num_threads(4)\n    for (int i = 0; i < 1000; i++)\n        sum += i; /* the deliberate race */\n    printf("%%d\\n", sum);\n    return 0;\n}\n' >"$work/race.c"
    clang -g -fopenmp -fsanitize=thread "$work/race.c" -o "$work/race" >/dev/null 2>&1
}
if ! tsan_ready; then as_root_install clang libomp-dev; fi
if ! tsan_ready; then
    skip "ThreadSanitizer: needs clang, libomp-dev and LLVM's libarcher.so"
else
    echo 'called_from_lib:libomp.so.5' >"$work/tsan.supp"
    export OMP_TOOL_LIBRARIES=$archer
    tsan_env="suppressions=$work/tsan.supp halt_on_error=0 exitcode=66"
    TSAN_OPTIONS=$tsan_env "$work/race" >/dev/null 2>"$work/race.log"
    if [ $? -eq 66 ] && grep -q "data race" "$work/race.log"; then
        pass "TSan negative control: a deliberate race is reported"
        tsan_flags="-std=gnu11 -g -O1 -fopenmp -fsanitize=thread -Wno-unknown-pragmas $includes -I$top/tests"
        # shellcheck disable=SC2086,SC2046
        if clang $tsan_flags "$top/tests/test_forward.c" "$top/tests/testutil.c" "$top/tests/stats.c" \
                $lib_sources $(pkg-config --cflags --libs cmocka 2>/dev/null || echo -lcmocka) -lm \
                -o "$work/test_forward_tsan" >"$work/tsan-build.log" 2>&1; then
            ( cd "$work" && LLAMIX_MODELS=$models OMP_NUM_THREADS=2 TSAN_OPTIONS=$tsan_env \
                ./test_forward_tsan >"$work/tsan-test.log" 2>&1 )
            status=$?
            if [ $status -eq 0 ]; then pass "test_forward under TSan, 2 threads (shared model, no race)"
            else fail "test_forward under TSan: exit status $status"; grep -v '^ *$' "$work/tsan-test.log" | sed -n '1,80p'; fi
        else
            cat "$work/tsan-build.log"; fail "building test_forward with TSan"
        fi
        # shellcheck disable=SC2086,SC2046
        if clang $tsan_flags $program_sources -lm -o "$work/llamix_tsan" >"$work/tsan-build2.log" 2>&1; then
            T=$work/llamix_tsan
            "$T" init --dim 128 --hidden-dim 768 --layers 1 --heads 4 --kv-heads 4 --vocab 16 --seq-len 48 \
                -o "$work/wide.bin" 2>/dev/null
            "$T" init --dim 128 --hidden-dim 768 --layers 1 --heads 4 --kv-heads 2 --vocab 16 --seq-len 48 \
                -s 9 -o "$work/wide2.bin" 2>/dev/null
            for mode in ce me; do
                TSAN_OPTIONS=$tsan_env "$T" generate -m "$work/wide.bin" -m "$work/wide2.bin" -z "$z" -e $mode \
                    -t 2 -n -1 -s 1 -p "hello hello hello hello hello hello hello" >/dev/null 2>"$work/tsan-gen.log"
                status=$?
                if [ $status -eq 0 ]; then pass "generate -e $mode -t 2 under TSan"
                else fail "generate -e $mode -t 2 under TSan: exit status $status"; grep -v '^ *$' "$work/tsan-gen.log" | sed -n '1,60p'; fi
            done
        else
            cat "$work/tsan-build2.log"; fail "building llamix with TSan"
        fi
    else
        fail "TSan negative control: the deliberate race was not reported, so TSan cannot be trusted here"
        cat "$work/race.log"
    fi
fi

echo "leakcheck: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
