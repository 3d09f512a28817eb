#!/bin/sh
# bench.sh: `llamix bench`'s weights (-w), expected-cost fields, catch-up test (--catch-up) and
# scoring test (--score), run by make check. Fast: tiny members (--shape tiny, `llamix init`
# files), -r 1..2, no limits.
# Timings are never checked against thresholds here (speed belongs to benchmarks); what is
# checked is that the options are refused or take effect, and that the reports carry the fields
# and only when they should (each positive check has its negative control).
# Environment: LLAMIX (the program, default ./llamix). Prints one line per case and
# "N passed, N failed"; exits 1 if anything failed.
LLAMIX=${LLAMIX:-./llamix}
if [ ! -x "$LLAMIX" ]; then
    echo "bench.sh: no llamix program at '$LLAMIX' (set LLAMIX)" >&2
    exit 1
fi
. "$(dirname "$0")/harness.sh"

# check NAME CONDITION...: pass if the shell condition holds, else fail with the last run's output.
check() {
    name=$1
    shift
    if "$@"; then pass "$name"; else failure "$name" "not so: $*"; fi
}
# field NAME LINE: the value of "NAME": in LINE (up to the next , or }).
field() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
# positive X: X is a finite number > 0.
positive() { printf '%s\n' "$1" | awk '{ exit !($1 ~ /^[0-9.e+-]+$/ && $1 + 0 > 0) }'; }

quick="--no-limits -r 1 -p 4 -t 1"
init "$tmp/a.bin" -s 1
init "$tmp/b.bin" -s 2 --dim 64 --hidden-dim 96

# ------------------------------------------------------------------ -w: one line, exit 2
error "bench -w: fewer weights than K" 2 "--weights" "expected 3" -- "$LLAMIX" bench --shape tiny -k 3 -w 1,2 $quick
error "bench -w: more weights than K" 2 "--weights" "got more" -- "$LLAMIX" bench --shape tiny -k 2 -w 1,2,3 $quick
error "bench -w: a zero weight" 2 "--weights" "> 0" -- "$LLAMIX" bench --shape tiny -k 2 -w 1,0 $quick
error "bench -w: a negative weight" 2 "--weights" "> 0" -- "$LLAMIX" bench --shape tiny -k 2 -w 1,-0.5 $quick
error "bench -w: nan" 2 "--weights" "nan" -- "$LLAMIX" bench --shape tiny -k 2 -w nan,1 $quick
error "bench -w: an infinite sum" 2 "--weights" "finite" -- "$LLAMIX" bench --shape tiny -k 2 -w 1e308,1e308 $quick
error "bench -w with -k LIST" 2 "--weights" "-k with 2 values" -- "$LLAMIX" bench --shape tiny -k 2,3 -w 1,1 $quick
error "bench -w: K defaults to the -m models" 2 "--weights" "expected 2" -- "$LLAMIX" bench "$tmp/a.bin" "$tmp/b.bin" -w 1,1,1 $quick

# ------------------------------------------------------------------ --catch-up: one line, exit 2
error "bench --catch-up 0" 2 "--catch-up" "'0'" -- "$LLAMIX" bench --shape tiny --catch-up 0 $quick
error "bench --catch-up -2" 2 "--catch-up" "'-2'" -- "$LLAMIX" bench --shape tiny --catch-up 1,-2 $quick
error "bench --catch-up beyond the context" 2 "--catch-up 61" "seq_len 64" -- \
    "$LLAMIX" bench -m "$tmp/a.bin" --catch-up 61 -n 2 $quick
error "bench --catch-up too many spans" 2 "--catch-up" "at most 16" -- \
    "$LLAMIX" bench --shape tiny --catch-up "$(seq -s, 2 18)" $quick
# the largest span that fits (4 + 60 = 64 positions) is accepted
run "$LLAMIX" bench -m "$tmp/a.bin" --catch-up 60 -n 2 -e single -o json $quick
check "bench --catch-up at the context's end runs" grep -q '"span":60,' "$tmp/out"

# ------------------------------------------------------------------ --score
error "bench --score 1" 2 "--score" "'1'" -- "$LLAMIX" bench --shape tiny --score 1 $quick
error "bench --score beyond the context" 2 "--score 65" "seq_len 64" -- "$LLAMIX" bench -m "$tmp/a.bin" --score 65 -n 2 $quick
run "$LLAMIX" bench -m "$tmp/a.bin" -e single -n 0 --score 8,64 -o json $quick
cp "$tmp/out" "$tmp/s.json"
check "bench --score: windows 8 and 64 (the context's end), in order" \
    [ "$(sed -n 's/.*"context":\([0-9]*\),"tokens":\([0-9]*\),.*/\1:\2/p' "$tmp/s.json" | tr '\n' ' ')" = "8:14 64:126 " ]
w64=$(grep '"context":64,' "$tmp/s.json")
check "bench --score: tok/s > 0" positive "$(field tok_s "$w64")"
check "bench --score: no efficiency without the limits" [ "$(field score_efficiency "$w64")" = null ]
# GFLOP/s over tok/s is the work per scored token: 2 (L (2 D^2 + 2 D KVD + 3 D H) + L D C + V D)
check "bench --score: GFLOP/s count every row's classifier and attention" awk -v g="$(field gflops "$w64")" \
    -v t="$(field tok_s "$w64")" -v m="$(grep '"path":' "$tmp/s.json")" 'BEGIN {
        n = split("dim hidden_dim n_layers n_heads n_kv_heads vocab_size", k, " ")
        for (i = 1; i <= n; i++) { match(m, "\"" k[i] "\":[0-9]+"); c[k[i]] = substr(m, RSTART + length(k[i]) + 3, RLENGTH - length(k[i]) - 3) }
        D = c["dim"]; H = c["hidden_dim"]; L = c["n_layers"]; V = c["vocab_size"]; KVD = D * c["n_kv_heads"] / c["n_heads"]
        x = 2 * (L * (2 * D * D + 2 * D * KVD + 3 * D * H) + L * D * 64 + V * D); y = g * 1e9 / t
        exit !(D > 0 && (y - x) * (y - x) < 1e-8 * x * x) }'
run "$LLAMIX" bench -m "$tmp/a.bin" -e single -n 0 --score 8 $quick
check "bench md: the scoring table" sh -c "grep -q 'what llamix score -c C runs per member' '$tmp/out' && grep -q '^|      1 | a.bin  |       1 |    8 |     14 |' '$tmp/out'"

# ------------------------------------------------------------------ the JSON of a tiny run
run "$LLAMIX" bench --shape tiny -k 3 -w 2,1,1 -n 4 --catch-up 4,2 -o json $quick
cp "$tmp/out" "$tmp/w.json"
check "bench -w: exits 0" [ "$status" -eq 0 ]
check "bench -w: the normalised weights in the run object" grep -q '^"weights":\[0.5,0.25,0.25\],$' "$tmp/w.json"
span1=$(grep '"span":1,' "$tmp/w.json")
check "bench --catch-up: span 1's ratio is exactly 1" \
    [ "$(field ratio "$span1")/$(field ratio_min "$span1")/$(field ratio_max "$span1")" = "1/1/1" ]
check "bench --catch-up: span 1's seconds > 0" positive "$(field seconds "$span1")"
check "bench --catch-up: spans 2 and 4, 1 first" \
    [ "$(sed -n 's/.*"span":\([0-9]*\),.*/\1/p' "$tmp/w.json" | tr '\n' ' ')" = "1 4 2 " ]
span4=$(grep '"span":4,' "$tmp/w.json")
check "bench --catch-up: span 4 at position -p, ratio > 0" \
    sh -c "[ '$(field position "$span4")' = 4 ] && [ '$(field threads "$span4")' = 1 ]"
check "bench --catch-up: span 4's ratio lies in its range" awk -v r="$(field ratio "$span4")" \
    -v lo="$(field ratio_min "$span4")" -v hi="$(field ratio_max "$span4")" 'BEGIN { exit !(lo > 0 && lo <= r && r <= hi) }'
for mode in me ce; do
    line=$(grep "\"mode\":\"$mode\",.*\"test\":\"tg4\"" "$tmp/w.json")
    check "bench: $mode tg has expected_s_per_token > 0" positive "$(field expected_s_per_token "$line")"
    check "bench: $mode tg has over_expected > 0" positive "$(field over_expected "$line")"
done
check "bench: no expected cost on pp results" sh -c "! grep '\"test\":\"pp' '$tmp/w.json' | grep -q expected"
check "bench: no expected cost on single results" sh -c "! grep '\"mode\":\"single\"' '$tmp/w.json' | grep -q expected"
check "bench: every --shape member carries the shared single cost" \
    [ "$(grep -c '"single_s_per_token":\[{"threads":1,"seconds":' "$tmp/w.json")" -eq 3 ]
# ME's expected cost is sum_k w_k c_k with one shared c: c itself; CE's is 3c
me_e=$(field expected_s_per_token "$(grep '"mode":"me",.*"test":"tg4"' "$tmp/w.json")")
ce_e=$(field expected_s_per_token "$(grep '"mode":"ce",.*"test":"tg4"' "$tmp/w.json")")
c=$(grep -m 1 -o '"single_s_per_token":\[{"threads":1,"seconds":[^}]*' "$tmp/w.json" | sed 's/.*"seconds"://')
check "bench: me expects c, ce expects 3c (alike members, r 1)" awk -v m="$me_e" -v e="$ce_e" -v c="$c" \
    'BEGIN { d = m - c; f = e - 3 * c; exit !(d * d < 1e-6 * c * c && f * f < 1e-6 * c * c) }'

# negative controls: without the options, no catch-up and uniform weights; without single, no expected cost
run "$LLAMIX" bench --shape tiny -k 2 -n 4 -o json $quick
check "bench: no catch_up without --catch-up" sh -c "! grep -q catch_up '$tmp/out'"
check "bench: no score without --score" sh -c "! grep -q '\"score\":' '$tmp/out'"
check "bench: uniform weights without -w" grep -q '^"weights":\[0.5,0.5\],$' "$tmp/out"
check "bench: expected cost with the default modes" grep -q over_expected "$tmp/out"
run "$LLAMIX" bench --shape tiny -k 2 -n 4 -e ce,me -o json $quick
check "bench -e ce,me: no expected cost (no single measured)" sh -c "! grep -q 'expected\|single_s_per_token' '$tmp/out'"

# -w reaches ME's picks: member 1 runs nearly every token with -w 100,1,1, about a third without
calls0() { grep '"mode":"me",.*"test":"tg32"' "$tmp/out" | sed -n 's/.*"calls":\[\([0-9]*\),.*/\1/p'; }
run "$LLAMIX" bench --shape tiny -k 3 -w 100,1,1 -n 32 -e me -o json $quick
heavy=$(calls0)
run "$LLAMIX" bench --shape tiny -k 3 -n 32 -e me -o json $quick
even=$(calls0)
check "bench -w 100,1,1: ME picks member 1 for >= 28 of 32 tokens (got $heavy)" [ "${heavy:-0}" -ge 28 ]
check "bench uniform (control): ME picks member 1 for < 20 of 32 (got $even)" [ "${even:-99}" -lt 20 ]

# ------------------------------------------------------------------ uneven -m members
run "$LLAMIX" bench -m "$tmp/a.bin" -m "$tmp/b.bin" -m "$tmp/a.bin" -w 1,1,2 -n 4 --catch-up 2 -o json $quick
cp "$tmp/out" "$tmp/m.json"
check "bench -m: one single test per distinct file" \
    [ "$(grep '"mode":"single",.*"test":"tg4"' "$tmp/m.json" | sed -n 's/.*"member":\([0-9]*\),.*/\1/p' | tr '\n' ' ')" = "0 1 " ]
check "bench -m: catch-up of each distinct file" \
    [ "$(grep '"span":2,' "$tmp/m.json" | sed -n 's/.*"member":\([0-9]*\),.*/\1/p' | tr '\n' ' ')" = "0 1 " ]
check "bench -m: the repeated file shares the first one's single cost" \
    [ "$(grep '"path":' "$tmp/m.json" | sed -n '1p;3p' | sed -n 's/.*"single_s_per_token":\[\([^]]*\)\].*/\1/p' | sort -u | wc -l)" -eq 1 ]
c_a=$(grep '"path":' "$tmp/m.json" | sed -n 1p | sed 's/.*"seconds":\([^}]*\).*/\1/')
c_b=$(grep '"path":' "$tmp/m.json" | sed -n 2p | sed 's/.*"seconds":\([^}]*\).*/\1/')
me_e=$(field expected_s_per_token "$(grep '"mode":"me",.*"test":"tg4"' "$tmp/m.json")")
check "bench -m: ME expects 0.25 c_a + 0.25 c_b + 0.5 c_a (r 1)" awk -v m="$me_e" -v a="$c_a" -v b="$c_b" \
    'BEGIN { x = 0.75 * a + 0.25 * b; d = m - x; exit !(x > 0 && d * d < 1e-6 * x * x) }'

# ------------------------------------------------------------------ Markdown, and catch-up alone
run "$LLAMIX" bench --shape tiny -k 2 -n 4 --catch-up 2 $quick
check "bench md: the expected-cost rows" sh -c "grep -q '| me/expected |' '$tmp/out' && grep -q '| ce/sum      |' '$tmp/out'"
check "bench md: the catch-up table and its sentence" sh -c "grep -q 'relative to a one-token forward; the roofline target (issue 21)' '$tmp/out' && grep -q '^|      1 | tiny   |       1 |    2 |' '$tmp/out'"
run "$LLAMIX" bench --shape tiny -e single -n 0 --catch-up 2 $quick
check "bench -e single -n 0 --catch-up: catch-up alone" sh -c "[ $status -eq 0 ] && grep -q '^|      1 | tiny   |       1 |    2 |' '$tmp/out' && ! grep -q 'me/expected' '$tmp/out'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
