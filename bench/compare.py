#!/usr/bin/env python3
"""gemmax vs llama.cpp on the same GGUF files, same thread count, runs interleaved A B A B.

Each run is a fresh process (`gemmax bench --repeat 1 --json` or bench/llama_cpp_bench.py
--repeat 1), both with one untimed warm-up inside, so load time and page cache state are treated
alike. Reports per model the medians over --pairs runs of each engine and the gemmax/llama.cpp
ratios, plus the spread (min..max) as a measure of how noisy the machine was.

The share of the decode bound ("own bound") is taken per pair: `gemmax bench --bandwidth` probes
the read bandwidth just before each pair, and each engine's decode rate is divided by the bound at
that probe's reading; the table gives the median (min-max) of those shares. The machine's bandwidth
drifts by 20-30% within minutes, so one probe per model made the share swing with the probe's
timing rather than the engine's speed.

  python3 bench/compare.py --gemmax build/release/gemmax --threads 2 --pairs 5 \
      --readme bench/README.md MODEL.gguf [MODEL.gguf ...]

With --readme the table replaces the text between the RESULTS markers of that file.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- RESULTS BEGIN -->", "<!-- RESULTS END -->"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(a, model):
    common = ["--model", model, "--prompt-tokens", str(a.prompt_tokens), "--gen-tokens",
              str(a.gen_tokens), "--threads", str(a.threads), "--repeat", "1"]
    gem = [a.gemmax, "bench", "--json"] + common
    lla = [sys.executable, os.path.join(HERE, "llama_cpp_bench.py")] + common
    runs = {"gemmax": [], "llama.cpp": [], "probes": []}
    for i in range(a.pairs):
        runs["probes"].append(probe(a))
        for name, cmd in (("gemmax", gem), ("llama.cpp", lla)) if i % 2 == 0 else \
                         (("llama.cpp", lla), ("gemmax", gem)):
            try:
                runs[name].append(run_json(cmd))
            except subprocess.CalledProcessError as e:
                print(f"{name} failed on {model}: {e.stderr.strip()[-300:]}", file=sys.stderr)
                result = None
                if name == "llama.cpp" and "--no-extra-bufts" not in cmd:
                    # Its AMX / repacked-weight buffers crashed on an AVX-512 host: measure it
                    # without them from now on for this model, and say so in the table.
                    lla.append("--no-extra-bufts")
                    try:
                        result = run_json(lla)
                    except subprocess.CalledProcessError as e2:
                        print(f"llama.cpp failed again: {e2.stderr.strip()[-300:]}", file=sys.stderr)
                runs[name].append(result)
        print(f"  pair {i + 1}/{a.pairs} done", file=sys.stderr)
    # One more gemmax run with --profile (its clock reads cost a little, so it is not one of the
    # timed pairs): the fixed per-token cost measured inside one run, which the bandwidth steps
    # between runs cannot move.
    try:
        runs["profile"] = run_json(gem + ["--profile"]).get("decode_profile")
    except subprocess.CalledProcessError as e:
        print(f"gemmax --profile failed on {model}: {e.stderr.strip()[-300:]}", file=sys.stderr)
        runs["profile"] = None
    return runs


def probe(a):
    """Read bandwidth in bytes/s with --threads threads, now."""
    bw = run_json([a.gemmax, "bench", "--bandwidth", "--json", "--threads", str(a.threads)])
    return bw["read_bytes_per_s"]


def bound_shares(runs, name, bytes_per_token):
    """Per pair: that run's decode rate / (the pair's probe reading / bytes per token)."""
    return [r["decode_tokens_per_s"] * bytes_per_token / bw
            for r, bw in zip(runs[name], runs["probes"]) if r is not None]


def fmt_share(vals):
    if not vals:
        return "-"
    return (f"{100 * statistics.median(vals):.0f}% ({100 * min(vals):.0f}-{100 * max(vals):.0f})")


def stats(results, field):
    vals = [r[field] for r in results if r is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(s):
    return "failed" if s is None else f"{s[0]:.1f} ({s[1]:.1f}-{s[2]:.1f})"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a[0] / b[0]:.2f}"


def table(a, rows):
    lines = [
        f"{a.threads} threads, prompt {a.prompt_tokens} tokens, {a.gen_tokens} decoded tokens, "
        f"median (min-max) of {a.pairs} interleaved runs each; host: {platform.node()}, "
        f"{os.cpu_count()} CPUs, {cpu_description()}.",
        "",
        "| model | gemmax prefill tok/s | llama.cpp prefill tok/s | ratio | gemmax decode tok/s "
        "| llama.cpp decode tok/s | ratio | weight + KV MB/token | decode bound tok/s | gemmax / bound "
        "| probe GB/s per pair | gemmax / own bound | llama.cpp / own bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, runs, bw in rows:
        gp, lp = stats(runs["gemmax"], "prefill_tokens_per_s"), stats(runs["llama.cpp"], "prefill_tokens_per_s")
        gd, ld = stats(runs["gemmax"], "decode_tokens_per_s"), stats(runs["llama.cpp"], "decode_tokens_per_s")
        first = next((r for r in runs["gemmax"] if r), None)
        plain = any(r is not None and not r.get("extra_bufts", True) for r in runs["llama.cpp"])
        mark = " †" if plain else ""
        head = (f"| {os.path.basename(model)}{mark} | {fmt(gp)} | {fmt(lp)} | {ratio(gp, lp)} | "
                f"{fmt(gd)} | {fmt(ld)} | {ratio(gd, ld)} |")
        if first is None or not bw:
            lines.append(head + " - | - | - | - | - | - |")
            continue
        wb, kb = first["weight_bytes_per_token"], first.get("kv_bytes_per_token", 0)
        bound = bw / (wb + kb)
        share = f"{100 * gd[0] / bound:.0f}%" if gd else "-"
        # llama.cpp reads its F16 KV rows: the same bytes when gemmax's cache is F16 too (the default).
        probes = [p / 1e9 for p in runs["probes"]]
        lines.append(head + f" {wb / 1e6:.1f} + {kb / 1e6:.1f} | {bound:.1f} | {share} | "
                     f"{statistics.median(probes):.1f} ({min(probes):.1f}-{max(probes):.1f}) | "
                     f"{fmt_share(bound_shares(runs, 'gemmax', wb + kb))} | "
                     f"{fmt_share(bound_shares(runs, 'llama.cpp', wb + kb))} |")
    lines += ["", "Memory and load time (same runs, medians): peak RSS in MiB (llama.cpp: the process's peak "
              "minus what the Python interpreter held before loading the model) and load seconds. "
              "llama.cpp's figures include its vocabulary; gemmax's runs need no tokenizer, so "
              "`gemmax bench` loads it after the runs and reports it apart (the '+ tokenizer' "
              "columns: what `gemmax generate` holds and pays at start).", "",
              "| model | gemmax peak RSS MiB | + tokenizer | llama.cpp peak RSS MiB | gemmax load s | "
              "+ tokenizer s | llama.cpp load s |",
              "|---|---|---|---|---|---|---|"]
    for model, runs, _ in rows:
        def med(name, field, scale=1.0):
            vals = [r[field] for r in runs[name] if r is not None and r.get(field, -1) >= 0]
            if not vals:
                return "-"
            return f"{statistics.median(vals) / scale:.{3 if scale == 1.0 else 0}f}"
        lines.append(f"| {os.path.basename(model)} | {med('gemmax', 'peak_rss_bytes', 2**20)} | "
                     f"{med('gemmax', 'peak_rss_with_tokenizer_bytes', 2**20)} | "
                     f"{med('llama.cpp', 'peak_rss_bytes', 2**20)} | {med('gemmax', 'load_seconds')} | "
                     f"{med('gemmax', 'tokenizer_load_seconds')} | {med('llama.cpp', 'load_seconds')} |")
    return "\n".join(lines)


def profile_table(rows):
    """gemmax's decode steps phase by phase (the --profile run): where the time per token goes and
    the fixed per-token cost (time outside the matmuls less the K/V reads at the matmuls' rate)."""
    lines = ["", "", "gemmax's decode per token, from one more run with `--profile` after the pairs "
             "(ms; 'fixed': the time outside the matmuls less the K/V reads at the matmuls' "
             "weight-streaming rate, issue #5's fixed per-token cost measured within one run):", "",
             "| model | ms per token | matmuls GB/s | LM head ms | attention ms | outside matmuls ms "
             "| fixed ms |", "|---|---|---|---|---|---|---|"]
    for model, runs, _ in rows:
        p = runs.get("profile")
        if not p:
            lines.append(f"| {os.path.basename(model)} | - | - | - | - | - | - |")
            continue
        ph = p["phases"]
        lines.append(f"| {os.path.basename(model)} | {1e3 * p['seconds_per_token']:.2f} | "
                     f"{p['matmul_bytes_per_second'] / 1e9:.1f} | "
                     f"{1e3 * ph['lm-head']['seconds_per_token']:.2f} | "
                     f"{1e3 * ph['attention']['seconds_per_token']:.2f} | "
                     f"{1e3 * p['outside_matmuls_seconds_per_token']:.2f} | "
                     f"{1e3 * p['fixed_seconds_per_token']:.2f} |")
    return "\n".join(lines)


def cpu_description():
    """The CPU model and its widest SIMD features: tables from different hosts differ by these."""
    name, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_int8"]
    return name + " (" + ", ".join(f for f in wanted if f in flags) + ")"


KV_ELEM = {"f32": 4, "f16": 2, "bf16": 2}


def least_squares(pts):
    """(intercept, slope) of y = intercept + slope * x over (x, y) points; None if x is constant."""
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - slope * mx, slope


def fit_fixed_cost(rows):
    """Per weight format seen at several sizes: issue #5's fit of seconds per decoded token =
    fixed + bytes / rate, for gemmax and llama.cpp, one point per run. Bytes are the weights plus
    the KV rows read (llama.cpp's F16 cache: the same rows at 2 bytes per element). The rate is
    fitted as a share of the bandwidth probed just before the run's pair: x = bytes / probe, so
    y = fixed + x / share. Neither this nor a fit against bytes alone (session 22: 2.7-9.9 ms, both
    engines) is meaningful on the Zen 4 host, whose bandwidth steps between ~35 and ~55 GB/s within
    a run (session 23: -1.0 to 5.3 ms for gemmax); profile_table measures gemmax's fixed cost
    within one run instead."""
    groups = {}
    for model, runs, _ in rows:
        base = os.path.basename(model)
        if "-random-" not in base:
            continue
        fmt_name = base.rsplit("-random-", 1)[1].removesuffix(".gguf")
        groups.setdefault(fmt_name, []).append(runs)
    lines = []
    for fmt_name, group in groups.items():
        if len(group) < 2:
            continue
        cells = []
        for name in ("gemmax", "llama.cpp"):
            pts = []
            for runs in group:
                first = next((r for r in runs["gemmax"] if r), None)
                if first is None:
                    continue
                kv = first.get("kv_bytes_per_token", 0)
                if name == "llama.cpp":
                    kv = kv * 2 // KV_ELEM.get(first.get("kv_dtype", "f32"), 4)
                nbytes = first["weight_bytes_per_token"] + kv
                pts += [(nbytes / bw, 1.0 / r["decode_tokens_per_s"])
                        for r, bw in zip(runs[name], runs["probes"])
                        if r is not None and r["decode_tokens_per_s"] > 0]
            fit = least_squares(pts) if len(pts) >= 2 else None
            if fit is None:
                cells += ["-", "-"]
                continue
            fixed, slope = fit
            cells += [f"{1e3 * fixed:.2f}", f"{100 / slope:.0f}%" if slope > 0 else "-"]
        lines.append(f"| {fmt_name} ({len(group)} sizes) | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    return "\n".join(["", "", "Decode time per token fitted as fixed + bytes / (share x probed bandwidth) over "
                       "the sizes of each format (least squares over every run, each against the probe "
                       "before its pair; bytes = weights + KV read):", "",
                       "| format | gemmax fixed ms | gemmax share of probe | llama.cpp fixed ms | "
                       "llama.cpp share of probe |",
                       "|---|---|---|---|---|"] + lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--gemmax", default="build/release/gemmax")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--readme", help="replace the RESULTS section of this markdown file")
    a = ap.parse_args()

    # The host's bandwidth drifts by 20-30% over a long run, so it is probed before every pair: the
    # 'decode bound' column uses the highest reading of the whole run (one early, low reading made
    # later rows look faster than memory), the 'own bound' shares each pair's own reading.
    rows = []
    for m in a.models:
        print(f"{m}:", file=sys.stderr)
        rows.append((m, measure(a, m)))
    probes = [p for _, runs in rows for p in runs["probes"]]
    bandwidth = max(probes)
    rows = [(m, runs, bandwidth) for m, runs in rows]
    text = table(a, rows) + profile_table(rows) + fit_fixed_cost(rows) + (
        f"\n\nRead bandwidth ({a.threads} threads, `gemmax bench --bandwidth` before each pair): highest "
        f"{bandwidth / 1e9:.2f} GB/s, lowest {min(probes) / 1e9:.2f}; decode bound = highest bandwidth / (weight "
        f"bytes + mean KV bytes read per decoded token, at gemmax's KV type); 'own bound': each run's "
        f"decode rate against the bound at the reading taken just before its pair, median (min-max) over "
        f"the pairs (llama.cpp against the same bytes: both engines keep K/V in F16).")
    if any(any(r is not None and not r.get("extra_bufts", True) for r in runs["llama.cpp"])
           for _, runs, _ in rows):
        text += ("\n\n† llama.cpp crashed (segmentation fault) on this file with its CPU "
                 "extra buffer types (AMX tiles, repacked weights); its runs here are without them "
                 "(`use_extra_bufts = false`), i.e. its plain CPU kernels.")
    print(text)
    if a.readme:
        doc = open(a.readme).read()
        if BEGIN not in doc or END not in doc:
            sys.exit(f"{a.readme}: no {BEGIN} ... {END} section")
        head, rest = doc.split(BEGIN, 1)
        open(a.readme, "w").write(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
