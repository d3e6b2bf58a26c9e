#include "runtime/cuda/activation.h"

#include <initializer_list>
#include <utility>

#include "runtime/cuda/activation_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/elementwise.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

using internal::ActivationOp;
using internal::CheckSameShapeAndDType;
using internal::StridedView;

// Launches op on the checked tensors `in` (1 to 3) -> out.
absl::Status Launch(CUstream_st* stream, absl::string_view op_name, ActivationOp op,
                    std::initializer_list<std::pair<absl::string_view, const Tensor*>> in,
                    absl::string_view out_name, const Tensor& out) {
  StridedView views[3];
  int k = 0;
  for (const auto& [name, t] : in) {
    STRATA_ASSIGN_OR_RETURN(views[k], internal::ViewOf(op_name, name, *t));
    ++k;
  }
  STRATA_ASSIGN_OR_RETURN(const StridedView o, internal::ViewOf(op_name, out_name, out));
  return CudaLaunchStatus(internal::LaunchActivation(op, internal::ElemTypeOf(out), views, o,
                                                     out.numel(), stream),
                          op_name);
}

absl::Status Forward(CUstream_st* stream, absl::string_view op_name, ActivationOp op,
                     const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(op_name, {{"x", &x}, {"out", &out}}));
  return Launch(stream, op_name, op, {{"x", &x}}, "out", out);
}

absl::Status Backward(CUstream_st* stream, absl::string_view op_name, ActivationOp op,
                      const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType(op_name, {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  return Launch(stream, op_name, op, {{"x", &x}, {"dout", &dout}}, "dx", dx);
}

}  // namespace

absl::Status GeluForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "GeluForward", ActivationOp::kGeluForward, x, out);
}
absl::Status GeluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx) {
  return Backward(stream, "GeluBackward", ActivationOp::kGeluBackward, x, dout, dx);
}

absl::Status ReluForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "ReluForward", ActivationOp::kReluForward, x, out);
}
absl::Status ReluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx) {
  return Backward(stream, "ReluBackward", ActivationOp::kReluBackward, x, dout, dx);
}

absl::Status Relu6Forward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "Relu6Forward", ActivationOp::kRelu6Forward, x, out);
}
absl::Status Relu6Backward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                           const Tensor& dx) {
  return Backward(stream, "Relu6Backward", ActivationOp::kRelu6Backward, x, dout, dx);
}

absl::Status SigmoidForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "SigmoidForward", ActivationOp::kSigmoidForward, x, out);
}
absl::Status SigmoidBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                             const Tensor& dx) {
  return Backward(stream, "SigmoidBackward", ActivationOp::kSigmoidBackward, x, dout, dx);
}

absl::Status TanhForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "TanhForward", ActivationOp::kTanhForward, x, out);
}
absl::Status TanhBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx) {
  return Backward(stream, "TanhBackward", ActivationOp::kTanhBackward, x, dout, dx);
}

absl::Status SiluForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "SiluForward", ActivationOp::kSiluForward, x, out);
}
absl::Status SiluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx) {
  return Backward(stream, "SiluBackward", ActivationOp::kSiluBackward, x, dout, dx);
}

absl::Status SwiGluForward(CUstream_st* stream, const Tensor& gate, const Tensor& up,
                           const Tensor& out) {
  constexpr char kOp[] = "SwiGluForward";
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType(kOp, {{"gate", &gate}, {"up", &up}, {"out", &out}}));
  return Launch(stream, kOp, ActivationOp::kSwiGluForward, {{"gate", &gate}, {"up", &up}}, "out",
                out);
}

absl::Status SwiGluBackward(CUstream_st* stream, const Tensor& gate, const Tensor& up,
                            const Tensor& dout, const Tensor& dgate, const Tensor& dup) {
  constexpr char kOp[] = "SwiGluBackward";
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType(kOp, {{"gate", &gate}, {"up", &up}, {"dout", &dout}}));
  if (dgate.defined()) {
    STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"gate", &gate}, {"dgate", &dgate}}));
  }
  if (dup.defined()) {
    STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"gate", &gate}, {"dup", &dup}}));
  }
  // dgate first: dup may be dout, which dgate reads (the stream runs the launches in order).
  if (dgate.defined()) {
    STRATA_RETURN_IF_ERROR(Launch(stream, kOp, ActivationOp::kSwiGluGateGrad,
                                  {{"gate", &gate}, {"up", &up}, {"dout", &dout}}, "dgate", dgate));
  }
  if (dup.defined()) {
    STRATA_RETURN_IF_ERROR(Launch(stream, kOp, ActivationOp::kSwiGluUpGrad,
                                  {{"gate", &gate}, {"dout", &dout}}, "dup", dup));
  }
  return absl::OkStatus();
}

absl::Status SoftplusForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "SoftplusForward", ActivationOp::kSoftplusForward, x, out);
}
absl::Status SoftplusBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                              const Tensor& dx) {
  return Backward(stream, "SoftplusBackward", ActivationOp::kSoftplusBackward, x, dout, dx);
}

absl::Status GeluExactForward(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Forward(stream, "GeluExactForward", ActivationOp::kGeluExactForward, x, out);
}
absl::Status GeluExactBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                               const Tensor& dx) {
  return Backward(stream, "GeluExactBackward", ActivationOp::kGeluExactBackward, x, dout, dx);
}

}  // namespace strata::cuda
