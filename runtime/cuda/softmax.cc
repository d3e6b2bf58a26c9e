#include "runtime/cuda/softmax.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/softmax_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// Every tensor f32, contiguous, on the device, not a scalar, and of the first one's shape.
absl::Status CheckRows(absl::string_view op,
                       std::initializer_list<std::pair<absl::string_view, const Tensor*>> args) {
  const auto& [first_name, first] = *args.begin();
  for (const auto& [name, t] : args) {
    STRATA_RETURN_IF_ERROR(CheckCudaF32(op, name, *t));
    if (t->rank() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is a scalar"));
    }
    if (t->shape() != first->shape()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t->ToString(),
                                                     " but ", first_name, " is ",
                                                     first->ToString()));
    }
  }
  return absl::OkStatus();
}

int64_t Rows(const Tensor& t) { return t.dim(-1) == 0 ? 0 : t.numel() / t.dim(-1); }

}  // namespace

absl::Status SoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  constexpr char kOp[] = "SoftmaxForward";
  STRATA_RETURN_IF_ERROR(CheckRows(kOp, {{"x", &x}, {"out", &out}}));
  return CudaLaunchStatus(internal::LaunchSoftmaxForward(x.data<float>(), out.data<float>(),
                                                         Rows(x), x.dim(-1), stream),
                          kOp);
}

absl::Status SoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                             const Tensor& dx) {
  constexpr char kOp[] = "SoftmaxBackward";
  STRATA_RETURN_IF_ERROR(CheckRows(kOp, {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  return CudaLaunchStatus(
      internal::LaunchSoftmaxBackward(y.data<float>(), dy.data<float>(), dx.data<float>(), Rows(y),
                                      y.dim(-1), stream),
      kOp);
}

absl::Status LogSoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  constexpr char kOp[] = "LogSoftmaxForward";
  STRATA_RETURN_IF_ERROR(CheckRows(kOp, {{"x", &x}, {"out", &out}}));
  return CudaLaunchStatus(internal::LaunchLogSoftmaxForward(x.data<float>(), out.data<float>(),
                                                            Rows(x), x.dim(-1), stream),
                          kOp);
}

absl::Status LogSoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                                const Tensor& dx) {
  constexpr char kOp[] = "LogSoftmaxBackward";
  STRATA_RETURN_IF_ERROR(CheckRows(kOp, {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  return CudaLaunchStatus(
      internal::LaunchLogSoftmaxBackward(y.data<float>(), dy.data<float>(), dx.data<float>(),
                                         Rows(y), y.dim(-1), stream),
      kOp);
}

}  // namespace strata::cuda
