#include "graph/io_stream.h"

#include <algorithm>
#include <chrono>

namespace strata::graph {

IoStream::Sequence IoStream::Plan(const std::vector<int>& entries, const std::vector<bool>& is_io,
                                  const std::vector<int>& completion) {
  Sequence s;
  s.entries = entries;
  const int n = static_cast<int>(entries.size());
  s.is_io.resize(n);
  s.compute_need.assign(n, 0);
  // Position of each instruction in the sequence; instructions outside it complete at the end.
  std::vector<int> position_of(
      entries.empty() ? 0 : *std::max_element(entries.begin(), entries.end()) + 2, -1);
  for (int p = 0; p < n; ++p) position_of[entries[p]] = p;
  std::vector<int> need_at(n + 1, 0);  // per position: IO ordinals that complete before it
  for (int p = 0; p < n; ++p) {
    const int index = entries[p];
    s.is_io[p] = is_io[index];
    if (!s.is_io[p]) {
      ++s.num_compute;
      continue;
    }
    const int ordinal = static_cast<int>(s.io_entries.size());
    s.io_entries.push_back(p);
    s.io_start.push_back(s.num_compute);
    const int c = completion[index];
    int at = n;  // by the end of the sequence
    if (c >= 0 && c < static_cast<int>(position_of.size()) && position_of[c] > p) {
      at = position_of[c];
    }
    need_at[at] = std::max(need_at[at], ordinal + 1);
  }
  int need = 0;
  for (int p = 0; p < n; ++p) {
    need = std::max(need, need_at[p]);
    s.compute_need[p] = need;
  }
  return s;
}

IoStream::IoStream() : worker_([this] { Worker(); }) {}

IoStream::~IoStream() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  io_cv_.notify_all();
  worker_.join();
}

void IoStream::Worker() {
  uint64_t seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    io_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const Sequence& seq = *seq_;
    for (size_t o = 0; o < seq.io_entries.size(); ++o) {
      io_cv_.wait(lock, [&] { return abort_ || compute_done_ >= seq.io_start[o]; });
      if (abort_) break;
      lock.unlock();
      absl::Status s = (*run_)(seq.entries[seq.io_entries[o]]);
      lock.lock();
      if (!s.ok() && io_status_.ok()) io_status_ = std::move(s);
      ++io_done_;
      compute_cv_.notify_all();
      if (!io_status_.ok()) break;
    }
    io_busy_ = false;
    compute_cv_.notify_all();
  }
}

absl::Status IoStream::Run(const Sequence& seq, const std::function<absl::Status(int)>& run,
                           double* wait_ms) {
  {
    std::lock_guard lock(mutex_);
    seq_ = &seq;
    run_ = &run;
    compute_done_ = 0;
    io_done_ = 0;
    abort_ = false;
    io_status_ = absl::OkStatus();
    io_busy_ = true;
    ++generation_;
  }
  io_cv_.notify_all();
  absl::Status compute_status;
  double waited = 0;
  auto wait_for_io = [&](std::unique_lock<std::mutex>& lock, int need) {
    if (io_done_ >= need || !io_status_.ok()) return;
    const auto start = std::chrono::steady_clock::now();
    compute_cv_.wait(lock, [&] { return io_done_ >= need || !io_status_.ok(); });
    waited += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count();
  };
  for (size_t p = 0; p < seq.entries.size(); ++p) {
    if (seq.is_io[p]) continue;
    {
      std::unique_lock lock(mutex_);
      wait_for_io(lock, seq.compute_need[p]);
      if (!io_status_.ok()) break;
    }
    compute_status = run(seq.entries[p]);
    std::lock_guard lock(mutex_);
    if (!compute_status.ok()) {
      abort_ = true;
      io_cv_.notify_all();
      break;
    }
    ++compute_done_;
    io_cv_.notify_all();
  }
  std::unique_lock lock(mutex_);
  if (compute_status.ok()) wait_for_io(lock, static_cast<int>(seq.io_entries.size()));
  compute_cv_.wait(lock, [&] { return !io_busy_; });
  if (wait_ms != nullptr) *wait_ms += waited;
  seq_ = nullptr;
  run_ = nullptr;
  if (!compute_status.ok()) return compute_status;
  return io_status_;
}

}  // namespace strata::graph
