#!/bin/sh
# replay.sh: run by `make check` from the build folder. Feeds the saved corpus and every crasher
# ever found (tests/fuzz/corpus/TARGET and tests/fuzz/crashers/TARGET) through the plain replay
# programs tests/fuzz/replay_TARGET that make check builds. In the sanitizer build
# (--enable-sanitizers) that makes every saved input a regression test under ASan and UBSan.
# Exit status: 0 if every input ran without a crash, 1 otherwise.
srcdir=${srcdir:-.}
fuzzdir=$srcdir/tests/fuzz
status=0
for target in model tokenizer encode serve_request; do
    prog=./tests/fuzz/replay_$target
    if [ "$target" = serve_request ] && [ ! -x "$prog" ]; then
        echo "replay serve_request: skipped (llamix was configured without the server)"
        continue
    fi
    if [ ! -x "$prog" ]; then
        echo "replay.sh: $prog not built (run from the build folder after make check)" >&2
        status=1
        continue
    fi
    for kind in corpus crashers; do
        dir=$fuzzdir/$kind/$target
        [ -d "$dir" ] || continue
        n=$(find "$dir" -type f ! -name '.*' | wc -l)
        echo "replay $target $kind: $n inputs from $dir"
        [ "$n" -gt 0 ] || continue
        if ! "$prog" "$dir"; then
            echo "replay.sh: FAIL: $target $kind: an input crashed (see the messages above)" >&2
            status=1
        fi
    done
done
[ $status -eq 0 ] && echo "replay.sh: every saved input ran without a crash"
exit $status
