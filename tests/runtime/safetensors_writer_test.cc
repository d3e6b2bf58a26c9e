// SafetensorsWriter: tensors streamed one at a time read back as written (strided ones included),
// a tensor other than the declared one is refused naming both, and every way of not finishing —
// destroyed, committed early, an IO error — leaves the old file and no temporary behind.
#include "runtime/safetensors_writer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/safetensors.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::Vec;

class SafetensorsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("strata_safetensors_writer_", info->name(), "_", ::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "out.safetensors").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string Bytes(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // An existing file at path_, which no failed write may touch.
  void WriteOldFile() {
    ASSERT_TRUE(WriteSafetensors(path_, {{"old", testing::FromDouble({7}, Shape{1})}}).ok());
    old_bytes_ = Bytes(path_);
  }
  void ExpectOldFileAndNoTemporary() const {
    EXPECT_EQ(Bytes(path_), old_bytes_);
    EXPECT_EQ(Listing(), std::vector<std::string>{"out.safetensors"});
  }

  std::filesystem::path dir_;
  std::string path_, old_bytes_;
};

TEST_F(SafetensorsWriterTest, StreamedTensorsReadBackAsWritten) {
  const Tensor a = testing::FromDouble({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  const Tensor at = a.Transpose(0, 1).value();  // strided: written in its logical order
  const Tensor ids = Tensor::Zeros(Shape{4}, DType::kI32, DefaultCpuAllocator()).value();
  ids.data<int32_t>()[2] = -9;
  SafetensorsWriter w = SafetensorsWriter::Create(path_,
                                                  {{"a.t", DType::kF32, Shape{3, 2}},
                                                   {"ids", DType::kI32, Shape{4}},
                                                   {"empty", DType::kF32, Shape{0, 5}}},
                                                  {{"format", "pt"}})
                            .value();
  EXPECT_EQ(Listing(), std::vector<std::string>{"out.safetensors.tmp"});  // nothing at path yet
  ASSERT_TRUE(w.Write(at).ok());
  ASSERT_TRUE(w.Write(ids).ok());
  ASSERT_TRUE(w.Write(Tensor::Zeros(Shape{0, 5}, DType::kF32, DefaultCpuAllocator()).value()).ok());
  ASSERT_TRUE(w.Commit().ok());
  EXPECT_EQ(Listing(), std::vector<std::string>{"out.safetensors"});

  const SafetensorsFile f = SafetensorsFile::Read(path_, DefaultCpuAllocator()).value();
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a.t", "ids", "empty"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(testing::ToDouble(f.Get("a.t").value()), (Vec{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(f.Get("ids").value().data<int32_t>()[2], -9);
  EXPECT_EQ(f.Get("empty").value().shape(), (Shape{0, 5}));
  // The same bytes as the all-at-once writer's.
  const std::string streamed = Bytes(path_);
  ASSERT_TRUE(WriteSafetensors(path_, {{"a.t", at}, {"ids", ids},
                                       {"empty", f.Get("empty").value()}},
                               {{"format", "pt"}})
                  .ok());
  EXPECT_EQ(Bytes(path_), streamed);

  ExpectStatus(w.Write(ids), absl::StatusCode::kFailedPrecondition, {path_, "closed"});
}

TEST_F(SafetensorsWriterTest, RefusesATensorOtherThanTheDeclaredOneNamingBoth) {
  WriteOldFile();
  SafetensorsWriter w =
      SafetensorsWriter::Create(path_, {{"w", DType::kF32, Shape{2, 3}}, {"b", DType::kF32, Shape{3}}})
          .value();
  const Tensor w_ok = testing::FromDouble({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  ExpectStatus(w.Write(w_ok.Transpose(0, 1).value()), absl::StatusCode::kInvalidArgument,
               {path_, "tensor 'w' is declared f32[2, 3], given f32[3, 2]"});
  const Tensor as_i32 = Tensor::Zeros(Shape{2, 3}, DType::kI32, DefaultCpuAllocator()).value();
  ExpectStatus(w.Write(as_i32), absl::StatusCode::kInvalidArgument,
               {"tensor 'w' is declared f32[2, 3], given i32[2, 3]"});
  ExpectStatus(w.Write(Tensor()), absl::StatusCode::kInvalidArgument, {"w is an undefined tensor"});
  // A refused tensor wrote nothing: the right one still goes in its place.
  ASSERT_TRUE(w.Write(w_ok).ok());
  ASSERT_TRUE(w.Write(testing::FromDouble({7, 8, 9}, Shape{3})).ok());
  ExpectStatus(w.Write(w_ok), absl::StatusCode::kFailedPrecondition,
               {path_, "all 2 declared tensors are written"});
  ASSERT_TRUE(w.Commit().ok());
  EXPECT_EQ(testing::ToDouble(
                SafetensorsFile::Read(path_, DefaultCpuAllocator()).value().Get("b").value()),
            (Vec{7, 8, 9}));
}

TEST_F(SafetensorsWriterTest, DuplicateAndReservedNamesAreRefusedBeforeAnythingIsCreated) {
  ExpectStatus(SafetensorsWriter::Create(path_, {{"a", DType::kF32, Shape{1}},
                                                 {"a", DType::kF32, Shape{2}}})
                   .status(),
               absl::StatusCode::kInvalidArgument, {path_, "tensor name 'a' appears twice"});
  ExpectStatus(SafetensorsWriter::Create(path_, {{"__metadata__", DType::kF32, Shape{1}}}).status(),
               absl::StatusCode::kInvalidArgument, {"'__metadata__' is reserved"});
  EXPECT_TRUE(Listing().empty());
}

TEST_F(SafetensorsWriterTest, AWriterNotCommittedLeavesTheOldFile) {
  WriteOldFile();
  {
    SafetensorsWriter w = SafetensorsWriter::Create(path_, {{"a", DType::kF32, Shape{1}}}).value();
    ASSERT_TRUE(w.Write(testing::FromDouble({1}, Shape{1})).ok());
  }  // destroyed without Commit
  ExpectOldFileAndNoTemporary();

  SafetensorsWriter early =
      SafetensorsWriter::Create(path_, {{"a", DType::kF32, Shape{1}}, {"b", DType::kF32, Shape{1}}})
          .value();
  ASSERT_TRUE(early.Write(testing::FromDouble({1}, Shape{1})).ok());
  ExpectStatus(early.Commit(), absl::StatusCode::kFailedPrecondition,
               {path_, "committed after 1 of 2 tensors; 'b' was never written"});
  ExpectOldFileAndNoTemporary();
}

TEST_F(SafetensorsWriterTest, AMissingDirectoryIsNamedWithErrno) {
  const std::string nowhere = (dir_ / "no/such/dir/x.safetensors").string();
  ExpectStatus(SafetensorsWriter::Create(nowhere, {}).status(), absl::StatusCode::kNotFound,
               {"cannot create " + nowhere + ".tmp", "No such file or directory (ENOENT)"});
}

// RLIMIT_FSIZE makes write() fail with EFBIG part way through, as a full disk would (ENOSPC)
// without needing one.
TEST_F(SafetensorsWriterTest, AnIoErrorNamesErrnoAndLeavesTheOldFile) {
  WriteOldFile();
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  rlimit small = before;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::mt19937_64 rng(1);
  const Tensor big = testing::RandomTensor(Shape{64, 64}, rng);  // 16 KiB
  absl::StatusOr<SafetensorsWriter> w =
      SafetensorsWriter::Create(path_, {{"big", DType::kF32, Shape{64, 64}}});
  absl::Status written = w.ok() ? w->Write(big) : w.status();
  setrlimit(RLIMIT_FSIZE, &before);
  std::signal(SIGXFSZ, old_handler);
  ExpectStatus(written, absl::StatusCode::kDataLoss,
               {"writing " + path_ + ".tmp failed", "File too large (EFBIG)"});
  ExpectOldFileAndNoTemporary();
  ExpectStatus(w->Commit(), absl::StatusCode::kFailedPrecondition, {"closed"});
}

}  // namespace
}  // namespace strata
