// Note [partial channels]
// A sparse update may train only the first k channels of a weight (channels:F, PockEngine and
// tiny-training's sparse tensor update): for a linear layer w (out, in) the first k input
// columns, for a convolution w (O, C, KH, KW) the first k input channels, and for a depthwise
// convolution w (C, 1, KH, KW), whose input channel is its output channel, its own first k. The
// weight gradient over those channels reads only those channels of the layer's input:
//   linear:    dw[:, :k]  = dy^T x[..., :k]
//   conv:      dw[:, :k]  = the weight gradient of the convolution of x[:, :k]
//   depthwise: dw[:k]     = the weight gradient of the depthwise convolution of x[:, :k], dy[:, :k]
// So the layer's gradient op reads channel_slice(x), which HoistChannelSlices
// (graph/passes/hoist_channel_slices.cc) moves into the forward, right after x's last forward
// reader: the forward keeps k channels of the activation for the backward instead of all of them,
// and x dies where it would without a backward. The input gradient dx still uses the whole
// weight and dy.
//
// The gradient (kGradient) and the optimizer state hold the trained channels alone, back to back:
// (out, k), (O, k, KH, KW) or (k, 1, KH, KW). The update writes them into the weight as `rows` runs
// of `prefix` elements, `stride` apart (ops::UpdateSlice, derived by Compile from the two shapes);
// it is elementwise, so the trained channels get exactly the values a full update would give them
// and the others keep theirs. With that state off the device the update runs chunk by chunk over
// the compact elements (Note [partial channels offloaded] in graph/passes/schedule_offload.cc);
// under ZeRO the compact gradient and state are replicated and only the weight is sharded (Note
// [zero partition] in graph/passes/zero_partition.cc).
#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"

namespace strata::graph::ops {
namespace {

// x -> the first k entries of dimension `dim` (negative counts from the end), as a contiguous copy.
class ChannelSliceOp final : public Op {
 public:
  ChannelSliceOp(int dim, int64_t k) : dim_(dim), k_(k) {}
  OpKind kind() const override { return OpKind::kChannelSlice; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_, " channels=", k_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    const Shape& x = in[0].shape;
    const int d = dim_ < 0 ? dim_ + x.rank() : dim_;
    if (d < 0 || d >= x.rank() || k_ < 1 || k_ > x[d]) {
      return internal::TypeError(name(), "cannot take ", k_, " channels of dimension ", dim_,
                                 " of ", in[0].ToString());
    }
    Dims dims(x.dims().begin(), x.dims().end());
    dims[d] = k_;
    return std::vector<TensorType>{{Shape(dims), in[0].dtype}};
  }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor view, a.in[0].Slice(dim_, 0, k_));
    return STRATA_KERNEL(a, CopyStrided, view, a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  int dim_;
  int64_t k_;
};

}  // namespace

int64_t TrainedChannels(const GradientArgs& g, int input) {
  return g.tracer.graph().value(g.node.inputs[input]).trained_channels;
}

Var ChannelSlice(GradientArgs& g, Var x, int dim, int64_t k) {
  Var s = internal::Apply1(std::make_shared<ChannelSliceOp>(dim, k), {x});
  // Made during autodiff, but an activation: the forward computes it (HoistChannelSlices).
  if (s.valid()) g.tracer.graph().mutable_value(s.id()).role = ValueRole::kActivation;
  return s;
}

}  // namespace strata::graph::ops
