#include "runtime/dtype.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata {

size_t SizeOf(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  STRATA_CHECK(false, "unknown dtype ", static_cast<int>(dtype));
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  STRATA_CHECK(false, "unknown dtype ", static_cast<int>(dtype));
}

bool IsFloatingPoint(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "f32" || n == "float32" || n == "float") return DType::kF32;
  if (n == "bf16" || n == "bfloat16") return DType::kBF16;
  if (n == "f16" || n == "float16" || n == "half") return DType::kF16;
  if (n == "i32" || n == "int32") return DType::kI32;
  if (n == "i64" || n == "int64") return DType::kI64;
  if (n == "u8" || n == "uint8") return DType::kU8;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name,
                                                 "' (expected f32, bf16, f16, i32, i64 or u8)"));
}

uint16_t FloatToF16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {
    // Subnormal or zero in f16: value = mantissa * 2^-24. Let the FPU round to nearest even.
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // * 2^24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  uint32_t h = (abs - 0x38000000u) >> 13;
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  if (exponent == 31) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

namespace {

// Note [double rounding]: converting an integer to bf16 through float rounds twice (to 24 bits,
// then to 8), which can land on the wrong side of a tie: 2^24 + 2^16 + 1 would become 2^24 instead
// of 2^24 + 2^17. Rounding the intermediate steps "to odd" (truncate, then set the last bit when
// anything was dropped) keeps enough information for the final round to nearest even to be exact,
// since each intermediate format has at least two more bits than the next one.
double Int64ToDoubleRoundToOdd(int64_t x) {
  const uint64_t magnitude = x < 0 ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
  uint64_t kept = magnitude;
  const int width = std::bit_width(magnitude);
  if (width > 53) {
    const int shift = width - 53;
    const uint64_t dropped = magnitude & ((uint64_t{1} << shift) - 1);
    kept = ((magnitude >> shift) | (dropped != 0 ? 1u : 0u)) << shift;
  }
  const double d = static_cast<double>(kept);  // exact: at most 53 significant bits
  return x < 0 ? -d : d;
}

float DoubleToFloatRoundToOdd(double v) {
  float f = static_cast<float>(v);
  if (std::isnan(v) || static_cast<double>(f) == v) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) f = std::nextafter(f, 0.0f);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 1u);
}

double LoadAsDouble(const void* src, DType dtype, size_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(src)[i];
    case DType::kBF16: return Bf16ToFloat(static_cast<const uint16_t*>(src)[i]);
    case DType::kF16: return F16ToFloat(static_cast<const uint16_t*>(src)[i]);
    case DType::kI32: return static_cast<const int32_t*>(src)[i];
    case DType::kI64: return Int64ToDoubleRoundToOdd(static_cast<const int64_t*>(src)[i]);
    case DType::kU8: return static_cast<const uint8_t*>(src)[i];
  }
  STRATA_CHECK(false, "unknown dtype");
}

template <typename Int>
Int ClampToInt(double v) {
  if (std::isnan(v)) return 0;
  const double lo = static_cast<double>(std::numeric_limits<Int>::min());
  const double hi = static_cast<double>(std::numeric_limits<Int>::max());
  if (v <= lo) return std::numeric_limits<Int>::min();
  if (v >= hi) return std::numeric_limits<Int>::max();
  return static_cast<Int>(v);
}

void StoreFromDouble(void* dst, DType dtype, size_t i, double v) {
  switch (dtype) {
    case DType::kF32: static_cast<float*>(dst)[i] = static_cast<float>(v); return;
    case DType::kBF16:
      static_cast<uint16_t*>(dst)[i] = FloatToBf16(DoubleToFloatRoundToOdd(v));
      return;
    case DType::kF16:
      static_cast<uint16_t*>(dst)[i] = FloatToF16(DoubleToFloatRoundToOdd(v));
      return;
    case DType::kI32: static_cast<int32_t*>(dst)[i] = ClampToInt<int32_t>(v); return;
    case DType::kI64: static_cast<int64_t*>(dst)[i] = ClampToInt<int64_t>(v); return;
    case DType::kU8: static_cast<uint8_t*>(dst)[i] = ClampToInt<uint8_t>(v); return;
  }
  STRATA_CHECK(false, "unknown dtype");
}

}  // namespace

void ConvertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) {
  if (src_dtype == dst_dtype) {
    std::copy_n(static_cast<const std::byte*>(src), n * SizeOf(src_dtype),
                static_cast<std::byte*>(dst));
    return;
  }
  // The two hot paths (mixed-precision storage) get their own loops so they vectorize.
  if (src_dtype == DType::kF32 && dst_dtype == DType::kBF16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (size_t i = 0; i < n; ++i) d[i] = FloatToBf16(s[i]);
    return;
  }
  if (src_dtype == DType::kBF16 && dst_dtype == DType::kF32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (size_t i = 0; i < n; ++i) d[i] = Bf16ToFloat(s[i]);
    return;
  }
  for (size_t i = 0; i < n; ++i) StoreFromDouble(dst, dst_dtype, i, LoadAsDouble(src, src_dtype, i));
}

}  // namespace strata
