// How a data-parallel step partitions its model states over the ranks (ZeRO; Note [zero
// partition] in graph/passes/zero_partition.cc). Part of TrainOptions; it matters only with a
// communicator of more than one rank.
//
//   TrainOptions o;
//   o.communicator = comm.get();
//   o.zero.stage = 3;                       // parameters, gradients and optimizer state sharded
//   o.zero.persistence_threshold = 100000;  // smaller parameters stay whole on every rank
//   o.zero.reuse_bytes = 0;                 // gathered parameters are released after each use
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace strata::graph {

struct ZeroOptions {
  // 0: gradients all-reduced, everything whole on every rank. 1 and 2: optimizer state and
  // gradients sharded (reduce-scatter, update of the shard, all-gather of the parameter). 3:
  // parameters sharded too, all-gathered before each use.
  int stage = 0;
  // Parameters of fewer elements stay whole and replicated with stages 1-3 (their gradients are
  // all-reduced as in stage 0), as DeepSpeed's stage3_param_persistence_threshold: a collective
  // per bias or norm would cost more in latency than its shard saves.
  int64_t persistence_threshold = 100000;
  // Stage 3: a gathered parameter is kept for its next use when at most this many bytes of other
  // gathered parameters are used in between, as DeepSpeed's max_reuse_distance. 0 releases every
  // gathered copy after the node that reads it (a stage-3 step then sends 1.5x a stage-2 step's
  // bytes); more keeps the last layers' parameters from the forward to the backward.
  int64_t reuse_bytes = 0;
  // Stage 3: gathers placed together (fetches anchored at the same node) go out as bucketed
  // all-gathers of up to this many bytes of parameters, one message instead of one per tensor;
  // the first bucket of such a run holds only the parameter needed first, and each next one up
  // to twice the one before, so that compute starts as soon as its own parameter is there.
  // Every stage: the gradients of the parameters below persistence_threshold are all-reduced in
  // buckets of up to this many bytes (Note [bucketed all-reduces]). 0: one collective per tensor.
  int64_t bucket_bytes = int64_t{16} << 20;

  absl::Status Validate() const {
    if (stage < 0 || stage > 3) {
      return absl::InvalidArgumentError(absl::StrCat("zero: stage = ", stage, " must be 0, 1, 2 or 3"));
    }
    if (persistence_threshold < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "zero: persistence_threshold = ", persistence_threshold, " must be >= 0"));
    }
    if (bucket_bytes < 0) {
      return absl::InvalidArgumentError(absl::StrCat("zero: bucket_bytes = ", bucket_bytes, " must be >= 0"));
    }
    if (reuse_bytes < 0) {
      return absl::InvalidArgumentError(absl::StrCat("zero: reuse_bytes = ", reuse_bytes, " must be >= 0"));
    }
    return absl::OkStatus();
  }
};

}  // namespace strata::graph
