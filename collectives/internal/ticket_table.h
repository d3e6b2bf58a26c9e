// Tickets of a Communicator: issued in order, completed by the communication stream with a
// status, waited on once by their owner, and observable by streams through host Events (as the
// NVMe engine's IoTickets are).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "runtime/stream.h"

namespace strata::collectives::internal {

using CommTicket = uint64_t;

class TicketTable {
 public:
  CommTicket Issue();
  // Once per issued ticket; reaches every CompletionEvent point taken for it.
  void Complete(CommTicket ticket, absl::Status status);
  absl::Status Wait(CommTicket ticket);
  Event CompletionEvent(CommTicket ticket);

 private:
  struct Entry {
    bool done = false;
    absl::Status status;
    std::vector<std::pair<Event, uint64_t>> events;
  };
  std::mutex mutex_;
  std::condition_variable done_cv_;
  absl::flat_hash_map<CommTicket, Entry> entries_;
  CommTicket next_ = 1;
};

}  // namespace strata::collectives::internal
