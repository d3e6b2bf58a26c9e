// AdamW over flat fp32 buffers, with exactly PyTorch's semantics (torch.optim.AdamW):
// decoupled weight decay, bias correction, eps added outside the square root.
//
//   AdamWHyper h{.lr = 6e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
//   for (int64_t step = 1; ...; ++step)
//     STRATA_RETURN_IF_ERROR(AdamWStep(param, grad, m, v, h, step));   // step counts from 1
//
// Per element, in PyTorch's order of operations:
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// each operation rounded to float on its own (no fused multiply-add), so an element's result is
// the same bits whatever span it is updated in, on any number of threads and any CPU (Note
// [AdamW bits] in adamw.cc). The offloaded optimizer calls it on chunks of flat buffers.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace strata::optim {

// Hyper-parameters are doubles, as in Python, so that derived scalars such as 1 - beta2 round
// exactly as PyTorch rounds them.
struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// Checks ranges (lr >= 0, 0 <= beta < 1, eps > 0, weight_decay >= 0); names the bad field.
absl::Status ValidateAdamWHyper(const AdamWHyper& h);

// param, m and v are updated in place; all four spans have the same length; step >= 1. Never
// allocates. Spans of 32768 elements or more are split across the OpenMP threads (one team per
// call); shorter ones, calls from inside a parallel region, and calls right after a team whose
// fork and join cost more than it saved (busy cores) run on the calling thread.
absl::Status AdamWStep(absl::Span<float> param, absl::Span<const float> grad, absl::Span<float> m,
                       absl::Span<float> v, const AdamWHyper& h, int64_t step);

}  // namespace strata::optim
