// Needs a CUDA device: the tests that run the kernel skip with CUDA's reason where there is none.
#include "optim/cuda/adamw_cuda.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <random>
#include <vector>

#include "absl/types/span.h"
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

// A partial-channel update (runs of `length` every `stride` of the parameter, compact gradient
// and moments): the CPU's bits on those elements, the others untouched.
TEST(AdamWCudaTest, UpdatesRunsOfTheParameterAsTheCpu) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  const int64_t rows = 37, stride = 50, length = 13, n = rows * length;
  std::vector<float> p = Random(rows * stride, 1, 1), m(n, 0.0f), v(n, 0.0f);
  const std::vector<float> g = Random(n, 0.5f, 2);
  DeviceFloats dp(p), dg(g), dm(m), dv(v);
  const AdamWHyper h{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  ASSERT_TRUE(AdamWStepCuda(dp.data, dg.data, dm.data, dv.data, n, h, 1, nullptr, nullptr,
                            ParamRuns{.length = length, .stride = stride})
                  .ok());
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(AdamWStep(absl::MakeSpan(p.data() + r * stride, length),
                          absl::MakeConstSpan(g.data() + r * length, length),
                          absl::MakeSpan(m.data() + r * length, length),
                          absl::MakeSpan(v.data() + r * length, length), h, 1)
                    .ok());
  }
  EXPECT_EQ(dp.Read(), p);
  EXPECT_EQ(dm.Read(), m);
  EXPECT_EQ(dv.Read(), v);
  EXPECT_THAT(AdamWStepCuda(dp.data, dg.data, dm.data, dv.data, n + 1, h, 1, nullptr, nullptr,
                            ParamRuns{.length = length, .stride = stride})
                  .message(),
              HasSubstr("runs of 13 every 50 do not hold 482 elements"));
}

}  // namespace
}  // namespace strata::optim
