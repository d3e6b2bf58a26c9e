// Data parallel training on a CUDA device over the MPI backend (Note [the step on a device] in
// graph/program.cc): every collective of the step is staged through host memory. Each rank
// trains a small model on its rows of the global batch on cuda:0 and, as the reference, the same
// data-parallel program on the CPU (which data_parallel_test checks against one process): the
// per-step losses and gradient norms and this rank's state (its shards, with ZeRO) must match
// within f32 rounding, for ZeRO stages 0 to 3, with micro-batches and clipping, in bf16 (the sums
// rounded in host memory), with state on host and NVMe, and for the CNN, whose BatchNorm takes
// its statistics over the global batch. ctest runs it under mpiexec -n 2 on the CUDA emulation
// (graph_data_parallel_cuda_emulated_test, tests/cuda_emulation/).
//
// Every rank runs every test in the same order, so the collectives match.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/mobilenet.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/collectives/mpi_test_main.h"
#include "tests/graph/data_parallel_util.h"

namespace strata::graph {
namespace {

collectives::MpiCommunicator* Comm() { return &testing::JobCommunicator(); }

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};
constexpr int64_t kGlobalBatch = 12;  // divisible by 2 and 3 ranks times 2 micro-batches
constexpr int kSteps = 5;

struct RunSetup {
  int stage = 0;
  int micro_batches = 1;
  double clip = 1.0;
  DType precision = DType::kF32;
  OffloadOptions offload{};
  double tolerance = 1e-4;  // of losses and norms, relative
};

class DataParallelCudaTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    const CudaDevices found = FindCudaDevices();  // the same answer on every rank
    if (found.count == 0) GTEST_SKIP() << found.why_none;
  }
};

absl::StatusOr<std::unique_ptr<Program>> CompileGpt(const RunSetup& setup, Device device) {
  const int64_t rows = kGlobalBatch / Comm()->world_size() / setup.micro_batches;
  Gpt gpt(kTiny);
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine,
                .max_lr = 1e-2,
                .min_lr = 1e-3,
                .warmup_steps = 2,
                .total_steps = 20};
  o.clip_grad_norm = setup.clip;
  o.micro_batches = setup.micro_batches;
  o.seed = 7;
  o.precision = setup.precision;
  o.offload = setup.offload;
  o.communicator = Comm();
  o.zero.stage = setup.stage;
  o.zero.persistence_threshold = 0;  // every tensor sharded and reduced through a collective
  o.device = device;
  return Compile(
      gpt, {{"ids", Shape{rows, 16}, DType::kI32}, {"targets", Shape{rows, 16}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); }, o);
}

// The per-step losses and norms, and this rank's state, of `gpu` against `cpu`.
void ExpectSameTraining(Program& cpu, Program& gpu, const std::vector<std::vector<Tensor>>& batches,
                        double tolerance, double state_tolerance) {
  for (size_t s = 0; s < batches.size(); ++s) {
    absl::StatusOr<StepStats> want = cpu.Step(batches[s]);
    absl::StatusOr<StepStats> got = gpu.Step(batches[s]);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectRelativelyNear(got->loss, want->loss, tolerance, absl::StrCat("loss of step ", s + 1));
    if (want->grad_norm >= 0) {
      ExpectRelativelyNear(got->grad_norm, want->grad_norm, tolerance,
                           absl::StrCat("norm of step ", s + 1));
    }
    EXPECT_EQ(got->comm_bytes, want->comm_bytes) << "step " << s + 1;  // the same collectives
  }
  for (const auto& [named_cpu, named_gpu] :
       {std::pair{&cpu.parameter_values(), &gpu.parameter_values()},
        std::pair{&cpu.optimizer_state_values(), &gpu.optimizer_state_values()}}) {
    ASSERT_EQ(named_cpu->size(), named_gpu->size());
    for (size_t i = 0; i < named_cpu->size(); ++i) {
      const Tensor want = cpu.ReadState((*named_cpu)[i].second, DefaultCpuAllocator()).value();
      const Tensor got = gpu.ReadState((*named_gpu)[i].second, DefaultCpuAllocator()).value();
      ASSERT_EQ(got.shape(), want.shape()) << (*named_cpu)[i].first;
      double scale = 1, worst = 0;
      for (int64_t k = 0; k < want.numel(); ++k) {
        scale = std::max(scale, std::abs(static_cast<double>(want.data<float>()[k])));
        worst = std::max(
            worst, std::abs(static_cast<double>(want.data<float>()[k]) - got.data<float>()[k]));
      }
      EXPECT_LE(worst, state_tolerance * scale) << (*named_cpu)[i].first;
    }
  }
}

void ExpectGptTrainsAsOnTheCpu(const RunSetup& setup, double state_tolerance) {
  auto cpu = CompileGpt(setup, Device::Cpu());
  auto gpu = CompileGpt(setup, Device::Cuda(0));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::vector<std::vector<Tensor>> batches;
  const int world = Comm()->world_size(), rank = Comm()->rank();
  for (int s = 0; s < kSteps; ++s) {
    batches.push_back({RankTokenRows(s, 0, kGlobalBatch, setup.micro_batches, world, rank),
                       RankTokenRows(s, 1, kGlobalBatch, setup.micro_batches, world, rank)});
  }
  ExpectSameTraining(**cpu, **gpu, batches, setup.tolerance, state_tolerance);
}

TEST_P(DataParallelCudaTest, GptWithMicroBatchesAndClippingTrainsAsOnTheCpu) {
  // An AdamW step whose gradient is within rounding of zero may step the other way: 2e-2 of the
  // tensor's largest element at worst, as in program_cuda_test.
  ExpectGptTrainsAsOnTheCpu({.stage = GetParam(), .micro_batches = 2}, 2e-2);
}

TEST_P(DataParallelCudaTest, Bf16TrainsAsOnTheCpuWithinItsPrecision) {
  ExpectGptTrainsAsOnTheCpu({.stage = GetParam(), .precision = DType::kBF16, .tolerance = 1e-2},
                            5e-2);
}

// ZeRO-Infinity across ranks on devices: parameters on NVMe (stage 3 reads and gathers them),
// AdamW's moments on the host, updated by the CPU.
TEST_P(DataParallelCudaTest, StateOnHostAndNvmeTrainsAsOnTheCpu) {
  OffloadOptions o;
  o.params = GetParam() == 3 ? MemoryTier::kNvme : MemoryTier::kHost;
  o.optimizer = MemoryTier::kHost;
  o.persistence_threshold = 0;
  o.io.dir = ::testing::TempDir();
  ExpectGptTrainsAsOnTheCpu({.stage = GetParam(), .offload = o}, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Stages, DataParallelCudaTest, ::testing::Values(0, 1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return absl::StrCat("Stage", i.param);
                         });

// The CNN's BatchNorm takes its statistics over the global batch: two more all-reduces per
// BatchNorm in the forward and the backward, staged as the gradients' are.
TEST_F(DataParallelCudaTest, CnnWithSynchronizedBatchNormTrainsAsOnTheCpu) {
  MobileNetConfig c;
  c.blocks = {{8, 8, 1, 1}, {8, 16, 2, 4}};
  c.stem = 8;
  c.head = 32;
  const int world = Comm()->world_size(), rank = Comm()->rank();
  const int64_t rows = kGlobalBatch / world;
  auto compile = [&](Device device) {
    MobileNet net(c);
    TrainOptions o;
    o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
    o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 0.05};
    o.communicator = Comm();
    o.zero.stage = 1;
    o.device = device;
    return Compile(
        net,
        {{"images", Shape{rows, 1, 12, 12}, DType::kF32}, {"labels", Shape{rows}, DType::kI32}},
        [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); }, o);
  };
  auto cpu = compile(Device::Cpu());
  auto gpu = compile(Device::Cuda(0));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < 4; ++s) {
    // This rank's rows of a global batch that is a pure function of the row.
    Tensor images =
        Tensor::Empty(Shape{rows, 1, 12, 12}, DType::kF32, DefaultCpuAllocator()).value();
    Tensor labels = Tensor::Empty(Shape{rows}, DType::kI32, DefaultCpuAllocator()).value();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = rank * rows + r;
      for (int64_t k = 0; k < 144; ++k) {
        images.data<float>()[r * 144 + k] = std::sin(0.37f * (row * 144 + k) + 1.3f * s);
      }
      labels.data<int32_t>()[r] = static_cast<int32_t>((row * 7 + s) % 10);
    }
    batches.push_back({images, labels});
  }
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4, 1e-3);
}

}  // namespace
}  // namespace strata::graph
