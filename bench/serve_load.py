#!/usr/bin/env python3
"""Load test for `gemmax serve`: requests/s and generated tokens/s at several client counts.

Starts the server on loopback (any free port), then for each concurrency level C runs C client
threads, each sending non-streaming greedy /v1/completions requests back to back until `--requests`
requests (per level) are done or `--seconds` pass. Prints one line per level and a JSON summary.
Bounded in count and time; loopback only.

  python3 bench/serve_load.py --gemmax build/<dir>/gemmax [--levels 1,4,16] [--requests 32] [--max-tokens 32]
"""
import argparse
import concurrent.futures
import json
import re
import signal
import subprocess
import threading
import time

import openai


def start_server(gemmax, extra):
    proc = subprocess.Popen([gemmax, "serve", "--port", "0", *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"model '([^']+)' on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, m.group(1), int(m.group(2))


def run_level(client, model, clients, total, seconds, max_tokens):
    lock = threading.Lock()
    state = {"sent": 0, "done": 0, "tokens": 0, "latencies": []}
    deadline = time.time() + seconds

    def worker(w):
        while True:
            with lock:
                if state["sent"] >= total or time.time() > deadline:
                    return
                i = state["sent"]
                state["sent"] += 1
            t0 = time.time()
            r = client.completions.create(model=model, prompt=f"Request {i}: write about topic number {i % 7}.",
                                          max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True})
            with lock:
                state["done"] += 1
                state["tokens"] += r.usage.completion_tokens
                state["latencies"].append(time.time() - t0)

    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.time() - start
    lat = sorted(state["latencies"])
    return {"clients": clients, "requests": state["done"], "seconds": round(wall, 2),
            "requests_per_s": round(state["done"] / wall, 2), "generated_tokens_per_s": round(state["tokens"] / wall, 1),
            "p50_latency_s": round(lat[len(lat) // 2], 3) if lat else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gemmax", required=True)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=32, help="requests per level")
    ap.add_argument("--seconds", type=float, default=60, help="time limit per level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--server-args", default="--max-seqs 16", help="extra `gemmax serve` flags")
    args = ap.parse_args()
    proc, model, port = start_server(args.gemmax, args.server_args.split())
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
        run_level(client, model, 1, 2, 30, 4)  # warm-up
        results = []
        for c in [int(x) for x in args.levels.split(",")]:
            r = run_level(client, model, c, max(args.requests, c), args.seconds, args.max_tokens)
            print(f"{c:3d} clients: {r['requests']} requests in {r['seconds']} s -> {r['requests_per_s']} req/s, "
                  f"{r['generated_tokens_per_s']} generated tok/s, p50 latency {r['p50_latency_s']} s", flush=True)
            results.append(r)
        print(json.dumps({"model": model, "max_tokens": args.max_tokens, "server_args": args.server_args,
                          "results": results}))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
