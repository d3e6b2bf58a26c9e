// The argument checks of the embedding lookup (embedding.cc), shared by the CPU kernels and their
// CUDA launchers (Note [one argument check per kernel] in kernel_checks.h). `f32` checks one f32
// contiguous tensor on the caller's device; the ids are each device's own to check (the CPU
// kernel reads them), between the two.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// A table (V, C).
inline absl::Status CheckEmbeddingTable(TensorCheck f32, absl::string_view op,
                                        absl::string_view name, const Tensor& table) {
  STRATA_RETURN_IF_ERROR(f32(op, name, table));
  return CheckRank(op, name, table, 2);
}

// t of shape (ids..., C): one row of C per id.
inline absl::Status CheckEmbeddingRows(TensorCheck f32, absl::string_view op,
                                       absl::string_view name, const Tensor& ids, const Tensor& t,
                                       int64_t c) {
  Dims dims(ids.shape().dims().begin(), ids.shape().dims().end());
  dims.push_back(c);
  return CheckWithShape(f32, op, name, t, Shape(dims));
}

}  // namespace strata::cpu::internal
