// The block scheduler behind device.h: a block's threads are fibers on the launching thread's own
// stack-switching routine (x86-64), so that a switch costs a few instructions, not a system call.
#include "tests/cuda_emulation/device.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulation switches fibers with x86-64 code"
#endif

namespace cuda_emulation {
namespace {

// cuda_emulation_switch(&save, load): saves the callee-saved registers, the SSE control word and
// the x87 control word on the current stack, stores the stack pointer in *save, and resumes the
// fiber whose stack pointer is `load`. A new fiber's stack holds such a frame whose return address
// is cuda_emulation_fiber_start.
extern "C" void cuda_emulation_switch(void** save, void* load);
extern "C" void cuda_emulation_fiber_start();
extern "C" [[noreturn]] void cuda_emulation_fiber_main();

asm(R"(
  .text
  .globl cuda_emulation_switch
  .type cuda_emulation_switch, @function
cuda_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emulation_switch, .-cuda_emulation_switch

  .globl cuda_emulation_fiber_start
  .type cuda_emulation_fiber_start, @function
cuda_emulation_fiber_start:
  andq $-16, %rsp
  call cuda_emulation_fiber_main@PLT
  ud2
  .size cuda_emulation_fiber_start, .-cuda_emulation_fiber_start
)");

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = size_t{128} << 10;  // per thread, below a guard page
constexpr unsigned kFullMask = 0xFFFFFFFFu;

enum class State : uint8_t { kReady, kAtBarrier, kAtWarpOp, kDone };

struct Fiber {
  void* sp = nullptr;
  State state = State::kReady;
  uint3 tid{0, 0, 0};
  // Where it waits (a barrier or a warp operation), and the operation's operands and result.
  const char* file = nullptr;
  int line = 0;
  WarpOp op = WarpOp::kShflIdx;
  unsigned mask = 0;
  int arg = 0;
  int width = 0;
  uint64_t value = 0;
  uint64_t result = 0;
};

const char* OpName(WarpOp op) {
  switch (op) {
    case WarpOp::kShflIdx: return "__shfl_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
  }
  return "?";
}

bool SameSite(const Fiber& a, const Fiber& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

// One per launching thread: the running launch's fibers and their stacks.
struct Executor {
  ~Executor() {
    for (char* s : stacks) munmap(s, kStackBytes + page);
  }

  char* Stack(int t) {
    while (static_cast<int>(stacks.size()) <= t) {
      void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) Fail("cannot map a %zu-byte fiber stack", kStackBytes);
      mprotect(p, page, PROT_NONE);  // an overflow faults instead of writing over a neighbour
      stacks.push_back(static_cast<char*>(p));
    }
    return stacks[t];
  }

  void RunBlock(int threads);
  void RunWarp(int w, int threads);
  [[noreturn]] void FailStuck(int threads, int w);

  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<char*> stacks;  // lowest address, guard page first
  std::vector<Fiber> fibers = std::vector<Fiber>(kMaxThreads);
  void* scheduler_sp = nullptr;
  int current = -1;  // the running fiber, -1 outside a kernel
  bool in_launch = false;
  void (*run)(void*) = nullptr;
  void* body = nullptr;
  uint32_t mxcsr = 0;
  uint16_t fpu_control = 0;
};

thread_local Executor executor;

void Executor::RunBlock(int threads) {
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpu_control));
  for (int t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    f.state = State::kReady;
    f.tid = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
    // The frame cuda_emulation_switch pops: control words, r15 ... rbp, then the return address.
    auto* top = reinterpret_cast<uint64_t*>(Stack(t) + page + kStackBytes - 64);
    uint64_t* frame = top - 8;
    std::memset(frame, 0, 8 * sizeof(uint64_t));
    std::memcpy(frame, &mxcsr, sizeof(mxcsr));
    std::memcpy(reinterpret_cast<char*>(frame) + 4, &fpu_control, sizeof(fpu_control));
    frame[7] = reinterpret_cast<uint64_t>(&cuda_emulation_fiber_start);
    f.sp = frame;
  }
  // A warp runs until none of its threads can go on (its warp operations are released as soon as
  // its lanes all reach them), then the next warp: warps drift as far apart as barriers let them,
  // so that a missing __syncthreads shows. Between barriers the warps take turns in increasing,
  // then in decreasing order, so that it shows whichever side of the barrier the race is on: a
  // warp reading what a later warp has not written yet, or writing over what it has not read yet.
  const int warps = (threads + warpSize - 1) / warpSize;
  for (bool reverse = false;; reverse = !reverse) {
    for (int i = 0; i < warps; ++i) RunWarp(reverse ? warps - 1 - i : i, threads);
    int waiting = 0, first = -1;
    for (int t = 0; t < threads; ++t) {
      if (fibers[t].state != State::kDone) {
        ++waiting;
        if (first < 0) first = t;
      }
    }
    if (waiting == 0) return;
    // Each thread has returned or waits at a barrier: all must wait at the same __syncthreads.
    const Fiber& at = fibers[first];
    for (int t = 0; t < threads; ++t) {
      const Fiber& f = fibers[t];
      if (f.state == State::kDone) {
        current = t;
        Fail("__syncthreads at %s:%d is not reached by every thread of the block: thread %d has "
             "returned (%d of %d threads wait there)",
             at.file, at.line, t, waiting, threads);
      }
      if (!SameSite(f, at)) {
        current = t;
        Fail("the threads of a block wait at different __syncthreads: thread %d at %s:%d, "
             "thread %d at %s:%d",
             first, at.file, at.line, t, f.file, f.line);
      }
    }
    for (int t = 0; t < threads; ++t) fibers[t].state = State::kReady;
  }
}

void Executor::RunWarp(int w, int threads) {
  const int first = w * warpSize;
  const int lanes = std::min(warpSize, threads - first);
  for (;;) {
    for (int t = first; t < first + lanes; ++t) {
      Fiber& f = fibers[t];
      if (f.state != State::kReady) continue;
      current = t;
      threadIdx = f.tid;
      cuda_emulation_switch(&scheduler_sp, f.sp);
    }
    current = -1;
    int arrived = 0;
    for (int l = 0; l < lanes; ++l) arrived += fibers[first + l].state == State::kAtWarpOp;
    if (arrived == 0) return;  // each lane has returned or waits at a barrier
    // A lane that waits at a barrier or has returned never reaches the warp operation.
    if (arrived != lanes) FailStuck(threads, w);
    const Fiber& lead = fibers[first];
    if (lanes != warpSize) {
      current = first;
      Fail("%s at %s:%d in a block of %d threads: warp %d has only %d lanes, and partial warps "
           "are not emulated",
           OpName(lead.op), lead.file, lead.line, threads, w, lanes);
    }
    for (int l = 0; l < warpSize; ++l) {
      const Fiber& f = fibers[first + l];
      current = first + l;
      if (!SameSite(f, lead) || f.op != lead.op) {
        Fail("the lanes of warp %d wait at different warp operations: lane 0 at %s (%s:%d), "
             "lane %d at %s (%s:%d)",
             w, OpName(lead.op), lead.file, lead.line, l, OpName(f.op), f.file, f.line);
      }
      if (f.mask != kFullMask) {
        Fail("%s at %s:%d with mask 0x%08x: only the full mask 0xffffffff is emulated",
             OpName(f.op), f.file, f.line, f.mask);
      }
      if (f.width != warpSize) {
        Fail("%s at %s:%d with width %d: only the full warp width is emulated", OpName(f.op),
             f.file, f.line, f.width);
      }
    }
    current = -1;
    uint64_t votes = 0;
    for (int l = 0; l < warpSize; ++l) votes |= uint64_t{fibers[first + l].value != 0} << l;
    for (int l = 0; l < warpSize; ++l) {
      Fiber& f = fibers[first + l];
      int src = l;
      switch (f.op) {
        case WarpOp::kShflIdx: src = ((f.arg % warpSize) + warpSize) % warpSize; break;
        case WarpOp::kShflUp: src = l - f.arg >= 0 ? l - f.arg : l; break;
        case WarpOp::kShflDown: src = l + f.arg < warpSize ? l + f.arg : l; break;
        case WarpOp::kShflXor: src = (l ^ f.arg) < warpSize ? (l ^ f.arg) : l; break;
        default: break;
      }
      switch (f.op) {
        case WarpOp::kBallot: f.result = votes; break;
        case WarpOp::kAny: f.result = votes != 0; break;
        case WarpOp::kAll: f.result = votes == 0xFFFFFFFFu; break;
        default: f.result = fibers[first + src].value; break;
      }
    }
    for (int l = 0; l < warpSize; ++l) fibers[first + l].state = State::kReady;
  }
}

void Executor::FailStuck(int threads, int w) {
  const int first = w * warpSize;
  const int lanes = std::min(warpSize, threads - first);
  int waiting = -1, other = -1;
  for (int l = 0; l < lanes; ++l) {
    if (fibers[first + l].state == State::kAtWarpOp) {
      if (waiting < 0) waiting = l;
    } else if (other < 0) {
      other = l;
    }
  }
  const Fiber& a = fibers[first + waiting];
  const Fiber& b = fibers[first + other];
  current = first + other;
  if (b.state == State::kDone) {
    Fail("%s at %s:%d is not reached by every lane of warp %d: lane %d has returned", OpName(a.op),
         a.file, a.line, w, other);
  }
  Fail("%s at %s:%d is not reached by every lane of warp %d: lane %d waits at __syncthreads at "
       "%s:%d",
       OpName(a.op), a.file, a.line, w, other, b.file, b.line);
}

Fiber& Running(const char* what, const char* file, int line) {
  Executor& e = executor;
  if (e.current < 0) Fail("%s at %s:%d called outside a kernel", what, file, line);
  return e.fibers[e.current];
}

}  // namespace

extern "C" void cuda_emulation_fiber_main() {
  Executor& e = executor;
  e.run(e.body);
  Fiber& f = e.fibers[e.current];
  f.state = State::kDone;
  cuda_emulation_switch(&f.sp, e.scheduler_sp);
  __builtin_trap();  // a finished fiber is never resumed
}

void Fail(const char* format, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "CUDA emulation: ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  const Executor& e = executor;
  if (e.in_launch) {
    std::fprintf(stderr, " [block (%u, %u, %u) of (%u, %u, %u), block size (%u, %u, %u)",
                 blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z, blockDim.x,
                 blockDim.y, blockDim.z);
    if (e.current >= 0) {
      const uint3 t = e.fibers[e.current].tid;
      std::fprintf(stderr, ", thread (%u, %u, %u)", t.x, t.y, t.z);
    }
    std::fprintf(stderr, "]");
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

void SyncThreads(const char* file, int line) {
  Fiber& f = Running("__syncthreads", file, line);
  f.state = State::kAtBarrier;
  f.file = file;
  f.line = line;
  cuda_emulation_switch(&f.sp, executor.scheduler_sp);
}

uint64_t WarpExchange(const char* file, int line, WarpOp op, unsigned mask, uint64_t value,
                      int arg, int width) {
  Fiber& f = Running(OpName(op), file, line);
  f.state = State::kAtWarpOp;
  f.file = file;
  f.line = line;
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  cuda_emulation_switch(&f.sp, executor.scheduler_sp);
  return f.result;
}

void Launch(const LaunchConfig& config, void (*run)(void*), void* body) {
  Executor& e = executor;
  if (e.in_launch) Fail("a kernel launches a kernel: dynamic parallelism is not emulated");
  const dim3 g = config.grid, b = config.block;
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  if (threads == 0 || threads > kMaxThreads || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7FFFFFFFu || g.y > 65535 || g.z > 65535) {
    SetLastError(cudaErrorInvalidConfiguration);
    return;
  }
  if (!KnownStream(config.stream)) {
    SetLastError(cudaErrorInvalidResourceHandle);
    return;
  }
  if (config.shared_bytes != 0) {
    Fail("a launch with %zu bytes of dynamic shared memory: not emulated", config.shared_bytes);
  }
  e.in_launch = true;
  e.run = run;
  e.body = body;
  gridDim = g;
  blockDim = b;
  for (unsigned z = 0; z < g.z; ++z) {
    for (unsigned y = 0; y < g.y; ++y) {
      for (unsigned x = 0; x < g.x; ++x) {
        blockIdx = {x, y, z};
        e.RunBlock(static_cast<int>(threads));
      }
    }
  }
  e.in_launch = false;
  e.run = nullptr;
  e.body = nullptr;
  threadIdx = blockIdx = {0, 0, 0};
}

}  // namespace cuda_emulation

long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
