// Optimizer updates and gradient bookkeeping as IR nodes (STYLE.md 7): the Program runs them like
// any other op, and the learning rate and step count come from StepScalars at run time.
#include <array>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/sgd.h"
#include "runtime/status.h"
#if STRATA_HAVE_CUDA
#include "optim/cuda/adamw_cuda.h"
#include "optim/cuda/grad_norm_cuda.h"
#include "optim/cuda/sgd_cuda.h"
#endif

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
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, Add, a.in[0], a.in[1], a.in[0]);
  }
};

class Zero final : public InPlaceOp {
 public:
  OpKind kind() const override { return OpKind::kZero; }
  std::vector<int> MutatedInputs() const override { return {0}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override { return internal::ZeroBytes(a, a.in[0]); }
};

// The L2 norm of one gradient, in double then rounded once: one node per gradient, so that an
// offloaded gradient is read where it is final instead of all gradients at once.
class GradNorm final : public Op {
 public:
  OpKind kind() const override { return OpKind::kGradNorm; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return std::vector<TensorType>{{Shape{}, DType::kF32}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
#if STRATA_HAVE_CUDA
    if (target.device.is_cuda()) return optim::GradNormWorkspaceBytes(in[0].shape.numel());
#endif
    return 0;
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return optim::GradNormCuda(a.in[0].data<float>(), a.in[0].numel(), a.out[0].data<float>(),
                                 reinterpret_cast<double*>(a.workspace.data()), a.cuda->stream);
    }
#endif
    const absl::Span<float> one[1] = {Flat(a.in[0])};
    a.out[0].data<float>()[0] = static_cast<float>(optim::GlobalGradNorm(one));
    return absl::OkStatus();
  }
};

// sqrt of the sum of the squared per-gradient norms: the global norm that clipping divides by.
class GlobalGradNorm final : public Op {
 public:
  GlobalGradNorm(int squared_inputs, bool squared_output)
      : squared_inputs_(squared_inputs), squared_output_(squared_output) {}
  OpKind kind() const override { return OpKind::kGlobalGradNorm; }
  std::string Attributes() const override {
    if (squared_inputs_ == 0 && !squared_output_) return "";
    return absl::StrCat("squared_inputs=", squared_inputs_,
                        squared_output_ ? " squared_output" : "");
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (static_cast<int>(in.size()) < squared_inputs_) {
      return absl::InvalidArgumentError(absl::StrCat("global_grad_norm: ", in.size(),
                                                     " inputs, fewer than the ", squared_inputs_,
                                                     " squared ones"));
    }
    return std::vector<TensorType>{{Shape{}, DType::kF32}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return target.device.is_cuda() ? sizeof(double) : 0;  // the sum between chunks of inputs
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return optim::GlobalNormCuda(
          static_cast<int>(a.in.size()), [&](int i) { return a.in[i].data<float>(); },
          squared_inputs_, squared_output_, a.out[0].data<float>(),
          reinterpret_cast<double*>(a.workspace.data()), a.cuda->stream);
    }
#endif
    double sum_sq = 0;
    for (size_t i = 0; i < a.in.size(); ++i) {
      const double v = a.in[i].data<float>()[0];
      sum_sq += static_cast<int>(i) < squared_inputs_ ? v : v * v;
    }
    a.out[0].data<float>()[0] = static_cast<float>(squared_output_ ? sum_sq : std::sqrt(sum_sq));
    return absl::OkStatus();
  }

 private:
  int squared_inputs_;
  bool squared_output_;
};

// With clipping, an update's last input is the global norm and its gradient (input 1) is scaled
// in place first, as torch.nn.utils.clip_grad_norm_ does before the step. Every update computes
// the same factor from the same norm, so scaling inside each update equals scaling all first.
absl::Status ClipInPlace(const RunArgs& a, double max_norm) {
  if (max_norm <= 0) return absl::OkStatus();
  const absl::Span<float> one[1] = {Flat(a.in[1])};
  optim::ClipGradsByNorm(one, max_norm, a.in.back().data<float>()[0]);
  return absl::OkStatus();
}

// With dynamic loss scaling the global norm (last input) is that of the scaled gradients: not
// finite exactly when some gradient overflowed, and then the update is skipped (`skip`); else the
// gradient is unscaled and clipped in place by one factor.
absl::Status PrepareGradient(const RunArgs& a, double max_norm, bool loss_scaled, bool& skip) {
  skip = false;
  if (!loss_scaled) return ClipInPlace(a, max_norm);
  const float norm = a.in.back().data<float>()[0];
  if (!std::isfinite(norm)) {
    skip = true;
    return absl::OkStatus();
  }
  const absl::Span<float> one[1] = {Flat(a.in[1])};
  optim::UnscaleAndClipGrads(one, a.scalars->loss_scale, max_norm, norm);
  return absl::OkStatus();
}

#if STRATA_HAVE_CUDA
// An update on a device: with clipping or loss scaling the gradient (input 1) is first scaled by
// the factor the kernel computes from the global norm (the last input) where it lies in device
// memory, so the host never waits for it; then step(grad, skip, runs) runs the optimizer's
// kernel, which does nothing where `skip` (the norm, with loss scaling) is not finite (an
// overflowed step is skipped on the device) and finds a partial-channel slice's elements of the
// parameter through `runs`.
template <typename Step>
absl::Status RunOnDevice(const RunArgs& a, const UpdateSlice& slice, double max_norm,
                         bool loss_scaled, const Step& step) {
  optim::ParamRuns runs;
  if (!slice.whole()) {
    if (a.in[0].numel() != slice.rows * slice.stride || slice.prefix > slice.stride ||
        a.in[1].numel() != slice.rows * slice.prefix) {
      return absl::InternalError(absl::StrCat(
          "update: a slice of ", slice.rows, " runs of ", slice.prefix, " every ", slice.stride,
          " over ", a.in[0].ToString(), " with gradient ", a.in[1].ToString()));
    }
    runs = {.length = slice.prefix, .stride = slice.stride};
  }
  float* grad = a.in[1].data<float>();
  const float* norm = max_norm > 0 || loss_scaled ? a.in.back().data<float>() : nullptr;
  if (norm != nullptr) {
    STRATA_RETURN_IF_ERROR(optim::ClipByNormCuda(grad, a.in[1].numel(), norm, max_norm,
                                                 loss_scaled ? a.scalars->loss_scale : 1.0,
                                                 a.cuda->stream));
  }
  return step(grad, loss_scaled ? norm : nullptr, runs);
}
#endif

std::vector<int> WithGrad(std::vector<int> mutated, bool scales_grad) {
  if (scales_grad) mutated.push_back(1);
  return mutated;
}

std::string LossScaledAttribute(bool loss_scaled) { return loss_scaled ? " loss_scaled" : ""; }

std::string SliceAttributes(const UpdateSlice& s) {
  if (s.whole()) return "";
  return absl::StrCat(" channels=", s.rows, "x", s.prefix, "/", s.stride);
}

std::string LrScaleAttribute(double lr_scale) {
  return lr_scale == 1.0 ? "" : absl::StrCat(" lr_scale=", lr_scale);
}

// Runs `step` over the whole parameter, or over each run of a partial-channel slice with the
// matching runs of the compact operands (Note [partial channels]); the step is elementwise.
template <typename Step>
absl::Status ForEachRun(const UpdateSlice& s, const Tensor& param,
                        absl::Span<const Tensor> compact, const Step& step) {
  std::array<absl::Span<float>, 3> parts{};
  if (s.whole()) {
    for (size_t i = 0; i < compact.size(); ++i) {
      if (compact[i].defined()) parts[i] = Flat(compact[i]);
    }
    return step(Flat(param), parts);
  }
  if (param.numel() != s.rows * s.stride || s.prefix > s.stride) {
    return absl::InternalError(absl::StrCat("update: a slice of ", s.rows, " runs of ", s.prefix,
                                            " every ", s.stride, " over ", param.ToString()));
  }
  for (size_t i = 0; i < compact.size(); ++i) {
    if (compact[i].defined() && compact[i].numel() != s.rows * s.prefix) {
      return absl::InternalError(absl::StrCat("update: operand ", compact[i].ToString(),
                                              " does not hold ", s.rows, " runs of ", s.prefix));
    }
  }
  for (int64_t r = 0; r < s.rows; ++r) {
    for (size_t i = 0; i < compact.size(); ++i) {
      if (compact[i].defined()) {
        parts[i] = absl::MakeSpan(compact[i].data<float>() + r * s.prefix, s.prefix);
      }
    }
    STRATA_RETURN_IF_ERROR(
        step(absl::MakeSpan(param.data<float>() + r * s.stride, s.prefix), parts));
  }
  return absl::OkStatus();
}

class AdamWUpdate final : public InPlaceOp {
 public:
  AdamWUpdate(optim::AdamWHyper h, double max_norm, UpdateSlice slice, double lr_scale,
              bool loss_scaled)
      : h_(h), max_norm_(max_norm), slice_(slice), lr_scale_(lr_scale),
        loss_scaled_(loss_scaled) {}
  OpKind kind() const override { return OpKind::kAdamWUpdate; }
  std::string Attributes() const override {
    return absl::StrCat("beta1=", h_.beta1, " beta2=", h_.beta2, " eps=", h_.eps,
                        " weight_decay=", h_.weight_decay,
                        max_norm_ > 0 ? absl::StrCat(" max_norm=", max_norm_) : "",
                        SliceAttributes(slice_), LrScaleAttribute(lr_scale_),
                        LossScaledAttribute(loss_scaled_));
  }
  std::vector<int> MutatedInputs() const override {
    return WithGrad({0, 2, 3}, max_norm_ > 0 || loss_scaled_);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    optim::AdamWHyper h = h_;
    h.lr = a.scalars->lr * lr_scale_;  // times 1.0 (no group) is exact
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return RunOnDevice(a, slice_, max_norm_, loss_scaled_,
                         [&](float* grad, const float* skip, const optim::ParamRuns& runs) {
                           return optim::AdamWStepCuda(a.in[0].data<float>(), grad,
                                                       a.in[2].data<float>(), a.in[3].data<float>(),
                                                       a.in[1].numel(), h, a.scalars->step,
                                                       a.cuda->stream, skip, runs);
                         });
    }
#endif
    bool skip = false;
    STRATA_RETURN_IF_ERROR(PrepareGradient(a, max_norm_, loss_scaled_, skip));
    if (skip) return absl::OkStatus();
    const Tensor compact[] = {a.in[1], a.in[2], a.in[3]};
    return ForEachRun(slice_, a.in[0], compact, [&](absl::Span<float> p, auto& g_m_v) {
      return optim::AdamWStep(p, g_m_v[0], g_m_v[1], g_m_v[2], h, a.scalars->step);
    });
  }
  const UpdateSlice& slice() const { return slice_; }
  std::shared_ptr<const Op> Compact() const {
    return std::make_shared<AdamWUpdate>(h_, max_norm_, UpdateSlice{}, lr_scale_, loss_scaled_);
  }

 private:
  optim::AdamWHyper h_;
  double max_norm_;
  UpdateSlice slice_;
  double lr_scale_;
  bool loss_scaled_;
};

class SgdUpdate final : public InPlaceOp {
 public:
  SgdUpdate(optim::SgdHyper h, double max_norm, UpdateSlice slice, double lr_scale,
            bool loss_scaled)
      : h_(h), max_norm_(max_norm), slice_(slice), lr_scale_(lr_scale),
        loss_scaled_(loss_scaled) {}
  OpKind kind() const override { return OpKind::kSgdUpdate; }
  std::string Attributes() const override {
    return absl::StrCat("momentum=", h_.momentum, " dampening=", h_.dampening,
                        " nesterov=", h_.nesterov, " weight_decay=", h_.weight_decay,
                        max_norm_ > 0 ? absl::StrCat(" max_norm=", max_norm_) : "",
                        SliceAttributes(slice_), LrScaleAttribute(lr_scale_),
                        LossScaledAttribute(loss_scaled_));
  }
  std::vector<int> MutatedInputs() const override {
    return WithGrad(h_.momentum != 0 ? std::vector<int>{0, 2} : std::vector<int>{0},
                    max_norm_ > 0 || loss_scaled_);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    optim::SgdHyper h = h_;
    h.lr = a.scalars->lr * lr_scale_;  // times 1.0 (no group) is exact
    const bool has_buffer = h_.momentum != 0;
#if STRATA_HAVE_CUDA
    if (a.cuda != nullptr) {
      return RunOnDevice(a, slice_, max_norm_, loss_scaled_,
                         [&](float* grad, const float* skip, const optim::ParamRuns& runs) {
                           return optim::SgdStepCuda(a.in[0].data<float>(), grad,
                                                     has_buffer ? a.in[2].data<float>() : nullptr,
                                                     a.in[1].numel(), h, a.scalars->step,
                                                     a.cuda->stream, skip, runs);
                         });
    }
#endif
    bool skip = false;
    STRATA_RETURN_IF_ERROR(PrepareGradient(a, max_norm_, loss_scaled_, skip));
    if (skip) return absl::OkStatus();
    const Tensor compact[] = {a.in[1], has_buffer ? a.in[2] : Tensor()};
    return ForEachRun(slice_, a.in[0], compact, [&](absl::Span<float> p, auto& g_buf) {
      return optim::SgdStep(p, g_buf[0], g_buf[1], h, a.scalars->step);
    });
  }
  const UpdateSlice& slice() const { return slice_; }
  std::shared_ptr<const Op> Compact() const {
    return std::make_shared<SgdUpdate>(h_, max_norm_, UpdateSlice{}, lr_scale_, loss_scaled_);
  }

 private:
  optim::SgdHyper h_;
  double max_norm_;
  UpdateSlice slice_;
  double lr_scale_;
  bool loss_scaled_;
};

}  // namespace

std::shared_ptr<const Op> AccumulateOp() { return std::make_shared<Accumulate>(); }
std::shared_ptr<const Op> ZeroOp() { return std::make_shared<Zero>(); }
std::shared_ptr<const Op> GradNormOp() { return std::make_shared<GradNorm>(); }
std::shared_ptr<const Op> GlobalGradNormOp() { return std::make_shared<GlobalGradNorm>(0, false); }
std::shared_ptr<const Op> GlobalGradNormOp(int squared_inputs, bool squared_output) {
  return std::make_shared<GlobalGradNorm>(squared_inputs, squared_output);
}
std::shared_ptr<const Op> AdamWUpdateOp(double beta1, double beta2, double eps,
                                        double weight_decay, double max_norm, UpdateSlice slice,
                                        double lr_scale, bool loss_scaled) {
  return std::make_shared<AdamWUpdate>(
      optim::AdamWHyper{
          .lr = 0, .beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay},
      max_norm, slice, lr_scale, loss_scaled);
}
std::shared_ptr<const Op> SgdUpdateOp(double momentum, double dampening, bool nesterov,
                                      double weight_decay, double max_norm, UpdateSlice slice,
                                      double lr_scale, bool loss_scaled) {
  return std::make_shared<SgdUpdate>(optim::SgdHyper{.lr = 0,
                                                     .momentum = momentum,
                                                     .dampening = dampening,
                                                     .nesterov = nesterov,
                                                     .weight_decay = weight_decay},
                                     max_norm, slice, lr_scale, loss_scaled);
}
UpdateSlice UpdateSliceOf(const Op& update) {
  if (const auto* a = dynamic_cast<const AdamWUpdate*>(&update)) return a->slice();
  if (const auto* s = dynamic_cast<const SgdUpdate*>(&update)) return s->slice();
  if (update.kind() == OpKind::kOffloadedUpdate) return UpdateSliceOf(OffloadedInnerUpdate(update));
  return {};
}
std::shared_ptr<const Op> CompactUpdateOp(const Op& update) {
  if (const auto* a = dynamic_cast<const AdamWUpdate*>(&update)) return a->Compact();
  if (const auto* s = dynamic_cast<const SgdUpdate*>(&update)) return s->Compact();
  STRATA_CHECK(false, "compact_update of ", update.name(), ", not an optimizer update");
  return nullptr;
}

}  // namespace strata::graph::ops
