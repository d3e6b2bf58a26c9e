#include "optim/adamw.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "optim/internal/adamw_kernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define STRATA_ADAMW_X86 1
#endif

// Note [AdamW bits]
// The project promises bit-identical training across placements, chunk sizes, thread counts and
// CPUs, so every element goes through exactly the same float operations wherever it lands:
// PyTorch's, in PyTorch's order (optim/adamw.h), each rounded to float on its own. Compilers
// fuse a * b + c into one FMA (one rounding instead of two) when the target has FMA: GCC does so
// by default in C++ (-ffp-contract=fast), on x86 with -march=native and always on aarch64. That
// would make the result depend on the CPU and on how the loop was vectorized, so this file is
// compiled with -ffp-contract=off (optim/CMakeLists.txt), which also keeps the scalars below
// rounding as Python rounds them, and the AVX-512 variant spells every operation with an
// explicit-rounding intrinsic, which no compiler fuses. Division and square root stay true IEEE
// operations (no reciprocal estimates), so every variant and the tail of every chunk give the
// same bits as the plain loop; tests/optim/adamw_kernel_test.cc holds them to that.
//
// Note [AdamW speed]
// AdamW moves 28 bytes per element (reads p, g, m, v; writes p, m, v) for two divisions and a
// square root, so over state larger than the caches it is bound by memory bandwidth. The AVX-512
// variant keeps the division unit busy enough to stay ahead of memory on one core. A large call
// is cut into blocks of 16K elements (64 KiB of each buffer) that the threads take one at a time,
// so that a thread the OS preempts (the offloaded pipeline's IO and copy workers share the same
// cores) delays the call by at most the block it holds rather than by half the call. A call below
// kParallelMin elements runs on the calling thread alone: forking a team costs more than it buys.
//
// Note [AdamW on busy cores]
// The offloaded optimizer calls AdamWStep once per chunk, so every chunk pays a fork and a join.
// On idle cores that costs microseconds. On busy ones (other processes, or this process's own IO
// and copy workers) it can cost milliseconds: libgomp starts a team only once every worker has
// come back from the previous region, and a preempted worker may not run for a while. Measured on
// 2 busy cores, 64M parameters in 1M-element chunks: the caller waited 11-15 ms per call before
// starting its share, and the step ran at 0.07-0.16 G params/s on 2 threads against 0.30-0.34 G/s
// on one. So a call whose fork and join took more than a quarter of the caller's own work makes
// the next 16 calls run on the calling thread alone, after which a team is tried again (32, 64, ...
// up to 1024 calls while teams keep not paying, 16 again after one that does); on idle
// cores the overhead is a few microseconds against hundreds and this never triggers. The bits do
// not depend on the split.

namespace strata::optim {
namespace internal {
namespace {

constexpr int64_t kParallelMin = int64_t{1} << 15;
constexpr int64_t kLineFloats = 16;  // 64 bytes
constexpr int64_t kBlockFloats = 16384;

// Calls left to run on the calling thread alone because a team did not pay, and how many the
// next such team buys: doubled each time one does not pay, back to the least when one does
// (Note [AdamW on busy cores]).
std::atomic<int> g_solo_calls{0};
std::atomic<int> g_solo_backoff{0};
constexpr int kSoloCallsLeast = 16, kSoloCallsMost = 1024;

bool TakeSoloCall() {
  int left = g_solo_calls.load(std::memory_order_relaxed);
  while (left > 0) {
    if (g_solo_calls.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

void TeamPaid(bool paid) {
  if (paid) {
    g_solo_backoff.store(0, std::memory_order_relaxed);
    return;
  }
  const int calls = std::clamp(2 * g_solo_backoff.load(std::memory_order_relaxed),
                               kSoloCallsLeast, kSoloCallsMost);
  g_solo_backoff.store(calls, std::memory_order_relaxed);
  g_solo_calls.store(calls, std::memory_order_relaxed);
}

template <bool kDivideBias2>
void AdamWRangeGeneric(const AdamWScalars& s, float* __restrict p, const float* __restrict g,
                       float* __restrict m, float* __restrict v, int64_t n) {
  const float b1 = s.b1, b2 = s.b2, one_b1 = s.one_b1, one_b2 = s.one_b2;
  const float bias2_sqrt = s.bias2_sqrt, eps = s.eps, decay = s.decay, step_size = s.step_size;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * b1 + gi * one_b1;
    const float vi = v[i] * b2 + gi * gi * one_b2;
    m[i] = mi;
    v[i] = vi;
    const float denom = (kDivideBias2 ? std::sqrt(vi) / bias2_sqrt : std::sqrt(vi)) + eps;
    p[i] = p[i] * decay - step_size * (mi / denom);
  }
}

#ifdef STRATA_ADAMW_X86
// GCC 12's explicit-rounding intrinsics start from _mm512_undefined_ps(), which its own
// -Wmaybe-uninitialized then reports once inlined here.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define STRATA_AVX512 __attribute__((target("avx512f")))
constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
// Four streams restart the hardware prefetcher at every 4 KiB page; asking for each line 4 KiB
// ahead keeps them going (Note [AdamW speed]).
constexpr int64_t kPrefetchFloats = 1024;

struct Avx512Scalars {
  __m512 b1, b2, one_b1, one_b2, bias2_sqrt, eps, decay, step_size;
};

// One vector of the update: the plain loop's operations in its order, each rounded on its own.
template <bool kDivideBias2>
STRATA_AVX512 inline void Update16(const Avx512Scalars& s, __m512 pi, __m512 gi, __m512 mi,
                                   __m512 vi, __m512* p_out, __m512* m_out, __m512* v_out) {
  mi = _mm512_add_round_ps(_mm512_mul_round_ps(mi, s.b1, kRound),
                           _mm512_mul_round_ps(gi, s.one_b1, kRound), kRound);
  vi = _mm512_add_round_ps(
      _mm512_mul_round_ps(vi, s.b2, kRound),
      _mm512_mul_round_ps(_mm512_mul_round_ps(gi, gi, kRound), s.one_b2, kRound), kRound);
  __m512 root = _mm512_sqrt_round_ps(vi, kRound);
  if (kDivideBias2) root = _mm512_div_round_ps(root, s.bias2_sqrt, kRound);
  const __m512 denom = _mm512_add_round_ps(root, s.eps, kRound);
  *p_out = _mm512_sub_round_ps(
      _mm512_mul_round_ps(pi, s.decay, kRound),
      _mm512_mul_round_ps(s.step_size, _mm512_div_round_ps(mi, denom, kRound), kRound), kRound);
  *m_out = mi;
  *v_out = vi;
}

template <bool kDivideBias2>
STRATA_AVX512 void AdamWRangeAvx512(const AdamWScalars& scalars, float* p, const float* g,
                                    float* m, float* v, int64_t n) {
  const Avx512Scalars s{_mm512_set1_ps(scalars.b1),         _mm512_set1_ps(scalars.b2),
                        _mm512_set1_ps(scalars.one_b1),     _mm512_set1_ps(scalars.one_b2),
                        _mm512_set1_ps(scalars.bias2_sqrt), _mm512_set1_ps(scalars.eps),
                        _mm512_set1_ps(scalars.decay),      _mm512_set1_ps(scalars.step_size)};
  __m512 po, mo, vo;
  auto full = [&](int64_t i) STRATA_AVX512 {
    Update16<kDivideBias2>(s, _mm512_loadu_ps(p + i), _mm512_loadu_ps(g + i),
                           _mm512_loadu_ps(m + i), _mm512_loadu_ps(v + i), &po, &mo, &vo);
    _mm512_storeu_ps(m + i, mo);
    _mm512_storeu_ps(v + i, vo);
    _mm512_storeu_ps(p + i, po);
  };
  int64_t i = 0;
  for (; i + kPrefetchFloats + 16 <= n; i += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + kPrefetchFloats), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(g + i + kPrefetchFloats), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(m + i + kPrefetchFloats), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + i + kPrefetchFloats), _MM_HINT_T0);
    full(i);
  }
  for (; i + 16 <= n; i += 16) full(i);
  if (i < n) {  // the tail: masked lanes read zeros, which divide by eps > 0 harmlessly
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    Update16<kDivideBias2>(s, _mm512_maskz_loadu_ps(k, p + i), _mm512_maskz_loadu_ps(k, g + i),
             _mm512_maskz_loadu_ps(k, m + i), _mm512_maskz_loadu_ps(k, v + i), &po, &mo, &vo);
    _mm512_mask_storeu_ps(m + i, k, mo);
    _mm512_mask_storeu_ps(v + i, k, vo);
    _mm512_mask_storeu_ps(p + i, k, po);
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // STRATA_ADAMW_X86

}  // namespace

AdamWScalars MakeAdamWScalars(const AdamWHyper& h, int64_t step) {
  const double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  AdamWScalars s;
  s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  s.step_size = static_cast<float>(h.lr / bias1);
  s.bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  s.b1 = static_cast<float>(h.beta1);
  s.b2 = static_cast<float>(h.beta2);
  s.one_b1 = static_cast<float>(1.0 - h.beta1);
  s.one_b2 = static_cast<float>(1.0 - h.beta2);
  s.eps = static_cast<float>(h.eps);
  return s;
}

const char* AdamWIsaName(AdamWIsa isa) {
  switch (isa) {
    case AdamWIsa::kGeneric:
      return "generic";
    case AdamWIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool AdamWIsaSupported(AdamWIsa isa) {
  switch (isa) {
    case AdamWIsa::kGeneric:
      return true;
    case AdamWIsa::kAvx512:
#ifdef STRATA_ADAMW_X86
      return __builtin_cpu_supports("avx512f");
#else
      return false;
#endif
  }
  return false;
}

AdamWIsa BestAdamWIsa() {
  static const AdamWIsa best =
      AdamWIsaSupported(AdamWIsa::kAvx512) ? AdamWIsa::kAvx512 : AdamWIsa::kGeneric;
  return best;
}

void AdamWRange(AdamWIsa isa, const AdamWScalars& s, float* param, const float* grad, float* m,
                float* v, int64_t n) {
  // Late in training sqrt(1 - beta2^t) rounds to 1 and dividing by it changes nothing: a square
  // root is never subnormal, so x / 1 == x bit for bit (NaN included). Skipping it frees the
  // division unit, which bounds the update where the state sits in cache (Note [AdamW speed]).
  const bool divide = s.bias2_sqrt != 1.0f;
#ifdef STRATA_ADAMW_X86
  if (isa == AdamWIsa::kAvx512) {
    return divide ? AdamWRangeAvx512<true>(s, param, grad, m, v, n)
                  : AdamWRangeAvx512<false>(s, param, grad, m, v, n);
  }
#endif
  divide ? AdamWRangeGeneric<true>(s, param, grad, m, v, n)
         : AdamWRangeGeneric<false>(s, param, grad, m, v, n);
}

}  // namespace internal

absl::Status ValidateAdamWHyper(const AdamWHyper& h) {
  auto bad = [](absl::string_view field, double value, absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW: ", field, " = ", value, " must be ", rule));
  };
  if (!(h.lr >= 0)) return bad("lr", h.lr, ">= 0");
  if (!(h.beta1 >= 0 && h.beta1 < 1)) return bad("beta1", h.beta1, "in [0, 1)");
  if (!(h.beta2 >= 0 && h.beta2 < 1)) return bad("beta2", h.beta2, "in [0, 1)");
  if (!(h.eps > 0)) return bad("eps", h.eps, "> 0");
  if (!(h.weight_decay >= 0)) return bad("weight_decay", h.weight_decay, ">= 0");
  return absl::OkStatus();
}

absl::Status AdamWStep(absl::Span<float> param, absl::Span<const float> grad, absl::Span<float> m,
                       absl::Span<float> v, const AdamWHyper& h, int64_t step) {
  if (grad.size() != param.size() || m.size() != param.size() || v.size() != param.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamWStep: sizes differ: param ", param.size(), ", grad ", grad.size(), ", m ", m.size(),
        ", v ", v.size()));
  }
  if (step < 1) {
    return absl::InvalidArgumentError(absl::StrCat("AdamWStep: step ", step, " must be >= 1"));
  }
  if (absl::Status s = ValidateAdamWHyper(h); !s.ok()) return s;
  const internal::AdamWScalars s = internal::MakeAdamWScalars(h, step);
  const internal::AdamWIsa isa = internal::BestAdamWIsa();
  float* p = param.data();
  const float* g = grad.data();
  float* mm = m.data();
  float* vv = v.data();
  const int64_t n = static_cast<int64_t>(param.size());
  const int64_t threads = omp_get_max_threads();
  if (n < internal::kParallelMin || threads == 1 || omp_in_parallel() ||
      internal::TakeSoloCall()) {
    internal::AdamWRange(isa, s, p, g, mm, vv, n);
    return absl::OkStatus();
  }
  // Blocks of at most kBlockFloats, handed out one at a time, and never fewer than one per thread.
  const int64_t per_thread = (n + threads - 1) / threads;
  const int64_t block = std::min(internal::kBlockFloats,
                                 (per_thread + internal::kLineFloats - 1) / internal::kLineFloats *
                                     internal::kLineFloats);
  const int64_t blocks = (n + block - 1) / block;
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::time_point caller_start, caller_done;
#pragma omp parallel
  {
    if (omp_get_thread_num() == 0) caller_start = Clock::now();
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * block, len = std::min(block, n - lo);
      internal::AdamWRange(isa, s, p + lo, g + lo, mm + lo, vv + lo, len);
    }
    if (omp_get_thread_num() == 0) caller_done = Clock::now();
  }
  // Fork and join took more than a quarter of the caller's own work: the team did not pay.
  const Clock::duration overhead = (caller_start - start) + (Clock::now() - caller_done);
  internal::TeamPaid(overhead * 4 <= caller_done - caller_start);
  return absl::OkStatus();
}

}  // namespace strata::optim
