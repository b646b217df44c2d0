#include "core/model/weights.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/rng.h"

namespace kv {

Weights allocate_weights(const ModelConfig& cfg) {
    const int C = cfg.n_embd, Q = cfg.qkv_dim();
    Weights w;
    w.wte = RowMat::Zero(cfg.vocab_size, C);
    w.wpe = RowMat::Zero(cfg.n_ctx, C);
    w.layers.resize(cfg.n_layer);
    for (auto& l : w.layers) {
        l.ln_1_w = RowVec::Zero(C);
        l.ln_1_b = RowVec::Zero(C);
        l.attn_w = RowMat::Zero(C, Q);
        l.attn_b = RowVec::Zero(Q);
        l.attn_proj_w = RowMat::Zero(C, C);
        l.attn_proj_b = RowVec::Zero(C);
        l.ln_2_w = RowVec::Zero(C);
        l.ln_2_b = RowVec::Zero(C);
        l.fc_w = RowMat::Zero(C, 4 * C);
        l.fc_b = RowVec::Zero(4 * C);
        l.mlp_proj_w = RowMat::Zero(4 * C, C);
        l.mlp_proj_b = RowVec::Zero(C);
    }
    w.ln_f_w = RowVec::Zero(C);
    w.ln_f_b = RowVec::Zero(C);
    if (!cfg.tied_head) w.lm_head = RowMat::Zero(cfg.vocab_size, C);
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

Weights random_weights(const ModelConfig& cfg, uint64_t seed) {
    Weights w = allocate_weights(cfg);
    Rng rng{seed * 0x2545F4914F6CDD1DULL + 12345};
    const float std = 0.02f;
    const float proj_std = std / std::sqrt(2.0f * cfg.n_layer);
    fill_normal(w.wte.data(), w.wte.size(), std, rng);
    fill_normal(w.wpe.data(), w.wpe.size(), 0.01f, rng);
    for (auto& l : w.layers) {
        l.ln_1_w.setOnes();
        l.ln_2_w.setOnes();
        fill_normal(l.attn_w.data(), l.attn_w.size(), std, rng);
        fill_normal(l.attn_b.data(), l.attn_b.size(), std, rng);
        fill_normal(l.attn_proj_w.data(), l.attn_proj_w.size(), proj_std, rng);
        fill_normal(l.fc_w.data(), l.fc_w.size(), std, rng);
        fill_normal(l.fc_b.data(), l.fc_b.size(), std, rng);
        fill_normal(l.mlp_proj_w.data(), l.mlp_proj_w.size(), proj_std, rng);
    }
    w.ln_f_w.setOnes();
    if (!cfg.tied_head) fill_normal(w.lm_head.data(), w.lm_head.size(), std, rng);
    return w;
}

namespace {

template <class M>
void check_tensor(const M& t, int64_t rows, int64_t cols, const std::string& where, const std::string& name) {
    if (t.rows() != rows || t.cols() != cols)
        throw Error(where + ": tensor " + name + " has shape [" + std::to_string(t.rows()) + ", " +
                    std::to_string(t.cols()) + "], expected [" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "]");
    const float* p = t.data();
    for (int64_t i = 0; i < t.size(); ++i)
        if (!std::isfinite(p[i]))
            throw Error(where + ": tensor " + name + " holds a non-finite value (" + std::to_string(p[i]) +
                        ") at element " + std::to_string(i));
}

}  // namespace

void check_weights(const ModelConfig& cfg, const Weights& w, const std::string& where) {
    const int C = cfg.n_embd, Q = cfg.qkv_dim();
    check_tensor(w.wte, cfg.vocab_size, C, where, "wte.weight");
    check_tensor(w.wpe, cfg.n_ctx, C, where, "wpe.weight");
    if (int(w.layers.size()) != cfg.n_layer)
        throw Error(where + ": has " + std::to_string(w.layers.size()) + " layers, config says " +
                    std::to_string(cfg.n_layer));
    for (int i = 0; i < cfg.n_layer; ++i) {
        const auto& l = w.layers[i];
        const std::string h = "h." + std::to_string(i) + ".";
        check_tensor(l.ln_1_w, 1, C, where, h + "ln_1.weight");
        check_tensor(l.ln_1_b, 1, C, where, h + "ln_1.bias");
        check_tensor(l.attn_w, C, Q, where, h + "attn.c_attn.weight");
        check_tensor(l.attn_b, 1, Q, where, h + "attn.c_attn.bias");
        check_tensor(l.attn_proj_w, C, C, where, h + "attn.c_proj.weight");
        check_tensor(l.attn_proj_b, 1, C, where, h + "attn.c_proj.bias");
        check_tensor(l.ln_2_w, 1, C, where, h + "ln_2.weight");
        check_tensor(l.ln_2_b, 1, C, where, h + "ln_2.bias");
        check_tensor(l.fc_w, C, 4 * C, where, h + "mlp.c_fc.weight");
        check_tensor(l.fc_b, 1, 4 * C, where, h + "mlp.c_fc.bias");
        check_tensor(l.mlp_proj_w, 4 * C, C, where, h + "mlp.c_proj.weight");
        check_tensor(l.mlp_proj_b, 1, C, where, h + "mlp.c_proj.bias");
    }
    check_tensor(w.ln_f_w, 1, C, where, "ln_f.weight");
    check_tensor(w.ln_f_b, 1, C, where, "ln_f.bias");
    if (!cfg.tied_head) check_tensor(w.lm_head, cfg.vocab_size, C, where, "lm_head.weight");
}

}  // namespace kv
