#!/usr/bin/env python3
"""Times HF `tokenizers` (one thread) on the texts bench/tokenizer_bench.cc uses, in MB/s."""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "testdata", "gemma3-tokenizer")


def mixed_text():
    with open(os.path.join(DIR, "encode_cases.jsonl"), encoding="utf-8") as f:
        joined = "".join(json.loads(line)["text"] + "\n" for line in f if line.strip())
    text = ""
    while len(text.encode()) < (1 << 20):
        text += joined
    return text


def no_space_text():
    chunk = "Thequickbrownfoxjumpsoverthelazydog中文😀"
    text = ""
    while len(text.encode()) < (1 << 20):
        text += chunk
    return text


def rate(fn, nbytes, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e6


def main():
    start = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(DIR, "tokenizer.json"))
    print(f"load tokenizer.json: {time.perf_counter() - start:.2f} s")
    for name, text in (("encode mixed", mixed_text()), ("encode no spaces", no_space_text())):
        n = len(text.encode())
        print(f"{name}: {rate(lambda: tok.encode(text, add_special_tokens=False), n):.2f} MB/s")
    text = mixed_text()
    ids = tok.encode(text, add_special_tokens=False).ids
    print(f"decode mixed: {rate(lambda: tok.decode(ids, skip_special_tokens=False), len(text.encode())):.2f} MB/s")


if __name__ == "__main__":
    main()
