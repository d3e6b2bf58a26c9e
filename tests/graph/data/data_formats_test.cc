#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "graph/data/idx_file.h"
#include "graph/data/token_file.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::data {
namespace {

using strata::testing::ExpectStatus;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteBytes(const std::string& path, const void* data, size_t n) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

// An llm.c token file: 256 int32 header (magic, version, count) then uint16 tokens.
std::string LlmcFile(const std::vector<uint16_t>& tokens, int32_t version, int32_t count) {
  std::string bytes(1024, '\0');
  const int32_t header[3] = {kLlmcMagic, version, count};
  std::memcpy(bytes.data(), header, sizeof(header));
  bytes.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  return bytes;
}

TEST(TokenFileTest, ReadsLlmcNanoGptAndTextFormats) {
  const std::vector<uint16_t> tokens = {50256, 15496, 11, 995, 0, 7};
  const std::string llmc = LlmcFile(tokens, 1, 6), llmc_path = TempPath("llmc.bin");
  WriteBytes(llmc_path, llmc.data(), llmc.size());
  const TokenFile a = ReadTokens(llmc_path).value();
  EXPECT_EQ(a.format, "llm.c");
  EXPECT_EQ(a.tokens, tokens);
  EXPECT_EQ(a.min_vocab, 50257);

  const std::string plain_path = TempPath("nanogpt.bin");
  WriteBytes(plain_path, tokens.data(), tokens.size() * 2);
  const TokenFile b = ReadTokens(plain_path).value();
  EXPECT_EQ(b.format, "uint16");
  EXPECT_EQ(b.tokens, tokens);

  const std::string text = "To be, or not\n\xff";
  const std::string text_path = TempPath("input.txt");
  WriteBytes(text_path, text.data(), text.size());
  const TokenFile c = ReadTokens(text_path).value();
  EXPECT_EQ(c.format, "bytes");
  ASSERT_EQ(c.tokens.size(), text.size());
  EXPECT_EQ(c.tokens[0], 'T');
  EXPECT_EQ(c.tokens.back(), 255);
  EXPECT_EQ(c.min_vocab, 256);
}

TEST(TokenFileTest, RefusesInconsistentFilesNamingThePath) {
  const std::string path = TempPath("bad.bin");
  const std::string truncated = LlmcFile({1, 2, 3}, 1, 5);
  WriteBytes(path, truncated.data(), truncated.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kDataLoss,
               {path, "header says 5 tokens", "6 bytes"});
  const std::string v2 = LlmcFile({1}, 2, 1);
  WriteBytes(path, v2.data(), v2.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kInvalidArgument, {"version 2"});
  const char odd[3] = {1, 2, 3};
  WriteBytes(path, odd, 3);
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kDataLoss, {"3 bytes", "uint16"});
  ExpectStatus(ReadTokens(TempPath("missing.bin")).status(), absl::StatusCode::kNotFound,
               {"missing.bin"});
}

void WriteGz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

// The fingerprint a checkpoint records: FNV-1a over words of four little-endian tokens, then the
// count, computed here by hand from its definition.
TEST(TokenFileTest, TokenHashFollowsItsDefinition) {
  constexpr uint64_t kOffset = 0xcbf29ce484222325ull, kPrime = 0x100000001b3ull;
  EXPECT_EQ(TokenHash({}), (kOffset ^ 0) * kPrime);
  const uint64_t word0 = 1 | (uint64_t{2} << 16) | (uint64_t{3} << 32) | (uint64_t{0xffff} << 48);
  const uint64_t word1 = 5;
  EXPECT_EQ(TokenHash({1, 2, 3, 0xffff, 5}), ((((kOffset ^ word0) * kPrime) ^ word1) * kPrime ^ 5) * kPrime);
  // A trailing zero token changes the count, so it changes the hash.
  EXPECT_NE(TokenHash({1, 2, 3, 0xffff, 5}), TokenHash({1, 2, 3, 0xffff, 5, 0}));
  const std::string path = TempPath("hash.txt");
  WriteBytes(path, "ab", 2);
  const TokenFile f = ReadTokens(path).value();
  EXPECT_EQ(f.hash, TokenHash({'a', 'b'}));
}

TEST(IdxFileTest, ReadsGzipAndPlainArrays) {
  // 2 images of 3 x 2 pixels: magic 0x00000803, sizes 2, 3, 2 (big-endian), then 12 bytes.
  std::vector<unsigned char> bytes = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) bytes.push_back(static_cast<unsigned char>(i * 20));
  const std::string gz = TempPath("images-idx3-ubyte.gz");
  WriteGz(gz, bytes);
  const IdxArray a = ReadIdx(gz).value();
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3, 2}));
  ASSERT_EQ(a.data.size(), 12u);
  EXPECT_EQ(a.data[11], 220);
  const std::string plain = TempPath("labels-idx1-ubyte");
  const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4};
  WriteBytes(plain, labels, sizeof(labels));
  const IdxArray l = ReadIdx(plain).value();
  EXPECT_EQ(l.dims, (std::vector<int64_t>{3}));
  EXPECT_EQ(l.data, (std::vector<uint8_t>{9, 0, 4}));
}

TEST(IdxFileTest, RefusesBadMagicAndTruncation) {
  const std::string path = TempPath("bad-idx");
  const unsigned char floats[] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0};
  WriteBytes(path, floats, sizeof(floats));
  ExpectStatus(ReadIdx(path).status(), absl::StatusCode::kInvalidArgument, {path, "magic"});
  const unsigned char short_data[] = {0, 0, 8, 1, 0, 0, 0, 5, 1, 2};
  WriteBytes(path, short_data, sizeof(short_data));
  ExpectStatus(ReadIdx(path).status(), absl::StatusCode::kDataLoss, {"expected 5 data bytes"});
  ExpectStatus(ReadIdx(TempPath("nope.gz")).status(), absl::StatusCode::kNotFound, {"nope.gz"});
}

// A header may claim any sizes: more than kMaxIdxBytes is refused before anything is allocated,
// and a claim within the bound costs memory only as the data arrive (the debug build's
// AddressSanitizer would report a 3 GiB allocation here had the reader trusted the header).
TEST(IdxFileTest, HeaderSizesAreNotTrusted) {
  const std::string path = TempPath("huge-idx");
  const unsigned char overflow[] = {0, 0, 8, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2};
  WriteBytes(path, overflow, sizeof(overflow));
  ExpectStatus(ReadIdx(path).status(), absl::StatusCode::kInvalidArgument,
               {path, "dimensions (4294967295, 4294967295", "more than the 4294967296 bytes"});
  const unsigned char big[] = {0, 0, 8, 2, 0, 0, 0xc0, 0, 0, 1, 0, 0, 1, 2, 3};  // 3 GiB claimed
  WriteBytes(path, big, sizeof(big));
  ExpectStatus(ReadIdx(path).status(), absl::StatusCode::kDataLoss,
               {path, "expected 3221225472 data bytes, the file is shorter"});
}

}  // namespace
}  // namespace strata::data
