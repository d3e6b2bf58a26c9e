// What an IR node computes, as a value that passes match on. A name is for dumps and errors; a
// pass that fuses or moves nodes asks for the kind, so renaming an op cannot quietly turn the pass
// off.
//
//   if (node.op->kind() == OpKind::kCrossEntropy) { ... }
//   OpKindName(OpKind::kLayerNormGrad) == "layer_norm_grad"
//
// One enumerator per op, grouped by the file under graph/ops/ that defines it. Adding an op: an
// enumerator in its group, its name in OpKindName (graph/op_kind.cc), and the op in
// tests/graph/op_kind_test.cc's graph of every op.
#pragma once

#include "absl/strings/string_view.h"

namespace strata::graph {

enum class OpKind {
  // attention_ops.cc
  kCausalAttention,
  kCausalAttentionGrad,
  kAttention,
  kAttentionGrad,
  kRotary,
  kRotaryGrad,
  // channel_ops.cc
  kChannelSlice,
  // conv_ops.cc
  kAvgPool2d,
  kAvgPool2dGrad,
  kConv2d,
  kConv2dGrad,
  kGlobalAvgPool,
  kGlobalAvgPoolGrad,
  kMaxPool2d,
  kMaxPool2dGrad,
  // dense_ops.cc
  kLinear,
  kLinearGrad,
  kLinearResidual,
  // elementwise_ops.cc
  kAdd,
  kGelu,
  kGeluGrad,
  kRelu,
  kReluGrad,
  kRelu6,
  kRelu6Grad,
  kSigmoid,
  kSigmoidGrad,
  kTanh,
  kTanhGrad,
  kSilu,
  kSiluGrad,
  kSoftplus,
  kSoftplusGrad,
  kGeluExact,
  kGeluExactGrad,
  kSwiGlu,
  kSwiGluGrad,
  kReluMask,
  kMaskedGrad,
  kSub,
  kMul,
  kDiv,
  kScaleShift,
  kPow,
  kExp,
  kLog,
  kSqrt,
  kRsqrt,
  kExpand,
  kSumDim,
  kBroadcastDim,
  kMaxDim,
  kMaxDimGrad,
  kSoftmax,
  kSoftmaxGrad,
  kLogSoftmax,
  kLogSoftmaxGrad,
  kPermute,
  kSlice,
  kSliceGrad,
  kConcat,
  kSplit,
  kMatmul,
  kMatmulGrad,
  kReshape,
  kScaleByScalar,
  kSumTo,
  kWeightedSum,
  // dropout_ops.cc
  kDropout,
  kDropoutGrad,
  // embedding_ops.cc
  kEmbedding,
  kEmbeddingGrad,
  // loss_ops.cc
  kCrossEntropy,
  kCrossEntropyWithGrad,
  // normalization_ops.cc
  kBatchNorm,
  kBatchNormGrad,
  kBatchNormFrozen,
  kBatchNormFrozenGrad,
  kBatchNormGradStats,
  kBatchNormGradSynced,
  kBatchNormStats,
  kBatchNormSynced,
  kLayerNorm,
  kLayerNormGrad,
  kLayerNormGradResidual,
  kRmsNorm,
  kRmsNormGrad,
  // collective_ops.cc
  kAllReduce,
  kAllGather,
  kReduceScatter,
  // offload_ops.cc
  kFetch,
  kOffloadedUpdate,
  kWriteBack,
  // optimizer_ops.cc
  kAccumulate,
  kAdamWUpdate,
  kGlobalGradNorm,
  kGradNorm,
  kSgdUpdate,
  kZero,
  // precision_ops.cc
  kRoundToPrecision,

  kNumOpKinds  // not a kind: the count, for tests that go through every kind. Keep it last.
};

// The op's name in dumps and errors ("cross_entropy_with_grad"); unique per kind.
absl::string_view OpKindName(OpKind kind);

}  // namespace strata::graph
