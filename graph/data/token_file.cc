#include "graph/data/token_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strata::data {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  const std::streamsize size = in.tellg();
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) {
    return absl::DataLossError(absl::StrCat("short read of ", path));
  }
  return bytes;
}

int64_t MinVocab(const std::vector<uint16_t>& tokens) {
  uint16_t top = 0;
  for (uint16_t t : tokens) top = std::max(top, t);
  return tokens.empty() ? 0 : int64_t{top} + 1;
}

}  // namespace

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
  std::memcpy(file.tokens.data(), payload, payload_bytes);  // little-endian, as written
  file.min_vocab = MinVocab(file.tokens);
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
  return file;
}

absl::StatusOr<TokenFile> ReadTokens(const std::string& path) {
  return absl::EndsWith(path, ".bin") ? ReadTokenFile(path) : ReadTextBytes(path);
}

}  // namespace strata::data
