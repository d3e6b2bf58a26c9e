// How a buffer of `count` elements is split into one shard per rank: the split rule that
// reduce_scatter and all_gather use by default, and that the ZeRO partition pass uses to decide
// which rank owns which elements of a parameter, gradient or optimizer state.
//
//   ShardRange mine = ShardOf(/*count=*/10, /*world_size=*/4, /*rank=*/1);   // {offset 3, count 3}
//   std::vector<int64_t> counts = ShardCounts(10, 4);                        // {3, 3, 2, 2}
//
// The first count % world_size ranks hold one element more than the others, so shards differ by
// at most one element, ranks hold consecutive ranges in rank order, and a count smaller than the
// world size leaves the last ranks with empty shards (count 0).
#pragma once

#include <cstdint>
#include <vector>

namespace strata::collectives {

struct ShardRange {
  int64_t offset = 0;  // of the shard's first element in the whole buffer
  int64_t count = 0;   // elements

  friend bool operator==(const ShardRange&, const ShardRange&) = default;
};

// count >= 0, world_size >= 1, 0 <= rank < world_size (broken invariants abort).
ShardRange ShardOf(int64_t count, int world_size, int rank);
// ShardOf(count, world_size, r).count for every rank r.
std::vector<int64_t> ShardCounts(int64_t count, int world_size);

}  // namespace strata::collectives
