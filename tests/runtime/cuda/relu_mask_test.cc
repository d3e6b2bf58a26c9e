// cuda::ReluMask and cuda::MaskedBackward against the CPU kernels (runtime/cpu/activation.h), bit
// for bit, for ReLU's and ReLU6's bounds, on sizes that are not multiples of a block and one
// larger than a full grid, with the gradient written over dy; the argument checks run without a
// device.
#include "runtime/cuda/relu_mask.h"

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/activation.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"
#include "tests/runtime/cuda/elementwise_test_util.h"

namespace strata::cuda {
namespace {

using testing::EmptyF32;
using testing::ExpectBitwiseEqual;
using testing::ExpectStatus;
using testing::RandomTensor;

class ReluMaskCudaTest : public testing::CudaKernelTest {};

TEST_F(ReluMaskCudaTest, MaskAndGradientMatchTheCpu) {
  std::mt19937_64 rng(41);
  for (const Shape& shape : {Shape{0}, Shape{1}, Shape{7}, Shape{129, 33}, Shape{(1 << 20) + 37}}) {
    for (float upper : {std::numeric_limits<float>::infinity(), 6.0f}) {
      const std::string what = absl::StrCat(shape.ToString(), " upper ", upper);
      const Tensor x = RandomTensor(shape, rng, -9.0f, 9.0f);
      const Tensor dy = RandomTensor(shape, rng);
      Tensor want_mask = Tensor::Empty(shape, DType::kU8, DefaultCpuAllocator()).value();
      const Tensor want_dx = EmptyF32(shape);
      ASSERT_TRUE(cpu::ReluMask(x, upper, want_mask).ok());
      ASSERT_TRUE(cpu::MaskedBackward(want_mask, dy, want_dx).ok());

      const Tensor mask = DeviceEmpty(shape, DType::kU8);
      ASSERT_TRUE(ReluMask(stream(), ToDevice(x), upper, mask).ok()) << what;
      ExpectBitwiseEqual(ToHost(mask), want_mask, what + " mask");
      const Tensor d = ToDevice(dy);  // dx written over dy, as the step does
      ASSERT_TRUE(MaskedBackward(stream(), mask, d, d).ok()) << what;
      ExpectBitwiseEqual(ToHost(d), want_dx, what + " dx");
    }
  }
}

// A device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(ReluMaskCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  std::vector<float> bytes(64);
  const Tensor host = EmptyF32(Shape{4, 3});
  const Tensor x = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kF32, Device::Cuda(0));
  const Tensor mask = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kU8, Device::Cuda(0));
  const Tensor wide = Tensor::Wrap(bytes.data(), Shape{3, 4}, DType::kU8, Device::Cuda(0));
  ExpectStatus(ReluMask(nullptr, host, 6.0f, mask), absl::StatusCode::kInvalidArgument,
               {"ReluMask", "x", "not on a CUDA device"});
  ExpectStatus(ReluMask(nullptr, x, 6.0f, x), absl::StatusCode::kInvalidArgument,
               {"ReluMask", "mask"});
  ExpectStatus(MaskedBackward(nullptr, wide, x, x), absl::StatusCode::kInvalidArgument,
               {"MaskedBackward", "mask", "[3, 4]"});
  ExpectStatus(MaskedBackward(nullptr, mask, x, host), absl::StatusCode::kInvalidArgument,
               {"MaskedBackward", "dx", "not on a CUDA device"});
}

}  // namespace
}  // namespace strata::cuda
