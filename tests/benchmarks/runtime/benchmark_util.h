// Helpers for the runtime kernel benchmarks: random tensors and a check that aborts the run
// when a kernel fails (a failing kernel must never be timed as fast).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <random>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::bench {

inline Tensor Random(const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
  static std::mt19937_64 rng(1234);
  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

inline Tensor Empty(const Shape& shape, DType dtype = DType::kF32) {
  return Tensor::Empty(shape, dtype, DefaultCpuAllocator()).value();
}

inline void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "benchmark kernel failed: %s\n", s.ToString().c_str());
    std::abort();
  }
}

}  // namespace strata::bench
