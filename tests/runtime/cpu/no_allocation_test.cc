// Kernels write into caller-provided outputs and never allocate: every kernel, called a second
// time (after thread pools and BLAS buffers exist), makes no heap allocation through operator new.
// The list below names every public kernel of runtime/cpu/*.h; a new kernel adds its line.
#include <omp.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/activation.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/batchnorm.h"
#include "runtime/cpu/conv2d.h"
#include "runtime/cpu/copy.h"
#include "runtime/cpu/cross_entropy.h"
#include "runtime/cpu/dropout.h"
#include "runtime/cpu/elementwise.h"
#include "runtime/cpu/embedding.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/linear.h"
#include "runtime/cpu/pooling.h"
#include "runtime/cpu/rmsnorm.h"
#include "runtime/cpu/rotary.h"
#include "runtime/cpu/round_to_precision.h"
#include "runtime/cpu/softmax.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/util/allocation_counter.h"

namespace strata::cpu {
namespace {

using testing::RandomTensor;

TEST(NoAllocationTest, TheCounterSeesAllocationsOnAnyThread) {
  if (!testing::AllocationCounter::Supported()) GTEST_SKIP() << "not under ASan";
  std::vector<std::unique_ptr<double>> kept(NumThreads());  // keeps the allocations observable
  int threads = 0;
  testing::AllocationCounter counter;
  auto one = std::make_unique<int>(1);
  std::vector<int> many(1000);
#pragma omp parallel num_threads(static_cast<int>(kept.size()))
  {
    kept[omp_get_thread_num()] = std::make_unique<double>(2.0);
#pragma omp single
    threads = omp_get_num_threads();
  }
  EXPECT_EQ(counter.count(), 2 + threads);
  EXPECT_EQ(*one + many.size(), 1001u);
}

TEST(NoAllocationTest, KernelsDoNotAllocate) {
  if (!testing::AllocationCounter::Supported()) {
    GTEST_SKIP() << "allocation counting needs the default operator new (not under ASan)";
  }
  std::mt19937_64 rng(1);
  // Sizes large enough that the kernels take their parallel paths.
  const Tensor x = RandomTensor(Shape{64, 256}, rng), y = testing::EmptyF32(Shape{64, 256});
  const Tensor dy = RandomTensor(Shape{64, 256}, rng), dx = testing::EmptyF32(Shape{64, 256});
  const Tensor w = RandomTensor(Shape{128, 256}, rng), b = RandomTensor(Shape{128}, rng);
  const Tensor h = testing::EmptyF32(Shape{64, 128}), dh = RandomTensor(Shape{64, 128}, rng);
  const Tensor dw = testing::EmptyF32(w.shape()), db = testing::EmptyF32(b.shape());
  const Tensor g = RandomTensor(Shape{256}, rng), beta = RandomTensor(Shape{256}, rng);
  const Tensor dg = testing::EmptyF32(Shape{256}), dbeta = testing::EmptyF32(Shape{256});
  const Tensor mean = testing::EmptyF32(Shape{64}), rstd = testing::EmptyF32(Shape{64});
  const Tensor xt = x.Transpose(0, 1).value(), xt_out = testing::EmptyF32(Shape{256, 64});
  const Tensor halves[] = {x.Slice(1, 0, 128).value(), x.Slice(1, 128, 256).value()};
  const Tensor ids = testing::FromDouble(std::vector<double>(64, 3.0), Shape{64}, DType::kI64);
  const Tensor loss = testing::EmptyF32(Shape{1});
  const Tensor x4 = x.Reshape({2, 32, 4, 64}).value(), y4 = y.Reshape({2, 32, 4, 64}).value();
  const Tensor rope = testing::EmptyF32(Shape{32, 64});
  // Attention on views into a packed qkv buffer.
  const int64_t B = 2, H = 4, T = 70, D = 16;
  const Tensor qkv = RandomTensor(Shape{B, T, 3 * H * D}, rng);
  auto packed = [&](const Tensor& t, int which) {
    return t.Reshape({B, T, 3, H, D}).value().Select(2, which).value().Permute({0, 2, 1, 3}).value();
  };
  const Tensor q = packed(qkv, 0), k = packed(qkv, 1), v = packed(qkv, 2);
  const Tensor att = testing::EmptyF32(Shape{B, H, T, D}), datt = RandomTensor(att.shape(), rng);
  const Tensor dq = testing::EmptyF32(att.shape()), dk = testing::EmptyF32(att.shape()),
               dv = testing::EmptyF32(att.shape()), lse = testing::EmptyF32(Shape{B, H, T});
  std::vector<float> attn_ws(AttentionWorkspaceBytes(B, H, T, D, NumThreads()) / sizeof(float));
  // Convolutions: regular, depthwise stride 1 and 2, pointwise.
  const Tensor img = RandomTensor(Shape{4, 8, 12, 12}, rng), dimg = testing::EmptyF32(img.shape());
  struct Conv {
    Tensor w, y, dy, dw, db;
    Conv2dParams p;
    std::vector<float> ws;
  };
  std::vector<Conv> convs;
  for (auto [w_shape, p] : {std::pair{Shape{16, 8, 3, 3}, Conv2dParams{.pad_h = 1, .pad_w = 1}},
                            {Shape{8, 1, 3, 3}, Conv2dParams{.pad_h = 1, .pad_w = 1, .groups = 8}},
                            {Shape{8, 1, 3, 3}, Conv2dParams{.stride_h = 2, .stride_w = 2, .groups = 8}},
                            {Shape{16, 8, 1, 1}, Conv2dParams{}}}) {
    const Shape ys = Conv2dOutputShape(img.shape(), w_shape, p).value();
    convs.push_back({RandomTensor(w_shape, rng), testing::EmptyF32(ys), RandomTensor(ys, rng),
                     testing::EmptyF32(w_shape), testing::EmptyF32(Shape{w_shape[0]}), p,
                     std::vector<float>(Conv2dWorkspaceBytes(img.shape(), w_shape, p, NumThreads()) / sizeof(float))});
  }
  const Tensor cb = RandomTensor(Shape{8}, rng), var = RandomTensor(Shape{8}, rng, 0.5f, 1.0f);
  const Tensor bn_mean = testing::EmptyF32(Shape{8}), bn_rstd = testing::EmptyF32(Shape{8}),
               bn_rm = testing::ZerosF32(Shape{8}), bn_rv = RandomTensor(Shape{8}, rng, 0.5f, 1.0f);
  const Tensor pooled = testing::EmptyF32(Shape{4, 8, 6, 6}), dpooled = RandomTensor(pooled.shape(), rng);
  const Tensor gap = testing::EmptyF32(Shape{4, 8}), dgap = RandomTensor(gap.shape(), rng);
  const Pool2dParams pool{};
  const Tensor parts[] = {testing::EmptyF32(Shape{64, 128}), testing::EmptyF32(Shape{64, 128})};
  const Tensor ba = RandomTensor(Shape{4, 16, 32}, rng), bb = RandomTensor(Shape{4, 32, 24}, rng);
  const Tensor bout = testing::EmptyF32(Shape{4, 16, 24});

  const std::vector<std::pair<std::string, std::function<absl::Status()>>> kernels = {
      {"Matmul", [&] { return Matmul(x, w, h, false, true); }},
      {"MatmulBackward", [&] { return MatmulBackward(x, w, dh, dx, dw, false, true); }},
      {"MatmulAdd", [&] { return MatmulAdd(x, w, b, dh, h, false, true); }},
      {"BatchedMatmul", [&] { return BatchedMatmul(ba, bb, bout); }},
      {"LinearForward", [&] { return LinearForward(x, w, b, h); }},
      {"LinearBackward", [&] { return LinearBackward(x, w, dh, dx, dw, db); }},
      {"Add", [&] { return Add(x, dy, y); }},
      {"AddScaled", [&] { return AddScaled(x, dy, 0.5f, y); }},
      {"Mul", [&] { return Mul(x, dy, y); }},
      {"MulBackward", [&] { return MulBackward(x, dy, dy, dx, y); }},
      {"Scale", [&] { return Scale(x, 2.0f, y); }},
      {"AddBias", [&] { return AddBias(h, b, h); }},
      {"BiasGrad", [&] { return BiasGrad(dh, db); }},
      {"GeluForward", [&] { return GeluForward(x, y); }},
      {"GeluBackward", [&] { return GeluBackward(x, dy, dx); }},
      {"ReluForward", [&] { return ReluForward(x, y); }},
      {"ReluBackward", [&] { return ReluBackward(x, dy, dx); }},
      {"Relu6Forward", [&] { return Relu6Forward(x, y); }},
      {"Relu6Backward", [&] { return Relu6Backward(x, dy, dx); }},
      {"SoftmaxForward", [&] { return SoftmaxForward(x, y); }},
      {"SoftmaxBackward", [&] { return SoftmaxBackward(y, dy, dx); }},
      {"LayerNormForward", [&] { return LayerNormForward(x, g, beta, 1e-5f, y, mean, rstd); }},
      {"LayerNormBackward", [&] { return LayerNormBackward(x, g, mean, rstd, dy, dx, dg, dbeta); }},
      {"SwiGluForward", [&] { return SwiGluForward(x, dy, y); }},
      {"SwiGluBackward", [&] { return SwiGluBackward(x, dy, dy, dx, y); }},
      {"RmsNormForward", [&] { return RmsNormForward(x, g, 1e-5f, y, rstd); }},
      {"RmsNormBackward", [&] { return RmsNormBackward(x, g, rstd, dy, dx, dg); }},
      {"RotaryTable", [&] { return RotaryTable(1e4, RotaryScaling(), rope); }},
      {"RotaryForward", [&] { return RotaryForward(x4, rope, y4); }},
      {"RotaryBackward", [&] { return RotaryBackward(rope, x4, y4); }},
      {"EmbeddingForward", [&] { return EmbeddingForward(ids, x, y); }},
      {"EmbeddingBackward", [&] { return EmbeddingBackward(ids, dy, dx); }},
      {"CheckIds", [&] { return CheckIds("embedding", "ids", ids, 64); }},
      {"SoftmaxCrossEntropy", [&] { return SoftmaxCrossEntropy(x, ids, loss, dx); }},
      {"CopyStrided", [&] { return CopyStrided(xt, xt_out); }},
      {"TransposeCopy", [&] { return TransposeCopy(x, 0, 1, xt_out); }},
      {"ReshapeCopy", [&] { return ReshapeCopy(xt, xt_out); }},
      {"Concat", [&] { return Concat(halves, 1, y); }},
      {"Split", [&] { return Split(x, 1, parts); }},
      {"CausalAttentionForward", [&] { return CausalAttentionForward(q, k, v, att, lse, 0.25f, absl::MakeSpan(attn_ws)); }},
      {"CausalAttentionBackward", [&] { return CausalAttentionBackward(q, k, v, lse, datt, dq, dk, dv, 0.25f, absl::MakeSpan(attn_ws)); }},
      {"BatchNorm2dFrozenForward", [&] { return BatchNorm2dFrozenForward(img, cb, cb, cb, var, 1e-5f, dimg); }},
      {"BatchNorm2dFrozenBackward", [&] { return BatchNorm2dFrozenBackward(img, cb, cb, var, 1e-5f, img, dimg, dg.Slice(0, 0, 8).value(), Tensor()); }},
      {"BatchNorm2dTrainForward", [&] { return BatchNorm2dTrainForward(img, cb, cb, 1e-5f, dimg, bn_mean, bn_rstd, bn_rm, bn_rv, 0.1f); }},
      {"BatchNorm2dTrainBackward", [&] { return BatchNorm2dTrainBackward(img, cb, bn_mean, bn_rstd, img, dimg, dg.Slice(0, 0, 8).value(), Tensor()); }},
      {"MaxPool2dForward", [&] { return MaxPool2dForward(img, pooled, pool); }},
      {"MaxPool2dBackward", [&] { return MaxPool2dBackward(img, dpooled, dimg, pool); }},
      {"AvgPool2dForward", [&] { return AvgPool2dForward(img, pooled, pool); }},
      {"AvgPool2dBackward", [&] { return AvgPool2dBackward(dpooled, dimg, pool); }},
      {"GlobalAvgPoolForward", [&] { return GlobalAvgPoolForward(img, gap); }},
      {"GlobalAvgPoolBackward", [&] { return GlobalAvgPoolBackward(dgap, dimg); }},
      {"DropoutForward", [&] { return DropoutForward(x, {.p = 0.1f, .seed = 1, .step = 1}, y); }},
      {"DropoutBackward", [&] { return DropoutBackward(dy, {.p = 0.1f, .seed = 1, .step = 1}, dx); }},
      {"RoundToPrecision bf16", [&] { return RoundToPrecision(y, DType::kBF16); }},
      {"RoundToPrecision f16", [&] { return RoundToPrecision(y, DType::kF16); }},
  };
  for (const auto& [name, run] : kernels) {
    ASSERT_TRUE(run().ok()) << name;  // warm-up: thread pools, BLAS buffers
    testing::AllocationCounter counter;
    const absl::Status status = run();
    EXPECT_EQ(counter.count(), 0) << name << " allocated";
    EXPECT_TRUE(status.ok()) << name << ": " << status;
  }
  for (Conv& c : convs) {
    auto forward = [&] { return Conv2dForward(img, c.w, Tensor(), c.y, c.p, absl::MakeSpan(c.ws)); };
    auto backward = [&] { return Conv2dBackward(img, c.w, c.dy, dimg, c.dw, c.db, c.p, absl::MakeSpan(c.ws)); };
    ASSERT_TRUE(forward().ok());
    ASSERT_TRUE(backward().ok());
    testing::AllocationCounter counter;
    EXPECT_TRUE(forward().ok());
    EXPECT_TRUE(backward().ok());
    EXPECT_EQ(counter.count(), 0) << "Conv2d with groups " << c.p.groups << " stride " << c.p.stride_h;
  }
}

}  // namespace
}  // namespace strata::cpu
