// The communicator of a world of one rank, so that one code path serves a single process and a
// data-parallel job: every collective is a local copy (reduce_scatter, all_gather into a separate
// buffer) or nothing at all, completes before the call returns, and sends 0 bytes.
//
//   SingleProcessCommunicator comm;
//   STRATA_ASSIGN_OR_RETURN(CommTicket t, comm.AllReduce(grad));   // grad unchanged
//   STRATA_RETURN_IF_ERROR(comm.Wait(t));
#pragma once

#include <mutex>
#include <string>

#include "collectives/communicator.h"
#include "collectives/internal/host_staging.h"

namespace strata::collectives {

class SingleProcessCommunicator final : public Communicator {
 public:
  SingleProcessCommunicator() : Communicator(/*rank=*/0, /*world_size=*/1, Device::Cpu()) {}
  std::string Describe() const override { return "single-process communicator (world of 1)"; }

 private:
  void Submit(internal::CommRequest request) override;

  internal::HostStaging staging_;
};

}  // namespace strata::collectives
