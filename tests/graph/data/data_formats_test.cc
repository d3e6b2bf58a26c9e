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
  const std::vector<uint32_t> ids(tokens.begin(), tokens.end());
  const std::string llmc = LlmcFile(tokens, 1, 6), llmc_path = TempPath("llmc.bin");
  WriteBytes(llmc_path, llmc.data(), llmc.size());
  const TokenFile a = ReadTokens(llmc_path).value();
  EXPECT_EQ(a.format, "llm.c");
  EXPECT_EQ(a.path, llmc_path);
  EXPECT_EQ(a.tokens, ids);
  EXPECT_EQ(a.min_vocab, 50257);

  const std::string plain_path = TempPath("nanogpt.bin");
  WriteBytes(plain_path, tokens.data(), tokens.size() * 2);
  const TokenFile b = ReadTokens(plain_path).value();
  EXPECT_EQ(b.format, "uint16");
  EXPECT_EQ(b.tokens, ids);

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
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kInvalidArgument,
               {path, "version 2", "expected 1: uint16 tokens"});
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

// llm.c's uint32 files (dev/data/data_common.py, "llama-3"): magic 20240801, version 7, then
// uint32 tokens. Written here byte by byte, independently of WriteLlmcTokenFile.
std::string LlmcUint32File(const std::vector<uint32_t>& tokens, int32_t version, int32_t count) {
  std::string bytes(1024, '\0');
  const int32_t header[3] = {20240801, version, count};
  std::memcpy(bytes.data(), header, sizeof(header));
  for (uint32_t t : tokens) {
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((t >> (8 * k)) & 0xff));
  }
  return bytes;
}

TEST(TokenFileTest, ReadsLlmcUint32FilesWithIdsPast65535) {
  const std::vector<uint32_t> tokens = {128000, 9906, 1917, 0, 65535, 65536, 128255, 70000};
  const std::string path = TempPath("llama3.bin");
  const std::string bytes = LlmcUint32File(tokens, 7, 8);
  WriteBytes(path, bytes.data(), bytes.size());
  const TokenFile f = ReadTokens(path).value();
  EXPECT_EQ(f.format, "llm.c uint32");
  EXPECT_EQ(f.tokens, tokens);
  EXPECT_EQ(f.min_vocab, 128256);
  EXPECT_EQ(f.hash, TokenHash(tokens));
  EXPECT_TRUE(CheckTokenIds(f, 128256).ok());
  // The first id outside the vocabulary, by position.
  ExpectStatus(CheckTokenIds(f, 100000), absl::StatusCode::kInvalidArgument,
               {path, "token id 128000 at position 0 (of 8)", "vocabulary of 100000"});
  ExpectStatus(CheckTokenIds(f, 65536), absl::StatusCode::kInvalidArgument,
               {"token id 128000 at position 0"});
  TokenFile tail;
  tail.path = "t.bin";
  tail.tokens = {1, 2, 70000, 3};
  tail.min_vocab = 70001;
  ExpectStatus(CheckTokenIds(tail, 1000), absl::StatusCode::kInvalidArgument,
               {"t.bin: token id 70000 at position 2 (of 4)"});
}

TEST(TokenFileTest, RefusesInconsistentUint32FilesNamingThePath) {
  const std::string path = TempPath("bad32.bin");
  std::string bytes = LlmcUint32File({1, 70000, 3}, 7, 4);  // says 4, holds 3
  WriteBytes(path, bytes.data(), bytes.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kDataLoss,
               {path, "header says 4 tokens (4 bytes each)", "12 bytes"});
  bytes = LlmcUint32File({1, 70000, 3}, 7, 3);
  bytes.pop_back();  // a token cut short
  WriteBytes(path, bytes.data(), bytes.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kDataLoss, {path, "11 bytes"});
  bytes = LlmcUint32File({1}, 1, 1);  // the uint32 magic with the uint16 version
  WriteBytes(path, bytes.data(), bytes.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kInvalidArgument,
               {path, "magic 20240801", "version 1", "expected 7: uint32 tokens"});
  bytes = LlmcUint32File({}, 7, 0).substr(0, 100);  // shorter than its header
  WriteBytes(path, bytes.data(), bytes.size());
  ExpectStatus(ReadTokens(path).status(), absl::StatusCode::kDataLoss,
               {path, "100 bytes", "shorter than its 1024-byte header"});
}

TEST(TokenFileTest, WritesBothWidthsAndReadsThemBack) {
  std::vector<uint32_t> narrow(3000), wide(3000);
  for (size_t i = 0; i < narrow.size(); ++i) {
    narrow[i] = static_cast<uint32_t>((i * 7919) % 65536);
    wide[i] = static_cast<uint32_t>((i * 104729) % 128256);
  }
  const std::string p16 = TempPath("w16.bin"), p32 = TempPath("w32.bin");
  ASSERT_TRUE(WriteLlmcTokenFile(p16, narrow, TokenWidth::kUint16).ok());
  ASSERT_TRUE(WriteLlmcTokenFile(p32, wide, TokenWidth::kUint32).ok());
  const TokenFile a = ReadTokens(p16).value(), b = ReadTokens(p32).value();
  EXPECT_EQ(a.format, "llm.c");
  EXPECT_EQ(a.tokens, narrow);
  EXPECT_EQ(b.format, "llm.c uint32");
  EXPECT_EQ(b.tokens, wide);
  // Byte for byte what llm.c writes: the 16-bit file is 1024 + 2n bytes, the 32-bit 1024 + 4n.
  EXPECT_EQ(std::filesystem::file_size(p16), 1024 + 2 * narrow.size());
  std::vector<uint16_t> as16(narrow.begin(), narrow.end());
  std::ifstream in(p16, std::ios::binary);
  const std::string got((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(got, LlmcFile(as16, 1, static_cast<int32_t>(as16.size())));
  std::ifstream in32(p32, std::ios::binary);
  const std::string got32((std::istreambuf_iterator<char>(in32)), {});
  EXPECT_EQ(got32, LlmcUint32File(wide, 7, static_cast<int32_t>(wide.size())));
  // The same ids in either width are the same data: the same fingerprint.
  const std::string narrow32 = TempPath("n32.bin");
  ASSERT_TRUE(WriteLlmcTokenFile(narrow32, narrow, TokenWidth::kUint32).ok());
  EXPECT_EQ(ReadTokens(narrow32).value().hash, a.hash);
  // An id past uint16 is refused by the 16-bit writer, by position, and nothing is written.
  const std::string refused = TempPath("refused.bin");
  ExpectStatus(WriteLlmcTokenFile(refused, wide, TokenWidth::kUint16),
               absl::StatusCode::kInvalidArgument, {refused, "at position", "write it as uint32"});
  EXPECT_FALSE(std::filesystem::exists(refused));
}

// Checkpoints record TokenHash of their data: the values of uint16 data must never change. These
// were computed by the uint16-only TokenHash before uint32 tokens existed.
TEST(TokenFileTest, Uint16HashesAreTheOnesCheckpointsRecorded) {
  EXPECT_EQ(TokenHash({50256, 15496, 11, 995, 0, 7}), 0x401e301a6442adc1ull);
  std::vector<uint32_t> seq;
  for (uint32_t i = 0; i < 1000; ++i) seq.push_back((i * 7919u + 13u) % 65536u);
  EXPECT_EQ(TokenHash(seq), 0xece0b2007b3c52b9ull);
  const std::string path = TempPath("old.bin");
  const std::string bytes = LlmcFile({50256, 15496, 11, 995, 0, 7}, 1, 6);
  WriteBytes(path, bytes.data(), bytes.size());
  EXPECT_EQ(ReadTokens(path).value().hash, 0x401e301a6442adc1ull);
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
  // With an id past 0xffff: words of two 32-bit tokens, the count, then the word 32.
  const uint64_t wide0 = 1 | (uint64_t{0x10000} << 32), wide1 = 7;
  EXPECT_EQ(TokenHash({1, 0x10000, 7}),
            ((((((kOffset ^ wide0) * kPrime) ^ wide1) * kPrime ^ 3) * kPrime) ^ 32) * kPrime);
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
