#include "graph/ir.h"

#include "absl/strings/str_cat.h"
#include "graph/op.h"

namespace strata::graph {

std::string TensorType::ToString() const {
  return absl::StrCat(DTypeName(dtype), shape.ToString());
}

const char* ValueRoleName(ValueRole role) {
  switch (role) {
    case ValueRole::kInput: return "input";
    case ValueRole::kConstant: return "constant";
    case ValueRole::kParameter: return "parameter";
    case ValueRole::kBuffer: return "buffer";
    case ValueRole::kOptimizerState: return "optimizer_state";
    case ValueRole::kOutput: return "output";
    case ValueRole::kActivation: return "activation";
    case ValueRole::kGradient: return "gradient";
    case ValueRole::kWorkspace: return "workspace";
    case ValueRole::kStaged: return "staged";
    case ValueRole::kSpilled: return "spilled";
  }
  return "unknown";
}

ValueId Graph::AddValue(TensorType type, ValueRole role, std::string name) {
  const ValueId id = static_cast<ValueId>(values_.size());
  Value v;
  v.id = id;
  v.type = std::move(type);
  v.role = role;
  v.name = std::move(name);
  values_.push_back(std::move(v));
  return id;
}

NodeId Graph::AddNode(std::shared_ptr<const Op> op, std::vector<ValueId> inputs,
                      std::vector<ValueId> outputs, std::string scope) {
  nodes_.push_back(Node{std::move(op), std::move(inputs), std::move(outputs), std::move(scope)});
  return static_cast<NodeId>(nodes_.size() - 1);
}

void Graph::RemoveNodes(const std::vector<bool>& remove) {
  std::vector<Node> kept;
  kept.reserve(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!remove[i]) kept.push_back(std::move(nodes_[i]));
  }
  nodes_ = std::move(kept);
}

std::string Graph::ValueToString(ValueId id) const {
  if (id == kNoValue) return "_";
  const Value& v = values_[id];
  std::string home =
      v.home == MemoryTier::kDevice ? "" : absl::StrCat(" @", MemoryTierName(v.home));
  if (v.shard) absl::StrAppend(&home, " [shard ", v.shard->offset, "+", v.shard->count, "]");
  return v.name.empty() ? absl::StrCat("%", id, home) : absl::StrCat("%", id, " ", v.name, home);
}

std::string Graph::ToString() const {
  std::string s;
  for (const Value& v : values_) {
    if (!IsPersistent(v.role)) continue;
    absl::StrAppend(&s, ValueRoleName(v.role), " ", ValueToString(v.id), " ",
                    v.type.ToString(), "\n");
  }
  for (const Node& n : nodes_) {
    std::string outs, ins, types;
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      absl::StrAppend(&outs, i ? ", " : "", n.outputs[i] == kNoValue ? "_" : absl::StrCat("%", n.outputs[i]));
      if (n.outputs[i] != kNoValue) {
        const Value& out = values_[n.outputs[i]];
        // "f32[8, 64] as bf16": stored in the working precision (Note [mixed precision]).
        absl::StrAppend(&types, types.empty() ? "" : ", ", out.type.ToString(),
                        out.precision == DType::kF32 ? ""
                                                        : absl::StrCat(" as ", DTypeName(out.precision)));
      }
    }
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      absl::StrAppend(&ins, i ? ", " : "", ValueToString(n.inputs[i]));
    }
    const std::string attrs = n.op->Attributes();
    absl::StrAppend(&s, outs.empty() ? "" : absl::StrCat(outs, " = "), n.op->name(),
                    attrs.empty() ? "" : absl::StrCat("[", attrs, "]"), "(", ins, ")",
                    types.empty() ? "" : absl::StrCat("  ", types),
                    n.scope.empty() ? "" : absl::StrCat("  # ", n.scope),
                    n.phase == Phase::kUpdate ? "  (update)" : "",
                    n.recomputed ? absl::StrCat("  (recomputed, block ", n.block, ")") : "", "\n");
  }
  return s;
}

absl::Status Op::Gradient(GradientArgs& args) const {
  return absl::UnimplementedError(absl::StrCat(name(), " has no gradient"));
}

}  // namespace strata::graph
