#include "runtime/cuda/copy.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/copy_checks.h"
#include "runtime/cuda/copy_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/elementwise.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::Status CopyStrided(CUstream_st* stream, const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "CopyStrided";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckCopyStrided(CheckOnCuda, src, dst));
  if (src.numel() == 0) return absl::OkStatus();
  const size_t bytes = SizeOf(src.dtype());
  if (bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) {
    return cpu::internal::UnsupportedElementSize(src);
  }
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView s, internal::ViewOf(kOp, "src", src));
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView d, internal::ViewOf(kOp, "dst", dst));
  return CudaLaunchStatus(
      internal::LaunchCopyStrided(s, d, src.numel(), static_cast<int>(bytes), stream), kOp);
}

absl::Status TransposeCopy(CUstream_st* stream, const Tensor& src, int dim0, int dim1,
                           const Tensor& dst) {
  return cpu::internal::TransposeCopyWith(
      src, dim0, dim1, dst,
      [stream](const Tensor& s, const Tensor& d) { return CopyStrided(stream, s, d); });
}

absl::Status ReshapeCopy(CUstream_st* stream, const Tensor& src, const Tensor& dst) {
  return cpu::internal::ReshapeCopyWith(
      src, dst, [stream](const Tensor& s, const Tensor& d) { return CopyStrided(stream, s, d); });
}

absl::Status Concat(CUstream_st* stream, absl::Span<const Tensor> inputs, int dim,
                    const Tensor& out) {
  return cpu::internal::ForEachPart(CheckOnCuda, "Concat", "out", inputs, dim, out,
                                    [stream](const Tensor& part, const Tensor& slice) {
                                      return CopyStrided(stream, part, slice);
                                    });
}

absl::Status Split(CUstream_st* stream, const Tensor& in, int dim, absl::Span<const Tensor> outs) {
  return cpu::internal::ForEachPart(CheckOnCuda, "Split", "in", outs, dim, in,
                                    [stream](const Tensor& part, const Tensor& slice) {
                                      return CopyStrided(stream, slice, part);
                                    });
}

}  // namespace strata::cuda
