// Every op's IR gradient, checked through a compiled program against central finite differences
// of the same program's loss (STYLE.md 9: one harness, one line per op).
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

// A module whose parameters are the float operands of one op.
class Probe : public Module {
 public:
  // Parameters from `frozen_from` on are constants in (0.5, 1.5) (running statistics).
  Probe(const std::vector<Shape>& shapes, size_t frozen_from) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const bool frozen = i >= frozen_from;
      params_.push_back(AddParameter(absl::StrCat("p", i), shapes[i],
                                     frozen ? Init::Uniform(0.5, 1.5) : Init::Normal(0, 1),
                                     /*trainable=*/!frozen));
    }
  }
  Var operator[](size_t i) const { return params_[i]->var(); }

 private:
  std::vector<Parameter*> params_;
};

struct Case {
  std::string name;
  std::vector<Shape> params;  // float operands, differentiated
  // Fixed integer operands (ids, targets) as inputs, with their values.
  std::vector<std::pair<Shape, std::vector<int32_t>>> int_inputs;
  // Builds the op's output from the parameters and the integer inputs.
  std::function<Var(const Probe&, absl::Span<const Var>)> build;
  bool output_is_loss = false;  // the op's output is already a scalar loss
  double eps = 1e-2, rtol = 2e-2, atol = 2e-3;
  size_t frozen_from = 100;  // parameters from this index on are not trained
};

std::vector<int32_t> Ints(int64_t n, int32_t hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(rng() % hi);
  return v;
}

void CheckGradients(const Case& c) {
  SCOPED_TRACE(c.name);
  Probe probe(c.params, c.frozen_from);
  std::vector<InputSpec> inputs;
  for (size_t i = 0; i < c.int_inputs.size(); ++i) {
    inputs.push_back({"int" + std::to_string(i), c.int_inputs[i].first, DType::kI32});
  }
  Shape out_shape;
  {  // The output shape, from a throwaway trace, for the probe weights.
    Graph g;
    Tracer t(g);
    std::vector<Var> in;
    for (const auto& [shape, v] : c.int_inputs) in.push_back(t.NewValue({shape, DType::kI32}, ValueRole::kInput));
    Probe p(c.params, c.frozen_from);
    p.ForEachParameter([&](const std::string&, Parameter& prm) {
      prm.Bind(t.NewValue({prm.shape(), DType::kF32}, ValueRole::kParameter));
    });
    Var out = c.build(p, in);
    ASSERT_TRUE(t.status().ok()) << t.status();
    out_shape = out.shape();
  }
  if (!c.output_is_loss) inputs.push_back({"probe", out_shape, DType::kF32});

  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(0, 0);
  o.schedule.max_lr = 0;  // the step must not move the parameters
  o.keep_gradients = true;
  o.seed = 7;
  auto program = Compile(
      probe, inputs,
      [&](absl::Span<const Var> in) {
        Var out = c.build(probe, in.subspan(0, c.int_inputs.size()));
        return c.output_is_loss ? out : ops::WeightedSum(out, in.back());
      },
      o);
  ASSERT_TRUE(program.ok()) << program.status();

  std::vector<Tensor> batch;
  for (const auto& [shape, values] : c.int_inputs) {
    Tensor t = Tensor::Empty(shape, DType::kI32, DefaultCpuAllocator()).value();
    std::copy(values.begin(), values.end(), t.data<int32_t>());
    batch.push_back(t);
  }
  std::mt19937_64 rng(11);
  if (!c.output_is_loss) batch.push_back(testing::RandomTensor(out_shape, rng));
  ASSERT_TRUE((*program)->Step(batch).ok());

  ASSERT_EQ((*program)->gradients().size(), std::min(c.params.size(), c.frozen_from));
  for (const auto& [path, grad] : (*program)->gradients()) {
    SCOPED_TRACE(path);
    const Tensor param = (*program)->parameter(path).value();
    float* p = param.data<float>();
    const int64_t n = param.numel();
    const int64_t stride = std::max<int64_t>(1, n / 24);  // about 24 elements per parameter
    for (int64_t i = 0; i < n; i += stride) {
      const float saved = p[i];
      p[i] = saved + static_cast<float>(c.eps);
      const double up = (*program)->Evaluate(batch).value();
      p[i] = saved - static_cast<float>(c.eps);
      const double down = (*program)->Evaluate(batch).value();
      p[i] = saved;
      const double fd = (up - down) / (2 * c.eps);
      EXPECT_NEAR(grad.data<float>()[i], fd, c.atol + c.rtol * std::abs(fd)) << "element " << i;
    }
  }
}

using cpu::Conv2dParams;
using cpu::Pool2dParams;

TEST(AutodiffTest, Linear) {
  CheckGradients({"linear+bias", {Shape{3, 5, 7}, Shape{4, 7}, Shape{4}}, {},
                  [](const Probe& p, auto) { return ops::Linear(p[0], p[1], p[2]); }});
  CheckGradients({"linear", {Shape{6, 5}, Shape{3, 5}}, {},
                  [](const Probe& p, auto) { return ops::Linear(p[0], p[1]); }});
}

TEST(AutodiffTest, AddAndBroadcast) {
  CheckGradients({"add", {Shape{4, 5}, Shape{4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Add(p[0], p[1]); }});
  CheckGradients({"add broadcast", {Shape{2, 3, 5}, Shape{3, 5}}, {},
                  [](const Probe& p, auto) { return ops::Add(p[0], p[1]); }});
  // A value used twice: its gradients are summed.
  CheckGradients({"x + x", {Shape{3, 4}}, {},
                  [](const Probe& p, auto) { return ops::Add(p[0], p[0]); }});
}

// Parameters are drawn from N(0, 1): the functions that need positive inputs get x^2 + 1, which
// also checks that the gradients compose.
TEST(AutodiffTest, Arithmetic) {
  auto positive = [](Var x) { return ops::AddScalar(ops::Pow(x, 2.0f), 1.0f); };
  CheckGradients({"sub", {Shape{4, 5}, Shape{4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Sub(p[0], p[1]); }});
  CheckGradients({"mul", {Shape{4, 5}, Shape{4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Mul(p[0], p[1]); }});
  CheckGradients({"div", {Shape{4, 5}, Shape{4, 5}}, {},
                  [&](const Probe& p, auto) { return ops::Div(p[0], positive(p[1])); }});
  // Broadcasts over the leading dimensions, either way round (expand, and sum_to back).
  CheckGradients({"mul broadcast b", {Shape{2, 3, 5}, Shape{3, 5}}, {},
                  [](const Probe& p, auto) { return ops::Mul(p[0], p[1]); }});
  CheckGradients({"sub broadcast a", {Shape{5}, Shape{2, 3, 5}}, {},
                  [](const Probe& p, auto) { return ops::Sub(p[0], p[1]); }});
  CheckGradients({"div broadcast b", {Shape{3, 4}, Shape{4}}, {},
                  [&](const Probe& p, auto) { return ops::Div(p[0], positive(p[1])); }});
  CheckGradients({"expand", {Shape{3, 4}}, {},
                  [](const Probe& p, auto) { return ops::Expand(p[0], Shape{2, 3, 4}); }});
  // NumPy's broadcasting: size-1 dimensions, on both sides at once.
  CheckGradients({"expand size-1 dims", {Shape{3, 1, 4}}, {},
                  [](const Probe& p, auto) { return ops::Expand(p[0], Shape{2, 3, 5, 4}); }});
  CheckGradients({"mul (2, 3, 4) by (2, 3, 1)", {Shape{2, 3, 4}, Shape{2, 3, 1}}, {},
                  [](const Probe& p, auto) { return ops::Mul(p[0], p[1]); }});
  CheckGradients({"sub (3, 1) - (1, 4)", {Shape{3, 1}, Shape{1, 4}}, {},
                  [](const Probe& p, auto) { return ops::Sub(p[0], p[1]); }});
  CheckGradients({"scale shift, neg", {Shape{4, 5}}, {}, [](const Probe& p, auto) {
                    return ops::Neg(ops::ScaleShift(p[0], 2.5f, -1.0f));
                  }});
  CheckGradients({"x^3", {Shape{4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Pow(p[0], 3.0f); }});
  CheckGradients({"x^-1.5", {Shape{4, 5}}, {},
                  [&](const Probe& p, auto) { return ops::Pow(positive(p[0]), -1.5f); }});
  CheckGradients({"exp", {Shape{4, 5}}, {}, [](const Probe& p, auto) { return ops::Exp(p[0]); }});
  CheckGradients({"log", {Shape{4, 5}}, {},
                  [&](const Probe& p, auto) { return ops::Log(positive(p[0])); }});
  CheckGradients({"sqrt", {Shape{4, 5}}, {},
                  [&](const Probe& p, auto) { return ops::Sqrt(positive(p[0])); }});
  CheckGradients({"rsqrt", {Shape{4, 5}}, {},
                  [&](const Probe& p, auto) { return ops::Rsqrt(positive(p[0])); }});
}

// RmsNorm: the fused op's gradients by finite differences, the same norm written with the ops
// above, and nn::RmsNorm's value against a double reference.
TEST(AutodiffTest, RmsNorm) {
  CheckGradients({"rms_norm", {Shape{2, 3, 6}, Shape{6}}, {},
                  [](const Probe& p, auto) { return ops::RmsNorm(p[0], p[1]); }});
  CheckGradients({"rms norm composed", {Shape{2, 3, 6}, Shape{6}}, {}, [](const Probe& p, auto) {
                    const Var inv = ops::Rsqrt(ops::AddScalar(ops::Mean(ops::Pow(p[0], 2.0f), {-1}, true), 1e-6f));
                    return ops::Mul(ops::Mul(p[0], inv), p[1]);
                  }});
  nn::RmsNorm norm(5);
  const Shape s{3, 5};
  auto program = Compile(norm, {{"x", s, DType::kF32}, {"target", s, DType::kF32}},
                         [&](absl::Span<const Var> in) { return ops::MseLoss(norm(in[0]), in[1]); },
                         [] {
                           TrainOptions o;
                           o.optimizer = OptimizerOptions::Sgd(0, 0);
                           return o;
                         }());
  ASSERT_TRUE(program.ok()) << program.status();
  std::mt19937_64 rng(2);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  Tensor x = Tensor::Empty(s, DType::kF32, DefaultCpuAllocator()).value();
  Tensor zero = Tensor::Zeros(s, DType::kF32, DefaultCpuAllocator()).value();
  double expected = 0;  // mse against 0 = mean of the normalized values squared (weight 1)
  for (int64_t r = 0; r < 3; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < 5; ++c) {
      const double v = x.data<float>()[r * 5 + c] = normal(rng);
      ms += v * v / 5;
    }
    for (int64_t c = 0; c < 5; ++c) {
      const double y = x.data<float>()[r * 5 + c] / std::sqrt(ms + 1e-6);
      expected += y * y / 15;
    }
  }
  absl::StatusOr<double> loss = (*program)->Evaluate({x, zero});
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_NEAR(*loss, expected, 1e-6);
}

TEST(AutodiffTest, Reductions) {
  CheckGradients({"sum all", {Shape{3, 4, 5}}, {}, [](const Probe& p, auto) {
                    return ops::Reshape(ops::Sum(p[0]), Shape{1});
                  }});
  CheckGradients({"sum dims 0, 2", {Shape{3, 4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Sum(p[0], {0, -1}); }});
  CheckGradients({"mean dim 1 keepdim", {Shape{3, 4, 5}}, {},
                  [](const Probe& p, auto) { return ops::Mean(p[0], {1}, true); }});
  CheckGradients({"max dim 1", {Shape{3, 6, 5}}, {},
                  [](const Probe& p, auto) { return ops::Max(p[0], 1); }});
  CheckGradients({"max dim -1 keepdim", {Shape{4, 7}}, {},
                  [](const Probe& p, auto) { return ops::Max(p[0], -1, true); }});
  CheckGradients({"softmax", {Shape{3, 2, 7}}, {},
                  [](const Probe& p, auto) { return ops::Softmax(p[0]); }});
  CheckGradients({"log_softmax", {Shape{3, 2, 7}}, {},
                  [](const Probe& p, auto) { return ops::LogSoftmax(p[0]); }});
  CheckGradients({"mse", {Shape{4, 5}, Shape{4, 5}}, {},
                  [](const Probe& p, auto) { return ops::MseLoss(p[0], p[1]); }, true});
  CheckGradients({"bce with logits", {Shape{4, 5}, Shape{4, 5}}, {}, [](const Probe& p, auto) {
                    return ops::BceWithLogitsLoss(p[0], ops::Sigmoid(p[1]));
                  }, true});
}

TEST(AutodiffTest, ShapeOps) {
  CheckGradients({"permute", {Shape{2, 3, 4}}, {},
                  [](const Probe& p, auto) { return ops::Permute(p[0], {2, 0, 1}); }});
  CheckGradients({"transpose -1, 0", {Shape{2, 3, 4}}, {},
                  [](const Probe& p, auto) { return ops::Transpose(p[0], -1, 0); }});
  CheckGradients({"slice", {Shape{3, 7}}, {},
                  [](const Probe& p, auto) { return ops::Slice(p[0], 1, 2, 5); }});
  CheckGradients({"concat", {Shape{2, 3}, Shape{2, 1}, Shape{2, 4}}, {},
                  [](const Probe& p, auto) { return ops::Concat({p[0], p[1], p[2]}, -1); }});
  CheckGradients({"split, the middle part", {Shape{5, 4}}, {},
                  [](const Probe& p, auto) { return ops::Split(p[0], 0, {1, 3, 1})[1]; }});
  CheckGradients({"split, every part, joined in reverse", {Shape{5, 4}}, {}, [](const Probe& p, auto) {
                    const std::vector<Var> s = ops::Split(p[0], 0, {1, 3, 1});
                    return ops::Concat({s[2], s[1], s[0]}, 0);
                  }});
}

TEST(AutodiffTest, Matmul) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Shape a = ta ? Shape{5, 3} : Shape{3, 5}, b = tb ? Shape{4, 5} : Shape{5, 4};
      CheckGradients({absl::StrCat("matmul ", ta, tb), {a, b}, {},
                      [=](const Probe& p, auto) { return ops::Matmul(p[0], p[1], ta, tb); }});
      const Shape ba = ta ? Shape{2, 5, 3} : Shape{2, 3, 5}, bb = tb ? Shape{2, 4, 5} : Shape{2, 5, 4};
      CheckGradients({absl::StrCat("batched ", ta, tb), {ba, bb}, {},
                      [=](const Probe& p, auto) { return ops::BatchedMatmul(p[0], p[1], ta, tb); }});
    }
  }
  CheckGradients({"(2, 3, 5) @ (5, 4)", {Shape{2, 3, 5}, Shape{5, 4}}, {},
                  [](const Probe& p, auto) { return ops::Matmul(p[0], p[1]); }});
  CheckGradients({"(2, 2, 3, 5) @ (2, 2, 4, 5)^T", {Shape{2, 2, 3, 5}, Shape{2, 2, 4, 5}}, {},
                  [](const Probe& p, auto) { return ops::BatchedMatmul(p[0], p[1], false, true); }});
}

// The losses' values against their closed forms in double precision, through a compiled step.
TEST(AutodiffTest, LossesEqualTheirClosedForms) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const Shape s{6, 7};
  Tensor x = Tensor::Empty(s, DType::kF32, DefaultCpuAllocator()).value();
  Tensor t = Tensor::Empty(s, DType::kF32, DefaultCpuAllocator()).value();
  double mse = 0, bce = 0;
  for (int64_t i = 0; i < s.numel(); ++i) {
    const double xi = x.data<float>()[i] = normal(rng) * (i == 0 ? 20 : 1);  // one saturated logit
    const double ti = t.data<float>()[i] = unit(rng);
    mse += (xi - ti) * (xi - ti) / s.numel();
    const double sig = 1 / (1 + std::exp(-xi));
    bce -= (ti * std::log(sig) + (1 - ti) * std::log1p(-sig)) / s.numel();
  }
  for (bool binary : {false, true}) {
    SCOPED_TRACE(binary ? "bce" : "mse");
    Probe probe({Shape{7}}, 100);  // a parameter to train, added times 0: the inputs' loss
    TrainOptions o;
    o.optimizer = OptimizerOptions::Sgd(0, 0);
    auto p = Compile(probe, {{"x", s, DType::kF32}, {"t", s, DType::kF32}},
                     [&](absl::Span<const Var> in) {
                       const Var pred = ops::Add(in[0], ops::Scale(probe[0], 0.0f));
                       return binary ? ops::BceWithLogitsLoss(pred, in[1]) : ops::MseLoss(pred, in[1]);
                     },
                     o);
    ASSERT_TRUE(p.ok()) << p.status();
    absl::StatusOr<double> loss = (*p)->Evaluate({x, t});
    ASSERT_TRUE(loss.ok()) << loss.status();
    EXPECT_NEAR(*loss, binary ? bce : mse, 1e-6 * (binary ? bce : mse));
  }
}

TEST(AutodiffTest, BadReductionsAndLossesAreRefusedByName) {
  Graph g;
  Tracer t(g);
  Var x = t.NewValue({Shape{3, 4}, DType::kF32}, ValueRole::kInput);
  EXPECT_FALSE(ops::Sum(x, {2}).valid());
  EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr("dim 2 is out of range"));
  Graph g2;
  Tracer t2(g2);
  Var a = t2.NewValue({Shape{3, 4}, DType::kF32}, ValueRole::kInput);
  Var b = t2.NewValue({Shape{4, 3}, DType::kF32}, ValueRole::kInput);
  EXPECT_FALSE(ops::MseLoss(a, b).valid());
  EXPECT_THAT(std::string(t2.status().message()), ::testing::HasSubstr("differ in shape"));
  Graph g3;
  Tracer t3(g3);
  Var c = t3.NewValue({Shape{3, 4}, DType::kF32}, ValueRole::kInput);
  EXPECT_FALSE(ops::Sum(c, {1, -1}).valid());
  EXPECT_THAT(std::string(t3.status().message()), ::testing::HasSubstr("twice"));
  Graph g4;
  Tracer t4(g4);
  Var m = t4.NewValue({Shape{3, 4}, DType::kF32}, ValueRole::kInput);
  EXPECT_FALSE(ops::Matmul(m, m).valid());
  EXPECT_THAT(std::string(t4.status().message()), ::testing::HasSubstr("has 4 columns but"));
  Graph g5;
  Tracer t5(g5);
  Var q = t5.NewValue({Shape{3, 4}, DType::kF32}, ValueRole::kInput);
  EXPECT_FALSE(ops::Slice(q, 1, 2, 6).valid());
  EXPECT_THAT(std::string(t5.status().message()), ::testing::HasSubstr("[2, 6) of dim 1"));
}

TEST(AutodiffTest, Activations) {
  CheckGradients({"gelu", {Shape{5, 7}}, {}, [](const Probe& p, auto) { return ops::Gelu(p[0]); }});
  CheckGradients({"relu", {Shape{5, 7}}, {}, [](const Probe& p, auto) { return ops::Relu(p[0]); },
                  false, 1e-3});
  CheckGradients({"relu6", {Shape{5, 7}}, {},
                  [](const Probe& p, auto) { return ops::Relu6(p[0]); }, false, 1e-3});
  CheckGradients({"sigmoid", {Shape{5, 7}}, {},
                  [](const Probe& p, auto) { return ops::Sigmoid(p[0]); }});
  CheckGradients({"tanh", {Shape{5, 7}}, {}, [](const Probe& p, auto) { return ops::Tanh(p[0]); }});
  CheckGradients({"silu", {Shape{5, 7}}, {}, [](const Probe& p, auto) { return ops::Silu(p[0]); }});
  CheckGradients({"softplus", {Shape{5, 7}}, {},
                  [](const Probe& p, auto) { return ops::Softplus(p[0]); }});
  CheckGradients({"gelu exact", {Shape{5, 7}}, {},
                  [](const Probe& p, auto) { return ops::GeluExact(p[0]); }});
  // Chained: each one's gradient feeds the next.
  CheckGradients({"silu(tanh(softplus(x)))", {Shape{3, 4}}, {}, [](const Probe& p, auto) {
                    return ops::Silu(ops::Tanh(ops::Softplus(p[0])));
                  }});
}

TEST(AutodiffTest, LayerNorm) {
  CheckGradients({"layer_norm", {Shape{3, 4, 11}, Shape{11}, Shape{11}}, {},
                  [](const Probe& p, auto) { return ops::LayerNorm(p[0], p[1], p[2]); },
                  false, 1e-2, 3e-2, 5e-3});
}

TEST(AutodiffTest, Embedding) {
  CheckGradients({"embedding", {Shape{13, 6}}, {{Shape{2, 5}, Ints(10, 13, 1)}},
                  [](const Probe& p, absl::Span<const Var> in) { return ops::Embedding(in[0], p[0]); }});
}

TEST(AutodiffTest, CausalSelfAttention) {
  CheckGradients({"causal_attention", {Shape{2, 7, 3 * 8}}, {},
                  [](const Probe& p, auto) { return ops::CausalSelfAttention(p[0], 2); }});
}

TEST(AutodiffTest, SwiGlu) {
  CheckGradients({"swiglu", {Shape{2, 3, 7}, Shape{2, 3, 7}}, {},
                  [](const Probe& p, auto) { return ops::SwiGlu(p[0], p[1]); }});
}

// Grouped-query attention over separate projections: 4 query heads on 2 key/value heads.
TEST(AutodiffTest, GroupedQueryAttention) {
  CheckGradients({"attention", {Shape{2, 7, 4 * 4}, Shape{2, 7, 2 * 4}, Shape{2, 7, 2 * 4}}, {},
                  [](const Probe& p, auto) { return ops::CausalAttention(p[0], p[1], p[2], 4, 2); }});
}

// Rotary embedding (and its gradient, the inverse rotation) after a linear map, so that the
// gradient of the rotation's own gradient is checked through a second differentiation path too.
TEST(AutodiffTest, Rotary) {
  CheckGradients({"rotary", {Shape{2, 7, 2 * 8}, Shape{16, 16}}, {}, [](const Probe& p, auto) {
                    const Var table = ops::RotaryTable(p[0], 9, 8, 100.0, {}, "rope");
                    return ops::Rotary(ops::Linear(p[0], p[1]), table, 2);
                  }});
}

TEST(AutodiffTest, CrossEntropyWithLabelSmoothingAndIgnoreIndex) {
  std::vector<int32_t> targets = Ints(6, 11, 3);
  targets[1] = targets[4] = 5;  // ignore_index 5
  CheckGradients({"cross_entropy smoothed", {Shape{2, 3, 11}}, {{Shape{2, 3}, targets}},
                  [](const Probe& p, absl::Span<const Var> in) {
                    return ops::CrossEntropy(p[0], in[0], {.ignore_index = 5, .label_smoothing = 0.2f});
                  },
                  /*output_is_loss=*/true, 1e-2, 2e-2, 2e-4});
}

TEST(AutodiffTest, CrossEntropy) {
  CheckGradients({"cross_entropy", {Shape{2, 3, 11}}, {{Shape{2, 3}, Ints(6, 11, 2)}},
                  [](const Probe& p, absl::Span<const Var> in) {
                    return ops::CrossEntropy(p[0], in[0]);
                  },
                  /*output_is_loss=*/true, 1e-2, 2e-2, 2e-4});
}

TEST(AutodiffTest, Conv2d) {
  CheckGradients({"conv2d 3x3 pad 1 + bias", {Shape{2, 3, 6, 5}, Shape{4, 3, 3, 3}, Shape{4}}, {},
                  [](const Probe& p, auto) {
                    return ops::Conv2d(p[0], p[1], p[2], Conv2dParams{.pad_h = 1, .pad_w = 1});
                  }});
  CheckGradients({"depthwise stride 2", {Shape{2, 4, 7, 7}, Shape{4, 1, 3, 3}}, {},
                  [](const Probe& p, auto) {
                    return ops::Conv2d(p[0], p[1], Var(),
                                       Conv2dParams{.stride_h = 2, .stride_w = 2, .pad_h = 1,
                                                    .pad_w = 1, .groups = 4});
                  }});
}

TEST(AutodiffTest, BatchNormFrozen) {
  CheckGradients({"batch_norm_frozen",
                  {Shape{2, 3, 4, 5}, Shape{3}, Shape{3}, Shape{3}, Shape{3}}, {},
                  [](const Probe& p, auto) {
                    return ops::BatchNorm2dFrozen(p[0], p[1], p[2], p[3], p[4]);
                  },
                  false, 1e-2, 2e-2, 2e-3, /*frozen_from=*/3});
}

TEST(AutodiffTest, Pooling) {
  CheckGradients({"max_pool2d", {Shape{2, 3, 6, 6}}, {},
                  [](const Probe& p, auto) { return ops::MaxPool2d(p[0], Pool2dParams{}); },
                  false, 1e-3});
  CheckGradients({"avg_pool2d", {Shape{2, 3, 6, 6}}, {},
                  [](const Probe& p, auto) {
                    return ops::AvgPool2d(p[0], Pool2dParams{.kernel_h = 3, .kernel_w = 3,
                                                             .stride_h = 2, .stride_w = 2,
                                                             .pad_h = 1, .pad_w = 1});
                  }});
  CheckGradients({"global_avg_pool", {Shape{2, 3, 4, 5}}, {},
                  [](const Probe& p, auto) { return ops::GlobalAvgPool(p[0]); }});
}

TEST(AutodiffTest, Reshape) {
  CheckGradients({"reshape", {Shape{2, 3, 4}}, {},
                  [](const Probe& p, auto) { return ops::Gelu(ops::Reshape(p[0], Shape{6, 4})); }});
}

}  // namespace
}  // namespace strata::graph
