#include "collectives/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collectives/internal/abort_job.h"
#include "runtime/status.h"

namespace strata::collectives {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status CudaError(const char* call, cudaError_t error) {
  return absl::InternalError(absl::StrCat("collectives: ", call, " failed: ",
                                          cudaGetErrorName(error), ": ",
                                          cudaGetErrorString(error)));
}

#define STRATA_CUDA_RETURN_IF_ERROR(call)                                  \
  do {                                                                     \
    if (cudaError_t strata_cuda_error_ = (call); strata_cuda_error_ != cudaSuccess) { \
      return CudaError(#call, strata_cuda_error_);                         \
    }                                                                      \
  } while (false)

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kI32: return ncclInt32;
    case DType::kF16: return ncclFloat16;
    case DType::kBF16: return ncclBfloat16;
    case DType::kI64: return ncclInt64;
    case DType::kU8: return ncclUint8;
  }
  return ncclUint8;
}

Clock::duration Seconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    const CommOptions& options, std::unique_ptr<Communicator> bootstrap) {
  STRATA_ASSIGN_OR_RETURN(const double timeout, ResolveCommTimeout(options));
  if (bootstrap == nullptr || !bootstrap->device().is_cpu()) {
    return absl::InvalidArgumentError(
        "collectives: NCCL needs a host communicator (MPI or single process) to bootstrap over");
  }
  if (!options.device.is_cuda()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: NCCL communicates device buffers; options.device is ",
        options.device.ToString()));
  }
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "collectives: NCCL needs a CUDA device and cudaGetDeviceCount found none (",
        e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")"));
  }
  if (options.device.index() >= devices) {
    return absl::InvalidArgumentError(absl::StrCat("collectives: ", options.device.ToString(),
                                                   " does not exist: this rank sees ", devices,
                                                   " CUDA devices"));
  }
  const int rank = bootstrap->rank(), world = bootstrap->world_size();
  std::unique_ptr<NcclCommunicator> comm(
      new NcclCommunicator(options, timeout, std::move(bootstrap), rank, world));
  STRATA_RETURN_IF_ERROR(comm->Init());
  comm->watchdog_ = std::thread([raw = comm.get()] { raw->Watchdog(); });
  return comm;
}

NcclCommunicator::NcclCommunicator(const CommOptions& options, double timeout_seconds,
                                   std::unique_ptr<Communicator> bootstrap, int rank,
                                   int world_size)
    : Communicator(rank, world_size, options.device),
      options_(options),
      timeout_seconds_(timeout_seconds),
      bootstrap_(std::move(bootstrap)) {}

absl::Status NcclCommunicator::Init() {
  STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device().index()));
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank() == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return absl::InternalError(
          absl::StrCat("collectives: ncclGetUniqueId failed: ", ncclGetErrorString(r)));
    }
  }
  Tensor id_bytes = Tensor::Wrap(&id, Shape{static_cast<int64_t>(sizeof(id))}, DType::kU8,
                                 Device::Cpu());
  STRATA_RETURN_IF_ERROR(bootstrap_->Blocking().Broadcast(id_bytes, /*root=*/0));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; Settle bounds the wait
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, world_size(), id, rank(), &config);
  comm_ = comm;
  STRATA_RETURN_IF_ERROR(Settle("ncclCommInitRankConfig", r));
  cudaStream_t stream = nullptr;
  STRATA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_ = stream;
  STRATA_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&barrier_word_), sizeof(int)));
  STRATA_CUDA_RETURN_IF_ERROR(cudaMemset(barrier_word_, 0, sizeof(int)));
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    watchdog_.join();  // it drains in_flight_ first
  }
  cudaSetDevice(device().index());
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (comm_ != nullptr) {
    if (broken_.ok()) {  // else it was aborted already
      ncclCommFinalize(comm_);
      ncclResult_t state = ncclInProgress;
      while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress) {
        std::this_thread::yield();
      }
      ncclCommDestroy(comm_);
    }
  }
  for (CUevent_st* e : free_events_) cudaEventDestroy(e);
  for (char* s : staging_) cudaFree(s);
  if (barrier_word_ != nullptr) cudaFree(barrier_word_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string NcclCommunicator::Describe() const {
  return absl::StrCat("nccl communicator on ", device().ToString(), ", rank ", rank(), " of ",
                      world_size(), ", timeout ", timeout_seconds_, " s");
}

absl::Status NcclCommunicator::Settle(const char* call, int result) {
  ncclResult_t r = static_cast<ncclResult_t>(result);
  const Clock::time_point deadline = Clock::now() + Seconds(timeout_seconds_);
  while (r == ncclInProgress) {
    if (Clock::now() > deadline) {
      const std::string message = absl::StrFormat(
          "collectives: %s did not complete on rank %d of %d within %g s: a rank did not join "
          "or is stuck", call, rank(), world_size(), timeout_seconds_);
      if (comm_ != nullptr) ncclCommAbort(comm_);
      if (options_.abort_on_timeout) internal::AbortJob(message, kCommTimeoutExitCode);
      std::lock_guard lock(mutex_);
      broken_ = absl::FailedPreconditionError(absl::StrCat(
          "collectives: the NCCL communicator is unusable after an earlier failure: ", message));
      return absl::DeadlineExceededError(message);
    }
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) break;
  }
  if (r != ncclSuccess) {
    return absl::InternalError(absl::StrCat("collectives: ", call, " failed on rank ", rank(),
                                            ": ", ncclGetErrorString(r), " (",
                                            ncclGetLastError(comm_), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<char*> NcclCommunicator::Staging(int index, int64_t bytes) {
  if (bytes > staging_bytes_[index]) {
    // Collectives in flight may still read the old buffer.
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaFree(staging_[index]));
    staging_[index] = nullptr;
    staging_bytes_[index] = 0;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&staging_[index]), bytes));
    staging_bytes_[index] = bytes;
  }
  return staging_[index];
}

void NcclCommunicator::Submit(internal::CommRequest request) {
  InFlight op{.ticket = request.ticket, .what = request.Describe(),
              .bytes_sent = request.bytes_sent, .done = nullptr, .status = absl::OkStatus()};
  {
    std::lock_guard lock(mutex_);
    op.status = broken_;
  }
  if (op.status.ok()) op.status = Enqueue(request);
  if (op.status.ok()) {
    cudaEvent_t event = nullptr;
    {
      std::lock_guard lock(mutex_);  // the watchdog returns events to the pool
      if (!free_events_.empty()) {
        event = free_events_.back();
        free_events_.pop_back();
      }
    }
    if (event == nullptr) {
      if (cudaError_t err = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
          err != cudaSuccess) {
        op.status = CudaError("cudaEventCreateWithFlags", err);
        event = nullptr;
      }
    }
    op.done = event;
    if (event != nullptr) {
      if (cudaError_t err = cudaEventRecord(event, stream_); err != cudaSuccess) {
        op.status = CudaError("cudaEventRecord", err);
      }
    }
  }
  {
    std::lock_guard lock(mutex_);
    in_flight_.push_back(std::move(op));
  }
  cv_.notify_all();
}

absl::Status NcclCommunicator::Enqueue(const internal::CommRequest& r) {
  STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device().index()));
  if (!r.bucketed) return EnqueueCollective(r, r.input, r.output);
  const int64_t es = static_cast<int64_t>(SizeOf(r.dtype));
  STRATA_ASSIGN_OR_RETURN(char* in, Staging(0, r.input_count(rank()) * es));
  char* out = in;
  if (r.op != CommOp::kAllReduce) {
    STRATA_ASSIGN_OR_RETURN(out, Staging(1, r.output_count(rank()) * es));
  }
  for (const internal::StagingCopy& c : r.pack) {
    if (c.count == 0) continue;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(in + c.staging_offset * es, c.data, c.count * es,
                                                cudaMemcpyDeviceToDevice, stream_));
  }
  STRATA_RETURN_IF_ERROR(EnqueueCollective(r, in, out));
  for (const internal::StagingCopy& c : r.unpack) {
    if (c.count == 0) continue;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(c.data, out + c.staging_offset * es, c.count * es,
                                                cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::EnqueueCollective(const internal::CommRequest& r,
                                                 const void* input, void* output) {
  const ncclDataType_t type = NcclType(r.dtype);
  const int64_t es = static_cast<int64_t>(SizeOf(r.dtype));
  const int n = world_size();
  switch (r.op) {
    case CommOp::kAllReduce:
      return Settle("ncclAllReduce",
                    ncclAllReduce(input, output, r.count, type, ncclSum, comm_, stream_));
    case CommOp::kBroadcast:
      return Settle("ncclBroadcast",
                    ncclBroadcast(input, output, r.count, type, r.root, comm_, stream_));
    case CommOp::kBarrier:
      return Settle("ncclAllReduce (barrier)", ncclAllReduce(barrier_word_, barrier_word_, 1,
                                                             ncclInt32, ncclSum, comm_, stream_));
    case CommOp::kReduceScatter:
    case CommOp::kAllGather: {
      const bool even = std::all_of(r.rank_counts.begin(), r.rank_counts.end(),
                                    [&](int64_t c) { return c == r.rank_counts[0]; });
      const bool scatter = r.op == CommOp::kReduceScatter;
      if (even) {
        const size_t shard = r.rank_counts[0];
        return scatter ? Settle("ncclReduceScatter", ncclReduceScatter(input, output, shard, type,
                                                                      ncclSum, comm_, stream_))
                       : Settle("ncclAllGather",
                                ncclAllGather(input, output, shard, type, comm_, stream_));
      }
      // Uneven shards: one reduce (broadcast) per rank, rooted at the shard's owner, grouped.
      STRATA_RETURN_IF_ERROR(Settle("ncclGroupStart", ncclGroupStart()));
      int64_t offset = 0;
      for (int q = 0; q < n; ++q) {
        const int64_t c = r.rank_counts[q];
        if (c > 0) {
          const char* whole_in = static_cast<const char*>(input) + offset * es;
          char* whole_out = static_cast<char*>(output) + offset * es;
          const ncclResult_t result =
              scatter ? ncclReduce(whole_in, output, c, type, ncclSum, q, comm_, stream_)
                      : ncclBroadcast(q == rank() ? input : whole_out, whole_out, c, type, q,
                                      comm_, stream_);
          if (result != ncclSuccess && result != ncclInProgress) {
            ncclGroupEnd();
            return Settle(scatter ? "ncclReduce" : "ncclBroadcast", result);
          }
        }
        offset += c;
      }
      return Settle("ncclGroupEnd", ncclGroupEnd());
    }
  }
  return absl::OkStatus();
}

void NcclCommunicator::Watchdog() {
  cudaSetDevice(device().index());  // the device is per thread
  std::unique_lock lock(mutex_);
  Clock::time_point head_since = Clock::now();  // when the oldest op became the oldest
  CommTicket head = 0;
  while (true) {
    if (in_flight_.empty()) {
      if (stopping_) return;
      cv_.wait(lock, [&] { return stopping_ || !in_flight_.empty(); });
      continue;
    }
    InFlight& op = in_flight_.front();
    if (op.ticket != head) {
      head = op.ticket;
      head_since = Clock::now();
    }
    absl::Status status = op.status;
    bool done = !status.ok();
    if (!done) {
      const cudaError_t query = cudaEventQuery(op.done);
      if (query == cudaSuccess) {
        done = true;
      } else if (query != cudaErrorNotReady) {
        status = CudaError("cudaEventQuery", query);
        done = true;
      } else {
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(comm_, &async);
        const double waited = std::chrono::duration<double>(Clock::now() - head_since).count();
        if (async != ncclSuccess && async != ncclInProgress) {
          lock.unlock();
          status = Fail(op, absl::StrCat("NCCL reported ", ncclGetErrorString(async), " (",
                                         ncclGetLastError(comm_), ")"));
          lock.lock();
          done = true;
        } else if (waited > timeout_seconds_) {
          lock.unlock();
          status = Fail(op, absl::StrFormat("timed out after %.2f s (timeout %g s)", waited,
                                            timeout_seconds_));
          lock.lock();
          done = true;
        }
      }
    }
    if (!done) {
      // A collective usually ends within a millisecond: poll closely (yielding) that long, so that
      // Wait returns soon after the GPU is done, then every 100 us.
      if (Clock::now() - head_since < std::chrono::milliseconds(1)) {
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
      } else {
        cv_.wait_for(lock, std::chrono::microseconds(100));
      }
      continue;
    }
    InFlight finished = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (finished.done != nullptr) free_events_.push_back(finished.done);
    lock.unlock();
    if (status.ok()) AddBytesSent(finished.bytes_sent);
    tickets().Complete(finished.ticket, std::move(status));
    lock.lock();
  }
}

absl::Status NcclCommunicator::Fail(const InFlight& op, const std::string& why) {
  const std::string message = absl::StrCat(
      "collectives: ", op.what, " on ", device().ToString(), ", rank ", rank(), " of ",
      world_size(), ": ", why, "; waiting for the other ranks of the NCCL communicator: one did "
      "not join this collective, is in another one, or is stuck");
  ncclCommAbort(comm_);
  if (options_.abort_on_timeout) internal::AbortJob(message, kCommTimeoutExitCode);
  std::lock_guard lock(mutex_);
  broken_ = absl::FailedPreconditionError(
      absl::StrCat("collectives: the NCCL communicator is unusable after an earlier failure: ",
                   message));
  return absl::DeadlineExceededError(message);
}

}  // namespace strata::collectives
