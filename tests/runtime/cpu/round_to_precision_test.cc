// RoundToPrecision (runtime/cpu/round_to_precision.h) against a reference written here in double
// from the formats' definitions (significand bits, smallest normal exponent, largest finite
// value), not from the bit manipulations of runtime/dtype.cc: hand-picked ties, overflow,
// subnormals and specials with their expected values, then a million bit patterns.
#include "runtime/cpu/round_to_precision.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::EmptyF32;
using testing::ExpectStatus;
using testing::FromDouble;

struct Format {
  int fraction_bits;  // stored significand bits (7 for bf16, 10 for f16)
  int min_exponent;   // of the smallest normal number: below it the spacing stays 2^(min - bits)
  double max_finite;
};
constexpr Format kBf16{7, -126, 0x1.fep127};
constexpr Format kF16{10, -14, 65504.0};

// x rounded to the nearest value of `f`, ties to even, overflowing to infinity.
double Reference(double x, const Format& f) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  const double a = std::fabs(x);
  const int e = std::max(std::ilogb(a), f.min_exponent);
  const double ulp = std::ldexp(1.0, e - f.fraction_bits);
  double r = std::nearbyint(a / ulp) * ulp;  // a / ulp is exact; nearbyint ties to even
  if (r > f.max_finite) r = std::numeric_limits<double>::infinity();
  return std::copysign(r, x);
}

std::vector<float> Round(const std::vector<float>& in, DType precision) {
  Tensor t = EmptyF32(Shape{static_cast<int64_t>(in.size())});
  std::copy(in.begin(), in.end(), t.data<float>());
  EXPECT_TRUE(RoundToPrecision(t, precision).ok());
  return std::vector<float>(t.data<float>(), t.data<float>() + in.size());
}

void ExpectSameBits(float actual, double expected, float input) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual)) << "input " << input;
    return;
  }
  EXPECT_EQ(std::bit_cast<uint32_t>(actual), std::bit_cast<uint32_t>(static_cast<float>(expected)))
      << "input " << std::hexfloat << input << " gave " << actual << ", expected " << expected;
}

TEST(RoundToPrecisionTest, Bf16HandPickedValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    float in, out;
  };
  const Case cases[] = {
      {1.0f + 0x1p-8f, 1.0f},                       // halfway, down to the even neighbour
      {1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-6f},         // halfway, up to the even neighbour
      {1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f},  // just above halfway
      {-1.0f - 0x1p-9f, -1.0f},
      {3.14159265f, 3.140625f},
      {std::numeric_limits<float>::max(), inf},     // past bf16's largest finite value
      {0x1.fep127f, 0x1.fep127f},                   // bf16's largest finite value
      {0x1p-130f, 0x1p-130f},                       // subnormal, representable
      {0x1p-134f, 0.0f},                            // half the smallest bf16 subnormal: to even 0
      {-0x1p-134f, -0.0f},
      {-0.0f, -0.0f},
      {inf, inf},
      {-inf, -inf},
  };
  for (const Case& c : cases) {
    const float got = Round({c.in}, DType::kBF16)[0];
    ExpectSameBits(got, c.out, c.in);
    ExpectSameBits(got, Reference(c.in, kBf16), c.in);
  }
  EXPECT_TRUE(std::isnan(Round({nan}, DType::kBF16)[0]));
  EXPECT_TRUE(std::isnan(Round({-nan}, DType::kBF16)[0]));
}

TEST(RoundToPrecisionTest, F16HandPickedValues) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float in, out;
  };
  const Case cases[] = {
      {65504.0f, 65504.0f},                // largest finite
      {65519.0f, 65504.0f},                // below the overflow threshold
      {65520.0f, inf},                     // halfway to 65536: ties to even overflows
      {-65520.0f, -inf},
      {1e6f, inf},
      {2049.0f, 2048.0f},                  // halfway, down to even
      {2051.0f, 2052.0f},                  // halfway, up to even
      {1.0f + 0x1p-11f, 1.0f},
      {0.1f, 0x1.998p-4f},
      {0x1p-14f, 0x1p-14f},                // smallest normal
      {0x1p-24f, 0x1p-24f},                // smallest subnormal
      {0x1p-25f, 0.0f},                    // halfway between 0 and 2^-24: to even 0
      {3 * 0x1p-26f, 0x1p-24f},            // above halfway
      {3 * 0x1p-25f, 2 * 0x1p-24f},        // halfway between 1 and 2 ulps: to even 2
      {0x1p-14f - 0x1p-25f, 0x1p-14f},     // halfway between 1023 and 1024 ulps: to 1024
      {-0x1p-26f, -0.0f},                  // underflow keeps the sign
      {-0.0f, -0.0f},
      {inf, inf},
      {-inf, -inf},
  };
  for (const Case& c : cases) {
    const float got = Round({c.in}, DType::kF16)[0];
    ExpectSameBits(got, c.out, c.in);
    ExpectSameBits(got, Reference(c.in, kF16), c.in);
  }
  EXPECT_TRUE(std::isnan(Round({std::numeric_limits<float>::quiet_NaN()}, DType::kF16)[0]));
  EXPECT_TRUE(std::isnan(Round({std::numeric_limits<float>::signaling_NaN()}, DType::kF16)[0]));
}

// Random bit patterns cover every exponent, both signs, NaNs and infinities; the tensor is large
// enough to take the parallel path.
TEST(RoundToPrecisionTest, RandomBitPatternsMatchTheReference) {
  std::mt19937_64 rng(11);
  std::vector<float> in(1 << 20);
  for (float& x : in) x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
  // And values near f16's range, where most of its rounding happens.
  for (size_t i = 0; i < in.size(); i += 4) {
    in[i] = std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng),
                       std::uniform_int_distribution<int>(-30, 18)(rng));
  }
  for (DType d : {DType::kBF16, DType::kF16}) {
    const std::vector<float> out = Round(in, d);
    int mismatches = 0;
    for (size_t i = 0; i < in.size() && mismatches < 5; ++i) {
      const double ref = Reference(in[i], d == DType::kBF16 ? kBf16 : kF16);
      const bool same = std::isnan(ref) ? std::isnan(out[i])
                                        : std::bit_cast<uint32_t>(out[i]) ==
                                              std::bit_cast<uint32_t>(static_cast<float>(ref));
      if (!same) {
        ++mismatches;
        ADD_FAILURE() << DTypeName(d) << ": " << std::hexfloat << in[i] << " -> " << out[i]
                      << ", expected " << ref;
      }
    }
    // Rounding twice changes nothing.
    const std::vector<float> again = Round(out, d);
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isnan(out[i])) {
        ASSERT_EQ(std::bit_cast<uint32_t>(again[i]), std::bit_cast<uint32_t>(out[i]));
      }
    }
  }
}

// PyTorch's casts to bfloat16 and float16 and back (tests/fixtures/runtime_ops/
// round_to_precision.py), bit for bit: values over every exponent, ties of both formats, specials.
TEST(RoundToPrecisionTest, MatchesPyTorchCasts) {
  const SafetensorsFile f = testing::LoadFixture("round_to_precision");
  const Tensor x = f.Get("x").value();
  for (const auto& [d, name] : {std::pair{DType::kBF16, "bf16"}, std::pair{DType::kF16, "f16"}}) {
    const Tensor expected = f.Get(name).value();
    const std::vector<float> in(x.data<float>(), x.data<float>() + x.numel());
    const std::vector<float> out = Round(in, d);
    int mismatches = 0;
    for (size_t i = 0; i < in.size() && mismatches < 5; ++i) {
      const float e = expected.data<float>()[i];
      if (std::bit_cast<uint32_t>(out[i]) != std::bit_cast<uint32_t>(e)) {
        ++mismatches;
        ADD_FAILURE() << name << ": " << std::hexfloat << in[i] << " -> " << out[i]
                      << ", PyTorch " << e;
      }
    }
  }
}

TEST(RoundToPrecisionTest, F32IsANoOp) {
  const std::vector<float> in = {1.0f + 0x1p-20f, 70000.0f, 0x1p-30f};
  EXPECT_EQ(Round(in, DType::kF32), in);
}

TEST(RoundToPrecisionTest, RefusesOtherDTypesAndLayouts) {
  Tensor ints = FromDouble({1, 2, 3}, Shape{3}, DType::kI32);
  ExpectStatus(RoundToPrecision(ints, DType::kBF16), absl::StatusCode::kInvalidArgument,
               {"RoundToPrecision", "x is", "f32"});
  Tensor x = FromDouble({1, 2, 3}, Shape{3});
  ExpectStatus(RoundToPrecision(x, DType::kI32), absl::StatusCode::kInvalidArgument,
               {"RoundToPrecision", "precision i32"});
  Tensor wide = FromDouble({1, 2, 3, 4}, Shape{2, 2});
  ExpectStatus(RoundToPrecision(wide.Transpose(0, 1).value(), DType::kBF16),
               absl::StatusCode::kInvalidArgument, {"contiguous"});
}

}  // namespace
}  // namespace strata::cpu
