// Reading and writing safetensors files (the Hugging Face format): an 8-byte little-endian
// header length, a JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}},
// then the raw little-endian tensor bytes.
//
//   STRATA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Read("model.safetensors", alloc));
//   STRATA_ASSIGN_OR_RETURN(Tensor w, f.Get("transformer.wte.weight"));
//   STRATA_RETURN_IF_ERROR(WriteSafetensors("out.safetensors", {{"w", w}}, {{"step", "7"}}));
//   STRATA_ASSIGN_OR_RETURN(SafetensorsFile big, SafetensorsFile::Open("optimizer.safetensors"));
//   STRATA_ASSIGN_OR_RETURN(Tensor m, big.Load("h.0.attn.c_attn.weight.exp_avg", alloc));
//
// Writes are atomic (Note [atomic file writes] in runtime/atomic_file.h): a crash or an
// error never leaves a half-written file behind, nor loses the file that was there.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/allocator.h"
#include "runtime/tensor.h"

namespace strata {

class SafetensorsFile {
 public:
  // Loads every tensor of the file into memory from `allocator`.
  static absl::StatusOr<SafetensorsFile> Read(const std::string& path, Allocator& allocator);
  // Reads and checks the header only; each tensor is read when asked for (Load, Get), so a file
  // larger than memory can be consumed one tensor at a time.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  struct Entry {
    DType dtype;
    Shape shape;
    uint64_t offset;  // of its bytes in the file
  };
  // NotFound naming the file and the tensor when absent.
  absl::StatusOr<Entry> Find(const std::string& name) const;
  // The tensor's bytes, read from the file now into a tensor from `allocator`.
  absl::StatusOr<Tensor> Load(const std::string& name, Allocator& allocator) const;

  const std::string& path() const { return path_; }
  // Tensor names in file order (sorted by data offset).
  const std::vector<std::string>& names() const { return names_; }
  bool Contains(const std::string& name) const { return index_.count(name) > 0; }
  // NotFound naming the file and the tensor when absent. A file from Open reads it now.
  absl::StatusOr<Tensor> Get(const std::string& name) const;
  // Get() plus a check of dtype and shape, with an error naming the tensor and both shapes.
  absl::StatusOr<Tensor> Get(const std::string& name, DType dtype, const Shape& shape) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::vector<std::string> names_;
  std::map<std::string, Entry> index_;
  std::map<std::string, Tensor> tensors_;  // those Read loaded
  std::map<std::string, std::string> metadata_;
};

// Tensors may be strided; they are written contiguously. Names must be unique. To write a model
// one tensor at a time, use SafetensorsWriter (runtime/safetensors_writer.h).
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace strata
