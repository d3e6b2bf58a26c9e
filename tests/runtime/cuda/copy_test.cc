// cuda::CopyStrided, TransposeCopy, ReshapeCopy, Concat and Split against the CPU kernels
// (runtime/cpu/copy.h), bit for bit: every element size (u8, bf16, f32, i64), permutes that keep
// or move the innermost dimension, views of up to 8 dimensions, strided destinations, sizes that
// are not multiples of a block and one larger than a full grid. The argument checks run without
// a device.
#include "runtime/cuda/copy.h"

#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/allocator.h"
#include "runtime/cpu/copy.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"
#include "tests/runtime/cuda/elementwise_test_util.h"

namespace strata::cuda {
namespace {

using testing::ExpectBitwiseEqual;
using testing::ExpectStatus;

// A contiguous host tensor of random bits (every byte random: NaN patterns included).
Tensor RandomBits(const Shape& shape, DType dtype, std::mt19937_64& rng) {
  Tensor t = Tensor::Empty(shape, dtype, DefaultCpuAllocator()).value();
  auto* p = static_cast<unsigned char*>(t.raw_data());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
  return t;
}

Tensor HostEmpty(const Shape& shape, DType dtype) {
  return Tensor::Empty(shape, dtype, DefaultCpuAllocator()).value();
}

constexpr DType kDTypes[] = {DType::kU8, DType::kBF16, DType::kF32, DType::kI64};

class CopyCudaTest : public testing::StridedCudaTest {};

TEST_F(CopyCudaTest, PermutesOfEveryElementSize) {
  std::mt19937_64 rng(31);
  struct Perm {
    Shape shape;
    std::vector<int> order;
  };
  const std::vector<Perm> perms = {
      {Shape{3, 5, 7, 9}, {0, 2, 1, 3}},             // the innermost stays
      {Shape{3, 5, 7, 9}, {3, 1, 0, 2}},             // the innermost moves
      {Shape{33, 65}, {1, 0}},                       // a plain transpose
      {Shape{1, 7, 1, 5}, {2, 3, 0, 1}},             // size-1 dimensions
      {Shape{2, 3, 2, 3, 2, 3, 2, 3}, {7, 6, 5, 4, 3, 2, 1, 0}},  // 8 dimensions, none merge
      {Shape{1030, 1031}, {1, 0}},                   // more than a full grid
      {Shape{4, 0, 3}, {2, 1, 0}},                   // empty
  };
  for (const Perm& p : perms) {
    for (DType dtype : kDTypes) {
      const std::string what = absl::StrCat(p.shape.ToString(), " ", DTypeName(dtype));
      const Tensor x = RandomBits(p.shape, dtype, rng);
      const Tensor view = x.Permute(p.order).value();
      const Tensor want = HostEmpty(view.shape(), dtype);
      ASSERT_TRUE(cpu::CopyStrided(view, want).ok()) << what;
      const Tensor dx = Upload(x, false);
      const Tensor out = OutputLike(view.shape(), dtype, false);
      ASSERT_TRUE(CopyStrided(stream(), dx.Permute(p.order).value(), out).ok()) << what;
      ExpectBitwiseEqual(Download(out), want, "CopyStrided " + what);

      // And back: out into the same permute of a destination, a strided dst, gives x again.
      const Tensor back = OutputLike(p.shape, dtype, false);
      ASSERT_TRUE(CopyStrided(stream(), out, back.Permute(p.order).value()).ok()) << what;
      ExpectBitwiseEqual(Download(back), x, "CopyStrided into a strided dst " + what);
    }
  }
}

TEST_F(CopyCudaTest, TransposeAndReshapeCopies) {
  std::mt19937_64 rng(32);
  for (DType dtype : kDTypes) {
    const Tensor x = RandomBits(Shape{6, 37, 5, 3}, dtype, rng);
    const Tensor want_t = HostEmpty(Shape{6, 5, 37, 3}, dtype);
    ASSERT_TRUE(cpu::TransposeCopy(x, 1, 2, want_t).ok());
    const Tensor xt = DeviceEmpty(Shape{6, 5, 37, 3}, dtype);
    ASSERT_TRUE(TransposeCopy(stream(), ToDevice(x), 1, 2, xt).ok());
    ExpectBitwiseEqual(ToHost(xt), want_t, absl::StrCat("TransposeCopy ", DTypeName(dtype)));

    // A non-contiguous source reshaped: the destination is viewed in the source's shape.
    const Tensor src = x.Transpose(0, 3).value();
    const Tensor want_r = HostEmpty(Shape{15, 37, 6}, dtype);
    ASSERT_TRUE(cpu::ReshapeCopy(src, want_r).ok());
    const Tensor r = DeviceEmpty(Shape{15, 37, 6}, dtype);
    ASSERT_TRUE(ReshapeCopy(stream(), ToDevice(x).Transpose(0, 3).value(), r).ok());
    ExpectBitwiseEqual(ToHost(r), want_r, absl::StrCat("ReshapeCopy ", DTypeName(dtype)));
  }
}

TEST_F(CopyCudaTest, ConcatAndSplitAlongEachDimension) {
  std::mt19937_64 rng(33);
  for (DType dtype : kDTypes) {
    for (int dim : {0, 1, -1}) {
      const std::string what = absl::StrCat(DTypeName(dtype), " dim ", dim);
      Shape s0{4, 5, 6}, s1{4, 5, 6}, s2{4, 5, 6};
      std::vector<int64_t> d0(s0.dims().begin(), s0.dims().end()), d1 = d0, d2 = d0;
      const int d = dim < 0 ? dim + 3 : dim;
      d0[d] = 3, d1[d] = 1, d2[d] = 7;
      const std::vector<Tensor> parts = {RandomBits(Shape(d0), dtype, rng),
                                         RandomBits(Shape(d1), dtype, rng),
                                         RandomBits(Shape(d2), dtype, rng)};
      std::vector<int64_t> dw = d0;
      dw[d] = 11;
      const Tensor want = HostEmpty(Shape(dw), dtype);
      ASSERT_TRUE(cpu::Concat(parts, dim, want).ok()) << what;
      const std::vector<Tensor> dparts = {ToDevice(parts[0]), ToDevice(parts[1]),
                                          ToDevice(parts[2])};
      const Tensor out = DeviceEmpty(Shape(dw), dtype);
      ASSERT_TRUE(Concat(stream(), dparts, dim, out).ok()) << what;
      ExpectBitwiseEqual(ToHost(out), want, "Concat " + what);

      const std::vector<Tensor> split = {DeviceEmpty(Shape(d0), dtype),
                                         DeviceEmpty(Shape(d1), dtype),
                                         DeviceEmpty(Shape(d2), dtype)};
      ASSERT_TRUE(Split(stream(), out, dim, split).ok()) << what;
      for (int i = 0; i < 3; ++i) {
        ExpectBitwiseEqual(ToHost(split[i]), parts[i], absl::StrCat("Split ", what, " part ", i));
      }
    }
  }
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(CopyCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  std::vector<float> bytes(64);
  const Tensor host = testing::EmptyF32(Shape{4, 3});
  const Tensor a = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kF32, Device::Cuda(0));
  const Tensor b = Tensor::Wrap(bytes.data(), Shape{3, 4}, DType::kF32, Device::Cuda(0));
  const Tensor ints = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kI32, Device::Cuda(0));
  ExpectStatus(CopyStrided(nullptr, host, a), absl::StatusCode::kInvalidArgument,
               {"CopyStrided", "src", "not on a CUDA device"});
  ExpectStatus(CopyStrided(nullptr, a, host), absl::StatusCode::kInvalidArgument,
               {"CopyStrided", "dst", "not on a CUDA device"});
  ExpectStatus(CopyStrided(nullptr, a, b), absl::StatusCode::kInvalidArgument,
               {"CopyStrided", "dst"});
  ExpectStatus(CopyStrided(nullptr, a, ints), absl::StatusCode::kInvalidArgument,
               {"CopyStrided", "dst", "i32"});
  ExpectStatus(TransposeCopy(nullptr, a, 0, 2, b), absl::StatusCode::kInvalidArgument,
               {"TransposeCopy", "cannot swap dimensions 0 and 2"});
  ExpectStatus(ReshapeCopy(nullptr, a, Tensor::Wrap(bytes.data(), Shape{5}, DType::kF32,
                                                    Device::Cuda(0))),
               absl::StatusCode::kInvalidArgument, {"ReshapeCopy", "element count"});

  const Tensor whole = Tensor::Wrap(bytes.data(), Shape{4, 6}, DType::kF32, Device::Cuda(0));
  ExpectStatus(Concat(nullptr, {a, host}, 1, whole), absl::StatusCode::kInvalidArgument,
               {"Concat", "part", "not on a CUDA device"});
  ExpectStatus(Concat(nullptr, {a, a}, 1, testing::EmptyF32(Shape{4, 6})),
               absl::StatusCode::kInvalidArgument, {"Concat", "out", "not on a CUDA device"});
  ExpectStatus(Concat(nullptr, {a, b}, 1, whole), absl::StatusCode::kInvalidArgument,
               {"Concat", "part 1", "outside dimension 1"});
  ExpectStatus(Split(nullptr, whole, 1, {a, a, a}), absl::StatusCode::kInvalidArgument,
               {"Split", "add up to 9", "has 6"});
  ExpectStatus(Split(nullptr, whole, 2, {a}), absl::StatusCode::kInvalidArgument,
               {"Split", "dimension 2 out of range"});
  ExpectStatus(Split(nullptr, whole, 1, {a, ints}), absl::StatusCode::kInvalidArgument,
               {"Split", "part 1", "expected dtype f32"});
}

}  // namespace
}  // namespace strata::cuda
