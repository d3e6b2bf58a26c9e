// Shape ops: permute (and transpose), slice, concat and its inverse split. Each is a copy into a
// contiguous output (runtime/cpu/copy.h); each one's gradient is another of them.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Apply;
using internal::Apply1;
using internal::ApplyGradient;
using internal::Dout;
using internal::TypeError;

class PermuteOp final : public Op {
 public:
  explicit PermuteOp(std::vector<int> order) : order_(std::move(order)) {}
  OpKind kind() const override { return OpKind::kPermute; }
  std::string Attributes() const override { return absl::StrCat("order=", absl::StrJoin(order_, ",")); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    const Shape& x = in[0].shape;
    std::vector<int> sorted = order_;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int> identity(x.rank());
    std::iota(identity.begin(), identity.end(), 0);
    if (sorted != identity) {
      return TypeError(name(), "order {", absl::StrJoin(order_, ", "),
                       "} is not a permutation of the dimensions of x ", in[0].ToString());
    }
    std::vector<int64_t> d;
    for (int i : order_) d.push_back(x.dim(i));
    return std::vector<TensorType>{{Shape(d), in[0].dtype}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor view, a.in[0].Permute(order_));
    return STRATA_KERNEL(a, CopyStrided, view, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    std::vector<int> inverse(order_.size());
    for (size_t i = 0; i < order_.size(); ++i) inverse[order_[i]] = static_cast<int>(i);
    g.input_grads[0] = Apply1(std::make_shared<PermuteOp>(inverse), {Dout(g, 0)}).id();
    return g.tracer.status();
  }

 private:
  std::vector<int> order_;
};

// dx: zeros, but dy at [start, end) of `dim` (the gradient of a slice).
class SliceGradOp final : public Op {
 public:
  SliceGradOp(int dim, int64_t start, int64_t end, int64_t size)
      : dim_(dim), start_(start), end_(end), size_(size) {}
  OpKind kind() const override { return OpKind::kSliceGrad; }
  std::string Attributes() const override {
    return absl::StrCat("dim=", dim_, " start=", start_, " end=", end_, " size=", size_);
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    std::vector<int64_t> d(in[0].shape.dims().begin(), in[0].shape.dims().end());
    d[dim_] = size_;
    return std::vector<TensorType>{{Shape(d), in[0].dtype}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_RETURN_IF_ERROR(internal::ZeroBytes(a, a.out[0]));
    STRATA_ASSIGN_OR_RETURN(const Tensor part, a.out[0].Slice(dim_, start_, end_));
    return STRATA_KERNEL(a, CopyStrided, a.in[0], part);
  }

 private:
  int dim_;
  int64_t start_, end_, size_;
};

class SliceOp final : public Op {
 public:
  SliceOp(int dim, int64_t start, int64_t end) : dim_(dim), start_(start), end_(end) {}
  OpKind kind() const override { return OpKind::kSlice; }
  std::string Attributes() const override {
    return absl::StrCat("dim=", dim_, " start=", start_, " end=", end_);
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    const Shape& x = in[0].shape;
    if (dim_ < 0 || dim_ >= x.rank() || start_ < 0 || start_ > end_ || end_ > x.dim(dim_)) {
      return TypeError(name(), "[", start_, ", ", end_, ") of dim ", dim_,
                       " is not a range of x ", in[0].ToString());
    }
    std::vector<int64_t> d(x.dims().begin(), x.dims().end());
    d[dim_] = end_ - start_;
    return std::vector<TensorType>{{Shape(d), in[0].dtype}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor view, a.in[0].Slice(dim_, start_, end_));
    return STRATA_KERNEL(a, CopyStrided, view, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    const int64_t size = g.tracer.graph().value(g.node.inputs[0]).type.shape.dim(dim_);
    g.input_grads[0] =
        Apply1(std::make_shared<SliceGradOp>(dim_, start_, end_, size), {Dout(g, 0)}).id();
    return g.tracer.status();
  }

 private:
  int dim_;
  int64_t start_, end_;
};

// x -> consecutive parts of `dim` of the given sizes.
class SplitOp final : public Op {
 public:
  SplitOp(int dim, std::vector<int64_t> sizes) : dim_(dim), sizes_(std::move(sizes)) {}
  OpKind kind() const override { return OpKind::kSplit; }
  std::string Attributes() const override {
    return absl::StrCat("dim=", dim_, " sizes=", absl::StrJoin(sizes_, ","));
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    const Shape& x = in[0].shape;
    const int64_t total = std::accumulate(sizes_.begin(), sizes_.end(), int64_t{0});
    if (dim_ < 0 || dim_ >= x.rank() || total != x.dim(dim_)) {
      return TypeError(name(), "sizes {", absl::StrJoin(sizes_, ", "), "} do not split dim ", dim_,
                       " of x ", in[0].ToString());
    }
    std::vector<TensorType> out;
    for (int64_t s : sizes_) {
      std::vector<int64_t> d(x.dims().begin(), x.dims().end());
      d[dim_] = s;
      out.push_back({Shape(d), in[0].dtype});
    }
    return out;
  }
  absl::Status Gradient(GradientArgs& g) const override;
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    int64_t at = 0;
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (a.out[i].defined()) {  // an unused part is not written
        STRATA_ASSIGN_OR_RETURN(const Tensor part, a.in[0].Slice(dim_, at, at + sizes_[i]));
        STRATA_RETURN_IF_ERROR(STRATA_KERNEL(a, CopyStrided, part, a.out[i]));
      }
      at += sizes_[i];
    }
    return absl::OkStatus();
  }

 private:
  int dim_;
  std::vector<int64_t> sizes_;
};

class ConcatOp final : public Op {
 public:
  explicit ConcatOp(int dim) : dim_(dim) {}
  OpKind kind() const override { return OpKind::kConcat; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (in.empty()) return TypeError(name(), "needs at least one input");
    const Shape& first = in[0].shape;
    if (dim_ < 0 || dim_ >= first.rank()) {
      return TypeError(name(), "dim ", dim_, " is out of range for ", in[0].ToString());
    }
    std::vector<int64_t> d(first.dims().begin(), first.dims().end());
    d[dim_] = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      bool fits = in[i].dtype == in[0].dtype && in[i].shape.rank() == first.rank();
      for (int k = 0; fits && k < first.rank(); ++k) {
        fits = k == dim_ || in[i].shape.dim(k) == first.dim(k);
      }
      if (!fits) {
        return TypeError(name(), "input ", i, " ", in[i].ToString(), " does not fit input 0 ",
                         in[0].ToString(), " beside it along dim ", dim_);
      }
      d[dim_] += in[i].shape.dim(dim_);
    }
    return std::vector<TensorType>{{Shape(d), in[0].dtype}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, Concat, a.in, dim_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    std::vector<int64_t> sizes;
    std::vector<int> index;
    for (size_t i = 0; i < g.node.inputs.size(); ++i) {
      sizes.push_back(g.tracer.graph().value(g.node.inputs[i]).type.shape.dim(dim_));
      index.push_back(static_cast<int>(i));
    }
    return ApplyGradient(g, std::make_shared<SplitOp>(dim_, sizes), {Dout(g, 0)}, index);
  }

 private:
  int dim_;
};

// The parts' gradients joined; a part nothing used contributes zeros (each used part is then
// padded to the whole by slice_grad, and those are summed).
absl::Status SplitOp::Gradient(GradientArgs& g) const {
  bool all = true;
  for (ValueId d : g.output_grads) all = all && d != kNoValue;
  if (all) {
    std::vector<Var> parts;
    for (size_t i = 0; i < sizes_.size(); ++i) parts.push_back(Dout(g, static_cast<int>(i)));
    g.input_grads[0] = Apply1(std::make_shared<ConcatOp>(dim_), parts).id();
    return g.tracer.status();
  }
  const int64_t total = std::accumulate(sizes_.begin(), sizes_.end(), int64_t{0});
  Var sum;
  int64_t at = 0;
  for (size_t i = 0; i < sizes_.size(); ++i) {
    if (g.output_grads[i] != kNoValue) {
      const Var padded = Apply1(std::make_shared<SliceGradOp>(dim_, at, at + sizes_[i], total),
                                {Dout(g, static_cast<int>(i))});
      sum = sum.valid() ? Add(sum, padded) : padded;
    }
    at += sizes_[i];
  }
  g.input_grads[0] = sum.id();
  return g.tracer.status();
}

// `dim` counted from the back when negative; out of range stays out of range for Infer to name.
int Resolve(const Var& x, int dim) { return x.valid() && dim < 0 ? dim + x.rank() : dim; }

}  // namespace

Var Permute(Var x, std::vector<int> order) {
  for (int& d : order) d = Resolve(x, d);
  return Apply1(std::make_shared<PermuteOp>(std::move(order)), {x});
}

Var Transpose(Var x, int dim0, int dim1) {
  if (!x.valid()) return x;
  std::vector<int> order(x.rank());
  std::iota(order.begin(), order.end(), 0);
  dim0 = Resolve(x, dim0);
  dim1 = Resolve(x, dim1);
  if (dim0 >= 0 && dim0 < x.rank() && dim1 >= 0 && dim1 < x.rank()) std::swap(order[dim0], order[dim1]);
  else order.push_back(dim0 < 0 || dim0 >= x.rank() ? dim0 : dim1);  // Infer names the bad order
  return Apply1(std::make_shared<PermuteOp>(std::move(order)), {x});
}

Var Slice(Var x, int dim, int64_t start, int64_t end) {
  return Apply1(std::make_shared<SliceOp>(Resolve(x, dim), start, end), {x});
}

Var Concat(const std::vector<Var>& inputs, int dim) {
  if (inputs.empty() || !inputs[0].valid()) return Var();
  return Apply1(std::make_shared<ConcatOp>(Resolve(inputs[0], dim)), inputs);
}

std::vector<Var> Split(Var x, int dim, const std::vector<int64_t>& sizes) {
  return Apply(std::make_shared<SplitOp>(Resolve(x, dim), sizes), {x});
}

}  // namespace strata::graph::ops
