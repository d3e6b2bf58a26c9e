#include "runtime/cuda/relu_mask.h"

#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/relu_mask_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// mask: u8, contiguous, on a CUDA device, of `f32`'s shape; `f32` checked as CheckCudaF32.
absl::Status CheckMaskArgs(absl::string_view op, const Tensor& mask, const Tensor& f32,
                           absl::string_view f32_name) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, f32_name, f32));
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, "mask", mask));
  STRATA_RETURN_IF_ERROR(CheckDType(op, "mask", mask, DType::kU8));
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, "mask", mask));
  return CheckShape(op, "mask", mask, f32.shape());
}

}  // namespace

absl::Status ReluMask(CUstream_st* stream, const Tensor& x, float upper, const Tensor& mask) {
  STRATA_RETURN_IF_ERROR(CheckMaskArgs("ReluMask", mask, x, "x"));
  return CudaLaunchStatus(
      internal::LaunchReluMask(x.data<float>(), upper, mask.data<uint8_t>(), x.numel(), stream),
      "ReluMask");
}

absl::Status MaskedBackward(CUstream_st* stream, const Tensor& mask, const Tensor& dout,
                            const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckMaskArgs("MaskedBackward", mask, dout, "dout"));
  STRATA_RETURN_IF_ERROR(CheckCudaF32("MaskedBackward", "dx", dx, dout.shape()));
  return CudaLaunchStatus(internal::LaunchMaskedBackward(mask.data<uint8_t>(), dout.data<float>(),
                                                         dx.data<float>(), dout.numel(), stream),
                          "MaskedBackward");
}

}  // namespace strata::cuda
