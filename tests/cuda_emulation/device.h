// The CUDA kernel language on the CPU, for tests: runtime/cuda/'s kernels compile unchanged with
// g++ against this header (through include/cuda_runtime.h) and run where there is no GPU.
//
//   // A launch of runtime/cuda/softmax_kernel.cu as the build rewrites it (rewrite_launches.cmake)
//   SoftmaxForwardKernel * ::cuda_emulation::LaunchConfig(blocks, threads, 0, stream)
//       ->* ::cuda_emulation::KernelArgs(x, out, rows, c);  // was <<<...>>>(x, out, rows, c)
//
// A launch runs its blocks one after the other on the calling thread, and a block's threads as
// cooperative fibers (device.cc): a thread runs until it reaches __syncthreads or a warp operation
// (shuffle, ballot, vote), then the next thread of its warp runs; a warp whose 32 lanes all wait
// at the same warp operation gets its results and goes on at once, and a warp runs until all its
// threads wait at a barrier or have returned, before the next warp runs. So warps drift as far
// apart as the barriers let them, in increasing and then in decreasing order between barriers,
// and a missing __syncthreads shows whichever way its race goes. When every thread of the block
// waits at the same __syncthreads they all go on. What real hardware leaves undefined aborts with
// a message naming the kernel's file and line: a warp operation that some lanes of the warp do not
// reach (they returned or wait elsewhere), a __syncthreads that some threads of the block do not
// reach, a mask other than all 32 lanes, a warp operation in a block whose thread count is not a
// multiple of 32, dynamic shared memory, a launch from inside a kernel. A launch with a bad
// configuration (no threads, over 1024 threads, an empty grid) or an unknown stream runs nothing
// and sets the error cudaGetLastError returns, as on a device. Shared memory (__shared__) is static storage, which a
// block's fibers share and blocks reuse one after the other. Only what runtime/cuda/ uses is
// here; atomics, for one, are not (a kernel that uses them fails to compile).
#pragma once

#include <math.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static
// __restrict__ is g++'s own keyword.

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// The running thread's coordinates: device.cc sets them before it switches to a thread.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

namespace cuda_emulation {

// Prints "CUDA emulation: <message>" with the running thread's coordinates, and aborts.
[[noreturn]] void Fail(const char* format, ...) __attribute__((format(printf, 1, 2)));

// The error cudaGetLastError returns next (runtime.cc).
void SetLastError(cudaError_t error);
// Whether `stream` is the default stream or one created and not yet destroyed (runtime.cc).
bool KnownStream(cudaStream_t stream);

// Waits until every thread of the block is at this __syncthreads (file:line).
void SyncThreads(const char* file, int line);

enum class WarpOp : uint8_t { kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll };

// Waits until the 32 lanes of the warp are at this warp operation, then returns the lane's result:
// the bits of the value the operation picks (shuffles) or the vote (ballot, any, all).
uint64_t WarpExchange(const char* file, int line, WarpOp op, unsigned mask, uint64_t value,
                      int arg, int width);

template <typename T>
T Shuffle(const char* file, int line, WarpOp op, unsigned mask, T value, int arg, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t),
                "a shuffle moves a scalar of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = WarpExchange(file, line, op, mask, bits, arg, width);
  T result;
  std::memcpy(&result, &bits, sizeof(T));
  return result;
}

template <typename T>
T ShflIdx(const char* file, int line, unsigned mask, T v, int lane, int width = warpSize) {
  return Shuffle(file, line, WarpOp::kShflIdx, mask, v, lane, width);
}
template <typename T>
T ShflUp(const char* file, int line, unsigned mask, T v, unsigned delta, int width = warpSize) {
  return Shuffle(file, line, WarpOp::kShflUp, mask, v, static_cast<int>(delta), width);
}
template <typename T>
T ShflDown(const char* file, int line, unsigned mask, T v, unsigned delta, int width = warpSize) {
  return Shuffle(file, line, WarpOp::kShflDown, mask, v, static_cast<int>(delta), width);
}
template <typename T>
T ShflXor(const char* file, int line, unsigned mask, T v, int lane_mask, int width = warpSize) {
  return Shuffle(file, line, WarpOp::kShflXor, mask, v, lane_mask, width);
}
inline unsigned Vote(const char* file, int line, WarpOp op, unsigned mask, int predicate) {
  return static_cast<unsigned>(
      WarpExchange(file, line, op, mask, predicate != 0 ? 1 : 0, 0, warpSize));
}

// A launch: kernel * LaunchConfig(grid, block, shared, stream) ->* KernelArgs(args...).
struct LaunchConfig {
  LaunchConfig(dim3 g, dim3 b, size_t shared = 0, cudaStream_t s = nullptr)
      : grid(g), block(b), shared_bytes(shared), stream(s) {}
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
};

// Runs run(body) once per thread of every block of the launch (or sets the launch's error).
void Launch(const LaunchConfig& config, void (*run)(void*), void* body);

template <typename... A>
struct KernelArgList {
  std::tuple<A...> values;
};

// The arguments are copied, as a launch copies them to the device.
template <typename... A>
KernelArgList<std::decay_t<A>...> KernelArgs(A&&... args) {
  return {std::tuple<std::decay_t<A>...>(std::forward<A>(args)...)};
}

template <typename... A>
struct PendingLaunch {
  LaunchConfig config;
  std::tuple<A...> values;
};

template <typename... A>
PendingLaunch<A...> operator->*(const LaunchConfig& config, KernelArgList<A...>&& args) {
  return {config, std::move(args.values)};
}

// Each thread calls the kernel with its own copy of the parameters, converted as a call converts.
template <typename... P, typename... A>
void operator*(void (*kernel)(P...), PendingLaunch<A...>&& launch) {
  static_assert(sizeof...(P) == sizeof...(A), "a kernel launched with the wrong argument count");
  struct Body {
    void (*kernel)(P...);
    std::tuple<A...>* values;
    static void Run(void* self) {
      Body* b = static_cast<Body*>(self);
      std::apply(b->kernel, *b->values);
    }
  };
  Body body{kernel, &launch.values};
  Launch(launch.config, &Body::Run, &body);
}

}  // namespace cuda_emulation

#define __syncthreads() ::cuda_emulation::SyncThreads(__FILE__, __LINE__)
#define __shfl_sync(...) ::cuda_emulation::ShflIdx(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::cuda_emulation::ShflUp(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::cuda_emulation::ShflDown(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cuda_emulation::ShflXor(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, predicate)                                                      \
  ::cuda_emulation::Vote(__FILE__, __LINE__, ::cuda_emulation::WarpOp::kBallot, (mask), \
                         (predicate))
#define __any_sync(mask, predicate)                                                           \
  (::cuda_emulation::Vote(__FILE__, __LINE__, ::cuda_emulation::WarpOp::kAny, (mask),        \
                          (predicate)) != 0)
#define __all_sync(mask, predicate)                                                           \
  (::cuda_emulation::Vote(__FILE__, __LINE__, ::cuda_emulation::WarpOp::kAll, (mask),        \
                          (predicate)) != 0)

// Integer and bit intrinsics.
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }

// Arithmetic rounded to nearest even and never contracted into an FMA, as on a device. The kernels
// are compiled with g++'s own contraction (as nvcc's, a * b + c may become an FMA; not always the
// same ones), so the operands and the result pass through an empty asm, which g++ cannot look
// through: the operation is rounded on its own.
namespace cuda_emulation {
template <typename T>
inline T Uncontracted(T v) {
  asm("" : "+x"(v));
  return v;
}
}  // namespace cuda_emulation
inline float __fadd_rn(float a, float b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) + Uncontracted(b));
}
inline float __fsub_rn(float a, float b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) - Uncontracted(b));
}
inline float __fmul_rn(float a, float b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) * Uncontracted(b));
}
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) + Uncontracted(b));
}
inline double __dsub_rn(double a, double b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) - Uncontracted(b));
}
inline double __dmul_rn(double a, double b) {
  using cuda_emulation::Uncontracted;
  return Uncontracted(Uncontracted(a) * Uncontracted(b));
}
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }

// Timing and fences: a thread never waits for another block, so these only keep their meaning.
long long clock64();
inline void __nanosleep(unsigned) {}
void __threadfence();
void __threadfence_block();
void __threadfence_system();

// bf16 and f16 (cuda_bf16.h, cuda_fp16.h): round to nearest even; NaN becomes the canonical
// 0x7FFF as the toolkit's conversions make it; f16 overflows to infinity and underflows through
// its subnormals.
struct __nv_bfloat16 {
  unsigned short __x;
};
struct __half {
  unsigned short __x;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return {0x7FFF};
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return {static_cast<unsigned short>(bits >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h.__x) << 16);
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return {x}; }

inline __half __float2half_rn(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<unsigned short>((bits >> 16) & 0x8000u);
  uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return {0x7FFF};                                 // NaN
  if (mag >= 0x47800000u) return {static_cast<unsigned short>(sign | 0x7C00u)};  // >= 2^16: inf
  if (mag < 0x38800000u) {  // below 2^-14, f16's least normal: a subnormal (or zero) in 2^-24
    // Scaling by 2^24 is exact; nearbyint rounds to nearest even; 1024 is 2^-14's own bits.
    const float units = std::nearbyint(std::bit_cast<float>(mag) * 0x1p24f);
    return {static_cast<unsigned short>(sign | static_cast<unsigned>(units))};
  }
  mag += 0xFFFu + ((mag >> 13) & 1u);  // to nearest even at f16's 10 mantissa bits
  // Rebias the exponent (127 - 15 = 112); a carry out of 65504 gives 0x7C00, infinity.
  return {static_cast<unsigned short>(sign | ((mag - 0x38000000u) >> 13))};
}
inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.__x & 0x8000u) << 16;
  const uint32_t exponent = (h.__x >> 10) & 0x1Fu, mantissa = h.__x & 0x3FFu;
  if (exponent == 0) {
    const float m = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -m : m;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short x) { return {x}; }
