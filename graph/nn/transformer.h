// GPT-2 transformer blocks, named as Hugging Face's GPT-2 (attn.c_attn, mlp.c_fc, ...).
//
//   auto* block = Add<TransformerBlock>("0", /*width=*/384, /*heads=*/6, /*layers=*/6);
//   Var y = (*block)(x);            // x (B, T, 384): x + attn(ln_1(x)), then + mlp(ln_2(.))
#pragma once

#include <cstdint>

#include "graph/nn/layers.h"

namespace strata::graph::nn {

// c_attn: Linear(C, 3C) packed [q | k | v]; causal attention over `heads`; c_proj: Linear(C, C).
class CausalSelfAttention : public Layer {
 public:
  CausalSelfAttention(int64_t width, int heads);
  Var Forward(Var x) override;
  Linear* c_attn() const { return c_attn_; }
  Linear* c_proj() const { return c_proj_; }

 private:
  int heads_;
  Linear* c_attn_;
  Linear* c_proj_;
};

// c_fc: Linear(C, 4C), GELU (tanh), c_proj: Linear(4C, C).
class Mlp : public Layer {
 public:
  explicit Mlp(int64_t width);
  Var Forward(Var x) override;
  Linear* c_fc() const { return c_fc_; }
  Linear* c_proj() const { return c_proj_; }

 private:
  Linear* c_fc_;
  Linear* c_proj_;
};

// Pre-LayerNorm block: x + attn(ln_1(x)), then + mlp(ln_2(x)).
class TransformerBlock : public Layer {
 public:
  TransformerBlock(int64_t width, int heads);
  Var Forward(Var x) override;
  CausalSelfAttention* attn() const { return attn_; }
  Mlp* mlp() const { return mlp_; }

 private:
  LayerNorm* ln_1_;
  CausalSelfAttention* attn_;
  LayerNorm* ln_2_;
  Mlp* mlp_;
};

}  // namespace strata::graph::nn
