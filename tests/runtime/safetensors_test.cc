#include "runtime/safetensors.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::ToDouble;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteRaw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

TEST(SafetensorsTest, RoundTripsDTypesStridesAndMetadata) {
  std::mt19937_64 rng(5);
  const Tensor a = testing::RandomTensor(Shape{3, 4}, rng);
  const Tensor at = a.Transpose(0, 1).value();  // written contiguously
  const Tensor ids = testing::FromDouble({1, -2, 300}, Shape{3}, DType::kI64);
  const Tensor h = testing::FromDouble({0.5, -1.25}, Shape{2}, DType::kBF16);
  const std::string path = TempPath("round_trip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a.t", at}, {"ids", ids}, {"h", h}}, {{"step", "7"}}).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const SafetensorsFile f = SafetensorsFile::Read(path, DefaultCpuAllocator()).value();
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a.t", "ids", "h"}));
  EXPECT_EQ(f.metadata().at("step"), "7");
  const Tensor back = f.Get("a.t", DType::kF32, Shape{4, 3}).value();
  EXPECT_EQ(ToDouble(back), ToDouble(at));
  EXPECT_EQ(ToDouble(f.Get("ids").value()), (testing::Vec{1, -2, 300}));
  EXPECT_EQ(ToDouble(f.Get("h").value()), (testing::Vec{0.5, -1.25}));
  ExpectStatus(f.Get("a.t", DType::kF32, Shape{3, 4}).status(), absl::StatusCode::kInvalidArgument,
               {"'a.t'", "f32[4, 3]", "[3, 4]"});
  ExpectStatus(f.Get("missing").status(), absl::StatusCode::kNotFound, {"'missing'", path});
}

TEST(SafetensorsTest, ReadsTheDocumentedByteLayout) {
  // As written by the Python safetensors package: header JSON, then little-endian bytes.
  const float values[] = {1.5f, -2.0f};
  const std::string path = TempPath("by_hand.safetensors");
  WriteRaw(path, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}})",
           std::string(reinterpret_cast<const char*>(values), 8));
  const SafetensorsFile f = SafetensorsFile::Read(path, DefaultCpuAllocator()).value();
  EXPECT_EQ(ToDouble(f.Get("w").value()), (testing::Vec{1.5, -2.0}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(SafetensorsTest, CorruptFilesAreRefusedNamingFileAndTensor) {
  const std::string path = TempPath("bad.safetensors");
  WriteRaw(path, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {path, "'w'", "truncated"});
  WriteRaw(path, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0'));
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {"'w'", "needs 12 bytes", "16"});
  WriteRaw(path, R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0'));
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {"'F64'"});
  WriteRaw(path, R"({"w":{"dtype":"F32"}})", "");
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {"'w'", "lacks"});
  WriteRaw(path, "not json", "");
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {"not a JSON object"});
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = 1000;
    out.write(reinterpret_cast<const char*>(&n), 8);
  }
  ExpectStatus(SafetensorsFile::Read(path, DefaultCpuAllocator()).status(),
               absl::StatusCode::kDataLoss, {"header length 1000"});
  ExpectStatus(SafetensorsFile::Read(TempPath("absent.safetensors"), DefaultCpuAllocator()).status(),
               absl::StatusCode::kNotFound, {"absent.safetensors"});
}

TEST(SafetensorsTest, FailedWriteKeepsTheExistingFile) {
  const Tensor a = testing::FromDouble({1, 2}, Shape{2});
  ExpectStatus(WriteSafetensors(TempPath("no/such/dir/x.safetensors"), {{"a", a}}),
               absl::StatusCode::kPermissionDenied, {"no/such/dir/x.safetensors.tmp"});
  const std::string path = TempPath("keep.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", a}}).ok());
  ExpectStatus(WriteSafetensors(path, {{"a", a}, {"a", a}}), absl::StatusCode::kInvalidArgument,
               {"'a' appears twice"});
  EXPECT_EQ(ToDouble(SafetensorsFile::Read(path, DefaultCpuAllocator()).value().Get("a").value()),
            (testing::Vec{1, 2}));
}

}  // namespace
}  // namespace strata
