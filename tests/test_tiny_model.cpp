// Behaviour of the bundled model (assets/models/tiny-gpt), run through the product
// path: load_model_folder -> Session on the CPU engine, greedy decoding. The model
// was trained by scripts/train-tiny on assets/corpus.txt.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/engine/engine.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "core/session/session.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

// Every tensor's stored shape in a safetensors file, checking each is F32.
std::map<std::string, std::vector<int64_t>> f32_shapes(const std::string& file) {
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& [name, info] : kv::read_safetensors_header(file)) {
        CAPTURE(name);
        CHECK(info.dtype == "F32");
        got[name] = info.shape;
    }
    return got;
}

const std::string kDir = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";

const kv::Model& tiny() {
    static std::unique_ptr<kv::Model> m = kv::load_model_folder(kDir);
    return *m;
}

// Greedy continuation of `prompt`: the text of the first n new tokens.
std::vector<std::string> greedy(const std::string& prompt, int n, bool cache = true) {
    const kv::Model& m = tiny();
    kv::Session s(m, kv::make_cpu_engine(m));
    s.set_cache(cache);
    const kv::Encoding enc = s.set_prompt_text(prompt);
    REQUIRE(enc.unknown.empty());
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(m.tokenizer->token_text(s.step().next_id));
    return out;
}

std::string join(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
    return s;
}

}  // namespace

TEST_CASE("bundled tiny model: a small word-level GPT-2 folder") {
    const kv::Model& m = tiny();
    REQUIRE(m.tokenizer);
    CHECK(m.tokenizer->kind() == "word");
    CHECK(m.config.n_layer == 2);
    CHECK(m.config.n_head == 4);
    CHECK(m.config.n_embd == 64);
    CHECK(m.config.n_ctx >= 64);
    CHECK(m.config.tied_head);
    CHECK(m.tokenizer->vocab_size() == m.config.vocab_size);
    std::uintmax_t bytes = 0;
    for (const auto& e : fs::directory_iterator(kDir)) bytes += e.file_size();
    CAPTURE(bytes);
    CHECK(bytes < 2u * 1024 * 1024);
}

TEST_CASE("bundled tiny model: \"Python is a programming\" continues with \"language\"") {
    CHECK(greedy("Python is a programming", 1) == std::vector<std::string>{"language"});
}

TEST_CASE("bundled tiny model: \"Python\" continues with \"is a programming language\"") {
    CHECK(join(greedy("Python", 4)) == "is a programming language");
}

TEST_CASE("bundled tiny model: prompts from the corpus continue as the corpus does") {
    struct Case {
        const char* prompt;
        const char* continuation;
    };
    const Case cases[] = {
        {"The cat sat on the", "mat ."},
        {"A compiler turns source code", "into machine code ."},
        {"Rust is a", "systems programming language"},
        {"The keyboard is used to", "type"},
        {"An interpreter runs source code", "one line at a time ."},
        {"A byte is made of", "eight bits ."},
    };
    for (const auto& c : cases) {
        CAPTURE(c.prompt);
        const std::string expect = c.continuation;
        const int n = int(std::count(expect.begin(), expect.end(), ' ')) + 1;
        CHECK(join(greedy(c.prompt, n)) == expect);
    }
}

TEST_CASE("bundled tiny model: cached and uncached runs agree at every step") {
    const kv::Model& m = tiny();
    kv::Session cached(m, kv::make_cpu_engine(m)), uncached(m, kv::make_cpu_engine(m));
    cached.set_cache(true);
    uncached.set_cache(false);
    cached.set_prompt_text("Python is a programming");
    uncached.set_prompt_text("Python is a programming");
    for (int step = 0; step < 20; ++step) {
        CAPTURE(step);
        const kv::StepTrace& a = cached.step();
        const kv::StepTrace& b = uncached.step();
        REQUIRE(a.logits.size() == b.logits.size());
        float worst = 0;
        for (size_t i = 0; i < a.logits.size(); ++i) worst = std::max(worst, std::abs(a.logits[i] - b.logits[i]));
        CHECK(worst <= 1e-4f);
        CHECK(a.next_id == b.next_id);
    }
    CHECK(cached.tokens() == uncached.tokens());
}

// assets/models/tiny-gqa: the same trainer, corpus, steps and seed, with 4 query heads
// sharing 2 K/V heads (grouped-query): scripts/train-tiny --n-kv-head 2.
TEST_CASE("bundled tiny-gqa model: 2 kv heads for 4 query heads, says \"language\", half the cache") {
    static std::unique_ptr<kv::Model> gqa = kv::load_model_folder(KVSCOPE_SOURCE_DIR "/assets/models/tiny-gqa");
    const kv::Model& m = *gqa;
    REQUIRE(m.tokenizer);
    CHECK(m.config.n_head == 4);
    CHECK(m.config.n_kv_head == 2);
    CHECK(m.config.n_embd == tiny().config.n_embd);
    kv::Session s(m, kv::make_cpu_engine(m)), full(tiny(), kv::make_cpu_engine(tiny()));
    s.set_prompt_text("Python is a programming");
    full.set_prompt_text("Python is a programming");
    CHECK(m.tokenizer->token_text(s.step().next_id) == "language");
    full.step();
    // Its own counters: the cache holds half the bytes of tiny-gpt's at the same length.
    CHECK(s.totals().cache_bytes * 2 == full.totals().cache_bytes);
    CHECK(s.cache().bytes() == kv::cache_bytes_for(m.config, kv::KvDtype::f32, 4));
}

TEST_CASE("bundled tiny model: an int8 cache keeps the greedy tokens at under a third of the f32 bytes") {
    const kv::Model& m = tiny();
    kv::Session f32(m, kv::make_cpu_engine(m)), q8(m, kv::make_cpu_engine(m), {0, 0, kv::KvDtype::int8});
    f32.set_prompt_text("Python is a programming");
    q8.set_prompt_text("Python is a programming");
    for (int i = 0; i < 20; ++i) CHECK(f32.step().next_id == q8.step().next_id);
    // int8 is 1/4 of f32 plus one f32 scale per row and kv head: 1/4 + 1/head_dim.
    const double ratio = double(q8.cache().bytes()) / double(f32.cache().bytes());
    CHECK(ratio == doctest::Approx(0.25 + 1.0 / m.config.head_dim()));
}

// ---- assets/models/tiny-llama ------------------------------------------------------
// The same trainer, corpus, steps and seed with the Llama block (scripts/train-llama),
// written as a Hugging Face LlamaForCausalLM folder. Its words come out of the
// trainer's own forward in tests/test_train.cpp; here: the folder as others read it.

namespace {
const std::string kLlama = KVSCOPE_SOURCE_DIR "/assets/models/tiny-llama";
}

TEST_CASE("bundled tiny-llama: config.json is a LlamaForCausalLM of tiny-gpt's width and depth") {
    const kv::ModelConfig c = kv::read_config_json(kLlama + "/config.json");
    CHECK(c.is_llama());
    CHECK(c.vocab_size == tiny().config.vocab_size);
    CHECK(c.n_ctx == 64);
    CHECK(c.n_embd == 64);
    CHECK(c.n_layer == 2);
    CHECK(c.n_head == 4);
    CHECK(c.n_kv_head == 2);
    CHECK(c.head_dim() == 16);
    CHECK(c.n_ff == 176);
    CHECK(c.tied_head);
    CHECK_FALSE(c.qkv_bias);
    CHECK_FALSE(c.o_bias);
    CHECK(c.rope.type == kv::RopeConfig::Type::standard);
    CHECK(c.rope.theta == 10000.0);
    CHECK(c.layer_norm_epsilon == 1e-5f);
    const auto j = nlohmann::json::parse(std::ifstream(kLlama + "/config.json"));
    CHECK(j.at("architectures") == nlohmann::json::array({"LlamaForCausalLM"}));
    CHECK(j.at("model_type") == "llama");
    CHECK(j.at("hidden_act") == "silu");
    CHECK(j.at("torch_dtype") == "float32");
    CHECK(j.at("eos_token_id") == 1);  // <eos> in vocab.txt
    // The vocabulary is tiny-gpt's, word for word.
    std::ifstream a(kLlama + "/vocab.txt"), b(kDir + "/vocab.txt");
    CHECK(std::string(std::istreambuf_iterator<char>(a), {}) == std::string(std::istreambuf_iterator<char>(b), {}));
}

TEST_CASE("bundled tiny-llama: model.safetensors holds exactly LlamaForCausalLM's tensors, tied, F32") {
    // Names and [out, in] shapes as modeling_llama.py's state_dict has them; no
    // lm_head.weight (tie_word_embeddings: save_pretrained drops the tied copy).
    std::map<std::string, std::vector<int64_t>> want = {{"model.embed_tokens.weight", {1058, 64}},
                                                        {"model.norm.weight", {64}}};
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        want[p + "input_layernorm.weight"] = {64};
        want[p + "post_attention_layernorm.weight"] = {64};
        want[p + "self_attn.q_proj.weight"] = {64, 64};  // 4 heads x 16
        want[p + "self_attn.k_proj.weight"] = {32, 64};  // 2 kv heads x 16
        want[p + "self_attn.v_proj.weight"] = {32, 64};
        want[p + "self_attn.o_proj.weight"] = {64, 64};
        want[p + "mlp.gate_proj.weight"] = {176, 64};
        want[p + "mlp.up_proj.weight"] = {176, 64};
        want[p + "mlp.down_proj.weight"] = {64, 176};
    }
    CHECK(f32_shapes(kLlama + "/model.safetensors") == want);
}

TEST_CASE("bundled tiny-llama: kvscope-cli generate says \"language\" after \"Python is a programming\"") {
    const kvtest::Run r =
        kvtest::run_cli("generate --model '" + kLlama + "' --prompt 'Python is a programming' --new 1 --json");
    // The engine's forward and the trainer's were written apart: both say "language"
    // (the trainer's: tests/test_train.cpp).
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("steps").at(0).at("next_token") == "language");
}

// ---- assets/models/tiny-mla --------------------------------------------------------
// tiny-llama's trainer, corpus, steps and seed with DeepSeek's multi-head latent
// attention (scripts/train-mla), written as a Hugging Face DeepseekV3ForCausalLM folder
// with dense MLPs. The trainer's own forward on it: tests/test_train.cpp.

namespace {
const std::string kMla = KVSCOPE_SOURCE_DIR "/assets/models/tiny-mla";
}

TEST_CASE("bundled tiny-mla: config.json is a DeepseekV3ForCausalLM of tiny-llama's width and depth") {
    const kv::ModelConfig c = kv::read_config_json(kMla + "/config.json");
    CHECK(c.is_llama());
    CHECK(c.is_mla());
    CHECK(c.vocab_size == tiny().config.vocab_size);
    CHECK(c.n_ctx == 64);
    CHECK(c.n_embd == 64);
    CHECK(c.n_layer == 2);
    CHECK(c.n_head == 4);
    CHECK(c.n_kv_head == 1);  // one latent row per token
    CHECK(c.n_ff == 176);
    CHECK(c.mla.kv_lora_rank == 24);
    CHECK(c.mla.q_lora_rank == 0);
    CHECK(c.mla.qk_rope_head_dim == 8);
    CHECK(c.mla.qk_nope_head_dim == 16);
    CHECK(c.mla.v_head_dim == 16);
    CHECK(c.mla.rope_interleave);
    CHECK(c.tied_head);
    CHECK(c.rope.theta == 10000.0);
    CHECK(c.layer_norm_epsilon == 1e-5f);
    const auto j = nlohmann::json::parse(std::ifstream(kMla + "/config.json"));
    CHECK(j.at("architectures") == nlohmann::json::array({"DeepseekV3ForCausalLM"}));
    CHECK(j.at("model_type") == "deepseek_v3");
    CHECK(j.at("first_k_dense_replace") == 2);  // every MLP dense
    CHECK(j.at("q_lora_rank").is_null());
    CHECK(j.at("eos_token_id") == 1);
    std::ifstream a(kMla + "/vocab.txt"), b(kDir + "/vocab.txt");
    CHECK(std::string(std::istreambuf_iterator<char>(a), {}) == std::string(std::istreambuf_iterator<char>(b), {}));
}

TEST_CASE("bundled tiny-mla: model.safetensors holds exactly DeepseekV3ForCausalLM's tensors, tied, F32") {
    // Names and [out, in] shapes as modeling_deepseek_v3.py's state_dict has them with
    // q_lora_rank null (q_proj) and dense MLPs; no lm_head.weight (tied).
    std::map<std::string, std::vector<int64_t>> want = {{"model.embed_tokens.weight", {1058, 64}},
                                                        {"model.norm.weight", {64}}};
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        want[p + "input_layernorm.weight"] = {64};
        want[p + "post_attention_layernorm.weight"] = {64};
        want[p + "self_attn.q_proj.weight"] = {4 * (16 + 8), 64};          // H x (qk_nope + qk_rope)
        want[p + "self_attn.kv_a_proj_with_mqa.weight"] = {24 + 8, 64};    // kv_lora_rank + qk_rope
        want[p + "self_attn.kv_a_layernorm.weight"] = {24};
        want[p + "self_attn.kv_b_proj.weight"] = {4 * (16 + 16), 24};      // H x (qk_nope + v_head)
        want[p + "self_attn.o_proj.weight"] = {64, 4 * 16};                // H x v_head
        want[p + "mlp.gate_proj.weight"] = {176, 64};
        want[p + "mlp.up_proj.weight"] = {176, 64};
        want[p + "mlp.down_proj.weight"] = {64, 176};
    }
    CHECK(f32_shapes(kMla + "/model.safetensors") == want);
}

TEST_CASE("bundled tiny-mla: kvscope-cli generate says \"language\" after \"Python is a programming\"") {
    // The engine's MLA forward (its latent cache read by expanding it, the default) and
    // the trainer's were written apart: both say "language" (the trainer's:
    // tests/test_train.cpp). The next two words as tiny-gpt's (the README's table).
    const kvtest::Run r =
        kvtest::run_cli("generate --model '" + kMla + "' --prompt 'Python is a programming' --new 3 --json");
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("steps").at(0).at("next_token") == "language");
    CHECK(j.at("steps").at(1).at("next_token") == "used");
    CHECK(j.at("steps").at(2).at("next_token") == "for");
}

// The measure of an MLA cache: per token, (d_c + d_R) / (2 x Hkv x hd) of
// tiny-llama's at the same dtype, read from generate --json's counters.
TEST_CASE("bundled tiny-mla: generate --json's cache_bytes per token is (d_c + d_R) / (2 Hkv hd) of tiny-llama's") {
    auto bytes_per_token = [](const std::string& dir, const std::string& dtype) {
        const kvtest::Run r = kvtest::run_cli("generate --model '" + dir +
                                              "' --prompt 'Python is a programming' --new 4 --json --kv-dtype " + dtype);
        CAPTURE(r.err);
        REQUIRE(r.rc == 0);
        const auto j = nlohmann::json::parse(r.out);
        const auto& last = j.at("steps").back().at("counters");
        return last.at("cache_bytes").get<double>() / last.at("cache_rows").get<double>();
    };
    const kv::ModelConfig mla = kv::load_model_folder(kMla)->config, llama = kv::load_model_folder(kLlama)->config;
    const double want = double(mla.mla.kv_lora_rank + mla.mla.qk_rope_head_dim) /
                        (2.0 * llama.n_kv_head * llama.head_dim());
    CHECK(want == doctest::Approx(0.5));  // (24 + 8) / (2 x 2 x 16)
    for (const char* dtype : {"f32", "f16"}) {
        CAPTURE(dtype);
        CHECK(bytes_per_token(kMla, dtype) / bytes_per_token(kLlama, dtype) == doctest::Approx(want));
    }
}
