// AdamW and SGD against torch.optim trajectories (fixtures) and a double-precision reference;
// gradient clipping against torch.nn.utils.clip_grad_norm_.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/sgd.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::optim {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::LoadFixture;
using testing::ToDouble;
using testing::Vec;

std::vector<float> Row(const Tensor& t, int64_t row) {
  const int64_t n = t.dim(-1);
  return std::vector<float>(t.data<float>() + row * n, t.data<float>() + (row + 1) * n);
}

Vec ToVec(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

struct AdamWCase {
  std::string name;
  AdamWHyper h;
};

TEST(AdamWTest, MatchesTorchOptimAdamW) {
  const SafetensorsFile f = LoadFixture("optimizers", "optim");
  const std::vector<AdamWCase> cases = {
      {"adamw_default", {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2}},
      {"adamw_gpt", {.lr = 6e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1}},
      {"adamw_nodecay", {.lr = 3e-2, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.0}},
  };
  for (const AdamWCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Tensor grads = f.Get(c.name + ".grads").value();
    const Tensor params = f.Get(c.name + ".params").value();
    const Tensor ms = f.Get(c.name + ".exp_avg").value();
    const Tensor vs = f.Get(c.name + ".exp_avg_sq").value();
    std::vector<float> p = Row(f.Get(c.name + ".param0").value().Reshape({1, -1}).value(), 0);
    std::vector<float> m(p.size(), 0.0f), v(p.size(), 0.0f);
    // Double-precision reference of the same update, written from the formula.
    Vec pd = ToVec(p), md(p.size(), 0.0), vd(p.size(), 0.0);
    for (int64_t t = 0; t < grads.dim(0); ++t) {
      const std::vector<float> g = Row(grads, t);
      ASSERT_TRUE(AdamWStep(absl::MakeSpan(p), g, absl::MakeSpan(m), absl::MakeSpan(v), c.h, t + 1).ok());
      const double step = t + 1;
      for (size_t i = 0; i < pd.size(); ++i) {
        pd[i] *= 1.0 - c.h.lr * c.h.weight_decay;
        md[i] = c.h.beta1 * md[i] + (1.0 - c.h.beta1) * g[i];
        vd[i] = c.h.beta2 * vd[i] + (1.0 - c.h.beta2) * g[i] * g[i];
        const double mhat = md[i] / (1.0 - std::pow(c.h.beta1, step));
        const double vhat = vd[i] / (1.0 - std::pow(c.h.beta2, step));
        pd[i] -= c.h.lr * mhat / (std::sqrt(vhat) + c.h.eps);
      }
      ExpectClose(ToVec(p), ToDouble(params.Select(0, t).value()), 1e-6, 1e-7, "param vs torch");
      ExpectClose(ToVec(m), ToDouble(ms.Select(0, t).value()), 1e-6, 2e-7, "exp_avg vs torch (terms are ~0.1: atol is a few ulps of them)");
      ExpectClose(ToVec(v), ToDouble(vs.Select(0, t).value()), 1e-6, 1e-10, "exp_avg_sq vs torch");
      ExpectClose(ToVec(p), pd, 1e-5, 1e-7, "param vs double reference");
    }
  }
}

TEST(AdamWTest, RejectsBadInput) {
  std::vector<float> p(4), g(4), m(4), v(3);
  ExpectStatus(AdamWStep(absl::MakeSpan(p), g, absl::MakeSpan(m), absl::MakeSpan(v), {}, 1),
               absl::StatusCode::kInvalidArgument, {"v 3"});
  v.resize(4);
  ExpectStatus(AdamWStep(absl::MakeSpan(p), g, absl::MakeSpan(m), absl::MakeSpan(v), {}, 0),
               absl::StatusCode::kInvalidArgument, {"step 0"});
  ExpectStatus(AdamWStep(absl::MakeSpan(p), g, absl::MakeSpan(m), absl::MakeSpan(v),
                         {.beta2 = 1.0}, 1),
               absl::StatusCode::kInvalidArgument, {"beta2"});
  ExpectStatus(ValidateAdamWHyper({.eps = 0.0}), absl::StatusCode::kInvalidArgument, {"eps"});
  ExpectStatus(ValidateAdamWHyper({.lr = -1.0}), absl::StatusCode::kInvalidArgument, {"lr"});
}

struct SgdCase {
  std::string name;
  SgdHyper h;
};

TEST(SgdTest, MatchesTorchOptimSgd) {
  const SafetensorsFile f = LoadFixture("optimizers", "optim");
  const std::vector<SgdCase> cases = {
      {"sgd_plain", {.lr = 0.1}},
      {"sgd_momentum", {.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}},
      {"sgd_nesterov", {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 1e-3}},
      {"sgd_dampening", {.lr = 0.02, .momentum = 0.5, .dampening = 0.3}},
  };
  for (const SgdCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Tensor grads = f.Get(c.name + ".grads").value();
    const Tensor params = f.Get(c.name + ".params").value();
    std::vector<float> p = Row(f.Get(c.name + ".param0").value().Reshape({1, -1}).value(), 0);
    std::vector<float> buf(c.h.momentum != 0 ? p.size() : 0);
    Vec pd = ToVec(p), bd(p.size(), 0.0);
    for (int64_t t = 0; t < grads.dim(0); ++t) {
      const std::vector<float> g = Row(grads, t);
      ASSERT_TRUE(SgdStep(absl::MakeSpan(p), g, absl::MakeSpan(buf), c.h, t + 1).ok());
      for (size_t i = 0; i < pd.size(); ++i) {
        double d = g[i] + c.h.weight_decay * pd[i];
        if (c.h.momentum != 0) {
          bd[i] = t == 0 ? d : c.h.momentum * bd[i] + (1.0 - c.h.dampening) * d;
          d = c.h.nesterov ? d + c.h.momentum * bd[i] : bd[i];
        }
        pd[i] -= c.h.lr * d;
      }
      ExpectClose(ToVec(p), ToDouble(params.Select(0, t).value()), 1e-6, 1e-7, "param vs torch");
      ExpectClose(ToVec(p), pd, 1e-5, 1e-7, "param vs double reference");
      if (c.h.momentum != 0) {
        ExpectClose(ToVec(buf), ToDouble(f.Get(c.name + ".momentum_buffer").value().Select(0, t).value()),
                    1e-6, 1e-7, "momentum buffer vs torch");
      }
    }
  }
}

TEST(SgdTest, RejectsBadInput) {
  std::vector<float> p(4), g(4), buf(2);
  ExpectStatus(SgdStep(absl::MakeSpan(p), g, absl::MakeSpan(buf), {.momentum = 0.9}, 1),
               absl::StatusCode::kInvalidArgument, {"momentum buffer has 2"});
  ExpectStatus(ValidateSgdHyper({.momentum = 0.0, .nesterov = true}),
               absl::StatusCode::kInvalidArgument, {"nesterov"});
  ExpectStatus(SgdStep(absl::MakeSpan(p), absl::MakeConstSpan(g).subspan(1), {}, {}, 1),
               absl::StatusCode::kInvalidArgument, {"grad has 3"});
}

TEST(GradClipTest, MatchesTorchClipGradNorm) {
  const SafetensorsFile f = LoadFixture("optimizers", "optim");
  for (const std::string name : {"clip_active", "clip_inactive"}) {
    SCOPED_TRACE(name);
    std::vector<std::vector<float>> grads;
    for (int i = 0; i < 3; ++i) grads.push_back(Row(f.Get(name + ".grad" + std::to_string(i)).value().Reshape({1, -1}).value(), 0));
    std::vector<absl::Span<float>> spans;
    for (auto& g : grads) spans.push_back(absl::MakeSpan(g));
    const double max_norm = ToDouble(f.Get(name + ".max_norm").value())[0];
    const double norm = GlobalGradNorm(spans);
    ExpectClose(Vec{norm}, ToDouble(f.Get(name + ".norm").value()), 1e-6, 0, "norm");
    const double coef = ClipGradsByNorm(spans, max_norm, norm);
    EXPECT_EQ(coef < 1.0, name == "clip_active");
    for (int i = 0; i < 3; ++i) {
      ExpectClose(ToVec(grads[i]), ToDouble(f.Get(name + ".clipped" + std::to_string(i)).value()),
                  1e-6, 1e-8, "clipped gradient");
    }
  }
}

}  // namespace
}  // namespace strata::optim
