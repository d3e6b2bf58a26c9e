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
#include "runtime/safetensors.h"
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

absl::Status SaveGpt2Weights(const Program& program, const std::string& path) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.reserve(program.parameters().size());
  for (const auto& [param_path, value] : program.parameter_values()) {
    STRATA_ASSIGN_OR_RETURN(const Tensor t, program.ReadState(value, DefaultCpuAllocator()));
    Tensor view = t;
    if (IsConv1dWeight(param_path, t.shape())) {
      STRATA_ASSIGN_OR_RETURN(view, t.Transpose(0, 1));
    }
    tensors.emplace_back(absl::StrCat(kPrefix, param_path), view);
  }
  return WriteSafetensors(path, tensors, {{"format", "pt"}});
}

}  // namespace strata::graph
