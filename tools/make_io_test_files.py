#!/usr/bin/env python3
"""Writes the tiny GGUF and safetensors fixtures under tests/fixtures/io/ that tests/io/ reads.

GGUF files come from gguf-py's GGUFWriter (an independent writer, so the C++ reader is checked against
another implementation); safetensors files are written byte by byte here from the format description
(header length u64 LE, JSON header padded with spaces to 8 bytes, data section), so `safetensors` and torch
are not needed. Every tensor's contents follow a formula the C++ tests recompute, so the tests compare
values, not just sizes.

Usage: python3 tools/make_io_test_files.py [output_dir]   (default: tests/fixtures/io)
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

ROOT = Path(__file__).resolve().parent.parent


def f32_values(n, scale=0.25, offset=-1.0):
    """The value pattern the tests recompute: offset + i * scale (exact in F32, F16 and BF16)."""
    return (offset + np.arange(n, dtype=np.float32) * scale).astype(np.float32)


def bf16_bytes(values):
    # Truncation is exact here: every test value has at most 8 significant bits.
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def q8_0_blocks(rows, blocks_per_row):
    """Q8_0 rows: block b of row r has scale 2^-(r+1) and quants q[i] = (i + 3*b + r) % 32 - 16."""
    out = bytearray()
    for r in range(rows):
        for b in range(blocks_per_row):
            out += np.float16(2.0 ** -(r + 1)).tobytes()
            out += bytes(((i + 3 * b + r) % 32 - 16) & 0xFF for i in range(32))
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(rows, -1)


def byte_pattern(rows, row_bytes):
    """Raw bytes for block formats only checked bytewise: byte k of the tensor is (7k + 3) mod 256."""
    k = np.arange(rows * row_bytes, dtype=np.uint32)
    return ((7 * k + 3) % 256).astype(np.uint8).reshape(rows, row_bytes)


def add_metadata(w):
    # One key per scalar type, named after the type.
    w.add_key_value("test.u8", 200, GGUFValueType.UINT8)
    w.add_key_value("test.i8", -100, GGUFValueType.INT8)
    w.add_key_value("test.u16", 60000, GGUFValueType.UINT16)
    w.add_key_value("test.i16", -30000, GGUFValueType.INT16)
    w.add_key_value("test.u32", 4000000000, GGUFValueType.UINT32)
    w.add_key_value("test.i32", -2000000000, GGUFValueType.INT32)
    w.add_key_value("test.u64", 2**63 + 5, GGUFValueType.UINT64)
    w.add_key_value("test.i64", -(2**62), GGUFValueType.INT64)
    w.add_key_value("test.f32", 1.5, GGUFValueType.FLOAT32)
    w.add_key_value("test.f64", -2.25, GGUFValueType.FLOAT64)
    w.add_key_value("test.bool_true", True, GGUFValueType.BOOL)
    w.add_key_value("test.bool_false", False, GGUFValueType.BOOL)
    w.add_key_value("test.string", "héllo gguf", GGUFValueType.STRING)
    w.add_key_value("test.empty_string", "", GGUFValueType.STRING)
    # Arrays of every element type.
    w.add_key_value("test.arr_u8", [1, 2, 255], GGUFValueType.ARRAY, GGUFValueType.UINT8)
    w.add_key_value("test.arr_i8", [-1, 2], GGUFValueType.ARRAY, GGUFValueType.INT8)
    w.add_key_value("test.arr_u16", [65535], GGUFValueType.ARRAY, GGUFValueType.UINT16)
    w.add_key_value("test.arr_i16", [-2, 3], GGUFValueType.ARRAY, GGUFValueType.INT16)
    w.add_key_value("test.arr_u32", [7, 8, 9], GGUFValueType.ARRAY, GGUFValueType.UINT32)
    w.add_key_value("test.arr_i32", [-7, 8], GGUFValueType.ARRAY, GGUFValueType.INT32)
    w.add_key_value("test.arr_u64", [2**40], GGUFValueType.ARRAY, GGUFValueType.UINT64)
    w.add_key_value("test.arr_i64", [-(2**40)], GGUFValueType.ARRAY, GGUFValueType.INT64)
    w.add_key_value("test.arr_f32", [0.5, -1.0], GGUFValueType.ARRAY, GGUFValueType.FLOAT32)
    w.add_key_value("test.arr_f64", [0.125], GGUFValueType.ARRAY, GGUFValueType.FLOAT64)
    w.add_key_value("test.arr_bool", [True, False, True], GGUFValueType.ARRAY, GGUFValueType.BOOL)
    w.add_key_value("test.arr_string", ["a", "", "<bos>"], GGUFValueType.ARRAY, GGUFValueType.STRING)
    # Array of arrays (of different lengths) and one level deeper.
    w.add_array("test.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.nested2", [[["x"]], [["y", "z"]]])
    w.add_uint32("gemma3.block_count", 2)


def add_tensors(w):
    w.add_tensor("f32", f32_values(6).reshape(2, 3))
    w.add_tensor("f16", f32_values(32, 0.5, -8.0).astype(np.float16).reshape(4, 8))
    w.add_tensor("bf16", bf16_bytes(f32_values(8, 1.0, -3.0)).view(np.uint8).reshape(2, 8),
                 raw_dtype=GGMLQuantizationType.BF16)
    w.add_tensor("vec", f32_values(5, 2.0, 1.0))  # 1-D
    w.add_tensor("cube", f32_values(24, 1.0, 0.0).reshape(2, 3, 4))  # 3-D
    w.add_tensor("q8_0", q8_0_blocks(2, 2), raw_dtype=GGMLQuantizationType.Q8_0)  # 2 x 64
    w.add_tensor("q4_k", byte_pattern(2, 144), raw_dtype=GGMLQuantizationType.Q4_K)  # 2 x 256


def write_gguf(path, alignment=None):
    w = GGUFWriter(str(path), arch="gemma3")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    add_metadata(w)
    add_tensors(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_gguf_v2(src, dst):
    # v2 and v3 share the little-endian layout; only the version field differs.
    data = bytearray(src.read_bytes())
    struct.pack_into("<I", data, 4, 2)
    dst.write_bytes(bytes(data))


def safetensors_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes), laid out in order."""
    header, data, offset = {}, bytearray(), 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad with spaces so the data section is 8-byte aligned
    return struct.pack("<Q", len(text)) + text + bytes(data)


def single_tensors():
    return [
        ("f32", "F32", (2, 3), f32_values(6).tobytes()),
        ("f16", "F16", (4,), f32_values(4, 0.5, -1.0).astype(np.float16).tobytes()),
        ("bf16", "BF16", (2, 2), bf16_bytes(f32_values(4, 1.0, -2.0)).tobytes()),
        ("scalar", "F32", (), np.float32(3.5).tobytes()),
        ("empty", "F32", (0, 4), b""),
        ("positions", "I64", (3,), np.arange(3, dtype=np.int64).tobytes()),
    ]


def write_safetensors(out):
    (out / "single.safetensors").write_bytes(
        safetensors_bytes(single_tensors(), {"format": "pt", "note": "gemmax fixture"}))

    sharded = out / "sharded"
    sharded.mkdir(exist_ok=True)
    shards = {
        "model-00001-of-00002.safetensors": [
            ("a.weight", "F32", (2, 2), f32_values(4).tobytes()),
            ("b.weight", "BF16", (3,), bf16_bytes(f32_values(3, 1.0, 0.0)).tobytes()),
        ],
        "model-00002-of-00002.safetensors": [
            ("c.weight", "F16", (2, 3), f32_values(6, 0.5, 0.0).astype(np.float16).tobytes()),
        ],
    }
    weight_map = {}
    for i, (shard, tensors) in enumerate(shards.items()):
        meta = {"format": "pt", "shard": str(i + 1)}
        (sharded / shard).write_bytes(safetensors_bytes(tensors, meta))
        weight_map.update({name: shard for name, *_ in tensors})
    index = {"metadata": {"total_size": 40}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    # A decoy beside the index: a directory holding both must be read through the index.
    (sharded / "model.safetensors").write_bytes(
        safetensors_bytes([("decoy", "F32", (1,), np.float32(9).tobytes())]))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "io"
    out.mkdir(parents=True, exist_ok=True)
    write_gguf(out / "all_types.gguf")
    write_gguf(out / "aligned64.gguf", alignment=64)
    write_gguf_v2(out / "all_types.gguf", out / "all_types_v2.gguf")
    write_safetensors(out)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(out)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
