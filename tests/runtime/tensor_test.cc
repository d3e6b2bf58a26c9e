// Tests of Tensor: construction, views (Slice, Select, Reshape, Transpose, Permute), copies across
// dtypes and strides, Fill, and the Check* helpers. Expected elements come from index arithmetic
// written here (Iota tensors hold their own flat index), and strided reads go through Gather, which
// walks storage with an odometer, independent of CopyFrom/Contiguous.
#include "runtime/tensor.h"

#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/arena_allocator.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::Vec;

Allocator& Cpu() { return DefaultCpuAllocator(); }

// 0, 1, 2, ... in a contiguous f32 tensor: each element holds its row-major index.
Tensor Iota(const Shape& shape) {
  Tensor t = Tensor::Empty(shape, DType::kF32, Cpu()).value();
  std::iota(t.data<float>(), t.data<float>() + t.numel(), 0.0f);
  return t;
}

double ReadElement(const std::byte* base, int64_t index, DType dtype) {
  const std::byte* p = base + index * static_cast<int64_t>(SizeOf(dtype));
  switch (dtype) {
    case DType::kF32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::kBF16: { uint16_t v; std::memcpy(&v, p, 2); return Bf16ToFloat(v); }
    case DType::kF16: { uint16_t v; std::memcpy(&v, p, 2); return F16ToFloat(v); }
    case DType::kI32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::kI64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    case DType::kU8: return static_cast<double>(static_cast<uint8_t>(*p));
  }
  return 0;
}

// The logical elements of `t` in row-major order, read with its strides and offset.
Vec Gather(const Tensor& t) {
  Vec out;
  const int rank = t.rank();
  if (t.numel() == 0) return out;
  std::vector<int64_t> index(rank, 0);
  const std::byte* base = static_cast<const std::byte*>(t.storage()->data());
  while (true) {
    int64_t offset = t.offset();
    for (int d = 0; d < rank; ++d) offset += index[d] * t.strides()[d];
    out.push_back(ReadElement(base, offset, t.dtype()));
    int d = rank - 1;
    while (d >= 0 && ++index[d] == t.shape()[d]) index[d--] = 0;
    if (d < 0) break;
  }
  return out;
}

std::vector<int64_t> Strides(const Tensor& t) { return {t.strides().begin(), t.strides().end()}; }

// ---- construction -------------------------------------------------------------------------------

TEST(TensorTest, EmptyIsContiguousAlignedAndOwned) {
  const Tensor t = Tensor::Empty(Shape{3, 5, 7}, DType::kBF16, Cpu()).value();
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.shape(), Shape({3, 5, 7}));
  EXPECT_EQ(t.rank(), 3);
  EXPECT_EQ(t.dim(-1), 7);
  EXPECT_EQ(t.numel(), 105);
  EXPECT_EQ(t.nbytes(), 210u);
  EXPECT_EQ(t.dtype(), DType::kBF16);
  EXPECT_EQ(t.device(), Device::Cpu());
  EXPECT_EQ(Strides(t), (std::vector<int64_t>{35, 7, 1}));
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_EQ(t.stride(0), 35);
  EXPECT_EQ(t.offset(), 0);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.storage()->owned());
  EXPECT_GE(t.storage()->bytes(), t.nbytes());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % kDefaultAlignment, 0u);
  const Tensor io = Tensor::Empty(Shape{100}, DType::kU8, Cpu(), kIoAlignment).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(io.raw_data()) % kIoAlignment, 0u);
  ExpectStatus(Tensor::Empty(Shape{4}, DType::kF32, Cpu(), 3).status(),
               absl::StatusCode::kInvalidArgument, {"f32[4]", "alignment 3"});
  // Zero elements: a defined tensor without bytes.
  const Tensor none = Tensor::Empty(Shape{0, 4}, DType::kF32, Cpu()).value();
  EXPECT_TRUE(none.defined());
  EXPECT_EQ(none.numel(), 0);
  EXPECT_EQ(none.nbytes(), 0u);
  // A scalar has one element.
  const Tensor scalar = Tensor::Zeros(Shape(), DType::kI64, Cpu()).value();
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(*scalar.data<int64_t>(), 0);
}

TEST(TensorTest, EmptyReportsTheAllocatorsErrorNamingTheTensor) {
  HostAllocator ram;
  auto arena = ArenaAllocator::Create(ram, 1024, "tiny").value();
  ExpectStatus(Tensor::Empty(Shape{16, 32}, DType::kF32, *arena).status(),
               absl::StatusCode::kResourceExhausted, {"f32[16, 32]", "2048 bytes", "tiny"});
}

TEST(TensorTest, EmptyRefusesSizesWhoseBytesOverflow) {
  // 2^62 elements is a valid shape, but 2^62 f32 elements would be 2^64 bytes.
  const int64_t dims[] = {int64_t{1} << 62};
  const Shape huge = Shape::Create(dims).value();
  ExpectStatus(Tensor::Empty(huge, DType::kF32, Cpu()).status(),
               absl::StatusCode::kResourceExhausted,
               {"f32[4611686018427387904]", "overflows 64 bits"});
}

TEST(TensorTest, ZerosClearsEveryDType) {
  for (const DType d :
       {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64, DType::kU8}) {
    const Tensor z = Tensor::Zeros(Shape{3, 17}, d, Cpu()).value();
    EXPECT_EQ(z.dtype(), d);
    const std::byte* p = static_cast<const std::byte*>(z.raw_data());
    for (size_t i = 0; i < z.nbytes(); ++i) ASSERT_EQ(p[i], std::byte{0}) << DTypeName(d) << i;
  }
  EXPECT_EQ(Tensor::Zeros(Shape{0}, DType::kF32, Cpu()).value().numel(), 0);
}

TEST(TensorTest, WrapBorrowsTheCallersMemory) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  const Tensor w = Tensor::Wrap(buf, Shape{2, 3}, DType::kF32, Device::Cpu());
  EXPECT_FALSE(w.storage()->owned());
  EXPECT_EQ(w.data<float>(), buf);
  EXPECT_EQ(w.storage()->bytes(), sizeof(buf));
  EXPECT_TRUE(w.is_contiguous());
  EXPECT_EQ(Gather(w), (Vec{1, 2, 3, 4, 5, 6}));
  w.data<float>()[4] = 50;  // writes go to the caller's buffer
  EXPECT_EQ(buf[4], 50);
  uint16_t halves[2] = {0x3c00, 0xc000};  // f16 1 and -2
  EXPECT_EQ(Gather(Tensor::Wrap(halves, Shape{2}, DType::kF16, Device::Cpu())), (Vec{1, -2}));
  const Tensor gpu = Tensor::Wrap(nullptr, Shape{2}, DType::kF32, Device::Cuda(1));
  EXPECT_EQ(gpu.device(), Device::Cuda(1));
  EXPECT_EQ(gpu.ToString(), "f32[2] on cuda:1");
}

TEST(TensorTest, UndefinedTensor) {
  const Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_EQ(t.raw_data(), nullptr);
  EXPECT_EQ(t.ToString(), "undefined");
  EXPECT_EQ(t.device(), Device::Cpu());
}

// ---- View ---------------------------------------------------------------------------------------

TEST(TensorTest, ViewReadsTheElementsItsStridesName) {
  const Tensor base = Iota(Shape{20});
  const int64_t strides[] = {5, 2};
  const Tensor v = Tensor::View(base.storage(), Shape{3, 2}, strides, 1, DType::kF32).value();
  EXPECT_EQ(Gather(v), (Vec{1, 3, 6, 8, 11, 13}));
  EXPECT_FALSE(v.is_contiguous());
  EXPECT_EQ(v.offset(), 1);
  EXPECT_EQ(v.ToString(), "f32[3, 2] strides [5, 2]");
  // Reversed and broadcast (zero stride) views stay inside the storage.
  const int64_t reversed[] = {-1};
  EXPECT_EQ(Gather(Tensor::View(base.storage(), Shape{4}, reversed, 19, DType::kF32).value()),
            (Vec{19, 18, 17, 16}));
  const int64_t broadcast[] = {0, 1};
  EXPECT_EQ(Gather(Tensor::View(base.storage(), Shape{2, 3}, broadcast, 4, DType::kF32).value()),
            (Vec{4, 5, 6, 4, 5, 6}));
  // The last element exactly at the end of the storage is fine; an empty view may sit anywhere.
  const int64_t one[] = {1};
  EXPECT_TRUE(Tensor::View(base.storage(), Shape{5}, one, 15, DType::kF32).ok());
  EXPECT_TRUE(Tensor::View(base.storage(), Shape{0}, one, 1000, DType::kF32).ok());
  // The same bytes viewed as a smaller dtype hold twice as many elements.
  EXPECT_TRUE(Tensor::View(base.storage(), Shape{40}, one, 0, DType::kBF16).ok());
}

TEST(TensorTest, ViewBoundsAreChecked) {
  const Tensor base = Iota(Shape{3, 4});
  const int64_t strides[] = {4, 1};
  ExpectStatus(Tensor::View(base.storage(), Shape{4, 4}, strides, 0, DType::kF32).status(),
               absl::StatusCode::kOutOfRange,
               {"shape [4, 4]", "strides [4, 1]", "offset 0", "[0, 15]", "storage of 12"});
  ExpectStatus(Tensor::View(base.storage(), Shape{3, 4}, strides, 1, DType::kF32).status(),
               absl::StatusCode::kOutOfRange, {"offset 1", "[1, 12]"});
  const int64_t reversed[] = {-1};
  ExpectStatus(Tensor::View(base.storage(), Shape{3}, reversed, 1, DType::kF32).status(),
               absl::StatusCode::kOutOfRange, {"[-1, 1]"});
  const int64_t one[] = {1};
  ExpectStatus(Tensor::View(base.storage(), Shape{1}, one, -1, DType::kF32).status(),
               absl::StatusCode::kOutOfRange, {"offset -1"});
  ExpectStatus(Tensor::View(base.storage(), Shape{7}, one, 0, DType::kI64).status(),
               absl::StatusCode::kOutOfRange, {"storage of 6 i64 elements"});
  ExpectStatus(Tensor::View(base.storage(), Shape{2, 2}, one, 0, DType::kF32).status(),
               absl::StatusCode::kInvalidArgument, {"1 strides", "[2, 2]"});
  ExpectStatus(Tensor::View(nullptr, Shape{1}, one, 0, DType::kF32).status(),
               absl::StatusCode::kInvalidArgument, {"null storage"});
}

// ---- Slice / Select -----------------------------------------------------------------------------

TEST(TensorTest, SliceWithStepsSelectsTheRightElements) {
  const Tensor x = Iota(Shape{4, 7, 3});
  for (const int64_t step : {1, 2, 3, 10}) {
    for (const auto& [start, end] : {std::pair<int64_t, int64_t>{0, 7}, {1, 6}, {2, 3}, {5, 5}}) {
      SCOPED_TRACE(::testing::Message() << "[" << start << ":" << end << ":" << step << "]");
      const Tensor s = x.Slice(1, start, end, step).value();
      const int64_t n = (end - start + step - 1) / step;
      ASSERT_EQ(s.shape(), Shape({4, n, 3}));
      EXPECT_EQ(s.storage(), x.storage());  // a view
      EXPECT_EQ(Strides(s), (std::vector<int64_t>{21, 3 * step, 1}));
      Vec expected;
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t k = 0; k < 3; ++k) expected.push_back(i * 21 + (start + j * step) * 3 + k);
      EXPECT_EQ(Gather(s), expected);
    }
  }
  // Negative dims count from the end; slices of slices compose.
  const Tensor inner = x.Slice(-1, 1, 3).value().Slice(0, 1, 4, 2).value();
  EXPECT_EQ(inner.shape(), Shape({2, 7, 2}));
  EXPECT_EQ(inner.offset(), 21 + 1);
  EXPECT_EQ(Gather(inner)[0], 22);
  EXPECT_EQ(Gather(inner)[2 * 7 * 2 - 1], 3 * 21 + 6 * 3 + 2);
}

TEST(TensorTest, SliceErrorsNameTheRangeAndTheTensor) {
  const Tensor x = Iota(Shape{3, 4});
  ExpectStatus(x.Slice(1, 2, 5).status(), absl::StatusCode::kOutOfRange,
               {"[2, 5)", "dimension 1", "size 4", "f32[3, 4]"});
  ExpectStatus(x.Slice(1, -1, 2).status(), absl::StatusCode::kOutOfRange, {"[-1, 2)"});
  ExpectStatus(x.Slice(0, 2, 1).status(), absl::StatusCode::kOutOfRange, {"[2, 1)"});
  ExpectStatus(x.Slice(2, 0, 1).status(), absl::StatusCode::kInvalidArgument,
               {"Slice", "dimension 2", "f32[3, 4]"});
  ExpectStatus(x.Slice(-3, 0, 1).status(), absl::StatusCode::kInvalidArgument, {"dimension -3"});
  ExpectStatus(x.Slice(0, 0, 1, 0).status(), absl::StatusCode::kInvalidArgument,
               {"step 0", "positive"});
  ExpectStatus(x.Slice(0, 0, 1, -1).status(), absl::StatusCode::kInvalidArgument, {"step -1"});
}

TEST(TensorTest, SelectDropsTheDimension) {
  const Tensor x = Iota(Shape{4, 5, 6});
  const Tensor sel = x.Select(2, 3).value();
  EXPECT_EQ(sel.shape(), Shape({4, 5}));
  EXPECT_EQ(Strides(sel), (std::vector<int64_t>{30, 6}));
  Vec expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) expected.push_back(i * 30 + j * 6 + 3);
  EXPECT_EQ(Gather(sel), expected);
  const Tensor row = x.Select(-3, 2).value();
  EXPECT_EQ(row.shape(), Shape({5, 6}));
  EXPECT_TRUE(row.is_contiguous());
  EXPECT_EQ(Gather(row)[0], 60);
  const Tensor scalar = x.Select(0, 1).value().Select(0, 2).value().Select(0, 4).value();
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(Gather(scalar), (Vec{30 + 12 + 4}));
  ExpectStatus(x.Select(1, 5).status(), absl::StatusCode::kOutOfRange, {"[5, 6)", "size 5"});
  ExpectStatus(x.Select(1, -1).status(), absl::StatusCode::kOutOfRange, {"[-1, 0)"});
  ExpectStatus(x.Select(3, 0).status(), absl::StatusCode::kInvalidArgument, {"dimension 3"});
}

// ---- Reshape ------------------------------------------------------------------------------------

TEST(TensorTest, ReshapeOfAContiguousTensorIsAView) {
  const Tensor x = Iota(Shape{4, 6});
  const Tensor r = x.Reshape({2, -1, 3}).value();
  EXPECT_EQ(r.shape(), Shape({2, 4, 3}));
  EXPECT_EQ(Strides(r), (std::vector<int64_t>{12, 3, 1}));
  EXPECT_EQ(r.storage(), x.storage());
  EXPECT_EQ(Gather(r), Gather(x));
  EXPECT_EQ(x.Reshape({-1}).value().shape(), Shape({24}));
  EXPECT_EQ(x.Reshape({-1, 1, 8}).value().shape(), Shape({3, 1, 8}));
  EXPECT_EQ(x.Reshape({1, 24, 1}).value().shape(), Shape({1, 24, 1}));
  // To and from rank 0.
  const Tensor one = Iota(Shape{1, 1});
  EXPECT_EQ(one.Reshape({}).value().rank(), 0);
  EXPECT_EQ(one.Reshape({}).value().Reshape({1, 1, 1}).value().shape(), Shape({1, 1, 1}));
  // Zero elements: any shape of zero elements.
  const Tensor empty = Tensor::Empty(Shape{0, 3}, DType::kF32, Cpu()).value();
  EXPECT_EQ(empty.Reshape({3, 0, 7}).value().shape(), Shape({3, 0, 7}));
}

TEST(TensorTest, ReshapeOfStridedTensorsIsAViewWhenTheStridesAllow) {
  const Tensor x = Iota(Shape{4, 6});
  // Whole rows of a matrix stay contiguous with each other.
  const Tensor rows = x.Slice(0, 1, 3).value();
  const Tensor flat_rows = rows.Reshape({12}).value();
  EXPECT_EQ(flat_rows.storage(), x.storage());
  EXPECT_EQ(Gather(flat_rows), Gather(rows));
  // Every other column: the rows chain with stride 2, so flattening needs no copy.
  const Tensor cols = x.Slice(1, 0, 6, 2).value();  // (4, 3), strides (6, 2)
  const Tensor flat_cols = cols.Reshape({-1}).value();
  EXPECT_EQ(Strides(flat_cols), (std::vector<int64_t>{2}));
  EXPECT_EQ(Gather(flat_cols), (Vec{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22}));
  // A transposed matrix can split (or merge back) its outer dimension, and add size-1 dims.
  const Tensor t = x.Transpose(0, 1).value();  // (6, 4), strides (1, 6)
  const Tensor split = t.Reshape({2, 3, 4}).value();
  EXPECT_EQ(Strides(split), (std::vector<int64_t>{3, 1, 6}));
  EXPECT_EQ(Gather(split), Gather(t));
  const Tensor unsqueezed = t.Reshape({6, 1, 4, 1}).value();
  EXPECT_EQ(Gather(unsqueezed), Gather(t));
  EXPECT_EQ(unsqueezed.Reshape({6, 4}).value().shape(), Shape({6, 4}));
  // Padded rows (each row followed by a gap): split and merge the outer dims, split the inner one.
  const Tensor padded = testing::MakeStrided(Iota(Shape{4, 6}));
  ASSERT_FALSE(padded.is_contiguous());
  const Tensor a = padded.Reshape({2, 2, 6}).value();
  EXPECT_EQ(a.storage(), padded.storage());
  EXPECT_EQ(Gather(a), Gather(x));
  const Tensor b = padded.Reshape({4, 2, 3}).value();
  EXPECT_EQ(Gather(b), Gather(x));
  // Broadcast (stride 0) rows can be split but not flattened.
  const int64_t broadcast[] = {0, 1};
  const Tensor bc = Tensor::View(x.storage(), Shape{3, 4}, broadcast, 0, DType::kF32).value();
  EXPECT_EQ(Gather(bc.Reshape({3, 2, 2}).value()), Gather(bc));
  ExpectStatus(bc.Reshape({12}).status(), absl::StatusCode::kFailedPrecondition, {"needs a copy"});
}

TEST(TensorTest, ReshapeFailsWhenACopyIsNeeded) {
  const Tensor x = Iota(Shape{4, 6});
  const Tensor t = x.Transpose(0, 1).value();
  ExpectStatus(t.Reshape({24}).status(), absl::StatusCode::kFailedPrecondition,
               {"Reshape of f32[6, 4] strides [1, 6] to [24]", "needs a copy", "Contiguous"});
  ExpectStatus(t.Reshape({3, 8}).status(), absl::StatusCode::kFailedPrecondition,
               {"to [3, 8]", "needs a copy"});
  ExpectStatus(testing::MakeStrided(x).Reshape({-1}).status(),
               absl::StatusCode::kFailedPrecondition, {"to [24]"});  // -1 shown as inferred
  ExpectStatus(x.Slice(1, 0, 3).value().Reshape({12}).status(),
               absl::StatusCode::kFailedPrecondition, {"needs a copy"});
  // After Contiguous the same reshape works.
  EXPECT_EQ(t.Contiguous(Cpu()).value().Reshape({24}).value().shape(), Shape({24}));
}

TEST(TensorTest, ReshapeRejectsBadSizes) {
  const Tensor x = Iota(Shape{4, 6});
  ExpectStatus(x.Reshape({5, -1}).status(), absl::StatusCode::kInvalidArgument,
               {"to [5, -1]", "cannot infer the -1 size"});
  ExpectStatus(x.Reshape({-1, -1}).status(), absl::StatusCode::kInvalidArgument,
               {"invalid size -1"});
  ExpectStatus(x.Reshape({5, 5}).status(), absl::StatusCode::kInvalidArgument,
               {"f32[4, 6]", "24 elements", "[5, 5]", "25 elements"});
  ExpectStatus(x.Reshape({-2, 12}).status(), absl::StatusCode::kInvalidArgument,
               {"invalid size -2"});
  ExpectStatus(x.Reshape({0, -1}).status(), absl::StatusCode::kInvalidArgument,
               {"cannot infer"});
  ExpectStatus(x.Reshape({}).status(), absl::StatusCode::kInvalidArgument, {"1 elements"});
}

// ---- Transpose / Permute ------------------------------------------------------------------------

TEST(TensorTest, TransposeSwapsSizesAndStrides) {
  const Tensor x = Iota(Shape{2, 3, 4});
  const Tensor t = x.Transpose(0, -1).value();
  EXPECT_EQ(t.shape(), Shape({4, 3, 2}));
  EXPECT_EQ(Strides(t), (std::vector<int64_t>{1, 4, 12}));
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_FALSE(t.is_contiguous());
  Vec expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) expected.push_back(k * 12 + j * 4 + i);
  EXPECT_EQ(Gather(t), expected);
  EXPECT_EQ(Gather(t.Transpose(2, 0).value()), Gather(x));  // its own inverse
  EXPECT_EQ(Gather(x.Transpose(1, 1).value()), Gather(x));
  ExpectStatus(x.Transpose(0, 3).status(), absl::StatusCode::kInvalidArgument,
               {"Transpose", "dimension 3", "f32[2, 3, 4]"});
  ExpectStatus(x.Transpose(-4, 0).status(), absl::StatusCode::kInvalidArgument, {"dimension -4"});
}

TEST(TensorTest, PermuteReordersDimensions) {
  const Tensor x = Iota(Shape{2, 3, 4});
  const int order[] = {2, 0, 1};
  const Tensor p = x.Permute(order).value();
  EXPECT_EQ(p.shape(), Shape({4, 2, 3}));
  EXPECT_EQ(Strides(p), (std::vector<int64_t>{1, 12, 4}));
  Vec expected;
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 3; ++c) expected.push_back(b * 12 + c * 4 + a);
  EXPECT_EQ(Gather(p), expected);
  const int negative[] = {-1, -3, -2};  // the same permutation
  EXPECT_EQ(Gather(x.Permute(negative).value()), expected);
  const int inverse[] = {1, 2, 0};
  EXPECT_EQ(Gather(p.Permute(inverse).value()), Gather(x));
}

TEST(TensorTest, PermuteErrors) {
  const Tensor x = Iota(Shape{2, 3, 4});
  const int short_order[] = {0, 1};
  ExpectStatus(x.Permute(short_order).status(), absl::StatusCode::kInvalidArgument,
               {"Permute of f32[2, 3, 4]", "order [0, 1]", "2 entries"});
  const int dup[] = {0, 0, 1};
  ExpectStatus(x.Permute(dup).status(), absl::StatusCode::kInvalidArgument,
               {"order [0, 0, 1]", "not a permutation"});
  const int out[] = {0, 1, 3};
  ExpectStatus(x.Permute(out).status(), absl::StatusCode::kInvalidArgument, {"not a permutation"});
  const int aliased[] = {0, 1, -1};  // -1 is 2: fine
  EXPECT_TRUE(x.Permute(aliased).ok());
  const int dup_negative[] = {2, 1, -1};  // -1 is 2 again
  ExpectStatus(x.Permute(dup_negative).status(), absl::StatusCode::kInvalidArgument,
               {"not a permutation"});
}

// ---- is_contiguous, ToString, stride ------------------------------------------------------------

TEST(TensorTest, IsContiguousIgnoresSizeOneDimensionsAndOffsets) {
  const Tensor x = Iota(Shape{4, 6});
  EXPECT_TRUE(x.is_contiguous());
  EXPECT_TRUE(x.Slice(0, 1, 3).value().is_contiguous());  // offset only
  EXPECT_FALSE(x.Slice(1, 1, 3).value().is_contiguous());
  EXPECT_FALSE(x.Slice(1, 2, 3).value().is_contiguous());  // (4, 1), strides (6, 1)
  // A size-1 dimension may carry any stride.
  const int64_t odd[] = {999, 1};
  EXPECT_TRUE(Tensor::View(x.storage(), Shape{1, 6}, odd, 0, DType::kF32).value().is_contiguous());
  EXPECT_FALSE(x.Transpose(0, 1).value().is_contiguous());
  EXPECT_TRUE(x.Slice(0, 2, 3).value().Transpose(0, 1).value().is_contiguous());  // (6, 1)
  EXPECT_FALSE(x.Select(1, 0).value().is_contiguous());  // stride 6 over 4 elements
  const Tensor scalar = x.Select(0, 1).value().Select(0, 1).value();
  EXPECT_TRUE(scalar.is_contiguous());
}

TEST(TensorTest, ToStringShowsDTypeShapeAndStridesWhenStrided) {
  const Tensor x = Iota(Shape{2, 3});
  EXPECT_EQ(x.ToString(), "f32[2, 3]");
  EXPECT_EQ(x.Transpose(0, 1).value().ToString(), "f32[3, 2] strides [1, 3]");
  EXPECT_EQ(Tensor::Empty(Shape{5}, DType::kBF16, Cpu()).value().ToString(), "bf16[5]");
  EXPECT_EQ(x.Select(0, 0).value().Select(0, 0).value().ToString(), "f32[]");
}

// ---- Contiguous and CopyFrom --------------------------------------------------------------------

TEST(TensorTest, ContiguousCopiesEveryKindOfView) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{5, 7, 3}, rng);
  const int order[] = {1, 2, 0};
  const Tensor views[] = {x,
                          x.Transpose(0, 2).value(),
                          x.Slice(1, 1, 7, 3).value(),
                          x.Select(1, 4).value(),
                          x.Permute(order).value(),
                          testing::MakeStrided(x)};
  for (const Tensor& v : views) {
    SCOPED_TRACE(v.ToString());
    const Tensor c = v.Contiguous(Cpu()).value();
    EXPECT_TRUE(c.is_contiguous());
    EXPECT_EQ(c.offset(), 0);
    EXPECT_EQ(c.shape(), v.shape());
    EXPECT_NE(c.storage(), v.storage());  // always a new tensor
    EXPECT_EQ(Gather(c), Gather(v));
  }
  ExpectStatus(Tensor().Contiguous(Cpu()).status(), absl::StatusCode::kInvalidArgument,
               {"Contiguous", "undefined"});
}

// Every dtype pair, from a strided source into a strided destination inside a larger buffer. The
// reference converts each element on its own with ConvertElements (tested in dtype_test); bytes of
// the destination buffer outside the view must stay as they were.
TEST(TensorTest, CopyFromConvertsEveryDTypePairAcrossStrides) {
  const DType dtypes[] = {DType::kF32, DType::kBF16, DType::kF16,
                          DType::kI32, DType::kI64,  DType::kU8};
  std::mt19937_64 rng(2);
  const Tensor values = testing::RandomTensor(Shape{6, 5, 4}, rng, -40.0f, 300.0f);
  for (const DType from : dtypes) {
    Tensor src_full = Tensor::Empty(Shape{6, 5, 4}, from, Cpu()).value();
    ConvertElements(values.raw_data(), DType::kF32, src_full.raw_data(), from, values.numel());
    const Tensor src = src_full.Transpose(0, 2).value().Slice(2, 0, 6, 2).value();  // (4, 5, 3)
    const Vec src_values = Gather(src);
    for (const DType to : dtypes) {
      SCOPED_TRACE(::testing::Message() << DTypeName(from) << " -> " << DTypeName(to));
      Tensor buffer = Tensor::Empty(Shape{5, 4, 7}, to, Cpu()).value();
      std::memset(buffer.raw_data(), 0x7b, buffer.nbytes());
      const std::vector<std::byte> before(static_cast<std::byte*>(buffer.raw_data()),
                                          static_cast<std::byte*>(buffer.raw_data()) +
                                              buffer.nbytes());
      const Tensor dst = buffer.Permute(std::vector<int>{1, 0, 2}).value().Slice(2, 1, 4).value();
      ASSERT_EQ(dst.shape(), src.shape());
      ASSERT_TRUE(dst.CopyFrom(src).ok());
      // Expected: each source element converted on its own.
      const Vec got = Gather(dst);
      for (size_t i = 0; i < got.size(); ++i) {
        std::byte one_src[8], one_dst[8];
        const float f = static_cast<float>(src_values[i]);
        if (from == DType::kI64) {
          const int64_t v = static_cast<int64_t>(src_values[i]);
          std::memcpy(one_src, &v, 8);
        } else {
          ConvertElements(&f, DType::kF32, one_src, from, 1);
        }
        ConvertElements(one_src, from, one_dst, to, 1);
        ASSERT_EQ(got[i], ReadElement(one_dst, 0, to)) << i;
      }
      // Bytes outside the view: columns 0, 4, 5, 6 of the innermost dimension.
      const std::byte* after = static_cast<const std::byte*>(buffer.raw_data());
      const size_t size = SizeOf(to);
      for (int64_t e = 0; e < buffer.numel(); ++e) {
        const int64_t col = e % 7;
        if (col >= 1 && col < 4) continue;
        ASSERT_EQ(std::memcmp(after + e * size, before.data() + e * size, size), 0) << e;
      }
    }
  }
}

TEST(TensorTest, CopyFromLargeStridedTensorsUsesEveryRow) {
  // Above the parallel threshold (2^15 elements).
  std::mt19937_64 rng(3);
  const Tensor x = testing::RandomTensor(Shape{64, 40, 17}, rng);
  const Tensor t = x.Permute(std::vector<int>{2, 0, 1}).value();
  Tensor out = Tensor::Empty(t.shape(), DType::kF32, Cpu()).value();
  ASSERT_TRUE(out.CopyFrom(t).ok());
  EXPECT_EQ(Gather(out), Gather(t));
  Tensor bf = Tensor::Empty(t.shape(), DType::kBF16, Cpu()).value();
  ASSERT_TRUE(bf.CopyFrom(t).ok());
  const Vec a = Gather(bf), b = Gather(t);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i], Bf16ToFloat(FloatToBf16(static_cast<float>(b[i])))) << i;
  }
}

TEST(TensorTest, CopyFromEdgeCasesAndErrors) {
  const Tensor x = Iota(Shape{3, 4});
  // Contiguous same-dtype copy into a sliced-rows view (the memmove path) at an offset.
  Tensor big = Tensor::Zeros(Shape{5, 4}, DType::kF32, Cpu()).value();
  ASSERT_TRUE(big.Slice(0, 1, 4).value().CopyFrom(x).ok());
  Vec expected(4, 0.0);
  for (int i = 0; i < 12; ++i) expected.push_back(i);
  expected.insert(expected.end(), 4, 0.0);
  EXPECT_EQ(Gather(big), expected);
  // Rank 0 and empty tensors.
  Tensor s = Tensor::Empty(Shape(), DType::kI32, Cpu()).value();
  ASSERT_TRUE(s.CopyFrom(x.Select(0, 2).value().Select(0, 3).value()).ok());
  EXPECT_EQ(*s.data<int32_t>(), 11);
  Tensor e = Tensor::Empty(Shape{0, 4}, DType::kF32, Cpu()).value();
  EXPECT_TRUE(e.CopyFrom(x.Slice(0, 1, 1).value()).ok());
  // Errors.
  Tensor wrong = Tensor::Empty(Shape{4, 3}, DType::kF32, Cpu()).value();
  ExpectStatus(wrong.CopyFrom(x), absl::StatusCode::kInvalidArgument,
               {"CopyFrom", "source f32[3, 4]", "destination f32[4, 3]", "differ in shape"});
  ExpectStatus(wrong.CopyFrom(Tensor()), absl::StatusCode::kInvalidArgument,
               {"source is an undefined tensor"});
  ExpectStatus(Tensor().CopyFrom(x), absl::StatusCode::kInvalidArgument,
               {"destination is an undefined tensor"});
  const Tensor gpu = Tensor::Wrap(nullptr, Shape{3, 4}, DType::kF32, Device::Cuda(0));
  ExpectStatus(gpu.CopyFrom(x), absl::StatusCode::kInvalidArgument,
               {"destination", "cuda:0", "CPU cannot address"});
  ExpectStatus(wrong.Reshape({3, 4}).value().CopyFrom(gpu), absl::StatusCode::kInvalidArgument,
               {"source", "cuda:0"});
}

// ---- Fill ---------------------------------------------------------------------------------------

TEST(TensorTest, FillWritesOnlyTheViewAndConvertsTheValue) {
  const Tensor z = Tensor::Zeros(Shape{2, 3}, DType::kI64, Cpu()).value();
  ASSERT_TRUE(z.Slice(1, 1, 3).value().Fill(7).ok());
  EXPECT_EQ(Gather(z), (Vec{0, 7, 7, 0, 7, 7}));
  ASSERT_TRUE(z.Transpose(0, 1).value().Select(1, 0).value().Fill(-2).ok());
  EXPECT_EQ(Gather(z), (Vec{-2, -2, -2, 0, 7, 7}));
  // Floating-point values round to the dtype; integer dtypes truncate and clamp.
  struct Case {
    DType dtype;
    double value;
    double expected;
  };
  const Case cases[] = {
      {DType::kF32, 0.1, static_cast<double>(0.1f)},
      {DType::kBF16, 1.00390625, 1.0},   // 1 + 2^-8: the bf16 tie rounds to even
      {DType::kBF16, -3.0, -3.0},
      {DType::kF16, 70000.0, std::numeric_limits<double>::infinity()},
      {DType::kF16, 1.0 / 3, static_cast<double>(F16ToFloat(0x3555))},
      {DType::kI32, 2.7, 2},
      {DType::kI32, -2.7, -2},
      {DType::kI32, 1e30, 2147483647},
      {DType::kI32, -1e30, -2147483648.0},
      {DType::kI64, 1e30, 9223372036854775807.0},
      {DType::kI64, -1e30, -9223372036854775808.0},
      {DType::kU8, -1, 0},
      {DType::kU8, 300, 255},
      {DType::kU8, 254.9, 254},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << DTypeName(c.dtype) << " fill " << c.value);
    const Tensor t = Tensor::Empty(Shape{3, 3}, c.dtype, Cpu()).value();
    ASSERT_TRUE(t.Fill(c.value).ok());
    EXPECT_EQ(Gather(t), Vec(9, c.expected));
  }
  // Strided view in a large buffer (parallel rows); the bytes between rows are untouched.
  const Tensor big = Tensor::Zeros(Shape{300, 130}, DType::kF32, Cpu()).value();
  ASSERT_TRUE(big.Slice(1, 0, 128).value().Fill(1.5).ok());
  const Vec all = Gather(big);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i % 130 < 128 ? 1.5 : 0.0) << i;
  ExpectStatus(Tensor().Fill(1), absl::StatusCode::kInvalidArgument, {"Fill", "undefined"});
  ExpectStatus(Tensor::Wrap(nullptr, Shape{2}, DType::kF32, Device::Cuda(0)).Fill(1),
               absl::StatusCode::kInvalidArgument, {"Fill", "cuda:0"});
}

// ---- Check helpers ------------------------------------------------------------------------------

TEST(TensorTest, CheckHelpersNameOpArgumentAndShapes) {
  float buf[4] = {1, 2, 3, 4};
  const Tensor w = Tensor::Wrap(buf, Shape{2, 2}, DType::kF32, Device::Cpu());
  EXPECT_TRUE(CheckDefined("Op", "x", w).ok());
  EXPECT_TRUE(CheckDType("Op", "x", w, DType::kF32).ok());
  EXPECT_TRUE(CheckRank("Op", "x", w, 2).ok());
  EXPECT_TRUE(CheckShape("Op", "x", w, Shape{2, 2}).ok());
  EXPECT_TRUE(CheckContiguous("Op", "x", w).ok());
  EXPECT_TRUE(CheckHostAddressable("Op", "x", w).ok());
  EXPECT_TRUE(CheckF32Contiguous("Op", "x", w).ok());
  EXPECT_TRUE(CheckF32Contiguous("Op", "x", w, Shape{2, 2}).ok());

  ExpectStatus(CheckDefined("Op", "bias", Tensor()), absl::StatusCode::kInvalidArgument,
               {"Op: bias is an undefined tensor"});
  ExpectStatus(CheckDType("LayerNormForward", "gamma", w, DType::kBF16),
               absl::StatusCode::kInvalidArgument,
               {"LayerNormForward: gamma is f32[2, 2], expected dtype bf16"});
  ExpectStatus(CheckRank("Linear", "weight", w, 3), absl::StatusCode::kInvalidArgument,
               {"Linear: weight is f32[2, 2], expected rank 3"});
  ExpectStatus(CheckShape("Op", "x", w, Shape{2, 3}), absl::StatusCode::kInvalidArgument,
               {"Op: x is f32[2, 2], expected shape [2, 3]"});
  ExpectStatus(CheckContiguous("Op", "x", w.Transpose(0, 1).value()),
               absl::StatusCode::kInvalidArgument,
               {"Op: x is f32[2, 2] strides [1, 2], which is not contiguous"});
  const Tensor gpu = Tensor::Wrap(nullptr, Shape{2}, DType::kF32, Device::Cuda(0));
  ExpectStatus(CheckHostAddressable("Op", "x", gpu), absl::StatusCode::kInvalidArgument,
               {"Op: x is f32[2] on cuda:0, which the CPU cannot address"});
  // Undefined tensors are reported as such by every helper, not as a wrong dtype or shape.
  for (const absl::Status& s :
       {CheckDType("Op", "y", Tensor(), DType::kF32), CheckRank("Op", "y", Tensor(), 1),
        CheckShape("Op", "y", Tensor(), Shape{1}), CheckContiguous("Op", "y", Tensor()),
        CheckF32Contiguous("Op", "y", Tensor())}) {
    ExpectStatus(s, absl::StatusCode::kInvalidArgument, {"Op: y is an undefined tensor"});
  }
  // CheckF32Contiguous checks dtype, then device, then layout, then shape.
  const Tensor ids = Tensor::Empty(Shape{2, 2}, DType::kI64, Cpu()).value();
  ExpectStatus(CheckF32Contiguous("Op", "x", ids), absl::StatusCode::kInvalidArgument,
               {"i64[2, 2]", "expected dtype f32"});
  ExpectStatus(CheckF32Contiguous("Op", "x", gpu), absl::StatusCode::kInvalidArgument,
               {"CPU cannot address"});
  ExpectStatus(CheckF32Contiguous("Op", "x", w.Transpose(0, 1).value(), Shape{2, 2}),
               absl::StatusCode::kInvalidArgument, {"not contiguous"});
  ExpectStatus(CheckF32Contiguous("Op", "x", w, Shape{4}), absl::StatusCode::kInvalidArgument,
               {"expected shape [4]"});
}

TEST(TensorDeathTest, ReadingWithTheWrongTypeAborts) {
  const Tensor x = Iota(Shape{2});
  EXPECT_DEATH(x.data<int32_t>(), "tensor of dtype f32 read as i32");
  const Tensor b = Tensor::Empty(Shape{2}, DType::kBF16, Cpu()).value();
  EXPECT_DEATH(b.data<float>(), "tensor of dtype bf16 read as f32");
}

TEST(TensorDeathTest, StrideOutOfRangeAborts) {
  const Tensor x = Iota(Shape{2, 3});
  EXPECT_DEATH(x.stride(2), "stride 2 out of range for f32\\[2, 3\\]");
  EXPECT_DEATH(x.stride(-3), "stride -3 out of range");
}

}  // namespace
}  // namespace strata
