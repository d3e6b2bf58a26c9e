#include "collectives/comm_options.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace strata::collectives {

absl::StatusOr<double> ResolveCommTimeout(const CommOptions& options) {
  const double seconds = options.timeout_seconds;
  if (!std::isfinite(seconds) || seconds < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CommOptions.timeout_seconds must be a positive number of seconds (or 0 for the default), "
        "not ", seconds));
  }
  if (seconds > 0) return seconds;
  const char* env = std::getenv("STRATA_COMM_TIMEOUT");
  if (env == nullptr || *env == '\0') return kDefaultCommTimeoutSeconds;
  double parsed = 0;
  if (!absl::SimpleAtod(env, &parsed) || !std::isfinite(parsed) || parsed <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "STRATA_COMM_TIMEOUT must be a positive number of seconds, not '", env, "'"));
  }
  return parsed;
}

}  // namespace strata::collectives
