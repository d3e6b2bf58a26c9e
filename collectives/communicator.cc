#include "collectives/communicator.h"

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace strata::collectives {
namespace {

constexpr DType kSummable[] = {DType::kF32, DType::kI32};

char* Bytes(const Tensor& t) { return static_cast<char*>(t.raw_data()); }

// True when [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool Overlap(const char* a, int64_t a_bytes, const char* b, int64_t b_bytes) {
  return a_bytes > 0 && b_bytes > 0 && a < b + b_bytes && b < a + a_bytes;
}

// Set while a BlockingCalls method issues its collective, so that Issue marks it caller_waits.
thread_local bool issuing_blocking_call = false;

}  // namespace

absl::string_view CommOpName(CommOp op) {
  switch (op) {
    case CommOp::kAllReduce: return "all_reduce";
    case CommOp::kReduceScatter: return "reduce_scatter";
    case CommOp::kAllGather: return "all_gather";
    case CommOp::kBroadcast: return "broadcast";
    case CommOp::kBarrier: return "barrier";
  }
  return "unknown";
}

int64_t RingBytesSent(CommOp op, int64_t count, absl::Span<const int64_t> rank_counts,
                      size_t element_size, int world_size, int rank, int root) {
  if (world_size == 1) return 0;
  const std::vector<int64_t> split =
      rank_counts.empty() ? ShardCounts(count, world_size)
                          : std::vector<int64_t>(rank_counts.begin(), rank_counts.end());
  const int next = (rank + 1) % world_size;
  int64_t elements = 0;
  switch (op) {
    case CommOp::kAllReduce: {
      const std::vector<int64_t> chunks = ShardCounts(count, world_size);
      elements = 2 * count - chunks[rank] - chunks[next];
      break;
    }
    case CommOp::kReduceScatter: elements = count - split[rank]; break;
    case CommOp::kAllGather: elements = count - split[next]; break;
    case CommOp::kBroadcast:
      elements = (rank - root + world_size) % world_size == world_size - 1 ? 0 : count;
      break;
    case CommOp::kBarrier: elements = 0; break;
  }
  return elements * static_cast<int64_t>(element_size);
}

absl::Status Communicator::CheckBuffer(absl::string_view op, absl::string_view name,
                                       const Tensor& t, absl::Span<const DType> dtypes) const {
  const std::string where = absl::StrCat("collectives: ", op);
  STRATA_RETURN_IF_ERROR(CheckDefined(where, name, t));
  STRATA_RETURN_IF_ERROR(CheckContiguous(where, name, t));
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || t.dtype() == d;
  if (!dtype_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", name, " is ", t.ToString(), "; expected ",
        absl::StrJoin(dtypes, " or ",
                      [](std::string* out, DType d) { absl::StrAppend(out, DTypeName(d)); })));
  }
  if (t.device() != device_) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, " is on ",
                                                   t.device().ToString(), ", this ",
                                                   Describe(), " communicates ",
                                                   device_.ToString(), " buffers"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CommTicket> Communicator::Issue(internal::CommRequest request) {
  request.bytes_sent = RingBytesSent(request.op, request.count, request.rank_counts,
                                     SizeOf(request.dtype), world_size_, rank_, request.root);
  std::lock_guard lock(issue_mutex_);
  const CommTicket ticket = tickets_.Issue();
  request.ticket = ticket;
  request.caller_waits = issuing_blocking_call;
  Submit(std::move(request));
  return ticket;
}

absl::StatusOr<CommTicket> Communicator::AllReduce(const Tensor& data) {
  STRATA_RETURN_IF_ERROR(CheckBuffer("all_reduce", "data", data, kSummable));
  internal::CommRequest r;
  r.op = CommOp::kAllReduce;
  r.dtype = data.dtype();
  r.count = data.numel();
  r.input = r.output = data.raw_data();
  return Issue(std::move(r));
}

absl::StatusOr<CommTicket> Communicator::ReduceScatter(const Tensor& input, const Tensor& output) {
  return ShardedOp(CommOp::kReduceScatter, input, output, {});
}
absl::StatusOr<CommTicket> Communicator::ReduceScatter(const Tensor& input, const Tensor& output,
                                                       absl::Span<const int64_t> rank_counts) {
  if (rank_counts.empty()) {
    return absl::InvalidArgumentError(
        "collectives: reduce_scatter: rank_counts is empty; pass one count per rank");
  }
  return ShardedOp(CommOp::kReduceScatter, input, output, rank_counts);
}
absl::StatusOr<CommTicket> Communicator::AllGather(const Tensor& input, const Tensor& output) {
  return ShardedOp(CommOp::kAllGather, input, output, {});
}
absl::StatusOr<CommTicket> Communicator::AllGather(const Tensor& input, const Tensor& output,
                                                   absl::Span<const int64_t> rank_counts) {
  if (rank_counts.empty()) {
    return absl::InvalidArgumentError(
        "collectives: all_gather: rank_counts is empty; pass one count per rank");
  }
  return ShardedOp(CommOp::kAllGather, input, output, rank_counts);
}

absl::StatusOr<CommTicket> Communicator::ShardedOp(CommOp op, const Tensor& input,
                                                   const Tensor& output,
                                                   absl::Span<const int64_t> rank_counts) {
  const std::string name(CommOpName(op));
  STRATA_RETURN_IF_ERROR(CheckBuffer(name, "input", input, kSummable));
  STRATA_RETURN_IF_ERROR(CheckBuffer(name, "output", output, kSummable));
  if (input.dtype() != output.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat("collectives: ", name, ": input is ",
                                                   input.ToString(), " but output is ",
                                                   output.ToString()));
  }
  const bool scatter = op == CommOp::kReduceScatter;
  const Tensor& whole = scatter ? input : output;
  const Tensor& shard = scatter ? output : input;
  internal::CommRequest r;
  r.op = op;
  r.dtype = input.dtype();
  r.count = whole.numel();
  if (rank_counts.empty()) {
    r.rank_counts = ShardCounts(r.count, world_size_);
  } else {
    if (static_cast<int>(rank_counts.size()) != world_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "collectives: ", name, ": rank_counts has ", rank_counts.size(),
          " entries for a world of ", world_size_));
    }
    int64_t sum = 0;
    for (int64_t c : rank_counts) {
      if (c < 0) {
        return absl::InvalidArgumentError(absl::StrCat("collectives: ", name,
                                                       ": negative count in rank_counts [",
                                                       absl::StrJoin(rank_counts, ", "), "]"));
      }
      sum += c;
    }
    if (sum != r.count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "collectives: ", name, ": rank_counts [", absl::StrJoin(rank_counts, ", "), "] sum to ",
          sum, " but ", scatter ? "input" : "output", " has ", r.count, " elements"));
    }
    r.rank_counts.assign(rank_counts.begin(), rank_counts.end());
  }
  if (shard.numel() != r.rank_counts[rank_]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: ", name, ": ", scatter ? "output" : "input", " is ", shard.ToString(),
        " but rank ", rank_, "'s shard of ", r.count, " elements has ", r.rank_counts[rank_]));
  }
  // The only overlap allowed is the shard at exactly its place in the whole buffer.
  const int64_t es = static_cast<int64_t>(SizeOf(r.dtype));
  int64_t offset = 0;
  for (int q = 0; q < rank_; ++q) offset += r.rank_counts[q];
  const char* in_place = Bytes(whole) + offset * es;
  if (Bytes(shard) != in_place &&
      Overlap(Bytes(whole), r.count * es, Bytes(shard), shard.numel() * es)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: ", name, ": input and output overlap; the shard may only be rank ", rank_,
        "'s own range of the whole buffer (elements ", offset, "..",
        offset + r.rank_counts[rank_], ")"));
  }
  r.input = input.raw_data();
  r.output = output.raw_data();
  return Issue(std::move(r));
}

absl::StatusOr<CommTicket> Communicator::Broadcast(const Tensor& data, int root) {
  STRATA_RETURN_IF_ERROR(CheckBuffer("broadcast", "data", data,
                                     {DType::kF32, DType::kBF16, DType::kF16, DType::kI32,
                                      DType::kI64, DType::kU8}));
  if (root < 0 || root >= world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("collectives: broadcast: root ", root,
                                                   " is not a rank of a world of ", world_size_));
  }
  internal::CommRequest r;
  r.op = CommOp::kBroadcast;
  r.dtype = data.dtype();
  r.root = root;
  r.count = data.numel();
  r.input = r.output = data.raw_data();
  return Issue(std::move(r));
}

absl::StatusOr<CommTicket> Communicator::Barrier() {
  internal::CommRequest r;
  r.op = CommOp::kBarrier;
  return Issue(std::move(r));
}

absl::StatusOr<CommTicket> Communicator::AllReduceBucketed(absl::Span<const Tensor> tensors) {
  internal::CommRequest r;
  r.op = CommOp::kAllReduce;
  r.bucketed = true;
  r.tensors = static_cast<int>(tensors.size());
  r.dtype = tensors.empty() ? DType::kF32 : tensors[0].dtype();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = absl::StrCat("tensors[", i, "]");
    STRATA_RETURN_IF_ERROR(CheckBuffer("all_reduce_bucketed", name, tensors[i], {r.dtype}));
    if (i == 0) STRATA_RETURN_IF_ERROR(CheckBuffer("all_reduce_bucketed", name, tensors[i], kSummable));
    const internal::StagingCopy copy{Bytes(tensors[i]), r.count, tensors[i].numel()};
    r.pack.push_back(copy);
    r.unpack.push_back(copy);
    r.count += tensors[i].numel();
  }
  return Issue(std::move(r));
}

absl::StatusOr<CommTicket> Communicator::ReduceScatterBucketed(absl::Span<const Tensor> inputs,
                                                               absl::Span<const Tensor> outputs) {
  return ShardedBucketed(CommOp::kReduceScatter, inputs, outputs);
}
absl::StatusOr<CommTicket> Communicator::AllGatherBucketed(absl::Span<const Tensor> inputs,
                                                           absl::Span<const Tensor> outputs) {
  return ShardedBucketed(CommOp::kAllGather, inputs, outputs);
}

absl::StatusOr<CommTicket> Communicator::ShardedBucketed(CommOp op,
                                                         absl::Span<const Tensor> inputs,
                                                         absl::Span<const Tensor> outputs) {
  const std::string name = absl::StrCat(CommOpName(op), "_bucketed");
  if (inputs.size() != outputs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("collectives: ", name, ": ", inputs.size(),
                                                   " inputs but ", outputs.size(), " outputs"));
  }
  const bool scatter = op == CommOp::kReduceScatter;
  absl::Span<const Tensor> wholes = scatter ? inputs : outputs;
  absl::Span<const Tensor> shards = scatter ? outputs : inputs;
  internal::CommRequest r;
  r.op = op;
  r.bucketed = true;
  r.tensors = static_cast<int>(inputs.size());
  r.dtype = inputs.empty() ? DType::kF32 : inputs[0].dtype();
  r.rank_counts.assign(world_size_, 0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string in = absl::StrCat("inputs[", i, "]"), out = absl::StrCat("outputs[", i, "]");
    STRATA_RETURN_IF_ERROR(CheckBuffer(name, in, inputs[i], kSummable));
    STRATA_RETURN_IF_ERROR(CheckBuffer(name, in, inputs[i], {r.dtype}));
    STRATA_RETURN_IF_ERROR(CheckBuffer(name, out, outputs[i], {r.dtype}));
    const int64_t n = wholes[i].numel();
    const ShardRange mine = ShardOf(n, world_size_, rank_);
    if (shards[i].numel() != mine.count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "collectives: ", name, ": ", scatter ? out : in, " is ", shards[i].ToString(),
          " but rank ", rank_, "'s shard of ", scatter ? in : out, " (", n, " elements) has ",
          mine.count));
    }
    for (int q = 0; q < world_size_; ++q) r.rank_counts[q] += ShardOf(n, world_size_, q).count;
    r.count += n;
  }
  // Rank-major staging: rank q's part holds every tensor's shard q, in tensor order.
  const int64_t es = static_cast<int64_t>(SizeOf(r.dtype));
  int64_t part_start = 0;
  for (int q = 0; q < world_size_; ++q) {
    int64_t at = part_start;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const ShardRange s = ShardOf(wholes[i].numel(), world_size_, q);
      const internal::StagingCopy whole_copy{Bytes(wholes[i]) + s.offset * es, at, s.count};
      (scatter ? r.pack : r.unpack).push_back(whole_copy);
      if (q == rank_) {
        // The shard side lives in the staging buffer of this rank's part alone.
        const internal::StagingCopy shard_copy{Bytes(shards[i]), at - part_start, s.count};
        (scatter ? r.unpack : r.pack).push_back(shard_copy);
      }
      at += s.count;
    }
    part_start = at;
  }
  return Issue(std::move(r));
}

absl::Status Communicator::BlockingCalls::IssueAndWait(
    absl::FunctionRef<absl::StatusOr<CommTicket>()> issue) {
  issuing_blocking_call = true;
  absl::StatusOr<CommTicket> ticket = issue();
  issuing_blocking_call = false;
  if (!ticket.ok()) return ticket.status();
  return comm_->Wait(*ticket);
}

absl::Status Communicator::BlockingCalls::AllReduce(const Tensor& data) {
  return IssueAndWait([&] { return comm_->AllReduce(data); });
}
absl::Status Communicator::BlockingCalls::ReduceScatter(const Tensor& input,
                                                        const Tensor& output) {
  return IssueAndWait([&] { return comm_->ReduceScatter(input, output); });
}
absl::Status Communicator::BlockingCalls::AllGather(const Tensor& input, const Tensor& output) {
  return IssueAndWait([&] { return comm_->AllGather(input, output); });
}
absl::Status Communicator::BlockingCalls::Broadcast(const Tensor& data, int root) {
  return IssueAndWait([&] { return comm_->Broadcast(data, root); });
}
absl::Status Communicator::BlockingCalls::Barrier() {
  return IssueAndWait([&] { return comm_->Barrier(); });
}
absl::Status Communicator::BlockingCalls::AllReduceBucketed(absl::Span<const Tensor> tensors) {
  return IssueAndWait([&] { return comm_->AllReduceBucketed(tensors); });
}
absl::Status Communicator::BlockingCalls::ReduceScatterBucketed(
    absl::Span<const Tensor> inputs, absl::Span<const Tensor> outputs) {
  return IssueAndWait([&] { return comm_->ReduceScatterBucketed(inputs, outputs); });
}
absl::Status Communicator::BlockingCalls::AllGatherBucketed(absl::Span<const Tensor> inputs,
                                                            absl::Span<const Tensor> outputs) {
  return IssueAndWait([&] { return comm_->AllGatherBucketed(inputs, outputs); });
}

}  // namespace strata::collectives
