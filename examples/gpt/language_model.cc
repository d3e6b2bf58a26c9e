#include "examples/gpt/language_model.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "graph/models/gpt2_checkpoint.h"
#include "graph/models/llama_checkpoint.h"
#include "runtime/status.h"

namespace strata::examples {

absl::Status LanguageModelConfig::Validate() const {
  if (arch == "gpt") return gpt.Validate();
  if (arch == "llama") return llama.Validate();
  return absl::InvalidArgumentError(absl::StrCat("--arch ", arch, ": expected gpt or llama"));
}

std::string LanguageModelConfig::Describe() const {
  if (!is_llama()) {
    return absl::StrFormat("%d layers, width %d, %d heads", gpt.layers, gpt.width, gpt.heads);
  }
  const graph::LlamaConfig& l = llama;
  return absl::StrFormat("Llama, %d layers, width %d, %d heads (%d key/value), ffn %d, rope theta "
                         "%g%s, %s head",
                         l.layers, l.hidden, l.heads, l.kv_heads, l.intermediate, l.rope_theta,
                         l.rope_scaling.factor != 0
                             ? absl::StrFormat(" (llama3 scaling x%g)", l.rope_scaling.factor)
                             : "",
                         l.tie_word_embeddings ? "tied" : "untied");
}

LanguageModel BuildLanguageModel(const LanguageModelConfig& config) {
  if (config.is_llama()) {
    auto llama = std::make_unique<graph::Llama>(config.llama);
    graph::Llama* model = llama.get();
    return {std::move(llama), [model](graph::Var ids) { return model->Forward(ids); }};
  }
  auto gpt = std::make_unique<graph::Gpt>(config.gpt);
  graph::Gpt* model = gpt.get();
  return {std::move(gpt), [model](graph::Var ids) { return model->Forward(ids); }};
}

absl::Status LoadHuggingFaceWeights(graph::Program& program, const LanguageModelConfig& config,
                                    const std::string& path) {
  return config.is_llama() ? graph::LoadLlamaWeights(program, path)
                           : graph::LoadGpt2Weights(program, path);
}

absl::StatusOr<std::string> ExportHuggingFace(const graph::Program& program,
                                              const LanguageModelConfig& config,
                                              const std::string& path, int rank) {
  if (config.is_llama()) {
    STRATA_RETURN_IF_ERROR(graph::SaveLlamaWeights(program, path));
  } else {
    STRATA_RETURN_IF_ERROR(graph::SaveGpt2Weights(program, config.gpt, path));
  }
  // The shape that no tensor records (heads): transformers and --init-from read it from here.
  const std::string config_json =
      (std::filesystem::path(path).parent_path() / "config.json").string();
  if (rank == 0) {
    STRATA_RETURN_IF_ERROR(config.is_llama() ? graph::SaveLlamaConfig(config.llama, config_json)
                                             : graph::SaveGpt2Config(config.gpt, config_json));
  }
  return config_json;
}

}  // namespace strata::examples
