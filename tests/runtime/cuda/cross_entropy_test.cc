// cuda::SoftmaxCrossEntropy against cpu::SoftmaxCrossEntropy over shapes, target dtypes, ignored
// rows, label smoothing, dloss, in place and forward only, and its argument errors.
#include "runtime/cuda/cross_entropy.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/allocator.h"
#include "runtime/cpu/cross_entropy.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

// Targets in [0, v), every `ignore_every`-th one (0: none) set to ignore_index.
Tensor Targets(const Shape& shape, int64_t v, DType dtype, int ignore_every, int64_t ignore_index,
               std::mt19937_64& rng) {
  Tensor t = *Tensor::Empty(shape, dtype, DefaultCpuAllocator());
  std::uniform_int_distribution<int64_t> pick(0, v - 1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t value = ignore_every > 0 && i % ignore_every == 1 ? ignore_index : pick(rng);
    if (dtype == DType::kI64) {
      t.data<int64_t>()[i] = value;
    } else {
      t.data<int32_t>()[i] = static_cast<int32_t>(value);
    }
  }
  return t;
}

class SoftmaxCrossEntropyCudaTest : public CudaKernelTest {
 protected:
  // Runs both kernels and compares the loss and (unless forward_only) the gradient.
  void Compare(const Tensor& logits, const Tensor& targets, float dloss, int64_t ignore_index,
               float smoothing, bool forward_only, bool in_place) {
    Tensor loss = EmptyF32(Shape{1}), dlogits = EmptyF32(logits.shape());
    ASSERT_TRUE(cpu::SoftmaxCrossEntropy(logits, targets, loss,
                                         forward_only ? Tensor() : dlogits, dloss, ignore_index,
                                         smoothing)
                    .ok());
    Tensor d_logits = ToDevice(logits), d_loss = DeviceEmpty(Shape{1});
    Tensor d_dlogits = forward_only ? Tensor() : in_place ? d_logits : DeviceEmpty(logits.shape());
    Tensor ws = DeviceEmpty(Shape{static_cast<int64_t>(
        SoftmaxCrossEntropyWorkspaceBytes(logits.shape()) / sizeof(float))});
    ASSERT_TRUE(SoftmaxCrossEntropy(stream(), d_logits, ToDevice(targets), d_loss, d_dlogits, ws,
                                    dloss, ignore_index, smoothing)
                    .ok());
    ExpectRelativeError(ToHost(d_loss), loss, 1e-5, "loss");
    if (!forward_only) ExpectRelativeError(ToHost(d_dlogits), dlogits, 1e-5, "dlogits");
  }
};

TEST_F(SoftmaxCrossEntropyCudaTest, MatchesTheCpuKernel) {
  std::mt19937_64 rng(41);
  for (const Shape& shape : {Shape{1, 1}, Shape{5, 7}, Shape{13, 300}, Shape{2, 3, 33},
                             Shape{4, 50257}, Shape{700, 10}}) {
    const int64_t v = shape.dim(-1);
    Dims row_dims(shape.dims().begin(), shape.dims().end() - 1);
    Tensor logits = RandomTensor(shape, rng, -6.0f, 6.0f);
    for (DType dtype : {DType::kI32, DType::kI64}) {
      for (float smoothing : {0.0f, 0.1f, 1.0f}) {
        for (int ignore_every : {0, 3}) {
          SCOPED_TRACE(absl::StrCat(shape.ToString(), " ", DTypeName(dtype), " smoothing ",
                                    smoothing, " ignore every ", ignore_every));
          const Tensor targets = Targets(Shape(row_dims), v, dtype, ignore_every, -100, rng);
          Compare(logits, targets, 1.0f, -100, smoothing, false, false);
          Compare(logits, targets, 0.5f, -100, smoothing, false, true);
          Compare(logits, targets, 1.0f, -100, smoothing, true, false);
        }
      }
    }
  }
}

TEST_F(SoftmaxCrossEntropyCudaTest, OtherIgnoreIndexAllIgnoredAndNoRows) {
  std::mt19937_64 rng(42);
  Tensor logits = RandomTensor(Shape{9, 20}, rng);
  // A valid class as ignore_index: rows of class 4 are skipped.
  Compare(logits, Targets(Shape{9}, 20, DType::kI64, 2, 4, rng), 1.0f, 4, 0.2f, false, false);
  // Every row ignored: the loss is NaN and the gradient zero, as the CPU's.
  Tensor all_ignored = *Tensor::Empty(Shape{9}, DType::kI32, DefaultCpuAllocator());
  for (int i = 0; i < 9; ++i) all_ignored.data<int32_t>()[i] = -100;
  Compare(logits, all_ignored, 1.0f, -100, 0.0f, false, false);
  Compare(RandomTensor(Shape{0, 20}, rng), Targets(Shape{0}, 20, DType::kI64, 0, -100, rng), 1.0f,
          -100, 0.0f, false, false);
}

TEST_F(SoftmaxCrossEntropyCudaTest, ATargetOutOfRangeGivesNaN) {
  std::mt19937_64 rng(43);
  Tensor logits = RandomTensor(Shape{3, 10}, rng);
  Tensor targets = *Tensor::Empty(Shape{3}, DType::kI64, DefaultCpuAllocator());
  targets.data<int64_t>()[0] = 1;
  targets.data<int64_t>()[1] = 10;
  targets.data<int64_t>()[2] = 2;
  Tensor d_loss = DeviceEmpty(Shape{1});
  Tensor ws = DeviceEmpty(
      Shape{static_cast<int64_t>(SoftmaxCrossEntropyWorkspaceBytes(logits.shape()) / 4)});
  ASSERT_TRUE(
      SoftmaxCrossEntropy(stream(), ToDevice(logits), ToDevice(targets), d_loss, Tensor(), ws).ok());
  EXPECT_TRUE(std::isnan(ToHost(d_loss).data<float>()[0]));
}

TEST(SoftmaxCrossEntropyCudaChecks, RefuseHostTensorsWrongShapesAndOptions) {
  testing::CudaTaggedViews on_cuda;
  const Tensor logits = on_cuda(Shape{4, 8}), targets = on_cuda(Shape{4}, DType::kI64);
  const Tensor loss = on_cuda(Shape{1}), ws = on_cuda(Shape{64});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, EmptyF32(Shape{4, 8}), targets, loss, Tensor(), ws),
               absl::StatusCode::kInvalidArgument,
               {"SoftmaxCrossEntropy", "logits", "not on a CUDA device"});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, logits, on_cuda(Shape{4}), loss, Tensor(), ws),
               absl::StatusCode::kInvalidArgument,
               {"SoftmaxCrossEntropy", "targets", "i32 or i64"});
  ExpectStatus(
      SoftmaxCrossEntropy(nullptr, logits, on_cuda(Shape{5}, DType::kI32), loss, Tensor(), ws),
      absl::StatusCode::kInvalidArgument, {"SoftmaxCrossEntropy", "targets", "rows"});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, logits, targets, on_cuda(Shape{2}), Tensor(), ws),
               absl::StatusCode::kInvalidArgument, {"SoftmaxCrossEntropy", "loss"});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, logits, targets, loss, on_cuda(Shape{4, 9}), ws),
               absl::StatusCode::kInvalidArgument, {"SoftmaxCrossEntropy", "dlogits"});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, logits, targets, loss, Tensor(), on_cuda(Shape{2})),
               absl::StatusCode::kInvalidArgument,
               {"SoftmaxCrossEntropy", "workspace", "bytes"});
  ExpectStatus(
      SoftmaxCrossEntropy(nullptr, logits, targets, loss, Tensor(), ws, 1.0f, -100, 1.5f),
               absl::StatusCode::kInvalidArgument, {"SoftmaxCrossEntropy", "label_smoothing"});
  ExpectStatus(SoftmaxCrossEntropy(nullptr, logits, targets, loss, Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument, {"SoftmaxCrossEntropy", "workspace"});
}

}  // namespace
}  // namespace strata::cuda
