#include "graph/data/idx_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace strata::data {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reads exactly n bytes; false on a short read.
bool ReadExactly(gzFile f, void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

uint32_t BigEndian(const unsigned char b[4]) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdx(const std::string& path) {
  // gzopen reads uncompressed files transparently.
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open IDX file ", path));
  unsigned char magic[4];
  if (!ReadExactly(f.get(), magic, 4)) {
    return absl::DataLossError(absl::StrCat("IDX file ", path, ": no header"));
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0 || magic[3] > 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IDX file ", path, ": magic ", BigEndian(magic),
        " is not an unsigned-byte IDX array of 1 to 4 dimensions (expected 0x0801 .. 0x0804)"));
  }
  IdxArray array;
  int64_t total = 1;
  for (int d = 0; d < magic[3]; ++d) {
    unsigned char size[4];
    if (!ReadExactly(f.get(), size, 4)) {
      return absl::DataLossError(absl::StrCat("IDX file ", path, ": header ends in dimension ", d));
    }
    array.dims.push_back(BigEndian(size));
    // Sizes are below 2^32, so a product of two may still overflow int64: check the overflow
    // too (an earlier build multiplied first, which the fuzz target caught).
    if (__builtin_mul_overflow(total, array.dims.back(), &total) || total > kMaxIdxBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "IDX file ", path, ": dimensions (", absl::StrJoin(array.dims, ", "),
          "...) hold more than the ", kMaxIdxBytes, " bytes this reader accepts"));
    }
  }
  // Grow with the data read rather than trusting the header: a chunk at a time.
  constexpr size_t kChunk = size_t{1} << 20;
  while (array.data.size() < static_cast<size_t>(total)) {
    const size_t have = array.data.size();
    const size_t n = std::min(kChunk, static_cast<size_t>(total) - have);
    array.data.resize(have + n);
    if (!ReadExactly(f.get(), array.data.data() + have, n)) {
      return absl::DataLossError(absl::StrCat("IDX file ", path, ": expected ", total,
                                              " data bytes, the file is shorter (truncated?)"));
    }
  }
  return array;
}

}  // namespace strata::data
