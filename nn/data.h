#pragma once

// Datasets: the IDX format, Fashion-MNIST from Debian's dataset-fashion-mnist package, and a
// small tf.data-like pipeline (from_tensor_slices, shuffle, batch, map, prefetch).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <kiln/core/tensor.h>

namespace kiln::data {

// Reads an IDX file (gzip-compressed when it starts with gzip's magic bytes, through zlib).
// Type codes 0x08 (u8), 0x09 (i8 -> i32), 0x0B (i16 -> i32), 0x0C (i32), 0x0D (f32),
// 0x0E (f64). A bad magic number, a size that disagrees with the dims, a truncated or
// corrupt file raise kiln::Error naming the path and what is wrong.
Tensor read_idx(const std::string& path);

struct FashionMnist {
  Tensor x_train, y_train;  // u8 [60000, 28, 28], u8 [60000]
  Tensor x_test, y_test;    // u8 [10000, 28, 28], u8 [10000]
};

// The directory used: dir when not empty, else $KILN_DATA_DIR, else
// /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_dir(const std::string& dir = "");
// Loads the four files ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz). Missing files
// raise kiln::Error saying where it looked and how to install the package
// (apt-get install dataset-fashion-mnist) or point KILN_DATA_DIR elsewhere.
FashionMnist load_fashion_mnist(const std::string& dir = "");

using Element = std::vector<Tensor>;

// A pipeline stage and one running pass of it; defined in dataset.cpp.
struct Node;
struct Stream;

// An immutable description of a pipeline; iterating it runs the pipeline for one epoch.
// Each pass over a shuffled dataset draws a new order: epoch e of shuffle(seed) is a
// function of (seed, e) only, so a resumed run sees the same batches as an uninterrupted one.
// Elements are values read from the source tensors (views of them where no copy is needed;
// no gradient flows through a pipeline). The stages upstream of a prefetch, map functions
// included, run on a background thread, where no GradientTape or trace of the iterating
// thread is active: such a function must be safe to call from another thread.
class Dataset {
 public:
  // Slices every tensor along dim 0 (all must agree on it; kiln::Error otherwise). The
  // tensors must be concrete CPU tensors; the dataset keeps them (no copy).
  static Dataset from_tensor_slices(std::vector<Tensor> tensors);

  // A full shuffle (not a window): the order of epoch e is a permutation drawn from
  // (seed, e) with a private counter-based generator; kiln::random's state is untouched.
  Dataset shuffle(uint64_t seed) const;
  // Stacks n consecutive elements; the last, smaller batch is dropped when drop_remainder.
  // The elements' components must agree in dtype and shape (kiln::Error otherwise).
  Dataset batch(int64_t n, bool drop_remainder = false) const;
  Dataset map(std::function<Element(const Element&)> fn) const;
  // Produces up to `buffer` (>= 1) elements ahead on a background thread. An exception
  // upstream is rethrown by the iterator, in order; destroying the iterator early stops and
  // joins the thread (after the element it is computing, if any).
  Dataset prefetch(int64_t buffer = 2) const;

  // Elements per epoch.
  int64_t cardinality() const;

  class Iterator;
  // One pass, as epoch `epoch` (which fixes the shuffle order).
  class Epoch {
   public:
    Iterator begin() const;
    std::nullptr_t end() const { return nullptr; }

   private:
    friend class Dataset;
    std::shared_ptr<const Node> node_;
    int64_t epoch_ = 0;
  };
  Epoch epoch(int64_t e) const;
  // Range-for over the dataset itself runs epochs 0, 1, 2, ... on successive passes.
  Iterator begin() const;
  std::nullptr_t end() const { return nullptr; }

  class Iterator {
   public:
    const Element& operator*() const { return current_; }
    const Element* operator->() const { return &current_; }
    Iterator& operator++();
    bool operator!=(std::nullptr_t) const { return !done_; }
    bool operator==(std::nullptr_t) const { return done_; }

   private:
    friend class Dataset;
    std::shared_ptr<Stream> stream_;
    Element current_;
    bool done_ = false;
  };

 private:
  explicit Dataset(std::shared_ptr<const Node> node);
  // Opens a pass of `node` as epoch `epoch` and moves to its first element.
  static Iterator start(const std::shared_ptr<const Node>& node, int64_t epoch);
  std::shared_ptr<const Node> node_;
  std::shared_ptr<int64_t> passes_;  // epochs started by range-for
};

}  // namespace kiln::data
