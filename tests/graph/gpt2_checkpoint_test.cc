// GPT-2 weight files: save -> load into a differently seeded program is bit-exact, Conv1D weights
// are [in, out] in the file, Hugging Face's optional names and buffers are accepted, and every bad
// file is refused with an error that names the file and the tensor.
#include "graph/models/gpt2_checkpoint.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "runtime/safetensors.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

using strata::testing::ExpectStatus;
using Named = std::vector<std::pair<std::string, Tensor>>;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

struct Compiled {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
};

Compiled CompileGpt(const GptConfig& config, uint64_t seed) {
  Compiled r{std::make_unique<Gpt>(config), nullptr};
  Gpt* gpt = r.gpt.get();
  TrainOptions o;
  o.seed = seed;
  auto p = Compile(*gpt, {{"ids", Shape{2, 8}, DType::kI32}, {"targets", Shape{2, 8}, DType::kI32}},
                   [gpt](absl::Span<const Var> in) {
                     return ops::CrossEntropy(gpt->Forward(in[0]), in[1]);
                   },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = *std::move(p);
  return r;
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
    ASSERT_TRUE(SaveGpt2Weights(*source_.program, path_).ok());
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
