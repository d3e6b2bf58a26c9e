#include "collectives/internal/reduce.h"

#include "runtime/status.h"

namespace strata::collectives::internal {
namespace {

template <typename T>
void Add(T* dst, const T* a, const T* b, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] = a[i] + b[i];
}

}  // namespace

void AddInto(void* dst, const void* a, const void* b, int64_t count, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      Add(static_cast<float*>(dst), static_cast<const float*>(a), static_cast<const float*>(b),
          count);
      return;
    case DType::kI32:  // unsigned arithmetic: wraps instead of signed overflow's undefined
      Add(static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(a),
          static_cast<const uint32_t*>(b), count);
      return;
    default:
      STRATA_CHECK(false, "no sum for dtype ", DTypeName(dtype));
  }
}

}  // namespace strata::collectives::internal
