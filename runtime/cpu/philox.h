// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel Random Numbers: As Easy
// as 1, 2, 3" (SC'11), as Random123 defines it: four 32-bit words out of a 128-bit counter and a
// 64-bit key, ten rounds. The n-th number of a stream is a pure function of (counter, key), so
// any thread can draw any element without state or a sequential pass.
//
//   const Philox4x32 r = Philox4x32_10({index_lo, index_hi, step, stream}, {seed_lo, seed_hi});
//   const float u = UniformFromBits(r[0]);  // in [0, 1)
//
// The rounds themselves (Philox4x32_10Rounds, on plain words) compile for CUDA devices too, so
// the CUDA dropout kernel draws the CPU's numbers from this one definition.
//
// Checked against Random123's known-answer vectors in tests/runtime/cpu/dropout_test.cc.
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_PHILOX_INLINE __host__ __device__ __forceinline__
#else
#define STRATA_PHILOX_INLINE inline
#endif

namespace strata::cpu {

using Philox4x32 = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The ten rounds in place on the counter words ctr[0..3] with key (k0, k1).
STRATA_PHILOX_INLINE void Philox4x32_10Rounds(uint32_t* ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt 3)
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    ctr[1] = static_cast<uint32_t>(p1);
    ctr[2] = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    ctr[3] = static_cast<uint32_t>(p0);
  }
}

inline Philox4x32 Philox4x32_10(Philox4x32 ctr, PhiloxKey key) {
  Philox4x32_10Rounds(ctr.data(), key[0], key[1]);
  return ctr;
}

// The top 24 bits as a float in [0, 1): every value k / 2^24 is exact in f32.
inline float UniformFromBits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

}  // namespace strata::cpu
