// The AdamW element update behind optim::AdamWStep, with its instruction-set variants exposed so
// that tests can hold every variant to the same bits.
//
//   internal::AdamWScalars s = internal::MakeAdamWScalars(h, step);   // h validated, step >= 1
//   internal::AdamWRange(internal::BestAdamWIsa(), s, p, g, m, v, n); // on the calling thread
//
// Every variant rounds each operation of the formula in optim/adamw.h to float, in that order,
// and never fuses a multiply with an add (Note [AdamW bits] in adamw.cc), so all of them give the
// same bits for every element, on every CPU.
#pragma once

#include <cstdint>

#include "optim/adamw.h"

namespace strata::optim::internal {

// The per-step scalars, each computed in double and rounded to float once, as PyTorch computes
// them in Python floats.
struct AdamWScalars {
  float decay = 0;       // 1 - lr * wd
  float step_size = 0;   // lr / (1 - beta1^t)
  float bias2_sqrt = 0;  // sqrt(1 - beta2^t)
  float b1 = 0, b2 = 0, one_b1 = 0, one_b2 = 0, eps = 0;
};

AdamWScalars MakeAdamWScalars(const AdamWHyper& h, int64_t step);

enum class AdamWIsa {
  kGeneric,  // plain C++, vectorized by the compiler for whatever the build targets
  kAvx512,   // AVX-512F intrinsics, chosen at run time where the CPU has them (x86-64 only)
};

const char* AdamWIsaName(AdamWIsa isa);
// Whether this build and this CPU can run `isa`.
bool AdamWIsaSupported(AdamWIsa isa);
// The fastest supported variant (decided once per process).
AdamWIsa BestAdamWIsa();

// param, grad, m, v are (n); updates elements [0, n) in place on the calling thread. `isa` must
// be supported. Never allocates.
void AdamWRange(AdamWIsa isa, const AdamWScalars& s, float* param, const float* grad, float* m,
                float* v, int64_t n);

}  // namespace strata::optim::internal
