#include "collectives/internal/host_staging.h"

#include <cstring>

#include "runtime/status.h"

namespace strata::collectives::internal {

char* HostStaging::Grow(int index, int64_t bytes) {
  if (bytes > capacity_[index]) {
    const int64_t rounded = (bytes + 63) / 64 * 64;
    char* p = static_cast<char*>(std::aligned_alloc(64, rounded));
    STRATA_CHECK(p != nullptr, "out of memory for a ", rounded, "-byte staging buffer");
    buffers_[index].reset(p);
    capacity_[index] = rounded;
  }
  return buffers_[index].get();
}

void HostStaging::Pack(const CommRequest& request, int rank, char** input, char** output) {
  const int64_t es = static_cast<int64_t>(SizeOf(request.dtype));
  *input = Grow(0, request.input_count(rank) * es);
  *output = request.op == CommOp::kAllReduce ? *input : Grow(1, request.output_count(rank) * es);
  for (const StagingCopy& c : request.pack) {
    if (c.count > 0) std::memcpy(*input + c.staging_offset * es, c.data, c.count * es);
  }
}

void HostStaging::Unpack(const CommRequest& request, const char* output) const {
  const int64_t es = static_cast<int64_t>(SizeOf(request.dtype));
  for (const StagingCopy& c : request.unpack) {
    if (c.count > 0) std::memcpy(c.data, output + c.staging_offset * es, c.count * es);
  }
}

}  // namespace strata::collectives::internal
