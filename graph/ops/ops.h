// The ops a model's forward is written with. Each call appends one node to the Var's trace (see
// graph/tracer.h) and returns its output; shapes follow PyTorch's conventions and errors name the
// op and the shapes.
//
//   Var h = ops::Linear(x, w, b);                 // x (..., in), w (out, in), b (out)
//   Var y = ops::Gelu(h);
//   Var loss = ops::CrossEntropy(logits, targets); // mean over rows, as F.cross_entropy
//
// Gradients, fused variants and optimizer updates are ops too, made by autodiff and Compile
// through the factories at the end of this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graph/op.h"
#include "graph/tracer.h"
#include "runtime/cpu/conv2d.h"
#include "runtime/cpu/pooling.h"
#include "runtime/cpu/rotary.h"

namespace strata::graph::ops {

// x (..., in), w (out, in), b (out) or an invalid Var -> (..., out).
Var Linear(Var x, Var w, Var b = Var());
// a + b where b's shape equals the trailing dimensions of a's (same shape, or a bias-like
// broadcast over the leading dimensions).
Var Add(Var a, Var b);
Var Gelu(Var x);  // tanh approximation, as GPT-2
Var Relu(Var x);
Var Relu6(Var x);
Var Sigmoid(Var x);
Var Tanh(Var x);
Var Silu(Var x);      // x sigmoid(x)
Var Softplus(Var x);  // log(1 + exp(x)); x itself above 20, as PyTorch
Var GeluExact(Var x); // 0.5 x (1 + erf(x / sqrt(2))), as gelu(approximate='none')
// Elementwise arithmetic (graph/ops/math_ops.cc). a and b broadcast as NumPy does: aligned from
// the back, each dimension equal or 1 in one of them ((B, T, C) * (B, T, 1), (B, T, C) - (C)).
Var Sub(Var a, Var b);
Var Mul(Var a, Var b);
Var Div(Var a, Var b);
Var ScaleShift(Var x, float alpha, float beta);  // alpha x + beta
Var Scale(Var x, float alpha);                   // alpha x
Var AddScalar(Var x, float beta);                // x + beta
Var Neg(Var x);
Var Pow(Var x, float exponent);  // x^exponent, std::pow's rules (NaN for x < 0, p not integral)
Var Exp(Var x);
Var Log(Var x);
Var Sqrt(Var x);
Var Rsqrt(Var x);  // 1 / sqrt(x)
// Inverted dropout (graph/ops/dropout_ops.cc), as torch.nn.Dropout: in a training step each
// element is zeroed with probability p and the others scaled by 1 / (1 - p); in
// Program::Evaluate, x itself. p in [0, 1) (0: x, no node). The mask is a function of
// TrainOptions::seed, the step, the call site and the element's index in the step's global batch
// (its leading dimension the batch's rows), so it is the same for any thread count, world size,
// micro-batch split and resumed run (Note [dropout in the step]).
Var Dropout(Var x, float p);
// x broadcast to `shape` (NumPy's rule): repeated along its size-1 dimensions and over the
// leading ones it lacks.
Var Expand(Var x, const Shape& shape);
// Shape ops (graph/ops/shape_ops.cc), copies into contiguous outputs; dims negative from the
// back. Permute's order lists, per output dimension, the input dimension it takes.
Var Permute(Var x, std::vector<int> order);
Var Transpose(Var x, int dim0, int dim1);
Var Slice(Var x, int dim, int64_t start, int64_t end);  // [start, end) of `dim`
Var Concat(const std::vector<Var>& inputs, int dim);
std::vector<Var> Split(Var x, int dim, const std::vector<int64_t>& sizes);
// Matrix products (graph/ops/matmul_ops.cc): op(a) @ op(b), op a transpose of the last two
// dimensions where asked. Matmul: a (M, K) or (..., M, K) with b (K, N); BatchedMatmul: a and b
// (..., M, K) and (..., K, N) with the same leading dimensions.
Var Matmul(Var a, Var b, bool trans_a = false, bool trans_b = false);
Var BatchedMatmul(Var a, Var b, bool trans_a = false, bool trans_b = false);
// Reductions (graph/ops/reduce_ops.cc) over `dims` (negative: from the back; empty: all of
// them), which are dropped, or kept with size 1 with `keepdim`. Sums accumulate in double.
Var Sum(Var x, std::vector<int> dims = {}, bool keepdim = false);
Var Mean(Var x, std::vector<int> dims = {}, bool keepdim = false);
// The maximum over one dimension; its gradient goes to the first maximum, as torch.max(dim).
Var Max(Var x, int dim, bool keepdim = false);
// Over the last dimension.
Var Softmax(Var x);
Var LogSoftmax(Var x);
// Scalar losses, averaged over every element: mean((prediction - target)^2), and
// mean(softplus(x) - x target) = binary cross-entropy of sigmoid(x), targets in [0, 1].
Var MseLoss(Var prediction, Var target);
Var BceWithLogitsLoss(Var logits, Var target);
// x (..., C), gamma and beta (C).
Var LayerNorm(Var x, Var gamma, Var beta, float eps = 1e-5f);
// x (..., C), gamma (C) -> x / sqrt(mean(x^2) + eps) * gamma, as Llama's RMSNorm.
Var RmsNorm(Var x, Var gamma, float eps = 1e-6f);
// silu(gate) * up (Llama's SwiGLU), gate and up of one shape: Mul(Silu(gate), up) in one op.
Var SwiGlu(Var gate, Var up);
// ids (...) i32/i64, table (V, C) -> (..., C).
Var Embedding(Var ids, Var table);
// qkv (B, T, 3C) packed [q | k | v], C = heads * head_dim -> (B, T, C), causal, scale 1/sqrt(D).
Var CausalSelfAttention(Var qkv, int heads);
// torch.nn.functional.cross_entropy's options: rows whose target is ignore_index add nothing to
// the loss or the mean's count; label_smoothing in [0, 1] mixes a uniform target into each row.
struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
};
// Causal attention over separate projections: q (B, T, heads * D), k and v (B, T, kv_heads * D)
// with heads a multiple of kv_heads (grouped-query attention; kv_heads == heads is multi-head)
// -> (B, T, heads * D), scale 1/sqrt(D), in the same fused kernel as CausalSelfAttention.
Var CausalAttention(Var q, Var k, Var v, int heads, int kv_heads);
// The constant (positions, head_dim) table of rotary cosines and sines (cpu::RotaryTable) for
// theta and Llama 3's optional frequency scaling, on `like`'s trace.
Var RotaryTable(const Var& like, int64_t positions, int64_t head_dim, double theta,
                const cpu::RotaryScaling& scaling, const std::string& name);
// Rotary position embedding of x (B, T, heads * D) with a RotaryTable of at least T positions:
// each head's halves rotated by position * frequency (Hugging Face's rotate_half layout).
Var Rotary(Var x, Var table, int heads);
// logits (..., V) f32, targets (...) i32/i64 -> scalar mean cross-entropy over the kept rows.
Var CrossEntropy(Var logits, Var targets, const CrossEntropyOptions& options = {});
// Sum of x * weights over all elements -> scalar; a linear probe (tests, custom losses).
Var WeightedSum(Var x, Var weights);
// x (N, C, H, W), w (O, C / groups, KH, KW), b (O) or invalid.
Var Conv2d(Var x, Var w, Var b, const cpu::Conv2dParams& params);
// Frozen (inference-mode) batch norm over (N, C, H, W): running statistics are read, not updated.
Var BatchNorm2dFrozen(Var x, Var gamma, Var beta, Var running_mean, Var running_var,
                      float eps = 1e-5f);
// Batch norm over (N, C, H, W) as PyTorch's nn.BatchNorm2d: in a training step
// (StepScalars::training) it normalizes with the batch's statistics, differentiates through
// them and moves the running statistics (buffers, written in place) towards them with
// `momentum`; in Program::Evaluate it normalizes with the running statistics and writes nothing.
Var BatchNorm2d(Var x, Var gamma, Var beta, Var running_mean, Var running_var, float eps = 1e-5f,
                float momentum = 0.1f);
Var MaxPool2d(Var x, const cpu::Pool2dParams& params);
Var AvgPool2d(Var x, const cpu::Pool2dParams& params);
// (N, C, H, W) -> (N, C).
Var GlobalAvgPool(Var x);
// The constant i32 vector 0, 1, ..., n - 1 (position ids), on `like`'s trace.
Var Arange(const Var& like, int64_t n, const std::string& name);
// Same elements, new shape (a copy).
Var Reshape(Var x, const Shape& shape);
// x (..., tail) -> the sum over the leading dimensions, shaped like `tail` (a bias's gradient).
Var SumTo(Var x, const Shape& tail);

// Factories used by autodiff, passes and Compile.
// loss and d loss / d logits in one pass, given the seed gradient d total / d loss (a scalar).
std::shared_ptr<const Op> CrossEntropyWithGradOp(const CrossEntropyOptions& options = {});
// (x, w, [b,] r) -> r + linear(x, w, b): a linear layer whose output only feeds a residual add,
// fused after autodiff (passes/fuse_residual_add.cc); not differentiable itself.
std::shared_ptr<const Op> LinearResidualOp(bool has_bias);
// A linear gradient without dw whose dx is only summed over its rows (FoldRowSumsIntoLinearGrad):
// (w, dy) -> (sum of dx over every leading dimension (in), db (out)), as db w: a vector-matrix
// product where dx was a matrix product. nullptr unless `linear_grad` is a linear_grad without a
// weight gradient and with a bias.
std::shared_ptr<const Op> LinearGradRowSumOp(const Op& linear_grad);
// What relu's and relu6's gradients need of x, a byte per element (SaveReluMasks): x -> u8 mask
// of 0 < x < upper (+inf for relu, 6 for relu6), and (mask, dy) -> dy where mask, else 0.
std::shared_ptr<const Op> ReluMaskOp(float upper);
std::shared_ptr<const Op> MaskedGradOp();
// (x, gamma, mean, rstd, dy, r) -> (r + dx, dgamma, dbeta): a layer-norm gradient whose dx only
// feeds an add, fused the same way.
std::shared_ptr<const Op> LayerNormGradResidualOp();
// acc += g (in place on input 0).
std::shared_ptr<const Op> AccumulateOp();
// Zeroes input 0 in place.
std::shared_ptr<const Op> ZeroOp();
// Clipping by global norm (torch.nn.utils.clip_grad_norm_) is three steps, so that no node
// reads every gradient at once: grad_norm(g) -> the L2 norm of one gradient (a scalar);
// global_grad_norm(n1, ..., nk) -> sqrt of the sum of their squares (the norm reported);
// and each update, given max_norm > 0 and that norm as its last input, scales its gradient by
// max_norm / (norm + 1e-6) when that is below 1 before updating.
std::shared_ptr<const Op> GradNormOp();
std::shared_ptr<const Op> GlobalGradNormOp();
// The same over parts (ZeRO, where each rank holds shards of the gradients): the first
// `squared_inputs` inputs are already sums of squares; with `squared_output` the result is the
// sum of squares itself, not its root (a partial sum that an all_reduce completes).
std::shared_ptr<const Op> GlobalGradNormOp(int squared_inputs, bool squared_output);
// The part of a parameter an update writes when only some of its channels train (Note [partial
// channels] in channel_ops.cc): `rows` runs of `prefix` elements, `stride` apart, which the
// gradient and the optimizer state hold back to back. rows == 0: the whole parameter.
struct UpdateSlice {
  int64_t rows = 0, stride = 0, prefix = 0;
  bool whole() const { return rows == 0; }
};
// param, grad, m, v[, global norm]: AdamW with PyTorch's semantics, lr from StepScalars times
// lr_scale (the parameter's group, Note [parameter groups] in graph/param_groups.h).
// `loss_scaled` (dynamic loss scaling, Note [mixed precision] in passes/mixed_precision.cc): the
// global norm is an input; when it is not finite the update does nothing (the step is skipped),
// else the gradient is multiplied by 1 / StepScalars::loss_scale, times the clipping factor of
// the unscaled norm when max_norm > 0.
std::shared_ptr<const Op> AdamWUpdateOp(double beta1, double beta2, double eps,
                                        double weight_decay, double max_norm = 0,
                                        UpdateSlice slice = {}, double lr_scale = 1.0,
                                        bool loss_scaled = false);
// param, grad, momentum buffer (absent when momentum is 0)[, global norm]: torch.optim.SGD,
// lr and loss scaling as above.
std::shared_ptr<const Op> SgdUpdateOp(double momentum, double dampening, bool nesterov,
                                      double weight_decay, double max_norm = 0,
                                      UpdateSlice slice = {}, double lr_scale = 1.0,
                                      bool loss_scaled = false);
// The slice of an update op, or of the update an offloaded_update wraps (whole() for any other
// op).
UpdateSlice UpdateSliceOf(const Op& update);
// The same update over operands that all hold the updated elements alone, back to back: the
// update without its slice, which an offloaded_update runs on each chunk after gathering the
// parameter's trained elements into it (Note [partial channels offloaded] in
// graph/passes/schedule_offload.cc).
std::shared_ptr<const Op> CompactUpdateOp(const Op& update);

// Mixed precision (Note [mixed precision] in graph/passes/mixed_precision.cc): x -> a copy of x
// rounded to `precision` (bf16 or f16), the working copy of a parameter that forward and backward
// read in its place.
std::shared_ptr<const Op> RoundToPrecisionOp(DType precision);

// Partial channels (Note [partial channels] in channel_ops.cc), for the gradients of linear and
// conv2d: how many leading channels of a node's input `input` train (0: all, or not a parameter
// with partial channels), and channel_slice(x) -> the first k entries of dimension `dim`, made
// by a gradient and computed in the forward (HoistChannelSlices).
int64_t TrainedChannels(const GradientArgs& g, int input);
Var ChannelSlice(GradientArgs& g, Var x, int dim, int64_t k);

// Data parallel (graph/compile.cc): all_reduce sums a gradient over the ranks of the Program's
// communicator, in place, on its communication stream; with arity > 1, a bucket of that many
// gradients in one message (Note [bucketed all-reduces]). In a world of one the sum is the value
// itself.
std::shared_ptr<const Op> AllReduceOp(int arity = 1);
// ZeRO (graph/passes/zero_partition.cc): reduce_scatter(g) -> this rank's shard of g summed over
// the ranks; all_gather(p) fills p in place with every rank's shard of it.
std::shared_ptr<const Op> ReduceScatterOp();
std::shared_ptr<const Op> AllGatherOp();

// Synchronized batch norm (Note [synchronized batch norm] in graph/passes/sync_batch_norm.cc):
// a training batch_norm and its gradient, each split around an all_reduce of per-channel values
// (runtime/cpu/sync_batchnorm.h) on rank `rank` of `world`.
//   batch_norm_stats: x -> stats (W, 4, C)
//   batch_norm_synced: (x, gamma, beta, running_mean, running_var, summed stats) -> (y, save_mean,
//       save_rstd); made from a batch_norm op (nullptr for another op), with its eps and momentum
//   batch_norm_grad_stats: (x, save_mean, save_rstd, dy) -> (dgamma, dbeta, grad_stats (W, 4, C))
//   batch_norm_grad_synced: (x, gamma, save_mean, save_rstd, dy, summed grad_stats) -> dx
std::shared_ptr<const Op> BatchNormStatsOp(int rank, int world);
std::shared_ptr<const Op> BatchNormSyncedOp(const Op& batch_norm);
std::shared_ptr<const Op> BatchNormGradStatsOp(int rank, int world);
std::shared_ptr<const Op> BatchNormGradSyncedOp();

// Offload (graph/passes/schedule_offload.cc). fetch: home -> its staged device copy; write_back:
// (staged copy, home) -> the copy's bytes back home; offloaded_update: an optimizer update (above)
// run over state at its home tier, chunk by chunk in host buffers. All three run on the
// Program's IO stream, but for a fetch that gathers a stage-3 parameter (communication stream).
std::shared_ptr<const Op> FetchOp();
std::shared_ptr<const Op> WriteBackOp();
// `zeroes_gradient`: the gradient operand (an accumulator) is zeroed after the update, in the
// same pass over its chunks, instead of by a zero node that would read and write it again.
std::shared_ptr<const Op> OffloadedUpdateOp(std::shared_ptr<const Op> update,
                                            bool zeroes_gradient = false);
// The update inside an offloaded_update; the same as the Program runs it on each chunk (without
// its slice: CompactUpdateOp); and whether it zeroes its gradient.
const Op& OffloadedInnerUpdate(const Op& offloaded);
const Op& OffloadedChunkUpdate(const Op& offloaded);
bool OffloadedUpdateZeroesGradient(const Op& offloaded);

}  // namespace strata::graph::ops
