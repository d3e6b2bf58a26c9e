// Dropout with a counter-based mask: element i of the step's global batch is kept iff its
// uniform draw u_i >= p, and kept elements are scaled by 1 / (1 - p) (inverted dropout, as
// torch.nn.Dropout), on f32 or bf16 tensors (fp32 arithmetic).
//
//   DropoutParams d{.p = 0.1f, .seed = seed, .step = step, .stream = 3, .first_index = 0};
//   STRATA_RETURN_IF_ERROR(DropoutForward(x, d, y));      // y = x * mask / (1 - p)
//   STRATA_RETURN_IF_ERROR(DropoutBackward(dy, d, dx));   // dx = dy * mask / (1 - p), same mask
//
// Note [dropout masks from a counter]
// u_i comes from Philox4x32-10 (runtime/cpu/philox.h) with key = seed (64 bits) and counter =
// (g / 4 low word, g / 4 high word, step, stream), where g = first_index + i is the element's index
// in the step's global batch; g % 4 picks one of the four words the counter gives, and
// UniformFromBits turns it into u. So the mask is a pure function of (seed, step, stream, g):
//   - no mask is stored between forward and backward: the backward draws it again from the same
//     counters (1 byte or more per element saved, for the price of the draws);
//   - the thread count cannot change it (each element's draw depends on its index alone);
//   - nor can the way the global batch is split into ranks and micro-batches, as long as each
//     part passes the index of its first element (graph/ops/dropout_ops.cc);
//   - and a resumed run draws the masks of the run it resumes, given the same step.
// Two dropouts of one step take different streams, so that they draw independent masks.
// PyTorch's masks come from another generator and cannot be reproduced; the reference is
// Philox itself, checked against Random123's known-answer vectors in the test.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

struct DropoutParams {
  float p = 0.0f;           // drop probability, in [0, 1); 0 copies x
  uint64_t seed = 0;        // the Philox key
  uint32_t step = 0;        // counter word 2: the optimizer step
  uint32_t stream = 0;      // counter word 3: which dropout of the model
  int64_t first_index = 0;  // g of the tensor's first element (logical row-major order)
};

// x and out are of one shape and dtype (f32 or bf16), any strides; out may alias x. Errors name
// a p outside [0, 1), a negative first_index and mismatched tensors.
absl::Status DropoutForward(const Tensor& x, const DropoutParams& params, const Tensor& out);
// dout and dx as x and out above: the forward's mask and scale applied to dout.
absl::Status DropoutBackward(const Tensor& dout, const DropoutParams& params, const Tensor& dx);

}  // namespace strata::cpu
