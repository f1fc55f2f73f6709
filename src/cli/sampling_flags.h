// The sampling flags `gemmax generate` and `gemmax chat` share, bound to a SamplingParams.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

#include "pipeline/sampling_params.h"

namespace gemmax::cli {

// Greedy unless --temperature is given, so plain runs are reproducible.
inline void add_sampling_flags(CLI::App& cmd, SamplingParams& p, std::shared_ptr<uint64_t> seed) {
  p.temperature = 0;
  cmd.add_option("--temperature", p.temperature, "0 = greedy")->capture_default_str();
  cmd.add_option("--top-k", p.top_k, "Keep the K most likely tokens (0 = all)")
      ->capture_default_str();
  cmd.add_option("--top-p", p.top_p, "Nucleus sampling mass")->capture_default_str();
  cmd.add_option("--min-p", p.min_p, "Drop tokens below this fraction of the best")
      ->capture_default_str();
  cmd.add_option("--repetition-penalty", p.repetition_penalty, "HF-style penalty (1 = off)")
      ->capture_default_str();
  cmd.add_option("--presence-penalty", p.presence_penalty, "OpenAI presence penalty")
      ->capture_default_str();
  cmd.add_option("--frequency-penalty", p.frequency_penalty, "OpenAI frequency penalty")
      ->capture_default_str();
  cmd.add_option("--seed", *seed, "Random seed (same seed, same output)");
  cmd.add_option("--stop", p.stop, "Stop string (repeatable); never printed");
  cmd.add_flag("--ignore-eos", p.ignore_eos, "Keep generating past the model's stop tokens");
}

// Applies --seed when it was given.
inline void finish_sampling_flags(const CLI::App& cmd, SamplingParams& p, uint64_t seed) {
  if (cmd.count("--seed") > 0) p.seed = seed;
}

}  // namespace gemmax::cli
