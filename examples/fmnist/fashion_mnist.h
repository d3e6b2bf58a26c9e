// Fashion-MNIST from its four gzip IDX files (Debian's dataset-fashion-mnist installs them in
// kFashionMnistDir), and batches of it as the tensors a compiled step takes.
//
//   STRATA_ASSIGN_OR_RETURN(FashionMnist data, LoadFashionMnist(kFashionMnistDir));
//   data.train.size() == 60000, data.test.size() == 10000
//   FillBatch(data.train, {7, 3, ...}, images, labels);
//   // images (B, 1, 28, 28) f32, labels (B) i32
//
// Pixels are scaled to [0, 1] and then normalized with the training set's mean and standard
// deviation: (x / 255 - 0.2860) / 0.3530.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

namespace strata::examples {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
inline constexpr int64_t kFashionMnistSide = 28;
inline constexpr int64_t kFashionMnistClasses = 10;
inline constexpr double kFashionMnistMean = 0.2860, kFashionMnistStd = 0.3530;

struct FashionMnistSplit {
  std::vector<uint8_t> pixels;  // (n, 28, 28), row-major
  std::vector<uint8_t> labels;  // (n), each < 10
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

struct FashionMnist {
  FashionMnistSplit train, test;
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from `dir`. Errors name the file and
// what is wrong with it (missing, not 28x28 images, counts that disagree, a label >= 10).
absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& dir);

// Writes the normalized images and the labels of `split`'s examples `indices` into rows
// 0, 1, ... of `images` (B, 1, 28, 28) f32 and `labels` (B) i32, B == indices.size().
void FillBatch(const FashionMnistSplit& split, absl::Span<const int64_t> indices,
               const Tensor& images, const Tensor& labels);

}  // namespace strata::examples
