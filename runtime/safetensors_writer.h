// Writes a safetensors file one tensor at a time, so that a model larger than memory goes out
// with only one of its tensors in memory; the header is fixed up front from the declared entries.
//
//   STRATA_ASSIGN_OR_RETURN(SafetensorsWriter w,
//                           SafetensorsWriter::Create("model.safetensors",
//                                                     {{"wte", DType::kF32, Shape{256, 64}},
//                                                      {"wpe", DType::kF32, Shape{32, 64}}},
//                                                     {{"format", "pt"}}));
//   STRATA_RETURN_IF_ERROR(w.Write(wte));  // in the declared order
//   STRATA_RETURN_IF_ERROR(w.Write(wpe));
//   STRATA_RETURN_IF_ERROR(w.Commit());
//
// Atomic (Note [atomic file writes] in runtime/atomic_file.h): a writer destroyed or failed
// before Commit leaves the file that was at `path` as it was, and no temporary behind.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/atomic_file.h"
#include "runtime/dtype.h"
#include "runtime/shape.h"
#include "runtime/tensor.h"

namespace strata {

class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
  };

  // Creates "<path>.tmp" and writes the header. Names must be unique.
  static absl::StatusOr<SafetensorsWriter> Create(const std::string& path,
                                                  std::vector<Entry> entries,
                                                  const std::map<std::string, std::string>& metadata = {});

  SafetensorsWriter(SafetensorsWriter&&) = default;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = default;

  // Writes the next declared tensor; `t` must have its dtype and shape (any strides, host memory).
  // A refused tensor writes nothing; an IO error abandons the file.
  absl::Status Write(const Tensor& t);
  // After every tensor was written: AtomicFile::Commit.
  absl::Status Commit();

  const std::string& path() const { return file_.path(); }

 private:
  explicit SafetensorsWriter(AtomicFile file) : file_(std::move(file)) {}

  AtomicFile file_;
  std::vector<Entry> entries_;
  size_t next_ = 0;  // the entry Write takes next
};

}  // namespace strata
