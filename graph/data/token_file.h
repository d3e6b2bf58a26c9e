// Training text as token ids: token files written by nanoGPT and llm.c, or raw text as bytes.
//
//   STRATA_ASSIGN_OR_RETURN(TokenFile f, ReadTokens("data/fineweb_train_000001.bin"));
//   f.tokens.size(); f.format;                   // Note [token file formats]
//   STRATA_RETURN_IF_ERROR(CheckTokenIds(f, /*vocab=*/50257));  // names the first id outside
//   STRATA_RETURN_IF_ERROR(WriteLlmcTokenFile("out.bin", ids, TokenWidth::kUint32));
//
// Note [token file formats]
// Files ending in .bin are token files. llm.c's (dev/data/data_common.py, write_datafile) start
// with a header of 256 little-endian int32 — magic, version, token count, 253 reserved — and
// then hold the tokens, little-endian:
//   magic 20240520, version 1: uint16 tokens (GPT-2's vocabulary of 50257),  format "llm.c";
//   magic 20240801, version 7: uint32 tokens (Llama 3's vocabulary of 128256), format "llm.c uint32".
// Those are the pairs llm.c writes ("gpt-2" and "llama-3"); either magic with another version is
// refused naming it. A .bin file with neither magic is nanoGPT's headerless array of
// little-endian uint16 (format "uint16"). Any other file is raw text, one token per byte
// (format "bytes", vocabulary 256). Tokens are uint32 in memory whatever the file held. Files
// are read as a stream, so a pipe or /dev/stdin works as well as a regular file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace strata::data {

inline constexpr int32_t kLlmcMagic = 20240520;        // uint16 tokens, version 1
inline constexpr int32_t kLlmcUint32Magic = 20240801;  // uint32 tokens, version 7
inline constexpr int32_t kLlmcVersion = 1, kLlmcUint32Version = 7;
inline constexpr int kLlmcHeaderInts = 256;

struct TokenFile {
  std::string path;
  std::vector<uint32_t> tokens;
  std::string format;  // "llm.c", "llm.c uint32", "uint16" or "bytes"
  // The smallest vocabulary that holds every token (max id + 1); 256 for bytes.
  int64_t min_vocab = 0;
  // TokenHash(tokens): identifies the data a checkpoint was trained on.
  uint64_t hash = 0;
};

// A 64-bit fingerprint of a token sequence, the same on every machine. Every id below 65536:
// FNV-1a over 64-bit little-endian words of four 16-bit tokens (the last word zero-padded), then
// the token count — the fingerprint checkpoints have always recorded, whichever file width held
// the ids. Any id above: FNV-1a over words of two 32-bit tokens, then the count, then the word 32.
uint64_t TokenHash(absl::Span<const uint32_t> tokens);

absl::StatusOr<TokenFile> ReadTokenFile(const std::string& path);  // .bin formats
absl::StatusOr<TokenFile> ReadTextBytes(const std::string& path);
// By extension: .bin -> ReadTokenFile, anything else -> ReadTextBytes.
absl::StatusOr<TokenFile> ReadTokens(const std::string& path);

// OK when every token is below `vocab`; else InvalidArgument naming the file, the position of
// the first token that is not, its id and the vocabulary.
absl::Status CheckTokenIds(const TokenFile& file, int64_t vocab);

// The file widths llm.c writes: uint16 (magic 20240520, version 1) and uint32 (magic 20240801,
// version 7).
enum class TokenWidth { kUint16, kUint32 };
// Writes `tokens` as an llm.c token file of that width. Errors: an id that does not fit uint16
// (naming its position), more tokens than the header's int32 count holds, IO (naming the path).
absl::Status WriteLlmcTokenFile(const std::string& path, absl::Span<const uint32_t> tokens,
                                TokenWidth width);

}  // namespace strata::data
