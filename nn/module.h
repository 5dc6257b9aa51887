#pragma once

// Module: the base of every layer and model (Keras's Layer, PyTorch's nn.Module). It owns
// named Variables and child modules, creates its variables on the first call from the
// input's shape (Keras semantics), and runs call(x, training).

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/tensor.h>
#include <kiln/nn/handle.h>
#include <kiln/nn/init.h>

namespace kiln::nn {

class Module {
 public:
  explicit Module(std::string name);
  virtual ~Module() = default;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Builds on the first call (build(x.shape()), with x's dtype when it is floating), then
  // returns call(x, training). After the build, an input whose non-batch dims differ from the
  // built ones is a kiln::Error naming the module and both shapes; a floating input of another
  // dtype is cast to the module's (Keras's autocast).
  Tensor operator()(const Tensor& x, bool training = false);

  // The forward computation. `training` switches dropout and batch statistics on.
  virtual Tensor call(const Tensor& x, bool training) = 0;
  // Creates the variables for inputs of this shape (dim 0 is the batch and may be -1).
  virtual void build(const Shape& input_shape) {}
  // The output shape for this input shape, without running anything (dim 0 passes through).
  virtual Shape output_shape(const Shape& input_shape) const { return input_shape; }

  bool built() const { return built_; }
  const Shape& input_shape() const { return input_shape_; }
  // The dtype of its variables and computation: f32 unless built for another floating dtype.
  DType dtype() const { return dtype_; }
  // Runs build once, for inputs of this shape and variables of this (floating) dtype; layers
  // call it for their children, Sequential for each layer in turn. Without a dtype, a module
  // built inside another's build() takes that module's dtype (a container built in f64 builds
  // its layers in f64), and f32 otherwise. Once built, it only checks that the shape fits.
  void ensure_built(const Shape& input_shape, std::optional<DType> dtype = std::nullopt);

  // Own variables in creation order, then each child's, depth first.
  std::vector<Variable> variables() const;
  std::vector<Variable> trainable_variables() const;  // empty when !trainable()
  std::vector<Variable> non_trainable_variables() const;

  // Keras's layer.trainable: a frozen module offers no trainable variables.
  bool trainable() const { return trainable_; }
  void set_trainable(bool trainable) { trainable_ = trainable; }

  const std::string& name() const { return name_; }
  // The scope its variables are named under: "<scope>/<name>/<variable>". Containers set it
  // when they adopt a module, before it is built (variables keep the name they were created
  // with, as in Keras 3). Renaming or rescoping a module rescopes its children.
  const std::string& scope() const { return scope_; }
  std::string path() const { return scope_.empty() ? name_ : scope_ + "/" + name_; }
  void set_name(std::string name);
  void set_scope(std::string scope);

  const std::vector<Ref<Module>>& children() const { return children_; }

 protected:
  // A variable named "<path>/<local_name>", initialized by init(shape, dtype). The initial
  // value is computed eagerly even inside a trace (tf.init_scope), so a module may be built
  // on a function's first trace.
  Variable add_variable(const std::string& local_name, const Shape& shape, const Initializer& init,
                        bool trainable = true, DType dtype = f32);
  // Adopts a child: it is scoped under this module and its variables become ours. Another
  // child of the same name is a kiln::Error (see unique_name).
  void add_child(Ref<Module> child);
  // What operator() does before call(): builds on the first use, validates the shape, and
  // casts a floating input to dtype(). Layers with extra entry points (call_linear) use it.
  Tensor prepare_input(const Tensor& x);
  // Keras's layer.autocast: off for layers whose floating inputs must stay as given.
  void set_autocast(bool on) { autocast_ = on; }

 private:
  std::string name_;
  std::string scope_;
  bool built_ = false;
  bool trainable_ = true;
  bool autocast_ = true;
  DType dtype_ = f32;
  Shape input_shape_;
  std::vector<Variable> own_;
  std::vector<Ref<Module>> children_;
};

// Unique names per container, as Keras gives them: dense, dense_1, dense_2, ...
std::string unique_name(const std::string& base, const std::vector<Ref<Module>>& taken);

}  // namespace kiln::nn
