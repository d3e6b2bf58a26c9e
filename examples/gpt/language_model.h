// The language model strata-gpt trains: GPT-2 (--arch gpt) or Llama (--arch llama), its shape
// from the flags or from a Hugging Face file (--init-from), and its weights in and out in that
// architecture's Hugging Face layout.
//
//   LanguageModelConfig c{.arch = "llama", .llama = {...}};
//   LanguageModel m = BuildLanguageModel(c);
//   graph::Compile(*m.module, inputs, [&](auto in) { return ops::CrossEntropy(m.forward(in[0]), in[1]); }, t);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "graph/models/gpt.h"
#include "graph/models/llama.h"
#include "graph/program.h"

namespace strata::examples {

struct LanguageModelConfig {
  std::string arch = "gpt";  // "gpt" or "llama"
  graph::GptConfig gpt = {};      // when arch == "gpt"
  graph::LlamaConfig llama = {};  // when arch == "llama"

  bool is_llama() const { return arch == "llama"; }
  int64_t vocab() const { return is_llama() ? llama.vocab : gpt.vocab; }
  absl::Status Validate() const;
  // "6 layers, width 384, 6 heads" (GPT-2) or "Llama, 8 layers, width 512, 8 heads (2
  // key/value), ffn 1376, rope theta 10000, untied head".
  std::string Describe() const;
};

struct LanguageModel {
  std::unique_ptr<graph::Module> module;
  std::function<graph::Var(graph::Var ids)> forward;  // ids (B, T) -> logits (B, T, vocab)
};

LanguageModel BuildLanguageModel(const LanguageModelConfig& config);

// --init-from: weights in the architecture's Hugging Face layout (graph/models/gpt2_checkpoint.h,
// graph/models/llama_checkpoint.h).
absl::Status LoadHuggingFaceWeights(graph::Program& program, const LanguageModelConfig& config,
                                    const std::string& path);
// --export: the weights and, rank 0 only, the config.json beside them; returns that path.
// Collective on several ranks.
absl::StatusOr<std::string> ExportHuggingFace(const graph::Program& program,
                                              const LanguageModelConfig& config,
                                              const std::string& path, int rank);

}  // namespace strata::examples
