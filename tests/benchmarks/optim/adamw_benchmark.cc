// AdamW update bandwidth against the machine's memory bandwidth, measured in the same run.
//
//   build/release/tests/benchmarks/strata_optim_benchmark [--elements N] [--threads T]
//
// AdamW moves 28 bytes per element (reads p, g, m, v; writes p, m, v). The peers are a copy
// (8 bytes/element) and a STREAM-style triad a = b + s*c (12 bytes/element), over arrays of the
// same size, far larger than the caches. The ratio column is AdamW's bytes/s over the triad's.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "optim/adamw.h"
#include "optim/sgd.h"
#include "runtime/allocator.h"
#include "runtime/threading.h"

namespace {

using Clock = std::chrono::steady_clock;

// Best of `reps` timings of fn, in seconds.
double BestSeconds(const std::function<void()>& fn, int reps) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

float* Floats(strata::Allocator& alloc, std::vector<strata::Allocation>& keep, int64_t n, float v) {
  keep.push_back(alloc.Allocate(n * sizeof(float)).value());
  float* p = static_cast<float*>(keep.back().data());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = v;  // first touch by the threads that will use it
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 1 << 24;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--elements") == 0) n = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
  }
  strata::SetNumThreads(threads);
  strata::HostAllocator alloc;
  std::vector<strata::Allocation> keep;
  float* a = Floats(alloc, keep, n, 0.0f);
  float* b = Floats(alloc, keep, n, 1.0f);
  float* c = Floats(alloc, keep, n, 2.0f);
  float* p = Floats(alloc, keep, n, 0.5f);
  float* g = Floats(alloc, keep, n, 0.01f);
  float* m = Floats(alloc, keep, n, 0.0f);
  float* v = Floats(alloc, keep, n, 0.0f);
  const int reps = 10;

  const double copy_s = BestSeconds([&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i];
  }, reps);
  const double triad_s = BestSeconds([&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
  }, reps);
  int64_t step = 0;
  const strata::optim::AdamWHyper adamw{.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1};
  const double adamw_s = BestSeconds([&] {
    (void)strata::optim::AdamWStep({p, static_cast<size_t>(n)}, {g, static_cast<size_t>(n)},
                                   {m, static_cast<size_t>(n)}, {v, static_cast<size_t>(n)},
                                   adamw, ++step);
  }, reps);
  int64_t sgd_step = 0;
  const strata::optim::SgdHyper sgd{.lr = 1e-3, .momentum = 0.9, .weight_decay = 1e-4};
  const double sgd_s = BestSeconds([&] {
    (void)strata::optim::SgdStep({p, static_cast<size_t>(n)}, {g, static_cast<size_t>(n)},
                                 {m, static_cast<size_t>(n)}, sgd, ++sgd_step);
  }, reps);

  const double triad_gbs = 12.0 * n / triad_s / 1e9;
  std::printf("optimizer update bandwidth, %lld elements (%.0f MiB per array), %d threads\n",
              static_cast<long long>(n), n * 4.0 / (1 << 20), strata::NumThreads());
  std::printf("%-22s %10s %12s %10s\n", "kernel", "ms", "GB/s", "vs triad");
  auto row = [&](const char* name, double s, double bytes_per_elem) {
    const double gbs = bytes_per_elem * n / s / 1e9;
    std::printf("%-22s %10.2f %12.2f %9.0f%%\n", name, s * 1e3, gbs, 100.0 * gbs / triad_gbs);
  };
  row("copy (8 B/elem)", copy_s, 8);
  row("triad (12 B/elem)", triad_s, 12);
  row("AdamW (28 B/elem)", adamw_s, 28);
  row("SGD momentum (20 B/elem)", sgd_s, 20);
  return 0;
}
