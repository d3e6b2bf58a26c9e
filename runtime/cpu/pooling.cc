#include "runtime/cpu/pooling.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/pooling_checks.h"

namespace strata::cpu {
namespace {

struct PoolGeometry {
  int64_t planes, h, w, oh, ow;
};

absl::StatusOr<PoolGeometry> Check(absl::string_view op, const Tensor& x_like, const Tensor& y_like,
                                   const Pool2dParams& p, absl::string_view x_name,
                                   absl::string_view y_name) {
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, internal::CheckPool2d(CheckF32Contiguous, op, x_like,
                                                                     y_like, p, x_name, y_name));
  return PoolGeometry{x_like.dim(0) * x_like.dim(1), x_like.dim(2), x_like.dim(3), y_shape[2],
                      y_shape[3]};
}

// The input rows [y0, y1) and columns [x0, x1) that output (oy, ox) pools, clipped to the input.
struct Window {
  int64_t y0, y1, x0, x1;
};
inline Window WindowAt(const PoolGeometry& g, const Pool2dParams& p, int64_t oy, int64_t ox) {
  return {std::max<int64_t>(oy * p.stride_h - p.pad_h, 0),
          std::min<int64_t>(oy * p.stride_h - p.pad_h + p.kernel_h, g.h),
          std::max<int64_t>(ox * p.stride_w - p.pad_w, 0),
          std::min<int64_t>(ox * p.stride_w - p.pad_w + p.kernel_w, g.w)};
}

// Index in the plane of the window's maximum: the first maximum wins and a NaN wins at once, as
// in PyTorch. Windows always hold at least one real element (padding <= kernel / 2).
inline int64_t WindowArgmax(const float* in, int64_t width, int64_t y0, int64_t y1, int64_t x0,
                            int64_t x1) {
  int64_t arg = y0 * width + x0;
  for (int64_t iy = y0; iy < y1; ++iy) {
    for (int64_t ix = x0; ix < x1; ++ix) {
      const float v = in[iy * width + ix];
      if (std::isnan(v)) return iy * width + ix;
      if (v > in[arg]) arg = iy * width + ix;
    }
  }
  return arg;
}

}  // namespace

absl::StatusOr<Shape> Pool2dOutputShape(const Shape& x, const Pool2dParams& p) {
  auto bad = [](absl::string_view field, int value, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("Pool2d: ", field, " = ", value, " must be ", rule));
  };
  if (x.rank() != 4) {
    return absl::InvalidArgumentError(absl::StrCat("Pool2d: x ", x.ToString(), " must have rank 4"));
  }
  if (p.kernel_h < 1) return bad("kernel_h", p.kernel_h, ">= 1");
  if (p.kernel_w < 1) return bad("kernel_w", p.kernel_w, ">= 1");
  if (p.stride_h < 1) return bad("stride_h", p.stride_h, ">= 1");
  if (p.stride_w < 1) return bad("stride_w", p.stride_w, ">= 1");
  if (p.pad_h < 0 || 2 * p.pad_h > p.kernel_h) return bad("pad_h", p.pad_h, "in [0, kernel_h / 2]");
  if (p.pad_w < 0 || 2 * p.pad_w > p.kernel_w) return bad("pad_w", p.pad_w, "in [0, kernel_w / 2]");
  const int64_t ph = x[2] + 2 * int64_t{p.pad_h}, pw = x[3] + 2 * int64_t{p.pad_w};
  if (p.kernel_h > ph || p.kernel_w > pw) {
    return absl::InvalidArgumentError(absl::StrCat("Pool2d: kernel ", p.kernel_h, "x", p.kernel_w,
                                                   " is larger than the padded input ", ph, "x",
                                                   pw, " of x ", x.ToString()));
  }
  return Shape{x[0], x[1], (ph - p.kernel_h) / p.stride_h + 1, (pw - p.kernel_w) / p.stride_w + 1};
}

absl::Status MaxPool2dForward(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  STRATA_ASSIGN_OR_RETURN(const PoolGeometry g, Check("MaxPool2dForward", x, y, p, "x", "y"));
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const float* in = xp + pl * g.h * g.w;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const auto [y0, y1, x0, x1] = WindowAt(g, p, oy, ox);
        yp[(pl * g.oh + oy) * g.ow + ox] = in[WindowArgmax(in, g.w, y0, y1, x0, x1)];
      }
    }
  }
  return absl::OkStatus();
}

absl::Status MaxPool2dBackward(const Tensor& x, const Tensor& dy, const Tensor& dx,
                               const Pool2dParams& p) {
  constexpr char kOp[] = "MaxPool2dBackward";
  STRATA_ASSIGN_OR_RETURN(const PoolGeometry g, Check(kOp, x, dy, p, "x", "dy"));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dx", dx, x.shape()));
  const float* xp = x.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const float* in = xp + pl * g.h * g.w;
    float* d_in = dxp + pl * g.h * g.w;
    std::fill(d_in, d_in + g.h * g.w, 0.0f);
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const auto [y0, y1, x0, x1] = WindowAt(g, p, oy, ox);
        d_in[WindowArgmax(in, g.w, y0, y1, x0, x1)] += dyp[(pl * g.oh + oy) * g.ow + ox];
      }
    }
  }
  return absl::OkStatus();
}

absl::Status AvgPool2dForward(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  STRATA_ASSIGN_OR_RETURN(const PoolGeometry g, Check("AvgPool2dForward", x, y, p, "x", "y"));
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const float inv = 1.0f / static_cast<float>(p.kernel_h * p.kernel_w);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const float* in = xp + pl * g.h * g.w;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const auto [y0, y1, x0, x1] = WindowAt(g, p, oy, ox);
        float s = 0.0f;
        for (int64_t iy = y0; iy < y1; ++iy)
          for (int64_t ix = x0; ix < x1; ++ix) s += in[iy * g.w + ix];
        yp[(pl * g.oh + oy) * g.ow + ox] = s * inv;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status AvgPool2dBackward(const Tensor& dy, const Tensor& dx, const Pool2dParams& p) {
  STRATA_ASSIGN_OR_RETURN(const PoolGeometry g, Check("AvgPool2dBackward", dx, dy, p, "dx", "dy"));
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
  const float inv = 1.0f / static_cast<float>(p.kernel_h * p.kernel_w);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    float* d_in = dxp + pl * g.h * g.w;
    std::fill(d_in, d_in + g.h * g.w, 0.0f);
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const auto [y0, y1, x0, x1] = WindowAt(g, p, oy, ox);
        const float d = dyp[(pl * g.oh + oy) * g.ow + ox] * inv;
        for (int64_t iy = y0; iy < y1; ++iy)
          for (int64_t ix = x0; ix < x1; ++ix) d_in[iy * g.w + ix] += d;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GlobalAvgPoolForward(const Tensor& x, const Tensor& y) {
  STRATA_RETURN_IF_ERROR(internal::CheckGlobalAvgPoolForward(CheckF32Contiguous, x, y));
  const int64_t planes = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
#pragma omp parallel for schedule(static) if (planes * hw > (1 << 14))
  for (int64_t pl = 0; pl < planes; ++pl) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < hw; ++k) s += xp[pl * hw + k];
    yp[pl] = s / static_cast<float>(hw);
  }
  return absl::OkStatus();
}

absl::Status GlobalAvgPoolBackward(const Tensor& dy, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(internal::CheckGlobalAvgPoolBackward(CheckF32Contiguous, dy, dx));
  const int64_t planes = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
  const float inv = hw > 0 ? 1.0f / static_cast<float>(hw) : 0.0f;
#pragma omp parallel for schedule(static) if (planes * hw > (1 << 14))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float d = dyp[pl] * inv;
#pragma omp simd
    for (int64_t k = 0; k < hw; ++k) dxp[pl * hw + k] = d;
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
