// Counts heap allocations made through operator new (std::vector, std::string, std::function,
// make_shared, ...) while a scope is active, on any thread. Linking this file into a test binary
// replaces the global operator new; nothing else changes.
//
//   AllocationCounter counter;       // starts counting
//   RunKernel();
//   EXPECT_EQ(counter.count(), 0);   // allocations since construction
//
// Not available under AddressSanitizer, which owns operator new itself: Supported() is false there
// and tests skip.
#pragma once

#include <cstdint>

namespace strata::testing {

class AllocationCounter {
 public:
  AllocationCounter();
  ~AllocationCounter();
  int64_t count() const;
  static bool Supported();

 private:
  int64_t start_;
};

}  // namespace strata::testing
