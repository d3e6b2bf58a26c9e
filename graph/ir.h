// The IR of a compiled training step: SSA values with a shape, dtype and role, and nodes that
// apply an Op to values. Tracing builds the forward part, autodiff appends the backward part and
// the optimizer updates, passes rewrite it, and the Program runs it (DESIGN.md, "The compile
// pipeline").
//
//   Graph g;
//   ValueId x = g.AddValue({Shape{8, 64}, DType::kF32}, ValueRole::kInput, "x");
//   NodeId n = g.AddNode(std::make_shared<GeluOp>(), {x}, {ValueRole::kActivation});
//   std::cout << g.ToString();
//   //   %1 = gelu(%0)  f32[8, 64]
//
// Values are never removed, so a ValueId stays valid through every pass; a node that a pass
// deletes is dropped from the node list, and a value no remaining node produces or reads is dead.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/shard.h"
#include "runtime/dtype.h"
#include "runtime/memory_tier.h"
#include "runtime/shape.h"

namespace strata::graph {

class Op;

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;

struct TensorType {
  Shape shape;
  DType dtype = DType::kF32;
  size_t nbytes() const { return static_cast<size_t>(shape.numel()) * SizeOf(dtype); }
  std::string ToString() const;
  friend bool operator==(const TensorType& a, const TensorType& b) {
    return a.shape == b.shape && a.dtype == b.dtype;
  }
};

// Where a value's bytes live and for how long. Persistent values keep their bytes across steps
// (their own region); transient ones are planned by liveness into the step's arena.
enum class ValueRole : uint8_t {
  kInput,           // a batch tensor the caller feeds each (micro-)step
  kConstant,        // written once at compile time (position ids, the loss seed)
  kParameter,       // a model weight (trainable or frozen)
  kBuffer,          // model state that is not trained (BatchNorm running statistics)
  kOptimizerState,  // AdamW moments, SGD momentum, gradient accumulators
  kOutput,          // a result the caller reads after the step (the loss)
  kActivation,      // forward intermediates
  kGradient,        // backward intermediates, including parameter gradients
  kWorkspace,       // a node's scratch, live only while it runs
  kStaged,          // a device copy of a value whose home is host or NVMe, from its fetch to its
                    // last use (graph/passes/schedule_offload.cc)
  kSpilled,         // an arena value's bytes at its home tier (host or NVMe): a final gradient,
                    // written where it is final and read by its update, or a block input that
                    // recompute keeps, written in the forward and read by the backward
};
const char* ValueRoleName(ValueRole role);
inline bool IsPersistent(ValueRole r) {
  return r != ValueRole::kActivation && r != ValueRole::kGradient && r != ValueRole::kWorkspace &&
         r != ValueRole::kStaged;
}

struct Value {
  ValueId id = kNoValue;
  TensorType type;
  ValueRole role = ValueRole::kActivation;
  std::string name;  // parameter path ("h.0.attn.c_attn.weight"), input name, or empty
  // The tier that holds the value between uses (graph/passes/place_state.cc). kDevice values are
  // bound where compute reads them; others are fetched into kStaged copies. For a gradient (an
  // arena value) a host or NVMe home means it is written there once final.
  MemoryTier home = MemoryTier::kDevice;
  // ZeRO (Note [zero partition] in graph/passes/zero_partition.cc): the value holds only this
  // rank's elements [offset, offset + count) of its type, flattened — a stage-3 parameter at its
  // home, an optimizer state shard, a reduce-scattered gradient. Its bytes are a 1-D tensor of
  // `count` elements; the type stays the whole tensor's, which a gathered copy has.
  std::optional<collectives::ShardRange> shard;
  // A parameter of which only the first `trained_channels` channels train (sparse updates,
  // channels:F): its gradient and optimizer state hold those channels alone (Note [partial
  // channels] in graph/ops/channel_ops.cc). 0: the whole parameter, when it trains.
  int64_t trained_channels = 0;
  // Mixed precision (Note [mixed precision] in graph/passes/mixed_precision.cc): the precision the
  // value is stored in. On CPU its bytes stay those of `type` (f32) and the Program rounds them to
  // this right after the node that writes them runs; f32 (the type's dtype): stored as computed.
  DType precision = DType::kF32;

  int64_t numel() const { return shard ? shard->count : type.shape.numel(); }
  // The bytes the value holds: its shard's, or the whole type's.
  size_t nbytes() const { return static_cast<size_t>(numel()) * SizeOf(type.dtype); }
};

using NodeId = int32_t;

// When a node runs: once per micro-batch (forward, backward, gradient accumulation), or once per
// optimizer step after the last micro-batch (clipping, updates).
enum class Phase : uint8_t { kMicroStep, kUpdate };

struct Node {
  std::shared_ptr<const Op> op;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;  // kNoValue where an optional output is not wanted
  std::string scope;             // the module path that traced it ("h.0.attn"), for dumps
  ValueId workspace = kNoValue;  // set by the memory planner when the op needs scratch
  Phase phase = Phase::kMicroStep;
  // The checkpointed block (Layer::SetRecomputeBoundary) a forward node was traced in, numbered
  // in trace order; -1 outside every block. Read by RecomputeActivations.
  int32_t block = -1;
  bool recomputed = false;  // a copy that RecomputeActivations inserted into the backward
};

class Graph {
 public:
  ValueId AddValue(TensorType type, ValueRole role, std::string name = "");
  // Appends a node over existing values; `outputs` has one entry per op output (kNoValue for an
  // optional output nobody wants). The tracer and autodiff create the output values first.
  NodeId AddNode(std::shared_ptr<const Op> op, std::vector<ValueId> inputs,
                 std::vector<ValueId> outputs, std::string scope = "");

  const Value& value(ValueId id) const { return values_[id]; }
  Value& mutable_value(ValueId id) { return values_[id]; }
  int num_values() const { return static_cast<int>(values_.size()); }
  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& mutable_nodes() { return nodes_; }
  // Drops node i where remove[i] (remove has one entry per node), keeping the others' order.
  void RemoveNodes(const std::vector<bool>& remove);

  // One line per node, values as %id with their type, parameters by name:
  //   %12 = linear(%10, %3 h.0.attn.c_attn.weight, %4 h.0.attn.c_attn.bias)  f32[8, 256, 1152]
  std::string ToString() const;
  std::string ValueToString(ValueId id) const;

  // Bytes of a kConstant value, written into it once when the Program is built.
  void SetConstant(ValueId id, std::string bytes) { constants_[id] = std::move(bytes); }
  const std::map<ValueId, std::string>& constants() const { return constants_; }

 private:
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::map<ValueId, std::string> constants_;
};

}  // namespace strata::graph
