#include "graph/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/collective_state.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors.h"
#include "runtime/safetensors_writer.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

namespace fs = std::filesystem;

constexpr char kFormat[] = "strata checkpoint";
constexpr int kWholeVersion = 1;    // weights.safetensors + optimizer.safetensors
constexpr int kShardedVersion = 2;  // Note [sharded checkpoints]
constexpr int kSuffixLength = 6;    // of MakeTempDir's names

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, ": ", std::strerror(err)));
}

// fsync a file or a directory, so that a rename published after it points at durable bytes.
absl::Status Sync(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", path.string(), " to sync it"));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError(err, absl::StrCat("fsync of ", path.string()));
  return absl::OkStatus();
}

// A new directory "<prefix>XXXXXX". Unlike mkdtemp's 0700, its mode follows the umask, as the
// checkpoint directory it becomes should.
absl::StatusOr<fs::path> MakeTempDir(const std::string& prefix) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string name = prefix;
    for (int i = 0; i < kSuffixLength; ++i) name += kChars[rd() % (sizeof(kChars) - 1)];
    if (::mkdir(name.c_str(), 0777) == 0) return fs::path(name);
    if (errno != EEXIST) return ErrnoError(errno, absl::StrCat("cannot create a directory ", name));
  }
  return absl::AlreadyExistsError(absl::StrCat("cannot find a free name ", prefix, "XXXXXX"));
}

// Removes `dir` and everything in it; failures are reported but leave the checkpoint intact.
absl::Status RemoveAll(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", dir.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// Moves the finished directory `tmp` to `target`, replacing an existing `target` (see Note
// [atomic checkpoints]); the old checkpoint is removed only once the new one is in place.
// The old checkpoint's removal is best-effort: once the new one is in place the save succeeded.
absl::Status Publish(const fs::path& tmp, const fs::path& target, bool exists) {
  if (!exists) {
    if (std::rename(tmp.c_str(), target.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("cannot rename ", tmp.string(), " to ", target.string()));
    }
    return absl::OkStatus();
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    (void)RemoveAll(tmp);  // now holds the old checkpoint
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return ErrnoError(errno, absl::StrCat("cannot exchange ", tmp.string(), " and ", target.string()));
  }
  // No exchange on this filesystem: move the old one aside first.
  STRATA_ASSIGN_OR_RETURN(fs::path aside, MakeTempDir(target.string() + ".old-"));
  if (std::rename(target.c_str(), aside.c_str()) != 0) {
    const int err = errno;
    (void)RemoveAll(aside);
    return ErrnoError(err, absl::StrCat("cannot rename ", target.string(), " aside"));
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    std::rename(aside.c_str(), target.c_str());  // put the old one back
    return ErrnoError(err, absl::StrCat("cannot rename ", tmp.string(), " to ", target.string()));
  }
  (void)RemoveAll(aside);
  return absl::OkStatus();
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return ErrnoError(errno, absl::StrCat("cannot create ", path.string()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path.string(), " failed"));
  return absl::OkStatus();
}

// The target directory of a save, resolved the same way on every rank.
struct Target {
  fs::path dir, parent;
};

absl::StatusOr<Target> ResolveTarget(const std::string& dir, absl::string_view who) {
  fs::path target = fs::path(dir).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "a/b/" -> "a/b"
  if (target.empty()) return absl::InvalidArgumentError(absl::StrCat(who, ": empty directory name"));
  return Target{target, target.has_parent_path() ? target.parent_path() : fs::path(".")};
}

absl::Status CreateParent(const Target& t, absl::string_view who) {
  std::error_code ec;
  fs::create_directories(t.parent, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(who, ": cannot create ", t.parent.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

// Rank 0 runs `first`, then makes a new directory "<prefix>XXXXXX"; every rank gets its path and
// checks that it sees it (Note [sharded checkpoints]). Collective with `comm`; on any rank's
// failure every rank fails and the directory is gone.
absl::StatusOr<fs::path> ShareNewDirectory(collectives::Communicator* comm, const std::string& prefix,
                                           const std::string& shown,
                                           const std::function<absl::Status()>& first) {
  const bool leader = comm == nullptr || comm->rank() == 0;
  absl::StatusOr<fs::path> made = absl::UnknownError("not made");
  if (leader) {
    absl::Status s = first();
    made = s.ok() ? MakeTempDir(prefix) : absl::StatusOr<fs::path>(s);
  }
  if (comm == nullptr || comm->world_size() == 1) return made;
  // Rank 0's status code and the name's suffix, one character per element.
  absl::StatusOr<Tensor> message =
      Tensor::Zeros(Shape{1 + kSuffixLength}, DType::kI32, DefaultCpuAllocator());
  absl::Status sent = message.status();
  if (sent.ok()) {
    int32_t* m = message->data<int32_t>();
    if (leader) {
      m[0] = static_cast<int32_t>(made.status().code());
      if (made.ok()) {
        const std::string name = made->string();
        for (int i = 0; i < kSuffixLength; ++i) m[1 + i] = name[name.size() - kSuffixLength + i];
      }
    }
    sent = comm->Blocking().Broadcast(*message, /*root=*/0);
  }
  absl::Status mine;
  fs::path path;
  if (!sent.ok()) {
    mine = sent;
  } else if (leader) {
    mine = made.status();
    if (made.ok()) path = *made;
  } else if (const int32_t* m = message->data<int32_t>(); m[0] != 0) {
    mine = absl::Status(static_cast<absl::StatusCode>(m[0]),
                        absl::StrCat(shown, ": rank 0 failed (its own error says why)"));
  } else {
    std::string name = prefix;
    for (int i = 0; i < kSuffixLength; ++i) name += static_cast<char>(m[1 + i]);
    path = name;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
      mine = absl::FailedPreconditionError(absl::StrCat(
          shown, " is not on a file system every rank sees (rank ", comm->rank(),
          " cannot see rank 0's ", path.string(), ")"));
    }
  }
  const absl::Status all = AgreeOnRanks(comm, mine, shown);
  if (!all.ok()) {
    if (leader && made.ok()) (void)RemoveAll(*made);
    return all;
  }
  return path;
}

nlohmann::json TrainerJson(const TrainerState& state) {
  return {{"data_position", state.data_position},
          {"rng", state.rng},
          {"counters", state.counters},
          {"extra", state.extra}};
}

// The state values of `program` that this rank writes, by file (Note [sharded checkpoints]).
struct FilePlan {
  std::string file;
  std::vector<std::pair<std::string, ValueId>> values;
};

std::vector<FilePlan> PlanFiles(const Program& program, bool sharded, int rank, int world) {
  std::vector<FilePlan> plans;
  const std::vector<std::pair<std::string, ValueId>>* kinds[] = {&program.parameter_values(),
                                                                 &program.optimizer_state_values()};
  for (int k = 0; k < 2; ++k) {
    const bool optimizer = k == 1;
    if (!sharded) {  // rank 0's whole state is everybody's
      if (rank == 0) {
        plans.push_back({optimizer ? kCheckpointOptimizerFile : kCheckpointWeightsFile, *kinds[k]});
      }
      continue;
    }
    FilePlan plan{CheckpointShardFile(optimizer, rank, world), {}};
    for (const auto& [name, v] : *kinds[k]) {
      const Value& value = program.graph().value(v);
      if (value.shard ? value.shard->count > 0 : rank == 0) plan.values.emplace_back(name, v);
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

// Writes `plan` into `dir`, one value at a time through Program::ReadState, wherever it lives
// (the file does not depend on the home, and a state larger than memory is never held at once).
absl::Status WriteFile(const Program& program, const fs::path& dir, const FilePlan& plan) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, v] : plan.values) {
    const Value& value = program.graph().value(v);
    entries.push_back({name, value.type.dtype,
                       value.shard ? Shape{value.shard->count} : value.type.shape});
  }
  const fs::path path = dir / plan.file;
  STRATA_ASSIGN_OR_RETURN(SafetensorsWriter writer,
                          SafetensorsWriter::Create(path.string(), std::move(entries)));
  for (const auto& [name, v] : plan.values) {
    STRATA_ASSIGN_OR_RETURN(const Tensor t, program.ReadState(v, DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(writer.Write(t));
  }
  STRATA_RETURN_IF_ERROR(writer.Commit());
  return Sync(path, /*directory=*/false);
}

// The index of a sharded checkpoint: where every element of every tensor is. Every rank holds
// the same program (Note [same program on every rank] in program.cc), so rank 0 knows every
// rank's shards: ShardOf of the whole.
nlohmann::json TensorsJson(const Program& program, int world) {
  nlohmann::json tensors = nlohmann::json::object();
  const std::vector<std::pair<std::string, ValueId>>* kinds[] = {&program.parameter_values(),
                                                                 &program.optimizer_state_values()};
  for (int k = 0; k < 2; ++k) {
    for (const auto& [name, v] : *kinds[k]) {
      const Value& value = program.graph().value(v);
      const int64_t numel = value.type.shape.numel();
      nlohmann::json pieces = nlohmann::json::array();
      for (int r = 0; r < world; ++r) {
        const collectives::ShardRange range =
            value.shard ? collectives::ShardOf(numel, world, r) : collectives::ShardRange{0, numel};
        if (range.count > 0 && (value.shard || r == 0)) {
          pieces.push_back({{"file", CheckpointShardFile(k == 1, r, world)},
                            {"offset", range.offset},
                            {"count", range.count}});
        }
      }
      tensors[name] = {{"dtype", std::string(DTypeName(value.type.dtype))},
                       {"shape", value.type.shape.dims()},
                       {"pieces", std::move(pieces)}};
    }
  }
  return tensors;
}

// Rank 0, once every rank's files are in `tmp`: the index, with the size of every file.
absl::Status WriteIndex(const Program& program, const TrainerState& state, const fs::path& tmp,
                        bool sharded, int world) {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = sharded ? kShardedVersion : kWholeVersion;
  j["step"] = program.step_count();
  if (const optim::LossScaler* scaler = program.loss_scaler()) {  // Note [mixed precision]
    j["loss_scale"] = {{"scale", scaler->scale()}, {"good_steps", scaler->good_steps()}};
  }
  j["trainer"] = TrainerJson(state);
  std::map<std::string, uint64_t> file_bytes;
  std::vector<std::string> files;
  if (sharded) {
    for (int r = 0; r < world; ++r) {
      for (bool optimizer : {false, true}) files.push_back(CheckpointShardFile(optimizer, r, world));
    }
    j["world_size"] = world;
    j["tensors"] = TensorsJson(program, world);
  } else {
    files = {kCheckpointWeightsFile, kCheckpointOptimizerFile};
  }
  for (const std::string& name : files) {
    std::error_code ec;
    file_bytes[name] = fs::file_size(tmp / name, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot stat ", (tmp / name).string(), ": ", ec.message()));
    }
  }
  j["files"] = file_bytes;
  const fs::path state_path = tmp / kCheckpointStateFile;
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {  // strings that are not UTF-8
    return absl::InvalidArgumentError(absl::StrCat("trainer state: ", e.what()));
  }
  STRATA_RETURN_IF_ERROR(WriteText(state_path, text));
  STRATA_RETURN_IF_ERROR(Sync(state_path, /*directory=*/false));
  return Sync(tmp, /*directory=*/true);
}

bool HasShards(const Program& program) {
  for (const auto* named : {&program.parameter_values(), &program.optimizer_state_values()}) {
    for (const auto& [name, v] : *named) {
      if (program.graph().value(v).shard) return true;
    }
  }
  return false;
}

absl::Status Prefixed(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// --- loading ---

struct StateFile {
  int version = kWholeVersion;
  int64_t step = 0;
  // The dynamic loss scaler's state, when the saved program scaled its loss.
  bool has_loss_scale = false;
  double loss_scale = 0;
  int64_t good_steps = 0;
  TrainerState trainer;
  std::map<std::string, uint64_t> file_bytes;
  int world_size = 1;
  nlohmann::json tensors;  // version 2: the index (Note [sharded checkpoints])
};

absl::StatusOr<StateFile> ReadStateFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path.parent_path().string(), ": missing ",
                                            path.filename().string(), " (", std::strerror(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", path.string(), ": ", what));
  };
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object (truncated?)");
  if (!j.contains("format") || j["format"] != kFormat) return bad("not a strata checkpoint");
  if (!j.contains("version") || (j["version"] != kWholeVersion && j["version"] != kShardedVersion)) {
    return bad(absl::StrCat("version ", j.value("version", nlohmann::json()).dump(),
                            ", this build reads versions ", kWholeVersion, " and ", kShardedVersion));
  }
  StateFile s;
  s.version = j["version"].get<int>();
  if (s.version == kShardedVersion) {
    if (!j.contains("world_size") || !j["world_size"].is_number_integer() ||
        j["world_size"].get<int64_t>() < 1 || j["world_size"].get<int64_t>() > (1 << 30)) {
      return bad("'world_size' is not a positive integer (at most 2^30)");
    }
    s.world_size = j["world_size"].get<int>();
    if (!j.contains("tensors") || !j["tensors"].is_object()) return bad("no 'tensors' index");
    s.tensors = j["tensors"];
  }
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0) {
    return bad("'step' is not a non-negative integer");
  }
  s.step = j["step"].get<int64_t>();
  if (j.contains("loss_scale")) {
    const nlohmann::json& l = j["loss_scale"];
    if (!l.is_object() || !l.contains("scale") || !l["scale"].is_number() ||
        !(l["scale"].get<double>() > 0) || !l.contains("good_steps") ||
        !l["good_steps"].is_number_integer() || l["good_steps"].get<int64_t>() < 0) {
      return bad("'loss_scale' is not {\"scale\": a positive number, \"good_steps\": an integer >= 0}");
    }
    s.has_loss_scale = true;
    s.loss_scale = l["scale"].get<double>();
    s.good_steps = l["good_steps"].get<int64_t>();
  }
  if (!j.contains("files") || !j["files"].is_object()) return bad("no 'files' manifest");
  for (const auto& [name, bytes] : j["files"].items()) {
    if (!bytes.is_number_unsigned()) return bad(absl::StrCat("'files.", name, "' is not a size"));
    s.file_bytes[name] = bytes.get<uint64_t>();
  }
  if (!j.contains("trainer") || !j["trainer"].is_object()) return bad("no 'trainer' object");
  const nlohmann::json& t = j["trainer"];
  if (!t.contains("data_position") || !t["data_position"].is_number_unsigned()) {
    return bad("'trainer.data_position' is not a non-negative integer");
  }
  s.trainer.data_position = t["data_position"].get<uint64_t>();
  if (!t.contains("rng") || !t["rng"].is_string()) return bad("'trainer.rng' is not a string");
  s.trainer.rng = t["rng"].get<std::string>();
  if (!t.contains("counters") || !t["counters"].is_object()) return bad("no 'trainer.counters'");
  for (const auto& [k, v] : t["counters"].items()) {
    if (!v.is_number_integer()) return bad(absl::StrCat("'trainer.counters.", k, "' is not an integer"));
    s.trainer.counters[k] = v.get<int64_t>();
  }
  if (!t.contains("extra") || !t["extra"].is_object()) return bad("no 'trainer.extra'");
  for (const auto& [k, v] : t["extra"].items()) {
    if (!v.is_string()) return bad(absl::StrCat("'trainer.extra.", k, "' is not a string"));
    s.trainer.extra[k] = v.get<std::string>();
  }
  return s;
}

// The file must exist and have the size the manifest recorded.
absl::Status CheckComplete(const fs::path& dir, const std::string& name, const StateFile& state) {
  const fs::path path = dir / name;
  auto listed = state.file_bytes.find(name);
  if (listed == state.file_bytes.end()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir.string(), ": ", kCheckpointStateFile,
                                            " does not list ", name));
  }
  std::error_code ec;
  const uint64_t bytes = fs::file_size(path, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir.string(), ": missing ", name, " (", ec.message(), ")"));
  }
  if (bytes != listed->second) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir.string(), ": ", name, " is ", bytes,
                                            " bytes, the manifest says ", listed->second,
                                            bytes < listed->second ? " (truncated)" : ""));
  }
  return absl::OkStatus();
}

// A range of a tensor's flattened elements, held by one file under the tensor's name.
struct Piece {
  const SafetensorsFile* file;
  int64_t offset, count;
};

// A tensor of the checkpoint: its type, where it is described (for errors), and its pieces.
struct Stored {
  DType dtype;
  Shape shape;
  std::string where;
  std::vector<Piece> pieces;
  bool used = false;
};

// A checkpoint with its files' headers read: nothing of a tensor is read yet.
struct Opened {
  StateFile state;
  bool index_missing = false;
  std::map<std::string, SafetensorsFile> files;  // by file name; Piece points into it
  std::map<std::string, Stored> tensors;
};

absl::StatusOr<Shape> ParseShape(const nlohmann::json& j) {
  if (!j.is_array()) return absl::DataLossError("'shape' is not an array");
  std::vector<int64_t> dims;
  int64_t numel = 1;
  for (const nlohmann::json& d : j) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return absl::DataLossError("'shape' holds a negative or non-integer size");
    }
    const int64_t n = d.get<int64_t>();
    if (n > 0 && numel > (int64_t{1} << 62) / n) {  // no tensor has 2^62 elements
      return absl::DataLossError("'shape' has more elements than any tensor can");
    }
    numel *= n;
    dims.push_back(n);
  }
  return Shape(dims);
}

// Version 2: the tensors of the index, each piece checked against the header of its file.
absl::Status IndexTensors(const fs::path& index, Opened& o) {
  for (const auto& [name, t] : o.state.tensors.items()) {
    auto bad = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat("checkpoint file ", index.string(), ": tensor '", name, "': ", what));
    };
    if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t.contains("pieces") || !t["pieces"].is_array()) {
      return bad("not an object with 'dtype', 'shape' and 'pieces'");
    }
    absl::StatusOr<DType> dtype = ParseDType(t["dtype"].get<std::string>());
    if (!dtype.ok()) return bad(dtype.status().message());
    absl::StatusOr<Shape> shape = ParseShape(t["shape"]);
    if (!shape.ok()) return bad(shape.status().message());
    Stored s{*dtype, *shape, index.string(), {}};
    for (const nlohmann::json& p : t["pieces"]) {
      if (!p.is_object() || !p.contains("file") || !p["file"].is_string() || !p.contains("offset") ||
          !p["offset"].is_number_integer() || !p.contains("count") || !p["count"].is_number_integer()) {
        return bad("a piece is not {\"file\", \"offset\", \"count\"}");
      }
      const std::string file = p["file"].get<std::string>();
      const int64_t offset = p["offset"].get<int64_t>(), count = p["count"].get<int64_t>();
      if (offset < 0 || count < 0 || count > shape->numel() || offset > shape->numel() - count) {
        return bad(absl::StrCat("a piece of ", count, " elements at offset ", offset, " in ", file,
                                " is outside its ", shape->numel(), " elements"));
      }
      auto f = o.files.find(file);
      if (f == o.files.end()) {
        return bad(absl::StrCat("its piece is in ", file, ", which the manifest does not list"));
      }
      absl::StatusOr<SafetensorsFile::Entry> e = f->second.Find(name);
      if (!e.ok()) {
        return absl::DataLossError(absl::StrCat("checkpoint file ", f->second.path(),
                                                " has no tensor '", name,
                                                "', which the index places there"));
      }
      if (e->dtype != *dtype || e->shape.numel() != count) {
        return absl::DataLossError(absl::StrCat(
            "checkpoint file ", f->second.path(), ": tensor '", name, "' is ", DTypeName(e->dtype),
            e->shape.ToString(), ", but the index says it holds elements [", offset, ", ",
            offset + count, ") of ", DTypeName(*dtype), shape->ToString()));
      }
      s.pieces.push_back({&f->second, offset, count});
    }
    o.tensors.emplace(name, std::move(s));
  }
  return absl::OkStatus();
}

// Reads the index and every file's header; checks that every file is there and complete.
absl::Status OpenCheckpoint(const fs::path& root, Opened& o) {
  absl::StatusOr<StateFile> state = ReadStateFile(root / kCheckpointStateFile);
  if (!state.ok()) {
    o.index_missing = state.status().code() == absl::StatusCode::kNotFound;
    return state.status();
  }
  o.state = *std::move(state);
  std::vector<std::string> names;
  if (o.state.version == kWholeVersion) {
    names = {kCheckpointWeightsFile, kCheckpointOptimizerFile};
  } else {
    for (const auto& [name, bytes] : o.state.file_bytes) names.push_back(name);
  }
  // Check every file before reading any, so that the first error names what is missing.
  for (const std::string& name : names) STRATA_RETURN_IF_ERROR(CheckComplete(root, name, o.state));
  for (const std::string& name : names) {
    STRATA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open((root / name).string()));
    o.files.emplace(name, std::move(f));
  }
  if (o.state.version == kShardedVersion) return IndexTensors(root / kCheckpointStateFile, o);
  // Version 1: each tensor whole, in one piece, in its file.
  for (const auto& [file_name, f] : o.files) {
    for (const std::string& name : f.names()) {
      const SafetensorsFile::Entry e = f.Find(name).value();
      if (o.tensors.count(name) > 0) {
        return absl::DataLossError(absl::StrCat("checkpoint ", root.string(), ": tensor '", name,
                                                "' is in more than one file"));
      }
      o.tensors.emplace(name, Stored{e.dtype, e.shape, f.path(), {{&f, 0, e.shape.numel()}}});
    }
  }
  return absl::OkStatus();
}

// A program value, the elements [begin, end) of the flattened tensor that it holds, and the
// checkpoint tensor they come from.
struct Copy {
  ValueId value;
  int64_t begin, end;
  const std::string* name;
  const Stored* stored;
};

// Every state value of `program` must be in the checkpoint with its dtype and shape, every
// element it holds must be in some piece, and the checkpoint must hold nothing else.
absl::StatusOr<std::vector<Copy>> PlanCopies(const fs::path& root, Opened& o, const Program& program) {
  std::vector<Copy> copies;
  const std::vector<std::pair<std::string, ValueId>>* kinds[] = {&program.parameter_values(),
                                                                 &program.optimizer_state_values()};
  for (int k = 0; k < 2; ++k) {
    for (const auto& [name, v] : *kinds[k]) {
      const Value& value = program.graph().value(v);
      auto it = o.tensors.find(name);
      if (it == o.tensors.end()) {
        const fs::path where =
            root / (o.state.version == kShardedVersion ? kCheckpointStateFile
                    : k == 0                           ? kCheckpointWeightsFile
                                                       : kCheckpointOptimizerFile);
        return absl::NotFoundError(absl::StrCat("checkpoint file ", where.string(), " has no tensor '",
                                                name, "', which the program has"));
      }
      Stored& s = it->second;
      if (s.dtype != value.type.dtype || s.shape != value.type.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            "checkpoint file ", s.where, ": tensor '", name, "' is ", DTypeName(s.dtype),
            s.shape.ToString(), ", the program's is ", DTypeName(value.type.dtype),
            value.type.shape.ToString()));
      }
      s.used = true;
      const int64_t begin = value.shard ? value.shard->offset : 0;
      const int64_t end = value.shard ? begin + value.shard->count : value.type.shape.numel();
      std::sort(s.pieces.begin(), s.pieces.end(),
                [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
      int64_t covered = begin;
      for (const Piece& p : s.pieces) {
        if (p.offset > covered) break;
        covered = std::max(covered, p.offset + p.count);
      }
      if (covered < end) {
        int64_t next = end;
        for (const Piece& p : s.pieces) {
          if (p.offset > covered) next = std::min(next, p.offset);
        }
        return absl::DataLossError(absl::StrCat(
            "checkpoint ", root.string(), ": elements [", covered, ", ", next, ") of tensor '", name,
            "' are in none of its files (the index of ", o.state.world_size, " rank(s) lists ",
            s.pieces.size(), " piece(s))"));
      }
      copies.push_back({v, begin, end, &it->first, &s});
    }
  }
  std::map<std::string, std::vector<std::string>> unknown;  // by where they are described
  for (const auto& [name, s] : o.tensors) {
    if (!s.used) unknown[s.where].push_back(name);
  }
  if (!unknown.empty()) {
    std::vector<std::string> parts;
    for (const auto& [where, names] : unknown) {
      parts.push_back(absl::StrCat("checkpoint file ", where, " has ", names.size(),
                                   " tensor(s) the program does not: ", absl::StrJoin(names, ", ")));
    }
    return absl::InvalidArgumentError(absl::StrJoin(parts, "; "));
  }
  return copies;
}

// Fills each value from the pieces that overlap what it holds, one piece in memory at a time
// (plus the value, when it is assembled from several pieces).
absl::Status RunCopies(Program& program, const std::vector<Copy>& copies) {
  for (const Copy& c : copies) {
    const Value& value = program.graph().value(c.value);
    const size_t element = SizeOf(value.type.dtype);
    const Shape held = value.shard ? Shape{c.end - c.begin} : value.type.shape;
    auto exact = std::find_if(c.stored->pieces.begin(), c.stored->pieces.end(), [&](const Piece& p) {
      return p.offset == c.begin && p.count == c.end - c.begin;
    });
    if (exact != c.stored->pieces.end()) {  // one piece is the whole of it: no copy
      STRATA_ASSIGN_OR_RETURN(const Tensor src, exact->file->Load(*c.name, DefaultCpuAllocator()));
      const std::vector<int64_t> dims(held.dims().begin(), held.dims().end());
      STRATA_ASSIGN_OR_RETURN(const Tensor shaped, src.Reshape(dims));
      STRATA_RETURN_IF_ERROR(program.WriteState(c.value, shaped));
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(Tensor dst, Tensor::Empty(held, value.type.dtype, DefaultCpuAllocator()));
    int64_t covered = c.begin;  // pieces are sorted by offset (PlanCopies)
    for (const Piece& p : c.stored->pieces) {
      if (covered >= c.end) break;
      const int64_t lo = std::max(covered, p.offset), hi = std::min(c.end, p.offset + p.count);
      if (lo >= hi) continue;
      STRATA_ASSIGN_OR_RETURN(const Tensor src, p.file->Load(*c.name, DefaultCpuAllocator()));
      std::memcpy(static_cast<char*>(dst.raw_data()) + (lo - c.begin) * element,
                  static_cast<const char*>(src.raw_data()) + (lo - p.offset) * element,
                  static_cast<size_t>(hi - lo) * element);
      covered = hi;
    }
    STRATA_RETURN_IF_ERROR(program.WriteState(c.value, dst));
  }
  return absl::OkStatus();
}

}  // namespace

std::string CheckpointShardFile(bool optimizer, int rank, int world) {
  return absl::StrCat(optimizer ? "optimizer" : "weights", "-rank", rank, "-of-", world,
                      ".safetensors");
}

absl::Status SaveCheckpoint(const Program& program, const TrainerState& state,
                            const std::string& dir) {
  collectives::Communicator* comm = IsDataParallel(program) ? program.communicator() : nullptr;
  const int world = comm != nullptr ? comm->world_size() : 1;
  const int rank = comm != nullptr ? comm->rank() : 0;
  STRATA_ASSIGN_OR_RETURN(const Target target, ResolveTarget(dir, "SaveCheckpoint"));
  const std::string what = absl::StrCat("SaveCheckpoint ", target.dir.string());
  bool exists = false;  // rank 0: whether `dir` holds a checkpoint to replace
  auto prepare = [&]() -> absl::Status {
    STRATA_RETURN_IF_ERROR(CreateParent(target, "SaveCheckpoint"));
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(target.dir, ec);
    exists = fs::exists(st);
    if (exists && !(fs::is_directory(st) && (fs::exists(target.dir / kCheckpointStateFile) ||
                                             fs::is_empty(target.dir, ec)))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SaveCheckpoint: ", target.dir.string(), " exists and is not a checkpoint (no ",
          kCheckpointStateFile, "); refusing to replace it"));
    }
    return absl::OkStatus();
  };
  STRATA_ASSIGN_OR_RETURN(
      const fs::path tmp,
      ShareNewDirectory(comm, target.dir.string() + ".tmp-",
                        absl::StrCat("checkpoint directory ", target.dir.string()), prepare));

  // Every rank writes its files; rank 0 publishes only once all of them are there.
  const bool sharded = HasShards(program);
  absl::Status s;
  for (const FilePlan& plan : PlanFiles(program, sharded, rank, world)) {
    s = WriteFile(program, tmp, plan);
    if (!s.ok()) break;
  }
  s = AgreeOnRanks(comm, Prefixed(s, what), what);
  if (s.ok() && rank == 0) {
    s = WriteIndex(program, state, tmp, sharded, world);
    if (s.ok()) s = Publish(tmp, target.dir, exists);
    if (s.ok()) s = Sync(target.parent, /*directory=*/true);
    s = Prefixed(s, what);
  }
  s = AgreeOnRanks(comm, s, what);
  if (!s.ok() && rank == 0) (void)RemoveAll(tmp);  // never published: only new, unfinished files
  return s;
}

absl::StatusOr<TrainerState> LoadCheckpoint(Program& program, const std::string& dir) {
  collectives::Communicator* comm = IsDataParallel(program) ? program.communicator() : nullptr;
  const fs::path root(dir);
  const std::string what = absl::StrCat("LoadCheckpoint ", dir);
  // Headers first, then one tensor at a time: the state may be larger than memory.
  Opened o;
  absl::Status s = OpenCheckpoint(root, o);
  std::vector<Copy> copies;
  if (s.ok()) {
    absl::StatusOr<std::vector<Copy>> planned = PlanCopies(root, o, program);
    s = planned.status();
    if (planned.ok()) copies = *std::move(planned);
  }
  if (comm != nullptr) {
    // A rank that cannot find the index that rank 0 found does not share its file system.
    constexpr int kIndexMissing = 1000;  // not an absl::StatusCode
    const int code = o.index_missing ? kIndexMissing : static_cast<int>(s.code());
    STRATA_ASSIGN_OR_RETURN(const std::vector<int> codes, ExchangeCodes(comm, code));
    if (o.index_missing && codes[0] == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint directory ", dir, " is not on a file system every rank sees (rank ",
          comm->rank(), " cannot see rank 0's ", (root / kCheckpointStateFile).string(), ")"));
    }
    if (!s.ok()) return s;
    for (size_t r = 0; r < codes.size(); ++r) {
      if (codes[r] != 0) {
        return absl::Status(codes[r] == kIndexMissing ? absl::StatusCode::kFailedPrecondition
                                                      : static_cast<absl::StatusCode>(codes[r]),
                            absl::StrCat(what, ": rank ", r, " of ", codes.size(),
                                         " failed (its own error says why)"));
      }
    }
  }
  STRATA_RETURN_IF_ERROR(s);
  // The scaler's state is checked against this program's options before anything is written. A
  // checkpoint without one (saved without loss scaling) leaves the scaler as it is; a program
  // without loss scaling ignores it.
  const bool restores_scale = o.state.has_loss_scale && program.loss_scaler() != nullptr;
  if (restores_scale) {
    optim::LossScaler probe = *program.loss_scaler();
    STRATA_RETURN_IF_ERROR(Prefixed(probe.Restore(o.state.loss_scale, o.state.good_steps), what));
  }
  STRATA_RETURN_IF_ERROR(AgreeOnRanks(comm, RunCopies(program, copies), what));
  program.set_step_count(o.state.step);
  if (restores_scale) {
    STRATA_RETURN_IF_ERROR(program.RestoreLossScale(o.state.loss_scale, o.state.good_steps));
  }
  return o.state.trainer;
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir) {
  STRATA_ASSIGN_OR_RETURN(StateFile state, ReadStateFile(fs::path(dir) / kCheckpointStateFile));
  return state.trainer;
}

absl::Status CheckSharedDirectory(collectives::Communicator* communicator, const std::string& dir) {
  if (communicator == nullptr || communicator->world_size() == 1) return absl::OkStatus();
  STRATA_ASSIGN_OR_RETURN(const Target target, ResolveTarget(dir, "CheckSharedDirectory"));
  STRATA_ASSIGN_OR_RETURN(
      const fs::path probe,
      ShareNewDirectory(communicator, target.dir.string() + ".probe-",
                        absl::StrCat("checkpoint directory ", target.dir.string()),
                        [&] { return CreateParent(target, "CheckSharedDirectory"); }));
  // Every rank has looked (ShareNewDirectory agreed on it): the probe may go, and is gone on
  // every rank's return.
  const absl::Status removed = communicator->rank() == 0 ? RemoveAll(probe) : absl::OkStatus();
  return AgreeOnRanks(communicator, removed, absl::StrCat("checkpoint directory ", dir));
}

}  // namespace strata::graph
