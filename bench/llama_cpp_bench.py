#!/usr/bin/env python3
"""llama.cpp's side of the comparison: prefill and batch-1 decode tokens/s on one GGUF.

Uses llama-cpp-python's low-level API (llama_decode on a llama_batch), so no Python runs per token
beyond filling a one-token batch. Mirrors `gemmax bench`: one untimed warm-up, then `--repeat` runs
of a `--prompt-tokens` prefill in one batch followed by `--gen-tokens` single-token decodes of random
ids; prints one JSON object with the medians.
"""
import argparse
import json
import random
import resource
import statistics
import sys
import time

import llama_cpp as L


def fill(batch, tokens, start_pos):
    """Puts `tokens` (positions start_pos..) of sequence 0 into `batch`; logits for the last only."""
    batch.n_tokens = len(tokens)
    for i, t in enumerate(tokens):
        batch.token[i] = t
        batch.pos[i] = start_pos + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = i == len(tokens) - 1


def decode(ctx, batch, tokens, start_pos):
    fill(batch, tokens, start_pos)
    rc = L.llama_decode(ctx, batch)
    if rc != 0:
        sys.exit(f"llama_decode failed with {rc}")


def run_once(ctx, batch, n_vocab, prompt_tokens, gen_tokens, rng):
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    prompt = [rng.randrange(n_vocab) for _ in range(prompt_tokens)]
    start = time.perf_counter()
    decode(ctx, batch, prompt, 0)
    prefill = prompt_tokens / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(gen_tokens):
        decode(ctx, batch, [rng.randrange(n_vocab)], prompt_tokens + i)
    return prefill, gen_tokens / (time.perf_counter() - start)


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-extra-bufts", action="store_true",
                    help="load without llama.cpp's CPU extra buffer types (AMX and repacked "
                         "weights); llama-cpp-python 0.3.36 crashed with them on every quantized "
                         "random-weight model on an AVX-512/AMX host (session 12)")
    a = ap.parse_args()

    # Quiet; the callback object must outlive every call into llama.cpp, so it stays referenced.
    quiet = L.llama_log_callback(lambda level, text, data: None)
    L.llama_log_set(quiet, None)
    L.llama_backend_init()
    baseline_rss = rss_bytes()  # the Python interpreter and llama-cpp-python, before the model
    start = time.perf_counter()
    mp = L.llama_model_default_params()
    mp.use_extra_bufts = not a.no_extra_bufts
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        sys.exit(f"llama.cpp could not load {a.model}")
    cp = L.llama_context_default_params()
    cp.n_ctx = a.prompt_tokens + a.gen_tokens + 16
    cp.n_batch = cp.n_ubatch = a.prompt_tokens
    cp.n_threads = cp.n_threads_batch = a.threads
    ctx = L.llama_init_from_model(model, cp)
    load_seconds = time.perf_counter() - start
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    batch = L.llama_batch_init(a.prompt_tokens, 0, 1)
    rng = random.Random(a.seed)

    run_once(ctx, batch, n_vocab, min(16, a.prompt_tokens), 4, rng)  # warm-up, untimed
    runs = [run_once(ctx, batch, n_vocab, a.prompt_tokens, a.gen_tokens, rng) for _ in range(a.repeat)]
    print(json.dumps({
        "engine": "llama.cpp " + L.__version__,
        "extra_bufts": not a.no_extra_bufts,
        "model": a.model,
        "threads": a.threads,
        "prefill_tokens_per_s": statistics.median(r[0] for r in runs),
        "decode_tokens_per_s": statistics.median(r[1] for r in runs),
        "prefill_runs": [r[0] for r in runs],
        "decode_runs": [r[1] for r in runs],
        "load_seconds": load_seconds,
        # Peak RSS of the process minus what Python held before the model was loaded, so the
        # figure compares with gemmax's (a C++ process without an interpreter).
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss,
        "interpreter_rss_bytes": baseline_rss,
    }))
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
