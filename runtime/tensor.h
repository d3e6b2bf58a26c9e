// Tensors: a typed, strided view into shared storage.
//
//   STRATA_ASSIGN_OR_RETURN(Tensor x, Tensor::Empty(Shape{8, 256, 384}, DType::kF32, allocator));
//   float* p = x.data<float>();                        // checks the dtype
//   STRATA_ASSIGN_OR_RETURN(Tensor row, x.Slice(1, 0, 128));       // view, no copy
//   STRATA_ASSIGN_OR_RETURN(Tensor xt, x.Transpose(1, 2));          // view, strides swapped
//   STRATA_ASSIGN_OR_RETURN(Tensor flat, x.Reshape({-1, 384})); // view when strides allow
//   STRATA_ASSIGN_OR_RETURN(Tensor c, xt.Contiguous(allocator));     // copy
//   Tensor w = Tensor::Wrap(ptr, Shape{4, 4}, DType::kF32, Device::Cpu());  // non-owning
//
// Strides and offsets are in elements. A Tensor is a handle, like std::span: copying it shares the
// storage, and a const Tensor& still gives write access to its elements. Kernels take outputs as
// `const Tensor&` and write into them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/allocator.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/shape.h"
#include "runtime/status.h"

namespace strata {

// Bytes a tensor's elements live in: owned (an Allocation) or borrowed (Wrap).
class Storage {
 public:
  explicit Storage(Allocation allocation)
      : data_(allocation.data()), bytes_(allocation.size()), device_(allocation.device()),
        allocation_(std::move(allocation)) {}
  Storage(void* data, size_t bytes, Device device) : data_(data), bytes_(bytes), device_(device) {}

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool owned() const { return allocation_.allocator() != nullptr; }

 private:
  void* data_;
  size_t bytes_;
  Device device_;
  Allocation allocation_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  // Uninitialised elements. Fails on allocation failure (budget, out of memory).
  static absl::StatusOr<Tensor> Empty(const Shape& shape, DType dtype, Allocator& allocator,
                                      size_t alignment = kDefaultAlignment);
  static absl::StatusOr<Tensor> Zeros(const Shape& shape, DType dtype, Allocator& allocator);
  // A contiguous tensor over memory the caller keeps alive.
  static Tensor Wrap(void* data, const Shape& shape, DType dtype, Device device);
  // A view of `storage` with explicit strides and offset; checks that it stays inside the storage.
  static absl::StatusOr<Tensor> View(std::shared_ptr<Storage> storage, const Shape& shape,
                                     absl::Span<const int64_t> strides, int64_t offset,
                                     DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t numel() const { return shape_.numel(); }
  absl::Span<const int64_t> strides() const { return strides_; }
  int64_t stride(int i) const;  // negative i counts from the end
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::Cpu(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * SizeOf(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool is_contiguous() const;
  // Pointer to element 0 of this view. Aborts if T does not match the dtype (an invariant: callers
  // validate dtypes at the API boundary, see CheckDType).
  template <typename T>
  T* data() const {
    STRATA_CHECK(dtype_ == DTypeOf<T>::value, "tensor of dtype ", DTypeName(dtype_),
                 " read as ", DTypeName(DTypeOf<T>::value));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // Views (no copy). Negative dims count from the end.
  absl::StatusOr<Tensor> Slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  absl::StatusOr<Tensor> Select(int dim, int64_t index) const;  // drops `dim`
  // One size may be -1 (inferred). Fails when the strides cannot express the new shape.
  absl::StatusOr<Tensor> Reshape(absl::Span<const int64_t> sizes) const;
  absl::StatusOr<Tensor> Transpose(int dim0, int dim1) const;
  absl::StatusOr<Tensor> Permute(absl::Span<const int> order) const;

  // A contiguous copy (always a new tensor).
  absl::StatusOr<Tensor> Contiguous(Allocator& allocator) const;
  // Copies (and converts dtype, if they differ) elements from `src` into this tensor; shapes must
  // match; either side may be strided.
  absl::Status CopyFrom(const Tensor& src) const;
  absl::Status Fill(double value) const;

  // "f32[8, 256, 384]" plus strides when not contiguous.
  std::string ToString() const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Dims strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::kF32;
};

// Argument checks shared by kernels; each error names `op`, the argument and the shapes.
absl::Status CheckDefined(absl::string_view op, absl::string_view name, const Tensor& t);
absl::Status CheckDType(absl::string_view op, absl::string_view name, const Tensor& t, DType dtype);
absl::Status CheckRank(absl::string_view op, absl::string_view name, const Tensor& t, int rank);
absl::Status CheckShape(absl::string_view op, absl::string_view name, const Tensor& t,
                        const Shape& expected);
absl::Status CheckContiguous(absl::string_view op, absl::string_view name, const Tensor& t);
absl::Status CheckHostAddressable(absl::string_view op, absl::string_view name, const Tensor& t);
// Defined, f32, contiguous, on a host-addressable device, and (if given) of the expected shape.
absl::Status CheckF32Contiguous(absl::string_view op, absl::string_view name, const Tensor& t);
absl::Status CheckF32Contiguous(absl::string_view op, absl::string_view name, const Tensor& t,
                                const Shape& expected);

}  // namespace strata
