#!/usr/bin/env python3
"""Build tiny random Gemma 3 models plus transformers' golden logits.

Usage: make_tiny_models.py [--out tests/fixtures/tiny] [--only VARIANT ...]

Every variant directory gets config.json, model.safetensors (or shards),
model.gguf (our converter, F32) and golden.json. See tools/README.md for what
each variant exercises and the golden.json schema.

Deterministic: fixed seeds per variant and one CPU thread, so a rerun
reproduces the same weights bit for bit and the same goldens up to the
6-significant-digit rounding.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_hf_to_gguf  # noqa: E402
import gguf_reference_forward  # noqa: E402
import gguf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT_LENGTHS = (8, 11, 14)  # all longer than the sliding windows (4 or 5)

# Shared shape of the tiny models; variants override fields.
COMMON = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6,
    pad_token_id=0, bos_token_id=2, eos_token_id=1, tie_word_embeddings=True,
    hidden_activation="gelu_pytorch_tanh",
)

VARIANTS = {
    # f32, no softcapping, query_pre_attn_scalar != head_dim, every 3rd layer global,
    # 7 layers so the last layer is a sliding one.
    "base": dict(
        seed=1001, weight_std=0.1, embed_std=0.3,
        config=dict(num_hidden_layers=7, sliding_window=4, sliding_window_pattern=3,
                    query_pre_attn_scalar=24, rope_theta=1e6, rope_local_base_freq=1e4),
    ),
    # Final logit softcap bites; linear rope scaling on global layers only;
    # irregular layer_types that no "every Nth" pattern describes; non-default
    # thetas and eps. attn_logit_softcapping=50 is in the config but transformers'
    # Gemma 3 attention never applies it (unlike Gemma 2), so the golden ignores
    # it; large q/k norm weights make raw scores exceed 50 so an engine that
    # wrongly applies it fails.
    "softcap_ropescale": dict(
        seed=2002, weight_std=0.1, embed_std=0.3,
        norm_overrides={"model.norm.weight": (10.0, 2.0), "q_norm": (5.0, 1.0), "k_norm": (5.0, 1.0)},
        config=dict(num_hidden_layers=6, head_dim=16, sliding_window=5, query_pre_attn_scalar=32,
                    layer_types=["full_attention", "sliding_attention", "sliding_attention",
                                 "full_attention", "sliding_attention", "sliding_attention"],
                    rope_theta=2e5, rope_local_base_freq=500.0, rms_norm_eps=1e-5,
                    rope_scaling={"rope_type": "linear", "factor": 8.0},
                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    ),
    # BF16 weights; hidden 80 so sqrt(hidden)=8.944.. is not representable in bf16.
    "bf16": dict(
        seed=3003, weight_std=0.1, embed_std=0.3, dtype=torch.bfloat16,
        config=dict(hidden_size=80, num_hidden_layers=6, head_dim=16, sliding_window=4,
                    sliding_window_pattern=3, query_pre_attn_scalar=16, rope_theta=1e6,
                    rope_local_base_freq=1e4),
    ),
    # Gemma3ForConditionalGeneration layout; text_config omits everything a
    # 4b-it style config omits, so Gemma3TextConfig defaults apply:
    # query_pre_attn_scalar 256, sliding_window_pattern 6, rope 1e6/1e4, eps 1e-6.
    "multimodal_layout": dict(
        seed=4004, weight_std=0.1, embed_std=0.3, multimodal=True,
        config=dict(num_hidden_layers=7, sliding_window=4),
    ),
}
# Fields the multimodal text_config spells out; all others are left to defaults.
MM_TEXT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "vocab_size", "sliding_window")


def sig6(x: float) -> float:
    return float(f"{x:.6g}")


def build_config(spec: dict) -> Gemma3TextConfig:
    fields = dict(COMMON)
    if spec.get("multimodal"):
        fields = {k: v for k, v in fields.items() if k in MM_TEXT_FIELDS}
    fields.update(spec["config"])
    return Gemma3TextConfig(**fields, attn_implementation="eager")


def randomize(model: Gemma3ForCausalLM, spec: dict) -> None:
    """Normal init everywhere; norm weights random too so (1 + w) matters."""
    gen = torch.Generator().manual_seed(spec["seed"])
    overrides = spec.get("norm_overrides", {})
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                mean, std = 0.0, 0.5
                for key, (m, s) in overrides.items():
                    if key == name or f".{key}." in name:
                        mean, std = m, s
                p.copy_(torch.randn(p.shape, generator=gen) * std + mean)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * spec["embed_std"])
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * spec["weight_std"])


def make_prompts(seed: int, vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed + 7)
    prompts = []
    for n in PROMPT_LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist()
        prompts.append([2] + ids[1:])  # BOS first, like a real prompt
    return prompts


@torch.no_grad()
def run_logits(model, prompts: list[list[int]]) -> list[np.ndarray]:
    model.eval()
    return [model(input_ids=torch.tensor([p])).logits[0].float().numpy() for p in prompts]


def key_config(cfg: Gemma3TextConfig, weights_dtype: str) -> dict:
    rp = cfg.rope_parameters
    full = {k: v for k, v in rp["full_attention"].items() if k != "rope_theta"}
    return {
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar, "rms_norm_eps": cfg.rms_norm_eps,
        "sliding_window": cfg.sliding_window, "layer_types": list(cfg.layer_types),
        "rope_theta": rp["full_attention"]["rope_theta"],
        "rope_local_base_freq": rp["sliding_attention"]["rope_theta"],
        "rope_scaling_global": full if full.get("rope_type") != "default" else None,
        "attn_logit_softcapping": cfg.attn_logit_softcapping,
        "final_logit_softcapping": cfg.final_logit_softcapping,
        "max_position_embeddings": cfg.max_position_embeddings, "weights_dtype": weights_dtype,
    }


def legacy_config_json(cfg: Gemma3TextConfig, spec: dict, dtype_name: str) -> dict:
    """config.json as real hub checkpoints spell it (transformers 4.5x keys)."""
    rp = cfg.rope_parameters
    full = {k: v for k, v in rp["full_attention"].items() if k != "rope_theta"}
    out = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": cfg.attn_logit_softcapping,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        "final_logit_softcapping": cfg.final_logit_softcapping,
        "head_dim": cfg.head_dim, "hidden_activation": cfg.hidden_activation,
        "hidden_size": cfg.hidden_size, "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_local_base_freq": rp["sliding_attention"]["rope_theta"],
        "rope_scaling": full if full.get("rope_type") != "default" else None,
        "rope_theta": rp["full_attention"]["rope_theta"],
        "sliding_window": cfg.sliding_window, "tie_word_embeddings": True,
        "torch_dtype": dtype_name, "use_cache": True, "vocab_size": cfg.vocab_size,
    }
    if "layer_types" in spec["config"]:
        out["layer_types"] = list(cfg.layer_types)
    else:
        out["sliding_window_pattern"] = spec["config"].get("sliding_window_pattern", 6)
    return dict(sorted(out.items()))


def write_golden(path: Path, variant: str, cfg: Gemma3TextConfig, weights_dtype: str,
                 embed_scale: float, prompts, logits, note: str, extra: dict | None = None) -> None:
    doc = {
        "variant": variant,
        "note": note,
        "generator": {"script": "tools/make_tiny_models.py", "torch": torch.__version__,
                      "transformers": transformers.__version__,
                      "compute": "float32, eager attention, CPU, model.eval(), no_grad"},
        "config": key_config(cfg, weights_dtype),
        "embed_scale": embed_scale,
        "prompts": prompts,
        "logits": [[[sig6(v) for v in row] for row in l] for l in logits],
    }
    doc.update(extra or {})
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def reference_check(gguf_path: Path, prompts, logits, embed_scale: float) -> dict:
    """Max |numpy float64 forward over the GGUF - transformers f32 logits|.

    Proves the GGUF plus the documented conventions reproduce transformers, and
    measures how far float32 rounding alone moves the golden (an f32 engine
    should land within a small multiple of it)."""
    reader = gguf.GGUFReader(str(gguf_path))
    err = 0.0
    for ids, want in zip(prompts, logits):
        got = gguf_reference_forward.forward(reader, ids, embed_scale, np.float64)
        err = max(err, float(np.max(np.abs(got - want))))
    if err > 1e-2:
        raise SystemExit(f"{gguf_path}: numpy reference differs from golden by {err}")
    # Floor: golden values are rounded to 6 significant digits (<= 5e-5 for |x| < 100).
    bound = max(2e-4, 4 * err)
    unit = 10 ** math.floor(math.log10(bound))
    return {"numpy_f64_gguf_max_abs_err": float(f"{err:.3g}"),
            "suggested_atol": round(math.ceil(bound / unit) * unit, 10)}


def check_reload(model_dir: Path, prompts, expected, cls=Gemma3ForCausalLM, prep=None) -> None:
    """The saved directory must reproduce the goldens when loaded by transformers."""
    model = cls.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32)
    if prep:
        prep(model)
    got = run_logits(model, prompts)
    for g, e in zip(got, expected):
        err = float(np.max(np.abs(g - e)))
        if err > 1e-5:
            raise SystemExit(f"{model_dir}: reloaded model differs from golden by {err}")


def softcap_stats(model, prompts) -> dict:
    """How hard the softcaps bite: raw (pre-cap) attention scores and logits."""
    from transformers.models.gemma3 import modeling_gemma3 as mg
    seen = {"attn_max": 0.0, "attn_over": 0, "attn_n": 0}
    orig = mg.eager_attention_forward

    def spy(module, query, key, value, attention_mask, scaling=None, **kw):
        k = mg.repeat_kv(key, module.num_key_value_groups)
        raw = (query @ k.transpose(2, 3)) * scaling
        t = raw.shape[-1]
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        vals = raw[..., causal].abs()
        seen["attn_max"] = max(seen["attn_max"], float(vals.max()))
        seen["attn_over"] += int((vals > module.attn_logit_softcapping).sum())
        seen["attn_n"] += vals.numel()
        return orig(module, query, key, value, attention_mask, scaling=scaling, **kw)

    mg.eager_attention_forward = spy
    cap = model.config.final_logit_softcapping
    try:
        model.config.final_logit_softcapping = None
        raw_logits = np.concatenate(run_logits(model, prompts))
    finally:
        model.config.final_logit_softcapping = cap
        mg.eager_attention_forward = orig
    return {"attn_logit_softcapping_applied": False,
            "attn_score_max_abs": round(seen["attn_max"], 3),
            "attn_scores_over_attn_logit_softcapping_fraction":
                round(seen["attn_over"] / seen["attn_n"], 4),
            "raw_logit_max_abs": round(float(np.abs(raw_logits).max()), 3),
            "raw_logits_over_cap_fraction": round(float((np.abs(raw_logits) > cap).mean()), 4)}


def q8_0_roundtrip(model) -> None:
    """Replaces every 2-D weight by its Q8_0 quantize/dequantize image (gguf.quants)."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim == 2:
                w = p.detach().numpy().astype(np.float32)
                q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
                d = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
                p.copy_(torch.from_numpy(d.reshape(w.shape)))


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def make_f32_like(variant: str, spec: dict, out: Path) -> None:
    """base / softcap_ropescale (and the sharded copy of base)."""
    torch.manual_seed(spec["seed"])
    cfg = build_config(spec)
    model = Gemma3ForCausalLM(cfg).eval()
    randomize(model, spec)
    prompts = make_prompts(spec["seed"], cfg.vocab_size)
    logits = run_logits(model, prompts)
    d = fresh_dir(out / variant)
    model.save_pretrained(d)
    (d / "config.json").write_text(json.dumps(legacy_config_json(cfg, spec, "float32"), indent=2) + "\n")
    check_reload(d, prompts, logits)
    extra = {}
    note = "f32 weights; golden from transformers in float32."
    if cfg.final_logit_softcapping is not None:
        note += (" attn_logit_softcapping is set in config.json but transformers' Gemma 3 "
                 "attention does not apply it, so neither does this golden; "
                 "final_logit_softcapping is applied (tanh(x/cap)*cap on the logits).")
        extra["softcap_stats"] = softcap_stats(model, prompts)
    scale = float(model.model.embed_tokens.embed_scale)
    convert_hf_to_gguf.convert(d, d / "model.gguf", "f32")
    extra["checks"] = reference_check(d / "model.gguf", prompts, logits, scale)
    write_golden(d / "golden.json", variant, cfg, "float32", scale, prompts, logits, note, extra)
    if variant != "base":
        return
    convert_hf_to_gguf.convert(d, d / "model-q8_0.gguf", "q8_0")
    q8_0_roundtrip(model)
    q_logits = run_logits(model, prompts)
    q_check = reference_check(d / "model-q8_0.gguf", prompts, q_logits, scale)
    q_check["max_abs_diff_to_unquantized_golden"] = float(
        f"{max(float(np.max(np.abs(a - b))) for a, b in zip(q_logits, logits)):.3g}")
    write_golden(d / "golden-q8_0.json", variant + "/q8_0", cfg, "q8_0", scale, prompts, q_logits,
                 "Logits of the base model after replacing every 2-D weight (token embedding "
                 "included, which is also the tied output head) by dequantize(quantize_q8_0(w)) "
                 "using gguf.quants: the exact f32 reference for model-q8_0.gguf when weights are "
                 "dequantized to f32. golden.json is the unquantized reference (looser tolerance).",
                 {"checks": q_check})
    make_sharded(model_dir=d, out=out)


def make_sharded(model_dir: Path, out: Path) -> None:
    """Same weights as base, split into two shards with an index."""
    d = fresh_dir(out / "sharded")
    model = Gemma3ForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                              dtype=torch.float32)
    total = (model_dir / "model.safetensors").stat().st_size
    model.save_pretrained(d, max_shard_size=f"{int(total * 0.6) // 1000}KB")
    shutil.copy(model_dir / "config.json", d / "config.json")
    shards = sorted(p.name for p in d.glob("model-*.safetensors"))
    if len(shards) != 2 or not (d / "model.safetensors.index.json").exists():
        raise SystemExit(f"{d}: expected 2 shards + index, got {shards}")
    golden = json.loads((model_dir / "golden.json").read_text())
    golden["variant"] = "sharded"
    golden["note"] = "Weights identical to base, stored as 2 safetensors shards; golden = base's."
    (d / "golden.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    # The stored goldens are rounded to 6 digits, hence a tolerance here.
    reloaded = run_logits(Gemma3ForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                            dtype=torch.float32), golden["prompts"])
    for g, e in zip(reloaded, golden["logits"]):
        if not np.allclose(g, np.array(e), rtol=1e-5, atol=1e-5):
            raise SystemExit(f"{d}: sharded reload differs from base golden")


def make_bf16(variant: str, spec: dict, out: Path) -> None:
    torch.manual_seed(spec["seed"])
    cfg = build_config(spec)
    model = Gemma3ForCausalLM(cfg).eval()
    randomize(model, spec)
    model = model.to(torch.bfloat16)
    d = fresh_dir(out / variant)
    model.save_pretrained(d)
    (d / "config.json").write_text(json.dumps(legacy_config_json(cfg, spec, "bfloat16"), indent=2) + "\n")
    header = json.loads((d / "model.safetensors").read_bytes()[8:8 + struct.unpack(
        "<Q", (d / "model.safetensors").read_bytes()[:8])[0]])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    if dtypes != {"BF16"}:
        raise SystemExit(f"{d}: expected only BF16 tensors, got {dtypes}")
    # f32 reference: the bf16 weights widened exactly to f32, computed in f32.
    ref = Gemma3ForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
    unrounded = float(torch.tensor(math.sqrt(cfg.hidden_size), dtype=torch.float32))
    rounded = float(torch.tensor(math.sqrt(cfg.hidden_size)).to(torch.bfloat16).float())
    prompts = make_prompts(spec["seed"], cfg.vocab_size)
    emb = ref.model.embed_tokens
    emb.embed_scale.fill_(rounded)
    logits = run_logits(ref, prompts)
    emb.embed_scale.fill_(unrounded)
    logits_unrounded = run_logits(ref, prompts)
    note = ("bf16 weights (safetensors BF16). Golden = those weights widened exactly to f32, "
            "computed in f32, with embed_scale = sqrt(hidden_size) rounded to bf16 "
            f"({rounded}), which is what transformers uses for a bf16 checkpoint (it casts "
            "embed_scale to the weight dtype). logits_unrounded_embed_scale uses the f32 "
            f"sqrt ({unrounded}), which is what llama.cpp uses for a GGUF (model.gguf here is "
            "F32 and cannot know the source dtype).")
    convert_hf_to_gguf.convert(d, d / "model.gguf", "f32")
    checks = reference_check(d / "model.gguf", prompts, logits, rounded)
    checks["unrounded"] = reference_check(d / "model.gguf", prompts, logits_unrounded, unrounded)
    write_golden(d / "golden.json", variant, cfg, "bfloat16", rounded, prompts, logits, note, {
        "checks": checks, "embed_scale_unrounded": unrounded,
        "logits_unrounded_embed_scale": [[[sig6(v) for v in row] for row in l]
                                         for l in logits_unrounded]})


def make_multimodal(variant: str, spec: dict, out: Path) -> None:
    from safetensors.torch import save_file
    torch.manual_seed(spec["seed"])
    cfg = build_config(spec)
    model = Gemma3ForCausalLM(cfg).eval()
    randomize(model, spec)
    prompts = make_prompts(spec["seed"], cfg.vocab_size)
    logits = run_logits(model, prompts)
    d = fresh_dir(out / variant)
    vision = {"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 8, "patch_size": 2,
              "vision_use_head": False}
    text = {"model_type": "gemma3_text", **{k: getattr(cfg, k) for k in MM_TEXT_FIELDS}}
    config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
              "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
              "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 4,
              "text_config": text, "torch_dtype": "float32", "vision_config": vision}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {"language_model." + k: v.detach().clone().contiguous()
               for k, v in model.state_dict().items() if k != "lm_head.weight"}
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    tensors["vision_tower.vision_model.embeddings.patch_embedding.weight"] = torch.randn(
        16, 3, 2, 2, generator=gen)
    tensors["multi_modal_projector.mm_input_projection_weight"] = torch.randn(16, cfg.hidden_size,
                                                                              generator=gen)
    save_file(dict(sorted(tensors.items())), d / "model.safetensors", metadata={"format": "pt"})

    from transformers import Gemma3ForConditionalGeneration
    check_reload(d, prompts, logits, cls=Gemma3ForConditionalGeneration)
    note = ("Gemma3ForConditionalGeneration layout: tensors under language_model.model.*, "
            "dummy vision_tower.* / multi_modal_projector.* tensors to ignore, text_config "
            "omitting fields so Gemma3TextConfig defaults apply (query_pre_attn_scalar=256, "
            "sliding_window_pattern=6, rope_theta=1e6, rope_local_base_freq=1e4, "
            "rms_norm_eps=1e-6, no softcapping, no rope scaling). Verified by reloading the "
            "directory with Gemma3ForConditionalGeneration.")
    scale = float(model.model.embed_tokens.embed_scale)
    convert_hf_to_gguf.convert(d, d / "model.gguf", "f32")
    write_golden(d / "golden.json", variant, cfg, "float32", scale, prompts, logits, note,
                 {"checks": reference_check(d / "model.gguf", prompts, logits, scale)})


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "tiny")
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for variant in args.only or VARIANTS:
        spec = VARIANTS[variant]
        if spec.get("multimodal"):
            make_multimodal(variant, spec, args.out)
        elif spec.get("dtype") == torch.bfloat16:
            make_bf16(variant, spec, args.out)
        else:
            make_f32_like(variant, spec, args.out)
        print(f"{variant}: written to {args.out / variant}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
