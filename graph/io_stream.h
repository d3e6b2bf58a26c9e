// The Program's two streams (DESIGN.md, "Program / executor"): compute runs on the calling
// thread, IO (fetches, write-backs, offloaded updates) on a worker thread, each in the order of
// the node list, with the static dependencies of Note [the offload schedule] as events between
// them: an IO node starts once compute has finished every compute node listed before it, and a
// compute node starts once every IO node that must complete before it has.
//
//   IoStream io;
//   IoStream::Sequence seq = IoStream::Plan(entries, is_io, completion_points);
//   double waited_ms = 0;
//   STRATA_RETURN_IF_ERROR(io.Run(seq, [&](int index) { return RunInstruction(index); }, &waited_ms));
//
// Run allocates nothing; it returns the first error of either stream after both have stopped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace strata::graph {

class IoStream {
 public:
  struct Sequence {
    std::vector<int> entries;       // instruction indices, in order
    std::vector<bool> is_io;        // per entry
    std::vector<int> io_entries;    // per IO ordinal, its entry
    std::vector<int> io_start;      // per IO ordinal: compute entries that must finish first
    std::vector<int> compute_need;  // per entry: IO ordinals that must be done before it runs
    int num_compute = 0;
  };
  // `entries` are instruction indices in run order; `is_io` and `completion` are per instruction
  // (completion: IoCompletionPoints, an instruction index; one past the sequence's end or any
  // index not in it means "by the end of the sequence").
  static Sequence Plan(const std::vector<int>& entries, const std::vector<bool>& is_io,
                       const std::vector<int>& completion);

  IoStream();
  ~IoStream();
  IoStream(const IoStream&) = delete;
  IoStream& operator=(const IoStream&) = delete;

  // Runs every entry of `seq` through `run` (IO entries on the worker), adds the time compute
  // waited for IO to *wait_ms, and returns the first error.
  absl::Status Run(const Sequence& seq, const std::function<absl::Status(int)>& run,
                   double* wait_ms);

 private:
  void Worker();

  std::mutex mutex_;
  std::condition_variable compute_cv_, io_cv_;
  const Sequence* seq_ = nullptr;
  const std::function<absl::Status(int)>* run_ = nullptr;
  uint64_t generation_ = 0;
  int compute_done_ = 0;  // compute entries finished in this run
  int io_done_ = 0;       // IO ordinals finished in this run
  bool io_busy_ = false;
  bool abort_ = false;    // compute failed: the worker stops at its next IO node
  bool stop_ = false;
  absl::Status io_status_;
  std::thread worker_;
};

}  // namespace strata::graph
