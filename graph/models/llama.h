// A Llama-architecture language model, as Hugging Face's LlamaForCausalLM: token embeddings,
// pre-RMSNorm decoder layers with rotary position embeddings, grouped-query attention and a SwiGLU
// MLP, a final RMSNorm and an output head (untied, or tied to the embeddings). Parameter paths and
// layouts are transformers' own (model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight,
// ..., lm_head.weight), so a model.safetensors it writes loads as it is
// (graph/models/llama_checkpoint.h). Built only from the public API: nn layers and graph/ops.
//
//   Llama llama(LlamaConfig{.vocab = 32000, .hidden = 512, .intermediate = 1376, .layers = 8,
//                           .heads = 8, .kv_heads = 2, .max_positions = 1024});
//   Var logits = llama.Forward(ids);    // ids (B, T) i32, T <= max_positions -> (B, T, vocab)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/nn/layers.h"
#include "runtime/cpu/rotary.h"

namespace strata::graph {

struct LlamaConfig {
  int64_t vocab = 32000;          // vocab_size
  int64_t hidden = 4096;          // hidden_size
  int64_t intermediate = 11008;   // intermediate_size (the SwiGLU width)
  int layers = 32;                // num_hidden_layers
  int heads = 32;                 // num_attention_heads
  int kv_heads = 32;              // num_key_value_heads (< heads: grouped-query attention)
  int64_t head_dim = 0;           // 0: hidden / heads
  int64_t max_positions = 2048;   // max_position_embeddings
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  cpu::RotaryScaling rope_scaling = {};  // factor 0: none (rope_scaling null)
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  double initializer_range = 0.02;

  int64_t HeadDim() const { return head_dim > 0 ? head_dim : heads > 0 ? hidden / heads : 0; }
  absl::Status Validate() const;  // names the bad field
  // From transformers' config.json text (LlamaConfig): the fields above by their Hugging Face
  // names; hidden_act must be "silu" and rope_scaling null or of rope_type "llama3". `source`
  // names the file in errors.
  static absl::StatusOr<LlamaConfig> FromJson(const std::string& text, const std::string& source);
  // The config.json transformers reads back (model_type "llama", LlamaForCausalLM).
  std::string ToJson() const;
};

// One decoder layer's attention: q_proj, k_proj, v_proj (kv_heads * head_dim outputs), rotary
// embedding of q and k, causal grouped-query attention, o_proj. The rotary table is the model's,
// made once per trace (Llama::Forward) and handed to each layer before it runs.
class LlamaAttention : public Layer {
 public:
  explicit LlamaAttention(const LlamaConfig& config);
  void UseRotaryTable(Var table) { rope_ = table; }
  Var Forward(Var x) override;  // x (B, T, hidden)

 private:
  int heads_, kv_heads_;
  nn::Linear *q_proj_, *k_proj_, *v_proj_, *o_proj_;
  Var rope_;
};

// down_proj(silu(gate_proj(x)) * up_proj(x)), the SwiGLU in one op (ops::SwiGlu).
class LlamaMlp : public Layer {
 public:
  explicit LlamaMlp(const LlamaConfig& config);
  Var Forward(Var x) override;

 private:
  nn::Linear *gate_proj_, *up_proj_, *down_proj_;
};

// x + self_attn(input_layernorm(x)), then + mlp(post_attention_layernorm(.)).
class LlamaDecoderLayer : public Layer {
 public:
  explicit LlamaDecoderLayer(const LlamaConfig& config);
  void UseRotaryTable(Var table) { self_attn_->UseRotaryTable(table); }
  Var Forward(Var x) override;

 private:
  nn::RmsNorm* input_layernorm_;
  LlamaAttention* self_attn_;
  nn::RmsNorm* post_attention_layernorm_;
  LlamaMlp* mlp_;
};

class Llama : public Module {
 public:
  // transformers' initialization: N(0, initializer_range) for every linear and embedding weight,
  // zero biases, unit RMSNorms.
  explicit Llama(const LlamaConfig& config);
  const LlamaConfig& config() const { return config_; }
  Var Forward(Var ids);

 private:
  LlamaConfig config_;
  nn::Embedding* embed_tokens_;
  std::vector<LlamaDecoderLayer*> layers_;
  nn::RmsNorm* norm_;
  nn::Linear* lm_head_ = nullptr;  // null when tied to embed_tokens
};

}  // namespace strata::graph
