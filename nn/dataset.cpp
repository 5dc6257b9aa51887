// The tf.data-like pipeline. A Dataset is an immutable chain of Nodes; iterating one opens a
// Stream per node for that epoch, each pulling from its input's stream.
//
// Rows: a stream whose elements are rows of fixed source tensors (slices, and shuffles of
// them) also hands out row indices, so batch can copy a batch's rows straight from the
// sources -- one new tensor and k row memcpys per component, or a zero-copy view when the
// rows are consecutive -- instead of building k per-row elements and stacking them.

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>

namespace kiln::data {

struct Stream {
  virtual ~Stream() = default;
  // The next element into `out`; false at the end of the epoch.
  virtual bool next(Element& out) = 0;
  // For a stream of rows of fixed tensors: those tensors (else null), and next_row() gives
  // the next row's index (-1 at the end) in place of next().
  virtual const std::vector<Tensor>* sources() const { return nullptr; }
  virtual int64_t next_row() { return -1; }
};

struct Node : std::enable_shared_from_this<Node> {
  virtual ~Node() = default;
  virtual std::unique_ptr<Stream> open(int64_t epoch) const = 0;
  virtual int64_t cardinality() const = 0;
};

namespace {

// Views of a contiguous tensor t, made directly rather than through slice ops: cheaper, and
// never recorded by a tape or trace active on the iterating thread. Row r:
Tensor row(const Tensor& t, int64_t r) {
  Shape shape(std::vector<int64_t>(t.shape().begin() + 1, t.shape().end()));
  Strides strides(t.strides().begin() + 1, t.strides().end());
  return Tensor::view_of(t, std::move(shape), std::move(strides), t.offset() + r * t.strides()[0]);
}
// Rows [r, r + k):
Tensor rows(const Tensor& t, int64_t r, int64_t k) {
  Shape shape = t.shape();
  shape[0] = k;
  return Tensor::view_of(t, std::move(shape), t.strides(), t.offset() + r * t.strides()[0]);
}

int64_t row_bytes(const Tensor& t) {
  return t.dim(0) == 0 ? 0 : t.numel() / t.dim(0) * static_cast<int64_t>(size_of(t.dtype()));
}

// ---- from_tensor_slices ------------------------------------------------------------------

struct SlicesNode final : Node {
  std::vector<Tensor> tensors;  // contiguous
  int64_t n = 0;
  std::unique_ptr<Stream> open(int64_t epoch) const override;
  int64_t cardinality() const override { return n; }
};

struct SlicesStream final : Stream {
  std::shared_ptr<const SlicesNode> node;
  int64_t i = 0;
  explicit SlicesStream(std::shared_ptr<const SlicesNode> n) : node(std::move(n)) {}
  const std::vector<Tensor>* sources() const override { return &node->tensors; }
  int64_t next_row() override { return i < node->n ? i++ : -1; }
  bool next(Element& out) override {
    const int64_t r = next_row();
    if (r < 0) return false;
    out.resize(node->tensors.size());
    for (size_t k = 0; k < out.size(); ++k)
      out[k] = row(node->tensors[k], r);
    return true;
  }
};

std::unique_ptr<Stream> SlicesNode::open(int64_t) const {
  return std::make_unique<SlicesStream>(
      std::static_pointer_cast<const SlicesNode>(shared_from_this()));
}

// ---- shuffle -----------------------------------------------------------------------------

// A uniformly random permutation of [0, n) for (seed, epoch): Fisher-Yates driven by
// Philox 4x32-10 keyed by the seed, with the epoch in the counter's high half. Stateless, so
// kiln::random's generator is untouched and any epoch can be replayed on its own.
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    p[i] = i;
  const auto e = static_cast<uint64_t>(epoch);
  uint64_t block = 0;
  std::array<uint32_t, 4> bits{};
  int used = 4;
  auto next64 = [&] {
    if (used == 4) {
      bits = philox4x32_10({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                            static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32)},
                           seed);
      ++block;
      used = 0;
    }
    const uint64_t v = uint64_t(bits[used]) << 32 | bits[used + 1];
    used += 2;
    return v;
  };
  for (int64_t i = n - 1; i > 0; --i) {
    // Lemire's multiply-shift maps 64 random bits onto [0, i]; the bias, (i+1)/2^64, is nil.
    const auto j = static_cast<int64_t>(
        (static_cast<unsigned __int128>(next64()) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(p[i], p[j]);
  }
  return p;
}

struct ShuffleNode final : Node {
  std::shared_ptr<const Node> input;
  uint64_t seed = 0;
  std::unique_ptr<Stream> open(int64_t epoch) const override;
  int64_t cardinality() const override { return input->cardinality(); }
};

// Drains its input at open: a full shuffle needs every element before the first. Rows are
// kept as indices; other elements are kept whole.
struct ShuffleStream final : Stream {
  std::unique_ptr<Stream> input;
  std::vector<int64_t> row_ids;
  std::vector<Element> elements;
  std::vector<int64_t> order;
  size_t pos = 0;

  ShuffleStream(std::unique_ptr<Stream> in, uint64_t seed, int64_t epoch) : input(std::move(in)) {
    int64_t n = 0;
    if (input->sources() != nullptr) {
      for (int64_t r; (r = input->next_row()) >= 0;)
        row_ids.push_back(r);
      n = static_cast<int64_t>(row_ids.size());
    } else {
      for (Element e; input->next(e);)
        elements.push_back(std::move(e));
      n = static_cast<int64_t>(elements.size());
    }
    order = permutation(n, seed, epoch);
  }
  const std::vector<Tensor>* sources() const override { return input->sources(); }
  int64_t next_row() override { return pos < order.size() ? row_ids[order[pos++]] : -1; }
  bool next(Element& out) override {
    if (pos == order.size()) return false;
    if (sources() == nullptr) {
      out = elements[order[pos++]];
      return true;
    }
    const int64_t r = next_row();
    out.resize(sources()->size());
    for (size_t k = 0; k < out.size(); ++k)
      out[k] = row((*sources())[k], r);
    return true;
  }
};

std::unique_ptr<Stream> ShuffleNode::open(int64_t epoch) const {
  return std::make_unique<ShuffleStream>(input->open(epoch), seed, epoch);
}

// ---- batch -------------------------------------------------------------------------------

struct BatchNode final : Node {
  std::shared_ptr<const Node> input;
  int64_t n = 1;
  bool drop_remainder = false;
  std::unique_ptr<Stream> open(int64_t epoch) const override;
  int64_t cardinality() const override {
    const int64_t c = input->cardinality();
    return drop_remainder ? c / n : (c + n - 1) / n;
  }
};

// Rows idx[0..k) of every source, as one new tensor each (a view when they are consecutive).
void gather_rows(const std::vector<Tensor>& sources, const std::vector<int64_t>& idx,
                 Element& out) {
  const auto k = static_cast<int64_t>(idx.size());
  bool consecutive = true;
  for (int64_t i = 1; i < k && consecutive; ++i)
    consecutive = idx[i] == idx[0] + i;
  out.resize(sources.size());
  for (size_t c = 0; c < sources.size(); ++c) {
    const Tensor& src = sources[c];
    if (consecutive) {
      out[c] = rows(src, idx[0], k);
      continue;
    }
    Shape shape = src.shape();
    shape[0] = k;
    Tensor t = Tensor::empty(shape, src.dtype());
    const int64_t bytes = row_bytes(src);
    const char* from = src.data<char>();
    char* to = t.mutable_data<char>();
    for (int64_t i = 0; i < k; ++i)
      std::memcpy(to + i * bytes, from + idx[i] * bytes, static_cast<size_t>(bytes));
    out[c] = std::move(t);
  }
}

// Stacks elements along a new dim 0; every component must match element 0's type.
void stack_elements(const std::vector<Element>& elems, Element& out) {
  const Element& first = elems[0];
  out.resize(first.size());
  for (size_t c = 0; c < first.size(); ++c) {
    const TensorType type = first[c].type();
    Shape shape({static_cast<int64_t>(elems.size())});
    for (int64_t d : type.shape)
      shape.push_back(d);
    Tensor t = Tensor::empty(shape, type.dtype);
    const size_t bytes = static_cast<size_t>(type.shape.numel()) * size_of(type.dtype);
    char* to = t.mutable_data<char>();
    for (size_t i = 0; i < elems.size(); ++i) {
      const Tensor& x = elems[i][c];
      KILN_CHECK(!x.is_symbolic(), "batch: component {} of element {} is a symbolic tensor {}", c,
                 i, x.type_str());
      KILN_CHECK(x.type() == type,
                 "batch: cannot stack component {}: element {} of the batch is {} but element 0 "
                 "is {}; map the elements to one shape and dtype first",
                 c, i, x.type_str(), first[c].type_str());
      const Tensor xc = x.contiguous();
      if (bytes > 0) std::memcpy(to + i * bytes, xc.raw_data(), bytes);
    }
    out[c] = std::move(t);
  }
}

struct BatchStream final : Stream {
  std::unique_ptr<Stream> input;
  int64_t n;
  bool drop_remainder;
  std::vector<int64_t> idx;
  std::vector<Element> elems;

  BatchStream(std::unique_ptr<Stream> in, int64_t n, bool drop)
      : input(std::move(in)), n(n), drop_remainder(drop) {
    idx.reserve(static_cast<size_t>(n));
  }
  bool next(Element& out) override {
    if (const std::vector<Tensor>* src = input->sources()) {
      idx.clear();
      for (int64_t r; static_cast<int64_t>(idx.size()) < n && (r = input->next_row()) >= 0;)
        idx.push_back(r);
      if (idx.empty() || (drop_remainder && static_cast<int64_t>(idx.size()) < n)) return false;
      gather_rows(*src, idx, out);
      return true;
    }
    elems.clear();
    for (Element e; static_cast<int64_t>(elems.size()) < n && input->next(e);) {
      KILN_CHECK(elems.empty() || e.size() == elems[0].size(),
                 "batch: element {} of the batch has {} components but element 0 has {}",
                 elems.size(), e.size(), elems[0].size());
      elems.push_back(std::move(e));
    }
    if (elems.empty() || (drop_remainder && static_cast<int64_t>(elems.size()) < n)) return false;
    stack_elements(elems, out);
    return true;
  }
};

std::unique_ptr<Stream> BatchNode::open(int64_t epoch) const {
  return std::make_unique<BatchStream>(input->open(epoch), n, drop_remainder);
}

// ---- map ---------------------------------------------------------------------------------

struct MapNode final : Node {
  std::shared_ptr<const Node> input;
  std::function<Element(const Element&)> fn;
  std::unique_ptr<Stream> open(int64_t epoch) const override;
  int64_t cardinality() const override { return input->cardinality(); }
};

struct MapStream final : Stream {
  std::unique_ptr<Stream> input;
  std::shared_ptr<const MapNode> node;
  Element in;
  MapStream(std::unique_ptr<Stream> i, std::shared_ptr<const MapNode> n)
      : input(std::move(i)), node(std::move(n)) {}
  bool next(Element& out) override {
    if (!input->next(in)) return false;
    out = node->fn(in);
    return true;
  }
};

std::unique_ptr<Stream> MapNode::open(int64_t epoch) const {
  return std::make_unique<MapStream>(input->open(epoch),
                                     std::static_pointer_cast<const MapNode>(shared_from_this()));
}

// ---- prefetch ----------------------------------------------------------------------------

struct PrefetchNode final : Node {
  std::shared_ptr<const Node> input;
  int64_t buffer = 2;
  std::unique_ptr<Stream> open(int64_t epoch) const override;
  int64_t cardinality() const override { return input->cardinality(); }
};

// A producer thread fills a queue of at most `buffer` elements. The end of the epoch and an
// exception are queued like elements, so the consumer sees them in order.
struct PrefetchStream final : Stream {
  struct Item {
    Element element;
    std::exception_ptr error;
    bool end = false;
  };
  std::unique_ptr<Stream> input;
  size_t buffer;
  std::mutex mu;
  std::condition_variable not_full, not_empty;
  std::deque<Item> queue;
  bool stop = false;
  bool finished = false;  // the consumer has taken the end or the error
  std::thread producer;

  PrefetchStream(std::unique_ptr<Stream> in, int64_t buf)
      : input(std::move(in)), buffer(static_cast<size_t>(buf)) {
    producer = std::thread([this] { produce(); });
  }
  ~PrefetchStream() override {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    not_full.notify_all();
    producer.join();
  }

  void produce() {
    for (;;) {
      Item item;
      try {
        item.end = !input->next(item.element);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool last = item.end || item.error;
      std::unique_lock<std::mutex> lock(mu);
      not_full.wait(lock, [&] { return stop || queue.size() < buffer || last; });
      if (stop) return;
      queue.push_back(std::move(item));
      lock.unlock();
      not_empty.notify_one();
      if (last) return;
    }
  }

  bool next(Element& out) override {
    if (finished) return false;
    std::unique_lock<std::mutex> lock(mu);
    not_empty.wait(lock, [&] { return !queue.empty(); });
    Item item = std::move(queue.front());
    queue.pop_front();
    lock.unlock();
    not_full.notify_one();
    if (item.end || item.error) finished = true;
    if (item.error) std::rethrow_exception(item.error);
    if (item.end) return false;
    out = std::move(item.element);
    return true;
  }
};

std::unique_ptr<Stream> PrefetchNode::open(int64_t epoch) const {
  return std::make_unique<PrefetchStream>(input->open(epoch), buffer);
}

template <class N>
std::shared_ptr<N> chain(const std::shared_ptr<const Node>& input) {
  auto node = std::make_shared<N>();
  node->input = input;
  return node;
}

}  // namespace

// ---- Dataset -----------------------------------------------------------------------------

Dataset::Dataset(std::shared_ptr<const Node> node)
    : node_(std::move(node)), passes_(std::make_shared<int64_t>(0)) {}

Dataset Dataset::from_tensor_slices(std::vector<Tensor> tensors) {
  KILN_CHECK(!tensors.empty(), "from_tensor_slices: no tensors given");
  auto node = std::make_shared<SlicesNode>();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    KILN_CHECK(t.defined(), "from_tensor_slices: tensor {} is undefined", i);
    KILN_CHECK(!t.is_symbolic(),
               "from_tensor_slices: tensor {} ({}) is symbolic; build datasets outside traced "
               "functions",
               i, t.type_str());
    KILN_CHECK(t.device().is_cpu(), "from_tensor_slices: tensor {} ({}) is on {}, not the CPU", i,
               t.type_str(), t.device().str());
    KILN_CHECK(t.rank() >= 1, "from_tensor_slices: tensor {} is a scalar {}; need a dim 0 to slice",
               i, t.type_str());
    KILN_CHECK(t.dim(0) == tensors[0].dim(0),
               "from_tensor_slices: tensors disagree on dim 0: tensor 0 is {} but tensor {} is {}",
               tensors[0].type_str(), i, t.type_str());
    node->tensors.push_back(t.contiguous());
  }
  node->n = tensors[0].dim(0);
  return Dataset(std::move(node));
}

Dataset Dataset::shuffle(uint64_t seed) const {
  auto node = chain<ShuffleNode>(node_);
  node->seed = seed;
  return Dataset(std::move(node));
}

Dataset Dataset::batch(int64_t n, bool drop_remainder) const {
  KILN_CHECK(n >= 1, "batch: the batch size must be at least 1, got {}", n);
  auto node = chain<BatchNode>(node_);
  node->n = n;
  node->drop_remainder = drop_remainder;
  return Dataset(std::move(node));
}

Dataset Dataset::map(std::function<Element(const Element&)> fn) const {
  KILN_CHECK(fn != nullptr, "map: the function is empty");
  auto node = chain<MapNode>(node_);
  node->fn = std::move(fn);
  return Dataset(std::move(node));
}

Dataset Dataset::prefetch(int64_t buffer) const {
  KILN_CHECK(buffer >= 1, "prefetch: the buffer must hold at least 1 element, got {}", buffer);
  auto node = chain<PrefetchNode>(node_);
  node->buffer = buffer;
  return Dataset(std::move(node));
}

int64_t Dataset::cardinality() const {
  return node_->cardinality();
}

Dataset::Epoch Dataset::epoch(int64_t e) const {
  KILN_CHECK(e >= 0, "epoch: the epoch must be >= 0, got {}", e);
  Epoch out;
  out.node_ = node_;
  out.epoch_ = e;
  return out;
}

Dataset::Iterator Dataset::start(const std::shared_ptr<const Node>& node, int64_t epoch) {
  Iterator it;
  it.stream_ = node->open(epoch);
  ++it;
  return it;
}

Dataset::Iterator Dataset::Epoch::begin() const {
  return Dataset::start(node_, epoch_);
}

Dataset::Iterator Dataset::begin() const {
  return start(node_, (*passes_)++);
}

Dataset::Iterator& Dataset::Iterator::operator++() {
  KILN_CHECK(!done_, "Dataset::Iterator: advanced past the end of the epoch");
  if (!stream_->next(current_)) {
    done_ = true;
    current_.clear();
    stream_.reset();  // stops a prefetch thread now, not when the iterator dies
  }
  return *this;
}

}  // namespace kiln::data
