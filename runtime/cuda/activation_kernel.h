// The activation kernels (activation_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

#include "runtime/cuda/elementwise_kernel.h"

struct CUstream_st;

namespace strata::cuda::internal {

// Forward ops take in = {x}; backward ops in = {x, dout}; kSwiGluForward and kSwiGluUpGrad
// {gate, up} and {gate, dout}; kSwiGluGateGrad {gate, up, dout}.
enum class ActivationOp : int {
  kGeluForward,
  kGeluBackward,
  kReluForward,
  kReluBackward,
  kRelu6Forward,
  kRelu6Backward,
  kSigmoidForward,
  kSigmoidBackward,
  kTanhForward,
  kTanhBackward,
  kSiluForward,
  kSiluBackward,
  kSwiGluForward,
  kSwiGluGateGrad,
  kSwiGluUpGrad,
  kSoftplusForward,
  kSoftplusBackward,
  kGeluExactForward,
  kGeluExactBackward,
};

// out = op(in...) elementwise over n elements, on `stream`; returns the launch's cudaError_t.
int LaunchActivation(ActivationOp op, ElemType type, const StridedView* in, StridedView out,
                     int64_t n, CUstream_st* stream);

}  // namespace strata::cuda::internal
