// Where the elements of an update's compact operands lie in its parameter, for the device
// updates (adamw_cuda.h, sgd_cuda.h): contiguous, or runs of `length` elements every `stride`
// (a partial-channel update, Note [partial channels] in graph/ops/channel_ops.cc, trains the
// first k columns of each row of a weight, whose gradient and state hold only those).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_PARAM_RUNS_INLINE __host__ __device__ __forceinline__
#else
#define STRATA_PARAM_RUNS_INLINE inline
#endif

namespace strata::optim {

struct ParamRuns {
  int64_t length = 0;  // 0: the parameter is contiguous, as its gradient
  int64_t stride = 0;  // >= length
  STRATA_PARAM_RUNS_INLINE bool contiguous() const { return length == 0 || length == stride; }
};

// The parameter's element of compact element i.
STRATA_PARAM_RUNS_INLINE int64_t ParamIndex(const ParamRuns& r, int64_t i) {
  return r.contiguous() ? i : (i / r.length) * r.stride + i % r.length;
}

}  // namespace strata::optim
