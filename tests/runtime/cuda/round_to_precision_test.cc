// cuda::RoundToPrecision against cpu::RoundToPrecision, bit for bit, over random bit patterns
// (every exponent, both signs, NaNs, infinities, f16's subnormals) and its argument errors.
#include "runtime/cuda/round_to_precision.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>

#include "gtest/gtest.h"
#include "runtime/cpu/round_to_precision.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectStatus;

class RoundToPrecisionCudaTest : public CudaKernelTest {};

TEST_F(RoundToPrecisionCudaTest, EqualsTheCpuKernelBitForBit) {
  std::mt19937_64 rng(5);
  Tensor x = EmptyF32(Shape{(1 << 20) + 3});  // odd: the grid's tail
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    p[i] = i % 4 == 0 ? std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng),
                                   std::uniform_int_distribution<int>(-30, 18)(rng))
                      : std::bit_cast<float>(static_cast<uint32_t>(rng()));
  }
  for (DType d : {DType::kBF16, DType::kF16, DType::kF32}) {
    Tensor on_device = ToDevice(x);
    ASSERT_TRUE(RoundToPrecision(stream(), on_device, d).ok());
    Tensor want = EmptyF32(x.shape());
    ASSERT_TRUE(want.CopyFrom(x).ok());
    ASSERT_TRUE(cpu::RoundToPrecision(want, d).ok());
    const Tensor got = ToHost(on_device);
    int mismatches = 0;
    for (int64_t i = 0; i < x.numel() && mismatches < 5; ++i) {
      const float g = got.data<float>()[i], w = want.data<float>()[i];
      const bool same = std::isnan(w) ? std::isnan(g)
                                      : std::bit_cast<uint32_t>(g) == std::bit_cast<uint32_t>(w);
      if (!same) {
        ++mismatches;
        ADD_FAILURE() << DTypeName(d) << ": input " << std::hexfloat << p[i] << " gave " << g
                      << ", the CPU " << w;
      }
    }
  }
}

// The launcher checks its arguments before it touches the device, so this runs anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(RoundToPrecisionCudaChecks, RefuseHostTensorsAndOtherFormats) {
  Tensor host = EmptyF32(Shape{4});
  ExpectStatus(RoundToPrecision(nullptr, host, DType::kBF16), absl::StatusCode::kInvalidArgument,
               {"RoundToPrecision", "x", "not on a CUDA device"});
  Tensor on_cuda = Tensor::Wrap(host.raw_data(), Shape{4}, DType::kF32, Device::Cuda(0));
  ExpectStatus(RoundToPrecision(nullptr, on_cuda, DType::kI32),
               absl::StatusCode::kInvalidArgument, {"precision i32", "not a float format"});
  Tensor ints = Tensor::Wrap(host.raw_data(), Shape{4}, DType::kI32, Device::Cuda(0));
  ExpectStatus(RoundToPrecision(nullptr, ints, DType::kBF16), absl::StatusCode::kInvalidArgument,
               {"RoundToPrecision", "x"});
}

}  // namespace
}  // namespace strata::cuda
