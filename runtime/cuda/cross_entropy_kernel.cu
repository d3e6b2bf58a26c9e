// Softmax cross-entropy in three kernels on one stream, each deterministic:
//   1. CountKernel (one block): the rows whose target is not ignore_index -> workspace[0]; the
//      gradient's scale dloss / count needs it before any row is done.
//   2. RowKernel: one block per row (RowThreads(v) threads, looping over wider rows): the row's
//      maximum, sum of exponentials (f32) and, with label smoothing, sum of logits (double); the
//      row's loss term (double) -> workspace[1 + row], and its gradient over dlogits.
//   3. TotalKernel (one block): the loss terms summed in double in a fixed order, divided by the
//      count (NaN when every row is ignored, as PyTorch).
// A target outside [0, v) other than ignore_index (which the CPU kernel refuses, but checking it
// here would need the targets on the host) makes its row's loss term and gradient NaN, so the
// loss is NaN.
#include <cmath>

#include "runtime/cuda/cross_entropy_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

template <typename Id>
__global__ void CountKernel(const Id* targets, int64_t rows, int64_t ignore_index,
                            double* count) {
  __shared__ double shared_d[kWarp];
  double n = 0.0;  // exact: integers below 2^53
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    n += static_cast<int64_t>(targets[r]) != ignore_index ? 1.0 : 0.0;
  }
  n = BlockSum(n, shared_d);
  if (threadIdx.x == 0) *count = n;
}

template <typename Id>
__global__ void RowKernel(const float* logits, const Id* targets, int64_t rows, int64_t v,
                          float dloss, int64_t ignore_index, float on, float off,
                          const double* count, double* row_loss, float* dlogits) {
  __shared__ float shared[kWarp];
  __shared__ double shared_d[kWarp];
  const double n = *count;
  const float grad_scale = n > 0 ? dloss / static_cast<float>(n) : 0.0f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = logits + r * v;
    float* d = dlogits != nullptr ? dlogits + r * v : nullptr;
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index || t < 0 || t >= v) {  // the same for the whole block
      const float fill = t == ignore_index ? 0.0f : NAN;
      if (d != nullptr) {
        for (int64_t i = threadIdx.x; i < v; i += blockDim.x) d[i] = fill;
      }
      if (threadIdx.x == 0) row_loss[r] = fill;
      continue;
    }
    // Every read of x comes before the first barrier of BlockMax or BlockSum, every write of d
    // after them: d may be x.
    const float target_logit = x[t];
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) m = fmaxf(m, x[i]);
    m = BlockMax(m, shared);
    float sum = 0.0f;
    double row_sum = 0.0;  // sum_j x_j, for the smoothing term V (m + log sum) - sum_j x_j
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      sum += expf(x[i] - m);
      if (off != 0.0f) row_sum += x[i];
    }
    sum = BlockSum(sum, shared);
    if (off != 0.0f) row_sum = BlockSum(row_sum, shared_d);  // off is the same for all
    if (threadIdx.x == 0) {
      const double lse = static_cast<double>(logf(sum)) + m;
      double term = on * (lse - target_logit);
      if (off != 0.0f) term += off * (static_cast<double>(v) * lse - row_sum);
      row_loss[r] = term;
    }
    if (d != nullptr) {
      // d = (softmax - on one_hot(t) - off) * grad_scale, rounded as the CPU kernel's steps
      const float scale = grad_scale / sum, shift = off * grad_scale;
      for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
        float g = expf(x[i] - m) * scale - shift;
        if (i == t) g -= on * grad_scale;
        d[i] = g;
      }
    }
  }
}

__global__ void TotalKernel(const double* count, const double* row_loss, int64_t rows,
                            float* loss) {
  __shared__ double shared_d[kWarp];
  double total = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) total += row_loss[r];
  total = BlockSum(total, shared_d);
  if (threadIdx.x == 0) {
    const double n = *count;
    *loss = n > 0 ? static_cast<float>(total / n) : NAN;
  }
}

template <typename Id>
int Launch(const float* logits, const Id* targets, int64_t rows, int64_t v, float* loss,
           float* dlogits, float dloss, int64_t ignore_index, float on, float off,
           double* workspace, cudaStream_t stream) {
  double* count = workspace;
  double* row_loss = workspace + 1;
  CountKernel<Id><<<1, kThreads, 0, stream>>>(targets, rows, ignore_index, count);
  int err = static_cast<int>(cudaGetLastError());
  if (err != 0) return err;
  if (rows > 0) {
    RowKernel<Id><<<RowBlocks(rows), RowThreads(v), 0, stream>>>(
        logits, targets, rows, v, dloss, ignore_index, on, off, count, row_loss, dlogits);
    err = static_cast<int>(cudaGetLastError());
    if (err != 0) return err;
  }
  TotalKernel<<<1, kThreads, 0, stream>>>(count, row_loss, rows, loss);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int64_t SoftmaxCrossEntropyWorkspaceDoubles(int64_t rows) { return rows + 1; }

int LaunchSoftmaxCrossEntropy(const float* logits, const void* targets, bool targets_i64,
                              int64_t rows, int64_t v, float* loss, float* dlogits, float dloss,
                              int64_t ignore_index, float on, float off, double* workspace,
                              CUstream_st* stream) {
  if (targets_i64) {
    return Launch(logits, static_cast<const int64_t*>(targets), rows, v, loss, dlogits, dloss,
                  ignore_index, on, off, workspace, stream);
  }
  return Launch(logits, static_cast<const int32_t*>(targets), rows, v, loss, dlogits, dloss,
                ignore_index, on, off, workspace, stream);
}

}  // namespace strata::cuda::internal
