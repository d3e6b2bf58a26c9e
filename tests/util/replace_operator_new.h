// Replaces the global operator new of a test binary with one that first shows each request to a
// hook (to count allocations, or to bound their size), then allocates with malloc.
//
//   void CountAllocation(std::size_t size) { ++g_allocations; }
//   STRATA_REPLACE_OPERATOR_NEW(CountAllocation)   // at global scope, in one .cc of the binary
//
// Not under AddressSanitizer, which owns operator new itself.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace strata::testing {

// `alignment` 0: the default alignment.
inline void* MallocForOperatorNew(std::size_t size, std::size_t alignment) {
  if (size == 0) size = 1;
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
                : std::malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace strata::testing

#define STRATA_REPLACE_OPERATOR_NEW(hook)                                                      \
  void* operator new(std::size_t n) {                                                          \
    hook(n);                                                                                   \
    return ::strata::testing::MallocForOperatorNew(n, 0);                                      \
  }                                                                                            \
  void* operator new[](std::size_t n) {                                                        \
    hook(n);                                                                                   \
    return ::strata::testing::MallocForOperatorNew(n, 0);                                      \
  }                                                                                            \
  void* operator new(std::size_t n, std::align_val_t a) {                                      \
    hook(n);                                                                                   \
    return ::strata::testing::MallocForOperatorNew(n, static_cast<std::size_t>(a));            \
  }                                                                                            \
  void* operator new[](std::size_t n, std::align_val_t a) {                                    \
    hook(n);                                                                                   \
    return ::strata::testing::MallocForOperatorNew(n, static_cast<std::size_t>(a));            \
  }                                                                                            \
  void operator delete(void* p) noexcept { std::free(p); }                                     \
  void operator delete[](void* p) noexcept { std::free(p); }                                   \
  void operator delete(void* p, std::size_t) noexcept { std::free(p); }                        \
  void operator delete[](void* p, std::size_t) noexcept { std::free(p); }                      \
  void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }                   \
  void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }                 \
  void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }      \
  void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
