// The fixture of the tests of kernels that run on cuBLAS (gemm, linear): CudaKernelTest plus a
// cuBLAS handle, created after the device is found. (Apart from cuda_test_util.h, which keeps to
// the CUDA runtime.)
//
//   class LinearCudaTest : public CublasKernelTest {};
//   ASSERT_OK(cuda::LinearForward(stream(), blas(), x, w, b, y));
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "runtime/cuda/blas_handle.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::testing {

class CublasKernelTest : public CudaKernelTest {
 protected:
  void SetUp() override {
    CudaKernelTest::SetUp();
    if (IsSkipped()) return;
    absl::StatusOr<std::unique_ptr<cuda::CublasHandle>> h = cuda::CublasHandle::Create(0);
    ASSERT_TRUE(h.ok()) << h.status();
    blas_ = std::move(*h);
  }
  void TearDown() override {
    blas_.reset();
    CudaKernelTest::TearDown();
  }
  cuda::CublasHandle* blas() const { return blas_.get(); }

 private:
  std::unique_ptr<cuda::CublasHandle> blas_;
};

}  // namespace strata::testing
