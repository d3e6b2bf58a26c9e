// Checkpoints of a training run: everything needed to resume it exactly — the parameters, the
// optimizer state, the step count, and the trainer's own state (where the data stream is, its
// RNG, anything else it names) — on one process or, data parallel, on every rank at once.
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
// A checkpoint of a program whose state is whole (one process, or ZeRO stage 0) is a directory of
// three files:
//   weights.safetensors    Program::parameters() under their model paths
//   optimizer.safetensors  Program::optimizer_state() ("<path>.exp_avg", "<path>.exp_avg_sq", ...)
//   trainer_state.json     {"format", "version": 1, "step", "trainer": {...},
//                           "files": {name: bytes}}, and with dynamic loss scaling
//                           "loss_scale": {"scale", "good_steps"} (Note [mixed precision])
// The "files" manifest gives each tensor file's size, so a truncated file is refused by name.
//
// Note [sharded checkpoints]
// A program with ZeRO shards (stages 1-3 on N > 1 ranks, Value::shard) is saved by every rank at
// once, each writing what it holds: weights-rank<r>-of-<N>.safetensors and
// optimizer-rank<r>-of-<N>.safetensors hold rank r's shard of each sharded value (1-D, its
// [offset, offset + count) of the flattened tensor; an empty shard is left out), and rank 0's
// files also hold every whole (replicated) value, in its own shape, which all ranks hold alike.
// trainer_state.json is then version 2 and is the index: besides the fields above,
// "world_size": N and "tensors": {name: {"dtype", "shape", "pieces": [{"file", "offset",
// "count"}, ...]}}, where each piece is a range of the tensor's flattened elements held by one
// file. Loading reads, for each value of the loading program, the pieces that overlap the range
// it holds (its own shard, or the whole tensor), one piece at a time, so any checkpoint resumes
// on any world size, stage and placement: N ranks to M, stage 3 to stage 0 or to one process,
// and a one-process checkpoint (one piece per tensor: the whole file) to stage 3 on N ranks.
//
// On several ranks SaveCheckpoint and LoadCheckpoint are collective (when the program has a
// communicator of more than one rank, Program::communicator()): every rank calls them, in the
// same order relative to its other collectives, between steps, with the same `dir`, and every
// rank gets the same verdict (a rank that failed its part gets its own error, the others one
// naming that rank). `dir` must be on a file system every rank sees: rank 0 creates the temporary
// directory and each other rank checks that it sees it, else every rank fails with
// FailedPrecondition "... is not on a file system every rank sees (rank r cannot see ...)".
// CheckSharedDirectory does the same check up front (e.g. when a trainer starts).
//
// Note [atomic checkpoints]: SaveCheckpoint writes into a fresh directory next to the target
// ("<dir>.tmp-XXXXXX"; on several ranks rank 0 makes it and every rank writes its files there),
// syncs it, and only then (rank 0, once every rank reported its files written and synced) moves
// it into place: with one atomic exchange (renameat2 RENAME_EXCHANGE) when `dir` already holds a
// checkpoint, or one rename when it does not. A rank that fails makes every rank fail and rank 0
// delete the temporary directory: no partial checkpoint is ever published. The old checkpoint is
// deleted only after the new one is in place, so a crash leaves either the old checkpoint or the
// new one at `dir`, never a mix. (On a filesystem without exchange the old one is first renamed
// aside to "<dir>.old-XXXXXX"; a crash between that and the next rename leaves it there.) A crash
// before the move leaves a "<dir>.tmp-XXXXXX" that may be deleted.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "collectives/communicator.h"
#include "graph/program.h"

namespace strata::graph {

inline constexpr char kCheckpointWeightsFile[] = "weights.safetensors";
inline constexpr char kCheckpointOptimizerFile[] = "optimizer.safetensors";
inline constexpr char kCheckpointStateFile[] = "trainer_state.json";

// "weights-rank<rank>-of-<world>.safetensors", or "optimizer-..." (Note [sharded checkpoints]).
std::string CheckpointShardFile(bool optimizer, int rank, int world);

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
// Collective on several ranks (Note [sharded checkpoints]).
absl::Status SaveCheckpoint(const Program& program, const TrainerState& state,
                            const std::string& dir);

// Restores parameters, optimizer state, step count and (with dynamic loss scaling, when the
// checkpoint has it) the loss scaler's state of `program` from `dir`, and returns the trainer's
// state. Every file must exist (NotFound naming it) and be complete (DataLoss naming
// it when its size differs from the manifest or its contents do not parse); every tensor must
// match the program's by name, dtype and shape (errors name the tensor and both shapes). All is
// checked before anything is written: on error the program is unchanged. A sharded checkpoint's
// shard files must all be there (NotFound naming the missing one) and its index must place every
// element of every tensor in a file that holds it (DataLoss naming the tensor, the file and the
// range otherwise). Collective on several ranks (Note [sharded checkpoints]); there, the checks
// pass on every rank before any rank writes its program.
absl::StatusOr<TrainerState> LoadCheckpoint(Program& program, const std::string& dir);

// Only the trainer's state of the checkpoint in `dir` (its trainer_state.json, checked as
// LoadCheckpoint checks it), e.g. to compare the recorded run with this one before loading.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir);

// Collective: checks that the directory that will hold the checkpoint `dir` is on a file system
// that every rank of `communicator` sees. Rank 0 creates `dir`'s parent directories and a probe
// directory "<dir>.probe-XXXXXX" beside it, every other rank looks for it, rank 0 removes it.
// FailedPrecondition "checkpoint directory <dir> is not on a file system every rank sees (rank r
// cannot see rank 0's <probe>)" on the rank that cannot, and naming that rank on the others. OK at
// once without a communicator or in a world of one.
absl::Status CheckSharedDirectory(collectives::Communicator* communicator, const std::string& dir);

}  // namespace strata::graph
