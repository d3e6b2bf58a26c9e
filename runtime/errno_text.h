// "No space left on device (ENOSPC)": errno as a person reads it, with the name to search for.
//
//   const int fd = open(path.c_str(), O_RDONLY);
//   if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", ErrnoText(errno)));
#pragma once

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace strata {

inline std::string ErrnoText(int error_number) {
  const char* name = strerrorname_np(error_number);
  return absl::StrCat(std::strerror(error_number), " (",
                      name != nullptr ? std::string(name) : absl::StrCat("errno ", error_number),
                      ")");
}

}  // namespace strata
