// Status helpers shared by every layer.
//
//   absl::StatusOr<Tensor> MakeThing(...) {
//     STRATA_RETURN_IF_ERROR(CheckShape(x));
//     STRATA_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, DType::kF32, allocator));
//     return t;
//   }
//
// Debian's Abseil (20220623) ships no status macros, so they are defined once here.
// Debian's Abseil is built without std::string_view aliasing: use absl::string_view in APIs.
// STRATA_CHECK is for broken internal invariants only: it prints and aborts. Errors a user can
// cause (shapes, files, budgets) are returned as absl::Status instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define STRATA_STATUS_CONCAT_INNER(a, b) a##b
#define STRATA_STATUS_CONCAT(a, b) STRATA_STATUS_CONCAT_INNER(a, b)

#define STRATA_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    if (absl::Status strata_status_ = (expr); !strata_status_.ok()) { \
      return strata_status_;                         \
    }                                                \
  } while (false)

#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL(STRATA_STATUS_CONCAT(strata_statusor_, __LINE__), lhs, expr)

#define STRATA_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#define STRATA_CHECK(cond, ...)                                                       \
  do {                                                                                \
    if (!(cond)) [[unlikely]] {                                                       \
      ::strata::internal::CheckFailed(__FILE__, __LINE__, #cond,                      \
                                      ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                                 \
  } while (false)

namespace strata::internal {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const std::string& message) {
  std::fprintf(stderr, "%s:%d: internal invariant broken: %s %s\n", file, line, cond,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace strata::internal
