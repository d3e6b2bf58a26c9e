#include "collectives/shard.h"

#include "runtime/status.h"

namespace strata::collectives {

ShardRange ShardOf(int64_t count, int world_size, int rank) {
  STRATA_CHECK(count >= 0 && world_size >= 1 && rank >= 0 && rank < world_size, "count ", count,
               ", world size ", world_size, ", rank ", rank);
  const int64_t base = count / world_size;
  const int64_t longer = count % world_size;  // the first `longer` ranks hold base + 1
  return ShardRange{.offset = rank * base + (rank < longer ? rank : longer),
                    .count = base + (rank < longer ? 1 : 0)};
}

std::vector<int64_t> ShardCounts(int64_t count, int world_size) {
  std::vector<int64_t> counts(world_size);
  for (int r = 0; r < world_size; ++r) counts[r] = ShardOf(count, world_size, r).count;
  return counts;
}

}  // namespace strata::collectives
