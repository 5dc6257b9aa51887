#pragma once

// Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON
// header {"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the tensors' bytes, row-major, little-endian.
// Files are written to a temporary name and renamed, so a crash never leaves half of one.

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/tensor.h>

namespace kiln::nn {

// Saves the variables under their names (duplicate names are a kiln::Error).
void save_safetensors(const std::string& path, const std::vector<Variable>& vars,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Makes save_safetensors(path, {w, b}) unambiguous: without it, std::map's iterator-pair
// constructor would accept a list of exactly two variables as well.
inline void save_safetensors(const std::string& path, std::initializer_list<Variable> vars,
                             const std::map<std::string, std::string>& metadata = {}) {
  save_safetensors(path, std::vector<Variable>(vars), metadata);
}

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};
// Reads the whole file; a bad header, offsets outside the file or overlapping, an unknown
// dtype or a truncated file raise kiln::Error naming the path.
SafetensorsFile load_safetensors(const std::string& path);

// Assigns each variable the tensor saved under its name. A missing name, or a shape or dtype
// that differs, is a kiln::Error naming the variable (nothing is assigned then). Returns the
// file's metadata.
std::map<std::string, std::string> restore_safetensors(const std::string& path,
                                                       const std::vector<Variable>& vars);

}  // namespace kiln::nn
