// The NCCL backend: device buffers, NCCL's collectives on a CUDA stream of its own, and a watchdog
// thread that completes tickets and enforces the timeout. Built where CUDA and NCCL are found.
//
//   CommOptions options{.device = Device::Cuda(local_rank)};
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> mpi, MpiCommunicator::Create(options));
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> nccl,
//                           NcclCommunicator::Create(options, std::move(mpi)));
//   STRATA_ASSIGN_OR_RETURN(CommTicket t, nccl->AllReduce(device_grad));
//   STRATA_RETURN_IF_ERROR(nccl->Wait(t));
//
// Create makes the ncclUniqueId on rank 0 and broadcasts it over the bootstrap communicator
// (which the NCCL communicator keeps), then initializes NCCL non-blocking, so that the init too
// is bounded by the timeout. Collectives are enqueued on the communicator's stream in call order:
// all_reduce, equal-split reduce_scatter and all_gather, broadcast and barrier (an all_reduce of
// one int) map to one NCCL call each; uneven splits to grouped ncclReduce / ncclBroadcast calls,
// one per rank, as PyTorch's uneven all_gather does. Bucketed forms pack with cudaMemcpyAsync into
// device staging buffers on the same stream. A CUDA event recorded after each collective tells the
// watchdog when it is done; the timeout counts from the moment the collective is the oldest one
// not done (the one before it finished), and on expiry the watchdog reports the op and calls
// ncclCommAbort, then ends the job (Note [collective timeouts]); ncclCommGetAsyncError failures
// fail the op the same way. Ordering after compute on other CUDA streams waits for the runtime's
// CUDA streams and events; until then callers synchronize their work before submitting.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "collectives/comm_options.h"
#include "collectives/communicator.h"

struct ncclComm;
struct CUstream_st;
struct CUevent_st;

namespace strata::collectives {

class NcclCommunicator final : public Communicator {
 public:
  // `bootstrap` is any host communicator over the same ranks (MPI, or a world of one). Errors:
  // no CUDA device or options.device beyond the devices found, a failed CUDA or NCCL call
  // (naming it and its error string), an init that timed out (without abort), bad options.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      const CommOptions& options, std::unique_ptr<Communicator> bootstrap);
  // Waits for the collectives in flight, then destroys the NCCL communicator and the stream.
  ~NcclCommunicator() override;

  std::string Describe() const override;
  double timeout_seconds() const { return timeout_seconds_; }

 private:
  struct InFlight {
    CommTicket ticket = 0;
    std::string what;  // request.Describe()
    int64_t bytes_sent = 0;
    CUevent_st* done = nullptr;  // null when enqueueing failed: `status` says why
    absl::Status status;
  };

  NcclCommunicator(const CommOptions& options, double timeout_seconds,
                   std::unique_ptr<Communicator> bootstrap, int rank, int world_size);
  absl::Status Init();
  void Submit(internal::CommRequest request) override;
  absl::Status Enqueue(const internal::CommRequest& request);
  absl::Status EnqueueCollective(const internal::CommRequest& request, const void* input,
                                 void* output);
  // Waits while NCCL reports ncclInProgress (non-blocking communicators), up to the timeout.
  absl::Status Settle(const char* call, int result);
  absl::StatusOr<char*> Staging(int index, int64_t bytes);
  void Watchdog();
  // The timeout expired or NCCL failed asynchronously: abort NCCL, then the job or the op.
  absl::Status Fail(const InFlight& op, const std::string& why);

  const CommOptions options_;
  const double timeout_seconds_;
  std::unique_ptr<Communicator> bootstrap_;
  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;
  int* barrier_word_ = nullptr;  // device
  char* staging_[2] = {nullptr, nullptr};
  int64_t staging_bytes_[2] = {0, 0};
  std::vector<CUevent_st*> free_events_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<InFlight> in_flight_;
  absl::Status broken_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace strata::collectives
