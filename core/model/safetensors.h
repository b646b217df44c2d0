// safetensors reading and writing (the Hugging Face format): an 8-byte little-endian
// u64 header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [b, e]},
// optional "__metadata__"}, then the data section. Reading memory-maps the file
// once; F32, F16 and BF16 tensors are widened to f32. Every error is one line that
// names the file (and the tensor where there is one).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/model/model_io.h"

namespace kv {

// IEEE half and bfloat16 bit patterns -> float (exact: every value widens losslessly).
float half_to_float(uint16_t h);
float bf16_to_float(uint16_t b);
// float -> half / bfloat16, round to nearest even (used by tests and tools).
uint16_t float_to_half(float f);
uint16_t float_to_bf16(float f);

// Bytes per element of a safetensors dtype name, 0 if the name is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// A safetensors file mapped read-only into memory; the header is parsed and checked
// (offsets within the data section, sizes matching shape and dtype) on open.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::string& path);  // throws kv::Error
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }

    // Copies tensor `name` into out[0..n), widening F16/BF16 to f32. Throws when the
    // tensor is missing, its dtype is not F32/F16/BF16, or it does not hold n values.
    void read_f32(const std::string& name, float* out, int64_t n) const;
    // The stored bytes of tensor `name` (checked on open; valid while this file lives).
    const unsigned char* raw(const std::string& name) const { return data_ + tensors_.at(name).begin; }

private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_size_ = 0;
    const unsigned char* data_ = nullptr;  // start of the data section
    uint64_t data_size_ = 0;
    std::map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

// One tensor to write: name, shape, dtype ("F32", "F16" or "BF16") and the
// product(shape) values at data, in that dtype's layout.
struct TensorOut {
    std::string name;
    std::vector<int64_t> shape;
    const void* data = nullptr;
    std::string dtype = "F32";
};

// Writes the tensors in the given order (header padded to 8 bytes, metadata
// {"format": "pt"} so transformers accepts the file). Writes to a temporary file
// beside `path` and renames it into place.
void write_safetensors_tensors(const std::string& path, const std::vector<TensorOut>& tensors);

// "[64, 192]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace kv
