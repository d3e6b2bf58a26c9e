#include "examples/common/zero_flags.h"

namespace strata::examples {

void ZeroFlags::Register(Flags& f) {
  f.Add("zero-stage", &stage, {.min = 0, .max = 3},
        "with several ranks: 0 all-reduces gradients; 1 and 2 shard the optimizer state and "
        "gradients; 3 shards the parameters too, gathered before each use (docs/zero.md)");
  f.Add("zero-persistence-threshold", &zero.persistence_threshold, {.min = 0, .max = kMaxCount},
        "stages 1-3: parameters of fewer elements stay whole on every rank; every stage: their "
        "gradients' all-reduces go out in buckets (--zero-bucket-bytes)");
  f.AddBytes("zero-reuse-bytes", &zero.reuse_bytes, {.zero = "release after each use"},
             "stage 3: keep a gathered parameter for its next use when at most this many bytes "
             "of other gathered parameters are used in between");
  f.AddBytes("zero-bucket-bytes", &zero.bucket_bytes,
             {.zero = "one gather and one all-reduce per tensor"},
             "stage 3: gathers issued together go out as one all-gather of up to this many bytes; "
             "every stage: the small gradients (--zero-persistence-threshold) are all-reduced in "
             "buckets of up to this many bytes");
}

}  // namespace strata::examples
