// strata-gpt: trains a GPT-2-architecture model (or, with --arch llama, a Llama-architecture
// one) on a text file (bytes, vocabulary 256) or a nanoGPT / llm.c token file (uint16, or llm.c's
// uint32 for vocabularies past 65,536).
//
//   strata-gpt --data /usr/share/games/fortunes/songs-poems --layers 4 --width 192 --heads 6
//              --seq 128 --batch 8 --steps 200 --lr 1e-3 --metrics run.jsonl
//              --export finetuned/model.safetensors
//   strata-gpt --arch llama --data ... --layers 4 --width 256 --heads 8 --kv-heads 2
//
// Batches follow llm.c: step s reads B*T+1 consecutive training tokens from s*B*T (wrapping at
// the end); inputs are the first B*T, targets the same shifted by one. --shuffle draws random
// windows instead. The last --val-fraction of the tokens is held out for --eval-every.
//
// Launched on several ranks (launch/strata-run -n N -- strata-gpt ...), it trains data parallel:
// --batch stays the global micro-batch, each rank reads its B/N rows of every micro-batch, and
// the losses are the one-process run's (Note [data parallel] in graph/compile.cc). Rank 0 prints,
// writes --metrics and the export; every rank reads --resume and --init-from and takes part in
// saving checkpoints (each writes its own shards, Note [sharded checkpoints] in
// graph/checkpoint.h) and in the export (the shards are gathered); --save must be on a file
// system every rank sees, which is checked at the start.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collectives/create_communicator.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/offload_flags.h"
#include "examples/common/param_group_flags.h"
#include "examples/common/sparse_budget_run.h"
#include "examples/common/run_config.h"
#include "examples/common/step_metrics.h"
#include "examples/common/zero_flags.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/data/token_file.h"
#include "examples/gpt/language_model.h"
#include "graph/models/gpt2_checkpoint.h"
#include "graph/models/llama_checkpoint.h"
#include "graph/ops/ops.h"
#include "graph/sparse_budget.h"
#include "graph/sparse_update.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors.h"
#include "runtime/blas_check.h"
#include "runtime/errno_text.h"
#include "runtime/status.h"
#include "runtime/threading.h"

namespace strata::examples {
namespace {

using graph::GptConfig;

struct Options {
  std::string arch = "gpt";  // --arch: gpt or llama
  std::string data, init_from, save, resume, metrics, schedule = "cosine";
  std::string precision = "f32";  // f32, bf16 or f16 (Note [mixed precision])
  std::string device = "cpu";     // --device: cpu or cuda:N
  std::string export_path;  // --export: the model in Hugging Face GPT-2 layout at the end
  std::string sparse_update;  // --sparse-update: a JSON file of rules (graph/sparse_update.h)
  // --sparse-budget: choose the rules by contribution analysis (graph/sparse_budget.h) so that
  // the planned step fits this many bytes; 0: off.
  int64_t sparse_budget = 0, sparse_budget_batches = 8;
  std::string sparse_budget_ratios = "0.25,0.5,1";  // the channel ratios each block is tried at
  int64_t layers = 6, width = 384, heads = 6, seq = 256, batch = 8, steps = 100, vocab = 0;
  int64_t kv_heads = 0, ffn = 0;  // Llama: key/value heads (0: --heads), SwiGLU width (0: auto)
  double rope_theta = 10000;      // Llama
  bool tie_embeddings = false;    // Llama: the output head is the token embedding
  int64_t warmup = 10, seed = 1337, threads = 0, eval_every = 0, eval_batches = 4,
          micro_batches = 1, save_every = 0, log_every = 1, stop_at = 0;
  graph::ZeroOptions zero;  // from the ZeRO flags (examples/common/zero_flags.h)
  double lr = 6e-4, min_lr = -1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1,
         clip = 1.0, val_fraction = 0.1, comm_timeout = 0;
  bool shuffle = false, dump_graph = false, profile = false, check_plan = false;
  bool recompute = false;  // activation checkpointing of every transformer block
  std::set<std::string> given;  // model-shape flags given on the command line (see InferConfig)
  graph::OffloadOptions offload;  // from the offload flags (examples/common/offload_flags.h)
  std::vector<graph::ParamGroup> param_groups;  // --param-group, in order
};

// Token windows: sequential (llm.c) or shuffled, both a pure function of the step so that a
// resumed run reads exactly what an uninterrupted one would.
class Batcher {
 public:
  Batcher(const std::vector<uint32_t>& tokens, int64_t begin, int64_t end, int64_t b, int64_t t,
          bool shuffle, uint64_t seed)
      : tokens_(tokens), begin_(begin), n_(end - begin), b_(b), t_(t), shuffle_(shuffle),
        seed_(seed),
        ids_(Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value()),
        targets_(Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value()) {}

  // Where the sequential batch of step `s` starts in the token range.
  int64_t Start(int64_t s) const { return (s * b_ * t_) % n_; }

  // The batch of step `s`.
  std::vector<Tensor> Get(int64_t s) {
    int32_t* x = ids_.data<int32_t>();
    int32_t* y = targets_.data<int32_t>();
    const int64_t start = Start(s);
    std::mt19937_64 rng(seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(s + 1)));
    for (int64_t r = 0; r < b_; ++r) {
      const int64_t row = shuffle_ ? static_cast<int64_t>(rng() % static_cast<uint64_t>(n_))
                                   : start + r * t_;
      for (int64_t i = 0; i < t_; ++i) {
        // Below the vocabulary (CheckTokenIds), so they fit int32.
        x[r * t_ + i] = static_cast<int32_t>(tokens_[begin_ + (row + i) % n_]);
        y[r * t_ + i] = static_cast<int32_t>(tokens_[begin_ + (row + i + 1) % n_]);
      }
    }
    return {ids_, targets_};
  }

 private:
  const std::vector<uint32_t>& tokens_;
  int64_t begin_, n_, b_, t_;
  bool shuffle_;
  uint64_t seed_;
  Tensor ids_, targets_;
};

// This rank's rows of a global batch of `micro_batches` micro-batches of `rows` sequences each:
// rows [rank * rows / world, (rank + 1) * rows / world) of every micro-batch, so that micro-batch
// i on every rank is part of the one-process run's micro-batch i.
class RankRows {
 public:
  RankRows(int64_t micro_batches, int64_t rows, int64_t t, int world, int rank)
      : k_(micro_batches), rows_(rows), t_(t), world_(world), rank_(rank) {
    for (Tensor* x : {&ids_, &targets_}) {
      *x = Tensor::Empty(Shape{k_ * rows_ / world_, t_}, DType::kI32, DefaultCpuAllocator()).value();
    }
  }
  std::vector<Tensor> Of(const std::vector<Tensor>& global) {
    if (world_ == 1) return global;
    const int64_t mine = rows_ / world_;
    std::vector<Tensor> out = {ids_, targets_};
    for (size_t j = 0; j < out.size(); ++j) {
      const int32_t* src = global[j].data<int32_t>();
      int32_t* dst = out[j].data<int32_t>();
      for (int64_t i = 0; i < k_; ++i) {
        std::copy_n(src + (i * rows_ + rank_ * mine) * t_, mine * t_, dst + i * mine * t_);
      }
    }
    return out;
  }

 private:
  int64_t k_, rows_, t_;
  int world_, rank_;
  Tensor ids_, targets_;
};

// Layers, width, vocabulary and positions from a Hugging Face GPT-2 file's shapes; the number of
// heads, which no shape records, from the config.json that `transformers` writes beside it, or
// from --heads. A shape flag given on the command line that disagrees with the file is a usage
// error naming both values (a model that silently differs from the one asked for would train
// another model); flags left out come from the file, --seq included (at most the positions).
absl::Status InferConfig(Options& o, GptConfig& c) {
  const std::string& path = o.init_from;
  STRATA_ASSIGN_OR_RETURN(const SafetensorsFile f, SafetensorsFile::Read(path, DefaultCpuAllocator()));
  auto shape = [&](const std::string& name) -> absl::StatusOr<Shape> {
    for (const std::string& n : {name, "transformer." + name}) {
      if (f.Contains(n)) return f.Get(n).value().shape();
    }
    return absl::NotFoundError(absl::StrCat(path, ": no tensor ", name, " (is it a GPT-2 file?)"));
  };
  STRATA_ASSIGN_OR_RETURN(const Shape wte, shape("wte.weight"));
  STRATA_ASSIGN_OR_RETURN(const Shape wpe, shape("wpe.weight"));
  if (wte.rank() != 2 || wpe.rank() != 2 || wpe[1] != wte[1] || wte.numel() == 0 ||
      wpe.numel() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--init-from ", path, ": wte.weight ", wte.ToString(), " and wpe.weight ", wpe.ToString(),
        " are not (vocab, width) and (positions, width) of one non-empty width"));
  }
  int64_t layers = 0;
  while (shape(absl::StrCat("h.", layers, ".ln_1.weight")).ok()) ++layers;
  if (layers == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--init-from ", path, ": no transformer block (h.0.ln_1.weight)"));
  }
  auto agree = [&](const char* flag, int64_t flag_value, int64_t file_value,
                   const std::string& where) -> absl::Status {
    if (o.given.count(flag) == 0 || flag_value == file_value) return absl::OkStatus();
    return UsageError(absl::StrCat("--", flag, " ", flag_value, " differs from ", file_value,
                                   " in --init-from ", path, " (", where, ")"));
  };
  STRATA_RETURN_IF_ERROR(agree("layers", o.layers, layers, "blocks h.0 .. h.N-1"));
  STRATA_RETURN_IF_ERROR(agree("width", o.width, wte[1], "wte.weight " + wte.ToString()));
  if (o.vocab != 0) {  // --vocab 0 asks for the default, here the file's
    STRATA_RETURN_IF_ERROR(agree("vocab", o.vocab, wte[0], "wte.weight " + wte.ToString()));
  }
  if (o.given.count("seq") && o.seq > wpe[0]) {
    return UsageError(absl::StrCat("--seq ", o.seq, " exceeds the ", wpe[0],
                                   " positions of --init-from ", path, " (wpe.weight ",
                                   wpe.ToString(), ")"));
  }
  if (!o.given.count("seq")) o.seq = wpe[0];
  c.vocab = wte[0];
  c.width = wte[1];
  c.block_size = wpe[0];
  c.layers = static_cast<int>(std::min<int64_t>(layers, INT32_MAX));

  const std::filesystem::path config_json = std::filesystem::path(path).parent_path() / "config.json";
  if (!std::filesystem::exists(config_json)) {
    if (o.given.count("heads")) return absl::OkStatus();
    return UsageError(absl::StrCat(
        "--init-from ", path, ": the number of attention heads is not in the file and there is no ",
        config_json.string(), "; pass --heads (12 for GPT-2 small)"));
  }
  std::ifstream in(config_json);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("n_head") || !j["n_head"].is_number_integer() ||
      j["n_head"].get<int64_t>() < 1 || j["n_head"].get<int64_t>() > c.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_json.string(), ": expected a JSON object with an integer n_head from 1 to the width ",
        c.width));
  }
  const int64_t n_head = j["n_head"].get<int64_t>();
  if (o.given.count("heads") && n_head != o.heads) {
    return UsageError(absl::StrCat("--heads ", o.heads, " differs from n_head ", n_head, " in ",
                                   config_json.string()));
  }
  c.heads = static_cast<int>(n_head);
  return absl::OkStatus();
}

// A Llama's shape from the config.json beside its --init-from file (transformers writes both);
// shape flags given must agree with it, and --seq, when left out, is its positions (at most
// 1024).
absl::Status InferLlamaConfig(Options& o, graph::LlamaConfig& c) {
  const std::filesystem::path config_json =
      std::filesystem::path(o.init_from).parent_path() / "config.json";
  absl::StatusOr<graph::LlamaConfig> read = graph::ReadLlamaConfig(config_json.string());
  if (!read.ok()) {
    return absl::Status(read.status().code(),
                        absl::StrCat("--init-from ", o.init_from, " needs the config.json beside it: ",
                                     read.status().message()));
  }
  c = *read;
  auto agree = [&](const char* flag, int64_t flag_value, int64_t file_value,
                   const char* field) -> absl::Status {
    if (o.given.count(flag) == 0 || flag_value == file_value) return absl::OkStatus();
    return UsageError(absl::StrCat("--", flag, " ", flag_value, " differs from ", field, " ",
                                   file_value, " in ", config_json.string()));
  };
  STRATA_RETURN_IF_ERROR(agree("layers", o.layers, c.layers, "num_hidden_layers"));
  STRATA_RETURN_IF_ERROR(agree("width", o.width, c.hidden, "hidden_size"));
  STRATA_RETURN_IF_ERROR(agree("heads", o.heads, c.heads, "num_attention_heads"));
  STRATA_RETURN_IF_ERROR(agree("kv-heads", o.kv_heads, c.kv_heads, "num_key_value_heads"));
  STRATA_RETURN_IF_ERROR(agree("ffn", o.ffn, c.intermediate, "intermediate_size"));
  if (o.vocab != 0) STRATA_RETURN_IF_ERROR(agree("vocab", o.vocab, c.vocab, "vocab_size"));
  if (o.given.count("seq") && o.seq > c.max_positions) {
    return UsageError(absl::StrCat("--seq ", o.seq, " exceeds max_position_embeddings ",
                                   c.max_positions, " in ", config_json.string()));
  }
  if (!o.given.count("seq")) o.seq = std::min<int64_t>(c.max_positions, 1024);
  return absl::OkStatus();
}

// The model the flags ask for: its shape from the flags, or from --init-from.
absl::StatusOr<LanguageModelConfig> ChooseModel(Options& o, const data::TokenFile& file) {
  LanguageModelConfig m{.arch = o.arch};
  // The vocabularies of the files' usual tokenizers: bytes, GPT-2's, Llama 3's.
  const int64_t vocab = o.vocab != 0                       ? o.vocab
                        : file.format == "bytes"           ? 256
                        : file.format == "llm.c uint32"    ? 128256
                                                           : 50257;
  if (m.is_llama()) {
    graph::LlamaConfig& c = m.llama;
    if (!o.init_from.empty()) {
      STRATA_RETURN_IF_ERROR(InferLlamaConfig(o, c));
    } else {
      // Llama's SwiGLU width: 8/3 of the model width (the MLP's parameters of a 4x GELU one),
      // rounded up to a multiple of 64.
      const int64_t ffn = o.ffn > 0 ? o.ffn : (8 * o.width / 3 + 63) / 64 * 64;
      c = graph::LlamaConfig{.vocab = vocab, .hidden = o.width, .intermediate = ffn,
                             .layers = static_cast<int>(o.layers),
                             .heads = static_cast<int>(o.heads),
                             .kv_heads = static_cast<int>(o.kv_heads > 0 ? o.kv_heads : o.heads),
                             .max_positions = o.seq, .rope_theta = o.rope_theta,
                             .tie_word_embeddings = o.tie_embeddings};
    }
  } else {
    m.gpt = GptConfig{.vocab = vocab, .block_size = o.seq, .layers = static_cast<int>(o.layers),
                      .width = o.width, .heads = static_cast<int>(o.heads)};
    if (!o.init_from.empty()) STRATA_RETURN_IF_ERROR(InferConfig(o, m.gpt));
  }
  STRATA_RETURN_IF_ERROR(m.Validate());
  STRATA_RETURN_IF_ERROR(data::CheckTokenIds(file, m.vocab()));
  return m;
}

// Usage errors that the flags show on their own (Note [exit codes] in flags.h); ranges were
// checked by the parser.
absl::Status CheckFlags(const Options& o) {
  if (o.data.empty()) return UsageError("--data FILE is required");
  if (o.arch != "gpt" && o.arch != "llama") {
    return UsageError(absl::StrCat("--arch ", o.arch, ": expected gpt or llama"));
  }
  if (o.arch != "llama") {
    for (const char* flag : {"kv-heads", "ffn", "rope-theta", "tie-embeddings"}) {
      if (o.given.count(flag)) return UsageError(absl::StrCat("--", flag, " is a Llama flag: add --arch llama"));
    }
  }
  if (o.arch == "llama" && o.init_from.empty() && o.kv_heads > 0 && o.heads % o.kv_heads != 0) {
    return UsageError(absl::StrCat("--kv-heads ", o.kv_heads, " does not divide --heads ", o.heads));
  }
  if (o.arch == "llama" && !o.init_from.empty()) {
    for (const char* flag : {"rope-theta", "tie-embeddings"}) {
      if (o.given.count(flag)) {
        return UsageError(absl::StrCat("--", flag, " comes from the config.json of --init-from ",
                                       o.init_from));
      }
    }
  }
  if (!optim::ParseLrScheduleKind(o.schedule).ok()) {
    return UsageError(absl::StrCat("--schedule ", o.schedule, ": expected constant or cosine"));
  }
  if (o.precision != "f32" && o.precision != "bf16" && o.precision != "f16") {
    return UsageError(absl::StrCat("--precision ", o.precision, ": expected f32, bf16 or f16"));
  }
  if (o.init_from.empty() && o.width % o.heads != 0) {
    return UsageError(absl::StrCat("--heads ", o.heads, " does not divide --width ", o.width));
  }
  if (o.steps == 0 && o.export_path.empty() && o.save.empty()) {
    return UsageError("--steps 0 trains nothing: it writes the model as it starts, with --export "
                      "FILE (or --save DIR)");
  }
  if (o.schedule == "cosine" && o.steps > 0 && o.warmup >= o.steps) {
    return UsageError(absl::StrCat("--warmup ", o.warmup, " must be below --steps ", o.steps,
                                   " for the cosine schedule"));
  }
  if (o.min_lr > o.lr) {
    return UsageError(absl::StrCat("--min-lr ", o.min_lr, " exceeds --lr ", o.lr));
  }
  if (o.stop_at > o.steps) {
    return UsageError(absl::StrCat("--stop-at ", o.stop_at, " is past --steps ", o.steps));
  }
  if (o.eval_every > 0 && o.val_fraction == 0) {
    return UsageError(absl::StrCat("--eval-every ", o.eval_every,
                                   " needs held-out tokens, but --val-fraction is 0"));
  }
  if (!o.resume.empty() && !o.init_from.empty()) {
    return UsageError("--resume and --init-from contradict each other: a resumed run's weights "
                      "come from its checkpoint");
  }
  if (o.sparse_budget > 0 && !o.sparse_update.empty()) {
    return UsageError(absl::StrCat("--sparse-update ", o.sparse_update, " and --sparse-budget ",
                                   BytesText(o.sparse_budget),
                                   " both choose what trains: give one of them"));
  }
  if (o.sparse_budget > 0 && !o.resume.empty()) {
    return UsageError("--sparse-budget measures from the starting weights, which a resumed run "
                      "does not have: resume with --sparse-update and the rules it printed");
  }
  if (absl::StatusOr<std::vector<double>> r = graph::ParseChannelRatios(o.sparse_budget_ratios);
      !r.ok()) {
    return UsageError(absl::StrCat("--sparse-budget-ratios: ", r.status().message()));
  }
  if (o.sparse_budget > 0 && o.val_fraction == 0) {
    return UsageError(absl::StrCat("--sparse-budget ", BytesText(o.sparse_budget),
                                   " measures on held-out tokens, but --val-fraction is 0"));
  }
  return absl::OkStatus();
}

// Everything that changes the math of the run (see RunConfig): a resume must agree on all of it
// but --steps, whose change (which reshapes the schedule) is announced.
// The parameters' own bytes on the device: what a fine-tune needs whatever it trains.
int64_t DeviceWeightBytes(const graph::Graph& g) {
  int64_t bytes = 0;
  for (graph::ValueId v = 0; v < g.num_values(); ++v) {
    const graph::Value& value = g.value(v);
    if (value.role == graph::ValueRole::kParameter && value.home == MemoryTier::kDevice) {
      bytes += static_cast<int64_t>(value.nbytes());
    }
  }
  return bytes;
}

// "sparse update: planned device peak 85.7 MiB against 101.1 MiB for full training; beyond the
// weights (gradients, optimizer state, activations, workspaces) 71.1 MiB against 86.5 MiB (1.22x
// less)".
std::string SparseSaving(const graph::MemoryReport& sparse, const graph::Graph& sparse_graph,
                         const graph::MemoryReport& full, const graph::Graph& full_graph) {
  const int device = static_cast<int>(MemoryTier::kDevice);
  const int64_t s = sparse.planned_peak[device], f = full.planned_peak[device];
  const int64_t s_beyond = s - DeviceWeightBytes(sparse_graph);
  const int64_t f_beyond = f - DeviceWeightBytes(full_graph);
  constexpr double kMiB = 1 << 20;
  return absl::StrFormat(
      "sparse update: planned device peak %.1f MiB against %.1f MiB for full training; beyond "
      "the weights (gradients, optimizer state, activations, workspaces) %.1f MiB against "
      "%.1f MiB (%.2fx less)",
      s / kMiB, f / kMiB, s_beyond / kMiB, f_beyond / kMiB,
      s_beyond > 0 ? static_cast<double>(f_beyond) / s_beyond : 0.0);
}

RunConfig MakeRunConfig(const Options& o, const LanguageModelConfig& m, const data::TokenFile& file,
                        int64_t n_train, double min_lr, const graph::SparseUpdateSpec* sparse) {
  RunConfig r;
  if (m.is_llama()) {
    // GPT runs record no --arch, as before it existed; a GPT checkpoint lacks it and is refused.
    const graph::LlamaConfig& c = m.llama;
    r.Add("--arch", m.arch);
    r.Add("--layers", int64_t{c.layers});
    r.Add("--width", c.hidden);
    r.Add("--heads", int64_t{c.heads});
    r.Add("--kv-heads", int64_t{c.kv_heads});
    r.Add("--ffn", c.intermediate);
    r.Add("--rope-theta", c.rope_theta);
    r.Add("--tie-embeddings", std::string(c.tie_word_embeddings ? "true" : "false"));
    r.Add("--vocab", c.vocab);
  } else {
    const GptConfig& c = m.gpt;
    r.Add("--layers", int64_t{c.layers});
    r.Add("--width", c.width);
    r.Add("--heads", int64_t{c.heads});
    r.Add("--vocab", c.vocab);
  }
  r.Add("--seq", o.seq);
  r.Add("--data tokens", static_cast<int64_t>(file.tokens.size()));
  r.Add("--data hash", absl::StrCat("0x", absl::Hex(file.hash, absl::kZeroPad16)));
  r.Add("training tokens (--val-fraction, --eval-every)", n_train);
  r.Add("--seed", o.seed);
  r.Add("global batch (--batch x --micro-batches)", o.batch * o.micro_batches);
  r.Add("--shuffle", std::string(o.shuffle ? "true" : "false"));
  r.Add("--schedule", o.schedule);
  r.Add("--lr", o.lr);
  r.Add("--min-lr", min_lr);
  r.Add("--warmup", o.warmup);
  r.Add("--beta1", o.beta1);
  r.Add("--beta2", o.beta2);
  r.Add("--eps", o.eps);
  r.Add("--weight-decay", o.weight_decay);
  // Checkpoints written before groups existed trained without them.
  r.AddWithUnrecorded("--param-group", ParamGroupsText(o.param_groups), "none");
  r.Add("--clip", o.clip);
  r.AddWithUnrecorded("--precision", o.precision, "f32");
  r.AddWithUnrecorded("--device", o.device, "cpu", RunConfig::kInform);  // placement, not math
  r.Add("--steps", o.steps, RunConfig::kAnnounce);
  RecordOffload(o.offload, r);  // Note [placement is not part of the run]
  // Recomputing gives bitwise the same steps, so a resume may turn it on or off.
  r.Add("--recompute", std::string(o.recompute ? "true" : "false"), RunConfig::kAnnounce);
  // So does the partition over ranks (the sums run in another order: within rounding).
  r.Add("--zero-stage", int64_t{o.zero.stage}, RunConfig::kAnnounce);
  // Which parameters train: another spec has other optimizer state, which the load then names.
  std::string rules = "none";
  if (sparse != nullptr) {
    rules.clear();
    for (const graph::SparseUpdateRule& rule : sparse->rules) {
      absl::StrAppend(&rules, rules.empty() ? "" : ", ", rule.match, " ", rule.update);
    }
  }
  r.Add("--sparse-update", rules, RunConfig::kAnnounce);
  // How the rules were chosen; the rules above are what the math depends on.
  r.Add("--sparse-budget", o.sparse_budget, RunConfig::kInform);
  return r;
}

// The --export file is written at the end: a directory it cannot be written to is found before
// the run, not after it. The write itself is atomic (Note [atomic file writes]).
absl::Status CheckExportPath(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat("--export ", path, " is a directory; expected "
                                                   "a file name such as model.safetensors"));
  }
  if (std::filesystem::path(path).filename() == "config.json") {
    return UsageError(absl::StrCat("--export ", path, ": the config.json written beside the "
                                   "weights would replace them; name the file model.safetensors"));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  if (::access(dir.c_str(), W_OK) != 0) {
    const int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("--export ", path, ": cannot write in ", dir, ": ",
                                     ErrnoText(err)));
  }
  return absl::OkStatus();
}

// --sparse-budget: the contribution analysis of graph/sparse_budget.h on this run's model and
// data. Each unit trains for --sparse-budget-batches steps from the starting weights (--init-from,
// else the seed's initialization) at the constant --lr, then is scored on --eval-batches held-out
// batches; the planned peaks are the step as the run compiles it.
absl::StatusOr<graph::SparseUpdateSpec> ChooseByBudget(const Options& o, const LanguageModelConfig& config,
                                                       const graph::TrainOptions& run,
                                                       const std::vector<uint32_t>& tokens,
                                                       int64_t n_train) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t rows = o.batch * o.micro_batches;
  const std::vector<graph::InputSpec> inputs = {{"ids", Shape{o.batch, o.seq}, DType::kI32},
                                                {"targets", Shape{o.batch, o.seq}, DType::kI32}};
  graph::TrainOptions t = run;
  t.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = o.lr};
  t.dump_graph = false;
  t.communicator = nullptr;
  Batcher train(tokens, 0, n_train, rows, o.seq, o.shuffle, o.seed);
  Batcher val(tokens, n_train, n, rows, o.seq, false, o.seed);
  graph::SparseBudgetCallbacks cb;
  cb.held_out_loss = [&](const graph::SparseUpdateSpec& spec,
                         int64_t steps) -> absl::StatusOr<double> {
    LanguageModel model = BuildLanguageModel(config);
    STRATA_RETURN_IF_ERROR(graph::ApplySparseUpdate(*model.module, spec).status());
    STRATA_ASSIGN_OR_RETURN(
        std::unique_ptr<graph::Program> p,
        graph::Compile(*model.module, inputs,
                       [&](absl::Span<const graph::Var> in) {
                         return graph::ops::CrossEntropy(model.forward(in[0]), in[1]);
                       },
                       t));
    if (!o.init_from.empty()) {
      STRATA_RETURN_IF_ERROR(LoadHuggingFaceWeights(*p, config, o.init_from));
    }
    for (int64_t s = 0; s < steps; ++s) STRATA_RETURN_IF_ERROR(p->Step(train.Get(s)).status());
    double sum = 0;
    for (int64_t i = 0; i < o.eval_batches; ++i) {
      STRATA_ASSIGN_OR_RETURN(const double l, p->Evaluate(val.Get(i)));
      sum += l;
    }
    if (!std::isfinite(sum)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the held-out loss after ", steps, " steps at --lr ", o.lr, " is ", sum / o.eval_batches,
          " (try a smaller --lr)"));
    }
    return sum / o.eval_batches;
  };
  LanguageModel plan = BuildLanguageModel(config);
  cb.planned_peak = graph::PlannedPeakWith(
      *plan.module, inputs,
      [&](absl::Span<const graph::Var> in) {
        return graph::ops::CrossEntropy(plan.forward(in[0]), in[1]);
      },
      t);
  std::vector<graph::SparseBudgetUnit> units =
      graph::SparseBudgetUnits(graph::SparseBudgetBlocks(*plan.module),
                                *graph::ParseChannelRatios(o.sparse_budget_ratios));
  return RunSparseBudget(std::move(units), cb,
                         {.budget = o.sparse_budget,
                          .batches = o.sparse_budget_batches,
                          .lr = o.lr,
                          .held_out = absl::StrCat("on ", o.eval_batches, " held-out batches"),
                          .start = start});
}

absl::Status Train(Options o) {
  STRATA_RETURN_IF_ERROR(CheckFlags(o));
  if (!o.export_path.empty()) STRATA_RETURN_IF_ERROR(CheckExportPath(o.export_path));
  if (o.threads > 0) SetNumThreads(static_cast<int>(o.threads));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<collectives::Communicator> comm,
                          collectives::CreateCommunicator({.timeout_seconds = o.comm_timeout}));
  const int world = comm->world_size(), rank = comm->rank();
  if (const std::string w = SlowBlasKernelWarning(); !w.empty() && rank == 0) {
    std::fprintf(stderr, "strata-gpt: %s\n", w.c_str());  // Note [OpenBLAS on CPUs it does not know]
  }
  if (o.batch % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch ", o.batch, " does not split among ", world, " ranks: each rank reads --batch / ",
        world, " sequences of every micro-batch, so give a multiple of ", world));
  }
  // Rank 0 speaks for the job; the others print only errors (on stderr).
  if (rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) {
    return absl::InternalError("cannot silence the standard output of rank " + std::to_string(rank));
  }
  if (!o.save.empty()) STRATA_RETURN_IF_ERROR(graph::CheckSharedDirectory(comm.get(), o.save));
  STRATA_ASSIGN_OR_RETURN(const data::TokenFile file, data::ReadTokens(o.data));

  STRATA_ASSIGN_OR_RETURN(const LanguageModelConfig config, ChooseModel(o, file));
  const int64_t n = static_cast<int64_t>(file.tokens.size());
  const bool held_out = o.eval_every > 0 || o.sparse_budget > 0;
  const int64_t n_val = held_out ? static_cast<int64_t>(n * o.val_fraction) : 0;
  const int64_t n_train = n - n_val;
  const int64_t need = o.batch * o.micro_batches * o.seq + 1;
  if (n_train < need || (held_out && n_val < need)) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.data, " has ", n, " tokens; a batch needs ", need, " for training",
        held_out ? absl::StrCat(" and ", need, " of the ", n_val, " held out (--val-fraction)")
                         : ""));
  }
  const double min_lr = o.min_lr >= 0 ? o.min_lr : o.lr / 10;
  graph::TrainOptions t;
  t.optimizer = graph::OptimizerOptions::AdamW(o.beta1, o.beta2, o.eps, o.weight_decay);
  t.optimizer.groups = o.param_groups;
  {
    // A pattern that takes nothing is the command line's mistake: refused before anything runs
    // (matching is over every parameter, so the model as built decides, whatever trains).
    LanguageModel probe = BuildLanguageModel(config);
    const absl::StatusOr<graph::ParamGroupPlan> groups =
        graph::ResolveParamGroups(*probe.module, t.optimizer);
    if (!groups.ok()) return UsageError(absl::StrCat("--param-group: ", groups.status().message()));
  }
  STRATA_ASSIGN_OR_RETURN(t.schedule.kind, optim::ParseLrScheduleKind(o.schedule));
  t.schedule.max_lr = o.lr;
  t.schedule.min_lr = min_lr;
  t.schedule.warmup_steps = o.warmup;
  t.schedule.total_steps = o.steps;
  // --steps 0 runs no step, so no learning rate is ever taken; a constant schedule compiles
  // where a cosine one of no steps would not.
  if (o.steps == 0) t.schedule.kind = optim::LrSchedule::kConstant;
  t.clip_grad_norm = o.clip;
  STRATA_ASSIGN_OR_RETURN(t.precision, ParseDType(o.precision));
  absl::StatusOr<Device> device = ParseDevice(o.device);
  if (!device.ok()) return UsageError(absl::StrCat("--device: ", device.status().message()));
  // `cuda` alone: the GPU of this rank's place on its node, one GPU per rank under mpirun/srun.
  t.device = o.device == "cuda" ? Device::Cuda(collectives::LocalRank()) : *device;
  t.micro_batches = static_cast<int>(o.micro_batches);
  t.seed = static_cast<uint64_t>(o.seed);
  t.dump_graph = o.dump_graph;
  t.check_plan = o.check_plan;
  t.offload = o.offload;
  t.recompute = o.recompute;
  t.communicator = comm.get();
  t.zero = o.zero;
  const Shape micro{o.batch / world, o.seq};
  std::optional<graph::SparseUpdateSpec> sparse;
  if (!o.sparse_update.empty()) {
    STRATA_ASSIGN_OR_RETURN(sparse, graph::ReadSparseUpdateFile(o.sparse_update));
  } else if (o.sparse_budget > 0) {
    if (world > 1) {
      return UsageError(absl::StrCat(
          "--sparse-budget runs its analysis in one process, not on ", world, " ranks: run it "
          "alone, then pass the rules it prints with --sparse-update"));
    }
    STRATA_ASSIGN_OR_RETURN(sparse, ChooseByBudget(o, config, t, file.tokens, n_train));
  }
  const RunConfig run =
      MakeRunConfig(o, config, file, n_train, min_lr, sparse ? &*sparse : nullptr);
  graph::TrainerState resumed;
  if (!o.resume.empty()) {
    STRATA_ASSIGN_OR_RETURN(resumed, graph::ReadTrainerState(o.resume));
    STRATA_ASSIGN_OR_RETURN(const std::vector<std::string> changes, run.Check(resumed.extra, o.resume));
    for (const std::string& change : changes) std::printf("resuming %s: %s\n", o.resume.c_str(), change.c_str());
  }

  LanguageModel model = BuildLanguageModel(config);
  if (sparse) {
    absl::StatusOr<graph::SparseUpdatePlan> plan = graph::ApplySparseUpdate(*model.module, *sparse);
    if (!plan.ok()) {
      const std::string flag = o.sparse_budget > 0
                                   ? absl::StrCat("--sparse-budget ", BytesText(o.sparse_budget))
                                   : absl::StrCat("--sparse-update ", o.sparse_update);
      return absl::Status(plan.status().code(),
                          absl::StrCat(flag, ": ", plan.status().message()));
    }
    std::printf("%s\n", plan->Summary().c_str());
  }
  STRATA_ASSIGN_OR_RETURN(const graph::ParamGroupPlan groups,
                          graph::ResolveParamGroups(*model.module, t.optimizer));
  STRATA_ASSIGN_OR_RETURN(
      std::unique_ptr<graph::Program> program,
      graph::Compile(*model.module, {{"ids", micro, DType::kI32}, {"targets", micro, DType::kI32}},
                     [&](absl::Span<const graph::Var> in) {
                       return graph::ops::CrossEntropy(model.forward(in[0]), in[1]);
                     },
                     t));
  if (o.dump_graph) std::cout << program->dump();
  std::string sparse_saving;
  if (sparse) {
    // The same step with every parameter trained, planned (not allocated), to show the saving.
    LanguageModel full_model = BuildLanguageModel(config);
    graph::TrainOptions full_options = t;
    full_options.dump_graph = false;
    STRATA_ASSIGN_OR_RETURN(
        const graph::PlannedStep full,
        graph::PlanTrainingStep(*full_model.module, {{"ids", micro, DType::kI32}, {"targets", micro, DType::kI32}},
                                [&](absl::Span<const graph::Var> in) {
                                  return graph::ops::CrossEntropy(full_model.forward(in[0]), in[1]);
                                },
                                full_options));
    sparse_saving = SparseSaving(program->memory_report(), program->graph(),
                                 graph::ReportPlannedMemory(full.graph, full.plan, full.config),
                                 full.graph);
  }

  const int64_t params = program->num_parameters();
  std::printf("strata-gpt: %s, %lld tokens (%s), vocab %lld, %s, "
              "%.2fM parameters, %d threads\n%s\n%s",
              o.data.c_str(), static_cast<long long>(n), file.format.c_str(),
              static_cast<long long>(config.vocab()), config.Describe().c_str(), params / 1e6,
              NumThreads(),
              program->memory_report().ToString().c_str(), OffloadSummary(o.offload).c_str());
  if (!sparse_saving.empty()) std::printf("%s\n", sparse_saving.c_str());
  std::printf("%s", groups.Summary().c_str());
  if (world > 1) {
    std::printf("data parallel over %d ranks (%s): %lld sequences per rank per micro-batch, "
                "ZeRO stage %d\n",
                world, comm->Describe().c_str(), static_cast<long long>(o.batch / world),
                o.zero.stage);
  }
  if (world == 1 && o.zero.stage > 0) {
    std::printf("--zero-stage %d: one rank holds everything, nothing to partition (run several "
                "ranks with launch/strata-run)\n", o.zero.stage);
  }
  std::fflush(stdout);

  if (!o.init_from.empty()) {
    STRATA_RETURN_IF_ERROR(LoadHuggingFaceWeights(*program, config, o.init_from));
    std::printf("loaded weights from %s\n", o.init_from.c_str());
  }
  STRATA_ASSIGN_OR_RETURN(MetricsFile metrics, MetricsFile::Open(rank == 0 ? o.metrics : ""));
  RankRows mine(o.micro_batches, o.batch, o.seq, world, rank);
  Batcher train(file.tokens, 0, n_train, o.batch * o.micro_batches, o.seq, o.shuffle, o.seed);
  Batcher val(file.tokens, n_train, n, o.batch * o.micro_batches, o.seq, false, o.seed);
  if (!o.resume.empty()) {
    STRATA_ASSIGN_OR_RETURN(const graph::TrainerState state, graph::LoadCheckpoint(*program, o.resume));
    std::printf("resumed from %s at step %lld (data position %llu)\n", o.resume.c_str(),
                static_cast<long long>(program->step_count()),
                static_cast<unsigned long long>(state.data_position));
  }
  // Batches are a pure function of the step (see Batcher), so the seed and the step are the
  // whole data state; the position is recorded for people reading the checkpoint.
  auto save = [&]() -> absl::Status {
    graph::TrainerState state;
    state.data_position = static_cast<uint64_t>(train.Start(program->step_count()));
    state.rng = absl::StrCat("seed=", o.seed);
    run.Record(state.extra);
    state.extra["data"] = o.data;
    // Collective: each rank writes what it holds (with ZeRO shards, its own files).
    STRATA_RETURN_IF_ERROR(graph::SaveCheckpoint(*program, state, o.save));
    std::printf("saved checkpoint %s at step %lld\n", o.save.c_str(),
                static_cast<long long>(program->step_count()));
    return absl::OkStatus();
  };

  const int64_t last = o.stop_at > 0 ? std::min(o.stop_at, o.steps) : o.steps;
  const int64_t first = program->step_count();
  // With f16's loss scaling a step whose gradients overflow is skipped and retried at half the
  // scale (Note [mixed precision]); gradients that stay non-finite at any scale diverged.
  constexpr int kMaxSkippedInARow = 64;
  int skipped_in_a_row = 0;
  while (program->step_count() < last) {
    const int64_t s = program->step_count();
    // The first step of a process also pays for first touches of memory: leave it out of the
    // profile unless it is the only one.
    program->set_profiling(o.profile && (s > first || last - first == 1));
    STRATA_ASSIGN_OR_RETURN(const graph::StepStats st, program->Step(mine.Of(train.Get(s))));
    const bool scales = program->loss_scaler() != nullptr;
    if (st.skipped || st.step % o.log_every == 0 || st.step == o.steps || st.step == 1) {
      const std::string scale =
          scales ? absl::StrFormat(" | scale %g%s", st.loss_scale,
                                   st.skipped ? " (overflow: step skipped)" : "")
                 : "";
      std::printf("step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s%s%s\n",
                  static_cast<long long>(st.step), static_cast<long long>(o.steps), st.loss, st.lr,
                  st.grad_norm, st.step_ms, st.tokens_per_s * world, scale.c_str(),
                  IoWaitText(st, o.offload).c_str());
      std::fflush(stdout);
    }
    nlohmann::json record = {
        {"step", st.step}, {"loss", st.loss}, {"lr", st.lr}, {"grad_norm", st.grad_norm},
        {"step_ms", st.step_ms}, {"tokens_per_s", st.tokens_per_s * world},
        {"world_size", st.world_size}, {"comm_bytes", st.comm_bytes}};
    if (scales) {
      record["loss_scale"] = st.loss_scale;
      record["skipped"] = st.skipped;
    }
    AddStepMemory(st, record);
    if (st.step == last) record["peak_rss_bytes"] = PeakRssBytes();
    // A skipped step changed nothing: the last step's evaluation and checkpoint still hold.
    if (!st.skipped && o.eval_every > 0 && (st.step % o.eval_every == 0 || st.step == o.steps)) {
      double sum = 0;
      for (int64_t i = 0; i < o.eval_batches; ++i) {
        STRATA_ASSIGN_OR_RETURN(const double l, program->Evaluate(mine.Of(val.Get(i))));
        sum += l;
      }
      record["val_loss"] = sum / o.eval_batches;
      std::printf("step %5lld | held-out loss %.4f\n", static_cast<long long>(st.step),
                  sum / o.eval_batches);
    }
    STRATA_RETURN_IF_ERROR(metrics.Write(record));  // the last skipped step's record too
    skipped_in_a_row = st.skipped ? skipped_in_a_row + 1 : 0;
    if (skipped_in_a_row == kMaxSkippedInARow) {
      return absl::DataLossError(absl::StrCat(
          kMaxSkippedInARow, " steps in a row had non-finite gradients at every loss scale down "
          "to ", st.loss_scale, " (loss ", st.loss, "): training diverged"));
    }
    if (!st.skipped && !o.save.empty() && o.save_every > 0 && st.step % o.save_every == 0) {
      STRATA_RETURN_IF_ERROR(save());
    }
  }
  if (!o.save.empty()) STRATA_RETURN_IF_ERROR(save());
  if (!o.export_path.empty()) {
    // Collective: every rank takes part in gathering the parameters, rank 0 writes the files;
    // through Program::ReadState, wherever the parameters live (device, host or NVMe).
    STRATA_ASSIGN_OR_RETURN(const std::string config_json,
                            ExportHuggingFace(*program, config, o.export_path, rank));
    std::printf("exported %s (%lld bytes) and %s at step %lld, in Hugging Face %s layout\n",
                o.export_path.c_str(),
                static_cast<long long>(std::filesystem::file_size(o.export_path)),
                config_json.c_str(), static_cast<long long>(program->step_count()),
                config.is_llama() ? "LlamaForCausalLM" : "GPT-2");
  }
  if (o.profile) std::printf("%s", program->ProfileReport().c_str());
  std::printf("strata-gpt: done at step %lld, peak RSS %s\n",
              static_cast<long long>(program->step_count()), MebibytesText(PeakRssBytes()).c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) {
  using strata::examples::Flags;
  using strata::examples::kMaxCount;
  using strata::examples::kMaxSeed;
  strata::examples::Options o;
  Flags f("strata-gpt", "Trains a GPT-2- or Llama-architecture model on a text file or a token file.");
  f.Add("data", &o.data,
        "text file (bytes) or .bin token file (nanoGPT uint16, llm.c uint16 or llm.c uint32 as its "
        "llama-3 tooling writes); required");
  f.Add("arch", &o.arch,
        "gpt (GPT-2: learned positions, LayerNorm, GELU, tied head) or llama (rotary positions, "
        "RMSNorm, SwiGLU, grouped-query attention; Hugging Face LlamaForCausalLM's layout)");
  f.Add("layers", &o.layers, {.min = 1, .max = 1024}, "transformer blocks");
  f.Add("width", &o.width, {.min = 1, .max = 65536}, "model width");
  f.Add("heads", &o.heads, {.min = 1, .max = 65536}, "attention heads (must divide --width)");
  f.Add("kv-heads", &o.kv_heads, {.min = 0, .max = 65536, .zero = "--heads"},
        "Llama: key/value heads (must divide --heads; fewer is grouped-query attention)");
  f.Add("ffn", &o.ffn, {.min = 0, .max = 1 << 20, .zero = "8/3 --width, rounded up to 64"},
        "Llama: SwiGLU width (intermediate_size)");
  f.Add("rope-theta", &o.rope_theta, {.min = 1, .max = 1e12, .min_open = true},
        "Llama: rotary base frequency");
  f.Add("tie-embeddings", &o.tie_embeddings, "Llama: the output head is the token embedding");
  f.Add("seq", &o.seq, {.min = 1, .max = 1 << 20},
        "sequence length (also the number of positions)");
  f.Add("batch", &o.batch, {.min = 1, .max = 1 << 20}, "sequences per micro-batch");
  f.Add("micro-batches", &o.micro_batches, {.min = 1, .max = 1 << 16},
        "micro-batches accumulated per step");
  f.Add("vocab", &o.vocab,
        {.min = 0, .max = 1 << 20,
         .zero = "256 for text, 128256 for uint32 token files, 50257 for other token files"},
        "vocabulary");
  f.Add("steps", &o.steps, {.min = 0, .max = kMaxCount},
        "optimizer steps (the schedule's length); 0 with --export writes the model as it starts");
  f.Add("stop-at", &o.stop_at, {.min = 0, .max = kMaxCount, .zero = "--steps"},
        "end this run at this step, e.g. to --resume later");
  f.Add("lr", &o.lr, {.min = 0, .max = 10}, "peak learning rate");
  f.Add("min-lr", &o.min_lr, {.min = -1, .max = 10},
        "final learning rate of the cosine schedule (negative: lr / 10)");
  f.Add("warmup", &o.warmup, {.min = 0, .max = kMaxCount}, "linear warm-up steps");
  f.Add("schedule", &o.schedule, "constant or cosine");
  f.Add("beta1", &o.beta1, {.min = 0, .max = 1, .max_open = true}, "AdamW beta1");
  f.Add("beta2", &o.beta2, {.min = 0, .max = 1, .max_open = true}, "AdamW beta2");
  f.Add("eps", &o.eps, {.min = 0, .max = 1, .min_open = true}, "AdamW epsilon");
  f.Add("weight-decay", &o.weight_decay, {.min = 0, .max = 10},
        "AdamW weight decay (tensors with 2+ dimensions; --param-group sets it per group)");
  f.Add("clip", &o.clip, {.min = 0, .max = 1e9, .zero = "off"},
        "clip the global gradient norm to this");
  f.Add("precision", &o.precision,
        "f32, bf16 or f16: working precision of weights and activations, with f32 master weights "
        "and optimizer state; f16 scales its loss dynamically, skipping steps that overflow "
        "(docs/mixed-precision.md; on CPU the values are rounded to it)");
  f.Add("device", &o.device,
        "cpu, cuda:N to run the step on that GPU, or cuda for the GPU of this rank's local rank "
        "(one GPU per rank under mpirun or srun); offload and data parallel (over MPI) run there "
        "too (docs/cuda.md)");
  f.Add("seed", &o.seed, {.min = 0, .max = kMaxSeed}, "initialization and shuffling seed");
  f.Add("shuffle", &o.shuffle, "random windows instead of sequential batches");
  f.Add("init-from", &o.init_from,
        "Hugging Face safetensors file to start from (GPT-2, or with --arch llama a Llama with "
        "its config.json beside it); shape flags left out come from it, shape flags given must "
        "agree with it");
  f.Add("sparse-update", &o.sparse_update,
        "JSON file of [{\"match\": \"<glob over parameter paths>\", \"update\": "
        "\"frozen|bias_only|full|channels:F\"}]: train only what it selects (later entries "
        "override earlier ones; unmatched parameters are frozen), for fine-tuning with --init-from");
  f.AddBytes("sparse-budget", &o.sparse_budget, {.zero = "off"},
             "choose what trains by contribution analysis so that the planned training step, "
             "weights included, fits this size (512M, 2G); instead of --sparse-update; measures on "
             "the --val-fraction held-out tokens");
  AddSparseBudgetAnalysisFlags(f, &o.sparse_budget_batches, &o.sparse_budget_ratios);
  f.Add("save", &o.save, "checkpoint directory to write at the end (and every --save-every)");
  f.Add("save-every", &o.save_every, {.min = 0, .max = kMaxCount, .zero = "only at the end"},
        "steps between checkpoints");
  f.Add("resume", &o.resume,
        "checkpoint directory to resume from (refused when a setting that changes the math "
        "differs; a changed --steps is announced)");
  f.Add("export", &o.export_path,
        "write the model at the end to this safetensors file in Hugging Face layout "
        "(GPT2LMHeadModel: Conv1D weights [in, out]; LlamaForCausalLM), f32, and its config.json "
        "beside it, as transformers' save_pretrained does");
  f.Add("metrics", &o.metrics, "write one JSON object per step to this file");
  f.Add("eval-every", &o.eval_every, {.min = 0, .max = kMaxCount, .zero = "never"},
        "steps between held-out evaluations");
  f.Add("eval-batches", &o.eval_batches, {.min = 1, .max = 1 << 20},
        "batches per held-out evaluation");
  f.Add("val-fraction", &o.val_fraction, {.min = 0, .max = 1, .max_open = true, .zero = "none"},
        "fraction of the tokens held out when --eval-every is set");
  f.Add("log-every", &o.log_every, {.min = 1, .max = kMaxCount}, "steps between progress lines");
  f.Add("dump-graph", &o.dump_graph, "print the IR after each compile pass");
  f.Add("check-plan", &o.check_plan, "check the memory plan while training (slow; same losses)");
  f.Add("recompute", &o.recompute,
        "keep only each transformer block's input through the forward and recompute its "
        "activations in the backward (less memory, more time; same losses)");
  f.Add("threads", &o.threads, {.min = 0, .max = 4096, .zero = "all cores"}, "threads per rank");
  f.Add("comm-timeout", &o.comm_timeout,
        {.min = 0, .max = 1e6, .zero = "STRATA_COMM_TIMEOUT, else 300"},
        "seconds a collective may wait for the other ranks before the job is ended");
  f.Add("profile", &o.profile, "print the time per op at the end (steps after the first)");
  std::vector<std::string> param_groups;
  strata::examples::AddParamGroupFlag(f, &param_groups);
  strata::examples::OffloadFlags offload;
  offload.Register(f);
  strata::examples::ZeroFlags zero;
  zero.Register(f);
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  absl::StatusOr<std::vector<strata::graph::ParamGroup>> groups =
      strata::examples::ParseParamGroupFlags(param_groups);
  if (!groups.ok()) return f.ExitCode(groups.status());
  o.param_groups = *std::move(groups);
  o.zero = zero.options();
  absl::StatusOr<strata::graph::OffloadOptions> placement = offload.Resolve(f);
  if (!placement.ok()) return f.ExitCode(placement.status());
  o.offload = *placement;
  for (const char* name : {"layers", "width", "heads", "vocab", "seq", "kv-heads", "ffn",
                           "rope-theta", "tie-embeddings"}) {
    if (f.given(name)) o.given.insert(name);
  }
  // A short run keeps its default warm-up shorter than itself.
  if (!f.given("warmup") && o.steps > 0) o.warmup = std::min<int64_t>(o.warmup, o.steps - 1);
  return f.ExitCode(strata::examples::Train(o));
}
