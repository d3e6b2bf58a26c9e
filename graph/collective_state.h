// A data-parallel program's state seen from every rank: whole values gathered from their ZeRO
// shards, and one verdict that every rank agrees on after each did its part of a collective task.
//
//   // Every rank, in the same order: the whole of a (maybe sharded) parameter, on every rank.
//   STRATA_ASSIGN_OR_RETURN(Tensor w, GatherState(*program, value, DefaultCpuAllocator()));
//   // Every rank: OK only if every rank's `mine` is OK; else each failed rank gets its own error
//   // and the others one that names the first failed rank.
//   STRATA_RETURN_IF_ERROR(AgreeOnRanks(program->communicator(), mine, "export model.safetensors"));
//
// Both are collective when `communicator` has more than one rank: every rank calls them for the
// same values in the same order, between steps (they issue collectives on the program's
// communicator). In a world of one (or without a communicator) they are local and never block.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "collectives/communicator.h"
#include "graph/program.h"
#include "runtime/allocator.h"
#include "runtime/tensor.h"

namespace strata::graph {

// True when `program` runs data parallel over more than one rank.
bool IsDataParallel(const Program& program);

// The whole value `id` (its type's shape) on every rank: a ZeRO shard (Value::shard) is
// all-gathered from every rank's shard; a whole value is this rank's copy (Program::ReadState).
absl::StatusOr<Tensor> GatherState(const Program& program, ValueId id, Allocator& allocator);

// Every rank's status code (absl::StatusCode as int, 0 for OK) in rank order; `code` is this
// rank's. Collective; local (just `code`) without a communicator of more than one rank.
absl::StatusOr<std::vector<int>> ExchangeCodes(collectives::Communicator* communicator, int code);

// `mine` where it failed; else OK when every rank's is OK; else an error with the code of the
// first failed rank, "<what>: rank r of N failed (its own error says why)". Collective.
absl::Status AgreeOnRanks(collectives::Communicator* communicator, const absl::Status& mine,
                          absl::string_view what);

}  // namespace strata::graph
