#include <kiln/nn/checkpoint.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include <kiln/kiln.h>
#include <kiln/tracer/file_util.h>
#include <kiln/tracer/json.h>

// The format itself (layout, validation of untrusted bytes) lives once, in
// saved_function::encode/decode_safetensors, which saved functions use for their variables;
// this file adds files, metadata and variables on top.

namespace kiln::nn {

namespace {

namespace fs = std::filesystem;

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  KILN_CHECK(!ec && fs::exists(status), "load_safetensors: {}: the file is missing", path);
  KILN_CHECK(fs::is_regular_file(status), "load_safetensors: {}: not a regular file", path);
  const uintmax_t size = fs::file_size(path, ec);
  KILN_CHECK(!ec, "load_safetensors: {}: cannot read its size: {}", path, ec.message());
  std::ifstream in(path, std::ios::binary);
  KILN_CHECK(in.good(), "load_safetensors: {}: cannot open the file", path);
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  KILN_CHECK(static_cast<uintmax_t>(in.gcount()) == size,
             "load_safetensors: {}: short read ({} of {} bytes)", path, in.gcount(), size);
  return bytes;
}

void write(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  try {
    bytes = saved_function::encode_safetensors(tensors, metadata);
  } catch (const Error& e) {
    KILN_FAIL("save_safetensors: {}: {}", path, e.what());
  }
  write_file_atomically(path, bytes, "save_safetensors");
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<Variable>& vars,
                      const std::map<std::string, std::string>& metadata) {
  // Sorted by name so that the data section is in name order whatever order vars come in.
  std::map<std::string, Tensor> named;
  for (size_t i = 0; i < vars.size(); ++i) {
    KILN_CHECK(vars[i].defined(), "save_safetensors: {}: variable {} is undefined", path, i);
    // stored(), not value(): saving is not a read that a tape or trace should see.
    const Tensor t = vars[i].get()->stored();
    KILN_CHECK(named.emplace(vars[i].name(), t).second,
               "save_safetensors: {}: two variables are named '{}'", path, vars[i].name());
  }
  save_safetensors(path, named, metadata);
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write(path, {tensors.begin(), tensors.end()}, metadata);
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string bytes = read_whole_file(path);
  SafetensorsFile out;
  try {
    for (auto& [name, t] : saved_function::decode_safetensors(bytes, path))
      out.tensors.emplace(std::move(name), std::move(t));
  } catch (const Error& e) {
    KILN_FAIL("load_safetensors: {}", e.what());  // decode's message names the path
  }
  // decode validated the header (including that metadata values are strings); it does not
  // return the metadata, so read it here.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const json::Value header = json::parse(std::string_view(bytes).substr(8, n));
  if (const json::Value* m = header.find("__metadata__"))
    for (size_t i = 0; i < m->keys().size(); ++i)
      out.metadata.emplace(m->keys()[i], m->values()[i].as_string());
  return out;
}

std::map<std::string, std::string> restore_safetensors(const std::string& path,
                                                       const std::vector<Variable>& vars) {
  SafetensorsFile file = load_safetensors(path);
  // Check everything before the first assign, so that a bad file changes nothing.
  std::vector<Tensor> values(vars.size());
  for (size_t i = 0; i < vars.size(); ++i) {
    KILN_CHECK(vars[i].defined(), "restore_safetensors: {}: variable {} is undefined", path, i);
    const Variable& v = vars[i];
    const auto it = file.tensors.find(v.name());
    if (it == file.tensors.end()) {
      // Name what the file does have (a few of them): the usual cause is a renamed layer.
      std::string names;
      size_t shown = 0;
      for (const auto& [k, t] : file.tensors) {
        if (shown++ == 10) {
          names += fmt::format(" and {} more", file.tensors.size() - 10);
          break;
        }
        names += fmt::format("{}'{}'", names.empty() ? "" : ", ", k);
      }
      KILN_FAIL("restore_safetensors: {}: variable '{}' has no tensor in the file (it holds {})",
                path, v.name(), names.empty() ? "no tensors" : names);
    }
    const Tensor& t = it->second;
    const Tensor cur = v.get()->stored();
    KILN_CHECK(t.dtype() == cur.dtype() && t.shape() == cur.shape(),
               "restore_safetensors: {}: variable '{}' is {} but the file holds {}", path, v.name(),
               cur.type_str(), t.type_str());
    values[i] = cur.device() == t.device() ? t : t.to(cur.device());
  }
  for (size_t i = 0; i < vars.size(); ++i)
    vars[i].assign(values[i]);
  return std::move(file.metadata);
}

}  // namespace kiln::nn
