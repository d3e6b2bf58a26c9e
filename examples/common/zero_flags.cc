#include "examples/common/zero_flags.h"

namespace strata::examples {

void ZeroFlags::Register(Flags& f) {
  f.Add("zero-stage", &stage, {.min = 0, .max = 3},
        "with several ranks: 0 all-reduces gradients; 1 and 2 shard the optimizer state and "
        "gradients; 3 shards the parameters too, gathered before each use (docs/zero.md)");
  f.Add("zero-persistence-threshold", &zero.persistence_threshold, {.min = 0, .max = kMaxCount},
        "stages 1-3: parameters of fewer elements stay whole on every rank");
  f.AddBytes("zero-reuse-bytes", &zero.reuse_bytes, {.zero = "release after each use"},
             "stage 3: keep a gathered parameter for its next use when at most this many bytes "
             "of other gathered parameters are used in between");
  f.AddBytes("zero-bucket-bytes", &zero.bucket_bytes, {.zero = "one gather per parameter"},
             "stage 3: gathers issued together go out as one all-gather of up to this many bytes");
}

}  // namespace strata::examples
