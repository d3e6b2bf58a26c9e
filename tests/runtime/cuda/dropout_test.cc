// cuda::DropoutForward and DropoutBackward against the CPU kernels (runtime/cpu/dropout.h), bit for
// bit: the masks come from the same Philox rounds at the same counters, so every element, kept
// or dropped, must match, for f32 and bf16, contiguous and strided tensors, first indices that
// are not multiples of 4 or need the counter's high word, seeds that need the key's high word,
// p = 0 (a copy), in place, and a tensor larger than a full grid. The argument checks run
// without a device.
#include "runtime/cuda/dropout.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/dropout.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"
#include "tests/runtime/cuda/elementwise_test_util.h"

namespace strata::cuda {
namespace {

using testing::EmptyF32;
using testing::ExpectBitwiseEqual;
using testing::ExpectStatus;
using testing::HostAs;
using testing::RandomTensor;

class DropoutCudaTest : public testing::StridedCudaTest {};

TEST_F(DropoutCudaTest, MasksAndValuesEqualTheCpuKernelBitForBit) {
  std::mt19937_64 rng(41);
  const std::vector<DropoutParams> params = {
      {.p = 0.1f, .seed = 1, .step = 0, .stream = 0, .first_index = 0},
      {.p = 0.5f, .seed = 0x123456789ABCDEF0ull, .step = 77, .stream = 3, .first_index = 5},
      {.p = 0.9f, .seed = 42, .step = 0xFFFFFFFFu, .stream = 1, .first_index = 2},
      {.p = 0.3f, .seed = 7, .step = 1000, .stream = 2,
       .first_index = (int64_t{1} << 33) + 3},  // the counter's high word
      {.p = 0.0f, .seed = 9, .step = 1, .stream = 1, .first_index = 0},  // a copy
  };
  const std::vector<Shape> shapes = {Shape{1}, Shape{7}, Shape{3, 257}, Shape{129, 33},
                                     Shape{2, 3, 5}, Shape{0}, Shape{(1 << 20) + 37}};
  for (const DropoutParams& d : params) {
    for (const Shape& shape : shapes) {
      for (DType dtype : {DType::kF32, DType::kBF16}) {
        for (bool strided : {false, true}) {
          if (strided && shape.rank() != 2) continue;
          const std::string what =
              absl::StrCat("p ", d.p, " seed ", d.seed, " first_index ", d.first_index, " ",
                           shape.ToString(), " ", DTypeName(dtype), strided ? " strided" : "");
          // Nonzero inputs, so that a dropped element (0) never equals a kept one.
          const Tensor x = HostAs(RandomTensor(shape, rng, 0.5f, 2.0f), dtype);
          const Tensor want = HostAs(EmptyF32(shape), dtype);
          ASSERT_TRUE(cpu::DropoutForward(x, d, want).ok()) << what;
          const Tensor dx = Upload(x, strided);
          const Tensor y = OutputLike(shape, dtype, strided);
          ASSERT_TRUE(DropoutForward(stream(), dx, d, y).ok()) << what;
          ExpectBitwiseEqual(Download(y), want, "forward " + what);

          const Tensor want_back = HostAs(EmptyF32(shape), dtype);
          ASSERT_TRUE(cpu::DropoutBackward(x, d, want_back).ok()) << what;
          const Tensor g = OutputLike(shape, dtype, strided);
          ASSERT_TRUE(DropoutBackward(stream(), dx, d, g).ok()) << what;
          ExpectBitwiseEqual(Download(g), want_back, "backward " + what);
        }
      }
    }
  }
}

TEST_F(DropoutCudaTest, InPlaceAndTheRateIsRight) {
  std::mt19937_64 rng(42);
  const DropoutParams d{.p = 0.25f, .seed = 5, .step = 3, .stream = 4, .first_index = 1};
  const Tensor x = RandomTensor(Shape{1 << 16}, rng, 0.5f, 2.0f);
  const Tensor want = EmptyF32(x.shape());
  ASSERT_TRUE(cpu::DropoutForward(x, d, want).ok());
  const Tensor dev = ToDevice(x);
  ASSERT_TRUE(DropoutForward(stream(), dev, d, dev).ok());
  const Tensor got = ToHost(dev);
  ExpectBitwiseEqual(got, want, "in place");
  int64_t dropped = 0;
  for (int64_t i = 0; i < got.numel(); ++i) dropped += got.data<float>()[i] == 0.0f;
  // Binomial(65536, 0.25): mean 16384, standard deviation about 111.
  EXPECT_NEAR(static_cast<double>(dropped), 16384.0, 600.0);
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(DropoutCudaChecks, RefuseBadParamsHostTensorsWrongShapesAndDTypes) {
  std::vector<float> bytes(64);
  const Tensor host = EmptyF32(Shape{4, 3});
  const Tensor a = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kF32, Device::Cuda(0));
  const Tensor b = Tensor::Wrap(bytes.data(), Shape{3, 4}, DType::kF32, Device::Cuda(0));
  const Tensor ints = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kI32, Device::Cuda(0));
  const DropoutParams ok{.p = 0.1f};
  ExpectStatus(DropoutForward(nullptr, host, ok, a), absl::StatusCode::kInvalidArgument,
               {"DropoutForward", "x", "not on a CUDA device"});
  ExpectStatus(DropoutBackward(nullptr, a, ok, host), absl::StatusCode::kInvalidArgument,
               {"DropoutBackward", "dx", "not on a CUDA device"});
  ExpectStatus(DropoutForward(nullptr, a, ok, b), absl::StatusCode::kInvalidArgument,
               {"DropoutForward", "out", "[3, 4]"});
  ExpectStatus(DropoutBackward(nullptr, ints, ok, ints), absl::StatusCode::kInvalidArgument,
               {"DropoutBackward", "dout", "expected f32 or bf16"});
  ExpectStatus(DropoutForward(nullptr, a, {.p = 1.0f}, a), absl::StatusCode::kInvalidArgument,
               {"DropoutForward", "p = 1", "[0, 1)"});
  ExpectStatus(DropoutForward(nullptr, a, {.p = std::numeric_limits<float>::quiet_NaN()}, a),
               absl::StatusCode::kInvalidArgument, {"DropoutForward", "[0, 1)"});
  ExpectStatus(DropoutForward(nullptr, a, {.p = 0.5f, .first_index = -1}, a),
               absl::StatusCode::kInvalidArgument, {"DropoutForward", "first_index = -1"});
}

}  // namespace
}  // namespace strata::cuda
