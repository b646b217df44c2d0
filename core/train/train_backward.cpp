// The trainer's backward pass, by hand as in llm.c's train_gpt2.c: one backward
// kernel per forward kernel of train_forward.cpp, each adding into its input's and
// parameters' gradients (d-buffers are zeroed before use), then
// Trainer::backward, which walks the forward's steps in reverse from the mean
// cross-entropy down to the embeddings, reading the activations Trainer::Acts saved.
// RoPE's backward is its inverse rotation (a rotation's transpose), applied to the
// gradients of the rotated q and k (rope_forward with inverse, train_forward.cpp's
// kernel, declared below). MLA's heads (mla_expand_forward) go back the same way:
// the expanded q, k and v gradients are gathered into q, k_R (summed over the heads
// that share it, then turned back and re-interleaved: rope_part with inverse) and
// kv_b_proj's [k_nope | v], then through kv_b_proj and kv_a_layernorm into kv_a.
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Dq = H*hd, Q = Dq + 2*kv_dim, F n_ff, M the MLP's hidden
// width, N = b*t rows of a batch; MLA's d_c, d_R, d_n, d_v, Do, Dkv, E as in
// train_internal.h.
#include <algorithm>
#include <cmath>

#include <Eigen/Core>

#include "core/error.h"
#include "core/model/llama_math.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"

namespace kv {

using namespace train_detail;  // the Mat maps and tensor indices

namespace train_detail {

// dwpe may be null (Llama: no learned positions).
template <class R>
void encoder_backward(R* dwte, R* dwpe, const R* dout, const int* inp, int b, int t, int C) {
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < t; ++j) {
            const R* d = dout + (int64_t(i) * t + j) * C;
            R* de = dwte + int64_t(inp[i * t + j]) * C;
            for (int c = 0; c < C; ++c) de[c] += d[c];
            if (!dwpe) continue;
            R* dp = dwpe + int64_t(j) * C;
            for (int c = 0; c < C; ++c) dp[c] += d[c];
        }
}

// y = x * s * w with s = 1/sqrt(mean(x^2) + eps): dw += d * x*s;
// dx = s * (w*d - x*s * mean(w*d * x*s)).
template <class R>
void rmsnorm_backward(R* dinp, R* dw, const R* dout, const R* inp, const R* w, const R* rstd, int N, int C) {
    for (int n = 0; n < N; ++n) {
        const R* d = dout + int64_t(n) * C;
        const R* x = inp + int64_t(n) * C;
        R* dx = dinp + int64_t(n) * C;
        const R s = rstd[n];
        R dot = 0;
        for (int c = 0; c < C; ++c) dot += w[c] * d[c] * x[c] * s;
        dot /= C;
        for (int c = 0; c < C; ++c) {
            const R norm = x[c] * s;
            dw[c] += norm * d[c];
            dx[c] += (w[c] * d[c] - norm * dot) * s;
        }
    }
}

// out = silu(g) * u: dg += d * u * sig(g) * (1 + g * (1 - sig(g))), du += d * silu(g).
template <class R>
void swiglu_backward(R* dfch, const R* fch, const R* dout, int N, int F) {
    for (int n = 0; n < N; ++n) {
        const R* g = fch + int64_t(n) * 2 * F;
        const R* u = g + F;
        const R* d = dout + int64_t(n) * F;
        R* dg = dfch + int64_t(n) * 2 * F;
        R* du = dg + F;
        for (int f = 0; f < F; ++f) {
            const R sig = R(1) / (R(1) + std::exp(-g[f]));
            dg[f] += d[f] * u[f] * sig * (R(1) + g[f] * (R(1) - sig));
            du[f] += d[f] * g[f] * sig;
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

// w (IC, OC) Conv1D, or (OC, IC) nn.Linear when `linear` (as matmul_forward).
template <class R>
void matmul_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, int N, int IC, int OC,
                     bool linear) {
    CMatMap<R> d(dout, N, OC);
    if (linear) {
        MatMap<R>(dinp, N, IC).noalias() += d * CMatMap<R>(w, OC, IC);
        MatMap<R>(dw, OC, IC).noalias() += d.transpose() * CMatMap<R>(inp, N, IC);
    } else {
        MatMap<R>(dinp, N, IC).noalias() += d * CMatMap<R>(w, IC, OC).transpose();
        MatMap<R>(dw, IC, OC).noalias() += CMatMap<R>(inp, N, IC).transpose() * d;
    }
    if (db) RowVecMap<R>(db, OC) += d.colwise().sum();
}

// Shapes as attention_forward's (values hdv wide).
template <class R>
void attention_backward(R* dqkv, R* scratch /* (t) */, const R* dout, const R* qkv, const R* att, int b, int t,
                        int hd, int H, int Hkv, int hdv) {
    const int C = H * hd, kvd = Hkv * hd, Q = C + kvd + Hkv * hdv, Do = H * hdv;  // C here is Dq
    const R scale = R(1) / std::sqrt(R(hd));
    for (int i = 0; i < b; ++i)
        for (int h = 0; h < H; ++h) {
            const int g = kv_head_of(h, H, Hkv);
            for (int j = 0; j < t; ++j) {
                const int64_t row = int64_t(i) * t + j;
                const R* a = att + ((int64_t(i) * H + h) * t + j) * t;
                const R* d = dout + row * Do + h * hdv;
                R* datt = scratch;
                R dot_sum = 0;
                for (int j2 = 0; j2 <= j; ++j2) {
                    const int64_t r2 = int64_t(i) * t + j2;
                    const R* v = qkv + r2 * Q + C + kvd + g * hdv;
                    R* dv = dqkv + r2 * Q + C + kvd + g * hdv;
                    R s = 0;
                    for (int c = 0; c < hdv; ++c) {
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

// out (N, stride) columns [offset, offset + width) += in (N, width): take_cols' backward.
template <class R>
void add_cols(R* out, const R* in, int N, int stride, int offset, int width) {
    for (int n = 0; n < N; ++n) {
        R* o = out + int64_t(n) * stride + offset;
        const R* x = in + int64_t(n) * width;
        for (int c = 0; c < width; ++c) o[c] += x[c];
    }
}

// mla_expand_forward's backward: from dqkve (b, t, E), adds into dq (rows q_stride
// apart) the gradient of q (q_rope turned back), into dk_rope (rows kr_stride apart)
// that of k_R (the sum over the H keys that share it, turned back), and into dkv
// (b, t, Dkv) those of each head's [k_nope | v].
template <class R>
void mla_expand_backward(R* dq_out, int q_stride, R* dk_rope_out, int kr_stride, R* dkv, const R* dqkve,
                         const R* cos_t, const R* sin_t, int b, int t, const ModelConfig& cfg) {
    const int H = cfg.n_head, dn = cfg.mla.qk_nope_head_dim, dR = cfg.mla.qk_rope_head_dim, dv = cfg.mla.v_head_dim;
    const int hd = dn + dR, Dq = cfg.q_dim(), Dkv = mla_kv_dim(cfg), E = mla_expanded_dim(cfg);
    const bool il = cfg.mla.rope_interleave;
    R part[kMaxRopeDim], dk_rope[kMaxRopeDim];
    for (int64_t r = 0; r < int64_t(b) * t; ++r) {
        const R* cs = cos_t + (r % t) * (dR / 2);
        const R* sn = sin_t + (r % t) * (dR / 2);
        const R* dq = dqkve + r * E;
        const R* dk = dq + Dq;
        const R* dvv = dk + Dq;
        R* out = dq_out + r * q_stride;
        R* dkvr = dkv + r * Dkv;
        std::fill_n(dk_rope, dR, R(0));
        for (int h = 0; h < H; ++h) {
            for (int c = 0; c < dn; ++c) out[h * hd + c] += dq[h * hd + c];
            std::copy_n(dq + h * hd + dn, dR, part);
            rope_part(part, cs, sn, dR, il, true);
            for (int c = 0; c < dR; ++c) out[h * hd + dn + c] += part[c];
            for (int c = 0; c < dR; ++c) dk_rope[c] += dk[h * hd + dn + c];
            for (int c = 0; c < dn; ++c) dkvr[h * (dn + dv) + c] += dk[h * hd + c];
            for (int c = 0; c < dv; ++c) dkvr[h * (dn + dv) + dn + c] += dvv[h * dv + c];
        }
        rope_part(dk_rope, cs, sn, dR, il, true);
        for (int c = 0; c < dR; ++c) dk_rope_out[r * kr_stride + c] += dk_rope[c];
    }
}

// The mean cross-entropy over N rows: dlogits = (probs - onehot(target)) / N (set, not added).
template <class R>
void crossentropy_backward(R* dlogits, const R* probs, const int* targets, int N, int V) {
    const R inv_n = R(1) / N;
    for (int n = 0; n < N; ++n) {
        const R* p = probs + int64_t(n) * V;
        R* d = dlogits + int64_t(n) * V;
        for (int v = 0; v < V; ++v) d[v] = p[v] * inv_n;
        d[targets[n]] -= inv_n;
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

// The kernels for both precisions (declared in train_internal.h, for the per-kernel
// gradient checks in tests/test_train.cpp).
#define KV_BACKWARD_KERNELS(R)                                                                              \
    template void encoder_backward<R>(R*, R*, const R*, const int*, int, int, int);                        \
    template void rmsnorm_backward<R>(R*, R*, const R*, const R*, const R*, const R*, int, int);            \
    template void swiglu_backward<R>(R*, const R*, const R*, int, int);                                     \
    template void layernorm_backward<R>(R*, R*, R*, const R*, const R*, const R*, const R*, const R*, int, int); \
    template void matmul_backward<R>(R*, R*, R*, const R*, const R*, const R*, int, int, int, bool);        \
    template void attention_backward<R>(R*, R*, const R*, const R*, const R*, int, int, int, int, int, int); \
    template void add_cols<R>(R*, const R*, int, int, int, int);                                           \
    template void mla_expand_backward<R>(R*, int, R*, int, R*, const R*, const R*, const R*, int, int,      \
                                         const ModelConfig&);                                               \
    template void gelu_backward<R>(R*, const R*, const R*, int64_t);                                        \
    template void crossentropy_backward<R>(R*, const R*, const int*, int, int);
KV_BACKWARD_KERNELS(float)
KV_BACKWARD_KERNELS(double)
#undef KV_BACKWARD_KERNELS

}  // namespace train_detail

template <class R>
void Trainer<R>::backward() {
    Acts& a = *acts_;
    if (!a.has_targets || a.b == 0) throw Error("trainer backward: needs a forward pass with targets first");
    const int b = a.b, t = a.t, N = b * t, C = cfg_.n_embd, V = cfg_.vocab_size, Q = cfg_.qkv_dim(),
              H = cfg_.n_head, Hkv = cfg_.n_kv_head, L = cfg_.n_layer;
    const bool llama = cfg_.is_llama(), mla = cfg_.is_mla();
    const int hd = cfg_.head_dim(), Dq = cfg_.q_dim(), Do = cfg_.o_dim(), M = mlp_hidden(cfg_), Min = mlp_in(cfg_);
    std::fill(grads_.begin(), grads_.end(), R(0));
    auto P = [&](int idx) { return params_.data() + layout_[idx].offset; };
    auto G = [&](int idx) { return grads_.data() + layout_[idx].offset; };
    auto zero = [](TrainBuf<R>& v, int64_t n) { std::fill(v.begin(), v.begin() + n, R(0)); };
    // The family's norm backward, adding into dinp, dw (and db for LayerNorm).
    auto norm_back = [&](R* dinp, R* dw, R* db, const R* dout, const R* in, const R* w, const R* mean, const R* rstd) {
        if (llama)
            rmsnorm_backward(dinp, dw, dout, in, w, rstd, N, C);
        else
            layernorm_backward(dinp, dw, db, dout, in, w, mean, rstd, N, C);
    };

    crossentropy_backward(a.dlogits.data(), a.probs.data(), a.targets.data(), N, V);
    // Tied head: dlnf = dlogits * wte; dwte += dlogits^T * lnf.
    CMatMap<R> dlogits(a.dlogits.data(), N, V);
    MatMap<R>(a.dln.data(), N, C).noalias() = dlogits * CMatMap<R>(P(0), V, C);
    MatMap<R>(G(0), V, C).noalias() += dlogits.transpose() * CMatMap<R>(a.lnf.data(), N, C);

    const R* x_last = L > 0 ? a.layers[L - 1].res3.data() : a.encoded.data();
    const int fn = final_norm_index(cfg_);
    zero(a.dres, int64_t(N) * C);
    norm_back(a.dres.data(), G(fn), llama ? nullptr : G(fn + 1), a.dln.data(), x_last, P(fn), a.lnf_mean.data(),
              a.lnf_rstd.data());

    // a.dres holds d(loss)/d(residual stream) and flows down through the layers.
    for (int l = L - 1; l >= 0; --l) {
        auto& s = a.layers[l];
        const LayerParams<R> w = layer_params(cfg_, layout_, params_.data(), l);
        const LayerParams<R> dw = layer_params(cfg_, layout_, grads_.data(), l);
        const R* x = l == 0 ? a.encoded.data() : a.layers[l - 1].res3.data();
        // MLP: res3 = res2 + act(ln2 * fc) * out.
        zero(a.dact, int64_t(N) * M);
        matmul_backward(a.dact.data(), dw.out_w, dw.out_b, a.dres.data(), s.fch_act.data(), w.out_w, N, M, C, llama);
        zero(a.dfch, int64_t(N) * Min);
        if (llama)
            swiglu_backward(a.dfch.data(), s.fch.data(), a.dact.data(), N, M);
        else
            gelu_backward(a.dfch.data(), s.fch.data(), a.dact.data(), int64_t(N) * M);
        zero(a.dln, int64_t(N) * C);
        matmul_backward(a.dln.data(), dw.fc_w, dw.fc_b, a.dfch.data(), s.ln2.data(), w.fc_w, N, C, Min, llama);
        norm_back(a.dres.data(), dw.norm2_w, dw.norm2_b, a.dln.data(), s.res2.data(), w.norm2_w, s.ln2_mean.data(),
                  s.ln2_rstd.data());
        // Attention: res2 = x + atty * proj.
        zero(a.datty, int64_t(N) * Do);
        matmul_backward(a.datty.data(), dw.proj_w, dw.proj_b, a.dres.data(), s.atty.data(), w.proj_w, N, Do, C, llama);
        zero(a.dqkv, int64_t(N) * Q);
        if (mla) {
            mla_heads_backward(l);
        } else {
            attention_backward(a.dqkv.data(), a.datt_row.data(), a.datty.data(), s.qkv.data(), s.att.data(), b, t, hd,
                               H, Hkv, hd);
            if (llama) rope_forward(a.dqkv.data(), a.rope_cos.data(), a.rope_sin.data(), b, t, Q, H + Hkv, hd, true);
        }
        zero(a.dln, int64_t(N) * C);
        matmul_backward(a.dln.data(), dw.qkv_w, dw.qkv_b, a.dqkv.data(), s.ln1.data(), w.qkv_w, N, C, Q, llama);
        norm_back(a.dres.data(), dw.norm1_w, dw.norm1_b, a.dln.data(), x, w.norm1_w, s.ln1_mean.data(),
                  s.ln1_rstd.data());
    }
    encoder_backward(G(0), llama ? nullptr : G(1), a.dres.data(), a.inputs.data(), b, t, C);
}

// From datty (set) back to dqkv (zeroed) through the attention over the expanded heads,
// the expansion, kv_b_proj and kv_a_layernorm (and q_b_proj and q_a_layernorm with
// d_q): mla_heads_forward and the attention, reversed.
template <class R>
void Trainer<R>::mla_heads_backward(int l) {
    Acts& a = *acts_;
    const auto& s = a.layers[size_t(l)];
    const LayerParams<R> w = layer_params(cfg_, layout_, params_.data(), l);
    const LayerParams<R> dw = layer_params(cfg_, layout_, grads_.data(), l);
    const int b = a.b, t = a.t, N = b * t, H = cfg_.n_head, Q = cfg_.qkv_dim(), Dq = cfg_.q_dim(),
              dq = cfg_.mla.q_lora_rank, dc = cfg_.mla.kv_lora_rank, dR = cfg_.rope_dim(), Dkv = mla_kv_dim(cfg_);
    auto zero = [](TrainBuf<R>& v, int64_t n) { std::fill(v.begin(), v.begin() + n, R(0)); };
    R* none = nullptr;
    zero(a.dqkve, int64_t(N) * mla_expanded_dim(cfg_));
    attention_backward(a.dqkve.data(), a.datt_row.data(), a.datty.data(), s.qkve.data(), s.att.data(), b, t,
                       cfg_.head_dim(), H, H, cfg_.v_head_dim());
    zero(a.dkv, int64_t(N) * Dkv);
    if (dq > 0) zero(a.dq, int64_t(N) * Dq);
    mla_expand_backward(dq > 0 ? a.dq.data() : a.dqkv.data(), dq > 0 ? Dq : Q, a.dqkv.data() + Q - dR, Q,
                        a.dkv.data(), a.dqkve.data(), a.rope_cos.data(), a.rope_sin.data(), b, t, cfg_);
    if (dq > 0) {
        zero(a.dq_c, int64_t(N) * dq);
        matmul_backward(a.dq_c.data(), dw.q_b_w, none, a.dq.data(), s.q_c.data(), w.q_b_w, N, dq, Dq, true);
        zero(a.dq_lat, int64_t(N) * dq);
        rmsnorm_backward(a.dq_lat.data(), dw.q_norm_w, a.dq_c.data(), s.q_lat.data(), w.q_norm_w, s.q_rstd.data(), N,
                         dq);
        add_cols(a.dqkv.data(), a.dq_lat.data(), N, Q, 0, dq);
    }
    zero(a.dkv_c, int64_t(N) * dc);
    matmul_backward(a.dkv_c.data(), dw.kv_b_w, none, a.dkv.data(), s.kv_c.data(), w.kv_b_w, N, dc, Dkv, true);
    zero(a.dkv_lat, int64_t(N) * dc);
    rmsnorm_backward(a.dkv_lat.data(), dw.kv_norm_w, a.dkv_c.data(), s.kv_lat.data(), w.kv_norm_w, s.kv_rstd.data(),
                     N, dc);
    add_cols(a.dqkv.data(), a.dkv_lat.data(), N, Q, Q - dR - dc, dc);
}

template void Trainer<float>::mla_heads_backward(int);
template void Trainer<double>::mla_heads_backward(int);
template void Trainer<float>::backward();
template void Trainer<double>::backward();

}  // namespace kv
