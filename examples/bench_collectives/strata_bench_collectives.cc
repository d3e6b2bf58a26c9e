// strata-bench-collectives: time and bus bandwidth of each collective through strata's MPI
// communicator and through the same MPI operation called directly, in one job, alternately, as
// nccl-tests prints them. Run under mpirun (launch/bench-collectives does):
//
//   mpirun -n 2 strata-bench-collectives --min-bytes 1K --max-bytes 256M
//
// For each size (x4 steps) and op, `--rounds` rounds alternate strata and MPI (which goes first
// alternates too); a round runs the op `iters` times back to back (about 16 MiB of buffer in all,
// 3 to 500 times) between barriers, and its time is the slowest rank's. The table gives each side's
// median time per op and bus bandwidth (algorithm bandwidth S/t times 2(N-1)/N for all_reduce,
// (N-1)/N for reduce_scatter and all_gather, 1 for broadcast), and the median over rounds of the
// ratio strata/MPI of the two halves of a round, which a machine whose load drifts (a shared one)
// disturbs less than a ratio of medians.
// MPI's calls: MPI_Allreduce (in place), MPI_Reduce_scatter, MPI_Allgather (MPI_Allgatherv where
// the world does not divide the count), MPI_Bcast; strata's are the blocking forms of the same
// (comm->Blocking(), as a training step's collective instructions call them), or with --async an
// asynchronous call followed at once by Wait. --json prints one object per line instead.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "collectives/mpi_communicator.h"
#include "examples/common/flags.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

using collectives::CommOp;
using collectives::Communicator;

struct Options {
  int64_t min_bytes = 1024, max_bytes = int64_t{256} << 20, rounds = 9;
  std::string ops = "all_reduce,reduce_scatter,all_gather,broadcast";
  bool json = false;
  bool async = false;
};

double BusFactor(CommOp op, int n) {
  switch (op) {
    case CommOp::kAllReduce: return 2.0 * (n - 1) / n;
    case CommOp::kReduceScatter:
    case CommOp::kAllGather: return static_cast<double>(n - 1) / n;
    default: return 1;
  }
}

// Seconds per op, of the slowest rank, for `iters` calls of `run`.
double TimeRound(int64_t iters, const std::function<absl::Status()>& run, absl::Status* error) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters && error->ok(); ++i) *error = run();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return seconds / iters;
}

absl::Status Bench(const Options& o) {
  // Initializes MPI (MPI_THREAD_SERIALIZED): the direct MPI calls below are made while no
  // collective of the communicator is in flight.
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<collectives::MpiCommunicator> comm,
                          collectives::MpiCommunicator::Create(collectives::CommOptions{}));
  const int n = comm->world_size(), rank = comm->rank();
  std::vector<CommOp> ops;
  for (absl::string_view name : absl::StrSplit(o.ops, ',')) {
    bool found = false;
    for (CommOp op : {CommOp::kAllReduce, CommOp::kReduceScatter, CommOp::kAllGather,
                      CommOp::kBroadcast}) {
      if (collectives::CommOpName(op) == name) {
        ops.push_back(op);
        found = true;
      }
    }
    if (!found) {
      return UsageError(absl::StrCat("--ops: unknown op '", name,
                                     "' (all_reduce, reduce_scatter, all_gather, broadcast)"));
    }
  }
  if (rank == 0 && !o.json) {
    std::printf("# strata-bench-collectives: %d ranks, %lld rounds, %s calls, times per op in us, "
                "busbw in GB/s\n", n, static_cast<long long>(o.rounds),
                o.async ? "asynchronous (submit, Wait)" : "blocking");
    std::printf("%14s %12s %15s %10s %10s %10s %10s %8s\n", "op", "bytes", "count(f32)",
                "strata_us", "strata_bw", "mpi_us", "mpi_bw", "ratio");
  }
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 4) {
    const int64_t count = bytes / 4;
    const std::vector<int64_t> counts = collectives::ShardCounts(count, n);
    const collectives::ShardRange mine = collectives::ShardOf(count, n, rank);
    const bool even = count % n == 0;
    std::vector<int> mpi_counts(n), displs(n);
    for (int q = 0; q < n; ++q) {
      mpi_counts[q] = static_cast<int>(counts[q]);
      displs[q] = static_cast<int>(collectives::ShardOf(count, n, q).offset);
    }
    std::vector<float> whole(count, 0.f), shard(mine.count, 0.f);
    const Tensor whole_t = Tensor::Wrap(whole.data(), Shape{count}, DType::kF32, Device::Cpu());
    const Tensor shard_t = Tensor::Wrap(shard.data(), Shape{mine.count}, DType::kF32,
                                        Device::Cpu());
    const int64_t iters = std::clamp<int64_t>((int64_t{16} << 20) / bytes, 3, 500);
    for (CommOp op : ops) {
      auto strata = [&]() -> absl::Status {
        if (!o.async) {
          Communicator::BlockingCalls blocking = comm->Blocking();
          switch (op) {
            case CommOp::kAllReduce: return blocking.AllReduce(whole_t);
            case CommOp::kReduceScatter: return blocking.ReduceScatter(whole_t, shard_t);
            case CommOp::kAllGather: return blocking.AllGather(shard_t, whole_t);
            default: return blocking.Broadcast(whole_t, 0);
          }
        }
        absl::StatusOr<collectives::CommTicket> t;
        switch (op) {
          case CommOp::kAllReduce: t = comm->AllReduce(whole_t); break;
          case CommOp::kReduceScatter: t = comm->ReduceScatter(whole_t, shard_t); break;
          case CommOp::kAllGather: t = comm->AllGather(shard_t, whole_t); break;
          default: t = comm->Broadcast(whole_t, 0); break;
        }
        if (!t.ok()) return t.status();
        return comm->Wait(*t);
      };
      auto mpi = [&]() -> absl::Status {
        int rc = MPI_SUCCESS;
        switch (op) {
          case CommOp::kAllReduce:
            rc = MPI_Allreduce(MPI_IN_PLACE, whole.data(), static_cast<int>(count), MPI_FLOAT,
                               MPI_SUM, MPI_COMM_WORLD);
            break;
          case CommOp::kReduceScatter:
            rc = MPI_Reduce_scatter(whole.data(), shard.data(), mpi_counts.data(), MPI_FLOAT,
                                    MPI_SUM, MPI_COMM_WORLD);
            break;
          case CommOp::kAllGather:
            rc = even ? MPI_Allgather(shard.data(), mpi_counts[0], MPI_FLOAT, whole.data(),
                                      mpi_counts[0], MPI_FLOAT, MPI_COMM_WORLD)
                      : MPI_Allgatherv(shard.data(), mpi_counts[rank], MPI_FLOAT, whole.data(),
                                       mpi_counts.data(), displs.data(), MPI_FLOAT,
                                       MPI_COMM_WORLD);
            break;
          default:
            rc = MPI_Bcast(whole.data(), static_cast<int>(count), MPI_FLOAT, 0, MPI_COMM_WORLD);
        }
        return rc == MPI_SUCCESS ? absl::OkStatus()
                                 : absl::InternalError(absl::StrCat("MPI call failed: ", rc));
      };
      absl::Status error;
      TimeRound(1, strata, &error);  // warm up both (buffers, connections)
      TimeRound(1, mpi, &error);
      std::vector<double> strata_s, mpi_s;
      for (int64_t r = 0; r < o.rounds && error.ok(); ++r) {
        if (r % 2 == 0) {
          strata_s.push_back(TimeRound(iters, strata, &error));
          mpi_s.push_back(TimeRound(iters, mpi, &error));
        } else {
          mpi_s.push_back(TimeRound(iters, mpi, &error));
          strata_s.push_back(TimeRound(iters, strata, &error));
        }
      }
      STRATA_RETURN_IF_ERROR(error);
      std::vector<double> ratios;  // of bus bandwidths, strata / MPI, per round
      for (size_t k = 0; k < strata_s.size(); ++k) ratios.push_back(mpi_s[k] / strata_s[k]);
      auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      const double ts = median(strata_s), tm = median(mpi_s), ratio = median(ratios);
      const double factor = BusFactor(op, n);
      const double bw_s = bytes / ts * factor / 1e9, bw_m = bytes / tm * factor / 1e9;
      if (rank != 0) continue;
      const std::string name(collectives::CommOpName(op));
      if (o.json) {
        std::printf("{\"op\": \"%s\", \"bytes\": %lld, \"ranks\": %d, \"iters\": %lld, "
                    "\"strata_s\": %.9g, \"mpi_s\": %.9g, \"strata_busbw\": %.6g, "
                    "\"mpi_busbw\": %.6g, \"ratio\": %.6g, \"ratio_min\": %.6g, "
                    "\"ratio_max\": %.6g}\n",
                    name.c_str(), static_cast<long long>(bytes), n,
                    static_cast<long long>(iters), ts, tm, bw_s * 1e9, bw_m * 1e9, ratio,
                    *std::min_element(ratios.begin(), ratios.end()),
                    *std::max_element(ratios.begin(), ratios.end()));
      } else {
        std::printf("%14s %12lld %15lld %10.1f %10.3f %10.1f %10.3f %8.2f\n", name.c_str(),
                    static_cast<long long>(bytes), static_cast<long long>(count), ts * 1e6, bw_s,
                    tm * 1e6, bw_m, ratio);
      }
      std::fflush(stdout);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) {
  using namespace strata::examples;
  Flags flags("strata-bench-collectives",
              "bus bandwidth of strata's MPI collectives against MPI's own, under mpirun");
  Options o;
  flags.AddBytes("min-bytes", &o.min_bytes, {.min = 4, .max = int64_t{1} << 32}, "first size");
  flags.AddBytes("max-bytes", &o.max_bytes, {.min = 4, .max = int64_t{1} << 32},
                 "last size (sizes grow x4)");
  flags.Add("rounds", &o.rounds, {.min = 1, .max = 1000}, "alternating rounds per size and op");
  flags.Add("ops", &o.ops, "comma-separated: all_reduce,reduce_scatter,all_gather,broadcast");
  flags.Add("json", &o.json, "one JSON object per line instead of the table");
  flags.Add("async", &o.async,
            "time strata's asynchronous calls followed at once by Wait, not the blocking ones");
  if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;
  if (o.min_bytes % 4 != 0 || o.max_bytes < o.min_bytes) {
    return flags.ExitCode(UsageError(
        "--min-bytes must be a multiple of 4 (f32 elements) and at most --max-bytes"));
  }
  return flags.ExitCode(Bench(o));
}
