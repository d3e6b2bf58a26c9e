#include "graph/models/gpt2_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "graph/collective_state.h"
#include "nlohmann/json.hpp"
#include "runtime/atomic_file.h"
#include "runtime/safetensors.h"
#include "runtime/safetensors_writer.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

constexpr absl::string_view kPrefix = "transformer.";

// See Note [GPT-2 layout].
bool IsConv1dWeight(absl::string_view path, const Shape& shape) {
  if (shape.rank() != 2) return false;
  for (absl::string_view s :
       {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    if (absl::EndsWith(path, s)) return true;
  }
  return false;
}

// The causal mask GPT-2 checkpoints carry as buffers; strata's attention computes it.
bool IsMaskBuffer(absl::string_view path) {
  return absl::EndsWith(path, ".attn.bias") || absl::EndsWith(path, ".attn.masked_bias");
}

Shape HfShape(absl::string_view path, const Shape& shape) {
  return IsConv1dWeight(path, shape) ? Shape{shape[1], shape[0]} : shape;
}

absl::StatusOr<Tensor> ToF32(const Tensor& t) {
  STRATA_ASSIGN_OR_RETURN(Tensor f, Tensor::Empty(t.shape(), DType::kF32, DefaultCpuAllocator()));
  STRATA_RETURN_IF_ERROR(f.CopyFrom(t));
  return f;
}

}  // namespace

absl::Status LoadGpt2Weights(Program& program, const std::string& path) {
  // The header now, each tensor when it is copied: the weights may be larger than memory.
  STRATA_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  auto error = [&](absl::StatusCode code, absl::string_view tensor, absl::string_view what) {
    return absl::Status(code, absl::StrCat("GPT-2 weights ", path, ": tensor '", tensor, "' ", what));
  };

  // Model path (no prefix) -> the file's name for it.
  std::map<std::string, std::string> by_path;
  for (const std::string& name : file.names()) {
    std::string stripped = absl::StartsWith(name, kPrefix) ? name.substr(kPrefix.size()) : name;
    auto [it, inserted] = by_path.emplace(stripped, name);
    if (!inserted) {
      return error(absl::StatusCode::kInvalidArgument, name,
                   absl::StrCat("appears twice, also as '", it->second, "'"));
    }
  }

  // Check everything first (from the header); copy only when the whole file fits the program.
  struct Copy {
    ValueId value;
    std::string name;
    bool conv1d;  // stored [in, out]: transposed into ours
  };
  std::vector<Copy> copies;
  for (const auto& [param_path, value] : program.parameter_values()) {
    const TensorType& dst = program.graph().value(value).type;
    auto it = by_path.find(param_path);
    if (it == by_path.end()) {
      return absl::NotFoundError(absl::StrCat("GPT-2 weights ", path, ": no tensor '", kPrefix,
                                              param_path, "' (or '", param_path, "')"));
    }
    const std::string& name = it->second;
    const SafetensorsFile::Entry src = file.Find(name).value();
    if (src.dtype != DType::kF32 && src.dtype != DType::kBF16 && src.dtype != DType::kF16) {
      return error(absl::StatusCode::kInvalidArgument, name,
                   absl::StrCat("has dtype ", DTypeName(src.dtype), ", expected f32, bf16 or f16"));
    }
    const Shape expected = HfShape(param_path, dst.shape);
    if (src.shape != expected) {
      return error(absl::StatusCode::kInvalidArgument, name,
                   absl::StrCat("has shape ", src.shape.ToString(), ", expected ",
                                expected.ToString(), " (Hugging Face layout",
                                IsConv1dWeight(param_path, dst.shape) ? ", Conv1D [in, out]" : "",
                                ")"));
    }
    copies.push_back({value, name, IsConv1dWeight(param_path, dst.shape)});
    by_path.erase(it);
  }

  std::vector<std::string> unknown;
  for (const auto& [stripped, name] : by_path) {
    if (IsMaskBuffer(stripped)) continue;
    if (stripped != "lm_head.weight") {
      unknown.push_back(name);
      continue;
    }
    // The output projection is tied to wte: accept lm_head only as a copy of it.
    const std::string wte_name =
        file.Contains(absl::StrCat(kPrefix, "wte.weight")) ? absl::StrCat(kPrefix, "wte.weight")
                                                           : "wte.weight";
    absl::StatusOr<Tensor> wte = file.Get(wte_name);
    const Tensor lm_head = file.Get(name).value();
    bool same = wte.ok() && wte->shape() == lm_head.shape() && IsFloatingPoint(wte->dtype()) &&
                IsFloatingPoint(lm_head.dtype());
    if (same) {
      STRATA_ASSIGN_OR_RETURN(Tensor a, ToF32(*wte));
      STRATA_ASSIGN_OR_RETURN(Tensor b, ToF32(lm_head));
      same = std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
    }
    if (!same) {
      return error(absl::StatusCode::kInvalidArgument, name,
                   "differs from wte.weight; strata ties the output projection to the token "
                   "embedding");
    }
  }
  if (!unknown.empty()) {
    const size_t shown = std::min<size_t>(unknown.size(), 10);
    return absl::InvalidArgumentError(absl::StrCat(
        "GPT-2 weights ", path, ": ", unknown.size(), " tensor(s) the program does not have: ",
        absl::StrJoin(unknown.begin(), unknown.begin() + shown, ", "),
        unknown.size() > shown ? absl::StrCat(" and ", unknown.size() - shown, " more") : ""));
  }

  for (const Copy& c : copies) {
    // In the file's dtype and layout: converted into memory first, then written home.
    STRATA_ASSIGN_OR_RETURN(Tensor src, file.Load(c.name, DefaultCpuAllocator()));
    if (c.conv1d) {
      STRATA_ASSIGN_OR_RETURN(src, src.Transpose(0, 1));
    }
    STRATA_ASSIGN_OR_RETURN(Tensor f32, Tensor::Empty(program.graph().value(c.value).type.shape,
                                                      DType::kF32, DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(f32.CopyFrom(src));
    STRATA_RETURN_IF_ERROR(program.WriteState(c.value, f32));
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, Shape>> Gpt2Parameters(const GptConfig& c) {
  const int64_t w = c.width;
  std::vector<std::pair<std::string, Shape>> params = {{"wte.weight", Shape{c.vocab, w}},
                                                       {"wpe.weight", Shape{c.block_size, w}}};
  for (int i = 0; i < c.layers; ++i) {
    const std::string h = absl::StrCat("h.", i, ".");
    // Linear weights in strata's (out, in) layout.
    for (const auto& [name, shape] : std::vector<std::pair<const char*, Shape>>{
             {"ln_1.weight", Shape{w}}, {"ln_1.bias", Shape{w}},
             {"attn.c_attn.weight", Shape{3 * w, w}}, {"attn.c_attn.bias", Shape{3 * w}},
             {"attn.c_proj.weight", Shape{w, w}}, {"attn.c_proj.bias", Shape{w}},
             {"ln_2.weight", Shape{w}}, {"ln_2.bias", Shape{w}},
             {"mlp.c_fc.weight", Shape{4 * w, w}}, {"mlp.c_fc.bias", Shape{4 * w}},
             {"mlp.c_proj.weight", Shape{w, 4 * w}}, {"mlp.c_proj.bias", Shape{w}}}) {
      params.emplace_back(h + name, shape);
    }
  }
  params.emplace_back("ln_f.weight", Shape{w});
  params.emplace_back("ln_f.bias", Shape{w});
  return params;
}

absl::Status SaveGpt2Weights(const GptConfig& config, const ReadGpt2Parameter& read,
                             const std::string& path) {
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("GPT-2 export ", path, ": ", s.message()));
  }
  const std::vector<std::pair<std::string, Shape>> params = Gpt2Parameters(config);
  std::vector<SafetensorsWriter::Entry> entries;
  entries.reserve(params.size());
  for (const auto& [param_path, shape] : params) {
    entries.push_back({absl::StrCat(kPrefix, param_path), DType::kF32, HfShape(param_path, shape)});
  }
  STRATA_ASSIGN_OR_RETURN(SafetensorsWriter writer,
                          SafetensorsWriter::Create(path, std::move(entries), {{"format", "pt"}}));
  for (const auto& [param_path, shape] : params) {
    absl::StatusOr<Tensor> value = read(param_path);
    if (!value.ok()) {
      return absl::Status(value.status().code(),
                          absl::StrCat("GPT-2 export ", path, ": reading parameter '", param_path,
                                       "': ", value.status().message()));
    }
    if (!value->defined() || value->dtype() != DType::kF32 || value->shape() != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GPT-2 export ", path, ": parameter '", param_path, "' is ",
          value->defined() ? value->ToString() : "undefined", ", expected f32", shape.ToString()));
    }
    Tensor hf = *value;
    if (IsConv1dWeight(param_path, shape)) {  // Note [GPT-2 layout]
      STRATA_ASSIGN_OR_RETURN(hf, value->Transpose(0, 1));
    }
    STRATA_RETURN_IF_ERROR(writer.Write(hf));
  }
  return writer.Commit();
}

std::string Gpt2ConfigJson(const GptConfig& config) {
  const nlohmann::ordered_json j = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"vocab_size", config.vocab},
      {"n_positions", config.block_size},
      {"n_embd", config.width},
      {"n_layer", config.layers},
      {"n_head", config.heads},
      {"n_inner", nullptr},  // 4 * n_embd
      {"activation_function", "gelu_new"},
      {"layer_norm_epsilon", 1e-5},
      {"tie_word_embeddings", true},
      {"torch_dtype", "float32"}};
  return j.dump(2) + "\n";
}

absl::Status SaveGpt2Config(const GptConfig& config, const std::string& path) {
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("GPT-2 config ", path, ": ", s.message()));
  }
  const std::string text = Gpt2ConfigJson(config);
  STRATA_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  STRATA_RETURN_IF_ERROR(file.Write(text.data(), text.size()));
  return file.Commit();
}

absl::Status SaveGpt2Weights(const Program& program, const GptConfig& config,
                             const std::string& path) {
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("GPT-2 export ", path, ": ", s.message()));
  }
  // The program's parameters must be exactly GPT-2's: anything else would be dropped or missing.
  const std::vector<std::pair<std::string, Shape>> params = Gpt2Parameters(config);
  const std::map<std::string, Shape> expected(params.begin(), params.end());
  std::map<std::string, ValueId> values;
  for (const auto& [param_path, value] : program.parameter_values()) {
    const TensorType& type = program.graph().value(value).type;
    auto it = expected.find(param_path);
    if (it == expected.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GPT-2 export ", path, ": the program's parameter '", param_path, "' (",
          DTypeName(type.dtype), type.shape.ToString(),
          ") has no place in Hugging Face GPT-2 of ", config.layers,
          " layers (wte, wpe, h.0 .. h.", config.layers - 1,
          ", ln_f; the output projection is tied to wte.weight)"));
    }
    if (type.dtype != DType::kF32 || type.shape != it->second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GPT-2 export ", path, ": the program's parameter '", param_path, "' is ",
          DTypeName(type.dtype), type.shape.ToString(), ", but GPT-2 of vocab ", config.vocab,
          ", block_size ", config.block_size, ", width ", config.width, " has f32",
          it->second.ToString()));
    }
    values.emplace(param_path, value);
  }
  for (const auto& [param_path, shape] : params) {
    if (values.count(param_path) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("GPT-2 export ", path,
                                                     ": the program has no parameter '",
                                                     param_path, "' (layers ", config.layers, ")"));
    }
  }
  if (!IsDataParallel(program)) {
    return SaveGpt2Weights(
        config,
        [&](const std::string& param_path) {
          return program.ReadState(values.at(param_path), DefaultCpuAllocator());
        },
        path);
  }
  // Data parallel: every rank gathers every parameter in the same order (GatherState), rank 0
  // writes. A rank 0 whose write failed part way still takes part in the remaining gathers, so
  // that no rank waits for it.
  collectives::Communicator* comm = program.communicator();
  size_t gathered = 0;
  absl::Status mine;
  auto gather = [&](const std::string& param_path) {
    ++gathered;
    return GatherState(program, values.at(param_path), DefaultCpuAllocator());
  };
  if (comm->rank() == 0) mine = SaveGpt2Weights(config, gather, path);
  for (size_t i = gathered; i < params.size(); ++i) {
    absl::StatusOr<Tensor> value = gather(params[i].first);
    if (!value.ok() && mine.ok()) mine = value.status();
  }
  return AgreeOnRanks(comm, mine, absl::StrCat("GPT-2 export ", path));
}

}  // namespace strata::graph
