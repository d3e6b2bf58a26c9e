#include "graph/nn/transformer.h"

namespace strata::graph::nn {

CausalSelfAttention::CausalSelfAttention(int64_t width, int heads)
    : heads_(heads),
      c_attn_(Add<Linear>("c_attn", width, 3 * width)),
      c_proj_(Add<Linear>("c_proj", width, width)) {}

Var CausalSelfAttention::Forward(Var x) {
  Var qkv = (*c_attn_)(x);
  Var y;
  {
    TraceScope scope(*this, x);
    y = ops::CausalSelfAttention(qkv, heads_);
  }
  return (*c_proj_)(y);
}

Mlp::Mlp(int64_t width)
    : c_fc_(Add<Linear>("c_fc", width, 4 * width)), c_proj_(Add<Linear>("c_proj", 4 * width, width)) {}

Var Mlp::Forward(Var x) {
  Var h = (*c_fc_)(x);
  {
    TraceScope scope(*this, x);
    h = ops::Gelu(h);
  }
  return (*c_proj_)(h);
}

TransformerBlock::TransformerBlock(int64_t width, int heads)
    : ln_1_(Add<LayerNorm>("ln_1", width)),
      attn_(Add<CausalSelfAttention>("attn", width, heads)),
      ln_2_(Add<LayerNorm>("ln_2", width)),
      mlp_(Add<Mlp>("mlp", width)) {}

Var TransformerBlock::Forward(Var x) {
  Var a = (*attn_)((*ln_1_)(x));
  TraceScope scope(*this, x);
  x = ops::Add(x, a);
  Var m = (*mlp_)((*ln_2_)(x));
  return ops::Add(x, m);
}

}  // namespace strata::graph::nn
