#!/usr/bin/env python3
"""A tiny random Gemma 3 GGUF whose weights are all Q5_0, the tied embedding included, with rows of
128 and 256 elements: every weight is one gemmax repacks at load (Q5_0x4), so the test
RepackedCheckpoint.* can compare a repacked checkpoint with the stored one (logits bit for bit) on
the tied-embedding path the real 270M (Q8_0 embedding) does not take.

  python3 tools/make_repack_fixture.py   # writes tests/fixtures/tiny/q5_0/model.gguf

Metadata follows tests/fixtures/tiny/base/model-q8_0.gguf (no tokenizer) with a larger hidden size.
Weights are random normal (scale 0.05) quantized with gguf-py; norm weights are 1 + 0.1 * normal
(GGUF stores Gemma's 1 + w).
"""
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/tiny/q5_0/model.gguf"
HIDDEN, FF, LAYERS, HEADS, KV, HEAD_DIM, VOCAB = 128, 256, 2, 4, 2, 32, 512
T = gguf.GGMLQuantizationType


def main() -> None:
    rng = np.random.default_rng(9)
    w = gguf.GGUFWriter(str(OUT), "gemma3")
    w.add_type("model")
    w.add_name("q5_0-repack")
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(4)
    w.add_float32("gemma3.attention.query_pre_attn_scalar", float(HEAD_DIM))
    w.add_float32("gemma3.rope.freq_base_swa", 1e4)
    w.add_array("gemma3.attention.sliding_window_pattern", [True, False])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q5_0)
    w.add_quantization_version(2)

    def q5(name, rows, cols):
        x = (0.05 * rng.standard_normal((rows, cols))).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(x, T.Q5_0), raw_dtype=T.Q5_0)

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    q5("token_embd.weight", VOCAB, HIDDEN)
    norm("output_norm.weight", HIDDEN)
    for i in range(LAYERS):
        p = f"blk.{i}."
        q5(p + "attn_q.weight", HEADS * HEAD_DIM, HIDDEN)
        q5(p + "attn_k.weight", KV * HEAD_DIM, HIDDEN)
        q5(p + "attn_v.weight", KV * HEAD_DIM, HIDDEN)
        q5(p + "attn_output.weight", HIDDEN, HEADS * HEAD_DIM)
        q5(p + "ffn_gate.weight", FF, HIDDEN)
        q5(p + "ffn_up.weight", FF, HIDDEN)
        q5(p + "ffn_down.weight", HIDDEN, FF)
        for n, size in [("attn_norm", HIDDEN), ("attn_q_norm", HEAD_DIM), ("attn_k_norm", HEAD_DIM),
                        ("post_attention_norm", HIDDEN), ("ffn_norm", HIDDEN),
                        ("post_ffw_norm", HIDDEN)]:
            norm(p + n + ".weight", size)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
