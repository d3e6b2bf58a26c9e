// The Llama model against transformers' LlamaForCausalLM (fixture graph_ops/hf_llama.py): its
// config.json and model.safetensors load as they are, and 10 AdamW steps give transformers'
// per-step losses and step-0 gradients; the tied head with Llama 3 rope scaling does too. Also:
// the weights round-trip through SaveLlamaWeights, recompute changes nothing, and bad files and
// configs are refused by name.
#include "graph/models/llama.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "graph/compile.h"
#include "graph/models/llama_checkpoint.h"
#include "graph/ops/ops.h"
#include "runtime/safetensors_writer.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

constexpr int64_t kBatch = 4, kSeq = 32, kSteps = 10;

std::string FixturePath(const std::string& name) {
  const char* root = std::getenv("STRATA_SOURCE_DIR");
  return std::string(root ? root : ".") + "/tests/fixtures/graph/" + name;
}

// llm.c batches of the fixture's tokens: step s reads kBatch * kSeq + 1 tokens from
// s * kBatch * kSeq; the targets are the inputs shifted by one.
std::vector<Tensor> Batch(const Tensor& tokens, int64_t s) {
  Tensor ids = Tensor::Empty(Shape{kBatch, kSeq}, DType::kI32, DefaultCpuAllocator()).value();
  Tensor targets = Tensor::Empty(Shape{kBatch, kSeq}, DType::kI32, DefaultCpuAllocator()).value();
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    ids.data<int32_t>()[i] = tokens.data<int32_t>()[s * kBatch * kSeq + i];
    targets.data<int32_t>()[i] = tokens.data<int32_t>()[s * kBatch * kSeq + i + 1];
  }
  return {ids, targets};
}

TrainOptions FixtureOptions() {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-3};
  o.clip_grad_norm = 1.0;
  return o;
}

absl::StatusOr<std::unique_ptr<Program>> CompileLlama(Llama& llama, const TrainOptions& o) {
  return Compile(llama,
                 {{"ids", Shape{kBatch, kSeq}, DType::kI32}, {"targets", Shape{kBatch, kSeq}, DType::kI32}},
                 [&](absl::Span<const Var> in) { return ops::CrossEntropy(llama.Forward(in[0]), in[1]); },
                 o);
}

TEST(LlamaTest, ConfigJsonOfTransformersParses) {
  absl::StatusOr<LlamaConfig> c = ReadLlamaConfig(FixturePath("hf_llama_config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab, 300);
  EXPECT_EQ(c->hidden, 64);
  EXPECT_EQ(c->intermediate, 96);
  EXPECT_EQ(c->layers, 2);
  EXPECT_EQ(c->heads, 4);
  EXPECT_EQ(c->kv_heads, 2);
  EXPECT_EQ(c->HeadDim(), 16);
  EXPECT_EQ(c->max_positions, 64);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_scaling.factor, 0);
  absl::StatusOr<LlamaConfig> tied = ReadLlamaConfig(FixturePath("hf_llama_tied_config.json"));
  ASSERT_TRUE(tied.ok()) << tied.status();
  EXPECT_TRUE(tied->tie_word_embeddings);
  EXPECT_EQ(tied->rope_scaling.factor, 8);
  EXPECT_EQ(tied->rope_scaling.original_max_positions, 16);
  // ToJson reads back as the same config.
  absl::StatusOr<LlamaConfig> back = LlamaConfig::FromJson(tied->ToJson(), "round trip");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), tied->ToJson());
}

TEST(LlamaTest, BadConfigsAreRefusedByField) {
  auto error = [](const std::string& json) {
    absl::StatusOr<LlamaConfig> c = LlamaConfig::FromJson(json, "cfg.json");
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  const std::string base = R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                              "num_hidden_layers": 1, "num_attention_heads": 2)";
  EXPECT_EQ(error("{" + base + "}"), "ok");
  EXPECT_NE(error(R"({"vocab_size": 10})").find("cfg.json: \"hidden_size\" is missing"), std::string::npos);
  EXPECT_NE(error("{" + base + R"(, "num_key_value_heads": 3})").find("num_key_value_heads = 3"), std::string::npos);
  EXPECT_NE(error("{" + base + R"(, "hidden_act": "gelu"})").find("hidden_act"), std::string::npos);
  EXPECT_NE(error("{" + base + R"(, "rope_scaling": {"rope_type": "dynamic", "factor": 2}})").find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(error("{" + base + R"(, "rms_norm_eps": "small"})").find("rms_norm_eps"), std::string::npos);
  EXPECT_NE(error("[1, 2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error("{" + base + R"(, "num_hidden_layers": 4294967297})").find("\"num_hidden_layers\" is 4294967297, out of range"),
            std::string::npos);
  // A model built from a bad config fails its trace by field, not by a division by zero.
  Llama zero_heads(LlamaConfig{.vocab = 10, .hidden = 8, .intermediate = 8, .layers = 1, .heads = 0});
  auto p = Compile(zero_heads, {{"ids", Shape{1, 4}, DType::kI32}, {"targets", Shape{1, 4}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(zero_heads.Forward(in[0]), in[1]); },
                   TrainOptions{});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("num_attention_heads = 0"), std::string::npos) << p.status();
  EXPECT_NE(ReadLlamaConfig("/nonexistent/config.json").status().message().find("/nonexistent/config.json"),
            std::string::npos);
}

// The untied, grouped-query model: step-0 gradients and 10 per-step losses as transformers'.
TEST(LlamaTest, ATransformersCheckpointTrainsLikeTransformers) {
  const SafetensorsFile ref = testing::LoadFixture("hf_llama", "graph");
  Llama llama(ReadLlamaConfig(FixturePath("hf_llama_config.json")).value());
  TrainOptions o = FixtureOptions();
  o.keep_gradients = true;
  auto program = CompileLlama(llama, o);
  ASSERT_TRUE(program.ok()) << program.status();
  Program& p = **program;
  const absl::Status loaded = LoadLlamaWeights(p, FixturePath("hf_llama_model.safetensors"));
  ASSERT_TRUE(loaded.ok()) << loaded;
  const Tensor tokens = ref.Get("tokens").value();
  const Tensor losses = ref.Get("losses").value();
  ASSERT_EQ(losses.numel(), kSteps);
  for (int64_t s = 0; s < kSteps; ++s) {
    auto stats = p.Step(Batch(tokens, s));
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_NEAR(stats->loss, losses.data<float>()[s], 1e-4) << "step " << s;
    if (s != 0) continue;
    // The kept gradients were clipped in place: scale them back by the reported norm's factor.
    const double factor = std::min(1.0, 1.0 / (stats->grad_norm + 1e-6));
    ASSERT_EQ(p.gradients().size(), 3u + 2 * 9u);  // embed, norm, lm_head + 9 per layer
    for (const auto& [path, g] : p.gradients()) {
      SCOPED_TRACE(path);
      const Tensor want = ref.Get("grad0." + path).value();
      ASSERT_EQ(want.shape(), g.shape());
      double max_ref = 0;
      for (int64_t i = 0; i < want.numel(); ++i) max_ref = std::max(max_ref, std::abs(double(want.data<float>()[i])));
      int bad = 0;
      for (int64_t i = 0; i < g.numel() && bad < 5; ++i) {
        const double a = g.data<float>()[i] / factor, b = want.data<float>()[i];
        if (std::abs(a - b) > 1e-4 * max_ref) {
          ADD_FAILURE() << "[" << i << "]: strata " << a << ", transformers " << b;
          ++bad;
        }
      }
    }
  }
}

// The tied head (no lm_head.weight) with Llama 3's rope scaling, multi-head.
TEST(LlamaTest, ATiedTransformersCheckpointWithLlama3RopeTrainsLikeTransformers) {
  const SafetensorsFile ref = testing::LoadFixture("hf_llama", "graph");
  Llama llama(ReadLlamaConfig(FixturePath("hf_llama_tied_config.json")).value());
  auto program = CompileLlama(llama, FixtureOptions());
  ASSERT_TRUE(program.ok()) << program.status();
  ASSERT_EQ((*program)->parameter("lm_head.weight").status().code(), absl::StatusCode::kNotFound);
  const absl::Status loaded = LoadLlamaWeights(**program, FixturePath("hf_llama_tied_model.safetensors"));
  ASSERT_TRUE(loaded.ok()) << loaded;
  const Tensor tokens = ref.Get("tokens").value();
  const Tensor losses = ref.Get("tied_losses").value();
  for (int64_t s = 0; s < kSteps; ++s) {
    auto stats = (*program)->Step(Batch(tokens, s));
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_NEAR(stats->loss, losses.data<float>()[s], 1e-4) << "step " << s;
  }
}

// Saved weights load into a fresh program and give the same loss; recompute gives the same
// losses as keeping every activation.
TEST(LlamaTest, SavedWeightsReloadAndRecomputeChangesNothing) {
  const SafetensorsFile ref = testing::LoadFixture("hf_llama", "graph");
  const Tensor tokens = ref.Get("tokens").value();
  const LlamaConfig config = ReadLlamaConfig(FixturePath("hf_llama_config.json")).value();
  Llama a(config), b(config);
  TrainOptions recompute = FixtureOptions();
  recompute.recompute = true;
  auto pa = CompileLlama(a, FixtureOptions());
  auto pb = CompileLlama(b, recompute);
  ASSERT_TRUE(pa.ok() && pb.ok());
  ASSERT_TRUE(LoadLlamaWeights(**pa, FixturePath("hf_llama_model.safetensors")).ok());
  ASSERT_TRUE(LoadLlamaWeights(**pb, FixturePath("hf_llama_model.safetensors")).ok());
  for (int64_t s = 0; s < 3; ++s) {
    auto sa = (*pa)->Step(Batch(tokens, s));
    auto sb = (*pb)->Step(Batch(tokens, s));
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(sa->loss, sb->loss) << "step " << s;
  }
  const std::string dir = ::testing::TempDir() + "/llama_export";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(SaveLlamaWeights(**pa, dir + "/model.safetensors").ok());
  ASSERT_TRUE(SaveLlamaConfig(config, dir + "/config.json").ok());
  Llama c(ReadLlamaConfig(dir + "/config.json").value());
  auto pc = CompileLlama(c, FixtureOptions());
  ASSERT_TRUE(pc.ok());
  ASSERT_TRUE(LoadLlamaWeights(**pc, dir + "/model.safetensors").ok());
  const double want = (*pa)->Evaluate(Batch(tokens, 5)).value();
  EXPECT_EQ((*pc)->Evaluate(Batch(tokens, 5)).value(), want);
}

TEST(LlamaTest, BadWeightFilesAreRefusedByTensor) {
  const LlamaConfig config = ReadLlamaConfig(FixturePath("hf_llama_config.json")).value();
  // A tied model cannot take the untied file's distinct lm_head.
  LlamaConfig tied_config = config;
  tied_config.tie_word_embeddings = true;
  Llama tied(tied_config);
  auto p = CompileLlama(tied, FixtureOptions());
  ASSERT_TRUE(p.ok());
  const absl::Status head = LoadLlamaWeights(**p, FixturePath("hf_llama_model.safetensors"));
  EXPECT_NE(head.message().find("'lm_head.weight' differs from model.embed_tokens.weight"),
            std::string::npos) << head;
  // A model with more key/value heads than the file: the shape is named.
  LlamaConfig mha = config;
  mha.kv_heads = 4;
  Llama wide(mha);
  auto q = CompileLlama(wide, FixtureOptions());
  ASSERT_TRUE(q.ok());
  const absl::Status shape = LoadLlamaWeights(**q, FixturePath("hf_llama_model.safetensors"));
  EXPECT_NE(shape.message().find("'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], expected [64, 64]"),
            std::string::npos) << shape;
  // A model with three layers: the missing tensor is named, and nothing was written.
  LlamaConfig deeper = config;
  deeper.layers = 3;
  Llama deep(deeper);
  auto r = CompileLlama(deep, FixtureOptions());
  ASSERT_TRUE(r.ok());
  const Tensor before = (*r)->parameter("model.norm.weight").value();
  const absl::Status missing = LoadLlamaWeights(**r, FixturePath("hf_llama_model.safetensors"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("model.layers.2."), std::string::npos) << missing;
  EXPECT_EQ((*r)->parameter("model.norm.weight").value().data<float>()[0], before.data<float>()[0]);
  // Sequences longer than max_position_embeddings are refused at compile time.
  Llama llama(config);
  auto long_program = Compile(llama, {{"ids", Shape{1, 65}, DType::kI32}, {"targets", Shape{1, 65}, DType::kI32}},
                              [&](absl::Span<const Var> in) { return ops::CrossEntropy(llama.Forward(in[0]), in[1]); },
                              FixtureOptions());
  ASSERT_FALSE(long_program.ok());
  EXPECT_NE(long_program.status().message().find("max_position_embeddings = 64"), std::string::npos);
}

}  // namespace
}  // namespace strata::graph
