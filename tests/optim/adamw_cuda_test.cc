// Needs a CUDA device: the tests that run the kernel skip with CUDA's reason where there is none.
#include "optim/cuda/adamw_cuda.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/optim/cuda_test_util.h"

namespace strata::optim {
namespace {

using testing::DeviceFloats;
using ::testing::HasSubstr;
using testing::Random;

TEST(AdamWCudaTest, ArgumentsAreCheckedBeforeAnyLaunch) {
  AdamWHyper h;
  float x = 0;
  EXPECT_THAT(AdamWStepCuda(&x, &x, &x, &x, 1, h, 0).message(), HasSubstr("step 0 must be >= 1"));
  EXPECT_THAT(AdamWStepCuda(&x, &x, &x, &x, -1, h, 1).message(), HasSubstr("n = -1 < 0"));
  EXPECT_THAT(AdamWStepCuda(&x, nullptr, &x, &x, 4, h, 1).message(),
              HasSubstr("a null buffer for 4 elements (param 1, grad 0"));
  h.beta2 = 1.5;
  EXPECT_THAT(AdamWStepCuda(&x, &x, &x, &x, 1, h, 1).message(), HasSubstr("beta2"));
  EXPECT_TRUE(AdamWStepCuda(nullptr, nullptr, nullptr, nullptr, 0, AdamWHyper{}, 1).ok());
}

// The device and the CPU give the same bits, step after step, late steps (bias correction 1)
// included, for a length that fills no block evenly.
TEST(AdamWCudaTest, EqualsTheCpuUpdateBitForBit) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  const size_t n = 1000003;
  std::vector<float> p = Random(n, 1, 1), m = Random(n, 0.1f, 2), v = Random(n, 0.01f, 3, true);
  DeviceFloats dp(p), dm(m), dv(v);
  const AdamWHyper h{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  for (int64_t step : {1, 2, 3, 100000}) {
    const std::vector<float> g = Random(n, 0.5f, 10 + static_cast<uint32_t>(step));
    DeviceFloats dg(g);
    ASSERT_TRUE(AdamWStep(absl::MakeSpan(p), g, absl::MakeSpan(m), absl::MakeSpan(v), h, step).ok());
    ASSERT_TRUE(AdamWStepCuda(dp.data, dg.data, dm.data, dv.data, n, h, step).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> gp = dp.Read(), gm = dm.Read(), gv = dv.Read();
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::memcmp(&gp[i], &p[i], 4), 0) << "param " << i << " at step " << step;
      ASSERT_EQ(std::memcmp(&gm[i], &m[i], 4), 0) << "m " << i << " at step " << step;
      ASSERT_EQ(std::memcmp(&gv[i], &v[i], 4), 0) << "v " << i << " at step " << step;
    }
  }
}

}  // namespace
}  // namespace strata::optim
