// Dropout (runtime/cpu/dropout.h) against a reference written here from the papers: Philox4x32-10
// implemented again from Salmon et al. (SC'11) and checked against Random123's known-answer
// vectors, then the mask and scale in double. PyTorch's dropout draws from another generator, so
// there is no fixture to compare with; the closed-form checks are the rate (binomial bounds), the
// scale, and that the mask depends on the element's global index alone.
#include "runtime/cpu/dropout.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/philox.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// Philox4x32-10 as Random123's philox.h writes it: the key bumped before each round but the
// first, the 32x32 -> 64 multiply split into high and low halves by separate functions.
struct RefPhilox {
  static uint32_t MulHi(uint32_t a, uint32_t b) {
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
  }
  static uint32_t MulLo(uint32_t a, uint32_t b) { return a * b; }
  static std::array<uint32_t, 4> Draw(std::array<uint32_t, 4> x, std::array<uint32_t, 2> k) {
    for (int r = 0; r < 10; ++r) {
      if (r != 0) {
        k[0] = k[0] + 0x9E3779B9u;
        k[1] = k[1] + 0xBB67AE85u;
      }
      const uint32_t hi0 = MulHi(0xD2511F53u, x[0]), lo0 = MulLo(0xD2511F53u, x[0]);
      const uint32_t hi1 = MulHi(0xCD9E8D57u, x[2]), lo1 = MulLo(0xCD9E8D57u, x[2]);
      x = {hi1 ^ x[1] ^ k[0], lo1, hi0 ^ x[3] ^ k[1], lo0};
    }
    return x;
  }
};

// Random123 tests/kat_vectors, "philox4x32 10": counter (4 words), key (2), expected (4).
struct KnownAnswer {
  std::array<uint32_t, 4> ctr;
  std::array<uint32_t, 2> key;
  std::array<uint32_t, 4> expected;
};
const KnownAnswer kKnownAnswers[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

TEST(DropoutTest, PhiloxMatchesRandom123KnownAnswers) {
  for (const KnownAnswer& k : kKnownAnswers) {
    EXPECT_EQ(Philox4x32_10(k.ctr, k.key), k.expected);
    EXPECT_EQ(RefPhilox::Draw(k.ctr, k.key), k.expected) << "the test's own Philox";
  }
}

// The uniform of element g (Note [dropout masks from a counter]), in double.
double RefUniform(const DropoutParams& d, uint64_t g) {
  const uint64_t block = g / 4;
  const std::array<uint32_t, 4> r = RefPhilox::Draw(
      {static_cast<uint32_t>(block & 0xffffffffu), static_cast<uint32_t>(block >> 32), d.step,
       d.stream},
      {static_cast<uint32_t>(d.seed & 0xffffffffu), static_cast<uint32_t>(d.seed >> 32)});
  return std::ldexp(static_cast<double>(r[g % 4] >> 8), -24);
}

// y = x * mask / (1 - p), mask_i = [u_i >= p].
// (A dropped element is x * 0, -0 for a negative x, which the comparisons' tiny atol accepts.)
Vec RefDropout(const Vec& x, const DropoutParams& d) {
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const bool keep = RefUniform(d, d.first_index + i) >= static_cast<double>(d.p);
    y[i] = keep ? x[i] / (1.0 - static_cast<double>(d.p)) : 0.0;
  }
  return y;
}

DropoutParams Params(float p, int64_t first = 0) {
  // Both halves of the seed and every counter word nonzero, so that none is silently dropped.
  return {.p = p, .seed = 0x0123456789abcdefull, .step = 17, .stream = 5, .first_index = first};
}

TEST(DropoutTest, ForwardAndBackwardAgainstReference) {
  std::mt19937_64 rng(3);
  // first_index not a multiple of 4 (a counter shared with the previous part), and above 2^34 so
  // that the block index needs the counter's high word.
  for (int64_t first : {int64_t{0}, int64_t{3}, (int64_t{1} << 34) + 2}) {
    for (float p : {0.1f, 0.5f, 0.77f}) {
      for (const Shape& s : {Shape{1}, Shape{7}, Shape{3, 37}, Shape{2, 5, 131}}) {
        for (bool strided : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "first " << first << " p " << p << " "
                                            << s.ToString() << (strided ? " strided" : ""));
          const DropoutParams d = Params(p, first);
          Tensor x = testing::RandomTensor(s, rng);
          Tensor dy = testing::RandomTensor(s, rng);
          if (strided) {
            x = testing::MakeStrided(x);
            dy = testing::MakeStrided(dy);
          }
          const Tensor y = testing::EmptyF32(s), dx = testing::EmptyF32(s);
          ASSERT_TRUE(DropoutForward(x, d, y).ok());
          ExpectClose(y, RefDropout(ToDouble(x), d), 1e-6, 1e-30, "forward");
          // Linear in x: the gradient of sum(y * dy) is the same map applied to dy, which
          // central differences of the reference confirm.
          ASSERT_TRUE(DropoutBackward(dy, d, dx).ok());
          ExpectClose(dx, RefDropout(ToDouble(dy), d), 1e-6, 1e-30, "backward");
          const Vec numeric = testing::NumericalGradient(
              [&](const Vec& v) { return RefDropout(v, d); }, ToDouble(x), ToDouble(dy));
          ExpectClose(dx, numeric, 1e-5, 1e-7, "backward against finite differences");
        }
      }
    }
  }
}

TEST(DropoutTest, DropRateWithinBinomialBoundsAndKeptValuesScaled) {
  const int64_t n = 1 << 20;
  Tensor ones = testing::FromDouble(Vec(n, 1.0), Shape{n});
  const Tensor y = testing::EmptyF32(Shape{n});
  for (float p : {0.01f, 0.1f, 0.5f, 0.9f}) {
    SCOPED_TRACE(::testing::Message() << "p " << p);
    ASSERT_TRUE(DropoutForward(ones, Params(p), y).ok());
    const float scale = 1.0f / (1.0f - p);
    int64_t dropped = 0, other = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float v = y.data<float>()[i];
      dropped += v == 0.0f;
      other += v != 0.0f && v != scale;
    }
    EXPECT_EQ(other, 0) << "a kept element is not 1 / (1 - p)";
    // Five standard deviations of Binomial(n, p): a wrong threshold (p 2^24 off by a bit is not
    // visible, but u > 1 - p, u >= p^2 or a lane reused are) falls far outside.
    const double mean = n * static_cast<double>(p);
    const double sd = std::sqrt(mean * (1 - p));
    EXPECT_NEAR(static_cast<double>(dropped), mean, 5 * sd);
  }
}

TEST(DropoutTest, MaskIndependentOfThreadCount) {
  const Shape s{67, 1031};  // above the parallel threshold, not a multiple of the chunk
  std::mt19937_64 rng(5);
  const Tensor x = testing::RandomTensor(s, rng);
  const int before = NumThreads();
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 2, 3}) {
    SetNumThreads(threads);
    const Tensor y = testing::EmptyF32(s);
    ASSERT_TRUE(DropoutForward(x, Params(0.3f, 1), y).ok());
    outs.emplace_back(y.data<float>(), y.data<float>() + y.numel());
  }
  SetNumThreads(before);
  EXPECT_EQ(outs[0], outs[1]) << "1 and 2 threads";
  EXPECT_EQ(outs[0], outs[2]) << "1 and 3 threads";
}

// Rows [0, 3) and [3, 8) of a batch, each given the index of its first element, draw the mask
// of the whole batch: what lets micro-batches and ranks agree (graph/ops/dropout_ops.cc).
TEST(DropoutTest, PartsOfABatchDrawTheWholeBatchsMask) {
  std::mt19937_64 rng(9);
  const Tensor x = testing::RandomTensor(Shape{8, 9}, rng);
  const Tensor whole = testing::EmptyF32(Shape{8, 9});
  ASSERT_TRUE(DropoutForward(x, Params(0.4f), whole).ok());
  const Tensor part = testing::EmptyF32(Shape{8, 9});
  ASSERT_TRUE(DropoutForward(x.Slice(0, 0, 3).value(), Params(0.4f, 0), part.Slice(0, 0, 3).value()).ok());
  ASSERT_TRUE(DropoutForward(x.Slice(0, 3, 8).value(), Params(0.4f, 27), part.Slice(0, 3, 8).value()).ok());
  EXPECT_EQ(ToDouble(part), ToDouble(whole));
}

// Each of seed (either half), step and stream changes the mask: about 2 p (1 - p) of the
// elements differ between two independent masks.
TEST(DropoutTest, SeedStepAndStreamEachGiveAnotherMask) {
  const int64_t n = 1 << 16;
  const Tensor ones = testing::FromDouble(Vec(n, 1.0), Shape{n});
  auto mask = [&](const DropoutParams& d) {
    const Tensor y = testing::EmptyF32(Shape{n});
    EXPECT_TRUE(DropoutForward(ones, d, y).ok());
    return ToDouble(y);
  };
  const DropoutParams base = Params(0.5f);
  const Vec m = mask(base);
  std::vector<DropoutParams> others(5, base);
  others[0].seed ^= 1;
  others[1].seed ^= uint64_t{1} << 40;
  others[2].step += 1;
  others[3].stream += 1;
  others[4].first_index += 4;  // the next counter block
  for (size_t k = 0; k < others.size(); ++k) {
    const Vec o = mask(others[k]);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) differ += o[i] != m[i];
    const double sd = std::sqrt(n * 0.5 * 0.5);
    EXPECT_NEAR(static_cast<double>(differ), n * 0.5, 5 * sd) << "change " << k;
  }
}

TEST(DropoutTest, InPlaceBf16AndZeroP) {
  std::mt19937_64 rng(11);
  const Shape s{5, 77};
  const DropoutParams d = Params(0.25f, 8);
  Tensor x = testing::RandomTensor(s, rng);
  const Vec want = RefDropout(ToDouble(x), d);
  // In place (the graph plans the output over the input).
  Tensor y = testing::FromDouble(ToDouble(x), s);
  ASSERT_TRUE(DropoutForward(y, d, y).ok());
  ExpectClose(y, want, 1e-6, 1e-30, "in place");
  // bf16 in and out, fp32 inside: the reference over the bf16-rounded input, rounded once more.
  Tensor xb = testing::FromDouble(ToDouble(x), s, DType::kBF16);
  const Tensor yb = Tensor::Empty(s, DType::kBF16, DefaultCpuAllocator()).value();
  ASSERT_TRUE(DropoutForward(xb, d, yb).ok());
  ExpectClose(yb, RefDropout(ToDouble(xb), d), 1.0 / 128, 1e-30, "bf16");
  // p = 0: the input itself, bit for bit.
  const Tensor same = testing::EmptyF32(s);
  ASSERT_TRUE(DropoutForward(x, Params(0.0f), same).ok());
  EXPECT_EQ(ToDouble(same), ToDouble(x));
}

TEST(DropoutTest, ErrorsNameTheArgument) {
  const Tensor x = testing::ZerosF32(Shape{2, 3});
  const Tensor y = testing::EmptyF32(Shape{2, 3});
  ExpectStatus(DropoutForward(x, Params(1.0f), y), absl::StatusCode::kInvalidArgument,
               {"DropoutForward", "p = 1", "[0, 1)"});
  ExpectStatus(DropoutBackward(x, Params(-0.5f), y), absl::StatusCode::kInvalidArgument,
               {"DropoutBackward", "p = -0.5", "[0, 1)"});
  ExpectStatus(DropoutForward(x, Params(std::numeric_limits<float>::quiet_NaN()), y),
               absl::StatusCode::kInvalidArgument, {"p = nan"});
  ExpectStatus(DropoutForward(x, Params(0.5f, -1), y), absl::StatusCode::kInvalidArgument,
               {"first_index = -1"});
  ExpectStatus(DropoutForward(x, Params(0.5f), testing::EmptyF32(Shape{3, 2})),
               absl::StatusCode::kInvalidArgument, {"DropoutForward", "out", "f32[3, 2]"});
  ExpectStatus(DropoutBackward(testing::FromDouble(Vec(6, 1.0), Shape{2, 3}, DType::kI32),
                               Params(0.5f), y),
               absl::StatusCode::kInvalidArgument, {"DropoutBackward", "dout", "i32"});
  // Nothing was written on an error.
  for (double v : ToDouble(y)) EXPECT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace strata::cpu
