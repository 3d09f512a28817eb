#!/usr/bin/env bash
# run.sh [SECONDS]: bounded fuzzing of every fuzz target with libFuzzer (default 60 s each).
#
# Builds the targets with clang straight from the source files (no autotools: a two-line
# config.h is enough, and no BLAS and no OpenMP, so the plain C paths are what gets fuzzed):
#   the library sources with -fsanitize=fuzzer-no-link,address,undefined (coverage + sanitizers),
#   each fuzz_TARGET.c with -fsanitize=fuzzer,address,undefined, plus replay.c's counters.
# Then fuzzes each target for SECONDS, starting from a copy of tests/fuzz/corpus/TARGET (in a
# temporary folder: the repository is never written) and the saved crashers.
# Prints per target the executions, the new corpus units and the rejected (bad) inputs tried.
# Exit status: 0 if nothing crashed (or clang's libFuzzer is unavailable and cannot be installed:
# then it says so and skips), 1 on any crash: the input is printed in hex with the stack, and
# the temporary folder with the crash file is kept.
# Environment: CLANG (compiler, default clang or clang-14), FUZZ_TARGETS (default "model
# tokenizer encode", and serve_request when pkg-config finds jansson), KEEP=1 keeps the temporary
# folder.
set -u
seconds=${1:-60}
case $seconds in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
jansson=0
pkg-config --exists jansson 2>/dev/null && jansson=1
default_targets="model tokenizer encode"
[ $jansson = 1 ] && default_targets="$default_targets serve_request"
targets=${FUZZ_TARGETS:-$default_targets}

# Per target: the largest input, and the library sources it needs (read as ${!name}).
# shellcheck disable=SC2034
{
    max_len_model=8192 max_len_tokenizer=8192 max_len_encode=1024 max_len_serve_request=8192
    sources_model="util.c atomic_file.c model.c kernels.c exp_sum.c kernels_q8.c kernels_q8_x86.c kernels_x86.c forward.c attention.c forward_reference.c"
    sources_tokenizer="util.c tokenizer.c"
    sources_encode="util.c tokenizer.c"
    # the server's request parser (src/cli) and the whole library under it (lx_mode_parse)
    sources_serve_request=$(cd "$top/src/lib" && echo *.c)
    cli_serve_request="serve_request.c"
    flags_serve_request=$([ $jansson = 1 ] && pkg-config --cflags jansson)
    libs_serve_request=$([ $jansson = 1 ] && pkg-config --libs jansson)
}

# ------------------------------------------------------------------ a clang with libFuzzer
work=$(mktemp -d "${TMPDIR:-/tmp}/llamix-fuzz.XXXXXX") || exit 1
keep=${KEEP:-0}
cleanup() { if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "fuzz: files kept in $work"; fi; }
trap cleanup EXIT

printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$work/probe.c"
find_clang() {
    for cc in ${CLANG:-} clang clang-14; do
        command -v "$cc" >/dev/null 2>&1 || continue
        if "$cc" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" >/dev/null 2>&1; then
            echo "$cc"
            return 0
        fi
    done
    return 1
}
if ! clang=$(find_clang); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: installing clang and libFuzzer (clang, libclang-rt-14-dev)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
    fi
    if ! clang=$(find_clang); then
        echo "fuzz: SKIPPED: no clang with libFuzzer (install clang and libclang-rt-14-dev, as root)"
        exit 0
    fi
fi
echo "fuzz: $("$clang" --version | head -1), $seconds s per target, in $work"

# ------------------------------------------------------------------ build
# The sources include "config.h" but need nothing from it without BLAS: a minimal one will do.
version=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' "$top/configure.ac")
cat >"$work/config.h" <<EOF
/* config.h for the fuzz build (tests/fuzz/run.sh): no BLAS, no OpenMP. */
#define PACKAGE_NAME "llamix"
#define PACKAGE_VERSION "${version:-unknown}"
#define BLAS_PROVIDER "none"
EOF
common="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Wno-unknown-pragmas -I$work -I$top/include -I$top/src/lib"
sanitize="address,undefined -fno-sanitize-recover=all"
build() { # build TARGET: objects of its library (and command) sources, then the fuzzer binary
    local t=$1 objs="" src var cli flags libs
    var=sources_$t cli=cli_$t flags=flags_$t libs=libs_$t
    mkdir -p "$work/obj-$t"
    for src in ${!var}; do
        "$clang" $common -fsanitize=fuzzer-no-link,$sanitize -c "$top/src/lib/$src" -o "$work/obj-$t/${src%.c}.o" || return 1
        objs="$objs $work/obj-$t/${src%.c}.o"
    done
    for src in ${!cli:-}; do
        "$clang" $common ${!flags:-} -I"$top/src/cli" -fsanitize=fuzzer-no-link,$sanitize -c "$top/src/cli/$src" \
            -o "$work/obj-$t/cli-${src%.c}.o" || return 1
        objs="$objs $work/obj-$t/cli-${src%.c}.o"
    done
    "$clang" $common ${!flags:-} -I"$top/src/cli" -fsanitize=fuzzer,$sanitize -DFUZZ_NO_MAIN "$here/fuzz_$t.c" \
        "$here/replay.c" $objs ${!libs:-} -lm -o "$work/fuzz_$t"
}

# ------------------------------------------------------------------ fuzz
total_execs=0 total_rejected=0 total_distinct=0 crashes=0 summary=""
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $targets; do
    if ! build "$t" >"$work/build-$t.log" 2>&1; then
        cat "$work/build-$t.log"
        echo "fuzz $t: BUILD FAILED"
        crashes=$((crashes + 1)); keep=1
        continue
    fi
    corpus=$work/corpus-$t artifacts=$work/artifacts-$t
    mkdir -p "$corpus" "$artifacts"
    find "$here/corpus/$t" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$corpus/" \;
    seeds=("$corpus")
    [ -d "$here/crashers/$t" ] && seeds+=("$here/crashers/$t")
    before=$(find "$corpus" -type f | wc -l)
    var=max_len_$t
    echo "fuzz $t: $before seed inputs, max_len ${!var}, $seconds s"
    "$work/fuzz_$t" -max_total_time="$seconds" -max_len="${!var}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${seeds[@]}" >"$work/log-$t" 2>&1
    rc=$?
    after=$(find "$corpus" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log-$t" | tail -1)
    added=$(sed -n 's/^stat::new_units_added: *//p' "$work/log-$t" | tail -1)
    counts=$(grep "^fuzz $t: " "$work/log-$t" | tail -1)
    rejected=$(echo "$counts" | sed -n 's/.* \([0-9]*\) rejected.*/\1/p')
    distinct=$(echo "$counts" | sed -n 's/.*rejected (\([0-9]*\) distinct).*/\1/p')
    if [ $rc -ne 0 ] || [ -n "$(ls -A "$artifacts")" ]; then
        crashes=$((crashes + 1)); keep=1
        echo "fuzz $t: CRASH (libFuzzer exit status $rc); the end of its log:"
        grep -v '^#[0-9]' "$work/log-$t" | tail -80
        for f in "$artifacts"/*; do
            [ -f "$f" ] || continue
            echo "fuzz $t: crash input $f ($(wc -c <"$f") bytes), in hex:"
            od -An -tx1 -v "$f" | head -256
            echo "fuzz $t: to reproduce: $work/fuzz_$t $f; to keep it as a regression test:" \
                 "cp $f $here/crashers/$t/"
        done
    fi
    line="fuzz $t: ${execs:-?} executions, ${added:-?} new corpus units (corpus $before -> $after), ${rejected:-?} rejected inputs (${distinct:-?} distinct)"
    echo "$line"
    summary="$summary$line"$'\n'
    total_execs=$((total_execs + ${execs:-0}))
    total_rejected=$((total_rejected + ${rejected:-0}))
    total_distinct=$((total_distinct + ${distinct:-0}))
done

printf '%s' "$summary"
echo "fuzz: $total_execs executions, $total_distinct distinct bad inputs ($total_rejected rejected in all), $crashes crashing target(s), $seconds s per target"
[ $crashes -eq 0 ]
