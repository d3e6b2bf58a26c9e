// Copies between host and device memory, and the one-element reads a step needs from the device
// (the loss, a scalar an op takes as a host float).
//
//   STRATA_RETURN_IF_ERROR(CopyTensor(stream, device_input, host_batch_rows));   // host -> device
//   STRATA_ASSIGN_OR_RETURN(float loss, ReadScalar(stream, device_loss));     // waits for stream
//
// Both tensors of a copy are contiguous, of one shape and dtype; either may be on the host or a
// CUDA device (cudaMemcpyDefault: unified addressing tells the direction). A copy is enqueued on
// `stream` and ordered with its kernels; the caller keeps a host source unchanged until the
// stream passes it (pinned memory is copied asynchronously, pageable memory before the call
// returns).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

absl::Status CopyTensor(CUstream_st* stream, const Tensor& dst, const Tensor& src);

// The first element of f32 `t` (on the device or the host), after everything on `stream` before
// it: the call waits for the stream.
absl::StatusOr<float> ReadScalar(CUstream_st* stream, const Tensor& t);

// Sets every byte of `t` (contiguous, on the device) to zero, on `stream`.
absl::Status ZeroTensor(CUstream_st* stream, const Tensor& t);

}  // namespace strata::cuda
