// Embedding lookup (a gather, one thread per output element) and its gradient.
//
// Note [a deterministic embedding gradient without sorting or atomics]
// Every element dtable[id, col] has exactly one owner thread: the thread of column `col` in the
// block row (blockIdx.y) `id % P`, P = EmbeddingPartitions(v). Each block stages the ids in chunks
// in shared memory, and each thread walks all tokens in token order, adding dout[i, col] into
// dtable[ids[i], col] only for the ids its partition owns. So each element is a sum taken by one
// thread in token order, exactly the CPU kernel's order: the result equals the CPU's bit for bit
// and never depends on scheduling. A warp's threads share the token (the same id test, made once
// per 32 tokens with a ballot) and touch consecutive columns, so the loads and stores coalesce.
// Work: every warp tests all n ids, but only n / P of them lead to memory traffic; P = 64 gives
// enough blocks (ceil(c / 256) x 64) to fill a device at GPT sizes.
#include "runtime/cuda/embedding_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

constexpr int kMaxPartitions = 64;
constexpr int kIdChunk = 1024;

inline int EmbeddingPartitions(int64_t v) {
  return static_cast<int>(std::clamp<int64_t>(v, 1, kMaxPartitions));
}

template <typename Id>
__global__ void EmbeddingForwardKernel(const Id* ids, int64_t n, const float* table, int64_t v,
                                       int64_t c, float* out) {
  for (int64_t e = GlobalIndex(); e < n * c; e += GridStride()) {
    const int64_t i = e / c, col = e - i * c;
    const int64_t id = static_cast<int64_t>(ids[i]);
    out[e] = id >= 0 && id < v ? table[id * c + col] : NAN;
  }
}

template <typename Id>
__global__ void EmbeddingBackwardKernel(const Id* ids, int64_t n, const float* dout, int64_t v,
                                        int64_t c, int partitions, float* dtable) {
  __shared__ int64_t chunk_id[kIdChunk];
  __shared__ int chunk_part[kIdChunk];  // the owning partition, -1 for an id outside [0, v)
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int part = static_cast<int>(blockIdx.y);
  const int lane = threadIdx.x % kWarp;
  for (int64_t base = 0; base < n; base += kIdChunk) {
    const int len = static_cast<int>(n - base < kIdChunk ? n - base : kIdChunk);
    __syncthreads();  // the previous chunk is done with
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
      const int64_t id = static_cast<int64_t>(ids[base + j]);
      chunk_id[j] = id;
      chunk_part[j] = id >= 0 && id < v ? static_cast<int>(id % partitions) : -1;
    }
    __syncthreads();
    // A warp tests 32 tokens at once (one per lane) and then takes the matching ones in token
    // order (the ballot's bits from the lowest). Every lane of the warp runs the loop, also those
    // past the last column, so that the ballot sees the whole warp.
    for (int j0 = 0; j0 < len; j0 += kWarp) {
      const int j = j0 + lane;
      unsigned mine = __ballot_sync(0xffffffffu, j < len && chunk_part[j] == part);
      while (mine != 0) {
        const int t = j0 + __ffs(static_cast<int>(mine)) - 1;
        mine &= mine - 1;
        if (col < c) dtable[chunk_id[t] * c + col] += dout[(base + t) * c + col];
      }
    }
  }
}

template <typename Id>
int Forward(const Id* ids, int64_t n, const float* table, int64_t v, int64_t c, float* out,
            cudaStream_t stream) {
  if (n * c == 0) return static_cast<int>(cudaSuccess);
  EmbeddingForwardKernel<Id><<<BlocksFor(n * c), kThreads, 0, stream>>>(ids, n, table, v, c, out);
  return static_cast<int>(cudaGetLastError());
}

template <typename Id>
int Backward(const Id* ids, int64_t n, const float* dout, int64_t v, int64_t c, float* dtable,
             bool accumulate, cudaStream_t stream) {
  if (v * c == 0) return static_cast<int>(cudaSuccess);
  if (!accumulate) {
    const int err = static_cast<int>(
        cudaMemsetAsync(dtable, 0, static_cast<size_t>(v * c) * sizeof(float), stream));
    if (err != 0) return err;
  }
  if (n == 0) return static_cast<int>(cudaSuccess);
  const int threads = RowThreads(c);
  const int partitions = EmbeddingPartitions(v);
  const dim3 grid(static_cast<unsigned>((c + threads - 1) / threads),
                  static_cast<unsigned>(partitions));
  EmbeddingBackwardKernel<Id><<<grid, threads, 0, stream>>>(ids, n, dout, v, c, partitions,
                                                            dtable);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchEmbeddingForward(const void* ids, bool ids_i64, int64_t n, const float* table,
                           int64_t v, int64_t c, float* out, CUstream_st* stream) {
  return ids_i64 ? Forward(static_cast<const int64_t*>(ids), n, table, v, c, out, stream)
                 : Forward(static_cast<const int32_t*>(ids), n, table, v, c, out, stream);
}

int LaunchEmbeddingBackward(const void* ids, bool ids_i64, int64_t n, const float* dout,
                            int64_t v, int64_t c, float* dtable, bool accumulate,
                            CUstream_st* stream) {
  return ids_i64 ? Backward(static_cast<const int64_t*>(ids), n, dout, v, c, dtable, accumulate,
                            stream)
                 : Backward(static_cast<const int32_t*>(ids), n, dout, v, c, dtable, accumulate,
                            stream);
}

}  // namespace strata::cuda::internal
