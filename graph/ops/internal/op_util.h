// Helpers shared by the op structs in graph/ops/.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/tracer.h"

namespace strata::graph::ops::internal {

// "linear: x f32[8, 384] ..." style errors at trace time.
template <typename... Args>
absl::Status TypeError(absl::string_view op, const Args&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", parts...));
}

inline absl::Status ExpectInputs(absl::string_view op, absl::Span<const TensorType> in,
                                 size_t count) {
  if (in.size() != count) {
    return TypeError(op, "expects ", count, " inputs, got ", in.size());
  }
  return absl::OkStatus();
}

inline absl::Status ExpectF32(absl::string_view op, absl::string_view name, const TensorType& t) {
  if (t.dtype != DType::kF32) return TypeError(op, name, " is ", t.ToString(), ", expected f32");
  return absl::OkStatus();
}

// True when `tail` equals the trailing dimensions of `full` (a bias-like broadcast).
inline bool EndsWith(const Shape& full, const Shape& tail) {
  if (tail.rank() > full.rank()) return false;
  for (int i = 1; i <= tail.rank(); ++i) {
    if (full.dim(-i) != tail.dim(-i)) return false;
  }
  return true;
}

// The Var of a value of the node being differentiated.
inline Var In(GradientArgs& g, int i) { return g.tracer.Wrap(g.node.inputs[i]); }
inline Var Out(GradientArgs& g, int i) { return g.tracer.Wrap(g.node.outputs[i]); }
inline Var Dout(GradientArgs& g, int i) { return g.tracer.Wrap(g.output_grads[i]); }

// Applies a gradient op whose outputs map one to one onto the node's inputs listed in
// `input_index`, asking only for the outputs whose input needs a gradient.
inline absl::Status ApplyGradient(GradientArgs& g, std::shared_ptr<const Op> op,
                                  const std::vector<Var>& inputs,
                                  const std::vector<int>& input_index) {
  std::vector<bool> wanted;
  for (int i : input_index) wanted.push_back(i >= 0 && g.needs_grad[i]);
  std::vector<Var> outs = g.tracer.Apply(std::move(op), inputs, wanted);
  for (size_t k = 0; k < input_index.size(); ++k) {
    if (input_index[k] >= 0 && g.needs_grad[input_index[k]]) {
      g.input_grads[input_index[k]] = outs[k].id();
    }
  }
  return g.tracer.status();
}

// Appends `op` to the trace the inputs belong to; an invalid input (after an earlier error)
// gives an invalid result, which the tracer has already reported.
inline std::vector<Var> Apply(std::shared_ptr<const Op> op, const std::vector<Var>& inputs,
                              const std::vector<bool>& wanted = {}) {
  for (const Var& v : inputs) {
    if (!v.valid()) return std::vector<Var>(std::max<size_t>(1, wanted.size()));
  }
  return inputs.front().tracer()->Apply(std::move(op), inputs, wanted);
}
inline Var Apply1(std::shared_ptr<const Op> op, const std::vector<Var>& inputs) {
  return Apply(std::move(op), inputs)[0];
}

}  // namespace strata::graph::ops::internal
