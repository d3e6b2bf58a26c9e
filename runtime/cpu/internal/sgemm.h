// strata's own AVX-512 sgemm for the 2-D products of the linear layers (the forward, the input
// gradient, and with trans_a the weight gradient), with the output's starting value (zero,
// itself, a bias row, an addend matrix) formed in registers instead of in a pass over the output
// first.
//
//   internal::SgemmArgs g;
//   g.m = rows; g.n = out; g.k = in;
//   g.a = x; g.lda = in;                    // A (m, k), read in place, never packed
//   g.b = w; g.b_rs = 1; g.b_cs = in;       // B (k, n) = w^T for w stored (out, in)
//   g.c = y; g.ldc = out;
//   g.bias = b;                             // y = x w^T + b
//   if (internal::SgemmSupports(g)) internal::Sgemm(g);
//
// Why strata has its own: Note [own sgemm] in sgemm.cc.
#pragma once

#include <cstdint>

namespace strata::cpu::internal {

struct SgemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;  // A (m, k): a[i * lda + p], or a[p * lda + i] if trans_a
  int64_t lda = 0;
  bool trans_a = false;  // A is stored as A^T (k, m), as dy is in a weight gradient dy^T x
  const float* b = nullptr;  // B (k, n): b[p * b_rs + j * b_cs]; b_rs or b_cs is 1
  int64_t b_rs = 0, b_cs = 0;
  float* c = nullptr;  // C (m, n): c[i * ldc + j]
  int64_t ldc = 0;
  const float* bias = nullptr;    // (n), added to every row; optional
  const float* addend = nullptr;  // (m, n) at addend[i * ld_addend + j]; optional
  int64_t ld_addend = 0;
  bool accumulate = false;  // C += A B (+ ...) instead of C = A B (+ ...)
};

// Whether Sgemm can run g: the build targets AVX-512, one of B's strides is 1 and the other
// fits the 32-bit offsets of a gather.
bool SgemmSupports(const SgemmArgs& g);

// C = [C +] A B [+ bias] [+ addend]. Runs on a new OpenMP team, or on the calling thread alone
// inside a parallel region. The result does not depend on the number of threads.
void Sgemm(const SgemmArgs& g);

}  // namespace strata::cpu::internal
