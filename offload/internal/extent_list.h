// First-fit placement of extents in a file that only grows: freed ranges are kept sorted and
// merged with their neighbours, and a request takes the first free range that holds it, else the
// end of the file.
//
//   ExtentList list;
//   bool from_end;
//   int64_t at = list.Take(8192, &from_end);   // 0, the end of an empty file; list.end() == 8192
//   list.Give(at, 8192);                   // the range is free again, merged with its neighbours
//   list.Take(4096, &from_end);         // 0 again, from_end == false
#pragma once

#include <cstdint>
#include <map>

namespace strata::offload::internal {

class ExtentList {
 public:
  // Where `bytes` go: the start of the first free range that holds them, else the end of the file
  // (which moves past them). `from_end` says which.
  int64_t Take(int64_t bytes, bool* from_end);
  // Undoes a Take from the end that the file system refused (fallocate failed).
  void UntakeEnd(int64_t offset, int64_t bytes);
  void Give(int64_t offset, int64_t bytes);
  int64_t end() const { return end_; }
  int64_t free_bytes() const;

 private:
  std::map<int64_t, int64_t> free_;  // offset -> bytes, disjoint and not adjacent
  int64_t end_ = 0;
};

}  // namespace strata::offload::internal
