// The gradient norm, global norm and clipping on a CUDA device against optim/grad_clip.h, and
// AdamW's skip of an overflowed step. Needs a device: those tests skip with CUDA's reason where
// there is none (optim_cuda_emulated_test runs them on the CPU's emulation of CUDA).
#include "optim/cuda/grad_norm_cuda.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "optim/cuda/adamw_cuda.h"
#include "optim/grad_clip.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/optim/cuda_test_util.h"

namespace strata::optim {
namespace {

using testing::DeviceFloats;
using ::testing::HasSubstr;
using testing::Random;

class GradNormCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaDevices found = FindCudaDevices();
    if (found.count == 0) GTEST_SKIP() << found.why_none;
  }
};

// `bytes` of device memory for the test's lifetime.
struct DeviceBytes {
  explicit DeviceBytes(size_t bytes) {
    EXPECT_EQ(cudaMalloc(&data, bytes > 0 ? bytes : 1), cudaSuccess);
  }
  ~DeviceBytes() { cudaFree(data); }
  void* data = nullptr;
};

float ReadFloat(const float* device) {
  float v = 0;
  EXPECT_EQ(cudaMemcpy(&v, device, sizeof(v), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

TEST(GradNormCudaArgsTest, AreCheckedBeforeAnyLaunch) {
  float x = 0;
  double w = 0;
  EXPECT_THAT(GradNormCuda(&x, -1, &x, &w, nullptr).message(), HasSubstr("n = -1 < 0"));
  EXPECT_THAT(GradNormCuda(nullptr, 4, &x, &w, nullptr).message(),
              HasSubstr("a null buffer (grad 0, norm 1, workspace 1) for 4 elements"));
  EXPECT_THAT(ClipByNormCuda(&x, 1, &x, 1.0, 0.0, nullptr).message(),
              HasSubstr("scale 0 must be > 0"));
  EXPECT_THAT(ClipByNormCuda(&x, 1, &x, -1.0, 1.0, nullptr).message(),
              HasSubstr("max_norm -1 >= 0"));
  EXPECT_THAT(ClipByNormCuda(&x, 3, nullptr, 1.0, 1.0, nullptr).message(),
              HasSubstr("a null buffer (grad 1, norm 0) for 3 elements"));
  EXPECT_THAT(GlobalNormCuda(
                  2, [&](int) { return &x; }, 3, false, &x, &w, nullptr)
                  .message(),
              HasSubstr("squared_inputs 3 outside [0, 2]"));
  EXPECT_THAT(GlobalNormCuda(
                  2, [&](int i) { return i == 1 ? nullptr : &x; }, 0, false, &x, &w, nullptr)
                  .message(),
              HasSubstr("norm 1 is a null pointer"));
}

// The squares summed in double in another order than the CPU's: the rounded norms agree to the
// last bit or one below it.
TEST_F(GradNormCudaTest, GradNormIsTheCpusGlobalNormOfOneBuffer) {
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{1000}, size_t{(1 << 20) + 7}}) {
    std::vector<float> g = Random(n, 0.3f, static_cast<uint32_t>(n) + 1);
    DeviceFloats dg(g), dnorm({0.0f});
    DeviceBytes ws(GradNormWorkspaceBytes(static_cast<int64_t>(n)));
    ASSERT_TRUE(GradNormCuda(dg.data, static_cast<int64_t>(n), dnorm.data,
                             static_cast<double*>(ws.data), nullptr)
                    .ok());
    const absl::Span<float> one[1] = {absl::MakeSpan(g)};
    const float want = static_cast<float>(GlobalGradNorm(one));
    const float got = ReadFloat(dnorm.data);
    EXPECT_NEAR(got, want, std::abs(want) * 1.5e-7) << "n = " << n;
  }
}

// Per-gradient norms combined in the CPU's order (the first ones already sums of squares, as
// ZeRO's are), over more than one chunk of pointers: the same bits as the CPU's combination.
TEST_F(GradNormCudaTest, GlobalNormCombinesInTheCpusOrder) {
  const std::vector<float> norms = Random(150, 2.0f, 5, /*positive=*/true);
  DeviceFloats dn(norms), out({0.0f});
  DeviceBytes acc(sizeof(double));
  for (int squared : {0, 3}) {
    for (bool squared_output : {false, true}) {
      ASSERT_TRUE(GlobalNormCuda(
                      static_cast<int>(norms.size()), [&](int i) { return dn.data + i; }, squared,
                      squared_output, out.data, static_cast<double*>(acc.data), nullptr)
                      .ok());
      double sum = 0;
      for (size_t i = 0; i < norms.size(); ++i) {
        const double v = norms[i];
        sum += static_cast<int>(i) < squared ? v : v * v;
      }
      const float want = static_cast<float>(squared_output ? sum : std::sqrt(sum));
      EXPECT_EQ(ReadFloat(out.data), want) << squared << " " << squared_output;
    }
  }
}

// Clipping and unscaling give the CPU's bits (the same factor, the same product per element);
// a norm below max_norm, or one that is not finite, leaves the gradient alone.
TEST_F(GradNormCudaTest, ClipByNormScalesAsTheCpu) {
  const size_t n = 100003;
  struct Case {
    float norm;
    double max_norm, scale;
  };
  const float inf = std::numeric_limits<float>::infinity();
  for (const Case& c :
       {Case{5.0f, 1.0, 1.0}, Case{0.5f, 1.0, 1.0}, Case{3000.0f, 1.0, 1024.0},
        Case{3000.0f, 0.0, 1024.0}, Case{inf, 1.0, 1024.0}, Case{std::nanf(""), 1.0, 1.0}}) {
    std::vector<float> g = Random(n, 1.0f, 7);
    DeviceFloats dg(g), dnorm({c.norm});
    ASSERT_TRUE(
        ClipByNormCuda(dg.data, static_cast<int64_t>(n), dnorm.data, c.max_norm, c.scale, nullptr)
            .ok());
    if (std::isfinite(c.norm)) {
      const absl::Span<float> one[1] = {absl::MakeSpan(g)};
      if (c.scale == 1.0) {
        ClipGradsByNorm(one, c.max_norm, c.norm);
      } else {
        UnscaleAndClipGrads(one, c.scale, c.max_norm, c.norm);
      }
    }
    const std::vector<float> got = dg.Read();
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::memcmp(&got[i], &g[i], 4), 0)
          << "element " << i << " for norm " << c.norm << ", max_norm " << c.max_norm << ", scale "
          << c.scale;
    }
  }
}

// A step whose global norm is not finite changes nothing; a finite one updates as usual.
TEST_F(GradNormCudaTest, AdamWSkipsWhenTheNormIsNotFinite) {
  const size_t n = 4099;
  const std::vector<float> p = Random(n, 1, 1), g = Random(n, 0.5f, 2);
  const AdamWHyper h{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  for (float norm : {std::numeric_limits<float>::infinity(), 2.0f}) {
    DeviceFloats dp(p), dg(g), dm(std::vector<float>(n, 0)), dv(std::vector<float>(n, 0));
    DeviceFloats dnorm({norm});
    ASSERT_TRUE(
        AdamWStepCuda(dp.data, dg.data, dm.data, dv.data, n, h, 1, nullptr, dnorm.data).ok());
    const std::vector<float> got = dp.Read();
    const bool same = std::memcmp(got.data(), p.data(), n * sizeof(float)) == 0;
    EXPECT_EQ(same, !std::isfinite(norm)) << "norm " << norm;
  }
}

}  // namespace
}  // namespace strata::optim
