#include "tests/graph/data_parallel_util.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "collectives/shard.h"
#include "gtest/gtest.h"

namespace strata::graph {

Tensor TokenRows(int step, int which, int64_t first, int64_t rows) {
  Tensor x = Tensor::Empty(Shape{rows, 16}, DType::kI32, DefaultCpuAllocator()).value();
  for (int64_t r = 0; r < rows; ++r) {
    std::mt19937 rng(static_cast<uint32_t>(1000 * step + 100 * which + first + r));
    for (int64_t t = 0; t < 16; ++t) x.data<int32_t>()[r * 16 + t] = static_cast<int32_t>(rng() % 64);
  }
  return x;
}

Tensor RankTokenRows(int step, int which, int64_t rows, int micro_batches, int world, int rank) {
  const int64_t piece = rows / micro_batches / world;
  Tensor x = Tensor::Empty(Shape{piece * micro_batches, 16}, DType::kI32, DefaultCpuAllocator()).value();
  for (int i = 0; i < micro_batches; ++i) {
    const Tensor part = TokenRows(step, which, i * (rows / micro_batches) + rank * piece, piece);
    std::copy_n(part.data<int32_t>(), part.numel(), x.data<int32_t>() + i * piece * 16);
  }
  return x;
}

std::vector<float> GatherWhole(const Program& program, ValueId v, const Tensor& held) {
  std::vector<float> mine(held.data<float>(), held.data<float>() + held.numel());
  const Value& value = program.graph().value(v);
  if (!value.shard) return mine;
  int world = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::vector<int64_t> counts = collectives::ShardCounts(value.type.shape.numel(), world);
  std::vector<int> n(world), at(world);
  for (int r = 0, off = 0; r < world; off += static_cast<int>(counts[r]), ++r) {
    n[r] = static_cast<int>(counts[r]);
    at[r] = off;
  }
  EXPECT_EQ(static_cast<int64_t>(mine.size()), counts[rank]) << value.name;
  EXPECT_EQ(value.shard->offset, at[rank]) << value.name;
  std::vector<float> whole(value.type.shape.numel());
  MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, whole.data(), n.data(),
                 at.data(), MPI_FLOAT, MPI_COMM_WORLD);
  return whole;
}

void ExpectRelativelyNear(double got, double want, double tolerance, const std::string& what) {
  EXPECT_LE(std::abs(got - want), tolerance * std::max(1.0, std::abs(want)))
      << what << ": " << got << " vs " << want;
}

}  // namespace strata::graph
