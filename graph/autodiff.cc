#include "graph/autodiff.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/ops/ops.h"

namespace strata::graph {

absl::StatusOr<Gradients> Differentiate(Tracer& tracer, Var loss, Var seed,
                                        const std::vector<ValueId>& wrt) {
  STRATA_RETURN_IF_ERROR(tracer.status());
  Graph& g = tracer.graph();
  if (!loss.valid() || loss.shape().numel() != 1 || loss.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "autodiff: the loss must be an f32 scalar, got ",
        loss.valid() ? loss.type().ToString() : std::string("no value")));
  }
  const int forward_nodes = static_cast<int>(g.nodes().size());

  // Forward pass: which values depend on something in `wrt` (and so need a gradient).
  std::vector<bool> depends(g.num_values(), false);
  for (ValueId v : wrt) depends[v] = true;
  for (int n = 0; n < forward_nodes; ++n) {
    const Node& node = g.nodes()[n];
    bool any = false;
    for (ValueId in : node.inputs) any = any || depends[in];
    if (!any) continue;
    for (ValueId out : node.outputs) {
      if (out != kNoValue) depends[out] = true;
    }
  }
  if (!depends[loss.id()]) {
    return absl::InvalidArgumentError(
        "autodiff: the loss does not depend on any trainable parameter");
  }

  // Backward: contributions per value, summed when a value has more than one consumer.
  std::map<ValueId, std::vector<ValueId>> contributions;
  contributions[loss.id()].push_back(seed.id());
  auto total = [&](ValueId v) -> ValueId {
    auto it = contributions.find(v);
    if (it == contributions.end()) return kNoValue;
    std::vector<ValueId>& parts = it->second;
    while (parts.size() > 1) {  // a chain of adds, first contributions first (deterministic)
      Var sum = ops::Add(tracer.Wrap(parts[0]), tracer.Wrap(parts[1]));
      parts.erase(parts.begin(), parts.begin() + 2);
      parts.insert(parts.begin(), sum.id());
    }
    return parts.empty() ? kNoValue : parts[0];
  };

  const ValueRole saved_role = tracer.output_role();
  tracer.set_output_role(ValueRole::kGradient);
  for (int n = forward_nodes - 1; n >= 0; --n) {
    const Node node = g.nodes()[n];  // a copy: Gradient appends nodes to the same vector
    GradientArgs args{tracer, node, {}, {}, {}};
    bool any_out = false;
    for (ValueId out : node.outputs) {
      const ValueId d = out == kNoValue ? kNoValue : total(out);
      args.output_grads.push_back(d);
      any_out = any_out || d != kNoValue;
    }
    bool any_in = false;
    for (ValueId in : node.inputs) {
      args.needs_grad.push_back(depends[in]);
      any_in = any_in || depends[in];
    }
    if (!any_out || !any_in) continue;
    args.input_grads.assign(node.inputs.size(), kNoValue);
    Tracer::Scope scope(tracer, node.scope);
    if (absl::Status s = node.op->Gradient(args); !s.ok()) {
      tracer.set_output_role(saved_role);
      return absl::Status(s.code(), absl::StrCat("autodiff of ", node.op->name(),
                                                 node.scope.empty() ? "" : " in " + node.scope,
                                                 ": ", s.message()));
    }
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (args.input_grads[i] != kNoValue && depends[node.inputs[i]]) {
        contributions[node.inputs[i]].push_back(args.input_grads[i]);
      }
    }
  }
  tracer.set_output_role(saved_role);

  Gradients result;
  for (ValueId v : wrt) {
    const ValueId d = total(v);
    if (d == kNoValue) {
      return absl::InvalidArgumentError(absl::StrCat(
          "autodiff: ", g.ValueToString(v), " does not reach the loss (an unused parameter?)"));
    }
    result.of[v] = d;
  }
  STRATA_RETURN_IF_ERROR(tracer.status());
  return result;
}

}  // namespace strata::graph
