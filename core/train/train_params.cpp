// The trainer's parameters and buffers: param_layout() (where each tensor of either
// family sits in the one flat buffer), Trainer's constructor, which allocates that
// buffer, its gradients and every saved activation for a B x T batch (and the RoPE
// table of a Llama), the initial weights, and the copies between the flat buffer and
// the engine's Weights (GPT-2) or a safetensors file (either family). The forward
// and backward passes are in train_forward.cpp and train_backward.cpp.
// Notation (train.h): B batch rows, T sequence length, C n_embd, V vocab, H heads,
// hd head size, Dq = H*hd, kvd = kv_dim, Q = Dq + 2*kvd, F n_ff, N = B*T; MLA's
// d_c, d_R, Do, Dkv, E as in train_internal.h.
#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/rng.h"
#include "core/model/safetensors.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

using namespace train_detail;  // the layout helpers

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

// Llama names as LlamaForCausalLM's state_dict has them (modeling_llama.py); MLA's
// attention as DeepseekV3ForCausalLM's (modeling_deepseek_v3.py).
std::vector<ParamTensor> llama_layout(const ModelConfig& cfg) {
    const int V = cfg.vocab_size, C = cfg.n_embd, Dq = cfg.q_dim(), kvd = cfg.kv_dim(), F = cfg.n_ff;
    const int dc = cfg.mla.kv_lora_rank, dR = cfg.mla.qk_rope_head_dim, dq = cfg.mla.q_lora_rank;
    std::vector<ParamTensor> out;
    int64_t off = 0;
    auto add = [&](std::string name, int rows, int cols, bool decay) {
        out.push_back({std::move(name), off, rows, cols, decay});
        off += int64_t(rows) * cols;
    };
    add("model.embed_tokens.weight", V, C, true);
    for (int l = 0; l < cfg.n_layer; ++l) {
        const std::string h = "model.layers." + std::to_string(l) + ".";
        add(h + "input_layernorm.weight", 1, C, false);
        if (cfg.is_mla()) {  // q_proj (or q_a_proj), kv_a_proj_with_mqa: one (Q, C) matrix
            if (dq > 0)
                add(h + "self_attn.q_a_proj.weight", dq, C, true);
            else
                add(h + "self_attn.q_proj.weight", Dq, C, true);
            add(h + "self_attn.kv_a_proj_with_mqa.weight", dc + dR, C, true);
            if (dq > 0) {
                add(h + "self_attn.q_a_layernorm.weight", 1, dq, false);
                add(h + "self_attn.q_b_proj.weight", Dq, dq, true);
            }
            add(h + "self_attn.kv_a_layernorm.weight", 1, dc, false);
            add(h + "self_attn.kv_b_proj.weight", mla_kv_dim(cfg), dc, true);
        } else {
            add(h + "self_attn.q_proj.weight", Dq, C, true);  // q, k, v back to back: one (Q, C) matrix
            add(h + "self_attn.k_proj.weight", kvd, C, true);
            add(h + "self_attn.v_proj.weight", kvd, C, true);
        }
        add(h + "self_attn.o_proj.weight", C, cfg.o_dim(), true);
        add(h + "post_attention_layernorm.weight", 1, C, false);
        add(h + "mlp.gate_proj.weight", F, C, true);  // gate, up back to back: one (2F, C) matrix
        add(h + "mlp.up_proj.weight", F, C, true);
        add(h + "mlp.down_proj.weight", C, F, true);
    }
    add("model.norm.weight", 1, C, false);
    return out;
}

// RoPE's (T, rd/2) cos and sin tables, rd = rope_dim() (hd, or MLA's d_R).
// transformers: freqs = inv_freq (f32) * pos (f32), then cos and sin of that f32 angle.
template <class R>
void rope_tables(TrainBuf<R>& cos_t, TrainBuf<R>& sin_t, const ModelConfig& cfg, int T) {
    const std::vector<float> inv_freq = rope_inv_freq(cfg.rope_dim(), cfg.rope);
    const int half = cfg.rope_dim() / 2;
    cos_t.resize(int64_t(T) * half);
    sin_t.resize(int64_t(T) * half);
    for (int p = 0; p < T; ++p)
        for (int i = 0; i < half; ++i) {
            const R angle = R(float(p) * inv_freq[size_t(i)]);
            cos_t[int64_t(p) * half + i] = std::cos(angle);
            sin_t[int64_t(p) * half + i] = std::sin(angle);
        }
}

}  // namespace

std::vector<ParamTensor> param_layout(const ModelConfig& cfg) {
    if (cfg.is_llama()) return llama_layout(cfg);
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
Trainer<R>::Trainer(const ModelConfig& cfg, int B, int T) : cfg_(cfg), B_(B), T_(T) {
    cfg_.validate("trainer config");
    if (!cfg_.tied_head) throw Error("trainer config: only tied heads (lm_head = wte) can be trained");
    if (cfg_.is_llama() && (cfg_.qkv_bias || cfg_.o_bias))
        throw Error("trainer config: a Llama with attention biases cannot be trained (the trainer's Llama has none)");
    if (B <= 0 || T <= 0 || T > cfg_.n_ctx)
        throw Error("trainer: batch " + std::to_string(B) + " x " + std::to_string(T) +
                    " must be positive with T <= n_ctx " + std::to_string(cfg_.n_ctx));
    layout_ = param_layout(cfg_);
    const int64_t n = layout_.back().offset + layout_.back().size();
    params_.assign(n, R(0));
    grads_.assign(n, R(0));
    const int64_t N = int64_t(B) * T, C = cfg_.n_embd, V = cfg_.vocab_size, Q = cfg_.qkv_dim(), H = cfg_.n_head,
                  Do = cfg_.o_dim(), M = mlp_hidden(cfg_), Min = mlp_in(cfg_);
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
        l.atty.resize(N * Do);
        l.res2.resize(N * C);
        l.ln2.resize(N * C);
        l.ln2_mean.resize(N);
        l.ln2_rstd.resize(N);
        l.fch.resize(N * Min);
        l.fch_act.resize(N * M);
        l.res3.resize(N * C);
    }
    if (cfg_.is_mla()) allocate_mla(a, N);
    if (cfg_.is_llama()) rope_tables(a.rope_cos, a.rope_sin, cfg_, T);
    a.lnf.resize(N * C);
    a.lnf_mean.resize(N);
    a.lnf_rstd.resize(N);
    a.logits.resize(N * V);
    a.probs.resize(N * V);
    a.losses.resize(N);
    a.dres.resize(N * C);
    a.dln.resize(N * C);
    a.dqkv.resize(N * Q);
    a.datty.resize(N * Do);
    a.dact.resize(N * M);
    a.dfch.resize(N * Min);
    a.dlogits.resize(N * V);
    a.datt_row.resize(T);
}

// MLA's saved activations and their gradients' scratch, for N rows.
template <class R>
void Trainer<R>::allocate_mla(Acts& a, int64_t N) {
    const int64_t dc = cfg_.mla.kv_lora_rank, Dkv = mla_kv_dim(cfg_), E = mla_expanded_dim(cfg_);
    for (auto& l : a.layers) {
        l.kv_lat.resize(N * dc);
        l.kv_rstd.resize(N);
        l.kv_c.resize(N * dc);
        l.kv.resize(N * Dkv);
        l.qkve.resize(N * E);
    }
    a.dqkve.resize(N * E);
    a.dkv.resize(N * Dkv);
    a.dkv_c.resize(N * dc);
    a.dkv_lat.resize(N * dc);
    if (!mla_q_lora(cfg_)) return;
    const int64_t dq = cfg_.mla.q_lora_rank, Dq = cfg_.q_dim();
    for (auto& l : a.layers) {
        l.q_lat.resize(N * dq);
        l.q_rstd.resize(N);
        l.q_c.resize(N * dq);
        l.q.resize(N * Dq);
    }
    a.dq.resize(N * Dq);
    a.dq_c.resize(N * dq);
    a.dq_lat.resize(N * dq);
}

template <class R>
Trainer<R>::~Trainer() = default;
template <class R>
Trainer<R>::Trainer(Trainer&&) noexcept = default;
template <class R>
Trainer<R>& Trainer<R>::operator=(Trainer&&) noexcept = default;

template <class R>
void Trainer<R>::set_weights(const Weights& w) {
    if (cfg_.is_llama())
        throw Error("trainer: Weights hold GPT-2 tensors; a Llama trainer starts from init_random or read_safetensors");
    check_weights(cfg_, w, "trainer weights");
    auto ptrs = weight_pointers(const_cast<Weights&>(w));
    for (size_t i = 0; i < layout_.size(); ++i)
        std::copy(ptrs[i], ptrs[i] + layout_[i].size(), params_.begin() + layout_[i].offset);
}

template <class R>
Weights Trainer<R>::weights() const {
    if (cfg_.is_llama()) throw Error("trainer: Weights hold GPT-2 tensors; a Llama trainer writes write_safetensors");
    Weights w = allocate_weights(cfg_);
    auto ptrs = weight_pointers(w);
    for (size_t i = 0; i < layout_.size(); ++i) {
        const R* src = params_.data() + layout_[i].offset;
        for (int64_t k = 0; k < layout_[i].size(); ++k) ptrs[i][k] = float(src[k]);
    }
    return w;
}

template <class R>
void Trainer<R>::init_random(uint64_t seed) {
    if (!cfg_.is_llama()) return set_weights(random_weights(cfg_, seed));
    // N(0, 1) by Box-Muller from SplitMix64's top 53 bits; tensors in layout order.
    SplitMix64 rng{seed * 0x2545F4914F6CDD1DULL + 12345};
    auto uniform = [&] { return (double(rng.next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };  // (0, 1)
    const double std = 0.02, proj_std = std / std::sqrt(2.0 * cfg_.n_layer);
    for (const auto& pt : layout_) {
        R* p = params_.data() + pt.offset;
        if (pt.rows == 1) {  // norm weights
            std::fill(p, p + pt.size(), R(1));
            continue;
        }
        const bool into_residual = pt.name.ends_with("o_proj.weight") || pt.name.ends_with("down_proj.weight");
        const double s = into_residual ? proj_std : std;
        for (int64_t i = 0; i < pt.size(); ++i) {
            const double r = std::sqrt(-2.0 * std::log(uniform())), th = 2.0 * M_PI * uniform();
            p[i] = R(float(s * r * std::cos(th)));
        }
    }
}

template <class R>
void Trainer<R>::read_safetensors(const std::string& path) {
    SafetensorsFile f(path);
    std::vector<float> buf;
    for (const auto& pt : layout_) {
        if (!f.has(pt.name)) throw Error(path + ": tensor " + pt.name + " is missing");
        const std::vector<int64_t> want = pt.rows == 1 ? std::vector<int64_t>{pt.cols}
                                                       : std::vector<int64_t>{pt.rows, pt.cols};
        const auto& got = f.tensors().at(pt.name).shape;
        if (got != want)
            throw Error(path + ": tensor " + pt.name + " has shape " + shape_str(got) + ", expected " + shape_str(want));
        buf.resize(size_t(pt.size()));
        f.read_f32(pt.name, buf.data(), pt.size());
        std::copy(buf.begin(), buf.end(), params_.begin() + pt.offset);
    }
}

template <class R>
void Trainer<R>::write_safetensors(const std::string& path) const {
    std::vector<float> values(params_.begin(), params_.end());
    std::vector<TensorOut> out;
    for (const auto& pt : layout_) {
        std::vector<int64_t> shape = pt.rows == 1 ? std::vector<int64_t>{pt.cols}
                                                  : std::vector<int64_t>{pt.rows, pt.cols};
        out.push_back({pt.name, std::move(shape), values.data() + pt.offset, "F32"});
    }
    write_safetensors_tensors(path, out);
}

template <class R>
std::span<const R> Trainer<R>::logits() const {
    return {acts_->logits.data(), size_t(acts_->b) * acts_->t * cfg_.vocab_size};
}

// The forward and backward passes are instantiated in their own files.
template class Trainer<float>;
template class Trainer<double>;

}  // namespace kv
