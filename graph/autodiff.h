// Reverse-mode autodiff over the IR, at compile time (DESIGN.md, "The compile pipeline", 3).
//
//   Tracer t(graph);  ... Var loss = ...;             // the traced forward
//   STRATA_ASSIGN_OR_RETURN(Gradients g, Differentiate(t, loss, seed, wrt));
//   g.of[param.id()]                                   // d loss / d param, a kGradient value
//
// Walks the nodes in reverse, asks each op for its input gradients as more IR (Op::Gradient) and
// sums the contributions of a value used more than once with `add` nodes. Only what leads to a
// value in `wrt` is differentiated: frozen parameters and inputs get no gradient chain at all.
#pragma once

#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/tracer.h"

namespace strata::graph {

struct Gradients {
  std::map<ValueId, ValueId> of;  // value -> its gradient, for every value in `wrt`
};

// `seed` is a scalar value holding d total / d loss (1, or 1/k over k micro-batches).
absl::StatusOr<Gradients> Differentiate(Tracer& tracer, Var loss, Var seed,
                                        const std::vector<ValueId>& wrt);

}  // namespace strata::graph
