// A GPT-2-architecture language model: learned token and position embeddings, pre-LayerNorm
// transformer blocks with GELU (tanh), a final LayerNorm, and the output projection tied to the
// token embedding. Parameter paths are Hugging Face GPT-2's without the "transformer." prefix
// (wte.weight, h.0.attn.c_attn.weight, ...); graph/models/gpt2_checkpoint.h maps the files.
//
//   Gpt gpt(GptConfig{.vocab = 256, .block_size = 256, .layers = 6, .width = 384, .heads = 6});
//   Var logits = gpt.Forward(ids);      // ids (B, T) i32, T <= block_size -> (B, T, vocab)
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "graph/nn/transformer.h"

namespace strata::graph {

struct GptConfig {
  int64_t vocab = 50257;
  int64_t block_size = 1024;  // n_positions
  int layers = 12;
  int64_t width = 768;
  int heads = 12;
  absl::Status Validate() const;  // names the bad field
};

class Gpt : public Module {
 public:
  // GPT-2's initialization: N(0, 0.02) weights and embeddings, N(0, 0.02 / sqrt(2 layers)) for
  // the residual projections (c_proj), zero biases, unit LayerNorms.
  explicit Gpt(const GptConfig& config);
  const GptConfig& config() const { return config_; }
  Var Forward(Var ids);

 private:
  GptConfig config_;
  nn::Embedding* wte_;
  nn::Embedding* wpe_;
  std::vector<nn::TransformerBlock*> h_;
  nn::LayerNorm* ln_f_;
};

}  // namespace strata::graph
