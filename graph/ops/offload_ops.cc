// The nodes that the offload schedule inserts (graph/passes/schedule_offload.cc). Their Run is
// what they mean when every operand is bound in addressable memory; the Program runs them
// itself, on its IO stream, reading each operand at its home tier (Note [the IO stream] in
// program.cc).
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

// homes -> their staged copies on the device, one per home (several: a bucket of ZeRO gathers).
class Fetch final : public Op {
 public:
  OpKind kind() const override { return OpKind::kFetch; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return std::vector<TensorType>(in.begin(), in.end());
  }
  absl::Status Run(const RunArgs& a) const override {
    for (size_t i = 0; i < a.in.size(); ++i) {
      std::memcpy(a.out[i].raw_data(), a.in[i].raw_data(), a.in[i].nbytes());
    }
    return absl::OkStatus();
  }
  bool RunsOnSideStream() const override { return true; }
};

// (staged copy, home): the copy's bytes back to the home tier.
class WriteBack final : public Op {
 public:
  OpKind kind() const override { return OpKind::kWriteBack; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (in.size() != 2 || !(in[0] == in[1])) {
      return absl::InvalidArgumentError("write_back: needs a staged value and its home, same type");
    }
    return std::vector<TensorType>{};
  }
  std::vector<int> MutatedInputs() const override { return {1}; }
  absl::Status Run(const RunArgs& a) const override {
    std::memcpy(a.in[1].raw_data(), a.in[0].raw_data(), a.in[0].nbytes());
    return absl::OkStatus();
  }
  bool RunsOnSideStream() const override { return true; }
};

// An optimizer update whose state lives on host or NVMe, run chunk by chunk in host buffers.
// The inner update is elementwise, so running it over chunks gives the bits of one call; a
// partial-channel update runs compact (CompactUpdateOp) over chunks into which the Program
// gathered the trained elements of the parameter (Note [partial channels offloaded]).
class OffloadedUpdate final : public Op {
 public:
  OffloadedUpdate(std::shared_ptr<const Op> update, bool zeroes_gradient)
      : update_(std::move(update)),
        chunk_update_(CompactUpdateOp(*update_)),
        zeroes_gradient_(zeroes_gradient) {}
  OpKind kind() const override { return OpKind::kOffloadedUpdate; }
  std::string Attributes() const override {
    const std::string inner = update_->Attributes();
    return absl::StrCat(update_->name(), inner.empty() ? "" : " ", inner,
                        zeroes_gradient_ ? " zeroes_gradient" : "");
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return update_->Infer(in);
  }
  std::vector<int> MutatedInputs() const override {
    std::vector<int> m = update_->MutatedInputs();
    if (zeroes_gradient_ && std::find(m.begin(), m.end(), 1) == m.end()) m.push_back(1);
    return m;
  }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_RETURN_IF_ERROR(update_->Run(a));
    if (zeroes_gradient_) std::memset(a.in[1].raw_data(), 0, a.in[1].nbytes());
    return absl::OkStatus();
  }
  bool RunsOnSideStream() const override { return true; }
  const Op& update() const { return *update_; }
  const Op& chunk_update() const { return *chunk_update_; }
  bool zeroes_gradient() const { return zeroes_gradient_; }

 private:
  std::shared_ptr<const Op> update_;
  std::shared_ptr<const Op> chunk_update_;
  bool zeroes_gradient_;
};

}  // namespace

std::shared_ptr<const Op> FetchOp() { return std::make_shared<Fetch>(); }
std::shared_ptr<const Op> WriteBackOp() { return std::make_shared<WriteBack>(); }
std::shared_ptr<const Op> OffloadedUpdateOp(std::shared_ptr<const Op> update,
                                            bool zeroes_gradient) {
  STRATA_CHECK(update->kind() == OpKind::kAdamWUpdate || update->kind() == OpKind::kSgdUpdate,
               "offloaded_update wraps an optimizer update, not ", update->name());
  return std::make_shared<OffloadedUpdate>(std::move(update), zeroes_gradient);
}
const Op& OffloadedInnerUpdate(const Op& offloaded) {
  STRATA_CHECK(offloaded.kind() == OpKind::kOffloadedUpdate, offloaded.name(),
               " is not an offloaded_update");
  return static_cast<const OffloadedUpdate&>(offloaded).update();
}
const Op& OffloadedChunkUpdate(const Op& offloaded) {
  STRATA_CHECK(offloaded.kind() == OpKind::kOffloadedUpdate, offloaded.name(),
               " is not an offloaded_update");
  return static_cast<const OffloadedUpdate&>(offloaded).chunk_update();
}
bool OffloadedUpdateZeroesGradient(const Op& offloaded) {
  STRATA_CHECK(offloaded.kind() == OpKind::kOffloadedUpdate, offloaded.name(),
               " is not an offloaded_update");
  return static_cast<const OffloadedUpdate&>(offloaded).zeroes_gradient();
}

}  // namespace strata::graph::ops
