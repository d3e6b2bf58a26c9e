#include "runtime/cuda/activation.h"

#include <initializer_list>
#include <utility>

#include "runtime/cpu/internal/elementwise_checks.h"
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

// Each activation's Forward and Backward (activation.h): one elementwise kernel op each, named
// k<Name>Forward and k<Name>Backward.
#define STRATA_CUDA_ACTIVATION(Name)                                                         \
  absl::Status Name##Forward(CUstream_st* stream, const Tensor& x, const Tensor& out) {      \
    return Forward(stream, #Name "Forward", ActivationOp::k##Name##Forward, x, out);         \
  }                                                                                          \
  absl::Status Name##Backward(CUstream_st* stream, const Tensor& x, const Tensor& dout,      \
                              const Tensor& dx) {                                            \
    return Backward(stream, #Name "Backward", ActivationOp::k##Name##Backward, x, dout, dx); \
  }

STRATA_CUDA_ACTIVATION(Gelu)
STRATA_CUDA_ACTIVATION(Relu)
STRATA_CUDA_ACTIVATION(Relu6)
STRATA_CUDA_ACTIVATION(Sigmoid)
STRATA_CUDA_ACTIVATION(Tanh)
STRATA_CUDA_ACTIVATION(Silu)
STRATA_CUDA_ACTIVATION(Softplus)
STRATA_CUDA_ACTIVATION(GeluExact)

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
      cpu::internal::CheckSwiGluBackward(CheckOnCuda, gate, up, dout, dgate, dup));
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

#undef STRATA_CUDA_ACTIVATION

}  // namespace strata::cuda
