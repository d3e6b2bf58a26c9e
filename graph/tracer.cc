#include "graph/tracer.h"

#include "absl/strings/str_cat.h"

namespace strata::graph {

const TensorType& Var::type() const { return tracer_->graph().value(id_).type; }

void Tracer::Fail(const absl::Status& error) {
  if (!status_.ok()) return;
  const std::string where = scope();
  status_ = where.empty() ? error
                          : absl::Status(error.code(), absl::StrCat(where, ": ", error.message()));
}

void Tracer::MarkOutput(const Var& v, std::string name) {
  if (!v.valid() || v.tracer() != this) return;
  Value& value = graph_.mutable_value(v.id());
  if (!IsPersistent(value.role)) value.role = ValueRole::kOutput;
  if (value.name.empty()) value.name = std::move(name);
}

Var Tracer::NewValue(const TensorType& type, ValueRole role, std::string name) {
  return Var(this, graph_.AddValue(type, role, std::move(name)));
}

std::vector<Var> Tracer::Apply(std::shared_ptr<const Op> op, const std::vector<Var>& inputs,
                               const std::vector<bool>& wanted) {
  std::vector<TensorType> in_types;
  std::vector<ValueId> in_ids;
  bool ok = status_.ok();
  for (const Var& v : inputs) {
    if (!v.valid() || v.tracer() != this) {
      if (ok) Fail(absl::InvalidArgumentError(absl::StrCat(op->name(), ": input ", in_ids.size(),
                                                            " is not a value of this trace")));
      ok = false;
      break;
    }
    in_types.push_back(v.type());
    in_ids.push_back(v.id());
  }
  absl::StatusOr<std::vector<TensorType>> out_types;
  if (ok) {
    out_types = op->Infer(in_types);
    if (!out_types.ok()) {
      Fail(out_types.status());
      ok = false;
    }
  }
  if (!ok) return std::vector<Var>(std::max<size_t>(1, wanted.size()));
  std::vector<Var> outs;
  std::vector<ValueId> out_ids;
  for (size_t i = 0; i < out_types->size(); ++i) {
    if (i < wanted.size() && !wanted[i]) {
      outs.emplace_back();
      out_ids.push_back(kNoValue);
    } else {
      outs.push_back(NewValue((*out_types)[i], output_role_));
      out_ids.push_back(outs.back().id());
    }
  }
  const NodeId node = graph_.AddNode(std::move(op), std::move(in_ids), std::move(out_ids), scope());
  graph_.mutable_nodes()[node].block = block_;
  if (outs.empty()) outs.emplace_back();
  return outs;
}

}  // namespace strata::graph
