// The trainer's forward pass, written out by hand in the manner of llm.c's
// train_gpt2.c: kernels over raw row-major buffers, output first, then
// GptTrainer::forward, which runs them top to bottom and saves every activation the
// backward pass (train_backward.cpp) needs in GptTrainer::Acts. The math is exactly
// the inference engine's: x = wte[id] + wpe[pos]; per layer h = LN1(x),
// qkv = h*attn_w + attn_b, causal softmax(q k^T / sqrt(hd)) v per head,
// x += att*attn_proj_w + attn_proj_b, x += gelu(LN2(x)*fc_w + fc_b)*mlp_proj_w + mlp_proj_b;
// LN_f; logits = x * wte^T; with targets, the mean cross-entropy.
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Q = C + 2*kv_dim, N = b*t rows of a batch.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <Eigen/Core>

#include "core/error.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

using namespace train_detail;  // the Mat maps and tensor indices

namespace {

template <class R>
void encoder_forward(R* out, const int* inp, const R* wte, const R* wpe, int b, int t, int C) {
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < t; ++j) {
            R* o = out + (int64_t(i) * t + j) * C;
            const R* e = wte + int64_t(inp[i * t + j]) * C;
            const R* p = wpe + int64_t(j) * C;
            for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
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

// out (N, OC) = inp (N, IC) * w (IC, OC) + bias (OC): Conv1D orientation.
template <class R>
void matmul_forward(R* out, const R* inp, const R* w, const R* bias, int N, int IC, int OC) {
    MatMap<R> o(out, N, OC);
    o.noalias() = CMatMap<R>(inp, N, IC) * CMatMap<R>(w, IC, OC);
    if (bias) o.rowwise() += CRowVecMap<R>(bias, OC);
}

// Causal multi-head attention. qkv (b, t, Q) holds [q | k | v]; query head h reads
// kv head kv_head_of(h, H, Hkv). att (b, H, t, t) keeps the softmax weights (0 above the
// diagonal); out (b, t, C).
template <class R>
void attention_forward(R* out, R* att, const R* qkv, int b, int t, int C, int H, int Hkv) {
    const int hd = C / H, kvd = Hkv * hd, Q = C + 2 * kvd;
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
                R* o = out + (int64_t(i) * t + j) * C + h * hd;
                for (int c = 0; c < hd; ++c) o[c] = 0;
                for (int j2 = 0; j2 <= j; ++j2) {
                    const R* v = qkv + (int64_t(i) * t + j2) * Q + C + kvd + g * hd;
                    for (int c = 0; c < hd; ++c) o[c] += a[j2] * v[c];
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

}  // namespace

template <class R>
R GptTrainer<R>::forward(std::span<const int> inputs, std::span<const int> targets, int b, int t) {
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
    auto P = [&](int idx) { return params_.data() + layout_[idx].offset; };

    encoder_forward(a.encoded.data(), a.inputs.data(), P(kWte), P(kWpe), b, t, C);
    const R* x = a.encoded.data();
    for (int l = 0; l < L; ++l) {
        auto& s = a.layers[l];
        auto W = [&](int which) { return P(layer_index(l, which)); };
        layernorm_forward(s.ln1.data(), s.ln1_mean.data(), s.ln1_rstd.data(), x, W(LN1W), W(LN1B), N, C, eps);
        matmul_forward(s.qkv.data(), s.ln1.data(), W(ATTW), W(ATTB), N, C, Q);
        attention_forward(s.atty.data(), s.att.data(), s.qkv.data(), b, t, C, H, Hkv);
        matmul_forward(s.res2.data(), s.atty.data(), W(APW), W(APB), N, C, C);
        for (int64_t i = 0; i < int64_t(N) * C; ++i) s.res2[i] += x[i];
        layernorm_forward(s.ln2.data(), s.ln2_mean.data(), s.ln2_rstd.data(), s.res2.data(), W(LN2W), W(LN2B), N,
                          C, eps);
        matmul_forward(s.fch.data(), s.ln2.data(), W(FCW), W(FCB), N, C, 4 * C);
        gelu_forward(s.fch_gelu.data(), s.fch.data(), int64_t(N) * 4 * C);
        matmul_forward(s.res3.data(), s.fch_gelu.data(), W(MPW), W(MPB), N, 4 * C, C);
        for (int64_t i = 0; i < int64_t(N) * C; ++i) s.res3[i] += s.res2[i];
        x = s.res3.data();
    }
    layernorm_forward(a.lnf.data(), a.lnf_mean.data(), a.lnf_rstd.data(), x, P(lnf_index(L)), P(lnf_index(L) + 1),
                      N, C, eps);
    // Tied head: logits (N, V) = lnf (N, C) * wte^T.
    MatMap<R>(a.logits.data(), N, V).noalias() =
        CMatMap<R>(a.lnf.data(), N, C) * CMatMap<R>(P(kWte), V, C).transpose();
    if (!a.has_targets) return R(0);
    crossentropy_forward(a.probs.data(), a.losses.data(), a.logits.data(), a.targets.data(), N, V);
    R sum = 0;
    for (int i = 0; i < N; ++i) sum += a.losses[i];
    return sum / N;
}

template float GptTrainer<float>::forward(std::span<const int>, std::span<const int>, int, int);
template double GptTrainer<double>::forward(std::span<const int>, std::span<const int>, int, int);

}  // namespace kv
