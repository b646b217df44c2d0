// Trainer for the GPT-2 family, written out by hand in the manner of llm.c's
// train_gpt2.c: one flat parameter buffer, a forward pass that saves every
// activation the backward pass needs, the backward pass kernel by kernel in reverse,
// AdamW with global-norm clipping. The forward math is exactly the inference
// engine's: x = wte[id] + wpe[pos]; per layer h = LN1(x), qkv = h*attn_w + attn_b,
// causal softmax(q k^T / sqrt(hd)) v per head, x += att*attn_proj_w + attn_proj_b,
// x += gelu(LN2(x)*fc_w + fc_b)*mlp_proj_w + mlp_proj_b; LN_f; logits = x * wte^T.
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Q = C + 2*kv_dim, N = b*t rows of a batch.
// Batches are rows of randomly drawn training sentences, each closed by <eos>.
// Single-threaded, buffers aligned: a seed gives bit-identical weights on every run.
#include "core/train/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <unordered_map>

#include <Eigen/Core>

#include "core/error.h"
#include "core/rng.h"
#include "core/model/model_io.h"
#include "core/text/tokenizer.h"

namespace kv {

// ---- parameter layout ------------------------------------------------------------

namespace {

// Index of a tensor inside param_layout(): 2 + 12*layer + one of these.
enum LayerTensor { LN1W, LN1B, ATTW, ATTB, APW, APB, LN2W, LN2B, FCW, FCB, MPW, MPB, kPerLayer };
constexpr int kWte = 0, kWpe = 1;
int layer_index(int l, int which) { return 2 + kPerLayer * l + which; }
int lnf_index(int L) { return 2 + kPerLayer * L; }

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

std::vector<std::string> build_vocab(const std::vector<std::string>& lines) {
    std::map<std::string, int64_t> counts;  // ordered: ties stay alphabetical
    for (const auto& line : lines)
        for (auto& w : WordTokenizer::split_words(line)) ++counts[w];
    counts.erase("<unk>");
    counts.erase("<eos>");
    std::vector<std::pair<std::string, int64_t>> words(counts.begin(), counts.end());
    std::stable_sort(words.begin(), words.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    std::vector<std::string> vocab = {"<unk>", "<eos>"};
    for (auto& [w, n] : words) vocab.push_back(w);
    return vocab;
}

// ---- kernels (llm.c style: output first, raw row-major buffers) --------------------

namespace {

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

// out (N, OC) = inp (N, IC) * w (IC, OC) + bias (OC): Conv1D orientation.
template <class R>
void matmul_forward(R* out, const R* inp, const R* w, const R* bias, int N, int IC, int OC) {
    MatMap<R> o(out, N, OC);
    o.noalias() = CMatMap<R>(inp, N, IC) * CMatMap<R>(w, IC, OC);
    if (bias) o.rowwise() += CRowVecMap<R>(bias, OC);
}

template <class R>
void matmul_backward(R* dinp, R* dw, R* db, const R* dout, const R* inp, const R* w, int N, int IC, int OC) {
    CMatMap<R> d(dout, N, OC);
    MatMap<R>(dinp, N, IC).noalias() += d * CMatMap<R>(w, IC, OC).transpose();
    MatMap<R>(dw, IC, OC).noalias() += CMatMap<R>(inp, N, IC).transpose() * d;
    if (db) RowVecMap<R>(db, OC) += d.colwise().sum();
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

// GELU, tanh approximation ("gelu_new"), as GPT-2 and the engine use it.
template <class R>
void gelu_forward(R* out, const R* inp, int64_t n) {
    const R s = std::sqrt(R(2) / R(M_PI));
    for (int64_t i = 0; i < n; ++i) {
        const R x = inp[i];
        out[i] = R(0.5) * x * (R(1) + std::tanh(s * (x + R(0.044715) * x * x * x)));
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

// ---- GptTrainer --------------------------------------------------------------------

template <class R>
struct GptTrainer<R>::Acts {
    struct Layer {
        TrainBuf<R> ln1, ln1_mean, ln1_rstd;  // (N, C), (N), (N)
        TrainBuf<R> qkv;                      // (N, Q)
        TrainBuf<R> att;                      // (B, H, T, T)
        TrainBuf<R> atty;                     // (N, C)
        TrainBuf<R> res2;                     // (N, C) residual after attention
        TrainBuf<R> ln2, ln2_mean, ln2_rstd;  // (N, C), (N), (N)
        TrainBuf<R> fch, fch_gelu;            // (N, 4C)
        TrainBuf<R> res3;                     // (N, C) residual after the MLP
    };
    TrainBuf<R> encoded;                  // (N, C)
    std::vector<Layer> layers;               // L
    TrainBuf<R> lnf, lnf_mean, lnf_rstd;  // (N, C), (N), (N)
    TrainBuf<R> logits, probs;            // (N, V)
    TrainBuf<R> losses;                   // (N)
    std::vector<int> inputs, targets;        // (N)
    int b = 0, t = 0;
    bool has_targets = false;
    // Backward scratch.
    TrainBuf<R> dres, dln, dqkv, datty, dgelu, dfch, dlogits, datt_row;
};

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

template class GptTrainer<float>;
template class GptTrainer<double>;

// ---- optimiser ---------------------------------------------------------------------

float lr_schedule(int step, int steps, float lr_max, int warmup, float min_frac) {
    if (step < warmup) return lr_max * float(step + 1) / float(warmup);
    const int decay_steps = std::max(1, steps - warmup);
    const float frac = std::min(1.0f, float(step - warmup) / float(decay_steps));
    const float cosv = 0.5f * (1.0f + std::cos(float(M_PI) * frac));
    return lr_max * (min_frac + (1.0f - min_frac) * cosv);
}

float AdamW::update(std::span<float> params, std::span<const float> grads,
                    const std::vector<ParamTensor>& layout, float lr) {
    if (m.size() != params.size()) {
        m.assign(params.size(), 0.f);
        v.assign(params.size(), 0.f);
        t = 0;
    }
    double sq = 0;
    for (float g : grads) sq += double(g) * g;
    const float norm = float(std::sqrt(sq));
    const float clip = (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
    ++t;
    const float bc1 = 1.0f - std::pow(beta1, float(t)), bc2 = 1.0f - std::pow(beta2, float(t));
    for (const auto& pt : layout) {
        const float wd = pt.decay ? weight_decay : 0.f;
        for (int64_t i = pt.offset; i < pt.offset + pt.size(); ++i) {
            const float g = grads[i] * clip;
            m[i] = beta1 * m[i] + (1 - beta1) * g;
            v[i] = beta2 * v[i] + (1 - beta2) * g * g;
            const float mh = m[i] / bc1, vh = v[i] / bc2;
            params[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * params[i]);
        }
    }
    return norm;
}

// ---- train_model -------------------------------------------------------------------

namespace {

std::vector<std::string> read_corpus(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw Error("train: cannot open corpus " + path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        lines.push_back(line);
    }
    if (lines.empty()) throw Error("train: corpus " + path + " holds no sentences");
    return lines;
}

// Mean loss of predicting every token after the first of each sentence, and its
// closing <eos>, each sentence run alone from position 0 (as a prompt would be).
float sentence_loss(GptTrainer<float>& m, const std::vector<std::vector<int>>& sents, int eos) {
    double sum = 0;
    int64_t count = 0;
    const int T = m.config().n_ctx;
    for (const auto& s : sents) {
        const int t = std::min<int>(int(s.size()), T);
        if (t < 1) continue;
        std::vector<int> in(s.begin(), s.begin() + t), tg(t);
        for (int i = 0; i < t; ++i) tg[i] = i + 1 < int(s.size()) ? s[i + 1] : eos;
        sum += double(m.forward(in, tg, 1, t)) * t;
        count += t;
    }
    return count ? float(sum / count) : 0.f;
}

}  // namespace

TrainReport train_model(const TrainOptions& opt) {
    namespace fs = std::filesystem;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    if (opt.steps <= 0) throw Error("train: --steps must be positive (got " + std::to_string(opt.steps) + ")");
    if (opt.out_dir.empty()) throw Error("train: --out must name a folder");
    if (opt.n_layer < 1 || opt.n_head < 1 || opt.n_embd < 1 || opt.n_embd % opt.n_head != 0)
        throw Error("train: --layers, --heads and --embd must be positive, and --embd a multiple of --heads (got " +
                    std::to_string(opt.n_layer) + ", " + std::to_string(opt.n_head) + ", " +
                    std::to_string(opt.n_embd) + ")");

    const auto lines = read_corpus(opt.corpus);
    const auto vocab = build_vocab(lines);
    std::unordered_map<std::string, int> index;
    for (int i = 0; i < int(vocab.size()); ++i) index.emplace(vocab[i], i);
    const int eos = 1;

    // Every 10th sentence (index 9, 19, ...) is held out for validation.
    std::vector<std::vector<int>> train_sents, val_sents;
    for (size_t i = 0; i < lines.size(); ++i) {
        std::vector<int> ids;
        for (auto& w : WordTokenizer::split_words(lines[i])) ids.push_back(index.at(w));
        if (ids.empty()) continue;
        ((i % 10 == 9 && lines.size() >= 10) ? val_sents : train_sents).push_back(std::move(ids));
    }
    int n_train_tokens = 0;
    for (auto& s : train_sents) n_train_tokens += int(s.size()) + 1;
    ModelConfig cfg;
    cfg.vocab_size = int(vocab.size());
    cfg.n_ctx = 64;
    cfg.n_embd = opt.n_embd;
    cfg.n_layer = opt.n_layer;
    cfg.n_head = opt.n_head;
    cfg.n_kv_head = opt.n_kv_head == 0 ? cfg.n_head : opt.n_kv_head;
    cfg.tied_head = true;
    if (cfg.n_kv_head < 0 || cfg.n_kv_head > cfg.n_head || cfg.n_head % cfg.n_kv_head != 0)
        throw Error("train: --n-kv-head " + std::to_string(opt.n_kv_head) + " must divide the 4 query heads (1, 2 or 4)");
    cfg.validate("train config");

    // Fail before training, not after, when the output folder cannot be written.
    std::error_code ec;
    fs::create_directories(opt.out_dir, ec);
    if (ec || !fs::is_directory(opt.out_dir))
        throw Error("train: cannot create output folder " + opt.out_dir + (ec ? ": " + ec.message() : ""));

    const int B = 16, T = cfg.n_ctx;
    const float lr_max = 3e-3f, min_frac = 0.1f;
    const int warmup = std::max(1, std::min(100, opt.steps / 10));
    GptTrainer<float> model(cfg, B, T);
    model.set_weights(random_weights(cfg, opt.seed));
    AdamW adam;
    SplitMix64 rng{opt.seed * 0x9E3779B97F4A7C15ULL + 0xB47C0FFEEULL};

    std::vector<int> inputs(B * T), targets(B * T), row;
    const int every = std::max(1, opt.steps / 20);
    const int tail = std::max(1, std::min(50, opt.steps / 10));
    double tail_sum = 0;
    const auto t_train = clock::now();
    if (!opt.quiet)
        std::fprintf(stderr, "train: %zu sentences (%zu held out), %d training tokens, vocab %d, %lld parameters\n",
                     train_sents.size() + val_sents.size(), val_sents.size(), n_train_tokens, cfg.vocab_size,
                     (long long)cfg.n_params());
    for (int step = 0; step < opt.steps; ++step) {
        // Each row: sentences drawn at random, each closed by <eos>, cut to T+1 tokens.
        for (int i = 0; i < B; ++i) {
            row.clear();
            while (int(row.size()) < T + 1) {
                const auto& s = train_sents[rng.next() % train_sents.size()];
                row.insert(row.end(), s.begin(), s.end());
                row.push_back(eos);
            }
            std::copy(row.begin(), row.begin() + T, inputs.begin() + i * T);
            std::copy(row.begin() + 1, row.begin() + T + 1, targets.begin() + i * T);
        }
        const float loss = model.forward(inputs, targets, B, T);
        model.backward();
        const float lr = lr_schedule(step, opt.steps, lr_max, warmup, min_frac);
        adam.update(model.params(), model.grads(), model.layout(), lr);
        if (step >= opt.steps - tail) tail_sum += loss;
        if (!opt.quiet && ((step + 1) % every == 0 || step == 0 || step + 1 == opt.steps)) {
            const double el = std::chrono::duration<double>(clock::now() - t_train).count();
            const double tok_s = double(step + 1) * B * T / std::max(el, 1e-9);
            const double left = el / (step + 1) * (opt.steps - step - 1);
            const float val = val_sents.empty() ? 0.f : sentence_loss(model, val_sents, eos);
            std::fprintf(stderr, "step %5d/%d  loss %.4f  held-out %.4f  lr %.2e  %7.0f tok/s  %4.0fs left\n",
                         step + 1, opt.steps, loss, val, lr, tok_s, left);
        }
    }

    TrainReport rep;
    rep.steps = opt.steps;
    rep.train_loss = float(tail_sum / tail);
    rep.val_loss = val_sents.empty() ? 0.f : sentence_loss(model, val_sents, eos);
    rep.vocab_size = cfg.vocab_size;
    rep.n_params = cfg.n_params();
    if (!opt.quiet)
        std::fprintf(stderr, "train: sentence loss train %.4f, held-out %.4f\n",
                     sentence_loss(model, train_sents, eos), rep.val_loss);

    WordTokenizer tok(vocab);
    save_model_folder(opt.out_dir, cfg, model.weights(), &tok);
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return rep;
}

}  // namespace kv
