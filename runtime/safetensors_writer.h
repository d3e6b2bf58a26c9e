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
// Note [atomic file writes]: the bytes go to "<path>.tmp" in the same directory; Commit fsyncs
// it, renames it over `path` and fsyncs the directory, so `path` is at every moment either the
// old file or the complete new one, also across a power cut. A writer that is destroyed or fails
// before Commit removes the temporary file and leaves `path` as it was. Errors name the file and,
// for system calls, errno ("No space left on device (ENOSPC)").
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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

  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();  // without Commit: removes the temporary file

  // Writes the next declared tensor; `t` must have its dtype and shape (any strides, host memory).
  // A refused tensor writes nothing; an IO error abandons the file.
  absl::Status Write(const Tensor& t);
  // After every tensor was written: fsync, rename over the path, fsync the directory.
  absl::Status Commit();

  const std::string& path() const { return path_; }

 private:
  SafetensorsWriter() = default;
  absl::Status WriteBytes(const void* data, size_t n);
  void Abandon();  // closes and removes the temporary file

  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<Entry> entries_;
  size_t next_ = 0;  // the entry Write takes next
};

}  // namespace strata
