// A kernel that keeps the device busy, then writes a value: a stream test's way to make work that
// is still running when another stream looks (spin_kernel.cu).
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::testing {

// After about `nanoseconds` on the device, *flag = value. Returns the launch's cudaError_t.
int LaunchSpinThenWrite(int* flag, int value, int64_t nanoseconds, CUstream_st* stream);

}  // namespace strata::testing
