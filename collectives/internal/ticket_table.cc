#include "collectives/internal/ticket_table.h"

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata::collectives::internal {

CommTicket TicketTable::Issue() {
  std::lock_guard lock(mutex_);
  const CommTicket ticket = next_++;
  entries_.emplace(ticket, Entry{});
  return ticket;
}

void TicketTable::Complete(CommTicket ticket, absl::Status status) {
  std::vector<std::pair<Event, uint64_t>> events;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(ticket);
    STRATA_CHECK(it != entries_.end() && !it->second.done, "ticket ", ticket,
                 " completed twice or never issued");
    it->second.done = true;
    it->second.status = std::move(status);
    events.swap(it->second.events);
  }
  done_cv_.notify_all();
  for (auto& [event, point] : events) event.CompleteOnHost(point);
}

absl::Status TicketTable::Wait(CommTicket ticket) {
  std::unique_lock lock(mutex_);
  auto it = entries_.find(ticket);
  if (it == entries_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: ticket ", ticket, " was never issued or was already waited on"));
  }
  done_cv_.wait(lock, [&] { return entries_.at(ticket).done; });
  it = entries_.find(ticket);  // rehashing may have moved it
  absl::Status status = std::move(it->second.status);
  entries_.erase(it);
  return status;
}

Event TicketTable::CompletionEvent(CommTicket ticket) {
  Event event = Event::Create(Device::Cpu());
  const uint64_t point = event.RecordOnHost();
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(ticket);
    STRATA_CHECK(ticket > 0 && ticket < next_, "CompletionEvent of ticket ", ticket,
                 " that was never issued");
    if (it != entries_.end() && !it->second.done) {
      it->second.events.emplace_back(event, point);
      return event;
    }
  }
  event.CompleteOnHost(point);  // done, or already waited on
  return event;
}

}  // namespace strata::collectives::internal
