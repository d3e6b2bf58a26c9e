#include "runtime/cuda/pooling.h"

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/pooling_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/pooling_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// The checked x_like (N, C, H, W) and y_like (N, C, OH, OW) as the kernels take them.
absl::StatusOr<internal::PoolShape> Check(absl::string_view op, const Tensor& x_like,
                                          const Tensor& y_like, const cpu::Pool2dParams& p,
                                          absl::string_view x_name, absl::string_view y_name) {
  STRATA_ASSIGN_OR_RETURN(
      const Shape y_shape,
      cpu::internal::CheckPool2d(CheckCudaF32, op, x_like, y_like, p, x_name, y_name));
  return internal::PoolShape{.planes = x_like.dim(0) * x_like.dim(1),
                             .h = x_like.dim(2),
                             .w = x_like.dim(3),
                             .oh = y_shape[2],
                             .ow = y_shape[3],
                             .kernel_h = p.kernel_h,
                             .kernel_w = p.kernel_w,
                             .stride_h = p.stride_h,
                             .stride_w = p.stride_w,
                             .pad_h = p.pad_h,
                             .pad_w = p.pad_w};
}

// The windowed forwards: x -> y.
absl::Status Forward(CUstream_st* stream, const char* op,
                     int (*launch)(const float*, float*, const internal::PoolShape&, CUstream_st*),
                     const Tensor& x, const Tensor& y, const cpu::Pool2dParams& p) {
  STRATA_ASSIGN_OR_RETURN(const internal::PoolShape s, Check(op, x, y, p, "x", "y"));
  return CudaLaunchStatus(launch(x.data<float>(), y.data<float>(), s, stream), op);
}

}  // namespace

absl::Status MaxPool2dForward(CUstream_st* stream, const Tensor& x, const Tensor& y,
                              const cpu::Pool2dParams& p) {
  return Forward(stream, "MaxPool2dForward", internal::LaunchMaxPool2dForward, x, y, p);
}

absl::Status MaxPool2dBackward(CUstream_st* stream, const Tensor& x, const Tensor& dy,
                               const Tensor& dx, const cpu::Pool2dParams& p) {
  constexpr char kOp[] = "MaxPool2dBackward";
  STRATA_ASSIGN_OR_RETURN(const internal::PoolShape s, Check(kOp, x, dy, p, "x", "dy"));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dx", dx, x.shape()));
  return CudaLaunchStatus(internal::LaunchMaxPool2dBackward(x.data<float>(), dy.data<float>(),
                                                            dx.data<float>(), s, stream),
                          kOp);
}

absl::Status AvgPool2dForward(CUstream_st* stream, const Tensor& x, const Tensor& y,
                              const cpu::Pool2dParams& p) {
  return Forward(stream, "AvgPool2dForward", internal::LaunchAvgPool2dForward, x, y, p);
}

absl::Status AvgPool2dBackward(CUstream_st* stream, const Tensor& dy, const Tensor& dx,
                               const cpu::Pool2dParams& p) {
  constexpr char kOp[] = "AvgPool2dBackward";
  STRATA_ASSIGN_OR_RETURN(const internal::PoolShape s, Check(kOp, dx, dy, p, "dx", "dy"));
  return CudaLaunchStatus(
      internal::LaunchAvgPool2dBackward(dy.data<float>(), dx.data<float>(), s, stream), kOp);
}

absl::Status GlobalAvgPoolForward(CUstream_st* stream, const Tensor& x, const Tensor& y) {
  constexpr char kOp[] = "GlobalAvgPoolForward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckGlobalAvgPoolForward(CheckCudaF32, x, y));
  const int64_t planes = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(internal::LaunchGlobalAvgPoolForward(x.data<float>(), y.data<float>(),
                                                               planes, hw, stream),
                          kOp);
}

absl::Status GlobalAvgPoolBackward(CUstream_st* stream, const Tensor& dy, const Tensor& dx) {
  constexpr char kOp[] = "GlobalAvgPoolBackward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckGlobalAvgPoolBackward(CheckCudaF32, dy, dx));
  const int64_t planes = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
  return CudaLaunchStatus(internal::LaunchGlobalAvgPoolBackward(dy.data<float>(),
                                                                dx.data<float>(), planes, hw,
                                                                stream),
                          kOp);
}

}  // namespace strata::cuda
