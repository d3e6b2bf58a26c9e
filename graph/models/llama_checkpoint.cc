#include "graph/models/llama_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/collective_state.h"
#include "runtime/atomic_file.h"
#include "runtime/safetensors.h"
#include "runtime/safetensors_writer.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

constexpr char kEmbedding[] = "model.embed_tokens.weight";
constexpr char kHead[] = "lm_head.weight";

absl::StatusOr<Tensor> ToF32(const Tensor& t) {
  STRATA_ASSIGN_OR_RETURN(Tensor f, Tensor::Empty(t.shape(), DType::kF32, DefaultCpuAllocator()));
  STRATA_RETURN_IF_ERROR(f.CopyFrom(t));
  return f;
}

// True when the file's lm_head holds the same values as its embedding (a tied model saved with
// both names).
absl::StatusOr<bool> HeadIsEmbedding(const SafetensorsFile& file) {
  absl::StatusOr<Tensor> embedding = file.Get(kEmbedding);
  const Tensor head = file.Get(kHead).value();
  if (!embedding.ok() || embedding->shape() != head.shape() ||
      !IsFloatingPoint(embedding->dtype()) || !IsFloatingPoint(head.dtype())) {
    return false;
  }
  STRATA_ASSIGN_OR_RETURN(Tensor a, ToF32(*embedding));
  STRATA_ASSIGN_OR_RETURN(Tensor b, ToF32(head));
  return std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

}  // namespace

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("llama config ", path, ": cannot open (",
                                            std::strerror(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return LlamaConfig::FromJson(text.str(), path);
}

absl::Status SaveLlamaConfig(const LlamaConfig& config, const std::string& path) {
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("llama config ", path, ": ", s.message()));
  }
  const std::string text = config.ToJson();
  STRATA_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  STRATA_RETURN_IF_ERROR(file.Write(text.data(), text.size()));
  return file.Commit();
}

absl::Status LoadLlamaWeights(Program& program, const std::string& path) {
  // The header now, each tensor when it is copied: the weights may be larger than memory.
  STRATA_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  auto error = [&](absl::string_view tensor, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("Llama weights ", path, ": tensor '", tensor, "' ", what));
  };
  std::map<std::string, bool> unused;  // the file's names not yet matched
  for (const std::string& name : file.names()) unused.emplace(name, true);
  std::vector<std::pair<ValueId, std::string>> copies;
  bool has_head = false;
  for (const auto& [param_path, value] : program.parameter_values()) {
    has_head |= param_path == kHead;
    const TensorType& dst = program.graph().value(value).type;
    if (!file.Contains(param_path)) {
      return absl::NotFoundError(
          absl::StrCat("Llama weights ", path, ": no tensor '", param_path, "'"));
    }
    const SafetensorsFile::Entry src = file.Find(param_path).value();
    if (src.dtype != DType::kF32 && src.dtype != DType::kBF16 && src.dtype != DType::kF16) {
      return error(param_path, absl::StrCat("has dtype ", DTypeName(src.dtype),
                                            ", expected f32, bf16 or f16"));
    }
    if (src.shape != dst.shape) {
      return error(param_path, absl::StrCat("has shape ", src.shape.ToString(), ", expected ",
                                            dst.shape.ToString()));
    }
    copies.emplace_back(value, param_path);
    unused.erase(param_path);
  }
  std::vector<std::string> unknown;
  for (const auto& [name, _] : unused) {
    if (absl::EndsWith(name, ".rotary_emb.inv_freq")) continue;
    if (name == kHead && !has_head) {
      // The program ties its head to the embedding: accept lm_head only as a copy of it.
      STRATA_ASSIGN_OR_RETURN(const bool same, HeadIsEmbedding(file));
      if (!same) {
        return error(name, absl::StrCat("differs from ", kEmbedding, ", but the model ties them ",
                                        "(tie_word_embeddings)"));
      }
      continue;
    }
    unknown.push_back(name);
  }
  if (!unknown.empty()) {
    const size_t shown = std::min<size_t>(unknown.size(), 10);
    return absl::InvalidArgumentError(absl::StrCat(
        "Llama weights ", path, ": ", unknown.size(), " tensor(s) the program does not have: ",
        absl::StrJoin(unknown.begin(), unknown.begin() + shown, ", "),
        unknown.size() > shown ? absl::StrCat(" and ", unknown.size() - shown, " more") : "",
        has_head ? "" : " (a file with lm_head.weight needs tie_word_embeddings false)"));
  }
  for (const auto& [value, name] : copies) {
    STRATA_ASSIGN_OR_RETURN(Tensor src, file.Load(name, DefaultCpuAllocator()));
    STRATA_ASSIGN_OR_RETURN(Tensor f32, ToF32(src));
    STRATA_RETURN_IF_ERROR(program.WriteState(value, f32));
  }
  return absl::OkStatus();
}

absl::Status SaveLlamaWeights(const Program& program, const std::string& path) {
  const std::vector<std::pair<std::string, ValueId>>& params = program.parameter_values();
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [param_path, value] : params) {
    const TensorType& type = program.graph().value(value).type;
    entries.push_back({param_path, DType::kF32, type.shape});
  }
  auto write = [&](const std::function<absl::StatusOr<Tensor>(ValueId)>& read) -> absl::Status {
    STRATA_ASSIGN_OR_RETURN(SafetensorsWriter writer,
                            SafetensorsWriter::Create(path, entries, {{"format", "pt"}}));
    for (const auto& [param_path, value] : params) {
      absl::StatusOr<Tensor> t = read(value);
      if (!t.ok()) {
        return absl::Status(t.status().code(),
                            absl::StrCat("Llama export ", path, ": reading parameter '",
                                         param_path, "': ", t.status().message()));
      }
      STRATA_RETURN_IF_ERROR(writer.Write(*t));
    }
    return writer.Commit();
  };
  if (!IsDataParallel(program)) {
    return write([&](ValueId v) { return program.ReadState(v, DefaultCpuAllocator()); });
  }
  // Data parallel: every rank gathers every parameter in the same order, rank 0 writes; a rank 0
  // whose write failed part way still takes part in the remaining gathers.
  collectives::Communicator* comm = program.communicator();
  size_t gathered = 0;
  auto gather = [&](ValueId v) {
    ++gathered;
    return GatherState(program, v, DefaultCpuAllocator());
  };
  absl::Status mine;
  if (comm->rank() == 0) mine = write(gather);
  for (size_t i = gathered; i < params.size(); ++i) {
    absl::StatusOr<Tensor> value = gather(params[i].second);
    if (!value.ok() && mine.ok()) mine = value.status();
  }
  return AgreeOnRanks(comm, mine, absl::StrCat("Llama export ", path));
}

}  // namespace strata::graph
