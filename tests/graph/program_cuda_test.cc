// The compiled step on a CUDA device (Note [the step on a device] in graph/program.cc) against
// the same step on the CPU: the same model, seed and batches must give the same losses, held-out
// losses and final weights, within f32 rounding (the device's kernels sum in other orders). Runs
// on a device where there is one (graph_program_cuda_test, skipped otherwise) and on the CPU's
// emulation of CUDA on every build (graph_program_cuda_emulated_test, tests/cuda_emulation/).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/llama.h"
#include "graph/models/mobilenet.h"
#include "graph/module.h"
#include "graph/ops/ops.h"
#include "graph/sparse_update.h"
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

constexpr Device kGpu = Device::Cuda(0);

class ProgramCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaDevices found = FindCudaDevices();
    if (found.count == 0) GTEST_SKIP() << found.why_none;
  }
};

Tensor Tokens(const Shape& shape, int64_t vocab, std::mt19937_64& rng) {
  Tensor t = Tensor::Empty(shape, DType::kI32, DefaultCpuAllocator()).value();
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = id(rng);
  return t;
}

Tensor Floats(const Shape& shape, std::mt19937_64& rng, float lo = -1, float hi = 1) {
  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

TrainOptions AdamWOptions(Device device) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine,
                .max_lr = 3e-3,
                .min_lr = 3e-4,
                .warmup_steps = 2,
                .total_steps = 8};
  o.seed = 11;
  o.device = device;
  return o;
}

// Every parameter and optimizer state of `gpu`, read back, against `cpu`'s: on average within
// `tol` relative to the largest magnitude of the CPU's tensor (at least 1); each element within
// `worst_tol` absolute, since an AdamW update whose gradient is within rounding of zero (a sum
// of cancelling terms) may step the other way, by up to 2 lr per step.
void ExpectSameState(const Program& cpu, const Program& gpu, double tol, double worst_tol) {
  ASSERT_EQ(cpu.parameter_values().size(), gpu.parameter_values().size());
  auto compare = [&](const std::string& name, ValueId a, ValueId b) {
    const Tensor want = cpu.ReadState(a, DefaultCpuAllocator()).value();
    absl::StatusOr<Tensor> got = gpu.ReadState(b, DefaultCpuAllocator());
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    ASSERT_EQ(got->shape(), want.shape()) << name;
    double scale = 1, worst = 0, sum = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const double d = std::abs(static_cast<double>(want.data<float>()[i]) - got->data<float>()[i]);
      scale = std::max(scale, std::abs(static_cast<double>(want.data<float>()[i])));
      worst = std::max(worst, d);
      sum += d;
    }
    EXPECT_LE(sum / std::max<int64_t>(want.numel(), 1), tol * scale) << name;
    EXPECT_LE(worst, worst_tol) << name;
  };
  for (size_t i = 0; i < cpu.parameter_values().size(); ++i) {
    compare(cpu.parameter_values()[i].first, cpu.parameter_values()[i].second,
            gpu.parameter_values()[i].second);
  }
  ASSERT_EQ(cpu.optimizer_state_values().size(), gpu.optimizer_state_values().size());
  for (size_t i = 0; i < cpu.optimizer_state_values().size(); ++i) {
    compare(cpu.optimizer_state_values()[i].first, cpu.optimizer_state_values()[i].second,
            gpu.optimizer_state_values()[i].second);
  }
}

// Trains both programs on the same batches; losses within `tol` relative, then the held-out loss.
void ExpectSameTraining(Program& cpu, Program& gpu, const std::vector<std::vector<Tensor>>& batches,
                        double tol) {
  for (size_t s = 0; s < batches.size(); ++s) {
    absl::StatusOr<StepStats> want = cpu.Step(batches[s]);
    absl::StatusOr<StepStats> got = gpu.Step(batches[s]);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_NEAR(got->loss, want->loss, tol * std::abs(want->loss)) << "step " << s;
    EXPECT_EQ(got->step, want->step);
  }
  absl::StatusOr<double> want = cpu.Evaluate(batches[0]);
  absl::StatusOr<double> got = gpu.Evaluate(batches[0]);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NEAR(*got, *want, tol * std::abs(*want)) << "held-out loss";
}

std::vector<InputSpec> TokenInputs(int64_t batch, int64_t seq) {
  return {{"ids", Shape{batch, seq}, DType::kI32}, {"targets", Shape{batch, seq}, DType::kI32}};
}

// The small GPT most tests train: its shape, its batches and its loss.
constexpr int64_t kBatch = 4, kSeq = 16, kVocab = 64;
constexpr GptConfig kSmallGpt{
    .vocab = kVocab, .block_size = kSeq, .layers = 2, .width = 32, .heads = 2};

// `steps` batches of `rows` token rows (ids, targets), from `seed`.
std::vector<std::vector<Tensor>> TokenBatches(int steps, int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < steps; ++s) {
    batches.push_back({Tokens({rows, kSeq}, kVocab, rng), Tokens({rows, kSeq}, kVocab, rng)});
  }
  return batches;
}

// The sparse fine-tune the partial-channel tests use: every bias and LayerNorm, and the first
// half of the input channels of the last block's MLP input projection; the rest frozen.
absl::Status TrainBiasesAndHalfAnMlpWeight(Gpt& gpt) {
  STRATA_ASSIGN_OR_RETURN(const SparseUpdateSpec spec,
                          ParseSparseUpdateJson(
                              R"([{"match": "*", "update": "bias_only"},
                                  {"match": "h.1.mlp.c_fc.weight", "update": "channels:0.5"}])",
                              "test spec"));
  return ApplySparseUpdate(gpt, spec).status();
}

LossFn GptLoss(Gpt& gpt) {
  return [&gpt](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); };
}

TEST_F(ProgramCudaTest, GptWithDropoutTrainsAsOnTheCpu) {
  Gpt gpt(kSmallGpt);
  const LossFn loss = [&](absl::Span<const Var> in) {
    return ops::CrossEntropy(ops::Dropout(gpt.Forward(in[0]), 0.1f), in[1]);
  };
  auto cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(Device::Cpu()));
  auto gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(kGpu));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<std::vector<Tensor>> batches = TokenBatches(6, kBatch, 5);
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);

  // A checkpoint of the device's program resumes on the CPU, and one of the CPU's on the device:
  // both then take the same next step as the program that wrote them.
  const std::string dir = ::testing::TempDir() + "program_cuda_test_checkpoint";
  ASSERT_TRUE(SaveCheckpoint(**gpu, TrainerState{}, dir).ok());
  auto resumed_cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(Device::Cpu()));
  ASSERT_TRUE(resumed_cpu.ok()) << resumed_cpu.status();
  ASSERT_TRUE(LoadCheckpoint(**resumed_cpu, dir).ok());
  ExpectSameState(**resumed_cpu, **gpu, 0, 0);  // bytes copied, not recomputed
  ASSERT_TRUE(SaveCheckpoint(**cpu, TrainerState{}, dir + "-cpu").ok());
  auto resumed_gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(kGpu));
  ASSERT_TRUE(resumed_gpu.ok()) << resumed_gpu.status();
  ASSERT_TRUE(LoadCheckpoint(**resumed_gpu, dir + "-cpu").ok());
  ExpectSameState(**cpu, **resumed_gpu, 0, 0);
  absl::StatusOr<StepStats> want = (*gpu)->Step(batches[1]);
  absl::StatusOr<StepStats> got = (*resumed_cpu)->Step(batches[1]);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_NEAR(got->loss, want->loss, 1e-4 * want->loss);
  EXPECT_EQ(got->step, want->step);
}

TEST_F(ProgramCudaTest, LlamaWithGroupedQueryHeadsMicroBatchesAndClippingTrainsAsOnTheCpu) {
  constexpr int64_t kRows = 2, kLlamaSeq = 12, kLlamaVocab = 48;
  LlamaConfig c;
  c.vocab = kLlamaVocab;
  c.hidden = 32;
  c.intermediate = 48;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.max_positions = kLlamaSeq;
  Llama llama(c);
  const LossFn loss = [&](absl::Span<const Var> in) {
    return ops::CrossEntropy(llama.Forward(in[0]), in[1]);
  };
  TrainOptions o = AdamWOptions(Device::Cpu());
  o.micro_batches = 2;  // accumulated gradients: zeroing and accumulating on the device
  // Below the gradients' norm (1.2-1.3 here): every step clips, by the device's global norm.
  o.clip_grad_norm = 0.25;
  auto cpu = Compile(llama, TokenInputs(kRows, kLlamaSeq), loss, o);
  o.device = kGpu;
  auto gpu = Compile(llama, TokenInputs(kRows, kLlamaSeq), loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::mt19937_64 rng(9);
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < 4; ++s) {
    batches.push_back({Tokens({2 * kRows, kLlamaSeq}, kLlamaVocab, rng),
                       Tokens({2 * kRows, kLlamaSeq}, kLlamaVocab, rng)});
  }
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);
}

// f16 with dynamic loss scaling: a first scale so large that the gradients overflow, so the
// first steps are skipped (on the device, by the kernels) and the scale backs off, step for step
// as on the CPU.
TEST_F(ProgramCudaTest, F16LossScalingSkipsTheStepsTheCpuSkips) {
  Gpt gpt(kSmallGpt);
  const LossFn loss = GptLoss(gpt);
  TrainOptions o = AdamWOptions(Device::Cpu());
  o.precision = DType::kF16;  // scales its loss by default
  o.loss_scale.init_scale = 1e30;
  o.loss_scale.backoff_factor = 1e-10;  // 1e30, 1e20, 1e10 overflow; 1 does not
  o.clip_grad_norm = 1.0;
  auto cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  o.device = kGpu;
  auto gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::mt19937_64 rng(8);
  int skipped = 0;
  for (int s = 0; s < 6; ++s) {
    const std::vector<Tensor> batch = {Tokens({kBatch, kSeq}, kVocab, rng),
                                       Tokens({kBatch, kSeq}, kVocab, rng)};
    absl::StatusOr<StepStats> want = (*cpu)->Step(batch);
    absl::StatusOr<StepStats> got = (*gpu)->Step(batch);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->skipped, want->skipped) << "step " << s;
    EXPECT_EQ(got->loss_scale, want->loss_scale) << "step " << s;
    EXPECT_EQ(got->step, want->step) << "step " << s;
    EXPECT_NEAR(got->loss, want->loss, 1e-2 * std::abs(want->loss)) << "step " << s;
    skipped += want->skipped;
  }
  EXPECT_GE(skipped, 1);  // the test reached the skipping path
  EXPECT_LE(skipped, 4);  // and trained after it
}

// A PockEngine-style sparse fine-tune on the device: the last block's MLP input projection
// trains its first half of input channels (a partial-channel update: compact gradient and
// moments, the weight's runs updated in place), the biases and LayerNorms train whole, the rest
// is frozen, so the backward is pruned as on the CPU.
TEST_F(ProgramCudaTest, SparseUpdateWithPartialChannelsTrainsAsOnTheCpu) {
  Gpt gpt(kSmallGpt);
  ASSERT_TRUE(TrainBiasesAndHalfAnMlpWeight(gpt).ok());
  const LossFn loss = GptLoss(gpt);
  auto cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(Device::Cpu()));
  auto gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, AdamWOptions(kGpu));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  int sliced_updates = 0;  // the test reaches the partial-channel update on the device
  for (const Node& n : (*gpu)->graph().nodes()) {
    sliced_updates += n.op->kind() == OpKind::kAdamWUpdate &&
                      n.op->Attributes().find("channels=") != std::string::npos;
  }
  EXPECT_EQ(sliced_updates, 1);
  const std::vector<std::vector<Tensor>> batches = TokenBatches(4, kBatch, 13);
  const Tensor before =
      (*gpu)->ReadState((*gpu)->parameter_values()[0].second, DefaultCpuAllocator()).value();
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);
  // Frozen weights stay as they were (the first parameter, wte, is frozen by the spec).
  const Tensor after =
      (*gpu)->ReadState((*gpu)->parameter_values()[0].second, DefaultCpuAllocator()).value();
  EXPECT_EQ(std::memcmp(before.raw_data(), after.raw_data(), before.nbytes()), 0)
      << (*gpu)->parameter_values()[0].first;
}

// ZeRO-Offload on the device: parameters homed on the host (fetched before each use), the
// gradients waiting there for their updates, AdamW's moments on NVMe (updated by the CPU, chunk
// by chunk), the block inputs that recompute keeps written out to the host and fetched back, and
// clipping by the device's global norm, over two micro-batches. It trains as the same placement
// does on the CPU, and as the device does with everything in its memory.
TEST_F(ProgramCudaTest, OffloadedStatesTrainAsOnTheCpuAndAsInDeviceMemory) {
  constexpr int64_t kRows = 2;  // per micro-batch
  Gpt gpt(kSmallGpt);
  const LossFn loss = GptLoss(gpt);
  TrainOptions o = AdamWOptions(kGpu);
  o.micro_batches = 2;
  o.clip_grad_norm = 0.5;
  o.recompute = true;
  auto in_memory = Compile(gpt, TokenInputs(kRows, kSeq), loss, o);
  o.offload.params = MemoryTier::kHost;
  o.offload.grads = MemoryTier::kHost;
  o.offload.optimizer = MemoryTier::kNvme;
  o.offload.activations = MemoryTier::kHost;
  o.offload.persistence_threshold = 0;  // every parameter, the biases too
  o.offload.prefetch_bytes = 4096;
  o.offload.io.dir = ::testing::TempDir();
  o.offload.io.block_size = 4096;  // many chunks per update: the pipelined copies
  auto offloaded = Compile(gpt, TokenInputs(kRows, kSeq), loss, o);
  o.device = Device::Cpu();
  auto cpu = Compile(gpt, TokenInputs(kRows, kSeq), loss, o);
  ASSERT_TRUE(in_memory.ok()) << in_memory.status();
  ASSERT_TRUE(offloaded.ok()) << offloaded.status();
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  int moves = 0;  // the test reaches every kind of transfer on the device
  for (OpKind kind : {OpKind::kFetch, OpKind::kWriteBack, OpKind::kOffloadedUpdate}) {
    int count = 0;
    for (const Node& n : (*offloaded)->graph().nodes()) count += n.op->kind() == kind;
    EXPECT_GT(count, 0) << OpKindName(kind);
    moves += count;
  }
  EXPECT_GT(moves, 0);
  const std::vector<std::vector<Tensor>> batches = TokenBatches(5, 2 * kRows, 17);
  for (size_t s = 0; s < batches.size(); ++s) {
    absl::StatusOr<StepStats> got = (*offloaded)->Step(batches[s]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_GT(got->io_read_bytes[static_cast<int>(MemoryTier::kNvme)], 0) << "step " << s;
    for (Program* p : {in_memory->get(), cpu->get()}) {
      absl::StatusOr<StepStats> want = p->Step(batches[s]);
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_NEAR(got->loss, want->loss, 1e-4 * want->loss) << "step " << s;
      EXPECT_NEAR(got->grad_norm, want->grad_norm, 1e-4 * want->grad_norm) << "step " << s;
    }
  }
  ExpectSameState(**in_memory, **offloaded, 1e-5, 2e-2);
  ExpectSameState(**cpu, **offloaded, 1e-5, 2e-2);
}

// ZeRO-Infinity on one device: stage 3 with the parameters and AdamW's moments on NVMe and bf16
// working values tracks the same bf16 run with everything in the device's memory.
TEST_F(ProgramCudaTest, Zero3WithNvmeOffloadAndBf16TracksTheRunInDeviceMemory) {
  Gpt gpt(kSmallGpt);
  const LossFn loss = GptLoss(gpt);
  TrainOptions o = AdamWOptions(kGpu);
  o.precision = DType::kBF16;
  o.zero.stage = 3;
  auto in_memory = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  o.offload.params = MemoryTier::kNvme;
  o.offload.optimizer = MemoryTier::kNvme;
  o.offload.persistence_threshold = 1000;  // LayerNorms and biases stay; matrices go to NVMe
  o.offload.io.dir = ::testing::TempDir();
  auto offloaded = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  ASSERT_TRUE(in_memory.ok()) << in_memory.status();
  ASSERT_TRUE(offloaded.ok()) << offloaded.status();
  EXPECT_GT((*offloaded)->plan().nvme_bytes, 0);
  const std::vector<std::vector<Tensor>> batches = TokenBatches(6, kBatch, 23);
  // The offloaded updates run on the CPU, the in-memory ones on the device: a last-bit difference
  // can flip a bf16 rounding, so the runs agree to bf16's precision.
  ExpectSameTraining(**in_memory, **offloaded, batches, 1e-2);
  ExpectSameState(**in_memory, **offloaded, 1e-3, 2e-2);
}

// A partial-channel update whose moments are on the host while the weight stays on the device:
// the CPU gathers the trained runs of the weight from device memory and scatters them back.
TEST_F(ProgramCudaTest, PartialChannelUpdateWithHostStateTrainsAsOnTheCpu) {
  Gpt gpt(kSmallGpt);
  ASSERT_TRUE(TrainBiasesAndHalfAnMlpWeight(gpt).ok());
  const LossFn loss = GptLoss(gpt);
  TrainOptions o = AdamWOptions(Device::Cpu());
  o.offload.optimizer = MemoryTier::kHost;
  o.offload.persistence_threshold = 0;
  auto cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  o.device = kGpu;
  auto gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  int sliced = 0;  // the test reaches the strided update on the device
  for (const Node& n : (*gpu)->graph().nodes()) {
    sliced += n.op->kind() == OpKind::kOffloadedUpdate &&
              n.op->Attributes().find("channels=") != std::string::npos;
  }
  EXPECT_EQ(sliced, 1);
  const std::vector<std::vector<Tensor>> batches = TokenBatches(4, kBatch, 29);
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);
}

// The MobileNetV2-style CNN (convolutions, depthwise ones, BatchNorm with its running
// statistics, ReLU6, pooling) with SGD, momentum and weight decay, as the CNN examples train it.
TEST_F(ProgramCudaTest, MobileNetWithSgdTrainsAsOnTheCpu) {
  MobileNetConfig c;
  c.blocks = {{8, 8, 1, 1}, {8, 16, 2, 4}, {16, 16, 1, 4}};
  c.stem = 8;
  c.head = 32;
  MobileNet net(c);
  constexpr int64_t kImages = 4;
  const std::vector<InputSpec> inputs = {{"images", Shape{kImages, 1, 12, 12}, DType::kF32},
                                         {"labels", Shape{kImages}, DType::kI32}};
  const LossFn loss = [&](absl::Span<const Var> in) {
    return ops::CrossEntropy(net.Forward(in[0]), in[1]);
  };
  TrainOptions o = AdamWOptions(Device::Cpu());
  o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 0.05};
  auto cpu = Compile(net, inputs, loss, o);
  o.device = kGpu;
  auto gpu = Compile(net, inputs, loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  int masks = 0;  // the ReLU6 gradients read one-byte masks (Note [relu masks]), on the device too
  for (const Node& n : (*gpu)->graph().nodes()) masks += n.op->kind() == OpKind::kReluMask;
  EXPECT_GT(masks, 0);
  std::mt19937_64 rng(6);
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < 4; ++s) {
    batches.push_back({Floats({kImages, 1, 12, 12}, rng), Tokens({kImages}, 10, rng)});
  }
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 1e-3);
}

// PockEngine's fine-tune of the CNN on a Jetson's GPU: the last block's 1x1 expand and project
// convolutions train their leading quarter of input channels and its depthwise one a quarter of
// its channels, the block before it its depthwise convolution's leading half (dy's channels cut
// into the workspace on the device), the classifier trains whole, the rest is frozen (BatchNorm
// in its eval statistics).
TEST_F(ProgramCudaTest, MobileNetPartialChannelFineTuneTrainsAsOnTheCpu) {
  MobileNetConfig c;
  c.blocks = {{8, 8, 1, 1}, {8, 16, 2, 4}, {16, 16, 1, 4}};
  c.stem = 8;
  c.head = 32;
  MobileNet net(c);
  absl::StatusOr<SparseUpdateSpec> spec = ParseSparseUpdateJson(
      R"([{"match": "blocks.2.*", "update": "channels:0.25"},
          {"match": "blocks.1.depthwise.conv.weight", "update": "channels:0.5"},
          {"match": "classifier.*", "update": "full"}])",
      "test spec");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(ApplySparseUpdate(net, *spec).ok());
  constexpr int64_t kImages = 4;
  const std::vector<InputSpec> inputs = {{"images", Shape{kImages, 1, 12, 12}, DType::kF32},
                                         {"labels", Shape{kImages}, DType::kI32}};
  const LossFn loss = [&](absl::Span<const Var> in) {
    return ops::CrossEntropy(net.Forward(in[0]), in[1]);
  };
  TrainOptions o = AdamWOptions(Device::Cpu());
  auto cpu = Compile(net, inputs, loss, o);
  o.device = kGpu;
  auto gpu = Compile(net, inputs, loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  int partial = 0, depthwise = 0;  // the test reaches both forms of the partial-channel gradient
  for (const Node& n : (*gpu)->graph().nodes()) {
    if (n.op->kind() != OpKind::kConv2dGrad) continue;
    if (n.op->Attributes().find("partial_channels") == std::string::npos) continue;
    ++partial;
    depthwise += n.op->Attributes().find("groups=1 ") == std::string::npos;
  }
  EXPECT_EQ(partial, 4);
  EXPECT_EQ(depthwise, 2);
  std::mt19937_64 rng(31);
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < 4; ++s) {
    batches.push_back({Floats({kImages, 1, 12, 12}, rng), Tokens({kImages}, 10, rng)});
  }
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);
}

// A model made of the op library a custom model uses: elementwise math, activations, reductions,
// softmaxes, shape ops, matmuls, two losses.
class OpsModel : public Module {
 public:
  OpsModel()
      : w_(AddParameter("w", Shape{8, 8}, Init::Normal(0, 0.3))),
        b_(AddParameter("b", Shape{8}, Init::Normal(0, 0.1))),
        gamma_(AddParameter("gamma", Shape{8}, Init::Ones())),
        beta_(AddParameter("beta", Shape{8}, Init::Zeros())) {}
  // x (B, 8), target (B, 8) in (0, 1).
  Var Loss(Var x, Var target) {
    Var h = ops::Linear(x, w_->var(), b_->var());  // (B, 8)
    Var a = ops::Add(ops::Tanh(h), ops::Mul(ops::Sigmoid(x), ops::Silu(h)));
    Var g = ops::Sub(ops::GeluExact(a), ops::Scale(ops::Softplus(h), 0.5f));
    Var pos = ops::AddScalar(ops::Exp(ops::Scale(g, 0.3f)), 1.0f);  // > 1
    Var r = ops::Div(ops::Log(pos), ops::Sqrt(pos));
    Var q = ops::Mul(ops::Rsqrt(pos), ops::Pow(pos, 1.5f));
    Var n = ops::LayerNorm(ops::Add(r, q), gamma_->var(), beta_->var());
    Var sq = ops::Reshape(n, Shape{kBatch, 2, 4});                    // (B, 2, 4)
    Var att = ops::Softmax(ops::BatchedMatmul(sq, sq, false, true));  // (B, 2, 2)
    Var mixed = ops::BatchedMatmul(att, sq);                          // (B, 2, 4)
    Var t = ops::Transpose(mixed, 1, 2);                              // (B, 4, 2)
    Var both =
        ops::Concat({ops::Reshape(t, Shape{kBatch, 8}), ops::Slice(n, 1, 0, 4)}, 1);  // (B, 12)
    Var pooled = ops::Sub(both, ops::Expand(ops::Mean(both, {1}, true), Shape{kBatch, 12}));
    Var logp = ops::LogSoftmax(ops::Slice(pooled, 1, 0, 8));
    Var m = ops::Max(pooled, 1, true);  // (B, 1)
    Var pred = ops::Add(ops::Sum(ops::Reshape(logp, Shape{kBatch, 2, 4}), {1}),
                        ops::Expand(m, Shape{kBatch, 4}));
    return ops::Add(ops::MseLoss(pred, ops::Slice(target, 1, 0, 4)),
                    ops::BceWithLogitsLoss(ops::Matmul(x, w_->var()), target));
  }
  static constexpr int64_t kBatch = 6;

 private:
  Parameter *w_, *b_, *gamma_, *beta_;
};

TEST_F(ProgramCudaTest, OpLibraryModelTrainsAsOnTheCpu) {
  OpsModel model;
  const std::vector<InputSpec> inputs = {{"x", Shape{OpsModel::kBatch, 8}, DType::kF32},
                                         {"target", Shape{OpsModel::kBatch, 8}, DType::kF32}};
  const LossFn loss = [&](absl::Span<const Var> in) { return model.Loss(in[0], in[1]); };
  auto cpu = Compile(model, inputs, loss, AdamWOptions(Device::Cpu()));
  auto gpu = Compile(model, inputs, loss, AdamWOptions(kGpu));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::mt19937_64 rng(3);
  std::vector<std::vector<Tensor>> batches;
  for (int s = 0; s < 5; ++s) {
    batches.push_back(
        {Floats({OpsModel::kBatch, 8}, rng), Floats({OpsModel::kBatch, 8}, rng, 0.05f, 0.95f)});
  }
  ExpectSameTraining(**cpu, **gpu, batches, 1e-4);
  ExpectSameState(**cpu, **gpu, 1e-5, 2e-2);
}

TEST_F(ProgramCudaTest, Bf16StepTracksTheCpusBf16Step) {
  Gpt gpt(kSmallGpt);
  const LossFn loss = GptLoss(gpt);
  TrainOptions o = AdamWOptions(Device::Cpu());
  o.precision = DType::kBF16;
  auto cpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  o.device = kGpu;
  auto gpu = Compile(gpt, TokenInputs(kBatch, kSeq), loss, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<std::vector<Tensor>> batches = TokenBatches(4, kBatch, 21);
  // Values rounded to bf16 (8 bits) after every node: a last-bit difference of f32 sums can flip
  // a rounding, so the two runs agree to bf16's precision, not f32's.
  ExpectSameTraining(**cpu, **gpu, batches, 1e-2);
}

// bf16 on the device tracks f32 over 200 steps, within 2% of the loss in every window of 20
// steps. Half the targets follow the input (the next token id), half are random: the loss falls
// from log(vocab) to a floor well above 0 (about log(2) + log(vocab) / 2), where a relative
// comparison means something, and a bf16 step that learned less would show.
TEST_F(ProgramCudaTest, Bf16TrainingTracksF32Over200Steps) {
  constexpr int64_t kRows = 8, kShortSeq = 8, kFewTokens = 32, kSteps = 200;
  auto losses = [&](DType precision) {
    Gpt gpt(GptConfig{
        .vocab = kFewTokens, .block_size = kShortSeq, .layers = 1, .width = 32, .heads = 2});
    TrainOptions o = AdamWOptions(kGpu);
    o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
    o.precision = precision;
    auto p = Compile(
        gpt, TokenInputs(kRows, kShortSeq),
        [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); }, o);
    EXPECT_TRUE(p.ok()) << p.status();
    std::vector<double> out;
    if (!p.ok()) return out;
    std::mt19937_64 rng(4);
    for (int64_t s = 0; s < kSteps; ++s) {
      Tensor ids = Tokens({kRows, kShortSeq}, kFewTokens, rng);
      Tensor targets = Tokens({kRows, kShortSeq}, kFewTokens, rng);
      for (int64_t i = 0; i < ids.numel(); ++i) {
        if (rng() % 2 == 0) targets.data<int32_t>()[i] = (ids.data<int32_t>()[i] + 1) % kFewTokens;
      }
      absl::StatusOr<StepStats> st = (*p)->Step({ids, targets});
      EXPECT_TRUE(st.ok()) << st.status();
      if (!st.ok()) break;
      out.push_back(st->loss);
    }
    return out;
  };
  const std::vector<double> f32 = losses(DType::kF32), bf16 = losses(DType::kBF16);
  ASSERT_EQ(f32.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(bf16.size(), static_cast<size_t>(kSteps));
  for (int64_t w = 0; w < kSteps; w += 20) {
    double a = 0, b = 0;
    for (int64_t s = w; s < w + 20; ++s) a += f32[s], b += bf16[s];
    EXPECT_NEAR(b, a, 0.02 * a) << "steps " << w << " to " << w + 19;
    if (w == kSteps - 20) {
      EXPECT_LT(a / 20, 0.85 * std::log(static_cast<double>(kFewTokens))) << "f32 did not learn";
    }
  }
}

// What the device does not run yet is refused when compiling, by name.
TEST(ProgramCudaRefusalTest, NamesWhatTheDeviceDoesNotRun) {
  Gpt gpt(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  const LossFn loss = GptLoss(gpt);
  auto refusal = [&](TrainOptions o) {
    o.device = kGpu;
    absl::StatusOr<std::unique_ptr<Program>> p = Compile(gpt, TokenInputs(1, 4), loss, o);
    return p.ok() ? std::string("compiled") : std::string(p.status().message());
  };
  TrainOptions plan = AdamWOptions(kGpu);
  plan.check_plan = true;
  EXPECT_NE(refusal(plan).find("check_plan"), std::string::npos) << refusal(plan);

  // An op with no CUDA kernel (the weighted-sum probe) is named with its count of nodes.
  Module empty;
  Parameter* w = empty.AddParameter("w", Shape{3}, Init::Ones());
  absl::StatusOr<std::unique_ptr<Program>> p = Compile(
      empty, {{"x", Shape{3}, DType::kF32}},
      [&](absl::Span<const Var> in) { return ops::WeightedSum(w->var(), in[0]); },
      AdamWOptions(kGpu));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("weighted_sum (1 node)"), std::string::npos) << p.status();
}

// A device beyond those found (there is none on a machine without a GPU) fails to compile with
// an error naming it, as does a program asked for one.
TEST(ProgramCudaRefusalTest, AMissingDeviceIsNamed) {
  const Device missing = Device::Cuda(FindCudaDevices().count);
  Gpt gpt(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  absl::StatusOr<std::unique_ptr<Program>> p = Compile(
      gpt, TokenInputs(1, 4),
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
      AdamWOptions(missing));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(missing.ToString()), std::string::npos) << p.status();
}

}  // namespace
}  // namespace strata::graph
