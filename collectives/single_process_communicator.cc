#include "collectives/single_process_communicator.h"

#include <cstring>

namespace strata::collectives {

void SingleProcessCommunicator::Submit(internal::CommRequest request) {
  const int64_t bytes = request.count * static_cast<int64_t>(SizeOf(request.dtype));
  const bool copies = request.op == CommOp::kReduceScatter || request.op == CommOp::kAllGather;
  if (request.bucketed && copies) {
    char* input = nullptr;
    char* output = nullptr;
    staging_.Pack(request, /*rank=*/0, &input, &output);
    if (bytes > 0) std::memcpy(output, input, bytes);
    staging_.Unpack(request, output);
  } else if (copies && request.input != request.output && bytes > 0) {
    std::memcpy(request.output, request.input, bytes);  // the validation excluded overlap
  }
  // all_reduce, broadcast and barrier of one rank leave the data as it is (bucketed all_reduce
  // would copy each tensor out and back unchanged).
  tickets().Complete(request.ticket, absl::OkStatus());
}

}  // namespace strata::collectives
