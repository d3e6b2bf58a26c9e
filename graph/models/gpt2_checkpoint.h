// GPT parameters to and from Hugging Face GPT-2 safetensors files (model.safetensors as
// `transformers` writes it), so that a strata GPT starts from, or hands back, a PyTorch model.
//
//   Gpt gpt(GptConfig{.vocab = 50257, .block_size = 1024, .layers = 12, .width = 768, .heads = 12});
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Program> p, Compile(gpt, inputs, loss, options));
//   STRATA_RETURN_IF_ERROR(LoadGpt2Weights(*p, "gpt2/model.safetensors"));
//   ... p->Step(batch) ...
//   STRATA_RETURN_IF_ERROR(SaveGpt2Weights(*p, "finetuned/model.safetensors"));
//
// Note [GPT-2 layout]: strata's parameter paths are Hugging Face's without the "transformer."
// prefix (wte.weight, h.0.attn.c_attn.weight, ...). GPT-2 implements its projections as Conv1D,
// whose weight is stored [in, out]; strata's Linear stores (out, in). So the four Conv1D weights
// of each block — attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj — are transposed on load and on
// save; every other tensor is copied as it is.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "graph/program.h"

namespace strata::graph {

// Overwrites every parameter of `program` from the file at `path`. Names may carry the
// "transformer." prefix or not. Ignored: the causal-mask buffers `*.attn.bias` and
// `*.attn.masked_bias`, and `lm_head.weight`, which must equal wte.weight (the output projection
// is tied). F32 tensors are copied; BF16 and F16 are converted. Everything is checked before
// anything is written, so on error the program is unchanged. Errors name the file and the tensor:
// NotFound for a missing tensor; InvalidArgument for a wrong shape (both shapes in HF layout), an
// unsupported dtype, an lm_head that is not wte, or names the program does not have (listed).
absl::Status LoadGpt2Weights(Program& program, const std::string& path);

// Writes every parameter of `program` as "transformer.<path>" in HF layout (F32), plus the
// metadata {"format": "pt"} that `transformers` expects. Written to "<path>.tmp" and renamed.
absl::Status SaveGpt2Weights(const Program& program, const std::string& path);

}  // namespace strata::graph
