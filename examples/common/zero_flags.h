// The ZeRO flags of the example programs (strata-gpt, strata-fmnist), one definition for both:
// how a data-parallel run partitions its model states over the ranks (graph/zero_options.h,
// docs/zero.md).
//
//   ZeroFlags zero;
//   zero.Register(flags);                    // --zero-stage, --zero-persistence-threshold, ...
//   if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;
//   train_options.zero = zero.options();
#pragma once

#include <cstdint>

#include "examples/common/flags.h"
#include "graph/zero_options.h"

namespace strata::examples {

struct ZeroFlags {
  int64_t stage = 0;
  graph::ZeroOptions zero;  // the other fields, as given

  void Register(Flags& flags);
  graph::ZeroOptions options() const {
    graph::ZeroOptions o = zero;
    o.stage = static_cast<int>(stage);
    return o;
  }
};

}  // namespace strata::examples
