#include "runtime/cpu/embedding.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

TEST(EmbeddingTest, LookupAndScatterAddAgainstReference) {
  std::mt19937_64 rng(13);
  for (DType id_type : {DType::kI32, DType::kI64}) {
    for (auto [v, c, n] : {std::tuple{1, 1, 1}, {7, 5, 9}, {50, 97, 64}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(id_type) << " V" << v << " C" << c << " N" << n);
      const Tensor table = testing::RandomTensor(Shape{v, c}, rng);
      Vec idv(n);
      for (auto& i : idv) i = static_cast<double>(rng() % v);
      const Tensor ids = testing::FromDouble(idv, Shape{n}, id_type);
      const Tensor out = testing::EmptyF32(Shape{n, c});
      ASSERT_TRUE(EmbeddingForward(ids, table, out).ok());
      const Vec tv = ToDouble(table);
      Vec ref(n * c);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k) ref[i * c + k] = tv[static_cast<int64_t>(idv[i]) * c + k];
      ExpectClose(out, ref, 0, 1e-30, "lookup");
      const Tensor dout = testing::RandomTensor(Shape{n, c}, rng);
      const Tensor dtable = testing::EmptyF32(Shape{v, c});
      ASSERT_TRUE(EmbeddingBackward(ids, dout, dtable).ok());
      const Vec dv = ToDouble(dout);
      Vec grad(v * c, 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k) grad[static_cast<int64_t>(idv[i]) * c + k] += dv[i * c + k];
      ExpectClose(dtable, grad, 1e-5, 1e-6, "scatter-add");
      ASSERT_TRUE(EmbeddingBackward(ids, dout, dtable, GradMode::kAccumulate).ok());
      for (double& g : grad) g *= 2;
      ExpectClose(dtable, grad, 1e-5, 1e-6, "accumulated");
    }
  }
}

TEST(EmbeddingTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("embedding");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor y = testing::EmptyF32(get("y").shape());
  ASSERT_TRUE(EmbeddingForward(get("ids"), get("table"), y).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-6, 1e-7, "y");
  const Tensor dtable = testing::EmptyF32(get("table").shape());
  ASSERT_TRUE(EmbeddingBackward(get("ids"), get("dy"), dtable).ok());
  ExpectClose(dtable, ToDouble(get("dtable")), 1e-5, 1e-6, "dtable");
}

TEST(EmbeddingTest, OutOfRangeIdsAreRefusedBeforeAnyWrite) {
  std::mt19937_64 rng(1);
  const Tensor table = testing::RandomTensor(Shape{5, 3}, rng);
  const Tensor out = testing::ZerosF32(Shape{4, 3});
  ExpectStatus(EmbeddingForward(testing::FromDouble({0, 1, 5, 2}, Shape{4}, DType::kI64), table, out),
               absl::StatusCode::kOutOfRange, {"ids[2] = 5", "[0, 5)"});
  EXPECT_EQ(ToDouble(out), Vec(12, 0.0));
  ExpectStatus(EmbeddingForward(testing::FromDouble({0, -1, 1, 2}, Shape{4}, DType::kI32), table, out),
               absl::StatusCode::kOutOfRange, {"ids[1] = -1"});
  ExpectStatus(EmbeddingForward(testing::FromDouble({0, 1}, Shape{2}), table, out),
               absl::StatusCode::kInvalidArgument, {"i32 or i64"});
  ExpectStatus(EmbeddingForward(testing::FromDouble({0, 1}, Shape{2}, DType::kI64), table, out),
               absl::StatusCode::kInvalidArgument, {"out", "[2, 3]"});
}

}  // namespace
}  // namespace strata::cpu
