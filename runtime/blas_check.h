// Whether the BLAS library runs kernels that fit this CPU.
//
//   if (std::string w = SlowBlasKernelWarning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
//
// Note [OpenBLAS on CPUs it does not know]: OpenBLAS picks its kernels at load time from the CPU's
// family and model. A release older than the CPU (Debian 12 ships 0.3.21) does not know it and
// falls back to its oldest x86-64 kernels ("Prescott", SSE3): every GEMM strata leaves to OpenBLAS
// then runs about 10x slower, with correct results and no message. On an Intel Xeon of family 6
// model 207 (Emerald Rapids) the sgemm at the GPT's shapes fell from about 210 to 33 GFLOP/s, and
// a GPT step from 0.5 to 1.9 s. The environment variable OPENBLAS_CORETYPE, read when the library
// loads, overrides the choice, so the remedy is a line the user runs before the program; this
// check only makes the slowdown visible.
#pragma once

#include <string>

namespace strata {

// OpenBLAS's name for the kernels it chose ("SkylakeX", "Haswell", "Prescott", ...).
std::string BlasCoreName();

// The OPENBLAS_CORETYPE that suits this CPU's vector units: "SkylakeX" with AVX-512 (F, BW, DQ,
// VL), "Haswell" with AVX2 and FMA, "" otherwise and on every CPU that is not x86 (aarch64).
std::string SuitableBlasCoreType();

// Empty when the BLAS kernels use this CPU's vector units; else one line saying what runs, how
// much slower, and the OPENBLAS_CORETYPE to set.
std::string SlowBlasKernelWarning();

}  // namespace strata
