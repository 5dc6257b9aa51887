#include <kiln/nn/module.h>

#include <unordered_set>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln::nn {

namespace {

void check_name(const std::string& name, const char* what) {
  KILN_CHECK(!name.empty(), "Module: a {} must not be empty", what);
  KILN_CHECK(name.find('/') == std::string::npos,
             "Module: {} '{}' contains '/', which separates the parts of variable names", what,
             name);
}

// Dims that fit: equal, or either unknown (-1).
bool dims_fit(int64_t built, int64_t got) {
  return built == -1 || got == -1 || built == got;
}

// Appends the variables not seen yet: a module used twice contributes its variables once.
void append(std::vector<Variable>& out, std::unordered_set<uint64_t>& seen,
            const std::vector<Variable>& vars) {
  for (const Variable& v : vars)
    if (seen.insert(v.id()).second) out.push_back(v);
}

}  // namespace

Module::Module(std::string name) : name_(std::move(name)) {
  check_name(name_, "name");
}

void Module::set_name(std::string name) {
  check_name(name, "name");
  name_ = std::move(name);
  for (const Ref<Module>& c : children_)
    c->set_scope(path());
}

void Module::set_scope(std::string scope) {
  scope_ = std::move(scope);
  for (const Ref<Module>& c : children_)
    c->set_scope(path());
}

namespace {
// The dtypes of the modules whose build() is running on this thread, innermost last.
thread_local std::vector<DType> t_building;

struct Building {
  explicit Building(DType d) { t_building.push_back(d); }
  ~Building() { t_building.pop_back(); }
  Building(const Building&) = delete;
  Building& operator=(const Building&) = delete;
};
}  // namespace

void Module::ensure_built(const Shape& input_shape, std::optional<DType> requested) {
  if (built_) {
    // A shared or pre-built module adopted elsewhere must still fit its new input.
    bool fits = input_shape.rank() == input_shape_.rank();
    for (int64_t i = 1; fits && i < input_shape.rank(); ++i)
      fits = dims_fit(input_shape_[static_cast<size_t>(i)], input_shape[static_cast<size_t>(i)]);
    KILN_CHECK(fits, "{}: was built for inputs of shape {} but is now given shape {}", path(),
               input_shape_.str(), input_shape.str());
    return;
  }
  const DType dtype = requested ? *requested : t_building.empty() ? f32 : t_building.back();
  KILN_CHECK(is_floating(dtype), "{}: variables must be f32 or f64, not {}", path(),
             kiln::name(dtype));
  for (int64_t i = 1; i < input_shape.rank(); ++i)
    KILN_CHECK(input_shape[static_cast<size_t>(i)] >= -1, "{}: bad input shape {}", path(),
               input_shape.str());
  const size_t own_before = own_.size(), children_before = children_.size();
  const DType dtype_before = dtype_;
  dtype_ = dtype;
  try {
    Building scope(dtype);
    // output_shape validates the input (rank, window sizes) also for layers with no build.
    output_shape(input_shape);
    build(input_shape);
  } catch (...) {
    // Leave the module unbuilt and as it was, so a corrected call can build it.
    own_.resize(own_before);
    children_.resize(children_before);
    dtype_ = dtype_before;
    throw;
  }
  input_shape_ = input_shape;
  built_ = true;
}

Tensor Module::prepare_input(const Tensor& x) {
  KILN_CHECK(x.defined(), "{}: called with an undefined Tensor", path());
  if (!built_) {
    // Integer inputs (ids) say nothing about the variables' dtype.
    ensure_built(x.shape(),
                 is_floating(x.dtype()) ? std::optional<DType>(x.dtype()) : std::nullopt);
  } else {
    const Shape& s = x.shape();
    bool fits = s.rank() == input_shape_.rank();
    for (int64_t i = 1; fits && i < s.rank(); ++i)
      fits = dims_fit(input_shape_[static_cast<size_t>(i)], s[static_cast<size_t>(i)]);
    KILN_CHECK(fits,
               "{}: input shape {} ({}) is incompatible with the shape {} it was built for (all "
               "dims but the batch, dim 0, must match)",
               path(), s.str(), x.type_str(), input_shape_.str());
  }
  if (autocast_ && is_floating(x.dtype()) && x.dtype() != dtype_) return cast(x, dtype_);
  return x;
}

Tensor Module::operator()(const Tensor& x, bool training) {
  return call(prepare_input(x), training);
}

Variable Module::add_variable(const std::string& local_name, const Shape& shape,
                              const Initializer& init, bool trainable, DType dtype) {
  check_name(local_name, "variable name");
  const std::string full = path() + "/" + local_name;
  for (int64_t d : shape)
    KILN_CHECK(d >= 0, "{}: variable shape {} has an unknown or negative dim", full, shape.str());
  KILN_CHECK(static_cast<bool>(init), "{}: no initializer", full);
  for (const Variable& v : own_)
    KILN_CHECK(v.name() != full, "{}: variable created twice", full);
  Tensor value;
  {
    // tf.init_scope: the initial value is concrete even when the module is built inside a
    // trace or under a tape (neither should see the initializer's ops).
    SuspendHooks eager;
    value = init(shape, dtype);
  }
  KILN_CHECK(value.defined() && value.shape() == shape && value.dtype() == dtype,
             "{}: the initializer returned {} for a variable of {}[{}]", full,
             value.defined() ? value.type_str() : std::string("an undefined Tensor"),
             kiln::name(dtype), fmt::join(shape.dims(), ","));
  // Created outside SuspendHooks, so a trace can refuse variable creation on a retrace.
  Variable v(value, full, trainable);
  own_.push_back(v);
  return v;
}

void Module::add_child(Ref<Module> child) {
  KILN_CHECK(static_cast<bool>(child), "{}: add_child got an empty Ref", path());
  KILN_CHECK(child.get() != this, "{}: a module cannot be its own child", path());
  for (const Ref<Module>& c : children_)
    KILN_CHECK(c.get() == child.get() || c->name() != child->name(),
               "{}: it already has a child named '{}' (make names unique with unique_name)", path(),
               child->name());
  child->set_scope(path());
  children_.push_back(std::move(child));
}

std::vector<Variable> Module::variables() const {
  std::vector<Variable> out;
  std::unordered_set<uint64_t> seen;
  append(out, seen, own_);
  for (const Ref<Module>& c : children_)
    append(out, seen, c->variables());
  return out;
}

std::vector<Variable> Module::trainable_variables() const {
  if (!trainable_) return {};
  std::vector<Variable> out;
  std::unordered_set<uint64_t> seen;
  std::vector<Variable> own;
  for (const Variable& v : own_)
    if (v.trainable()) own.push_back(v);
  append(out, seen, own);
  for (const Ref<Module>& c : children_)
    append(out, seen, c->trainable_variables());
  return out;
}

std::vector<Variable> Module::non_trainable_variables() const {
  // Keras: freezing a module makes all of its variables non-trainable ones.
  if (!trainable_) return variables();
  std::vector<Variable> out;
  std::unordered_set<uint64_t> seen;
  std::vector<Variable> own;
  for (const Variable& v : own_)
    if (!v.trainable()) own.push_back(v);
  append(out, seen, own);
  for (const Ref<Module>& c : children_)
    append(out, seen, c->non_trainable_variables());
  return out;
}

std::string unique_name(const std::string& base, const std::vector<Ref<Module>>& taken) {
  std::unordered_set<std::string> names;
  for (const Ref<Module>& m : taken)
    if (m) names.insert(m->name());
  if (!names.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = base + "_" + std::to_string(i);
    if (!names.count(candidate)) return candidate;
  }
}

}  // namespace kiln::nn
