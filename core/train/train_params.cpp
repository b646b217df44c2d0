// The trainer's parameters and buffers: param_layout() (where each GPT-2 tensor sits
// in the one flat buffer), GptTrainer's constructor, which allocates that buffer, its
// gradients and every saved activation for a B x T batch, and the copies between the
// flat buffer and the engine's Weights. The forward and backward passes are in
// train_forward.cpp and train_backward.cpp.
// Notation (train.h): B batch rows, T sequence length, C n_embd, V vocab, H heads,
// Q = C + 2*kv_dim (c_attn width), N = B*T.
#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

namespace {

// Pointers to the tensors of a Weights in param_layout() order.
std::vector<float*> weight_pointers(Weights& w) {
    std::vector<float*> p = {w.wte.data(), w.wpe.data()};
    for (auto& l : w.layers) {
        for (float* q : {l.ln_1_w.data(), l.ln_1_b.data(), l.attn_w.data(), l.attn_b.data(),
                         l.attn_proj_w.data(), l.attn_proj_b.data(), l.ln_2_w.data(), l.ln_2_b.data(),
                         l.fc_w.data(), l.fc_b.data(), l.mlp_proj_w.data(), l.mlp_proj_b.data()})
            p.push_back(q);
    }
    p.push_back(w.ln_f_w.data());
    p.push_back(w.ln_f_b.data());
    return p;
}

}  // namespace

std::vector<ParamTensor> param_layout(const ModelConfig& cfg) {
    const int V = cfg.vocab_size, C = cfg.n_embd, Q = cfg.qkv_dim();
    std::vector<ParamTensor> out;
    int64_t off = 0;
    auto add = [&](std::string name, int rows, int cols, bool decay) {
        out.push_back({std::move(name), off, rows, cols, decay});
        off += int64_t(rows) * cols;
    };
    add("wte.weight", V, C, true);
    add("wpe.weight", cfg.n_ctx, C, true);
    for (int l = 0; l < cfg.n_layer; ++l) {
        const std::string h = "h." + std::to_string(l) + ".";
        add(h + "ln_1.weight", 1, C, false);
        add(h + "ln_1.bias", 1, C, false);
        add(h + "attn.c_attn.weight", C, Q, true);
        add(h + "attn.c_attn.bias", 1, Q, false);
        add(h + "attn.c_proj.weight", C, C, true);
        add(h + "attn.c_proj.bias", 1, C, false);
        add(h + "ln_2.weight", 1, C, false);
        add(h + "ln_2.bias", 1, C, false);
        add(h + "mlp.c_fc.weight", C, 4 * C, true);
        add(h + "mlp.c_fc.bias", 1, 4 * C, false);
        add(h + "mlp.c_proj.weight", 4 * C, C, true);
        add(h + "mlp.c_proj.bias", 1, C, false);
    }
    add("ln_f.weight", 1, C, false);
    add("ln_f.bias", 1, C, false);
    return out;
}

template <class R>
GptTrainer<R>::GptTrainer(const ModelConfig& cfg, int B, int T) : cfg_(cfg), B_(B), T_(T) {
    cfg_.validate("trainer config");
    if (!cfg_.tied_head) throw Error("trainer config: only tied heads (lm_head = wte) can be trained");
    if (B <= 0 || T <= 0 || T > cfg_.n_ctx)
        throw Error("trainer: batch " + std::to_string(B) + " x " + std::to_string(T) +
                    " must be positive with T <= n_ctx " + std::to_string(cfg_.n_ctx));
    layout_ = param_layout(cfg_);
    const int64_t n = layout_.back().offset + layout_.back().size();
    params_.assign(n, R(0));
    grads_.assign(n, R(0));
    const int64_t N = int64_t(B) * T, C = cfg_.n_embd, V = cfg_.vocab_size, Q = cfg_.qkv_dim(), H = cfg_.n_head;
    acts_ = std::make_unique<Acts>();
    Acts& a = *acts_;
    a.encoded.resize(N * C);
    a.layers.resize(cfg_.n_layer);
    for (auto& l : a.layers) {
        l.ln1.resize(N * C);
        l.ln1_mean.resize(N);
        l.ln1_rstd.resize(N);
        l.qkv.resize(N * Q);
        l.att.resize(N * H * T);
        l.atty.resize(N * C);
        l.res2.resize(N * C);
        l.ln2.resize(N * C);
        l.ln2_mean.resize(N);
        l.ln2_rstd.resize(N);
        l.fch.resize(N * 4 * C);
        l.fch_gelu.resize(N * 4 * C);
        l.res3.resize(N * C);
    }
    a.lnf.resize(N * C);
    a.lnf_mean.resize(N);
    a.lnf_rstd.resize(N);
    a.logits.resize(N * V);
    a.probs.resize(N * V);
    a.losses.resize(N);
    a.dres.resize(N * C);
    a.dln.resize(N * C);
    a.dqkv.resize(N * Q);
    a.datty.resize(N * C);
    a.dgelu.resize(N * 4 * C);
    a.dfch.resize(N * 4 * C);
    a.dlogits.resize(N * V);
    a.datt_row.resize(T);
}

template <class R>
GptTrainer<R>::~GptTrainer() = default;
template <class R>
GptTrainer<R>::GptTrainer(GptTrainer&&) noexcept = default;
template <class R>
GptTrainer<R>& GptTrainer<R>::operator=(GptTrainer&&) noexcept = default;

template <class R>
void GptTrainer<R>::set_weights(const Weights& w) {
    check_weights(cfg_, w, "trainer weights");
    auto ptrs = weight_pointers(const_cast<Weights&>(w));
    for (size_t i = 0; i < layout_.size(); ++i)
        std::copy(ptrs[i], ptrs[i] + layout_[i].size(), params_.begin() + layout_[i].offset);
}

template <class R>
Weights GptTrainer<R>::weights() const {
    Weights w = allocate_weights(cfg_);
    auto ptrs = weight_pointers(w);
    for (size_t i = 0; i < layout_.size(); ++i) {
        const R* src = params_.data() + layout_[i].offset;
        for (int64_t k = 0; k < layout_[i].size(); ++k) ptrs[i][k] = float(src[k]);
    }
    return w;
}

template <class R>
std::span<const R> GptTrainer<R>::logits() const {
    return {acts_->logits.data(), size_t(acts_->b) * acts_->t * cfg_.vocab_size};
}

// The forward and backward passes are instantiated in their own files.
template class GptTrainer<float>;
template class GptTrainer<double>;

}  // namespace kv
