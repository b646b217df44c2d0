#include "core/model/weights.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/model/safetensors.h"
#include "core/rng.h"

namespace kv {

// ---------------------------------------------------------------- weight types

const char* weight_type_name(WeightType t) {
    return t == WeightType::f16 ? "f16" : t == WeightType::bf16 ? "bf16" : "f32";
}

std::optional<WeightType> parse_weight_type(std::string_view s) {
    if (s == "f32") return WeightType::f32;
    if (s == "f16") return WeightType::f16;
    if (s == "bf16") return WeightType::bf16;
    return std::nullopt;
}

void widen_16(WeightType t, const uint16_t* src, float* dst, int64_t n) {
    if (t == WeightType::bf16)
        for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
    else
        for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

float round_to(WeightType t, float v) {
    if (t == WeightType::f16) return half_to_float(float_to_half(v));
    if (t == WeightType::bf16) return bf16_to_float(float_to_bf16(v));
    return v;
}

Mat16 Mat16::round(const float* src, int64_t rows, int64_t cols, WeightType type, const std::string& name) {
    if (type == WeightType::f16)
        for (int64_t i = 0; i < rows * cols; ++i)
            if (std::abs(src[i]) >= 65520.0f)
                throw Error(name + ": value " + std::to_string(src[i]) + " at element " + std::to_string(i) +
                            " overflows f16 (largest 65504); use --weights bf16 or f32");
    auto buf = std::make_shared<std::vector<uint16_t>>(size_t(rows * cols));
    uint16_t* d = buf->data();
    if (type == WeightType::bf16)
        for (int64_t i = 0; i < rows * cols; ++i) d[i] = float_to_bf16(src[i]);
    else
        for (int64_t i = 0; i < rows * cols; ++i) d[i] = float_to_half(src[i]);
    Mat16 m;
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    m.data = d;
    m.owner = std::move(buf);
    return m;
}

void Mat16::widen_row(int64_t r, float* out) const { widen_16(type, row(r), out, cols); }
void Mat16::widen(float* out) const { widen_16(type, data, out, size()); }

void Weights::token_row(int id, float* out) const {
    if (type == WeightType::f32)
        std::copy_n(wte.row(id).data(), wte.cols(), out);
    else
        wte16.widen_row(id, out);
}

void Weights::require_f32(const std::string& what) const {
    if (type != WeightType::f32)
        throw Error(what + " needs f32 weights, but they are held in " + weight_type_name(type) +
                    " (use --weights f32)");
}

std::vector<MatrixRef> weight_matrices(Weights& w, const ModelConfig& cfg) {
    const bool llama = cfg.is_llama();
    std::vector<MatrixRef> v = {{&w.wte, &w.wte16, llama ? "model.embed_tokens.weight" : "wte.weight"}};
    for (size_t i = 0; i < w.layers.size(); ++i) {
        auto& l = w.layers[i];
        if (llama) {
            const std::string h = "model.layers." + std::to_string(i) + ".";
            const char* first = !cfg.is_mla()               ? "self_attn.{q,k,v}_proj.weight"
                                : cfg.mla.q_lora_rank > 0 ? "self_attn.{q_a_proj,kv_a_proj_with_mqa}.weight"
                                                          : "self_attn.{q_proj,kv_a_proj_with_mqa}.weight";
            v.push_back({&l.attn_w, &l.attn_w16, h + first});
            v.push_back({&l.attn_proj_w, &l.attn_proj_w16, h + "self_attn.o_proj.weight"});
            v.push_back({&l.fc_w, &l.fc_w16, h + "mlp.{gate,up}_proj.weight"});
            v.push_back({&l.mlp_proj_w, &l.mlp_proj_w16, h + "mlp.down_proj.weight"});
            continue;
        }
        const std::string h = "h." + std::to_string(i) + ".";
        v.push_back({&l.attn_w, &l.attn_w16, h + "attn.c_attn.weight"});
        v.push_back({&l.attn_proj_w, &l.attn_proj_w16, h + "attn.c_proj.weight"});
        v.push_back({&l.fc_w, &l.fc_w16, h + "mlp.c_fc.weight"});
        v.push_back({&l.mlp_proj_w, &l.mlp_proj_w16, h + "mlp.c_proj.weight"});
    }
    if (!cfg.tied_head) v.push_back({&w.lm_head, &w.lm_head16, "lm_head.weight"});
    if (cfg.is_mla())
        for (size_t i = 0; i < w.layers.size(); ++i) {
            auto& l = w.layers[i];
            const std::string h = "model.layers." + std::to_string(i) + ".self_attn.";
            if (cfg.mla.q_lora_rank > 0) v.push_back({&l.q_b_w, &l.q_b_w16, h + "q_b_proj.weight"});
            v.push_back({&l.kv_b_w, &l.kv_b_w16, h + "kv_b_proj.weight"});
        }
    return v;
}

int64_t Weights::bytes() const {
    int64_t n = 0;
    auto f = [&](const auto& m) { n += int64_t(m.size()) * int64_t(sizeof(float)); };
    auto h = [&](const Mat16& m) { n += m.size() * 2; };
    f(wte), f(wpe), f(ln_f_w), f(ln_f_b), f(lm_head), h(wte16), h(lm_head16);
    for (const auto& l : layers) {
        f(l.ln_1_w), f(l.ln_1_b), f(l.attn_w), f(l.attn_b), f(l.attn_proj_w), f(l.attn_proj_b);
        f(l.ln_2_w), f(l.ln_2_b), f(l.fc_w), f(l.fc_b), f(l.mlp_proj_w), f(l.mlp_proj_b);
        h(l.attn_w16), h(l.attn_proj_w16), h(l.fc_w16), h(l.mlp_proj_w16);
        f(l.q_a_norm_w), f(l.q_b_w), f(l.kv_norm_w), f(l.kv_b_w), h(l.q_b_w16), h(l.kv_b_w16);
    }
    return n;
}

void set_weight_type(Weights& w, const ModelConfig& cfg, WeightType t) {
    if (t == w.type) return;
    for (auto& p : weight_matrices(w, cfg)) {
        if (w.type != WeightType::f32) {  // widen first
            *p.f32 = RowMat(p.h16->rows, p.h16->cols);
            p.h16->widen(p.f32->data());
            *p.h16 = Mat16{};
        }
        if (t == WeightType::f32) continue;
        *p.h16 = Mat16::round(p.f32->data(), p.f32->rows(), p.f32->cols(), t, p.name);
        *p.f32 = RowMat();
    }
    w.type = t;
}

Weights allocate_weights(const ModelConfig& cfg, WeightType held) {
    const int C = cfg.n_embd, Q = cfg.qkv_dim(), Qd = cfg.q_dim(), FC = cfg.fc_dim(), FF = cfg.ff_dim();
    const int O = cfg.o_dim(), Cb = cfg.is_llama() ? 0 : C;  // LayerNorm biases (none in RMSNorm)
    const int dq = cfg.is_mla() ? cfg.mla.q_lora_rank : 0, dc = cfg.is_mla() ? cfg.mla.kv_lora_rank : 0;
    const int kvb = cfg.is_mla() ? cfg.n_head * (cfg.mla.qk_nope_head_dim + cfg.mla.v_head_dim) : 0;
    const bool mats = held == WeightType::f32;
    auto mat = [&](int64_t r, int64_t c) { return mats ? RowMat(RowMat::Zero(r, c)) : RowMat(); };
    Weights w;
    w.type = held;
    w.wte = mat(cfg.vocab_size, C);
    w.wpe = RowMat::Zero(cfg.is_llama() ? 0 : cfg.n_ctx, C);
    w.layers.resize(cfg.n_layer);
    for (auto& l : w.layers) {
        l.ln_1_w = RowVec::Zero(C);
        l.ln_1_b = RowVec::Zero(Cb);
        l.attn_w = mat(C, Q);
        l.attn_b = RowVec::Zero(Q);
        l.attn_proj_w = mat(O, C);
        l.attn_proj_b = RowVec::Zero(C);
        l.ln_2_w = RowVec::Zero(C);
        l.ln_2_b = RowVec::Zero(Cb);
        l.fc_w = mat(C, FC);
        l.fc_b = RowVec::Zero(FC);
        l.mlp_proj_w = mat(FF, C);
        l.mlp_proj_b = RowVec::Zero(C);
        l.q_a_norm_w = RowVec::Zero(dq);
        l.q_b_w = dq > 0 ? mat(dq, Qd) : RowMat();
        l.kv_norm_w = RowVec::Zero(dc);
        l.kv_b_w = dc > 0 ? mat(dc, kvb) : RowMat();
    }
    w.ln_f_w = RowVec::Zero(C);
    w.ln_f_b = RowVec::Zero(Cb);
    if (!cfg.tied_head) w.lm_head = mat(cfg.vocab_size, C);
    return w;
}

namespace {

struct Rng : SplitMix64 {
    float uniform() { return float((next() >> 40) * (1.0 / 16777216.0)); }  // [0, 1)
    // Irwin-Hall approximation of N(0,1): sum of 4 uniforms, rescaled (cheap, smooth).
    float normal() {
        const float s4 = uniform() + uniform() + uniform() + uniform();
        return (s4 - 2.0f) * 1.7320508f;
    }
};

void fill_normal(float* p, int64_t n, float std, Rng& rng) {
    for (int64_t i = 0; i < n; ++i) p[i] = std * rng.normal();
}

}  // namespace

Weights random_weights(const ModelConfig& cfg, uint64_t seed, const std::function<void(int)>& part_done) {
    Weights w = allocate_weights(cfg);
    Rng rng{seed * 0x2545F4914F6CDD1DULL + 12345};
    const float std = 0.02f;
    const float proj_std = std / std::sqrt(2.0f * cfg.n_layer);
    fill_normal(w.wte.data(), w.wte.size(), std, rng);
    fill_normal(w.wpe.data(), w.wpe.size(), 0.01f, rng);
    if (part_done) part_done(0);
    int part = 0;
    for (auto& l : w.layers) {
        l.ln_1_w.setOnes();
        l.ln_2_w.setOnes();
        const bool gpt2 = !cfg.is_llama();
        fill_normal(l.attn_w.data(), l.attn_w.size(), std, rng);
        if (gpt2 || cfg.qkv_bias) fill_normal(l.attn_b.data(), l.attn_b.size(), std, rng);
        fill_normal(l.attn_proj_w.data(), l.attn_proj_w.size(), proj_std, rng);
        if (cfg.o_bias) fill_normal(l.attn_proj_b.data(), l.attn_proj_b.size(), std, rng);
        fill_normal(l.fc_w.data(), l.fc_w.size(), std, rng);
        if (gpt2) fill_normal(l.fc_b.data(), l.fc_b.size(), std, rng);
        fill_normal(l.mlp_proj_w.data(), l.mlp_proj_w.size(), proj_std, rng);
        l.q_a_norm_w.setOnes();
        l.kv_norm_w.setOnes();
        fill_normal(l.q_b_w.data(), l.q_b_w.size(), std, rng);
        fill_normal(l.kv_b_w.data(), l.kv_b_w.size(), std, rng);
        if (part_done) part_done(++part);
    }
    w.ln_f_w.setOnes();
    if (!cfg.tied_head) fill_normal(w.lm_head.data(), w.lm_head.size(), std, rng);
    return w;
}

namespace {

// The index of the first value with all exponent bits set (Inf or NaN), or -1. Every
// value of every matrix is checked at load, so the scan runs in blocks whose inner
// loop has no early exit and vectorizes; only a block with a hit is searched again.
template <class U>
int64_t first_non_finite(const U* p, int64_t n, U exponent) {
    constexpr int64_t kBlock = 4096;
    for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t end = std::min(n, b + kBlock);
        unsigned hit = 0;
        for (int64_t i = b; i < end; ++i) hit |= unsigned((p[i] & exponent) == exponent);
        if (!hit) continue;
        for (int64_t i = b; i < end; ++i)
            if ((p[i] & exponent) == exponent) return i;
    }
    return -1;
}

template <class M>
void check_tensor(const M& t, int64_t rows, int64_t cols, const std::string& where, const std::string& name) {
    if (t.rows() != rows || t.cols() != cols)
        throw Error(where + ": tensor " + name + " has shape [" + std::to_string(t.rows()) + ", " +
                    std::to_string(t.cols()) + "], expected [" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "]");
    const float* p = t.data();
    const int64_t i = first_non_finite(reinterpret_cast<const uint32_t*>(p), t.size(), 0x7f800000u);
    if (i >= 0)
        throw Error(where + ": tensor " + name + " holds a non-finite value (" + std::to_string(p[i]) +
                    ") at element " + std::to_string(i));
}

void check_tensor16(const Mat16& t, int64_t rows, int64_t cols, const std::string& where, const std::string& name) {
    if (t.rows != rows || t.cols != cols || !t.data)
        throw Error(where + ": tensor " + name + " has shape [" + std::to_string(t.rows) + ", " +
                    std::to_string(t.cols) + "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    // Inf/NaN: all exponent bits set (f16: 0x7c00, bf16: 0x7f80).
    const uint16_t e = t.type == WeightType::bf16 ? 0x7f80u : 0x7c00u;
    const int64_t i = first_non_finite(t.data, t.size(), e);
    if (i >= 0) throw Error(where + ": tensor " + name + " holds a non-finite value at element " + std::to_string(i));
}

template <class M>
void check_matrix(const Weights& w, const M& f, const Mat16& h, int64_t rows, int64_t cols, const std::string& where,
                  const std::string& name) {
    if (w.type == WeightType::f32) return check_tensor(f, rows, cols, where, name);
    if (h.type != w.type) throw Error(where + ": tensor " + name + " is not held in " + weight_type_name(w.type));
    check_tensor16(h, rows, cols, where, name);
}

// MLA's own tensors: the norms, then q_b_proj and kv_b_proj (weight_matrices' tail).
void check_mla_weights(const ModelConfig& cfg, const Weights& w, const std::vector<MatrixRef>& mats,
                       const std::string& where) {
    const int dq = cfg.mla.q_lora_rank, dc = cfg.mla.kv_lora_rank;
    const int kvb = cfg.n_head * (cfg.mla.qk_nope_head_dim + cfg.mla.v_head_dim);
    size_t m = mats.size() - size_t(cfg.n_layer) * (dq > 0 ? 2 : 1);
    for (int i = 0; i < cfg.n_layer; ++i) {
        const auto& l = w.layers[size_t(i)];
        const std::string h = "model.layers." + std::to_string(i) + ".self_attn.";
        check_tensor(l.q_a_norm_w, 1, dq, where, h + "q_a_layernorm.weight");
        check_tensor(l.kv_norm_w, 1, dc, where, h + "kv_a_layernorm.weight");
        if (dq > 0) check_matrix(w, l.q_b_w, l.q_b_w16, dq, cfg.q_dim(), where, mats[m++].name);
        check_matrix(w, l.kv_b_w, l.kv_b_w16, dc, kvb, where, mats[m++].name);
    }
}

}  // namespace

void check_weights(const ModelConfig& cfg, const Weights& w, const std::string& where) {
    const int C = cfg.n_embd, Q = cfg.qkv_dim(), O = cfg.o_dim(), FC = cfg.fc_dim(), FF = cfg.ff_dim();
    const bool llama = cfg.is_llama();
    const int Cb = llama ? 0 : C;  // LayerNorm biases (none in RMSNorm)
    // The matrices' names as weight_matrices gives them (GPT-2 or Hugging Face Llama names).
    auto& mw = const_cast<Weights&>(w);  // weight_matrices hands out pointers; checking only reads
    const std::vector<MatrixRef> mats = weight_matrices(mw, cfg);
    check_matrix(w, w.wte, w.wte16, cfg.vocab_size, C, where, mats[0].name);
    check_tensor(w.wpe, llama ? 0 : cfg.n_ctx, C, where, "wpe.weight");
    if (int(w.layers.size()) != cfg.n_layer)
        throw Error(where + ": has " + std::to_string(w.layers.size()) + " layers, config says " +
                    std::to_string(cfg.n_layer));
    for (int i = 0; i < cfg.n_layer; ++i) {
        const auto& l = w.layers[i];
        const std::string h = (llama ? "model.layers." : "h.") + std::to_string(i) + ".";
        auto name = [&](int k) { return mats[size_t(1 + 4 * i + k)].name; };  // k: attn, proj, fc, mlp proj
        check_tensor(l.ln_1_w, 1, C, where, h + (llama ? "input_layernorm.weight" : "ln_1.weight"));
        check_tensor(l.ln_1_b, 1, Cb, where, h + "ln_1.bias");
        check_matrix(w, l.attn_w, l.attn_w16, C, Q, where, name(0));
        check_tensor(l.attn_b, 1, Q, where, h + (llama ? "self_attn.{q,k,v}_proj.bias" : "attn.c_attn.bias"));
        check_matrix(w, l.attn_proj_w, l.attn_proj_w16, O, C, where, name(1));
        check_tensor(l.attn_proj_b, 1, C, where, h + (llama ? "self_attn.o_proj.bias" : "attn.c_proj.bias"));
        check_tensor(l.ln_2_w, 1, C, where, h + (llama ? "post_attention_layernorm.weight" : "ln_2.weight"));
        check_tensor(l.ln_2_b, 1, Cb, where, h + "ln_2.bias");
        check_matrix(w, l.fc_w, l.fc_w16, C, FC, where, name(2));
        check_tensor(l.fc_b, 1, FC, where, h + "mlp.c_fc.bias");
        check_matrix(w, l.mlp_proj_w, l.mlp_proj_w16, FF, C, where, name(3));
        check_tensor(l.mlp_proj_b, 1, C, where, h + "mlp.c_proj.bias");
    }
    check_tensor(w.ln_f_w, 1, C, where, llama ? "model.norm.weight" : "ln_f.weight");
    check_tensor(w.ln_f_b, 1, Cb, where, "ln_f.bias");
    if (!cfg.tied_head) check_matrix(w, w.lm_head, w.lm_head16, cfg.vocab_size, C, where, "lm_head.weight");
    if (cfg.is_mla()) check_mla_weights(cfg, w, mats, where);
}

}  // namespace kv
