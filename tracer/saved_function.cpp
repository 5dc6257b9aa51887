#include <kiln/tracer/saved_function.h>

#include <kiln/tracer/file_util.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>
#include <unordered_map>

#include <kiln/tracer/json.h>
#include <kiln/tracer/trace.h>

namespace kiln::saved_function {

static_assert(std::endian::native == std::endian::little,
              "saved functions assume a little-endian host");

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "kiln.saved_function";
constexpr const char* kManifest = "manifest.json";
constexpr const char* kVariables = "variables.safetensors";
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;     // the safetensors reference limit
constexpr uintmax_t kMaxManifest = uintmax_t{64} << 20;  // bytes
constexpr uintmax_t kMaxIR = uintmax_t{1} << 30;
constexpr size_t kMaxSignatures = 4096;
constexpr size_t kMaxRank = 64;

struct DTypeName {
  DType dtype;
  const char* kiln;
  const char* safetensors;
};
constexpr DTypeName kDTypes[] = {
    {DType::boolean, "bool", "BOOL"}, {DType::u8, "u8", "U8"},    {DType::i32, "i32", "I32"},
    {DType::i64, "i64", "I64"},       {DType::f32, "f32", "F32"}, {DType::f64, "f64", "F64"},
};

const char* safetensors_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.safetensors;
  KILN_FAIL("saved_function: unsupported dtype {}", name(t));
}

bool parse_dtype(const std::string& s, bool safetensors, DType& out) {
  for (const auto& d : kDTypes)
    if (s == (safetensors ? d.safetensors : d.kiln)) {
      out = d.dtype;
      return true;
    }
  return false;
}

std::string type_str(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}

// ---- files ---------------------------------------------------------------------------------

std::string read_file(const fs::path& path, uintmax_t max_size, const std::string& who) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  KILN_CHECK(!ec && fs::exists(status), "{}: {}: the file is missing", who, path.string());
  KILN_CHECK(fs::is_regular_file(status), "{}: {}: not a regular file", who, path.string());
  const uintmax_t size = fs::file_size(path, ec);
  KILN_CHECK(!ec, "{}: {}: cannot read its size: {}", who, path.string(), ec.message());
  KILN_CHECK(size <= max_size, "{}: {}: the file is {} bytes, over the limit of {}", who,
             path.string(), size, max_size);
  std::ifstream in(path, std::ios::binary);
  KILN_CHECK(in.good(), "{}: {}: cannot open the file", who, path.string());
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  KILN_CHECK(static_cast<uintmax_t>(in.gcount()) == size, "{}: {}: short read ({} of {} bytes)",
             who, path.string(), in.gcount(), size);
  return bytes;
}

void write_atomic(const fs::path& path, std::string_view bytes) {
  write_file_atomically(path, bytes, "saved_function::save");
}

json::Value shape_json(const Shape& s) {
  json::Value a = json::Value::array();
  for (int64_t d : s)
    a.push_back(d);
  return a;
}

// The product of the nonzero dims fits int64 (so strides do too); numel goes to `numel`.
bool checked_numel(const Shape& s, int64_t& numel) {
  int64_t nonzero = 1;
  bool zero = false;
  for (int64_t d : s) {
    if (d == 0) {
      zero = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, d, &nonzero)) return false;
  }
  numel = zero ? 0 : nonzero;
  return true;
}

// ---- validating reads of JSON --------------------------------------------------------------

// Reads fields of one file's JSON, raising kiln::Error "<who>: <file>: <path>: <problem>".
struct Reader {
  std::string who;
  std::string file;

  [[noreturn]] void fail(const std::string& what) const {
    KILN_FAIL("{}: {}: {}", who, file, what);
  }
  const json::Value& field(const json::Value& obj, const char* key, const std::string& path) const {
    if (!obj.is_object())
      fail(fmt::format("{} is {}, expected an object", path, json::type_name(obj.type())));
    const json::Value* v = obj.find(key);
    if (v == nullptr) fail(fmt::format("{} has no \"{}\"", path, key));
    return *v;
  }
  int64_t integer(const json::Value& v, const std::string& path) const {
    if (!v.is_int())
      fail(fmt::format("{} is {}, expected an integer", path, json::type_name(v.type())));
    return v.as_int();
  }
  const std::string& string(const json::Value& v, const std::string& path) const {
    if (!v.is_string())
      fail(fmt::format("{} is {}, expected a string", path, json::type_name(v.type())));
    return v.as_string();
  }
  const std::vector<json::Value>& array(const json::Value& v, const std::string& path) const {
    if (!v.is_array())
      fail(fmt::format("{} is {}, expected an array", path, json::type_name(v.type())));
    return v.items();
  }
  DType dtype(const json::Value& v, const std::string& path, bool safetensors) const {
    const std::string& s = string(v, path);
    DType t{};
    if (!parse_dtype(s, safetensors, t)) {
      std::string known;
      for (const auto& d : kDTypes)
        known +=
            fmt::format("{}{}", known.empty() ? "" : ", ", safetensors ? d.safetensors : d.kiln);
      fail(fmt::format("{}: unknown dtype {} (known: {})", path, json::quote(s), known));
    }
    return t;
  }
  // Dims >= min_dim (0 for stored tensors, -1 for input specs).
  Shape shape(const json::Value& v, const std::string& path, int64_t min_dim) const {
    const auto& items = array(v, path);
    if (items.size() > kMaxRank)
      fail(fmt::format("{} has rank {}, over the limit of {}", path, items.size(), kMaxRank));
    Shape s;
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t d = integer(items[i], fmt::format("{}[{}]", path, i));
      if (d < min_dim) fail(fmt::format("{}[{}] is {}, not a valid dim", path, i, d));
      s.push_back(d);
    }
    return s;
  }
  json::Value parse(std::string_view text) const {
    try {
      return json::parse(text);
    } catch (const Error& e) {
      fail(e.what());
    }
  }
};

bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

// ---- safetensors ---------------------------------------------------------------------------

std::string encode_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value m = json::Value::object();
    for (const auto& [k, v] : metadata)
      m.set(k, v);
    header.set("__metadata__", std::move(m));
  }
  std::string data;
  std::set<std::string> names;
  for (const auto& [tname, t0] : tensors) {
    KILN_CHECK(!tname.empty() && tname != "__metadata__", "safetensors: invalid tensor name {}",
               json::quote(tname));
    KILN_CHECK(names.insert(tname).second, "safetensors: duplicate tensor name {}",
               json::quote(tname));
    KILN_CHECK(t0.defined() && !t0.is_symbolic(), "safetensors: tensor {} has no value",
               json::quote(tname));
    Tensor t = t0.device().is_cpu() ? t0 : t0.to(Device::cpu());
    t = t.contiguous();
    const size_t nbytes = static_cast<size_t>(t.numel()) * size_of(t.dtype());
    json::Value e = json::Value::object();
    e.set("dtype", safetensors_name(t.dtype()));
    e.set("shape", shape_json(t.shape()));
    json::Value off = json::Value::array();
    off.push_back(static_cast<uint64_t>(data.size()));
    off.push_back(static_cast<uint64_t>(data.size() + nbytes));
    e.set("data_offsets", std::move(off));
    header.append(tname, std::move(e));
    if (nbytes > 0) data.append(static_cast<const char*>(t.raw_data()), nbytes);
  }
  std::string text = json::dump(header);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  out += data;
  return out;
}

std::vector<std::pair<std::string, Tensor>> decode_safetensors(std::string_view bytes,
                                                               const std::string& file) {
  const Reader r{"safetensors", file};
  if (bytes.size() < 8)
    r.fail(fmt::format("truncated: {} bytes, but the file starts with an 8-byte header length",
                       bytes.size()));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeader)
    r.fail(fmt::format("header length {} is over the limit of {} bytes", n, kMaxHeader));
  if (n > bytes.size() - 8)
    r.fail(fmt::format("truncated: header length {} but only {} bytes follow it", n,
                       bytes.size() - 8));
  const std::string_view text = bytes.substr(8, static_cast<size_t>(n));
  if (text.empty() || text.front() != '{') r.fail("the header is not a JSON object");
  json::Value header;
  try {
    header = json::parse(text);
  } catch (const Error& e) {
    r.fail(fmt::format("header: {}", e.what()));
  }
  if (!header.is_object()) r.fail("the header is not a JSON object");
  const std::string_view data = bytes.substr(8 + static_cast<size_t>(n));

  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  const auto& keys = header.keys();
  const auto& vals = header.values();
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    const json::Value& v = vals[i];
    if (key == "__metadata__") {
      if (!v.is_object()) r.fail("\"__metadata__\" is not an object");
      for (size_t k = 0; k < v.keys().size(); ++k)
        r.string(v.values()[k], "__metadata__." + v.keys()[k]);
      continue;
    }
    const std::string path = "tensor " + json::quote(key);
    if (key.empty()) r.fail("a tensor has an empty name");
    Entry e{key, DType::f32, {}, 0, 0};
    e.dtype = r.dtype(r.field(v, "dtype", path), path + ".dtype", true);
    e.shape = r.shape(r.field(v, "shape", path), path + ".shape", 0);
    const auto& off = r.array(r.field(v, "data_offsets", path), path + ".data_offsets");
    if (off.size() != 2)
      r.fail(fmt::format("{}.data_offsets has {} entries, not 2", path, off.size()));
    const int64_t b = r.integer(off[0], path + ".data_offsets[0]");
    const int64_t en = r.integer(off[1], path + ".data_offsets[1]");
    if (b < 0 || en < b) r.fail(fmt::format("{}: invalid data_offsets [{}, {}]", path, b, en));
    e.begin = static_cast<uint64_t>(b);
    e.end = static_cast<uint64_t>(en);
    if (e.end > data.size())
      r.fail(fmt::format("{}: data_offsets [{}, {}] out of range: the data section has {} bytes",
                         path, b, en, data.size()));
    int64_t numel = 0;
    if (!checked_numel(e.shape, numel) ||
        static_cast<uint64_t>(numel) > (std::numeric_limits<uint64_t>::max() / 8))
      r.fail(fmt::format("{}: shape {} is too large", path, e.shape.str()));
    const uint64_t want = static_cast<uint64_t>(numel) * size_of(e.dtype);
    if (want != e.end - e.begin)
      r.fail(fmt::format(
          "{}: dtype {} and shape {} need {} bytes but data_offsets [{}, {}] hold {}", path,
          safetensors_name(e.dtype), e.shape.str(), want, b, en, e.end - e.begin));
    entries.push_back(std::move(e));
  }
  // The tensors must tile the data section exactly, as the reference implementation requires.
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(entries[a].begin, entries[a].end) < std::tie(entries[b].begin, entries[b].end);
  });
  uint64_t at = 0;
  const Entry* prev = nullptr;
  for (size_t i : order) {
    const Entry& e = entries[i];
    if (e.begin < at)
      r.fail(fmt::format("tensors {} and {} overlap (data_offsets [{}, {}] and [{}, {}])",
                         json::quote(prev->name), json::quote(e.name), prev->begin, prev->end,
                         e.begin, e.end));
    if (e.begin > at)
      r.fail(fmt::format("{} unused bytes before tensor {} at offset {}", e.begin - at,
                         json::quote(e.name), at));
    at = e.end;
    prev = &e;
  }
  if (at != data.size())
    r.fail(fmt::format("{} bytes after the last tensor (the data section has {} bytes)",
                       data.size() - at, data.size()));

  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i : order) {
    const Entry& e = entries[i];
    const char* p = data.data() + e.begin;
    if (e.dtype == DType::boolean)
      for (uint64_t k = 0; k < e.end - e.begin; ++k)
        if (static_cast<unsigned char>(p[k]) > 1)
          r.fail(fmt::format("tensor {}: byte {} of a BOOL tensor is {}, not 0 or 1",
                             json::quote(e.name), k, static_cast<unsigned char>(p[k])));
    out.emplace_back(e.name, from_buffer(p, e.shape, e.dtype));
  }
  return out;
}

// ---- save ----------------------------------------------------------------------------------

void save_concrete(const std::string& dir, const std::string& name,
                   const std::vector<ConcreteFunction>& functions) {
  KILN_CHECK(!functions.empty(), "saved_function::save: '{}': no concrete functions to save", name);
  struct Entry {
    std::string entry, name;
    Tensor value;
  };
  std::vector<Entry> entries;
  std::unordered_map<const VariableImpl*, size_t> index;
  std::set<std::string> used{"__metadata__"};
  json::Value sigs = json::Value::array();
  std::vector<std::string> texts;
  for (size_t i = 0; i < functions.size(); ++i) {
    const ir::Graph& g = functions[i].graph();
    json::Value slots = json::Value::array();
    for (const ir::VariableSlot& slot : g.variables) {
      KILN_CHECK(slot.var != nullptr,
                 "saved_function::save: '{}': signature {}: variable slot '{}' is not bound", name,
                 i, slot.name);
      auto it = index.find(slot.var.get());
      if (it == index.end()) {
        const Tensor value = slot.var->stored();
        KILN_CHECK(value.type() == slot.type,
                   "saved_function::save: '{}': variable '{}' is {} but the graph captured {}",
                   name, slot.var->name(), value.type_str(), type_str(slot.type));
        std::string base = slot.var->name().empty() ? "variable" : slot.var->name();
        std::string entry = base;
        for (int k = 1; used.count(entry) != 0; ++k)
          entry = fmt::format("{}_{}", base, k);
        used.insert(entry);
        it = index.emplace(slot.var.get(), entries.size()).first;
        entries.push_back({entry, slot.var->name(), value});
      }
      slots.push_back(entries[it->second].entry);
    }
    std::string text = ir::print(g);
    try {
      (void)ir::parse(text);
    } catch (const Error& e) {
      KILN_FAIL(
          "saved_function::save: '{}': signature {} does not round-trip through the IR "
          "text: {}",
          name, i, e.what());
    }
    json::Value inputs = json::Value::array();
    for (int p : g.params) {
      json::Value in = json::Value::object();
      in.set("dtype", std::string(kiln::name(g.types.at(static_cast<size_t>(p)).dtype)));
      in.set("shape", shape_json(g.types.at(static_cast<size_t>(p)).shape));
      inputs.push_back(std::move(in));
    }
    json::Value s = json::Value::object();
    s.set("file", fmt::format("signature_{}.ir", i));
    s.set("inputs", std::move(inputs));
    s.set("num_results", static_cast<uint64_t>(g.results.size()));
    s.set("variables", std::move(slots));
    sigs.push_back(std::move(s));
    texts.push_back(std::move(text));
  }

  json::Value vars = json::Value::array();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Entry& e : entries) {
    json::Value v = json::Value::object();
    v.set("entry", e.entry);
    v.set("name", e.name);
    v.set("dtype", std::string(kiln::name(e.value.dtype())));
    v.set("shape", shape_json(e.value.shape()));
    vars.push_back(std::move(v));
    tensors.emplace_back(e.entry, e.value);
  }
  json::Value manifest = json::Value::object();
  manifest.set("format", kFormat);
  manifest.set("version", kFormatVersion);
  manifest.set("name", name);
  manifest.set("signatures", std::move(sigs));
  manifest.set("variables", std::move(vars));

  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  KILN_CHECK(!ec && fs::is_directory(root), "saved_function::save: cannot create directory {}: {}",
             dir, ec ? ec.message() : "not a directory");
  write_atomic(root / kVariables, encode_safetensors(tensors, {{"format", "kiln"}}));
  for (size_t i = 0; i < texts.size(); ++i)
    write_atomic(root / fmt::format("signature_{}.ir", i), texts[i]);
  // The manifest goes last: a reader never sees it point at files not yet written.
  write_atomic(root / kManifest, json::dump(manifest, 2) + "\n");
  // Signature files left over from an earlier save with more signatures.
  for (size_t i = texts.size();; ++i) {
    const fs::path stale = root / fmt::format("signature_{}.ir", i);
    if (!fs::exists(stale, ec)) break;
    fs::remove(stale, ec);
  }
}

// ---- load ----------------------------------------------------------------------------------

bool SignatureInfo::accepts(const std::vector<Tensor>& in) const {
  if (in.size() != inputs.size()) return false;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined() || in[i].is_symbolic() || !tracer::fits(inputs[i], in[i])) return false;
  }
  return true;
}

std::string SignatureInfo::str() const {
  std::string s = "(";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) s += ", ";
    s += type_str(inputs[i]);
  }
  return s + fmt::format(") -> {} result{}", num_results, num_results == 1 ? "" : "s");
}

std::vector<Tensor> Loaded::operator()(const std::vector<Tensor>& inputs) const {
  KILN_CHECK(!functions_.empty(), "saved_function: calling an empty Loaded function");
  for (size_t i = 0; i < signatures_.size(); ++i)
    if (signatures_[i].accepts(inputs)) return functions_[i].call_flat(inputs);
  std::string got, avail;
  for (size_t i = 0; i < inputs.size(); ++i)
    got +=
        (i ? ", " : "") + (inputs[i].defined() ? inputs[i].type_str() : std::string("undefined"));
  for (const auto& s : signatures_)
    avail += "\n  " + s.str();
  KILN_FAIL(
      "saved function '{}' ({}): no signature accepts the inputs ({}); available signatures:{}",
      name_, dir_, got, avail);
}

Tensor Loaded::operator()(const Tensor& x) const {
  std::vector<Tensor> out = (*this)(std::vector<Tensor>{x});
  KILN_CHECK(out.size() == 1,
             "saved function '{}': returns {} results, not 1; call it with a "
             "std::vector<Tensor> to get them all",
             name_, out.size());
  return out[0];
}

Loaded load(const std::string& dir) {
  const std::string who = "saved_function::load";
  const fs::path root(dir);
  std::error_code ec;
  KILN_CHECK(fs::exists(root, ec), "{}: directory {} does not exist", who, dir);
  KILN_CHECK(fs::is_directory(root, ec), "{}: {} is not a directory", who, dir);

  const fs::path manifest_path = root / kManifest;
  const Reader mr{who, manifest_path.string()};
  const json::Value manifest = mr.parse(read_file(manifest_path, kMaxManifest, who));
  if (!manifest.is_object()) mr.fail("the manifest is not a JSON object");
  const std::string& format = mr.string(mr.field(manifest, "format", "manifest"), "format");
  if (format != kFormat)
    mr.fail(fmt::format("format is {}, not \"{}\"", json::quote(format), kFormat));
  const int64_t version = mr.integer(mr.field(manifest, "version", "manifest"), "version");
  if (version != kFormatVersion)
    mr.fail(fmt::format("unsupported format version {} (this build reads {})", version,
                        kFormatVersion));

  Loaded m;
  m.dir_ = dir;
  m.name_ = mr.string(mr.field(manifest, "name", "manifest"), "name");

  // Variables: the manifest's list, checked against the safetensors file.
  const fs::path vars_path = root / kVariables;
  const auto& mvars = mr.array(mr.field(manifest, "variables", "manifest"), "variables");
  std::map<std::string, std::pair<std::string, TensorType>> listed;  // entry -> (name, type)
  for (size_t i = 0; i < mvars.size(); ++i) {
    const std::string path = fmt::format("variables[{}]", i);
    const std::string& entry = mr.string(mr.field(mvars[i], "entry", path), path + ".entry");
    const std::string& vname = mr.string(mr.field(mvars[i], "name", path), path + ".name");
    TensorType t;
    t.dtype = mr.dtype(mr.field(mvars[i], "dtype", path), path + ".dtype", false);
    t.shape = mr.shape(mr.field(mvars[i], "shape", path), path + ".shape", 0);
    if (!listed.emplace(entry, std::make_pair(vname, t)).second)
      mr.fail(fmt::format("{}: entry {} is listed twice", path, json::quote(entry)));
  }
  const std::string vbytes = read_file(vars_path, std::numeric_limits<uintmax_t>::max(), who);
  std::vector<std::pair<std::string, Tensor>> tensors;
  try {
    tensors = decode_safetensors(vbytes, vars_path.string());
  } catch (const Error& e) {
    KILN_FAIL("{}: {}", who, e.what());
  }
  for (const auto& [entry, value] : tensors) {
    auto it = listed.find(entry);
    std::string vname = entry;
    if (it != listed.end()) {
      if (it->second.second != value.type())
        KILN_FAIL("{}: {}: variable {} is {} but {} lists it as {}", who, vars_path.string(),
                  json::quote(entry), value.type_str(), manifest_path.string(),
                  type_str(it->second.second));
      vname = it->second.first;
    }
    m.variables_.emplace(entry, Variable(value, vname, true));
  }
  for (const auto& [entry, info] : listed)
    if (m.variables_.count(entry) == 0)
      KILN_FAIL("{}: {} lists variable {} but {} does not contain it", who, manifest_path.string(),
                json::quote(entry), vars_path.string());

  // Signatures.
  const auto& sigs = mr.array(mr.field(manifest, "signatures", "manifest"), "signatures");
  if (sigs.empty()) mr.fail("\"signatures\" is empty");
  if (sigs.size() > kMaxSignatures)
    mr.fail(fmt::format("{} signatures, over the limit of {}", sigs.size(), kMaxSignatures));
  for (size_t i = 0; i < sigs.size(); ++i) {
    const std::string path = fmt::format("signatures[{}]", i);
    SignatureInfo info;
    info.file = mr.string(mr.field(sigs[i], "file", path), path + ".file");
    if (!plain_file_name(info.file))
      mr.fail(fmt::format("{}.file {} is not a plain file name", path, json::quote(info.file)));
    const auto& ins = mr.array(mr.field(sigs[i], "inputs", path), path + ".inputs");
    for (size_t k = 0; k < ins.size(); ++k) {
      const std::string ip = fmt::format("{}.inputs[{}]", path, k);
      TensorType t;
      t.dtype = mr.dtype(mr.field(ins[k], "dtype", ip), ip + ".dtype", false);
      t.shape = mr.shape(mr.field(ins[k], "shape", ip), ip + ".shape", -1);
      info.inputs.push_back(std::move(t));
    }
    const int64_t nres = mr.integer(mr.field(sigs[i], "num_results", path), path + ".num_results");
    if (nres < 0) mr.fail(fmt::format("{}.num_results is negative", path));
    info.num_results = static_cast<size_t>(nres);
    const auto& slots = mr.array(mr.field(sigs[i], "variables", path), path + ".variables");
    for (size_t k = 0; k < slots.size(); ++k)
      info.slots.push_back(mr.string(slots[k], fmt::format("{}.variables[{}]", path, k)));

    const fs::path ir_path = root / info.file;
    const std::string ir_file = ir_path.string();
    const std::string text = read_file(ir_path, kMaxIR, who);
    auto g = std::make_shared<ir::Graph>();
    try {
      *g = ir::parse(text);
      ir::verify(*g);
    } catch (const Error& e) {
      KILN_FAIL("{}: {}: {}", who, ir_file, e.what());
    }
    if (g->params.size() != info.inputs.size())
      KILN_FAIL("{}: {}: the graph takes {} inputs but {} lists {}", who, ir_file, g->params.size(),
                manifest_path.string(), info.inputs.size());
    for (size_t k = 0; k < info.inputs.size(); ++k) {
      const TensorType& gt = g->types.at(static_cast<size_t>(g->params[k]));
      if (gt != info.inputs[k])
        KILN_FAIL("{}: {}: input {} is {} but {} lists {}", who, ir_file, k, type_str(gt),
                  manifest_path.string(), type_str(info.inputs[k]));
    }
    if (g->results.size() != info.num_results)
      KILN_FAIL("{}: {}: the graph returns {} results but {} says {}", who, ir_file,
                g->results.size(), manifest_path.string(), info.num_results);
    if (g->variables.size() != info.slots.size())
      KILN_FAIL("{}: {}: the graph has {} variable slots but {} maps {}", who, ir_file,
                g->variables.size(), manifest_path.string(), info.slots.size());
    for (size_t k = 0; k < info.slots.size(); ++k) {
      ir::VariableSlot& slot = g->variables[k];
      auto it = m.variables_.find(info.slots[k]);
      if (it == m.variables_.end())
        KILN_FAIL("{}: {}: {}.variables[{}] refers to variable {} which {} does not contain", who,
                  manifest_path.string(), path, k, json::quote(info.slots[k]), vars_path.string());
      const TensorType vt{it->second.dtype(), it->second.shape()};
      if (vt != slot.type)
        KILN_FAIL("{}: {}: variable slot {} ('{}') is {} but entry {} in {} is {}", who, ir_file, k,
                  slot.name, type_str(slot.type), json::quote(info.slots[k]), vars_path.string(),
                  type_str(vt));
      slot.var = it->second.impl_ptr();
    }
    m.signatures_.push_back(std::move(info));
    m.functions_.emplace_back(std::move(g), /*jit=*/true);
  }
  return m;
}

}  // namespace kiln::saved_function
