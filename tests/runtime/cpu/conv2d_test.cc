#include "runtime/cpu/conv2d.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::Vec;

struct Case {
  int64_t n, c, h, w, oc, kh, kw;
  Conv2dParams p;
};

// Plain double-precision convolution straight from the definition.
Vec ReferenceConv(const Vec& x, const Vec& w, const Vec& b, const Case& k, const Shape& y) {
  const int64_t cg = k.c / k.p.groups, ocg = k.oc / k.p.groups;
  Vec out(y.numel());
  for (int64_t n = 0; n < y[0]; ++n)
    for (int64_t o = 0; o < y[1]; ++o)
      for (int64_t oy = 0; oy < y[2]; ++oy)
        for (int64_t ox = 0; ox < y[3]; ++ox) {
          double s = b.empty() ? 0.0 : b[o];
          const int64_t grp = o / ocg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ki = 0; ki < k.kh; ++ki)
              for (int64_t kj = 0; kj < k.kw; ++kj) {
                const int64_t iy = oy * k.p.stride_h - k.p.pad_h + ki * k.p.dilation_h;
                const int64_t ix = ox * k.p.stride_w - k.p.pad_w + kj * k.p.dilation_w;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                s += x[((n * k.c + grp * cg + ci) * k.h + iy) * k.w + ix] *
                     w[((o * cg + ci) * k.kh + ki) * k.kw + kj];
              }
          out[((n * y[1] + o) * y[2] + oy) * y[3] + ox] = s;
        }
  return out;
}

std::vector<float> Workspace(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  return std::vector<float>(Conv2dWorkspaceBytes(x.shape(), w.shape(), p, NumThreads()) / sizeof(float) + 1);
}

void CheckAgainstReference(const Case& k, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "N" << k.n << " C" << k.c << " " << k.h << "x" << k.w
                                    << " OC" << k.oc << " k" << k.kh << "x" << k.kw << " groups "
                                    << k.p.groups << " stride " << k.p.stride_h << ","
                                    << k.p.stride_w);
  std::mt19937_64 rng(seed);
  const Tensor x = testing::RandomTensor(Shape{k.n, k.c, k.h, k.w}, rng);
  const Tensor w = testing::RandomTensor(Shape{k.oc, k.c / k.p.groups, k.kh, k.kw}, rng);
  const Tensor b = testing::RandomTensor(Shape{k.oc}, rng);
  const Shape ys = Conv2dOutputShape(x.shape(), w.shape(), k.p).value();
  const Tensor y = testing::EmptyF32(ys);
  std::vector<float> ws = Workspace(x, w, k.p);
  ASSERT_TRUE(Conv2dForward(x, w, b, y, k.p, absl::MakeSpan(ws)).ok());
  const Vec xv = testing::ToDouble(x), wv = testing::ToDouble(w), bv = testing::ToDouble(b);
  ExpectClose(y, ReferenceConv(xv, wv, bv, k, ys), 1e-5, 1e-5, "forward");

  const Tensor dy = testing::RandomTensor(ys, rng);
  const Vec dyv = testing::ToDouble(dy);
  const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(w.shape()),
               db = testing::EmptyF32(b.shape());
  ASSERT_TRUE(Conv2dBackward(x, w, dy, dx, dw, db, k.p, absl::MakeSpan(ws)).ok());
  const Vec gx = testing::NumericalGradient(
      [&](const Vec& v) { return ReferenceConv(v, wv, bv, k, ys); }, xv, dyv);
  const Vec gw = testing::NumericalGradient(
      [&](const Vec& v) { return ReferenceConv(xv, v, bv, k, ys); }, wv, dyv);
  const Vec gb = testing::NumericalGradient(
      [&](const Vec& v) { return ReferenceConv(xv, wv, v, k, ys); }, bv, dyv);
  ExpectClose(dx, gx, 1e-4, 1e-5, "dx vs finite differences");
  ExpectClose(dw, gw, 1e-4, 1e-5, "dw vs finite differences");
  ExpectClose(db, gb, 1e-4, 1e-5, "db vs finite differences");

  // Accumulate adds onto what is there; a skipped (undefined) output is left alone.
  ASSERT_TRUE(Conv2dBackward(x, w, dy, Tensor(), dw, db, k.p, absl::MakeSpan(ws),
                             GradMode::kAccumulate).ok());
  Vec gw2 = gw, gb2 = gb;
  for (double& v : gw2) v *= 2;
  for (double& v : gb2) v *= 2;
  ExpectClose(dw, gw2, 1e-4, 1e-5, "accumulated dw");
  ExpectClose(db, gb2, 1e-4, 1e-5, "accumulated db");

  // A frozen weight: without dw, x is not needed (dx stands for its shape); db alone from dy.
  const Tensor dx_alone = testing::EmptyF32(x.shape()), db_alone = testing::EmptyF32(b.shape());
  ASSERT_TRUE(Conv2dBackward(Tensor(), w, dy, dx_alone, Tensor(), db_alone, k.p,
                             absl::MakeSpan(ws)).ok());
  ExpectClose(dx_alone, gx, 1e-4, 1e-5, "dx without x");
  ExpectClose(db_alone, gb, 1e-4, 1e-5, "db without x");
  ASSERT_TRUE(Conv2dBackward(Tensor(), w, dy, Tensor(), Tensor(), db_alone, k.p,
                             absl::MakeSpan(ws), GradMode::kAccumulate).ok());
  ExpectClose(db_alone, gb2, 1e-4, 1e-5, "accumulated db without x or dx");
  testing::ExpectStatus(Conv2dBackward(Tensor(), w, dy, Tensor(), testing::EmptyF32(w.shape()),
                                       Tensor(), k.p, absl::MakeSpan(ws)),
                        absl::StatusCode::kInvalidArgument, {"dw needs x"});
}

TEST(Conv2dTest, MatchesDoubleReferenceAndFiniteDifferences) {
  const std::vector<Case> cases = {
      {1, 1, 5, 5, 1, 3, 3, {}},                                                  // batch 1
      {2, 3, 7, 5, 4, 3, 3, {.pad_h = 1, .pad_w = 1}},                             // regular
      {2, 2, 7, 11, 3, 3, 2, {.stride_h = 2, .stride_w = 3, .pad_h = 1}},          // strides
      {1, 2, 9, 7, 3, 3, 3, {.pad_h = 2, .pad_w = 1, .dilation_h = 2, .dilation_w = 3}},
      {3, 4, 5, 6, 6, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 2}},                // groups
      {2, 3, 7, 5, 3, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 3}},                // depthwise
      {2, 3, 9, 7, 6, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 3}},
      {1, 2, 11, 7, 4, 5, 3, {.stride_w = 2, .dilation_h = 2, .groups = 2}},       // dw dilated
      {2, 2, 9, 8, 4, 3, 3, {.pad_h = 2, .pad_w = 1, .dilation_h = 2, .groups = 2}},  // dw s1 x2
      {3, 5, 4, 3, 7, 1, 1, {}},                                                  // pointwise
      {2, 4, 5, 5, 6, 1, 1, {.groups = 2}},                                       // grouped 1x1
      {2, 3, 6, 6, 2, 1, 1, {.stride_h = 2, .stride_w = 2}},                      // strided 1x1
  };
  uint64_t seed = 1;
  for (const Case& k : cases) CheckAgainstReference(k, seed++);
}

// dx, dw, db of ReferenceConv for upstream gradient dy, straight from the definition (double);
// for shapes too large for finite differences.
void ReferenceConvBackward(const Vec& x, const Vec& w, const Vec& dy, const Case& k,
                           const Shape& y, Vec& dx, Vec& dw, Vec& db) {
  const int64_t cg = k.c / k.p.groups, ocg = k.oc / k.p.groups;
  dx.assign(x.size(), 0.0);
  dw.assign(w.size(), 0.0);
  db.assign(k.oc, 0.0);
  for (int64_t n = 0; n < y[0]; ++n)
    for (int64_t o = 0; o < y[1]; ++o)
      for (int64_t oy = 0; oy < y[2]; ++oy)
        for (int64_t ox = 0; ox < y[3]; ++ox) {
          const double d = dy[((n * y[1] + o) * y[2] + oy) * y[3] + ox];
          db[o] += d;
          const int64_t grp = o / ocg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ki = 0; ki < k.kh; ++ki)
              for (int64_t kj = 0; kj < k.kw; ++kj) {
                const int64_t iy = oy * k.p.stride_h - k.p.pad_h + ki * k.p.dilation_h;
                const int64_t ix = ox * k.p.stride_w - k.p.pad_w + kj * k.p.dilation_w;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                const int64_t xi = ((n * k.c + grp * cg + ci) * k.h + iy) * k.w + ix;
                const int64_t wi = ((o * cg + ci) * k.kh + ki) * k.kw + kj;
                dx[xi] += d * w[wi];
                dw[wi] += d * x[xi];
              }
        }
}

// 3x3 stride-1 convolutions with C a multiple of 16 and OC of 32 take the direct path (Note
// [direct 3x3 convolution] in conv2d.cc): rows longer than one micro-tile, several channel
// blocks, paddings 0..2, batch not a multiple of the thread count.
TEST(Conv2dTest, DirectPathMatchesDoubleReference) {
  const std::vector<Case> cases = {
      {2, 32, 5, 17, 64, 3, 3, {.pad_h = 1, .pad_w = 1}},
      {3, 32, 4, 4, 32, 3, 3, {}},
      {1, 64, 6, 15, 32, 3, 3, {.pad_h = 2, .pad_w = 1}},
      {3, 32, 3, 29, 96, 3, 3, {.pad_h = 0, .pad_w = 2}},
      // C a multiple of 16 but not 32: dx runs 16-channel tiles of two rows, here with an odd
      // row left over; forward runs 32-channel one-row tiles.
      {1, 48, 7, 9, 64, 3, 3, {.pad_h = 1, .pad_w = 1}},
      {2, 16, 5, 30, 32, 3, 3, {.pad_h = 0, .pad_w = 2}},
  };
  uint64_t seed = 40;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << "N" << k.n << " C" << k.c << " " << k.h << "x" << k.w
                                      << " OC" << k.oc << " pad " << k.p.pad_h << ","
                                      << k.p.pad_w);
    std::mt19937_64 rng(seed++);
    const Tensor x = testing::RandomTensor(Shape{k.n, k.c, k.h, k.w}, rng);
    const Tensor w = testing::RandomTensor(Shape{k.oc, k.c, k.kh, k.kw}, rng);
    const Tensor b = testing::RandomTensor(Shape{k.oc}, rng);
    const Shape ys = Conv2dOutputShape(x.shape(), w.shape(), k.p).value();
    const Tensor y = testing::EmptyF32(ys), dy = testing::RandomTensor(ys, rng);
    std::vector<float> ws = Workspace(x, w, k.p);
    ASSERT_TRUE(Conv2dForward(x, w, b, y, k.p, absl::MakeSpan(ws)).ok());
    const Vec xv = testing::ToDouble(x), wv = testing::ToDouble(w);
    ExpectClose(y, ReferenceConv(xv, wv, testing::ToDouble(b), k, ys), 1e-5, 1e-5, "forward");
    Vec gx, gw, gb;
    ReferenceConvBackward(xv, wv, testing::ToDouble(dy), k, ys, gx, gw, gb);
    const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(w.shape()),
                 db = testing::EmptyF32(b.shape());
    ASSERT_TRUE(Conv2dBackward(x, w, dy, dx, dw, db, k.p, absl::MakeSpan(ws)).ok());
    ExpectClose(dx, gx, 1e-5, 1e-5, "dx");
    ExpectClose(dw, gw, 1e-5, 1e-5, "dw");
    ExpectClose(db, gb, 1e-5, 1e-5, "db");
    // Accumulate adds onto what is there; dx alone, then dw alone.
    ASSERT_TRUE(Conv2dBackward(x, w, dy, Tensor(), dw, Tensor(), k.p, absl::MakeSpan(ws),
                               GradMode::kAccumulate).ok());
    for (double& v : gw) v *= 2;
    ExpectClose(dw, gw, 1e-5, 1e-5, "accumulated dw");
    ASSERT_TRUE(Conv2dBackward(x, w, dy, dx, Tensor(), Tensor(), k.p, absl::MakeSpan(ws)).ok());
    ExpectClose(dx, gx, 1e-5, 1e-5, "dx alone");
    const Tensor dx_alone = testing::EmptyF32(x.shape());
    ASSERT_TRUE(Conv2dBackward(Tensor(), w, dy, dx_alone, Tensor(), Tensor(), k.p,
                               absl::MakeSpan(ws)).ok());
    ExpectClose(dx_alone, gx, 1e-5, 1e-5, "dx without x");
  }
}

// Depthwise 3x3 convolutions with rows of at most 16 floats and strides 1 or 2 keep rows in
// registers (Note [depthwise rows in registers] in conv2d.cc): rows of exactly 16, more rows than
// one register block, paddings 0..2, dilation, a channel multiplier; wider rows, stride 3 and
// uneven strides take the phase-plane path.
TEST(Conv2dTest, DepthwisePathsMatchDoubleReference) {
  const std::vector<Case> cases = {
      {2, 3, 14, 14, 3, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 3}},
      {2, 3, 14, 14, 3, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 3}},
      {1, 2, 17, 16, 2, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 2}},
      {1, 2, 19, 16, 4, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 2, .pad_w = 2, .groups = 2}},
      {1, 2, 9, 15, 2, 3, 3, {.stride_h = 2, .stride_w = 2, .groups = 2}},
      {1, 2, 10, 14, 2, 3, 3, {.pad_h = 2, .pad_w = 2, .groups = 2}},  // ow 16
      {2, 2, 11, 13, 6, 3, 3, {.pad_h = 1, .pad_w = 2, .dilation_h = 2, .dilation_w = 2, .groups = 2}},
      {1, 2, 12, 9, 2, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .dilation_w = 3, .groups = 2}},
      {1, 2, 6, 20, 2, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 2}},  // rows of 20: phase planes
      {1, 2, 9, 9, 2, 3, 3, {.stride_h = 3, .stride_w = 3, .pad_h = 1, .pad_w = 1, .groups = 2}},
      {1, 2, 9, 9, 2, 3, 3, {.stride_h = 1, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 2}},
  };
  uint64_t seed = 60;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << "N" << k.n << " C" << k.c << " " << k.h << "x" << k.w
                                      << " OC" << k.oc << " stride " << k.p.stride_h << ","
                                      << k.p.stride_w << " pad " << k.p.pad_h << "," << k.p.pad_w
                                      << " dilation " << k.p.dilation_h << ","
                                      << k.p.dilation_w);
    std::mt19937_64 rng(seed++);
    const Tensor x = testing::RandomTensor(Shape{k.n, k.c, k.h, k.w}, rng);
    const Tensor w = testing::RandomTensor(Shape{k.oc, 1, k.kh, k.kw}, rng);
    const Tensor b = testing::RandomTensor(Shape{k.oc}, rng);
    const Shape ys = Conv2dOutputShape(x.shape(), w.shape(), k.p).value();
    const Tensor y = testing::EmptyF32(ys), dy = testing::RandomTensor(ys, rng);
    std::vector<float> ws = Workspace(x, w, k.p);
    ASSERT_TRUE(Conv2dForward(x, w, b, y, k.p, absl::MakeSpan(ws)).ok());
    const Vec xv = testing::ToDouble(x), wv = testing::ToDouble(w);
    ExpectClose(y, ReferenceConv(xv, wv, testing::ToDouble(b), k, ys), 1e-5, 1e-5, "forward");
    Vec gx, gw, gb;
    ReferenceConvBackward(xv, wv, testing::ToDouble(dy), k, ys, gx, gw, gb);
    const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(w.shape()),
                 db = testing::EmptyF32(b.shape());
    ASSERT_TRUE(Conv2dBackward(x, w, dy, dx, dw, db, k.p, absl::MakeSpan(ws)).ok());
    ExpectClose(dx, gx, 1e-5, 1e-5, "dx");
    ExpectClose(dw, gw, 1e-5, 1e-5, "dw");
    ExpectClose(db, gb, 1e-5, 1e-5, "db");
    // Accumulate adds onto what is there; db alone, then dx alone.
    ASSERT_TRUE(Conv2dBackward(x, w, dy, Tensor(), Tensor(), db, k.p, absl::MakeSpan(ws),
                               GradMode::kAccumulate).ok());
    for (double& v : gb) v *= 2;
    ExpectClose(db, gb, 1e-5, 1e-5, "accumulated db");
    ASSERT_TRUE(Conv2dBackward(x, w, dy, dx, Tensor(), Tensor(), k.p, absl::MakeSpan(ws)).ok());
    ExpectClose(dx, gx, 1e-5, 1e-5, "dx alone");
    const Tensor dx_alone = testing::EmptyF32(x.shape());
    ASSERT_TRUE(Conv2dBackward(Tensor(), w, dy, dx_alone, Tensor(), Tensor(), k.p,
                               absl::MakeSpan(ws)).ok());
    ExpectClose(dx_alone, gx, 1e-5, 1e-5, "dx without x");
  }
}

TEST(Conv2dTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("conv2d");
  struct Named {
    std::string name;
    Conv2dParams p;
  };
  const std::vector<Named> cases = {
      {"regular", {.pad_h = 1, .pad_w = 1}},
      {"strided", {.stride_h = 2, .stride_w = 3, .pad_h = 1}},
      {"dilated", {.stride_w = 2, .pad_h = 2, .pad_w = 1, .dilation_h = 2, .dilation_w = 3}},
      {"grouped", {.pad_h = 1, .pad_w = 1, .groups = 2}},
      {"depthwise", {.pad_h = 1, .pad_w = 1, .groups = 5}},
      {"depthwise_s2_m2", {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 3}},
      {"pointwise", {}},
  };
  for (const Named& c : cases) {
    SCOPED_TRACE(c.name);
    auto get = [&](const char* k) { return f.Get(c.name + "." + k).value(); };
    const Tensor x = get("x"), w = get("w"), b = get("b");
    const Tensor y = testing::EmptyF32(get("y").shape());
    std::vector<float> ws = Workspace(x, w, c.p);
    ASSERT_TRUE(Conv2dForward(x, w, b, y, c.p, absl::MakeSpan(ws)).ok());
    ExpectClose(y, testing::ToDouble(get("y")), 1e-5, 1e-5, "y");
    const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(w.shape()),
                 db = testing::EmptyF32(b.shape());
    ASSERT_TRUE(Conv2dBackward(x, w, get("dy"), dx, dw, db, c.p, absl::MakeSpan(ws)).ok());
    ExpectClose(dx, testing::ToDouble(get("dx")), 1e-5, 1e-5, "dx");
    ExpectClose(dw, testing::ToDouble(get("dw")), 1e-5, 1e-5, "dw");
    ExpectClose(db, testing::ToDouble(get("db")), 1e-5, 1e-5, "db");
  }
}

TEST(Conv2dTest, AnyWorkspaceOfAtLeastOneThreadGivesTheSameResult) {
  std::mt19937_64 rng(9);
  const Conv2dParams p{.pad_h = 1, .pad_w = 1};
  const Tensor x = testing::RandomTensor(Shape{5, 3, 6, 6}, rng);
  const Tensor w = testing::RandomTensor(Shape{4, 3, 3, 3}, rng);
  const Tensor dy = testing::RandomTensor(Shape{5, 4, 6, 6}, rng);
  std::vector<float> full = Workspace(x, w, p);
  const Tensor dw_full = testing::EmptyF32(w.shape()), dw_one = testing::EmptyF32(w.shape());
  ASSERT_TRUE(Conv2dBackward(x, w, dy, Tensor(), dw_full, Tensor(), p, absl::MakeSpan(full)).ok());
  // Exactly one thread's worth (27*36*2 + 4*27 + 4 floats).
  std::vector<float> one(2 * 27 * 36 + 4 * 27 + 4);
  ASSERT_TRUE(Conv2dBackward(x, w, dy, Tensor(), dw_one, Tensor(), p, absl::MakeSpan(one)).ok());
  ExpectClose(dw_one, testing::ToDouble(dw_full), 1e-5, 1e-5, "dw with one thread");
  std::vector<float> tiny(10);
  ExpectStatus(Conv2dBackward(x, w, dy, Tensor(), dw_one, Tensor(), p, absl::MakeSpan(tiny)),
               absl::StatusCode::kInvalidArgument, {"workspace of 40 bytes", "Conv2dWorkspaceBytes"});
}

TEST(Conv2dTest, BadInputIsRefusedWithTheField) {
  std::mt19937_64 rng(2);
  const Tensor x = testing::RandomTensor(Shape{1, 4, 5, 5}, rng);
  const Tensor w = testing::RandomTensor(Shape{6, 2, 3, 3}, rng);
  ExpectStatus(Conv2dOutputShape(x.shape(), w.shape(), {.groups = 3}).status(),
               absl::StatusCode::kInvalidArgument, {"groups = 3", "4", "6"});
  ExpectStatus(Conv2dOutputShape(x.shape(), w.shape(), {}).status(),
               absl::StatusCode::kInvalidArgument, {"w [6, 2, 3, 3]", "needs 4"});
  ExpectStatus(Conv2dOutputShape(x.shape(), Shape{6, 4, 7, 3}, {}).status(),
               absl::StatusCode::kInvalidArgument, {"kernel 7x3", "padded input 5x5"});
  ExpectStatus(Conv2dOutputShape(x.shape(), Shape{6, 4, 3, 3}, {.stride_w = 0}).status(),
               absl::StatusCode::kInvalidArgument, {"stride_w = 0"});
  ExpectStatus(Conv2dOutputShape(x.shape(), Shape{6, 4, 3, 3}, {.pad_h = -1}).status(),
               absl::StatusCode::kInvalidArgument, {"pad_h = -1"});
  const Tensor w4 = testing::RandomTensor(Shape{6, 4, 3, 3}, rng);
  std::vector<float> ws = Workspace(x, w4, {});
  const Tensor y = testing::EmptyF32(Shape{1, 6, 3, 3});
  ExpectStatus(Conv2dForward(testing::MakeStrided(x), w4, Tensor(), y, {}, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"Conv2d", "x", "not contiguous"});
  ExpectStatus(Conv2dForward(x, w4, Tensor(), testing::EmptyF32(Shape{1, 6, 5, 5}), {},
                             absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"y", "[1, 6, 3, 3]"});
  ExpectStatus(Conv2dForward(x, w4, testing::EmptyF32(Shape{5}), y, {}, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"b", "[6]"});
}

}  // namespace
}  // namespace strata::cpu
