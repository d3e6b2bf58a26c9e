// GPT-2 weight files: save -> load into a differently seeded program is bit-exact, Conv1D weights
// are [in, out] in the file, Hugging Face's optional names and buffers are accepted, and every bad
// file is refused with an error that names the file and the tensor.
#include "graph/models/gpt2_checkpoint.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors.h"
#include "runtime/safetensors_writer.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

using strata::testing::ExpectStatus;
using Named = std::vector<std::pair<std::string, Tensor>>;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

struct Compiled {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
  ValueId logits = kNoValue;  // readable after Evaluate
};

Compiled CompileGpt(const GptConfig& config, uint64_t seed, OffloadOptions offload = {}) {
  Compiled r{std::make_unique<Gpt>(config), nullptr};
  Gpt* gpt = r.gpt.get();
  TrainOptions o;
  o.seed = seed;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
  o.offload = offload;
  ValueId* logits = &r.logits;
  auto p = Compile(*gpt, {{"ids", Shape{2, 8}, DType::kI32}, {"targets", Shape{2, 8}, DType::kI32}},
                   [gpt, logits](absl::Span<const Var> in) {
                     Var y = gpt->Forward(in[0]);
                     in[0].tracer()->MarkOutput(y, "logits");
                     *logits = y.id();
                     return ops::CrossEntropy(y, in[1]);
                   },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = *std::move(p);
  return r;
}

// A batch of ids and targets below `vocab`.
std::vector<Tensor> Batch(int64_t vocab, uint32_t seed) {
  std::vector<Tensor> batch;
  std::mt19937 rng(seed);
  for (int k = 0; k < 2; ++k) {
    Tensor t = Tensor::Empty(Shape{2, 8}, DType::kI32, DefaultCpuAllocator()).value();
    for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng() % vocab);
    batch.push_back(t);
  }
  return batch;
}

std::string TempPath(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "gpt2_checkpoint_test";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

bool IsConv1d(const std::string& name) {
  for (const char* s : {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                        "mlp.c_proj.weight"}) {
    if (absl::EndsWith(name, s)) return true;
  }
  return false;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.is_contiguous() &&
         b.is_contiguous() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

void ExpectSameParameters(const Program& a, const Program& b) {
  ASSERT_EQ(a.parameters().size(), b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    EXPECT_EQ(a.parameters()[i].first, b.parameters()[i].first);
    EXPECT_TRUE(SameBits(a.parameters()[i].second, b.parameters()[i].second))
        << a.parameters()[i].first;
  }
}

// The tensors of a saved file, in file order, to be edited and written again.
Named ReadAll(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::Read(path, DefaultCpuAllocator()).value();
  Named out;
  for (const std::string& name : f.names()) out.emplace_back(name, f.Get(name).value());
  return out;
}

Tensor& Find(Named& tensors, const std::string& name) {
  for (auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  ADD_FAILURE() << "no tensor " << name;
  static Tensor none;
  return none;
}

class Gpt2CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = CompileGpt(kTiny, /*seed=*/1);
    target_ = CompileGpt(kTiny, /*seed=*/2);
    ASSERT_NE(source_.program, nullptr);
    ASSERT_NE(target_.program, nullptr);
    path_ = TempPath(std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                     ".safetensors");
    ASSERT_TRUE(SaveGpt2Weights(*source_.program, kTiny, path_).ok());
  }

  // Writes `tensors` to a file of its own and loads it into target_; on error, target_ must be
  // unchanged.
  absl::Status LoadEdited(const Named& tensors) {
    const std::string edited = path_ + ".edited.safetensors";
    EXPECT_TRUE(WriteSafetensors(edited, tensors).ok());
    Named before;
    for (const auto& [n, t] : target_.program->parameters()) {
      before.emplace_back(n, t.Contiguous(DefaultCpuAllocator()).value());
    }
    absl::Status s = LoadGpt2Weights(*target_.program, edited);
    if (!s.ok()) {
      for (size_t i = 0; i < before.size(); ++i) {
        EXPECT_TRUE(SameBits(before[i].second, target_.program->parameters()[i].second))
            << "a failed load changed " << before[i].first;
      }
    }
    return s;
  }

  Compiled source_, target_;
  std::string path_;
};

TEST_F(Gpt2CheckpointTest, SaveThenLoadIsBitExact) {
  // Different seeds: nothing but the load can make them equal.
  EXPECT_FALSE(SameBits(source_.program->parameter("wte.weight").value(),
                        target_.program->parameter("wte.weight").value()));
  ASSERT_TRUE(LoadGpt2Weights(*target_.program, path_).ok());
  ExpectSameParameters(*source_.program, *target_.program);
}

TEST_F(Gpt2CheckpointTest, FileHasTransformerNamesAndConv1dWeightsTransposed) {
  SafetensorsFile f = SafetensorsFile::Read(path_, DefaultCpuAllocator()).value();
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.names().size(), source_.program->parameters().size());
  int transposed = 0;
  for (const auto& [path, ours] : source_.program->parameters()) {
    absl::StatusOr<Tensor> stored = f.Get("transformer." + path);
    ASSERT_TRUE(stored.ok()) << stored.status();
    ASSERT_EQ(stored->dtype(), DType::kF32);
    if (!IsConv1d(path)) {
      EXPECT_TRUE(SameBits(*stored, ours)) << path;
      continue;
    }
    ++transposed;
    // ours (out, in); the file [in, out].
    ASSERT_EQ(stored->shape(), (Shape{ours.dim(1), ours.dim(0)})) << path;
    const Tensor expected = ours.Transpose(0, 1).value().Contiguous(DefaultCpuAllocator()).value();
    EXPECT_TRUE(SameBits(*stored, expected)) << path;
  }
  EXPECT_EQ(transposed, 4 * kTiny.layers);
  EXPECT_EQ(f.Get("transformer.h.0.attn.c_attn.weight")->shape(),
            (Shape{kTiny.width, 3 * kTiny.width}));
  EXPECT_EQ(f.Get("transformer.h.1.mlp.c_proj.weight")->shape(),
            (Shape{4 * kTiny.width, kTiny.width}));
}

TEST_F(Gpt2CheckpointTest, AcceptsUnprefixedNamesMaskBuffersAndATiedLmHead) {
  // As GPT2LMHeadModel files come: no "transformer." prefix, the causal-mask buffers, lm_head.
  Named tensors;
  for (auto& [name, t] : ReadAll(path_)) tensors.emplace_back(name.substr(12), t);
  Tensor mask = Tensor::Zeros(Shape{1, 1, 16, 16}, DType::kF32, DefaultCpuAllocator()).value();
  for (int i = 0; i < kTiny.layers; ++i) {
    tensors.emplace_back("h." + std::to_string(i) + ".attn.bias", mask);
    tensors.emplace_back("h." + std::to_string(i) + ".attn.masked_bias",
                         Tensor::Zeros(Shape{}, DType::kF32, DefaultCpuAllocator()).value());
  }
  tensors.emplace_back("lm_head.weight", Find(tensors, "wte.weight"));
  ASSERT_TRUE(LoadEdited(tensors).ok());
  ExpectSameParameters(*source_.program, *target_.program);
}

TEST_F(Gpt2CheckpointTest, ConvertsBf16) {
  Named tensors = ReadAll(path_);
  for (auto& [name, t] : tensors) {
    Tensor b = Tensor::Empty(t.shape(), DType::kBF16, DefaultCpuAllocator()).value();
    ASSERT_TRUE(b.CopyFrom(t).ok());
    t = b;
  }
  ASSERT_TRUE(LoadEdited(tensors).ok());
  const Tensor ours = target_.program->parameter("h.1.attn.c_attn.weight").value();
  const Tensor stored = Find(tensors, "transformer.h.1.attn.c_attn.weight");
  const int64_t out = ours.dim(0), in = ours.dim(1);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < in; ++k) {
      const uint16_t bits = static_cast<const uint16_t*>(stored.raw_data())[k * out + o];
      ASSERT_EQ(ours.data<float>()[o * in + k], Bf16ToFloat(bits)) << o << ", " << k;
    }
  }
}

TEST_F(Gpt2CheckpointTest, RefusesAMissingTensorByName) {
  Named tensors;
  for (auto& [name, t] : ReadAll(path_)) {
    if (name != "transformer.h.1.ln_2.bias") tensors.emplace_back(name, t);
  }
  ExpectStatus(LoadEdited(tensors), absl::StatusCode::kNotFound,
               {"edited.safetensors", "transformer.h.1.ln_2.bias"});
}

TEST_F(Gpt2CheckpointTest, RefusesAWrongShapeNamingBothShapesInHfLayout) {
  Named tensors = ReadAll(path_);
  // Our (out, in) layout where HF's [in, out] is expected.
  Tensor& w = Find(tensors, "transformer.h.0.attn.c_attn.weight");
  w = w.Transpose(0, 1).value();
  ExpectStatus(LoadEdited(tensors), absl::StatusCode::kInvalidArgument,
               {"edited.safetensors", "transformer.h.0.attn.c_attn.weight", "has shape [96, 32]",
                "expected [32, 96]"});
}

TEST_F(Gpt2CheckpointTest, RefusesAWrongDtypeByName) {
  Named tensors = ReadAll(path_);
  Tensor& w = Find(tensors, "transformer.wpe.weight");
  Tensor i = Tensor::Zeros(w.shape(), DType::kI32, DefaultCpuAllocator()).value();
  w = i;
  ExpectStatus(LoadEdited(tensors), absl::StatusCode::kInvalidArgument,
               {"edited.safetensors", "transformer.wpe.weight", "i32"});
}

TEST_F(Gpt2CheckpointTest, RefusesUnknownTensorsListingThem) {
  Named tensors = ReadAll(path_);
  tensors.emplace_back("transformer.h.7.attn.c_attn.weight", Find(tensors, "transformer.h.0.attn.c_attn.weight"));
  tensors.emplace_back("score.weight", Find(tensors, "transformer.ln_f.weight"));
  ExpectStatus(LoadEdited(tensors), absl::StatusCode::kInvalidArgument,
               {"edited.safetensors", "2 tensor(s)", "transformer.h.7.attn.c_attn.weight",
                "score.weight"});
}

TEST_F(Gpt2CheckpointTest, RefusesAnUntiedLmHead) {
  Named tensors = ReadAll(path_);
  tensors.emplace_back("lm_head.weight", Find(tensors, "transformer.wte.weight")
                                             .Contiguous(DefaultCpuAllocator())
                                             .value());
  Tensor& lm = Find(tensors, "lm_head.weight");
  lm.data<float>()[5] += 1.0f;
  ExpectStatus(LoadEdited(tensors), absl::StatusCode::kInvalidArgument,
               {"edited.safetensors", "lm_head.weight", "wte"});
}

TEST_F(Gpt2CheckpointTest, RefusesAMissingFileNamingIt) {
  ExpectStatus(LoadGpt2Weights(*target_.program, path_ + ".absent"), absl::StatusCode::kNotFound,
               {".absent"});
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool SameLogits(Compiled& a, Compiled& b, const std::vector<Tensor>& batch) {
  EXPECT_TRUE(a.program->Evaluate(batch).ok());
  EXPECT_TRUE(b.program->Evaluate(batch).ok());
  const Tensor la = a.program->value(a.logits).value();
  const Tensor lb = b.program->value(b.logits).value();
  EXPECT_EQ(la.shape(), (Shape{2, 8, kTiny.vocab}));
  return SameBits(la, lb);
}

// Trained (so that no parameter is at its initial value), exported, loaded into a differently
// seeded program: the same bits, and the same logits.
TEST_F(Gpt2CheckpointTest, ExportThenLoadGivesBitIdenticalParametersAndLogits) {
  for (uint32_t s = 0; s < 2; ++s) ASSERT_TRUE(source_.program->Step(Batch(kTiny.vocab, s)).ok());
  const std::vector<Tensor> batch = Batch(kTiny.vocab, 9);
  EXPECT_FALSE(SameLogits(source_, target_, batch));
  const std::string trained = TempPath("trained.safetensors");
  ASSERT_TRUE(SaveGpt2Weights(*source_.program, kTiny, trained).ok());
  ASSERT_TRUE(LoadGpt2Weights(*target_.program, trained).ok());
  ExpectSameParameters(*source_.program, *target_.program);
  EXPECT_TRUE(SameLogits(source_, target_, batch));
}

// Parameters (and moments) homed on NVMe have no bytes in memory: the export reads them through
// Program::ReadState and writes the same file, byte for byte, as the run in memory.
TEST_F(Gpt2CheckpointTest, ParametersOnNvmeExportTheSameBytes) {
  const std::filesystem::path swap = std::filesystem::path(TempPath("swap"));
  std::filesystem::create_directories(swap);
  OffloadOptions nvme;
  nvme.params = MemoryTier::kNvme;
  nvme.optimizer = MemoryTier::kNvme;
  nvme.persistence_threshold = 0;
  nvme.io.dir = swap.string();
  nvme.io.block_size = 16 << 10;
  Compiled in_memory = CompileGpt(kTiny, /*seed=*/5);
  Compiled offloaded = CompileGpt(kTiny, /*seed=*/5, nvme);
  ASSERT_NE(offloaded.program, nullptr);
  EXPECT_FALSE(offloaded.program->parameter("wte.weight").value().defined());
  for (uint32_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(in_memory.program->Step(Batch(kTiny.vocab, s)).ok());
    ASSERT_TRUE(offloaded.program->Step(Batch(kTiny.vocab, s)).ok());
  }
  const std::string a = TempPath("in_memory.safetensors"), b = TempPath("offloaded.safetensors");
  ASSERT_TRUE(SaveGpt2Weights(*in_memory.program, kTiny, a).ok());
  const absl::Status saved = SaveGpt2Weights(*offloaded.program, kTiny, b);
  ASSERT_TRUE(saved.ok()) << saved;
  EXPECT_EQ(FileBytes(a), FileBytes(b));
  EXPECT_NE(FileBytes(a), FileBytes(path_));  // trained: not the initial file
}

// Runs `command`, returning its exit code (-1 if it did not exit) and its output.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// The exported file read by an independent reader: tests/graph/gpt2_export_check.py parses it
// with plain Python and recomputes GPT-2's forward in PyTorch (Debian's python3-torch) as
// transformers does, to within 1e-5 of strata's logits.
TEST_F(Gpt2CheckpointTest, PyTorchReadsTheExportAndComputesTheSameLogits) {
  const char* python = "/usr/bin/python3";
  for (uint32_t s = 0; s < 2; ++s) ASSERT_TRUE(source_.program->Step(Batch(kTiny.vocab, s)).ok());
  const std::vector<Tensor> batch = Batch(kTiny.vocab, 9);
  ASSERT_TRUE(source_.program->Evaluate(batch).ok());
  const Tensor logits = source_.program->value(source_.logits).value();
  std::filesystem::create_directories(TempPath("torch"));
  const std::string model = TempPath("torch/model.safetensors");
  const std::string reference = TempPath("torch_reference.safetensors");
  ASSERT_TRUE(SaveGpt2Weights(*source_.program, kTiny, model).ok());
  ASSERT_TRUE(SaveGpt2Config(kTiny, TempPath("torch/config.json")).ok());
  ASSERT_TRUE(WriteSafetensors(reference, {{"ids", batch[0]}, {"logits", logits}}).ok());
  const char* root = std::getenv("STRATA_SOURCE_DIR");
  const auto [code, output] =
      RunCommand(absl::StrCat(python, " ", root ? root : ".", "/tests/graph/gpt2_export_check.py ", model,
                       " ", reference));
  if (code == 77) GTEST_SKIP() << output;  // no numpy or torch (launch/setup installs them)
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(absl::StrContains(output, "28 tensors, 2 layers, width 32, 4 heads, vocab 64"))
      << output;

  // The reader is not blind: a file whose Conv1D weight is in strata's (out, in) layout fails.
  Named tensors = ReadAll(model);
  Tensor& w = Find(tensors, "transformer.h.1.mlp.c_fc.weight");
  w = w.Transpose(0, 1).value();
  ASSERT_TRUE(WriteSafetensors(model, tensors, {{"format", "pt"}}).ok());
  const auto [bad_code, bad_output] =
      RunCommand(absl::StrCat(python, " ", root ? root : ".", "/tests/graph/gpt2_export_check.py ", model,
                       " ", reference));
  EXPECT_EQ(bad_code, 1) << bad_output;
  EXPECT_TRUE(absl::StrContains(bad_output, "transformer.h.1.mlp.c_fc.weight: F32[128, 32], "
                                            "expected F32[32, 128]"))
      << bad_output;
}

// Names, dtypes and shapes exactly as in the file `transformers` itself wrote for the same config
// (tests/fixtures/graph/hf_gpt2_model.safetensors), with its metadata, in Gpt2Parameters order.
TEST(Gpt2ExportLayoutTest, MatchesTheFileTransformersWrites) {
  const char* root = std::getenv("STRATA_SOURCE_DIR");
  const std::string hf_path =
      std::string(root ? root : ".") + "/tests/fixtures/graph/hf_gpt2_model.safetensors";
  const SafetensorsFile hf = SafetensorsFile::Read(hf_path, DefaultCpuAllocator()).value();
  const GptConfig config{.vocab = 256, .block_size = 64, .layers = 2, .width = 64, .heads = 4};
  const std::string path = TempPath("layout.safetensors");
  // Any values of the right shapes will do: the parameter's index in every element.
  int index = 0;
  ASSERT_TRUE(SaveGpt2Weights(config,
                              [&](const std::string& param) -> absl::StatusOr<Tensor> {
                                for (const auto& [p, shape] : Gpt2Parameters(config)) {
                                  if (p != param) continue;
                                  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
                                  EXPECT_TRUE(t.Fill(index++).ok());
                                  return t;
                                }
                                return absl::NotFoundError(param);
                              },
                              path)
                  .ok());
  const SafetensorsFile ours = SafetensorsFile::Read(path, DefaultCpuAllocator()).value();
  EXPECT_EQ(ours.metadata(), hf.metadata());
  std::vector<std::string> expected_order;
  for (const auto& [p, shape] : Gpt2Parameters(config)) expected_order.push_back("transformer." + p);
  EXPECT_EQ(ours.names(), expected_order);
  std::vector<std::string> a = ours.names(), b = hf.names();
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  ASSERT_EQ(a, b);
  for (const std::string& name : hf.names()) {
    EXPECT_EQ(ours.Get(name)->dtype(), hf.Get(name)->dtype()) << name;
    EXPECT_EQ(ours.Get(name)->shape(), hf.Get(name)->shape()) << name;
  }
  EXPECT_EQ(testing::ToDouble(ours.Get("transformer.ln_f.bias").value())[0], 27.0);
}

TEST(Gpt2ConfigTest, WritesTheGpt2ConfigFieldsAndRefusesABadConfig) {
  const std::string path = TempPath("config.json");
  ASSERT_TRUE(SaveGpt2Config(kTiny, path).ok());
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"GPT2LMHeadModel"}));
  EXPECT_EQ(j.at("model_type"), "gpt2");
  EXPECT_EQ(j.at("vocab_size"), 64);
  EXPECT_EQ(j.at("n_positions"), 16);
  EXPECT_EQ(j.at("n_embd"), 32);
  EXPECT_EQ(j.at("n_layer"), 2);
  EXPECT_EQ(j.at("n_head"), 4);
  EXPECT_TRUE(j.at("n_inner").is_null());
  EXPECT_EQ(j.at("activation_function"), "gelu_new");
  EXPECT_EQ(j.at("layer_norm_epsilon"), 1e-5);
  EXPECT_EQ(j.at("tie_word_embeddings"), true);

  GptConfig bad = kTiny;
  bad.block_size = 0;
  ExpectStatus(SaveGpt2Config(bad, TempPath("bad.json")), absl::StatusCode::kInvalidArgument,
               {"bad.json", "block_size = 0"});
  EXPECT_FALSE(std::filesystem::exists(TempPath("bad.json")));
  ExpectStatus(SaveGpt2Config(kTiny, TempPath("none/config.json")), absl::StatusCode::kNotFound,
               {"none/config.json.tmp", "ENOENT"});
}

TEST_F(Gpt2CheckpointTest, RefusesAProgramThatIsNotTheConfiguredGpt2) {
  const std::string path = TempPath("refused.safetensors");
  GptConfig deeper = kTiny;
  deeper.layers = 3;
  ExpectStatus(SaveGpt2Weights(*source_.program, deeper, path), absl::StatusCode::kInvalidArgument,
               {path, "the program has no parameter 'h.2.ln_1.weight' (layers 3)"});
  GptConfig wider = kTiny;
  wider.width = 48;
  ExpectStatus(SaveGpt2Weights(*source_.program, wider, path), absl::StatusCode::kInvalidArgument,
               {path, "parameter 'wte.weight' is f32[64, 32], but GPT-2 of vocab 64, block_size 16, "
                      "width 48 has f32[64, 48]"});
  GptConfig bad_heads = kTiny;
  bad_heads.heads = 5;
  ExpectStatus(SaveGpt2Weights(*source_.program, bad_heads, path),
               absl::StatusCode::kInvalidArgument, {path, "width = 32", "heads = 5"});

  // A head of its own, not tied to wte: GPT-2 has no place for it.
  Gpt gpt(kTiny);
  nn::Linear* head = gpt.Add<nn::Linear>("lm_head", kTiny.vocab, kTiny.vocab);
  auto untied = Compile(gpt, {{"ids", Shape{2, 8}, DType::kI32}, {"targets", Shape{2, 8}, DType::kI32}},
                        [&](absl::Span<const Var> in) {
                          return ops::CrossEntropy(head->Forward(gpt.Forward(in[0])), in[1]);
                        },
                        TrainOptions{});
  ASSERT_TRUE(untied.ok()) << untied.status();
  ExpectStatus(SaveGpt2Weights(**untied, kTiny, path), absl::StatusCode::kInvalidArgument,
               {path, "parameter 'lm_head.", "has no place in Hugging Face GPT-2",
                "tied to wte.weight"});
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// Values from a reader (as gathered shards will come): a failed read or a value of the wrong
// shape names the parameter, and the file already at the path stays as it was.
TEST_F(Gpt2CheckpointTest, ReaderErrorsNameTheParameterAndKeepTheOldFile) {
  const std::string before = FileBytes(path_);
  std::map<std::string, ValueId> values(source_.program->parameter_values().begin(),
                                        source_.program->parameter_values().end());
  auto read = [&](const std::string& p) {
    return source_.program->ReadState(values.at(p), DefaultCpuAllocator());
  };
  ExpectStatus(SaveGpt2Weights(kTiny,
                               [&](const std::string& p) -> absl::StatusOr<Tensor> {
                                 if (p == "h.1.mlp.c_fc.bias") {
                                   return absl::UnavailableError("shard 3 did not arrive");
                                 }
                                 return read(p);
                               },
                               path_),
               absl::StatusCode::kUnavailable,
               {path_, "reading parameter 'h.1.mlp.c_fc.bias': shard 3 did not arrive"});
  EXPECT_EQ(FileBytes(path_), before);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));

  // Already in Hugging Face's [in, out] layout: refused, not transposed twice.
  ExpectStatus(SaveGpt2Weights(kTiny,
                               [&](const std::string& p) -> absl::StatusOr<Tensor> {
                                 absl::StatusOr<Tensor> t = read(p);
                                 if (p == "h.0.attn.c_attn.weight") {
                                   return t->Transpose(0, 1).value().Contiguous(DefaultCpuAllocator());
                                 }
                                 return t;
                               },
                               path_),
               absl::StatusCode::kInvalidArgument,
               {path_, "parameter 'h.0.attn.c_attn.weight' is f32[32, 96], expected f32[96, 32]"});
  EXPECT_EQ(FileBytes(path_), before);

  // The same reader, unchanged, writes the same file as the program's own export.
  ASSERT_TRUE(SaveGpt2Weights(kTiny, read, path_).ok());
  EXPECT_EQ(FileBytes(path_), before);
}

TEST(Gpt2CheckpointFixtureTest, LoadsTheTinyPyTorchInit) {
  const char* root = std::getenv("STRATA_SOURCE_DIR");
  const std::string path =
      std::string(root ? root : ".") + "/tests/fixtures/graph/gpt_tiny_init.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not generated";
  Compiled c = CompileGpt(GptConfig{.vocab = 256, .block_size = 32, .layers = 2, .width = 64, .heads = 4},
                          /*seed=*/0);
  ASSERT_NE(c.program, nullptr);
  const absl::Status s = LoadGpt2Weights(*c.program, path);
  ASSERT_TRUE(s.ok()) << s;
  SafetensorsFile f = SafetensorsFile::Read(path, DefaultCpuAllocator()).value();
  for (const auto& [name, ours] : c.program->parameters()) {
    const Tensor stored = f.Get("transformer." + name).value();
    const Tensor expected = IsConv1d(name) ? ours.Transpose(0, 1).value() : ours;
    EXPECT_TRUE(SameBits(stored, expected.Contiguous(DefaultCpuAllocator()).value())) << name;
  }
}

}  // namespace
}  // namespace strata::graph
