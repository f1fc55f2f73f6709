#!/usr/bin/env python3
"""Integration tests: start the real `gemmax serve` on loopback with the default 270M model and drive
it with the official `openai` client (plus plain HTTP for what the client cannot send).

Usage: test_server.py --gemmax PATH [--model PATH]. Exits non-zero if any check fails; the servers
it starts are stopped in every case (SIGTERM, then SIGKILL)."""
import argparse
import concurrent.futures
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

import openai

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"  FAIL: {what}", flush=True)


class Server:
    """`gemmax serve --port 0` as a context manager; the port comes from its first stdout line."""

    def __init__(self, gemmax, model, *extra):
        cmd = [gemmax, "serve", "--port", "0", "--host", "127.0.0.1", *extra]
        if model:
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = None
        self.name = None
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"model '([^']+)' on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.name, self.port = m.group(1), int(m.group(2))
                break
        if self.port is None:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r} {self.proc.stderr.read()}")

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        died = self.proc.poll()
        self.stop()
        if died is not None:  # the server exited by itself: show why
            print(f"gemmax serve exited on its own with status {died}; its stderr:\n"
                  f"{self.proc.stderr.read()[-4000:]}", flush=True)

    def client(self, api_key="none"):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=api_key, max_retries=0,
                             timeout=120)

    def http(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        return r.status, text

    def metric(self, name):
        _, text = self.http("GET", "/metrics")
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None


def greedy_completion(c, name, prompt, max_tokens=12, **kw):
    return c.completions.create(model=name, prompt=prompt, max_tokens=max_tokens, temperature=0, **kw)


def test_basics(s, c, gemmax, model):
    print("basics: models, completion vs `gemmax generate`, tokenize, health, metrics", flush=True)
    models = c.models.list()
    check([m.id for m in models.data] == [s.name], "GET /v1/models lists the served model")
    check(c.models.retrieve(s.name).id == s.name, "GET /v1/models/ID")
    r = greedy_completion(c, s.name, "The capital of France is", max_tokens=10)
    check(r.choices[0].finish_reason == "length", "completion finish_reason length")
    check(r.usage.completion_tokens == 10 and r.usage.prompt_tokens == 6, f"completion usage {r.usage}")
    cmd = [gemmax, "generate", "--prompt", "The capital of France is", "--max-tokens", "10", "--json"]
    if model:
        cmd += ["--model", model]
    gen = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    check(gen["text"] == r.choices[0].text, f"server text {r.choices[0].text!r} == generate {gen['text']!r}")
    status, body = s.http("POST", "/tokenize", {"prompt": "Hello world"})
    toks = json.loads(body)["tokens"]
    check(status == 200 and toks[0] == 2 and len(toks) == 3, f"tokenize: {body}")
    status, body = s.http("POST", "/detokenize", {"tokens": toks[1:]})
    check(status == 200 and json.loads(body)["prompt"] == "Hello world", f"detokenize: {body}")
    status, body = s.http("GET", "/health")
    check(status == 200, "health")
    _, text = s.http("GET", "/metrics")
    for name in ["gemmax_requests_total", "gemmax_generation_tokens_total", "gemmax_queue_depth",
                 "gemmax_running_sequences", "gemmax_kv_pages_used", "gemmax_time_to_first_token_seconds_bucket",
                 "gemmax_inter_token_latency_seconds_count"]:
        check(name in text, f"metrics has {name}")


def test_chat_streaming(s, c):
    print("chat: streaming equals non-streaming (greedy), usage chunk", flush=True)
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    full = c.chat.completions.create(model=s.name, messages=msgs, max_tokens=12, temperature=0)
    check(full.choices[0].message.role == "assistant", "chat message role")
    chunks = list(c.chat.completions.create(model=s.name, messages=msgs, max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check(text == full.choices[0].message.content, f"streamed {text!r} == {full.choices[0].message.content!r}")
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    check(finishes == [full.choices[0].finish_reason], f"one finish_reason in the stream: {finishes}")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == full.usage.completion_tokens,
          "usage chunk at the end")


def test_logprobs(s, c):
    print("logprobs: completions (with echo) and chat", flush=True)
    r = greedy_completion(c, s.name, "The capital of France is", max_tokens=5, logprobs=3)
    lp = r.choices[0].logprobs
    check(len(lp.tokens) == 5 and len(lp.top_logprobs) == 5, "one logprob entry per token")
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        check(len(top) == 3 and l <= 0 and abs(max(top.values()) - l) < 1e-6, f"greedy token {tok!r} is the top one")
    check("".join(lp.tokens) == r.choices[0].text, "logprob tokens spell the text")
    e = greedy_completion(c, s.name, "The capital of France is", max_tokens=3, logprobs=1, echo=True)
    el = e.choices[0].logprobs
    check(e.choices[0].text.startswith("The capital of France is"), "echo prepends the prompt")
    check(len(el.tokens) == 6 + 3 and el.token_logprobs[0] is None and all(x <= 0 for x in el.token_logprobs[1:]),
          f"echo logprobs cover prompt and completion: {el.token_logprobs}")
    check(abs(el.token_logprobs[6] - lp.token_logprobs[0]) < 1e-4, "echo's first completion logprob matches")
    ch = c.chat.completions.create(model=s.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                   temperature=0, logprobs=True, top_logprobs=2)
    content = ch.choices[0].logprobs.content
    check(len(content) == ch.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in content),
          "chat logprobs: one entry per token with 2 alternatives")


def test_stop_strings(s, c):
    print("stop strings: cut before the match, never streamed", flush=True)
    base = greedy_completion(c, s.name, "Once upon a time", max_tokens=20).choices[0].text
    stop = base[9:13]  # four characters from inside the text, likely spanning tokens
    expected = base[: base.find(stop)]
    r = greedy_completion(c, s.name, "Once upon a time", max_tokens=20, stop=[stop])
    check(r.choices[0].text == expected and r.choices[0].finish_reason == "stop",
          f"stop {stop!r}: {r.choices[0].text!r} == {expected!r}")
    streamed = "".join(ch.choices[0].text for ch in
                       greedy_completion(c, s.name, "Once upon a time", max_tokens=20, stop=[stop], stream=True))
    check(streamed == expected, f"streamed with stop: {streamed!r}")


def test_n_and_seed(s, c):
    print("n > 1 and seeds", flush=True)
    kw = dict(model=s.name, prompt="My favourite food is", max_tokens=8, temperature=1.0, n=3, seed=1234)
    a = c.completions.create(**kw)
    b = c.completions.create(**kw)
    check(sorted(ch.index for ch in a.choices) == [0, 1, 2], "three choices")
    check([ch.text for ch in a.choices] == [ch.text for ch in b.choices], "same seed, same choices")
    check(len({ch.text for ch in a.choices}) > 1, f"choices differ: {[ch.text for ch in a.choices]}")
    check(a.usage.completion_tokens == sum(8 if ch.finish_reason == "length" else 0 for ch in a.choices) or
          a.usage.completion_tokens <= 24, "usage sums the choices")
    streamed = {}
    for ch in c.completions.create(**kw, stream=True):
        for choice in ch.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
    check([streamed[i] for i in range(3)] == [ch.text for ch in a.choices], "streamed n=3 equals non-streamed")


def test_errors(s, c):
    print("errors: shapes and statuses", flush=True)
    def status_of(fn):
        try:
            fn()
        except openai.APIStatusError as e:
            body = e.response.json()
            check(set(body["error"]) >= {"message", "type", "param", "code"}, f"error shape {body}")
            return e.status_code, body["error"]
        return 200, None

    st, err = status_of(lambda: c.completions.create(model="nope", prompt="x", max_tokens=1))
    check(st == 404 and err["code"] == "model_not_found", f"unknown model -> 404 ({st})")
    st, err = status_of(lambda: c.completions.create(model=s.name, prompt="x", max_tokens=1, temperature=-1))
    check(st == 422 and err["param"] == "temperature", f"bad temperature -> 422 ({st}, {err})")
    st, err = status_of(lambda: c.completions.create(model=s.name, prompt="x", max_tokens=1, top_p=1.5))
    check(st == 422 and err["param"] == "top_p", f"bad top_p -> 422 ({st})")
    st, err = status_of(lambda: c.completions.create(model=s.name, prompt="x", max_tokens=-3))
    check(st == 422 and err["param"] == "max_tokens", f"negative max_tokens -> 422 ({st})")
    st, err = status_of(lambda: c.completions.create(model=s.name, prompt=[5] * 40000, max_tokens=1))
    check(st == 413 and err["code"] == "context_length_exceeded", f"prompt past the context -> 413 ({st})")
    status, body = s.http("POST", "/v1/completions", b'{"model": ')
    check(status == 400 and "error" in json.loads(body), f"malformed JSON -> 400 ({status})")
    status, body = s.http("POST", "/v1/completions", {"model": s.name, "prompt": "x", "max_tokens": "ten"})
    check(status == 400 and json.loads(body)["error"]["param"] == "max_tokens", f"wrong type -> 400 ({body})")
    status, body = s.http("POST", "/v1/chat/completions", {"model": s.name, "messages": "hi"})
    check(status == 400 and json.loads(body)["error"]["param"] == "messages", f"messages not a list -> 400")
    status, body = s.http("POST", "/detokenize", {"tokens": [-4294967295]})
    check(status == 400 and json.loads(body)["error"]["param"] == "tokens", f"bad detokenize id -> 400 ({body})")
    status, body = s.http("POST", "/v1/completions", "x" * (9 << 20))
    check(status == 413, f"body over 8 MiB -> 413 ({status})")
    status, body = s.http("GET", "/v1/nothing")
    check(status == 404 and "error" in json.loads(body), "unknown route -> 404 JSON")


def test_disconnect_frees_pages(s, c):
    print("a client that disconnects mid-stream is cancelled and its KV pages freed", flush=True)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"model": s.name, "prompt": "Tell me a long story.", "max_tokens": 2000, "temperature": 0, "ignore_eos": True,
         "stream": True}), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.fp.readline()  # the first chunk arrived: the request is running
    deadline = time.time() + 10  # the gauges are refreshed at the end of each engine step
    while time.time() < deadline and s.metric("gemmax_running_sequences") != 1:
        r.fp.readline()
    check(s.metric("gemmax_running_sequences") == 1, "the streaming request is running")
    r.close()  # the response holds the socket's file: close both so the connection really ends
    conn.close()
    deadline = time.time() + 20
    while time.time() < deadline and (s.metric("gemmax_running_sequences") or s.metric("gemmax_kv_pages_used")):
        time.sleep(0.1)
    check(s.metric("gemmax_running_sequences") == 0 and s.metric("gemmax_kv_pages_used") == 0,
          "after the disconnect nothing runs and no KV page is used")
    check((s.metric("gemmax_generation_tokens_total") or 0) < 2000, "generation stopped early")


def test_disconnect_non_streaming(s, c):
    print("a non-streaming request whose client disconnects is cancelled and its KV pages freed", flush=True)
    # Control: clients that wait for long answers (several connection checks) are never cancelled.
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        long = list(pool.map(lambda p: greedy_completion(c, s.name, p, max_tokens=64, extra_body={"ignore_eos": True}),
                             ["Story one:", "Story two:", "Story three:", "Story four:"]))
    print(f"  4 concurrent 64-token requests took {time.time() - start:.2f} s", flush=True)
    check(all(r.usage.completion_tokens == 64 and r.choices[0].finish_reason == "length" for r in long),
          f"long non-streaming requests run to the end: {[r.usage.completion_tokens for r in long]}")
    errors = r'gemmax_request_errors_total\{status="(?:499|503)"\}'
    errors_before = s.metric(errors) or 0
    tokens_before = s.metric("gemmax_generation_tokens_total") or 0
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"model": s.name, "prompt": "Tell me a long story.", "max_tokens": 2000, "temperature": 0,
         "ignore_eos": True}), headers={"Content-Type": "application/json"})
    deadline = time.time() + 10  # no response comes before the end: watch the gauges instead
    while time.time() < deadline and s.metric("gemmax_running_sequences") != 1:
        time.sleep(0.05)
    check(s.metric("gemmax_running_sequences") == 1, "the non-streaming request is running")
    conn.close()  # a FIN: the server's side of the connection goes to CLOSE_WAIT
    closed_at = time.time()
    deadline = closed_at + 20
    while time.time() < deadline and (s.metric("gemmax_running_sequences") or s.metric("gemmax_kv_pages_used")):
        time.sleep(0.05)
    print(f"  cancelled {time.time() - closed_at:.2f} s after the disconnect", flush=True)
    check(s.metric("gemmax_running_sequences") == 0 and s.metric("gemmax_kv_pages_used") == 0,
          "after the disconnect nothing runs and no KV page is used")
    generated = (s.metric("gemmax_generation_tokens_total") or 0) - tokens_before
    check(generated < 1000, f"generation stopped early ({generated:.0f} of 2000 tokens)")
    check((s.metric(errors) or 0) == errors_before, "a disconnect is not counted as an error (nor as a shutdown)")


def test_concurrency(s, c):
    print("16 concurrent clients: greedy outputs equal single-request outputs", flush=True)
    prompts = [f"Question {i}: what is {i} plus {i * 3}? Answer:" if i % 2 else f"A short poem about the number {i}:"
               for i in range(16)]
    def run(p):
        return greedy_completion(c, s.name, p, max_tokens=12).choices[0].text
    alone = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(run, prompts))
    for i, (a, t) in enumerate(zip(alone, together)):
        check(a == t, f"client {i}: alone {a!r} == concurrent {t!r}")


def test_auth_and_queue_limit(gemmax, model):
    print("--api-key: 401 without/with a wrong key; --max-queue: 429", flush=True)
    with Server(gemmax, model, "--api-key", "sekret", "--max-seqs", "1", "--max-queue", "1") as s:
        status, body = s.http("GET", "/v1/models")
        check(status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", f"no key -> 401 ({status})")
        status, _ = s.http("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        check(status == 401, "wrong key -> 401")
        status, _ = s.http("GET", "/health")
        check(status == 200, "/health needs no key")
        try:
            s.client("wrong").models.list()
            check(False, "openai client with a wrong key raises")
        except openai.AuthenticationError:
            pass
        c = s.client("sekret")
        check([m.id for m in c.models.list().data] == [s.name], "right key -> 200")
        body = {"model": s.name, "prompt": "Count slowly:", "max_tokens": 40, "temperature": 0}
        auth = {"Authorization": "Bearer sekret"}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: s.http("POST", "/v1/completions", body, auth)[0], range(6)))
        check(429 in statuses and 200 in statuses, f"a full queue answers 429: {statuses}")
        # SIGTERM with a stream in flight: the stream ends with finish_reason "abort" and [DONE].
        stream = c.completions.create(model=s.name, prompt="Long story:", max_tokens=2000, temperature=0,
                                      stream=True, extra_body={"ignore_eos": True})
        chunks = [next(iter(stream))]
        s.proc.send_signal(signal.SIGTERM)
        chunks += list(stream)  # the client ends the iteration at [DONE]
        check(chunks[-1].choices[0].finish_reason == "abort", f"in-flight stream aborted: {chunks[-1]}")
        code = s.stop()
        check(code == 0, f"SIGTERM with a stream in flight: clean exit (code {code})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gemmax", required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--only", type=int, help="run only the n-th test of the main server (debugging)")
    args = ap.parse_args()
    start = time.time()
    try:
        with Server(args.gemmax, args.model, "--max-seqs", "16") as s:
            c = s.client()
            tests = [lambda: test_basics(s, c, args.gemmax, args.model), lambda: test_chat_streaming(s, c),
                         lambda: test_logprobs(s, c), lambda: test_stop_strings(s, c), lambda: test_n_and_seed(s, c),
                         lambda: test_errors(s, c), lambda: test_disconnect_frees_pages(s, c),
                     lambda: test_disconnect_non_streaming(s, c), lambda: test_concurrency(s, c)]
            for i, test in enumerate(tests):
                if args.only is not None and i != args.only:
                    continue
                try:
                    test()
                except Exception:  # one broken check must not hide the others
                    FAILURES.append(traceback.format_exc())
                    print(FAILURES[-1], flush=True)
            code = s.stop()
            check(code == 0, f"SIGTERM: clean exit (code {code})")
        if args.only is None:
            test_auth_and_queue_limit(args.gemmax, args.model)
    except Exception:
        FAILURES.append(traceback.format_exc())
        print(FAILURES[-1], flush=True)
    print(f"{len(FAILURES)} failure(s) in {time.time() - start:.1f} s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
