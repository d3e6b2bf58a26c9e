// cpu::SoftmaxCrossEntropy (runtime/cpu/cross_entropy.h) on a CUDA device: softmax cross-entropy
// fused with its gradient, torch.nn.functional.cross_entropy(reduction='mean', ignore_index,
// label_smoothing).
//
//   Tensor ws = ...;  // on the device, cuda::SoftmaxCrossEntropyWorkspaceBytes(logits.shape())
//   STRATA_RETURN_IF_ERROR(cuda::SoftmaxCrossEntropy(stream, logits, targets, loss, dlogits, ws));
//   STRATA_RETURN_IF_ERROR(cuda::SoftmaxCrossEntropy(stream, logits, targets, loss, logits, ws));
//
// Every tensor on the CUDA device: logits f32 contiguous, targets i32 or i64 contiguous, loss one
// f32 element (written on the device: read it after the stream), dlogits like logits or undefined.
// Options, outputs and their meaning are the CPU kernel's. One block per row; the loss is summed
// in double in a fixed order through `workspace` (bitwise reproducible, no atomics).
//
// Unlike the CPU kernel, the targets' values are not checked (they are on the device): a target
// outside [0, V) other than ignore_index makes the loss NaN and its row of dlogits NaN.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/shape.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// Bytes of device workspace SoftmaxCrossEntropy needs for logits of shape `logits`.
size_t SoftmaxCrossEntropyWorkspaceBytes(const Shape& logits);

// As cpu::SoftmaxCrossEntropy, with `workspace` (8-byte aligned) after dlogits.
absl::Status SoftmaxCrossEntropy(CUstream_st* stream, const Tensor& logits, const Tensor& targets,
                                 const Tensor& loss, const Tensor& dlogits,
                                 const Tensor& workspace, float dloss = 1.0f,
                                 int64_t ignore_index = -100, float label_smoothing = 0.0f);

}  // namespace strata::cuda
