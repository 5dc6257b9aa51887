// In-place planning (Executable::plan_in_place): which outputs of an elementwise kernel write
// over an input that dies at its step, and which variable updates take their variable's own
// buffer (donation). Buffer assignment (buffer_assignment.h) then joins each pair's storage.
#include <algorithm>
#include <vector>

#include <kiln/jit/executable.h>

namespace kiln::jit {

// Elementwise kernels may write an output over a full-shaped input of the same type that dies
// at that step. Outputs that outlive the call qualify too: buffer assignment joins the pair's
// storage, so the input's producer then allocates outside the arena.
void Executable::plan_in_place() {
  in_place_.resize(plan_.groups.size());
  // Variable slots: which slot each read produces, where each value is assigned, and the
  // steps that read or assign each slot.
  const size_t nv = graph_.types.size();
  std::vector<int> read_slot(nv, -1), assigned_slot(nv, -1);
  std::vector<bool> is_param(nv, false), is_constant(nv, false);
  for (int p : graph_.params)
    is_param[static_cast<size_t>(p)] = true;
  std::vector<int> step_of_node(graph_.nodes.size(), -1);
  for (size_t k = 0; k < plan_.steps.size(); ++k)
    if (plan_.steps[k].node >= 0)
      step_of_node[static_cast<size_t>(plan_.steps[k].node)] = static_cast<int>(k);
  for (const ir::Node& n : graph_.nodes) {
    if (n.op == "constant") is_constant[static_cast<size_t>(n.outputs[0])] = true;
    if (n.op == "read_variable")
      read_slot[static_cast<size_t>(n.outputs[0])] = static_cast<int>(n.attrs.i("var"));
    if (n.op == "assign_variable")
      assigned_slot[static_cast<size_t>(n.inputs[0])] = static_cast<int>(n.attrs.i("var"));
  }
  // Donating a variable's buffer at step k is safe when no read of that slot runs after k
  // and before its assign (such a read expects the old value).
  auto donatable = [&](size_t k, int slot, int out) {
    int assign_step = -1;
    for (size_t i = 0; i < graph_.nodes.size(); ++i) {
      const ir::Node& n = graph_.nodes[i];
      if (n.op == "assign_variable" && n.inputs[0] == out) assign_step = step_of_node[i];
    }
    if (assign_step <= static_cast<int>(k)) return false;
    for (size_t i = 0; i < graph_.nodes.size(); ++i) {
      const ir::Node& n = graph_.nodes[i];
      const int st = step_of_node[i];
      if ((n.op == "read_variable" || n.op == "assign_variable") && n.attrs.i("var") == slot &&
          st > static_cast<int>(k) && st < assign_step)
        return false;
    }
    return true;
  };
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const int g = plan_.steps[k].group;
    if (g < 0) continue;
    const cpu::KernelPlan& kp = kernels_[static_cast<size_t>(g)];
    if (kp.row_program || kp.column_program) continue;
    const std::vector<int>& dying = release_after_[k];
    std::vector<int> taken;
    for (int out : plan_.groups[static_cast<size_t>(g)].outputs) {
      const TensorType& ot = graph_.types[static_cast<size_t>(out)];
      // A variable's new value tries its own old buffer first: taking another dying input's
      // (an optimizer's gradient) would leave the variable's buffer to the allocator and move
      // the variable to a new address on every call, away from the caches.
      std::vector<const cpu::KernelInput*> order;
      for (const cpu::KernelInput& in : kp.inputs)
        order.push_back(&in);
      std::stable_partition(order.begin(), order.end(), [&](const cpu::KernelInput* in) {
        return in->value >= 0 && read_slot[static_cast<size_t>(in->value)] >= 0 &&
               read_slot[static_cast<size_t>(in->value)] == assigned_slot[static_cast<size_t>(out)];
      });
      for (const cpu::KernelInput* pin : order) {
        const cpu::KernelInput& in = *pin;
        if (in.kind != cpu::InputKind::full) continue;
        const int v = in.value;
        if (std::find(dying.begin(), dying.end(), v) == dying.end()) continue;
        if (std::find(taken.begin(), taken.end(), v) != taken.end()) continue;
        if (graph_.types[static_cast<size_t>(v)] != ot) continue;
        // Read at the output's own index only: not also through a broadcast slot.
        bool only_full = true;
        for (const cpu::KernelInput& other : kp.inputs)
          only_full &= other.value != v || other.kind == cpu::InputKind::full;
        if (!only_full) continue;
        // The caller's inputs and the graph's constants are held elsewhere: never in place.
        if (is_param[static_cast<size_t>(v)] || is_constant[static_cast<size_t>(v)]) continue;
        // A variable's read: only its own new value may take its buffer (donation).
        const int slot = read_slot[static_cast<size_t>(v)];
        if (slot >= 0 &&
            (assigned_slot[static_cast<size_t>(out)] != slot || !donatable(k, slot, out)))
          continue;
        in_place_[static_cast<size_t>(g)].push_back({out, v, slot});
        const auto& outs = plan_.groups[static_cast<size_t>(g)].outputs;
        kernels_[static_cast<size_t>(g)].in_place.emplace_back(
            static_cast<size_t>(std::find(outs.begin(), outs.end(), out) - outs.begin()), v);
        taken.push_back(v);
        break;
      }
    }
  }
}

}  // namespace kiln::jit
