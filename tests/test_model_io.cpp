// Model folders: config.json, safetensors (F32/F16/BF16, prefix, untied head),
// random models, and the one-line errors for every kind of broken input.
#include <doctest/doctest.h>

#include "test_helpers.h"
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/model/safetensors.h"
#include "core/model/weights.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace kv;

using kvtest::error_of;

namespace {

struct TempDir : kvtest::TempDir {
    TempDir() : kvtest::TempDir("kvscope_test_model_io") {}
};

ModelConfig small_config(bool tied = true, int n_kv_head = 2) {
    ModelConfig c;
    c.vocab_size = 11;
    c.n_ctx = 8;
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = n_kv_head;
    c.tied_head = tied;
    return c;
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// Expects a kv::Error whose single-line message contains every one of `parts`.
#define CHECK_ERROR(expr, ...)                                                  \
    do {                                                                        \
        const std::string msg_ = error_of([&] { (void)(expr); });               \
        CAPTURE(msg_);                                                          \
        if (std::getenv("KV_SHOW_ERRORS")) MESSAGE(msg_);                       \
        CHECK(msg_.find('\n') == std::string::npos);                            \
        CHECK_FALSE(contains(msg_, "<no exception>"));                          \
        CHECK_FALSE(contains(msg_, "<not a kv::Error>"));                       \
        for (const std::string& part_ : std::initializer_list<std::string>{__VA_ARGS__}) {                      \
            CAPTURE(part_);                                                     \
            CHECK(contains(msg_, part_));                                       \
        }                                                                       \
    } while (0)

// The GPT-2 tensor list, written out independently of core/model/model_io.cpp.
struct NamedTensor {
    std::string name;
    const float* data;
    std::vector<int64_t> shape;
};

std::vector<NamedTensor> gpt2_tensors(const ModelConfig& c, const Weights& w) {
    const int64_t C = c.n_embd, Q = c.qkv_dim();
    std::vector<NamedTensor> t = {{"wte.weight", w.wte.data(), {c.vocab_size, C}},
                                  {"wpe.weight", w.wpe.data(), {c.n_ctx, C}}};
    for (int i = 0; i < c.n_layer; ++i) {
        const auto& l = w.layers[i];
        const std::string h = "h." + std::to_string(i) + ".";
        t.push_back({h + "ln_1.weight", l.ln_1_w.data(), {C}});
        t.push_back({h + "ln_1.bias", l.ln_1_b.data(), {C}});
        t.push_back({h + "attn.c_attn.weight", l.attn_w.data(), {C, Q}});
        t.push_back({h + "attn.c_attn.bias", l.attn_b.data(), {Q}});
        t.push_back({h + "attn.c_proj.weight", l.attn_proj_w.data(), {C, C}});
        t.push_back({h + "attn.c_proj.bias", l.attn_proj_b.data(), {C}});
        t.push_back({h + "ln_2.weight", l.ln_2_w.data(), {C}});
        t.push_back({h + "ln_2.bias", l.ln_2_b.data(), {C}});
        t.push_back({h + "mlp.c_fc.weight", l.fc_w.data(), {C, 4 * C}});
        t.push_back({h + "mlp.c_fc.bias", l.fc_b.data(), {4 * C}});
        t.push_back({h + "mlp.c_proj.weight", l.mlp_proj_w.data(), {4 * C, C}});
        t.push_back({h + "mlp.c_proj.bias", l.mlp_proj_b.data(), {C}});
    }
    t.push_back({"ln_f.weight", w.ln_f_w.data(), {C}});
    t.push_back({"ln_f.bias", w.ln_f_b.data(), {C}});
    if (!c.tied_head) t.push_back({"lm_head.weight", w.lm_head.data(), {c.vocab_size, C}});
    return t;
}

int64_t numel(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

// A tensor as raw bytes, for hand-written files.
struct RawTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};

std::string f32_bytes(const float* p, int64_t n) { return std::string(reinterpret_cast<const char*>(p), size_t(4 * n)); }

// [u64 header length][header][data], exactly as given.
void write_bytes(const std::string& path, const std::string& header, const std::string& data,
                 uint64_t header_len_override = 0) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const uint64_t n = header_len_override ? header_len_override : header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << data;
}

void write_raw(const std::string& path, const std::vector<RawTensor>& ts) {
    json h = json::object();
    std::string data;
    for (const auto& t : ts) {
        h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
        data += t.bytes;
    }
    write_bytes(path, h.dump(), data);
}

std::vector<RawTensor> f32_raw(const ModelConfig& c, const Weights& w, const std::string& prefix = "") {
    std::vector<RawTensor> out;
    for (const auto& t : gpt2_tensors(c, w)) {
        const std::string name = t.name == "lm_head.weight" ? t.name : prefix + t.name;
        out.push_back({name, "F32", t.shape, f32_bytes(t.data, numel(t.shape))});
    }
    return out;
}

// A folder with config.json and a model.safetensors made of `ts`.
void write_folder(const TempDir& d, const ModelConfig& c, const std::vector<RawTensor>& ts) {
    write_config_json(d / "config.json", c);
    write_raw(d / "model.safetensors", ts);
}

RawTensor* find_tensor(std::vector<RawTensor>& ts, const std::string& name) {
    for (auto& t : ts)
        if (t.name == name) return &t;
    FAIL("test bug: no tensor " << name);
    return nullptr;
}

void erase_tensor(std::vector<RawTensor>& ts, const std::string& name) {
    std::erase_if(ts, [&](const RawTensor& t) { return t.name == name; });
}

// Bit-exact comparison of every tensor of two models of the same config.
void check_same_weights(const ModelConfig& c, const Weights& a, const Weights& b) {
    const auto ta = gpt2_tensors(c, a), tb = gpt2_tensors(c, b);
    REQUIRE(ta.size() == tb.size());
    for (size_t k = 0; k < ta.size(); ++k) {
        CAPTURE(ta[k].name);
        REQUIRE(ta[k].shape == tb[k].shape);
        CHECK(std::memcmp(ta[k].data, tb[k].data, size_t(4 * numel(ta[k].shape))) == 0);
    }
}

}  // namespace

// ---------------------------------------------------------------- config.json

TEST_CASE("config.json round trip keeps every field and writes the keys transformers needs") {
    TempDir d;
    ModelConfig c = small_config(false, 1);
    c.layer_norm_epsilon = 1e-6f;
    write_config_json(d / "config.json", c);
    CHECK(read_config_json(d / "config.json") == c);

    std::ifstream in(d / "config.json");
    const json j = json::parse(in);
    CHECK(j["model_type"] == "gpt2");
    CHECK(j["architectures"] == json::array({"GPT2LMHeadModel"}));
    CHECK(j["activation_function"] == "gelu_new");
    CHECK(j["n_positions"] == 8);
    CHECK(j["tie_word_embeddings"] == false);
    CHECK(j["layer_norm_epsilon"].get<double>() == 1e-6);  // not 9.99999997e-07
    CHECK(j["n_kv_head"] == 1);
}

TEST_CASE("config.json accepts n_ctx for n_positions and defaults n_kv_head to n_head") {
    TempDir d;
    std::ofstream(d / "config.json")
        << R"({"vocab_size": 50, "n_ctx": 16, "n_embd": 12, "n_layer": 1, "n_head": 3, "layer_norm_epsilon": 1e-5})";
    const ModelConfig c = read_config_json(d / "config.json");
    CHECK(c.n_ctx == 16);
    CHECK(c.n_kv_head == 3);
    CHECK(c.tied_head);
    CHECK(c.layer_norm_epsilon == doctest::Approx(1e-5));
}

TEST_CASE("config.json errors name the file and the key") {
    TempDir d;
    const std::string p = d / "config.json";
    const std::string good = R"("vocab_size": 50, "n_positions": 16, "n_embd": 12, "n_layer": 1, "n_head": 3)";
    SUBCASE("missing file") { CHECK_ERROR(read_config_json(p), p, "no such file"); }
    SUBCASE("a directory") {
        fs::create_directory(p);
        CHECK_ERROR(read_config_json(p), p, "directory");
    }
    SUBCASE("bad JSON") {
        std::ofstream(p) << "{\"vocab_size\": 50,\n oops";
        CHECK_ERROR(read_config_json(p), p, "not valid JSON");
    }
    SUBCASE("not an object") {
        std::ofstream(p) << "[1, 2]";
        CHECK_ERROR(read_config_json(p), p, "object");
    }
    SUBCASE("missing key") {
        std::ofstream(p) << R"({"vocab_size": 50, "n_positions": 16, "n_layer": 1, "n_head": 3})";
        CHECK_ERROR(read_config_json(p), p, "n_embd", "missing");
    }
    SUBCASE("missing n_positions") {
        std::ofstream(p) << R"({"vocab_size": 50, "n_embd": 12, "n_layer": 1, "n_head": 3})";
        CHECK_ERROR(read_config_json(p), p, "n_positions");
    }
    SUBCASE("wrong type") {
        std::ofstream(p) << "{" << good << R"(, "n_layer": "two"})";
        // Duplicate keys: nlohmann keeps the last one.
        CHECK_ERROR(read_config_json(p), p, "n_layer", "integer");
    }
    SUBCASE("float where an integer belongs") {
        std::ofstream(p) << R"({"vocab_size": 50.5, "n_positions": 16, "n_embd": 12, "n_layer": 1, "n_head": 3})";
        CHECK_ERROR(read_config_json(p), p, "vocab_size");
    }
    SUBCASE("integer out of range") {
        std::ofstream(p) << R"({"vocab_size": 99999999999999, "n_positions": 16, "n_embd": 12, "n_layer": 1, "n_head": 3})";
        CHECK_ERROR(read_config_json(p), p, "vocab_size");
    }
    SUBCASE("impossible shape") {
        std::ofstream(p) << R"({"vocab_size": 50, "n_positions": 16, "n_embd": 10, "n_layer": 1, "n_head": 3})";
        CHECK_ERROR(read_config_json(p), p, "n_head");
    }
    SUBCASE("more heads than a CUDA grid dimension holds") {
        // heads go on gridDim.y (at most 65535) in the CUDA attention kernel; the
        // limit is checked for every backend, so a model never loads on one and not the other
        std::ofstream(p) << R"({"vocab_size": 50, "n_positions": 16, "n_embd": 65536, "n_layer": 1, "n_head": 65536})";
        CHECK_ERROR(read_config_json(p), p, "n_head 65536", "65535");
        std::ofstream(p) << R"({"vocab_size": 50, "n_positions": 16, "n_embd": 65535, "n_layer": 1, "n_head": 65535})";
        CHECK(read_config_json(p).n_head == 65535);
    }
    SUBCASE("neither GPT-2 nor the Llama family") {
        std::ofstream(p) << "{" << good << R"(, "model_type": "bert"})";
        CHECK_ERROR(read_config_json(p), p, "model_type \"bert\" is not supported");
    }
    SUBCASE("tie_word_embeddings not a bool") {
        std::ofstream(p) << "{" << good << R"(, "tie_word_embeddings": 1})";
        CHECK_ERROR(read_config_json(p), p, "tie_word_embeddings");
    }
}

// ---------------------------------------------------------------- safetensors

TEST_CASE("safetensors round trip is bit-exact") {
    TempDir d;
    ModelConfig c;
    SUBCASE("tied head") { c = small_config(true); }
    SUBCASE("untied head") { c = small_config(false); }
    SUBCASE("grouped-query shape") { c = small_config(true, 1); }
    CAPTURE(c.tied_head);
    CAPTURE(c.n_kv_head);
    const Weights w = random_weights(c, 42);
    write_safetensors(d / "model.safetensors", c, w);

    ModelConfig c2 = c;
    c2.tied_head = true;  // the file decides: lm_head.weight present means untied
    const Weights w2 = read_safetensors(d / "model.safetensors", c2);
    CHECK(c2 == c);
    check_same_weights(c, w, w2);

    // Tied: the Hub gpt2 names. Untied: GPT2LMHeadModel's state-dict names, which
    // transformers needs to pick up lm_head.weight.
    const auto header = read_safetensors_header(d / "model.safetensors");
    const std::string prefix = c.tied_head ? "" : "transformer.";
    CHECK(header.size() == gpt2_tensors(c, w).size());
    REQUIRE(header.count(prefix + "wte.weight") == 1);
    CHECK(header.at(prefix + "wte.weight").dtype == "F32");
    CHECK(header.at(prefix + "wte.weight").shape == std::vector<int64_t>{11, 8});
    CHECK(header.count(prefix + "h.1.mlp.c_proj.bias") == 1);
    CHECK(header.count("lm_head.weight") == (c.tied_head ? 0u : 1u));
}

TEST_CASE("half and bfloat16 bit patterns widen exactly") {
    CHECK(half_to_float(0x3c00) == 1.0f);
    CHECK(half_to_float(0xc000) == -2.0f);
    CHECK(half_to_float(0x3555) == 0.333251953125f);
    CHECK(half_to_float(0x7bff) == 65504.0f);
    CHECK(half_to_float(0x0400) == 6.103515625e-05f);         // smallest normal
    CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));    // smallest subnormal
    CHECK(half_to_float(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(std::signbit(half_to_float(0x8000)));
    CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
    CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(half_to_float(0x7e00)));
    CHECK(bf16_to_float(0x3f80) == 1.0f);
    CHECK(bf16_to_float(0x4049) == 3.140625f);
    CHECK(bf16_to_float(0xbf00) == -0.5f);

    // Narrowing (used by tools): round to nearest even, overflow to Inf.
    CHECK(float_to_half(1.0f / 3.0f) == 0x3555);
    CHECK(float_to_half(65504.0f) == 0x7bff);
    CHECK(float_to_half(65520.0f) == 0x7c00);
    CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // tie rounds to even (0)
    CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 ulp rounds to even (2)
    CHECK(float_to_bf16(3.14159265f) == 0x4049);
    for (uint32_t b = 0; b < 0x10000; ++b) {
        const float f = half_to_float(uint16_t(b));
        if (std::isnan(f)) continue;
        CAPTURE(b);
        REQUIRE(float_to_half(f) == b);
    }
}

TEST_CASE("F16 and BF16 tensors load widened to f32") {
    TempDir d;
    const ModelConfig c = small_config(false);
    Weights w = allocate_weights(c);
    auto ts = f32_raw(c, w);
    // Hand-encoded bit patterns and the floats they stand for.
    const std::vector<std::pair<uint16_t, float>> f16 = {
        {0x3c00, 1.0f},       {0xc000, -2.0f},         {0x3800, 0.5f},          {0x0000, 0.0f},
        {0x3555, 0.333251953125f}, {0x7bff, 65504.0f}, {0x0001, 5.9604644775390625e-08f},
        {0x0400, 6.103515625e-05f}, {0xbc00, -1.0f},  {0x4248, 3.140625f}};
    const std::vector<std::pair<uint16_t, float>> bf16 = {
        {0x3f80, 1.0f}, {0x4049, 3.140625f}, {0xbf00, -0.5f}, {0x0000, 0.0f}, {0x4780, 65536.0f},
        {0x3c23, 0.00994873046875f}};
    // Alternate tensors between F16 and BF16 (the rest stay F32 zeros).
    std::map<std::string, std::vector<float>> expected;
    for (size_t k = 0; k < ts.size(); ++k) {
        if (k % 3 == 2) continue;
        const auto& table = k % 3 == 0 ? f16 : bf16;
        auto& t = ts[k];
        t.dtype = k % 3 == 0 ? "F16" : "BF16";
        t.bytes.clear();
        auto& e = expected[t.name];
        for (int64_t i = 0; i < numel(t.shape); ++i) {
            const auto& [bits, value] = table[size_t(i + int64_t(k)) % table.size()];
            t.bytes.append(reinterpret_cast<const char*>(&bits), 2);
            e.push_back(value);
        }
    }
    write_raw(d / "model.safetensors", ts);
    ModelConfig c2 = c;
    const Weights w2 = read_safetensors(d / "model.safetensors", c2);
    CHECK_FALSE(c2.tied_head);
    int checked = 0;
    for (const auto& t : gpt2_tensors(c2, w2)) {
        CAPTURE(t.name);
        const auto it = expected.find(t.name);
        if (it == expected.end()) continue;
        REQUIRE(int64_t(it->second.size()) == numel(t.shape));
        for (size_t i = 0; i < it->second.size(); ++i) {
            CAPTURE(i);
            REQUIRE(t.data[i] == it->second[i]);
        }
        ++checked;
    }
    CHECK(checked == int(expected.size()));
}

TEST_CASE("the transformer. prefix is accepted and old attention buffers are ignored") {
    TempDir d;
    const ModelConfig c = small_config(false);
    const Weights w = random_weights(c, 3);
    auto ts = f32_raw(c, w, "transformer.");
    // Old checkpoints carry causal-mask buffers; they are not weights.
    const std::string mask(size_t(c.n_ctx * c.n_ctx), '\1');
    ts.push_back({"transformer.h.0.attn.bias", "BOOL", {1, 1, c.n_ctx, c.n_ctx}, mask});
    const float mb = -1e4f;
    ts.push_back({"transformer.h.1.attn.masked_bias", "F32", {}, f32_bytes(&mb, 1)});
    ts.push_back({"h.0.attn.bias", "I64", {1}, std::string(8, '\0')});
    CHECK(find_tensor(ts, "lm_head.weight") != nullptr);
    write_raw(d / "model.safetensors", ts);
    ModelConfig c2 = c;
    const Weights w2 = read_safetensors(d / "model.safetensors", c2);
    CHECK(c2 == c);
    check_same_weights(c, w, w2);
}

TEST_CASE("broken safetensors files give one line naming the file") {
    TempDir d;
    const std::string p = d / "model.safetensors";
    const ModelConfig c = small_config(true);
    const Weights w = random_weights(c, 1);
    ModelConfig cfg = c;
    auto load = [&] { return read_safetensors(p, cfg); };

    SUBCASE("missing file") { CHECK_ERROR(load(), p, "no such file"); }
    SUBCASE("a directory instead of a file") {
        fs::create_directory(p);
        CHECK_ERROR(load(), p, "directory");
    }
    SUBCASE("unreadable file") {
        write_safetensors(p, c, w);
        ::chmod(p.c_str(), 0);
        if (::access(p.c_str(), R_OK) == 0) {
            MESSAGE("running with permission to read anything (root?): skipping");
        } else {
            CHECK_ERROR(load(), p, "cannot open");
        }
        ::chmod(p.c_str(), 0644);
    }
    SUBCASE("shorter than 8 bytes") {
        std::ofstream(p, std::ios::binary) << "abc";
        CHECK_ERROR(load(), p, "3 bytes");
    }
    SUBCASE("empty file") {
        std::ofstream(p, std::ios::binary).flush();
        CHECK_ERROR(load(), p, "0 bytes");
    }
    SUBCASE("truncated file: a tensor's data runs past the end") {
        write_safetensors(p, c, w);
        const auto size = fs::file_size(p);
        fs::resize_file(p, size - 20);
        // The last tensor in file order is ln_f.bias.
        CHECK_ERROR(load(), p, "ln_f.bias", "data_offsets");
    }
    SUBCASE("header length beyond the file") {
        write_bytes(p, "{}", "", 1000);
        CHECK_ERROR(load(), p, "header length 1000", "beyond");
    }
    SUBCASE("huge header length does not allocate") {
        write_bytes(p, "{}", "", uint64_t(1) << 63);
        CHECK_ERROR(load(), p, std::to_string(uint64_t(1) << 63), "beyond");
        write_bytes(p, "{}", "", ~uint64_t(0));
        CHECK_ERROR(load(), p, "beyond");
    }
    SUBCASE("header not JSON") {
        write_bytes(p, "{\"wte.weight\": {\"dtype\": \"F32\", oops", "");
        CHECK_ERROR(load(), p, "not valid JSON");
    }
    SUBCASE("header with binary garbage") {
        write_bytes(p, std::string("\x01\x02\n\xff\xfe", 5), "");
        CHECK_ERROR(load(), p, "not valid JSON");
    }
    SUBCASE("deeply nested header") {
        write_bytes(p, std::string(100000, '[') + std::string(100000, ']'), "");
        CHECK_ERROR(load(), p, "deeper");
    }
    SUBCASE("header not an object") {
        write_bytes(p, "[1, 2, 3]", "");
        CHECK_ERROR(load(), p, "not a JSON object");
    }
    SUBCASE("entry without dtype") {
        write_bytes(p, R"({"wte.weight": {"shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
        CHECK_ERROR(load(), p, "wte.weight", "dtype");
    }
    SUBCASE("negative dimension") {
        write_bytes(p, R"({"wte.weight": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
        CHECK_ERROR(load(), p, "wte.weight", "shape");
    }
    SUBCASE("overflowing shape") {
        write_bytes(p, R"({"wte.weight": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})",
                    std::string(4, '\0'));
        CHECK_ERROR(load(), p, "wte.weight", "too large");
    }
    SUBCASE("data_offsets size disagrees with the shape") {
        auto ts = f32_raw(c, w);
        find_tensor(ts, "wpe.weight")->shape = {c.n_ctx, c.n_embd - 1};
        write_raw(p, ts);
        CHECK_ERROR(load(), p, "wpe.weight", "bytes");
    }
    SUBCASE("data_offsets reversed") {
        write_bytes(p, R"({"wte.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", std::string(4, '\0'));
        CHECK_ERROR(load(), p, "wte.weight", "data_offsets");
    }
    SUBCASE("unsupported dtype") {
        auto ts = f32_raw(c, w);
        auto* t = find_tensor(ts, "h.1.attn.c_proj.weight");
        t->dtype = "I64";
        t->bytes += t->bytes;  // 8 bytes per element
        write_raw(p, ts);
        CHECK_ERROR(load(), p, "h.1.attn.c_proj.weight", "I64");
    }
    SUBCASE("unknown dtype") {
        auto ts = f32_raw(c, w);
        find_tensor(ts, "ln_f.weight")->dtype = "F12";
        write_raw(p, ts);
        CHECK_ERROR(load(), p, "ln_f.weight", "F12");
    }
}

TEST_CASE("tensors that disagree with config.json are named") {
    TempDir d;
    const std::string p = d / "model.safetensors";
    const ModelConfig c = small_config(true);
    const Weights w = random_weights(c, 1);
    auto ts = f32_raw(c, w);
    ModelConfig cfg = c;
    auto load = [&] {
        write_raw(p, ts);
        return read_safetensors(p, cfg);
    };

    SUBCASE("missing tensor") {
        erase_tensor(ts, "h.0.mlp.c_fc.bias");
        CHECK_ERROR(load(), p, "h.0.mlp.c_fc.bias", "missing");
    }
    SUBCASE("wrong shape") {
        // c_attn of a narrower model: [C, 3C'] with C' = C/2.
        auto* t = find_tensor(ts, "h.0.attn.c_attn.weight");
        t->shape = {8, 12};
        t->bytes.resize(size_t(4 * 8 * 12));
        CHECK_ERROR(load(), p, "h.0.attn.c_attn.weight has shape [8, 12], config.json says [8, 24]");
    }
    SUBCASE("config says more layers than the file has") {
        cfg.n_layer = 4;
        CHECK_ERROR(load(), p, "h.2.", "n_layer 4", "h.0..h.1");
    }
    SUBCASE("the file has more layers than the config") {
        cfg.n_layer = 1;
        CHECK_ERROR(load(), p, "h.1.", "n_layer 1");
    }
    SUBCASE("vocabulary size mismatch") {
        cfg.vocab_size = 12;
        CHECK_ERROR(load(), p, "wte.weight", "[11, 8]", "[12, 8]", "vocab_size 12");
    }
    SUBCASE("n_positions mismatch") {
        cfg.n_ctx = 16;
        CHECK_ERROR(load(), p, "wpe.weight", "n_positions 16");
    }
    SUBCASE("a config far larger than the file fails before allocating") {
        // 1M x 65536 floats would be 256 GB: the shapes are checked against the file first.
        cfg.vocab_size = 1'000'000;
        cfg.n_embd = 65536;
        cfg.n_head = 1;
        cfg.n_kv_head = 1;
        cfg.n_layer = 2;
        CHECK_ERROR(load(), p, "wte.weight", "[1000000, 65536]");
    }
    SUBCASE("untied config without lm_head.weight") {
        cfg.tied_head = false;
        CHECK_ERROR(load(), p, "lm_head.weight", "tie_word_embeddings");
    }
    SUBCASE("lm_head with the wrong vocabulary") {
        RowMat head = RowMat::Ones(10, 8);
        ts.push_back({"lm_head.weight", "F32", {10, 8}, f32_bytes(head.data(), head.size())});
        CHECK_ERROR(load(), p, "lm_head.weight", "[10, 8]", "[11, 8]");
    }
}

TEST_CASE("non-finite weights are rejected naming the tensor") {
    TempDir d;
    const std::string p = d / "model.safetensors";
    const ModelConfig c = small_config(true);
    const Weights w = random_weights(c, 1);
    auto ts = f32_raw(c, w);
    auto* t = find_tensor(ts, "h.1.mlp.c_fc.weight");
    float bad = 0;
    SUBCASE("NaN") { bad = std::numeric_limits<float>::quiet_NaN(); }
    SUBCASE("Inf") { bad = -std::numeric_limits<float>::infinity(); }
    std::memcpy(t->bytes.data() + 4 * 5, &bad, 4);
    write_raw(p, ts);
    ModelConfig cfg = c;
    CHECK_ERROR(read_safetensors(p, cfg), p, "h.1.mlp.c_fc.weight", "non-finite");
}

TEST_CASE("write_safetensors refuses weights that do not match the config") {
    TempDir d;
    const ModelConfig c = small_config(true);
    Weights w = random_weights(c, 1);
    w.layers[1].fc_b.resize(3);
    CHECK_ERROR(write_safetensors(d / "model.safetensors", c, w), "h.1.mlp.c_fc.bias");
}

// ---------------------------------------------------------------- model folders

TEST_CASE("save_model_folder then load_model reads the same model and vocabulary") {
    TempDir d;
    const std::string dir = d / "tiny";
    const ModelConfig c = small_config(false);
    const Weights w = random_weights(c, 9);
    std::vector<std::string> vocab = {"<unk>", "Python", "is", "a", "programming", "language", "."};
    const WordTokenizer tok(vocab);
    save_model_folder(dir, c, w, &tok);
    CHECK(fs::exists(dir + "/config.json"));
    CHECK(fs::exists(dir + "/model.safetensors"));
    CHECK(fs::exists(dir + "/vocab.txt"));

    for (const std::string& spec : {dir, dir + "/"}) {
        CAPTURE(spec);
        const auto m = load_model(spec);
        CHECK(m->name == "tiny");
        CHECK(m->path == spec);
        CHECK(m->config == c);
        check_same_weights(c, w, m->weights);
        REQUIRE(m->tokenizer);
        CHECK(m->tokenizer->kind() == "word");
        CHECK(m->tokenizer->encode("Python is a programming language.").ids == std::vector<int>{1, 2, 3, 4, 5, 6});
    }
}

TEST_CASE("a folder without tokenizer files loads with no tokenizer") {
    TempDir d;
    const ModelConfig c = small_config(true);
    save_model_folder(d.path.string(), c, random_weights(c, 2), nullptr);
    const auto m = load_model_folder(d.path.string());
    CHECK(m->tokenizer == nullptr);
    CHECK(m->config == c);
}

TEST_CASE("model folder errors name the file or the spec") {
    TempDir d;
    const ModelConfig c = small_config(true);
    const Weights w = random_weights(c, 2);
    SUBCASE("no such folder") {
        const std::string spec = d / "nope";
        CHECK_ERROR(load_model(spec), "model '" + spec + "': no such folder", "random:tiny");
    }
    SUBCASE("a file instead of a folder") {
        std::ofstream(d / "file.txt") << "x";
        CHECK_ERROR(load_model(d / "file.txt"), "file.txt", "not a folder");
    }
    SUBCASE("missing config.json") {
        write_safetensors(d / "model.safetensors", c, w);
        CHECK_ERROR(load_model(d.path.string()), d / "config.json", "no such file");
    }
    SUBCASE("missing model.safetensors") {
        write_config_json(d / "config.json", c);
        CHECK_ERROR(load_model(d.path.string()), d / "model.safetensors", "no such file");
    }
    SUBCASE("model.safetensors is a directory") {
        write_config_json(d / "config.json", c);
        fs::create_directory(d / "model.safetensors");
        CHECK_ERROR(load_model(d.path.string()), d / "model.safetensors", "directory");
    }
    SUBCASE("tokenizer larger than the model's vocabulary") {
        save_model_folder(d.path.string(), c, w, nullptr);
        std::ofstream out(d / "vocab.txt");
        for (int i = 0; i < c.vocab_size + 1; ++i) out << (i == 0 ? std::string("<unk>") : "w" + std::to_string(i)) << "\n";
        out.close();
        CHECK_ERROR(load_model(d.path.string()), d / "vocab.txt", "12 tokens", "vocab_size is 11");
    }
    SUBCASE("malformed vocab.txt") {
        save_model_folder(d.path.string(), c, w, nullptr);
        std::ofstream(d / "vocab.txt") << "<unk>\nfoo\nfoo\n";
        CHECK_ERROR(load_model(d.path.string()), d / "vocab.txt", "line 3", "foo");
    }
    SUBCASE("vocab.json without merges.txt") {
        save_model_folder(d.path.string(), c, w, nullptr);
        std::ofstream(d / "vocab.json") << "{}";
        CHECK_ERROR(load_model(d.path.string()), d / "merges.txt", "no such file");
    }
    SUBCASE("config contradicting the tensors") {
        save_model_folder(d.path.string(), c, w, nullptr);
        ModelConfig more = c;
        more.n_layer = 3;
        write_config_json(d / "config.json", more);
        CHECK_ERROR(load_model(d.path.string()), d / "model.safetensors", "h.2.", "n_layer 3");
    }
}

// ---------------------------------------------------------------- random models

TEST_CASE("random models are deterministic for a seed") {
    const auto a = load_model("random:tiny:7");
    const auto b = load_model("random:tiny:7");
    const auto other = load_model("random:tiny:8");
    const auto zero = load_model("random:tiny");
    CHECK(a->name == "random:tiny:7");
    CHECK(zero->name == "random:tiny:0");
    CHECK(a->path.empty());
    CHECK(a->tokenizer == nullptr);
    CHECK(a->config == ModelConfig::tiny());
    check_same_weights(a->config, a->weights, b->weights);
    CHECK(a->weights.wte != other->weights.wte);
    CHECK(a->weights.layers[1].attn_w != other->weights.layers[1].attn_w);
    check_same_weights(zero->config, zero->weights, load_model("random:tiny:0")->weights);
}

TEST_CASE("random:gpt2-124m has the GPT-2 small shape") {
    const auto m = load_model("random:gpt2-124m:1");
    CHECK(m->config == ModelConfig::gpt2_124m());
    CHECK(m->config.vocab_size == 50257);
    CHECK(m->config.n_ctx == 1024);
    CHECK(m->config.n_embd == 768);
    CHECK(m->config.n_layer == 12);
    CHECK(m->config.n_head == 12);
    CHECK(m->weights.wte.rows() == 50257);
    CHECK(m->weights.layers.size() == 12u);
    CHECK(m->weights.layers[11].attn_w.cols() == 3 * 768);
    CHECK(m->config.n_params() == 124439808);  // GPT-2 small, tied head
}

TEST_CASE("bad random specs are clear errors") {
    CHECK_ERROR(load_model("random:huge"), "random:huge", "unknown random shape 'huge'", "random:gpt2-124m");
    CHECK_ERROR(load_model("random:tiny:abc"), "random:tiny:abc", "seed 'abc'");
    CHECK_ERROR(load_model("random:tiny:"), "random:tiny:", "seed");
    CHECK_ERROR(load_model("random:tiny:-3"), "seed '-3'");
}

TEST_CASE("default_model_dir honours KVSCOPE_MODEL_DIR") {
    TempDir d;
    const ModelConfig c = small_config(true);
    save_model_folder(d.path.string(), c, random_weights(c, 1), nullptr);
    const char* old = std::getenv("KVSCOPE_MODEL_DIR");
    const std::string saved = old ? old : "";
    ::setenv("KVSCOPE_MODEL_DIR", d.path.c_str(), 1);
    CHECK(fs::equivalent(default_model_dir(), d.path));
    // A folder without config.json is skipped.
    ::setenv("KVSCOPE_MODEL_DIR", (d / "nothing-here").c_str(), 1);
    const std::string fallback = default_model_dir();
    CHECK((fallback.empty() || fs::exists(fs::path(fallback) / "config.json")));
    if (old) ::setenv("KVSCOPE_MODEL_DIR", saved.c_str(), 1);
    else ::unsetenv("KVSCOPE_MODEL_DIR");
}

// ---------------------------------------------------------------- weight types

namespace {

// Every tensor's values as held (16-bit matrices widened), by GPT-2 name.
std::map<std::string, std::vector<float>> held_values(const ModelConfig& c, Weights w) {
    std::map<std::string, std::vector<float>> out;
    for (auto& m : weight_matrices(w, c)) {
        auto& v = out[m.name];
        if (w.type == WeightType::f32) {
            v.assign(m.f32->data(), m.f32->data() + m.f32->size());
        } else {
            v.resize(size_t(m.h16->size()));
            m.h16->widen(v.data());
        }
    }
    Weights wide = w;
    set_weight_type(wide, c, WeightType::f32);
    for (const auto& t : gpt2_tensors(c, wide))
        if (!out.count(t.name)) out[t.name].assign(t.data, t.data + numel(t.shape));
    return out;
}

}  // namespace

TEST_CASE("every checkpoint dtype loads into f32, f16 and bf16 weights as rounding says") {
    for (bool tied : {true, false}) {
        const ModelConfig c = small_config(tied);
        Weights w = random_weights(c, 5);
        for (auto& l : w.layers) l.fc_b.setConstant(0.123456789f);  // a vector with bits below bf16's
        for (const std::string stored : {"F32", "F16", "BF16"}) {
            CAPTURE(tied);
            CAPTURE(stored);
            // The file: every tensor in `stored`; `values` what it holds.
            auto ts = f32_raw(c, w);
            std::map<std::string, std::vector<float>> values;
            for (auto& t : ts) {
                const std::string name = t.name.starts_with("transformer.") ? t.name.substr(12) : t.name;
                auto& v = values[name];
                v.resize(size_t(numel(t.shape)));
                std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
                if (stored == "F32") continue;
                t.dtype = stored;
                t.bytes.clear();
                for (float& x : v) {
                    const uint16_t b = stored == "F16" ? float_to_half(x) : float_to_bf16(x);
                    t.bytes.append(reinterpret_cast<const char*>(&b), 2);
                    x = stored == "F16" ? half_to_float(b) : bf16_to_float(b);
                }
            }
            TempDir d;
            write_folder(d, c, ts);
            const WeightType as_stored = stored == "F16" ? WeightType::f16 : stored == "BF16" ? WeightType::bf16
                                                                                             : WeightType::f32;
            for (std::optional<WeightType> want :
                 {std::optional<WeightType>{}, std::optional{WeightType::f32}, std::optional{WeightType::f16},
                  std::optional{WeightType::bf16}}) {
                const WeightType t = want ? *want : as_stored;
                CAPTURE(weight_type_name(t));
                const auto m = load_model_folder(d.path.string(), want);
                REQUIRE(m->weights.type == t);
                Weights probe = allocate_weights(c);
                std::set<std::string> matrices;
                for (const auto& mr : weight_matrices(probe, c)) matrices.insert(mr.name);
                for (const auto& [name, got] : held_values(m->config, m->weights)) {
                    CAPTURE(name);
                    const auto& src = values.at(name);
                    REQUIRE(got.size() == src.size());
                    const bool rounded = matrices.count(name) != 0;
                    size_t bad = 0;
                    for (size_t i = 0; i < src.size(); ++i)
                        bad += got[i] != (rounded ? round_to(t, src[i]) : src[i]);
                    CHECK(bad == 0);
                }
                // Held bytes: 16-bit matrices take half the room.
                int64_t mat = 0, all = 0;
                for (const auto& [name, v] : values) (matrices.count(name) ? mat : all) += int64_t(v.size());
                CHECK(m->weights.bytes() == all * 4 + mat * weight_type_bytes(t));
                // Saved (in the held type) and loaded back in the same type: the same values.
                TempDir d2;
                save_model_folder(d2.path.string(), m->config, m->weights, nullptr);
                const auto hdr = read_safetensors_header((d2.path / "model.safetensors").string());
                const std::string pre = tied ? "" : "transformer.";
                const char* held_dtype = t == WeightType::f32 ? "F32" : t == WeightType::f16 ? "F16" : "BF16";
                CHECK(hdr.at(pre + "h.0.mlp.c_fc.weight").dtype == held_dtype);
                CHECK(hdr.at(pre + "wte.weight").dtype == held_dtype);
                CHECK(hdr.at(pre + "h.0.mlp.c_fc.bias").dtype == "F32");
                const auto back = load_model_folder(d2.path.string(), t);
                CHECK(held_values(back->config, back->weights) == held_values(m->config, m->weights));
            }
        }
    }
}

TEST_CASE("f16 weights refuse values beyond its range, naming the tensor") {
    const ModelConfig c = small_config();
    Weights w = random_weights(c, 1);
    w.layers[1].fc_w(2, 3) = 70000.0f;
    CHECK_ERROR(set_weight_type(w, c, WeightType::f16), "h.1.mlp.c_fc.weight", "overflows f16", "bf16");
    Weights ok = random_weights(c, 1);
    ok.layers[1].fc_w(2, 3) = 70000.0f;
    CHECK_NOTHROW(set_weight_type(ok, c, WeightType::bf16));
    CHECK(ok.layers[1].fc_w16.type == WeightType::bf16);
}

TEST_CASE("a non-finite value is found at load wherever it sits in a tensor, in every checkpoint dtype") {
    // mlp.c_fc.weight of n_embd 48 has 48 x 192 = 9216 values: more than two of the
    // scan's 4096-value blocks, so the first value, both sides of a block border and
    // the last one are all checked.
    ModelConfig c = small_config(true);
    c.n_embd = 48;
    const Weights w = random_weights(c, 3);
    const int64_t n = int64_t(c.n_embd) * 4 * c.n_embd;
    for (const std::string stored : {"F32", "F16", "BF16"}) {
        for (int64_t at : {int64_t(0), int64_t(4095), int64_t(4096), n - 1}) {
            for (bool nan : {false, true}) {
                CAPTURE(stored);
                CAPTURE(at);
                CAPTURE(nan);
                auto ts = f32_raw(c, w);
                RawTensor* t = find_tensor(ts, "h.1.mlp.c_fc.weight");
                REQUIRE(t != nullptr);
                REQUIRE(numel(t->shape) == n);
                if (stored == "F32") {
                    const float bad = nan ? std::numeric_limits<float>::quiet_NaN()
                                          : std::numeric_limits<float>::infinity();
                    std::memcpy(t->bytes.data() + 4 * at, &bad, 4);
                } else {
                    std::string half;
                    for (int64_t i = 0; i < n; ++i) {
                        float x = 0;
                        std::memcpy(&x, t->bytes.data() + 4 * i, 4);
                        uint16_t b = stored == "F16" ? float_to_half(x) : float_to_bf16(x);
                        if (i == at) b = stored == "F16" ? (nan ? 0x7e00 : 0xfc00) : (nan ? 0x7fc0 : 0xff80);
                        half.append(reinterpret_cast<const char*>(&b), 2);
                    }
                    t->dtype = stored;
                    t->bytes = half;
                }
                TempDir d;
                write_folder(d, c, ts);
                CHECK_ERROR(load_model_folder(d.path.string()), "h.1.mlp.c_fc.weight", "non-finite",
                            "at element " + std::to_string(at));
            }
        }
    }
}

// ---- loading with progress and cancel (LoadHooks: the window's loader uses them)

namespace {

// Tensors and bytes of a safetensors file, from its header alone (not the loader's count).
std::pair<int, int64_t> header_totals(const std::string& path) {
    int n = 0;
    int64_t bytes = 0;
    for (const auto& [name, info] : kv::read_safetensors_header(path)) {
        ++n;
        bytes += int64_t(info.end - info.begin);
    }
    return {n, bytes};
}

}  // namespace

TEST_CASE("load progress: one report per tensor, monotonic, reaching the file's totals") {
    kvtest::TempDir dir("kvscope_load_progress");
    struct Variant {
        kv::WeightType stored;
        std::optional<kv::WeightType> held;
    };
    for (const Variant& v : {Variant{kv::WeightType::f32, std::nullopt}, Variant{kv::WeightType::f32, kv::WeightType::f16},
                             Variant{kv::WeightType::bf16, std::nullopt}, Variant{kv::WeightType::bf16, kv::WeightType::f32}}) {
        CAPTURE(kv::weight_type_name(v.stored));
        CAPTURE(v.held ? kv::weight_type_name(*v.held) : "as stored");
        auto m = kv::load_model("random:tiny:2", v.stored);
        const std::string folder = dir / (std::string("m_") + kv::weight_type_name(v.stored));
        kv::save_model_folder(folder, m->config, m->weights, nullptr);
        const auto [n, bytes] = header_totals(folder + "/model.safetensors");
        std::vector<kv::LoadProgress> seen;
        kv::LoadHooks hooks;
        hooks.on_progress = [&](const kv::LoadProgress& p) { seen.push_back(p); };
        auto loaded = kv::load_model(folder, v.held, &hooks);
        REQUIRE(loaded != nullptr);
        REQUIRE(static_cast<int>(seen.size()) == n + 1);  // 0 first, then one per tensor
        CHECK(seen.front().tensors_done == 0);
        CHECK(seen.front().bytes_done == 0);
        for (size_t i = 0; i < seen.size(); ++i) {
            CAPTURE(i);
            CHECK(seen[i].tensors_total == n);
            CHECK(seen[i].bytes_total == bytes);
            CHECK(seen[i].tensors_done == static_cast<int>(i));
            if (i > 0) CHECK(seen[i].bytes_done > seen[i - 1].bytes_done);
        }
        CHECK(seen.back().bytes_done == bytes);
    }
}

TEST_CASE("load cancel: stops between tensors, throws LoadCancelled naming the model, returns nothing") {
    kvtest::TempDir dir("kvscope_load_cancel");
    auto m = kv::load_model("random:tiny:2");
    const std::string folder = dir / "m";
    kv::save_model_folder(folder, m->config, m->weights, nullptr);
    std::atomic<bool> cancel{false};
    int reports = 0, after_cancel = 0;
    kv::LoadHooks hooks;
    hooks.cancel = &cancel;
    hooks.on_progress = [&](const kv::LoadProgress& p) {
        ++reports;
        if (cancel) ++after_cancel;
        if (p.tensors_done == 5) cancel = true;
    };
    try {
        kv::load_model(folder, std::nullopt, &hooks);
        FAIL("a cancelled load returned a model");
    } catch (const kv::LoadCancelled& e) {
        CHECK(std::string(e.what()) == "model '" + folder + "': loading cancelled");
    }
    CHECK(reports == 6);  // 0..5: nothing read after the cancel
    CHECK(after_cancel == 0);
    SUBCASE("random models: cancelled before they are made") {
        std::atomic<bool> stop{true};
        kv::LoadHooks h2;
        h2.cancel = &stop;
        CHECK_THROWS_AS(kv::load_model("random:tiny", std::nullopt, &h2), kv::LoadCancelled);
    }
}

TEST_CASE("load progress of a random model: wte and wpe, then each layer as it is made, then the rest") {
    const std::string spec = "random:tiny:3";
    const kv::ModelConfig c = kv::load_model(spec)->config;
    std::vector<kv::LoadProgress> seen;
    std::atomic<bool> cancel{false};
    kv::LoadHooks hooks;
    hooks.cancel = &cancel;
    hooks.on_progress = [&](const kv::LoadProgress& p) { seen.push_back(p); };
    auto m = kv::load_model(spec, kv::WeightType::f16, &hooks);
    REQUIRE(m != nullptr);
    // Counted here from the config, not from the loader's slots: 12 tensors a layer,
    // wte + wpe, ln_f (2) and the head when untied.
    const int per_layer = 12, total = 2 + per_layer * c.n_layer + 2 + (c.tied_head ? 0 : 1);
    REQUIRE(seen.size() >= size_t(2 + per_layer * c.n_layer));  // 0, then one per tensor made so far
    CHECK(seen.front().tensors_done == 0);
    CHECK(seen.back().tensors_done == total);
    CHECK(seen.back().bytes_done == seen.back().bytes_total);
    for (size_t i = 1; i < seen.size(); ++i) {
        CHECK(seen[i].tensors_total == total);
        CHECK(seen[i].tensors_done >= seen[i - 1].tensors_done);
        CHECK(seen[i].bytes_done >= seen[i - 1].bytes_done);
    }
    // After the embeddings: wte (V x C) and wpe (T x C) in f32 bytes.
    CHECK(seen[2].tensors_done == 2);
    CHECK(seen[2].bytes_done == int64_t(c.vocab_size + c.n_ctx) * c.n_embd * 4);

    SUBCASE("cancelled while its layers are being made: LoadCancelled, no more reports") {
        std::vector<kv::LoadProgress> seen2;
        hooks.on_progress = [&](const kv::LoadProgress& p) {
            seen2.push_back(p);
            if (p.tensors_done == 2 + per_layer) cancel = true;  // after layer 0
        };
        CHECK_THROWS_AS(kv::load_model(spec, std::nullopt, &hooks), kv::LoadCancelled);
        CHECK(seen2.back().tensors_done == 2 + per_layer);
    }
}

// ---------------------------------------------------------------- Llama-family folders

namespace {

std::string text_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A written safetensors file back as raw tensors (to edit and write again).
std::vector<RawTensor> raw_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    std::memcpy(&n, all.data(), 8);
    const json h = json::parse(all.substr(8, n));
    std::vector<RawTensor> ts;
    for (const auto& [name, info] : h.items()) {
        if (name == "__metadata__") continue;
        const uint64_t b = info["data_offsets"][0], e = info["data_offsets"][1];
        ts.push_back({name, info["dtype"], info["shape"].get<std::vector<int64_t>>(), all.substr(8 + n + b, e - b)});
    }
    return ts;
}

}  // namespace

TEST_CASE("a Llama-family folder is written with transformers' names and nn.Linear shapes") {
    TempDir d;
    ModelConfig c = ModelConfig::llama_tiny();  // 64 wide, 4 heads of 16, 2 kv heads, F 176, V 96
    c.qkv_bias = true;
    c.tied_head = false;
    const auto m = make_random_model(c, 3, "t");
    save_model_folder(d.path.string(), c, m->weights, nullptr);
    // Written out here from transformers' Qwen2ForCausalLM state dict, not from model_io.cpp.
    std::map<std::string, std::vector<int64_t>> want = {{"model.embed_tokens.weight", {96, 64}},
                                                        {"model.norm.weight", {64}},
                                                        {"lm_head.weight", {96, 64}}};
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        want[p + "input_layernorm.weight"] = {64};
        want[p + "post_attention_layernorm.weight"] = {64};
        want[p + "self_attn.q_proj.weight"] = {64, 64};
        want[p + "self_attn.q_proj.bias"] = {64};
        want[p + "self_attn.k_proj.weight"] = {32, 64};
        want[p + "self_attn.k_proj.bias"] = {32};
        want[p + "self_attn.v_proj.weight"] = {32, 64};
        want[p + "self_attn.v_proj.bias"] = {32};
        want[p + "self_attn.o_proj.weight"] = {64, 64};
        want[p + "mlp.gate_proj.weight"] = {176, 64};
        want[p + "mlp.up_proj.weight"] = {176, 64};
        want[p + "mlp.down_proj.weight"] = {64, 176};
    }
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& [name, info] : read_safetensors_header(d / "model.safetensors")) got[name] = info.shape;
    CHECK(got == want);
    const json j = json::parse(text_of(d / "config.json"));
    CHECK(j["model_type"] == "qwen2");
    CHECK(j["architectures"][0] == "Qwen2ForCausalLM");
    CHECK(j["intermediate_size"] == 176);
    CHECK(j["num_key_value_heads"] == 2);
    CHECK(j["tie_word_embeddings"] == false);
    // k_proj.weight row r is key feature r: column r of the held [q|k|v] matrix, past q.
    const auto ts = raw_of(d / "model.safetensors");
    for (const auto& t : ts)
        if (t.name == "model.layers.1.self_attn.k_proj.weight") {
            const float* v = reinterpret_cast<const float*>(t.bytes.data());
            CHECK(v[5 * 64 + 7] == m->weights.layers[1].attn_w(7, 64 + 5));
        }
    auto back = load_model_folder(d.path.string());
    CHECK(back->config == c);
    CHECK(back->weights.layers[1].attn_w == m->weights.layers[1].attn_w);
    CHECK(back->weights.layers[0].fc_w == m->weights.layers[0].fc_w);
    CHECK(back->weights.layers[0].attn_b == m->weights.layers[0].attn_b);
}

TEST_CASE("Llama-family tensors that disagree with config.json are named in one line") {
    TempDir d;
    const ModelConfig c = ModelConfig::llama_tiny();
    const auto m = make_random_model(c, 4, "t");
    save_model_folder(d.path.string(), c, m->weights, nullptr);
    const std::string p = d / "model.safetensors";
    auto ts = raw_of(p);
    auto load = [&] {
        write_raw(p, ts);
        return load_model_folder(d.path.string());
    };
    SUBCASE("missing tensor") {
        erase_tensor(ts, "model.layers.1.mlp.up_proj.weight");
        CHECK_ERROR(load(), p, "model.layers.1.mlp.up_proj.weight", "missing");
    }
    SUBCASE("a Linear weight stored (in, out)") {
        auto* t = find_tensor(ts, "model.layers.0.self_attn.k_proj.weight");
        t->shape = {64, 32};
        CHECK_ERROR(load(), p, "k_proj.weight has shape [64, 32], config.json says [32, 64]", "[out, in]");
    }
    SUBCASE("a bias the config does not ask for") {
        ts.push_back({"model.layers.0.self_attn.q_proj.bias", "F32", {64}, std::string(4 * 64, '\0')});
        CHECK_ERROR(load(), p, "model.layers.0.self_attn.q_proj.bias", "attention_bias");
    }
    SUBCASE("more layers in the file than the config") {
        json j = json::parse(text_of(d / "config.json"));
        j["num_hidden_layers"] = 1;
        std::ofstream(d / "config.json") << j.dump();
        CHECK_ERROR(load(), p, "model.layers.1.", "num_hidden_layers 1");
    }
    SUBCASE("an unsupported dtype") {
        find_tensor(ts, "model.norm.weight")->dtype = "I32";
        CHECK_ERROR(load(), p, "model.norm.weight", "I32");
    }
}
