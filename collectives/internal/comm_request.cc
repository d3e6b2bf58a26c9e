#include "collectives/internal/comm_request.h"

#include "absl/strings/str_cat.h"

namespace strata::collectives::internal {

int64_t CommRequest::input_count(int rank) const {
  return op == CommOp::kAllGather ? rank_counts[rank] : count;
}

int64_t CommRequest::output_count(int rank) const {
  return op == CommOp::kReduceScatter ? rank_counts[rank] : count;
}

std::string CommRequest::Describe() const {
  static constexpr const char* kNames[] = {"all_reduce", "reduce_scatter", "all_gather",
                                           "broadcast", "barrier"};
  std::string text = absl::StrCat(kNames[static_cast<int>(op)], bucketed ? "_bucketed" : "",
                                  " #", ticket);
  if (op == CommOp::kBarrier) return text;
  absl::StrAppend(&text, " (", DTypeName(dtype), ", ", count, " elements, ",
                  count * static_cast<int64_t>(SizeOf(dtype)), " bytes");
  if (bucketed) absl::StrAppend(&text, ", ", tensors, " tensors");
  if (op == CommOp::kBroadcast) absl::StrAppend(&text, ", root ", root);
  absl::StrAppend(&text, ")");
  return text;
}

}  // namespace strata::collectives::internal
