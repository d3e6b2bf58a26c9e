// Fuzz target: LoadCheckpoint on arbitrary checkpoint directories. One input holds the three
// files, trainer_state.json, weights.safetensors and optimizer.safetensors, separated by kSplit
// (a missing part leaves its file out), loaded into a small compiled program. The seeds are a
// checkpoint of that program and the same files under a sharded checkpoint's index.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

namespace strata::fuzz {
namespace {

namespace fs = std::filesystem;

class TinyNet : public graph::Layer {
 public:
  TinyNet() : fc_(Add<graph::nn::Linear>("fc", 3, 2)) {}
  graph::Var Forward(graph::Var x) override { return (*fc_)(x); }

 private:
  graph::nn::Linear* fc_;
};

graph::Program& TinyProgram() {
  static graph::Program* program = [] {
    static TinyNet net;
    graph::TrainOptions o;
    o.optimizer = graph::OptimizerOptions::AdamW(0.9, 0.999, 1e-8, 0.1);
    auto p = graph::Compile(
        net, {{"x", Shape{2, 3}, DType::kF32}, {"y", Shape{2}, DType::kI32}},
        [&](absl::Span<const graph::Var> in) { return graph::ops::CrossEntropy(net(in[0]), in[1]); },
        o);
    if (!p.ok()) {
      std::fprintf(stderr, "fuzz: %s\n", std::string(p.status().message()).c_str());
      std::abort();
    }
    return p->release();
  }();
  return *program;
}

const char* const kFiles[] = {graph::kCheckpointStateFile, graph::kCheckpointWeightsFile,
                              graph::kCheckpointOptimizerFile};

}  // namespace

std::vector<std::string> FuzzSeeds() {
  graph::TrainerState state;
  state.data_position = 192;
  // std::string, not operator=(const char*): that trips a GCC 12 -Wrestrict false positive.
  state.rng = std::string("seed=1337");
  state.counters["epoch"] = 2;
  state.extra["run.--layers"] = std::string("2");
  const fs::path dir = fs::path(TempDir()) / "seed-checkpoint";
  if (!graph::SaveCheckpoint(TinyProgram(), state, dir.string()).ok()) std::abort();
  std::vector<std::string> parts;
  for (const char* name : kFiles) parts.push_back(ReadWholeFile((dir / name).string()));
  // The same files under a sharded checkpoint's index (version 2, Note [sharded checkpoints]):
  // each tensor one piece, the whole of it, in the file that holds it.
  nlohmann::json index = nlohmann::json::parse(parts[0]);
  index["version"] = 2;
  index["world_size"] = 1;
  for (const char* name : {graph::kCheckpointWeightsFile, graph::kCheckpointOptimizerFile}) {
    const SafetensorsFile f = SafetensorsFile::Open((dir / name).string()).value();
    for (const std::string& tensor : f.names()) {
      const SafetensorsFile::Entry e = f.Find(tensor).value();
      index["tensors"][tensor] = {
          {"dtype", std::string(DTypeName(e.dtype))},
          {"shape", e.shape.dims()},
          {"pieces", {{{"file", name}, {"offset", 0}, {"count", e.shape.numel()}}}}};
    }
  }
  std::vector<std::string> sharded = parts;
  sharded[0] = index.dump(2);
  // A seed that does not load would start every mutation from an error.
  const fs::path check = fs::path(TempDir()) / "seed-sharded-checkpoint";
  fs::create_directories(check);
  for (size_t i = 0; i < sharded.size(); ++i) std::ofstream(check / kFiles[i]) << sharded[i];
  if (absl::Status s = graph::LoadCheckpoint(TinyProgram(), check.string()).status(); !s.ok()) {
    std::fprintf(stderr, "fuzz: the sharded seed does not load: %s\n", std::string(s.message()).c_str());
    std::abort();
  }
  return {absl::StrJoin(parts, kSplit), absl::StrJoin(sharded, kSplit)};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  namespace fs = std::filesystem;
  const std::vector<std::string> parts =
      fuzz::Split(std::string(reinterpret_cast<const char*>(data), size), 3);
  const fs::path dir = fs::path(fuzz::TempDir()) / "checkpoint";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (size_t i = 0; i < parts.size(); ++i) {
    fuzz::WriteInput((fs::path("checkpoint") / fuzz::kFiles[i]).string(), parts[i]);
  }
  (void)graph::ReadTrainerState(dir.string());
  (void)graph::LoadCheckpoint(fuzz::TinyProgram(), dir.string());
  return 0;
}
