// Optimizer updates and gradient bookkeeping as IR nodes (STYLE.md 7): the Program runs them like
// any other op, and the learning rate and step count come from StepScalars at run time.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/sgd.h"
#include "runtime/cpu/elementwise.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

absl::Span<float> Flat(const Tensor& t) { return absl::MakeSpan(t.data<float>(), t.numel()); }

// Ops with no outputs that write their inputs in place.
class InPlaceOp : public Op {
 public:
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType>) const override {
    return std::vector<TensorType>{};
  }
};

class Accumulate final : public InPlaceOp {
 public:
  OpKind kind() const override { return OpKind::kAccumulate; }
  std::vector<int> MutatedInputs() const override { return {0}; }
  absl::Status Run(const RunArgs& a) const override { return cpu::Add(a.in[0], a.in[1], a.in[0]); }
};

class Zero final : public InPlaceOp {
 public:
  OpKind kind() const override { return OpKind::kZero; }
  std::vector<int> MutatedInputs() const override { return {0}; }
  absl::Status Run(const RunArgs& a) const override {
    std::memset(a.in[0].raw_data(), 0, a.in[0].nbytes());
    return absl::OkStatus();
  }
};

class ClipGradNorm final : public Op {
 public:
  ClipGradNorm(double max_norm, int n) : max_norm_(max_norm), n_(n) {}
  OpKind kind() const override { return OpKind::kClipGradNorm; }
  std::string Attributes() const override { return absl::StrCat("max_norm=", max_norm_); }
  std::vector<int> MutatedInputs() const override {
    std::vector<int> all(n_);
    for (int i = 0; i < n_; ++i) all[i] = i;
    return all;
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return std::vector<TensorType>{{Shape{}, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    double sum_sq = 0;
    for (const Tensor& g : a.in) {
      const absl::Span<float> one[1] = {Flat(g)};
      const double norm = optim::GlobalGradNorm(one);
      sum_sq += norm * norm;
    }
    const double total = std::sqrt(sum_sq);
    for (const Tensor& g : a.in) {
      const absl::Span<float> one[1] = {Flat(g)};
      optim::ClipGradsByNorm(one, max_norm_, total);
    }
    a.out[0].data<float>()[0] = static_cast<float>(total);
    return absl::OkStatus();
  }

 private:
  double max_norm_;
  int n_;
};

class AdamWUpdate final : public InPlaceOp {
 public:
  explicit AdamWUpdate(optim::AdamWHyper h) : h_(h) {}
  OpKind kind() const override { return OpKind::kAdamWUpdate; }
  std::string Attributes() const override {
    return absl::StrCat("beta1=", h_.beta1, " beta2=", h_.beta2, " eps=", h_.eps,
                        " weight_decay=", h_.weight_decay);
  }
  std::vector<int> MutatedInputs() const override { return {0, 2, 3}; }
  absl::Status Run(const RunArgs& a) const override {
    optim::AdamWHyper h = h_;
    h.lr = a.scalars->lr;
    return optim::AdamWStep(Flat(a.in[0]), Flat(a.in[1]), Flat(a.in[2]), Flat(a.in[3]), h,
                            a.scalars->step);
  }

 private:
  optim::AdamWHyper h_;
};

class SgdUpdate final : public InPlaceOp {
 public:
  explicit SgdUpdate(optim::SgdHyper h) : h_(h) {}
  OpKind kind() const override { return OpKind::kSgdUpdate; }
  std::string Attributes() const override {
    return absl::StrCat("momentum=", h_.momentum, " dampening=", h_.dampening,
                        " nesterov=", h_.nesterov, " weight_decay=", h_.weight_decay);
  }
  std::vector<int> MutatedInputs() const override {
    return h_.momentum != 0 ? std::vector<int>{0, 2} : std::vector<int>{0};
  }
  absl::Status Run(const RunArgs& a) const override {
    optim::SgdHyper h = h_;
    h.lr = a.scalars->lr;
    return optim::SgdStep(Flat(a.in[0]), Flat(a.in[1]),
                          a.in.size() > 2 ? Flat(a.in[2]) : absl::Span<float>(), h,
                          a.scalars->step);
  }

 private:
  optim::SgdHyper h_;
};

}  // namespace

std::shared_ptr<const Op> AccumulateOp() { return std::make_shared<Accumulate>(); }
std::shared_ptr<const Op> ZeroOp() { return std::make_shared<Zero>(); }
std::shared_ptr<const Op> ClipGradNormOp(double max_norm, int num_grads) {
  return std::make_shared<ClipGradNorm>(max_norm, num_grads);
}
std::shared_ptr<const Op> AdamWUpdateOp(double beta1, double beta2, double eps,
                                        double weight_decay) {
  return std::make_shared<AdamWUpdate>(optim::AdamWHyper{
      .lr = 0, .beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay});
}
std::shared_ptr<const Op> SgdUpdateOp(double momentum, double dampening, bool nesterov,
                                      double weight_decay) {
  return std::make_shared<SgdUpdate>(optim::SgdHyper{.lr = 0,
                                                     .momentum = momentum,
                                                     .dampening = dampening,
                                                     .nesterov = nesterov,
                                                     .weight_decay = weight_decay});
}

}  // namespace strata::graph::ops
