// Tests of safetensors reading and writing: round trips, the documented byte layout in both
// directions, corrupt files, Get checks, and the write-to-temp-then-rename behaviour.
#include "runtime/safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/arena_allocator.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::Vec;

Allocator& Cpu() { return DefaultCpuAllocator(); }

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("strata_safetensors_", info->name(), "_", ::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Files in the test directory, to check that no temporary file is left behind.
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path dir_;
};

std::string LittleEndian64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A file in the documented layout: 8-byte little-endian header length, JSON header, data.
std::string Safetensors(const std::string& header, const std::string& data) {
  return LittleEndian64(header.size()) + header + data;
}

// The raw bytes of a tensor's elements in row-major order (of a contiguous copy).
std::string ElementBytes(const Tensor& t) {
  const Tensor c = t.Contiguous(Cpu()).value();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

template <typename T>
std::string Raw(std::initializer_list<T> values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.begin(), s.size());
  return s;
}

absl::Status ReadStatus(const std::string& path) {
  return SafetensorsFile::Read(path, Cpu()).status();
}

TEST_F(SafetensorsTest, RoundTripsDTypesShapesStridesAndMetadata) {
  std::mt19937_64 rng(5);
  const Tensor a = testing::RandomTensor(Shape{3, 4, 5}, rng);
  const Tensor at = a.Transpose(0, 2).value();                          // strided
  const Tensor stepped = a.Slice(1, 0, 4, 3).value();                  // strided, offset
  const Tensor padded = testing::MakeStrided(testing::RandomTensor(Shape{6, 7}, rng));
  const Tensor ids = testing::FromDouble({1, -2, 300, int64_t{1} << 40}, Shape{2, 2}, DType::kI64);
  const Tensor i32 = testing::FromDouble({7, -8, 9}, Shape{3}, DType::kI32);
  const Tensor bf = testing::FromDouble({0.5, -1.25, 3}, Shape{3, 1}, DType::kBF16);
  const Tensor f16 = testing::FromDouble({0.1, 65504}, Shape{2}, DType::kF16);
  const Tensor bytes = testing::FromDouble({0, 17, 255}, Shape{3}, DType::kU8);
  const Tensor scalar = testing::FromDouble({2.5}, Shape());
  const Tensor empty = Tensor::Empty(Shape{0, 3}, DType::kF32, Cpu()).value();
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"model.a.t", at}, {"stepped", stepped}, {"padded", padded}, {"ids", ids},
      {"i32", i32},      {"bf", bf},           {"f16", f16},       {"bytes", bytes},
      {"scalar", scalar}, {"empty", empty}};
  const std::map<std::string, std::string> metadata = {{"step", "7"}, {"format", "pt"},
                                                       {"note", "quotes \" and \\ survive"}};
  const std::string path = Path("round_trip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  EXPECT_EQ(Listing(), std::vector<std::string>{"round_trip.safetensors"});  // no .tmp left

  const SafetensorsFile f = SafetensorsFile::Read(path, Cpu()).value();
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), metadata);
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) {
    // "empty" has no bytes: its offset ties with the next tensor, so only check membership.
    if (name != "empty") names.push_back(name);
  }
  std::vector<std::string> read_names = f.names();
  read_names.erase(std::remove(read_names.begin(), read_names.end(), "empty"), read_names.end());
  EXPECT_EQ(read_names, names);  // file order is write order
  EXPECT_EQ(f.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(f.Contains(name));
    const Tensor back = f.Get(name, t.dtype(), t.shape()).value();
    EXPECT_TRUE(back.is_contiguous());
    EXPECT_EQ(ElementBytes(back), ElementBytes(t));  // bit for bit
  }
  EXPECT_FALSE(f.Contains("model.a"));
  // Overwriting an existing file works and leaves no temporary file either.
  ASSERT_TRUE(WriteSafetensors(path, {{"only", scalar}}).ok());
  const SafetensorsFile g = SafetensorsFile::Read(path, Cpu()).value();
  EXPECT_EQ(g.names(), std::vector<std::string>{"only"});
  EXPECT_TRUE(g.metadata().empty());
  EXPECT_EQ(Listing(), std::vector<std::string>{"round_trip.safetensors"});
}

TEST_F(SafetensorsTest, WritesTheDocumentedByteLayout) {
  const Tensor w = testing::FromDouble({1.5, -2, 3, 4, 5, 6}, Shape{2, 3});
  const Tensor ids = testing::FromDouble({9, 8}, Shape{2}, DType::kI64);
  const std::string path = Path("layout.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w.t", w.Transpose(0, 1).value()}, {"ids", ids}},
                               {{"k", "v"}})
                  .ok());
  const std::string file = ReadFile(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[i]);
  ASSERT_LE(8 + n, file.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "the data section starts 8-byte aligned";
  const nlohmann::json header = nlohmann::json::parse(file.substr(8, n));
  EXPECT_EQ(header["__metadata__"], nlohmann::json({{"k", "v"}}));
  EXPECT_EQ(header["w.t"]["dtype"], "F32");
  EXPECT_EQ(header["w.t"]["shape"], nlohmann::json({3, 2}));
  EXPECT_EQ(header["w.t"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(header["ids"]["dtype"], "I64");
  EXPECT_EQ(header["ids"]["shape"], nlohmann::json({2}));
  EXPECT_EQ(header["ids"]["data_offsets"], nlohmann::json({24, 40}));
  const std::string data = file.substr(8 + n);
  // The transpose, written row-major: 1.5, 4, -2, 5, 3, 6.
  EXPECT_EQ(data, Raw<float>({1.5f, 4, -2, 5, 3, 6}) + Raw<int64_t>({9, 8}));
}

TEST_F(SafetensorsTest, ReadsAFileInThePythonLayout) {
  // As the Python package writes it: keys in any order, header padded with spaces to 8 bytes,
  // tensors packed by offset. Here "b" comes first in the data although it sorts after "a".
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},)"
      R"("b":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("c":{"dtype":"F16","shape":[],"data_offsets":[20,22]},)"
      R"("d":{"dtype":"U8","shape":[0,4],"data_offsets":[22,22]},)"
      R"("e":{"dtype":"I32","shape":[1,1],"data_offsets":[22,26]},)"
      R"("f":{"dtype":"F32","shape":[2],"data_offsets":[26,34]}})";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const std::string data = Raw<int64_t>({-5, int64_t{1} << 50}) +
                           Raw<uint16_t>({0x3fc0, 0xc020}) +  // bf16 1.5, -2.5
                           Raw<uint16_t>({0x3555}) +          // f16 0.333251953125
                           Raw<int32_t>({-7}) + Raw<float>({0.25f, -8});
  const std::string path = Path("python.safetensors");
  WriteFile(path, Safetensors(padded, data));
  const SafetensorsFile f = SafetensorsFile::Read(path, Cpu()).value();
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.names().front(), "b");
  EXPECT_EQ(f.names().size(), 6u);
  EXPECT_EQ(testing::ToDouble(f.Get("a", DType::kBF16, Shape{2}).value()), (Vec{1.5, -2.5}));
  const Tensor b = f.Get("b", DType::kI64, Shape{2}).value();
  EXPECT_EQ(b.data<int64_t>()[0], -5);
  EXPECT_EQ(b.data<int64_t>()[1], int64_t{1} << 50);
  EXPECT_EQ(testing::ToDouble(f.Get("c", DType::kF16, Shape()).value()), (Vec{0.333251953125}));
  EXPECT_EQ(f.Get("d", DType::kU8, Shape{0, 4}).value().numel(), 0);
  EXPECT_EQ(f.Get("e", DType::kI32, Shape{1, 1}).value().data<int32_t>()[0], -7);
  EXPECT_EQ(testing::ToDouble(f.Get("f", DType::kF32, Shape{2}).value()), (Vec{0.25, -8}));
}

TEST_F(SafetensorsTest, GetChecksNameDTypeAndShape) {
  const std::string path = Path("get.safetensors");
  const Tensor w = testing::FromDouble({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  ASSERT_TRUE(WriteSafetensors(path, {{"w", w}}).ok());
  const SafetensorsFile f = SafetensorsFile::Read(path, Cpu()).value();
  ExpectStatus(f.Get("w", DType::kF32, Shape{3, 2}).status(), absl::StatusCode::kInvalidArgument,
               {path, "tensor 'w' is f32[2, 3]", "expected f32[3, 2]"});
  ExpectStatus(f.Get("w", DType::kBF16, Shape{2, 3}).status(), absl::StatusCode::kInvalidArgument,
               {"tensor 'w' is f32[2, 3]", "expected bf16[2, 3]"});
  ExpectStatus(f.Get("v", DType::kF32, Shape{2, 3}).status(), absl::StatusCode::kNotFound,
               {path, "no tensor named 'v'"});
  ExpectStatus(f.Get("missing").status(), absl::StatusCode::kNotFound, {path, "'missing'"});
}

TEST_F(SafetensorsTest, CorruptFilesAreDataLossNamingFileAndTensor) {
  const std::string path = Path("bad.safetensors");
  const std::string zeros16(16, '\0');
  struct Case {
    std::string bytes;
    std::vector<std::string> mentions;
  };
  const std::string huge = std::to_string(uint64_t{1} << 62);
  const std::vector<Case> cases = {
      {"abc", {"only 3 bytes", "too short"}},
      {LittleEndian64(1000) + "{}", {"header length 1000", "does not fit in 10 bytes"}},
      {LittleEndian64(uint64_t{1} << 40) + "{}", {"header length 1099511627776"}},
      {Safetensors("not json", ""), {"header is not a JSON object"}},
      {Safetensors("[1, 2]", ""), {"header is not a JSON object"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[4]}})", zeros16),
       {"tensor 'w'", "lacks dtype, shape or data_offsets"}},
      {Safetensors(R"({"w":{"shape":[4],"data_offsets":[0,16]}})", zeros16), {"'w'", "lacks"}},
      {Safetensors(R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", zeros16), {"'w'", "lacks"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", zeros16),
       {"'w'", "lacks"}},
      {Safetensors(R"({"w":{"dtype":32,"shape":[4],"data_offsets":[0,16]}})", zeros16),
       {"'w'", "lacks"}},
      {Safetensors(R"({"w":[]})", zeros16), {"'w'", "lacks"}},
      {Safetensors(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", zeros16),
       {"tensor 'w'", "unsupported safetensors dtype 'F64'"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", zeros16),
       {"tensor 'w'", "bad shape"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", zeros16),
       {"tensor 'w'", "negative size -4"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-1,15]}})", zeros16),
       {"tensor 'w'", "bad data_offsets"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", zeros16),
       {"tensor 'w' f32[3] needs 12 bytes but data_offsets give 16"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", zeros16),
       {"tensor 'w'", "needs 4 bytes"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", zeros16),
       {"tensor 'w' ends at byte 24 of a data section of 16 bytes", "truncated"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})",
                   ""),
       {"tensor 'w'", "more than 2^63 - 1 elements"}},
      {Safetensors(absl::StrCat(R"({"w":{"dtype":"F32","shape":[)", huge,
                                R"(],"data_offsets":[0,0]}})"),
                   ""),
       {"tensor 'w'", "more bytes than fit in 64 bits"}},
      {Safetensors(R"({"__metadata__":[1],"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
                   zeros16),
       {"__metadata__ is not an object"}},
      {Safetensors(R"({"__metadata__":{"step":7}})", ""), {"metadata 'step' not a string"}},
      {Safetensors(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],)"
                   R"("data_offsets":[0,4]}})", zeros16),
       {"tensor 'w'", "rank 17 exceeds 16"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.mentions.front());
    WriteFile(path, c.bytes);
    const absl::Status status = ReadStatus(path);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_NE(status.message().find(absl::StrCat("safetensors file ", path)), std::string::npos)
        << status;
    for (const std::string& m : c.mentions) {
      EXPECT_NE(status.message().find(m), std::string::npos) << status << "\nmissing: " << m;
    }
  }
  // A file cut short in the middle of its data.
  ASSERT_TRUE(WriteSafetensors(path, {{"x", testing::FromDouble({1, 2, 3, 4}, Shape{4})}}).ok());
  const std::string whole = ReadFile(path);
  WriteFile(path, whole.substr(0, whole.size() - 1));
  ExpectStatus(ReadStatus(path), absl::StatusCode::kDataLoss,
               {path, "tensor 'x' ends at byte 16 of a data section of 15 bytes"});
  WriteFile(path, whole.substr(0, 12));  // inside the header
  ExpectStatus(ReadStatus(path), absl::StatusCode::kDataLoss, {path, "header length"});
  WriteFile(path, "");
  ExpectStatus(ReadStatus(path), absl::StatusCode::kDataLoss, {path, "only 0 bytes"});
}

// Tensors are read at their offsets, so a pipe is refused by name rather than misread.
TEST_F(SafetensorsTest, APipeIsRefusedByName) {
  const std::string fifo = Path("pipe.safetensors");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo, std::ios::binary).flush(); });  // opens, writes nothing
  const absl::Status status = ReadStatus(fifo);
  writer.join();
  ExpectStatus(status, absl::StatusCode::kDataLoss, {fifo, "not a regular (seekable) file"});
}

TEST_F(SafetensorsTest, MissingFilesAndBudgets) {
  const std::string absent = Path("absent.safetensors");
  ExpectStatus(ReadStatus(absent), absl::StatusCode::kNotFound,
               {"cannot open safetensors file", absent});
  // Loading into an arena too small for the tensors: the budget error, naming file and tensor.
  const std::string path = Path("big.safetensors");
  std::mt19937_64 rng(1);
  ASSERT_TRUE(WriteSafetensors(path, {{"w", testing::RandomTensor(Shape{64, 64}, rng)}}).ok());
  HostAllocator ram;
  auto arena = ArenaAllocator::Create(ram, 4096, "loader").value();
  ExpectStatus(SafetensorsFile::Read(path, *arena).status(), absl::StatusCode::kResourceExhausted,
               {path, "tensor 'w'", "f32[64, 64]", "arena 'loader'", "16384 bytes"});
}

TEST_F(SafetensorsTest, FailedWritesLoseNoExistingFileAndLeaveNoTemporary) {
  const Tensor a = testing::FromDouble({1, 2}, Shape{2});
  const std::string path = Path("keep.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", a}}).ok());
  const std::string original = ReadFile(path);

  // Into a directory that does not exist: an error naming the path.
  const std::string nowhere = Path("no/such/dir/x.safetensors");
  ExpectStatus(WriteSafetensors(nowhere, {{"a", a}}), absl::StatusCode::kNotFound,
               {"cannot create", nowhere});
  // Duplicate names, undefined and device tensors are refused before anything is written.
  ExpectStatus(WriteSafetensors(path, {{"a", a}, {"a", a}}), absl::StatusCode::kInvalidArgument,
               {path, "tensor name 'a' appears twice"});
  ExpectStatus(WriteSafetensors(path, {{"b", Tensor()}}), absl::StatusCode::kInvalidArgument,
               {"WriteSafetensors", "b is an undefined tensor"});
  const Tensor gpu = Tensor::Wrap(nullptr, Shape{2}, DType::kF32, Device::Cuda(0));
  ExpectStatus(WriteSafetensors(path, {{"g", gpu}}), absl::StatusCode::kInvalidArgument,
               {"g is f32[2] on cuda:0"});
  // The final rename fails when the target is a directory: the error names both paths, the
  // temporary file is removed and the directory is untouched.
  const std::string dir_target = Path("occupied");
  std::filesystem::create_directories(dir_target + "/inside");
  const absl::Status rename = WriteSafetensors(dir_target, {{"a", a}});
  ExpectStatus(rename, absl::StatusCode::kDataLoss,
               {"renaming", dir_target + ".tmp", "to " + dir_target});
  EXPECT_TRUE(std::filesystem::is_directory(dir_target + "/inside"));

  EXPECT_EQ(ReadFile(path), original);
  EXPECT_EQ(Listing(), (std::vector<std::string>{"keep.safetensors", "occupied"}));
  EXPECT_EQ(testing::ToDouble(SafetensorsFile::Read(path, Cpu()).value().Get("a").value()),
            (Vec{1, 2}));
}

// Open reads only the header: each tensor is read when loaded, so a file larger than memory can
// be consumed one tensor at a time.
TEST_F(SafetensorsTest, OpenReadsEachTensorWhenLoaded) {
  const std::string path = Path("big.safetensors");
  Tensor b = Tensor::Empty(Shape{2, 2}, DType::kI32, Cpu()).value();
  for (int k = 0; k < 4; ++k) b.data<int32_t>()[k] = 10 + k;
  ASSERT_TRUE(
      WriteSafetensors(path, {{"a", testing::FromDouble({1, 2, 3}, Shape{3})}, {"b", b}}, {{"k", "v"}})
          .ok());
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f->metadata().at("k"), "v");
  const SafetensorsFile::Entry entry = f->Find("b").value();
  EXPECT_EQ(entry.dtype, DType::kI32);
  EXPECT_EQ(entry.shape, (Shape{2, 2}));
  ExpectStatus(f->Find("c").status(), absl::StatusCode::kNotFound, {path, "'c'"});
  EXPECT_EQ(testing::ToDouble(f->Load("a", Cpu()).value()), (Vec{1, 2, 3}));
  EXPECT_EQ(testing::ToDouble(f->Get("b").value()), (Vec{10, 11, 12, 13}));
  // The file is read at Load, not at Open: truncating it afterwards is a short read.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  ExpectStatus(f->Load("b", Cpu()).status(), absl::StatusCode::kDataLoss, {"short read", "'b'"});
}

}  // namespace
}  // namespace strata
