// Building blocks with PyTorch's parameter names, shapes and default initializers.
//
//   auto* fc = Add<Linear>("fc", 384, 1536);          // fc.weight (1536, 384), fc.bias (1536)
//   Var y = (*fc)(x);                                  // x (..., 384) -> (..., 1536)
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "graph/module.h"
#include "graph/ops/ops.h"

namespace strata::graph::nn {

// weight (out, in), bias (out); both U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear.
class Linear : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Var Forward(Var x) override;
  Parameter* weight() const { return weight_; }
  Parameter* bias() const { return bias_; }

 private:
  Parameter* weight_;
  Parameter* bias_ = nullptr;
};

// weight (num, dim) ~ N(0, 1); ids (...) -> (..., dim).
class Embedding : public Layer {
 public:
  Embedding(int64_t num, int64_t dim);
  Var Forward(Var ids) override;
  Parameter* weight() const { return weight_; }

 private:
  Parameter* weight_;
};

// weight (dim) = 1, bias (dim) = 0 over the last dimension.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Var Forward(Var x) override;

 private:
  Parameter* weight_;
  Parameter* bias_;
  float eps_;
};

// x (..., C) -> x / sqrt(mean(x^2 over C) + eps) * weight, as Llama's (and PyTorch's RMSNorm).
class RmsNorm : public Layer {
 public:
  explicit RmsNorm(int64_t dim, float eps = 1e-6f);
  Var Forward(Var x) override;
  Parameter* weight() const { return weight_; }

 private:
  Parameter* weight_;
  float eps_;
};

struct Conv2dOptions {
  int64_t kernel = 3;
  cpu::Conv2dParams params;  // stride, padding, dilation, groups
  bool bias = true;
};

// weight (out, in / groups, k, k), bias (out); U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Layer {
 public:
  Conv2d(int64_t in, int64_t out, const Conv2dOptions& options);
  Var Forward(Var x) override;
  Parameter* weight() const { return weight_; }
  const cpu::Conv2dParams& params() const { return params_; }

 private:
  Parameter* weight_;
  Parameter* bias_ = nullptr;
  cpu::Conv2dParams params_;
};

// torch.nn.BatchNorm2d over (N, C, H, W): weight (C) = 1 and bias (C) = 0 train;
// running_mean (C) = 0 and running_var (C) = 1 are buffers. By default in training mode (a step
// normalizes with the batch's statistics and moves the running ones by `momentum`; Evaluate uses
// the running ones). Frozen (SetFrozen(true) before compiling) it always normalizes with the
// running statistics, which nothing updates: sparse fine-tuning of a pretrained model.
class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Var Forward(Var x) override;
  void SetFrozen(bool frozen) { frozen_ = frozen; }
  bool frozen() const { return frozen_; }

 private:
  Parameter* weight_;
  Parameter* bias_;
  Parameter* running_mean_;
  Parameter* running_var_;
  float eps_, momentum_;
  bool frozen_ = false;
};

class ReLU : public Layer {
 public:
  Var Forward(Var x) override { return ops::Relu(x); }
};
class ReLU6 : public Layer {
 public:
  Var Forward(Var x) override { return ops::Relu6(x); }
};
// Zeroes each element with probability p in a training step and scales the rest by 1 / (1 - p),
// as torch.nn.Dropout; the identity in Program::Evaluate (ops::Dropout).
class Dropout : public Layer {
 public:
  explicit Dropout(float p) : p_(p) {}
  Var Forward(Var x) override;

 private:
  float p_;
};
class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(cpu::Pool2dParams p) : p_(p) {}
  Var Forward(Var x) override { return ops::MaxPool2d(x, p_); }

 private:
  cpu::Pool2dParams p_;
};
class AvgPool2d : public Layer {
 public:
  explicit AvgPool2d(cpu::Pool2dParams p) : p_(p) {}
  Var Forward(Var x) override { return ops::AvgPool2d(x, p_); }

 private:
  cpu::Pool2dParams p_;
};
// (N, C, H, W) -> (N, C).
class GlobalAvgPool : public Layer {
 public:
  Var Forward(Var x) override { return ops::GlobalAvgPool(x); }
};

// Layers applied in order, named "0", "1", ... as torch.nn.Sequential.
class Sequential : public Layer {
 public:
  template <typename M, typename... Args>
  M* Append(Args&&... args) {
    M* m = Add<M>(std::to_string(layers_.size()), std::forward<Args>(args)...);
    layers_.push_back(m);
    return m;
  }
  Var Forward(Var x) override;

 private:
  std::vector<Layer*> layers_;
};

}  // namespace strata::graph::nn
