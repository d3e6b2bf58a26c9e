// The Program's streams (DESIGN.md, "Program / executor"): compute runs on the calling thread;
// two side streams, each a worker thread, run the nodes that wait on something other than the
// CPU: the IO stream moves bytes between tiers (fetches, write-backs, offloaded updates) and the
// communication stream runs the collectives (and the fetches that gather a ZeRO stage-3
// parameter), so that an NVMe read and an all-gather overlap each other as well as compute. Each
// stream runs its nodes in the order of the node list, with the static dependencies of Note [the
// offload schedule] as events between them: a side-stream node starts once compute has finished
// every compute node listed before it, and any node (compute, or the other side stream's) waits
// for every side-stream node whose completion point it is at or after.
//
//   Streams streams;
//   Streams::Sequence seq = Streams::Plan(entries, stream_of, completion_points);
//   double waited_ms = 0;
//   STRATA_RETURN_IF_ERROR(streams.Run(seq, [&](int index) { return RunInstruction(index); },
//                                      &waited_ms));
//
// Run allocates nothing; it returns the first error of any stream after all have stopped.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "graph/passes/passes.h"

namespace strata::graph {

class Streams {
 public:
  using Counts = std::array<int, kNumSideStreams>;  // per side stream, nodes finished
  struct Sequence {
    std::vector<int> entries;  // instruction indices, in order
    std::vector<int> stream;   // per entry: its side stream, or -1 for compute
    std::array<std::vector<int>, kNumSideStreams> side;  // per side stream, its entries in order
    std::vector<int> compute_before;  // per entry: compute entries listed before it
    std::vector<Counts> need;  // per entry: side-stream nodes that must be done before it starts
    int num_compute = 0;
  };
  // `entries` are instruction indices in run order; `stream_of` (a StreamKind as int) and
  // `completion` are per instruction (completion: IoCompletionPoints, an instruction index; one
  // past the sequence's end or any index not in it means "by the end of the sequence").
  // `binds_one_node`, when given, is per instruction too: true where only the node at the
  // completion point waits (a side-stream node that alone uses what this one wrote), rather than
  // every node listed from there on.
  static Sequence Plan(const std::vector<int>& entries, const std::vector<int>& stream_of,
                       const std::vector<int>& completion,
                       const std::vector<bool>& binds_one_node = {});

  Streams();
  ~Streams();
  Streams(const Streams&) = delete;
  Streams& operator=(const Streams&) = delete;

  // Runs every entry of `seq` through `run` (side-stream entries on their workers), adds the
  // time compute waited for the side streams to *wait_ms, and returns the first error.
  absl::Status Run(const Sequence& seq, const std::function<absl::Status(int)>& run,
                   double* wait_ms);

 private:
  void Worker(int stream);
  bool Ready(const Counts& need) const;  // with mutex_ held
  // With mutex_ held: wakes each waiting thread whose condition now holds, and no other (a
  // thread woken for nothing takes a core from the compute team on a small machine).
  void WakeReady();

  std::mutex mutex_;
  std::array<std::condition_variable, kNumSideStreams> worker_cv_;
  std::condition_variable compute_cv_;
  // Per worker: the entry it waits to start, or -1. The compute thread: whether it waits, and
  // for what (nullptr: for the workers to leave the run).
  std::array<int, kNumSideStreams> worker_waits_at_;
  bool compute_waits_ = false;
  const Counts* compute_needs_ = nullptr;
  const Sequence* seq_ = nullptr;
  const std::function<absl::Status(int)>* run_ = nullptr;
  uint64_t generation_ = 0;
  int compute_done_ = 0;  // compute entries finished in this run
  Counts done_{};         // per side stream, entries finished in this run
  int busy_ = 0;          // workers still in this run
  bool abort_ = false;    // some stream failed: the others stop at their next node
  bool stop_ = false;
  absl::Status status_;   // the first side-stream error
  std::array<std::thread, kNumSideStreams> workers_;
};

}  // namespace strata::graph
