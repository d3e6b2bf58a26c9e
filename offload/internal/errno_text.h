// "No space left on device (ENOSPC)": errno as a person reads it, with the name to search for.
//
//   return absl::Status(absl::ErrnoToStatusCode(errno),
//                       absl::StrCat("fallocate ", path, ": ", ErrnoText(errno)));
#pragma once

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace strata::offload::internal {

inline std::string ErrnoText(int error_number) {
  const char* name = strerrorname_np(error_number);
  return absl::StrCat(std::strerror(error_number), " (",
                      name != nullptr ? std::string(name) : absl::StrCat("errno ", error_number),
                      ")");
}

}  // namespace strata::offload::internal
