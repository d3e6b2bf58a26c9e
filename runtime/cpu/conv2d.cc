#include "runtime/cpu/conv2d.h"

#include <omp.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cblas.h"
#include "runtime/cpu/internal/conv2d_checks.h"

namespace strata::cpu {
namespace {

constexpr char kOp[] = "Conv2d";

enum class Path { kDepthwise, kPointwise, kDirect, kIm2col };

struct Geometry {
  int64_t n, c, h, w, oc, kh, kw, oh, ow, pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t cg, ocg, k, p;  // per group: channels in/out, GEMM depth (cg*kh*kw), pixels (oh*ow)
  Path path;
};

bool DirectApplies(const Geometry& g, const Conv2dParams& p);

Geometry MakeGeometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p) {
  Geometry g{};
  g.n = x[0]; g.c = x[1]; g.h = x[2]; g.w = x[3];
  g.oc = w[0]; g.kh = w[2]; g.kw = w[3];
  g.oh = y[2]; g.ow = y[3];
  g.pad_h = p.pad_h; g.pad_w = p.pad_w;
  g.stride_h = p.stride_h; g.stride_w = p.stride_w;
  g.dilation_h = p.dilation_h; g.dilation_w = p.dilation_w;
  g.cg = g.c / p.groups;
  g.ocg = g.oc / p.groups;
  g.k = g.cg * g.kh * g.kw;
  g.p = g.oh * g.ow;
  if (p.groups == g.c) {
    g.path = Path::kDepthwise;
  } else if (g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
             p.pad_w == 0) {
    g.path = Path::kPointwise;
  } else if (DirectApplies(g, p)) {
    g.path = Path::kDirect;
  } else {
    g.path = Path::kIm2col;
  }
  return g;
}

// Flat depthwise loops run in whole vectors of kVec floats (Note [depthwise on flattened
// padded planes]).
constexpr int64_t kVec = 16;

inline int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct PhasePlanes {
  int64_t sh, sw;    // strides: sh * sw phases
  int64_t qh, qw;    // one phase plane
  int64_t plane;     // qh * qw
  int64_t phases;    // floats of all phases and the zero tail: sh * sw * plane + kVec
  int64_t len;       // flat length covering every valid output, (oh - 1) * qw + ow, in vectors
  int64_t margin;    // zeros before the spread dy: the largest tap offset within a phase
  int64_t flat;      // floats of the flat buffer: margin + plane in vectors
  int64_t taps;      // kh * kw
};

PhasePlanes MakePhasePlanes(const Geometry& g) {
  PhasePlanes f;
  f.sh = g.stride_h;
  f.sw = g.stride_w;
  f.qh = (g.h + 2 * g.pad_h + f.sh - 1) / f.sh;
  f.qw = (g.w + 2 * g.pad_w + f.sw - 1) / f.sw;
  f.plane = f.qh * f.qw;
  f.phases = f.sh * f.sw * f.plane + kVec;
  f.len = RoundUp((g.oh - 1) * f.qw + g.ow, kVec);
  f.margin = ((g.kh - 1) * g.dilation_h / f.sh) * f.qw + (g.kw - 1) * g.dilation_w / f.sw;
  f.flat = f.margin + RoundUp(f.plane, kVec);
  f.taps = g.kh * g.kw;
  return f;
}

// Per thread: two phase buffers (x or dx phases, and the row-grouped padded plane), a flat
// buffer, and a vector of partial sums per tap for dw.
int64_t DepthwiseFloats(const PhasePlanes& f) { return 2 * f.phases + f.flat + f.taps * kVec; }

int64_t DirectPerThreadFloats(const Geometry& g);
int64_t DirectSharedFloats(const Geometry& g);

// Floats of workspace one thread needs (forward and backward alike).
int64_t PerThreadFloats(const Geometry& g) {
  switch (g.path) {
    case Path::kDepthwise: return DepthwiseFloats(MakePhasePlanes(g));
    case Path::kPointwise: return g.oc * g.k + g.oc;                 // dW and db partial sums
    case Path::kDirect: return DirectPerThreadFloats(g);
    case Path::kIm2col: return 2 * g.k * g.p + g.oc * g.k + g.oc;    // col, dcol, partials
  }
  return 0;
}

// The ow range [lo, hi) whose input column ow * stride + offset lies in [0, width).
inline void ValidRange(int64_t offset, int64_t stride, int64_t width, int64_t out, int64_t& lo,
                       int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = width - 1 - offset < 0 ? 0 : std::min(out, (width - 1 - offset) / stride + 1);
  if (hi < lo) hi = lo;
}

// col (k, p) <- patches of x (cg, h, w) for one image and group.
void Im2col(const float* x, const Geometry& g, const Conv2dParams& cp, float* col) {
  for (int64_t c = 0; c < g.cg; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        float* row = col + ((c * g.kh + ki) * g.kw + kj) * g.p;
        const int64_t off_w = kj * cp.dilation_w - cp.pad_w;
        int64_t lo, hi;
        ValidRange(off_w, cp.stride_w, g.w, g.ow, lo, hi);
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          float* out = row + oy * g.ow;
          const int64_t iy = oy * cp.stride_h - cp.pad_h + ki * cp.dilation_h;
          if (iy < 0 || iy >= g.h) {
            std::fill(out, out + g.ow, 0.0f);
            continue;
          }
          const float* in = x + (c * g.h + iy) * g.w + off_w;
          std::fill(out, out + lo, 0.0f);
          if (cp.stride_w == 1) {
            std::memcpy(out + lo, in + lo, (hi - lo) * sizeof(float));
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) out[ox] = in[ox * cp.stride_w];
          }
          std::fill(out + hi, out + g.ow, 0.0f);
        }
      }
    }
  }
}

// dx (cg, h, w) += the patches in dcol (k, p), the adjoint of Im2col.
void Col2imAdd(const float* dcol, const Geometry& g, const Conv2dParams& cp, float* dx) {
  for (int64_t c = 0; c < g.cg; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* row = dcol + ((c * g.kh + ki) * g.kw + kj) * g.p;
        const int64_t off_w = kj * cp.dilation_w - cp.pad_w;
        int64_t lo, hi;
        ValidRange(off_w, cp.stride_w, g.w, g.ow, lo, hi);
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const int64_t iy = oy * cp.stride_h - cp.pad_h + ki * cp.dilation_h;
          if (iy < 0 || iy >= g.h) continue;
          float* out = dx + (c * g.h + iy) * g.w + off_w;
          const float* in = row + oy * g.ow;
          if (cp.stride_w == 1) {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) out[ox] += in[ox];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) out[ox * cp.stride_w] += in[ox];
          }
        }
      }
    }
  }
}

// Floats of workspace shared by all threads, before the per-thread slices.
int64_t SharedFloats(const Geometry& g) {
  return g.path == Path::kDirect ? DirectSharedFloats(g) : 0;
}

// Threads for a pass: no more than cores, workspace slices, or (when split by image) images.
int BatchThreads(const Geometry& g, size_t workspace_floats) {
  // Depthwise work is split over planes or channels, everything else over images.
  int64_t t = omp_get_max_threads();
  if (g.path != Path::kDepthwise) t = std::min(t, g.n);
  const int64_t per = PerThreadFloats(g);
  if (per > 0) {
    t = std::min<int64_t>(t, (static_cast<int64_t>(workspace_floats) - SharedFloats(g)) / per);
  }
  return static_cast<int>(std::max<int64_t>(t, 1));
}

absl::Status CheckWorkspace(const Geometry& g, size_t floats) {
  const int64_t per = SharedFloats(g) + PerThreadFloats(g);
  if (static_cast<int64_t>(floats) >= per) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(kOp, ": workspace of ", floats * sizeof(float),
                                                 " bytes is smaller than the ", per * sizeof(float),
                                                 " bytes one thread needs (Conv2dWorkspaceBytes)"));
}

// Note [depthwise on flattened padded planes]: output (oy, ox) reads padded input
// (oy*sh + ki*dh, ox*sw + kj*dw). Split the padded plane (PH, PW) into sh*sw phase planes of
// (QH, QW) = (ceil(PH/sh), ceil(PW/sw)), phase (a, b) holding padded rows a, a+sh, ... and columns
// b, b+sw, ...; tap (ki, kj) then reads phase ((ki*dh) % sh, (kj*dw) % sw) at (oy + (ki*dh)/sh,
// ox + (kj*dw)/sw): a unit-stride window. Laying the output out with row width QW, every tap
// becomes one long contiguous multiply-add over the whole plane,
// out[i] += w * phase[i + tap offset], instead of many short (for stride 2, gathered) rows; the
// QW - OW extra columns per row are computed and dropped. Stride 1 is the case of one phase, the
// padded plane itself. Backward runs the same windows the other way: dx phases += w * (dy spread
// to row width QW, extra columns zero), then interleaved back into dx; dw is a dot product of
// that spread dy with each tap's window.
// The flat loops run in whole vectors of kVec floats (no scalar tail): the phases are followed by
// kVec zeros that the last windows may read, and the spread dy is zero past its end, so the extra
// lanes read zeros, add zeros, or land in output columns that are dropped.
// Splitting a plane by stride is two contiguous passes: copy the rows into a padded plane with the
// rows already grouped by phase (row r at (r % sh) * QH + r / sh), then de-interleave its columns
// (phase b takes every sw-th float from b), which the compiler vectorizes for sw == 2.
// dst[0, n) = src[0, n) for the short rows of a plane (7 or 14 floats): with AVX-512, masked
// 16-float moves; a library memcpy call per row costs more than the copy.
inline void CopyRow(const float* src, int64_t n, float* dst) {
#ifdef __AVX512F__
  for (; n >= 16; n -= 16, src += 16, dst += 16) _mm512_storeu_ps(dst, _mm512_loadu_ps(src));
  const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
  _mm512_mask_storeu_ps(dst, mask, _mm512_maskz_loadu_ps(mask, src));
#else
  std::memcpy(dst, src, n * sizeof(float));
#endif
}

// ki * dilation (or kj * dilation, or a row index) as a quotient and remainder of the stride,
// advanced without dividing (per-plane work is small enough that divisions show).
struct StrideSplit {
  int64_t q = 0, r = 0;
  StrideSplit() = default;
  StrideSplit(int64_t v, int64_t stride) : q(v / stride), r(v % stride) {}
  void Add(int64_t d, int64_t stride) {
    for (r += d; r >= stride; r -= stride) ++q;
  }
};

// Where tap (ki, kj) starts in the phases (phase (a, b) is plane b * sh + a), from the splits of
// ki*dh and kj*dw.
inline int64_t TapOffset(const PhasePlanes& f, const StrideSplit& row, const StrideSplit& col) {
  return (col.r * f.sh + row.r) * f.plane + row.q * f.qw + col.q;
}

// Where input row y starts in the padded plane whose rows are grouped by phase (width sw * qw).
template <typename Fn>
inline void ForEachGroupedRow(const Geometry& g, const PhasePlanes& f, Fn fn) {
  StrideSplit r(g.pad_h, f.sh);
  for (int64_t y = 0; y < g.h; ++y, r.Add(1, f.sh)) {
    fn(y, (r.r * f.qh + r.q) * f.sw * f.qw + g.pad_w);
  }
}

// phases (sh*sw planes of (qh, qw), b-major) <-> the row-grouped padded plane (sh*qh, sw*qw).
template <bool kSplit>
void Deinterleave(const PhasePlanes& f, float* grouped, float* phases) {
  const int64_t count = f.sh * f.plane;  // floats per column phase b
  if (f.sw == 2) {
    float* even = phases;
    float* odd = phases + count;
#pragma omp simd
    for (int64_t t = 0; t < count; ++t) {
      if constexpr (kSplit) {
        even[t] = grouped[2 * t];
        odd[t] = grouped[2 * t + 1];
      } else {
        grouped[2 * t] = even[t];
        grouped[2 * t + 1] = odd[t];
      }
    }
    return;
  }
  for (int64_t b = 0; b < f.sw; ++b) {
    float* phase = phases + b * count;
    for (int64_t t = 0; t < count; ++t) {
      if constexpr (kSplit) {
        phase[t] = grouped[t * f.sw + b];
      } else {
        grouped[t * f.sw + b] = phase[t];
      }
    }
  }
}

// phases <- the zero-padded plane `in` (h, w) split by stride, and the zero tail; `scratch` holds
// f.phases floats.
void ToPhases(const float* in, const Geometry& g, const PhasePlanes& f, float* scratch,
              float* phases) {
  float* grouped = f.sw == 1 ? phases : scratch;
  std::fill(grouped, grouped + f.sh * f.sw * f.plane, 0.0f);
  ForEachGroupedRow(g, f, [&](int64_t y, int64_t at) {
    CopyRow(in + y * g.w, g.w, grouped + at);
  });
  if (f.sw > 1) Deinterleave<true>(f, grouped, phases);
  std::fill(phases + f.phases - kVec, phases + f.phases, 0.0f);
}

// out (h, w) <- the unpadded part of the phases; the adjoint of ToPhases.
void FromPhases(float* phases, const Geometry& g, const PhasePlanes& f, float* scratch,
                float* out) {
  float* grouped = f.sw == 1 ? phases : scratch;
  if (f.sw > 1) Deinterleave<false>(f, grouped, phases);
  ForEachGroupedRow(g, f, [&](int64_t y, int64_t at) {
    CopyRow(grouped + at, g.w, out + y * g.w);
  });
}

// flat <- margin zeros, then dy (oh, ow) in rows of width qw, the extra columns and the tail
// zero so they add nothing. Returns where dy starts.
float* SpreadRows(const float* dy, const Geometry& g, const PhasePlanes& f, float* buffer) {
  std::fill(buffer, buffer + f.margin, 0.0f);
  float* flat = buffer + f.margin;
  if (f.qw == g.ow) {
    std::memcpy(flat, dy, g.p * sizeof(float));
  } else {
    for (int64_t y = 0; y < g.oh; ++y) {
      CopyRow(dy + y * g.ow, g.ow, flat + y * f.qw);
      for (int64_t x = g.ow; x < f.qw; ++x) flat[y * f.qw + x] = 0.0f;
    }
  }
  std::fill(flat + g.oh * f.qw, buffer + f.flat, 0.0f);
  return flat;
}

// Note [depthwise rows in registers]: the phase-plane path (Note [depthwise on flattened padded
// planes]) spends most of its time building padded planes, not multiplying: a 14x14 plane is
// 126 vector FMAs, and copying it into a zeroed 16x16 plane, spreading dy and copying results
// back cost as much again, for each of N*C planes in each of the three passes. When every row
// of x and y fits in one 16-float vector (W <= 16, OW <= 16), a 3x3 kernel and strides of 1 or
// 2, no plane is built: an output row is one register, and each tap is one FMA of the broadcast
// weight with a vector that holds, in lane j, the input column that output column j reads
// (j*S + kj*dw - pw), zero where that column is padding:
//   stride 1: a masked load at x_row + kj*dw - pw (the mask zeroes the padding lanes, and masked
//             lanes are never read, so the load may start before the row);
//   stride 2: the row loaded once, then a zero-masking permute with indices 2j + kj*dw - pw.
// Rows of padding are skipped. dx is the same loop over dx rows: dx row iy takes, for tap
// (ki, kj), dy row (iy + ph - ki*dh) / S when that divides, and in lane ix dy column
// (ix + pw - kj*dw) / S when that divides (a masked load for stride 1, a masked permute of the dy
// row for stride 2), summed over the channel multiplier. dw keeps its 9 tap sums and the bias
// sum in registers across all N images of a channel: per dy row, the tap vector times the dy
// row. Forward runs over (image, channel) planes; backward over channels, dw/db and then dx of
// that channel's planes while they are in L2, so no partial sums cross threads. Each output row
// is written whole (masked store), so no plane needs zeroing. Other depthwise shapes (wider rows,
// other kernels or strides), and builds without AVX-512, use the phase planes.
#ifdef __AVX512F__

bool DepthwiseRowsApply(const Geometry& g) {
  return g.kh == 3 && g.kw == 3 && g.stride_h == g.stride_w && g.stride_h <= 2 && g.w <= 16 &&
         g.ow <= 16;
}

// Per kernel column kj: which column of the source row each lane of the tap vector takes, as
// permute indices (stride 2) or a load offset (stride 1), and the lanes that are not padding.
struct DwRowTaps {
  __m512i fwd_idx[3], bwd_idx[3];
  __mmask16 fwd_mask[3], bwd_mask[3];
  int64_t fwd_off[3], bwd_off[3];
};

DwRowTaps MakeDwRowTaps(const Geometry& g) {
  DwRowTaps t;
  const int64_t s = g.stride_w;
  for (int kj = 0; kj < 3; ++kj) {
    alignas(64) int32_t fi[16], bi[16];
    unsigned fm = 0, bm = 0;
    t.fwd_off[kj] = kj * g.dilation_w - g.pad_w;
    t.bwd_off[kj] = g.pad_w - kj * g.dilation_w;
    for (int j = 0; j < 16; ++j) {
      const int64_t col = j * s + t.fwd_off[kj];  // x column read by y column j
      fi[j] = static_cast<int32_t>(std::clamp<int64_t>(col, 0, 15));
      if (j < g.ow && col >= 0 && col < g.w) fm |= 1u << j;
      const int64_t num = j + t.bwd_off[kj];  // S times the dy column that x column j gets
      bi[j] = 0;
      if (j < g.w && num >= 0 && num % s == 0 && num / s < g.ow) {
        bm |= 1u << j;
        bi[j] = static_cast<int32_t>(num / s);
      }
    }
    t.fwd_idx[kj] = _mm512_load_si512(fi);
    t.bwd_idx[kj] = _mm512_load_si512(bi);
    t.fwd_mask[kj] = static_cast<__mmask16>(fm);
    t.bwd_mask[kj] = static_cast<__mmask16>(bm);
  }
  return t;
}

// The tap vector: lanes of `row` (stride 1, from memory) or of `row_vec` (stride 2, the row
// already loaded) picked by kj's offset or indices, padding lanes zero.
template <int S>
inline __m512 DwTap(const float* row, __m512 row_vec, __m512i idx, __mmask16 mask, int64_t off) {
  if constexpr (S == 1) {
    return _mm512_maskz_loadu_ps(mask, row + off);
  } else {
    return _mm512_maskz_permutexvar_ps(mask, idx, row_vec);
  }
}

inline __mmask16 LowLanes(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// The sum of the 16 lanes (GCC 12's _mm512_reduce_add_ps warns of an uninitialized value).
inline float SumLanes(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0.0f;
  for (float l : lanes) s += l;
  return s;
}

// The three tap vectors of kernel row ki for one source row (an x row for forward and dw, a dy
// row for dx): lane j of tap kj holds the source column that column j of the result reads.
template <int S>
struct DwRowTapSet {
  __m512i idx[3];
  __mmask16 mask[3];
  int64_t off[3];
  __mmask16 row_mask;  // the source row's lanes (stride 2 loads it whole)

  DwRowTapSet(const DwRowTaps& t, bool forward, int64_t row_len) {
    for (int kj = 0; kj < 3; ++kj) {
      idx[kj] = forward ? t.fwd_idx[kj] : t.bwd_idx[kj];
      mask[kj] = forward ? t.fwd_mask[kj] : t.bwd_mask[kj];
      off[kj] = forward ? t.fwd_off[kj] : t.bwd_off[kj];
    }
    row_mask = LowLanes(row_len);
  }
  // acc + k[0] * tap 0 + k[1] * tap 1 + k[2] * tap 2 of `row`.
  inline __m512 Fma3(const float* row, const float* k, __m512 acc) const {
    const __m512 v = S == 1 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(row_mask, row);
#pragma GCC unroll 3
    for (int kj = 0; kj < 3; ++kj) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(k[kj]), DwTap<S>(row, v, idx[kj], mask[kj], off[kj]),
                            acc);
    }
    return acc;
  }
};

// y plane (oh, ow) = 3x3 depthwise convolution of the x plane (h, w) with k (3, 3), plus bias.
// One output row at a time: its 9 dependent FMAs overlap with the next row's.
template <int S>
void DwRowsForwardPlane(const float* x, const float* k, float bias, float* y, const Geometry& g,
                        const DwRowTapSet<S>& taps) {
  const __mmask16 y_mask = LowLanes(g.ow);
  const int64_t h = g.h, w = g.w, dh = g.dilation_h, ph = g.pad_h;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    __m512 acc = _mm512_set1_ps(bias);
#pragma GCC unroll 3
    for (int ki = 0; ki < 3; ++ki) {
      const int64_t iy = oy * S + ki * dh - ph;
      if (iy >= 0 && iy < h) acc = taps.Fma3(x + iy * w, k + ki * 3, acc);
    }
    _mm512_mask_storeu_ps(y + oy * g.ow, y_mask, acc);
  }
}

// dx plane (h, w) = the transposed convolution of the mult dy planes (mult, oh, ow) of one input
// channel with their kernels k (mult, 3, 3).
template <int S>
void DwRowsDxPlane(const float* dy, const float* k, int64_t mult, float* dx, const Geometry& g,
                   const DwRowTapSet<S>& taps) {
  const __mmask16 x_mask = LowLanes(g.w);
  const int64_t oh = g.oh, ow = g.ow, dh = g.dilation_h, ph = g.pad_h, plane = g.p;
  for (int64_t iy = 0; iy < g.h; ++iy) {
    __m512 acc = _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int ki = 0; ki < 3; ++ki) {
      const int64_t num = iy + ph - ki * dh;  // S * the dy row
      if (num < 0 || num % S != 0 || num / S >= oh) continue;
      const float* row = dy + (num / S) * ow;
      for (int64_t m = 0; m < mult; ++m) acc = taps.Fma3(row + m * plane, k + m * 9 + ki * 3, acc);
    }
    _mm512_mask_storeu_ps(dx + iy * g.w, x_mask, acc);
  }
}

// dw (3, 3) and db of output channel o, summed over all images: x is the x plane of o's input
// channel in image 0, dy the dy plane of o in image 0 (planes of later images follow at the
// given strides). Either output may be null.
template <int S>
void DwRowsWeightGrad(const float* x, int64_t x_stride, const float* dy, int64_t dy_stride,
                      float* dw, float* db, bool accumulate, const Geometry& g,
                      const DwRowTapSet<S>& taps) {
  const __mmask16 y_mask = LowLanes(g.ow);
  const int64_t h = g.h, w = g.w, dh = g.dilation_h, ph = g.pad_h;
  __m512 acc[9], acc_b = _mm512_setzero_ps();
  for (int i = 0; i < 9; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t n = 0; n < g.n; ++n, x += x_stride, dy += dy_stride) {
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const __m512 d = _mm512_maskz_loadu_ps(y_mask, dy + oy * g.ow);
      acc_b = _mm512_add_ps(acc_b, d);
      if (dw == nullptr) continue;
#pragma GCC unroll 3
      for (int ki = 0; ki < 3; ++ki) {
        const int64_t iy = oy * S + ki * dh - ph;
        if (iy < 0 || iy >= h) continue;
        const float* row = x + iy * w;
        const __m512 v = S == 1 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(taps.row_mask, row);
#pragma GCC unroll 3
        for (int kj = 0; kj < 3; ++kj) {
          acc[ki * 3 + kj] = _mm512_fmadd_ps(
              d, DwTap<S>(row, v, taps.idx[kj], taps.mask[kj], taps.off[kj]), acc[ki * 3 + kj]);
        }
      }
    }
  }
  if (dw != nullptr) {
    for (int i = 0; i < 9; ++i) dw[i] = (accumulate ? dw[i] : 0.0f) + SumLanes(acc[i]);
  }
  if (db != nullptr) *db = (accumulate ? *db : 0.0f) + SumLanes(acc_b);
}

template <int S>
void DwRowsForward(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                   int threads) {
  const int64_t mult = g.oc / g.c;
  const DwRowTapSet<S> taps(MakeDwRowTaps(g), /*forward=*/true, g.w);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t o = 0; o < g.oc; ++o) {
      DwRowsForwardPlane<S>(x + (n * g.c + o / mult) * g.h * g.w, w + o * 9, b ? b[o] : 0.0f,
                            y + (n * g.oc + o) * g.p, g, taps);
    }
  }
}

template <int S>
void DwRowsBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, const Geometry& g, bool accumulate, int threads) {
  const int64_t mult = g.oc / g.c;
  const DwRowTaps t = MakeDwRowTaps(g);
  const DwRowTapSet<S> fwd(t, /*forward=*/true, g.w), bwd(t, /*forward=*/false, g.ow);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t c = 0; c < g.c; ++c) {
    if (dw != nullptr || db != nullptr) {
      for (int64_t o = c * mult; o < (c + 1) * mult; ++o) {
        DwRowsWeightGrad<S>(x + c * g.h * g.w, g.c * g.h * g.w, dy + o * g.p, g.oc * g.p,
                            dw ? dw + o * 9 : nullptr, db ? db + o : nullptr, accumulate, g, fwd);
      }
    }
    if (dx != nullptr) {
      for (int64_t n = 0; n < g.n; ++n) {
        DwRowsDxPlane<S>(dy + (n * g.oc + c * mult) * g.p, w + c * mult * 9, mult,
                         dx + (n * g.c + c) * g.h * g.w, g, bwd);
      }
    }
  }
}
#endif  // __AVX512F__

void DepthwiseForward(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                      const Conv2dParams& cp, float* workspace, int threads) {
#ifdef __AVX512F__
  if (DepthwiseRowsApply(g)) {  // Note [depthwise rows in registers]
    (g.stride_w == 1 ? DwRowsForward<1> : DwRowsForward<2>)(x, w, b, y, g, threads);
    return;
  }
#endif
  const int64_t mult = g.oc / g.c;
  const PhasePlanes f = MakePhasePlanes(g);
  const int64_t per = PerThreadFloats(g);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t c = 0; c < g.c; ++c) {
      float* phases = workspace + omp_get_thread_num() * per;
      float* scratch = phases + f.phases;
      float* acc = scratch + f.phases;
      ToPhases(x + (n * g.c + c) * g.h * g.w, g, f, scratch, phases);
      for (int64_t m = 0; m < mult; ++m) {
        const int64_t o = c * mult + m;
        const float* k = w + o * g.kh * g.kw;
        const float bias = b ? b[o] : 0.0f;
#pragma omp simd
        for (int64_t i = 0; i < f.len; ++i) acc[i] = bias;
        StrideSplit row;
        for (int64_t ki = 0; ki < g.kh; ++ki, row.Add(cp.dilation_h, f.sh)) {
          StrideSplit col;
          for (int64_t kj = 0; kj < g.kw; ++kj, col.Add(cp.dilation_w, f.sw)) {
            const float wv = k[ki * g.kw + kj];
            const float* src = phases + TapOffset(f, row, col);
#pragma omp simd
            for (int64_t i = 0; i < f.len; ++i) acc[i] += wv * src[i];
          }
        }
        float* out = y + (n * g.oc + o) * g.p;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          CopyRow(acc + oy * f.qw, g.ow, out + oy * g.ow);
        }
      }
    }
  }
}

void DepthwiseBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                       float* db, const Geometry& g, const Conv2dParams& cp, bool accumulate,
                       float* workspace, int threads) {
#ifdef __AVX512F__
  if (DepthwiseRowsApply(g)) {  // Note [depthwise rows in registers]
    (g.stride_w == 1 ? DwRowsBackward<1> : DwRowsBackward<2>)(x, w, dy, dx, dw, db, g, accumulate,
                                                                threads);
    return;
  }
#endif
  const int64_t mult = g.oc / g.c;
  const int64_t kk = g.kh * g.kw;
  const PhasePlanes f = MakePhasePlanes(g);
  const int64_t per = PerThreadFloats(g);
  if (dx != nullptr) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t c = 0; c < g.c; ++c) {
        float* scratch = workspace + omp_get_thread_num() * per;
        float* dphases = scratch + f.phases;
        float* buffer = dphases + f.phases;
        for (int64_t m = 0; m < mult; ++m) {
          const int64_t o = c * mult + m;
          const float* flat = SpreadRows(dy + (n * g.oc + o) * g.p, g, f, buffer);
          // Phase by phase, each tap adds its window of dy, shifted back by the tap's offset
          // within the phase, onto the whole phase plane (reads shifted, writes aligned).
          for (int64_t ph = 0; ph < f.sh * f.sw; ++ph) {
            float* dst = dphases + ph * f.plane;
            bool first = m == 0;
            StrideSplit row;
            for (int64_t ki = 0; ki < g.kh; ++ki, row.Add(cp.dilation_h, f.sh)) {
              StrideSplit col;
              for (int64_t kj = 0; kj < g.kw; ++kj, col.Add(cp.dilation_w, f.sw)) {
                if (col.r * f.sh + row.r != ph) continue;
                const float wv = w[o * kk + ki * g.kw + kj];
                const float* src = flat - (row.q * f.qw + col.q);
                if (first) {
#pragma omp simd
                  for (int64_t i = 0; i < f.plane; ++i) dst[i] = wv * src[i];
                  first = false;
                } else {
#pragma omp simd
                  for (int64_t i = 0; i < f.plane; ++i) dst[i] += wv * src[i];
                }
              }
            }
            if (first) std::fill(dst, dst + f.plane, 0.0f);  // a phase no tap reads
          }
        }
        FromPhases(dphases, g, f, scratch, dx + (n * g.c + c) * g.h * g.w);
      }
    }
  }
  if (dw != nullptr || db != nullptr) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t o = 0; o < g.oc; ++o) {
      float* phases = workspace + omp_get_thread_num() * per;
      float* scratch = phases + f.phases;
      float* buffer = scratch + f.phases;
      float* partial = buffer + f.flat;  // (kk, kVec)
      float* k = dw ? dw + o * kk : nullptr;
      std::fill(partial, partial + kk * kVec, 0.0f);
      float bias_sum = 0.0f;
      for (int64_t n = 0; n < g.n; ++n) {
        const float* d_out = dy + (n * g.oc + o) * g.p;
        if (db != nullptr) {
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < g.p; ++i) s += d_out[i];
          bias_sum += s;
        }
        if (k == nullptr) continue;
        ToPhases(x + (n * g.c + o / mult) * g.h * g.w, g, f, scratch, phases);
        const float* flat = SpreadRows(d_out, g, f, buffer);
        StrideSplit row;
        for (int64_t ki = 0; ki < g.kh; ++ki, row.Add(cp.dilation_h, f.sh)) {
          StrideSplit col;
          for (int64_t kj = 0; kj < g.kw; ++kj, col.Add(cp.dilation_w, f.sw)) {
            const float* src = phases + TapOffset(f, row, col);
            float* part = partial + (ki * g.kw + kj) * kVec;
            for (int64_t i = 0; i < f.len; i += kVec) {
#pragma omp simd
              for (int64_t l = 0; l < kVec; ++l) part[l] += flat[i + l] * src[i + l];
            }
          }
        }
      }
      if (k != nullptr) {
        for (int64_t t = 0; t < kk; ++t) {
          float s = 0.0f;
          for (int64_t l = 0; l < kVec; ++l) s += partial[t * kVec + l];
          k[t] = (accumulate ? k[t] : 0.0f) + s;
        }
      }
      if (db != nullptr) db[o] = (accumulate ? db[o] : 0.0f) + bias_sum;
    }
  }
}

// Note [direct 3x3 convolution]: for 3x3, stride 1, undilated, ungrouped convolutions with C a
// multiple of 16 and OC of 32 (the bulk of a CNN's FLOPs), im2col + sgemm spent a third of its
// time building and scattering column matrices and ran sgemm on small shapes (64 x 196 x 288 per
// image). This path reads the zero-padded input directly from a register-blocked micro-kernel:
// when the output channels come in 32s, a tile of one row of up to kDirectRow output pixels
// times 32 output channels (DirectTileWide, 28 accumulators) adds, for every input channel and
// tap, the broadcast input pixel times the two vectors of packed weights of that (channel, tap);
// with 16s (dx when C is an odd multiple of 16), two rows times 16 channels (DirectTile), the
// broadcast folded into the FMA's memory operand. Either way each FMA addresses base +
// displacement from a pointer the compiler cannot fold back into base + index: on Intel cores
// an indexed memory operand unlaminates into two uops, and with its index arithmetic the loop
// was front-end bound (forward 1.70 -> 1.43 ms for N64 C32 14x14 OC64 on 2 Sapphire Rapids
// cores). Weights are packed in blocks of one tile's channels, (cin*9, 16 or 32) each, so a tile
// streams them contiguously rather than one cache line per 256-byte row (-> ~1.25 ms). The tile
// is then transposed into NCHW, 16 pixels x 16 channels at a time in registers (Transpose16;
// one float at a time this was 6% of the forward pass).
//   forward  y = conv(pad(x), w)                       weights packed blocks of (C*9, step)
//   dx       dx = conv(pad(dy, 2 - pad), flip(w)^T)    the transposed convolution, same kernel,
//            weights packed blocks of (OC*9, step); no col2im
//   dw       per image, dy transposed to (OC/32, P, 32) (Transpose16); per block of 32 output
//            channels, then per input channel, 9 taps x 32 channels of partial sums stay in
//            registers over every pixel; the block's slice of dy (P x 32) stays in L1 across
//            channels (1.52 -> 1.30 ms against channel-outermost over a (P, OC) dy); one
//            partial (C*9, OC) per thread, reduced in thread order.
// Workspace: the packed weights once, then per thread the padded x, padded dy, transposed dy,
// one tile and the dw/db partials; padded borders are zeroed once per call. Needs AVX-512 (32
// vector registers); other builds, and other shapes, use im2col + sgemm.
constexpr int64_t kDirectBlock = 16;  // output channels per vector
constexpr int64_t kDirectRow = 14;    // output pixels per micro-tile

bool DirectApplies(const Geometry& g, const Conv2dParams& p) {
#ifdef __AVX512F__
  return p.groups == 1 && g.kh == 3 && g.kw == 3 && p.stride_h == 1 && p.stride_w == 1 &&
         p.dilation_h == 1 && p.dilation_w == 1 && p.pad_h <= 2 && p.pad_w <= 2 &&
         g.c % kDirectBlock == 0 && g.oc % (2 * kDirectBlock) == 0;
#else
  return false;
#endif
}

struct DirectPlan {
  int64_t ph, pw;    // x padded by (pad_h, pad_w)
  int64_t dph, dpw;  // dy padded by (2 - pad_h, 2 - pad_w)
  int64_t x_pad, dy_pad, dy_t, tile;  // floats of each per-thread buffer
  int64_t shared;    // packed weights, one copy for all threads
  int64_t per_thread;
};

DirectPlan MakeDirectPlan(const Geometry& g) {
  DirectPlan d;
  d.ph = g.h + 2 * g.pad_h;
  d.pw = g.w + 2 * g.pad_w;
  d.dph = g.oh + 2 * (2 - g.pad_h);
  d.dpw = g.ow + 2 * (2 - g.pad_w);
  d.x_pad = g.c * d.ph * d.pw;
  d.dy_pad = g.oc * d.dph * d.dpw;
  d.dy_t = g.p * g.oc;
  d.tile = 2 * kDirectRow * kDirectBlock;
  d.shared = g.oc * g.k;
  // x_pad, dy_pad, dy_t, tile, dw partial (k, oc), db partial (oc)
  d.per_thread = d.x_pad + d.dy_pad + d.dy_t + d.tile + g.k * g.oc + g.oc;
  return d;
}

#ifdef __AVX512F__
// r[i] lane j <- r[j] lane i: a 16x16 transpose in registers (4x4 transposes within 128-bit
// lanes by unpacks, then 4x4 blocks of lanes by two rounds of lane shuffles).
inline void Transpose16(__m512 r[16]) {
  // Zero-masking forms with every lane kept: the same instructions, but GCC 12 warns of an
  // uninitialized pass-through value in the unmasked ones.
  constexpr __mmask16 kAll = 0xFFFF;
  constexpr __mmask8 kAll8 = 0xFF;
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  __m512 u[16];  // u[4g + e], 128-bit lane b: column 4b + e of rows 4g .. 4g + 3
  for (int g = 0; g < 16; g += 4) {
    for (int h = 0; h < 2; ++h) {
      const __m512d lo = _mm512_castps_pd(t[g + h]), hi = _mm512_castps_pd(t[g + h + 2]);
      u[g + 2 * h] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, lo, hi));
      u[g + 2 * h + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, lo, hi));
    }
  }
  for (int e = 0; e < 4; ++e) {
    const __m512 v0 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0x88);
    const __m512 v1 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0xDD);
    const __m512 w0 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0x88);
    const __m512 w1 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0xDD);
    r[e] = _mm512_maskz_shuffle_f32x4(kAll, v0, w0, 0x88);
    r[4 + e] = _mm512_maskz_shuffle_f32x4(kAll, v1, w1, 0x88);
    r[8 + e] = _mm512_maskz_shuffle_f32x4(kAll, v0, w0, 0xDD);
    r[12 + e] = _mm512_maskz_shuffle_f32x4(kAll, v1, w1, 0xDD);
  }
}

// tile (rows, R, 16) = sum over cin channels and 9 taps of in[channel][row + ki][j + kj] * w
// (packed (cin*9, ldw), this block's 16 columns). `in` is a padded plane stack at the tile's
// first pixel. Each broadcast input pixel feeds one FMA, so it folds into the FMA's memory
// operand and the 2*14 accumulators, one weight vector and nothing else live in registers.
template <int kRows, int R>
void DirectTile(const float* in, int64_t cin, int64_t plane, int64_t pw, const float* wp,
                int64_t ldw, float* tile) {
  __m512 acc[kRows][R];
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < R; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  // Taps go through an offset table: written as ki/kj loops, the compiler shares input loads
  // between neighbouring taps (predictive commoning) and runs out of registers.
  int64_t taps[9];
  for (int t = 0; t < 9; ++t) taps[t] = (t / 3) * pw + t % 3;
  for (int64_t c = 0; c < cin; ++c, in += plane) {
#pragma GCC unroll 1
    for (int t = 0; t < 9; ++t, wp += ldw) {
      // One base pointer per row, so every FMA addresses base + displacement: an indexed
      // memory operand unlaminates into two uops on Intel cores, and with the index
      // arithmetic the loop became front-end bound (57% of FMA peak).
      const float* rows[2] = {in + taps[t], nullptr};
      rows[1] = rows[0] + pw;
      // Opaque to the compiler, which otherwise folds them back into base + index.
      asm("" : "+r"(rows[0]), "+r"(rows[1]));
      const __m512 b = _mm512_loadu_ps(wp);
#pragma GCC unroll 2
      for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
        for (int j = 0; j < R; ++j) {
          acc[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(rows[r][j]), b, acc[r][j]);
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < R; ++j) _mm512_storeu_ps(tile + (r * R + j) * kDirectBlock, acc[r][j]);
  }
}

// tile (2, R, 16): one row of R pixels times 32 output channels (two blocks), so each
// broadcast input pixel feeds two FMAs from a register: half the loads of DirectTile.
template <int R>
void DirectTileWide(const float* in, int64_t cin, int64_t plane, int64_t pw, const float* wp,
                    int64_t ldw, float* tile) {
  __m512 acc[2][R];
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < R; ++j) acc[h][j] = _mm512_setzero_ps();
  }
  int64_t taps[9];
  for (int t = 0; t < 9; ++t) taps[t] = (t / 3) * pw + t % 3;
  for (int64_t c = 0; c < cin; ++c, in += plane) {
#pragma GCC unroll 1
    for (int t = 0; t < 9; ++t, wp += ldw) {
      const float* a = in + taps[t];
      asm("" : "+r"(a));
      const __m512 b0 = _mm512_loadu_ps(wp), b1 = _mm512_loadu_ps(wp + kDirectBlock);
#pragma GCC unroll 16
      for (int j = 0; j < R; ++j) {
        const __m512 v = _mm512_set1_ps(a[j]);
        acc[0][j] = _mm512_fmadd_ps(v, b0, acc[0][j]);
        acc[1][j] = _mm512_fmadd_ps(v, b1, acc[1][j]);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < R; ++j) _mm512_storeu_ps(tile + (h * R + j) * kDirectBlock, acc[h][j]);
  }
}

using DirectTileFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t,
                              float*);

template <int kRows, int... R>
constexpr DirectTileFn PickTile(int r, std::integer_sequence<int, R...>) {
  DirectTileFn fns[] = {&DirectTile<kRows, R + 1>...};
  return fns[r - 1];
}

template <int... R>
constexpr DirectTileFn PickWideTile(int r, std::integer_sequence<int, R...>) {
  DirectTileFn fns[] = {&DirectTileWide<R + 1>...};
  return fns[r - 1];
}

// Output channels per tile: 32 (one row, DirectTileWide) when cout allows, else 16.
inline int64_t DirectStep(int64_t cout) {
  return cout % (2 * kDirectBlock) == 0 ? 2 * kDirectBlock : kDirectBlock;
}

// Index into packed weights: blocks of DirectStep(cout) output channels, each (cin*9, step),
// so a tile streams its weights contiguously.
inline int64_t PackedIndex(int64_t k, int64_t o, int64_t kin, int64_t cout) {
  const int64_t step = DirectStep(cout);
  return (o / step * kin + k) * step + o % step;
}

// out (cout, rows, cols) = direct 3x3 convolution of the padded stack `in` (cin, rows + 2,
// cols + 2 as plane/pw) with packed weights (PackedIndex), plus bias when given.
void DirectConvImage(const float* in, int64_t cin, int64_t plane, int64_t pw, const float* wp,
                     int64_t cout, const float* bias, int64_t rows, int64_t cols, float* out,
                     float* tile) {
  constexpr auto kWidths = std::make_integer_sequence<int, kDirectRow>();
  const int64_t ob_step = DirectStep(cout);
  const bool wide = ob_step == 2 * kDirectBlock;
  const int64_t r_step = wide ? 1 : 2;
  for (int64_t ob = 0; ob < cout; ob += ob_step) {
    for (int64_t r = 0; r < rows; r += r_step) {
      const int nr = wide || r + 1 < rows ? 2 : 1;  // parts of the tile: rows, or blocks if wide
      for (int64_t x0 = 0; x0 < cols; x0 += kDirectRow) {
        const int n = static_cast<int>(std::min(kDirectRow, cols - x0));
        (wide     ? PickWideTile(n, kWidths)
         : nr == 2 ? PickTile<2>(n, kWidths)
                   : PickTile<1>(n, kWidths))(in + r * pw + x0, cin, plane, pw,
                                              wp + ob * cin * 9, ob_step, tile);
        // (pixel, channel) -> (channel, pixel), 16x16 in registers, plus bias.
        const __mmask16 mask = LowLanes(n);
        for (int rr = 0; rr < nr; ++rr) {
          __m512 v[16];
          for (int j = 0; j < 16; ++j) {
            v[j] = j < n ? _mm512_loadu_ps(tile + (rr * n + j) * kDirectBlock) : _mm512_setzero_ps();
          }
          Transpose16(v);
          const int64_t o0 = ob + (wide ? rr * kDirectBlock : 0);
          float* dst = out + o0 * rows * cols + (r + (wide ? 0 : rr)) * cols + x0;
          for (int o = 0; o < kDirectBlock; ++o, dst += rows * cols) {
            _mm512_mask_storeu_ps(dst, mask,
                                  bias ? _mm512_add_ps(v[o], _mm512_set1_ps(bias[o0 + o])) : v[o]);
          }
        }
      }
    }
  }
}

// partial (c*9, oc) += sum over pixels of x_pad[c][tap window] (x) dy_t[pixel][oc]: per input
// channel and block of 32 output channels, 9 x 2 accumulators over every pixel.
void DirectWeightGrad(const float* x_pad, const float* dy_t, const Geometry& g,
                      const DirectPlan& d, float* partial) {
  const int64_t plane = d.ph * d.pw;
  // Block outermost: its slice of dy_t (p x 32, contiguous) stays in L1 across channels.
  for (int64_t ob = 0; ob < g.oc; ob += 2 * kDirectBlock) {
    for (int64_t c = 0; c < g.c; ++c) {
      float* part = partial + c * 9 * g.oc + ob;
      __m512 acc0[9], acc1[9];
      for (int t = 0; t < 9; ++t) {
        acc0[t] = _mm512_loadu_ps(part + t * g.oc);
        acc1[t] = _mm512_loadu_ps(part + t * g.oc + 16);
      }
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        const float* r0 = x_pad + c * plane + oy * d.pw;
        const float* r1 = r0 + d.pw;
        const float* r2 = r1 + d.pw;
        const float* dv = dy_t + (ob * g.oh + oy * 2 * kDirectBlock) * g.ow;
        for (int64_t ox = 0; ox < g.ow; ++ox, ++r0, ++r1, ++r2, dv += 2 * kDirectBlock) {
          const __m512 d0 = _mm512_loadu_ps(dv), d1 = _mm512_loadu_ps(dv + 16);
          const float* rows[3] = {r0, r1, r2};
#pragma GCC unroll 9
          for (int t = 0; t < 9; ++t) {
            const __m512 v = _mm512_set1_ps(rows[t / 3][t % 3]);
            acc0[t] = _mm512_fmadd_ps(v, d0, acc0[t]);
            acc1[t] = _mm512_fmadd_ps(v, d1, acc1[t]);
          }
        }
      }
      for (int t = 0; t < 9; ++t) {
        _mm512_storeu_ps(part + t * g.oc, acc0[t]);
        _mm512_storeu_ps(part + t * g.oc + 16, acc1[t]);
      }
    }
  }
}

// out (ch / 32, p, 32) <- in (ch, p), for ch a multiple of 32: 16x16 blocks transposed in
// registers.
void TransposeToPixelMajor(const float* in, int64_t ch, int64_t p, float* out) {
  for (int64_t c0 = 0; c0 < ch; c0 += 16) {
    for (int64_t i0 = 0; i0 < p; i0 += 16) {
      const int64_t cnt = std::min<int64_t>(16, p - i0);
      const __mmask16 mask = LowLanes(cnt);
      __m512 v[16];
      for (int c = 0; c < 16; ++c) v[c] = _mm512_maskz_loadu_ps(mask, in + (c0 + c) * p + i0);
      Transpose16(v);
      float* dst = out + (c0 / 32 * p + i0) * 32 + c0 % 32;
      for (int64_t j = 0; j < cnt; ++j) _mm512_storeu_ps(dst + j * 32, v[j]);
    }
  }
}

// pad (ch, h + 2*pad_h, w + 2*pad_w) <- zero-padded planes of in (ch, h, w). The borders are
// written only when `zero` (a thread's first image): later images overwrite just the interior.
void PadStack(const float* in, int64_t ch, int64_t h, int64_t w, int64_t pad_h, int64_t pad_w,
              bool zero, float* pad) {
  const int64_t ph = h + 2 * pad_h, pw = w + 2 * pad_w;
  if (zero) std::fill(pad, pad + ch * ph * pw, 0.0f);
  for (int64_t c = 0; c < ch; ++c) {
    for (int64_t y = 0; y < h; ++y) {
      CopyRow(in + (c * h + y) * w, w, pad + (c * ph + y + pad_h) * pw + pad_w);
    }
  }
}
#endif  // __AVX512F__

// Conv2dForward and Conv2dBackward on the direct path; see Note [direct 3x3 convolution].
void DirectForward(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                   float* workspace, int threads) {
#ifdef __AVX512F__
  const DirectPlan d = MakeDirectPlan(g);
  float* packed = workspace;  // (c*9, oc)
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (int64_t o = 0; o < g.oc; ++o) {
      for (int64_t k = 0; k < g.k; ++k) packed[PackedIndex(k, o, g.k, g.oc)] = w[o * g.k + k];
    }
    const int t = omp_get_thread_num();
    float* x_pad = workspace + d.shared + t * d.per_thread;
    float* tile = x_pad + d.x_pad + d.dy_pad + d.dy_t;
    for (int64_t n = t; n < g.n; n += threads) {
      PadStack(x + n * g.c * g.h * g.w, g.c, g.h, g.w, g.pad_h, g.pad_w, n == t, x_pad);
      DirectConvImage(x_pad, g.c, d.ph * d.pw, d.pw, packed, g.oc, b, g.oh, g.ow,
                      y + n * g.oc * g.p, tile);
    }
  }
#endif
}

void DirectBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, const Geometry& g, bool accumulate, float* workspace,
                    int threads) {
#ifdef __AVX512F__
  const DirectPlan d = MakeDirectPlan(g);
  float* packed = workspace;  // (oc*9, c): w flipped and transposed
  const bool weights = dw != nullptr || db != nullptr;
  // Partial sums of thread t (dw (c*9, oc), then db (oc)).
  auto partials = [&](int t) {
    return workspace + d.shared + t * d.per_thread + d.x_pad + d.dy_pad + d.dy_t + d.tile;
  };
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (dx != nullptr) {
#pragma omp for schedule(static)
      for (int64_t o = 0; o < g.oc; ++o) {
        for (int64_t c = 0; c < g.c; ++c) {
          for (int64_t t = 0; t < 9; ++t) {
            packed[PackedIndex(o * 9 + t, c, g.oc * 9, g.c)] = w[(o * g.c + c) * 9 + 8 - t];
          }
        }
      }
    }
    const int t = omp_get_thread_num();
    float* x_pad = workspace + d.shared + t * d.per_thread;
    float* dy_pad = x_pad + d.x_pad;
    float* dy_t = dy_pad + d.dy_pad;
    float* tile = dy_t + d.dy_t;
    float* dw_part = tile + d.tile;
    float* db_part = dw_part + g.k * g.oc;
    if (weights) std::fill(dw_part, db_part + g.oc, 0.0f);
    for (int64_t n = t; n < g.n; n += threads) {
      const float* dy_n = dy + n * g.oc * g.p;
      if (dx != nullptr) {
        PadStack(dy_n, g.oc, g.oh, g.ow, 2 - g.pad_h, 2 - g.pad_w, n == t, dy_pad);
        DirectConvImage(dy_pad, g.oc, d.dph * d.dpw, d.dpw, packed, g.c, nullptr, g.h, g.w,
                        dx + n * g.c * g.h * g.w, tile);
      }
      if (db != nullptr) {
        for (int64_t o = 0; o < g.oc; ++o) {
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < g.p; ++i) s += dy_n[o * g.p + i];
          db_part[o] += s;
        }
      }
      if (dw != nullptr) {
        PadStack(x + n * g.c * g.h * g.w, g.c, g.h, g.w, g.pad_h, g.pad_w, n == t, x_pad);
        TransposeToPixelMajor(dy_n, g.oc, g.p, dy_t);
        DirectWeightGrad(x_pad, dy_t, g, d, dw_part);
      }
    }
    // Reduce the per-thread partial sums, split by output channel, each in thread order so
    // results do not depend on timing.
    if (weights) {
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t o = 0; o < g.oc; ++o) {
        if (dw != nullptr) {
          float* dw_o = dw + o * g.k;
          if (!accumulate) std::fill(dw_o, dw_o + g.k, 0.0f);
          for (int u = 0; u < threads; ++u) {
            const float* part = partials(u);
            for (int64_t k = 0; k < g.k; ++k) dw_o[k] += part[k * g.oc + o];
          }
        }
        if (db != nullptr) {
          float s = accumulate ? db[o] : 0.0f;
          for (int u = 0; u < threads; ++u) s += partials(u)[g.k * g.oc + o];
          db[o] = s;
        }
      }
    }
  }
#endif
}

int64_t DirectPerThreadFloats(const Geometry& g) { return MakeDirectPlan(g).per_thread; }
int64_t DirectSharedFloats(const Geometry& g) { return MakeDirectPlan(g).shared; }

absl::Status ValidateParams(const Conv2dParams& p) {
  auto bad = [](absl::string_view field, int value, absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": ", field, " = ", value, " must be ", rule));
  };
  if (p.stride_h < 1) return bad("stride_h", p.stride_h, ">= 1");
  if (p.stride_w < 1) return bad("stride_w", p.stride_w, ">= 1");
  if (p.pad_h < 0) return bad("pad_h", p.pad_h, ">= 0");
  if (p.pad_w < 0) return bad("pad_w", p.pad_w, ">= 0");
  if (p.dilation_h < 1) return bad("dilation_h", p.dilation_h, ">= 1");
  if (p.dilation_w < 1) return bad("dilation_w", p.dilation_w, ">= 1");
  if (p.groups < 1) return bad("groups", p.groups, ">= 1");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Shape> Conv2dOutputShape(const Shape& x, const Shape& w, const Conv2dParams& p) {
  STRATA_RETURN_IF_ERROR(ValidateParams(p));
  if (x.rank() != 4 || w.rank() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " and w ",
                                                   w.ToString(), " must both have rank 4"));
  }
  if (x[1] % p.groups != 0 || w[0] % p.groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": groups = ", p.groups,
                                                   " must divide the input channels ", x[1],
                                                   " and the output channels ", w[0]));
  }
  if (w[1] != x[1] / p.groups) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": w ", w.ToString(), " has ", w[1], " input channels per group, but x ",
        x.ToString(), " with groups = ", p.groups, " needs ", x[1] / p.groups));
  }
  const int64_t span_h = int64_t{p.dilation_h} * (w[2] - 1) + 1;
  const int64_t span_w = int64_t{p.dilation_w} * (w[3] - 1) + 1;
  const int64_t padded_h = x[2] + 2 * int64_t{p.pad_h}, padded_w = x[3] + 2 * int64_t{p.pad_w};
  if (w[2] < 1 || w[3] < 1 || span_h > padded_h || span_w > padded_w) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": kernel ", w[2], "x", w[3], " (dilated ", span_h, "x", span_w,
        ") does not fit the padded input ", padded_h, "x", padded_w, " of x ", x.ToString()));
  }
  return Shape{x[0], w[0], (padded_h - span_h) / p.stride_h + 1,
               (padded_w - span_w) / p.stride_w + 1};
}

size_t Conv2dWorkspaceBytes(const Shape& x, const Shape& w, const Conv2dParams& p,
                            int num_threads) {
  absl::StatusOr<Shape> y = Conv2dOutputShape(x, w, p);
  if (!y.ok()) return 0;
  const Geometry g = MakeGeometry(x, w, *y, p);
  int64_t threads = std::max(num_threads, 1);
  if (g.path != Path::kDepthwise) threads = std::min(threads, std::max<int64_t>(g.n, 1));
  return static_cast<size_t>(SharedFloats(g) + threads * PerThreadFloats(g)) * sizeof(float);
}

absl::Status Conv2dForward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const Conv2dParams& p, absl::Span<float> workspace) {
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape,
                          internal::CheckConv2dForward(CheckF32Contiguous, kOp, x, w, b, y, p));
  const Geometry g = MakeGeometry(x.shape(), w.shape(), y_shape, p);
  STRATA_RETURN_IF_ERROR(CheckWorkspace(g, workspace.size()));
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  float* yp = y.data<float>();
  if (g.n == 0) return absl::OkStatus();
  const int threads = BatchThreads(g, workspace.size());
  if (g.path == Path::kDepthwise) {
    DepthwiseForward(xp, wp, bp, yp, g, p, workspace.data(), threads);
    return absl::OkStatus();
  }
  if (g.path == Path::kDirect) {
    DirectForward(xp, wp, bp, yp, g, workspace.data(), threads);
    return absl::OkStatus();
  }
  const int64_t per = PerThreadFloats(g);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* col = workspace.data() + t * per;
    for (int64_t n = t; n < g.n; n += threads) {
      for (int64_t grp = 0; grp < p.groups; ++grp) {
        const float* x_g = xp + (n * g.c + grp * g.cg) * g.h * g.w;
        const float* src = x_g;
        if (g.path == Path::kIm2col) {
          Im2col(x_g, g, p, col);
          src = col;
        }
        float* y_g = yp + (n * g.oc + grp * g.ocg) * g.p;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.ocg, g.p, g.k, 1.0f,
                    wp + grp * g.ocg * g.k, g.k, src, g.p, 0.0f, y_g, g.p);
        if (bp != nullptr) {
          for (int64_t o = 0; o < g.ocg; ++o) {
            const float bias = bp[grp * g.ocg + o];
            float* row = y_g + o * g.p;
#pragma omp simd
            for (int64_t i = 0; i < g.p; ++i) row[i] += bias;
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Conv2dBackward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dx,
                            const Tensor& dw, const Tensor& db, const Conv2dParams& p,
                            absl::Span<float> workspace, GradMode mode) {
  if (!x.defined()) {
    STRATA_RETURN_IF_ERROR(
        internal::CheckConv2dBackwardWithoutX(CheckF32Contiguous, w, dy, dw, db));
    if (dx.defined()) {
      STRATA_RETURN_IF_ERROR(Conv2dBackward(dx, w, dy, dx, Tensor(), Tensor(), p, workspace, mode));
    }
    if (db.defined()) {
      const int64_t n = dy.dim(0), oc = dy.dim(1), hw = dy.dim(2) * dy.dim(3);
      const float* d = dy.data<float>();
      float* out = db.data<float>();
      for (int64_t o = 0; o < oc; ++o) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t k = 0; k < hw; ++k) s += d[(i * oc + o) * hw + k];
        }
        out[o] = (mode == GradMode::kAccumulate ? out[o] : 0.0f) + static_cast<float>(s);
      }
    }
    return absl::OkStatus();
  }
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, internal::CheckConv2dBackward(CheckF32Contiguous, x,
                                                                             w, dy, dx, dw, db, p));
  const Geometry g = MakeGeometry(x.shape(), w.shape(), y_shape, p);
  STRATA_RETURN_IF_ERROR(CheckWorkspace(g, workspace.size()));
  const bool accumulate = mode == GradMode::kAccumulate;
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  float* dwp = dw.defined() ? dw.data<float>() : nullptr;
  float* dbp = db.defined() ? db.data<float>() : nullptr;
  const int threads = BatchThreads(g, workspace.size());
  if (g.path == Path::kDepthwise) {
    DepthwiseBackward(xp, wp, dyp, dxp, dwp, dbp, g, p, accumulate, workspace.data(), threads);
    return absl::OkStatus();
  }
  if (g.path == Path::kDirect) {
    DirectBackward(xp, wp, dyp, dxp, dwp, dbp, g, accumulate, workspace.data(), threads);
    return absl::OkStatus();
  }
  const int64_t per = PerThreadFloats(g);
  const int64_t kp = g.k * g.p;
  const bool need_col = dwp != nullptr;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* slice = workspace.data() + t * per;
    float* col = slice;                                       // im2col path only
    float* dcol = g.path == Path::kIm2col ? slice + kp : nullptr;
    float* dw_part = g.path == Path::kIm2col ? slice + 2 * kp : slice;
    float* db_part = dw_part + g.oc * g.k;
    if (dwp != nullptr) std::fill(dw_part, dw_part + g.oc * g.k, 0.0f);
    if (dbp != nullptr) std::fill(db_part, db_part + g.oc, 0.0f);
    for (int64_t n = t; n < g.n; n += threads) {
      if (dxp != nullptr) std::fill(dxp + n * g.c * g.h * g.w, dxp + (n + 1) * g.c * g.h * g.w, 0.0f);
      for (int64_t grp = 0; grp < p.groups; ++grp) {
        const float* x_g = xp + (n * g.c + grp * g.cg) * g.h * g.w;
        const float* dy_g = dyp + (n * g.oc + grp * g.ocg) * g.p;
        const float* w_g = wp + grp * g.ocg * g.k;
        if (dxp != nullptr) {
          float* dx_g = dxp + (n * g.c + grp * g.cg) * g.h * g.w;
          if (g.path == Path::kPointwise) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.k, g.p, g.ocg, 1.0f, w_g, g.k,
                        dy_g, g.p, 0.0f, dx_g, g.p);
          } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.k, g.p, g.ocg, 1.0f, w_g, g.k,
                        dy_g, g.p, 0.0f, dcol, g.p);
            Col2imAdd(dcol, g, p, dx_g);
          }
        }
        if (need_col) {
          const float* src = x_g;
          if (g.path == Path::kIm2col) {
            Im2col(x_g, g, p, col);
            src = col;
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.ocg, g.k, g.p, 1.0f, dy_g, g.p,
                      src, g.p, 1.0f, dw_part + grp * g.ocg * g.k, g.k);
        }
        if (dbp != nullptr) {
          for (int64_t o = 0; o < g.ocg; ++o) {
            const float* row = dy_g + o * g.p;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < g.p; ++i) s += row[i];
            db_part[grp * g.ocg + o] += s;
          }
        }
      }
    }
  }
  // Reduce the per-thread partial sums in thread order, so results do not depend on timing.
  const int64_t dw_size = g.oc * g.k;
  if (dwp != nullptr) {
    if (!accumulate) std::fill(dwp, dwp + dw_size, 0.0f);
    for (int t = 0; t < threads; ++t) {
      const float* part = workspace.data() + t * per + (g.path == Path::kIm2col ? 2 * kp : 0);
      for (int64_t i = 0; i < dw_size; ++i) dwp[i] += part[i];
    }
  }
  if (dbp != nullptr) {
    if (!accumulate) std::fill(dbp, dbp + g.oc, 0.0f);
    for (int t = 0; t < threads; ++t) {
      const float* part = workspace.data() + t * per + (g.path == Path::kIm2col ? 2 * kp : 0) + dw_size;
      for (int64_t o = 0; o < g.oc; ++o) dbp[o] += part[o];
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
