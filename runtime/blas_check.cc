#include "runtime/blas_check.h"

#include "absl/strings/str_cat.h"
#include "cblas.h"

namespace strata {

std::string BlasCoreName() {
  const char* name = openblas_get_corename();
  return name == nullptr ? "" : name;
}

std::string SuitableBlasCoreType() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  // Elsewhere (aarch64: every core has NEON) there is no wider x86 kernel to point to.
  return "";
}

std::string SlowBlasKernelWarning() {
  const std::string core = BlasCoreName(), suitable = SuitableBlasCoreType();
  // OpenBLAS's pre-AVX2 x86-64 kernels; anything else uses 256- or 512-bit vectors.
  const bool old = core == "Prescott" || core == "Core2" || core == "Penryn" ||
                   core == "Dunnington" || core == "Nehalem" || core == "Atom" || core == "Barcelona";
  if (!old || suitable.empty()) return "";
  return absl::StrCat("warning: OpenBLAS runs its ", core, " kernels on this CPU, which has ",
                      suitable == "SkylakeX" ? "AVX-512" : "AVX2",
                      " (the library is older than the CPU); GEMMs run several times slower. Set "
                      "OPENBLAS_CORETYPE=", suitable, " before starting the program.");
}

}  // namespace strata
