#include "tests/runtime/cuda/cuda_test_util.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/allocator.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::testing {

void CudaKernelTest::SetUp() {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) GTEST_SKIP() << found.why_none;
  absl::StatusOr<std::unique_ptr<CachingAllocator>> allocator =
      CreateCudaDeviceAllocator(Device::Cuda(0));
  ASSERT_TRUE(allocator.ok()) << allocator.status();
  allocator_ = *std::move(allocator);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  stream_ = s;
}

void CudaKernelTest::TearDown() {
  if (stream_ != nullptr) {
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess) << "the test's kernels failed";
    cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
}

Tensor CudaKernelTest::DeviceEmpty(const Shape& shape, DType dtype) {
  absl::StatusOr<Tensor> t = Tensor::Empty(shape, dtype, *allocator_);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return Tensor();
  if (t->nbytes() > 0) {
    EXPECT_EQ(cudaMemsetAsync(t->raw_data(), 0xFF, t->nbytes(), stream_), cudaSuccess);
  }
  return *std::move(t);
}

Tensor CudaKernelTest::DeviceZeros(const Shape& shape, DType dtype) {
  Tensor t = DeviceEmpty(shape, dtype);
  if (t.defined() && t.nbytes() > 0) {
    EXPECT_EQ(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), stream_), cudaSuccess);
  }
  return t;
}

Tensor CudaKernelTest::ToDevice(const Tensor& host) {
  absl::StatusOr<Tensor> packed = host.Contiguous(DefaultCpuAllocator());
  EXPECT_TRUE(packed.ok()) << packed.status();
  Tensor d = DeviceEmpty(host.shape(), host.dtype());
  if (!packed.ok() || !d.defined() || d.nbytes() == 0) return d;
  EXPECT_EQ(cudaMemcpyAsync(d.raw_data(), packed->raw_data(), d.nbytes(), cudaMemcpyHostToDevice,
                            stream_),
            cudaSuccess);
  // `packed` dies on return: the copy must have read it.
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  return d;
}

Tensor CudaKernelTest::ToHost(const Tensor& device) {
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess) << "a kernel before the copy failed";
  EXPECT_TRUE(device.is_contiguous()) << device.ToString();
  absl::StatusOr<Tensor> h = Tensor::Empty(device.shape(), device.dtype(), DefaultCpuAllocator());
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok() || h->nbytes() == 0) return h.ok() ? *h : Tensor();
  EXPECT_EQ(cudaMemcpy(h->raw_data(), device.raw_data(), h->nbytes(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return *std::move(h);
}

void ExpectRelativeError(const Tensor& got, const Tensor& want, double tolerance,
                         absl::string_view what, double min_scale) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = ToDouble(got);
  const std::vector<double> w = ToDouble(want);
  double scale = min_scale;
  for (double v : w) {
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  }
  double worst = 0.0;
  size_t worst_at = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i]) || !std::isfinite(g[i])) {
      const bool same = (std::isnan(w[i]) && std::isnan(g[i])) || g[i] == w[i];
      EXPECT_TRUE(same) << what << ": element " << i << " is " << g[i] << ", expected " << w[i];
      continue;
    }
    const double err = std::abs(g[i] - w[i]) / (scale > 0.0 ? scale : 1.0);
    if (err > worst) worst = err, worst_at = i;
  }
  EXPECT_LE(worst, tolerance) << what << ": worst element " << worst_at << " is "
                              << (g.empty() ? 0.0 : g[worst_at]) << ", expected "
                              << (w.empty() ? 0.0 : w[worst_at]) << " (max |want| " << scale
                              << ")";
}

Tensor CopyOf(const Tensor& t) {
  Tensor c = EmptyF32(t.shape());
  EXPECT_TRUE(c.CopyFrom(t).ok());
  return c;
}

Tensor ToF32(const Tensor& t) { return FromDouble(ToDouble(t), t.shape()); }

Tensor RandomIn(const Shape& shape, DType dtype, std::mt19937_64& rng) {
  const Tensor r = RandomTensor(shape, rng);
  return dtype == DType::kF32 ? r : FromDouble(ToDouble(r), shape, dtype);
}

}  // namespace strata::testing
