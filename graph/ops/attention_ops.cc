// causal_attention over a packed qkv projection; attention over separate q, k, v projections
// with grouped key/value heads (Note [grouped-query attention] in runtime/cpu/attention.cc); and
// their gradients.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Dout;
using internal::In;
using internal::Out;
using internal::TypeError;

// Views of the packed (B, T, 3C) qkv as q, k, v (B, H, T, D), and of a (B, T, C) tensor as
// (B, H, T, D): no copies, the kernel takes strided heads.
absl::StatusOr<Tensor> Heads(const Tensor& t, int heads, int which) {
  const int64_t b = t.dim(0), s = t.dim(1);
  if (which < 0) {
    const int64_t d = t.dim(2) / heads;
    STRATA_ASSIGN_OR_RETURN(const Tensor r, t.Reshape({b, s, heads, d}));
    return r.Permute({0, 2, 1, 3});
  }
  const int64_t d = t.dim(2) / 3 / heads;
  STRATA_ASSIGN_OR_RETURN(const Tensor r, t.Reshape({b, s, 3, heads, d}));
  STRATA_ASSIGN_OR_RETURN(const Tensor part, r.Select(2, which));
  return part.Permute({0, 2, 1, 3});
}

size_t Workspace(int64_t batch, int heads, int64_t seq, int64_t head_dim,
                 const StepTarget& target) {
#if STRATA_HAVE_CUDA
  if (target.device.is_cuda()) return cuda::AttentionWorkspaceBytes(batch, heads, seq, head_dim);
#endif
  return cpu::AttentionWorkspaceBytes(batch, heads, seq, head_dim, target.num_threads);
}
size_t PackedWorkspace(const TensorType& qkv, int heads, const StepTarget& target) {
  const Shape& s = qkv.shape;
  return Workspace(s[0], heads, s[1], s[2] / 3 / heads, target);
}

// (qkv, lse, dy) -> dqkv.
class CausalAttentionGradOp final : public Op {
 public:
  explicit CausalAttentionGradOp(int heads) : heads_(heads) {}
  OpKind kind() const override { return OpKind::kCausalAttentionGrad; }
  std::string Attributes() const override { return absl::StrCat("heads=", heads_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    return std::vector<TensorType>{in[0]};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return PackedWorkspace(in[0], heads_, target);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor q, Heads(a.in[0], heads_, 0));
    STRATA_ASSIGN_OR_RETURN(const Tensor k, Heads(a.in[0], heads_, 1));
    STRATA_ASSIGN_OR_RETURN(const Tensor v, Heads(a.in[0], heads_, 2));
    STRATA_ASSIGN_OR_RETURN(const Tensor dy, Heads(a.in[2], heads_, -1));
    STRATA_ASSIGN_OR_RETURN(const Tensor dq, Heads(a.out[0], heads_, 0));
    STRATA_ASSIGN_OR_RETURN(const Tensor dk, Heads(a.out[0], heads_, 1));
    STRATA_ASSIGN_OR_RETURN(const Tensor dv, Heads(a.out[0], heads_, 2));
    const float scale = 1.0f / std::sqrt(static_cast<float>(q.dim(3)));
    return STRATA_WORKSPACE_KERNEL(a, CausalAttentionBackward, q, k, v, a.in[1], dy, dq, dk, dv,
                                   scale);
  }

 private:
  int heads_;
};

// qkv (B, T, 3C) -> (y (B, T, C), lse (B, H, T)).
class CausalAttentionOp final : public Op {
 public:
  explicit CausalAttentionOp(int heads) : heads_(heads) {}
  OpKind kind() const override { return OpKind::kCausalAttention; }
  std::vector<int> StatisticsOutputs() const override { return {1}; }
  std::string Attributes() const override { return absl::StrCat("heads=", heads_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "qkv", in[0]));
    const Shape& s = in[0].shape;
    if (heads_ <= 0 || s.rank() != 3 || s[2] % (3 * heads_) != 0) {
      return TypeError(name(), "qkv is ", in[0].ToString(), ", expected (B, T, 3 * C) with C a",
                       " multiple of heads = ", heads_);
    }
    return std::vector<TensorType>{{Shape{s[0], s[1], s[2] / 3}, DType::kF32},
                                   {Shape{s[0], heads_, s[1]}, DType::kF32}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return PackedWorkspace(in[0], heads_, target);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor q, Heads(a.in[0], heads_, 0));
    STRATA_ASSIGN_OR_RETURN(const Tensor k, Heads(a.in[0], heads_, 1));
    STRATA_ASSIGN_OR_RETURN(const Tensor v, Heads(a.in[0], heads_, 2));
    STRATA_ASSIGN_OR_RETURN(const Tensor y, Heads(a.out[0], heads_, -1));
    const float scale = 1.0f / std::sqrt(static_cast<float>(q.dim(3)));
    return STRATA_WORKSPACE_KERNEL(a, CausalAttentionForward, q, k, v, y, a.out[1], scale);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<CausalAttentionGradOp>(heads_),
                                   {In(g, 0), Out(g, 1), Dout(g, 0)}, {0});
  }

 private:
  int heads_;
};

// What attention over separate projections and its gradient share: the head counts, their
// attributes and workspace, and (B, T, heads D) tensors seen as (B, heads, T, D) views.
class SeparateHeadsOp : public Op {
 public:
  std::string Attributes() const override {
    return absl::StrCat("heads=", heads_, " kv_heads=", kv_heads_);
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    const Shape& q = in[0].shape;
    return Workspace(q[0], heads_, q[1], q[2] / heads_, target);
  }
  bool HasCudaKernel() const override { return true; }

 protected:
  SeparateHeadsOp(int heads, int kv_heads) : heads_(heads), kv_heads_(kv_heads) {}
  // Views of a query-shaped (q, y, dy) and of key/value-shaped (k, v) tensors.
  absl::StatusOr<Tensor> QueryHeads(const Tensor& t) const { return Heads(t, heads_, -1); }
  absl::StatusOr<Tensor> KeyValueHeads(const Tensor& t) const { return Heads(t, kv_heads_, -1); }
  static float Scale(const Tensor& heads) {
    return 1.0f / std::sqrt(static_cast<float>(heads.dim(3)));
  }

  int heads_, kv_heads_;
};

// (q, k, v, lse, dy) -> (dq, dk, dv).
class AttentionGradOp final : public SeparateHeadsOp {
 public:
  AttentionGradOp(int heads, int kv_heads) : SeparateHeadsOp(heads, kv_heads) {}
  OpKind kind() const override { return OpKind::kAttentionGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 5));
    return std::vector<TensorType>{in[0], in[1], in[2]};
  }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor q, QueryHeads(a.in[0]));
    STRATA_ASSIGN_OR_RETURN(const Tensor k, KeyValueHeads(a.in[1]));
    STRATA_ASSIGN_OR_RETURN(const Tensor v, KeyValueHeads(a.in[2]));
    STRATA_ASSIGN_OR_RETURN(const Tensor dy, QueryHeads(a.in[4]));
    STRATA_ASSIGN_OR_RETURN(const Tensor dq, QueryHeads(a.out[0]));
    STRATA_ASSIGN_OR_RETURN(const Tensor dk, KeyValueHeads(a.out[1]));
    STRATA_ASSIGN_OR_RETURN(const Tensor dv, KeyValueHeads(a.out[2]));
    return STRATA_WORKSPACE_KERNEL(a, CausalAttentionBackward, q, k, v, a.in[3], dy, dq, dk, dv,
                                   Scale(q));
  }
};

// q (B, T, H D), k and v (B, T, H_kv D) -> (y (B, T, H D), lse (B, H, T)).
class AttentionOp final : public SeparateHeadsOp {
 public:
  AttentionOp(int heads, int kv_heads) : SeparateHeadsOp(heads, kv_heads) {}
  OpKind kind() const override { return OpKind::kAttention; }
  std::vector<int> StatisticsOutputs() const override { return {1}; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    const char* names[] = {"q", "k", "v"};
    for (int i = 0; i < 3; ++i) STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), names[i], in[i]));
    const Shape& q = in[0].shape;
    if (heads_ <= 0 || kv_heads_ <= 0 || heads_ % kv_heads_ != 0) {
      return TypeError(name(), "heads = ", heads_, " must be a positive multiple of kv_heads = ",
                       kv_heads_);
    }
    if (q.rank() != 3 || q[2] % heads_ != 0 || q[2] == 0) {
      return TypeError(name(), "q is ", in[0].ToString(), ", expected (B, T, heads * D) with heads = ",
                       heads_);
    }
    const Shape kv{q[0], q[1], q[2] / heads_ * kv_heads_};
    if (in[1].shape != kv || in[2].shape != kv) {
      return TypeError(name(), "k ", in[1].ToString(), " and v ", in[2].ToString(), " must be ",
                       kv.ToString(), " (kv_heads = ", kv_heads_, " heads of q's head size ",
                       q[2] / heads_, ")");
    }
    return std::vector<TensorType>{in[0], {Shape{q[0], heads_, q[1]}, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor q, QueryHeads(a.in[0]));
    STRATA_ASSIGN_OR_RETURN(const Tensor k, KeyValueHeads(a.in[1]));
    STRATA_ASSIGN_OR_RETURN(const Tensor v, KeyValueHeads(a.in[2]));
    STRATA_ASSIGN_OR_RETURN(const Tensor y, QueryHeads(a.out[0]));
    return STRATA_WORKSPACE_KERNEL(a, CausalAttentionForward, q, k, v, y, a.out[1], Scale(q));
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<AttentionGradOp>(heads_, kv_heads_),
                                   {In(g, 0), In(g, 1), In(g, 2), Out(g, 1), Dout(g, 0)},
                                   {0, 1, 2});
  }
};

}  // namespace

Var CausalAttention(Var q, Var k, Var v, int heads, int kv_heads) {
  return internal::Apply(std::make_shared<AttentionOp>(heads, kv_heads), {q, k, v})[0];
}

Var CausalSelfAttention(Var qkv, int heads) {
  return internal::Apply(std::make_shared<CausalAttentionOp>(heads), {qkv})[0];
}

}  // namespace strata::graph::ops
