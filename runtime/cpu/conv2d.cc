#include "runtime/cpu/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "cblas.h"

namespace strata::cpu {
namespace {

constexpr char kOp[] = "Conv2d";

enum class Path { kDepthwise, kDepthwiseStride1, kPointwise, kIm2col };

struct Geometry {
  int64_t n, c, h, w, oc, kh, kw, oh, ow, pad_h, pad_w;
  int64_t cg, ocg, k, p;  // per group: channels in/out, GEMM depth (cg*kh*kw), pixels (oh*ow)
  Path path;
};

Geometry MakeGeometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p) {
  Geometry g{};
  g.n = x[0]; g.c = x[1]; g.h = x[2]; g.w = x[3];
  g.oc = w[0]; g.kh = w[2]; g.kw = w[3];
  g.oh = y[2]; g.ow = y[3];
  g.pad_h = p.pad_h; g.pad_w = p.pad_w;
  g.cg = g.c / p.groups;
  g.ocg = g.oc / p.groups;
  g.k = g.cg * g.kh * g.kw;
  g.p = g.oh * g.ow;
  if (p.groups == g.c && p.stride_h == 1 && p.stride_w == 1) {
    g.path = Path::kDepthwiseStride1;
  } else if (p.groups == g.c) {
    g.path = Path::kDepthwise;
  } else if (g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
             p.pad_w == 0) {
    g.path = Path::kPointwise;
  } else {
    g.path = Path::kIm2col;
  }
  return g;
}

// Floats of workspace one thread needs (forward and backward alike).
int64_t PerThreadFloats(const Geometry& g) {
  switch (g.path) {
    case Path::kDepthwise: return 0;
    case Path::kDepthwiseStride1: {  // a padded input plane, a dy plane, a padded dx plane
      const int64_t ph = g.h + 2 * g.pad_h, pw = g.w + 2 * g.pad_w;
      return 2 * ph * pw + g.oh * pw;
    }
    case Path::kPointwise: return g.oc * g.k + g.oc;                 // dW and db partial sums
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

// Threads for a pass: no more than cores, workspace slices, or (when split by image) images.
int BatchThreads(const Geometry& g, size_t workspace_floats) {
  // Depthwise stride-1 work is split over channels, everything else over images.
  int64_t t = omp_get_max_threads();
  if (g.path != Path::kDepthwiseStride1) t = std::min(t, g.n);
  const int64_t per = PerThreadFloats(g);
  if (per > 0) t = std::min<int64_t>(t, static_cast<int64_t>(workspace_floats) / per);
  return static_cast<int>(std::max<int64_t>(t, 1));
}

absl::Status CheckWorkspace(const Geometry& g, size_t floats) {
  const int64_t per = PerThreadFloats(g);
  if (static_cast<int64_t>(floats) >= per) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(kOp, ": workspace of ", floats * sizeof(float),
                                                 " bytes is smaller than the ", per * sizeof(float),
                                                 " bytes one thread needs (Conv2dWorkspaceBytes)"));
}

void DepthwiseForward(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                      const Conv2dParams& cp) {
  const int64_t mult = g.oc / g.c;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t o = 0; o < g.oc; ++o) {
      const float* in = x + (n * g.c + o / mult) * g.h * g.w;
      const float* k = w + o * g.kh * g.kw;
      float* out = y + (n * g.oc + o) * g.p;
      std::fill(out, out + g.p, b ? b[o] : 0.0f);
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const int64_t off_w = kj * cp.dilation_w - cp.pad_w;
        int64_t lo, hi;
        ValidRange(off_w, cp.stride_w, g.w, g.ow, lo, hi);
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const float wv = k[ki * g.kw + kj];
          for (int64_t oy = 0; oy < g.oh; ++oy) {
            const int64_t iy = oy * cp.stride_h - cp.pad_h + ki * cp.dilation_h;
            if (iy < 0 || iy >= g.h) continue;
            const float* row = in + iy * g.w + off_w;
            float* o_row = out + oy * g.ow;
            if (cp.stride_w == 1) {
#pragma omp simd
              for (int64_t ox = lo; ox < hi; ++ox) o_row[ox] += wv * row[ox];
            } else {
              for (int64_t ox = lo; ox < hi; ++ox) o_row[ox] += wv * row[ox * cp.stride_w];
            }
          }
        }
      }
    }
  }
}

void DepthwiseBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                       float* db, const Geometry& g, const Conv2dParams& cp, bool accumulate) {
  const int64_t mult = g.oc / g.c;
  const int64_t kk = g.kh * g.kw;
  if (dx != nullptr) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t c = 0; c < g.c; ++c) {
        float* din = dx + (n * g.c + c) * g.h * g.w;
        std::fill(din, din + g.h * g.w, 0.0f);
        for (int64_t m = 0; m < mult; ++m) {
          const int64_t o = c * mult + m;
          const float* k = w + o * kk;
          const float* d_out = dy + (n * g.oc + o) * g.p;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t off_w = kj * cp.dilation_w - cp.pad_w;
            int64_t lo, hi;
            ValidRange(off_w, cp.stride_w, g.w, g.ow, lo, hi);
            for (int64_t ki = 0; ki < g.kh; ++ki) {
              const float wv = k[ki * g.kw + kj];
              for (int64_t oy = 0; oy < g.oh; ++oy) {
                const int64_t iy = oy * cp.stride_h - cp.pad_h + ki * cp.dilation_h;
                if (iy < 0 || iy >= g.h) continue;
                float* row = din + iy * g.w + off_w;
                const float* d_row = d_out + oy * g.ow;
                if (cp.stride_w == 1) {
#pragma omp simd
                  for (int64_t ox = lo; ox < hi; ++ox) row[ox] += wv * d_row[ox];
                } else {
                  for (int64_t ox = lo; ox < hi; ++ox) row[ox * cp.stride_w] += wv * d_row[ox];
                }
              }
            }
          }
        }
      }
    }
  }
  if (dw != nullptr || db != nullptr) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < g.oc; ++o) {
      float bias_sum = 0.0f;
      float* k = dw ? dw + o * kk : nullptr;
      if (k != nullptr && !accumulate) std::fill(k, k + kk, 0.0f);
      for (int64_t n = 0; n < g.n; ++n) {
        const float* in = x + (n * g.c + o / mult) * g.h * g.w;
        const float* d_out = dy + (n * g.oc + o) * g.p;
        if (db != nullptr) {
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < g.p; ++i) s += d_out[i];
          bias_sum += s;
        }
        if (k == nullptr) continue;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t off_w = kj * cp.dilation_w - cp.pad_w;
            int64_t lo, hi;
            ValidRange(off_w, cp.stride_w, g.w, g.ow, lo, hi);
            float s = 0.0f;
            for (int64_t oy = 0; oy < g.oh; ++oy) {
              const int64_t iy = oy * cp.stride_h - cp.pad_h + ki * cp.dilation_h;
              if (iy < 0 || iy >= g.h) continue;
              const float* row = in + iy * g.w + off_w;
              const float* d_row = d_out + oy * g.ow;
              if (cp.stride_w == 1) {
#pragma omp simd reduction(+ : s)
                for (int64_t ox = lo; ox < hi; ++ox) s += d_row[ox] * row[ox];
              } else {
                for (int64_t ox = lo; ox < hi; ++ox) s += d_row[ox] * row[ox * cp.stride_w];
              }
            }
            k[ki * g.kw + kj] += s;
          }
        }
      }
      if (db != nullptr) db[o] = (accumulate ? db[o] : 0.0f) + bias_sum;
    }
  }
}

// Note [depthwise on flattened padded planes]: with stride 1, output (oy, ox) reads padded input
// (oy + ki*dh, ox + kj*dw). Laying the output out with the padded row width PW, every tap becomes
// one long contiguous multiply-add over the whole plane, out[i] += w * pad[i + ki*dh*PW + kj*dw],
// instead of many short rows; the PW - OW extra columns per row are computed and dropped.
struct FlatPlane {
  int64_t ph, pw, len;  // padded height and width; flat length covering every valid output
};

FlatPlane MakeFlatPlane(const Geometry& g) {
  const int64_t ph = g.h + 2 * g.pad_h, pw = g.w + 2 * g.pad_w;
  return {ph, pw, (g.oh - 1) * pw + g.ow};
}

void PadPlane(const float* in, const Geometry& g, const FlatPlane& f, float* pad) {
  std::fill(pad, pad + f.ph * f.pw, 0.0f);
  for (int64_t y = 0; y < g.h; ++y) {
    std::memcpy(pad + (y + g.pad_h) * f.pw + g.pad_w, in + y * g.w, g.w * sizeof(float));
  }
}

// dy (oh, ow) into rows of width pw, the extra columns zero so they add nothing.
void SpreadRows(const float* dy, const Geometry& g, const FlatPlane& f, float* flat) {
  for (int64_t y = 0; y < g.oh; ++y) {
    std::memcpy(flat + y * f.pw, dy + y * g.ow, g.ow * sizeof(float));
    std::fill(flat + y * f.pw + g.ow, flat + (y + 1) * f.pw, 0.0f);
  }
}

inline int64_t TapOffset(const Geometry& g, const Conv2dParams& cp, const FlatPlane& f,
                         int64_t ki, int64_t kj) {
  return ki * cp.dilation_h * f.pw + kj * cp.dilation_w;
}

void DepthwiseStride1Forward(const float* x, const float* w, const float* b, float* y,
                             const Geometry& g, const Conv2dParams& cp, float* workspace,
                             int threads) {
  const int64_t mult = g.oc / g.c;
  const FlatPlane f = MakeFlatPlane(g);
  const int64_t per = PerThreadFloats(g);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t c = 0; c < g.c; ++c) {
      float* pad = workspace + omp_get_thread_num() * per;
      float* acc = pad + f.ph * f.pw;
      PadPlane(x + (n * g.c + c) * g.h * g.w, g, f, pad);
      for (int64_t m = 0; m < mult; ++m) {
        const int64_t o = c * mult + m;
        const float* k = w + o * g.kh * g.kw;
        std::fill(acc, acc + f.len, b ? b[o] : 0.0f);
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const float wv = k[ki * g.kw + kj];
            const float* src = pad + TapOffset(g, cp, f, ki, kj);
#pragma omp simd
            for (int64_t i = 0; i < f.len; ++i) acc[i] += wv * src[i];
          }
        }
        float* out = y + (n * g.oc + o) * g.p;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          std::memcpy(out + oy * g.ow, acc + oy * f.pw, g.ow * sizeof(float));
        }
      }
    }
  }
}

void DepthwiseStride1Backward(const float* x, const float* w, const float* dy, float* dx,
                              float* dw, float* db, const Geometry& g, const Conv2dParams& cp,
                              bool accumulate, float* workspace, int threads) {
  const int64_t mult = g.oc / g.c;
  const int64_t kk = g.kh * g.kw;
  const FlatPlane f = MakeFlatPlane(g);
  const int64_t per = PerThreadFloats(g);
  if (dx != nullptr) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t c = 0; c < g.c; ++c) {
        float* slice = workspace + omp_get_thread_num() * per;
        float* dpad = slice;
        float* flat = slice + f.ph * f.pw;
        std::fill(dpad, dpad + f.ph * f.pw, 0.0f);
        for (int64_t m = 0; m < mult; ++m) {
          const int64_t o = c * mult + m;
          SpreadRows(dy + (n * g.oc + o) * g.p, g, f, flat);
          for (int64_t ki = 0; ki < g.kh; ++ki) {
            for (int64_t kj = 0; kj < g.kw; ++kj) {
              const float wv = w[o * kk + ki * g.kw + kj];
              float* dst = dpad + TapOffset(g, cp, f, ki, kj);
#pragma omp simd
              for (int64_t i = 0; i < f.len; ++i) dst[i] += wv * flat[i];
            }
          }
        }
        float* d_in = dx + (n * g.c + c) * g.h * g.w;
        for (int64_t yy = 0; yy < g.h; ++yy) {
          std::memcpy(d_in + yy * g.w, dpad + (yy + g.pad_h) * f.pw + g.pad_w, g.w * sizeof(float));
        }
      }
    }
  }
  if (dw != nullptr || db != nullptr) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t o = 0; o < g.oc; ++o) {
      float* slice = workspace + omp_get_thread_num() * per;
      float* pad = slice;
      float* flat = slice + f.ph * f.pw;
      float* k = dw ? dw + o * kk : nullptr;
      if (k != nullptr && !accumulate) std::fill(k, k + kk, 0.0f);
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
        PadPlane(x + (n * g.c + o / mult) * g.h * g.w, g, f, pad);
        SpreadRows(d_out, g, f, flat);
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const float* src = pad + TapOffset(g, cp, f, ki, kj);
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < f.len; ++i) s += flat[i] * src[i];
            k[ki * g.kw + kj] += s;
          }
        }
      }
      if (db != nullptr) db[o] = (accumulate ? db[o] : 0.0f) + bias_sum;
    }
  }
}

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

size_t Conv2dWorkspaceBytes(const Shape& x, const Shape& w, const Conv2dParams& p) {
  absl::StatusOr<Shape> y = Conv2dOutputShape(x, w, p);
  if (!y.ok()) return 0;
  const Geometry g = MakeGeometry(x, w, *y, p);
  int64_t threads = omp_get_max_threads();
  if (g.path != Path::kDepthwiseStride1) threads = std::min(threads, std::max<int64_t>(g.n, 1));
  return static_cast<size_t>(threads * PerThreadFloats(g)) * sizeof(float);
}

absl::Status Conv2dForward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const Conv2dParams& p, absl::Span<float> workspace) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "x", x));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "w", w));
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, Conv2dOutputShape(x.shape(), w.shape(), p));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "y", y, y_shape));
  if (b.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "b", b, Shape{w.dim(0)}));
  const Geometry g = MakeGeometry(x.shape(), w.shape(), y_shape, p);
  STRATA_RETURN_IF_ERROR(CheckWorkspace(g, workspace.size()));
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  float* yp = y.data<float>();
  if (g.n == 0) return absl::OkStatus();
  const int threads = BatchThreads(g, workspace.size());
  if (g.path == Path::kDepthwise) {
    DepthwiseForward(xp, wp, bp, yp, g, p);
    return absl::OkStatus();
  }
  if (g.path == Path::kDepthwiseStride1) {
    DepthwiseStride1Forward(xp, wp, bp, yp, g, p, workspace.data(), threads);
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
  constexpr char kBack[] = "Conv2dBackward";
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "x", x));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "w", w));
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, Conv2dOutputShape(x.shape(), w.shape(), p));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "dy", dy, y_shape));
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "dx", dx, x.shape()));
  if (dw.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "dw", dw, w.shape()));
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kBack, "db", db, Shape{w.dim(0)}));
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
    DepthwiseBackward(xp, wp, dyp, dxp, dwp, dbp, g, p, accumulate);
    return absl::OkStatus();
  }
  if (g.path == Path::kDepthwiseStride1) {
    DepthwiseStride1Backward(xp, wp, dyp, dxp, dwp, dbp, g, p, accumulate, workspace.data(),
                             threads);
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
