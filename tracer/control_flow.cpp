#include <kiln/tracer/control_flow.h>

#include <kiln/autograd/tape.h>
#include <kiln/core/ops.h>
#include <kiln/tracer/control_flow_grad.h>
#include <kiln/tracer/trace.h>

namespace kiln {
namespace {

using tracer::TraceContext;

Tensor scalar_pred(const Tensor& pred, const char* op) {
  KILN_CHECK(pred.defined() && pred.rank() == 0, "{}: the predicate must be a scalar, got {}", op,
             pred.defined() ? pred.type_str() : "undefined");
  return cast(pred, boolean);
}

// Traces fn(params) as a region of `parent`.
struct Region {
  std::unique_ptr<TraceContext> ctx;
  std::vector<TensorType> result_types;
};

Region trace_region(TraceContext* parent, const std::string& name,
                    const std::vector<TensorType>& params,
                    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn) {
  Region r;
  r.ctx = std::make_unique<TraceContext>(name, parent);
  std::vector<Tensor> args;
  for (const TensorType& t : params)
    args.push_back(r.ctx->add_param(t));
  std::vector<Tensor> results;
  {
    // Only the region's trace sees its ops: tapes outside would record values of another graph.
    SuspendHooks hidden;
    TraceContext::Scope scope(r.ctx.get());
    results = fn(args);
  }
  for (const Tensor& t : results) {
    KILN_CHECK(t.defined(), "{}: returned an undefined Tensor", name);
    const int v = r.ctx->value_of(t);
    r.ctx->graph().results.push_back(v);
    r.result_types.push_back(r.ctx->graph().types[v]);
  }
  return r;
}

std::string type_text(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}

}  // namespace

namespace detail {

std::vector<Tensor> cond_impl(const Tensor& pred,
                              const std::function<std::vector<Tensor>()>& then_fn,
                              const std::function<std::vector<Tensor>()>& else_fn) {
  Tensor p = scalar_pred(pred, "cond");
  TraceContext* ctx = TraceContext::current();
  if (!ctx) return p.item<bool>() ? then_fn() : else_fn();

  const int pv = ctx->value_of(p);
  const std::string base = ctx->graph().name + "/cond" + std::to_string(ctx->graph().nodes.size());
  Region then_r = trace_region(ctx, base + "/then", {}, [&](const auto&) { return then_fn(); });
  Region else_r = trace_region(ctx, base + "/else", {}, [&](const auto&) { return else_fn(); });
  KILN_CHECK(then_r.result_types.size() == else_r.result_types.size(),
             "cond: the branches return {} and {} tensors", then_r.result_types.size(),
             else_r.result_types.size());
  std::vector<TensorType> out_types;
  for (size_t i = 0; i < then_r.result_types.size(); ++i) {
    const TensorType& a = then_r.result_types[i];
    const TensorType& b = else_r.result_types[i];
    KILN_CHECK(a.dtype == b.dtype && a.shape.rank() == b.shape.rank(),
               "cond: result {} is {} in the then branch and {} in the else branch", i,
               type_text(a), type_text(b));
    TensorType t = a;
    for (int64_t d = 0; d < t.shape.rank(); ++d)
      if (a.shape[d] != b.shape[d]) t.shape[d] = -1;  // sizes that differ become unknown
    out_types.push_back(t);
  }

  ir::Node node{"cond",
                {pv},
                {},
                Attrs{{"then_inputs", static_cast<int64_t>(then_r.ctx->captures().size())}},
                {}};
  for (int v : then_r.ctx->captures())
    node.inputs.push_back(v);
  for (int v : else_r.ctx->captures())
    node.inputs.push_back(v);
  std::vector<Tensor> outputs;
  for (const TensorType& t : out_types) {
    const int v = ctx->graph().add_value(t);
    node.outputs.push_back(v);
    outputs.push_back(ctx->symbolic(v));
  }
  tracer::Branch then_b{std::make_shared<ir::Graph>(std::move(then_r.ctx->graph())),
                        then_r.ctx->captured_tensors()};
  tracer::Branch else_b{std::make_shared<ir::Graph>(std::move(else_r.ctx->graph())),
                        else_r.ctx->captured_tensors()};
  node.subgraphs = {then_b.graph, else_b.graph};
  ctx->graph().nodes.push_back(std::move(node));
  tracer::record_cond_gradient(p, outputs, then_b, else_b);
  return outputs;
}

}  // namespace detail

namespace {

// Appends a while node to `ctx` (body_fn already checks what it returns). `body` receives
// the body region and the enclosing tensors it captured.
std::vector<Tensor> traced_while(
    TraceContext* ctx, const std::function<Tensor(const std::vector<Tensor>&)>& cond_fn,
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& body_fn,
    const std::vector<Tensor>& loop_vars, tracer::Branch& body) {
  std::vector<TensorType> types;
  std::vector<int> var_values;
  for (const Tensor& v : loop_vars) {
    types.push_back(v.type());
    var_values.push_back(ctx->value_of(v));
  }
  const std::string base = ctx->graph().name + "/while" + std::to_string(ctx->graph().nodes.size());
  Region cond_r = trace_region(ctx, base + "/cond", types, [&](const std::vector<Tensor>& vars) {
    return std::vector<Tensor>{scalar_pred(cond_fn(vars), "while_loop")};
  });
  Region body_r = trace_region(ctx, base + "/body", types, body_fn);

  ir::Node node{"while",
                var_values,
                {},
                Attrs{{"num_vars", static_cast<int64_t>(types.size())},
                      {"cond_inputs", static_cast<int64_t>(cond_r.ctx->captures().size())}},
                {}};
  for (int v : cond_r.ctx->captures())
    node.inputs.push_back(v);
  for (int v : body_r.ctx->captures())
    node.inputs.push_back(v);
  std::vector<Tensor> outputs;
  for (const TensorType& t : types) {
    const int v = ctx->graph().add_value(t);
    node.outputs.push_back(v);
    outputs.push_back(ctx->symbolic(v));
  }
  body = tracer::Branch{std::make_shared<ir::Graph>(std::move(body_r.ctx->graph())),
                        body_r.ctx->captured_tensors()};
  node.subgraphs = {std::make_shared<ir::Graph>(std::move(cond_r.ctx->graph())), body.graph};
  ctx->graph().nodes.push_back(std::move(node));
  return outputs;
}

}  // namespace

std::vector<Tensor> while_loop(
    const std::function<Tensor(const std::vector<Tensor>&)>& cond_fn,
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& body_fn,
    std::vector<Tensor> loop_vars) {
  for (const Tensor& v : loop_vars)
    KILN_CHECK(v.defined(), "while_loop: a loop variable is undefined");
  auto check_body = [&](const std::vector<TensorType>& types, const std::vector<Tensor>& next) {
    KILN_CHECK(next.size() == types.size(),
               "while_loop: the body returns {} tensors for {} loop "
               "variables",
               next.size(), types.size());
    for (size_t i = 0; i < next.size(); ++i) {
      bool ok = next[i].defined() && next[i].dtype() == types[i].dtype &&
                next[i].rank() == types[i].shape.rank();
      for (int64_t d = 0; ok && d < next[i].rank(); ++d)
        ok = types[i].shape[d] < 0 || types[i].shape[d] == next[i].dim(d);
      KILN_CHECK(ok, "while_loop: loop variable {} is {} but the body returns {}", i,
                 type_text(types[i]), next[i].defined() ? next[i].type_str() : "undefined");
    }
  };
  std::vector<TensorType> types;
  for (const Tensor& v : loop_vars)
    types.push_back(v.type());

  TraceContext* ctx = TraceContext::current();
  if (!ctx) {
    while (scalar_pred(cond_fn(loop_vars), "while_loop").item<bool>()) {
      std::vector<Tensor> next = body_fn(loop_vars);
      check_body(types, next);
      loop_vars = std::move(next);
    }
    return loop_vars;
  }

  auto checked_body = [&](const std::vector<Tensor>& vars) {
    std::vector<Tensor> next = body_fn(vars);
    check_body(types, next);
    return next;
  };
  tracer::Branch body;
  if (!tracer::gradients_recorded_here())
    return traced_while(ctx, cond_fn, checked_body, loop_vars, body);

  // A tape records here: the loop also counts its trips, for the reverse pass.
  std::vector<Tensor> counted{scalar_tensor(0, i64)};
  counted.insert(counted.end(), loop_vars.begin(), loop_vars.end());
  auto rest = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>(v.begin() + 1, v.end());
  };
  std::vector<Tensor> out = traced_while(
      ctx, [&](const std::vector<Tensor>& v) { return cond_fn(rest(v)); },
      [&](const std::vector<Tensor>& v) {
        std::vector<Tensor> next{add(v[0], 1)};
        for (Tensor& t : checked_body(rest(v)))
          next.push_back(std::move(t));
        return next;
      },
      counted, body);
  const std::vector<Tensor> outputs = rest(out);
  tracer::record_while_gradient(loop_vars, outputs, out[0], body);
  return outputs;
}

}  // namespace kiln
