#include "offload/internal/extent_list.h"

#include <iterator>

#include "runtime/status.h"

namespace strata::offload::internal {

int64_t ExtentList::Take(int64_t bytes, bool* from_end) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    const int64_t offset = it->first, left = it->second - bytes;
    free_.erase(it);
    if (left > 0) free_.emplace(offset + bytes, left);
    *from_end = false;
    return offset;
  }
  *from_end = true;
  const int64_t offset = end_;
  end_ += bytes;
  return offset;
}

void ExtentList::UntakeEnd(int64_t offset, int64_t bytes) {
  STRATA_CHECK(offset + bytes == end_, "extent list: untake of [", offset, ", ", offset + bytes,
               ") which does not end the file at ", end_);
  end_ = offset;
}

void ExtentList::Give(int64_t offset, int64_t bytes) {
  auto next = free_.lower_bound(offset);
  STRATA_CHECK(next == free_.end() || next->first >= offset + bytes, "extent list: [", offset, ", ",
               offset + bytes, ") overlaps a free range");
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    STRATA_CHECK(prev->first + prev->second <= offset, "extent list: [", offset, ", ",
                 offset + bytes, ") overlaps a free range");
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      bytes += prev->second;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && next->first == offset + bytes) {
    bytes += next->second;
    free_.erase(next);
  }
  free_.emplace(offset, bytes);
}

int64_t ExtentList::free_bytes() const {
  int64_t total = 0;
  for (const auto& [offset, bytes] : free_) total += bytes;
  return total;
}

}  // namespace strata::offload::internal
