// Tests of dtype names, sizes and conversions. Every expected value comes from a reference written
// here from the IEEE 754 definitions (decoders from sign/exponent/mantissa, rounding in long
// double, whose 64-bit significand holds every int64 exactly), never from the code under test.
#include "runtime/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

constexpr DType kAllDTypes[] = {DType::kF32, DType::kBF16, DType::kF16,
                                DType::kI32, DType::kI64,  DType::kU8};

// ---- References ---------------------------------------------------------------------------------

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
long double F16Reference(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  long double v;
  if (exponent == 0) {
    v = std::ldexp(static_cast<long double>(mantissa), -24);
  } else if (exponent == 31) {
    v = mantissa ? std::numeric_limits<long double>::quiet_NaN()
                 : std::numeric_limits<long double>::infinity();
  } else {
    v = std::ldexp(static_cast<long double>(1024 + mantissa), exponent - 25);
  }
  return sign ? -v : v;
}

// bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
long double Bf16Reference(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 7) & 255, mantissa = h & 127;
  long double v;
  if (exponent == 0) {
    v = std::ldexp(static_cast<long double>(mantissa), -133);
  } else if (exponent == 255) {
    v = mantissa ? std::numeric_limits<long double>::quiet_NaN()
                 : std::numeric_limits<long double>::infinity();
  } else {
    v = std::ldexp(static_cast<long double>(128 + mantissa), exponent - 134);
  }
  return sign ? -v : v;
}

struct FloatFormat {
  int mantissa_bits;  // stored fraction bits
  int min_exponent;   // of the smallest normal number
  int max_exponent;   // of the largest finite number
};
constexpr FloatFormat kF32Format{23, -126, 127};
constexpr FloatFormat kF16Format{10, -14, 15};
constexpr FloatFormat kBf16Format{7, -126, 127};

// Rounds x to `format` once, to nearest with ties to even, overflowing to infinity.
long double RoundToFormat(long double x, FloatFormat format) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  const long double a = std::fabs(x);
  const int e = std::max(std::ilogb(a), format.min_exponent);
  const long double ulp = std::ldexp(1.0L, e - format.mantissa_bits);
  long double v = std::nearbyint(a / ulp) * ulp;  // a / ulp is exact: ulp is a power of two
  if (v >= std::ldexp(1.0L, format.max_exponent + 1)) {
    v = std::numeric_limits<long double>::infinity();
  }
  return x < 0 ? -v : v;
}

// C-style truncation toward zero, then clamping to [lo, hi].
long double TruncateAndClamp(long double x, long double lo, long double hi) {
  const long double t = std::trunc(x);
  return t < lo ? lo : t > hi ? hi : t;
}

// The exact value of element i of a typed buffer, decoded by the references above.
long double ExactValue(const std::vector<std::byte>& buffer, DType dtype, size_t i) {
  const std::byte* p = buffer.data() + i * SizeOf(dtype);
  switch (dtype) {
    case DType::kF32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::kBF16: { uint16_t v; std::memcpy(&v, p, 2); return Bf16Reference(v); }
    case DType::kF16: { uint16_t v; std::memcpy(&v, p, 2); return F16Reference(v); }
    case DType::kI32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::kI64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<long double>(v); }
    case DType::kU8: return static_cast<long double>(static_cast<uint8_t>(*p));
  }
  return 0;
}

// What converting the exact value x to `dtype` must give, per the header's contract.
long double ExpectedConversion(long double x, DType dtype) {
  switch (dtype) {
    case DType::kF32: return RoundToFormat(x, kF32Format);
    case DType::kBF16: return RoundToFormat(x, kBf16Format);
    case DType::kF16: return RoundToFormat(x, kF16Format);
    case DType::kI32: return TruncateAndClamp(x, -2147483648.0L, 2147483647.0L);
    case DType::kI64:
      return TruncateAndClamp(x, -9223372036854775808.0L, 9223372036854775807.0L);
    case DType::kU8: return TruncateAndClamp(x, 0.0L, 255.0L);
  }
  return 0;
}

template <typename T>
std::vector<std::byte> Bytes(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A few values of each dtype chosen to hit rounding ties, overflow, clamping and double rounding.
std::vector<std::byte> SourceValues(DType dtype) {
  const float inf = std::numeric_limits<float>::infinity();
  switch (dtype) {
    case DType::kF32:
      return Bytes(std::vector<float>{
          0.0f, -0.0f, 1.0f, -1.0f, 1.7f, -1.7f, 2.5f, -2.5f, 0.999f, -0.999f, 127.5f, 255.5f,
          256.0f, 300.0f, -129.0f, 65504.0f, std::nextafter(65520.0f, 0.0f), 65520.0f, 70000.0f,
          1e-8f, std::ldexp(1.0f, -24), std::ldexp(3.0f, -26), std::ldexp(1.0f, -25),
          1.0f + std::ldexp(1.0f, -8), 1.0f + std::ldexp(3.0f, -8), 1.0f + std::ldexp(1.0f, -11),
          1.0f + std::ldexp(3.0f, -11), 2147483520.0f, 2147483648.0f, -2147483648.0f,
          -2147483904.0f, std::ldexp(1.0f, 63), -std::ldexp(1.0f, 63), std::ldexp(1.0f, 64),
          1e38f, std::numeric_limits<float>::max(), std::numeric_limits<float>::min() / 2, inf,
          -inf, std::numeric_limits<float>::quiet_NaN()});
    case DType::kBF16:
      return Bytes(std::vector<uint16_t>{0x0000, 0x8000, 0x3f80, 0xbfc0, 0x4380, 0x437f, 0x4b80,
                                         0x7f7f, 0xff7f, 0x0001, 0x0080, 0x477f, 0x4780, 0x7f80,
                                         0xff80, 0x7fc0, 0x4f00, 0xcf00, 0x5f00, 0xdf00, 0x3f81,
                                         0x3fc1, 0x3f00, 0xbf00, 0x3f40});
    case DType::kF16:
      return Bytes(std::vector<uint16_t>{0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x3c01,
                                         0xbc00, 0x3e00, 0x5bf8, 0x5c00, 0x7bff, 0xfbff, 0x7c00,
                                         0xfc00, 0x7e00, 0x3555, 0x3801, 0xb801, 0x3800, 0xb800});
    case DType::kI32:
      return Bytes(std::vector<int32_t>{0, 1, -1, 127, 128, 255, 256, -129, 65504, 65519, 65520,
                                        65535, 70000, 1 << 24, (1 << 24) + 1, (1 << 24) + 3,
                                        (1 << 24) + (1 << 16) + 1, -((1 << 24) + (1 << 16) + 1),
                                        (1 << 24) + (1 << 16), 123456789,
                                        std::numeric_limits<int32_t>::max(),
                                        std::numeric_limits<int32_t>::min()});
    case DType::kI64:
      return Bytes(std::vector<int64_t>{
          0, 1, -1, 255, 256, -129, 70000, (int64_t{1} << 24) + (1 << 16) + 1,
          int64_t{1} << 31, -(int64_t{1} << 31) - 1, (int64_t{1} << 40) + (int64_t{1} << 32) + 1,
          (int64_t{1} << 53) + 1, (int64_t{1} << 60) + (int64_t{1} << 36) + 1,
          -((int64_t{1} << 60) + (int64_t{1} << 36) + 1), int64_t{1} << 62,
          std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()});
    case DType::kU8:
      return Bytes(std::vector<uint8_t>{0, 1, 127, 128, 254, 255});
  }
  return {};
}

// ---- f16 ----------------------------------------------------------------------------------------

TEST(DTypeTest, F16DecodesEveryBitPatternAndRoundTrips) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const long double ref = F16Reference(h);
    const float f = F16ToFloat(h);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << bits;
      const uint16_t back = FloatToF16(f);
      ASSERT_TRUE(std::isnan(static_cast<double>(F16Reference(back)))) << bits;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << "NaN keeps its sign: " << bits;
      continue;
    }
    ASSERT_EQ(static_cast<long double>(f), ref) << bits;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << bits;
    ASSERT_EQ(FloatToF16(f), h) << bits;  // exact round trip, -0 and subnormals included
  }
}

// Half way between every pair of adjacent f16 values (closed form: their mean, which a float holds
// exactly) rounds to the one with an even mantissa; one float ulp either side rounds to the nearer.
TEST(DTypeTest, F16RoundsEveryMidpointToEven) {
  for (uint32_t lo = 0; lo < 0x7c00; ++lo) {
    const long double a = F16Reference(static_cast<uint16_t>(lo));
    // Past the largest finite value (0x7bff) the next step would be 2^16: f16 overflows to inf.
    const long double b = lo == 0x7bff ? 65536.0L : F16Reference(static_cast<uint16_t>(lo + 1));
    const float mid = static_cast<float>((a + b) / 2);
    ASSERT_EQ(static_cast<long double>(mid), (a + b) / 2) << lo;
    const uint16_t even = (lo & 1) ? static_cast<uint16_t>(lo + 1) : static_cast<uint16_t>(lo);
    for (const uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const float m = sign ? -mid : mid;
      ASSERT_EQ(FloatToF16(m), sign | even) << std::hex << lo;
      ASSERT_EQ(FloatToF16(std::nextafter(m, 0.0f)), sign | lo) << std::hex << lo;
      ASSERT_EQ(FloatToF16(std::nextafter(m, sign ? -1e30f : 1e30f)), sign | (lo + 1))
          << std::hex << lo;
    }
  }
}

TEST(DTypeTest, F16MatchesTheReferenceOnRandomFloats) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = static_cast<uint32_t>(rng());
    // Half of the draws land in or near the f16 range (exponents 2^-30 .. 2^17).
    if (i % 2) bits = (bits & 0x807fffffu) | ((97u + static_cast<uint32_t>(rng() % 48)) << 23);
    const float f = std::bit_cast<float>(bits);
    const uint16_t h = FloatToF16(f);
    const long double got = F16Reference(h);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(got, RoundToFormat(f, kF16Format)) << std::hex << bits;
    ASSERT_EQ((h & 0x8000) != 0, std::signbit(f)) << std::hex << bits;
  }
}

TEST(DTypeTest, F16SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToF16(0.0f), 0x0000);
  EXPECT_EQ(FloatToF16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToF16(inf), 0x7c00);
  EXPECT_EQ(FloatToF16(-inf), 0xfc00);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);                          // largest finite
  EXPECT_EQ(FloatToF16(std::nextafter(65520.0f, 0.0f)), 0x7bff);    // just under the midpoint
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);                          // the midpoint: ties to inf
  EXPECT_EQ(FloatToF16(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToF16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);              // smallest subnormal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);              // half of it: ties to 0
  EXPECT_EQ(FloatToF16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -26)), 0x0001);              // 0.75 of it: rounds up
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -25)), 0x0002);              // 1.5: ties to even (2)
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -14)), 0x0400);              // smallest normal
  EXPECT_EQ(FloatToF16(std::ldexp(2047.0f, -25)), 0x0400);           // 1023.5 ulps: ties up to even
  EXPECT_EQ(FloatToF16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  // NaNs stay NaN and become quiet (0x0200 set), signalling ones and big payloads included.
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u}) {
    const uint16_t h = FloatToF16(std::bit_cast<float>(nan));
    EXPECT_EQ(h & 0x7c00, 0x7c00) << std::hex << nan;
    EXPECT_NE(h & 0x0200, 0) << std::hex << nan;
    EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << std::hex << nan;
  }
}

// ---- bf16 ---------------------------------------------------------------------------------------

TEST(DTypeTest, Bf16DecodesEveryBitPatternAndRoundTrips) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const long double ref = Bf16Reference(h);
    const float f = Bf16ToFloat(h);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << bits;
      ASSERT_TRUE(std::isnan(static_cast<double>(Bf16Reference(FloatToBf16(f))))) << bits;
      continue;
    }
    ASSERT_EQ(static_cast<long double>(f), ref) << bits;
    ASSERT_EQ(FloatToBf16(f), h) << bits;
  }
}

TEST(DTypeTest, Bf16RoundsEveryMidpointToEven) {
  const float kInf = std::numeric_limits<float>::infinity();
  for (uint32_t lo = 0; lo < 0x7f80; ++lo) {
    const long double a = Bf16Reference(static_cast<uint16_t>(lo));
    const long double b =
        lo == 0x7f7f ? std::ldexp(1.0L, 128) : Bf16Reference(static_cast<uint16_t>(lo + 1));
    const float mid = static_cast<float>((a + b) / 2);
    ASSERT_EQ(static_cast<long double>(mid), (a + b) / 2) << lo;
    const uint16_t even = (lo & 1) ? static_cast<uint16_t>(lo + 1) : static_cast<uint16_t>(lo);
    for (const uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const float m = sign ? -mid : mid;
      ASSERT_EQ(FloatToBf16(m), sign | even) << std::hex << lo;
      ASSERT_EQ(FloatToBf16(std::nextafter(m, 0.0f)), sign | lo) << std::hex << lo;
      if (lo != 0x7f7f) {  // above 0x7f7f8000 every float rounds to inf: covered by the line above
        ASSERT_EQ(FloatToBf16(std::nextafter(m, sign ? -kInf : kInf)), sign | (lo + 1))
            << std::hex << lo;
      }
    }
  }
}

TEST(DTypeTest, Bf16MatchesTheReferenceOnRandomFloats) {
  std::mt19937_64 rng(12);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    const uint16_t h = FloatToBf16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(static_cast<double>(Bf16Reference(h))));
      continue;
    }
    ASSERT_EQ(Bf16Reference(h), RoundToFormat(f, kBf16Format))
        << std::hex << std::bit_cast<uint32_t>(f);
  }
}

TEST(DTypeTest, Bf16SpecialValues) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past the top
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x00008000u)), 0x0000);  // subnormal tie -> even 0
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // subnormal tie -> even 2
  const float half_ulp = std::ldexp(1.0f, -8);  // bf16 has 7 fraction bits
  EXPECT_EQ(FloatToBf16(1.0f + half_ulp), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + 3 * half_ulp), 0x3f82);
  EXPECT_EQ(FloatToBf16(1.0f + half_ulp + std::ldexp(1.0f, -20)), 0x3f81);
  // A NaN must not round into infinity (0x7f800001 + rounding) or wrap to -0 (0x7fffffff).
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u, 0xffffffffu}) {
    const uint16_t h = FloatToBf16(std::bit_cast<float>(nan));
    EXPECT_TRUE(std::isnan(Bf16ToFloat(h))) << std::hex << nan;
    EXPECT_NE(h & 0x0040, 0) << "quiet bit, " << std::hex << nan;
    EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << std::hex << nan;
  }
}

// ---- names, sizes, parsing ----------------------------------------------------------------------

TEST(DTypeTest, NamesSizesAndFloatingPoint) {
  const size_t sizes[] = {4, 2, 2, 4, 8, 1};
  const char* names[] = {"f32", "bf16", "f16", "i32", "i64", "u8"};
  const bool floating[] = {true, true, true, false, false, false};
  for (int i = 0; i < 6; ++i) {
    const DType d = kAllDTypes[i];
    EXPECT_EQ(SizeOf(d), sizes[i]) << names[i];
    EXPECT_EQ(DTypeName(d), names[i]);
    EXPECT_EQ(IsFloatingPoint(d), floating[i]) << names[i];
    EXPECT_EQ(ParseDType(DTypeName(d)).value(), d) << names[i];
  }
  static_assert(DTypeOf<float>::value == DType::kF32);
  static_assert(DTypeOf<int32_t>::value == DType::kI32);
  static_assert(DTypeOf<int64_t>::value == DType::kI64);
  static_assert(DTypeOf<uint8_t>::value == DType::kU8);
}

TEST(DTypeTest, ParsesAliasesInAnyCase) {
  const std::pair<const char*, DType> cases[] = {
      {"f32", DType::kF32},     {"float32", DType::kF32}, {"float", DType::kF32},
      {"F32", DType::kF32},     {"Float32", DType::kF32}, {"bf16", DType::kBF16},
      {"BF16", DType::kBF16},   {"bfloat16", DType::kBF16}, {"f16", DType::kF16},
      {"F16", DType::kF16},     {"float16", DType::kF16}, {"half", DType::kF16},
      {"i32", DType::kI32},     {"I32", DType::kI32},     {"int32", DType::kI32},
      {"i64", DType::kI64},     {"I64", DType::kI64},     {"int64", DType::kI64},
      {"u8", DType::kU8},       {"U8", DType::kU8},       {"uint8", DType::kU8}};
  for (const auto& [name, dtype] : cases) {
    absl::StatusOr<DType> d = ParseDType(name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.status();
    EXPECT_EQ(*d, dtype) << name;
  }
  for (const char* bad : {"f8", "F64", "float64", "int8", "bool", "", " f32", "f32 "}) {
    ExpectStatus(ParseDType(bad).status(), absl::StatusCode::kInvalidArgument,
                 {absl::StrCat("'", bad, "'"), "expected f32, bf16, f16, i32, i64 or u8"});
  }
}

// ---- ConvertElements ----------------------------------------------------------------------------

TEST(DTypeTest, ConvertElementsMatchesTheReferenceForEveryDTypePair) {
  for (const DType from : kAllDTypes) {
    const std::vector<std::byte> src = SourceValues(from);
    const size_t n = src.size() / SizeOf(from);
    for (const DType to : kAllDTypes) {
      std::vector<std::byte> dst(n * SizeOf(to), std::byte{0x5a});
      ConvertElements(src.data(), from, dst.data(), to, n);
      for (size_t i = 0; i < n; ++i) {
        const long double x = ExactValue(src, from, i);
        const long double got = ExactValue(dst, to, i);
        SCOPED_TRACE(::testing::Message() << DTypeName(from) << " -> " << DTypeName(to)
                                        << ", element " << i << " = " << static_cast<double>(x));
        if (std::isnan(x)) {
          // NaN has no integer value; floating-point targets keep it NaN.
          if (IsFloatingPoint(to)) {
            EXPECT_TRUE(std::isnan(got));
          }
          continue;
        }
        EXPECT_EQ(got, ExpectedConversion(x, to)) << "got " << static_cast<double>(got);
      }
    }
  }
}

TEST(DTypeTest, ConvertElementsClampsAndTruncatesLikeACast) {
  const float src[] = {1.7f, -1.7f, 300.0f, -5.0f, 3e10f, -3e10f, 255.99f, -0.99f};
  uint8_t u8[8];
  ConvertElements(src, DType::kF32, u8, DType::kU8, 8);
  EXPECT_EQ(std::vector<int>(u8, u8 + 8), (std::vector<int>{1, 0, 255, 0, 255, 0, 255, 0}));
  int32_t i32[8];
  ConvertElements(src, DType::kF32, i32, DType::kI32, 8);
  EXPECT_EQ(std::vector<int32_t>(i32, i32 + 8),
            (std::vector<int32_t>{1, -1, 300, -5, 2147483647, -2147483647 - 1, 255, 0}));
  const int64_t big[] = {int64_t{1} << 40, -(int64_t{1} << 40), 200, -1};
  int32_t narrow[4];
  ConvertElements(big, DType::kI64, narrow, DType::kI32, 4);
  EXPECT_EQ(std::vector<int32_t>(narrow, narrow + 4),
            (std::vector<int32_t>{2147483647, -2147483647 - 1, 200, -1}));
  uint8_t bytes[4];
  ConvertElements(big, DType::kI64, bytes, DType::kU8, 4);
  EXPECT_EQ(std::vector<int>(bytes, bytes + 4), (std::vector<int>{255, 0, 200, 0}));
}

TEST(DTypeTest, ConvertElementsSameDTypeIsABitCopy) {
  const uint32_t bits[] = {0x7f800001u, 0xffc01234u, 0x80000000u, 0x00000001u};
  uint32_t out[4] = {};
  ConvertElements(bits, DType::kF32, out, DType::kF32, 4);
  EXPECT_EQ(std::memcmp(bits, out, sizeof(bits)), 0);  // NaN payloads and -0 kept
  ConvertElements(bits, DType::kF32, out, DType::kF32, 0);  // n = 0 touches nothing
}

// The vectorised, multi-threaded f32 <-> bf16 paths (taken above 2^16 elements).
TEST(DTypeTest, LargeF32Bf16ConversionsMatchTheReference) {
  const size_t n = (size_t{1} << 17) + 5;
  std::mt19937_64 rng(13);
  std::vector<float> f(n);
  for (float& v : f) v = std::bit_cast<float>(static_cast<uint32_t>(rng()));
  std::vector<uint16_t> h(n);
  ConvertElements(f.data(), DType::kF32, h.data(), DType::kBF16, n);
  std::vector<float> back(n);
  ConvertElements(h.data(), DType::kBF16, back.data(), DType::kF32, n);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(f[i])) {
      ASSERT_TRUE(std::isnan(back[i])) << i;
      continue;
    }
    ASSERT_EQ(static_cast<long double>(back[i]), RoundToFormat(f[i], kBf16Format)) << i;
    ASSERT_EQ(static_cast<long double>(back[i]), Bf16Reference(h[i])) << i;
  }
}

}  // namespace
}  // namespace strata
