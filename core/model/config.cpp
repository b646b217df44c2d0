#include "core/model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/llama_math.h"

namespace kv {

int64_t ModelConfig::n_params_nonembedding() const {
    const int64_t C = n_embd, Q = qkv_dim();
    if (is_llama()) {
        const int64_t F = n_ff, Dq = q_dim();
        int64_t attn = C * Q + (qkv_bias ? Q : 0) + Dq * C + (o_bias ? C : 0);  // q, k, v, o_proj
        if (is_mla()) {
            const int64_t dc = mla.kv_lora_rank, dq = mla.q_lora_rank;
            attn = C * Q                                              // [q_proj or q_a_proj | kv_a_proj_with_mqa]
                   + (dq > 0 ? dq + dq * Dq : 0)                      // q_a_layernorm, q_b_proj
                   + dc + dc * n_head * (mla.qk_nope_head_dim + mla.v_head_dim)  // kv_a_layernorm, kv_b_proj
                   + int64_t(o_dim()) * C;                            // o_proj
        }
        const int64_t per_layer = 2 * C                         // input_layernorm, post_attention_layernorm
                                  + attn + 3 * C * F;           // attention; gate, up, down
        return per_layer * n_layer + C;                         // + model.norm
    }
    const int64_t per_layer = 2 * C                 // ln_1
                              + C * Q + Q           // c_attn
                              + C * C + C           // attn c_proj
                              + 2 * C               // ln_2
                              + C * 4 * C + 4 * C   // c_fc
                              + 4 * C * C + C;      // mlp c_proj
    return per_layer * n_layer + 2 * C;             // + ln_f
}

int64_t ModelConfig::n_params() const {
    const int64_t emb = int64_t(vocab_size) * n_embd + (is_llama() ? 0 : int64_t(n_ctx) * n_embd);
    const int64_t head = tied_head ? 0 : int64_t(vocab_size) * n_embd;
    return emb + head + n_params_nonembedding();
}

void ModelConfig::validate(const std::string& where) const {
    auto fail = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (vocab_size <= 0) fail("vocab_size must be positive (got " + std::to_string(vocab_size) + ")");
    if (n_ctx <= 0) fail("n_positions must be positive (got " + std::to_string(n_ctx) + ")");
    if (n_embd <= 0) fail("n_embd must be positive (got " + std::to_string(n_embd) + ")");
    if (n_layer <= 0) fail("n_layer must be positive (got " + std::to_string(n_layer) + ")");
    if (n_head <= 0) fail("n_head must be positive (got " + std::to_string(n_head) + ")");
    if (explicit_head_dim == 0 && n_embd % n_head != 0)
        fail("n_embd " + std::to_string(n_embd) + " is not a multiple of n_head " + std::to_string(n_head));
    if (explicit_head_dim < 0 || explicit_head_dim > 65536)
        fail("head_dim " + std::to_string(explicit_head_dim) + " must be in 1 .. 65536");
    if (n_kv_head <= 0 || n_kv_head > n_head || n_head % n_kv_head != 0)
        fail("n_kv_head " + std::to_string(n_kv_head) + " must divide n_head " + std::to_string(n_head));
    // Bounds that keep every size in int range and the app responsive.
    if (vocab_size > 1'000'000) fail("vocab_size " + std::to_string(vocab_size) + " is too large");
    if (n_ctx > 1'000'000) fail("n_positions " + std::to_string(n_ctx) + " is too large");
    if (n_embd > 65536) fail("n_embd " + std::to_string(n_embd) + " is too large");
    if (n_layer > 1000) fail("n_layer " + std::to_string(n_layer) + " is too large");
    // The CUDA attention kernel puts heads on gridDim.y, whose limit is 65535.
    if (n_head > 65535) fail("n_head " + std::to_string(n_head) + " is too large (at most 65535)");
    if (!(layer_norm_epsilon > 0.f && layer_norm_epsilon < 1.f))
        fail("layer_norm_epsilon must be in (0, 1)");
    if (is_llama()) validate_llama(where);
    if (is_mla()) validate_mla(where);
}

void ModelConfig::validate_mla(const std::string& where) const {
    auto fail = [&](const std::string& what) { throw Error(where + ": " + what); };
    auto in_range = [&](const char* key, int v, int lo, int hi = 65536) {
        if (v < lo || v > hi)
            fail(std::string(key) + " must be in " + std::to_string(lo) + " .. " + std::to_string(hi) + " (got " +
                 std::to_string(v) + ")");
    };
    if (!is_llama()) fail("MLA needs the Llama family's blocks (RMSNorm, SwiGLU)");
    in_range("kv_lora_rank", mla.kv_lora_rank, 1);
    in_range("q_lora_rank", mla.q_lora_rank, 0);
    in_range("qk_rope_head_dim", mla.qk_rope_head_dim, 2, kMaxRopeDim);  // deinterleave's buffer
    in_range("qk_nope_head_dim", mla.qk_nope_head_dim, 1);
    in_range("v_head_dim", mla.v_head_dim, 1);
    if (mla.qk_rope_head_dim % 2 != 0) fail("qk_rope_head_dim " + std::to_string(mla.qk_rope_head_dim) + " must be even for RoPE");
    if (n_kv_head != 1) fail("an MLA model caches one latent row per token (n_kv_head 1)");
}

void ModelConfig::validate_llama(const std::string& where) const {
    auto fail = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (n_ff <= 0 || n_ff > 1'000'000) fail("intermediate_size must be in 1 .. 1000000 (got " + std::to_string(n_ff) + ")");
    if (rope_dim() % 2 != 0) fail("head_dim " + std::to_string(rope_dim()) + " must be even for RoPE");
    if (!(rope.theta > 1.0 && std::isfinite(rope.theta))) fail("rope_theta must be a finite number above 1");
    if (sliding_window < 0) fail("sliding_window must not be negative");
    if (rope.type == RopeConfig::Type::llama3) {
        if (!(rope.factor >= 1.0 && std::isfinite(rope.factor))) fail("rope factor must be at least 1");
        if (!(rope.low_freq_factor > 0.0 && rope.high_freq_factor > rope.low_freq_factor &&
              std::isfinite(rope.high_freq_factor)))
            fail("llama3 rope needs 0 < low_freq_factor < high_freq_factor");
        if (rope.original_max_position_embeddings <= 0) fail("llama3 rope needs original_max_position_embeddings > 0");
    }
}

ModelConfig ModelConfig::tiny() {
    ModelConfig c;
    c.vocab_size = 96;
    c.n_ctx = 64;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 4;
    return c;
}

ModelConfig ModelConfig::gpt2_124m() {
    ModelConfig c;
    c.vocab_size = 50257;
    c.n_ctx = 1024;
    c.n_embd = 768;
    c.n_layer = 12;
    c.n_head = 12;
    c.n_kv_head = 12;
    return c;
}

ModelConfig ModelConfig::gpt2_355m() {
    ModelConfig c = gpt2_124m();
    c.n_embd = 1024;
    c.n_layer = 24;
    c.n_head = 16;
    c.n_kv_head = 16;
    return c;
}

// The Llama shapes below are the published config.json values of each model.
ModelConfig ModelConfig::llama_tiny() {
    ModelConfig c;
    c.family = ModelFamily::llama;
    c.vocab_size = 96;
    c.n_ctx = 64;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 2;
    c.n_ff = 176;
    c.layer_norm_epsilon = 1e-5f;
    c.tied_head = true;
    return c;
}

ModelConfig ModelConfig::smollm2_135m() {
    ModelConfig c = llama_tiny();
    c.vocab_size = 49152;
    c.n_ctx = 8192;
    c.n_embd = 576;
    c.n_layer = 30;
    c.n_head = 9;
    c.n_kv_head = 3;
    c.n_ff = 1536;
    c.rope.theta = 100000.0;
    return c;
}

ModelConfig ModelConfig::qwen25_05b() {
    ModelConfig c = llama_tiny();
    c.vocab_size = 151936;
    c.n_ctx = 32768;
    c.n_embd = 896;
    c.n_layer = 24;
    c.n_head = 14;
    c.n_kv_head = 2;
    c.n_ff = 4864;
    c.layer_norm_epsilon = 1e-6f;
    c.qkv_bias = true;
    c.rope.theta = 1000000.0;
    return c;
}

ModelConfig ModelConfig::mla_tiny() {
    ModelConfig c = llama_tiny();
    c.n_kv_head = 1;
    c.mla.kv_lora_rank = 24;
    c.mla.qk_rope_head_dim = 8;
    c.mla.qk_nope_head_dim = 16;
    c.mla.v_head_dim = 16;
    return c;
}

ModelConfig ModelConfig::mla_tiny_q() {
    ModelConfig c = mla_tiny();
    c.mla.q_lora_rank = 32;
    return c;
}

ModelConfig ModelConfig::llama3_8b() {
    ModelConfig c = llama_tiny();
    c.vocab_size = 128256;
    c.n_ctx = 8192;
    c.n_embd = 4096;
    c.n_layer = 32;
    c.n_head = 32;
    c.n_kv_head = 8;
    c.n_ff = 14336;
    c.tied_head = false;
    c.rope.theta = 500000.0;
    return c;
}

ModelConfig ModelConfig::deepseek_v3() {
    ModelConfig c = llama_tiny();
    c.vocab_size = 129280;
    c.n_ctx = 163840;
    c.n_embd = 7168;
    c.n_layer = 61;
    c.n_head = 128;
    c.n_kv_head = 1;
    c.n_ff = 18432;
    c.layer_norm_epsilon = 1e-6f;
    c.tied_head = false;
    c.mla.kv_lora_rank = 512;
    c.mla.q_lora_rank = 1536;
    c.mla.qk_rope_head_dim = 64;
    c.mla.qk_nope_head_dim = 128;
    c.mla.v_head_dim = 128;
    return c;
}

std::vector<float> rope_inv_freq(int head_dim, const RopeConfig& rope) {
    std::vector<float> out(static_cast<std::size_t>(head_dim / 2));
    const double two_pi = 2.0 * 3.14159265358979323846;
    for (std::size_t i = 0; i < out.size(); ++i) {
        double f = 1.0 / std::pow(rope.theta, double(2 * i) / head_dim);
        if (rope.type == RopeConfig::Type::llama3) {
            const double old_ctx = rope.original_max_position_embeddings;
            const double low_freq_wavelen = old_ctx / rope.low_freq_factor;
            const double high_freq_wavelen = old_ctx / rope.high_freq_factor;
            const double wavelen = two_pi / f;
            if (wavelen > low_freq_wavelen) {
                f /= rope.factor;  // slow pairs: stretched by factor
            } else if (!(wavelen < high_freq_wavelen)) {  // the band between: blended
                const double smooth = (old_ctx / wavelen - rope.low_freq_factor) /
                                      (rope.high_freq_factor - rope.low_freq_factor);
                f = (1.0 - smooth) * f / rope.factor + smooth * f;
            }
        }
        out[i] = static_cast<float>(f);
    }
    return out;
}

// ---------------------------------------------------------------- Llama-family config.json

namespace {

using json = nlohmann::json;

std::string shown(const json& v) {
    std::string s = v.dump();
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Typed reads of one object's keys; every error names the file and the key.
struct KeyReader {
    const json& j;
    std::string where;  // "config.json" or "config.json: rope_scaling"

    const json* find(const char* key) const {
        const auto it = j.find(key);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    [[noreturn]] void bad(const char* key, const char* want) const {
        throw Error(where + ": key \"" + key + "\" must be " + want + ", found " + shown(j.at(key)));
    }
    bool get_int(const char* key, int& out) const {
        const json* v = find(key);
        if (!v) return false;
        if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > std::numeric_limits<int>::max())
            bad(key, "a non-negative integer");
        out = static_cast<int>(v->get<int64_t>());
        return true;
    }
    int need_int(const char* key) const {
        int v = 0;
        if (!get_int(key, v)) throw Error(where + ": missing key \"" + key + "\"");
        return v;
    }
    bool get_num(const char* key, double& out) const {
        const json* v = find(key);
        if (!v) return false;
        if (!v->is_number()) bad(key, "a number");
        out = v->get<double>();
        return true;
    }
    double need_num(const char* key) const {
        double v = 0;
        if (!get_num(key, v)) throw Error(where + ": missing key \"" + key + "\"");
        return v;
    }
    bool get_bool(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) bad(key, "true or false");
        return v->get<bool>();
    }
    std::string get_string(const char* key) const {
        const json* v = find(key);
        if (!v) return "";
        if (!v->is_string()) bad(key, "a string");
        return v->get<std::string>();
    }
};

// rope_scaling (4.x) or rope_parameters (5.x): {"rope_type" (or "type"), factors...}.
void read_rope_object(const json& r, const std::string& where, RopeConfig& rope) {
    if (!r.is_object()) throw Error(where + " must be an object or null, found " + shown(r));
    const KeyReader k{r, where};
    std::string type = k.get_string("rope_type");
    if (type.empty()) type = k.get_string("type");
    k.get_num("rope_theta", rope.theta);  // 5.x keeps rope_theta here
    if (type.empty() || type == "default") return;
    if (type != "llama3")
        throw Error(where + ": rope_type \"" + type + "\" is not supported (kvscope reads \"default\" and \"llama3\")");
    rope.type = RopeConfig::Type::llama3;
    rope.factor = k.need_num("factor");
    rope.low_freq_factor = k.need_num("low_freq_factor");
    rope.high_freq_factor = k.need_num("high_freq_factor");
    rope.original_max_position_embeddings = k.need_int("original_max_position_embeddings");
}

void read_llama_rope(const KeyReader& k, ModelConfig& c) {
    k.get_num("rope_theta", c.rope.theta);
    if (const json* r = k.find("rope_scaling")) read_rope_object(*r, k.where + ": rope_scaling", c.rope);
    if (const json* r = k.find("rope_parameters")) read_rope_object(*r, k.where + ": rope_parameters", c.rope);
    double partial = 1.0;
    if (k.get_num("partial_rotary_factor", partial) && partial != 1.0)
        throw Error(k.where + ": partial_rotary_factor " + shown(k.j.at("partial_rotary_factor")) +
                    " is not supported (kvscope rotates whole heads)");
}

// What the three architectures write beyond the shape: activation, biases, window.
void read_llama_extras(const KeyReader& k, const std::string& model_type, ModelConfig& c) {
    const std::string act = k.get_string("hidden_act");
    if (!act.empty() && act != "silu")
        throw Error(k.where + ": hidden_act \"" + act + "\" is not supported (the Llama family's MLP uses \"silu\")");
    if (k.get_bool("mlp_bias", false)) throw Error(k.where + ": mlp_bias true is not supported");
    // Qwen2's q/k/v always have biases and its o_proj none; Llama's attention_bias puts
    // them on all four.
    const bool attention_bias = k.get_bool("attention_bias", model_type == "qwen2");
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias && model_type != "qwen2";
    const bool windowed = model_type == "mistral" || k.get_bool("use_sliding_window", false);
    if (windowed) k.get_int("sliding_window", c.sliding_window);
}

// DeepseekV3's attention: the latent ranks, dense MLPs only (a layer below
// first_k_dense_replace is dense; transformers' default is 3), no yarn, no biases.
void read_mla(const KeyReader& k, ModelConfig& c) {
    c.n_kv_head = 1;  // one latent row per token, whatever num_key_value_heads says
    c.mla.kv_lora_rank = k.need_int("kv_lora_rank");
    k.get_int("q_lora_rank", c.mla.q_lora_rank);  // null: q_proj
    c.mla.qk_rope_head_dim = k.need_int("qk_rope_head_dim");
    c.mla.qk_nope_head_dim = k.need_int("qk_nope_head_dim");
    c.mla.v_head_dim = k.need_int("v_head_dim");
    c.mla.rope_interleave = k.get_bool("rope_interleave", true);
    c.explicit_head_dim = 0;  // DeepseekV3 writes head_dim = qk_rope_head_dim (RoPE's width)
    int dense = 3;
    k.get_int("first_k_dense_replace", dense);
    if (dense < c.n_layer)
        throw Error(k.where + ": layers " + std::to_string(dense) + ".." + std::to_string(c.n_layer - 1) +
                    " are a mixture of experts (first_k_dense_replace " + std::to_string(dense) +
                    "); kvscope runs dense MLPs only (first_k_dense_replace >= num_hidden_layers)");
    if (c.qkv_bias) throw Error(k.where + ": attention_bias true is not supported for MLA");
}

}  // namespace

bool is_llama_model_type(const std::string& t) {
    return t == "llama" || t == "qwen2" || t == "mistral" || t == "deepseek_v3";
}

ModelConfig parse_llama_config(const std::string& json_text, const std::string& path) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw Error(path + ": not valid JSON (" + std::string(e.what()).substr(0, 160) + ")");
    }
    if (!j.is_object()) throw Error(path + ": expected a JSON object");
    const KeyReader k{j, path};
    const std::string model_type = k.get_string("model_type");
    if (!is_llama_model_type(model_type))
        throw Error(path + ": model_type \"" + model_type + "\" is not one of the Llama family (llama, qwen2, mistral, deepseek_v3)");
    if (const json* a = k.find("architectures")) {
        static const json known = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "DeepseekV3ForCausalLM"};
        if (!a->is_array() || a->empty() || std::find(known.begin(), known.end(), (*a)[0]) == known.end())
            throw Error(path + ": architectures " + shown(*a) +
                        " is not supported (kvscope reads LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM, DeepseekV3ForCausalLM)");
    }
    ModelConfig c;
    c.family = ModelFamily::llama;
    c.vocab_size = k.need_int("vocab_size");
    c.n_ctx = k.need_int("max_position_embeddings");
    c.n_embd = k.need_int("hidden_size");
    c.n_layer = k.need_int("num_hidden_layers");
    c.n_head = k.need_int("num_attention_heads");
    c.n_kv_head = c.n_head;
    k.get_int("num_key_value_heads", c.n_kv_head);
    c.n_ff = k.need_int("intermediate_size");
    k.get_int("head_dim", c.explicit_head_dim);
    double eps = 1e-6;  // transformers' default for all three
    k.get_num("rms_norm_eps", eps);
    c.layer_norm_epsilon = static_cast<float>(eps);
    c.tied_head = k.get_bool("tie_word_embeddings", false);  // transformers' default for all three
    read_llama_rope(k, c);
    read_llama_extras(k, model_type, c);
    if (model_type == "deepseek_v3") read_mla(k, c);
    c.validate(path);
    return c;
}

}  // namespace kv
