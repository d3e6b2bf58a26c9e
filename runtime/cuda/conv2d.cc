#include "runtime/cuda/conv2d.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/conv2d_checks.h"
#include "runtime/cuda/conv2d_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

constexpr char kForward[] = "Conv2dForward";
constexpr char kBackward[] = "Conv2dBackward";

internal::ConvShape MakeShape(const Shape& x, const Shape& w, const Shape& y,
                              const cpu::Conv2dParams& p) {
  return internal::ConvShape{.n = x[0],
                             .c = x[1],
                             .h = x[2],
                             .w = x[3],
                             .oc = w[0],
                             .kh = w[2],
                             .kw = w[3],
                             .oh = y[2],
                             .ow = y[3],
                             .groups = p.groups,
                             .stride_h = p.stride_h,
                             .stride_w = p.stride_w,
                             .pad_h = p.pad_h,
                             .pad_w = p.pad_w,
                             .dilation_h = p.dilation_h,
                             .dilation_w = p.dilation_w};
}

// The workspace is not used; when given it must at least be a device tensor.
absl::Status CheckWorkspace(absl::string_view op, const Tensor& workspace) {
  return workspace.defined() ? CheckOnCuda(op, "workspace", workspace) : absl::OkStatus();
}

}  // namespace

size_t Conv2dWorkspaceBytes(const Shape&, const Shape&, const cpu::Conv2dParams&) { return 0; }

absl::Status Conv2dForward(CUstream_st* stream, const Tensor& x, const Tensor& w, const Tensor& b,
                           const Tensor& y, const cpu::Conv2dParams& p, const Tensor& workspace) {
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape,
                          cpu::internal::CheckConv2dForward(CheckCudaF32, kForward, x, w, b, y, p));
  STRATA_RETURN_IF_ERROR(CheckWorkspace(kForward, workspace));
  return CudaLaunchStatus(
      internal::LaunchConv2dForward(x.data<float>(), w.data<float>(),
                                    b.defined() ? b.data<float>() : nullptr, y.data<float>(),
                                    MakeShape(x.shape(), w.shape(), y_shape, p), stream),
      kForward);
}

absl::Status Conv2dBackward(CUstream_st* stream, const Tensor& x, const Tensor& w,
                            const Tensor& dy, const Tensor& dx, const Tensor& dw, const Tensor& db,
                            const cpu::Conv2dParams& p, const Tensor& workspace,
                            cpu::GradMode mode) {
  const bool accumulate = mode == cpu::GradMode::kAccumulate;
  if (!x.defined()) {
    STRATA_RETURN_IF_ERROR(cpu::internal::CheckConv2dBackwardWithoutX(CheckCudaF32, w, dy, dw, db));
    if (dx.defined()) {
      STRATA_RETURN_IF_ERROR(
          Conv2dBackward(stream, dx, w, dy, dx, Tensor(), Tensor(), p, workspace, mode));
    }
    if (db.defined()) {
      STRATA_RETURN_IF_ERROR(CheckWorkspace(kBackward, workspace));
      return CudaLaunchStatus(
          internal::LaunchConv2dBiasGrad(dy.data<float>(), db.data<float>(), dy.dim(0),
                                         dy.dim(1), dy.dim(2) * dy.dim(3), accumulate, stream),
          kBackward);
    }
    return absl::OkStatus();
  }
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, cpu::internal::CheckConv2dBackward(
                                                   CheckCudaF32, x, w, dy, dx, dw, db, p));
  STRATA_RETURN_IF_ERROR(CheckWorkspace(kBackward, workspace));
  const internal::ConvShape s = MakeShape(x.shape(), w.shape(), y_shape, p);
  if (dx.defined()) {
    STRATA_RETURN_IF_ERROR(CudaLaunchStatus(
        internal::LaunchConv2dInputGrad(w.data<float>(), dy.data<float>(), dx.data<float>(), s,
                                        stream),
        kBackward));
  }
  if (dw.defined()) {
    STRATA_RETURN_IF_ERROR(CudaLaunchStatus(
        internal::LaunchConv2dWeightGrad(x.data<float>(), dy.data<float>(), dw.data<float>(),
                                         accumulate, s, stream),
        kBackward));
  }
  if (db.defined()) {
    STRATA_RETURN_IF_ERROR(CudaLaunchStatus(
        internal::LaunchConv2dBiasGrad(dy.data<float>(), db.data<float>(), s.n, s.oc,
                                       s.oh * s.ow, accumulate, stream),
        kBackward));
  }
  return absl::OkStatus();
}

}  // namespace strata::cuda
