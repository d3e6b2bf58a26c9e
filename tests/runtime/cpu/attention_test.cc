#include "runtime/cpu/attention.h"

#include <cmath>
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
using testing::ToDouble;
using testing::Vec;

// Unfused causal attention in double over contiguous (B, H, T, D) q, k, v.
Vec Reference(const Vec& q, const Vec& k, const Vec& v, int64_t bh, int64_t t, int64_t d,
              double scale) {
  Vec out(bh * t * d, 0.0);
  for (int64_t x = 0; x < bh; ++x)
    for (int64_t i = 0; i < t; ++i) {
      std::vector<double> s(i + 1);
      double m = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) dot += q[(x * t + i) * d + e] * k[(x * t + j) * d + e];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      for (int64_t j = 0; j <= i; ++j) sum += (s[j] = std::exp(s[j] - m));
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t e = 0; e < d; ++e) out[(x * t + i) * d + e] += s[j] / sum * v[(x * t + j) * d + e];
    }
  return out;
}

std::vector<float> Workspace(const Tensor& q) {
  return std::vector<float>(
      AttentionWorkspaceBytes(q.dim(0), q.dim(1), q.dim(2), q.dim(3), NumThreads()) / sizeof(float));
}

TEST(AttentionTest, ForwardBackwardAgainstReferenceAndFiniteDifferences) {
  std::mt19937_64 rng(23);
  for (auto [b, h, t, d] : {std::tuple{1, 1, 1, 1}, {2, 2, 5, 3}, {1, 3, 17, 8}, {1, 1, 67, 3}}) {
    SCOPED_TRACE(::testing::Message() << "B" << b << " H" << h << " T" << t << " D" << d);
    const Shape s{b, h, t, d};
    const Tensor q = testing::RandomTensor(s, rng), k = testing::RandomTensor(s, rng),
                 v = testing::RandomTensor(s, rng);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const Vec qv = ToDouble(q), kv = ToDouble(k), vv = ToDouble(v);
    const Tensor out = testing::EmptyF32(s), lse = testing::EmptyF32(Shape{b, h, t});
    std::vector<float> ws = Workspace(q);
    ASSERT_TRUE(CausalAttentionForward(q, k, v, out, lse, static_cast<float>(scale), absl::MakeSpan(ws)).ok());
    ExpectClose(out, Reference(qv, kv, vv, b * h, t, d, scale), 1e-5, 1e-6, "forward");
    const Tensor dout = testing::RandomTensor(s, rng);
    const Vec dov = ToDouble(dout);
    const Tensor dq = testing::EmptyF32(s), dk = testing::EmptyF32(s), dv = testing::EmptyF32(s);
    ASSERT_TRUE(CausalAttentionBackward(q, k, v, lse, dout, dq, dk, dv, static_cast<float>(scale),
                                        absl::MakeSpan(ws)).ok());
    ExpectClose(dq, testing::NumericalGradient([&](const Vec& x) { return Reference(x, kv, vv, b * h, t, d, scale); }, qv, dov),
                1e-4, 1e-5, "dq");
    ExpectClose(dk, testing::NumericalGradient([&](const Vec& x) { return Reference(qv, x, vv, b * h, t, d, scale); }, kv, dov),
                1e-4, 1e-5, "dk");
    ExpectClose(dv, testing::NumericalGradient([&](const Vec& x) { return Reference(qv, kv, x, b * h, t, d, scale); }, vv, dov),
                1e-4, 1e-5, "dv");
  }
}

// Views (B, H, T, D) into a packed (B, T, 3, H, D) buffer, as the GPT block uses them.
Tensor PackedView(const Tensor& qkv, int64_t h, int which) {
  const int64_t b = qkv.dim(0), t = qkv.dim(1), d = qkv.dim(2) / 3 / h;
  const int order[] = {0, 2, 1, 3};
  return qkv.Reshape({b, t, 3, h, d}).value().Select(2, which).value().Permute(order).value();
}

TEST(AttentionTest, MatchesPyTorchOnPackedQkvViews) {
  const SafetensorsFile f = testing::LoadFixture("attention");
  const int order[] = {0, 2, 1, 3};
  for (const std::string name : {"small", "blocks"}) {
    SCOPED_TRACE(name);
    const int64_t h = 2;
    const Tensor qkv = f.Get(name + ".qkv").value();
    const int64_t b = qkv.dim(0), t = qkv.dim(1), c = qkv.dim(2) / 3, d = c / h;
    const Tensor q = PackedView(qkv, h, 0), k = PackedView(qkv, h, 1), v = PackedView(qkv, h, 2);
    ASSERT_FALSE(q.is_contiguous());
    const Tensor y = testing::EmptyF32(Shape{b, t, c});  // written through a (B, H, T, D) view
    const Tensor out = y.Reshape({b, t, h, d}).value().Permute(order).value();
    const Tensor lse = testing::EmptyF32(Shape{b, h, t});
    std::vector<float> ws = Workspace(q);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    ASSERT_TRUE(CausalAttentionForward(q, k, v, out, lse, scale, absl::MakeSpan(ws)).ok());
    ExpectClose(y, ToDouble(f.Get(name + ".y").value()), 1e-5, 1e-6, "y");
    const Tensor dy = f.Get(name + ".dy").value();
    const Tensor dout = dy.Reshape({b, t, h, d}).value().Permute(order).value();
    const Tensor dqkv = testing::EmptyF32(qkv.shape());
    ASSERT_TRUE(CausalAttentionBackward(q, k, v, lse, dout, PackedView(dqkv, h, 0),
                                        PackedView(dqkv, h, 1), PackedView(dqkv, h, 2), scale,
                                        absl::MakeSpan(ws)).ok());
    ExpectClose(dqkv, ToDouble(f.Get(name + ".dqkv").value()), 1e-5, 1e-6, "dqkv");
  }
}

// Gradients of sum(out * dout) for Reference, in closed form: dv_j = sum_i p_ij dout_i,
// ds_ij = p_ij (dout_i . v_j - dout_i . out_i), dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i.
struct Grads {
  Vec dq, dk, dv;
};
Grads ReferenceBackward(const Vec& q, const Vec& k, const Vec& v, const Vec& dout, int64_t bh,
                        int64_t t, int64_t d, double scale) {
  Grads g{Vec(q.size(), 0.0), Vec(q.size(), 0.0), Vec(q.size(), 0.0)};
  auto dot = [&](const Vec& a, int64_t i, const Vec& b, int64_t j) {
    double s = 0;
    for (int64_t e = 0; e < d; ++e) s += a[i * d + e] * b[j * d + e];
    return s;
  };
  for (int64_t x = 0; x < bh; ++x)
    for (int64_t i = 0; i < t; ++i) {
      const int64_t row = x * t + i;
      std::vector<double> p(i + 1), dp(i + 1);
      double m = -INFINITY, sum = 0, di = 0;
      for (int64_t j = 0; j <= i; ++j) m = std::max(m, p[j] = scale * dot(q, row, k, x * t + j));
      for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - m));
      for (int64_t j = 0; j <= i; ++j) {
        p[j] /= sum;
        dp[j] = dot(dout, row, v, x * t + j);
        di += p[j] * dp[j];
      }
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t col = x * t + j;
        const double ds = p[j] * (dp[j] - di) * scale;
        for (int64_t e = 0; e < d; ++e) {
          g.dv[col * d + e] += p[j] * dout[row * d + e];
          g.dq[row * d + e] += ds * k[col * d + e];
          g.dk[col * d + e] += ds * q[row * d + e];
        }
      }
    }
  return g;
}

// (B, Hkv, T, D) -> (B, Hkv * g, T, D), each key/value head repeated for its g query heads.
Vec RepeatHeads(const Vec& x, int64_t b, int64_t hkv, int64_t g, int64_t td) {
  Vec out;
  for (int64_t i = 0; i < b * hkv; ++i)
    for (int64_t r = 0; r < g; ++r) out.insert(out.end(), x.begin() + i * td, x.begin() + (i + 1) * td);
  return out;
}

// The inverse: the sum over each group of g repeated heads.
Vec SumGroups(const Vec& x, int64_t b, int64_t hkv, int64_t g, int64_t td) {
  Vec out(b * hkv * td, 0.0);
  for (int64_t i = 0; i < b * hkv; ++i)
    for (int64_t r = 0; r < g; ++r)
      for (int64_t e = 0; e < td; ++e) out[i * td + e] += x[(i * g + r) * td + e];
  return out;
}

// Grouped-query attention equals multi-head attention over repeated key/value heads, whose
// key/value gradients sum over each group (the analytic double backward above; finite
// differences on the small case, where they are cheap).
TEST(AttentionTest, GroupedQueryHeadsAgainstRepeatedKeyValueHeads) {
  std::mt19937_64 rng(31);
  // T = 70 crosses a query block; the second case puts all query heads on one key/value head.
  for (auto [b, hkv, g, t, d] : {std::tuple{2, 2, 3, 70, 16}, {1, 1, 4, 9, 5}, {3, 2, 2, 20, 8}}) {
    SCOPED_TRACE(::testing::Message() << "B" << b << " Hkv" << hkv << " G" << g << " T" << t);
    const int64_t h = hkv * g, td = t * d;
    const Tensor q = testing::RandomTensor(Shape{b, h, t, d}, rng);
    const Tensor k = testing::RandomTensor(Shape{b, hkv, t, d}, rng),
                 v = testing::RandomTensor(Shape{b, hkv, t, d}, rng);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const Vec qv = ToDouble(q), kv = ToDouble(k), vv = ToDouble(v);
    auto ref = [&](const Vec& qx, const Vec& kx, const Vec& vx) {
      return Reference(qx, RepeatHeads(kx, b, hkv, g, td), RepeatHeads(vx, b, hkv, g, td), b * h,
                       t, d, scale);
    };
    const Tensor out = testing::EmptyF32(q.shape()), lse = testing::EmptyF32(Shape{b, h, t});
    std::vector<float> ws = Workspace(q);
    ASSERT_TRUE(CausalAttentionForward(q, k, v, out, lse, static_cast<float>(scale), absl::MakeSpan(ws)).ok());
    ExpectClose(out, ref(qv, kv, vv), 1e-5, 1e-6, "forward");
    const Tensor dout = testing::RandomTensor(q.shape(), rng);
    const Vec dov = ToDouble(dout);
    const Tensor dq = testing::EmptyF32(q.shape()), dk = testing::EmptyF32(k.shape()),
                 dv = testing::EmptyF32(k.shape());
    ASSERT_TRUE(CausalAttentionBackward(q, k, v, lse, dout, dq, dk, dv, static_cast<float>(scale),
                                        absl::MakeSpan(ws)).ok());
    const Grads want = ReferenceBackward(qv, RepeatHeads(kv, b, hkv, g, td),
                                         RepeatHeads(vv, b, hkv, g, td), dov, b * h, t, d, scale);
    ExpectClose(dq, want.dq, 1e-4, 1e-5, "dq");
    ExpectClose(dk, SumGroups(want.dk, b, hkv, g, td), 1e-4, 1e-5, "dk");
    ExpectClose(dv, SumGroups(want.dv, b, hkv, g, td), 1e-4, 1e-5, "dv");
    if (t > 10) continue;
    ExpectClose(dk, testing::NumericalGradient([&](const Vec& x) { return ref(qv, x, vv); }, kv, dov),
                1e-4, 1e-5, "dk by finite differences");
    ExpectClose(dv, testing::NumericalGradient([&](const Vec& x) { return ref(qv, kv, x); }, vv, dov),
                1e-4, 1e-5, "dv by finite differences");
  }
}

// Sequence lengths and head sizes around the 16-lane vectors and the kernels' tiles (8 rows, 32
// columns, blocks of 64 queries), on q, k, v, out and the gradients as views into packed buffers.
TEST(AttentionTest, TileRemaindersOnPackedViews) {
  std::mt19937_64 rng(5);
  const int order[] = {0, 2, 1, 3};
  for (auto [b, h, t, d] : {std::tuple{1, 2, 1, 16}, {2, 1, 7, 24}, {1, 2, 17, 64}, {1, 1, 63, 80},
                            {1, 1, 65, 16}, {2, 2, 130, 64}, {1, 1, 130, 24}, {1, 1, 97, 5}}) {
    SCOPED_TRACE(::testing::Message() << "B" << b << " H" << h << " T" << t << " D" << d);
    const Tensor qkv = testing::RandomTensor(Shape{b, t, 3 * h * d}, rng, -2.0f, 2.0f);
    const Tensor q = PackedView(qkv, h, 0), k = PackedView(qkv, h, 1), v = PackedView(qkv, h, 2);
    const Tensor y = testing::EmptyF32(Shape{b, t, h * d});
    const Tensor out = y.Reshape({b, t, h, d}).value().Permute(order).value();
    const Tensor lse = testing::EmptyF32(Shape{b, h, t});
    std::vector<float> ws = Workspace(q);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    ASSERT_TRUE(CausalAttentionForward(q, k, v, out, lse, static_cast<float>(scale), absl::MakeSpan(ws)).ok());
    const Vec qv = ToDouble(q), kv = ToDouble(k), vv = ToDouble(v);
    ExpectClose(out, Reference(qv, kv, vv, b * h, t, d, scale), 1e-5, 1e-6, "forward");
    const Tensor dy = testing::RandomTensor(y.shape(), rng);
    const Tensor dout = dy.Reshape({b, t, h, d}).value().Permute(order).value();
    const Tensor dqkv = testing::EmptyF32(qkv.shape());
    ASSERT_TRUE(CausalAttentionBackward(q, k, v, lse, dout, PackedView(dqkv, h, 0),
                                        PackedView(dqkv, h, 1), PackedView(dqkv, h, 2),
                                        static_cast<float>(scale), absl::MakeSpan(ws)).ok());
    const Grads g = ReferenceBackward(qv, kv, vv, ToDouble(dout), b * h, t, d, scale);
    ExpectClose(PackedView(dqkv, h, 0), g.dq, 1e-4, 1e-5, "dq");
    ExpectClose(PackedView(dqkv, h, 1), g.dk, 1e-4, 1e-5, "dk");
    ExpectClose(PackedView(dqkv, h, 2), g.dv, 1e-4, 1e-5, "dv");
  }
}

TEST(AttentionTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor q = testing::RandomTensor(Shape{1, 2, 5, 4}, rng);
  const Tensor lse = testing::EmptyF32(Shape{1, 2, 5});
  std::vector<float> ws = Workspace(q);
  ExpectStatus(CausalAttentionForward(q, testing::RandomTensor(Shape{1, 2, 6, 4}, rng), q, q, lse, 0.5f, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"k", "[1, 2, 6, 4]", "[1, 2, 5, 4]"});
  const Tensor three_heads = testing::RandomTensor(Shape{1, 3, 5, 4}, rng);
  ExpectStatus(CausalAttentionForward(q, three_heads, three_heads, q, lse, 0.5f, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"k", "[1, 3, 5, 4]", "multiple of the key/value heads"});
  const Tensor one_head = testing::RandomTensor(Shape{1, 1, 5, 4}, rng);
  ExpectStatus(CausalAttentionBackward(q, one_head, one_head, lse, q, q, q, one_head, 0.5f, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"dk", "[1, 2, 5, 4]", "[1, 1, 5, 4]"});
  const Tensor column_major = testing::RandomTensor(Shape{1, 2, 4, 5}, rng).Transpose(2, 3).value();
  ExpectStatus(CausalAttentionForward(q, q, q, column_major, lse, 0.5f, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"out", "stride 1"});
  ExpectStatus(CausalAttentionForward(q, q, q, q, testing::EmptyF32(Shape{1, 2, 4}), 0.5f, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"lse", "[1, 2, 5]"});
  std::vector<float> tiny(3);
  ExpectStatus(CausalAttentionForward(q, q, q, testing::EmptyF32(q.shape()), lse, 0.5f, absl::MakeSpan(tiny)),
               absl::StatusCode::kInvalidArgument, {"workspace of 12 bytes", "AttentionWorkspaceBytes"});
  ExpectStatus(CausalAttentionForward(q, q, q, testing::EmptyF32(q.shape()), lse, NAN, absl::MakeSpan(ws)),
               absl::StatusCode::kInvalidArgument, {"scale"});
}

}  // namespace
}  // namespace strata::cpu
