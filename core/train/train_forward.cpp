// The trainer's forward pass, written out by hand in the manner of llm.c's
// train_gpt2.c: kernels over raw row-major buffers, output first, then
// Trainer::forward, which runs them top to bottom and saves every activation the
// backward pass (train_backward.cpp) needs in Trainer::Acts. One forward for both
// families; the config chooses the blocks:
//   GPT-2 (the inference engine's math): x = wte[id] + wpe[pos]; per layer
//     h = LN1(x), qkv = h*attn_w + attn_b, causal softmax(q k^T / sqrt(hd)) v per head,
//     x += att*attn_proj_w + attn_proj_b, x += gelu(LN2(x)*fc_w + fc_b)*mlp_proj_w + mlp_proj_b;
//     LN_f.
//   Llama (transformers' modeling_llama.py): x = embed_tokens[id]; per layer
//     h = RMSNorm1(x), [q|k|v] = h*[Wq;Wk;Wv]^T, q and k rotated by RoPE at their
//     position, the same causal attention, x += att*Wo^T,
//     x += (silu(h2*Wgate^T) * (h2*Wup^T))*Wdown^T with h2 = RMSNorm2(x); RMSNorm_f.
//   MLA (transformers' modeling_deepseek_v3.py): Llama's blocks, with the attention:
//     [q | kv_a] = h*[Wq; Wkv_a]^T (with d_q: [q_a | kv_a] = h*[Wq_a; Wkv_a]^T and
//     q = RMSNorm_q(q_a)*Wq_b^T); c_KV = RMSNorm_kv(kv_a[:d_c]); one
//     k_R = kv_a[d_c:] per token; [k_nope_h | v_h] = c_KV*Wkv_b^T per head; RoPE on q's
//     last d_R values of each head and on k_R (de-interleaved first, rope_interleave);
//     head h attends with query [q_nope_h | q_rope_h] and key [k_nope_h | k_R] over
//     1/sqrt(d_n + d_R) to v_h (d_v); x += att*Wo^T. The heads are expanded into one
//     [q | k | v] buffer (H kv heads), so the attention kernel is the shared one.
//   All: logits = x * wte^T (tied); with targets, the mean cross-entropy.
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Dq = H*hd, Q = Dq + 2*kv_dim, F n_ff, N = b*t rows of a
// batch; MLA's d_c, d_R, d_n, d_v, Do, Dkv, E as in train_internal.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <Eigen/Core>

#include "core/error.h"
#include "core/model/llama_math.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

using namespace train_detail;  // the Mat maps and tensor indices

namespace train_detail {

// out = wte[id] (+ wpe[pos] when wpe is given: GPT-2).
template <class R>
void encoder_forward(R* out, const int* inp, const R* wte, const R* wpe, int b, int t, int C) {
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < t; ++j) {
            R* o = out + (int64_t(i) * t + j) * C;
            const R* e = wte + int64_t(inp[i * t + j]) * C;
            for (int c = 0; c < C; ++c) o[c] = e[c];
            if (!wpe) continue;
            const R* p = wpe + int64_t(j) * C;
            for (int c = 0; c < C; ++c) o[c] += p[c];
        }
}

// LayerNorm with biased variance, as GPT-2 and the engine compute it.
template <class R>
void layernorm_forward(R* out, R* mean, R* rstd, const R* inp, const R* w, const R* bias, int N, int C,
                       R eps) {
    for (int n = 0; n < N; ++n) {
        const R* x = inp + int64_t(n) * C;
        R m = 0;
        for (int c = 0; c < C; ++c) m += x[c];
        m /= C;
        R v = 0;
        for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
        v /= C;
        const R s = R(1) / std::sqrt(v + eps);
        R* o = out + int64_t(n) * C;
        for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * w[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

// RMSNorm as transformers' LlamaRMSNorm: out = x / sqrt(mean(x^2) + eps) * w.
template <class R>
void rmsnorm_forward(R* out, R* rstd, const R* inp, const R* w, int N, int C, R eps) {
    for (int n = 0; n < N; ++n) {
        const R* x = inp + int64_t(n) * C;
        R ms = 0;
        for (int c = 0; c < C; ++c) ms += x[c] * x[c];
        ms /= C;
        const R s = R(1) / std::sqrt(ms + eps);
        R* o = out + int64_t(n) * C;
        for (int c = 0; c < C; ++c) o[c] = x[c] * s * w[c];
        rstd[n] = s;
    }
}

// out (N, OC) = inp (N, IC) * w + bias (OC), w (IC, OC) in Conv1D orientation, or
// w (OC, IC) in nn.Linear orientation when `linear` (then out = inp * w^T).
template <class R>
void matmul_forward(R* out, const R* inp, const R* w, const R* bias, int N, int IC, int OC, bool linear) {
    MatMap<R> o(out, N, OC);
    if (linear)
        o.noalias() = CMatMap<R>(inp, N, IC) * CMatMap<R>(w, OC, IC).transpose();
    else
        o.noalias() = CMatMap<R>(inp, N, IC) * CMatMap<R>(w, IC, OC);
    if (bias) o.rowwise() += CRowVecMap<R>(bias, OC);
}

// RoPE on d values in place: transformers' apply_rotary_pos_emb, x*cos + rotate_half(x)*sin,
// which turns each pair (x[i], x[i + d/2]) by the angle of pair i (cos, sin: d/2 values).
// With `inverse` the rotation is by minus the angle (what the backward pass applies
// to gradients).
template <class R>
void rope_row(R* x, const R* cos, const R* sin, int d, bool inverse) {
    const int half = d / 2;
    for (int k = 0; k < half; ++k) {
        const R s = inverse ? -sin[k] : sin[k];
        const R x1 = x[k], x2 = x[k + half];
        x[k] = x1 * cos[k] - x2 * s;
        x[k + half] = x2 * cos[k] + x1 * s;
    }
}

// RoPE in place on the q and k heads of qkv (b, t, Q), the row at position j rotated
// by j * inv_freq (rope_row on each head).
template <class R>
void rope_forward(R* qkv, const R* cos_t, const R* sin_t, int b, int t, int Q, int n_rot_heads, int hd,
                  bool inverse) {
    const int half = hd / 2;
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < t; ++j) {
            R* row = qkv + (int64_t(i) * t + j) * Q;
            for (int h = 0; h < n_rot_heads; ++h)  // the H q heads then the Hkv k heads
                rope_row(row + int64_t(h) * hd, cos_t + int64_t(j) * half, sin_t + int64_t(j) * half, hd, inverse);
        }
}

// MLA's RoPE on one d-wide part (q_rope of a head, or k_R), in place: DeepseekV3's
// apply_rotary_pos_emb_interleave de-interleaves the pairs (2i, 2i+1) first when
// `interleaved` (deinterleave, llama_math.h), then turns as rope_row. The inverse
// (the backward pass's) undoes both, in the opposite order.
template <class R>
void rope_part(R* x, const R* cos, const R* sin, int d, bool interleaved, bool inverse) {
    if (interleaved && !inverse) deinterleave(x, d);
    rope_row(x, cos, sin, d, inverse);
    if (interleaved && inverse) interleave(x, d);
}

// out (N, width) = columns [offset, offset + width) of in (N, stride).
template <class R>
void take_cols(R* out, const R* in, int N, int stride, int offset, int width) {
    for (int n = 0; n < N; ++n) std::copy_n(in + int64_t(n) * stride + offset, width, out + int64_t(n) * width);
}

// MLA's heads as the shared attention kernel reads them: qkve (b, t, E) = [q | k | v]
// with H kv heads. From q_in (b, t, Dq; rows q_stride apart), k_rope (b, t, d_R; rows
// kr_stride apart) and kv (b, t, Dkv) = per head [k_nope | v]: query h = [q_nope_h |
// RoPE(q_rope_h)], key h = [k_nope_h | RoPE(k_R)] (k_R shared by every head), value h = v_h.
template <class R>
void mla_expand_forward(R* qkve, const R* q_in, int q_stride, const R* k_rope, int kr_stride, const R* kv,
                        const R* cos_t, const R* sin_t, int b, int t, const ModelConfig& cfg) {
    const int H = cfg.n_head, dn = cfg.mla.qk_nope_head_dim, dR = cfg.mla.qk_rope_head_dim, dv = cfg.mla.v_head_dim;
    const int hd = dn + dR, Dq = cfg.q_dim(), Dkv = mla_kv_dim(cfg), E = mla_expanded_dim(cfg);
    const bool il = cfg.mla.rope_interleave;
    for (int64_t r = 0; r < int64_t(b) * t; ++r) {
        const R* cs = cos_t + (r % t) * (dR / 2);
        const R* sn = sin_t + (r % t) * (dR / 2);
        const R* in = q_in + r * q_stride;
        const R* kvr = kv + r * Dkv;
        R* q = qkve + r * E;
        R* k = q + Dq;
        R* v = k + Dq;
        std::copy_n(k_rope + r * kr_stride, dR, k + dn);  // k_R, turned once in head 0's key
        rope_part(k + dn, cs, sn, dR, il, false);
        for (int h = 0; h < H; ++h) {
            std::copy_n(in + h * hd, hd, q + h * hd);
            rope_part(q + h * hd + dn, cs, sn, dR, il, false);
            std::copy_n(kvr + h * (dn + dv), dn, k + h * hd);
            if (h > 0) std::copy_n(k + dn, dR, k + h * hd + dn);
            std::copy_n(kvr + h * (dn + dv) + dn, dv, v + h * dv);
        }
    }
}

// Causal multi-head attention. qkv (b, t, Q) holds [q (H*hd) | k (Hkv*hd) | v (Hkv*hdv)];
// query head h reads kv head kv_head_of(h, H, Hkv); scores over 1/sqrt(hd). att
// (b, H, t, t) keeps the softmax weights (0 above the diagonal); out (b, t, H*hdv).
// hdv = hd but for MLA (d_v).
template <class R>
void attention_forward(R* out, R* att, const R* qkv, int b, int t, int hd, int H, int Hkv, int hdv) {
    const int C = H * hd, kvd = Hkv * hd, Q = C + kvd + Hkv * hdv, Do = H * hdv;  // C here is Dq
    const R scale = R(1) / std::sqrt(R(hd));
    for (int i = 0; i < b; ++i)
        for (int h = 0; h < H; ++h) {
            const int g = kv_head_of(h, H, Hkv);
            for (int j = 0; j < t; ++j) {
                const R* q = qkv + (int64_t(i) * t + j) * Q + h * hd;
                R* a = att + ((int64_t(i) * H + h) * t + j) * t;
                R maxv = -std::numeric_limits<R>::infinity();
                for (int j2 = 0; j2 <= j; ++j2) {
                    const R* k = qkv + (int64_t(i) * t + j2) * Q + C + g * hd;
                    R s = 0;
                    for (int c = 0; c < hd; ++c) s += q[c] * k[c];
                    s *= scale;
                    a[j2] = s;
                    maxv = std::max(maxv, s);
                }
                R sum = 0;
                for (int j2 = 0; j2 <= j; ++j2) {
                    a[j2] = std::exp(a[j2] - maxv);
                    sum += a[j2];
                }
                const R inv = R(1) / sum;
                for (int j2 = 0; j2 <= j; ++j2) a[j2] *= inv;
                for (int j2 = j + 1; j2 < t; ++j2) a[j2] = 0;
                R* o = out + (int64_t(i) * t + j) * Do + h * hdv;
                for (int c = 0; c < hdv; ++c) o[c] = 0;
                for (int j2 = 0; j2 <= j; ++j2) {
                    const R* v = qkv + (int64_t(i) * t + j2) * Q + C + kvd + g * hdv;
                    for (int c = 0; c < hdv; ++c) o[c] += a[j2] * v[c];
                }
            }
        }
}

// GELU, tanh approximation ("gelu_new"), as GPT-2 and the engine use it.
template <class R>
void gelu_forward(R* out, const R* inp, int64_t n) {
    const R s = std::sqrt(R(2) / R(M_PI));
    for (int64_t i = 0; i < n; ++i) {
        const R x = inp[i];
        out[i] = R(0.5) * x * (R(1) + std::tanh(s * (x + R(0.044715) * x * x * x)));
    }
}

// SwiGLU: out (N, F) = silu(gate) * up, fch (N, 2F) holding [gate | up] per row;
// silu(g) = g * sigmoid(g).
template <class R>
void swiglu_forward(R* out, const R* fch, int N, int F) {
    for (int n = 0; n < N; ++n) {
        const R* g = fch + int64_t(n) * 2 * F;
        const R* u = g + F;
        R* o = out + int64_t(n) * F;
        for (int f = 0; f < F; ++f) o[f] = g[f] / (R(1) + std::exp(-g[f])) * u[f];
    }
}

// probs = softmax(logits) per row; losses[n] = -log probs[n][target[n]].
template <class R>
void crossentropy_forward(R* probs, R* losses, const R* logits, const int* targets, int N, int V) {
    for (int n = 0; n < N; ++n) {
        const R* z = logits + int64_t(n) * V;
        R* p = probs + int64_t(n) * V;
        R maxv = z[0];
        for (int v = 1; v < V; ++v) maxv = std::max(maxv, z[v]);
        R sum = 0;
        for (int v = 0; v < V; ++v) {
            p[v] = std::exp(z[v] - maxv);
            sum += p[v];
        }
        const R inv = R(1) / sum;
        for (int v = 0; v < V; ++v) p[v] *= inv;
        if (targets) losses[n] = std::log(sum) + maxv - z[targets[n]];
    }
}

// The kernels for both precisions (declared in train_internal.h, for the backward
// pass's RoPE and the per-kernel gradient checks in tests/test_train.cpp).
#define KV_FORWARD_KERNELS(R)                                                                               \
    template void encoder_forward<R>(R*, const int*, const R*, const R*, int, int, int);                   \
    template void layernorm_forward<R>(R*, R*, R*, const R*, const R*, const R*, int, int, R);              \
    template void rmsnorm_forward<R>(R*, R*, const R*, const R*, int, int, R);                              \
    template void matmul_forward<R>(R*, const R*, const R*, const R*, int, int, int, bool);                 \
    template void rope_row<R>(R*, const R*, const R*, int, bool);                                           \
    template void rope_forward<R>(R*, const R*, const R*, int, int, int, int, int, bool);                   \
    template void rope_part<R>(R*, const R*, const R*, int, bool, bool);                                    \
    template void take_cols<R>(R*, const R*, int, int, int, int);                                           \
    template void mla_expand_forward<R>(R*, const R*, int, const R*, int, const R*, const R*, const R*, int, int,  \
                                        const ModelConfig&);                                                \
    template void attention_forward<R>(R*, R*, const R*, int, int, int, int, int, int);                     \
    template void gelu_forward<R>(R*, const R*, int64_t);                                                   \
    template void swiglu_forward<R>(R*, const R*, int, int);                                                \
    template void crossentropy_forward<R>(R*, R*, const R*, const int*, int, int);
KV_FORWARD_KERNELS(float)
KV_FORWARD_KERNELS(double)
#undef KV_FORWARD_KERNELS

}  // namespace train_detail

template <class R>
R Trainer<R>::forward(std::span<const int> inputs, std::span<const int> targets, int b, int t) {
    if (b <= 0 || t <= 0 || b > B_ || t > T_)
        throw Error("trainer forward: batch " + std::to_string(b) + " x " + std::to_string(t) +
                    " exceeds the allocated " + std::to_string(B_) + " x " + std::to_string(T_));
    const int N = b * t, C = cfg_.n_embd, V = cfg_.vocab_size, Q = cfg_.qkv_dim(), H = cfg_.n_head,
              Hkv = cfg_.n_kv_head, L = cfg_.n_layer;
    if (int(inputs.size()) != N || (!targets.empty() && int(targets.size()) != N))
        throw Error("trainer forward: inputs/targets must hold b*t = " + std::to_string(N) + " ids");
    for (int i = 0; i < N; ++i) {
        if (inputs[i] < 0 || inputs[i] >= V || (!targets.empty() && (targets[i] < 0 || targets[i] >= V)))
            throw Error("trainer forward: token id out of range [0, " + std::to_string(V) + ")");
    }
    Acts& a = *acts_;
    a.b = b;
    a.t = t;
    a.has_targets = !targets.empty();
    a.inputs.assign(inputs.begin(), inputs.end());
    a.targets.assign(targets.begin(), targets.end());
    const R eps = R(cfg_.layer_norm_epsilon);
    const bool llama = cfg_.is_llama(), mla = cfg_.is_mla();
    const int hd = cfg_.head_dim(), Dq = cfg_.q_dim(), Do = cfg_.o_dim(), M = mlp_hidden(cfg_), Min = mlp_in(cfg_);
    auto P = [&](int idx) { return params_.data() + layout_[idx].offset; };
    // The family's norm: LayerNorm (w, b) or RMSNorm (w).
    auto norm = [&](R* out, R* mean, R* rstd, const R* in, const R* w, const R* bias) {
        if (llama)
            rmsnorm_forward(out, rstd, in, w, N, C, eps);
        else
            layernorm_forward(out, mean, rstd, in, w, bias, N, C, eps);
    };

    encoder_forward(a.encoded.data(), a.inputs.data(), P(0), llama ? nullptr : P(1), b, t, C);
    const R* x = a.encoded.data();
    for (int l = 0; l < L; ++l) {
        auto& s = a.layers[l];
        const LayerParams<R> w = layer_params(cfg_, layout_, params_.data(), l);
        norm(s.ln1.data(), s.ln1_mean.data(), s.ln1_rstd.data(), x, w.norm1_w, w.norm1_b);
        matmul_forward(s.qkv.data(), s.ln1.data(), w.qkv_w, w.qkv_b, N, C, Q, llama);
        if (mla)
            mla_heads_forward(l);
        else if (llama)
            rope_forward(s.qkv.data(), a.rope_cos.data(), a.rope_sin.data(), b, t, Q, H + Hkv, hd);
        // MLA's expanded heads: H kv heads, values d_v wide.
        attention_forward(s.atty.data(), s.att.data(), mla ? s.qkve.data() : s.qkv.data(), b, t, hd, H,
                          mla ? H : Hkv, cfg_.v_head_dim());
        matmul_forward(s.res2.data(), s.atty.data(), w.proj_w, w.proj_b, N, Do, C, llama);
        for (int64_t i = 0; i < int64_t(N) * C; ++i) s.res2[i] += x[i];
        norm(s.ln2.data(), s.ln2_mean.data(), s.ln2_rstd.data(), s.res2.data(), w.norm2_w, w.norm2_b);
        matmul_forward(s.fch.data(), s.ln2.data(), w.fc_w, w.fc_b, N, C, Min, llama);
        if (llama)
            swiglu_forward(s.fch_act.data(), s.fch.data(), N, M);
        else
            gelu_forward(s.fch_act.data(), s.fch.data(), int64_t(N) * M);
        matmul_forward(s.res3.data(), s.fch_act.data(), w.out_w, w.out_b, N, M, C, llama);
        for (int64_t i = 0; i < int64_t(N) * C; ++i) s.res3[i] += s.res2[i];
        x = s.res3.data();
    }
    const int fn = final_norm_index(cfg_);
    norm(a.lnf.data(), a.lnf_mean.data(), a.lnf_rstd.data(), x, P(fn), llama ? nullptr : P(fn + 1));
    // Tied head: logits (N, V) = lnf (N, C) * wte^T.
    MatMap<R>(a.logits.data(), N, V).noalias() =
        CMatMap<R>(a.lnf.data(), N, C) * CMatMap<R>(P(0), V, C).transpose();
    if (!a.has_targets) return R(0);
    crossentropy_forward(a.probs.data(), a.losses.data(), a.logits.data(), a.targets.data(), N, V);
    R sum = 0;
    for (int i = 0; i < N; ++i) sum += a.losses[i];
    return sum / N;
}

// With d_q, q = q_b(RMSNorm_q(q_a)); c_KV = RMSNorm_kv(kv_a[:d_c]), [k_nope | v] per
// head = kv_b(c_KV), then the heads expanded for the attention kernel, q_rope and k_R
// turned.
template <class R>
void Trainer<R>::mla_heads_forward(int l) {
    Acts& a = *acts_;
    auto& s = a.layers[size_t(l)];
    const LayerParams<R> w = layer_params(cfg_, layout_, params_.data(), l);
    const R eps = R(cfg_.layer_norm_epsilon), *none = nullptr;
    const int N = a.b * a.t, Q = cfg_.qkv_dim(), Dq = cfg_.q_dim(), dq = cfg_.mla.q_lora_rank,
              dc = cfg_.mla.kv_lora_rank;
    const R* q = s.qkv.data();  // [q | kv_a] rows, or q_b's output
    int q_stride = Q;
    if (dq > 0) {
        take_cols(s.q_lat.data(), s.qkv.data(), N, Q, 0, dq);
        rmsnorm_forward(s.q_c.data(), s.q_rstd.data(), s.q_lat.data(), w.q_norm_w, N, dq, eps);
        matmul_forward(s.q.data(), s.q_c.data(), w.q_b_w, none, N, dq, Dq, true);
        q = s.q.data(), q_stride = Dq;
    }
    take_cols(s.kv_lat.data(), s.qkv.data(), N, Q, Q - cfg_.rope_dim() - dc, dc);
    rmsnorm_forward(s.kv_c.data(), s.kv_rstd.data(), s.kv_lat.data(), w.kv_norm_w, N, dc, eps);
    matmul_forward(s.kv.data(), s.kv_c.data(), w.kv_b_w, none, N, dc, mla_kv_dim(cfg_), true);
    mla_expand_forward(s.qkve.data(), q, q_stride, s.qkv.data() + Q - cfg_.rope_dim(), Q, s.kv.data(),
                       a.rope_cos.data(), a.rope_sin.data(), a.b, a.t, cfg_);
}

template void Trainer<float>::mla_heads_forward(int);
template void Trainer<double>::mla_heads_forward(int);
template float Trainer<float>::forward(std::span<const int>, std::span<const int>, int, int);
template double Trainer<double>::forward(std::span<const int>, std::span<const int>, int, int);

}  // namespace kv
