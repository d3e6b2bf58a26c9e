#include "runtime/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

// Reference f16 decoding from the IEEE 754 definition, in double.
double F16Reference(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  double v;
  if (exponent == 0) v = std::ldexp(mantissa, -24);
  else if (exponent == 31) v = mantissa ? std::numeric_limits<double>::quiet_NaN()
                                        : std::numeric_limits<double>::infinity();
  else v = std::ldexp(1024 + mantissa, exponent - 25);
  return sign ? -v : v;
}

TEST(DTypeTest, F16DecodesEveryBitPatternAndRoundTrips) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const double ref = F16Reference(h);
    const float f = F16ToFloat(h);
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(f)) << bits;
      EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(f))));
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), ref) << bits;
    ASSERT_EQ(FloatToF16(f), h) << bits;
  }
}

TEST(DTypeTest, F16RoundsToNearestEvenAndOverflowsToInfinity) {
  // 1 + 2^-11 is exactly half way between 1 and the next f16 (1 + 2^-10): ties to even (1).
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 is half way between 1 + 2^-10 (odd) and 1 + 2^-9 (even): rounds up.
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);   // largest finite
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);   // rounds past it: infinity
  EXPECT_EQ(FloatToF16(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: ties to 0
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -26)), 0x0001);  // 0.75 of it: rounds up
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  const float half_ulp = std::ldexp(1.0f, -8);  // bf16 has 7 mantissa bits
  EXPECT_EQ(FloatToBf16(1.0f + half_ulp), 0x3f80);                      // tie -> even
  EXPECT_EQ(FloatToBf16(1.0f + 3 * half_ulp), 0x3f82);                  // tie -> even (up)
  EXPECT_EQ(FloatToBf16(1.0f + half_ulp + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isinf(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity()))));
}

TEST(DTypeTest, ConvertElementsClampsAndTruncates) {
  const float src[] = {1.7f, -1.7f, 300.0f, -5.0f, 3e10f};
  uint8_t u8[5];
  ConvertElements(src, DType::kF32, u8, DType::kU8, 5);
  EXPECT_EQ(u8[0], 1);
  EXPECT_EQ(u8[1], 0);
  EXPECT_EQ(u8[2], 255);
  EXPECT_EQ(u8[3], 0);
  int32_t i32[5];
  ConvertElements(src, DType::kF32, i32, DType::kI32, 5);
  EXPECT_EQ(i32[1], -1);
  EXPECT_EQ(i32[4], std::numeric_limits<int32_t>::max());
  const int64_t ids[] = {7, -3};
  float f[2];
  ConvertElements(ids, DType::kI64, f, DType::kF32, 2);
  EXPECT_EQ(f[0], 7.0f);
  EXPECT_EQ(f[1], -3.0f);
  uint16_t bf[2];
  ConvertElements(f, DType::kF32, bf, DType::kBF16, 2);
  EXPECT_EQ(Bf16ToFloat(bf[0]), 7.0f);
}

TEST(DTypeTest, NamesSizesAndParsing) {
  EXPECT_EQ(SizeOf(DType::kBF16), 2u);
  EXPECT_EQ(SizeOf(DType::kI64), 8u);
  EXPECT_EQ(DTypeName(DType::kF16), "f16");
  EXPECT_EQ(ParseDType("BF16").value(), DType::kBF16);
  EXPECT_EQ(ParseDType("float32").value(), DType::kF32);
  testing::ExpectStatus(ParseDType("f8").status(), absl::StatusCode::kInvalidArgument,
                        {"'f8'"});
  EXPECT_TRUE(IsFloatingPoint(DType::kBF16));
  EXPECT_FALSE(IsFloatingPoint(DType::kI32));
}

}  // namespace
}  // namespace strata
