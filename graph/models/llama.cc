#include "graph/models/llama.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace strata::graph {

absl::Status LlamaConfig::Validate() const {
  auto bad = [](const char* field, auto value, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("llama config: ", field, " = ", value, " ", why));
  };
  if (vocab <= 0) return bad("vocab_size", vocab, "must be positive");
  if (hidden <= 0) return bad("hidden_size", hidden, "must be positive");
  if (intermediate <= 0) return bad("intermediate_size", intermediate, "must be positive");
  if (layers <= 0) return bad("num_hidden_layers", layers, "must be positive");
  if (heads <= 0) return bad("num_attention_heads", heads, "must be positive");
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    return bad("num_key_value_heads", kv_heads,
               absl::StrCat("must divide num_attention_heads = ", heads));
  }
  if (head_dim < 0) return bad("head_dim", head_dim, "must be positive (or 0: hidden_size / heads)");
  if (head_dim == 0 && hidden % heads != 0) {
    return bad("hidden_size", hidden, absl::StrCat("must be a multiple of num_attention_heads = ",
                                                   heads, " (or give head_dim)"));
  }
  if (HeadDim() % 2 != 0) return bad("head_dim", HeadDim(), "must be even (rotary halves)");
  if (max_positions <= 0) return bad("max_position_embeddings", max_positions, "must be positive");
  if (!(rms_norm_eps > 0)) return bad("rms_norm_eps", rms_norm_eps, "must be > 0");
  if (!(rope_theta > 1)) return bad("rope_theta", rope_theta, "must be > 1");
  if (!(initializer_range >= 0)) return bad("initializer_range", initializer_range, "must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> LlamaConfig::FromJson(const std::string& text,
                                                  const std::string& source) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  auto field_error = [&](const char* key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": \"", key, "\" ", why));
  };
  LlamaConfig c;
  absl::Status status;
  auto integer = [&](const char* key, auto& out, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required && status.ok()) status = field_error(key, "is missing");
      return;
    }
    if (!j[key].is_number_integer()) {
      if (status.ok()) status = field_error(key, absl::StrCat("is ", j[key].dump(), ", expected an integer"));
      return;
    }
    using Out = std::remove_reference_t<decltype(out)>;
    const int64_t value = j[key].get<int64_t>();
    if (value < std::numeric_limits<Out>::min() || value > std::numeric_limits<Out>::max()) {
      if (status.ok()) status = field_error(key, absl::StrCat("is ", value, ", out of range"));
      return;
    }
    out = static_cast<Out>(value);
  };
  auto number = [&](const char* key, double& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_number()) {
      if (status.ok()) status = field_error(key, absl::StrCat("is ", j[key].dump(), ", expected a number"));
      return;
    }
    out = j[key].get<double>();
  };
  auto boolean = [&](const char* key, bool& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_boolean()) {
      if (status.ok()) status = field_error(key, absl::StrCat("is ", j[key].dump(), ", expected true or false"));
      return;
    }
    out = j[key].get<bool>();
  };
  integer("vocab_size", c.vocab, true);
  integer("hidden_size", c.hidden, true);
  integer("intermediate_size", c.intermediate, true);
  integer("num_hidden_layers", c.layers, true);
  integer("num_attention_heads", c.heads, true);
  c.kv_heads = c.heads;  // transformers' default
  integer("num_key_value_heads", c.kv_heads, false);
  integer("head_dim", c.head_dim, false);
  integer("max_position_embeddings", c.max_positions, false);
  number("rms_norm_eps", c.rms_norm_eps);
  number("rope_theta", c.rope_theta);
  number("initializer_range", c.initializer_range);
  boolean("tie_word_embeddings", c.tie_word_embeddings);
  boolean("attention_bias", c.attention_bias);
  boolean("mlp_bias", c.mlp_bias);
  STRATA_RETURN_IF_ERROR(status);
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return field_error("hidden_act", absl::StrCat("is ", j["hidden_act"].dump(),
                                                  ", but Llama's MLP is SwiGLU (\"silu\")"));
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const nlohmann::json& r = j["rope_scaling"];
    const std::string type = r.is_object() ? r.value("rope_type", r.value("type", "")) : "";
    if (type != "llama3") {
      return field_error("rope_scaling", absl::StrCat("is ", r.dump(),
                                                      "; only rope_type \"llama3\" is supported"));
    }
    for (auto [key, out] : {std::pair{"factor", &c.rope_scaling.factor},
                            {"low_freq_factor", &c.rope_scaling.low_freq_factor},
                            {"high_freq_factor", &c.rope_scaling.high_freq_factor},
                            {"original_max_position_embeddings",
                             &c.rope_scaling.original_max_positions}}) {
      if (!r.contains(key) || !r[key].is_number()) {
        return field_error("rope_scaling", absl::StrCat("has no number \"", key, "\""));
      }
      *out = r[key].get<double>();
    }
  }
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return c;
}

std::string LlamaConfig::ToJson() const {
  nlohmann::ordered_json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", vocab},
      {"hidden_size", hidden},
      {"intermediate_size", intermediate},
      {"num_hidden_layers", layers},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv_heads},
      {"head_dim", HeadDim()},
      {"max_position_embeddings", max_positions},
      {"hidden_act", "silu"},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"tie_word_embeddings", tie_word_embeddings},
      {"attention_bias", attention_bias},
      {"mlp_bias", mlp_bias},
      {"initializer_range", initializer_range},
      {"torch_dtype", "float32"},
  };
  if (rope_scaling.factor != 0) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          static_cast<int64_t>(rope_scaling.original_max_positions)}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  return j.dump(2) + "\n";
}

LlamaAttention::LlamaAttention(const LlamaConfig& c)
    : heads_(c.heads),
      kv_heads_(c.kv_heads),
      q_proj_(Add<nn::Linear>("q_proj", c.hidden, c.heads * c.HeadDim(), c.attention_bias)),
      k_proj_(Add<nn::Linear>("k_proj", c.hidden, c.kv_heads * c.HeadDim(), c.attention_bias)),
      v_proj_(Add<nn::Linear>("v_proj", c.hidden, c.kv_heads * c.HeadDim(), c.attention_bias)),
      o_proj_(Add<nn::Linear>("o_proj", c.heads * c.HeadDim(), c.hidden, c.attention_bias)) {}

Var LlamaAttention::Forward(Var x) {
  Var q = (*q_proj_)(x), k = (*k_proj_)(x), v = (*v_proj_)(x);
  Var y;
  {
    TraceScope scope(*this, x);
    y = ops::CausalAttention(ops::Rotary(q, rope_, heads_), ops::Rotary(k, rope_, kv_heads_), v,
                             heads_, kv_heads_);
  }
  return (*o_proj_)(y);
}

LlamaMlp::LlamaMlp(const LlamaConfig& c)
    : gate_proj_(Add<nn::Linear>("gate_proj", c.hidden, c.intermediate, c.mlp_bias)),
      up_proj_(Add<nn::Linear>("up_proj", c.hidden, c.intermediate, c.mlp_bias)),
      down_proj_(Add<nn::Linear>("down_proj", c.intermediate, c.hidden, c.mlp_bias)) {}

Var LlamaMlp::Forward(Var x) {
  Var gate = (*gate_proj_)(x), up = (*up_proj_)(x);
  Var h;
  {
    TraceScope scope(*this, x);
    h = ops::SwiGlu(gate, up);
  }
  return (*down_proj_)(h);
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& c)
    : input_layernorm_(Add<nn::RmsNorm>("input_layernorm", c.hidden, static_cast<float>(c.rms_norm_eps))),
      self_attn_(Add<LlamaAttention>("self_attn", c)),
      post_attention_layernorm_(
          Add<nn::RmsNorm>("post_attention_layernorm", c.hidden, static_cast<float>(c.rms_norm_eps))),
      mlp_(Add<LlamaMlp>("mlp", c)) {}

Var LlamaDecoderLayer::Forward(Var x) {
  Var a = (*self_attn_)((*input_layernorm_)(x));
  TraceScope scope(*this, x);
  x = ops::Add(x, a);
  Var m = (*mlp_)((*post_attention_layernorm_)(x));
  return ops::Add(x, m);
}

Llama::Llama(const LlamaConfig& c) : config_(c) {
  auto* model = Add<Module>("model");
  embed_tokens_ = model->Add<nn::Embedding>("embed_tokens", c.vocab, c.hidden);
  auto* layers = model->Add<Module>("layers");
  for (int i = 0; i < c.layers; ++i) {
    layers_.push_back(layers->Add<LlamaDecoderLayer>(std::to_string(i), c));
    layers_.back()->SetRecomputeBoundary(true);  // the unit of TrainOptions::recompute
  }
  norm_ = model->Add<nn::RmsNorm>("norm", c.hidden, static_cast<float>(c.rms_norm_eps));
  if (!c.tie_word_embeddings) lm_head_ = Add<nn::Linear>("lm_head", c.hidden, c.vocab, false);
  ForEachParameter([&](const std::string& path, Parameter& p) {
    if (path.find("norm.") != std::string::npos) return;  // RMSNorm weights: ones
    p.set_init(p.name() == "weight" ? Init::Normal(0, c.initializer_range) : Init::Zeros());
  });
}

Var Llama::Forward(Var ids) {
  TraceScope scope(*this, ids);
  if (ids.valid() && (ids.rank() != 2 || ids.dim(1) > config_.max_positions)) {
    ids.tracer()->Fail(absl::InvalidArgumentError(
        absl::StrCat("llama: ids are ", ids.type().ToString(), ", expected (B, T) with T <= ",
                     "max_position_embeddings = ", config_.max_positions)));
    return Var();
  }
  if (absl::Status s = config_.Validate(); !s.ok() && ids.valid()) {
    ids.tracer()->Fail(s);
    return Var();
  }
  const int64_t t = ids.valid() ? ids.dim(1) : 0;
  Var rope = ops::RotaryTable(ids, t, config_.HeadDim(), config_.rope_theta, config_.rope_scaling,
                              "rotary_table");
  Var x = (*embed_tokens_)(ids);
  for (LlamaDecoderLayer* layer : layers_) {
    layer->UseRotaryTable(rope);
    x = (*layer)(x);
  }
  x = (*norm_)(x);
  return lm_head_ ? (*lm_head_)(x) : ops::Linear(x, embed_tokens_->weight()->var());
}

}  // namespace strata::graph
