#include "runtime/cpu/linear.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

Vec Reference(const Vec& x, const Vec& w, const Vec& b, int64_t rows, int64_t in, int64_t out) {
  Vec y(rows * out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0 : b[o];
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

TEST(LinearTest, ForwardBackwardAgainstReferenceAndFiniteDifferences) {
  std::mt19937_64 rng(21);
  for (auto [rows, in, out] : {std::tuple{1, 1, 1}, {1, 5, 3}, {7, 13, 11}, {3, 8, 130}}) {
    SCOPED_TRACE(::testing::Message() << rows << "x" << in << "->" << out);
    const Tensor x = testing::RandomTensor(Shape{rows, in}, rng);
    const Tensor w = testing::RandomTensor(Shape{out, in}, rng);
    const Tensor b = testing::RandomTensor(Shape{out}, rng);
    const Vec xv = ToDouble(x), wv = ToDouble(w), bv = ToDouble(b);
    const Tensor y = testing::EmptyF32(Shape{rows, out});
    ASSERT_TRUE(LinearForward(x, w, b, y).ok());
    ExpectClose(y, Reference(xv, wv, bv, rows, in, out), 1e-5, 1e-5, "forward");
    const Tensor y_nobias = testing::EmptyF32(Shape{rows, out});
    ASSERT_TRUE(LinearForward(x, w, Tensor(), y_nobias).ok());
    ExpectClose(y_nobias, Reference(xv, wv, {}, rows, in, out), 1e-5, 1e-5, "forward, no bias");
    // With a residual r: y = r + x w^T (+ b).
    const Tensor r = testing::RandomTensor(Shape{rows, out}, rng);
    const Vec rv = ToDouble(r);
    for (const bool with_bias : {true, false}) {
      Vec want = Reference(xv, wv, with_bias ? bv : Vec{}, rows, in, out);
      for (size_t i = 0; i < want.size(); ++i) want[i] += rv[i];
      const Tensor y_res = testing::EmptyF32(Shape{rows, out});
      ASSERT_TRUE(LinearForward(x, w, with_bias ? b : Tensor(), y_res, r).ok());
      ExpectClose(y_res, want, 1e-5, 1e-5, with_bias ? "forward, residual" : "forward, residual, no bias");
    }

    const Tensor dy = testing::RandomTensor(Shape{rows, out}, rng);
    const Vec dyv = ToDouble(dy);
    const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(w.shape()),
                 db = testing::EmptyF32(b.shape());
    ASSERT_TRUE(LinearBackward(x, w, dy, dx, dw, db).ok());
    const Vec gx = testing::NumericalGradient([&](const Vec& v) { return Reference(v, wv, bv, rows, in, out); }, xv, dyv);
    const Vec gw = testing::NumericalGradient([&](const Vec& v) { return Reference(xv, v, bv, rows, in, out); }, wv, dyv);
    const Vec gb = testing::NumericalGradient([&](const Vec& v) { return Reference(xv, wv, v, rows, in, out); }, bv, dyv);
    ExpectClose(dx, gx, 1e-4, 1e-5, "dx");
    ExpectClose(dw, gw, 1e-4, 1e-5, "dw");
    ExpectClose(db, gb, 1e-4, 1e-5, "db");
    ASSERT_TRUE(LinearBackward(x, w, dy, Tensor(), dw, db, GradMode::kAccumulate).ok());
    Vec gw2 = gw, gb2 = gb;
    for (double& v : gw2) v *= 2;
    for (double& v : gb2) v *= 2;
    ExpectClose(dw, gw2, 1e-4, 1e-5, "accumulated dw");
    ExpectClose(db, gb2, 1e-4, 1e-5, "accumulated db");
    // Without dw, x is not needed (a frozen weight's layer): the same dx and db.
    const Tensor dx_alone = testing::EmptyF32(x.shape()), db_alone = testing::EmptyF32(b.shape());
    ASSERT_TRUE(LinearBackward(Tensor(), w, dy, dx_alone, Tensor(), db_alone).ok());
    ExpectClose(dx_alone, gx, 1e-4, 1e-5, "dx without x");
    ExpectClose(db_alone, gb, 1e-4, 1e-5, "db without x");
    // dx may be x's own bytes (an in-place gradient): dw reads x before dx overwrites it.
    const Tensor x_copy = testing::EmptyF32(x.shape());
    ASSERT_TRUE(x_copy.CopyFrom(x).ok());
    const Tensor dw_in_place = testing::EmptyF32(w.shape());
    ASSERT_TRUE(LinearBackward(x_copy, w, dy, x_copy, dw_in_place, Tensor()).ok());
    ExpectClose(x_copy, gx, 1e-4, 1e-5, "dx over x");
    ExpectClose(dw_in_place, gw, 1e-4, 1e-5, "dw with dx over x");
  }
}

TEST(LinearTest, BackwardWithoutXChecksItsShapesFromDy) {
  const Tensor w = testing::EmptyF32(Shape{4, 3}), dy = testing::EmptyF32(Shape{2, 5, 4});
  ExpectStatus(LinearBackward(Tensor(), w, dy, Tensor(), testing::EmptyF32(Shape{4, 3}), Tensor()),
               absl::StatusCode::kInvalidArgument, {"dw needs x"});
  // dx must be dy's shape with w's input width last: (2, 5, 3).
  ExpectStatus(LinearBackward(Tensor(), w, dy, testing::EmptyF32(Shape{2, 5, 4}), Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument, {"dx"});
  EXPECT_TRUE(LinearBackward(Tensor(), w, dy, testing::EmptyF32(Shape{2, 5, 3}), Tensor(), Tensor()).ok());
}

TEST(LinearTest, MatchesPyTorchWithLeadingDims) {
  const SafetensorsFile f = testing::LoadFixture("linear");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor y = testing::EmptyF32(get("y").shape());
  ASSERT_TRUE(LinearForward(get("x"), get("w"), get("b"), y).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
  const Tensor dx = testing::EmptyF32(get("x").shape()), dw = testing::EmptyF32(get("w").shape()),
               db = testing::EmptyF32(get("b").shape());
  ASSERT_TRUE(LinearBackward(get("x"), get("w"), get("dy"), dx, dw, db).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-6, "dx");
  ExpectClose(dw, ToDouble(get("dw")), 1e-5, 1e-6, "dw");
  ExpectClose(db, ToDouble(get("db")), 1e-5, 1e-6, "db");
}

TEST(LinearTest, BadInput) {
  std::mt19937_64 rng(2);
  const Tensor x = testing::RandomTensor(Shape{4, 5}, rng);
  const Tensor w = testing::RandomTensor(Shape{3, 6}, rng);
  ExpectStatus(LinearForward(x, w, Tensor(), testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"LinearForward", "x", "last dimension of 6"});
  const Tensor w5 = testing::RandomTensor(Shape{3, 5}, rng);
  ExpectStatus(LinearForward(x, w5, testing::EmptyF32(Shape{4}), testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"b", "[3]"});
  ExpectStatus(LinearForward(x, w5, Tensor(), testing::EmptyF32(Shape{5, 3})),
               absl::StatusCode::kInvalidArgument, {"leading dimensions"});
  ExpectStatus(LinearForward(testing::MakeStrided(x), w5, Tensor(), testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"not contiguous"});
  const Tensor y = testing::EmptyF32(Shape{4, 3});
  ExpectStatus(LinearForward(x, w5, Tensor(), y, testing::EmptyF32(Shape{4, 4})),
               absl::StatusCode::kInvalidArgument, {"residual", "[4, 3]"});
  ExpectStatus(LinearForward(x, w5, Tensor(), y, y), absl::StatusCode::kInvalidArgument,
               {"residual is y itself"});
}

}  // namespace
}  // namespace strata::cpu
