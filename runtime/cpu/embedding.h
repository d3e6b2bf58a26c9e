// Embedding lookup and its gradient (torch.nn.functional.embedding).
//
//   STRATA_RETURN_IF_ERROR(EmbeddingForward(tokens, wte, x));          // (B, T) -> (B, T, C)
//   STRATA_RETURN_IF_ERROR(EmbeddingBackward(tokens, dx, dwte, GradMode::kAccumulate));
//
// Every id is checked before anything is written: an id outside [0, V) is an OutOfRange error
// naming the id, its position and V.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// ids (...) i32 or i64, table (V, C) f32, out (..., C) f32; all contiguous.
absl::Status EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out);

// dout (..., C) -> dtable (V, C): row ids[i] receives dout[i], summed over repeats. Threads own
// column blocks of the table, so the sums need no atomics and do not depend on timing.
absl::Status EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                               GradMode mode = GradMode::kOverwrite);

// Checks that every id is in [0, vocab); shared with the cross-entropy targets.
absl::Status CheckIds(absl::string_view op, absl::string_view name, const Tensor& ids,
                      int64_t vocab, int64_t ignore_index = INT64_MIN);

}  // namespace strata::cpu
