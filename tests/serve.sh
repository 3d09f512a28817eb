#!/bin/sh
# serve.sh: `llamix serve` end to end on ephemeral loopback ports (make check runs it when the
# server is built): curl for the plain and streamed basics, tests/serve_client.py (Python's
# standard library) for everything else and the comparisons with `llamix generate`; the queue
# limit (429), a stop while a request runs (503 for newcomers, the running one finishes, exit 0),
# and the real models when present. Every server runs under `timeout`.
. "${srcdir:-.}/tests/harness.sh"
LLAMIX=${LLAMIX:-./llamix}
client="python3 ${srcdir:-.}/tests/serve_client.py"
if ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
    echo "SKIP: serve.sh needs python3 and curl"
    exit 77
fi

tok16 hello >"$tmp/tok16.bin"
init "$tmp/a.bin" --shape tiny -s 1
init "$tmp/b.bin" --shape tiny -s 2 --version 0 --separate-classifier
members="-m $tmp/a.bin -m $tmp/b.bin -z $tmp/tok16.bin"

# start NAME ARGS...: a server in the background; sets $pid and $port (from its first stderr line).
start() {
    _name=$1
    shift
    timeout 300 "$LLAMIX" serve --port 0 -t 1 "$@" 2>"$tmp/$_name.err" &
    pid=$!
    port=
    for _i in $(seq 100); do
        port=$(sed -n '1s/^llamix: listening on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$tmp/$_name.err")
        [ -n "$port" ] && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        cmd="$LLAMIX serve $*"
        failure "$_name: start" "no 'listening on' line"
        sed 's/^/      /' "$tmp/$_name.err"
        port=0
    fi
}
# stop NAME: SIGTERM; the server must exit 0 within 10 s.
stop() {
    kill -TERM "$pid"
    _i=0
    while kill -0 "$pid" 2>/dev/null && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
    wait "$pid"
    _st=$?
    cmd="kill -TERM (llamix serve)"
    if [ $_st -eq 0 ]; then pass "$1: SIGTERM, exit 0"; else failure "$1: SIGTERM" "exit status $_st"; fi
}

start main $members --parallel 8 --queue 64 --api-key sekrit
if [ "$port" -ne 0 ]; then
    url=http://127.0.0.1:$port
    auth="Authorization: Bearer sekrit"
    # curl: a plain completion and a streamed one, parsed with Python's json.
    cmd="curl $url/v1/completions"
    curl -s -H "$auth" -H 'Content-Type: application/json' "$url/v1/completions" \
        -d '{"prompt": "hello", "max_tokens": 12, "seed": 3}' >"$tmp/out" 2>"$tmp/err"
    if python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["object"]=="text_completion" and len(r["choices"])==1' "$tmp/out"; then
        pass "curl: a completion"
    else failure "curl: a completion" "not a text_completion"; fi
    cmd="curl -N $url/v1/completions (stream)"
    curl -sN -H "$auth" "$url/v1/completions" \
        -d '{"prompt": "hello", "max_tokens": 12, "seed": 3, "stream": true}' >"$tmp/stream" 2>"$tmp/err"
    python3 - "$tmp/out" "$tmp/stream" <<'EOF' && pass "curl: a stream is the same text, then [DONE]" || failure "curl: stream" "see above"
import json, sys
plain = json.load(open(sys.argv[1]))["choices"][0]["text"]
lines = [l for l in open(sys.argv[2]).read().split("\n") if l]
assert lines[-1] == "data: [DONE]", lines[-1]
text = "".join(json.loads(l[6:])["choices"][0]["text"] for l in lines[:-1])
assert text == plain, (text, plain)
EOF
    python3 -c 'import sys; sys.stdout.write("{\"prompt\": \"" + "a" * (1 << 20) + "\"}")' >"$tmp/big.json"
    cmd="curl --data-binary @big.json (Expect: 100-continue)"
    code=$(curl -s -o "$tmp/out" -w '%{http_code}' -H "$auth" -H 'Expect: 100-continue' --data-binary @"$tmp/big.json" \
        "$url/v1/completions")
    if [ "$code" = 413 ] && grep -q '"error"' "$tmp/out"; then pass "curl: a body over 1 MiB, 413 before it is sent"
    else failure "curl: a body over 1 MiB" "status $code"; fi
    cmd="curl without the key"
    code=$(curl -s -o "$tmp/out" -w '%{http_code}' "$url/v1/models")
    if [ "$code" = 401 ]; then pass "curl: no key, 401"; else failure "curl: no key" "status $code"; fi
    cmd="$client check $port ..."
    if timeout 240 $client check "$port" --llamix "$LLAMIX" $members --key sekrit >"$tmp/client" 2>&1; then
        passed=$((passed + $(grep -c '^ok' "$tmp/client")))
        pass "serve_client.py check"
    else
        grep -v '^ok' "$tmp/client" | cut -c1-400
        failure "serve_client.py check" "$(grep -c '^FAIL' "$tmp/client") checks failed"
    fi
    stop main
fi

# The queue: one running, one waiting, the third refused. Members of the 15M shape (vocabulary
# 16), so that a greedy 200-token request takes long enough to hold its slot.
init "$tmp/big1.bin" --shape 15M --vocab 16 -s 5
init "$tmp/big2.bin" --shape 15M --vocab 16 -s 6
start queue -m "$tmp/big1.bin" -m "$tmp/big2.bin" -z "$tmp/tok16.bin" --parallel 1 --queue 1
if [ "$port" -ne 0 ]; then
    cmd="$client queue $port"
    if timeout 60 $client queue "$port" >"$tmp/client" 2>&1; then pass "queue full: 429"
    else cat "$tmp/client"; failure "queue full" "see above"; fi
    stop queue
fi

# A stop while a stream runs: newcomers get 503, the stream ends with [DONE], exit 0.
# (The 15M members again, greedy: the stream lasts well past the signal.)
start grace -m "$tmp/big1.bin" -m "$tmp/big2.bin" -z "$tmp/tok16.bin" --parallel 2 --grace 30
if [ "$port" -ne 0 ]; then
    url=http://127.0.0.1:$port
    curl -sN "$url/v1/completions" -d '{"prompt": "hello", "max_tokens": 200, "temperature": 0, "ensemble": {"mode": "ce"}, "stream": true}' \
        >"$tmp/stream" 2>/dev/null &
    curl_pid=$!
    sleep 0.3
    kill -TERM "$pid"
    sleep 0.1
    code=$(curl -s -o "$tmp/out" -w '%{http_code}' "$url/v1/completions" -d '{"prompt": "hello"}')
    cmd="curl during the stop"
    if [ "$code" = 503 ] && grep -q '"error"' "$tmp/out"; then pass "503 while shutting down"
    else failure "503 while shutting down" "status $code"; fi
    wait "$curl_pid"
    if tail -n 2 "$tmp/stream" | grep -q '^data: \[DONE\]'; then pass "the running stream finished"
    else failure "the running stream finished" "no [DONE]: $(tail -c 200 "$tmp/stream")"; fi
    wait "$pid"
    st=$?
    if [ $st -eq 0 ]; then pass "grace: exit 0"; else failure "grace: exit 0" "exit $st"; fi
fi

# Bad command lines.
error "serve without a model" 2 "model" -- "$LLAMIX" serve
error "serve --port too big" 2 "--port" -- "$LLAMIX" serve $members --port 70000
error "serve --host not an address" 1 "--host" -- "$LLAMIX" serve $members --host nowhere
error "serve with two tokenizers" 2 "-z" -- "$LLAMIX" serve $members -z "$tmp/tok16.bin"

# The real models, when present: the seed reproduces llama2.c-style output from the CLI.
models=${LLAMIX_MODELS:-}
if [ -n "$models" ] && [ -f "$models/stories260K.bin" ] && [ -f "$models/tok512.bin" ]; then
    start real -m "$models/stories260K.bin" -z "$models/tok512.bin" --parallel 4
    if [ "$port" -ne 0 ]; then
        cmd="real: seed 42 vs llamix generate"
        "$LLAMIX" generate -m "$models/stories260K.bin" -z "$models/tok512.bin" -p "Once upon a time" -n 60 -s 42 -t 1 \
            >"$tmp/cli" 2>/dev/null
        $client complete "$port" '{"prompt": "Once upon a time", "max_tokens": 60, "seed": 42}' >"$tmp/out" 2>"$tmp/err"
        if python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["choices"][0]["text"]; c=open(sys.argv[2]).read(); assert c == "Once upon a time" + t + "\n", (t, c)' \
            "$tmp/out" "$tmp/cli" 2>>"$tmp/err"; then pass "real: the seed gives the CLI's text"
        else failure "real: the seed gives the CLI's text" "differs"; fi
        stop real
    fi
else
    echo "skip: the real-model case (no stories260K.bin and tok512.bin in '$models')"
fi

echo "serve.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
