// SGD on a CUDA device against SgdStep (optim/sgd.h). Needs a device: those tests skip with
// CUDA's reason where there is none (optim_cuda_emulated_test runs them on the CPU's emulation).
#include "optim/cuda/sgd_cuda.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <limits>
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

TEST(SgdCudaTest, ArgumentsAreCheckedBeforeAnyLaunch) {
  float x = 0;
  const SgdHyper momentum{.lr = 0.1, .momentum = 0.9};
  EXPECT_THAT(SgdStepCuda(&x, &x, &x, 1, momentum, 0).message(), HasSubstr("step 0 must be >= 1"));
  EXPECT_THAT(SgdStepCuda(&x, &x, &x, -1, momentum, 1).message(), HasSubstr("n = -1 < 0"));
  EXPECT_THAT(SgdStepCuda(&x, &x, nullptr, 4, momentum, 1).message(),
              HasSubstr("a null buffer for 4 elements (param 1, grad 1, momentum buffer 0)"));
  EXPECT_THAT(SgdStepCuda(&x, &x, &x, 1, SgdHyper{.lr = 0.1, .nesterov = true}, 1).message(),
              HasSubstr("nesterov needs momentum > 0"));
  // Without momentum no buffer is needed.
  EXPECT_TRUE(SgdStepCuda(nullptr, nullptr, nullptr, 0, SgdHyper{}, 1).ok());
}

// Every form (plain, momentum with dampening, Nesterov, weight decay) over steps 1-3 against the
// CPU's: within an ulp or two per element (fused multiply-adds may differ, sgd_cuda.h).
TEST(SgdCudaTest, MatchesTheCpuStep) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  const size_t n = 100003;
  for (const SgdHyper& h :
       {SgdHyper{.lr = 0.1}, SgdHyper{.lr = 0.05, .momentum = 0.9, .dampening = 0.1},
        SgdHyper{.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4},
        SgdHyper{.lr = 0.01, .weight_decay = 0.1}}) {
    std::vector<float> p = Random(n, 1, 1), buf(n, 0.0f);
    DeviceFloats dp(p), dbuf(buf);
    for (int64_t step = 1; step <= 3; ++step) {
      const std::vector<float> g = Random(n, 0.5f, 10 + static_cast<uint32_t>(step));
      DeviceFloats dg(g);
      ASSERT_TRUE(SgdStep(absl::MakeSpan(p), g, absl::MakeSpan(buf), h, step).ok());
      ASSERT_TRUE(SgdStepCuda(dp.data, dg.data, dbuf.data, n, h, step).ok());
      const std::vector<float> got = dp.Read(), got_buf = dbuf.Read();
      for (size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(got[i], p[i], 2e-7 * (1 + std::abs(p[i])))
            << "param " << i << " at step " << step << ", momentum " << h.momentum;
        ASSERT_NEAR(got_buf[i], buf[i], 2e-7 * (1 + std::abs(buf[i]))) << "buffer " << i;
      }
    }
  }
}

TEST(SgdCudaTest, SkipsWhenTheNormIsNotFinite) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  const size_t n = 1000;
  const std::vector<float> p = Random(n, 1, 1), g = Random(n, 1, 2);
  for (float norm : {std::numeric_limits<float>::infinity(), std::nanf(""), 1.0f}) {
    DeviceFloats dp(p), dg(g), dbuf(std::vector<float>(n, 0.0f)), dnorm({norm});
    ASSERT_TRUE(SgdStepCuda(dp.data, dg.data, dbuf.data, n, SgdHyper{.lr = 0.1, .momentum = 0.9}, 1,
                            nullptr, dnorm.data)
                    .ok());
    EXPECT_EQ(dp.Read() == p, !std::isfinite(norm)) << "norm " << norm;
  }
}

// A partial-channel update: runs of `length` every `stride` of the parameter move as the CPU's
// step on each run moves them; the elements between runs do not move.
TEST(SgdCudaTest, UpdatesRunsOfTheParameterAsTheCpu) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  const int64_t rows = 29, stride = 40, length = 7, n = rows * length;
  std::vector<float> p = Random(rows * stride, 1, 1), buf(n, 0.0f);
  const std::vector<float> before = p, g = Random(n, 0.5f, 2);
  DeviceFloats dp(p), dg(g), dbuf(buf);
  const SgdHyper h{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4};
  ASSERT_TRUE(SgdStepCuda(dp.data, dg.data, dbuf.data, n, h, 1, nullptr, nullptr,
                          ParamRuns{.length = length, .stride = stride})
                  .ok());
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(SgdStep(absl::MakeSpan(p.data() + r * stride, length),
                        absl::MakeConstSpan(g.data() + r * length, length),
                        absl::MakeSpan(buf.data() + r * length, length), h, 1)
                    .ok());
  }
  const std::vector<float> got = dp.Read();
  for (int64_t i = 0; i < rows * stride; ++i) {
    if (i % stride >= length) {
      ASSERT_EQ(got[i], before[i]) << "element " << i << " outside the runs";
    } else {
      ASSERT_NEAR(got[i], p[i], 2e-7 * (1 + std::abs(p[i]))) << "element " << i;
    }
  }
}

}  // namespace
}  // namespace strata::optim
