#include "collectives/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collectives/internal/abort_job.h"
#include "collectives/internal/reduce.h"
#include "runtime/status.h"

namespace strata::collectives {
namespace {

using Clock = std::chrono::steady_clock;

// One MPI message carries at most this many bytes (counts are int); larger transfers are split.
constexpr int64_t kMaxMessageBytes = int64_t{1} << 30;

absl::Status MpiError(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return absl::InternalError(
      absl::StrCat("collectives: ", call, " failed: ", absl::string_view(text, length)));
}

const char* ThreadLevelName(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown MPI thread level";
}

void FinalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int Mod(int a, int n) { return ((a % n) + n) % n; }

}  // namespace

// What the communication thread is doing, for the message of a timeout.
struct MpiCommunicator::Step {
  const char* phase;  // "reduce-scatter", ...
  int index;          // 0-based
  int count;          // steps in the phase
};

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(
    const CommOptions& options) {
  STRATA_RETURN_IF_ERROR(ResolveCommTimeout(options).status());
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    return absl::FailedPreconditionError(
        "collectives: MPI was already finalized; create the MPI communicator before MPI_Finalize");
  }
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    // Note [MPI thread level].
    if (int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
        rc != MPI_SUCCESS) {
      return MpiError("MPI_Init_thread", rc);
    }
    std::atexit(FinalizeAtExit);
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "collectives: MPI provides ", ThreadLevelName(provided),
        "; the communication thread needs MPI_THREAD_SERIALIZED (initialize MPI with "
        "MPI_Init_thread(..., MPI_THREAD_SERIALIZED, ...) or let strata initialize it)"));
  }
  return Create(options, MPI_COMM_WORLD);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(const CommOptions& options,
                                                                         MPI_Comm base) {
  STRATA_ASSIGN_OR_RETURN(const double timeout, ResolveCommTimeout(options));
  int initialized = 0, finalized = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    return absl::FailedPreconditionError(
        "collectives: MPI is not initialized; create a communicator over MPI_COMM_WORLD first");
  }
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED) {  // Note [MPI thread level]
    return absl::FailedPreconditionError(absl::StrCat(
        "collectives: MPI provides ", ThreadLevelName(provided),
        "; the communication thread needs MPI_THREAD_SERIALIZED"));
  }
  MPI_Comm comm;
  if (int rc = MPI_Comm_dup(base, &comm); rc != MPI_SUCCESS) {
    return MpiError(base == MPI_COMM_WORLD ? "MPI_Comm_dup(MPI_COMM_WORLD)" : "MPI_Comm_dup", rc);
  }
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 1, found = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int* tag_ub = nullptr;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_ub, &found);
  const int ub = found && tag_ub != nullptr ? *tag_ub : 32767;  // the least MPI guarantees
  // Note [broadcast on one node].
  MPI_Comm node;
  if (int rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
      rc != MPI_SUCCESS) {
    MPI_Comm_free(&comm);
    return MpiError("MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rc);
  }
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  const bool flat_broadcast =
      options.broadcast == BroadcastAlgorithm::kFlat ||
      (options.broadcast == BroadcastAlgorithm::kAuto && node_size == size);
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(comm, rank, size, ub, flat_broadcast, options, timeout));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, int rank, int world_size, int tag_ub,
                                 bool flat_broadcast, const CommOptions& options,
                                 double timeout_seconds)
    : Communicator(rank, world_size, Device::Cpu()),
      comm_(comm),
      tag_ub_(tag_ub),
      flat_broadcast_(flat_broadcast),
      options_(options),
      timeout_seconds_(timeout_seconds),
      thread_([this] { Run(); }) {}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

std::string MpiCommunicator::Describe() const {
  return absl::StrCat("mpi communicator, rank ", rank(), " of ", world_size(),
                      flat_broadcast_ ? ", flat broadcast" : "", ", timeout ", timeout_seconds_,
                      " s");
}

void MpiCommunicator::Submit(internal::CommRequest request) {
  // A blocking call's own thread runs it, or the communication thread does after what it is
  // running now: waking that thread would only cost a context switch (Note [the waiting thread
  // helps]).
  const bool wake = !request.caller_waits;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(request));
  }
  if (wake) work_cv_.notify_one();
}

void MpiCommunicator::Run() {
  std::unique_lock lock(mutex_);
  while (true) {
    // Runs the next collective unless a waiting thread runs one; stops once nothing is left.
    work_cv_.wait(lock, [&] { return !executing_ && (stopping_ || !queue_.empty()); });
    if (queue_.empty()) return;
    internal::CommRequest request = std::move(queue_.front());
    queue_.pop_front();
    executing_ = true;
    lock.unlock();
    RunOne(request);
    lock.lock();
    executing_ = false;
  }
}

void MpiCommunicator::RunQueuedUpTo(CommTicket ticket) {
  // Note [the waiting thread helps].
  std::unique_lock lock(mutex_);
  bool ran = false;
  while (!executing_ && !queue_.empty() && queue_.front().ticket <= ticket) {
    internal::CommRequest request = std::move(queue_.front());
    queue_.pop_front();
    executing_ = true;
    lock.unlock();
    RunOne(request);
    lock.lock();
    executing_ = false;
    ran = true;
  }
  // The communication thread takes over what is left (waking it for nothing would cost a
  // context switch per collective).
  if (ran && (!queue_.empty() || stopping_)) {
    lock.unlock();
    work_cv_.notify_all();
  }
}

void MpiCommunicator::RunOne(internal::CommRequest& request) {
  absl::Status status = broken_;
  if (status.ok()) {
    current_ = &request;
    tag_ = static_cast<int>(request.ticket % (static_cast<uint64_t>(tag_ub_) + 1));
    started_ = Clock::now();
    deadline_ = started_ + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(timeout_seconds_));
    status = Execute(request);
    current_ = nullptr;
    if (status.ok()) AddBytesSent(BytesSent(request));
  }
  tickets().Complete(request.ticket, std::move(status));
}

int64_t MpiCommunicator::BytesSent(const internal::CommRequest& r) const {
  if (r.op != CommOp::kBroadcast || !flat_broadcast_) return r.bytes_sent;
  // A flat broadcast sends from the root alone (Note [bytes sent] in communicator.h).
  const int64_t bytes = r.count * static_cast<int64_t>(SizeOf(r.dtype));
  return rank() == r.root ? (world_size() - 1) * bytes : 0;
}

absl::Status MpiCommunicator::Execute(const internal::CommRequest& r) {
  const int64_t es = static_cast<int64_t>(SizeOf(r.dtype));
  const char* input = static_cast<const char*>(r.input);
  char* output = static_cast<char*>(r.output);
  char* in_staging = nullptr;
  char* out_staging = nullptr;
  if (r.bucketed) {
    staging_.Pack(r, rank(), &in_staging, &out_staging);
    input = in_staging;
    output = out_staging;
  }
  absl::Status status;
  switch (r.op) {
    case CommOp::kAllReduce: status = RingAllReduce(output, r.count); break;
    case CommOp::kReduceScatter: status = RingReduceScatter(input, output, r.rank_counts); break;
    case CommOp::kAllGather: status = RingAllGather(input, output, r.rank_counts); break;
    case CommOp::kBroadcast:
      status = flat_broadcast_ ? FlatBroadcast(output, r.count * es, r.root)
                               : ChainBroadcast(output, r.count * es, r.root);
      break;
    case CommOp::kBarrier: status = DisseminationBarrier(); break;
  }
  if (status.ok() && r.bucketed) staging_.Unpack(r, output);
  return status;
}

char* MpiCommunicator::Scratch(int index, int64_t bytes) {
  if (static_cast<int64_t>(scratch_[index].size()) < bytes) scratch_[index].resize(bytes);
  return scratch_[index].data();
}

absl::Status MpiCommunicator::RingAllReduce(void* data, int64_t count) {
  const int n = world_size(), r = rank();
  if (n == 1) return absl::OkStatus();
  const DType dtype = current_->dtype;
  const int64_t es = static_cast<int64_t>(SizeOf(dtype));
  char* base = static_cast<char*>(data);
  const std::vector<int64_t> counts = ShardCounts(count, n);
  auto chunk = [&](int c) { return base + ShardOf(count, n, c).offset * es; };
  char* tmp = Scratch(0, counts[0] * es);  // the first chunk is the longest
  const int right = Mod(r + 1, n), left = Mod(r - 1, n);
  for (int s = 0; s < n - 1; ++s) {  // reduce-scatter: rank r ends with chunk r summed
    const int send = Mod(r - s - 1, n), recv = Mod(r - s - 2, n);
    STRATA_RETURN_IF_ERROR(Exchange(chunk(send), counts[send] * es, right, tmp, counts[recv] * es,
                                    left, Step{"reduce-scatter", s, n - 1}));
    internal::AddInto(chunk(recv), chunk(recv), tmp, counts[recv], dtype);
  }
  for (int s = 0; s < n - 1; ++s) {  // all-gather of the summed chunks
    const int send = Mod(r - s, n), recv = Mod(r - s - 1, n);
    STRATA_RETURN_IF_ERROR(Exchange(chunk(send), counts[send] * es, right, chunk(recv),
                                    counts[recv] * es, left, Step{"all-gather", s, n - 1}));
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::RingReduceScatter(const char* input, char* output,
                                            const std::vector<int64_t>& counts) {
  const int n = world_size(), r = rank();
  const DType dtype = current_->dtype;
  const int64_t es = static_cast<int64_t>(SizeOf(dtype));
  if (n == 1) {
    if (output != input && counts[0] > 0) std::memcpy(output, input, counts[0] * es);
    return absl::OkStatus();
  }
  std::vector<int64_t> offsets(n, 0);
  for (int c = 1; c < n; ++c) offsets[c] = offsets[c - 1] + counts[c - 1];
  const int64_t longest = *std::max_element(counts.begin(), counts.end());
  // Partial sums travel the ring in two scratch buffers: one sent while the other receives.
  char* partial[2] = {Scratch(0, longest * es), Scratch(1, longest * es)};
  const int right = Mod(r + 1, n), left = Mod(r - 1, n);
  for (int s = 0; s < n - 1; ++s) {
    const int send = Mod(r - s - 1, n), recv = Mod(r - s - 2, n);  // recv == r at the last step
    const char* outgoing = s == 0 ? input + offsets[send] * es : partial[(s - 1) % 2];
    char* incoming = partial[s % 2];
    STRATA_RETURN_IF_ERROR(Exchange(outgoing, counts[send] * es, right, incoming,
                                    counts[recv] * es, left, Step{"reduce-scatter", s, n - 1}));
    // The last sum goes to the output, which may be this rank's own chunk of the input: each
    // element is read before it is written.
    char* sum = s == n - 2 ? output : incoming;
    internal::AddInto(sum, input + offsets[recv] * es, incoming, counts[recv], dtype);
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::RingAllGather(const char* input, char* output,
                                            const std::vector<int64_t>& counts) {
  const int n = world_size(), r = rank();
  const int64_t es = static_cast<int64_t>(SizeOf(current_->dtype));
  std::vector<int64_t> offsets(n, 0);
  for (int c = 1; c < n; ++c) offsets[c] = offsets[c - 1] + counts[c - 1];
  char* own = output + offsets[r] * es;
  // This rank's shard goes into place while the first step's messages are in flight (the first
  // step sends it from the input, so the copy and the send do not touch the same bytes).
  auto place_own = [&] {
    if (own != input && counts[r] > 0) std::memcpy(own, input, counts[r] * es);
  };
  if (n == 1) {
    place_own();
    return absl::OkStatus();
  }
  const int right = Mod(r + 1, n), left = Mod(r - 1, n);
  for (int s = 0; s < n - 1; ++s) {
    const int send = Mod(r - s, n), recv = Mod(r - s - 1, n);
    const char* outgoing = s == 0 ? input : output + offsets[send] * es;
    STRATA_RETURN_IF_ERROR(Exchange(outgoing, counts[send] * es, right,
                                    output + offsets[recv] * es, counts[recv] * es, left,
                                    Step{"all-gather", s, n - 1}, /*empty_messages=*/false,
                                    s == 0 ? absl::FunctionRef<void()>(place_own)
                                           : absl::FunctionRef<void()>([] {})));
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::ChainBroadcast(char* data, int64_t bytes, int root) {
  const int n = world_size(), r = rank();
  if (n == 1 || bytes == 0) return absl::OkStatus();
  const int position = Mod(r - root, n);  // in the chain root -> root+1 -> ... -> root-1
  const bool first = position == 0, last = position == n - 1;
  const int next = Mod(r + 1, n), prev = Mod(r - 1, n);
  // Two ranks have nothing to pipeline: one message (split only past kMaxMessageBytes). Longer
  // chains fill the pipeline in one segment per hop, so segments are a sixteenth of the buffer
  // (the fill costs about (N-2)/16 of the time), between 128 KiB (per-message overhead) and 4 MiB.
  const int64_t segment =
      n == 2 ? bytes : std::clamp<int64_t>(bytes / 16, int64_t{128} << 10, int64_t{4} << 20);
  const int segments = static_cast<int>((bytes + segment - 1) / segment);
  auto seg_bytes = [&](int k) { return std::min(segment, bytes - k * segment); };
  // Step k receives segment k from prev while forwarding segment k-1 to next.
  for (int k = 0; k <= segments; ++k) {
    const bool send = !last && (first ? k < segments : k > 0);
    const int send_index = first ? k : k - 1;
    const bool recv = !first && k < segments;
    if (!send && !recv) continue;
    STRATA_RETURN_IF_ERROR(Exchange(
        send ? data + send_index * segment : nullptr, send ? seg_bytes(send_index) : 0, next,
        recv ? data + k * segment : nullptr, recv ? seg_bytes(k) : 0, prev,
        Step{"chain", k, segments + 1}));
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::FlatBroadcast(char* data, int64_t bytes, int root) {
  const int n = world_size(), r = rank();
  if (n == 1 || bytes == 0) return absl::OkStatus();
  requests_.clear();
  messages_.clear();
  if (r == root) {
    for (int q = 0; q < n; ++q) {
      if (q != root) STRATA_RETURN_IF_ERROR(Post(/*is_send=*/true, data, bytes, q));
    }
  } else {
    STRATA_RETURN_IF_ERROR(Post(/*is_send=*/false, data, bytes, root));
  }
  return Complete(Step{"flat", 0, 1});
}

absl::Status MpiCommunicator::DisseminationBarrier() {
  const int n = world_size(), r = rank();
  int round = 0, rounds = 0;
  for (int d = 1; d < n; d *= 2) ++rounds;
  for (int d = 1; d < n; d *= 2, ++round) {
    STRATA_RETURN_IF_ERROR(Exchange(nullptr, 0, Mod(r + d, n), nullptr, 0, Mod(r - d, n),
                                    Step{"dissemination", round, rounds},
                                    /*empty_messages=*/true));
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Exchange(const char* send, int64_t send_bytes, int to, char* recv,
                                       int64_t recv_bytes, int from, const Step& step,
                                       bool empty_messages, absl::FunctionRef<void()> meanwhile) {
  requests_.clear();
  messages_.clear();
  STRATA_RETURN_IF_ERROR(Post(/*is_send=*/false, recv, recv_bytes, from, empty_messages));
  STRATA_RETURN_IF_ERROR(Post(/*is_send=*/true, send, send_bytes, to, empty_messages));
  meanwhile();
  return Complete(step);
}

absl::Status MpiCommunicator::Post(bool is_send, const char* data, int64_t bytes, int peer,
                                   bool empty_messages) {
  if (bytes == 0 && !empty_messages) return absl::OkStatus();
  int64_t done = 0;
  do {
    const int piece = static_cast<int>(std::min(kMaxMessageBytes, bytes - done));
    MPI_Request request;
    const int rc = is_send ? MPI_Isend(data + done, piece, MPI_BYTE, peer, tag_, comm_, &request)
                           : MPI_Irecv(const_cast<char*>(data) + done, piece, MPI_BYTE, peer,
                                       tag_, comm_, &request);
    if (rc != MPI_SUCCESS) return MpiError(is_send ? "MPI_Isend" : "MPI_Irecv", rc);
    requests_.push_back(request);
    messages_.push_back(Message{is_send, peer, bytes});
    done += piece;
  } while (done < bytes);
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Complete(const Step& step) {
  if (requests_.empty()) return absl::OkStatus();
  for (uint64_t polls = 1;; ++polls) {
    int done = 0;
    if (int rc = MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done,
                             MPI_STATUSES_IGNORE);
        rc != MPI_SUCCESS) {
      return MpiError("MPI_Testall", rc);
    }
    if (done) return absl::OkStatus();
    if (polls % 256 == 0 && Clock::now() > deadline_) return TimedOut(step);
    // Spin briefly (the common case: the peer is running), then give the core away: with more
    // ranks and compute threads than cores, a spinning rank starves the peer it waits for.
    if (polls > 65536) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else if (polls > 1024) {
      std::this_thread::yield();
    }
  }
}

absl::Status MpiCommunicator::TimedOut(const Step& step) {
  // Which messages are still pending names the peers that did not take part (a message split
  // into pieces is named once).
  std::string waiting;
  const Message* named = nullptr;
  for (size_t i = 0; i < requests_.size(); ++i) {
    int done = 0;
    MPI_Test(&requests_[i], &done, MPI_STATUS_IGNORE);
    const Message& m = messages_[i];
    if (done || (named != nullptr && named->is_send == m.is_send && named->peer == m.peer)) {
      continue;
    }
    absl::StrAppend(&waiting, waiting.empty() ? "" : " and ", "waiting for rank ", m.peer,
                    m.is_send ? " to receive " : " to send ", m.bytes, " bytes");
    named = &m;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  const std::string message = absl::StrFormat(
      "collectives: %s timed out on rank %d of %d after %.2f s (timeout %g s): %s step %d of %d, "
      "MPI tag %d, %s; that rank did not join this collective, is in another one, or is stuck",
      current_->Describe(), rank(), world_size(), elapsed, timeout_seconds_, step.phase,
      step.index + 1, step.count, tag_, waiting);
  if (options_.abort_on_timeout) internal::AbortJob(message, kCommTimeoutExitCode);
  // No abort: the communicator cannot be used again, the ring is out of step.
  for (MPI_Request& request : requests_) {
    if (request != MPI_REQUEST_NULL) {
      MPI_Cancel(&request);
      MPI_Request_free(&request);
    }
  }
  broken_ = absl::FailedPreconditionError(
      absl::StrCat("collectives: the communicator is unusable after an earlier timeout: ",
                   message));
  return absl::DeadlineExceededError(message);
}

}  // namespace strata::collectives
