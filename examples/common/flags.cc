#include "examples/common/flags.h"

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"

namespace strata::examples {

void Flags::Add(std::string name, int64_t* v, std::string help) {
  flags_.push_back({std::move(name), std::move(help), absl::StrCat(*v), v});
}
void Flags::Add(std::string name, double* v, std::string help) {
  flags_.push_back({std::move(name), std::move(help), absl::StrCat(*v), v});
}
void Flags::Add(std::string name, std::string* v, std::string help) {
  flags_.push_back({std::move(name), std::move(help), v->empty() ? "" : *v, v});
}
void Flags::Add(std::string name, bool* v, std::string help) {
  flags_.push_back({std::move(name), std::move(help), *v ? "true" : "false", v});
}

bool Flags::given(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.given;
  }
  return false;
}

absl::Status Flags::Set(Flag& f, const std::string& text) {
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat(program_, ": --", f.name, " expects ", what, ", got '", text, "'"));
  };
  f.given = true;
  if (auto* p = std::get_if<int64_t*>(&f.value)) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0) return bad("an integer");
    **p = v;
  } else if (auto* p = std::get_if<double*>(&f.value)) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0) return bad("a number");
    **p = v;
  } else if (auto* p = std::get_if<std::string*>(&f.value)) {
    **p = text;
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
      return absl::InvalidArgumentError(
          absl::StrCat(program_, ": unexpected argument '", arg, "' (flags start with --)"));
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
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(program_, ": unknown flag --", arg, " (see --help)"));
    }
    if (!has_value) {
      if (std::holds_alternative<bool*>(flag->value)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(program_, ": --", arg, " needs a value"));
      }
    }
    if (absl::Status s = Set(*flag, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<int> Flags::ParseOrExitCode(int argc, char** argv) {
  if (absl::Status s = Parse(argc, argv); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (help_) {
    std::cout << Help();
    return 0;
  }
  return std::nullopt;
}

int Flags::ExitCode(const absl::Status& result) const {
  if (result.ok()) return 0;
  std::cerr << program_ << ": " << result.message() << "\n";
  return 1;
}

std::string Flags::Help() const {
  std::string s = absl::StrCat("usage: ", program_, " [flags]\n", summary_, "\n\nflags:\n");
  for (const Flag& f : flags_) {
    absl::StrAppend(&s, "  --", f.name, std::string(f.name.size() < 16 ? 16 - f.name.size() : 1, ' '),
                    f.help, f.default_text.empty() ? "" : absl::StrCat(" (default ", f.default_text, ")"),
                    "\n");
  }
  return s;
}

}  // namespace strata::examples
