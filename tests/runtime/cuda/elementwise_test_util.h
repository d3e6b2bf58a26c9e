// Helpers of the elementwise-family CUDA tests (elementwise, activation, copy, dropout): host
// dtype conversion, bitwise comparison, and device tensors that are strided views.
//
//   class AddCudaTest : public StridedCudaTest {};
//   Tensor a = Upload(HostAs(RandomTensor(Shape{3, 5}, rng), DType::kBF16), /*strided=*/true);
//   Tensor out = OutputLike(a.shape(), DType::kBF16, /*strided=*/true);
//   ...
//   ExpectBitwiseEqual(Download(out), want, "add");
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "runtime/allocator.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::testing {

// A contiguous host copy of t (any strides), converted to `dtype`.
inline Tensor HostAs(const Tensor& t, DType dtype) {
  absl::StatusOr<Tensor> out = Tensor::Empty(t.shape(), dtype, DefaultCpuAllocator());
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return Tensor();
  const absl::Status copied = out->CopyFrom(t);
  EXPECT_TRUE(copied.ok()) << copied;
  return *std::move(out);
}
inline Tensor HostContiguous(const Tensor& t) { return HostAs(t, t.dtype()); }

// got and want (host tensors of one shape and dtype, any strides) hold the same bits in every
// element; for f32 and bf16 any NaN matches any NaN. Reports the first few differences.
inline void ExpectBitwiseEqual(const Tensor& got, const Tensor& want, absl::string_view what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  const Tensor g = HostContiguous(got), w = HostContiguous(want);
  const size_t bytes = SizeOf(g.dtype());
  const auto* gp = static_cast<const unsigned char*>(g.raw_data());
  const auto* wp = static_cast<const unsigned char*>(w.raw_data());
  int reported = 0;
  for (int64_t i = 0; i < g.numel() && reported < 5; ++i) {
    if (std::memcmp(gp + i * bytes, wp + i * bytes, bytes) == 0) continue;
    if (g.dtype() == DType::kF32) {
      const float a = g.data<float>()[i], b = w.data<float>()[i];
      if (std::isnan(a) && std::isnan(b)) continue;
      ADD_FAILURE() << what << ": element " << i << " is " << std::hexfloat << a << ", expected "
                    << b;
    } else if (g.dtype() == DType::kBF16) {
      const float a = Bf16ToFloat(static_cast<const uint16_t*>(g.raw_data())[i]);
      const float b = Bf16ToFloat(static_cast<const uint16_t*>(w.raw_data())[i]);
      if (std::isnan(a) && std::isnan(b)) continue;
      ADD_FAILURE() << what << ": element " << i << " is " << std::hexfloat << a << ", expected "
                    << b;
    } else {
      ADD_FAILURE() << what << ": element " << i << " differs";
    }
    ++reported;
  }
}

class StridedCudaTest : public CudaKernelTest {
 protected:
  // A device tensor with host's values: contiguous, or (strided, rank 2 only) the transpose of a
  // contiguous device buffer, so that neither dimension has stride 1 where a row-major one would.
  // Tensors of no elements come from EmptyOnCuda.
  Tensor Upload(const Tensor& host, bool strided) {
    if (host.numel() == 0) return EmptyOnCuda(host.shape(), host.dtype());
    if (!strided) return ToDevice(host);
    EXPECT_EQ(host.rank(), 2);
    const Tensor buffer = ToDevice(HostContiguous(host.Transpose(0, 1).value()));
    return buffer.Transpose(0, 1).value();
  }
  // An output of `shape` (filled with 0xFF bytes), laid out as Upload lays out its tensors.
  Tensor OutputLike(const Shape& shape, DType dtype, bool strided) {
    if (shape.numel() == 0) return EmptyOnCuda(shape, dtype);
    if (!strided) return DeviceEmpty(shape, dtype);
    EXPECT_EQ(shape.rank(), 2);
    return DeviceEmpty(Shape{shape[1], shape[0]}, dtype).Transpose(0, 1).value();
  }
  // A CUDA-tagged tensor of no elements. (The allocator gives no memory, and so no device, for
  // zero bytes; the kernels never read it.)
  static Tensor EmptyOnCuda(const Shape& shape, DType dtype) {
    static unsigned char unused[16];
    return Tensor::Wrap(unused, shape, dtype, Device::Cuda(0));
  }
  // A contiguous host copy of a tensor made by Upload or OutputLike.
  Tensor Download(const Tensor& device) {
    if (device.is_contiguous()) return ToHost(device);
    const Tensor host = ToHost(device.Transpose(0, 1).value());
    return HostContiguous(host.Transpose(0, 1).value());
  }
};

}  // namespace strata::testing
