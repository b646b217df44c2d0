// Fuzzes model loading (core/model/model_io.h): config.json, the safetensors header and
// data, and whole model folders. Input layout (see make_seeds.py):
//   u16 little-endian L, then L bytes of config.json, then model.safetensors to the end.
// Every failure must be a kv::Error; a model that loads must pass its own checks.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/model/safetensors.h"
#include "core/model/weights.h"
#include "tests/fuzz/fuzz_util.h"

using namespace kvfuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const size_t cfg_len = std::min<size_t>(size - 2, size_t(data[0]) | size_t(data[1]) << 8);
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::string_view config = in.substr(2, cfg_len);
    const std::string_view tensors = in.substr(2 + cfg_len);

    const fs::path dir = scratch_dir() / "model";
    fs::create_directories(dir);
    const std::string config_path = (dir / "config.json").string();
    const std::string st_path = (dir / "model.safetensors").string();
    write_file(config_path, config);
    write_file(st_path, tensors);

    // The header alone: every tensor it lists lies inside the data section.
    try {
        kv::SafetensorsFile f(st_path);
        for (const auto& [name, t] : f.tensors()) {
            KVFUZZ_CHECK(t.begin <= t.end);
            const size_t es = kv::safetensors_dtype_size(t.dtype);
            KVFUZZ_CHECK(es > 0);
            uint64_t n = 1;
            for (int64_t d : t.shape) n *= uint64_t(d);
            KVFUZZ_CHECK(t.end - t.begin == n * es);
            // Read small float tensors through the widening path.
            if (n <= 4096 && (t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16")) {
                std::vector<float> out(n);
                f.read_f32(name, out.data(), int64_t(n));
            }
        }
    } catch (const kv::Error&) {
    }

    // config.json alone, then the weights shaped by it.
    try {
        kv::ModelConfig cfg = kv::read_config_json(config_path);
        KVFUZZ_CHECK(cfg.vocab_size > 0 && cfg.n_ctx > 0 && cfg.n_layer > 0 && cfg.n_embd % cfg.n_head == 0);
        kv::Weights w = kv::read_safetensors(st_path, cfg);
        kv::check_weights(cfg, w, "fuzz");
        KVFUZZ_CHECK(w.wte.allFinite() && w.wpe.allFinite());
    } catch (const kv::Error&) {
    }

    // The whole folder (no tokenizer file: the model loads without one).
    try {
        auto m = kv::load_model_folder(dir.string());
        KVFUZZ_CHECK(m != nullptr && !m->tokenizer);
    } catch (const kv::Error&) {
    }
    return 0;
}
