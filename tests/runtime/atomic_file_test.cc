// AtomicFile: the path holds the old file or the complete new one, never a part; a failed or
// abandoned write leaves no temporary; errors name the file and errno.
#include "runtime/atomic_file.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("strata_atomic_file_", info->name(), "_", ::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "f.txt").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Contents() const {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  absl::Status WriteAll(const std::string& text) {
    STRATA_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path_));
    STRATA_RETURN_IF_ERROR(f.Write(text.data(), text.size()));
    return f.Commit();
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(AtomicFileTest, CommitReplacesTheFileWhole) {
  ASSERT_TRUE(WriteAll("old").ok());
  AtomicFile f = AtomicFile::Create(path_).value();
  ASSERT_TRUE(f.Write("new ", 4).ok());
  ASSERT_TRUE(f.Write("text", 4).ok());
  EXPECT_EQ(Contents(), "old");  // until Commit
  EXPECT_EQ(Listing(), (std::vector<std::string>{"f.txt", "f.txt.tmp"}));
  ASSERT_TRUE(f.Commit().ok());
  EXPECT_EQ(Contents(), "new text");
  EXPECT_EQ(Listing(), std::vector<std::string>{"f.txt"});
  ExpectStatus(f.Write("x", 1), absl::StatusCode::kFailedPrecondition, {"f.txt.tmp", "closed"});
  ExpectStatus(f.Commit(), absl::StatusCode::kFailedPrecondition, {"f.txt.tmp", "closed"});
}

TEST_F(AtomicFileTest, AbandonedOrDestroyedLeavesTheOldFile) {
  ASSERT_TRUE(WriteAll("old").ok());
  {
    AtomicFile f = AtomicFile::Create(path_).value();
    ASSERT_TRUE(f.Write("partial", 7).ok());
  }
  EXPECT_EQ(Contents(), "old");
  AtomicFile g = AtomicFile::Create(path_).value();
  AtomicFile moved = std::move(g);  // the temporary goes with the move, not with `g`
  ASSERT_TRUE(moved.Write("x", 1).ok());
  moved.Abandon();
  EXPECT_EQ(Contents(), "old");
  EXPECT_EQ(Listing(), std::vector<std::string>{"f.txt"});
}

TEST_F(AtomicFileTest, ErrorsNameThePathAndErrno) {
  const std::string nowhere = (dir_ / "no/dir/f.txt").string();
  ExpectStatus(AtomicFile::Create(nowhere).status(), absl::StatusCode::kNotFound,
               {"cannot create " + nowhere + ".tmp: No such file or directory (ENOENT)"});
  // A directory in the way of the rename: both paths and errno, and no temporary left.
  const std::string occupied = (dir_ / "occupied").string();
  std::filesystem::create_directories(occupied + "/inside");
  AtomicFile f = AtomicFile::Create(occupied).value();
  ASSERT_TRUE(f.Write("x", 1).ok());
  ExpectStatus(f.Commit(), absl::StatusCode::kDataLoss,
               {"renaming " + occupied + ".tmp to " + occupied + " failed: ", "(EISDIR)"});
  EXPECT_EQ(Listing(), std::vector<std::string>{"occupied"});
}

}  // namespace
}  // namespace strata
