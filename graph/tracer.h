// Tracing: a model's forward is ordinary C++ over symbolic `Var`s; each op call appends a node to
// the Graph. Errors (a shape mismatch deep inside a model) are sticky: the first one is kept with
// the module path it happened in, later calls return invalid Vars, and Compile reports it.
//
//   Tracer t(graph);
//   Var x = t.Input("x", {Shape{8, 784}, DType::kF32});
//   {
//     Tracer::Scope s(t, "fc1");
//     Var y = ops::Linear(x, w, b);          // appends "%3 = linear(%0, %1, %2)" in scope fc1
//   }
//   if (!t.status().ok()) ...                 // "fc1: linear: x f32[8, 784] ... "
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "graph/ir.h"
#include "graph/op.h"

namespace strata::graph {

class Tracer;

// A symbolic tensor: a value in the graph being traced.
class Var {
 public:
  Var() = default;
  Var(Tracer* tracer, ValueId id) : tracer_(tracer), id_(id) {}
  bool valid() const { return tracer_ != nullptr && id_ != kNoValue; }
  ValueId id() const { return id_; }
  Tracer* tracer() const { return tracer_; }
  const TensorType& type() const;
  const Shape& shape() const { return type().shape; }
  DType dtype() const { return type().dtype; }
  int64_t dim(int i) const { return shape().dim(i); }
  int rank() const { return shape().rank(); }

 private:
  Tracer* tracer_ = nullptr;
  ValueId id_ = kNoValue;
};

class Tracer {
 public:
  explicit Tracer(Graph& graph) : graph_(graph) {}

  Graph& graph() { return graph_; }
  const absl::Status& status() const { return status_; }
  // Keeps the first error, prefixed with the current module path.
  void Fail(const absl::Status& error);

  Var NewValue(const TensorType& type, ValueRole role, std::string name = "");
  Var Wrap(ValueId id) { return Var(this, id); }
  // Keeps `v` readable after each step and evaluation through Program::value(v.id()) (logits
  // for accuracy, say): a transient value becomes a kOutput with its own persistent bytes, and
  // the nodes that compute it survive dead-code elimination. `name` labels it in dumps when it
  // has none. Persistent values (parameters, inputs) keep their role; invalid Vars are ignored.
  void MarkOutput(const Var& v, std::string name = "");

  // Appends `op` over `inputs`; outputs get `role` (kActivation while tracing forward, kGradient
  // while autodiff runs; see set_output_role). `wanted[i] == false` skips output i. Returns one
  // Var per op output (invalid where skipped, or everywhere after an error).
  std::vector<Var> Apply(std::shared_ptr<const Op> op, const std::vector<Var>& inputs,
                         const std::vector<bool>& wanted = {});
  Var Apply1(std::shared_ptr<const Op> op, const std::vector<Var>& inputs) {
    return Apply(std::move(op), inputs)[0];
  }

  // A stream number for a random op (dropout): the n-th one traced gets n, so that the same model
  // code gives each call site the same stream on every rank and in every run, and no two call
  // sites of one trace share a stream (Note [dropout masks from a counter] in
  // runtime/cpu/dropout.h). A gradient or a recomputed copy reuses its forward's number.
  uint32_t NewRandomStream() { return next_random_stream_++; }

  ValueRole output_role() const { return output_role_; }
  void set_output_role(ValueRole role) { output_role_ = role; }

  // While a Block is alive, the nodes traced get one block id (Node::block), new for each Block
  // opened outside any other; a Block opened inside another adds nodes to the outer one, so the
  // outermost checkpointed module is the unit that is recomputed.
  int block() const { return block_; }
  class Block {
   public:
    explicit Block(Tracer& t) : t_(t), outer_(t.block_) {
      if (outer_ < 0) t_.block_ = t_.next_block_++;
    }
    ~Block() { t_.block_ = outer_; }
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;

   private:
    Tracer& t_;
    int outer_;
  };

  // Module path of what is traced now ("h.0.attn"): the innermost Scope's.
  std::string scope() const { return scopes_.empty() ? "" : scopes_.back(); }
  class Scope {
   public:
    Scope(Tracer& t, const std::string& path) : t_(t) { t_.scopes_.push_back(path); }
    ~Scope() { t_.scopes_.pop_back(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Tracer& t_;
  };

 private:
  Graph& graph_;
  absl::Status status_;
  std::vector<std::string> scopes_;
  ValueRole output_role_ = ValueRole::kActivation;
  int block_ = -1;
  int next_block_ = 0;
  uint32_t next_random_stream_ = 0;
};

}  // namespace strata::graph
