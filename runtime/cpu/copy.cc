#include "runtime/cpu/copy.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/copy_checks.h"

#if defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace strata::cpu {
namespace {

// Note [coalesced copies]
// A copy is its sizes plus the strides of both sides. Size-1 dimensions are dropped, and a
// dimension is merged into the one outside it whenever both sides step over the pair as one
// (outer stride == inner stride * inner size). A contiguous copy becomes one run, a permute keeps
// only the dimensions it really reorders, e.g. (8, 256, 6, 64).transpose(1, 2) stays 4-D but a
// (64, 96, 14, 14).permute(0, 2, 3, 1) becomes (64, 196, 96). Dims holds up to 6 dimensions
// inline, so for the ranks in use nothing is allocated.
struct Layout {
  Dims size, ss, ds;  // outermost first; ss: source strides, ds: destination strides
  int rank() const { return static_cast<int>(size.size()); }
};

Layout Coalesce(const Tensor& src, const Tensor& dst) {
  Layout l;
  for (int d = 0; d < src.rank(); ++d) {
    const int64_t n = src.dim(d), s = src.stride(d), t = dst.stride(d);
    if (n == 1) continue;
    if (!l.size.empty() && l.ss.back() == s * n && l.ds.back() == t * n) {
      l.size.back() *= n;
      l.ss.back() = s;
      l.ds.back() = t;
    } else {
      l.size.push_back(n);
      l.ss.push_back(s);
      l.ds.push_back(t);
    }
  }
  return l;
}

// Walks the multi-index of the dimensions `dims` of a layout in row-major order, keeping the
// source and destination offsets up to date: a division per dimension to start, then additions.
class Odometer {
 public:
  Odometer(const Layout& l, absl::Span<const int> dims, int64_t start) : l_(l), dims_(dims) {
    idx_.resize(dims.size());
    for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
      const int d = dims[i];
      idx_[i] = start % l.size[d];
      start /= l.size[d];
      so_ += idx_[i] * l.ss[d];
      do_ += idx_[i] * l.ds[d];
    }
  }
  int64_t src_offset() const { return so_; }
  int64_t dst_offset() const { return do_; }
  void Next() {
    for (int i = static_cast<int>(dims_.size()) - 1; i >= 0; --i) {
      const int d = dims_[i];
      so_ += l_.ss[d];
      do_ += l_.ds[d];
      if (++idx_[i] < l_.size[d]) return;
      so_ -= idx_[i] * l_.ss[d];
      do_ -= idx_[i] * l_.ds[d];
      idx_[i] = 0;
    }
  }

 private:
  const Layout& l_;
  absl::Span<const int> dims_;
  Dims idx_;
  int64_t so_ = 0, do_ = 0;
};

// Threads for a copy of `bytes`: below ~64 KiB the fork costs more than the copy.
bool Parallel(int64_t bytes) { return bytes > (int64_t{1} << 16) && !omp_in_parallel(); }

// Rows along the innermost dimension; a contiguous row on both sides is a memcpy.
template <typename T>
void CopyRows(const T* s, T* d, const Layout& l) {
  const int r = l.rank();
  const int64_t inner = l.size[r - 1], ss = l.ss[r - 1], ds = l.ds[r - 1];
  absl::InlinedVector<int, kMaxInlineRank> outer_dims;
  for (int i = 0; i + 1 < r; ++i) outer_dims.push_back(i);
  int64_t rows = 1;
  for (int i = 0; i + 1 < r; ++i) rows *= l.size[i];
  const int64_t total = rows * inner;
#pragma omp parallel if (Parallel(total * static_cast<int64_t>(sizeof(T))))
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (rows == 1) {  // one long run (a contiguous copy): split it
      const int64_t b = inner * t / nt, e = inner * (t + 1) / nt;
      if (ss == 1 && ds == 1) {
        // In pieces: glibc switches to non-temporal stores for one large memcpy, which sends a
        // destination that the next kernel reads out of the cache (measured 1.5x slower).
        constexpr int64_t kPiece = (int64_t{256} << 10) / sizeof(T);
        for (int64_t i = b; i < e; i += kPiece) {
          std::memcpy(d + i, s + i, std::min(kPiece, e - i) * sizeof(T));
        }
      } else {
        for (int64_t i = b; i < e; ++i) d[i * ds] = s[i * ss];
      }
    } else {
      const int64_t b = rows * t / nt, e = rows * (t + 1) / nt;
      Odometer it(l, outer_dims, b);
      for (int64_t row = b; row < e; ++row, it.Next()) {
        const T* sp = s + it.src_offset();
        T* dp = d + it.dst_offset();
        if (ss == 1 && ds == 1) {
          std::memcpy(dp, sp, inner * sizeof(T));
        } else {
          for (int64_t i = 0; i < inner; ++i) dp[i * ds] = sp[i * ss];
        }
      }
    }
  }
}

#ifdef __AVX2__
// dst rows r..r+7 (cols c..c+7) = src rows c..c+7 (cols r..r+7) transposed, 4-byte elements;
// s points at src(c, r), d at dst(r, c). Shuffles only, so any bit pattern is moved unchanged.
inline void Transpose8x8(const float* s, int64_t lds, float* d, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(s + 0 * lds), r1 = _mm256_loadu_ps(s + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

#ifdef __SSE2__
// The same for 2-byte elements (bf16, f16), 8 x 8 in 128-bit registers.
inline void Transpose8x8(const uint16_t* s, int64_t lds, uint16_t* d, int64_t ldd) {
  auto load = [&](int i) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i * lds)); };
  const __m128i a0 = load(0), a1 = load(1), a2 = load(2), a3 = load(3);
  const __m128i a4 = load(4), a5 = load(5), a6 = load(6), a7 = load(7);
  const __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
  const __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
  const __m128i b4 = _mm_unpacklo_epi16(a4, a5), b5 = _mm_unpackhi_epi16(a4, a5);
  const __m128i b6 = _mm_unpacklo_epi16(a6, a7), b7 = _mm_unpackhi_epi16(a6, a7);
  const __m128i c0 = _mm_unpacklo_epi32(b0, b2), c1 = _mm_unpackhi_epi32(b0, b2);
  const __m128i c2 = _mm_unpacklo_epi32(b1, b3), c3 = _mm_unpackhi_epi32(b1, b3);
  const __m128i c4 = _mm_unpacklo_epi32(b4, b6), c5 = _mm_unpackhi_epi32(b4, b6);
  const __m128i c6 = _mm_unpacklo_epi32(b5, b7), c7 = _mm_unpackhi_epi32(b5, b7);
  auto store = [&](int i, __m128i v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i * ldd), v);
  };
  store(0, _mm_unpacklo_epi64(c0, c4));
  store(1, _mm_unpackhi_epi64(c0, c4));
  store(2, _mm_unpacklo_epi64(c1, c5));
  store(3, _mm_unpackhi_epi64(c1, c5));
  store(4, _mm_unpacklo_epi64(c2, c6));
  store(5, _mm_unpackhi_epi64(c2, c6));
  store(6, _mm_unpacklo_epi64(c3, c7));
  store(7, _mm_unpackhi_epi64(c3, c7));
}
#endif

// One tile of a transpose: dst(r, c) = src(r, c) for r in [r0, r1), c in [c0, c1), where src is
// contiguous along r (address r + c * lds) and dst along c (address r * ldd + c).
template <typename T>
void TransposeTile(const T* s, int64_t lds, T* d, int64_t ldd, int64_t r0, int64_t r1,
                   int64_t c0, int64_t c1) {
  int64_t r = r0;
  // 8 x 8 blocks where there is a shuffle kernel for the element width.
  using Block = std::conditional_t<sizeof(T) == 4, float, uint16_t>;
#ifdef __AVX2__
  constexpr bool kBlocks = sizeof(T) == 4 || sizeof(T) == 2;
#elif defined(__SSE2__)
  constexpr bool kBlocks = sizeof(T) == 2;
#else
  constexpr bool kBlocks = false;
#endif
  if constexpr (kBlocks) {
    for (; r + 8 <= r1; r += 8) {
      int64_t c = c0;
      for (; c + 8 <= c1; c += 8) {
        Transpose8x8(reinterpret_cast<const Block*>(s + r + c * lds), lds,
                     reinterpret_cast<Block*>(d + r * ldd + c), ldd);
      }
      for (int64_t rr = r; rr < r + 8; ++rr)
        for (int64_t cc = c; cc < c1; ++cc) d[rr * ldd + cc] = s[rr + cc * lds];
    }
  }
  for (; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) d[r * ldd + c] = s[r + c * lds];
}

// Note [tiled transposes]
// When the unit-stride dimension of one side is not the innermost of the other (a transpose or a
// permute that moves the innermost dimension), a row-by-row copy reads or writes with a large
// stride and misses the cache on every element. Instead the two dimensions (`rd`, unit stride in
// src, and `cd`, unit stride in dst) are copied in 32 x 32 tiles that stay in L1, 8 x 8 blocks at
// a time with AVX2 (4-byte elements) or SSE2 (2-byte) shuffles. Tiles over all other dimensions are spread over
// the threads.
template <typename T>
void CopyTiled(const T* s, T* d, const Layout& l, int rd, int cd) {
  constexpr int64_t kTile = 32;
  const int64_t rows = l.size[rd], cols = l.size[cd], lds = l.ss[cd], ldd = l.ds[rd];
  absl::InlinedVector<int, kMaxInlineRank> outer_dims;
  int64_t outer = 1;
  for (int i = 0; i < l.rank(); ++i) {
    if (i == rd || i == cd) continue;
    outer_dims.push_back(i);
    outer *= l.size[i];
  }
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int64_t tiles = row_tiles * col_tiles, items = outer * tiles;
#pragma omp parallel if (Parallel(outer * rows * cols * static_cast<int64_t>(sizeof(T))))
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t b = items * t / nt, e = items * (t + 1) / nt;
    if (b < e) {
      Odometer it(l, outer_dims, b / tiles);
      for (int64_t item = b; item < e; ++item) {
        const int64_t tile = item % tiles;
        if (tile == 0 && item != b) it.Next();
        const int64_t r0 = (tile / col_tiles) * kTile, c0 = (tile % col_tiles) * kTile;
        TransposeTile(s + it.src_offset(), lds, d + it.dst_offset(), ldd, r0,
                      std::min(rows, r0 + kTile), c0, std::min(cols, c0 + kTile));
      }
    }
  }
}

template <typename T>
void CopyTyped(const Tensor& src, const Tensor& dst) {
  const T* s = static_cast<const T*>(src.raw_data());
  T* d = static_cast<T*>(dst.raw_data());
  const Layout l = Coalesce(src, dst);
  const int r = l.rank();
  if (r == 0) {  // a single element
    *d = *s;
    return;
  }
  const int last = r - 1;
  // Transposed: one side is contiguous along a dimension the other is not; tile those two.
  if (l.ss[last] != 1 && l.ds[last] == 1) {
    for (int i = 0; i < last; ++i)
      if (l.ss[i] == 1) return CopyTiled(s, d, l, i, last);
  } else if (l.ss[last] == 1 && l.ds[last] != 1) {
    for (int i = 0; i < last; ++i)
      if (l.ds[i] == 1) return CopyTiled(s, d, l, last, i);
  }
  CopyRows(s, d, l);
}

}  // namespace

absl::Status CopyStrided(const Tensor& src, const Tensor& dst) {
  STRATA_RETURN_IF_ERROR(internal::CheckCopyStrided(CheckHostAddressable, src, dst));
  if (src.numel() == 0) return absl::OkStatus();
  switch (SizeOf(src.dtype())) {
    case 1: CopyTyped<uint8_t>(src, dst); break;
    case 2: CopyTyped<uint16_t>(src, dst); break;
    case 4: CopyTyped<uint32_t>(src, dst); break;
    case 8: CopyTyped<uint64_t>(src, dst); break;
    default:
      return internal::UnsupportedElementSize(src);
  }
  return absl::OkStatus();
}

absl::Status TransposeCopy(const Tensor& src, int dim0, int dim1, const Tensor& dst) {
  return internal::TransposeCopyWith(src, dim0, dim1, dst, CopyStrided);
}

absl::Status ReshapeCopy(const Tensor& src, const Tensor& dst) {
  return internal::ReshapeCopyWith(src, dst, CopyStrided);
}

absl::Status Concat(absl::Span<const Tensor> inputs, int dim, const Tensor& out) {
  return internal::ForEachPart(
      CheckHostAddressable, "Concat", "out", inputs, dim, out,
      [](const Tensor& part, const Tensor& slice) { return CopyStrided(part, slice); });
}

absl::Status Split(const Tensor& in, int dim, absl::Span<const Tensor> outs) {
  return internal::ForEachPart(
      CheckHostAddressable, "Split", "in", outs, dim, in,
      [](const Tensor& part, const Tensor& slice) { return CopyStrided(slice, part); });
}

}  // namespace strata::cpu
