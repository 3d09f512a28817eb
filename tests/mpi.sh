#!/bin/sh
# mpi.sh: generate --mpi and score --mpi against the single process (run by make check when
# configured with Open MPI). For K = 2 and 3 members on R = 1..K ranks (mpirun --oversubscribe on
# this one machine), every mode (me, ce, ce-mixture with and without top-k, greedy ce and me, a
# different placement by --member-ranks) must print exactly the single process's text for the same
# seed, and score --mpi the same report (every number within 1e-9). Faults: a member file missing
# on one rank and a rank killed mid-run. Every mpirun is bounded by `timeout`, so a hang fails.
# Uses random checkpoints from `llamix init` and, when $LLAMIX_MODELS has them, the real tok512
# models. Environment: LLAMIX (the program), LLAMIX_MODELS (may be absent).
LLAMIX=${LLAMIX:-./llamix}
if [ ! -x "$LLAMIX" ]; then
    echo "mpi.sh: no llamix program at '$LLAMIX' (set LLAMIX)" >&2
    exit 1
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: no mpirun (install openmpi-bin)"
    exit 77
fi
. "$(dirname "$0")/harness.sh"
# Open MPI refuses root unless told; these are harmless for other users.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_rmaps_base_oversubscribe
# mpi R CMD...: under mpirun, bounded. In a sanitizer build, LeakSanitizer would report Open MPI's
# own allocations that MPI_Finalize never frees (in components it has unloaded by then, so no
# suppression can name them): leak checks are off for the MPI runs only; ASan's others stay on.
mpi() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 120 mpirun --oversubscribe -np "$@"; }

# stdout_is NAME FILE: the last run printed exactly the contents of FILE.
stdout_is() {
    if cmp -s "$tmp/out" "$2"; then pass "$1"; else
        failure "$1" "stdout differs from the single process's text"
        diff "$2" "$tmp/out" | sed -n '1,6s/^/      diff: /p'
    fi
}

# same NAME R ARGS...: `generate ARGS` under mpirun -np R with --mpi (and $placement) prints
# exactly what the single process printed (with -t 1 both: one thread a rank).
placement=
same() {
    name=$1 ranks=$2
    shift 2
    run "$LLAMIX" generate -t 1 "$@"
    cp "$tmp/out" "$tmp/single"
    if [ "$status" -ne 0 ] || [ "$(wc -c <"$tmp/single")" -lt 16 ]; then
        failure "$name" "the single process failed ($status) or printed under 16 bytes (8 tokens)"; return
    fi
    run mpi "$ranks" "$LLAMIX" generate --mpi $placement -t 1 "$@"
    if [ "$status" -ne 0 ]; then failure "$name" "exit status $status, want 0"; return; fi
    stdout_is "$name" "$tmp/single"
}

# score_same NAME R ARGS...: every number of the two reports (json) within 1e-9.
score_same() {
    name=$1 ranks=$2
    shift 2
    run "$LLAMIX" score -q -o json -t 1 "$@"
    cp "$tmp/out" "$tmp/single"
    if [ "$status" -ne 0 ]; then failure "$name" "the single process failed ($status)"; return; fi
    run mpi "$ranks" "$LLAMIX" score --mpi -q -o json -t 1 "$@"
    if [ "$status" -ne 0 ]; then failure "$name" "exit status $status, want 0"; return; fi
    why=$(python3 - "$tmp/single" "$tmp/out" <<'EOF'
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def walk(x, y, where):
    if isinstance(x, dict):
        if not isinstance(y, dict) or sorted(x) != sorted(y):
            return where + ": different keys"
        for key in x:
            w = walk(x[key], y[key], where + "." + key)
            if w: return w
    elif isinstance(x, list):
        if not isinstance(y, list) or len(x) != len(y): return where + ": different lengths"
        for i, (u, v) in enumerate(zip(x, y)):
            w = walk(u, v, "%s[%d]" % (where, i))
            if w: return w
    elif isinstance(x, float) and not isinstance(x, bool):
        if not isinstance(y, (int, float)) or not (abs(x - y) <= 1e-9 or (math.isnan(x) and math.isnan(y))):
            return "%s: %r vs %r" % (where, x, y)
    elif x != y:
        return "%s: %r vs %r" % (where, x, y)
    return ""
print(walk(a, b, "report"))
EOF
)
    if [ -n "$why" ]; then failure "$name" "the reports differ: $why"; else pass "$name"; fi
}

# ------------------------------------------------------------------ fixtures
# 256 pieces: tok16's and 240 two-capital ones (never formed from a lower-case text), so that a
# random model's texts rarely end early at BOS or EOS.
letters="A B C D E F G H I J K L M N O P"
{ tok16 hello; for x in $letters; do for y in $letters; do
    case $x$y in AA|AB|AC|AD|AE|AF|AG|AH|AI|AJ|AK|AL|AM|AN|AO|AP) ;; *) entry -20 "$x$y" ;; esac
done; done; } >"$tmp/tok16.bin"
init "$tmp/a.bin" --shape tiny --vocab 256 -s 11
init "$tmp/b.bin" --shape tiny --vocab 256 -s 12 --version 0 --separate-classifier
init "$tmp/c.bin" --shape tiny --vocab 256 -s 13
printf 'hello world hello hello world low hold her hello world hello old world' >"$tmp/text.txt"
z=$tmp/tok16.bin a=$tmp/a.bin b=$tmp/b.bin c=$tmp/c.bin
{ tok16 hellO; for x in $letters; do for y in $letters; do # one piece differs: a union vocabulary
    case $x$y in AA|AB|AC|AD|AE|AF|AG|AH|AI|AJ|AK|AL|AM|AN|AO|AP) ;; *) entry -20 "$x$y" ;; esac
done; done; } >"$tmp/tok16b.bin"

# A negative control: the comparison can fail (another seed is another text).
run "$LLAMIX" generate -t 1 -m "$a" -m "$b" -z "$z" -s 1 -n 60
cp "$tmp/out" "$tmp/seed1"
run mpi 2 "$LLAMIX" generate --mpi -t 1 -m "$a" -m "$b" -z "$z" -s 2 -n 60
if cmp -s "$tmp/out" "$tmp/seed1"; then failure "control: seed 2 under MPI differs from seed 1" "the same text"
else pass "control: seed 2 under MPI differs from seed 1"; fi

# ------------------------------------------------------------------ generate: every mode, K = 2, 3, R = 1..K
for ranks in 1 2; do
    for mode in me ce ce-mixture; do
        same "K=2 R=$ranks $mode" "$ranks" -m "$a" -m "$b" -z "$z" -w 0.7,0.3 -e "$mode" -s 7 -n 60
    done
    same "K=2 R=$ranks ce greedy" "$ranks" -m "$a" -m "$b" -z "$z" -w 0.7,0.3 -e ce --temp 0 -n 60
done
for ranks in 1 2 3; do
    for mode in me ce ce-mixture; do
        same "K=3 R=$ranks $mode" "$ranks" -m "$a" -m "$b" -m "$c" -z "$z" -w 0.5,0.3,0.2 -e "$mode" -s 9 -n 60 --top-p 0.8
    done
    same "K=3 R=$ranks ce greedy" "$ranks" -m "$a" -m "$b" -m "$c" -z "$z" -e ce --temp 0 -n 60
    same "K=3 R=$ranks me greedy" "$ranks" -m "$a" -m "$b" -m "$c" -z "$z" -e me --temp 0 -s 3 -n 60
done
same "K=3 R=2 ce-mixture --top-k 3" 2 -m "$a" -m "$b" -m "$c" -z "$z" -e ce-mixture --top-k 3 -s 5 -n 60
placement="--member-ranks 1,1,0"
same "K=3 R=2 --member-ranks 1,1,0 me" 2 -m "$a" -m "$b" -m "$c" -z "$z" -e me -s 4 -n 60
placement="--member-ranks 0,1,1"
same "K=3 R=2 --member-ranks 0,1,1 ce with a prompt" 2 -m "$a" -m "$b" -m "$c" -z "$z" -e ce -s 4 -n 40 -p "hello world"
placement=
# Members of different tokenizers (a union vocabulary) and a router: the same code on rank 0.
same "K=2 R=2 union vocabulary me" 2 -m "$a" -z "$z" -m "$b" -z "$tmp/tok16b.bin" -e me -s 6 -n 60
same "K=2 R=2 union vocabulary ce" 2 -m "$a" -z "$z" -m "$b" -z "$tmp/tok16b.bin" -e ce -s 6 -n 60
if "$LLAMIX" score -q -m "$a" -m "$b" -m "$c" -z "$z" -f "$tmp/text.txt" --fit-router "$tmp/r.router" >/dev/null 2>&1; then
    same "K=3 R=3 --router me" 3 -m "$a" -m "$b" -m "$c" -z "$z" --router "$tmp/r.router" -e me -s 2 -n 60
    same "K=3 R=2 --router ce" 2 -m "$a" -m "$b" -m "$c" -z "$z" --router "$tmp/r.router" -e ce -s 2 -n 60
else
    failure "score --fit-router for the router cases" "it failed"
fi

# ------------------------------------------------------------------ score
for ranks in 1 2; do
    score_same "score K=2 R=$ranks" "$ranks" -m "$a" -m "$b" -z "$z" -f "$tmp/text.txt" -w 0.7,0.3 --fit-weights
done
for ranks in 2 3; do
    score_same "score K=3 R=$ranks -c 8" "$ranks" -m "$a" -m "$b" -m "$c" -z "$z" -f "$tmp/text.txt" -c 8
done

# ------------------------------------------------------------------ faults
# A member that rank 1 cannot open: one line naming the rank and the file, exit 1 on every rank
# (mpirun returns the first non-zero status; each rank's own status is checked through it too).
error_starts="llamix: rank 1: "
error "generate --mpi: rank 1's member is missing" 1 "$tmp/missing.bin" -- \
    mpi 2 --quiet "$LLAMIX" generate --mpi -m "$a" -m "$tmp/missing.bin" -z "$z" -s 1 -n 10
error_starts="llamix: rank 2: "
error "score --mpi: rank 2's member is missing" 1 "$tmp/missing.bin" -- \
    mpi 3 --quiet "$LLAMIX" score --mpi -m "$a" -m "$b" -m "$tmp/missing.bin" -z "$z" -f "$tmp/text.txt"
error_starts="llamix: "
# every rank exits 1: each writes its status to a file through a wrapper
cat >"$tmp/wrap.sh" <<EOF
#!/bin/sh
"$LLAMIX" "\$@"
echo \$? >"$tmp/status.\$OMPI_COMM_WORLD_RANK"
EOF
chmod +x "$tmp/wrap.sh"
rm -f "$tmp"/status.*
run mpi 3 --quiet "$tmp/wrap.sh" generate --mpi -m "$a" -m "$tmp/missing.bin" -m "$c" -z "$z" -n 5
statuses=$(cat "$tmp/status.0" "$tmp/status.1" "$tmp/status.2" 2>/dev/null | tr '\n' ' ')
if [ "$statuses" = "1 1 1 " ]; then pass "a missing member: every rank exits 1"
else failure "a missing member: every rank exits 1" "statuses '$statuses'"; fi
error "--member-ranks out of range" 2 "--member-ranks" "rank 2" -- \
    mpi 2 --quiet "$LLAMIX" generate --mpi -m "$a" -m "$b" -z "$z" --member-ranks 0,2 -n 5
error "--member-ranks without --mpi" 2 "--member-ranks" "--mpi" -- \
    "$LLAMIX" generate -m "$a" -m "$b" -z "$z" --member-ranks 0,1 -n 5
error "--mpi with -N" 2 "--mpi" -- "$LLAMIX" generate --mpi -m "$a" -z "$z" -N 2 -n 5

# A rank killed mid-run: rank 1 is killed as soon as rank 0 has printed its first text, while
# 1000 tokens remain to generate (each needs rank 1's logits), however fast the machine. The job
# must end within the timeout, non-zero, and rank 0 must name the lost rank. The single process
# first shows that greedy decoding really runs to the token budget (no end of text stops it early).
init "$tmp/long.bin" --shape tiny --vocab 256 --seq-len 1024 -s 11
init "$tmp/big.bin" --shape 15M --vocab 256 --seq-len 1024 -s 5
doomed="-m $tmp/long.bin -m $tmp/big.bin -z $z -e ce --temp 0 -n 1000 -p hello"
run "$LLAMIX" generate -t 1 $doomed
if [ "$status" -ne 0 ] || ! grep -q "stopped by the token budget" "$tmp/err"; then
    failure "a rank killed mid-run" "the single process did not run to the token budget ($status)"
else
    rm -f "$tmp/out"
    ( mpi 2 "$LLAMIX" generate --mpi -t 1 $doomed >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/killed.status" ) &
    job=$! pid=
    for i in $(seq 1 100); do # the rank-1 process of this job, by its environment
        for p in $(pgrep -f "$tmp/big.bin"); do
            if tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then pid=$p; fi
        done
        [ -n "$pid" ] && break
        sleep 0.1
    done
    for i in $(seq 1 300); do # rank 0 has printed: it is generating, and waits on rank 1 every token
        [ -s "$tmp/out" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] && kill -9 "$pid"
    wait "$job"
    st=$(cat "$tmp/killed.status")
    cmd="mpirun -np 2 llamix generate --mpi ... (rank 1 killed)"
    if [ -z "$pid" ]; then failure "a rank killed mid-run" "rank 1 was not found running"
    elif [ "$st" -eq 0 ] || [ "$st" -eq 124 ]; then failure "a rank killed mid-run" "exit status $st (124: a hang)"
    elif ! grep -q "rank 1 (holding $tmp/big.bin) was lost" "$tmp/err"; then failure "a rank killed mid-run" "rank 0 does not name rank 1"
    else pass "a rank killed mid-run: the job ends, rank 0 names it"; fi
fi

# ------------------------------------------------------------------ the real tok512 models
models=${LLAMIX_MODELS:-}
if [ -n "$models" ] && [ -f "$models/stories260K.bin" ] && [ -f "$models/llama2xs_tok512.bin" ] && [ -f "$models/tok512.bin" ]; then
    s=$models/stories260K.bin x=$models/llama2xs_tok512.bin t=$models/tok512.bin
    for mode in me ce ce-mixture; do
        same "real K=2 R=2 $mode" 2 -m "$s" -m "$x" -z "$t" -w 0.6,0.4 -e "$mode" -s 42 -n 120 -p "Once upon a time"
    done
    # One thread a rank against the single process's two: the logits do not depend on the threads.
    run "$LLAMIX" generate -t 2 -m "$s" -m "$x" -z "$t" -e ce -s 8 -n 120
    cp "$tmp/out" "$tmp/two"
    run mpi 2 "$LLAMIX" generate --mpi -t 1 -m "$s" -m "$x" -z "$t" -e ce -s 8 -n 120
    stdout_is "real K=2 R=2 ce: -t 1 a rank is the single process at -t 2" "$tmp/two"
    same "real K=3 R=3 ce greedy" 3 -m "$s" -m "$x" -m "$s" -z "$t" -e ce --temp 0 -n 120
    same "real K=3 R=2 me --top-k 40" 2 -m "$s" -m "$x" -m "$s" -z "$t" -e me --top-k 40 -s 3 -n 120
    printf 'Once upon a time, there was a little girl named Lily. She loved to play outside.\n' >"$tmp/story.txt"
    score_same "real score K=2 R=2" 2 -m "$s" -m "$x" -z "$t" -f "$tmp/story.txt" --fit-weights
else
    echo "skip: the real tok512 models are not in LLAMIX_MODELS='$models'"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
