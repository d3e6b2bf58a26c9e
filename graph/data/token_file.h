// Training text as token ids: token files written by nanoGPT and llm.c, or raw text as bytes.
//
//   STRATA_ASSIGN_OR_RETURN(TokenFile f, ReadTokens("data/tiny_shakespeare_train.bin"));
//   f.tokens.size(); f.format;     // "llm.c" (256 x int32 header), "uint16" (headerless), "bytes"
//
// Files ending in .bin are token files: llm.c's header (magic 20240520, version 1, token count,
// then 253 reserved int32) is recognised and checked; otherwise the file is nanoGPT's plain array
// of little-endian uint16. Any other file is raw text, one token per byte (vocabulary 256).
// Files are read as a stream, so a pipe or /dev/stdin works as well as a regular file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::data {

inline constexpr int32_t kLlmcMagic = 20240520;
inline constexpr int kLlmcHeaderInts = 256;

struct TokenFile {
  std::vector<uint16_t> tokens;
  std::string format;  // "llm.c", "uint16" or "bytes"
  // The smallest vocabulary that holds every token (max id + 1); 256 for bytes.
  int64_t min_vocab = 0;
  // TokenHash(tokens): identifies the data a checkpoint was trained on.
  uint64_t hash = 0;
};

// A 64-bit fingerprint of a token sequence, the same on every machine: FNV-1a over 64-bit
// little-endian words of four tokens (the last word zero-padded), then the token count.
uint64_t TokenHash(const std::vector<uint16_t>& tokens);

absl::StatusOr<TokenFile> ReadTokenFile(const std::string& path);  // .bin formats
absl::StatusOr<TokenFile> ReadTextBytes(const std::string& path);
// By extension: .bin -> ReadTokenFile, anything else -> ReadTextBytes.
absl::StatusOr<TokenFile> ReadTokens(const std::string& path);

}  // namespace strata::data
