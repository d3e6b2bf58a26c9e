// cross_entropy, its gradient, and the fused form the fusion pass makes of the two.
#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"
#if STRATA_HAVE_CUDA
#include "runtime/cuda/transfer.h"
#endif

namespace strata::graph::ops {
namespace {

using internal::TypeError;

absl::Status CheckLogitsTargets(absl::string_view op, absl::Span<const TensorType> in) {
  STRATA_RETURN_IF_ERROR(internal::ExpectF32(op, "logits", in[0]));
  if (in[1].dtype != DType::kI32 && in[1].dtype != DType::kI64) {
    return TypeError(op, "targets are ", in[1].ToString(), ", expected i32 or i64");
  }
  const Shape& l = in[0].shape;
  if (l.rank() < 1 || l.numel() / std::max<int64_t>(1, l.dim(-1)) != in[1].shape.numel() ||
      l.rank() != in[1].shape.rank() + 1) {
    return TypeError(op, "targets ", in[1].ToString(), " do not match logits ", in[0].ToString(),
                     " (expected logits (..., V) and targets (...))");
  }
  return absl::OkStatus();
}

// The CUDA kernel sums the loss through a workspace; the CPU's needs none.
size_t CudaWorkspace(const Shape& logits, const StepTarget& target) {
#if STRATA_HAVE_CUDA
  if (target.device.is_cuda()) return cuda::SoftmaxCrossEntropyWorkspaceBytes(logits);
#endif
  return 0;
}

std::string OptionsAttributes(const CrossEntropyOptions& o) {
  return absl::StrCat("ignore_index=", o.ignore_index, " label_smoothing=", o.label_smoothing);
}

// (logits, targets, dloss) -> (loss, dlogits): one pass computes both.
class CrossEntropyWithGrad final : public Op {
 public:
  explicit CrossEntropyWithGrad(const CrossEntropyOptions& options) : options_(options) {}
  OpKind kind() const override { return OpKind::kCrossEntropyWithGrad; }
  std::string Attributes() const override { return OptionsAttributes(options_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    STRATA_RETURN_IF_ERROR(CheckLogitsTargets(name(), in));
    return std::vector<TensorType>{{Shape{}, DType::kF32}, in[0]};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return CudaWorkspace(in[0].shape, target);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      // The kernel takes dloss as a host float: one read of the device, once per micro-batch.
      STRATA_ASSIGN_OR_RETURN(const float dloss, cuda::ReadScalar(a.cuda->stream, a.in[2]));
      return cuda::SoftmaxCrossEntropy(a.cuda->stream, a.in[0], a.in[1], a.out[0], a.out[1],
                                       a.workspace_tensor, dloss, options_.ignore_index,
                                       options_.label_smoothing);
    }
#endif
    return cpu::SoftmaxCrossEntropy(a.in[0], a.in[1], a.out[0], a.out[1],
                                    a.in[2].data<float>()[0], options_.ignore_index,
                                    options_.label_smoothing);
  }

 private:
  CrossEntropyOptions options_;
};

// (logits, targets) -> scalar mean loss.
class CrossEntropyOp final : public Op {
 public:
  explicit CrossEntropyOp(const CrossEntropyOptions& options) : options_(options) {}
  OpKind kind() const override { return OpKind::kCrossEntropy; }
  std::string Attributes() const override { return OptionsAttributes(options_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(CheckLogitsTargets(name(), in));
    return std::vector<TensorType>{{Shape{}, DType::kF32}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return CudaWorkspace(in[0].shape, target);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return cuda::SoftmaxCrossEntropy(a.cuda->stream, a.in[0], a.in[1], a.out[0], Tensor(),
                                       a.workspace_tensor, 1.0f, options_.ignore_index,
                                       options_.label_smoothing);
    }
#endif
    return cpu::SoftmaxCrossEntropy(a.in[0], a.in[1], a.out[0], Tensor(), 1.0f,
                                    options_.ignore_index, options_.label_smoothing);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    // The gradient op computes the loss again on the way (the kernel is fused); the fusion pass
    // then drops this forward node and takes the loss from there.
    std::vector<Var> outs = internal::Apply(
        std::make_shared<CrossEntropyWithGrad>(options_),
        {internal::In(g, 0), internal::In(g, 1), internal::Dout(g, 0)});
    if (g.needs_grad[0]) g.input_grads[0] = outs[1].id();
    return g.tracer.status();
  }

 private:
  CrossEntropyOptions options_;
};

}  // namespace

Var CrossEntropy(Var logits, Var targets, const CrossEntropyOptions& options) {
  if (!(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f) && logits.valid()) {
    logits.tracer()->Fail(absl::InvalidArgumentError(absl::StrCat(
        "cross_entropy: label_smoothing = ", options.label_smoothing, " must be in [0, 1]")));
    return Var();
  }
  return internal::Apply1(std::make_shared<CrossEntropyOp>(options), {logits, targets});
}

std::shared_ptr<const Op> CrossEntropyWithGradOp(const CrossEntropyOptions& options) {
  return std::make_shared<CrossEntropyWithGrad>(options);
}

}  // namespace strata::graph::ops
