#include <kiln/tracer/function.h>

#include <cstdio>
#include <cstdlib>

namespace kiln {

bool TensorSpec::accepts(const Tensor& t) const {
  return tracer::fits(type(), t);
}

std::string ConcreteFunction::ir(IRStage stage) const {
  if (stage == IRStage::optimized)
    if (const tracer::CompiledGraph* exe = executable()) return exe->optimized_ir();
  return ir::print(graph());
}

std::string ConcreteFunction::dot() const {
  if (const tracer::CompiledGraph* exe = executable()) return exe->dot();
  std::string out = "digraph \"" + graph().name + "\" {\n";
  for (size_t i = 0; i < graph().nodes.size(); ++i) {
    const ir::Node& n = graph().nodes[i];
    out += fmt::format("  n{} [label=\"{}\"];\n", i, n.op);
  }
  return out + "}\n";
}

const ir::Graph& ConcreteFunction::graph() const {
  KILN_CHECK(defined(), "ConcreteFunction: empty concrete function");
  return *graph_;
}

int64_t ConcreteFunction::kernel_count() const {
  if (const tracer::CompiledGraph* exe = executable()) return exe->kernel_count();
  int64_t n = 0;
  for (const ir::Node& node : graph().nodes)
    if (registry().find(node.op) != nullptr) ++n;
  return n;
}

namespace detail {

std::string static_key(bool v) {
  return v ? "true" : "false";
}
std::string static_key(int64_t v) {
  return std::to_string(v);
}
std::string static_key(double v) {
  return fmt::format("{:a}", v);
}  // exact
std::string static_key(const std::string& v) {
  return fmt::format("\"{}\"", v);
}

namespace {
std::string describe_type(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}
}  // namespace

void Signature::add_tensor(const Tensor& t, std::string& part) {
  KILN_CHECK(t.defined(), "function '{}': argument {} is an undefined Tensor", function_name,
             parts.size());
  TensorType type = t.type();
  if (input_signature) {
    const TensorSpec& spec = (*input_signature)[tensor_index];
    KILN_CHECK(spec.accepts(t),
               "function '{}': tensor argument {} is {} but the input_signature expects {}",
               function_name, tensor_index, t.type_str(), describe_type(spec.type()));
    type = spec.type();
  }
  ++tensor_index;
  part += describe_type(type) + "@" + t.device().str();
  params.push_back(type);
  flat.push_back(t);
}

void Signature::add_spec(const TensorSpec& s, std::string& part) {
  ++tensor_index;
  part += describe_type(s.type()) + "@cpu";
  params.push_back(s.type());
}

std::string Signature::key() const {
  std::string k;
  for (const auto& p : parts)
    k += p + ";";
  return k;
}

int FunctionCore::tracing_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return traces_;
}

std::vector<ConcreteFunction> FunctionCore::concrete_functions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ConcreteFunction> out;
  out.reserve(cache_.size());
  for (const auto& [key, entry] : cache_)
    out.push_back(entry.first);
  return out;
}

// reduce_retracing: when a tensor position has been seen with another shape of the same
// rank, the dims that differed become unknown (-1) so one trace serves both.
void FunctionCore::relax(Signature& sig) {
  if (seen_params_.size() != sig.params.size()) {
    seen_params_.assign(sig.params.size(), {});
  }
  bool changed = false;
  for (size_t i = 0; i < sig.params.size(); ++i) {
    TensorType& t = sig.params[i];
    for (const TensorType& seen : seen_params_[i]) {
      if (seen.dtype != t.dtype || seen.shape.rank() != t.shape.rank()) continue;
      for (int64_t d = 0; d < t.shape.rank(); ++d)
        if (seen.shape[d] != t.shape[d] && t.shape[d] != -1) {
          t.shape[d] = -1;
          changed = true;
        }
    }
    seen_params_[i].push_back(t);
  }
  if (!changed) return;
  // Rebuild the key parts from the relaxed types (static parts stay as they were).
  size_t ti = 0;
  for (auto& part : sig.parts) {
    if (part.find('@') == std::string::npos || part.rfind("list", 0) == 0) continue;
    part = describe_type(sig.params[ti++]) + part.substr(part.find('@'));
  }
}

void FunctionCore::note_call(const Signature& sig, bool traced) {
  recent_traces_.push_back(traced);
  if (recent_traces_.size() > 10) recent_traces_.erase(recent_traces_.begin());
  int n = 0;
  for (bool t : recent_traces_)
    n += t;
  static const bool log = [] {
    const char* s = std::getenv("KILN_LOG");
    return s && (std::string(s) == "info" || std::string(s) == "debug");
  }();
  if (traced && log) {
    std::string why = "first call";
    for (size_t i = 0; i < sig.parts.size() && !last_parts_.empty(); ++i)
      if (i >= last_parts_.size() || sig.parts[i] != last_parts_[i]) {
        why = fmt::format("argument {} changed from {} to {}", i,
                          i < last_parts_.size() ? last_parts_[i] : "absent", sig.parts[i]);
        break;
      }
    std::fprintf(stderr, "kiln: tracing function '%s' (%s)\n", options_.name.c_str(), why.c_str());
    if (n >= 5)
      std::fprintf(stderr,
                   "kiln: warning: function '%s' retraced %d times in its last %zu calls; pass "
                   "an input_signature with -1 dims or reduce_retracing = true (%s)\n",
                   options_.name.c_str(), n, recent_traces_.size(), why.c_str());
  }
  last_parts_ = sig.parts;
}

ConcreteFunction FunctionCore::concrete(
    Signature& sig, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
    size_t& num_results) {
  std::unique_lock<std::mutex> lock(mu_);
  if (options_.reduce_retracing && options_.input_signature.empty()) {
    // Exact hits first: a shape already traced is served without relaxing.
    auto exact = cache_.find(sig.key());
    if (exact == cache_.end()) relax(sig);
  }
  const std::string key = sig.key();
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    note_call(sig, false);
    num_results = it->second.second;
    return it->second.first;
  }
  const bool first = traces_ == 0;
  lock.unlock();  // the trace may call other functions
  ir::Graph g = tracer::trace(options_.name, sig.params, fn, first);
  lock.lock();
  ++traces_;
  note_call(sig, true);
  num_results = g.results.size();
  ConcreteFunction cf(std::make_shared<const ir::Graph>(std::move(g)), options_.jit_compile);
  cache_.emplace(key, std::make_pair(cf, num_results));
  return cf;
}

}  // namespace detail
}  // namespace kiln
