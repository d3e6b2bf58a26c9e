#include "graph/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/safetensors.h"
#include "runtime/safetensors_writer.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

namespace fs = std::filesystem;

constexpr char kFormat[] = "strata checkpoint";
constexpr int kVersion = 1;

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
    for (int i = 0; i < 6; ++i) name += kChars[rd() % (sizeof(kChars) - 1)];
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

nlohmann::json StateJson(const Program& program, const TrainerState& state,
                         const std::map<std::string, uint64_t>& file_bytes) {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["step"] = program.step_count();
  j["trainer"] = {{"data_position", state.data_position},
                  {"rng", state.rng},
                  {"counters", state.counters},
                  {"extra", state.extra}};
  j["files"] = file_bytes;
  return j;
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return ErrnoError(errno, absl::StrCat("cannot create ", path.string()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path.string(), " failed"));
  return absl::OkStatus();
}

// Writes `tensors` (program state by name) to `path`, wherever each lives: in memory as it is,
// homed on NVMe read one tensor at a time (the file format does not depend on where the state
// lived, and a state larger than memory is never held in memory at once).
absl::Status WriteStateFile(const Program& program, const fs::path& path,
                            const std::vector<std::pair<std::string, Tensor>>& tensors,
                            const std::vector<std::pair<std::string, ValueId>>& values) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, v] : values) {
    const TensorType& type = program.graph().value(v).type;
    entries.push_back({name, type.dtype, type.shape});
  }
  STRATA_ASSIGN_OR_RETURN(SafetensorsWriter writer,
                          SafetensorsWriter::Create(path.string(), std::move(entries)));
  for (size_t i = 0; i < values.size(); ++i) {
    if (tensors[i].second.defined()) {
      STRATA_RETURN_IF_ERROR(writer.Write(tensors[i].second));
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(const Tensor t, program.ReadState(values[i].second, DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(writer.Write(t));
  }
  return writer.Commit();
}

absl::Status WriteFiles(const Program& program, const TrainerState& state, const fs::path& tmp) {
  std::map<std::string, uint64_t> file_bytes;
  const std::pair<const char*, bool> files[] = {{kCheckpointWeightsFile, false},
                                                {kCheckpointOptimizerFile, true}};
  for (const auto& [name, optimizer] : files) {
    const fs::path path = tmp / name;
    STRATA_RETURN_IF_ERROR(optimizer ? WriteStateFile(program, path, program.optimizer_state(),
                                                      program.optimizer_state_values())
                                     : WriteStateFile(program, path, program.parameters(),
                                                      program.parameter_values()));
    std::error_code ec;
    file_bytes[name] = fs::file_size(path, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot stat ", path.string(), ": ", ec.message()));
    STRATA_RETURN_IF_ERROR(Sync(path, /*directory=*/false));
  }
  const fs::path state_path = tmp / kCheckpointStateFile;
  std::string text;
  try {
    text = StateJson(program, state, file_bytes).dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {  // strings that are not UTF-8
    return absl::InvalidArgumentError(absl::StrCat("trainer state: ", e.what()));
  }
  STRATA_RETURN_IF_ERROR(WriteText(state_path, text));
  STRATA_RETURN_IF_ERROR(Sync(state_path, /*directory=*/false));
  return Sync(tmp, /*directory=*/true);
}

// --- loading ---

// A program value and the file tensor it is loaded from.
struct Copy {
  ValueId value;
  const SafetensorsFile* file;
  std::string name;
};

// Every tensor `want` lists must be in `file` with the same dtype and shape, and `file` must hold
// nothing else (checked from the header, before any tensor is read). Appends to `copies`.
absl::Status Match(const SafetensorsFile& file, const Program& program,
                   const std::vector<std::pair<std::string, ValueId>>& want,
                   std::vector<Copy>& copies) {
  std::map<std::string, bool> used;
  for (const std::string& name : file.names()) used[name] = false;
  for (const auto& [name, value] : want) {
    const TensorType& dst = program.graph().value(value).type;
    if (!file.Contains(name)) {
      return absl::NotFoundError(absl::StrCat("checkpoint file ", file.path(), " has no tensor '",
                                              name, "', which the program has"));
    }
    const SafetensorsFile::Entry src = file.Find(name).value();
    if (src.dtype != dst.dtype || src.shape != dst.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint file ", file.path(), ": tensor '", name, "' is ",
                       DTypeName(src.dtype), src.shape.ToString(), ", the program's is ",
                       DTypeName(dst.dtype), dst.shape.ToString()));
    }
    copies.push_back({value, &file, name});
    used[name] = true;
  }
  std::vector<std::string> unknown;
  for (const auto& [name, u] : used) {
    if (!u) unknown.push_back(name);
  }
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint file ", file.path(), " has ",
                                                   unknown.size(), " tensor(s) the program does not: ",
                                                   absl::StrJoin(unknown, ", ")));
  }
  return absl::OkStatus();
}

struct StateFile {
  int64_t step = 0;
  TrainerState trainer;
  std::map<std::string, uint64_t> file_bytes;
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
  if (!j.contains("version") || j["version"] != kVersion) {
    return bad(absl::StrCat("version ", j.value("version", nlohmann::json()).dump(),
                            ", this build reads version ", kVersion));
  }
  StateFile s;
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0) {
    return bad("'step' is not a non-negative integer");
  }
  s.step = j["step"].get<int64_t>();
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

}  // namespace

absl::Status SaveCheckpoint(const Program& program, const TrainerState& state,
                            const std::string& dir) {
  fs::path target = fs::path(dir).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "a/b/" -> "a/b"
  if (target.empty()) return absl::InvalidArgumentError("SaveCheckpoint: empty directory name");
  std::error_code ec;
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("SaveCheckpoint: cannot create ", parent.string(), ": ", ec.message()));
  }
  const fs::file_status st = fs::symlink_status(target, ec);
  const bool exists = fs::exists(st);
  if (exists) {
    const bool replaceable = fs::is_directory(st) && (fs::exists(target / kCheckpointStateFile) ||
                                                      fs::is_empty(target, ec));
    if (!replaceable) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SaveCheckpoint: ", target.string(), " exists and is not a checkpoint (no ",
          kCheckpointStateFile, "); refusing to replace it"));
    }
  }

  STRATA_ASSIGN_OR_RETURN(fs::path tmp, MakeTempDir(target.string() + ".tmp-"));
  absl::Status s = WriteFiles(program, state, tmp);
  if (s.ok()) s = Publish(tmp, target, exists);
  if (!s.ok()) {
    (void)RemoveAll(tmp);  // never published: holds only the new, unfinished files
    return absl::Status(s.code(), absl::StrCat("SaveCheckpoint ", target.string(), ": ", s.message()));
  }
  return Sync(parent, /*directory=*/true);
}

absl::StatusOr<TrainerState> LoadCheckpoint(Program& program, const std::string& dir) {
  const fs::path root(dir);
  STRATA_ASSIGN_OR_RETURN(StateFile state, ReadStateFile(root / kCheckpointStateFile));
  // Check every file before reading any, so that the first error names what is missing.
  for (const char* name : {kCheckpointWeightsFile, kCheckpointOptimizerFile}) {
    STRATA_RETURN_IF_ERROR(CheckComplete(root, name, state));
  }
  // Headers first, then one tensor at a time: the state may be larger than memory.
  std::vector<Copy> copies;
  STRATA_ASSIGN_OR_RETURN(SafetensorsFile weights,
                          SafetensorsFile::Open((root / kCheckpointWeightsFile).string()));
  STRATA_RETURN_IF_ERROR(Match(weights, program, program.parameter_values(), copies));
  STRATA_ASSIGN_OR_RETURN(SafetensorsFile optimizer,
                          SafetensorsFile::Open((root / kCheckpointOptimizerFile).string()));
  STRATA_RETURN_IF_ERROR(Match(optimizer, program, program.optimizer_state_values(), copies));

  for (const Copy& c : copies) {
    STRATA_ASSIGN_OR_RETURN(const Tensor src, c.file->Load(c.name, DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(program.WriteState(c.value, src));
  }
  program.set_step_count(state.step);
  return state.trainer;
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir) {
  STRATA_ASSIGN_OR_RETURN(StateFile state, ReadStateFile(fs::path(dir) / kCheckpointStateFile));
  return state.trainer;
}

}  // namespace strata::graph
