// The trainer's backward pass, by hand as in llm.c's train_gpt2.c: one backward
// kernel per forward kernel of train_forward.cpp, each adding into its input's and
// parameters' gradients (d-buffers are zeroed before use), then
// GptTrainer::backward, which walks the forward's steps in reverse from the mean
// cross-entropy down to the embeddings, reading the activations GptTrainer::Acts saved.
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Q = C + 2*kv_dim, N = b*t rows of a batch.
#include <algorithm>
#include <cmath>

#include <Eigen/Core>

#include "core/error.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

using namespace train_detail;  // the Mat maps and tensor indices

namespace {

template <class R>
void encoder_backward(R* dwte, R* dwpe, const R* dout, const int* inp, int b, int t, int C) {
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < t; ++j) {
            const R* d = dout + (int64_t(i) * t + j) * C;
            R* de = dwte + int64_t(inp[i * t + j]) * C;
            R* dp = dwpe + int64_t(j) * C;
            for (int c = 0; c < C; ++c) {
                de[c] += d[c];
                dp[c] += d[c];
            }
        }
}

template <class R>
void layernorm_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, const R* mean,
                        const R* rstd, int N, int C) {
    for (int n = 0; n < N; ++n) {
        const R* d = dout + int64_t(n) * C;
        const R* x = inp + int64_t(n) * C;
        R* dx = dinp + int64_t(n) * C;
        const R m = mean[n], s = rstd[n];
        R dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int c = 0; c < C; ++c) {
            const R norm = (x[c] - m) * s;
            const R dnorm = w[c] * d[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int c = 0; c < C; ++c) {
            const R norm = (x[c] - m) * s;
            const R dnorm = w[c] * d[c];
            db[c] += d[c];
            dw[c] += norm * d[c];
            dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

template <class R>
void matmul_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, int N, int IC, int OC) {
    CMatMap<R> d(dout, N, OC);
    MatMap<R>(dinp, N, IC).noalias() += d * CMatMap<R>(w, IC, OC).transpose();
    MatMap<R>(dw, IC, OC).noalias() += CMatMap<R>(inp, N, IC).transpose() * d;
    if (db) RowVecMap<R>(db, OC) += d.colwise().sum();
}

template <class R>
void attention_backward(R* dqkv, R* scratch /* (t) */, const R* dout, const R* qkv, const R* att, int b, int t,
                        int C, int H, int Hkv) {
    const int hd = C / H, kvd = Hkv * hd, Q = C + 2 * kvd;
    const R scale = R(1) / std::sqrt(R(hd));
    for (int i = 0; i < b; ++i)
        for (int h = 0; h < H; ++h) {
            const int g = kv_head_of(h, H, Hkv);
            for (int j = 0; j < t; ++j) {
                const int64_t row = int64_t(i) * t + j;
                const R* a = att + ((int64_t(i) * H + h) * t + j) * t;
                const R* d = dout + row * C + h * hd;
                R* datt = scratch;
                R dot_sum = 0;
                for (int j2 = 0; j2 <= j; ++j2) {
                    const int64_t r2 = int64_t(i) * t + j2;
                    const R* v = qkv + r2 * Q + C + kvd + g * hd;
                    R* dv = dqkv + r2 * Q + C + kvd + g * hd;
                    R s = 0;
                    for (int c = 0; c < hd; ++c) {
                        s += v[c] * d[c];
                        dv[c] += a[j2] * d[c];
                    }
                    datt[j2] = s;
                    dot_sum += a[j2] * s;
                }
                const R* q = qkv + row * Q + h * hd;
                R* dq = dqkv + row * Q + h * hd;
                for (int j2 = 0; j2 <= j; ++j2) {
                    const R dpre = a[j2] * (datt[j2] - dot_sum) * scale;
                    const int64_t r2 = int64_t(i) * t + j2;
                    const R* k = qkv + r2 * Q + C + g * hd;
                    R* dk = dqkv + r2 * Q + C + g * hd;
                    for (int c = 0; c < hd; ++c) {
                        dq[c] += dpre * k[c];
                        dk[c] += dpre * q[c];
                    }
                }
            }
        }
}

template <class R>
void gelu_backward(R* dinp, const R* inp, const R* dout, int64_t n) {
    const R s = std::sqrt(R(2) / R(M_PI));
    for (int64_t i = 0; i < n; ++i) {
        const R x = inp[i];
        const R th = std::tanh(s * (x + R(0.044715) * x * x * x));
        const R sech2 = R(1) - th * th;
        const R grad = R(0.5) * (R(1) + th) + R(0.5) * x * sech2 * s * (R(1) + R(3 * 0.044715) * x * x);
        dinp[i] += grad * dout[i];
    }
}

}  // namespace

template <class R>
void GptTrainer<R>::backward() {
    Acts& a = *acts_;
    if (!a.has_targets || a.b == 0) throw Error("trainer backward: needs a forward pass with targets first");
    const int b = a.b, t = a.t, N = b * t, C = cfg_.n_embd, V = cfg_.vocab_size, Q = cfg_.qkv_dim(),
              H = cfg_.n_head, Hkv = cfg_.n_kv_head, L = cfg_.n_layer;
    std::fill(grads_.begin(), grads_.end(), R(0));
    auto P = [&](int idx) { return params_.data() + layout_[idx].offset; };
    auto G = [&](int idx) { return grads_.data() + layout_[idx].offset; };
    auto zero = [](TrainBuf<R>& v, int64_t n) { std::fill(v.begin(), v.begin() + n, R(0)); };

    // Cross-entropy of the mean loss: dlogits = (probs - onehot) / N.
    const R inv_n = R(1) / N;
    for (int n = 0; n < N; ++n) {
        const R* p = a.probs.data() + int64_t(n) * V;
        R* d = a.dlogits.data() + int64_t(n) * V;
        for (int v = 0; v < V; ++v) d[v] = p[v] * inv_n;
        d[a.targets[n]] -= inv_n;
    }
    // Tied head: dlnf = dlogits * wte; dwte += dlogits^T * lnf.
    CMatMap<R> dlogits(a.dlogits.data(), N, V);
    MatMap<R>(a.dln.data(), N, C).noalias() = dlogits * CMatMap<R>(P(kWte), V, C);
    MatMap<R>(G(kWte), V, C).noalias() += dlogits.transpose() * CMatMap<R>(a.lnf.data(), N, C);

    const R* x_last = L > 0 ? a.layers[L - 1].res3.data() : a.encoded.data();
    zero(a.dres, int64_t(N) * C);
    layernorm_backward(a.dres.data(), G(lnf_index(L)), G(lnf_index(L) + 1), a.dln.data(), x_last, P(lnf_index(L)),
                       a.lnf_mean.data(), a.lnf_rstd.data(), N, C);

    // a.dres holds d(loss)/d(residual stream) and flows down through the layers.
    for (int l = L - 1; l >= 0; --l) {
        auto& s = a.layers[l];
        auto W = [&](int which) { return P(layer_index(l, which)); };
        auto DW = [&](int which) { return G(layer_index(l, which)); };
        const R* x = l == 0 ? a.encoded.data() : a.layers[l - 1].res3.data();
        // MLP: res3 = res2 + gelu(ln2 * fc_w + fc_b) * mlp_proj_w + mlp_proj_b.
        zero(a.dgelu, int64_t(N) * 4 * C);
        matmul_backward(a.dgelu.data(), DW(MPW), DW(MPB), a.dres.data(), s.fch_gelu.data(), W(MPW), N, 4 * C, C);
        zero(a.dfch, int64_t(N) * 4 * C);
        gelu_backward(a.dfch.data(), s.fch.data(), a.dgelu.data(), int64_t(N) * 4 * C);
        zero(a.dln, int64_t(N) * C);
        matmul_backward(a.dln.data(), DW(FCW), DW(FCB), a.dfch.data(), s.ln2.data(), W(FCW), N, C, 4 * C);
        layernorm_backward(a.dres.data(), DW(LN2W), DW(LN2B), a.dln.data(), s.res2.data(), W(LN2W),
                           s.ln2_mean.data(), s.ln2_rstd.data(), N, C);
        // Attention: res2 = x + atty * attn_proj_w + attn_proj_b.
        zero(a.datty, int64_t(N) * C);
        matmul_backward(a.datty.data(), DW(APW), DW(APB), a.dres.data(), s.atty.data(), W(APW), N, C, C);
        zero(a.dqkv, int64_t(N) * Q);
        attention_backward(a.dqkv.data(), a.datt_row.data(), a.datty.data(), s.qkv.data(), s.att.data(), b, t, C, H,
                           Hkv);
        zero(a.dln, int64_t(N) * C);
        matmul_backward(a.dln.data(), DW(ATTW), DW(ATTB), a.dqkv.data(), s.ln1.data(), W(ATTW), N, C, Q);
        layernorm_backward(a.dres.data(), DW(LN1W), DW(LN1B), a.dln.data(), x, W(LN1W), s.ln1_mean.data(),
                           s.ln1_rstd.data(), N, C);
    }
    encoder_backward(G(kWte), G(kWpe), a.dres.data(), a.inputs.data(), b, t, C);
}

template void GptTrainer<float>::backward();
template void GptTrainer<double>::backward();

}  // namespace kv
