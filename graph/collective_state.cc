#include "graph/collective_state.h"

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata::graph {

bool IsDataParallel(const Program& program) {
  return program.communicator() != nullptr && program.communicator()->world_size() > 1;
}

absl::StatusOr<Tensor> GatherState(const Program& program, ValueId id, Allocator& allocator) {
  STRATA_ASSIGN_OR_RETURN(Tensor held, program.ReadState(id, allocator));
  const Value& value = program.graph().value(id);
  if (!value.shard) return held;
  collectives::Communicator* comm = program.communicator();
  STRATA_CHECK(comm != nullptr, "sharded value ", value.name, " in a program without communicator");
  const int64_t numel = value.type.shape.numel();
  STRATA_CHECK(*value.shard == collectives::ShardOf(numel, comm->world_size(), comm->rank()),
               "value ", value.name, " holds another range than its ShardOf");
  STRATA_ASSIGN_OR_RETURN(Tensor whole, Tensor::Empty(Shape{numel}, value.type.dtype, allocator));
  STRATA_RETURN_IF_ERROR(comm->Blocking().AllGather(held, whole));
  std::vector<int64_t> dims(value.type.shape.dims().begin(), value.type.shape.dims().end());
  return whole.Reshape(dims);
}

absl::StatusOr<std::vector<int>> ExchangeCodes(collectives::Communicator* communicator, int code) {
  if (communicator == nullptr || communicator->world_size() == 1) return std::vector<int>{code};
  const int world = communicator->world_size();
  // Each rank fills its own slot; the sum is every rank's code.
  STRATA_ASSIGN_OR_RETURN(Tensor codes, Tensor::Zeros(Shape{world}, DType::kI32, DefaultCpuAllocator()));
  codes.data<int32_t>()[communicator->rank()] = code;
  STRATA_RETURN_IF_ERROR(communicator->Blocking().AllReduce(codes));
  return std::vector<int>(codes.data<int32_t>(), codes.data<int32_t>() + world);
}

absl::Status AgreeOnRanks(collectives::Communicator* communicator, const absl::Status& mine,
                          absl::string_view what) {
  absl::StatusOr<std::vector<int>> codes = ExchangeCodes(communicator, static_cast<int>(mine.code()));
  if (!mine.ok()) return mine;
  if (!codes.ok()) {
    return absl::Status(codes.status().code(), absl::StrCat(what, ": ranks could not agree: ",
                                                            codes.status().message()));
  }
  for (size_t r = 0; r < codes->size(); ++r) {
    if ((*codes)[r] != 0) {
      return absl::Status(static_cast<absl::StatusCode>((*codes)[r]),
                          absl::StrCat(what, ": rank ", r, " of ", codes->size(),
                                       " failed (its own error says why)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::graph
