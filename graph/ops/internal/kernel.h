// One kernel call for either backend, so that an op's Run is written once:
//
//   return STRATA_KERNEL(a, GeluForward, a.in[0], a.out[0]);
//   // cpu::GeluForward(x, y) on the CPU, cuda::GeluForward(a.cuda->stream, x, y) on a device
//   return STRATA_BLAS_KERNEL(a, Matmul, a.in[0], a.in[1], a.out[0], false, false, 1.0f, 0.0f);
//   // cuda::Matmul(stream, blas, ..., precision): the GEMM launchers take the cuBLAS handle after
//   // the stream, and their GemmPrecision after the CPU kernel's arguments (all of them given)
//
// Each CUDA launcher has its CPU kernel's name, arguments and checks, with the stream first
// (docs/cuda.md). Where a launcher differs (a device workspace, no CPU twin), the op branches on
// a.cuda itself. Without the CUDA toolkit only the CPU kernels exist; Compile refuses a device
// there, so a.cuda is always null.
#pragma once

#include <cstring>

#include "graph/op.h"
#include "runtime/cpu/activation.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/batchnorm.h"
#include "runtime/cpu/conv2d.h"
#include "runtime/cpu/copy.h"
#include "runtime/cpu/cross_entropy.h"
#include "runtime/cpu/dropout.h"
#include "runtime/cpu/elementwise.h"
#include "runtime/cpu/embedding.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/linear.h"
#include "runtime/cpu/pooling.h"
#include "runtime/cpu/reduce.h"
#include "runtime/cpu/rmsnorm.h"
#include "runtime/cpu/rotary.h"
#include "runtime/cpu/round_to_precision.h"
#include "runtime/cpu/softmax.h"
#include "runtime/cpu/sync_batchnorm.h"

#if STRATA_HAVE_CUDA
#include "runtime/cuda/activation.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/batchnorm.h"
#include "runtime/cuda/conv2d.h"
#include "runtime/cuda/copy.h"
#include "runtime/cuda/cross_entropy.h"
#include "runtime/cuda/dropout.h"
#include "runtime/cuda/elementwise.h"
#include "runtime/cuda/embedding.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/layernorm.h"
#include "runtime/cuda/linear.h"
#include "runtime/cuda/pooling.h"
#include "runtime/cuda/reduce.h"
#include "runtime/cuda/relu_mask.h"
#include "runtime/cuda/rmsnorm.h"
#include "runtime/cuda/rotary.h"
#include "runtime/cuda/round_to_precision.h"
#include "runtime/cuda/softmax.h"
#include "runtime/cuda/sync_batchnorm.h"
#include "runtime/cuda/transfer.h"

#define STRATA_KERNEL(args, kernel, ...)                                             \
  ((args).cuda != nullptr ? ::strata::cuda::kernel((args).cuda->stream, __VA_ARGS__) \
                          : ::strata::cpu::kernel(__VA_ARGS__))
// A GEMM: the CPU kernel's arguments, every one spelled out (the CUDA launcher takes its
// GemmPrecision after them: bf16 tensor cores where every operand holds bf16 values).
#define STRATA_BLAS_KERNEL(args, kernel, ...)                                          \
  ((args).cuda != nullptr                                                              \
       ? ::strata::cuda::kernel((args).cuda->stream, (args).cuda->blas, __VA_ARGS__,   \
                                (args).cuda->bf16_operands                             \
                                    ? ::strata::cuda::GemmPrecision::kBf16             \
                                    : ::strata::cuda::GemmPrecision::kF32)             \
       : ::strata::cpu::kernel(__VA_ARGS__))
// A kernel whose last argument is its workspace: a span on the CPU, a tensor on the device.
#define STRATA_WORKSPACE_KERNEL(args, kernel, ...)                                         \
  ((args).cuda != nullptr                                                                  \
       ? ::strata::cuda::kernel((args).cuda->stream, __VA_ARGS__, (args).workspace_tensor) \
       : ::strata::cpu::kernel(__VA_ARGS__, (args).workspace))
#else
#define STRATA_KERNEL(args, kernel, ...) ::strata::cpu::kernel(__VA_ARGS__)
#define STRATA_BLAS_KERNEL(args, kernel, ...) ::strata::cpu::kernel(__VA_ARGS__)
#define STRATA_WORKSPACE_KERNEL(args, kernel, ...) \
  ::strata::cpu::kernel(__VA_ARGS__, (args).workspace)
#endif

namespace strata::graph::ops::internal {

// Every byte of contiguous `t` set to zero, where the step runs.
inline absl::Status ZeroBytes(const RunArgs& a, const Tensor& t) {
#if STRATA_HAVE_CUDA
  if (a.cuda != nullptr) return cuda::ZeroTensor(a.cuda->stream, t);
#endif
  if (t.nbytes() > 0) std::memset(t.raw_data(), 0, t.nbytes());
  return absl::OkStatus();
}

}  // namespace strata::graph::ops::internal
