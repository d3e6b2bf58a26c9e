// cpu::RotaryForward and cpu::RotaryBackward (runtime/cpu/rotary.h) on a CUDA device: rotary
// position embedding with a precomputed table.
//
//   Tensor host_table = ...;  // (T, D), cpu::RotaryTable(theta, scaling, host_table), then copied
//   STRATA_RETURN_IF_ERROR(cuda::RotaryForward(stream, x, table, y));     // x, y (B, T, H, D)
//   STRATA_RETURN_IF_ERROR(cuda::RotaryBackward(stream, table, dy, dx));
//
// f32, contiguous, every tensor on the CUDA device. Shapes and semantics are the CPU kernels'
// (y may be x, dx may be dy). The table is built once on the host with cpu::RotaryTable (in
// double) and copied to the device; there is no device RotaryTable.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

absl::Status RotaryForward(CUstream_st* stream, const Tensor& x, const Tensor& table,
                           const Tensor& y);
absl::Status RotaryBackward(CUstream_st* stream, const Tensor& table, const Tensor& dy,
                            const Tensor& dx);

}  // namespace strata::cuda
