// The engine against independent NumPy forwards (tests/reference/gpt2_numpy.py,
// llama_numpy.py and mla_numpy.py) on random small folders in Hugging Face layout
// (GPT-2; Llama, Qwen2 with biases and an untied head, Llama 3 rope scaling; DeepseekV3
// MLA): every position, atol 1e-4.
// Skipped where python3 has no NumPy, failed under CI (scripts/deps.sh installs it).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

// The Python with NumPy (test_helpers.h); the tests skip, or fail under CI, without it.
std::string python() {
    std::string why;
    static const std::string py = kvtest::numpy_python(&why);
    return py;
}

std::string run(const std::string& cmd) {
    const kvtest::Run r = kvtest::run_shell(cmd);
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    return r.out;
}

// Engine logits for every position of ids against the reference's, computed twice:
// one prefill pass (many-row products) and token by token through the cache (the
// decode products); the reference rounds its weights like `weights` (f32: not).
struct RefDiff {
    double worst = 0, largest = 0;
    int pos = -1, j = -1;
};

RefDiff against_numpy(const kv::Model& m, const std::string& dir, const std::vector<int>& ids,
                      kv::WeightType weights = kv::WeightType::f32, const kv::CachePolicy& pol = {},
                      const std::string& ref_args = "") {
    const std::string script = m.config.is_mla() ? "mla_numpy.py" : m.config.is_llama() ? "llama_numpy.py" : "gpt2_numpy.py";
    auto engine = kv::make_cpu_engine(m);
    kv::ForwardRequest req;
    req.ids = ids;
    req.all_logits = true;
    req.trace_opts.record = false;
    kv::StepTrace tr;
    std::vector<float> mine;
    engine->forward(req, *engine->make_cache(pol), tr, &mine);
    auto stepper = kv::make_cpu_engine(m);
    std::vector<float> decoded;
    auto step_cache = stepper->make_cache(pol);
    for (size_t i = 0; i < ids.size(); ++i) {
        req = {};
        req.ids = std::span<const int>(ids.data() + i, 1);
        req.start_pos = int(i);
        req.trace_opts.record = false;
        stepper->forward(req, *step_cache, tr);
        decoded.insert(decoded.end(), tr.logits.begin(), tr.logits.end());
    }
    std::string id_list;
    for (int id : ids) id_list += (id_list.empty() ? "" : ",") + std::to_string(id);
    const std::string round =
        weights == kv::WeightType::f32 ? "" : std::string(" --round ") + kv::weight_type_name(weights);
    const auto ref = nlohmann::json::parse(run(python() + " '" KVSCOPE_SOURCE_DIR "/tests/reference/" + script +
                                               "' '" + dir + "' " + id_list + round + ref_args))["logits"];
    const int V = m.config.vocab_size;
    REQUIRE(ref.size() == ids.size());
    RefDiff d;
    for (size_t pos = 0; pos < ids.size(); ++pos) {
        REQUIRE(ref[pos].size() == size_t(V));
        for (int j = 0; j < V; ++j) {
            const double r = ref[pos][j].get<double>();
            d.largest = std::max(d.largest, std::abs(r));
            const double e = std::max(std::abs(r - mine[pos * V + j]), std::abs(r - decoded[pos * V + j]));
            if (e > d.worst) d = {e, d.largest, int(pos), j};
        }
    }
    return d;
}

}  // namespace

TEST_CASE("engine logits match an independent NumPy GPT-2 at every position") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    struct Shape { int V, T, C, L, H, Hkv; bool tied; };
    const Shape shapes[] = {{53, 16, 32, 2, 4, 4, true}, {71, 24, 48, 3, 3, 3, false}, {40, 12, 32, 2, 4, 2, true}};
    const fs::path root = fs::temp_directory_path() / ("kvscope_ref_" + std::to_string(::getpid()));
    int k = 0;
    for (const auto& sh : shapes) {
        CAPTURE(k);
        auto m = kvtest::random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, 100 + k, sh.tied);
        // Larger-than-init values make the comparison meaningful (attention not uniform).
        for (auto& l : m->weights.layers) l.attn_w *= 8.0f;
        m->weights.wte *= 25.0f;
        if (!sh.tied) m->weights.lm_head *= 25.0f;
        const fs::path dir = root / std::to_string(k++);
        fs::create_directories(dir);
        kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
        auto loaded = kv::load_model_folder(dir.string());
        const auto ids = kvtest::seq_ids(sh.T, sh.V, k);

        const RefDiff d = against_numpy(*loaded, dir.string(), ids);
        CAPTURE(d.pos);
        CAPTURE(d.j);
        MESSAGE("shape " << k << ": worst |engine - numpy| = " << d.worst << " at position " << d.pos
                          << " (largest |logit| " << d.largest << "), whole sequence and token by token");
        CHECK(d.largest > 1.0);  // logits large enough for the comparison to mean something
        CHECK(d.worst <= 1e-4);
    }
    fs::remove_all(root);
}

// With f16/bf16 weights the engine holds rounded matrices and accumulates in f32;
// the reference rounds the same matrices the same way (round to nearest even) and
// runs in float64. Both then compute the same function, so the only difference is
// the engine's f32 arithmetic, as in the f32 test: the same 1e-4 bound on logits of
// magnitude > 1 (observed worst differences are ~1e-6). The test also shows it can
// fail: the rounded weights move the logits by far more than 1e-4 against the
// unrounded reference.
TEST_CASE("f16/bf16 weights: engine logits match NumPy with the weights rounded the same way") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    const fs::path root = fs::temp_directory_path() / ("kvscope_ref16_" + std::to_string(::getpid()));
    struct Case { std::string dir; std::vector<int> ids; };
    std::vector<Case> cases;
    int k = 0;
    for (bool tied : {true, false}) {
        auto m = kvtest::random_model(61, 16, 48, 2, 4, 4, 300 + k, tied);
        for (auto& l : m->weights.layers) l.attn_w *= 8.0f;
        m->weights.wte *= 25.0f;
        if (!tied) m->weights.lm_head *= 25.0f;
        const fs::path dir = root / std::to_string(k++);
        fs::create_directories(dir);
        kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
        cases.push_back({dir.string(), kvtest::seq_ids(16, 61, k)});
    }
    const std::string bundled = kv::default_model_dir();
    REQUIRE_MESSAGE(!bundled.empty(), "the bundled model (assets/models/tiny-gpt) was not found");
    cases.push_back({bundled, {1, 5, 9, 3, 7, 2, 8}});
    for (const auto& c : cases)
        for (auto t : {kv::WeightType::f16, kv::WeightType::bf16}) {
            CAPTURE(c.dir);
            const std::string tname = kv::weight_type_name(t);
            CAPTURE(tname);
            auto m = kv::load_model_folder(c.dir, t);
            REQUIRE(m->weights.type == t);
            const RefDiff same = against_numpy(*m, c.dir, c.ids, t);
            const RefDiff unrounded = against_numpy(*m, c.dir, c.ids);
            MESSAGE(c.dir << " " << tname << ": worst |engine - numpy(rounded)| = " << same.worst
                          << " at position " << same.pos << "; against unrounded weights " << unrounded.worst
                          << " (largest |logit| " << same.largest << ")");
            CHECK(same.largest > 1.0);
            CHECK(same.worst <= 1e-4);
            CHECK(unrounded.worst > 1e-3);  // the rounding is real and visible
        }
    fs::remove_all(root);
}

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
}

// A random Llama-family model of cfg's shape with values large enough that attention
// is not uniform and the logits exceed 1, written to dir in Hugging Face layout.
std::unique_ptr<kv::Model> llama_folder(kv::ModelConfig cfg, uint64_t seed, const fs::path& dir) {
    auto m = kv::make_random_model(cfg, seed, "llama test");
    for (auto& l : m->weights.layers) {
        l.attn_w *= 8.0f;
        l.attn_b *= 10.0f;  // q/k/v biases (zero without them)
        for (int i = 0; i < l.ln_1_w.size(); ++i) {  // norm weights apart from 1, each its own
            l.ln_1_w[i] += 0.3f * std::sin(float(i));
            l.ln_2_w[i] += 0.3f * std::cos(float(i));
            m->weights.ln_f_w[i] = 1.0f + 0.2f * std::sin(0.5f * float(i));
        }
    }
    m->weights.wte *= 25.0f;
    if (!cfg.tied_head) m->weights.lm_head *= 25.0f;
    fs::create_directories(dir);
    kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
    return m;
}

}  // namespace

TEST_CASE("Llama-family logits match an independent NumPy forward at every position") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    const fs::path root = fs::temp_directory_path() / ("kvscope_llama_ref_" + std::to_string(::getpid()));
    kv::ModelConfig qwen2 = kv::ModelConfig::llama_tiny();  // Qwen2 layout: q/k/v biases, untied head
    qwen2.qkv_bias = true;
    qwen2.tied_head = false;
    qwen2.rope.theta = 1000000.0;
    qwen2.layer_norm_epsilon = 1e-6f;
    kv::ModelConfig llama3 = kv::ModelConfig::llama_tiny();  // Llama 3 rope scaling, head_dim != C / H
    llama3.explicit_head_dim = 24;
    llama3.n_layer = 3;
    llama3.rope.type = kv::RopeConfig::Type::llama3;
    llama3.rope.theta = 500000.0;
    llama3.rope.factor = 8.0;
    llama3.rope.low_freq_factor = 1.0;
    llama3.rope.high_freq_factor = 4.0;
    llama3.rope.original_max_position_embeddings = 16;
    struct Case {
        const char* what;
        kv::ModelConfig cfg;
        bool rope_parameters;  // rewrite config.json in the transformers 5.x form
    };
    const Case cases[] = {{"random:llama-tiny", kv::ModelConfig::llama_tiny(), false},
                          {"qwen2 (biases, untied)", qwen2, false},
                          {"llama3 rope_parameters", llama3, true}};
    int k = 0;
    for (const Case& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const fs::path dir = root / std::to_string(k++);
        auto m = llama_folder(c.cfg, 500 + k, dir);
        if (c.rope_parameters) {  // 5.x: rope_theta and the scaling inside rope_parameters
            const std::string cfg_path = (dir / "config.json").string();
            auto j = nlohmann::json::parse(read_text(cfg_path));
            auto rp = j["rope_scaling"];
            rp["rope_theta"] = j["rope_theta"];
            j.erase("rope_scaling");
            j.erase("rope_theta");
            j["rope_parameters"] = rp;
            write_text(cfg_path, j.dump(2));
        }
        auto loaded = kv::load_model_folder(dir.string());
        REQUIRE(loaded->config == m->config);
        const auto ids = kvtest::seq_ids(40, c.cfg.vocab_size, k);
        // The model as made (before writing) and as read back: both against the file.
        for (const kv::Model* mm : {m.get(), loaded.get()}) {
            const RefDiff d = against_numpy(*mm, dir.string(), ids);
            CAPTURE(d.pos);
            CAPTURE(d.j);
            MESSAGE(what << ": worst |engine - numpy| = " << d.worst << " at position " << d.pos
                           << " (largest |logit| " << d.largest << "), whole sequence and token by token");
            CHECK(d.largest > 1.0);
            CHECK(d.worst <= 1e-4);
        }
        // 16-bit weights against the reference rounded the same way.
        for (auto t : {kv::WeightType::f16, kv::WeightType::bf16}) {
            auto m16 = kv::load_model_folder(dir.string(), t);
            const RefDiff d = against_numpy(*m16, dir.string(), ids, t);
            CAPTURE(kv::weight_type_name(t));
            CHECK(d.worst <= 1e-4);
            CHECK(against_numpy(*m16, dir.string(), ids).worst > 1e-3);  // the rounding is visible
        }
    }
    fs::remove_all(root);
}

// A folder stored in BF16 (as SmolLM2 and Qwen2.5 ship) loads held in bf16, and the
// reference reading the same file agrees.
TEST_CASE("a Llama folder stored in bf16 loads as stored and matches NumPy") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    const fs::path dir = fs::temp_directory_path() / ("kvscope_llama_bf16_" + std::to_string(::getpid()));
    auto m = llama_folder(kv::ModelConfig::llama_tiny(), 77, dir);
    kv::set_weight_type(m->weights, m->config, kv::WeightType::bf16);
    kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
    auto loaded = kv::load_model_folder(dir.string());
    CHECK(loaded->weights.type == kv::WeightType::bf16);
    const RefDiff d = against_numpy(*loaded, dir.string(), kvtest::seq_ids(30, 96, 3));
    CHECK(d.largest > 1.0);
    CHECK(d.worst <= 1e-4);
    fs::remove_all(dir);
}

// MLA (DeepseekV3 folders): the engine reading its latent cache both ways (expand,
// absorbed) against mla_numpy.py, itself run both ways; with a query latent, without
// rope_interleave, with an untied head, and with 16-bit weights rounded alike.
TEST_CASE("MLA logits match an independent NumPy forward at every position, expanded and absorbed") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    const fs::path root = fs::temp_directory_path() / ("kvscope_mla_ref_" + std::to_string(::getpid()));
    kv::ModelConfig plain = kv::ModelConfig::mla_tiny();
    plain.mla.rope_interleave = false;
    plain.tied_head = false;
    kv::ModelConfig wide = kv::ModelConfig::mla_tiny_q();
    wide.n_layer = 3;
    wide.mla.v_head_dim = 12;  // d_v != d_n
    const std::pair<const char*, kv::ModelConfig> cases[] = {
        {"random:mla-tiny", kv::ModelConfig::mla_tiny()}, {"q latent, 3 layers, d_v 12", wide},
        {"no rope_interleave, untied", plain}};
    int k = 0;
    for (const auto& [what_c, cfg] : cases) {
        const std::string what = what_c;
        CAPTURE(what);
        const fs::path dir = root / std::to_string(k++);
        auto m = llama_folder(cfg, 700 + k, dir);
        for (auto& l : m->weights.layers) l.kv_b_w *= 4.0f;
        kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
        auto loaded = kv::load_model_folder(dir.string());
        REQUIRE(loaded->config == m->config);
        const auto ids = kvtest::seq_ids(40, cfg.vocab_size, k);
        for (auto mode : {kv::MlaRead::expand, kv::MlaRead::absorbed})
            for (const char* ref : {"", " --absorbed"}) {
                kv::CachePolicy pol;
                pol.mla = mode;
                const RefDiff d = against_numpy(*loaded, dir.string(), ids, kv::WeightType::f32, pol, ref);
                const std::string how = std::string("engine ") + kv::mla_read_name(mode) + " vs numpy" + ref;
                CAPTURE(how);
                MESSAGE(what << " " << how << ": worst " << d.worst
                             << " at position " << d.pos << " (largest |logit| " << d.largest << ")");
                CHECK(d.largest > 1.0);
                CHECK(d.worst <= 1e-4);
            }
        for (auto t : {kv::WeightType::f16, kv::WeightType::bf16}) {
            auto m16 = kv::load_model_folder(dir.string(), t);
            kv::CachePolicy pol;
            pol.mla = kv::MlaRead::absorbed;
            const std::string tname = kv::weight_type_name(t);
            CAPTURE(tname);
            CHECK(against_numpy(*m16, dir.string(), ids, t, pol).worst <= 1e-4);
            CHECK(against_numpy(*m16, dir.string(), ids).worst > 1e-3);  // the rounding is visible
        }
    }
    fs::remove_all(root);
}

// A DeepseekV3 folder written by tests/reference/deepseek_folder.py (NumPy, laid out as
// a Hugging Face checkpoint, not by kvscope's writer) loads as written and matches.
TEST_CASE("a DeepseekV3 folder written outside kvscope loads and matches NumPy at every position") {
    std::string why;
    KVTEST_SKIP_UNLESS(!kvtest::numpy_python(&why).empty(), why);
    const fs::path root = fs::temp_directory_path() / ("kvscope_dsv3_" + std::to_string(::getpid()));
    for (int q_lora : {0, 12}) {
        CAPTURE(q_lora);
        const std::string dir = (root / std::to_string(q_lora)).string();
        run(python() + " '" KVSCOPE_SOURCE_DIR "/tests/reference/deepseek_folder.py' '" + dir + "' --q-lora-rank " +
            std::to_string(q_lora) + " --seed 5");
        auto m = kv::load_model_folder(dir);
        REQUIRE(m->config.is_mla());
        CHECK(m->config.mla.q_lora_rank == q_lora);
        CHECK(!m->config.tied_head);
        const auto ids = kvtest::seq_ids(30, m->config.vocab_size, 2);
        for (auto mode : {kv::MlaRead::expand, kv::MlaRead::absorbed}) {
            kv::CachePolicy pol;
            pol.mla = mode;
            const RefDiff d = against_numpy(*m, dir, ids, kv::WeightType::f32, pol);
            MESSAGE("deepseek_folder.py q_lora " << q_lora << ", " << std::string(kv::mla_read_name(mode)) << ": worst " << d.worst
                                                 << " (largest |logit| " << d.largest << ")");
            CHECK(d.largest > 1.0);
            CHECK(d.worst <= 1e-4);
        }
    }
    fs::remove_all(root);
}
