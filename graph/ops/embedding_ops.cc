// embedding lookup and its gradient.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::TypeError;

// (ids, dout) -> dtable (V, C).
class EmbeddingGradOp final : public Op {
 public:
  explicit EmbeddingGradOp(Shape table) : table_(std::move(table)) {}
  OpKind kind() const override { return OpKind::kEmbeddingGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    return std::vector<TensorType>{{table_, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, EmbeddingBackward, a.in[0], a.in[1], a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  Shape table_;
};

class EmbeddingOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kEmbedding; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    if (in[0].dtype != DType::kI32 && in[0].dtype != DType::kI64) {
      return TypeError(name(), "ids are ", in[0].ToString(), ", expected i32 or i64");
    }
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "table", in[1]));
    if (in[1].shape.rank() != 2) {
      return TypeError(name(), "table is ", in[1].ToString(), ", expected (V, C)");
    }
    Dims dims(in[0].shape.dims().begin(), in[0].shape.dims().end());
    dims.push_back(in[1].shape[1]);
    return std::vector<TensorType>{{Shape(dims), DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, EmbeddingForward, a.in[0], a.in[1], a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    const Shape& table = g.tracer.graph().value(g.node.inputs[1]).type.shape;
    return internal::ApplyGradient(g, std::make_shared<EmbeddingGradOp>(table),
                                   {internal::In(g, 0), internal::Dout(g, 0)}, {1});
  }
};

}  // namespace

Var Arange(const Var& like, int64_t n, const std::string& name) {
  if (!like.valid()) return Var();
  Tracer& t = *like.tracer();
  Var v = t.NewValue({Shape{n}, DType::kI32}, ValueRole::kConstant, name);
  std::string bytes(n * sizeof(int32_t), '\0');
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = static_cast<int32_t>(i);
    std::memcpy(bytes.data() + i * sizeof(int32_t), &id, sizeof(id));
  }
  t.graph().SetConstant(v.id(), std::move(bytes));
  return v;
}

Var Embedding(Var ids, Var table) {
  return internal::Apply1(std::make_shared<EmbeddingOp>(), {ids, table});
}

}  // namespace strata::graph::ops
