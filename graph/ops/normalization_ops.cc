// layer_norm, batch_norm (training mode) and frozen batch_norm, with their gradients, and the
// split batch_norm of data-parallel runs (Note [synchronized batch norm] in
// graph/passes/sync_batch_norm.cc).
#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Apply;
using internal::Dout;
using internal::In;
using internal::Out;
using internal::TypeError;

// (x, gamma, mean, rstd, dy[, r]) -> (dx [+ r], dgamma, dbeta). With r, a residual-stream
// gradient the fusion pass folded in (passes/fuse_residual_add.cc).
class LayerNormGradOp final : public Op {
 public:
  explicit LayerNormGradOp(bool has_residual) : has_residual_(has_residual) {}
  OpKind kind() const override {
    return has_residual_ ? OpKind::kLayerNormGradResidual : OpKind::kLayerNormGrad;
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, has_residual_ ? 6 : 5));
    if (has_residual_ && in[5] != in[0]) {
      return TypeError(name(), "r is ", in[5].ToString(), ", expected x's ", in[0].ToString());
    }
    return std::vector<TensorType>{in[0], in[1], in[1]};
  }
  // (x, gamma, mean, rstd, dy[, r]): dx may overwrite r or dy (cpu::LayerNormBackward).
  std::vector<std::pair<int, int>> InPlaceOutputs() const override {
    if (has_residual_) return {{0, 5}, {0, 4}};
    return {{0, 4}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
#if STRATA_HAVE_CUDA
    if (target.device.is_cuda()) return cuda::LayerNormBackwardWorkspaceBytes(in[0].shape);
#endif
    return 0;
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    const Tensor r = has_residual_ ? a.in[5] : Tensor();
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return cuda::LayerNormBackward(a.cuda->stream, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                                     a.out[0], a.out[1], a.out[2], a.workspace_tensor,
                                     cpu::GradMode::kOverwrite, r);
    }
#endif
    return cpu::LayerNormBackward(a.in[0], a.in[1], a.in[2], a.in[3], a.in[4], a.out[0], a.out[1],
                                  a.out[2], cpu::GradMode::kOverwrite, r);
  }

 private:
  bool has_residual_;
};

// (x, gamma, beta) -> (y, mean, rstd); mean and rstd are saved for the gradient.
class LayerNormOp final : public Op {
 public:
  explicit LayerNormOp(float eps) : eps_(eps) {}
  OpKind kind() const override { return OpKind::kLayerNorm; }
  std::vector<int> StatisticsOutputs() const override { return {1, 2}; }
  std::string Attributes() const override { return absl::StrCat("eps=", eps_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    const Shape& x = in[0].shape;
    if (x.rank() < 1) return TypeError(name(), "x is a scalar");
    const Shape c{x.dim(-1)};
    if (in[1].shape != c || in[2].shape != c) {
      return TypeError(name(), "gamma ", in[1].ToString(), " and beta ", in[2].ToString(),
                       " must be ", c.ToString(), " for x ", in[0].ToString());
    }
    const Shape rows{x.dim(-1) ? x.numel() / x.dim(-1) : 0};
    return std::vector<TensorType>{in[0], {rows, DType::kF32}, {rows, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, LayerNormForward, a.in[0], a.in[1], a.in[2], eps_, a.out[0], a.out[1],
                         a.out[2]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    if (!g.needs_grad[0] && !g.needs_grad[1]) {
      // Only beta trains (the lowest trained LayerNorm of a sparse update): its gradient is the
      // sum of dy, so x, mean and rstd need not be kept for the backward.
      g.input_grads[2] = SumTo(Dout(g, 0), g.tracer.graph().value(g.node.inputs[2]).type.shape).id();
      return g.tracer.status();
    }
    return internal::ApplyGradient(g, std::make_shared<LayerNormGradOp>(/*has_residual=*/false),
                                   {In(g, 0), In(g, 1), Out(g, 1), Out(g, 2), Dout(g, 0)},
                                   {0, 1, 2});
  }

 private:
  float eps_;
};

// (x, gamma, rstd, dy) -> (dx, dgamma).
class RmsNormGradOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kRmsNormGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 4));
    return std::vector<TensorType>{in[0], in[1]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 3}}; }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
#if STRATA_HAVE_CUDA
    if (target.device.is_cuda()) return cuda::RmsNormBackwardWorkspaceBytes(in[0].shape);
#endif
    return 0;
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return cuda::RmsNormBackward(a.cuda->stream, a.in[0], a.in[1], a.in[2], a.in[3], a.out[0],
                                   a.out[1], a.workspace_tensor);
    }
#endif
    return cpu::RmsNormBackward(a.in[0], a.in[1], a.in[2], a.in[3], a.out[0], a.out[1]);
  }
};

// (x, gamma) -> (y, rstd); rstd is saved for the gradient.
class RmsNormOp final : public Op {
 public:
  explicit RmsNormOp(float eps) : eps_(eps) {}
  OpKind kind() const override { return OpKind::kRmsNorm; }
  std::vector<int> StatisticsOutputs() const override { return {1}; }
  std::string Attributes() const override { return absl::StrCat("eps=", eps_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    const Shape& x = in[0].shape;
    if (x.rank() < 1 || x.dim(-1) == 0) return TypeError(name(), "x ", in[0].ToString(), " has no features");
    if (in[1].shape != Shape{x.dim(-1)}) {
      return TypeError(name(), "gamma ", in[1].ToString(), " must be ", Shape{x.dim(-1)}.ToString(),
                       " for x ", in[0].ToString());
    }
    if (!(eps_ > 0)) return TypeError(name(), "eps = ", eps_, " must be > 0");
    return std::vector<TensorType>{in[0], {Shape{x.numel() / x.dim(-1)}, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, RmsNormForward, a.in[0], a.in[1], eps_, a.out[0], a.out[1]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<RmsNormGradOp>(),
                                   {In(g, 0), In(g, 1), Out(g, 1), Dout(g, 0)}, {0, 1});
  }

 private:
  float eps_;
};

// (x, gamma, running_mean, running_var, dy) -> (dx, dgamma, dbeta); or, when gamma does not
// train, (gamma, running_mean, running_var, dy) -> (dx, dbeta): only dgamma reads x, so the
// forward need not keep it (sparse updates).
class BatchNormFrozenGradOp final : public Op {
 public:
  BatchNormFrozenGradOp(float eps, bool gamma_grad) : eps_(eps), gamma_grad_(gamma_grad) {}
  OpKind kind() const override { return OpKind::kBatchNormFrozenGrad; }
  std::string Attributes() const override { return gamma_grad_ ? "" : "no_weight_grad"; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, gamma_grad_ ? 5 : 4));
    if (!gamma_grad_) return std::vector<TensorType>{in[3], in[0]};
    return std::vector<TensorType>{in[0], in[1], in[1]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    if (!gamma_grad_) {
      return STRATA_KERNEL(a, BatchNorm2dFrozenBackward, Tensor(), a.in[0], a.in[1], a.in[2], eps_,
                           a.in[3], a.out[0], Tensor(), a.out[1]);
    }
    return STRATA_KERNEL(a, BatchNorm2dFrozenBackward, a.in[0], a.in[1], a.in[2], a.in[3], eps_,
                         a.in[4], a.out[0], a.out[1], a.out[2]);
  }

 private:
  float eps_;
  bool gamma_grad_;
};

// (x, gamma, beta, running_mean, running_var) -> y.
class BatchNormFrozenOp final : public Op {
 public:
  explicit BatchNormFrozenOp(float eps) : eps_(eps) {}
  OpKind kind() const override { return OpKind::kBatchNormFrozen; }
  std::string Attributes() const override { return absl::StrCat("eps=", eps_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 5));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    if (in[0].shape.rank() != 4) {
      return TypeError(name(), "x is ", in[0].ToString(), ", expected (N, C, H, W)");
    }
    const Shape c{in[0].shape[1]};
    const char* names[] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 1; i < 5; ++i) {
      if (in[i].shape != c) {
        return TypeError(name(), names[i - 1], " is ", in[i].ToString(), ", expected ",
                         c.ToString(), " for x ", in[0].ToString());
      }
    }
    return std::vector<TensorType>{in[0]};
  }
  // y may overwrite x where nothing reads x later (its gradient reads x only for dgamma).
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, BatchNorm2dFrozenForward, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                         eps_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    if (!g.needs_grad[1]) {  // gamma does not train: no dgamma, so x is not kept for it
      return internal::ApplyGradient(g, std::make_shared<BatchNormFrozenGradOp>(eps_, false),
                                     {In(g, 1), In(g, 3), In(g, 4), Dout(g, 0)}, {0, 2});
    }
    return internal::ApplyGradient(g, std::make_shared<BatchNormFrozenGradOp>(eps_, true),
                                   {In(g, 0), In(g, 1), In(g, 3), In(g, 4), Dout(g, 0)},
                                   {0, 1, 2});
  }

 private:
  float eps_;
};

// (x, gamma, save_mean, save_rstd, dy) -> (dx, dgamma, dbeta), through the batch statistics.
class BatchNormGradOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kBatchNormGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 5));
    return std::vector<TensorType>{in[0], in[1], in[1]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, BatchNorm2dTrainBackward, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                         a.out[0], a.out[1], a.out[2]);
  }
};

// (x, gamma, beta, running_mean, running_var) -> (y, save_mean, save_rstd). Training: batch
// statistics, saved for the gradient, and the running statistics updated in place. Evaluation:
// the frozen kernel over the running statistics; save_mean and save_rstd are left as they are
// (no gradient runs in Evaluate). Without `update_running` (the recomputed copy of a checkpointed
// block, RecomputeOp) training leaves the running statistics alone: the forward already updated
// them once this step, and y, save_mean and save_rstd do not depend on them.
class BatchNormOp final : public Op {
 public:
  BatchNormOp(float eps, float momentum, bool update_running = true)
      : eps_(eps), momentum_(momentum), update_running_(update_running) {}
  OpKind kind() const override { return OpKind::kBatchNorm; }
  std::vector<int> StatisticsOutputs() const override { return {1, 2}; }
  std::string Attributes() const override {
    return absl::StrCat("eps=", eps_, " momentum=", momentum_,
                        update_running_ ? "" : " running_stats=read");
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 5));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    const Shape& x = in[0].shape;
    if (x.rank() != 4) return TypeError(name(), "x is ", in[0].ToString(), ", expected (N, C, H, W)");
    if (x[0] * x[2] * x[3] < 2) {
      return TypeError(name(), "x is ", in[0].ToString(),
                       ", expected more than 1 value per channel (N * H * W) for batch statistics");
    }
    const Shape c{x[1]};
    const char* names[] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 1; i < 5; ++i) {
      if (in[i].shape != c || in[i].dtype != DType::kF32) {
        return TypeError(name(), names[i - 1], " is ", in[i].ToString(), ", expected f32",
                         c.ToString(), " for x ", in[0].ToString());
      }
    }
    return std::vector<TensorType>{in[0], {c, DType::kF32}, {c, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    if (a.scalars != nullptr && !a.scalars->training) {
      return STRATA_KERNEL(a, BatchNorm2dFrozenForward, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                           eps_, a.out[0]);
    }
    const Tensor none;
    return STRATA_KERNEL(a, BatchNorm2dTrainForward, a.in[0], a.in[1], a.in[2], eps_, a.out[0],
                         a.out[1], a.out[2], update_running_ ? a.in[3] : none,
                         update_running_ ? a.in[4] : none, momentum_);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<BatchNormGradOp>(),
                                   {In(g, 0), In(g, 1), Out(g, 1), Out(g, 2), Dout(g, 0)},
                                   {0, 1, 2});
  }
  std::vector<int> MutatedInputs() const override {
    return update_running_ ? std::vector<int>{3, 4} : std::vector<int>{};
  }
  bool MutatesOnlyWhenTraining() const override { return update_running_; }
  std::shared_ptr<const Op> RecomputeOp() const override {
    return std::make_shared<BatchNormOp>(eps_, momentum_, /*update_running=*/false);
  }
  float eps() const { return eps_; }
  float momentum() const { return momentum_; }
  bool update_running() const { return update_running_; }

 private:
  float eps_, momentum_;
  bool update_running_;
};

// (W, 4, C) for x (N, C, H, W) in a world of W ranks.
TensorType StatsType(const TensorType& x, int world) {
  return {Shape{world, 4, x.shape[1]}, DType::kF32};
}

absl::Status ExpectNchw(const std::string& op, const TensorType& x) {
  STRATA_RETURN_IF_ERROR(internal::ExpectF32(op, "x", x));
  if (x.shape.rank() != 4) return TypeError(op, "x is ", x.ToString(), ", expected (N, C, H, W)");
  return absl::OkStatus();
}

absl::Status ExpectStats(const std::string& op, const TensorType& stats, const TensorType& x) {
  if (stats.dtype != DType::kF32 || stats.shape.rank() != 3 || stats.shape[1] != 4 ||
      stats.shape[2] != x.shape[1]) {
    return TypeError(op, "stats is ", stats.ToString(), ", expected f32(world, 4, ",
                     x.shape[1], ") for x ", x.ToString());
  }
  return absl::OkStatus();
}

std::string RankAttributes(int rank, int world) {
  return absl::StrCat("rank=", rank, " world=", world);
}

// (x) -> stats (W, 4, C): this rank's per-channel mean and variance in its row, zeros elsewhere.
// Evaluation reads no batch statistics, so it writes nothing then.
class BatchNormStats final : public Op {
 public:
  BatchNormStats(int rank, int world) : rank_(rank), world_(world) {}
  OpKind kind() const override { return OpKind::kBatchNormStats; }
  std::vector<int> StatisticsOutputs() const override { return {0}; }
  std::string Attributes() const override { return RankAttributes(rank_, world_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(ExpectNchw(name(), in[0]));
    return std::vector<TensorType>{StatsType(in[0], world_)};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    if (a.scalars != nullptr && !a.scalars->training) return absl::OkStatus();
    return STRATA_KERNEL(a, BatchNorm2dLocalStats, a.in[0], rank_, a.out[0]);
  }

 private:
  int rank_, world_;
};

// (x, gamma, beta, running_mean, running_var, stats summed over the ranks) -> (y, save_mean,
// save_rstd): BatchNormOp with the global statistics; the same in evaluation.
class BatchNormSynced final : public Op {
 public:
  BatchNormSynced(float eps, float momentum, bool update_running)
      : eps_(eps), momentum_(momentum), update_running_(update_running) {}
  OpKind kind() const override { return OpKind::kBatchNormSynced; }
  std::vector<int> StatisticsOutputs() const override { return {1, 2}; }
  std::string Attributes() const override {
    return absl::StrCat("eps=", eps_, " momentum=", momentum_,
                        update_running_ ? "" : " running_stats=read");
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 6));
    STRATA_RETURN_IF_ERROR(ExpectNchw(name(), in[0]));
    const Shape c{in[0].shape[1]};
    const char* names[] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 1; i < 5; ++i) {
      if (in[i].shape != c || in[i].dtype != DType::kF32) {
        return TypeError(name(), names[i - 1], " is ", in[i].ToString(), ", expected f32",
                         c.ToString(), " for x ", in[0].ToString());
      }
    }
    STRATA_RETURN_IF_ERROR(ExpectStats(name(), in[5], in[0]));
    return std::vector<TensorType>{in[0], {c, DType::kF32}, {c, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    if (a.scalars != nullptr && !a.scalars->training) {
      return STRATA_KERNEL(a, BatchNorm2dFrozenForward, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                           eps_, a.out[0]);
    }
    const Tensor none;
    return STRATA_KERNEL(a, BatchNorm2dSyncedForward, a.in[0], a.in[1], a.in[2], a.in[5], eps_,
                         a.out[0], a.out[1], a.out[2], update_running_ ? a.in[3] : none,
                         update_running_ ? a.in[4] : none, momentum_);
  }
  std::vector<int> MutatedInputs() const override {
    return update_running_ ? std::vector<int>{3, 4} : std::vector<int>{};
  }
  bool MutatesOnlyWhenTraining() const override { return update_running_; }
  std::shared_ptr<const Op> RecomputeOp() const override {
    return std::make_shared<BatchNormSynced>(eps_, momentum_, /*update_running=*/false);
  }

 private:
  float eps_, momentum_;
  bool update_running_;
};

// (x, save_mean, save_rstd, dy) -> (dgamma, dbeta, grad_stats): this rank's shares of dgamma and
// dbeta, and its sums of dy and dy * (x - mean) in its row of grad_stats (W, 4, C).
class BatchNormGradStats final : public Op {
 public:
  BatchNormGradStats(int rank, int world) : rank_(rank), world_(world) {}
  OpKind kind() const override { return OpKind::kBatchNormGradStats; }
  std::vector<int> StatisticsOutputs() const override { return {0, 1, 2}; }
  std::string Attributes() const override { return RankAttributes(rank_, world_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 4));
    STRATA_RETURN_IF_ERROR(ExpectNchw(name(), in[0]));
    const TensorType c{Shape{in[0].shape[1]}, DType::kF32};
    if (in[1] != c || in[2] != c) {
      return TypeError(name(), "save_mean ", in[1].ToString(), " and save_rstd ", in[2].ToString(),
                       " must be ", c.ToString(), " for x ", in[0].ToString());
    }
    if (in[3] != in[0]) {
      return TypeError(name(), "dy is ", in[3].ToString(), ", expected x's ", in[0].ToString());
    }
    return std::vector<TensorType>{c, c, StatsType(in[0], world_)};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, BatchNorm2dLocalGradStats, a.in[0], a.in[1], a.in[2], a.in[3], rank_,
                         a.out[2], a.out[0], a.out[1]);
  }

 private:
  int rank_, world_;
};

// (x, gamma, save_mean, save_rstd, dy, grad_stats summed over the ranks) -> dx.
class BatchNormGradSynced final : public Op {
 public:
  OpKind kind() const override { return OpKind::kBatchNormGradSynced; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 6));
    STRATA_RETURN_IF_ERROR(ExpectNchw(name(), in[0]));
    STRATA_RETURN_IF_ERROR(ExpectStats(name(), in[5], in[0]));
    return std::vector<TensorType>{in[0]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, BatchNorm2dSyncedBackward, a.in[0], a.in[1], a.in[2], a.in[3], a.in[4],
                         a.in[5], a.out[0]);
  }
};

}  // namespace

Var LayerNorm(Var x, Var gamma, Var beta, float eps) {
  return Apply(std::make_shared<LayerNormOp>(eps), {x, gamma, beta})[0];
}

Var RmsNorm(Var x, Var gamma, float eps) {
  return Apply(std::make_shared<RmsNormOp>(eps), {x, gamma})[0];
}

Var BatchNorm2dFrozen(Var x, Var gamma, Var beta, Var running_mean, Var running_var, float eps) {
  return internal::Apply1(std::make_shared<BatchNormFrozenOp>(eps),
                          {x, gamma, beta, running_mean, running_var});
}

Var BatchNorm2d(Var x, Var gamma, Var beta, Var running_mean, Var running_var, float eps,
                float momentum) {
  return Apply(std::make_shared<BatchNormOp>(eps, momentum),
               {x, gamma, beta, running_mean, running_var})[0];
}

std::shared_ptr<const Op> BatchNormStatsOp(int rank, int world) {
  return std::make_shared<BatchNormStats>(rank, world);
}

std::shared_ptr<const Op> BatchNormSyncedOp(const Op& batch_norm) {
  const auto* bn = dynamic_cast<const BatchNormOp*>(&batch_norm);
  if (bn == nullptr) return nullptr;
  return std::make_shared<BatchNormSynced>(bn->eps(), bn->momentum(),
                                                   bn->update_running());
}

std::shared_ptr<const Op> BatchNormGradStatsOp(int rank, int world) {
  return std::make_shared<BatchNormGradStats>(rank, world);
}

std::shared_ptr<const Op> BatchNormGradSyncedOp() {
  return std::make_shared<BatchNormGradSynced>();
}

std::shared_ptr<const Op> LayerNormGradResidualOp() {
  return std::make_shared<LayerNormGradOp>(/*has_residual=*/true);
}

}  // namespace strata::graph::ops
