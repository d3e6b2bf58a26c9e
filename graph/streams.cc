#include "graph/streams.h"

#include <algorithm>
#include <chrono>

namespace strata::graph {

Streams::Sequence Streams::Plan(const std::vector<int>& entries, const std::vector<int>& stream_of,
                                const std::vector<int>& completion,
                                const std::vector<bool>& binds_one_node) {
  Sequence s;
  s.entries = entries;
  const int n = static_cast<int>(entries.size());
  s.stream.resize(n);
  s.compute_before.resize(n);
  // Position of each instruction in the sequence; instructions outside it complete at the end.
  std::vector<int> position_of(
      entries.empty() ? 0 : *std::max_element(entries.begin(), entries.end()) + 2, -1);
  for (int p = 0; p < n; ++p) position_of[entries[p]] = p;
  // Per position: per side stream, how many of its nodes complete before that position.
  std::vector<Counts> need_at(n + 1, Counts{});
  std::vector<Counts> need_at_only(n, Counts{});  // the same, for the node there alone
  for (int p = 0; p < n; ++p) {
    const int index = entries[p];
    const int stream = stream_of[index];
    s.stream[p] = stream;
    s.compute_before[p] = s.num_compute;
    if (stream < 0) {
      ++s.num_compute;
      continue;
    }
    const int ordinal = static_cast<int>(s.side[stream].size());
    s.side[stream].push_back(p);
    const int c = completion[index];
    int at = n;  // by the end of the sequence
    if (c >= 0 && c < static_cast<int>(position_of.size()) && position_of[c] > p) {
      at = position_of[c];
    }
    const bool one = at < n && index < static_cast<int>(binds_one_node.size()) &&
                     binds_one_node[index];
    Counts& waits = one ? need_at_only[at] : need_at[at];
    waits[stream] = std::max(waits[stream], ordinal + 1);
  }
  // A stream runs in order, so waiting for its k-th node waits for every one before it.
  s.need.resize(n);
  Counts need{};
  for (int p = 0; p < n; ++p) {
    for (int k = 0; k < kNumSideStreams; ++k) need[k] = std::max(need[k], need_at[p][k]);
    s.need[p] = need;
    for (int k = 0; k < kNumSideStreams; ++k) s.need[p][k] = std::max(need[k], need_at_only[p][k]);
  }
  return s;
}

Streams::Streams() {
  worker_waits_at_.fill(-1);
  for (int k = 0; k < kNumSideStreams; ++k) workers_[k] = std::thread([this, k] { Worker(k); });
}

Streams::~Streams() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  for (std::condition_variable& cv : worker_cv_) cv.notify_one();
  for (std::thread& w : workers_) w.join();
}

bool Streams::Ready(const Counts& need) const {
  for (int k = 0; k < kNumSideStreams; ++k) {
    if (done_[k] < need[k]) return false;
  }
  return true;
}

void Streams::WakeReady() {
  for (int k = 0; k < kNumSideStreams; ++k) {
    const int p = worker_waits_at_[k];
    if (p >= 0 && (abort_ || (compute_done_ >= seq_->compute_before[p] && Ready(seq_->need[p])))) {
      worker_cv_[k].notify_one();
    }
  }
  if (compute_waits_ &&
      (compute_needs_ == nullptr ? busy_ == 0 : abort_ || Ready(*compute_needs_))) {
    compute_cv_.notify_one();
  }
}

void Streams::Worker(int stream) {
  uint64_t seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    worker_cv_[stream].wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const Sequence& seq = *seq_;
    for (int p : seq.side[stream]) {
      worker_waits_at_[stream] = p;
      worker_cv_[stream].wait(lock, [&] {
        return abort_ || (compute_done_ >= seq.compute_before[p] && Ready(seq.need[p]));
      });
      worker_waits_at_[stream] = -1;
      if (abort_) break;
      lock.unlock();
      absl::Status s = (*run_)(seq.entries[p]);
      lock.lock();
      ++done_[stream];
      if (!s.ok()) {
        if (status_.ok()) status_ = std::move(s);
        abort_ = true;
      }
      WakeReady();
      if (abort_) break;
    }
    --busy_;
    WakeReady();
  }
}

absl::Status Streams::Run(const Sequence& seq, const std::function<absl::Status(int)>& run,
                          double* wait_ms) {
  {
    std::lock_guard lock(mutex_);
    seq_ = &seq;
    run_ = &run;
    compute_done_ = 0;
    done_ = Counts{};
    abort_ = false;
    status_ = absl::OkStatus();
    busy_ = kNumSideStreams;
    ++generation_;
  }
  for (std::condition_variable& cv : worker_cv_) cv.notify_one();
  absl::Status compute_status;
  double waited = 0;
  // Waits until `need` is done or a stream failed; nullptr: until the workers left the run.
  auto wait_for = [&](std::unique_lock<std::mutex>& lock, const Counts* need) {
    auto ready = [&] { return need == nullptr ? busy_ == 0 : abort_ || Ready(*need); };
    if (ready()) return;
    const auto start = std::chrono::steady_clock::now();
    compute_waits_ = true;
    compute_needs_ = need;
    compute_cv_.wait(lock, ready);
    compute_waits_ = false;
    if (need != nullptr) {
      waited += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
    }
  };
  for (size_t p = 0; p < seq.entries.size(); ++p) {
    if (seq.stream[p] >= 0) continue;
    {
      std::unique_lock lock(mutex_);
      wait_for(lock, &seq.need[p]);
      if (abort_) break;
    }
    compute_status = run(seq.entries[p]);
    std::lock_guard lock(mutex_);
    if (!compute_status.ok()) {
      abort_ = true;
      WakeReady();
      break;
    }
    ++compute_done_;
    WakeReady();
  }
  std::unique_lock lock(mutex_);
  Counts all{};
  for (int k = 0; k < kNumSideStreams; ++k) all[k] = static_cast<int>(seq.side[k].size());
  wait_for(lock, &all);
  wait_for(lock, nullptr);
  if (wait_ms != nullptr) *wait_ms += waited;
  seq_ = nullptr;
  run_ = nullptr;
  if (!compute_status.ok()) return compute_status;
  return status_;
}

}  // namespace strata::graph
