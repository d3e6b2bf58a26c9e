// strata-bench-adam: AdamW over host-resident state, updated in place chunk by chunk as the
// offloaded optimizer updates it, one AdamWStep call per chunk; prints one JSON line.
//
//   build/release/bin/strata-bench-adam --params 67108864 --threads 2 --chunk-elems 1048576
//   {"params":67108864,"threads":2,"chunk_elems":1048576,"steps":10,"isa":"avx512",
//    "median_step_ms":...,"params_per_s":...,"gb_per_s":...,"step_ms":[...]}
//
// param, grad, m and v are four flat fp32 buffers from the host tier's allocator (huge pages
// where the kernel allows them), first touched by the threads that update them. One untimed step
// warms up, then --steps timed steps; params_per_s is --params over the median step time, and
// gb_per_s counts 28 bytes per parameter (p, g, m, v read; p, m, v written). launch/bench-adam
// runs it against DeepSpeed's and PyTorch's CPU AdamW.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "examples/common/flags.h"
#include "nlohmann/json.hpp"
#include "optim/adamw.h"
#include "optim/internal/adamw_kernel.h"
#include "runtime/allocator.h"
#include "runtime/status.h"
#include "runtime/threading.h"

namespace strata::examples {
namespace {

struct Options {
  int64_t params = int64_t{1} << 24;
  int64_t threads = 0;
  int64_t chunk_elems = int64_t{1} << 20;
  int64_t steps = 10;
};

absl::Status Run(const Options& o) {
  SetNumThreads(static_cast<int>(o.threads));
  const int64_t n = o.params;
  const int64_t chunk = o.chunk_elems == 0 ? n : o.chunk_elems;
  HostAllocator host(MemoryTier::kHost);
  std::vector<Allocation> buffers;
  std::vector<float*> ptrs;
  for (const char* name : {"param", "grad", "m", "v"}) {
    absl::StatusOr<Allocation> a = host.Allocate(static_cast<size_t>(n) * sizeof(float));
    if (!a.ok()) {
      return absl::Status(a.status().code(),
                          absl::StrCat("--params ", n, ": allocating ", name, ": ", a.status().message()));
    }
    ptrs.push_back(static_cast<float*>(a->data()));
    buffers.push_back(*std::move(a));
  }
  float* p = ptrs[0];
  float* g = ptrs[1];
  float* m = ptrs[2];
  float* v = ptrs[3];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = static_cast<uint32_t>(i) * 2654435761u;  // a cheap hash: varied values
    p[i] = (static_cast<float>(h >> 8) * 0x1p-24f - 0.5f) * 0.04f;
    g[i] = (static_cast<float>((h >> 4) & 0xffff) * 0x1p-16f - 0.5f) * 2e-3f;
    m[i] = 0.0f;
    v[i] = 0.0f;
  }
  const optim::AdamWHyper h{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                            .weight_decay = 0.01};
  auto step = [&](int64_t t) -> absl::Status {
    for (int64_t lo = 0; lo < n; lo += chunk) {
      const size_t len = static_cast<size_t>(std::min(chunk, n - lo));
      STRATA_RETURN_IF_ERROR(optim::AdamWStep({p + lo, len}, {g + lo, len}, {m + lo, len},
                                              {v + lo, len}, h, t));
    }
    return absl::OkStatus();
  };
  STRATA_RETURN_IF_ERROR(step(1));
  std::vector<double> ms;
  for (int64_t t = 2; t < 2 + o.steps; ++t) {
    const auto start = std::chrono::steady_clock::now();
    STRATA_RETURN_IF_ERROR(step(t));
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                          : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const nlohmann::json out = {
      {"params", n},
      {"threads", NumThreads()},
      {"chunk_elems", chunk},
      {"steps", o.steps},
      {"isa", optim::internal::AdamWIsaName(optim::internal::BestAdamWIsa())},
      {"median_step_ms", median},
      {"params_per_s", n / (median * 1e-3)},
      {"gb_per_s", 28.0 * n / (median * 1e-3) / 1e9},
      {"step_ms", ms},
  };
  std::printf("%s\n", out.dump().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) {
  using strata::examples::Flags;
  strata::examples::Options o;
  Flags f("strata-bench-adam",
          "AdamW over host-resident state, chunk by chunk in place; prints one JSON line.");
  f.Add("params", &o.params, {.min = 1, .max = int64_t{1} << 36}, "parameters (fp32 elements)");
  f.Add("threads", &o.threads, {.min = 0, .max = 4096, .zero = "all cores"}, "threads");
  f.Add("chunk-elems", &o.chunk_elems, {.min = 0, .max = int64_t{1} << 36, .zero = "one call"},
        "elements per AdamWStep call");
  f.Add("steps", &o.steps, {.min = 1, .max = 1 << 20}, "timed optimizer steps");
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  return f.ExitCode(strata::examples::Run(o));
}
