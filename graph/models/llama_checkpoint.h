// Llama parameters to and from Hugging Face safetensors files (model.safetensors and config.json
// as `transformers` writes LlamaForCausalLM), so that a strata Llama starts from, or hands back,
// a PyTorch model.
//
//   STRATA_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig("llama/config.json"));
//   Llama llama(config);
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Program> p, Compile(llama, inputs, loss, options));
//   STRATA_RETURN_IF_ERROR(LoadLlamaWeights(*p, "llama/model.safetensors"));
//   ... p->Step(batch) ...
//   STRATA_RETURN_IF_ERROR(SaveLlamaWeights(*p, "finetuned/model.safetensors"));
//   STRATA_RETURN_IF_ERROR(SaveLlamaConfig(config, "finetuned/config.json"));
//
// strata's Llama parameter paths and layouts are transformers' (graph/models/llama.h), so tensors
// are copied by name with no transposes.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/models/llama.h"
#include "graph/program.h"

namespace strata::graph {

// Reads and validates config.json; errors name the path and the field.
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& path);
// Writes config.ToJson() to `path` atomically; errors name the path and errno.
absl::Status SaveLlamaConfig(const LlamaConfig& config, const std::string& path);

// Overwrites every parameter of `program` from the file at `path`. Ignored: rotary inv_freq
// buffers (`*.rotary_emb.inv_freq`, which older transformers saved; strata computes the table),
// and an `lm_head.weight` equal to model.embed_tokens.weight when the program ties them. F32
// tensors are copied; BF16 and F16 are converted. Everything is checked before anything is
// written, so on error the program is unchanged. Errors name the file and the tensor: NotFound
// for a missing tensor; InvalidArgument for a wrong shape, an unsupported dtype, or names the
// program does not have (listed).
absl::Status LoadLlamaWeights(Program& program, const std::string& path);

// Writes every parameter of `program` to `path` under its path (transformers' names), F32, with
// metadata {"format": "pt"}: a model.safetensors that LlamaForCausalLM.from_pretrained reads
// beside SaveLlamaConfig's config.json. Values come through Program::ReadState, one at a time.
// Atomic (runtime/atomic_file.h). Data parallel, it is collective: every parameter is gathered
// from its ZeRO shards (GatherState), rank 0 writes, and every rank gets the same verdict.
absl::Status SaveLlamaWeights(const Program& program, const std::string& path);

}  // namespace strata::graph
