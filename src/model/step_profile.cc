#include "model/step_profile.h"

namespace gemmax {

const char* StepProfile::name(StepPhase phase) {
  switch (phase) {
    case StepPhase::kSetup:
      return "setup+embed";
    case StepPhase::kNorms:
      return "norms";
    case StepPhase::kQkv:
      return "qkv";
    case StepPhase::kRope:
      return "qk-norm+rope";
    case StepPhase::kKvStore:
      return "kv-store";
    case StepPhase::kAttention:
      return "attention";
    case StepPhase::kOutProj:
      return "o-proj";
    case StepPhase::kGateUp:
      return "gate+up";
    case StepPhase::kGelu:
      return "gelu";
    case StepPhase::kDown:
      return "down";
    case StepPhase::kLmHead:
      return "lm-head";
    case StepPhase::kCount:
      break;
  }
  return "?";
}

bool StepProfile::is_matmul(StepPhase phase) {
  return phase == StepPhase::kQkv || phase == StepPhase::kOutProj || phase == StepPhase::kGateUp ||
         phase == StepPhase::kDown || phase == StepPhase::kLmHead;
}

double StepProfile::total_seconds() const {
  double total = 0;
  for (double s : seconds) total += s;
  return total;
}

double StepProfile::seconds_per_step(StepPhase phase) const {
  return steps > 0 ? seconds[static_cast<size_t>(phase)] / static_cast<double>(steps) : 0.0;
}

double StepProfile::weight_bytes_per_step(StepPhase phase) const {
  return steps > 0 ? static_cast<double>(weight_bytes[static_cast<size_t>(phase)]) /
                         static_cast<double>(steps)
                   : 0.0;
}

double StepProfile::outside_matmuls_seconds_per_step() const {
  double total = 0;
  for (int i = 0; i < kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    if (!is_matmul(phase)) total += seconds_per_step(phase);
  }
  return total;
}

PhaseClock::PhaseClock(StepProfile* profile)
    : profile_(profile),
      last_(profile != nullptr ? std::chrono::steady_clock::now()
                               : std::chrono::steady_clock::time_point{}) {
  if (profile_ != nullptr) ++profile_->steps;
}

void PhaseClock::record(StepPhase phase, int64_t weight_bytes) {
  const auto now = std::chrono::steady_clock::now();
  const auto i = static_cast<size_t>(phase);
  profile_->seconds[i] += std::chrono::duration<double>(now - last_).count();
  profile_->weight_bytes[i] += weight_bytes;
  last_ = now;
}

}  // namespace gemmax
