// cuda::EmbeddingForward and cuda::EmbeddingBackward against the CPU kernels, bit for bit (a
// gather, and sums over repeated ids in the CPU's token order), both grad modes, and the argument
// errors.
#include "runtime/cuda/embedding.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/allocator.h"
#include "runtime/cpu/embedding.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectStatus;
using testing::RandomTensor;

// Ids drawn from the first `distinct` rows of a (v, c) table: many repeats when distinct is small.
Tensor Ids(const Shape& shape, int64_t distinct, DType dtype, std::mt19937_64& rng) {
  Tensor t = *Tensor::Empty(shape, dtype, DefaultCpuAllocator());
  std::uniform_int_distribution<int64_t> pick(0, distinct - 1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::kI64) {
      t.data<int64_t>()[i] = pick(rng);
    } else {
      t.data<int32_t>()[i] = static_cast<int32_t>(pick(rng));
    }
  }
  return t;
}

void ExpectBitwiseEqual(const Tensor& got, const Tensor& want, const char* what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), want.nbytes()), 0) << what;
}

class EmbeddingCudaTest : public CudaKernelTest {};

TEST_F(EmbeddingCudaTest, ForwardAndBackwardEqualTheCpuKernelBitForBit) {
  std::mt19937_64 rng(51);
  struct Case {
    Shape ids;
    int64_t v, c, distinct;
  };
  for (const Case& k : {Case{Shape{1}, 1, 1, 1}, Case{Shape{3, 5}, 11, 7, 11},
                        Case{Shape{4, 300}, 50, 33, 5}, Case{Shape{2, 1500}, 1000, 300, 1000},
                        Case{Shape{8, 512}, 70, 768, 70}, Case{Shape{0}, 4, 8, 4},
                        Case{Shape{3, 1}, 200, 600, 3}}) {
    for (DType dtype : {DType::kI32, DType::kI64}) {
      SCOPED_TRACE(absl::StrCat(k.ids.ToString(), " V ", k.v, " C ", k.c, " ", DTypeName(dtype)));
      const Tensor ids = Ids(k.ids, k.distinct, dtype, rng);
      Tensor table = RandomTensor(Shape{k.v, k.c}, rng);
      Dims out_dims(k.ids.dims().begin(), k.ids.dims().end());
      out_dims.push_back(k.c);
      Tensor out = EmptyF32(Shape(out_dims));
      ASSERT_TRUE(cpu::EmbeddingForward(ids, table, out).ok());
      Tensor d_ids = ToDevice(ids), d_out = DeviceEmpty(out.shape());
      ASSERT_TRUE(EmbeddingForward(stream(), d_ids, ToDevice(table), d_out).ok());
      ExpectBitwiseEqual(ToHost(d_out), out, "forward");

      const Tensor dout = RandomTensor(out.shape(), rng);
      for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
        Tensor dtable = RandomTensor(Shape{k.v, k.c}, rng);
        Tensor d_dtable = ToDevice(dtable);
        ASSERT_TRUE(cpu::EmbeddingBackward(ids, dout, dtable, mode).ok());
        ASSERT_TRUE(EmbeddingBackward(stream(), d_ids, ToDevice(dout), d_dtable, mode).ok());
        ExpectBitwiseEqual(ToHost(d_dtable), dtable,
                           mode == GradMode::kOverwrite ? "backward" : "backward, accumulate");
      }
    }
  }
}

TEST_F(EmbeddingCudaTest, AnIdOutOfRangeGivesANaNRowAndIsSkippedByTheBackward) {
  Tensor ids = *Tensor::Empty(Shape{3}, DType::kI64, DefaultCpuAllocator());
  ids.data<int64_t>()[0] = 1;
  ids.data<int64_t>()[1] = 9;
  ids.data<int64_t>()[2] = -1;
  std::mt19937_64 rng(52);
  Tensor table = RandomTensor(Shape{4, 5}, rng);
  Tensor d_ids = ToDevice(ids), d_out = DeviceEmpty(Shape{3, 5});
  ASSERT_TRUE(EmbeddingForward(stream(), d_ids, ToDevice(table), d_out).ok());
  const Tensor out = ToHost(d_out);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(out.data<float>()[i], table.data<float>()[5 + i]);
    EXPECT_TRUE(std::isnan(out.data<float>()[5 + i]));
    EXPECT_TRUE(std::isnan(out.data<float>()[10 + i]));
  }
  Tensor d_dtable = DeviceEmpty(Shape{4, 5});
  ASSERT_TRUE(EmbeddingBackward(stream(), d_ids, ToDevice(RandomTensor(Shape{3, 5}, rng)),
                                d_dtable)
                  .ok());
  const Tensor dtable = ToHost(d_dtable);
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_FALSE(std::isnan(dtable.data<float>()[i])) << i;
    if (i / 5 != 1) {
      EXPECT_EQ(dtable.data<float>()[i], 0.0f) << i;
    }
  }
}

TEST(EmbeddingCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  testing::CudaTaggedViews on_cuda;
  const Tensor ids = on_cuda(Shape{2, 3}, DType::kI32), table = on_cuda(Shape{10, 4});
  const Tensor out = on_cuda(Shape{2, 3, 4});
  ExpectStatus(EmbeddingForward(nullptr, ids, EmptyF32(Shape{10, 4}), out),
               absl::StatusCode::kInvalidArgument,
               {"EmbeddingForward", "table", "not on a CUDA device"});
  ExpectStatus(EmbeddingForward(nullptr, on_cuda(Shape{2, 3}), table, out),
               absl::StatusCode::kInvalidArgument, {"EmbeddingForward", "ids", "i32 or i64"});
  ExpectStatus(EmbeddingForward(nullptr, ids, on_cuda(Shape{40}), out),
               absl::StatusCode::kInvalidArgument, {"EmbeddingForward", "table"});
  ExpectStatus(EmbeddingForward(nullptr, ids, table, on_cuda(Shape{2, 3, 5})),
               absl::StatusCode::kInvalidArgument, {"EmbeddingForward", "out"});
  ExpectStatus(EmbeddingBackward(nullptr, ids, on_cuda(Shape{6, 4}), table),
               absl::StatusCode::kInvalidArgument, {"EmbeddingBackward", "dout"});
  Tensor host_ids = *Tensor::Empty(Shape{2, 3}, DType::kI32, DefaultCpuAllocator());
  ExpectStatus(EmbeddingBackward(nullptr, host_ids, out, table),
               absl::StatusCode::kInvalidArgument,
               {"EmbeddingBackward", "ids", "not on a CUDA device"});
}

}  // namespace
}  // namespace strata::cuda
