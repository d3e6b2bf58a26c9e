// Checkpoints of a single-process training run: everything needed to resume it exactly — the
// parameters, the optimizer state, the step count, and the trainer's own state (where the data
// stream is, its RNG, anything else it names).
//
//   TrainerState state;
//   state.data_position = loader.position();
//   std::ostringstream rng_text;
//   rng_text << rng;                                    // std::mt19937_64's text form
//   state.rng = rng_text.str();
//   state.counters["epoch"] = epoch;
//   STRATA_RETURN_IF_ERROR(SaveCheckpoint(*program, state, "runs/gpt/latest"));
//   ...
//   STRATA_ASSIGN_OR_RETURN(TrainerState s, LoadCheckpoint(*program, "runs/gpt/latest"));
//   loader.Seek(s.data_position);          // program->step_count() is the saved step again
//
// A checkpoint is a directory of three files:
//   weights.safetensors    Program::parameters() under their model paths
//   optimizer.safetensors  Program::optimizer_state() ("<path>.exp_avg", "<path>.exp_avg_sq", ...)
//   trainer_state.json     {"format", "version", "step", "trainer": {...}, "files": {name: bytes}}
// The "files" manifest gives each tensor file's size, so a truncated file is refused by name.
//
// Note [atomic checkpoints]: SaveCheckpoint writes into a fresh directory next to the target
// ("<dir>.tmp-XXXXXX"), syncs it, and only then moves it into place: with one atomic exchange
// (renameat2 RENAME_EXCHANGE) when `dir` already holds a checkpoint, or one rename when it does
// not. The old checkpoint is deleted only after the new one is in place, so a crash leaves either
// the old checkpoint or the new one at `dir`, never a mix. (On a filesystem without exchange the
// old one is first renamed aside to "<dir>.old-XXXXXX"; a crash between that and the next rename
// leaves it there.) A crash before the move leaves a "<dir>.tmp-XXXXXX" that may be deleted.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/program.h"

namespace strata::graph {

inline constexpr char kCheckpointWeightsFile[] = "weights.safetensors";
inline constexpr char kCheckpointOptimizerFile[] = "optimizer.safetensors";
inline constexpr char kCheckpointStateFile[] = "trainer_state.json";

// What the trainer outside the Program needs to resume. The step count is not here: it belongs
// to the Program (step_count()), which SaveCheckpoint records and LoadCheckpoint restores.
struct TrainerState {
  uint64_t data_position = 0;                // where the data stream resumes (tokens, batches, ...)
  std::string rng;                           // the trainer's RNG as text (`os << mt19937_64`)
  std::map<std::string, int64_t> counters;   // named integers ("epoch", "tokens_seen", ...)
  std::map<std::string, std::string> extra;  // named strings (a run id, a config, ...)
  // Strings are stored in JSON and must be UTF-8 text (encode binary state, e.g. as hex).
  bool operator==(const TrainerState&) const = default;
};

// Writes a checkpoint of `program` and `state` to the directory `dir` (see Note [atomic
// checkpoints]), creating parent directories as needed. An existing `dir` is replaced only if it
// is a checkpoint (holds trainer_state.json) or empty; anything else is refused
// (FailedPrecondition) rather than deleted. Strings that are not UTF-8: InvalidArgument.
absl::Status SaveCheckpoint(const Program& program, const TrainerState& state,
                            const std::string& dir);

// Restores parameters, optimizer state and step count of `program` from `dir`, and returns the
// trainer's state. Every file must exist (NotFound naming it) and be complete (DataLoss naming
// it when its size differs from the manifest or its contents do not parse); every tensor must
// match the program's by name, dtype and shape (errors name the tensor and both shapes). All is
// checked before anything is written: on error the program is unchanged.
absl::StatusOr<TrainerState> LoadCheckpoint(Program& program, const std::string& dir);

// Only the trainer's state of the checkpoint in `dir` (its trainer_state.json, checked as
// LoadCheckpoint checks it), e.g. to compare the recorded run with this one before loading.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir);

}  // namespace strata::graph
