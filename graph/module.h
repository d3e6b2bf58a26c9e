// The model API: a Module owns named parameters, buffers and submodules, and its forward is
// ordinary C++ over symbolic Vars (graph/tracer.h). Parameters get their full name path
// ("h.3.attn.c_attn.weight") from the tree; Compile creates one IR value per parameter and traces
// the forward once.
//
//   class TwoLayer : public Layer {
//    public:
//     TwoLayer() : fc1_(Add<Linear>("fc1", 784, 128)), fc2_(Add<Linear>("fc2", 128, 10)) {}
//     Var Forward(Var x) override { return (*fc2_)(ops::Relu((*fc1_)(x))); }
//    private:
//     Linear* fc1_;
//     Linear* fc2_;
//   };
//
// Parameters are only descriptions (shape, initializer, trainable); their bytes live in the
// compiled Program, which initializes them, loads and saves them (graph/program.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graph/tracer.h"
#include "runtime/shape.h"

namespace strata::graph {

// How a parameter's initial values are drawn (from the compile seed and the parameter's path).
struct Init {
  enum Kind { kConstant, kNormal, kUniform };
  Kind kind = kConstant;
  double a = 0.0;  // kConstant: the value; kNormal: mean; kUniform: low
  double b = 0.0;  // kNormal: standard deviation; kUniform: high

  static Init Zeros() { return {kConstant, 0.0, 0.0}; }
  static Init Ones() { return {kConstant, 1.0, 0.0}; }
  static Init Normal(double mean, double std) { return {kNormal, mean, std}; }
  static Init Uniform(double low, double high) { return {kUniform, low, high}; }
  std::string ToString() const;
};

class Parameter {
 public:
  Parameter(std::string name, Shape shape, Init init, bool trainable, bool buffer)
      : name_(std::move(name)), shape_(std::move(shape)), init_(init), trainable_(trainable),
        buffer_(buffer) {}
  const std::string& name() const { return name_; }  // local ("weight")
  const Shape& shape() const { return shape_; }
  const Init& init() const { return init_; }
  bool trainable() const { return trainable_ && !buffer_; }
  bool is_buffer() const { return buffer_; }
  void set_trainable(bool t) {  // and trains all of its channels
    trainable_ = t;
    trained_channels_ = 0;
  }
  // Sparse updates (channels:F, graph/sparse_update.h): only the first `k` channels of the
  // weight train, its input channels (or, for a depthwise convolution, its own); 0: all of it.
  int64_t trained_channels() const { return trained_channels_; }
  void set_trained_channels(int64_t k) { trained_channels_ = k; }
  void set_init(Init init) { init_ = init; }
  // The value it is bound to in the trace being compiled.
  Var var() const { return var_; }
  void Bind(Var v) { var_ = v; }

 private:
  std::string name_;
  Shape shape_;
  Init init_;
  bool trainable_;
  bool buffer_;
  int64_t trained_channels_ = 0;
  Var var_;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Full path of this module from the root ("h.3.attn"; empty for the root).
  std::string path() const;
  // Visits every parameter and buffer, this module's first, then submodules' in the order they
  // were added, with the full path ("h.3.attn.c_attn.weight").
  void ForEachParameter(const std::function<void(const std::string&, Parameter&)>& fn);
  // Visits this module and every module below it, parents first, with the full path.
  void ForEachModule(const std::function<void(const std::string&, Module&)>& fn);
  // Freezes or unfreezes every parameter below this module.
  void SetTrainable(bool trainable);
  // nullptr when there is no parameter at `path`.
  Parameter* FindParameter(const std::string& path);

 // Registration, normally called from a constructor; public so that containers (a list of blocks
  // under "h") can be filled from outside.
  Parameter* AddParameter(std::string name, Shape shape, Init init, bool trainable = true);
  Parameter* AddBuffer(std::string name, Shape shape, Init init);
  template <typename M, typename... Args>
  M* Add(std::string name, Args&&... args) {
    auto m = std::make_unique<M>(std::forward<Args>(args)...);
    M* raw = m.get();
    AddModule(std::move(name), std::move(m));
    return raw;
  }
  void AddModule(std::string name, std::unique_ptr<Module> m);

 protected:
  // While alive, nodes traced on `any`'s trace are labelled with this module's path.
  class TraceScope {
   public:
    TraceScope(const Module& m, const Var& any);
    ~TraceScope();
    TraceScope(const TraceScope&) = delete;
    TraceScope& operator=(const TraceScope&) = delete;

   private:
    std::unique_ptr<Tracer::Scope> scope_;
  };

 private:
  std::string name_;
  Module* parent_ = nullptr;
  std::vector<std::unique_ptr<Parameter>> params_;
  std::vector<std::unique_ptr<Module>> children_;
};

// A module with one input and one output, so that it can sit in a Sequential.
class Layer : public Module {
 public:
  virtual Var Forward(Var x) = 0;
  // Forward, with the nodes it traces marked as one checkpointed block when this layer is a
  // recompute boundary.
  Var operator()(Var x);
  // Marks this layer as a checkpointed block: with TrainOptions::recompute, only its input and
  // the outputs read outside it stay alive through the forward; the rest of its activations are
  // recomputed in the backward (graph/passes/recompute.cc). Call it on `(*layer)(x)` callers'
  // layers: a direct call to Forward is not a block.
  void SetRecomputeBoundary(bool boundary) { recompute_boundary_ = boundary; }
  bool recompute_boundary() const { return recompute_boundary_; }

 private:
  bool recompute_boundary_ = false;
};

}  // namespace strata::graph
