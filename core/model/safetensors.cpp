// safetensors: memory-mapped reading with a checked header, f16/bf16 widening, and
// F32 writing. Notation: N header length in bytes, S file size, D = S - 8 - N the
// size of the data section; data_offsets are relative to the data section.
#include "core/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/bit_cast.h"
#include "core/error.h"

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace kv {

namespace {

using json = nlohmann::json;

// Printable, single-line, bounded: for quoting parser messages that may echo file bytes.
std::string one_line(const std::string& s, size_t max_len = 160) {
    std::string out;
    for (char c : s) {
        if (out.size() >= max_len) {
            out += "...";
            break;
        }
        const unsigned char u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    return out;
}

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

// ---------------------------------------------------------------- half / bfloat16

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24, exact in float.
        const float v = std::ldexp(float(mant), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return kv::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
    return kv::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

float bf16_to_float(uint16_t b) { return kv::bit_cast<float>(uint32_t(b) << 16); }

uint16_t float_to_half(float f) {
    uint32_t x = kv::bit_cast<uint32_t>(f);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u));  // Inf / NaN
    if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to Inf
    if (x < 0x38800000u) {
        // Below the smallest normal half (2^-14): subnormal, round to nearest even.
        const float a = kv::bit_cast<float>(x);
        return uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)));
    }
    uint32_t h = ((x >> 23) - 112u) << 10 | ((x & 0x7fffffu) >> 13);
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may step the exponent: correct
    return uint16_t(sign | h);
}

uint16_t float_to_bf16(float f) {
    const uint32_t x = kv::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
    return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

size_t safetensors_dtype_size(const std::string& d) {
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
    return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---------------------------------------------------------------- reading

namespace {

// Parses the header JSON with a depth limit (a header is two levels deep; a hostile
// one must not recurse without bound).
json parse_header(const std::string& path, const char* first, const char* last) {
    constexpr int kMaxDepth = 16;
    json::parser_callback_t limit = [&](int depth, json::parse_event_t, json&) {
        if (depth > kMaxDepth)
            throw Error(path + ": safetensors header nests deeper than " + std::to_string(kMaxDepth) + " levels");
        return true;
    };
    try {
        return json::parse(first, last, limit);
    } catch (const json::exception& e) {
        throw Error(path + ": safetensors header is not valid JSON (" + one_line(e.what()) + ")");
    }
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& v, uint64_t data_size) {
    auto fail = [&](const std::string& what) { throw Error(path + ": tensor " + name + ": " + what); };
    if (!v.is_object()) fail("header entry is not a JSON object");
    TensorInfo t;
    const auto d = v.find("dtype");
    if (d == v.end() || !d->is_string()) fail("header entry has no \"dtype\" string");
    t.dtype = d->get<std::string>();
    const size_t esize = safetensors_dtype_size(t.dtype);
    if (esize == 0) fail("unknown dtype '" + one_line(t.dtype, 32) + "'");
    const auto s = v.find("shape");
    if (s == v.end() || !s->is_array()) fail("header entry has no \"shape\" array");
    if (s->size() > 8) fail("shape has " + std::to_string(s->size()) + " dimensions");
    // Element count with overflow checks: a dimension or product past 2^62 is absurd anyway.
    uint64_t count = 1;
    constexpr uint64_t kMax = uint64_t(1) << 62;
    for (const auto& dim : *s) {
        if (!dim.is_number_unsigned()) fail("shape " + one_line(s->dump(), 80) + " is not a list of non-negative integers");
        const uint64_t n = dim.get<uint64_t>();
        if (n > kMax || (n != 0 && count > kMax / n)) fail("shape " + one_line(s->dump(), 80) + " is too large");
        count *= n;
        t.shape.push_back(int64_t(n));
    }
    const auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2 || !(*o)[0].is_number_unsigned() ||
        !(*o)[1].is_number_unsigned())
        fail("header entry has no \"data_offsets\" pair of non-negative integers");
    t.begin = (*o)[0].get<uint64_t>();
    t.end = (*o)[1].get<uint64_t>();
    if (t.begin > t.end)
        fail("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] end before they begin");
    if (t.end > data_size)
        fail("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
             "] are outside the data section of " + std::to_string(data_size) + " bytes (file truncated?)");
    if (count > kMax / esize || t.end - t.begin != count * esize)
        fail("data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape " + shape_str(t.shape) +
             " of " + t.dtype + " needs " + std::to_string(count * esize) + " bytes");
    return t;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) {
        const int e = errno;
        if (e == ENOENT) throw Error(path + ": no such file");
        throw Error(path + ": cannot open (" + errno_text(e) + ")");
    }
    if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected a safetensors file");
    if (!S_ISREG(st.st_mode)) throw Error(path + ": is not a regular file");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open (" + errno_text(errno) + ")");
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw Error(path + ": cannot read (" + errno_text(e) + ")");
    }
    const uint64_t size = uint64_t(st.st_size);
    if (size < 8) {
        ::close(fd);
        throw Error(path + ": file is " + std::to_string(size) +
                    " bytes, shorter than the 8-byte safetensors header length (truncated?)");
    }
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    ::close(fd);
    if (m == MAP_FAILED) throw Error(path + ": cannot map the file (" + errno_text(map_errno) + ")");
    map_ = m;
    map_size_ = size;
    try {
        const auto* bytes = static_cast<const unsigned char*>(m);
        uint64_t n = 0;
        std::memcpy(&n, bytes, 8);
        if (n > size - 8)
            throw Error(path + ": safetensors header length " + std::to_string(n) + " is beyond the end of the file (" +
                        std::to_string(size) + " bytes; truncated or not a safetensors file?)");
        data_ = bytes + 8 + n;
        data_size_ = size - 8 - n;
        const json header = parse_header(path, reinterpret_cast<const char*>(bytes + 8),
                                         reinterpret_cast<const char*>(bytes + 8 + n));
        if (!header.is_object()) throw Error(path + ": safetensors header is not a JSON object");
        for (const auto& [name, v] : header.items()) {
            if (name == "__metadata__") {
                if (!v.is_object()) throw Error(path + ": safetensors __metadata__ is not a JSON object");
                for (const auto& [k, mv] : v.items()) metadata_[k] = mv.is_string() ? mv.get<std::string>() : mv.dump();
                continue;
            }
            tensors_[name] = parse_entry(path, name, v, data_size_);
        }
    } catch (...) {
        ::munmap(map_, map_size_);
        map_ = nullptr;
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::read_f32(const std::string& name, float* out, int64_t n) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(path_ + ": tensor " + name + " is missing");
    const TensorInfo& t = it->second;
    const size_t esize = safetensors_dtype_size(t.dtype);
    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
        throw Error(path_ + ": tensor " + name + " has dtype " + t.dtype +
                    ", which kvscope does not read (supported: F32, F16, BF16)");
    if (n < 0 || t.end - t.begin != uint64_t(n) * esize)
        throw Error(path_ + ": tensor " + name + " holds " + std::to_string((t.end - t.begin) / esize) +
                    " values, expected " + std::to_string(n));
    const unsigned char* src = data_ + t.begin;
    if (t.dtype == "F32") {
        std::memcpy(out, src, size_t(n) * 4);  // may be unaligned in the file: memcpy, not a cast
    } else {
        const bool half = t.dtype == "F16";
        for (int64_t i = 0; i < n; ++i) {
            uint16_t b;
            std::memcpy(&b, src + 2 * i, 2);
            out[i] = half ? half_to_float(b) : bf16_to_float(b);
        }
    }
}

std::map<std::string, TensorInfo> read_safetensors_header(const std::string& path) {
    SafetensorsFile f(path);
    return f.tensors();
}

// ---------------------------------------------------------------- writing

void write_safetensors_tensors(const std::string& path, const std::vector<TensorOut>& tensors) {
    json header = json::object();
    header["__metadata__"] = {{"format", "pt"}};
    uint64_t offset = 0;
    std::vector<uint64_t> sizes;  // bytes of each tensor
    for (const auto& t : tensors) {
        const size_t esize = safetensors_dtype_size(t.dtype);
        if (esize == 0) throw Error(path + ": tensor " + t.name + ": cannot write dtype " + t.dtype);
        uint64_t count = 1;
        for (int64_t d : t.shape) count *= uint64_t(d);
        sizes.push_back(esize * count);
        header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + sizes.back()}}};
        offset += sizes.back();
    }
    std::string h = header.dump();
    while ((8 + h.size()) % 8 != 0) h += ' ';  // pad so the data section starts 8-aligned

    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(path + ": cannot write (" + errno_text(errno) + ")");
        const uint64_t n = h.size();
        out.write(reinterpret_cast<const char*>(&n), 8);
        out.write(h.data(), std::streamsize(h.size()));
        for (size_t i = 0; i < tensors.size(); ++i)
            out.write(static_cast<const char*>(tensors[i].data), std::streamsize(sizes[i]));
        out.flush();
        if (!out) {
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            throw Error(path + ": write failed (disk full?)");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        const std::string why = ec.message();
        std::filesystem::remove(tmp, ec);
        throw Error(path + ": cannot replace the file (" + why + ")");
    }
}

}  // namespace kv
