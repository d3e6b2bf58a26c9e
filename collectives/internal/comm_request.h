// What a Communicator hands its backend: one validated collective, described by raw pointers and
// counts, plus for bucketed forms the copies into and out of the backend's staging buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace strata::collectives::internal {

using CommTicket = uint64_t;

enum class CommOp { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kBarrier };

// `count` elements between a tensor at `data` and element `staging_offset` of a staging buffer.
struct StagingCopy {
  char* data = nullptr;
  int64_t staging_offset = 0;
  int64_t count = 0;
};

struct CommRequest {
  // Also the op's sequence number: tickets are issued in call order, the same on every rank, so
  // the MPI backend tags the op's messages with it and errors name it ("all_reduce #7").
  CommTicket ticket = 0;
  CommOp op = CommOp::kBarrier;
  DType dtype = DType::kF32;
  int root = 0;  // broadcast
  // Elements of the whole buffer: all_reduce and broadcast the buffer, reduce_scatter the input,
  // all_gather the output.
  int64_t count = 0;
  std::vector<int64_t> rank_counts;  // reduce_scatter, all_gather: per rank; sum is `count`
  // all_reduce, broadcast: input == output (in place). reduce_scatter: input `count` elements,
  // output rank_counts[rank]; all_gather the other way round. Bucketed: null, the backend's
  // staging buffers of those sizes take their place.
  const void* input = nullptr;
  void* output = nullptr;
  bool bucketed = false;
  int tensors = 1;                 // for messages
  std::vector<StagingCopy> pack;   // tensor -> input staging, before the collective
  std::vector<StagingCopy> unpack; // output staging -> tensor, after it
  int64_t bytes_sent = 0;          // this rank's, by Note [bytes sent]
  // Issued by a blocking call (Communicator::Blocking()): its caller waits for it at once.
  bool caller_waits = false;

  int64_t input_count(int rank) const;   // elements of input (or its staging)
  int64_t output_count(int rank) const;  // elements of output
  // "all_reduce #7 (f32, 1024 elements, 4096 bytes)"; "#7" is the ticket.
  std::string Describe() const;
};

}  // namespace strata::collectives::internal
