// The argument checks of the elementwise kernels (elementwise.cc and the activation and dropout
// kernels built on its loops), shared by the CPU kernels and their CUDA launchers (Note [one
// argument check per kernel] in kernel_checks.h). `placed` checks that a tensor is defined and on
// the caller's device (CheckOnHost or CheckOnCuda).
#pragma once

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// All tensors defined, on the device, of one shape and one dtype (f32 or bf16).
inline absl::Status CheckSameShapeAndDType(
    TensorCheck placed, absl::string_view op,
    std::initializer_list<std::pair<absl::string_view, const Tensor*>> args) {
  const Tensor* first = args.begin()->second;
  for (const auto& [name, t] : args) {
    STRATA_RETURN_IF_ERROR(placed(op, name, *t));
    if (t->dtype() != DType::kF32 && t->dtype() != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": ", name, " is ", t->ToString(), ", expected f32 or bf16"));
    }
    if (t->shape() != first->shape() || t->dtype() != first->dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t->ToString(), " but ",
                                                     args.begin()->first, " is ",
                                                     first->ToString()));
    }
  }
  return absl::OkStatus();
}

// SwiGluBackward: gate, up and dout alike, and dgate and dup (each optional) like gate.
inline absl::Status CheckSwiGluBackward(TensorCheck placed, const Tensor& gate, const Tensor& up,
                                        const Tensor& dout, const Tensor& dgate,
                                        const Tensor& dup) {
  constexpr char kOp[] = "SwiGluBackward";
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType(placed, kOp, {{"gate", &gate}, {"up", &up}, {"dout", &dout}}));
  if (dgate.defined()) {
    STRATA_RETURN_IF_ERROR(
        CheckSameShapeAndDType(placed, kOp, {{"gate", &gate}, {"dgate", &dgate}}));
  }
  if (dup.defined()) {
    STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(placed, kOp, {{"gate", &gate}, {"dup", &dup}}));
  }
  return absl::OkStatus();
}

// Contiguous x and b, b (C) of x's dtype where x is (..., C).
inline absl::Status CheckBias(absl::string_view op, absl::string_view x_name, const Tensor& x,
                              absl::string_view b_name, const Tensor& b) {
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, x_name, x));
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, b_name, b));
  if (x.rank() < 1 || b.rank() != 1 || b.dim(0) != x.dim(-1) || b.dtype() != x.dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", b_name, " is ", b.ToString(), ", but ", x_name, " ", x.ToString(),
                     " needs ", DTypeName(x.dtype()), "[", x.rank() ? x.dim(-1) : 0, "]"));
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
