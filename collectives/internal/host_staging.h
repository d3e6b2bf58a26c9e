// Staging buffers of the host backends (MPI, single process): grown to the largest bucket seen,
// then reused, so a steady training step allocates nothing here.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "collectives/internal/comm_request.h"

namespace strata::collectives::internal {

class HostStaging {
 public:
  // Buffers for `request`'s input and output staging (this rank's sizes), at least 64-byte
  // aligned; the input buffer holds the packed tensors on return. All-reduce is in place: output
  // is the input buffer.
  void Pack(const CommRequest& request, int rank, char** input, char** output);
  // Copies the output staging back into the tensors.
  void Unpack(const CommRequest& request, const char* output) const;

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  char* Grow(int index, int64_t bytes);
  std::unique_ptr<char, FreeDeleter> buffers_[2];
  int64_t capacity_[2] = {0, 0};
};

}  // namespace strata::collectives::internal
