#include "graph/op_kind.h"

namespace strata::graph {

absl::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kCausalAttention: return "causal_attention";
    case OpKind::kCausalAttentionGrad: return "causal_attention_grad";
    case OpKind::kAttention: return "attention";
    case OpKind::kAttentionGrad: return "attention_grad";
    case OpKind::kRotary: return "rotary";
    case OpKind::kRotaryGrad: return "rotary_grad";
    case OpKind::kAvgPool2d: return "avg_pool2d";
    case OpKind::kAvgPool2dGrad: return "avg_pool2d_grad";
    case OpKind::kConv2d: return "conv2d";
    case OpKind::kConv2dGrad: return "conv2d_grad";
    case OpKind::kGlobalAvgPool: return "global_avg_pool";
    case OpKind::kGlobalAvgPoolGrad: return "global_avg_pool_grad";
    case OpKind::kMaxPool2d: return "max_pool2d";
    case OpKind::kMaxPool2dGrad: return "max_pool2d_grad";
    case OpKind::kLinear: return "linear";
    case OpKind::kLinearGrad: return "linear_grad";
    case OpKind::kLinearResidual: return "linear_residual";
    case OpKind::kAdd: return "add";
    case OpKind::kGelu: return "gelu";
    case OpKind::kGeluGrad: return "gelu_grad";
    case OpKind::kRelu: return "relu";
    case OpKind::kReluGrad: return "relu_grad";
    case OpKind::kRelu6: return "relu6";
    case OpKind::kRelu6Grad: return "relu6_grad";
    case OpKind::kSigmoid: return "sigmoid";
    case OpKind::kSigmoidGrad: return "sigmoid_grad";
    case OpKind::kTanh: return "tanh";
    case OpKind::kTanhGrad: return "tanh_grad";
    case OpKind::kSilu: return "silu";
    case OpKind::kSiluGrad: return "silu_grad";
    case OpKind::kSoftplus: return "softplus";
    case OpKind::kSoftplusGrad: return "softplus_grad";
    case OpKind::kGeluExact: return "gelu_exact";
    case OpKind::kGeluExactGrad: return "gelu_exact_grad";
    case OpKind::kSub: return "sub";
    case OpKind::kMul: return "mul";
    case OpKind::kDiv: return "div";
    case OpKind::kScaleShift: return "scale_shift";
    case OpKind::kPow: return "pow";
    case OpKind::kExp: return "exp";
    case OpKind::kLog: return "log";
    case OpKind::kSqrt: return "sqrt";
    case OpKind::kRsqrt: return "rsqrt";
    case OpKind::kExpand: return "expand";
    case OpKind::kSumDim: return "sum_dim";
    case OpKind::kBroadcastDim: return "broadcast_dim";
    case OpKind::kMaxDim: return "max_dim";
    case OpKind::kMaxDimGrad: return "max_dim_grad";
    case OpKind::kSoftmax: return "softmax";
    case OpKind::kSoftmaxGrad: return "softmax_grad";
    case OpKind::kLogSoftmax: return "log_softmax";
    case OpKind::kLogSoftmaxGrad: return "log_softmax_grad";
    case OpKind::kPermute: return "permute";
    case OpKind::kSlice: return "slice";
    case OpKind::kSliceGrad: return "slice_grad";
    case OpKind::kConcat: return "concat";
    case OpKind::kSplit: return "split";
    case OpKind::kMatmul: return "matmul";
    case OpKind::kMatmulGrad: return "matmul_grad";
    case OpKind::kReshape: return "reshape";
    case OpKind::kScaleByScalar: return "scale_by_scalar";
    case OpKind::kSumTo: return "sum_to";
    case OpKind::kChannelSlice: return "channel_slice";
    case OpKind::kWeightedSum: return "weighted_sum";
    case OpKind::kDropout: return "dropout";
    case OpKind::kDropoutGrad: return "dropout_grad";
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kEmbeddingGrad: return "embedding_grad";
    case OpKind::kCrossEntropy: return "cross_entropy";
    case OpKind::kCrossEntropyWithGrad: return "cross_entropy_with_grad";
    case OpKind::kBatchNorm: return "batch_norm";
    case OpKind::kBatchNormGrad: return "batch_norm_grad";
    case OpKind::kBatchNormFrozen: return "batch_norm_frozen";
    case OpKind::kBatchNormFrozenGrad: return "batch_norm_frozen_grad";
    case OpKind::kBatchNormGradStats: return "batch_norm_grad_stats";
    case OpKind::kBatchNormGradSynced: return "batch_norm_grad_synced";
    case OpKind::kBatchNormStats: return "batch_norm_stats";
    case OpKind::kBatchNormSynced: return "batch_norm_synced";
    case OpKind::kLayerNorm: return "layer_norm";
    case OpKind::kLayerNormGrad: return "layer_norm_grad";
    case OpKind::kLayerNormGradResidual: return "layer_norm_grad_residual";
    case OpKind::kRmsNorm: return "rms_norm";
    case OpKind::kRmsNormGrad: return "rms_norm_grad";
    case OpKind::kAllReduce: return "all_reduce";
    case OpKind::kAllGather: return "all_gather";
    case OpKind::kReduceScatter: return "reduce_scatter";
    case OpKind::kFetch: return "fetch";
    case OpKind::kOffloadedUpdate: return "offloaded_update";
    case OpKind::kWriteBack: return "write_back";
    case OpKind::kAccumulate: return "accumulate";
    case OpKind::kAdamWUpdate: return "adamw_update";
    case OpKind::kGlobalGradNorm: return "global_grad_norm";
    case OpKind::kGradNorm: return "grad_norm";
    case OpKind::kSgdUpdate: return "sgd_update";
    case OpKind::kZero: return "zero";
    case OpKind::kNumOpKinds: break;
  }
  return "";  // not a kind (tests/graph/op_kind_test.cc checks that every kind has a name)
}

}  // namespace strata::graph
