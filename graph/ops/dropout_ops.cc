// dropout and its gradient: a mask drawn from counters, never stored (Note [dropout masks from a
// counter] in runtime/cpu/dropout.h).
//
// Note [dropout in the step]
// The kernel needs, besides p, the run's seed, the step, a stream per call site and the index in
// the step's global batch of the tensor's first element. The seed, the step and the micro-batch
// come from StepScalars at run time (a resumed run restores the step counter, so it draws the
// masks of the run it resumes); the stream is Tracer::NewRandomStream's number, fixed at trace
// time. The first index is micro_batch * numel(x), micro_batch = i * world + rank: the global
// batch is k micro-batches of consecutive rows, and rank r's micro-batch i is the r-th of `world`
// equal blocks of micro-batch i, so the pieces in that order are consecutive, equal blocks of the
// global batch. For a tensor whose elements are its piece's rows in order (the batch dimension
// first: activations (B, ...), (B * T, C)), element j of piece m is element m * numel + j of the
// same tensor over the whole global batch. One process with one micro-batch of 8 rows, two
// micro-batches of 4, two ranks of 4, and two ranks of two micro-batches of 2 draw the same mask. The
// gradient recomputes the forward's mask from the same counters, in the same micro-batch; so does
// a recomputed forward (graph/passes/recompute.cc). Program::Evaluate (training false) copies.
#include <cstdint>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Dout;
using internal::TypeError;

absl::Status CheckP(absl::string_view op, float p) {
  if (!(p >= 0.0f && p < 1.0f)) return TypeError(op, "p = ", p, " must be in [0, 1)");
  return absl::OkStatus();
}

// Applies the mask of the node's call site and micro-batch to in[0]: the forward to x, the
// gradient to dy.
absl::Status RunMasked(absl::string_view op, const RunArgs& a, float p, uint32_t stream,
                       bool forward) {
  if (a.scalars == nullptr) {
    return absl::InternalError(absl::StrCat(op, ": run without step scalars"));
  }
  const StepScalars& s = *a.scalars;
  if (s.step < 0 || s.step > std::numeric_limits<uint32_t>::max()) {
    return absl::OutOfRangeError(absl::StrCat(op, ": step ", s.step,
                                              " does not fit the generator's 32-bit step word"));
  }
  const cpu::DropoutParams d{.p = s.training ? p : 0.0f,
                             .seed = s.seed,
                             .step = static_cast<uint32_t>(s.step),
                             .stream = stream,
                             .first_index = s.micro_batch * a.in[0].numel()};
  return forward ? STRATA_KERNEL(a, DropoutForward, a.in[0], d, a.out[0])
                 : STRATA_KERNEL(a, DropoutBackward, a.in[0], d, a.out[0]);
}

// dy -> dx = dy * mask / (1 - p), the forward's mask drawn again.
class DropoutGradOp final : public Op {
 public:
  DropoutGradOp(float p, uint32_t stream) : p_(p), stream_(stream) {}
  OpKind kind() const override { return OpKind::kDropoutGrad; }
  std::string Attributes() const override { return absl::StrCat("p=", p_, " stream=", stream_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "dy", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  absl::Status Run(const RunArgs& a) const override {
    return RunMasked(name(), a, p_, stream_, /*forward=*/false);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  float p_;
  uint32_t stream_;
};

class DropoutOp final : public Op {
 public:
  DropoutOp(float p, uint32_t stream) : p_(p), stream_(stream) {}
  OpKind kind() const override { return OpKind::kDropout; }
  std::string Attributes() const override { return absl::StrCat("p=", p_, " stream=", stream_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    STRATA_RETURN_IF_ERROR(CheckP(name(), p_));
    return std::vector<TensorType>{in[0]};
  }
  // Elementwise: y may overwrite x (the backward never reads x).
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  absl::Status Run(const RunArgs& a) const override {
    return RunMasked(name(), a, p_, stream_, /*forward=*/true);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<DropoutGradOp>(p_, stream_), {Dout(g, 0)},
                                   {0});
  }

 private:
  float p_;
  uint32_t stream_;
};

}  // namespace

Var Dropout(Var x, float p) {
  if (!x.valid()) return Var();
  // p = 0 drops nothing in training either: no node, no stream.
  if (p == 0.0f) return x;
  return x.tracer()->Apply1(std::make_shared<DropoutOp>(p, x.tracer()->NewRandomStream()), {x});
}

}  // namespace strata::graph::ops
