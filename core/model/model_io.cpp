// Model folders in the Hugging Face GPT-2 layout: config.json <-> ModelConfig,
// model.safetensors <-> Weights (GPT-2 tensor names, Conv1D (in, out) order, optional
// "transformer." prefix, optional untied lm_head), tokenizer discovery, random models
// and the bundled model's location. Notation: V vocab, T n_ctx, C n_embd, L n_layer,
// Q = qkv_dim (= 3C for GPT-2).
#include "core/model/model_io.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/text/bpe_tokenizer.h"
#include "core/text/tokenizer_json.h"
#include "core/error.h"
#include "core/model/safetensors.h"

namespace kv {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

std::string read_text_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw Error(path + ": is a directory, expected a file");
    if (!fs::exists(path, ec)) throw Error(path + ": no such file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (" + std::string(std::strerror(errno)) + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(path + ": read failed");
    return ss.str();
}

// Single printable line (parser messages may quote file bytes).
std::string one_line(const std::string& s, size_t max_len = 160) {
    std::string out;
    for (char c : s) {
        if (out.size() >= max_len) return out + "...";
        const unsigned char u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    return out;
}

std::string type_name_of(const json& v) {
    if (v.is_number_float()) return "number " + v.dump();
    if (v.is_number()) return "integer " + v.dump();
    if (v.is_string()) return "string " + one_line(v.dump(), 40);
    return v.type_name();
}

// The shortest decimal that reads back as the same float, as a double (1e-05, not
// 9.99999974e-06): the fewest significant digits %g needs (std::to_chars on floats is
// missing from libc++ 13, the browser build's).
double shortest_decimal(float x) {
    char buf[32];
    for (int digits = 1; digits < 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, double(x));
        if (std::strtof(buf, nullptr) == x) return std::strtod(buf, nullptr);
    }
    std::snprintf(buf, sizeof buf, "%.9g", double(x));  // 9 digits always read back
    return std::strtod(buf, nullptr);
}

void write_text_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    if (!out) throw Error(path + ": cannot write (" + std::string(std::strerror(errno)) + ")");
    out << text;
    out.flush();
    if (!out) throw Error(path + ": write failed");
}

void write_json_file(const std::string& path, const ordered_json& j) { write_text_file(path, j.dump(2) + "\n"); }

}  // namespace

// ---------------------------------------------------------------- config.json

ModelConfig read_config_json(const std::string& path) {
    const std::string text = read_text_file(path);
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(path + ": not valid JSON (" + one_line(e.what()) + ")");
    }
    if (!j.is_object()) throw Error(path + ": expected a JSON object, found " + std::string(j.type_name()));

    auto get_int = [&](const char* key, int& out) {
        const auto it = j.find(key);
        if (it == j.end()) return false;
        const json& v = *it;
        if (!v.is_number_integer() ||
            v.get<int64_t>() < std::numeric_limits<int>::min() || v.get<int64_t>() > std::numeric_limits<int>::max() ||
            (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int>::max())))
            throw Error(path + ": key \"" + key + "\" must be an integer, found " + type_name_of(v));
        out = int(v.get<int64_t>());
        return true;
    };
    auto need_int = [&](const char* key, int& out) {
        if (!get_int(key, out)) throw Error(path + ": missing key \"" + key + "\"");
    };

    if (const auto it = j.find("model_type"); it != j.end()) {
        if (!it->is_string()) throw Error(path + ": key \"model_type\" must be a string, found " + type_name_of(*it));
        const auto mt = it->get<std::string>();
        if (is_llama_model_type(mt)) return parse_llama_config(text, path);
        if (mt != "gpt2")
            throw Error(path + ": model_type \"" + one_line(mt, 40) +
                        "\" is not supported (kvscope reads model_type \"gpt2\", \"llama\", \"qwen2\" and \"mistral\")");
    }

    ModelConfig c;
    need_int("vocab_size", c.vocab_size);
    if (!get_int("n_positions", c.n_ctx) && !get_int("n_ctx", c.n_ctx))
        throw Error(path + ": missing key \"n_positions\" (or \"n_ctx\")");
    need_int("n_embd", c.n_embd);
    need_int("n_layer", c.n_layer);
    need_int("n_head", c.n_head);
    c.n_kv_head = c.n_head;
    if (!get_int("n_kv_head", c.n_kv_head)) get_int("num_key_value_heads", c.n_kv_head);
    if (const auto it = j.find("layer_norm_epsilon"); it != j.end()) {
        if (!it->is_number()) throw Error(path + ": key \"layer_norm_epsilon\" must be a number, found " + type_name_of(*it));
        c.layer_norm_epsilon = it->get<float>();
    }
    if (const auto it = j.find("tie_word_embeddings"); it != j.end()) {
        if (!it->is_boolean())
            throw Error(path + ": key \"tie_word_embeddings\" must be true or false, found " + type_name_of(*it));
        c.tied_head = it->get<bool>();
    }
    c.validate(path);
    return c;
}

namespace {

// transformers' dtype name of a held type.
const char* torch_dtype_name(WeightType held) {
    return held == WeightType::f16 ? "float16" : held == WeightType::bf16 ? "bfloat16" : "float32";
}

}  // namespace

std::string llama_config_json(const std::string& path, const ModelConfig& cfg, WeightType held, int bos_token_id,
                              int eos_token_id) {
    if (cfg.o_bias && !cfg.qkv_bias)
        throw Error(path + ": an o_proj bias without q/k/v biases has no transformers class");
    const bool qwen2 = cfg.qkv_bias && !cfg.o_bias, mistral = !cfg.qkv_bias && cfg.sliding_window > 0;
    if (cfg.qkv_bias && cfg.o_bias && cfg.sliding_window > 0)
        throw Error(path + ": a sliding window with attention biases has no transformers class kvscope writes");
    const bool mla = cfg.is_mla();
    if (mla && (cfg.qkv_bias || cfg.o_bias || cfg.sliding_window > 0))
        throw Error(path + ": an MLA model with attention biases or a sliding window has no transformers class kvscope writes");
    ordered_json j;
    j["model_type"] = mla ? "deepseek_v3" : qwen2 ? "qwen2" : mistral ? "mistral" : "llama";
    j["architectures"] = {mla     ? "DeepseekV3ForCausalLM"
                          : qwen2 ? "Qwen2ForCausalLM"
                          : mistral ? "MistralForCausalLM"
                                    : "LlamaForCausalLM"};
    j["vocab_size"] = cfg.vocab_size;
    j["max_position_embeddings"] = cfg.n_ctx;
    j["hidden_size"] = cfg.n_embd;
    j["intermediate_size"] = cfg.n_ff;
    j["num_hidden_layers"] = cfg.n_layer;
    j["num_attention_heads"] = cfg.n_head;
    // DeepseekV3 expands kv_b_proj to every head and repeats them H / num_key_value_heads
    // times: H there, whatever the one latent row kvscope counts.
    j["num_key_value_heads"] = mla ? cfg.n_head : cfg.n_kv_head;
    if (cfg.explicit_head_dim > 0) j["head_dim"] = cfg.explicit_head_dim;
    if (mla) {
        j["kv_lora_rank"] = cfg.mla.kv_lora_rank;
        j["q_lora_rank"] = cfg.mla.q_lora_rank > 0 ? json(cfg.mla.q_lora_rank) : json(nullptr);
        j["qk_rope_head_dim"] = cfg.mla.qk_rope_head_dim;
        j["qk_nope_head_dim"] = cfg.mla.qk_nope_head_dim;
        j["v_head_dim"] = cfg.mla.v_head_dim;
        j["head_dim"] = cfg.mla.qk_rope_head_dim;  // as DeepseekV3Config sets it (RoPE's width)
        j["rope_interleave"] = cfg.mla.rope_interleave;
        j["first_k_dense_replace"] = cfg.n_layer;   // every layer's MLP dense
    }
    j["hidden_act"] = "silu";
    j["rms_norm_eps"] = shortest_decimal(cfg.layer_norm_epsilon);
    j["rope_theta"] = cfg.rope.theta;
    if (cfg.rope.type == RopeConfig::Type::llama3)
        j["rope_scaling"] = {{"rope_type", "llama3"},
                             {"factor", cfg.rope.factor},
                             {"low_freq_factor", cfg.rope.low_freq_factor},
                             {"high_freq_factor", cfg.rope.high_freq_factor},
                             {"original_max_position_embeddings", cfg.rope.original_max_position_embeddings}};
    else
        j["rope_scaling"] = nullptr;
    if (!qwen2) j["attention_bias"] = cfg.qkv_bias;
    if (!qwen2 && !mla) j["mlp_bias"] = false;
    if (qwen2) j["use_sliding_window"] = false;
    if (mistral) j["sliding_window"] = cfg.sliding_window;
    j["tie_word_embeddings"] = cfg.tied_head;
    j["initializer_range"] = 0.02;
    j["attention_dropout"] = 0.0;
    j["use_cache"] = true;
    j["torch_dtype"] = torch_dtype_name(held);
    if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
    if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
    return j.dump(2) + "\n";
}

void write_config_json(const std::string& path, const ModelConfig& cfg, WeightType held) {
    cfg.validate(path);
    if (cfg.is_llama()) return write_text_file(path, llama_config_json(path, cfg, held));
    ordered_json j;
    j["model_type"] = "gpt2";
    j["architectures"] = {"GPT2LMHeadModel"};
    j["vocab_size"] = cfg.vocab_size;
    j["n_positions"] = cfg.n_ctx;
    j["n_ctx"] = cfg.n_ctx;
    j["n_embd"] = cfg.n_embd;
    j["n_layer"] = cfg.n_layer;
    j["n_head"] = cfg.n_head;
    if (cfg.n_kv_head != cfg.n_head) j["n_kv_head"] = cfg.n_kv_head;
    j["n_inner"] = nullptr;  // 4 * n_embd
    j["activation_function"] = "gelu_new";
    j["layer_norm_epsilon"] = shortest_decimal(cfg.layer_norm_epsilon);
    j["tie_word_embeddings"] = cfg.tied_head;
    j["resid_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["attn_pdrop"] = 0.0;
    j["initializer_range"] = 0.02;
    j["scale_attn_weights"] = true;
    j["scale_attn_by_inverse_layer_idx"] = false;
    j["reorder_and_upcast_attn"] = false;
    j["use_cache"] = true;
    j["bos_token_id"] = cfg.vocab_size - 1;  // 50256 for GPT-2's vocabulary
    j["eos_token_id"] = cfg.vocab_size - 1;
    j["torch_dtype"] = torch_dtype_name(held);
    write_json_file(path, j);
}

// ---------------------------------------------------------------- safetensors <-> Weights

namespace {

// The tensors of one model in file order: name (no prefix), expected shape (from
// cfg alone, so a file can be checked before anything is allocated), and where the
// values live in `w` (null when no Weights are given). Vectors have shape [n].
struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    float* data;
};

std::vector<Slot> slots_of(const ModelConfig& cfg, Weights* w) {
    const int64_t V = cfg.vocab_size, T = cfg.n_ctx, C = cfg.n_embd, Q = cfg.qkv_dim();
    std::vector<Slot> s;
    auto add = [&](const std::string& n, std::vector<int64_t> shape, auto* t) {
        s.push_back({n, std::move(shape), w ? t->data() : nullptr});
    };
    add("wte.weight", {V, C}, w ? &w->wte : nullptr);
    add("wpe.weight", {T, C}, w ? &w->wpe : nullptr);
    for (int i = 0; i < cfg.n_layer; ++i) {
        LayerWeights* l = w ? &w->layers[size_t(i)] : nullptr;
        auto m = [&](RowMat LayerWeights::*f) { return l ? &(l->*f) : nullptr; };
        auto v = [&](RowVec LayerWeights::*f) { return l ? &(l->*f) : nullptr; };
        const std::string h = "h." + std::to_string(i) + ".";
        add(h + "ln_1.weight", {C}, v(&LayerWeights::ln_1_w));
        add(h + "ln_1.bias", {C}, v(&LayerWeights::ln_1_b));
        add(h + "attn.c_attn.weight", {C, Q}, m(&LayerWeights::attn_w));
        add(h + "attn.c_attn.bias", {Q}, v(&LayerWeights::attn_b));
        add(h + "attn.c_proj.weight", {C, C}, m(&LayerWeights::attn_proj_w));
        add(h + "attn.c_proj.bias", {C}, v(&LayerWeights::attn_proj_b));
        add(h + "ln_2.weight", {C}, v(&LayerWeights::ln_2_w));
        add(h + "ln_2.bias", {C}, v(&LayerWeights::ln_2_b));
        add(h + "mlp.c_fc.weight", {C, 4 * C}, m(&LayerWeights::fc_w));
        add(h + "mlp.c_fc.bias", {4 * C}, v(&LayerWeights::fc_b));
        add(h + "mlp.c_proj.weight", {4 * C, C}, m(&LayerWeights::mlp_proj_w));
        add(h + "mlp.c_proj.bias", {C}, v(&LayerWeights::mlp_proj_b));
    }
    add("ln_f.weight", {C}, w ? &w->ln_f_w : nullptr);
    add("ln_f.bias", {C}, w ? &w->ln_f_b : nullptr);
    if (!cfg.tied_head) add("lm_head.weight", {V, C}, w ? &w->lm_head : nullptr);
    return s;
}

// Layer index of "h.N." / "transformer.h.N.", or -1.
int layer_index(const std::string& name) {
    std::string_view v = name;
    if (v.starts_with("transformer.")) v.remove_prefix(12);
    if (!v.starts_with("h.")) return -1;
    v.remove_prefix(2);
    int n = -1;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p == v.data() || p == v.data() + v.size() || *p != '.' || p - v.data() > 6) return -1;
    return n;
}

std::string shape_hint(const std::string& name, const ModelConfig& cfg) {
    if (name == "wte.weight" || name == "lm_head.weight")
        return " (vocab_size " + std::to_string(cfg.vocab_size) + ", n_embd " + std::to_string(cfg.n_embd) + ")";
    if (name == "wpe.weight")
        return " (n_positions " + std::to_string(cfg.n_ctx) + ", n_embd " + std::to_string(cfg.n_embd) + ")";
    return "";
}

}  // namespace

namespace {

// A load's progress against its total, reported through the hooks after each tensor;
// cancel is honoured between tensors (LoadCancelled naming `what`).
class LoadTicker {
public:
    LoadTicker(const LoadHooks* hooks, std::string what, int tensors, int64_t bytes)
        : hooks_(hooks), what_(std::move(what)) {
        p_.tensors_total = tensors;
        p_.bytes_total = bytes;
        report();
        check();
    }
    void check() const {
        if (hooks_ && hooks_->cancel && hooks_->cancel->load()) throw LoadCancelled(what_ + ": loading cancelled");
    }
    void tick(int64_t bytes) {
        ++p_.tensors_done;
        p_.bytes_done += bytes;
        report();
        check();
    }
    void finish() {
        p_.tensors_done = p_.tensors_total;
        p_.bytes_done = p_.bytes_total;
        report();
        check();
    }

private:
    void report() const {
        if (hooks_ && hooks_->on_progress) hooks_->on_progress(p_);
    }
    const LoadHooks* hooks_;
    std::string what_;
    LoadProgress p_;
};

// The values of the checked tensors `stored` (file names, in slots_of order), the
// matrices held in `want` (default: as stored). A matrix stored in the held 16-bit
// type becomes a view into the mapping; one stored otherwise is read and rounded
// alone, so at most one f32 matrix exists at a time.
Weights read_tensors(const std::shared_ptr<SafetensorsFile>& f, const std::vector<std::string>& stored,
                     const ModelConfig& cfg, std::optional<WeightType> want, const LoadHooks* hooks) {
    const auto names = slots_of(cfg, nullptr);
    std::map<std::string, size_t> slot_of;
    for (size_t k = 0; k < names.size(); ++k) slot_of[names[k].name] = k;
    Weights probe;
    probe.layers.resize(size_t(cfg.n_layer));
    std::string mdtype;  // the matrices' stored dtype, "mixed" when they differ
    for (const auto& m : weight_matrices(probe, cfg)) {
        const std::string& d = f->tensors().at(stored[slot_of.at(m.name)]).dtype;
        mdtype = mdtype.empty() || mdtype == d ? d : "mixed";
    }
    const WeightType t = want ? *want
                         : mdtype == "F16"  ? WeightType::f16
                         : mdtype == "BF16" ? WeightType::bf16
                                            : WeightType::f32;
    auto stored_bytes = [&](const std::string& name) {
        const TensorInfo& i = f->tensors().at(name);
        return int64_t(i.end - i.begin);
    };
    int64_t total = 0;
    for (const std::string& name : stored) total += stored_bytes(name);
    // Every tensor ticks once: vectors (and f32 matrices) below, 16-bit matrices after.
    LoadTicker ticker(hooks, f->path(), int(stored.size()), total);
    Weights w = allocate_weights(cfg, t);
    const auto slots = slots_of(cfg, &w);
    for (size_t k = 0; k < slots.size(); ++k) {
        if (!slots[k].data) continue;
        f->read_f32(stored[k], slots[k].data, slots[k].shape[0] * (slots[k].shape.size() > 1 ? slots[k].shape[1] : 1));
        ticker.tick(stored_bytes(stored[k]));
    }
    if (t != WeightType::f32) {
        const std::string t_dtype = t == WeightType::f16 ? "F16" : "BF16";
        for (auto& m : weight_matrices(w, cfg)) {
            const std::string& name = stored[slot_of.at(m.name)];
            const auto& shape = names[slot_of.at(m.name)].shape;
            const unsigned char* raw = f->raw(name);
            if (f->tensors().at(name).dtype == t_dtype && reinterpret_cast<uintptr_t>(raw) % 2 == 0) {
                m.h16->type = t;
                m.h16->rows = shape[0];
                m.h16->cols = shape[1];
                m.h16->data = reinterpret_cast<const uint16_t*>(raw);
                m.h16->owner = f;
            } else {
                std::vector<float> tmp(size_t(shape[0] * shape[1]));
                f->read_f32(name, tmp.data(), int64_t(tmp.size()));
                *m.h16 = Mat16::round(tmp.data(), shape[0], shape[1], t, f->path() + ": tensor " + name);
            }
            ticker.tick(stored_bytes(name));
        }
    }
    check_weights(cfg, w, f->path());
    return w;
}

}  // namespace

// ---------------------------------------------------------------- Llama-family tensors

namespace {

// One Hugging Face tensor of a Llama-family model and where Weights holds it: a vector
// (a norm weight, or a q/k/v/o bias: n floats at `vec`), or a matrix piece of
// weight_matrices(w, cfg)[matrix]: an nn.Linear weight stored (out, in) and held
// transposed in columns [col0, col0 + out) of an (in, width) matrix, or an embedding
// / head (V, C) held as stored. The file order is transformers' state-dict order.
struct HfTensor {
    std::string name;
    std::vector<int64_t> shape;  // as stored
    int matrix = -1;             // -1: a vector
    int64_t col0 = 0;
    bool transposed = false;
    float* vec = nullptr;        // null when no Weights are given
};

// DeepseekV3Attention's tensors of layer i (MLA), in its state-dict order: the query
// path (q_proj, or q_a_proj, q_a_layernorm, q_b_proj), kv_a_proj_with_mqa (beside q in
// attn_w), kv_a_layernorm, kv_b_proj. q_b_proj and kv_b_proj are weight_matrices'
// tail, after the head.
// A vector (a norm weight or a bias: len floats at data, null without Weights), and an
// nn.Linear weight stored (out, in), held transposed in columns [col0, col0 + out) of
// weight_matrices' matrix m.
void add_vec(std::vector<HfTensor>& s, std::string n, int64_t len, float* data) {
    s.push_back({std::move(n), {len}, -1, 0, false, data});
}
void add_linear(std::vector<HfTensor>& s, std::string n, int64_t out, int64_t in, int m, int64_t col0) {
    s.push_back({std::move(n), {out, in}, m, col0, true, nullptr});
}

void mla_tensors(const ModelConfig& cfg, int i, const std::string& p, LayerWeights* l, std::vector<HfTensor>& s) {
    const int64_t C = cfg.n_embd, Qd = cfg.q_dim(), dq = cfg.mla.q_lora_rank, dc = cfg.mla.kv_lora_rank;
    const int64_t kvb = int64_t(cfg.n_head) * (cfg.mla.qk_nope_head_dim + cfg.mla.v_head_dim);
    const int m = 1 + 4 * i, per = dq > 0 ? 2 : 1;
    const int tail = 1 + 4 * cfg.n_layer + (cfg.tied_head ? 0 : 1) + per * i;
    if (dq > 0) {
        add_linear(s, p + "q_a_proj.weight", dq, C, m, 0);
        add_vec(s, p + "q_a_layernorm.weight", dq, l ? l->q_a_norm_w.data() : nullptr);
        add_linear(s, p + "q_b_proj.weight", Qd, dq, tail, 0);
    } else {
        add_linear(s, p + "q_proj.weight", Qd, C, m, 0);
    }
    add_linear(s, p + "kv_a_proj_with_mqa.weight", dc + cfg.mla.qk_rope_head_dim, C, m, dq > 0 ? dq : Qd);
    add_vec(s, p + "kv_a_layernorm.weight", dc, l ? l->kv_norm_w.data() : nullptr);
    add_linear(s, p + "kv_b_proj.weight", kvb, dc, tail + per - 1, 0);
}

std::vector<HfTensor> hf_tensors(const ModelConfig& cfg, Weights* w) {
    const int64_t V = cfg.vocab_size, C = cfg.n_embd, Qd = cfg.q_dim(), kvd = cfg.kv_dim(), F = cfg.n_ff;
    std::vector<HfTensor> s;
    auto vec = [&](std::string n, int64_t len, RowVec* v, int64_t off) {
        add_vec(s, std::move(n), len, w ? v->data() + off : nullptr);
    };
    auto lin = [&](std::string n, int64_t out, int64_t in, int m, int64_t col0) {
        add_linear(s, std::move(n), out, in, m, col0);
    };
    s.push_back({"model.embed_tokens.weight", {V, C}, 0, 0, false, nullptr});
    for (int i = 0; i < cfg.n_layer; ++i) {
        LayerWeights* l = w ? &w->layers[size_t(i)] : nullptr;
        auto at = [&](RowVec LayerWeights::*f) { return l ? &(l->*f) : nullptr; };
        const std::string h = "model.layers." + std::to_string(i) + ".";
        const int m = 1 + 4 * i;  // weight_matrices: attn, proj, fc, mlp proj
        vec(h + "input_layernorm.weight", C, at(&LayerWeights::ln_1_w), 0);
        if (cfg.is_mla()) {
            mla_tensors(cfg, i, h + "self_attn.", l, s);
        } else {
            const char* qkv[] = {"q", "k", "v"};
            const int64_t off[] = {0, Qd, Qd + kvd}, width[] = {Qd, kvd, kvd};
            for (int k = 0; k < 3; ++k) {
                const std::string p = h + "self_attn." + qkv[k] + "_proj.";
                lin(p + "weight", width[k], C, m, off[k]);
                if (cfg.qkv_bias) vec(p + "bias", width[k], at(&LayerWeights::attn_b), off[k]);
            }
        }
        lin(h + "self_attn.o_proj.weight", C, cfg.o_dim(), m + 1, 0);
        if (cfg.o_bias) vec(h + "self_attn.o_proj.bias", C, at(&LayerWeights::attn_proj_b), 0);
        vec(h + "post_attention_layernorm.weight", C, at(&LayerWeights::ln_2_w), 0);
        lin(h + "mlp.gate_proj.weight", F, C, m + 2, 0);
        lin(h + "mlp.up_proj.weight", F, C, m + 2, F);
        lin(h + "mlp.down_proj.weight", C, F, m + 3, 0);
    }
    vec("model.norm.weight", C, w ? &w->ln_f_w : nullptr, 0);
    if (!cfg.tied_head) s.push_back({"lm_head.weight", {V, C}, 1 + 4 * cfg.n_layer, 0, false, nullptr});
    return s;
}

// Layer index of "model.layers.N.", or -1.
int hf_layer_index(std::string_view v) {
    if (!v.starts_with("model.layers.")) return -1;
    v.remove_prefix(13);
    int n = -1;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p == v.data() || p == v.data() + v.size() || *p != '.' || p - v.data() > 6) return -1;
    return n;
}

// Names, shapes and dtypes of the file against cfg (lm_head.weight present: untied),
// before anything is allocated; every tensor of the file must be one cfg expects
// (transformers' old rotary_emb.inv_freq buffers aside), so a config.json without the
// biases the file has is caught rather than ignored.
void check_hf_tensors(const SafetensorsFile& f, const std::string& path, ModelConfig& cfg) {
    const bool has_head = f.has("lm_head.weight");
    if (!has_head && !cfg.tied_head)
        throw Error(path + ": tensor lm_head.weight is missing (config.json says tie_word_embeddings: false)");
    cfg.tied_head = !has_head;
    std::map<std::string, const HfTensor*> expected;
    const auto list = hf_tensors(cfg, nullptr);
    for (const auto& t : list) expected[t.name] = &t;
    for (const auto& [name, info] : f.tensors()) {
        if (expected.count(name) || name.ends_with("rotary_emb.inv_freq")) continue;
        const int li = hf_layer_index(name);
        if (li >= cfg.n_layer)
            throw Error(path + ": tensor " + name + " belongs to layer " + std::to_string(li) +
                        " but config.json says num_hidden_layers " + std::to_string(cfg.n_layer));
        throw Error(path + ": tensor " + name + " is not part of this model" +
                    (name.ends_with(".bias") ? " (config.json asks for no such bias: see attention_bias / model_type)"
                                             : " (kvscope reads LlamaForCausalLM, Qwen2ForCausalLM, "
                                               "MistralForCausalLM and dense DeepseekV3ForCausalLM names)"));
    }
    for (const auto& t : list) {
        if (!f.has(t.name)) throw Error(path + ": tensor " + t.name + " is missing");
        const TensorInfo& i = f.tensors().at(t.name);
        if (i.shape != t.shape)
            throw Error(path + ": tensor " + t.name + " has shape " + shape_str(i.shape) + ", config.json says " +
                        shape_str(t.shape) + (t.transposed ? " (nn.Linear order: [out, in])" : ""));
        if (i.dtype != "F32" && i.dtype != "F16" && i.dtype != "BF16")
            throw Error(path + ": tensor " + t.name + " has dtype " + i.dtype +
                        ", which kvscope does not read (supported: F32, F16, BF16)");
    }
}

// The held matrix `m` assembled in f32 from its pieces of the file (transposing
// nn.Linear weights), into `out` (rows, cols).
void assemble_matrix(const SafetensorsFile& f, const std::vector<HfTensor>& list, int m, RowMat& out,
                     std::vector<float>& buf, LoadTicker& ticker) {
    for (const auto& t : list) {
        if (t.matrix != m) continue;
        const int64_t r = t.shape[0], c = t.shape[1];
        buf.resize(size_t(r * c));
        f.read_f32(t.name, buf.data(), r * c);
        const Eigen::Map<const RowMat> stored(buf.data(), r, c);
        if (t.transposed)
            out.middleCols(t.col0, r) = stored.transpose();
        else
            out = stored;
        const TensorInfo& i = f.tensors().at(t.name);
        ticker.tick(int64_t(i.end - i.begin));
    }
}

// The (rows, cols) a held matrix has, from its pieces.
std::pair<int64_t, int64_t> held_shape(const std::vector<HfTensor>& list, int m) {
    int64_t rows = 0, cols = 0;
    for (const auto& t : list) {
        if (t.matrix != m) continue;
        if (!t.transposed) return {t.shape[0], t.shape[1]};
        rows = t.shape[1];
        cols = std::max(cols, t.col0 + t.shape[0]);
    }
    return {rows, cols};
}

Weights read_hf_tensors(const std::shared_ptr<SafetensorsFile>& f, ModelConfig& cfg, std::optional<WeightType> want,
                        const LoadHooks* hooks) {
    check_hf_tensors(*f, f->path(), cfg);
    const auto names = hf_tensors(cfg, nullptr);
    std::string mdtype;  // the matrices' stored dtype, "mixed" when they differ
    int64_t total = 0;
    for (const auto& t : names) {
        const TensorInfo& i = f->tensors().at(t.name);
        total += int64_t(i.end - i.begin);
        if (t.matrix >= 0) mdtype = mdtype.empty() || mdtype == i.dtype ? i.dtype : "mixed";
    }
    const WeightType held = want ? *want
                            : mdtype == "F16"  ? WeightType::f16
                            : mdtype == "BF16" ? WeightType::bf16
                                               : WeightType::f32;
    LoadTicker ticker(hooks, f->path(), int(names.size()), total);
    Weights w = allocate_weights(cfg, held);
    const auto list = hf_tensors(cfg, &w);
    for (const auto& t : list) {
        if (t.matrix >= 0) continue;
        f->read_f32(t.name, t.vec, t.shape[0]);
        const TensorInfo& i = f->tensors().at(t.name);
        ticker.tick(int64_t(i.end - i.begin));
    }
    // One matrix at a time: f32 assembles in place; 16-bit assembles in f32, then rounds
    // (exact when the file holds the same 16-bit type).
    std::vector<float> buf;
    RowMat tmp;
    auto mats = weight_matrices(w, cfg);
    for (int m = 0; m < int(mats.size()); ++m) {
        if (held == WeightType::f32) {
            assemble_matrix(*f, list, m, *mats[size_t(m)].f32, buf, ticker);
            continue;
        }
        const auto [rows, cols] = held_shape(list, m);
        tmp.resize(rows, cols);
        assemble_matrix(*f, list, m, tmp, buf, ticker);
        *mats[size_t(m)].h16 = Mat16::round(tmp.data(), rows, cols, held, f->path() + ": tensor " + mats[size_t(m)].name);
    }
    check_weights(cfg, w, f->path());
    return w;
}

// The Llama family's tensors in transformers' names: nn.Linear weights transposed back
// to (out, in), in the held type (F32, F16 or BF16); norms and biases in F32.
void write_hf_safetensors(const std::string& path, const ModelConfig& cfg, const Weights& w) {
    auto& mw = const_cast<Weights&>(w);  // hf_tensors and weight_matrices hand out pointers; writing only reads
    const auto mats = weight_matrices(mw, cfg);
    const auto list = hf_tensors(cfg, &mw);
    std::vector<std::vector<uint16_t>> held16;  // owned bytes of each tensor written
    std::vector<std::vector<float>> held32;
    held16.reserve(list.size());
    held32.reserve(list.size());
    std::vector<TensorOut> out;
    RowMat full;  // the current held matrix in f32
    int full_m = -1;
    for (const auto& t : list) {
        if (t.matrix < 0) {
            out.push_back({t.name, t.shape, t.vec, "F32"});
            continue;
        }
        if (t.matrix != full_m) {
            const MatrixRef& r = mats[size_t(t.matrix)];
            if (w.type == WeightType::f32) {
                full = *r.f32;
            } else {
                full.resize(r.h16->rows, r.h16->cols);
                r.h16->widen(full.data());
            }
            full_m = t.matrix;
        }
        const int64_t rows = t.shape[0], cols = t.shape[1];
        std::vector<float> v(size_t(rows * cols));
        Eigen::Map<RowMat> dst(v.data(), rows, cols);
        if (t.transposed)
            dst = full.middleCols(t.col0, rows).transpose();
        else
            dst = full;
        if (w.type == WeightType::f32) {
            held32.push_back(std::move(v));
            out.push_back({t.name, t.shape, held32.back().data(), "F32"});
            continue;
        }
        std::vector<uint16_t> h(v.size());
        for (size_t k = 0; k < v.size(); ++k)
            h[k] = w.type == WeightType::f16 ? float_to_half(v[k]) : float_to_bf16(v[k]);
        held16.push_back(std::move(h));
        out.push_back({t.name, t.shape, held16.back().data(), w.type == WeightType::f16 ? "F16" : "BF16"});
    }
    write_safetensors_tensors(path, out);
}

}  // namespace

Weights read_safetensors(const std::string& path, ModelConfig& cfg, std::optional<WeightType> want,
                         const LoadHooks* hooks) {
    cfg.validate("config.json");
    const auto file = std::make_shared<SafetensorsFile>(path);
    if (cfg.is_llama()) return read_hf_tensors(file, cfg, want, hooks);
    const SafetensorsFile& f = *file;

    // The head: lm_head.weight present means untied.
    const bool has_head = f.has("lm_head.weight");
    if (!has_head && !cfg.tied_head)
        throw Error(path + ": tensor lm_head.weight is missing (config.json says tie_word_embeddings: false)");
    cfg.tied_head = !has_head;

    // Layers in the file against n_layer, before any single-tensor message.
    int max_layer = -1;
    std::string max_name;
    for (const auto& [name, info] : f.tensors()) {
        const int i = layer_index(name);
        if (i > max_layer) max_layer = i, max_name = name;
    }
    if (max_layer >= cfg.n_layer)
        throw Error(path + ": tensor " + max_name + " belongs to layer " + std::to_string(max_layer) +
                    " but config.json says n_layer " + std::to_string(cfg.n_layer));

    // Names and shapes first: the shapes are bounded by the file's size, so nothing
    // is allocated for a config.json that asks for more than the file holds.
    const auto expected = slots_of(cfg, nullptr);
    std::vector<std::string> stored(expected.size());
    for (size_t k = 0; k < expected.size(); ++k) {
        const Slot& s = expected[k];
        std::string name = s.name;
        if (!f.has(name) && s.name != "lm_head.weight" && f.has("transformer." + name)) name = "transformer." + name;
        if (!f.has(name)) {
            const int li = layer_index(s.name);
            if (li >= 0 && li > max_layer)
                throw Error(path + ": tensor " + s.name + " is missing: config.json says n_layer " +
                            std::to_string(cfg.n_layer) + " but the file has " +
                            (max_layer < 0 ? std::string("no layers") : "layers h.0..h." + std::to_string(max_layer)));
            throw Error(path + ": tensor " + s.name + " is missing");
        }
        const TensorInfo& t = f.tensors().at(name);
        if (t.shape != s.shape)
            throw Error(path + ": tensor " + name + " has shape " + shape_str(t.shape) + ", config.json says " +
                        shape_str(s.shape) + shape_hint(s.name, cfg));
        if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
            throw Error(path + ": tensor " + name + " has dtype " + t.dtype +
                        ", which kvscope does not read (supported: F32, F16, BF16)");
        stored[k] = name;
    }
    return read_tensors(file, stored, cfg, want, hooks);
}



// Tied models use the plain names of the Hub's gpt2 checkpoint. Untied models use
// GPT2LMHeadModel's own state-dict names ("transformer." + name, and lm_head.weight):
// transformers rejects plain names next to lm_head.weight as a corrupted state dict.
// The matrices are written in the type they are held in (F32, F16 or BF16: the held
// bits, nothing rounded again); vectors and wpe in F32.
void write_safetensors(const std::string& path, const ModelConfig& cfg, const Weights& w) {
    check_weights(cfg, w, path);
    if (cfg.is_llama()) return write_hf_safetensors(path, cfg, w);
    auto& mw = const_cast<Weights&>(w);  // slots_of and weight_matrices hand out pointers; writing only reads
    std::map<std::string, const Mat16*> held16;
    if (w.type != WeightType::f32)
        for (const auto& m : weight_matrices(mw, cfg)) held16[m.name] = m.h16;
    const std::string dtype16 = w.type == WeightType::f16 ? "F16" : "BF16";
    const std::string prefix = cfg.tied_head ? "" : "transformer.";
    std::vector<TensorOut> out;
    for (const auto& s : slots_of(cfg, &mw)) {
        TensorOut t{s.name == "lm_head.weight" ? s.name : prefix + s.name, s.shape, s.data, "F32"};
        if (const auto it = held16.find(s.name); it != held16.end()) {
            t.data = it->second->data;
            t.dtype = dtype16;
        }
        out.push_back(std::move(t));
    }
    write_safetensors_tensors(path, out);
}

// ---------------------------------------------------------------- models

namespace {

const char* kFolderHint =
    "expected a folder with config.json and model.safetensors, or random:tiny / random:gpt2-124m";

// random:SHAPE[:SEED] -> its shape, seed and canonical name "random:SHAPE:SEED".
struct RandomSpec {
    ModelConfig cfg;
    uint64_t seed = 0;
    std::string name;
};
RandomSpec parse_random_spec(const std::string& spec) {
    std::string_view rest = std::string_view(spec).substr(7);
    std::string shape(rest.substr(0, rest.find(':')));
    RandomSpec r;
    if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
        const std::string_view s = rest.substr(colon + 1);
        const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), r.seed);
        if (s.empty() || ec != std::errc() || p != s.data() + s.size())
            throw Error("model '" + spec + "': seed '" + std::string(s) +
                        "' is not a non-negative integer (use random:tiny:SEED)");
    }
    if (shape == "tiny") r.cfg = ModelConfig::tiny();
    else if (shape == "gpt2-124m") r.cfg = ModelConfig::gpt2_124m();
    else if (shape == "gpt2-355m") r.cfg = ModelConfig::gpt2_355m();
    else if (shape == "llama-tiny") r.cfg = ModelConfig::llama_tiny();
    else if (shape == "smollm2-135m") r.cfg = ModelConfig::smollm2_135m();
    else if (shape == "qwen2.5-0.5b") r.cfg = ModelConfig::qwen25_05b();
    else if (shape == "mla-tiny") r.cfg = ModelConfig::mla_tiny();
    else if (shape == "mla-tiny-q") r.cfg = ModelConfig::mla_tiny_q();
    else
        throw Error("model '" + spec + "': unknown random shape '" + shape +
                    "' (expected random:tiny, random:gpt2-124m, random:gpt2-355m, random:llama-tiny, "
                    "random:smollm2-135m, random:qwen2.5-0.5b, random:mla-tiny or random:mla-tiny-q, optionally followed by :SEED)");
    r.name = "random:" + shape + ":" + std::to_string(r.seed);
    return r;
}

// The folder's config.json path, after checking that `dir` is a folder holding one.
std::string folder_config(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error("model '" + dir + "': no such folder (" + kFolderHint + ")");
    const std::string config_path = (fs::path(dir) / "config.json").string();
    // exists() is false with ec set when the folder cannot be searched (chmod 000): say so.
    if (!fs::exists(config_path, ec)) {
        if (ec && ec != std::errc::no_such_file_or_directory)
            throw Error(config_path + ": cannot open (" + ec.message() + ")");
        throw Error(config_path + ": no such file (a model folder needs config.json and model.safetensors)");
    }
    return config_path;
}

// A folder's display name: its last component ("tiny-gpt" for assets/models/tiny-gpt/).
std::string folder_name(const std::string& dir) {
    const fs::path d(dir);
    fs::path norm = d.lexically_normal();
    if (norm.filename().empty()) norm = norm.parent_path();
    std::string name = norm.filename().string();
    std::error_code ec;
    if (name.empty() || name == ".") name = fs::absolute(d, ec).lexically_normal().filename().string();
    return name;
}

// The folder's tokenizer, checked against cfg.vocab_size; null when the folder has none.
// GPT-2 folders: vocab.txt, or vocab.json + merges.txt, else tokenizer.json. Llama-family
// folders: tokenizer.json first (their vocab.json + merges.txt lack its pre-tokenizer).
std::unique_ptr<Tokenizer> folder_tokenizer(const std::string& dir, const ModelConfig& cfg) {
    const fs::path d(dir);
    const fs::path vocab_txt = d / "vocab.txt", vocab_json = d / "vocab.json", merges = d / "merges.txt",
                   tok_json = d / "tokenizer.json";
    std::error_code ec;
    std::unique_ptr<Tokenizer> tok;
    std::string tok_file;
    const bool json_first = cfg.is_llama() && fs::exists(tok_json, ec);
    if (json_first) {
        tok = load_tokenizer_json(tok_json.string());
        tok_file = tok_json.string();
    } else if (fs::exists(vocab_txt, ec)) {
        tok = WordTokenizer::load(vocab_txt.string());
        tok_file = vocab_txt.string();
    } else if (fs::exists(vocab_json, ec) && fs::exists(merges, ec)) {
        tok = load_gpt2_bpe(vocab_json.string(), merges.string());
        tok_file = vocab_json.string();
    } else if (fs::exists(vocab_json, ec)) {
        throw Error(merges.string() + ": no such file (vocab.json needs merges.txt beside it)");
    } else if (fs::exists(merges, ec)) {
        throw Error(vocab_json.string() + ": no such file (merges.txt needs vocab.json beside it)");
    } else if (fs::exists(tok_json, ec)) {
        tok = load_tokenizer_json(tok_json.string());
        tok_file = tok_json.string();
    }
    if (tok && tok->vocab_size() > cfg.vocab_size)
        throw Error(tok_file + ": has " + std::to_string(tok->vocab_size()) +
                    " tokens but config.json vocab_size is " + std::to_string(cfg.vocab_size));
    return tok;
}

}  // namespace

std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, uint64_t seed, const std::string& name,
                                         const std::function<void(int)>& part_done) {
    cfg.validate(name);
    auto m = std::make_unique<Model>();
    m->name = name;
    m->config = cfg;
    m->weights = random_weights(cfg, seed, part_done);
    return m;
}

std::unique_ptr<Model> load_model(const std::string& spec, std::optional<WeightType> weights, const LoadHooks* hooks) {
    if (spec.empty()) {
        const std::string dir = default_model_dir();
        if (dir.empty())
            throw Error("model: none given and the bundled model (assets/models/tiny-gpt) was not found; "
                        "pass --model FOLDER or random:tiny");
        return load_model_folder(dir, weights, hooks);
    }
    if (spec.starts_with("random:")) {
        const RandomSpec r = parse_random_spec(spec);
        // Each tensor's f32 bytes and the part that makes it (random_weights' part_done):
        // 0 what comes before layer 0 (wte and wpe, or embed_tokens), l + 1 layer l, and
        // L + 1 what follows the layers (ticked by finish()).
        std::vector<std::pair<int64_t, int>> tensors;
        auto add = [&](const std::vector<int64_t>& shape, int layer) {
            const int part = layer >= 0 ? layer + 1 : tensors.empty() || tensors.back().second == 0 ? 0 : r.cfg.n_layer + 1;
            tensors.emplace_back(shape[0] * (shape.size() > 1 ? shape[1] : 1) * 4, part);
        };
        if (r.cfg.is_llama())
            for (const auto& t : hf_tensors(r.cfg, nullptr)) add(t.shape, hf_layer_index(t.name));
        else
            for (const auto& t : slots_of(r.cfg, nullptr)) add(t.shape, layer_index(t.name));
        int64_t bytes = 0;
        for (const auto& t : tensors) bytes += t.first;
        LoadTicker ticker(hooks, "model '" + spec + "'", int(tensors.size()), bytes);
        size_t next = 0;
        auto part_done = [&](int part) {
            for (; next < tensors.size() && tensors[next].second <= part; ++next) ticker.tick(tensors[next].first);
        };
        auto m = make_random_model(r.cfg, r.seed, r.name, hooks ? part_done : std::function<void(int)>{});
        if (weights) set_weight_type(m->weights, m->config, *weights);
        ticker.finish();  // ln_f, the head and the held type
        return m;
    }
    std::error_code ec;
    if (fs::is_directory(spec, ec)) return load_model_folder(spec, weights, hooks);
    if (fs::exists(spec, ec)) throw Error("model '" + spec + "': is a file, not a folder (" + kFolderHint + ")");
    throw Error("model '" + spec + "': no such folder (" + kFolderHint + ")");
}

std::unique_ptr<Model> load_model_folder(const std::string& dir, std::optional<WeightType> weights,
                                         const LoadHooks* hooks) {
    const std::string config_path = folder_config(dir);
    const fs::path d(dir);
    const std::string st_path = (d / "model.safetensors").string();
    std::error_code ec;
    if (!fs::exists(st_path, ec)) {
        if (ec && ec != std::errc::no_such_file_or_directory)
            throw Error(st_path + ": cannot open (" + ec.message() + ")");
        if (fs::exists(d / "pytorch_model.bin", ec))
            throw Error(st_path + ": no such file (the folder has only pytorch_model.bin; save it as safetensors)");
        throw Error(st_path + ": no such file (a model folder needs config.json and model.safetensors)");
    }

    auto m = std::make_unique<Model>();
    m->config = read_config_json(config_path);
    try {
        m->weights = read_safetensors(st_path, m->config, weights, hooks);
    } catch (const LoadCancelled&) {
        throw LoadCancelled("model '" + dir + "': loading cancelled");
    }
    m->tokenizer = folder_tokenizer(dir, m->config);
    m->name = folder_name(dir);
    m->path = dir;
    return m;
}

ModelText load_model_text(const std::string& spec) {
    ModelText t;
    if (spec.starts_with("random:")) {
        t.name = parse_random_spec(spec).name;  // random models have no tokenizer
        return t;
    }
    std::string dir = spec;
    if (dir.empty()) {
        dir = default_model_dir();
        if (dir.empty())
            throw Error("model: none given and the bundled model (assets/models/tiny-gpt) was not found; "
                        "pass --model FOLDER or random:tiny");
    }
    std::error_code ec;
    if (!fs::is_directory(dir, ec) && fs::exists(dir, ec))
        throw Error("model '" + dir + "': is a file, not a folder (" + kFolderHint + ")");
    const ModelConfig cfg = read_config_json(folder_config(dir));
    t.tokenizer = folder_tokenizer(dir, cfg);
    t.name = folder_name(dir);
    t.path = dir;
    return t;
}

void save_model_folder(const std::string& dir, const ModelConfig& cfg, const Weights& w, const Tokenizer* tok) {
    check_weights(cfg, w, dir);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(dir + ": cannot create the folder (" + ec.message() + ")");
    const fs::path d(dir);
    write_config_json((d / "config.json").string(), cfg, w.type);
    write_safetensors((d / "model.safetensors").string(), cfg, w);
    if (const auto* wt = dynamic_cast<const WordTokenizer*>(tok)) wt->save((d / "vocab.txt").string());
}

std::string default_model_dir() {
    std::error_code ec;
    auto has_config = [&](const fs::path& p) { return !p.empty() && fs::is_regular_file(p / "config.json", ec); };
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("KVSCOPE_MODEL_DIR"); env && *env) candidates.emplace_back(env);
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && !exe.empty()) {
        const fs::path bin = exe.parent_path();
        candidates.push_back(bin / ".." / "share" / "kvscope" / "models" / "tiny-gpt");
        candidates.push_back(bin / ".." / "assets" / "models" / "tiny-gpt");
        candidates.push_back(bin / ".." / ".." / "assets" / "models" / "tiny-gpt");
    }
#ifdef KVSCOPE_SOURCE_ASSETS
    candidates.emplace_back(KVSCOPE_SOURCE_ASSETS "/models/tiny-gpt");
#endif
#ifdef KVSCOPE_INSTALL_DATADIR
    candidates.emplace_back(KVSCOPE_INSTALL_DATADIR "/models/tiny-gpt");
#endif
    for (const auto& c : candidates)
        if (has_config(c)) return c.lexically_normal().string();
    return "";
}

}  // namespace kv
