#include "graph/models/gpt.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace strata::graph {

absl::Status GptConfig::Validate() const {
  auto bad = [](const char* field, auto value, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("gpt config: ", field, " = ", value, " ", why));
  };
  if (vocab <= 0) return bad("vocab", vocab, "must be positive");
  if (block_size <= 0) return bad("block_size", block_size, "must be positive");
  if (layers <= 0) return bad("layers", layers, "must be positive");
  if (heads <= 0) return bad("heads", heads, "must be positive");
  if (width <= 0 || width % heads != 0) {
    return bad("width", width, absl::StrCat("must be a positive multiple of heads = ", heads).c_str());
  }
  return absl::OkStatus();
}

Gpt::Gpt(const GptConfig& c) : config_(c) {
  wte_ = Add<nn::Embedding>("wte", c.vocab, c.width);
  wpe_ = Add<nn::Embedding>("wpe", c.block_size, c.width);
  auto* h = Add<Module>("h");
  for (int i = 0; i < c.layers; ++i) {
    // Blocks live under "h" so that their paths are h.0, h.1, ... as in GPT-2.
    h_.push_back(h->Add<nn::TransformerBlock>(std::to_string(i), c.width, c.heads));
    h_.back()->SetRecomputeBoundary(true);  // the unit of TrainOptions::recompute
  }
  ln_f_ = Add<nn::LayerNorm>("ln_f", c.width);
  const double residual_std = 0.02 / std::sqrt(2.0 * c.layers);
  ForEachParameter([&](const std::string& path, Parameter& p) {
    const bool is_weight = p.name() == "weight";
    const bool is_norm = path.find("ln_") != std::string::npos;
    if (is_norm) return;  // ones and zeros already
    if (!is_weight) {
      p.set_init(Init::Zeros());
    } else if (path.find(".c_proj.") != std::string::npos) {
      p.set_init(Init::Normal(0, residual_std));
    } else {
      p.set_init(Init::Normal(0, 0.02));
    }
  });
}

Var Gpt::Forward(Var ids) {
  TraceScope scope(*this, ids);
  if (ids.valid() && (ids.rank() != 2 || ids.dim(1) > config_.block_size)) {
    ids.tracer()->Fail(absl::InvalidArgumentError(
        absl::StrCat("gpt: ids are ", ids.type().ToString(), ", expected (B, T) with T <= ",
                     "block_size = ", config_.block_size)));
    return Var();
  }
  Var pos = ops::Arange(ids, ids.valid() ? ids.dim(1) : 0, "position_ids");
  Var x = ops::Add((*wte_)(ids), (*wpe_)(pos));
  for (nn::TransformerBlock* block : h_) x = (*block)(x);
  x = (*ln_f_)(x);
  return ops::Linear(x, wte_->weight()->var());  // tied output projection
}

}  // namespace strata::graph
