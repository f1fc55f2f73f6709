#!/usr/bin/env python3
"""Convert a Hugging Face Gemma 3 text checkpoint directory to GGUF.

Usage: convert_hf_to_gguf.py DIR OUT.gguf [--type f32|f16|bf16|q8_0]

Written for gemmax's fixtures; it follows llama.cpp's "gemma3" GGUF conventions
(key names, tensor names, norm weights stored as 1 + w) and additionally
records the hyper-parameters llama.cpp hard-codes, as gemmax extension keys
(see tools/README.md):

  gemma3.attention.query_pre_attn_scalar  f32
  gemma3.rope.freq_base_swa               f32   (rope_local_base_freq)
  gemma3.attention.sliding_window_pattern bool[block_count], true = sliding

Inputs understood:
  * Gemma3ForCausalLM directories (config.json with model_type gemma3_text,
    tensors named model.*),
  * Gemma3ForConditionalGeneration directories (config.json with a nested
    text_config; tensors named language_model.model.* (transformers 4.x) or
    model.language_model.* (transformers 5.x); vision_tower.* and
    multi_modal_projector.* tensors are ignored),
  * model.safetensors or sharded model.safetensors.index.json,
  * F32, F16 and BF16 safetensors tensors,
  * config.json in the transformers 4.x format (rope_theta,
    rope_local_base_freq, rope_scaling, sliding_window_pattern) or the 5.x
    format (rope_parameters per layer type); missing fields take
    Gemma3TextConfig's defaults.

Only numpy and the gguf package are needed (no torch).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

import gguf

ARCH = "gemma3"

# Gemma3TextConfig defaults (transformers), used for fields a config omits.
# Multimodal checkpoints' text_config routinely omits most of these.
TEXT_DEFAULTS = {
    "vocab_size": 262208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "rope_scaling": None,
    "sliding_window_pattern": 6,
    "layer_types": None,
    "tie_word_embeddings": True,
}

# Prefixes under which the text model's tensors live, longest first.
TEXT_PREFIXES = ("language_model.model.", "model.language_model.", "model.")
IGNORED_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                    "model.multi_modal_projector.")
LM_HEAD_NAMES = ("lm_head.weight", "language_model.lm_head.weight")

# HF per-layer tensor suffix -> GGUF per-layer tensor name.
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}
GLOBAL_TENSORS = {
    "embed_tokens.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
}

OUT_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


class ConversionError(Exception):
    pass


# ---------------------------------------------------------------- safetensors


def _decode_tensor(raw: bytes, dtype: str, shape: list[int], where: str) -> np.ndarray:
    """Returns the tensor as float32; bf16 is widened exactly by a 16-bit shift."""
    if dtype == "F32":
        arr = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif dtype == "BF16":
        arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        raise ConversionError(f"{where}: unsupported safetensors dtype {dtype}")
    if arr.size != math.prod(shape):
        raise ConversionError(f"{where}: {arr.size} elements do not match shape {shape}")
    return arr.reshape(shape).astype(np.float32, copy=True)


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads every tensor of one .safetensors file: (name -> float32 array, name -> dtype)."""
    data = path.read_bytes()
    if len(data) < 8:
        raise ConversionError(f"{path}: too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ConversionError(f"{path}: header length {header_len} exceeds file size")
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    tensors, dtypes = {}, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ConversionError(f"{path}: tensor {name} offsets {begin}..{end} out of range")
        tensors[name] = _decode_tensor(bytes(body[begin:end]), info["dtype"], info["shape"],
                                       f"{path}:{name}")
        dtypes[name] = info["dtype"]
    return tensors, dtypes


def read_checkpoint(model_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    single = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if single.exists():
        return read_safetensors(single)
    if not index.exists():
        raise ConversionError(f"{model_dir}: neither model.safetensors nor {index.name} found")
    weight_map = json.loads(index.read_text())["weight_map"]
    tensors, dtypes = {}, {}
    for shard in sorted(set(weight_map.values())):
        t, d = read_safetensors(model_dir / shard)
        tensors.update(t)
        dtypes.update(d)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ConversionError(f"{index}: tensors listed but absent from shards: {missing[:5]}")
    return tensors, dtypes


# ---------------------------------------------------------------- config


def _rope_params(cfg: dict) -> tuple[float, float, dict | None]:
    """(global theta, local theta, global rope scaling) from either config format."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params:
        full = dict(params.get("full_attention") or {})
        local = dict(params.get("sliding_attention") or {})
        theta = float(full.pop("rope_theta", TEXT_DEFAULTS["rope_theta"]))
        local_theta = float(local.get("rope_theta", TEXT_DEFAULTS["rope_local_base_freq"]))
        scaling = full if full.get("rope_type", "default") != "default" else None
        if local.get("rope_type", "default") != "default":
            raise ConversionError("config.json: rope scaling on sliding layers is not supported")
        return theta, local_theta, scaling
    scaling = cfg.get("rope_scaling")
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) == "default":
        scaling = None
    return (float(cfg.get("rope_theta", TEXT_DEFAULTS["rope_theta"])),
            float(cfg.get("rope_local_base_freq", TEXT_DEFAULTS["rope_local_base_freq"])), scaling)


def _sliding_layers(cfg: dict, n_layer: int) -> list[bool]:
    """Per-layer 'is sliding' flags: layer_types wins, else the every-Nth-is-global pattern."""
    types = cfg.get("layer_types")
    if types is not None:
        if len(types) != n_layer:
            raise ConversionError(f"config.json: layer_types has {len(types)} entries, "
                                  f"num_hidden_layers is {n_layer}")
        known = {"sliding_attention": True, "full_attention": False}
        for t in types:
            if t not in known:
                raise ConversionError(f"config.json: unknown layer type {t!r}")
        return [known[t] for t in types]
    pattern = int(cfg.get("sliding_window_pattern", cfg.get("_sliding_window_pattern",
                                                             TEXT_DEFAULTS["sliding_window_pattern"])))
    return [bool((i + 1) % pattern) for i in range(n_layer)]


def load_text_config(model_dir: Path) -> dict:
    """Returns the effective text config (defaults applied) plus derived fields."""
    raw = json.loads((model_dir / "config.json").read_text())
    text = raw.get("text_config", raw) if raw.get("model_type") == "gemma3" else raw
    if text.get("model_type", "gemma3_text") != "gemma3_text":
        raise ConversionError(f"config.json: model_type {text.get('model_type')!r} is not gemma3_text")
    cfg = dict(TEXT_DEFAULTS)
    cfg.update({k: v for k, v in text.items()})
    # A top-level tie flag applies to the nested text model too.
    if "tie_word_embeddings" in raw and "tie_word_embeddings" not in text:
        cfg["tie_word_embeddings"] = raw["tie_word_embeddings"]
    if cfg.get("use_bidirectional_attention"):
        raise ConversionError("config.json: use_bidirectional_attention is not supported")
    if cfg["hidden_activation"] != "gelu_pytorch_tanh":
        raise ConversionError(f"config.json: hidden_activation {cfg['hidden_activation']!r} unsupported")
    cfg["rope_theta"], cfg["rope_local_base_freq"], cfg["rope_scaling"] = _rope_params(cfg)
    cfg["sliding_layers"] = _sliding_layers(cfg, int(cfg["num_hidden_layers"]))
    return cfg


# ---------------------------------------------------------------- tensors


def gguf_tensor_name(hf_name: str) -> str | None:
    """GGUF name for an HF tensor name; None for tensors that are skipped."""
    if hf_name.startswith(IGNORED_PREFIXES) or hf_name in LM_HEAD_NAMES:
        return None
    for prefix in TEXT_PREFIXES:
        if hf_name.startswith(prefix):
            rest = hf_name[len(prefix):]
            break
    else:
        raise ConversionError(f"tensor {hf_name}: unexpected name (no known text-model prefix)")
    if rest in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[rest]
    parts = rest.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2] in LAYER_TENSORS:
        return f"blk.{int(parts[1])}.{LAYER_TENSORS[parts[2]]}"
    raise ConversionError(f"tensor {hf_name}: unknown Gemma 3 tensor")


def expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """GGUF name -> HF (row-major) shape, for validation and completeness checks."""
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    shapes = {"token_embd.weight": (v, h), "output_norm.weight": (h,)}
    per_layer = {
        "attn_norm.weight": (h,), "attn_q.weight": (nq * hd, h), "attn_k.weight": (nkv * hd, h),
        "attn_v.weight": (nkv * hd, h), "attn_output.weight": (h, nq * hd),
        "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,), "post_attention_norm.weight": (h,),
        "ffn_norm.weight": (h,), "ffn_gate.weight": (f, h), "ffn_up.weight": (f, h),
        "ffn_down.weight": (h, f), "post_ffw_norm.weight": (h,),
    }
    for i in range(cfg["num_hidden_layers"]):
        for name, shape in per_layer.items():
            shapes[f"blk.{i}.{name}"] = shape
    return shapes


def collect_tensors(hf: dict[str, np.ndarray], cfg: dict) -> dict[str, np.ndarray]:
    """Renames, validates and +1-shifts the text model's tensors."""
    out: dict[str, np.ndarray] = {}
    for hf_name, arr in hf.items():
        name = gguf_tensor_name(hf_name)
        if name is None:
            continue
        if name in out:
            raise ConversionError(f"tensor {hf_name}: duplicate of {name}")
        # Gemma's RMSNorm scales by (1 + w); like llama.cpp we store 1 + w so a
        # plain x * w multiply applies it.
        out[name] = arr + np.float32(1.0) if name.endswith("norm.weight") else arr
    shapes = expected_shapes(cfg)
    for name, shape in shapes.items():
        if name not in out:
            raise ConversionError(f"tensor {name}: missing from checkpoint")
        if tuple(out[name].shape) != shape:
            raise ConversionError(f"tensor {name}: shape {out[name].shape}, config implies {shape}")
    extra = sorted(set(out) - set(shapes))
    if extra:
        raise ConversionError(f"tensors {extra[:5]}: not implied by config (layer count mismatch?)")
    _check_lm_head(hf, out["token_embd.weight"], cfg)
    return out


def _check_lm_head(hf: dict[str, np.ndarray], embd: np.ndarray, cfg: dict) -> None:
    """Gemma 3 ties the output projection to the embedding; refuse anything else."""
    for name in LM_HEAD_NAMES:
        if name in hf and not np.array_equal(hf[name], embd):
            raise ConversionError(f"tensor {name}: differs from the embedding (untied head unsupported)")
    if not cfg["tie_word_embeddings"]:
        raise ConversionError("config.json: tie_word_embeddings=false is not supported")


def encode(name: str, arr: np.ndarray, qtype: gguf.GGMLQuantizationType):
    """(data, raw_dtype) for GGUFWriter.add_tensor; 1-D tensors stay F32 like llama.cpp."""
    if arr.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return arr.astype(np.float32), None
    if qtype == gguf.GGMLQuantizationType.F16:
        return arr.astype(np.float16), None
    if qtype == gguf.GGMLQuantizationType.Q8_0 and arr.shape[-1] % 32 != 0:
        raise ConversionError(f"tensor {name}: row length {arr.shape[-1]} not a multiple of 32 (Q8_0)")
    return gguf.quants.quantize(arr, qtype), qtype


# ---------------------------------------------------------------- writer


def write_gguf(out_path: Path, cfg: dict, tensors: dict[str, np.ndarray], out_type: str,
               name: str) -> None:
    qtype, ftype = OUT_TYPES[out_type]
    w = gguf.GGUFWriter(str(out_path), ARCH)
    w.add_type("model")
    w.add_name(name)
    w.add_context_length(int(cfg["max_position_embeddings"]))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_block_count(int(cfg["num_hidden_layers"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_head_count_kv(int(cfg["num_key_value_heads"]))
    w.add_key_length(int(cfg["head_dim"]))
    w.add_value_length(int(cfg["head_dim"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_sliding_window(int(cfg["sliding_window"]))
    scaling = cfg["rope_scaling"]
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "linear":
            raise ConversionError(f"config.json: rope scaling type {kind!r} unsupported")
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    # attn_logit_softcapping is deliberately not written: transformers' Gemma 3
    # attention ignores it (only Gemma 2 applies it), and so does llama.cpp.
    if cfg["final_logit_softcapping"] is not None:
        w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
    # gemmax extension keys: values llama.cpp hard-codes for gemma3.
    w.add_float32(f"{ARCH}.attention.query_pre_attn_scalar", float(cfg["query_pre_attn_scalar"]))
    w.add_rope_freq_base_swa(float(cfg["rope_local_base_freq"]))
    w.add_array(f"{ARCH}.attention.sliding_window_pattern", [bool(s) for s in cfg["sliding_layers"]])
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    order = ["token_embd.weight", "output_norm.weight"]
    order += sorted((n for n in tensors if n.startswith("blk.")),
                    key=lambda n: (int(n.split(".")[1]), n))
    for tname in order:
        data, raw_dtype = encode(tname, tensors[tname], qtype)
        if raw_dtype is None:
            w.add_tensor(tname, data)
        else:
            w.add_tensor(tname, data, raw_shape=data.shape, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def convert(model_dir: Path, out_path: Path, out_type: str = "f32") -> None:
    cfg = load_text_config(model_dir)
    hf, _ = read_checkpoint(model_dir)
    tensors = collect_tensors(hf, cfg)
    write_gguf(out_path, cfg, tensors, out_type, model_dir.name)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--type", choices=sorted(OUT_TYPES), default="f32")
    args = ap.parse_args(argv)
    try:
        convert(args.model_dir, args.out, args.type)
    except (ConversionError, OSError, KeyError, ValueError) as e:
        print(f"convert_hf_to_gguf: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
