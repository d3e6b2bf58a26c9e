// AdamW's kernel against a plain reference, bit for bit: every instruction-set variant, every
// length (vector tails), chunked against whole, one thread against two, and no allocation.
//
// The reference is the formula of optim/adamw.h as a plain loop, each operation rounded to float.
// This file is compiled with -ffp-contract=off (tests/optim/CMakeLists.txt) so that the compiler
// cannot fuse the reference's multiply-adds either; NoContractionInThisFile checks that it holds.
#include "optim/internal/adamw_kernel.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "optim/adamw.h"
#include "runtime/threading.h"
#include "tests/util/allocation_counter.h"

namespace strata::optim {
namespace {

using internal::AdamWIsa;

struct State {
  std::vector<float> p, g, m, v;
};

// The update as written before the kernel was vectorized by hand, scalars included.
void ReferenceStep(State& s, const AdamWHyper& h, int64_t step) {
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(h.lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float b1 = static_cast<float>(h.beta1), b2 = static_cast<float>(h.beta2);
  const float one_b1 = static_cast<float>(1.0 - h.beta1), one_b2 = static_cast<float>(1.0 - h.beta2);
  const float eps = static_cast<float>(h.eps);
  for (size_t i = 0; i < s.p.size(); ++i) {
    const float gi = s.g[i];
    const float mi = s.m[i] * b1 + gi * one_b1;
    const float vi = s.v[i] * b2 + gi * gi * one_b2;
    s.m[i] = mi;
    s.v[i] = vi;
    const float denom = std::sqrt(vi) / bias2_sqrt + eps;
    s.p[i] = s.p[i] * decay - step_size * (mi / denom);
  }
}

// Random state with the awkward values mixed in: subnormals, signed zeros, values whose square
// overflows, tiny and huge second moments.
State RandomState(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15);
  std::uniform_int_distribution<int> exponent(-30, 30);
  State s;
  s.p.resize(n);
  s.g.resize(n);
  s.m.resize(n);
  s.v.resize(n);
  const float subnormal = std::numeric_limits<float>::denorm_min() * 1234.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float scale = std::ldexp(1.0f, exponent(rng));
    s.p[i] = unit(rng) * scale;
    s.g[i] = unit(rng) * scale;
    s.m[i] = unit(rng) * scale * 0.1f;
    s.v[i] = std::fabs(unit(rng)) * scale * scale * 0.01f;
    switch (pick(rng)) {
      case 0: s.g[i] = subnormal * unit(rng); break;
      case 1: s.v[i] = subnormal; s.m[i] = -subnormal; break;
      case 2: s.g[i] = 3e30f * unit(rng); break;  // g * g overflows to inf
      case 3: s.g[i] = -0.0f; s.m[i] = 0.0f; s.v[i] = 0.0f; break;
      case 4: s.p[i] = 3e38f * unit(rng); break;
      case 5: s.v[i] = 1e-44f; break;
      default: break;
    }
  }
  return s;
}

// Equal bits, or both NaN (a NaN's payload may come from either operand).
void ExpectSameBits(const std::vector<float>& actual, const std::vector<float>& expected,
                    const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int64_t mismatches = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const bool same = std::bit_cast<uint32_t>(actual[i]) == std::bit_cast<uint32_t>(expected[i]) ||
                      (std::isnan(actual[i]) && std::isnan(expected[i]));
    if (!same && ++mismatches <= 3) {
      ADD_FAILURE() << what << "[" << i << "] of " << actual.size() << ": " << actual[i] << " (0x"
                    << std::hex << std::bit_cast<uint32_t>(actual[i]) << ") vs reference "
                    << expected[i] << " (0x" << std::bit_cast<uint32_t>(expected[i]) << std::dec
                    << ")";
    }
  }
  EXPECT_EQ(mismatches, 0) << what << ": elements whose bits differ";
}

void ExpectSameState(const State& actual, const State& expected, const std::string& what) {
  ExpectSameBits(actual.p, expected.p, what + " param");
  ExpectSameBits(actual.m, expected.m, what + " m");
  ExpectSameBits(actual.v, expected.v, what + " v");
}

absl::Status Step(State& s, const AdamWHyper& h, int64_t step) {
  return AdamWStep(absl::MakeSpan(s.p), s.g, absl::MakeSpan(s.m), absl::MakeSpan(s.v), h, step);
}

const AdamWHyper kHypers[] = {
    {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2},
    {.lr = 6e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1},
    {.lr = 3e-2, .beta1 = 0.0, .beta2 = 0.0, .eps = 1e-6, .weight_decay = 0.0},
};

TEST(AdamWKernelTest, NoContractionInThisFile) {
  // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11; a fused multiply-add keeps the 2^-24.
  volatile float a = 1.0f + 0x1p-12f, c = -(1.0f + 0x1p-11f);
  const float x = a, y = c;
  EXPECT_EQ(x * x + y, 0.0f) << "this file must be compiled with -ffp-contract=off";
}

TEST(AdamWKernelTest, EveryIsaMatchesReferenceBits) {
  // The kernel skips dividing by sqrt(1 - beta2^t) once it rounds to 1; these cases reach that.
  ASSERT_EQ(internal::MakeAdamWScalars(kHypers[1], 1000).bias2_sqrt, 1.0f);
  ASSERT_EQ(internal::MakeAdamWScalars(kHypers[2], 1).bias2_sqrt, 1.0f);
  ASSERT_NE(internal::MakeAdamWScalars(kHypers[0], 1000).bias2_sqrt, 1.0f);
  for (const AdamWIsa isa : {AdamWIsa::kGeneric, AdamWIsa::kAvx512}) {
    if (!internal::AdamWIsaSupported(isa)) continue;
    for (const int64_t n : {0, 1, 15, 16, 17, 31, 33, 1023, 1024 + 7, 5000}) {
      for (size_t hi = 0; hi < std::size(kHypers); ++hi) {
        const std::string what = absl::StrCat(internal::AdamWIsaName(isa), " n=", n, " hyper ", hi);
        State s = RandomState(n, 1000 * n + hi), ref = s;
        for (const int64_t step : {1, 2, 1000}) {
          internal::AdamWRange(isa, internal::MakeAdamWScalars(kHypers[hi], step), s.p.data(),
                               s.g.data(), s.m.data(), s.v.data(), n);
          ReferenceStep(ref, kHypers[hi], step);
          ExpectSameState(s, ref, absl::StrCat(what, " step ", step));
        }
      }
    }
  }
}

TEST(AdamWKernelTest, StepMatchesReferenceBitsAcrossThreads) {
  const int64_t n = 3 * 32768 + 13;  // long enough to split across threads, with a tail
  const State start = RandomState(n, 7);
  for (const int threads : {1, 2}) {
    SetNumThreads(threads);
    State s = start, ref = start;
    for (int64_t step = 1; step <= 3; ++step) {
      ASSERT_TRUE(Step(s, kHypers[1], step).ok());
      ReferenceStep(ref, kHypers[1], step);
    }
    ExpectSameState(s, ref, absl::StrCat(threads, " threads"));
  }
  SetNumThreads(0);
}

TEST(AdamWKernelTest, ChunkedEqualsWhole) {
  const int64_t n = 70 * 1024 + 517;
  const State start = RandomState(n, 11);
  State whole = start;
  for (int64_t step = 1; step <= 2; ++step) ASSERT_TRUE(Step(whole, kHypers[0], step).ok());
  // Chunks as the offloaded optimizer cuts them: multiples of 1024 elements, any tail.
  for (const int64_t chunk : {1024, 3 * 1024, 33 * 1024, 64 * 1024}) {
    State s = start;
    for (int64_t step = 1; step <= 2; ++step) {
      for (int64_t lo = 0; lo < n; lo += chunk) {
        const size_t len = static_cast<size_t>(std::min(chunk, n - lo));
        ASSERT_TRUE(AdamWStep(absl::MakeSpan(s.p).subspan(lo, len),
                              absl::MakeConstSpan(s.g).subspan(lo, len),
                              absl::MakeSpan(s.m).subspan(lo, len),
                              absl::MakeSpan(s.v).subspan(lo, len), kHypers[0], step)
                        .ok());
      }
    }
    ExpectSameState(s, whole, absl::StrCat("chunks of ", chunk));
  }
}

TEST(AdamWKernelTest, NeverAllocates) {
  if (!testing::AllocationCounter::Supported()) GTEST_SKIP() << "operator new is not replaceable";
  for (const int64_t n : {100, 200000}) {  // the calling thread alone; a team of threads
    State s = RandomState(n, 3);
    ASSERT_TRUE(Step(s, kHypers[0], 1).ok());  // the first parallel region starts the pool
    testing::AllocationCounter counter;
    for (int64_t step = 2; step <= 4; ++step) ASSERT_TRUE(Step(s, kHypers[0], step).ok());
    EXPECT_EQ(counter.count(), 0) << "n=" << n;
  }
}

}  // namespace
}  // namespace strata::optim
