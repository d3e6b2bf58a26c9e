// SoftmaxCrossEntropy's kernels (cross_entropy_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// Doubles of workspace LaunchSoftmaxCrossEntropy needs: the count of rows that are not ignored,
// then one loss term per row.
int64_t SoftmaxCrossEntropyWorkspaceDoubles(int64_t rows);

// logits (rows, v); targets (rows), int32 when targets_i64 is false, else int64; loss one float;
// dlogits like logits or null, may alias logits. on = 1 - label_smoothing,
// off = label_smoothing / v.
int LaunchSoftmaxCrossEntropy(const float* logits, const void* targets, bool targets_i64,
                              int64_t rows, int64_t v, float* loss, float* dlogits, float dloss,
                              int64_t ignore_index, float on, float off, double* workspace,
                              CUstream_st* stream);

}  // namespace strata::cuda::internal
