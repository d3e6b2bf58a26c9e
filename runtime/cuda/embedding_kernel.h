// Embedding's kernels (embedding_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// ids (n) int32 when ids_i64 is false, else int64; table (v, c); out (n, c). An id outside [0, v)
// gives a NaN row.
int LaunchEmbeddingForward(const void* ids, bool ids_i64, int64_t n, const float* table,
                           int64_t v, int64_t c, float* out, CUstream_st* stream);

// dtable (v, c) [+]= the rows of dout (n, c) gathered by id; ids outside [0, v) are skipped.
int LaunchEmbeddingBackward(const void* ids, bool ids_i64, int64_t n, const float* dout,
                            int64_t v, int64_t c, float* dtable, bool accumulate,
                            CUstream_st* stream);

}  // namespace strata::cuda::internal
