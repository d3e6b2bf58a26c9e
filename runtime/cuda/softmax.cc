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

// The forwards: x -> out, row by row.
absl::Status Forward(CUstream_st* stream, const char* op,
                     int (*launch)(const float*, float*, int64_t, int64_t, CUstream_st*),
                     const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckRows(op, {{"x", &x}, {"out", &out}}));
  return CudaLaunchStatus(launch(x.data<float>(), out.data<float>(), Rows(x), x.dim(-1), stream),
                          op);
}

// The backwards: (y, dy) -> dx, row by row.
absl::Status Backward(CUstream_st* stream, const char* op,
                      int (*launch)(const float*, const float*, float*, int64_t, int64_t,
                                    CUstream_st*),
                      const Tensor& y, const Tensor& dy, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckRows(op, {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  return CudaLaunchStatus(
      launch(y.data<float>(), dy.data<float>(), dx.data<float>(), Rows(y), y.dim(-1), stream), op);
}

}  // namespace

absl::Status SoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "SoftmaxForward", internal::LaunchSoftmaxForward, x, out);
}

absl::Status SoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                             const Tensor& dx) {
  return Backward(stream, "SoftmaxBackward", internal::LaunchSoftmaxBackward, y, dy, dx);
}

absl::Status LogSoftmaxForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "LogSoftmaxForward", internal::LaunchLogSoftmaxForward, x, out);
}

absl::Status LogSoftmaxBackward(CUstream_st* stream, const Tensor& y, const Tensor& dy,
                                const Tensor& dx) {
  return Backward(stream, "LogSoftmaxBackward", internal::LaunchLogSoftmaxBackward, y, dy, dx);
}

}  // namespace strata::cuda
