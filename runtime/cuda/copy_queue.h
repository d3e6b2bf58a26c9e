// Copies between host and device memory on a CUDA stream of their own, so that they overlap the
// kernels of a compute stream: the offloaded step's fetches, write-backs and the chunks of an
// update over state on host or NVMe (Note [the step on a device] in graph/program.cc).
//
//   STRATA_ASSIGN_OR_RETURN(auto copies, CopyQueue::Create(Device::Cuda(0), compute_handle));
//   STRATA_RETURN_IF_ERROR(copies->OrderAfterCompute());   // after the kernels enqueued so far
//   STRATA_RETURN_IF_ERROR(copies->Copy(device_dst, pinned_src, bytes));
//   STRATA_RETURN_IF_ERROR(copies->Wait());                 // the host may reuse pinned_src
//
// OrderAfterCompute is a device-side wait (an event recorded on the compute stream, waited for
// by the copy stream): the host does not block, and kernels enqueued on the compute stream after
// the call are not waited for. Wait blocks the host until every copy enqueued so far is done.
// Calls may come from several threads; OrderAfterCompute and Copy are serialized.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/device.h"

struct CUstream_st;
struct CUevent_st;

namespace strata::cuda {

class CopyQueue {
 public:
  // Fails, naming the device, where it is not a CUDA device this machine has.
  static absl::StatusOr<std::unique_ptr<CopyQueue>> Create(Device device, CUstream_st* compute);
  ~CopyQueue();  // waits for the copies in flight
  CopyQueue(const CopyQueue&) = delete;
  CopyQueue& operator=(const CopyQueue&) = delete;

  absl::Status OrderAfterCompute();
  // `bytes` from `src` to `dst`, host or device memory either (unified addressing tells which).
  // Asynchronous from pinned or device memory: keep both untouched until Wait.
  absl::Status Copy(void* dst, const void* src, int64_t bytes);
  absl::Status Wait();

 private:
  CopyQueue(int device, CUstream_st* compute, CUstream_st* copy, CUevent_st* computed)
      : device_(device), compute_(compute), copy_(copy), computed_(computed) {}
  absl::Status OnDevice();  // makes this queue's device the calling thread's

  std::mutex mutex_;  // the event is recorded and waited for as one step
  const int device_;
  CUstream_st* const compute_;
  CUstream_st* const copy_;
  CUevent_st* const computed_;  // re-recorded by each OrderAfterCompute
};

}  // namespace strata::cuda
