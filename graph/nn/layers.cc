#include "graph/nn/layers.h"

#include <cmath>

namespace strata::graph::nn {
namespace {
Init FanInUniform(double fan_in) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(fan_in) : 0.0;
  return Init::Uniform(-bound, bound);
}
}  // namespace

Linear::Linear(int64_t in, int64_t out, bool bias)
    : weight_(AddParameter("weight", Shape{out, in}, FanInUniform(in))) {
  if (bias) bias_ = AddParameter("bias", Shape{out}, FanInUniform(in));
}

Var Linear::Forward(Var x) {
  TraceScope scope(*this, x);
  return ops::Linear(x, weight_->var(), bias_ ? bias_->var() : Var());
}

Embedding::Embedding(int64_t num, int64_t dim)
    : weight_(AddParameter("weight", Shape{num, dim}, Init::Normal(0, 1))) {}

Var Embedding::Forward(Var ids) {
  TraceScope scope(*this, ids);
  return ops::Embedding(ids, weight_->var());
}

LayerNorm::LayerNorm(int64_t dim, float eps)
    : weight_(AddParameter("weight", Shape{dim}, Init::Ones())),
      bias_(AddParameter("bias", Shape{dim}, Init::Zeros())),
      eps_(eps) {}

Var LayerNorm::Forward(Var x) {
  TraceScope scope(*this, x);
  return ops::LayerNorm(x, weight_->var(), bias_->var(), eps_);
}

RmsNorm::RmsNorm(int64_t dim, float eps)
    : weight_(AddParameter("weight", Shape{dim}, Init::Ones())), eps_(eps) {}

Var RmsNorm::Forward(Var x) {
  TraceScope scope(*this, x);
  return ops::RmsNorm(x, weight_->var(), eps_);
}

Var Dropout::Forward(Var x) {
  TraceScope scope(*this, x);
  return ops::Dropout(x, p_);
}

Conv2d::Conv2d(int64_t in, int64_t out, const Conv2dOptions& o) : params_(o.params) {
  const int64_t per_group = o.params.groups > 0 ? in / o.params.groups : in;
  const Init init = FanInUniform(static_cast<double>(per_group * o.kernel * o.kernel));
  weight_ = AddParameter("weight", Shape{out, per_group, o.kernel, o.kernel}, init);
  if (o.bias) bias_ = AddParameter("bias", Shape{out}, init);
}

Var Conv2d::Forward(Var x) {
  TraceScope scope(*this, x);
  return ops::Conv2d(x, weight_->var(), bias_ ? bias_->var() : Var(), params_);
}

BatchNorm2d::BatchNorm2d(int64_t channels, float eps, float momentum)
    : weight_(AddParameter("weight", Shape{channels}, Init::Ones())),
      bias_(AddParameter("bias", Shape{channels}, Init::Zeros())),
      running_mean_(AddBuffer("running_mean", Shape{channels}, Init::Zeros())),
      running_var_(AddBuffer("running_var", Shape{channels}, Init::Ones())),
      eps_(eps),
      momentum_(momentum) {}

Var BatchNorm2d::Forward(Var x) {
  TraceScope scope(*this, x);
  if (frozen_) {
    return ops::BatchNorm2dFrozen(x, weight_->var(), bias_->var(), running_mean_->var(),
                                  running_var_->var(), eps_);
  }
  return ops::BatchNorm2d(x, weight_->var(), bias_->var(), running_mean_->var(),
                          running_var_->var(), eps_, momentum_);
}

Var Sequential::Forward(Var x) {
  for (Layer* l : layers_) x = (*l)(x);
  return x;
}

}  // namespace strata::graph::nn
