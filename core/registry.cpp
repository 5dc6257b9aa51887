#include <kiln/core/registry.h>

namespace kiln {

Registry& Registry::instance() {
  static Registry* r = new Registry();  // never destroyed: static kernels refer to it
  return *r;
}

OpDef& Registry::mutable_op(const std::string& name) {
  auto& slot = ops_[name];
  if (!slot) slot = std::make_unique<OpDef>(name);
  return *slot;
}

const OpDef* Registry::find(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : it->second.get();
}

const OpDef& Registry::op(const std::string& name) const {
  const OpDef* op = find(name);
  KILN_CHECK(op != nullptr, "registry: no op named '{}'", name);
  return *op;
}

std::vector<const OpDef*> Registry::all() const {
  std::vector<const OpDef*> out;
  for (const auto& [name, op] : ops_)
    out.push_back(op.get());
  return out;
}

}  // namespace kiln
