// A Communicator runs collectives over the ranks of one data-parallel job. Every collective is
// asynchronous: it returns a ticket at once and runs on the backend's communication stream (the
// MPI progress thread, the NCCL CUDA stream), in the order the calls were made, which must be the
// same order on every rank. Waiting is explicit and bounded (Note [collective timeouts] in
// comm_options.h).
//
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicator(options));
//   STRATA_ASSIGN_OR_RETURN(CommTicket t, comm->AllReduce(grad));           // sum, in place
//   compute->Wait(comm->CompletionEvent(t));     // a stream goes on once the all-reduce is done
//   ...
//   STRATA_RETURN_IF_ERROR(comm->Wait(t));       // every ticket is waited on once, for its status
//
//   // ZeRO: this rank's shard of a gradient, then every rank's shard of a parameter.
//   ShardRange mine = ShardOf(grad.numel(), comm->world_size(), comm->rank());
//   STRATA_ASSIGN_OR_RETURN(CommTicket rs, comm->ReduceScatter(grad, grad_shard));   // mine.count
//   STRATA_ASSIGN_OR_RETURN(CommTicket ag, comm->AllGather(param_shard, param));
//   // Many small tensors in one message each way: copied into a staging buffer, one collective,
//   // copied back, all on the communication stream.
//   STRATA_ASSIGN_OR_RETURN(CommTicket b, comm->AllReduceBucketed(small_grads));
//   int64_t sent = comm->bytes_sent();           // running count; a step reports its difference
//
// The calls may come from several threads; they are numbered and run in the order they were
// made, which must be the same on every rank. Buffers are contiguous tensors of f32 or i32 on the communicator's device(); they must stay
// alive and untouched (inputs unchanged, outputs unread) until the ticket completes. Sums of f32
// depend on the order of additions, which the backend fixes: every rank receives bit-identical
// results. Sums of i32 wrap around on overflow (two's complement), as MPI's and NCCL's do.
//
// Note [bytes sent]
// bytes_sent() counts, per collective that completed, the bytes this rank sends to its peers
// under the ring algorithms (MPI backend: what it actually sends; NCCL: the volume of its ring
// algorithms), S being the bytes of the whole buffer, N the world size and shard r the bytes of
// rank r's shard (ShardOf):
//   all_reduce      2(N-1)/N * S   (ring reduce-scatter, then ring all-gather; exactly
//                                   2S - shard r - shard r+1 when N does not divide the count)
//   reduce_scatter  (N-1)/N * S    (every shard but this rank's: S - shard r)
//   all_gather      (N-1)/N * S    (every shard but the next rank's: S - shard r+1)
//   broadcast       S              (a pipelined chain from the root: every rank but the chain's
//                                   last, the one before the root, forwards the whole buffer)
//   barrier         0              (empty messages)
// A world of one sends nothing. Bucketed ops count their staging buffer, i.e. the sum of their
// tensors. RingBytesSent gives the same numbers for planning. One exception: the MPI backend's
// flat broadcast (every rank on one node, Note [broadcast on one node] in mpi_communicator.h)
// sends (N-1) * S from the root and nothing from the other ranks: the same total.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "collectives/internal/comm_request.h"
#include "collectives/internal/ticket_table.h"
#include "collectives/shard.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace strata::collectives {

using internal::CommOp;
using CommTicket = internal::CommTicket;

absl::string_view CommOpName(CommOp op);  // "all_reduce", ...

// This rank's bytes sent for one collective (Note [bytes sent]): `count` elements of
// `element_size` bytes in the whole buffer, split per `rank_counts` (empty: ShardCounts).
int64_t RingBytesSent(CommOp op, int64_t count, absl::Span<const int64_t> rank_counts,
                      size_t element_size, int world_size, int rank, int root = 0);

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  Device device() const { return device_; }  // where buffers live
  virtual std::string Describe() const = 0;  // "mpi, rank 0 of 2, timeout 300 s"

  // Sum over ranks, in place.
  absl::StatusOr<CommTicket> AllReduce(const Tensor& data);
  // `output` (this rank's shard, rank_counts[rank()] elements) = the sum over ranks of that shard
  // of `input` (sum of rank_counts elements). Without rank_counts: ShardCounts(input.numel()).
  // `output` may be exactly this rank's shard of `input`; no other overlap.
  absl::StatusOr<CommTicket> ReduceScatter(const Tensor& input, const Tensor& output);
  absl::StatusOr<CommTicket> ReduceScatter(const Tensor& input, const Tensor& output,
                                           absl::Span<const int64_t> rank_counts);
  // `output` (sum of rank_counts elements) = every rank's `input` (rank_counts[r] elements) in
  // rank order. Without rank_counts: ShardCounts(output.numel()). `input` may be exactly this
  // rank's shard of `output`; no other overlap.
  absl::StatusOr<CommTicket> AllGather(const Tensor& input, const Tensor& output);
  absl::StatusOr<CommTicket> AllGather(const Tensor& input, const Tensor& output,
                                       absl::Span<const int64_t> rank_counts);
  // `data` on every rank = `data` on `root`.
  absl::StatusOr<CommTicket> Broadcast(const Tensor& data, int root);
  // Completes once every rank has called it.
  absl::StatusOr<CommTicket> Barrier();

  // Bucketed forms: one message for many tensors of one dtype. AllReduceBucketed sums each
  // tensor in place. ReduceScatterBucketed: outputs[i] = this rank's shard (ShardOf) of the sum of
  // inputs[i]; AllGatherBucketed: outputs[i] = the shards inputs[i] of every rank, where
  // outputs[i].numel() determines the split. The staging layout is rank-major (every tensor's
  // shard of rank 0, then of rank 1, ...), so each rank's part is one contiguous range.
  absl::StatusOr<CommTicket> AllReduceBucketed(absl::Span<const Tensor> tensors);
  absl::StatusOr<CommTicket> ReduceScatterBucketed(absl::Span<const Tensor> inputs,
                                                   absl::Span<const Tensor> outputs);
  absl::StatusOr<CommTicket> AllGatherBucketed(absl::Span<const Tensor> inputs,
                                               absl::Span<const Tensor> outputs);

  // Blocks until `ticket` completed and returns its status. Bounded: the communication stream
  // ends every collective within the timeout (Note [collective timeouts]). Each ticket is waited
  // on once; a ticket never issued or already waited on is InvalidArgument.
  absl::Status Wait(CommTicket ticket) {
    RunQueuedUpTo(ticket);
    return tickets_.Wait(ticket);
  }
  // A host Event that completes when `ticket` does (failed or not: the status comes from Wait),
  // so that a Stream can wait on it. Complete at once for a ticket already waited on.
  Event CompletionEvent(CommTicket ticket) { return tickets_.CompletionEvent(ticket); }

  // The blocking forms of the calls above: issue, then Wait, in one call, for a caller that
  // needs the result at once (a stream running a collective instruction, a loss to average).
  // Same order, validation and timeouts; what they save is the hand-off to the communication
  // stream where the backend can skip it (the MPI backend runs the collective on the calling
  // thread and never wakes its communication thread: Note [the waiting thread helps]).
  //   STRATA_RETURN_IF_ERROR(comm->Blocking().AllGather(param_shard, param));
  class BlockingCalls {
   public:
    absl::Status AllReduce(const Tensor& data);
    absl::Status ReduceScatter(const Tensor& input, const Tensor& output);
    absl::Status AllGather(const Tensor& input, const Tensor& output);
    absl::Status Broadcast(const Tensor& data, int root);
    absl::Status Barrier();
    absl::Status AllReduceBucketed(absl::Span<const Tensor> tensors);
    absl::Status ReduceScatterBucketed(absl::Span<const Tensor> inputs,
                                       absl::Span<const Tensor> outputs);
    absl::Status AllGatherBucketed(absl::Span<const Tensor> inputs,
                                   absl::Span<const Tensor> outputs);

   private:
    friend class Communicator;
    explicit BlockingCalls(Communicator* comm) : comm_(comm) {}
    absl::Status IssueAndWait(absl::FunctionRef<absl::StatusOr<CommTicket>()> issue);
    Communicator* comm_;
  };
  BlockingCalls Blocking() { return BlockingCalls(this); }

  // Running total over completed collectives (Note [bytes sent]).
  int64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }

 protected:
  Communicator(int rank, int world_size, Device device)
      : rank_(rank), world_size_(world_size), device_(device) {}

  // Runs `request` (validated, in order) on the communication stream; completes its ticket
  // through tickets() and adds its bytes_sent on success.
  virtual void Submit(internal::CommRequest request) = 0;
  // Called by Wait before it blocks: a backend whose communication stream is idle may run the
  // collectives queued up to `ticket` on the waiting thread (Note [the waiting thread helps] in
  // mpi_communicator.h).
  virtual void RunQueuedUpTo(CommTicket ticket) {}

  internal::TicketTable& tickets() { return tickets_; }
  void AddBytesSent(int64_t bytes) { bytes_sent_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  absl::StatusOr<CommTicket> Issue(internal::CommRequest request);
  absl::Status CheckBuffer(absl::string_view op, absl::string_view name, const Tensor& t,
                           absl::Span<const DType> dtypes) const;
  absl::StatusOr<CommTicket> ShardedOp(CommOp op, const Tensor& input, const Tensor& output,
                                       absl::Span<const int64_t> rank_counts);
  absl::StatusOr<CommTicket> ShardedBucketed(CommOp op, absl::Span<const Tensor> inputs,
                                             absl::Span<const Tensor> outputs);

  const int rank_;
  const int world_size_;
  const Device device_;
  std::mutex issue_mutex_;  // tickets and submissions in one order, whichever thread calls
  internal::TicketTable tickets_;
  std::atomic<int64_t> bytes_sent_{0};
};

}  // namespace strata::collectives
