#include "examples/fmnist/fashion_mnist.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "graph/data/idx_file.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

absl::StatusOr<FashionMnistSplit> LoadSplit(const std::string& dir, const std::string& prefix) {
  const std::string images_path = absl::StrCat(dir, "/", prefix, "-images-idx3-ubyte.gz");
  const std::string labels_path = absl::StrCat(dir, "/", prefix, "-labels-idx1-ubyte.gz");
  STRATA_ASSIGN_OR_RETURN(data::IdxArray images, data::ReadIdx(images_path));
  STRATA_ASSIGN_OR_RETURN(data::IdxArray labels, data::ReadIdx(labels_path));
  if (images.dims.size() != 3 || images.dims[1] != kFashionMnistSide ||
      images.dims[2] != kFashionMnistSide) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, ": expected (n, 28, 28) images, got ", images.dims.size(),
                     " dimensions", images.dims.size() == 3
                                        ? absl::StrCat(" (", images.dims[0], ", ", images.dims[1],
                                                       ", ", images.dims[2], ")")
                                        : ""));
  }
  if (labels.dims.size() != 1 || labels.dims[0] != images.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, ": expected ", images.dims[0],
                                                   " labels (one per image of ", images_path,
                                                   ")"));
  }
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= kFashionMnistClasses) {
      return absl::InvalidArgumentError(absl::StrCat(labels_path, ": label ", i, " is ",
                                                     labels.data[i], ", expected 0..9"));
    }
  }
  FashionMnistSplit split;
  split.pixels = std::move(images.data);
  split.labels = std::move(labels.data);
  return split;
}

}  // namespace

absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& dir) {
  FashionMnist d;
  STRATA_ASSIGN_OR_RETURN(d.train, LoadSplit(dir, "train"));
  STRATA_ASSIGN_OR_RETURN(d.test, LoadSplit(dir, "t10k"));
  return d;
}

void FillBatch(const FashionMnistSplit& split, absl::Span<const int64_t> indices,
               const Tensor& images, const Tensor& labels) {
  constexpr int64_t kPixels = kFashionMnistSide * kFashionMnistSide;
  const int64_t b = static_cast<int64_t>(indices.size());
  STRATA_CHECK(images.dtype() == DType::kF32 && images.numel() == b * kPixels &&
                   labels.dtype() == DType::kI32 && labels.numel() == b,
               "FillBatch: tensors do not fit a batch of ", b);
  static const std::array<float, 256> kValue = [] {
    std::array<float, 256> v{};
    for (int i = 0; i < 256; ++i) {
      v[i] = static_cast<float>((i / 255.0 - kFashionMnistMean) / kFashionMnistStd);
    }
    return v;
  }();
  float* x = images.data<float>();
  int32_t* y = labels.data<int32_t>();
  for (int64_t r = 0; r < b; ++r) {
    const int64_t i = indices[r];
    STRATA_CHECK(i >= 0 && i < split.size(), "FillBatch: example ", i, " out of ", split.size());
    const uint8_t* src = split.pixels.data() + i * kPixels;
    for (int64_t p = 0; p < kPixels; ++p) x[r * kPixels + p] = kValue[src[p]];
    y[r] = split.labels[i];
  }
}

}  // namespace strata::examples
