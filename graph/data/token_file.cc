#include "graph/data/token_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/atomic_file.h"
#include "runtime/status.h"

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

int64_t MinVocab(const std::vector<uint32_t>& tokens) {
  uint32_t top = 0;
  for (uint32_t t : tokens) top = std::max(top, t);
  return tokens.empty() ? 0 : int64_t{top} + 1;
}

// Little-endian tokens of `width` bytes each, widened to uint32 (the hosts strata runs on are
// little-endian, as the files are).
template <typename T>
std::vector<uint32_t> Widen(const char* payload, size_t bytes) {
  std::vector<T> narrow(bytes / sizeof(T));
  if (bytes > 0) std::memcpy(narrow.data(), payload, bytes);  // data() of an empty vector may be null
  return std::vector<uint32_t>(narrow.begin(), narrow.end());
}

}  // namespace

uint64_t TokenHash(absl::Span<const uint32_t> tokens) {
  constexpr uint64_t kOffset = 0xcbf29ce484222325ull, kPrime = 0x100000001b3ull;
  const bool wide = std::any_of(tokens.begin(), tokens.end(), [](uint32_t t) { return t > 0xffff; });
  const size_t per_word = wide ? 2 : 4, bits = wide ? 32 : 16;
  uint64_t h = kOffset;
  for (size_t i = 0; i < tokens.size(); i += per_word) {
    uint64_t word = 0;
    for (size_t k = 0; k < per_word && i + k < tokens.size(); ++k) {
      word |= uint64_t{tokens[i + k]} << (bits * k);
    }
    h = (h ^ word) * kPrime;
  }
  h = (h ^ tokens.size()) * kPrime;
  return wide ? (h ^ 32) * kPrime : h;
}

absl::StatusOr<TokenFile> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  const size_t header_bytes = kLlmcHeaderInts * sizeof(int32_t);
  TokenFile file;
  file.path = path;
  const char* payload = bytes->data();
  size_t payload_bytes = bytes->size();
  int32_t magic = 0;
  if (bytes->size() >= sizeof(int32_t)) std::memcpy(&magic, bytes->data(), sizeof(int32_t));
  size_t width = 2;
  if (magic == kLlmcMagic || magic == kLlmcUint32Magic) {
    const bool wide = magic == kLlmcUint32Magic;
    const char* kind = wide ? "llm.c uint32 (llama-3)" : "llm.c";
    if (bytes->size() < header_bytes) {
      return absl::DataLossError(absl::StrCat(path, ": ", kind, " token file of ", bytes->size(),
                                              " bytes is shorter than its 1024-byte header"));
    }
    int32_t header[3];
    std::memcpy(header, bytes->data(), sizeof(header));
    const int32_t want = wide ? kLlmcUint32Version : kLlmcVersion;
    if (header[1] != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", kind, " token file (magic ", magic, ") of version ", header[1],
          " is not supported (expected ", want, wide ? ": uint32 tokens" : ": uint16 tokens",
          ")"));
    }
    width = wide ? 4 : 2;
    payload += header_bytes;
    payload_bytes -= header_bytes;
    if (header[2] < 0 || static_cast<size_t>(header[2]) * width != payload_bytes) {
      return absl::DataLossError(absl::StrCat(path, ": header says ", header[2], " tokens (",
                                              width, " bytes each) but ", payload_bytes,
                                              " bytes follow it (truncated?)"));
    }
    file.format = wide ? "llm.c uint32" : "llm.c";
  } else {
    if (bytes->size() % 2 != 0) {
      return absl::DataLossError(absl::StrCat(path, ": ", bytes->size(),
                                              " bytes is not a whole number of uint16 tokens"));
    }
    file.format = "uint16";
  }
  file.tokens = width == 4 ? Widen<uint32_t>(payload, payload_bytes)
                           : Widen<uint16_t>(payload, payload_bytes);
  file.min_vocab = MinVocab(file.tokens);
  file.hash = TokenHash(file.tokens);
  return file;
}

absl::StatusOr<TokenFile> ReadTextBytes(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  TokenFile file;
  file.path = path;
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

absl::Status CheckTokenIds(const TokenFile& file, int64_t vocab) {
  if (file.min_vocab <= vocab) return absl::OkStatus();  // every id fits: no scan
  for (size_t i = 0; i < file.tokens.size(); ++i) {
    if (file.tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.path, ": token id ", file.tokens[i], " at position ", i, " (of ",
          file.tokens.size(), ") does not fit the vocabulary of ", vocab, " (--vocab)"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteLlmcTokenFile(const std::string& path, absl::Span<const uint32_t> tokens,
                                TokenWidth width) {
  const bool wide = width == TokenWidth::kUint32;
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", tokens.size(), " tokens do not fit an llm.c header's int32 count"));
  }
  int32_t header[kLlmcHeaderInts] = {};
  header[0] = wide ? kLlmcUint32Magic : kLlmcMagic;
  header[1] = wide ? kLlmcUint32Version : kLlmcVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  std::string payload(tokens.size() * (wide ? 4 : 2), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (wide) {
      std::memcpy(payload.data() + 4 * i, &tokens[i], 4);
      continue;
    }
    if (tokens[i] > 0xffff) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": token id ", tokens[i], " at position ", i,
          " does not fit a uint16 token file (write it as uint32)"));
    }
    const uint16_t t = static_cast<uint16_t>(tokens[i]);
    std::memcpy(payload.data() + 2 * i, &t, 2);
  }
  STRATA_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path));
  STRATA_RETURN_IF_ERROR(f.Write(header, sizeof(header)));
  STRATA_RETURN_IF_ERROR(f.Write(payload.data(), payload.size()));
  return f.Commit();
}

}  // namespace strata::data
