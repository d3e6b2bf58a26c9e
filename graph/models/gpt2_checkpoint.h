// GPT parameters to and from Hugging Face GPT-2 safetensors files (model.safetensors as
// `transformers` writes it), so that a strata GPT starts from, or hands back, a PyTorch model.
//
//   Gpt gpt(GptConfig{.vocab = 50257, .block_size = 1024, .layers = 12, .width = 768, .heads = 12});
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Program> p, Compile(gpt, inputs, loss, options));
//   STRATA_RETURN_IF_ERROR(LoadGpt2Weights(*p, "gpt2/model.safetensors"));
//   ... p->Step(batch) ...
//   STRATA_RETURN_IF_ERROR(SaveGpt2Weights(*p, gpt.config(), "finetuned/model.safetensors"));
//
// Saving reads each parameter through Program::ReadState, so it works wherever the state lives
// (device, host, NVMe); SaveGpt2Weights(config, read, path) takes the values from any source,
// e.g. shards gathered one parameter at a time, and holds one parameter in memory at a time; on
// several ranks SaveGpt2Weights(program, ...) is collective and gathers the shards itself.
//
// Note [GPT-2 layout]: strata's parameter paths are Hugging Face's without the "transformer."
// prefix (wte.weight, h.0.attn.c_attn.weight, ...). GPT-2 implements its projections as Conv1D,
// whose weight is stored [in, out]; strata's Linear stores (out, in). So the four Conv1D weights
// of each block — attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj — are transposed on load and on
// save; every other tensor is copied as it is. c_attn's output is [q | k | v] in both (head h of
// each at columns h*d .. (h+1)*d), so the transpose is all that its fused layout needs.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/models/gpt.h"
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

// Hugging Face GPT-2's parameters for `config`, in the order the file holds them: (model path,
// shape in strata's layout). wte, wpe, then per block ln_1, attn.c_attn, attn.c_proj, ln_2,
// mlp.c_fc, mlp.c_proj (weight, bias each), then ln_f.
std::vector<std::pair<std::string, Shape>> Gpt2Parameters(const GptConfig& config);

// One parameter's full f32 value in strata's layout, by model path ("h.0.attn.c_attn.weight").
using ReadGpt2Parameter = std::function<absl::StatusOr<Tensor>(const std::string& path)>;

// Writes a GPT of `config` to `path` as `transformers` writes GPT2LMHeadModel's model.safetensors:
// "transformer.<path>" names, Conv1D weights [in, out], F32, no lm_head (tied to wte), metadata
// {"format": "pt"}. `read` is called once per parameter, in Gpt2Parameters order, and only one
// value is held at a time. Atomic (Note [atomic file writes] in runtime/atomic_file.h): on
// any error the file that was at `path` stays as it was. Errors name `path` and the parameter: a
// config GPT-2 cannot express (GptConfig::Validate names the field), a value of the wrong dtype
// or shape, or the errno of a failed write.
absl::Status SaveGpt2Weights(const GptConfig& config, const ReadGpt2Parameter& read,
                             const std::string& path);

// The config.json that `transformers` reads beside model.safetensors (GPT2Config): the shape,
// the heads (which no tensor's shape records), GELU "gelu_new", LayerNorm eps 1e-5, lm_head tied
// to wte. LoadGpt2Weights' callers (strata-gpt --init-from) read n_head from it.
std::string Gpt2ConfigJson(const GptConfig& config);
// Writes Gpt2ConfigJson(config) to `path` atomically; errors name the path and errno.
absl::Status SaveGpt2Config(const GptConfig& config, const std::string& path);

// The same from a compiled GPT: every parameter of `program` must be one of Gpt2Parameters(config)
// with its shape, and every one of those must be there (InvalidArgument naming the parameter
// otherwise, e.g. a head that is not tied to wte); values come through Program::ReadState.
// Data parallel (a communicator of more than one rank), it is collective: every rank calls it,
// every parameter is gathered from its ZeRO shards one at a time (GatherState in
// graph/collective_state.h), rank 0 writes `path`, and every rank gets the same verdict.
absl::Status SaveGpt2Weights(const Program& program, const GptConfig& config,
                             const std::string& path);

}  // namespace strata::graph
