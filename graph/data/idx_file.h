// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
//   STRATA_ASSIGN_OR_RETURN(IdxArray images, ReadIdx(dir + "/train-images-idx3-ubyte.gz"));
//   images.dims == {60000, 28, 28}; images.data.size() == 60000 * 28 * 28   // uint8 pixels
//
// Layout: a big-endian magic 0x000008NN (0x08 = unsigned bytes, NN = number of dimensions), NN
// big-endian uint32 sizes, then the bytes. A header may claim any sizes, so arrays of more than
// kMaxIdxBytes are refused, and memory grows only as the data actually arrive: a short file
// whose header claims terabytes costs no more than its own bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::data {

inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 32;  // 4 GiB; Fashion-MNIST is 47 MB

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

absl::StatusOr<IdxArray> ReadIdx(const std::string& path);

}  // namespace strata::data
