#!/usr/bin/env python3
"""Plain numpy Gemma 3 forward pass over one of our GGUF files, checked against golden.json.

Usage: gguf_reference_forward.py MODEL.gguf GOLDEN.json [--logits-key logits] [--embed-scale X]

An independent second implementation (no torch, reads only the GGUF and its
gemmax extension keys) that proves the converter's output plus the documented
conventions reproduce transformers' logits. It is also a compact executable
spec of the math the C++ engine must implement. Exit status 1 if the max
absolute logit error exceeds --tol.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

import gguf
from gguf import GGUFReader


def field(reader: GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def load_tensors(reader: GGUFReader, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every tensor (dequantized) in row-major HF orientation (rows = GGUF ne[1])."""
    out = {}
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = np.asarray(t.data, dtype=np.float32)
        else:
            data = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        out[t.name] = data.reshape(shape).astype(dtype)
    return out


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    # w is stored as (1 + w_hf) in the GGUF, so a plain multiply.
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def rope(x: np.ndarray, theta: float, scale: float) -> np.ndarray:
    """NeoX-style (rotate halves) rope; x: (T, heads, d). Linear scaling divides positions."""
    t, _, d = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=x.dtype) / d) / scale
    ang = np.arange(t, dtype=x.dtype)[:, None] * inv_freq[None, :].astype(x.dtype)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * cos + rot * sin


def forward(reader: GGUFReader, ids: list[int], embed_scale: float | None,
            dtype=np.float32) -> np.ndarray:
    """Logits (T, vocab) for one prompt; dtype=np.float64 gives a near-exact reference."""
    a = "gemma3"
    W = load_tensors(reader, dtype)
    n_layer = field(reader, f"{a}.block_count")
    nq, nkv = field(reader, f"{a}.attention.head_count"), field(reader, f"{a}.attention.head_count_kv")
    hd = field(reader, f"{a}.attention.key_length")
    eps = field(reader, f"{a}.attention.layer_norm_rms_epsilon")
    window = field(reader, f"{a}.attention.sliding_window")
    theta, theta_swa = field(reader, f"{a}.rope.freq_base"), field(reader, f"{a}.rope.freq_base_swa")
    scale = field(reader, f"{a}.rope.scaling.factor", 1.0) \
        if field(reader, f"{a}.rope.scaling.type") == "linear" else 1.0
    qpas = field(reader, f"{a}.attention.query_pre_attn_scalar")
    sliding = field(reader, f"{a}.attention.sliding_window_pattern")
    final_cap = field(reader, f"{a}.final_logit_softcapping")
    hidden = W["token_embd.weight"].shape[1]
    if embed_scale is None:
        embed_scale = float(np.float32(math.sqrt(hidden)))

    T = len(ids)
    x = W["token_embd.weight"][ids] * dtype(embed_scale)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    for l in range(n_layer):
        p = f"blk.{l}."
        visible = (j <= i) & ((j > i - window) if sliding[l] else True)
        h = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = rms_norm((h @ W[p + "attn_q.weight"].T).reshape(T, nq, hd), W[p + "attn_q_norm.weight"], eps)
        k = rms_norm((h @ W[p + "attn_k.weight"].T).reshape(T, nkv, hd), W[p + "attn_k_norm.weight"], eps)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, nkv, hd)
        q = rope(q, theta_swa, 1.0) if sliding[l] else rope(q, theta, scale)
        k = rope(k, theta_swa, 1.0) if sliding[l] else rope(k, theta, scale)
        group = nq // nkv
        out = np.empty((T, nq, hd), dtype=dtype)
        for hq in range(nq):
            s = (q[:, hq, :] @ k[:, hq // group, :].T) * qpas ** -0.5
            # No attention softcapping: Gemma 3 (unlike Gemma 2) does not use it.
            s = np.where(visible, s, -np.inf)
            pr = np.exp(s - s.max(axis=-1, keepdims=True))
            out[:, hq, :] = (pr / pr.sum(axis=-1, keepdims=True)) @ v[:, hq // group, :]
        attn = out.reshape(T, nq * hd) @ W[p + "attn_output.weight"].T
        x = x + rms_norm(attn, W[p + "post_attention_norm.weight"], eps)
        h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        mlp = (gelu_tanh(h @ W[p + "ffn_gate.weight"].T) * (h @ W[p + "ffn_up.weight"].T)) \
            @ W[p + "ffn_down.weight"].T
        x = x + rms_norm(mlp, W[p + "post_ffw_norm.weight"], eps)
    logits = rms_norm(x, W["output_norm.weight"], eps) @ W["token_embd.weight"].T
    if final_cap is not None:
        logits = np.tanh(logits / final_cap) * final_cap
    return logits


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf_path")
    ap.add_argument("golden")
    ap.add_argument("--logits-key", default="logits")
    ap.add_argument("--embed-scale", type=float, default=None,
                    help="default: golden's embed_scale (use the f32 sqrt with --embed-scale)")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--f64", action="store_true", help="compute in float64")
    args = ap.parse_args(argv)
    golden = json.load(open(args.golden))
    scale = args.embed_scale if args.embed_scale is not None else golden["embed_scale"]
    reader = GGUFReader(args.gguf_path)
    worst = 0.0
    for ids, want in zip(golden["prompts"], golden[args.logits_key]):
        got = forward(reader, ids, scale, np.float64 if args.f64 else np.float32)
        worst = max(worst, float(np.max(np.abs(got - np.asarray(want, dtype=np.float32)))))
    print(f"{args.gguf_path} vs {args.golden}[{args.logits_key}]: max abs error {worst:.3g}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
