#include "examples/common/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace strata::examples {
namespace {

// The payload that marks a usage error (Note [exit codes]).
constexpr char kUsagePayload[] = "strata.examples/usage";

std::string RangeText(const IntRange& r) {
  return absl::StrCat("[", r.min, ", ", r.max, "]", r.zero ? absl::StrCat(", 0: ", r.zero) : "");
}

std::string RangeText(const RealRange& r) {
  return absl::StrCat(r.min_open ? "(" : "[", r.min, ", ", r.max, r.max_open ? ")" : "]",
                      r.zero ? absl::StrCat(", 0: ", r.zero) : "");
}

std::string RangeText(const ByteRange& r) {
  return absl::StrCat("[", BytesText(r.min), ", ", BytesText(r.max), "]",
                      r.zero ? absl::StrCat(", 0: ", r.zero) : "");
}

bool InRange(double v, const RealRange& r) {
  if (!std::isfinite(v)) return false;
  const bool above_min = r.min_open ? v > r.min : v >= r.min;
  const bool below_max = r.max_open ? v < r.max : v <= r.max;
  return above_min && below_max;
}

constexpr char kSizeSyntax[] =
    "sizes are bytes with an optional binary unit: 123456, 64K, 512M, 1.5G, 4GiB (K, M, G, T are "
    "1024, 1024^2, 1024^3, 1024^4; iB or B may follow)";

}  // namespace

absl::StatusOr<int64_t> ParseBytes(absl::string_view text) {
  using u128 = unsigned __int128;
  constexpr u128 kMax = static_cast<u128>(std::numeric_limits<int64_t>::max());
  if (text.empty()) return absl::InvalidArgumentError("a size cannot be empty");
  if (text[0] == '-') return absl::InvalidArgumentError("a size cannot be negative");
  size_t i = 0;
  u128 whole = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    whole = whole * 10 + static_cast<u128>(text[i] - '0');
    if (whole > kMax) return absl::OutOfRangeError("a size cannot exceed 2^63 - 1 bytes");
  }
  if (i == 0) return absl::InvalidArgumentError("a size starts with a digit");
  u128 fraction = 0, scale = 1;  // the digits after the point: fraction / scale
  if (i < text.size() && text[i] == '.') {
    const size_t first = ++i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      if (i - first >= 18) return absl::InvalidArgumentError("a size has at most 18 decimals");
      fraction = fraction * 10 + static_cast<u128>(text[i] - '0');
      scale *= 10;
    }
    if (i == first) return absl::InvalidArgumentError("a decimal point needs digits after it");
  }
  absl::string_view unit = text.substr(i);
  u128 multiplier = 1;
  if (!unit.empty()) {
    switch (unit[0]) {
      case 'k': case 'K': multiplier = u128{1} << 10; break;
      case 'm': case 'M': multiplier = u128{1} << 20; break;
      case 'g': case 'G': multiplier = u128{1} << 30; break;
      case 't': case 'T': multiplier = u128{1} << 40; break;
      default: break;
    }
    absl::string_view rest = multiplier == 1 ? unit : unit.substr(1);
    const bool suffix_ok = rest.empty() || rest == "B" || rest == "b" ||
                           (multiplier != 1 && (rest == "iB" || rest == "ib" || rest == "IB"));
    if (!suffix_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown unit '", unit, "' (expected K, M, G or T, optionally followed by "
                       "iB or B)"));
    }
  }
  const u128 fraction_bytes = fraction * multiplier;
  if (fraction_bytes % scale != 0) {
    return absl::InvalidArgumentError("a size must come to a whole number of bytes");
  }
  const u128 bytes = whole * multiplier + fraction_bytes / scale;
  if (bytes > kMax) return absl::OutOfRangeError("a size cannot exceed 2^63 - 1 bytes");
  return static_cast<int64_t>(bytes);
}

std::string BytesText(int64_t bytes) {
  if (bytes == 0) return "0";
  for (const auto& [shift, unit] : {std::pair{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}}) {
    const int64_t m = int64_t{1} << shift;
    if (bytes % m == 0) return absl::StrCat(bytes / m, unit);
  }
  return absl::StrCat(bytes);
}

absl::Status UsageError(absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kUsagePayload, absl::Cord("1"));
  return s;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

void Flags::Add(std::string name, int64_t* v, IntRange range, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.default_text = absl::StrCat(*v);
  f.range_text = RangeText(range);
  f.value = v;
  f.int_range = range;
}
void Flags::Add(std::string name, double* v, RealRange range, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.default_text = absl::StrCat(*v);
  f.range_text = RangeText(range);
  f.value = v;
  f.real_range = range;
}
void Flags::AddBytes(std::string name, int64_t* v, ByteRange range, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.default_text = BytesText(*v);
  f.range_text = RangeText(range);
  f.value = v;
  f.bytes = true;
  f.int_range = {.min = range.min, .max = range.max, .zero = range.zero};
}
void Flags::Add(std::string name, std::string* v, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.default_text = *v;
  f.value = v;
}
void Flags::AddRepeated(std::string name, std::vector<std::string>* v, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = absl::StrCat(std::move(help), "; repeatable");
  f.value = v;
}
void Flags::Add(std::string name, bool* v, std::string help) {
  Flag& f = flags_.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.default_text = *v ? "true" : "false";
  f.value = v;
}

bool Flags::given(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.given;
  }
  return false;
}

absl::Status Flags::Set(Flag& f, const std::string& text) {
  auto bad = [&](absl::string_view what) {
    return UsageError(absl::StrCat("--", f.name, " expects ", what, ", got '", text, "'"));
  };
  auto outside = [&]() {
    return UsageError(absl::StrCat("--", f.name, " ", text, " is outside its range ", f.range_text));
  };
  f.given = true;
  if (auto* p = std::get_if<int64_t*>(&f.value); p != nullptr && f.bytes) {
    const absl::StatusOr<int64_t> v = ParseBytes(text);
    if (v.status().code() == absl::StatusCode::kInvalidArgument) {
      return UsageError(absl::StrCat("--", f.name, " expects a size, got '", text, "': ",
                                     v.status().message(), " (", kSizeSyntax, ")"));
    }
    if (!v.ok() || *v < f.int_range.min || *v > f.int_range.max) return outside();
    **p = *v;
  } else if (auto* p = std::get_if<int64_t*>(&f.value)) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') return bad("an integer");
    if (errno == ERANGE || v < f.int_range.min || v > f.int_range.max) return outside();
    **p = v;
  } else if (auto* p = std::get_if<double*>(&f.value)) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') return bad("a number");
    if (!InRange(v, f.real_range)) return outside();  // also NaN, infinities and overflow
    **p = v;
  } else if (auto* p = std::get_if<std::string*>(&f.value)) {
    **p = text;
  } else if (auto* p = std::get_if<std::vector<std::string>*>(&f.value)) {
    (*p)->push_back(text);
  } else if (auto* p = std::get_if<bool*>(&f.value)) {
    if (text == "true" || text == "1") **p = true;
    else if (text == "false" || text == "0") **p = false;
    else return bad("true or false");
  }
  return absl::OkStatus();
}

absl::Status Flags::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return UsageError(absl::StrCat("unexpected argument '", arg, "' (flags start with --)"));
    }
    arg = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    Flag* flag = nullptr;
    for (Flag& f : flags_) {
      if (f.name == arg) flag = &f;
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag --", arg, " (see --help)"));
    if (!has_value) {
      if (std::holds_alternative<bool*>(flag->value)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return UsageError(absl::StrCat("--", arg, " needs a value"));
      }
    }
    if (absl::Status s = Set(*flag, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<int> Flags::ParseOrExitCode(int argc, char** argv) {
  if (absl::Status s = Parse(argc, argv); !s.ok()) return ExitCode(s);
  if (help_) {
    std::cout << Help();
    return 0;
  }
  return std::nullopt;
}

int Flags::ExitCode(const absl::Status& result) const {
  if (result.ok()) return 0;
  std::cerr << program_ << ": " << result.message() << "\n";
  return IsUsageError(result) ? 2 : 1;
}

std::string Flags::Help() const {
  std::string s = absl::StrCat("usage: ", program_, " [flags]\n", summary_, "\n\nflags:\n");
  for (const Flag& f : flags_) {
    absl::StrAppend(&s, "  --", f.name, std::string(f.name.size() < 16 ? 16 - f.name.size() : 1, ' '),
                    f.help, f.range_text.empty() ? "" : absl::StrCat(f.bytes ? "; size " : "; ", f.range_text),
                    f.default_text.empty() ? "" : absl::StrCat(" (default ", f.default_text, ")"),
                    "\n");
  }
  for (const Flag& f : flags_) {
    if (f.bytes) {
      absl::StrAppend(&s, "\n", kSizeSyntax, "\n");
      break;
    }
  }
  absl::StrAppend(&s, "\nexit codes: 0 success, 1 run-time error (a missing or malformed file, IO, "
                      "numerical failure), 2 usage error (bad or contradicting flags)\n");
  return s;
}

}  // namespace strata::examples
