#include "model/step_profile.h"

#include <algorithm>

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

double StepProfile::bytes_per_step(StepPhase phase) const {
  return steps > 0 ? static_cast<double>(bytes_read[static_cast<size_t>(phase)]) /
                         static_cast<double>(steps)
                   : 0.0;
}

double StepProfile::multiply_adds_per_second(StepPhase phase) const {
  const auto i = static_cast<size_t>(phase);
  return seconds[i] > 0 ? static_cast<double>(multiply_adds[i]) / seconds[i] : 0.0;
}

double StepProfile::outside_matmuls_seconds_per_step() const {
  double total = 0;
  for (int i = 0; i < kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    if (!is_matmul(phase)) total += seconds_per_step(phase);
  }
  return total;
}

double StepProfile::matmul_bytes_per_second() const {
  double bytes = 0, sec = 0;
  for (int i = 0; i < kPhases; ++i)
    if (is_matmul(static_cast<StepPhase>(i))) {
      bytes += static_cast<double>(bytes_read[static_cast<size_t>(i)]);
      sec += seconds[static_cast<size_t>(i)];
    }
  return sec > 0 ? bytes / sec : 0.0;
}

double StepProfile::fixed_seconds_per_step() const {
  const double rate = matmul_bytes_per_second();
  const double kv = rate > 0 ? bytes_per_step(StepPhase::kAttention) / rate : 0.0;
  return std::max(0.0, outside_matmuls_seconds_per_step() - kv);
}

PhaseClock::PhaseClock(StepProfile* profile)
    : profile_(profile),
      last_(profile != nullptr ? std::chrono::steady_clock::now()
                               : std::chrono::steady_clock::time_point{}) {
  if (profile_ != nullptr) ++profile_->steps;
}

void PhaseClock::record(StepPhase phase, int64_t bytes_read, int64_t multiply_adds) {
  const auto now = std::chrono::steady_clock::now();
  const auto i = static_cast<size_t>(phase);
  profile_->seconds[i] += std::chrono::duration<double>(now - last_).count();
  profile_->bytes_read[i] += bytes_read;
  profile_->multiply_adds[i] += multiply_adds;
  last_ = now;
}

}  // namespace gemmax
