#include "runtime/cuda/dropout.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/dropout_checks.h"
#include "runtime/cuda/copy.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/dropout_kernel.h"
#include "runtime/cuda/elementwise.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

absl::Status Run(CUstream_st* stream, absl::string_view op, const char* in_name,
                 const char* out_name, const Tensor& x, const DropoutParams& d,
                 const Tensor& out) {
  STRATA_RETURN_IF_ERROR(internal::CheckSameShapeAndDType(op, {{in_name, &x}, {out_name, &out}}));
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckDropoutParams(op, d));
  if (d.p == 0.0f) {  // nothing is dropped and nothing scaled: no draws
    if (x.raw_data() == out.raw_data() && x.strides() == out.strides()) return absl::OkStatus();
    return CopyStrided(stream, x, out);
  }
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView xv, internal::ViewOf(op, in_name, x));
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView ov, internal::ViewOf(op, out_name, out));
  internal::DropoutMask mask;
  mask.seed = d.seed;
  mask.step = d.step;
  mask.stream = d.stream;
  mask.first_index = d.first_index;
  // As the CPU kernel: u >= p with u = k / 2^24 is k >= ceil(p 2^24); p 2^24 is exact in double.
  mask.threshold = static_cast<uint32_t>(std::ceil(static_cast<double>(d.p) * 16777216.0));
  mask.scale = 1.0f / (1.0f - d.p);
  return CudaLaunchStatus(internal::LaunchDropout(internal::ElemTypeOf(out), xv, ov, out.numel(),
                                                  mask, stream),
                          op);
}

}  // namespace

absl::Status DropoutForward(CUstream_st* stream, const Tensor& x, const DropoutParams& params,
                            const Tensor& out) {
  return Run(stream, "DropoutForward", "x", "out", x, params, out);
}

absl::Status DropoutBackward(CUstream_st* stream, const Tensor& dout, const DropoutParams& params,
                             const Tensor& dx) {
  return Run(stream, "DropoutBackward", "dout", "dx", dout, params, dx);
}

}  // namespace strata::cuda
