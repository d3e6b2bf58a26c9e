#include "graph/data/token_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strata::data {
namespace {

// Reads to the end of the stream in chunks: no tellg(), which is -1 on a pipe.
absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  }
  std::string bytes;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof(chunk)) || in.gcount() > 0) {
    bytes.append(chunk, static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  return bytes;
}

int64_t MinVocab(const std::vector<uint16_t>& tokens) {
  uint16_t top = 0;
  for (uint16_t t : tokens) top = std::max(top, t);
  return tokens.empty() ? 0 : int64_t{top} + 1;
}

}  // namespace

uint64_t TokenHash(const std::vector<uint16_t>& tokens) {
  constexpr uint64_t kOffset = 0xcbf29ce484222325ull, kPrime = 0x100000001b3ull;
  uint64_t h = kOffset;
  for (size_t i = 0; i < tokens.size(); i += 4) {
    uint64_t word = 0;
    for (size_t k = 0; k < 4 && i + k < tokens.size(); ++k) {
      word |= uint64_t{tokens[i + k]} << (16 * k);
    }
    h = (h ^ word) * kPrime;
  }
  return (h ^ tokens.size()) * kPrime;
}

absl::StatusOr<TokenFile> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  const size_t header_bytes = kLlmcHeaderInts * sizeof(int32_t);
  TokenFile file;
  const char* payload = bytes->data();
  size_t payload_bytes = bytes->size();
  int32_t magic = 0;
  if (bytes->size() >= sizeof(int32_t)) std::memcpy(&magic, bytes->data(), sizeof(int32_t));
  if (magic == kLlmcMagic) {
    if (bytes->size() < header_bytes) {
      return absl::DataLossError(absl::StrCat(path, ": llm.c token file of ", bytes->size(),
                                              " bytes is shorter than its 1024-byte header"));
    }
    int32_t header[3];
    std::memcpy(header, bytes->data(), sizeof(header));
    if (header[1] != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": llm.c token file version ", header[1],
                                                     " is not supported (expected 1: uint16 tokens)"));
    }
    payload += header_bytes;
    payload_bytes -= header_bytes;
    if (header[2] < 0 || static_cast<size_t>(header[2]) * 2 != payload_bytes) {
      return absl::DataLossError(absl::StrCat(path, ": header says ", header[2], " tokens but ",
                                              payload_bytes, " bytes follow it (truncated?)"));
    }
    file.format = "llm.c";
  } else {
    if (bytes->size() % 2 != 0) {
      return absl::DataLossError(absl::StrCat(path, ": ", bytes->size(),
                                              " bytes is not a whole number of uint16 tokens"));
    }
    file.format = "uint16";
  }
  file.tokens.resize(payload_bytes / 2);
  if (payload_bytes > 0) {  // an empty vector's data() may be null, which memcpy may not take
    std::memcpy(file.tokens.data(), payload, payload_bytes);  // little-endian, as written
  }
  file.min_vocab = MinVocab(file.tokens);
  file.hash = TokenHash(file.tokens);
  return file;
}

absl::StatusOr<TokenFile> ReadTextBytes(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  TokenFile file;
  file.format = "bytes";
  file.tokens.assign(reinterpret_cast<const unsigned char*>(bytes->data()),
                     reinterpret_cast<const unsigned char*>(bytes->data()) + bytes->size());
  file.min_vocab = 256;
  file.hash = TokenHash(file.tokens);
  return file;
}

absl::StatusOr<TokenFile> ReadTokens(const std::string& path) {
  return absl::EndsWith(path, ".bin") ? ReadTokenFile(path) : ReadTextBytes(path);
}

}  // namespace strata::data
