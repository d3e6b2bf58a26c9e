// A cuBLAS handle (with its cuBLASLt handle) for one device and one stream at a time, and cuBLAS
// errors as Status.
//
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CublasHandle> blas, CublasHandle::Create(0));
//   STRATA_RETURN_IF_ERROR(cuda::Matmul(stream, blas.get(), a, b, out));   // runtime/cuda/gemm.h
//   STRATA_RETURN_IF_ERROR(CublasStatus(cublasSgemm(...), "cublasSgemm"));
//
// Every GEMM launcher takes the handle (a pointer) right after the stream and binds it to that
// stream (cublasSetStream) before it enqueues anything. The workspace is allocated once, by
// Create, and given back to cuBLAS after every cublasSetStream (which would otherwise fall back to
// cuBLAS's own pool): no call allocates device memory. One handle serves one stream at a time, since work on
// two streams would share its workspace: keep a handle per stream (and per host thread).
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct CUstream_st;
struct cublasContext;    // cublasHandle_t
struct cublasLtContext;  // cublasLtHandle_t

namespace strata {

// A failed cuBLAS (or cuBLASLt) call as a Status naming the call and cuBLAS's status name and
// text; OK for CUBLAS_STATUS_SUCCESS. `status` is a cublasStatus_t. An allocation failure is
// ResourceExhausted, an invalid value InvalidArgument, an unsupported case Unimplemented, anything
// else Internal.
absl::Status CublasStatus(int status, absl::string_view call);

namespace cuda {

class CublasHandle {
 public:
  // What cuBLAS recommends for Hopper (32 MiB); smaller architectures use less of it.
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  // A handle on CUDA device `device` with a workspace of `workspace_bytes` there. The calling
  // thread's current device is restored before it returns.
  static absl::StatusOr<std::unique_ptr<CublasHandle>> Create(
      int device, size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  // Makes the next calls on handle() run on `stream`, with this handle's workspace.
  absl::Status Bind(CUstream_st* stream);

  cublasContext* handle() const { return handle_; }
  // For cuBLASLt calls (epilogue fusions); gemm.cc and linear.cc use cuBLAS alone so far.
  cublasLtContext* lt_handle() const { return lt_handle_; }
  int device() const { return device_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  CublasHandle() = default;

  int device_ = 0;
  cublasContext* handle_ = nullptr;
  cublasLtContext* lt_handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace cuda
}  // namespace strata
