#!/usr/bin/env python3
"""serve_client.py: a client of `llamix serve` on Python's standard library only (urllib,
http.client), and the checks tests/serve.sh runs with it.

    serve_client.py check PORT --llamix PATH -m A -m B -z TOK [--key KEY]
        every check against a running server (with --api-key KEY if given), comparing texts with
        `llamix generate` run on the same members; exit 1 on the first failing check.
    serve_client.py queue PORT      with a server of --parallel 1 --queue 1: a third request is 429
    serve_client.py complete PORT JSON   print the response body of one completion

bench/serve-load imports complete() and stream() from here."""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

KEY = None


def headers(extra=None):
    h = {"Content-Type": "application/json"}
    if KEY:
        h["Authorization"] = "Bearer " + KEY
    h.update(extra or {})
    return h


def request(port, method, path, body=None, extra=None, raw=None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers=headers(extra))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def metrics_show(port, *lines):
    """Polls /metrics until it has every one of these lines (True), or gives up after 10 s."""
    for _ in range(2000):
        have = request(port, "GET", "/metrics")[1].splitlines()
        if all(line in have for line in lines):
            return True
        time.sleep(0.005)
    return False


def complete(port, body):
    status, out = request(port, "POST", "/v1/completions", body)
    if status != 200:
        raise RuntimeError("status %d: %s" % (status, out))
    return out


def stream(port, body, on_chunk=None):
    """Stream a completion: the list of chunks (parsed), checking the SSE framing and [DONE]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps(dict(body, stream=True)), headers())
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError("stream status %d: %s" % (r.status, r.read()))
    if not r.getheader("Content-Type", "").startswith("text/event-stream"):
        raise RuntimeError("stream Content-Type %r" % r.getheader("Content-Type"))
    chunks, done, buf = [], False, b""
    while True:
        line = r.readline()
        if not line:
            break
        if line == b"\n":
            continue
        if not line.startswith(b"data: ") or not line.endswith(b"\n"):
            raise RuntimeError("not an SSE data line: %r" % line)
        payload = line[6:-1]
        if payload == b"[DONE]":
            done = True
            continue
        if done:
            raise RuntimeError("data after [DONE]")
        chunk = json.loads(payload)
        chunks.append(chunk)
        if on_chunk:
            on_chunk(chunk)
    conn.close()
    if not done:
        raise RuntimeError("the stream ended without data: [DONE]")
    return chunks


def stream_texts(chunks):
    """Per choice index: the concatenated text and the finish_reason."""
    texts, finish = {}, {}
    for c in chunks:
        if c.get("object") != "text_completion":
            raise RuntimeError("chunk object %r" % c.get("object"))
        for ch in c["choices"]:
            texts[ch["index"]] = texts.get(ch["index"], "") + ch["text"]
            if ch["finish_reason"] is not None:
                if ch["index"] in finish:
                    raise RuntimeError("two finish chunks for choice %d" % ch["index"])
                finish[ch["index"]] = ch["finish_reason"]
    return texts, finish


# ------------------------------------------------------------------ the checks

failures = 0


def ok(name, cond, detail=""):
    global failures
    if cond:
        print("ok: serve: %s" % name)
    else:
        failures += 1
        print("FAIL: serve: %s %s" % (name, detail))
    return cond


def cli_text(args, prompt, extra):
    """What `llamix generate` prints after the echoed prompt (its last newline dropped)."""
    cmd = [args.llamix, "generate"] + sum([["-m", m] for m in args.m], []) + ["-z", args.z, "-p", prompt, "-t", "1"]
    out = subprocess.run(cmd + extra, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd + extra), out.stderr.decode()))
    text = out.stdout.decode()
    echo = prompt  # the tok16 test vocabulary echoes these prompts as given
    if not text.startswith(echo) or not text.endswith("\n"):
        raise RuntimeError("unexpected CLI output %r" % text)
    return text[len(echo):-1]


def check(args):
    port = args.port
    base = {"prompt": "hello", "max_tokens": 24, "temperature": 1.0, "top_p": 0.9}

    # Plain: the response's shape.
    r = complete(port, dict(base, seed=7))
    ok("completion object", r.get("object") == "text_completion" and r["id"].startswith("cmpl-") and
       isinstance(r.get("created"), int) and len(r["choices"]) == 1, r)
    c = r["choices"][0]
    seed7 = c["text"]
    ok("completion choice", c["index"] == 0 and c["finish_reason"] in ("stop", "length") and c["logprobs"] is None, c)
    u = r["usage"]
    ok("usage", u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u)

    # The seed reproduces the CLI's text, in every mode and with weights; a negative control: a
    # different seed changes at least one of several texts.
    for mode, weights in (("me", None), ("ce", None), ("ce-mixture", None), ("me", [0.8, 0.2]), ("ce", [0.3, 0.7])):
        extra = ["-n", "24", "--temp", "1", "--top-p", "0.9", "-e", mode]
        body = dict(base, ensemble={"mode": mode})
        if weights:
            body["ensemble"]["weights"] = weights
            extra += ["-w", ",".join(map(str, weights))]
        for seed in (1, 2, 3):
            want = cli_text(args, "hello", extra + ["-s", str(seed)])
            got = complete(port, dict(body, seed=seed))["choices"][0]["text"]
            ok("seed %d, %s%s == llamix generate -s %d" % (seed, mode, " weights %s" % weights if weights else "", seed),
               got == want, "server %r, CLI %r" % (got, want))
    uniform = [cli_text(args, "hello", ["-n", "24", "--temp", "1", "--top-p", "0.9", "-s", str(s)]) for s in (1, 2, 3)]
    weighted = [complete(port, dict(base, seed=s, ensemble={"weights": [0.8, 0.2]}))["choices"][0]["text"]
                for s in (1, 2, 3)]
    ok("weights change the text (negative control)", uniform != weighted, (uniform, weighted))
    texts = {complete(port, dict(base, seed=s))["choices"][0]["text"] for s in range(10, 16)}
    ok("different seeds give different texts (negative control)", len(texts) > 1, texts)
    # Sampler settings per request: greedy CE is the CLI's --temp 0 -e ce.
    want = cli_text(args, "hello", ["-n", "20", "--temp", "0", "-e", "ce", "-s", "1"])
    got = complete(port, {"prompt": "hello", "max_tokens": 20, "temperature": 0, "ensemble": {"mode": "ce"}})
    ok("greedy ce == CLI", got["choices"][0]["text"] == want, (got["choices"][0]["text"], want))
    want = cli_text(args, "hello", ["-n", "20", "--top-k", "3", "--min-p", "0.05", "--top-p", "1", "-s", "9"])
    got = complete(port, {"prompt": "hello", "max_tokens": 20, "top_k": 3, "min_p": 0.05, "top_p": 1, "seed": 9})
    ok("top_k, min_p == CLI", got["choices"][0]["text"] == want, (got["choices"][0]["text"], want))

    # Streamed: the chunks concatenate to the plain text, one finish chunk, then [DONE].
    for seed in (4, 5):
        plain = complete(port, dict(base, seed=seed))["choices"][0]
        chunks = stream(port, dict(base, seed=seed))
        texts, finish = stream_texts(chunks)
        ok("stream seed %d == plain" % seed, texts.get(0) == plain["text"] and finish.get(0) == plain["finish_reason"],
           (texts, finish, plain))
        n_plain = complete(port, dict(base, seed=seed))["usage"]["completion_tokens"]
        n_token_chunks = sum(c["choices"][0]["finish_reason"] is None for c in chunks)
        ok("stream seed %d: a chunk per token, then one finish chunk" % seed,
           n_token_chunks == n_plain and chunks[-1]["choices"][0]["finish_reason"] is not None, (len(chunks), n_plain))

    # n > 1: choice j is the single completion with seed + j, streamed or not.
    r = complete(port, dict(base, seed=20, n=3))
    ok("n=3 gives 3 choices", sorted(c["index"] for c in r["choices"]) == [0, 1, 2], r["choices"])
    for c in r["choices"]:
        single = complete(port, dict(base, seed=20 + c["index"]))["choices"][0]["text"]
        ok("n=3 choice %d == seed %d" % (c["index"], 20 + c["index"]), c["text"] == single, (c["text"], single))
    texts, finish = stream_texts(stream(port, dict(base, seed=20, n=3)))
    ok("n=3 streamed == plain", all(texts.get(c["index"]) == c["text"] for c in r["choices"]) and len(finish) == 3,
       (texts, finish))
    r2 = complete(port, dict(base, seed=20, prompt=["hello", "he"], n=2))
    ok("2 prompts x n=2 give 4 choices, prompt 0's equal n=3's", len(r2["choices"]) == 4 and
       r2["choices"][0]["text"] == r["choices"][0]["text"] and r2["choices"][1]["text"] == r["choices"][1]["text"],
       r2["choices"])

    # stop: the text ends before the stop string; it is the CLI's -r.
    for seed in range(30, 40):
        full = complete(port, dict(base, seed=seed, max_tokens=40))["choices"][0]["text"]
        if len(full) > 6:
            break
    stop = full[3:5]
    r = complete(port, dict(base, seed=seed, max_tokens=40, stop=[stop, "zzz"]))["choices"][0]
    want = cli_text(args, "hello", ["-n", "40", "--temp", "1", "--top-p", "0.9", "-s", str(seed), "-r", stop, "-r", "zzz"])
    ok("stop %r: cut and finish_reason stop" % stop, r["text"] == full[:full.index(stop)] and r["finish_reason"] == "stop",
       (r, full))
    ok("stop == CLI -r", r["text"] == want, (r["text"], want))
    texts, finish = stream_texts(stream(port, dict(base, seed=seed, max_tokens=40, stop=stop)))
    ok("stop streamed", texts.get(0) == r["text"] and finish.get(0) == "stop", (texts, finish))
    r = complete(port, dict(base, seed=seed, max_tokens=3))["choices"][0]
    ok("max_tokens: finish_reason length", r["finish_reason"] in ("length", "stop"), r)

    # logprobs: one entry per token, alternatives sorted, the chosen token's logprob among them
    # when it is one of the top ones, probabilities at most 1 in all.
    r = complete(port, dict(base, seed=41, logprobs=3))["choices"][0]
    lp = r["logprobs"]
    n = len(lp["tokens"])
    ok("logprobs: lengths", n > 0 and len(lp["token_logprobs"]) == n and len(lp["top_logprobs"]) == n and
       len(lp["text_offset"]) == n, lp)
    ok("logprobs: tokens spell the text", "".join(lp["tokens"]) == r["text"] or r["finish_reason"] == "stop", lp)
    good = True
    for i in range(n):
        top = lp["top_logprobs"][i]
        vals = list(top.values())
        good &= 1 <= len(top) <= 3 and vals == sorted(vals, reverse=True) and lp["token_logprobs"][i] <= 0
        good &= sum(2.718281828 ** v for v in vals) <= 1.0001
        good &= lp["token_logprobs"][i] <= vals[0] + 1e-6
        if lp["tokens"][i] in top:
            good &= abs(top[lp["tokens"][i]] - lp["token_logprobs"][i]) < 1e-5
    ok("logprobs: alternatives sorted, consistent, at most 1 in all", good, lp)
    r0 = complete(port, dict(base, seed=41, logprobs=0))["choices"][0]
    ok("logprobs 0: no alternatives, same text", r0["text"] == r["text"] and all(t == {} for t in r0["logprobs"]["top_logprobs"]),
       r0)
    ok("logprobs do not change the text", complete(port, dict(base, seed=41))["choices"][0]["text"] == r["text"])
    g = complete(port, dict(base, seed=41, temperature=0, logprobs=2))["choices"][0]["logprobs"]
    ok("greedy logprobs are 0 (a one-hot)", all(abs(x) < 1e-6 for x in g["token_logprobs"]), g)
    chunks = stream(port, dict(base, seed=41, logprobs=3))
    slp = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["logprobs"]]
    ok("logprobs streamed", [x["token_logprobs"][0] for x in slp] == lp["token_logprobs"], slp)

    # 32 concurrent requests (half streamed) all succeed with the right texts.
    want = {s: complete(port, dict(base, seed=100 + s))["choices"][0]["text"] for s in range(32)}
    got, errors = {}, []

    def one(s):
        try:
            if s % 2:
                got[s] = stream_texts(stream(port, dict(base, seed=100 + s)))[0].get(0)
            else:
                got[s] = complete(port, dict(base, seed=100 + s))["choices"][0]["text"]
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(s,)) for s in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ok("32 concurrent requests", not errors and got == want,
       "errors %s, wrong %s" % (errors[:3], [s for s in want if got.get(s) != want[s]]))

    # A client killed mid-stream: its sequence is freed (active sequences back to 0), and the
    # server goes on serving.
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps(dict(base, prompt="hello", max_tokens=60, seed=3, stream=True, ensemble={"mode": "ce"}))
    auth = "Authorization: Bearer %s\r\n" % KEY if KEY else ""
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
               "Content-Length: %d\r\n\r\n%s" % (auth, len(body), body)).encode())
    first = s.recv(200)
    s.close()
    freed = metrics_show(port, "llamix_active_sequences 0", "llamix_queue_depth 0")
    ok("a client killed mid-stream frees its sequence", first.startswith(b"HTTP/1.1 200") and freed, first[:40])
    ok("the server goes on after that", complete(port, dict(base, seed=7))["choices"][0]["text"] == seed7)

    # Errors, all in OpenAI's shape.
    def error(name, status, method, path, body=None, raw=None, extra=None, param=None):
        st, out = request(port, method, path, body, extra, raw)
        shape = isinstance(out, dict) and set(out) == {"error"} and set(out["error"]) == {"message", "type", "param", "code"}
        ok("%s -> %d" % (name, status), st == status and shape and (param is None or out["error"]["param"] == param),
           (st, out))

    error("malformed JSON", 400, "POST", "/v1/completions", raw=b'{"prompt": "a",')
    error("not an object", 400, "POST", "/v1/completions", [1, 2])
    error("invalid UTF-8", 400, "POST", "/v1/completions", raw=b'{"prompt": "\xff"}')
    error("no prompt", 400, "POST", "/v1/completions", {"max_tokens": 3}, param="prompt")
    error("prompt of the wrong type", 400, "POST", "/v1/completions", {"prompt": 3}, param="prompt")
    error("max_tokens a string", 400, "POST", "/v1/completions", {"prompt": "a", "max_tokens": "3"}, param="max_tokens")
    error("max_tokens negative", 400, "POST", "/v1/completions", {"prompt": "a", "max_tokens": -1}, param="max_tokens")
    error("temperature out of range", 400, "POST", "/v1/completions", {"prompt": "a", "temperature": -1},
          param="temperature")
    error("top_p 0", 400, "POST", "/v1/completions", {"prompt": "a", "top_p": 0}, param="top_p")
    error("n 0", 400, "POST", "/v1/completions", {"prompt": "a", "n": 0}, param="n")
    error("logprobs 6", 400, "POST", "/v1/completions", {"prompt": "a", "logprobs": 6}, param="logprobs")
    error("stream not a boolean", 400, "POST", "/v1/completions", {"prompt": "a", "stream": "yes"}, param="stream")
    error("stop empty", 400, "POST", "/v1/completions", {"prompt": "a", "stop": [""]}, param="stop")
    error("unknown mode", 400, "POST", "/v1/completions", {"prompt": "a", "ensemble": {"mode": "xx"}},
          param="ensemble.mode")
    error("wrong number of weights", 400, "POST", "/v1/completions", {"prompt": "a", "ensemble": {"weights": [1]}},
          param="ensemble.weights")
    error("a zero weight", 400, "POST", "/v1/completions", {"prompt": "a", "ensemble": {"weights": [1, 0]}},
          param="ensemble.weights")
    error("nesting too deep", 400, "POST", "/v1/completions", raw=b'{"prompt":"a","x":' + b"[" * 50 + b"]" * 50 + b"}")
    error("duplicate keys", 400, "POST", "/v1/completions", raw=b'{"prompt":"a","prompt":"b"}')
    error("prompt longer than the context", 400, "POST", "/v1/completions", {"prompt": "hello " * 200},
          param="prompt")
    error("a prompt the vocabulary cannot encode", 400, "POST", "/v1/completions", {"prompt": "xyz"}, param="prompt")
    error("body over 1 MiB", 413, "POST", "/v1/completions", raw=b'{"prompt":"' + b"a" * (1 << 20) + b'"}')
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    big = (b'{"prompt":"' + b"a" * (1 << 16) + b'"}' for _ in range(17))  # 17 x 64 KiB, chunked: no length
    conn.request("POST", "/v1/completions", big, headers(), encode_chunked=True)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    ok("a chunked body over 1 MiB -> 413", resp.status == 413 and b'"error"' in body, (resp.status, body[:200]))
    error("unknown path", 404, "GET", "/v2/nothing")
    error("GET on completions", 405, "GET", "/v1/completions")
    error("POST on models", 405, "POST", "/v1/models", {})
    if KEY:
        st, out = request(port, "POST", "/v1/completions", {"prompt": "a"}, {"Authorization": "Bearer wrong"})
        ok("wrong key -> 401", st == 401 and "error" in out, (st, out))
        saved = globals()["KEY"]
        globals()["KEY"] = None
        st, out = request(port, "GET", "/v1/models")
        ok("no key -> 401", st == 401 and "error" in out, (st, out))
        st, out = request(port, "GET", "/health")
        ok("/health needs no key", st == 200 and out == {"status": "ok"}, (st, out))
        globals()["KEY"] = saved

    # /v1/models and /metrics.
    st, out = request(port, "GET", "/v1/models")
    ok("/v1/models lists the ensemble and its members", st == 200 and out["object"] == "list" and
       len(out["data"]) == 1 + len(args.m) and len(out["data"][0]["members"]) == len(args.m), out)
    st, m = request(port, "GET", "/metrics")
    names = ["llamix_requests_total{status=\"200\"}", "llamix_requests_total{status=\"400\"}",
             "llamix_prompt_tokens_total", "llamix_generated_tokens_total", "llamix_active_sequences",
             "llamix_queue_depth", "llamix_member_forward_calls_total{member=\"1\"}",
             "llamix_member_tokens_total{member=\"0\"}", "llamix_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
             "llamix_time_per_token_seconds_count"]
    ok("/metrics has every series", st == 200 and all(n in m for n in names), [n for n in names if n not in m])
    return 0 if failures == 0 else 1


def queue(args):
    """--parallel 1 --queue 1: one running, one waiting, the third is refused with 429."""
    long = {"prompt": "hello", "max_tokens": 200, "temperature": 0, "ensemble": {"mode": "ce"}}
    results = []

    def run():
        results.append(request(args.port, "POST", "/v1/completions", long)[0])

    # The third request goes in once the server says the first runs and the second waits (a
    # fixed sleep let a fast machine finish the first before the third arrived).
    threads = [threading.Thread(target=run) for _ in range(2)]
    threads[0].start()
    running = metrics_show(args.port, "llamix_active_sequences 1")
    threads[1].start()
    waiting = metrics_show(args.port, "llamix_queue_depth 1")
    ok("one request runs and one waits", running and waiting, (running, waiting))
    st, out = request(args.port, "POST", "/v1/completions", long)
    for t in threads:
        t.join(60)
    ok("queue full -> 429", st == 429 and out["error"]["type"] == "rate_limit_error", (st, out))
    ok("the two admitted requests succeed", results == [200, 200], results)
    return 0 if failures == 0 else 1


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["check", "queue", "complete"])
    p.add_argument("port", type=int)
    p.add_argument("body", nargs="?")
    p.add_argument("--llamix")
    p.add_argument("-m", action="append", default=[])
    p.add_argument("-z")
    p.add_argument("--key")
    args = p.parse_args()
    global KEY
    KEY = args.key
    if args.what == "complete":
        print(json.dumps(complete(args.port, json.loads(args.body))))
        return 0
    return check(args) if args.what == "check" else queue(args)


if __name__ == "__main__":
    sys.exit(main())
