// Llama-family config.json (core/model/config.h: parse_llama_config, rope_inv_freq, the
// random shapes). Configs below are the published config.json of each model (trimmed of
// keys kvscope ignores). RoPE frequencies are checked against hand-derived numbers and
// against tests/reference/rope_numpy.py (transformers' formulas in NumPy float32).
#include <doctest/doctest.h>

#include "test_helpers.h"

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/model/model_io.h"

using kv::ModelConfig;
using kv::RopeConfig;
using kvtest::error_of;

namespace {

const char* kSmolLM2 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0,
  "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041666666666666664,
  "intermediate_size": 1536, "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": true, "vocab_size": 49152})";

const char* kQwen25 = R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

// Llama 3.1 8B in the transformers 4.x form.
const char* kLlama31 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
  "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
  "tie_word_embeddings": false, "vocab_size": 128256})";

const char* kMistral = R"({"architectures": ["MistralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false, "vocab_size": 32000})";

nlohmann::json j_of(const char* text) { return nlohmann::json::parse(text); }
ModelConfig parse(const nlohmann::json& j) { return kv::parse_llama_config(j.dump(), "config.json"); }

}  // namespace

TEST_CASE("SmolLM2-135M's config.json is the random:smollm2-135m shape") {
    const ModelConfig c = parse(j_of(kSmolLM2));
    CHECK(c == ModelConfig::smollm2_135m());
    CHECK(c.is_llama());
    CHECK(c.n_embd == 576);
    CHECK(c.n_layer == 30);
    CHECK(c.n_head == 9);
    CHECK(c.n_kv_head == 3);
    CHECK(c.n_ff == 1536);
    CHECK(c.vocab_size == 49152);
    CHECK(c.tied_head);
    CHECK(c.head_dim() == 64);
    CHECK(c.kv_dim() == 192);
    CHECK(c.rope.theta == 100000.0);
    CHECK(c.rope.type == RopeConfig::Type::standard);
    CHECK(c.layer_norm_epsilon == doctest::Approx(1e-5f));
    CHECK_FALSE(c.qkv_bias);
    CHECK(c.n_params() == 134515008);  // SmolLM2-135M's published parameter count
}

TEST_CASE("Qwen2.5-0.5B's config.json: q/k/v biases, no window, the random:qwen2.5-0.5b shape") {
    const ModelConfig c = parse(j_of(kQwen25));
    CHECK(c == ModelConfig::qwen25_05b());
    CHECK(c.qkv_bias);
    CHECK_FALSE(c.o_bias);
    CHECK(c.sliding_window == 0);  // use_sliding_window false
    CHECK(c.rope.theta == 1000000.0);
    CHECK(c.n_params() == 494032768);  // Qwen2.5-0.5B's published parameter count
    nlohmann::json j = j_of(kQwen25);
    j["use_sliding_window"] = true;
    CHECK(parse(j).sliding_window == 32768);
}

TEST_CASE("Llama 3.1's rope in the 4.x and 5.x forms reads the same") {
    const ModelConfig a = parse(j_of(kLlama31));
    CHECK(a.rope.type == RopeConfig::Type::llama3);
    CHECK(a.rope.theta == 500000.0);
    CHECK(a.rope.factor == 8.0);
    CHECK(a.rope.low_freq_factor == 1.0);
    CHECK(a.rope.high_freq_factor == 4.0);
    CHECK(a.rope.original_max_position_embeddings == 8192);
    CHECK(a.n_ctx == 131072);
    CHECK_FALSE(a.tied_head);
    CHECK(a.head_dim() == 128);
    nlohmann::json j = j_of(kLlama31);
    j["rope_parameters"] = j["rope_scaling"];
    j["rope_parameters"]["rope_theta"] = 500000.0;
    j.erase("rope_scaling");
    j.erase("rope_theta");
    CHECK(parse(j) == a);
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1234.0}};
    CHECK(parse(j).rope == RopeConfig{RopeConfig::Type::standard, 1234.0});
    j = j_of(kLlama31);
    j["rope_scaling"] = {{"type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};  // older files say "type"
    CHECK(parse(j).rope.factor == 32.0);
}

TEST_CASE("Mistral's sliding_window is recorded, head_dim and attention_bias are read") {
    CHECK(parse(j_of(kMistral)).sliding_window == 4096);
    nlohmann::json j = j_of(kMistral);
    j["sliding_window"] = nullptr;
    CHECK(parse(j).sliding_window == 0);
    j["head_dim"] = 64;  // narrower than hidden_size / heads = 128
    const ModelConfig c = parse(j);
    CHECK(c.head_dim() == 64);
    CHECK(c.q_dim() == 32 * 64);
    CHECK(c.kv_dim() == 8 * 64);
    j = j_of(kLlama31);
    j["attention_bias"] = true;
    CHECK(parse(j).qkv_bias);
    CHECK(parse(j).o_bias);
}

TEST_CASE("a Llama-family config.json kvscope cannot run is refused with one line naming the file") {
    const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> bad = {
        {[](auto& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }, "rope_type \"yarn\" is not supported"},
        {[](auto& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; }, "rope_type \"linear\""},
        {[](auto& j) { j["rope_parameters"] = {{"rope_type", "dynamic"}}; }, "rope_type \"dynamic\""},
        {[](auto& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; }, "missing key \"low_freq_factor\""},
        {[](auto& j) { j["hidden_act"] = "gelu"; }, "hidden_act \"gelu\""},
        {[](auto& j) { j["mlp_bias"] = true; }, "mlp_bias"},
        {[](auto& j) { j["partial_rotary_factor"] = 0.5; }, "partial_rotary_factor"},
        {[](auto& j) { j["architectures"] = {"LlamaForSequenceClassification"}; }, "architectures"},
        {[](auto& j) { j.erase("hidden_size"); }, "missing key \"hidden_size\""},
        {[](auto& j) { j["num_key_value_heads"] = 5; }, "n_kv_head 5 must divide n_head 32"},
        {[](auto& j) { j["intermediate_size"] = "big"; }, "\"intermediate_size\" must be a non-negative integer"},
        {[](auto& j) { j["rope_theta"] = "x"; }, "\"rope_theta\" must be a number"},
        {[](auto& j) { j["tie_word_embeddings"] = 1; }, "\"tie_word_embeddings\" must be true or false"},
    };
    for (const auto& [change, says] : bad) {
        CAPTURE(says);
        nlohmann::json j = j_of(kLlama31);
        change(j);
        const std::string e = error_of([&] { parse(j); });
        CHECK(e.starts_with("config.json"));
        CHECK(e.find(says) != std::string::npos);
        CHECK(e.find('\n') == std::string::npos);
    }
}

TEST_CASE("read_config_json reads Llama-family folders and keeps GPT-2 configs as they were") {
    kvtest::TempDir d("kvscope_llama_cfg");
    CHECK(kv::read_config_json(d.file("qwen.json", kQwen25)) == ModelConfig::qwen25_05b());
    const ModelConfig g = kv::read_config_json(d.file("gpt2.json", R"({"model_type": "gpt2", "vocab_size": 50257,
        "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12})"));
    CHECK(g == ModelConfig::gpt2_124m());
    CHECK(g.family == kv::ModelFamily::gpt2);
    CHECK(g.n_ff == 0);
    CHECK(g.qkv_dim() == 3 * 768);
    const std::string e = error_of([&] { kv::read_config_json(d.file("bert.json", R"({"model_type": "bert"})")); });
    CHECK(e.find("model_type \"bert\" is not supported") != std::string::npos);
}

TEST_CASE("random Llama shapes are known and random:llama-tiny loads") {
    for (const std::string shape : {"llama-tiny", "smollm2-135m", "qwen2.5-0.5b"})
        CHECK(kv::load_model_text("random:" + shape).name == "random:" + shape + ":0");
    CHECK(error_of([] { kv::load_model("random:llama-huge"); }).find("random:smollm2-135m") != std::string::npos);
    ModelConfig::llama_tiny().validate("llama-tiny");
    CHECK(ModelConfig::llama_tiny().n_kv_head == 2);
    const auto m = kv::load_model("random:llama-tiny:3");
    CHECK(m->config == ModelConfig::llama_tiny());
    CHECK(m->weights.wpe.size() == 0);  // positions enter through RoPE, not an embedding
}

TEST_CASE("rope_inv_freq on hand-derived numbers") {
    // head_dim 6, theta 1e4: 1, 1e4^(-1/3), 1e4^(-2/3); wavelengths 6.28, 135.4, 2916.4.
    const auto plain = kv::rope_inv_freq(6, RopeConfig{});
    REQUIRE(plain.size() == 3);
    CHECK(plain[0] == 1.0f);
    CHECK(plain[1] == doctest::Approx(0.046415888336127795).epsilon(1e-7));
    CHECK(plain[2] == doctest::Approx(0.0021544346900318843).epsilon(1e-7));
    RopeConfig r{RopeConfig::Type::llama3, 10000.0, 8.0, 1.0, 4.0, 8192};
    // 2916.4 lies between 8192/4 and 8192/1: smooth = (8192/2916.4 - 1) / 3 = 0.60298.
    const auto mid = kv::rope_inv_freq(6, r);
    CHECK(mid[0] == 1.0f);
    CHECK(mid[1] == plain[1]);
    CHECK(mid[2] == doctest::Approx(0.0014060040817306292).epsilon(1e-6));
    r.original_max_position_embeddings = 1000;  // now 2916.4 > 1000: divided by factor
    CHECK(kv::rope_inv_freq(6, r)[2] == doctest::Approx(0.0021544346900318843 / 8).epsilon(1e-6));
}

TEST_CASE("rope_inv_freq equals transformers' formulas written in NumPy") {
    std::string why;
    const std::string py = kvtest::numpy_python(&why);
    KVTEST_SKIP_UNLESS(!py.empty(), why);
    struct Case {
        int head_dim;
        RopeConfig rope;
    };
    const std::vector<Case> cases = {
        {64, RopeConfig{RopeConfig::Type::standard, 100000.0}},                     // SmolLM2
        {64, RopeConfig{RopeConfig::Type::standard, 1000000.0}},                    // Qwen2.5
        {128, RopeConfig{RopeConfig::Type::llama3, 500000.0, 8.0, 1.0, 4.0, 8192}},  // Llama 3.1
        {64, RopeConfig{RopeConfig::Type::llama3, 500000.0, 32.0, 1.0, 4.0, 8192}},  // Llama 3.2
        {16, RopeConfig{RopeConfig::Type::llama3, 10000.0, 4.0, 2.0, 8.0, 256}},
    };
    for (const Case& c : cases) {
        std::string args = std::to_string(c.head_dim) + " " + std::to_string(c.rope.theta);
        if (c.rope.type == RopeConfig::Type::llama3)
            args += " " + std::to_string(c.rope.factor) + " " + std::to_string(c.rope.low_freq_factor) + " " +
                    std::to_string(c.rope.high_freq_factor) + " " + std::to_string(c.rope.original_max_position_embeddings);
        CAPTURE(args);
        const kvtest::Run r =
            kvtest::run_shell(py + " '" + std::string(KVSCOPE_SOURCE_DIR) + "/tests/reference/rope_numpy.py' " + args);
        REQUIRE(r.rc == 0);
        const auto want = nlohmann::json::parse(r.out).get<std::vector<double>>();
        const auto got = kv::rope_inv_freq(c.head_dim, c.rope);
        REQUIRE(got.size() == want.size());
        double worst = 0;  // relative error; float32 rounding in NumPy vs double here
        int worst_i = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            const double e = std::abs(got[i] - want[i]) / std::abs(want[i]);
            if (e > worst) worst = e, worst_i = int(i);
        }
        CAPTURE(worst_i);
        CHECK(worst < 2e-6);
    }
}

namespace {

// DeepSeek-V3's published config.json (deepseek-ai/DeepSeek-V3, trimmed of keys kvscope
// ignores): a mixture of experts from layer 3 on, and yarn RoPE.
const char* kDeepseekV3 = R"({"architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false,
  "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168, "intermediate_size": 18432,
  "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1, "num_attention_heads": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128, "q_lora_rank": 1536,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06, "rope_scaling": {"beta_fast": 32,
  "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
  "type": "yarn"}, "rope_theta": 10000, "tie_word_embeddings": false, "v_head_dim": 128, "vocab_size": 129280})";

}  // namespace

TEST_CASE("DeepSeek-V3's config.json: yarn and experts refused in one line, its dense form read as MLA") {
    nlohmann::json j = j_of(kDeepseekV3);
    std::string e = error_of([&] { parse(j); });
    CHECK(e.find("rope_type \"yarn\" is not supported") != std::string::npos);
    j["rope_scaling"] = nullptr;
    e = error_of([&] { parse(j); });
    CHECK(e.starts_with("config.json"));
    CHECK(e.find("mixture of experts") != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
    j["first_k_dense_replace"] = 61;  // every layer dense
    const ModelConfig c = parse(j);
    CHECK(c.is_llama());
    REQUIRE(c.is_mla());
    CHECK(c.n_kv_head == 1);  // one latent row, whatever num_key_value_heads says
    CHECK(c.mla.kv_lora_rank == 512);
    CHECK(c.mla.q_lora_rank == 1536);
    CHECK(c.mla.qk_rope_head_dim == 64);
    CHECK(c.mla.qk_nope_head_dim == 128);
    CHECK(c.mla.v_head_dim == 128);
    CHECK(c.mla.rope_interleave);
    CHECK(c.head_dim() == 192);
    CHECK(c.cache_row_values() == 576);  // d_c + d_R per layer and token
    CHECK(kv::cache_bytes_for(c, kv::KvDtype::f16, 1) == 61 * 576 * 2);
    CHECK(!c.tied_head);
    // q_lora_rank null: queries through q_proj; rope_interleave false is kept.
    j["q_lora_rank"] = nullptr;
    j["rope_interleave"] = false;
    const ModelConfig d = parse(j);
    CHECK(d.mla.q_lora_rank == 0);
    CHECK(!d.mla.rope_interleave);
    CHECK(d.qkv_dim() == 128 * 192 + 512 + 64);
    const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> bad = {
        {[](auto& j) { j["attention_bias"] = true; }, "attention_bias true is not supported for MLA"},
        {[](auto& j) { j.erase("kv_lora_rank"); }, "missing key \"kv_lora_rank\""},
        {[](auto& j) { j["qk_rope_head_dim"] = 63; }, "must be even"},
        {[](auto& j) { j["v_head_dim"] = 0; }, "v_head_dim must be in 1 .. 65536"},
        {[](auto& j) { j["hidden_act"] = "gelu"; }, "hidden_act \"gelu\""},
    };
    for (const auto& [change, says] : bad) {
        CAPTURE(says);
        nlohmann::json k = j;
        change(k);
        const std::string err = error_of([&] { parse(k); });
        CHECK(err.starts_with("config.json"));
        CHECK(err.find(says) != std::string::npos);
    }
}

TEST_CASE("an MLA config.json written by kvscope reads back the same, as transformers' DeepseekV3 names it") {
    for (ModelConfig c : {ModelConfig::mla_tiny(), ModelConfig::mla_tiny_q()}) {
        CAPTURE(c.mla.q_lora_rank);
        const auto j = nlohmann::json::parse(kv::llama_config_json("config.json", c));
        CHECK(j["model_type"] == "deepseek_v3");
        CHECK(j["architectures"][0] == "DeepseekV3ForCausalLM");
        CHECK(j["num_key_value_heads"] == c.n_head);  // DeepseekV3 repeats kv heads H / num_key_value_heads times
        CHECK(j["first_k_dense_replace"] == c.n_layer);
        CHECK(kv::parse_llama_config(j.dump(), "config.json") == c);
    }
}
