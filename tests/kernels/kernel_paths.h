// The kernel paths a test forces in turn (the scalar reference and, where the CPU has it, AVX2),
// and a guard that restores the automatic choice when the test ends.
#pragma once

#include <vector>

#include "kernels/matmul.h"

namespace gemmax {

inline std::vector<KernelPath> paths() {
  std::vector<KernelPath> p = {KernelPath::kScalar};
  if (kernel_path_supported(KernelPath::kAvx2)) p.push_back(KernelPath::kAvx2);
  return p;
}

struct PathGuard {
  KernelPath saved = kernel_path();
  ~PathGuard() { set_kernel_path(saved); }
};

}  // namespace gemmax
