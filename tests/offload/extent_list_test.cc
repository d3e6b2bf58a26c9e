// Tests of ExtentList against a byte map kept by the test: random takes and gives never overlap,
// free ranges merge, and first fit takes the lowest free range that holds a request.
#include "offload/internal/extent_list.h"

#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace strata::offload::internal {
namespace {

TEST(ExtentListTest, RandomTakesAndGivesMatchAFirstFitModel) {
  ExtentList list;
  std::vector<char> used;  // per 4 KiB unit of the file: taken or not
  std::map<int64_t, int64_t> live;
  std::mt19937 rng(3);
  for (int step = 0; step < 5000; ++step) {
    if (!live.empty() && rng() % 2 == 0) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      for (int64_t u = it->first; u < it->first + it->second; ++u) used[u] = 0;
      list.Give(it->first * 4096, it->second * 4096);
      live.erase(it);
    } else {
      const int64_t units = 1 + rng() % 64;
      // The model: the lowest run of `units` free units, else the end.
      int64_t expect = static_cast<int64_t>(used.size()), run = 0;
      for (int64_t u = 0; u < static_cast<int64_t>(used.size()); ++u) {
        run = used[u] ? 0 : run + 1;
        if (run == units) {
          expect = u - units + 1;
          break;
        }
      }
      bool from_end = false;
      const int64_t offset = list.Take(units * 4096, &from_end);
      ASSERT_EQ(offset, expect * 4096) << "step " << step;
      ASSERT_EQ(from_end, expect == static_cast<int64_t>(used.size()));
      if (from_end) used.resize(used.size() + units, 0);
      for (int64_t u = expect; u < expect + units; ++u) used[u] = 1;
      live[expect] = units;
    }
    int64_t free_units = 0;
    for (char c : used) free_units += c == 0;
    ASSERT_EQ(list.free_bytes(), free_units * 4096);
    ASSERT_EQ(list.end(), static_cast<int64_t>(used.size()) * 4096);
  }
}

TEST(ExtentListTest, UntakeEndRestoresTheEnd) {
  ExtentList list;
  bool from_end = false;
  EXPECT_EQ(list.Take(8192, &from_end), 0);
  const int64_t at = list.Take(4096, &from_end);
  list.UntakeEnd(at, 4096);
  EXPECT_EQ(list.end(), 8192);
  EXPECT_EQ(list.Take(4096, &from_end), 8192);
}

}  // namespace
}  // namespace strata::offload::internal
