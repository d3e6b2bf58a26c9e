#include "runtime/cpu/internal/sgemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#include <x86intrin.h>  // _m_prefetchw: GCC has it in immintrin.h, clang only here
#endif

namespace strata::cpu::internal {

// Note [own sgemm]
// OpenBLAS's sgemm packs both operands on every call and, unless beta is 1, first passes over C
// to scale or zero it; a linear layer with a bias had to write the bias into C first for the
// same reason. In a GPT training step those passes and the packing of the (cold) activations
// cost about 75 ms of a 520 ms step, around 380 ms of multiply.
//
// This sgemm reads A in place: an 8-row tile broadcasts one element of each of 8 rows per step
// of k, so its rows stream through L1 as 8 sequential runs and need no copy. Only B, the weight,
// is packed, 48 columns by up to 384 rows per panel, into a block of 768 columns (1.2 MB) that
// stays in L2 while every row tile of A passes over it. The 8 x 48 tile of C lives in 24
// registers, starts from C, the bias and the addend as asked, and is written once per block of
// k. With K <= 384 (every forward product of a width-384 GPT) C is written exactly once and
// never read first.
//
// The kernel alone runs at 95% of the FMA peak (218 of 230 GFLOP/s per core); whole products
// at the GPT's sizes reach 320-370 GFLOP/s on 2 cores, level with OpenBLAS; the gain is the
// passes that are gone, 3-4% of a GPT step in alternating runs.
//
// A transposed A (the weight gradients, dw = dy^T x) is the one operand packed on this side:
// read in place, a tile's 8 broadcasts per step of k would come from one row of the stored A^T
// and the next step from a row thousands of bytes further, 98 GFLOP/s on one Ice Lake core
// against OpenBLAS's 107. Each thread instead copies its chunk of row tiles, 8 columns of A^T by
// the block's depth, into a contiguous strip (a 32-byte load and store per step of k, once per
// block of B), and the tile reads it as it reads a row-major A: 120 GFLOP/s, 1.10x OpenBLAS at
// the GPT's weight-gradient shapes on one core, 1.03x on two.
//
// Note [aligned panels]
// Both packed buffers start on a cache line. The panel's rows are 192 bytes, three 64-byte
// loads per step of k; from a buffer that malloc placed 16 bytes past a line, every one of them
// straddles two lines. On an Ice Lake core that took the kernel from 153 to 129 GFLOP/s and the
// GPT's forward products from 137 to 116, and which of the two a run got depended on where
// malloc put the buffer.

#if defined(__AVX512F__)
namespace {

constexpr int64_t kMr = 8;     // rows of a C tile
constexpr int64_t kNr = 48;    // columns of a C tile: three 16-float vectors
constexpr int64_t kKc = 384;   // most rows of B in a packed block
constexpr int64_t kNc = 768;   // most columns of B in a packed block
constexpr int64_t kChunk = 16; // row tiles that pass over one panel before the next panel
constexpr uintptr_t kLine = 64;  // packed buffers start on a cache line: Note [aligned panels]

// Bits of the 16-float vector v (0, 1, 2) of a tile whose first `cols` columns exist.
__mmask16 ColumnMask(int64_t cols, int v) {
  const int64_t live = std::clamp<int64_t>(cols - 16 * v, 0, 16);
  return static_cast<__mmask16>((uint32_t{1} << live) - 1);
}

// B(p0 .. p0 + kc, j0 .. j0 + 48) into dst[kc][48], zeros past column n.
void PackPanel(const SgemmArgs& g, int64_t p0, int64_t kc, int64_t j0, float* dst) {
  const int64_t cols = std::min(kNr, g.n - j0);
  const __mmask16 m0 = ColumnMask(cols, 0), m1 = ColumnMask(cols, 1), m2 = ColumnMask(cols, 2);
  if (g.b_cs == 1) {
    for (int64_t p = 0; p < kc; ++p, dst += kNr) {
      const float* s = g.b + (p0 + p) * g.b_rs + j0;
      _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(m0, s));
      _mm512_storeu_ps(dst + 16, _mm512_maskz_loadu_ps(m1, s + 16));
      _mm512_storeu_ps(dst + 32, _mm512_maskz_loadu_ps(m2, s + 32));
    }
    return;
  }
  // B stored transposed (columns contiguous): gather 16 columns at a time; within a panel each
  // cache line gathered is reused by the next 15 rows.
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
      _mm512_set1_epi32(static_cast<int>(g.b_cs)));
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p, dst += kNr) {
    const float* s = g.b + (p0 + p) + j0 * g.b_cs;
    _mm512_storeu_ps(dst, _mm512_mask_i32gather_ps(zero, m0, idx, s, 4));
    _mm512_storeu_ps(dst + 16, _mm512_mask_i32gather_ps(zero, m1, idx, s + 16 * g.b_cs, 4));
    _mm512_storeu_ps(dst + 32, _mm512_mask_i32gather_ps(zero, m2, idx, s + 32 * g.b_cs, 4));
  }
}

// Where a tile's accumulators start: C itself (a later block of k, or accumulate), plus the
// bias and the addend (first block only).
struct TileStart {
  bool load_c;
  const float* bias;    // at the tile's first column, or null
  const float* addend;  // at the tile's first element, or null
  int64_t ld_addend;
};

// C tile (rows <= 8, 48 columns masked by m0..m2) = start + A rows . panel over depth kc. `a`
// holds 8 row pointers at the block's first k, each advancing by a_step floats per step of k (1
// in a row-major A, 8 in a packed strip); rows past `rows` repeat a valid row (or read the
// strip's zeros) and are computed but not stored. `next_c` is prefetched for writing (the next
// tile), or null.
void Tile(int64_t kc, const float* const* a, int64_t a_step, const float* panel, float* c,
          int64_t ldc, int64_t rows, __mmask16 m0, __mmask16 m1, __mmask16 m2,
          const TileStart& start, float* next_c) {
  if (next_c != nullptr) {
    for (int64_t r = 0; r < kMr; ++r) {
      _m_prefetchw(next_c + r * ldc);
      _m_prefetchw(next_c + r * ldc + 16);
      _m_prefetchw(next_c + r * ldc + 32);
    }
  }
  const __mmask16 mask[3] = {m0, m1, m2};
  __m512 acc[kMr][3];
  for (int64_t r = 0; r < kMr; ++r) {
    for (int v = 0; v < 3; ++v) {
      __m512 x = _mm512_setzero_ps();
      if (r < rows) {
        if (start.load_c) x = _mm512_maskz_loadu_ps(mask[v], c + r * ldc + 16 * v);
        if (start.bias != nullptr)
          x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], start.bias + 16 * v));
        if (start.addend != nullptr) {
          x = _mm512_add_ps(
              x, _mm512_maskz_loadu_ps(mask[v], start.addend + r * start.ld_addend + 16 * v));
        }
      }
      acc[r][v] = x;
    }
  }
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5],
              *a6 = a[6], *a7 = a[7];
  for (int64_t p = 0, at = 0; p < kc; ++p, at += a_step, panel += kNr) {
    _mm_prefetch(reinterpret_cast<const char*>(panel + 8 * kNr), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(panel + 8 * kNr + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(panel + 8 * kNr + 32), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(panel), b1 = _mm512_loadu_ps(panel + 16),
                 b2 = _mm512_loadu_ps(panel + 32);
#define STRATA_SGEMM_ROW(r, ar)                          \
  {                                                      \
    const __m512 x = _mm512_set1_ps(ar[at]);             \
    acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);       \
    acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);       \
    acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);       \
  }
    STRATA_SGEMM_ROW(0, a0) STRATA_SGEMM_ROW(1, a1) STRATA_SGEMM_ROW(2, a2)
    STRATA_SGEMM_ROW(3, a3) STRATA_SGEMM_ROW(4, a4) STRATA_SGEMM_ROW(5, a5)
    STRATA_SGEMM_ROW(6, a6) STRATA_SGEMM_ROW(7, a7)
#undef STRATA_SGEMM_ROW
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int v = 0; v < 3; ++v) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], acc[r][v]);
  }
}

// A^T's columns r0 .. r0 + 8 (C's rows) over depth kc into dst[kc][8], so that a tile's
// broadcasts read one sequential stream as they do from a row-major A. Columns past m are
// zeros: their rows of C are computed but never stored.
void PackTransposedTile(const SgemmArgs& g, int64_t p0, int64_t kc, int64_t r0, float* dst) {
  const int64_t live = std::min(kMr, g.m - r0);
  const __mmask16 mask = static_cast<__mmask16>((uint32_t{1} << live) - 1);
  const float* s = g.a + p0 * g.lda + r0;
  for (int64_t p = 0; p < kc; ++p, s += g.lda, dst += kMr) {
    _mm512_mask_storeu_ps(dst, 0xff, _mm512_maskz_loadu_ps(mask, s));
  }
}

// A calling thread's buffer of `floats`, starting on a cache line; allocated at its first
// product and reused after. Slot 0 holds the team's packed block of B, slot 1 a thread's
// packed tiles of a transposed A.
float* Buffer(int slot, size_t floats) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& b = buffers[slot];
  if (b.size() < floats + kLine / sizeof(float)) b.resize(floats + kLine / sizeof(float));
  const uintptr_t p = reinterpret_cast<uintptr_t>(b.data());
  return reinterpret_cast<float*>((p + kLine - 1) / kLine * kLine);
}

}  // namespace

bool SgemmSupports(const SgemmArgs& g) {
  if (g.b_cs == 1) return true;
  // A gather reaches 15 columns of b_cs floats past its base, in 32-bit byte offsets.
  return g.b_rs == 1 && g.b_cs > 0 && g.b_cs * 15 * int64_t{sizeof(float)} < (int64_t{1} << 31);
}

void Sgemm(const SgemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  // Blocks of k of equal depth (at most kKc); K = 0 is one empty block that still writes C.
  const int64_t kblocks = std::max<int64_t>(1, (g.k + kKc - 1) / kKc);
  const int64_t kc_max = (g.k + kblocks - 1) / kblocks;
  float* const pack = Buffer(0, kKc * kNc);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t tiles = (g.m + kMr - 1) / kMr;
    const int64_t t_begin = tiles * t / nt, t_end = tiles * (t + 1) / nt;
    const float* rows[kMr];
    float* const a_pack = g.trans_a ? Buffer(1, kChunk * kMr * kKc) : nullptr;
    for (int64_t jc = 0; jc < g.n; jc += kNc) {
      const int64_t nc = std::min(kNc, g.n - jc), panels = (nc + kNr - 1) / kNr;
      for (int64_t blk = 0; blk < kblocks; ++blk) {
        const int64_t p0 = blk * kc_max, kc = std::max<int64_t>(0, std::min(kc_max, g.k - p0));
#pragma omp for schedule(static)
        for (int64_t q = 0; q < panels; ++q) {
          PackPanel(g, p0, kc, jc + q * kNr, pack + q * kc * kNr);
        }
        for (int64_t chunk = t_begin; chunk < t_end; chunk += kChunk) {
          const int64_t chunk_end = std::min(t_end, chunk + kChunk);
          if (g.trans_a) {
            for (int64_t i = chunk; i < chunk_end; ++i) {
              PackTransposedTile(g, p0, kc, i * kMr, a_pack + (i - chunk) * kMr * kc);
            }
          }
          for (int64_t q = 0; q < panels; ++q) {
            const int64_t j0 = jc + q * kNr, cols = std::min(kNr, g.n - j0);
            const __mmask16 m0 = ColumnMask(cols, 0), m1 = ColumnMask(cols, 1),
                            m2 = ColumnMask(cols, 2);
            for (int64_t i = chunk; i < chunk_end; ++i) {
              const int64_t r0 = i * kMr, live = std::min(kMr, g.m - r0);
              for (int64_t r = 0; r < kMr; ++r) {
                rows[r] = g.trans_a ? a_pack + (i - chunk) * kMr * kc + r
                                    : g.a + (r0 + std::min(r, live - 1)) * g.lda + p0;
              }
              float* c = g.c + r0 * g.ldc + j0;
              const TileStart start{
                  blk > 0 || g.accumulate,
                  blk == 0 && g.bias != nullptr ? g.bias + j0 : nullptr,
                  blk == 0 && g.addend != nullptr ? g.addend + r0 * g.ld_addend + j0 : nullptr,
                  g.ld_addend};
              Tile(kc, rows, g.trans_a ? kMr : 1, pack + q * kc * kNr, c, g.ldc, live, m0, m1,
                   m2, start, i + 1 < chunk_end ? c + kMr * g.ldc : nullptr);
            }
          }
        }
        // Every thread is done with this block before any thread packs the next one.
#pragma omp barrier
      }
    }
  }
}

#else  // !defined(__AVX512F__)

// Without AVX-512 callers use OpenBLAS; this plain version keeps Sgemm's contract for the tests.
bool SgemmSupports(const SgemmArgs&) { return false; }

void Sgemm(const SgemmArgs& g) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
  for (int64_t i = 0; i < g.m; ++i) {
    float* c = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) {
      float x = g.accumulate ? c[j] : 0.0f;
      if (g.bias != nullptr) x += g.bias[j];
      if (g.addend != nullptr) x += g.addend[i * g.ld_addend + j];
      for (int64_t p = 0; p < g.k; ++p) {
        const float a = g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
        x += a * g.b[p * g.b_rs + j * g.b_cs];
      }
      c[j] = x;
    }
  }
}

#endif

}  // namespace strata::cpu::internal
