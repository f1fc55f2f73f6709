// Where a model step's wall time goes, phase by phase, summed over the steps it watched
// (Gemma3Model::set_profile, `gemmax bench --profile`). The matmul phases also count the weight
// bytes they read and attention the cached K/V bytes, so a report can set their rates against the
// memory bandwidth and show the time that is not explained by bytes: the fixed per-token cost
// issue #5 asks about (the intercept of time per token against weight + K/V bytes).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace gemmax {

enum class StepPhase : int {
  kSetup,      // input checks, KV page reservation, embedding lookup
  kNorms,      // every RMSNorm and residual add
  kQkv,        // q/k/v projections
  kRope,       // q/k head norms and RoPE
  kKvStore,    // K/V rows into the cache, commit
  kAttention,  // scores, softmax, weighted values, chunk merges
  kOutProj,    // attention output projection
  kGateUp,     // MLP gate and up projections
  kGelu,       // gated GELU
  kDown,       // MLP down projection
  kLmHead,     // LM head and final softcapping
  kCount
};

struct StepProfile {
  static constexpr int kPhases = static_cast<int>(StepPhase::kCount);
  std::array<double, kPhases> seconds{};
  // Bytes the phase read: of weights for the matmul phases, of cached K and V rows for attention
  // (every visible key of every token, as the kernels read them), 0 for the others.
  std::array<int64_t, kPhases> bytes_read{};
  // Multiply-adds the phase did: weight elements times the rows multiplied for the matmul phases,
  // query heads times visible keys times head_dim, twice (scores and values), for attention; 0
  // for the others. Set against a machine's peak rate, the fraction a prefill reaches.
  std::array<int64_t, kPhases> multiply_adds{};
  int64_t steps = 0;

  static const char* name(StepPhase phase);
  static bool is_matmul(StepPhase phase);
  double total_seconds() const;
  // Means per watched step.
  double seconds_per_step(StepPhase phase) const;
  double bytes_per_step(StepPhase phase) const;
  double multiply_adds_per_second(StepPhase phase) const;  // 0 for a phase never timed
  double outside_matmuls_seconds_per_step() const;         // every phase but the matmuls
  // The matmul phases' weight bytes over their time: the step's weight-streaming rate.
  double matmul_bytes_per_second() const;
  // Time outside the matmuls less the K/V reads at the matmuls' rate (not below 0): what does not
  // scale with bytes read.
  double fixed_seconds_per_step() const;
};

// Adds the time since the previous lap (or construction) to a phase. Without a profile it reads no
// clock: a model nobody profiles pays one branch per phase.
class PhaseClock {
 public:
  PhaseClock() = default;
  explicit PhaseClock(StepProfile* profile);
  void lap(StepPhase phase, int64_t bytes_read = 0, int64_t multiply_adds = 0) {
    if (profile_ != nullptr) record(phase, bytes_read, multiply_adds);
  }

 private:
  void record(StepPhase phase, int64_t bytes_read, int64_t multiply_adds);
  StepProfile* profile_ = nullptr;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace gemmax
