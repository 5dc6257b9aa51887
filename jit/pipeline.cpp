// The pipeline: one linear function per stage, each pass followed by the same bookkeeping
// (verify in debug builds, dump under KILN_DUMP).

#include <kiln/jit/pipeline.h>

#include <cstdlib>
#include <filesystem>

#include <kiln/jit/graph_util.h>
#include <kiln/tracer/file_util.h>

namespace kiln::jit {

std::string file_safe(const std::string& name) {
  std::string out = name.empty() ? std::string("fn") : name;
  for (char& c : out)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-'))
      c = '_';
  return out;
}

namespace {

// Writes the graph's text under KILN_DUMP (or options.dump_dir), numbered in pipeline order.
class Dumper {
 public:
  Dumper(const ir::Graph& g, const PipelineOptions& options) : name_(file_safe(g.name)) {
    dir_ = options.dump_dir;
    if (dir_.empty())
      if (const char* env = std::getenv("KILN_DUMP")) dir_ = env;
  }

  void write(const ir::Graph& g, const std::string& stage) {
    if (dir_.empty()) return;
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir_, ec);
    const fs::path path = fs::path(dir_) / fmt::format("{}.{:02}.{}.ir", name_, count_++, stage);
    write_file_atomically(path, ir::print(g), "KILN_DUMP");
  }

 private:
  std::string dir_;
  std::string name_;
  int count_ = 0;
};

void verify_after(const ir::Graph& g, const std::string& pass, int round) {
  try {
    ir::verify(g);
  } catch (const Error& e) {
    KILN_FAIL("jit: the graph fails to verify after pass '{}' (round {}): {}", pass, round,
              e.what());
  }
}

}  // namespace

std::vector<Pass> simplify_passes() {
  // Algebraic rules before folding: a broadcast of a scalar constant that a consumer can
  // broadcast itself is bypassed rather than materialized as a bigger constant.
  return {algebraic_simplify(), constant_folding(), cse(), dce()};
}

bool run_to_fixed_point(ir::Graph& g, const std::vector<Pass>& passes,
                        const PipelineOptions& options) {
  try {
    ir::verify(g);
  } catch (const Error& e) {
    KILN_FAIL("jit: the input graph of '{}' fails to verify: {}", g.name, e.what());
  }
  Dumper dump(g, options);
  dump.write(g, "input");
  bool changed = false;
  for (int round = 1; round <= options.max_iterations; ++round) {
    bool round_changed = false;
    for (const Pass& pass : passes) {
      if (!pass.run(g)) continue;
      round_changed = true;
      if (options.verify_each_pass) verify_after(g, pass.name(), round);
      dump.write(g, pass.name());
    }
    changed |= round_changed;
    if (!round_changed) break;
  }
  return changed;
}

ir::Graph optimize(const ir::Graph& g, const PipelineOptions& options) {
  ir::Graph out = deep_copy(g);
  run_to_fixed_point(out, simplify_passes(), options);
  return out;
}

}  // namespace kiln::jit
