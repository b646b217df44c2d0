// Internals shared by the trainer's files, not part of its interface (train.h): the
// Eigen views the kernels put over the flat row-major buffers, where each tensor sits
// in param_layout() (train_params.cpp), and Trainer::Acts, the activations a
// forward pass (train_forward.cpp) saves for the backward pass (train_backward.cpp),
// with the backward pass's scratch. Notation (train.h): B batch rows, T sequence
// length, C n_embd, V vocab, L layers, H heads, hd head size, Dq = H*hd,
// Q = Dq + 2*kv_dim (MLA: Dq or d_q, + d_c + d_R), F n_ff, M the MLP's hidden width (GPT-2
// 4C, Llama F), N = B*T. MLA (DeepseekV3): d_c kv_lora_rank, d_R qk_rope_head_dim,
// d_n qk_nope_head_dim, d_v v_head_dim, d_q q_lora_rank (0: q_proj), hd = d_n + d_R,
// Do = H*d_v (o_proj's input), Dkv = H*(d_n + d_v) (kv_b_proj's output), E = 2*Dq + Do
// (the expanded [q | k | v]).
#pragma once
#include <vector>

#include <Eigen/Core>

#include "core/train/train.h"

namespace kv {

namespace train_detail {

template <class R>
using Mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class R>
using MatMap = Eigen::Map<Mat<R>>;
template <class R>
using CMatMap = Eigen::Map<const Mat<R>>;
template <class R>
using RowVecMap = Eigen::Map<Eigen::Matrix<R, 1, Eigen::Dynamic>>;
template <class R>
using CRowVecMap = Eigen::Map<const Eigen::Matrix<R, 1, Eigen::Dynamic>>;

// One layer's tensors inside a flat buffer laid out by param_layout() (the
// parameters, or their gradients). A bias, norm shift or MLA tensor the family lacks
// is null.
//   GPT-2: matrices (in, out), y = x*W + b.   Llama: matrices (out, in), y = x*W^T.
template <class R>
struct LayerParams {
    R *norm1_w, *norm1_b;  // (C)        ln_1 | input_layernorm (no shift)
    R *qkv_w, *qkv_b;      // (C, Q) | (Q, C)      c_attn | [q_proj; k_proj; v_proj] | MLA [q_proj; kv_a_proj_with_mqa]
    R *proj_w, *proj_b;    // (C, C) | (C, Do)     attn.c_proj | o_proj
    R *norm2_w, *norm2_b;  // (C)        ln_2 | post_attention_layernorm
    R *fc_w, *fc_b;        // (C, 4C) | (2F, C)    mlp.c_fc | [gate_proj; up_proj]
    R *out_w, *out_b;      // (4C, C) | (C, F)     mlp.c_proj | down_proj
    R *kv_norm_w = nullptr;  // MLA: (d_c)         kv_a_layernorm
    R *kv_b_w = nullptr;     // MLA: (Dkv, d_c)    kv_b_proj: per head [k_nope (d_n) | v (d_v)]
    R *q_norm_w = nullptr;   // MLA with d_q: (d_q)      q_a_layernorm
    R *q_b_w = nullptr;      // MLA with d_q: (Dq, d_q)  q_b_proj
};
// MLA's queries through a latent (q_a_proj, q_a_layernorm, q_b_proj): d_q > 0.
inline bool mla_q_lora(const ModelConfig& cfg) { return cfg.is_mla() && cfg.mla.q_lora_rank > 0; }
// Tensors per layer in param_layout(): 12 for GPT-2, 9 for Llama, 10 for MLA (12 with d_q).
inline int tensors_per_layer(const ModelConfig& cfg) {
    return cfg.is_mla() ? (mla_q_lora(cfg) ? 12 : 10) : cfg.is_llama() ? 9 : 12;
}
// The embedding (wte | embed_tokens) is tensor 0; GPT-2's wpe is tensor 1.
inline int first_layer_index(const ModelConfig& cfg) { return cfg.is_llama() ? 1 : 2; }
inline int final_norm_index(const ModelConfig& cfg) {
    return first_layer_index(cfg) + tensors_per_layer(cfg) * cfg.n_layer;
}
template <class R>
LayerParams<R> layer_params(const ModelConfig& cfg, const std::vector<ParamTensor>& layout, R* base, int l) {
    const int i = first_layer_index(cfg) + tensors_per_layer(cfg) * l;
    auto at = [&](int k) { return base + layout[size_t(i + k)].offset; };
    if (cfg.is_mla()) {  // norm1, q | q_a, kv_a, (q_a_layernorm, q_b,) kv_a_layernorm, kv_b, o, norm2, gate, up, down
        const int k = mla_q_lora(cfg) ? 2 : 0;
        LayerParams<R> p{at(0), nullptr, at(1), nullptr, at(5 + k), nullptr,
                         at(6 + k), nullptr, at(7 + k), nullptr, at(9 + k), nullptr};
        p.kv_norm_w = at(3 + k);
        p.kv_b_w = at(4 + k);
        if (k) p.q_norm_w = at(3), p.q_b_w = at(4);
        return p;
    }
    if (cfg.is_llama())  // norm1, q, k, v, o, norm2, gate, up, down
        return {at(0), nullptr, at(1), nullptr, at(4), nullptr, at(5), nullptr, at(6), nullptr, at(8), nullptr};
    return {at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7), at(8), at(9), at(10), at(11)};
}
// The MLP's hidden width M and its first product's width (GPT-2 4C and 4C, Llama F and 2F).
inline int mlp_hidden(const ModelConfig& cfg) { return cfg.is_llama() ? cfg.n_ff : 4 * cfg.n_embd; }
inline int mlp_in(const ModelConfig& cfg) { return cfg.is_llama() ? 2 * cfg.n_ff : 4 * cfg.n_embd; }
// MLA: kv_b_proj's output width Dkv = H*(d_n + d_v), and the expanded [q | k | v]
// width E = 2*Dq + Do that the attention kernel reads (H query heads, H kv heads).
inline int mla_kv_dim(const ModelConfig& cfg) {
    return cfg.n_head * (cfg.mla.qk_nope_head_dim + cfg.mla.v_head_dim);
}
inline int mla_expanded_dim(const ModelConfig& cfg) { return 2 * cfg.q_dim() + cfg.o_dim(); }

// The kernels (train_forward.cpp, train_backward.cpp), instantiated for float and
// double. Output first; buffers row-major; every backward kernel adds into its
// d-buffers. Shapes as in the files that define them.
template <class R> void encoder_forward(R* out, const int* inp, const R* wte, const R* wpe, int b, int t, int C);
template <class R>
void layernorm_forward(R* out, R* mean, R* rstd, const R* inp, const R* w, const R* bias, int N, int C, R eps);
template <class R> void rmsnorm_forward(R* out, R* rstd, const R* inp, const R* w, int N, int C, R eps);
template <class R>
void matmul_forward(R* out, const R* inp, const R* w, const R* bias, int N, int IC, int OC, bool linear);
template <class R> void rope_row(R* x, const R* cos, const R* sin, int d, bool inverse);
template <class R>
void rope_forward(R* qkv, const R* cos_t, const R* sin_t, int b, int t, int Q, int n_rot_heads, int hd,
                  bool inverse = false);
template <class R> void rope_part(R* x, const R* cos, const R* sin, int d, bool interleaved, bool inverse);
template <class R> void take_cols(R* out, const R* in, int N, int stride, int offset, int width);
template <class R> void add_cols(R* out, const R* in, int N, int stride, int offset, int width);
template <class R>
void mla_expand_forward(R* qkve, const R* q, int q_stride, const R* k_rope, int kr_stride, const R* kv,
                        const R* cos_t, const R* sin_t, int b, int t, const ModelConfig& cfg);
template <class R>
void attention_forward(R* out, R* att, const R* qkv, int b, int t, int hd, int H, int Hkv, int hdv);
template <class R> void gelu_forward(R* out, const R* inp, int64_t n);
template <class R> void swiglu_forward(R* out, const R* fch, int N, int F);
template <class R>
void crossentropy_forward(R* probs, R* losses, const R* logits, const int* targets, int N, int V);

template <class R> void encoder_backward(R* dwte, R* dwpe, const R* dout, const int* inp, int b, int t, int C);
template <class R>
void layernorm_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, const R* mean,
                        const R* rstd, int N, int C);
template <class R>
void rmsnorm_backward(R* dinp, R* dw, const R* dout, const R* inp, const R* w, const R* rstd, int N, int C);
template <class R>
void matmul_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, int N, int IC, int OC,
                     bool linear);
template <class R>
void attention_backward(R* dqkv, R* scratch, const R* dout, const R* qkv, const R* att, int b, int t, int hd, int H,
                        int Hkv, int hdv);
template <class R>
void mla_expand_backward(R* dq, int q_stride, R* dk_rope, int kr_stride, R* dkv, const R* dqkve, const R* cos_t,
                         const R* sin_t, int b, int t, const ModelConfig& cfg);
template <class R> void gelu_backward(R* dinp, const R* inp, const R* dout, int64_t n);
template <class R> void swiglu_backward(R* dfch, const R* fch, const R* dout, int N, int F);
template <class R> void crossentropy_backward(R* dlogits, const R* probs, const int* targets, int N, int V);

}  // namespace train_detail

template <class R>
struct Trainer<R>::Acts {
    struct Layer {
        TrainBuf<R> ln1, ln1_mean, ln1_rstd;  // (N, C), (N), (N); mean unused by RMSNorm
        TrainBuf<R> qkv;                      // (N, Q) [q | k | v], q and k rotated (Llama); MLA unrotated
        TrainBuf<R> q_lat, q_rstd, q_c, q;    // MLA with d_q: (N, d_q) before q_a_layernorm, (N), after, (N, Dq) q_b_proj
        TrainBuf<R> kv_lat, kv_rstd, kv_c;    // MLA: (N, d_c) the latent before its norm, (N), c_KV after it
        TrainBuf<R> kv;                       // MLA: (N, Dkv) kv_b_proj(c_KV), per head [k_nope | v]
        TrainBuf<R> qkve;                     // MLA: (N, E) the heads attention reads, q and k rotated
        TrainBuf<R> att;                      // (B, H, T, T)
        TrainBuf<R> atty;                     // (N, Do)
        TrainBuf<R> res2;                     // (N, C) residual after attention
        TrainBuf<R> ln2, ln2_mean, ln2_rstd;  // (N, C), (N), (N)
        TrainBuf<R> fch;                      // (N, 4C) | (N, 2F) [gate | up], before the activation
        TrainBuf<R> fch_act;                  // (N, M)  gelu(fch) | silu(gate) * up
        TrainBuf<R> res3;                     // (N, C) residual after the MLP
    };
    TrainBuf<R> encoded;                  // (N, C)
    TrainBuf<R> rope_cos, rope_sin;       // (T, rd/2) Llama: cos and sin of pos * inv_freq[i]; rd = hd | d_R
    std::vector<Layer> layers;               // L
    TrainBuf<R> lnf, lnf_mean, lnf_rstd;  // (N, C), (N), (N)
    TrainBuf<R> logits, probs;            // (N, V)
    TrainBuf<R> losses;                   // (N)
    std::vector<int> inputs, targets;        // (N)
    int b = 0, t = 0;
    bool has_targets = false;
    // Backward scratch.
    TrainBuf<R> dres, dln, dqkv, datty, dact, dfch, dlogits, datt_row;  // dact (N, M), dfch (N, 4C | 2F)
    TrainBuf<R> dqkve, dkv, dkv_c, dkv_lat;  // MLA: (N, E), (N, Dkv), (N, d_c), (N, d_c)
    TrainBuf<R> dq, dq_c, dq_lat;            // MLA with d_q: (N, Dq), (N, d_q), (N, d_q)
};

}  // namespace kv
