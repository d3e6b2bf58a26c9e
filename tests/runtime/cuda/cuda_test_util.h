// The CUDA kernel tests' fixture: every test skips with CUDA's reason where no device is found;
// otherwise it gets a stream, a device allocator and copies to and from the device.
//
//   class GeluCudaTest : public CudaKernelTest {};
//   TEST_F(GeluCudaTest, MatchesTheCpuKernel) {
//     std::mt19937_64 rng(7);
//     Tensor x = RandomTensor(Shape{64, 384}, rng);          // host, kernel_test_util.h
//     Tensor want = EmptyF32(x.shape());
//     ASSERT_OK(cpu::GeluForward(x, want));
//     Tensor dx = ToDevice(x), dy = DeviceEmpty(x.shape());
//     ASSERT_OK(cuda::GeluForward(stream(), dx, dy));
//     ExpectRelativeError(ToHost(dy), want, 1e-5, "gelu forward");
//   }
//
// A launcher checks its arguments before it touches the device, so its refusals are tested
// without one (plain TEST, not this fixture): Tensor::Wrap(host_bytes, shape, dtype,
// Device::Cuda(0)) makes a device-tagged tensor that the refused call never reads.
#pragma once

#include <memory>
#include <random>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "runtime/caching_allocator.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::testing {

class CudaKernelTest : public ::testing::Test {
 protected:
  void SetUp() override;  // GTEST_SKIP()s without a device
  void TearDown() override;

  CUstream_st* stream() const { return stream_; }
  // Uninitialised device memory (filled with NaN bytes, 0xFF, so unwritten outputs show).
  Tensor DeviceEmpty(const Shape& shape, DType dtype = DType::kF32);
  Tensor DeviceZeros(const Shape& shape, DType dtype = DType::kF32);
  // A contiguous device copy of a host tensor (any strides, any dtype).
  Tensor ToDevice(const Tensor& host);
  // Waits for the stream, then copies a device tensor (contiguous) to a new host tensor.
  Tensor ToHost(const Tensor& device);

 private:
  std::unique_ptr<CachingAllocator> allocator_;
  CUstream_st* stream_ = nullptr;
};

// Device tensors for the argument-check tests (plain TEST, no device): each call is a CUDA-tagged
// view of the same host bytes (256 KiB, 8-byte aligned), which the refused calls never read.
//
//   CudaTaggedViews on_cuda;
//   ExpectStatus(cuda::GeluForward(nullptr, EmptyF32(Shape{4}), on_cuda(Shape{4})), ...);
class CudaTaggedViews {
 public:
  Tensor operator()(const Shape& shape, DType dtype = DType::kF32) {
    return Tensor::Wrap(bytes_.data(), shape, dtype, Device::Cuda(0));
  }

 private:
  std::vector<double> bytes_ = std::vector<double>(1 << 15);
};

// The norm-wise relative error max|got - want| / max|want| (f32 or f16/bf16 host tensors of one
// shape; NaN and infinities must sit at the same places with the same sign) must be below
// `tolerance`; reports the worst element. `min_scale` bounds max|want| from below, for results
// that are cancellation and nearly 0 (a norm's dx over one column): their error is measured
// against the inputs' scale instead.
void ExpectRelativeError(const Tensor& got, const Tensor& want, double tolerance,
                         absl::string_view what, double min_scale = 0.0);

// Host tensors the kernel tests compare with (no device involved).
//
// A contiguous f32 host copy of host tensor t (any dtype, any strides), converted by CopyFrom: a
// CPU kernel's input or output that the test must not share with another call.
Tensor CopyOf(const Tensor& t);
// A contiguous f32 host copy of host tensor t, converted through double (ToDouble/FromDouble).
Tensor ToF32(const Tensor& t);
// Random values in `dtype` (RandomTensor's f32 values rounded to it), as a host tensor of that
// dtype.
Tensor RandomIn(const Shape& shape, DType dtype, std::mt19937_64& rng);

}  // namespace strata::testing
