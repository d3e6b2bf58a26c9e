#include "tests/runtime/cuda/spin_kernel.h"

#include <cuda_runtime.h>

namespace strata::testing {
namespace {

__global__ void SpinThenWrite(int* flag, int value, int64_t nanoseconds) {
  const long long start = clock64();
  // clock64 counts cycles: at most ~2 GHz on the devices we build for, so this spins at least as
  // long as asked, and __nanosleep keeps the spinning cheap.
  while (clock64() - start < 2 * nanoseconds) __nanosleep(1000);
  __threadfence_system();
  *flag = value;
}

}  // namespace

int LaunchSpinThenWrite(int* flag, int value, int64_t nanoseconds, CUstream_st* stream) {
  SpinThenWrite<<<1, 1, 0, stream>>>(flag, value, nanoseconds);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::testing
