// CpuEngine: the reference GPT-2 forward pass on the CPU with Eigen, reading and
// appending to a KVCache, filling a StepTrace. Notation: n tokens processed this
// step at positions start_pos..start_pos+n-1, nk = start_pos+n keys, C n_embd,
// Q = C + 2*kv_dim (c_attn width), hd head_dim, H heads, Hkv kv heads.
// Counters are incremented in the loops that do the work, never from formulas.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "core/engine.h"
#include "core/error.h"
#include "core/kv_cache.h"
#include "core/model_io.h"

namespace kv {

namespace {

using Stride = Eigen::OuterStride<>;
using ConstBlockMap = Eigen::Map<const RowMat, 0, Stride>;

// out = LayerNorm(x) * gamma + beta, row by row (biased variance, as GPT-2).
void layernorm(Eigen::Ref<RowMat> out, const Eigen::Ref<const RowMat>& x, const RowVec& gamma,
               const RowVec& beta, float eps) {
    const int C = int(x.cols());
    for (int i = 0; i < x.rows(); ++i) {
        const float mean = x.row(i).sum() / C;
        const float var = (x.row(i).array() - mean).square().sum() / C;
        const float rstd = 1.0f / std::sqrt(var + eps);
        out.row(i) = ((x.row(i).array() - mean) * rstd * gamma.array() + beta.array()).matrix();
    }
}

// GELU, tanh approximation ("gelu_new" in GPT-2).
void gelu_inplace(Eigen::Ref<RowMat> x) {
    const float k = std::sqrt(2.0f / float(M_PI));
    x = (0.5f * x.array() * (1.0f + (k * (x.array() + 0.044715f * x.array().cube())).tanh())).matrix();
}

class CpuEngine final : public Engine {
public:
    explicit CpuEngine(const Model& model)
        : cfg_(model.config), w_(model.weights), cache_(model.config) {
        const int T = cfg_.n_ctx, C = cfg_.n_embd;
        x_ = RowMat::Zero(T, C);
        h_ = RowMat::Zero(T, C);
        qkv_ = RowMat::Zero(T, cfg_.qkv_dim());
        att_ = RowMat::Zero(T, C);
        fc_ = RowMat::Zero(T, 4 * C);
        scores_ = RowVec::Zero(T);
    }

    std::string backend() const override { return "cpu"; }
    const ModelConfig& config() const override { return cfg_; }
    int cache_rows() const override { return cache_.n_rows(); }
    void truncate_cache(int n) override { cache_.truncate(n); }
    int64_t cache_bytes() const override { return cache_.bytes_used(); }

    void read_cache_head(int layer, int kv_head, RowMat& k, RowMat& v) const override {
        const int hd = cfg_.head_dim(), rows = cache_.n_rows();
        if (layer < 0 || layer >= cfg_.n_layer || kv_head < 0 || kv_head >= cfg_.n_kv_head)
            throw Error("read_cache_head: layer " + std::to_string(layer) + " / kv head " +
                        std::to_string(kv_head) + " out of range");
        k = cache_.k(layer).block(0, kv_head * hd, rows, hd);
        v = cache_.v(layer).block(0, kv_head * hd, rows, hd);
    }

    void forward(const ForwardRequest& req, StepTrace& tr, std::vector<float>* logits_all) override;

private:
    const ModelConfig cfg_;
    const Weights& w_;
    KVCache cache_;
    // Activations, preallocated to n_ctx rows; a step uses the top n rows.
    RowMat x_;       // (T, C) residual stream
    RowMat h_;       // (T, C) LayerNorm output
    RowMat qkv_;     // (T, Q) [q | k | v] per position
    RowMat att_;     // (T, C) attention output, heads side by side
    RowMat fc_;      // (T, 4C) MLP hidden
    RowVec scores_;  // (T) one query's scores over the keys
    RowVec logits_;  // (V)
};

void CpuEngine::forward(const ForwardRequest& req, StepTrace& tr, std::vector<float>* logits_all) {
    const auto t0 = std::chrono::steady_clock::now();
    const int n = int(req.ids.size());
    const int p0 = req.start_pos;
    const int C = cfg_.n_embd, H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim();
    const int kvd = cfg_.kv_dim(), group = H / Hkv, V = cfg_.vocab_size;
    if (n == 0) throw Error("forward: no tokens to process");
    if (p0 < 0 || p0 > cache_.n_rows())
        throw Error("forward: start_pos " + std::to_string(p0) + " but the cache holds " +
                    std::to_string(cache_.n_rows()) + " rows");
    if (p0 + n > cfg_.n_ctx)
        throw Error("forward: " + std::to_string(p0 + n) + " tokens exceed the model's context of " +
                    std::to_string(cfg_.n_ctx));
    for (int id : req.ids)
        if (id < 0 || id >= V)
            throw Error("forward: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(V) + ")");
    cache_.truncate(p0);  // rows at and after start_pos are rewritten
    const int nk = p0 + n;

    Counters cnt;
    cnt.tokens_processed = n;

    // Which heads the trace records, and which rows.
    const TraceOptions& topt = req.trace_opts;
    const int r0 = topt.record ? std::max(0, n - std::max(1, topt.max_rows)) : n;  // first recorded row
    tr.heads.clear();
    if (topt.record) {
        for (int l = 0; l < cfg_.n_layer; ++l)
            for (int h = 0; h < H; ++h) {
                if (!topt.all_heads && !(l == topt.layer && h == topt.head)) continue;
                HeadTrace ht;
                ht.layer = l;
                ht.head = h;
                ht.kv_head = h / group;
                ht.first_pos = p0 + r0;
                ht.q.resize(n - r0, hd);
                ht.k.resize(n - r0, hd);
                ht.v.resize(n - r0, hd);
                ht.attn = RowMat::Zero(n - r0, nk);
                tr.heads.push_back(std::move(ht));
            }
    }
    auto traced = [&](int l, int h) -> HeadTrace* {
        for (auto& ht : tr.heads)
            if (ht.layer == l && ht.head == h) return &ht;
        return nullptr;
    };

    // Embeddings: x = wte[id] + wpe[pos].
    for (int i = 0; i < n; ++i) x_.row(i) = w_.wte.row(req.ids[i]) + w_.wpe.row(p0 + i);

    auto X = x_.topRows(n);
    auto Hs = h_.topRows(n);
    auto QKV = qkv_.topRows(n);
    auto ATT = att_.topRows(n);
    auto FC = fc_.topRows(n);
    const float scale = 1.0f / std::sqrt(float(hd));

    for (int l = 0; l < cfg_.n_layer; ++l) {
        const LayerWeights& lw = w_.layers[l];

        // Attention block: h = LN1(x); [q|k|v] = h * c_attn + b.
        layernorm(Hs, X, lw.ln_1_w, lw.ln_1_b, cfg_.layer_norm_epsilon);
        QKV.noalias() = Hs * lw.attn_w;
        QKV.rowwise() += lw.attn_b;
        cnt.flops += 2LL * n * C * cfg_.qkv_dim();

        // K and V of the new positions enter the cache (the only write).
        for (int i = 0; i < n; ++i) {
            const int pos = p0 + i;
            cache_.write(l, pos, qkv_.row(i).data() + C, qkv_.row(i).data() + C + kvd);
            cnt.kv_rows_computed += Hkv;
            if (pos < req.n_known) cnt.kv_rows_recomputed += Hkv;
        }

        const RowMat& Kc = cache_.k(l);
        const RowMat& Vc = cache_.v(l);
        for (int g = 0; g < Hkv; ++g) {
            // Rows [0, p0) of this kv head come from the cache, not from this step.
            cnt.kv_rows_reused += p0;
            ConstBlockMap Kg(Kc.data() + g * hd, nk, hd, Stride(kvd));
            ConstBlockMap Vg(Vc.data() + g * hd, nk, hd, Stride(kvd));
            for (int h = g * group; h < (g + 1) * group; ++h) {
                HeadTrace* ht = traced(l, h);
                for (int i = 0; i < n; ++i) {
                    const int pos = p0 + i;
                    const int nkeys = pos + 1;  // causal: keys 0..pos
                    Eigen::Map<const RowVec> q(qkv_.row(i).data() + h * hd, hd);
                    auto s = scores_.head(nkeys);
                    s.noalias() = q * Kg.topRows(nkeys).transpose();
                    cnt.attn_scores += nkeys;
                    s *= scale;
                    const float mx = s.maxCoeff();
                    s = (s.array() - mx).exp().matrix();
                    s /= s.sum();
                    Eigen::Map<RowVec> out(att_.row(i).data() + h * hd, hd);
                    out.noalias() = s * Vg.topRows(nkeys);
                    cnt.flops += 2LL * nkeys * hd * 2;  // q.k and weights.v
                    if (ht && i >= r0) {
                        const int r = i - r0;
                        ht->q.row(r) = q;
                        ht->k.row(r) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + g * hd, hd);
                        ht->v.row(r) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + kvd + g * hd, hd);
                        ht->attn.row(r).head(nkeys) = s;
                    }
                }
            }
        }

        // x += att * c_proj + b
        X.noalias() += ATT * lw.attn_proj_w;
        X.rowwise() += lw.attn_proj_b;
        cnt.flops += 2LL * n * C * C;

        // MLP block: x += gelu(LN2(x) * c_fc + b) * c_proj + b
        layernorm(Hs, X, lw.ln_2_w, lw.ln_2_b, cfg_.layer_norm_epsilon);
        FC.noalias() = Hs * lw.fc_w;
        FC.rowwise() += lw.fc_b;
        cnt.flops += 2LL * n * C * 4 * C;
        gelu_inplace(FC);
        X.noalias() += FC * lw.mlp_proj_w;
        X.rowwise() += lw.mlp_proj_b;
        cnt.flops += 2LL * n * 4 * C * C;
    }
    cache_.commit(nk);

    // Head: final LayerNorm and logits, for the last position (or all).
    const RowMat& head = w_.head(cfg_);
    if (req.all_logits && logits_all) {
        layernorm(Hs, X, w_.ln_f_w, w_.ln_f_b, cfg_.layer_norm_epsilon);
        logits_all->resize(size_t(n) * V);
        Eigen::Map<RowMat> out(logits_all->data(), n, V);
        out.noalias() = Hs * head.transpose();
        cnt.flops += 2LL * n * C * V;
        tr.logits.assign(logits_all->end() - V, logits_all->end());
    } else {
        layernorm(h_.row(n - 1), x_.row(n - 1), w_.ln_f_w, w_.ln_f_b, cfg_.layer_norm_epsilon);
        logits_.resize(V);
        logits_.noalias() = h_.row(n - 1) * head.transpose();
        cnt.flops += 2LL * C * V;
        tr.logits.assign(logits_.data(), logits_.data() + V);
    }

    cnt.cache_rows = cache_.n_rows();
    cnt.cache_bytes = cache_.bytes_used();
    tr.input_ids.assign(req.ids.begin(), req.ids.end());
    tr.start_pos = p0;
    tr.n_known = req.n_known;
    tr.cache_rows_read = p0;
    tr.counters = cnt;
    tr.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const Model& model) { return std::make_unique<CpuEngine>(model); }

#ifndef KVSCOPE_HAVE_CUDA
bool cuda_available(std::string* why_not) {
    if (why_not) *why_not = "this build has no CUDA backend (nvcc was not found when it was configured)";
    return false;
}
#endif

std::unique_ptr<Engine> make_engine(const Model& model, const std::string& backend) {
    if (backend == "cpu") return make_cpu_engine(model);
    if (backend == "cuda") {
        std::string why;
        if (!cuda_available(&why)) throw Error("--backend cuda: " + why);
#ifdef KVSCOPE_HAVE_CUDA
        return make_cuda_engine(model);
#endif
    }
    throw Error("--backend '" + backend + "': unknown backend (use cpu or cuda)");
}

}  // namespace kv
