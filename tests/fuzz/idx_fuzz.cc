// Fuzz target: ReadIdx on arbitrary bytes, plain or gzip (zlib reads both through gzopen).
#include <zlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "graph/data/idx_file.h"
#include "tests/fuzz/fuzz_target.h"

namespace strata::fuzz {

std::vector<std::string> FuzzSeeds() {
  // 2 images of 3 x 2 pixels, and 3 labels.
  std::string images = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) images.push_back(static_cast<char>(i * 20));
  const std::string labels = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4};
  // The images again, gzip-compressed as Fashion-MNIST ships.
  const std::string gz_path = (std::filesystem::path(TempDir()) / "seed.gz").string();
  gzFile gz = gzopen(gz_path.c_str(), "wb");
  gzwrite(gz, images.data(), static_cast<unsigned>(images.size()));
  gzclose(gz);
  return {images, labels, ReadWholeFile(gz_path)};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  const std::string path = fuzz::WriteInput("input-idx", data, size);
  absl::StatusOr<data::IdxArray> a = data::ReadIdx(path);
  if (a.ok()) {
    int64_t n = 1;
    for (int64_t d : a->dims) n *= d;
    if (n != static_cast<int64_t>(a->data.size())) std::abort();  // dims describe the data
  }
  return 0;
}
