// Whether a backward kernel overwrites a parameter-gradient output or adds into it.
//
//   LinearBackward(x, w, dy, dx, dw, db, GradMode::kAccumulate);   // micro-batch accumulation
//
// Only parameter gradients (weights, biases, tables) take a GradMode; input gradients are always
// overwritten.
#pragma once

namespace strata::cpu {

enum class GradMode { kOverwrite, kAccumulate };

}  // namespace strata::cpu
