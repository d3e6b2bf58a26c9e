#include "runtime/safetensors.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors_writer.h"
#include "runtime/status.h"

namespace strata {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr size_t kMaxRank = 16;  // more than any model tensor has

absl::StatusOr<DType> DTypeFromSafetensors(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  if (s == "F16") return DType::kF16;
  if (s == "I32") return DType::kI32;
  if (s == "I64") return DType::kI64;
  if (s == "U8") return DType::kU8;
  return absl::InvalidArgumentError(absl::StrCat("unsupported safetensors dtype '", s, "'"));
}

absl::Status Corrupt(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("safetensors file ", path, ": ", what));
}

}  // namespace

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  if (std::filesystem::is_directory(path)) return Corrupt(path, "is a directory");
  in.seekg(0, std::ios::end);
  const std::streamoff end_offset = in.tellg();
  if (end_offset < 0) {  // a pipe: the tensors are read at their offsets, so seeking is needed
    return Corrupt(path, "not a regular (seekable) file");
  }
  const uint64_t file_size = static_cast<uint64_t>(end_offset);
  in.seekg(0);
  uint64_t header_size = 0;
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(&header_size), 8)) {
    return Corrupt(path, absl::StrCat("only ", file_size, " bytes, too short for a header"));
  }
  if (header_size > kMaxHeaderBytes || 8 + header_size > file_size) {
    return Corrupt(path, absl::StrCat("header length ", header_size, " does not fit in ",
                                      file_size, " bytes (truncated?)"));
  }
  std::string header(header_size, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_size))) {
    return Corrupt(path, "short read of the header");
  }
  nlohmann::json json = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return Corrupt(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  SafetensorsFile file;
  file.path_ = path;
  std::vector<std::pair<uint64_t, std::string>> order;
  for (auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Corrupt(path, "__metadata__ is not an object");
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string()) return Corrupt(path, absl::StrCat("metadata '", k, "' not a string"));
        file.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets") || !entry["dtype"].is_string() ||
        !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      return Corrupt(path, absl::StrCat(where, " lacks dtype, shape or data_offsets"));
    }
    absl::StatusOr<DType> dtype = DTypeFromSafetensors(entry["dtype"].get<std::string>());
    if (!dtype.ok()) return Corrupt(path, absl::StrCat(where, ": ", dtype.status().message()));
    if (entry["shape"].size() > kMaxRank) {
      return Corrupt(path, absl::StrCat(where, ": rank ", entry["shape"].size(), " exceeds ", kMaxRank));
    }
    std::vector<int64_t> dims;
    for (auto& d : entry["shape"]) {
      if (!d.is_number_integer()) return Corrupt(path, absl::StrCat(where, ": bad shape"));
      dims.push_back(d.get<int64_t>());
    }
    absl::StatusOr<Shape> shape = Shape::Create(dims);
    if (!shape.ok()) return Corrupt(path, absl::StrCat(where, ": ", shape.status().message()));
    if (!entry["data_offsets"][0].is_number_unsigned() ||
        !entry["data_offsets"][1].is_number_unsigned()) {
      return Corrupt(path, absl::StrCat(where, ": bad data_offsets"));
    }
    const uint64_t begin = entry["data_offsets"][0].get<uint64_t>();
    const uint64_t end = entry["data_offsets"][1].get<uint64_t>();
    uint64_t expected = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(shape->numel()), SizeOf(*dtype), &expected)) {
      return Corrupt(path, absl::StrCat(where, " ", DTypeName(*dtype), shape->ToString(),
                                        " has more bytes than fit in 64 bits"));
    }
    if (end < begin || end - begin != expected) {
      return Corrupt(path, absl::StrCat(where, " ", DTypeName(*dtype), shape->ToString(),
                                        " needs ", expected, " bytes but data_offsets give ",
                                        end - begin));
    }
    if (end > data_size) {
      return Corrupt(path, absl::StrCat(where, " ends at byte ", end, " of a data section of ",
                                        data_size, " bytes (truncated file?)"));
    }
    file.index_[name] = Entry{*dtype, *shape, data_start + begin};
    order.emplace_back(begin, name);
  }
  std::sort(order.begin(), order.end());
  for (auto& [offset, name] : order) file.names_.push_back(name);
  return file;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Read(const std::string& path,
                                                      Allocator& allocator) {
  STRATA_ASSIGN_OR_RETURN(SafetensorsFile file, Open(path));
  for (const std::string& name : file.names_) {
    STRATA_ASSIGN_OR_RETURN(file.tensors_[name], file.Load(name, allocator));
  }
  return file;
}

absl::StatusOr<SafetensorsFile::Entry> SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("safetensors file ", path_, " has no tensor named '", name, "'"));
  }
  return it->second;
}

absl::StatusOr<Tensor> SafetensorsFile::Load(const std::string& name, Allocator& allocator) const {
  STRATA_ASSIGN_OR_RETURN(const Entry e, Find(name));
  const std::string where = absl::StrCat("tensor '", name, "'");
  absl::StatusOr<Tensor> empty = Tensor::Empty(e.shape, e.dtype, allocator);
  if (!empty.ok()) {
    return absl::Status(empty.status().code(), absl::StrCat("safetensors file ", path_, ": ", where,
                                                            ": ", empty.status().message()));
  }
  Tensor t = *std::move(empty);
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open safetensors file ", path_, ": ", std::strerror(errno)));
  }
  in.seekg(static_cast<std::streamoff>(e.offset));
  if (!in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()))) {
    return Corrupt(path_, absl::StrCat("short read of ", where));
  }
  return t;
}

absl::StatusOr<Tensor> SafetensorsFile::Get(const std::string& name) const {
  if (auto it = tensors_.find(name); it != tensors_.end()) return it->second;
  return Load(name, DefaultCpuAllocator());
}

absl::StatusOr<Tensor> SafetensorsFile::Get(const std::string& name, DType dtype,
                                            const Shape& shape) const {
  STRATA_ASSIGN_OR_RETURN(Tensor t, Get(name));
  if (t.dtype() != dtype || t.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path_, ": tensor '", name,
                                                   "' is ", t.ToString(), ", expected ",
                                                   DTypeName(dtype), shape.ToString()));
  }
  return t;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsWriter::Entry> entries;
  entries.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    STRATA_RETURN_IF_ERROR(CheckDefined("WriteSafetensors", name, t));
    STRATA_RETURN_IF_ERROR(CheckHostAddressable("WriteSafetensors", name, t));
    entries.push_back({name, t.dtype(), t.shape()});
  }
  STRATA_ASSIGN_OR_RETURN(SafetensorsWriter writer,
                          SafetensorsWriter::Create(path, std::move(entries), metadata));
  for (const auto& [name, t] : tensors) STRATA_RETURN_IF_ERROR(writer.Write(t));
  return writer.Commit();
}

}  // namespace strata
