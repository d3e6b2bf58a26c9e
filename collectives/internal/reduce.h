// The reduction of the host backends' rings: dst = a + b elementwise, for f32 and i32 (i32 wraps
// around on overflow, as MPI_SUM and ncclSum do). dst may be a or b.
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace strata::collectives::internal {

void AddInto(void* dst, const void* a, const void* b, int64_t count, DType dtype);

}  // namespace strata::collectives::internal
