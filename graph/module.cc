#include "graph/module.h"

#include "runtime/status.h"
#include "absl/strings/str_cat.h"

namespace strata::graph {

std::string Init::ToString() const {
  switch (kind) {
    case kConstant: return absl::StrCat("constant(", a, ")");
    case kNormal: return absl::StrCat("normal(", a, ", ", b, ")");
    case kUniform: return absl::StrCat("uniform(", a, ", ", b, ")");
  }
  return "?";
}

std::string Module::path() const {
  if (parent_ == nullptr) return "";
  const std::string up = parent_->path();
  return up.empty() ? name_ : absl::StrCat(up, ".", name_);
}

void Module::ForEachParameter(const std::function<void(const std::string&, Parameter&)>& fn) {
  const std::string prefix = path();
  for (auto& p : params_) fn(prefix.empty() ? p->name() : absl::StrCat(prefix, ".", p->name()), *p);
  for (auto& c : children_) c->ForEachParameter(fn);
}

void Module::ForEachModule(const std::function<void(const std::string&, Module&)>& fn) {
  fn(path(), *this);
  for (auto& c : children_) c->ForEachModule(fn);
}

void Module::SetTrainable(bool trainable) {
  ForEachParameter([&](const std::string&, Parameter& p) { p.set_trainable(trainable); });
}

Parameter* Module::FindParameter(const std::string& path) {
  Parameter* found = nullptr;
  ForEachParameter([&](const std::string& name, Parameter& p) {
    if (name == path) found = &p;
  });
  return found;
}

Parameter* Module::AddParameter(std::string name, Shape shape, Init init, bool trainable) {
  params_.push_back(std::make_unique<Parameter>(std::move(name), std::move(shape), init,
                                                trainable, /*buffer=*/false));
  return params_.back().get();
}

Parameter* Module::AddBuffer(std::string name, Shape shape, Init init) {
  params_.push_back(std::make_unique<Parameter>(std::move(name), std::move(shape), init,
                                                /*trainable=*/false, /*buffer=*/true));
  return params_.back().get();
}

void Module::AddModule(std::string name, std::unique_ptr<Module> m) {
  STRATA_CHECK(m->parent_ == nullptr, "module already has a parent");
  m->name_ = std::move(name);
  m->parent_ = this;
  children_.push_back(std::move(m));
}

Var Layer::operator()(Var x) {
  if (!recompute_boundary_ || x.tracer() == nullptr) return Forward(x);
  Tracer::Block block(*x.tracer());
  return Forward(x);
}

Module::TraceScope::TraceScope(const Module& m, const Var& any) {
  if (any.tracer() != nullptr) scope_ = std::make_unique<Tracer::Scope>(*any.tracer(), m.path());
}
Module::TraceScope::~TraceScope() = default;

}  // namespace strata::graph
