#pragma once

// tracer/: kiln::function, the Graph IR it traces into, the IR's text form (printer, parser,
// verifier) and the graph interpreter that runs it with the eager kernels.
//
// The Graph IR: SSA values with a dtype and a shape (a dim of -1 is unknown), and nodes in
// program order. A node is a registry primitive with its attributes, or one of the
// structural ops below. Side effects (variable assigns, random draws) keep their order
// because nodes are never reordered by the tracer.
//
//   constant         () -> value          attrs: index (into Graph::constants)
//   read_variable    () -> value          attrs: var (index into Graph::variables)
//   assign_variable  (value) -> ()        attrs: var
//   cond             (pred, then captures..., else captures...) -> results
//                    attrs: then_inputs (the number of then captures); subgraphs [then, else]
//   while            (loop vars..., cond captures..., body captures...) -> loop vars
//                    attrs: num_vars, cond_inputs; subgraphs [cond, body]; cond's params are
//                    (vars..., its captures...), body's the same with its own captures
//
// Subgraphs are whole Graphs with their own values and constants; their read_variable and
// assign_variable nodes index the outermost graph's variables.
//
// Text form (golden-tested, stable):
//   func @name(%0: f32[?,784], %1: i32[?]) -> (f32[]) {
//     %2 = read_variable() {var = 0} : f32[784,128]
//     %3 = matmul(%0, %2) : f32[?,128]
//     return %3
//   }
//   variables: 0 "dense/kernel" f32[784,128]

#include <memory>
#include <string>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/attrs.h>
#include <kiln/core/tensor.h>

namespace kiln::ir {

struct Graph;

struct Node {
  std::string op;
  std::vector<int> inputs;   // value ids
  std::vector<int> outputs;  // value ids
  Attrs attrs;
  std::vector<std::shared_ptr<Graph>> subgraphs;  // cond and while only
};

// A captured variable: the live handle while tracing, or only its name and type after
// parsing (saved functions bind it to a Variable when they load).
struct VariableSlot {
  std::string name;
  TensorType type;
  std::shared_ptr<VariableImpl> var;
};

struct Graph {
  std::string name = "fn";
  std::vector<TensorType> types;  // indexed by value id
  std::vector<int> params;
  std::vector<Node> nodes;
  std::vector<int> results;
  std::vector<Tensor> constants;
  std::vector<VariableSlot> variables;

  int add_value(TensorType t) {
    types.push_back(std::move(t));
    return static_cast<int>(types.size()) - 1;
  }
};

// The stable text form.
std::string print(const Graph& g);
// Parses print()'s output; raises kiln::Error naming the line and what is wrong.
Graph parse(std::string_view text);
// Checks value types against the registry's inference, use-before-def, single definition,
// and that every op exists; raises kiln::Error saying what is wrong and where.
void verify(const Graph& g);

}  // namespace kiln::ir
