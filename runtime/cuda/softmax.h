// cpu::SoftmaxForward, SoftmaxBackward, LogSoftmaxForward and LogSoftmaxBackward
// (runtime/cpu/softmax.h) on a CUDA device: softmax and log-softmax over the last dimension.
//
//   STRATA_RETURN_IF_ERROR(cuda::SoftmaxForward(stream, scores, probs));
//   STRATA_RETURN_IF_ERROR(cuda::SoftmaxBackward(stream, probs, dprobs, dscores));
//   STRATA_RETURN_IF_ERROR(cuda::LogSoftmaxForward(stream, logits, logp));
//
// f32, contiguous, every tensor on the CUDA device (the CPU kernels take f32 only too). Shapes and
// semantics are the CPU kernels': numerically stable, out may alias x and dx may alias dy. One
// block per row; the log-softmax sums are taken in double, as on the CPU.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

absl::Status SoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status SoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                             const Tensor& dx);
absl::Status LogSoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status LogSoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                                const Tensor& dx);

}  // namespace strata::cuda
