// Pieces shared by the data-parallel MPI tests (data_parallel_test, data_parallel_cnn_test,
// sharded_checkpoint_test), which run under mpiexec with mpi_test_main.
//
//   Tensor ids = TokenRows(step, /*which=*/0, rank * rows, rows);   // this rank's rows
//   std::vector<float> whole = GatherWhole(program, v, program.ReadState(v, alloc).value());
//   ExpectRelativelyNear(parallel_loss, alone_loss, 1e-5, "loss of step 3");
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/program.h"
#include "runtime/tensor.h"

namespace strata::graph {

// Rows [first, first + rows) of step `step`'s global batch of 16 token ids below 64 (which 0) or
// of its targets (1): a pure function of the row, so that any split among ranks reads the same.
Tensor TokenRows(int step, int which, int64_t first, int64_t rows);

// This rank's rows of step `step`'s global batch of `rows` rows in `micro_batches` micro-batches:
// the rank-th of `world` equal blocks of each micro-batch, micro-batch after micro-batch, the
// split under which the pieces are numbered as the one-process run's rows (Note [dropout in the
// step] in graph/ops/dropout_ops.cc).
Tensor RankTokenRows(int step, int which, int64_t rows, int micro_batches, int world, int rank);

// The whole of a state value whose bytes on this rank are `held`: a ZeRO shard is gathered from
// every rank of MPI_COMM_WORLD with MPI directly (every rank calls this in the same order); a
// whole value is `held` itself.
std::vector<float> GatherWhole(const Program& program, ValueId v, const Tensor& held);

// |got - want| <= tolerance * max(1, |want|).
void ExpectRelativelyNear(double got, double want, double tolerance, const std::string& what);

}  // namespace strata::graph
