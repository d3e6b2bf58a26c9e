// cuBLAS on the CPU for the emulated tests (include/cublas_v2.h says what and why).
#include <cstdint>
#include <cstring>

#include "cublasLt.h"
#include "cublas_v2.h"
#include "runtime/dtype.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct cublasLtContext {};

namespace {

double Load(const void* base, cudaDataType type, int64_t index) {
  switch (type) {
    case CUDA_R_32F: return static_cast<const float*>(base)[index];
    case CUDA_R_16BF: return strata::Bf16ToFloat(static_cast<const uint16_t*>(base)[index]);
    case CUDA_R_16F: return strata::F16ToFloat(static_cast<const uint16_t*>(base)[index]);
    default: return 0;
  }
}

void Store(void* base, cudaDataType type, int64_t index, float value) {
  switch (type) {
    case CUDA_R_32F: static_cast<float*>(base)[index] = value; break;
    case CUDA_R_16BF: static_cast<uint16_t*>(base)[index] = strata::FloatToBf16(value); break;
    case CUDA_R_16F: static_cast<uint16_t*>(base)[index] = strata::FloatToF16(value); break;
    default: break;
  }
}

// An f32 operand as tensor cores read it for a FAST compute type: `fraction` bits (10 for
// CUBLAS_COMPUTE_32F_FAST_TF32, 7 for _FAST_16BF), rounded to nearest even.
double RoundFraction(double v, int fraction) {
  uint32_t bits;
  const float f = static_cast<float>(v);
  std::memcpy(&bits, &f, 4);
  const int drop = 23 - fraction;
  const uint32_t half = (1u << (drop - 1)) - 1, mask = (1u << drop) - 1;
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + half + ((bits >> drop) & 1u)) & ~mask;
  float r;
  std::memcpy(&r, &bits, 4);
  return r;
}

bool Supported(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }

// One column-major product C = alpha op(A) op(B) + beta C, with cuBLAS's argument checks.
cublasStatus_t Gemm(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                    float alpha, const void* a, cudaDataType a_type, int lda, const void* b,
                    cudaDataType b_type, int ldb, float beta, void* c, cudaDataType c_type,
                    int ldc, cublasComputeType_t compute) {
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  const auto at_least = [](int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
  if (m < 0 || n < 0 || k < 0 || !at_least(lda, ta ? k : m) || !at_least(ldb, tb ? n : k) ||
      !at_least(ldc, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!Supported(a_type) || !Supported(b_type) || !Supported(c_type) || a_type != b_type) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const bool tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32 && a_type == CUDA_R_32F;
  const bool bf16 = compute == CUBLAS_COMPUTE_32F_FAST_16BF && a_type == CUDA_R_32F;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int p = 0; p < k; ++p) {
        double x = Load(a, a_type, ta ? p + int64_t{i} * lda : i + int64_t{p} * lda);
        double y = Load(b, b_type, tb ? j + int64_t{p} * ldb : p + int64_t{j} * ldb);
        if (tf32) x = RoundFraction(x, 10), y = RoundFraction(y, 10);
        if (bf16) x = RoundFraction(x, 7), y = RoundFraction(y, 7);
        sum += x * y;
      }
      const int64_t at = i + int64_t{j} * ldc;
      double out = alpha * sum;
      if (beta != 0) out += beta * Load(c, c_type, at);  // with beta 0, C is not read
      Store(c, c_type, at, static_cast<float>(out));
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

int64_t Bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  return handle == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_ALLOC_FAILED: return "resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the requested functionality is not supported";
    default: return "an error in the emulated cuBLAS";
  }
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* a, cudaDataType a_type, int lda, const void* b,
                            cudaDataType b_type, int ldb, const void* beta, void* c,
                            cudaDataType c_type, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  return Gemm(transa, transb, m, n, k, *static_cast<const float*>(alpha), a, a_type, lda, b,
              b_type, ldb, *static_cast<const float*>(beta), c, c_type, ldc, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* a, cudaDataType a_type, int lda, long long stride_a,
    const void* b, cudaDataType b_type, int ldb, long long stride_b, const void* beta, void* c,
    cudaDataType c_type, int ldc, long long stride_c, int batch, cublasComputeType_t compute,
    cublasGemmAlgo_t algo) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t s = Gemm(
        transa, transb, m, n, k, *static_cast<const float*>(alpha),
        static_cast<const char*>(a) + i * stride_a * Bytes(a_type), a_type, lda,
        static_cast<const char*>(b) + i * stride_b * Bytes(b_type), b_type, ldb,
        *static_cast<const float*>(beta), static_cast<char*>(c) + i * stride_c * Bytes(c_type),
        c_type, ldc, compute);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
  }
  return CUBLAS_STATUS_SUCCESS;
}
