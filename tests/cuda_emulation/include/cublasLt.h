// The cuBLASLt handle calls runtime/cuda/blas_handle.cc makes, on the CPU (cublas.cc).
#pragma once

#include "cublas_v2.h"

struct cublasLtContext;
typedef struct cublasLtContext* cublasLtHandle_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
