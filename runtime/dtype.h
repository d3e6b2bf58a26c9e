// Element types and their conversions.
//
//   DType t = DType::kBF16;
//   size_t bytes = SizeOf(t) * numel;            // 2 bytes per element
//   uint16_t h = FloatToBf16(1.5f);              // round to nearest even
//   float f = Bf16ToFloat(h);                    // exact
//
// bf16 and f16 are stored as raw uint16_t bits; arithmetic is always done in fp32.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"

namespace strata {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64, kU8 };

size_t SizeOf(DType dtype);
absl::string_view DTypeName(DType dtype);  // "f32", "bf16", ...
bool IsFloatingPoint(DType dtype);
// Parses "f32", "float32", "BF16", ... (the safetensors names are accepted too).
absl::StatusOr<DType> ParseDType(absl::string_view name);

// Maps a C++ element type to its DType (float -> kF32, ...).
template <typename T>
struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kU8; };

// bf16 <-> f32. Rounds to nearest even; NaN stays NaN (quiet).
inline uint16_t FloatToBf16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float Bf16ToFloat(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// IEEE half <-> f32. Rounds to nearest even, handles subnormals, infinities and NaN.
uint16_t FloatToF16(float f);
float F16ToFloat(uint16_t h);

// Converts n elements from one dtype to another through double (integers) or float.
// Float -> integer truncates toward zero like a C cast; out-of-range values are clamped.
void ConvertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n);

}  // namespace strata
