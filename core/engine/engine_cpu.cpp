// CpuEngine: the reference GPT-2 forward pass on the CPU with Eigen, reading and
// appending to a KVCache, filling a StepTrace. Notation: n tokens processed this
// step at positions start_pos..start_pos+n-1, nk = start_pos+n keys, C n_embd,
// Q = C + 2*kv_dim (c_attn width), hd head_dim, H heads, Hkv kv heads.
// Counters are incremented in the loops that do the work, never from formulas.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "core/engine/threadpool.h"

namespace kv {

namespace {

using Stride = Eigen::OuterStride<>;
using ConstBlockMap = Eigen::Map<const RowMat, 0, Stride>;
using BlockMap = Eigen::Map<RowMat, 0, Stride>;

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
template <class Derived>
void gelu_inplace(Eigen::MatrixBase<Derived>& x) {
    const float k = std::sqrt(2.0f / float(M_PI));
    x = (0.5f * x.array() * (1.0f + (k * (x.array() + 0.044715f * x.array().cube())).tanh())).matrix();
}

// Column ranges [begin, end) of `width` split into `parts` pieces whose edges fall on
// multiples of 16 floats (64-byte lines), so threads never share a cache line.
struct Split {
    int width = 0, parts = 1;
    int begin(int i) const { return edge(i); }
    int end(int i) const { return edge(i + 1); }
    int edge(int i) const {
        if (i >= parts) return width;
        const int64_t e = int64_t(width) * i / parts;
        return std::min(width, int((e + 15) / 16 * 16));
    }
};

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
        scores_ = RowMat::Zero(int64_t(cfg_.n_head) * kTile, T);
        logits_ = RowVec::Zero(cfg_.vocab_size);
        head_cnt_.assign(cfg_.n_head, Counters{});
        set_threads(0);
    }

    std::string backend() const override { return "cpu"; }
    const ModelConfig& config() const override { return cfg_; }
    int cache_rows() const override { return cache_.n_rows(); }
    void truncate_cache(int n) override { cache_.truncate(n); }
    int64_t cache_bytes() const override { return cache_.bytes_used(); }

    void read_cache_head(int layer, int kv_head, RowMat& k, RowMat& v) const override {
        const int hd = cfg_.head_dim(), rows = cache_.n_rows();
        check_cache_head(cfg_, layer, kv_head);
        k = cache_.k(layer).block(0, kv_head * hd, rows, hd);
        v = cache_.v(layer).block(0, kv_head * hd, rows, hd);
    }

    // n <= 0: one thread per hardware thread.
    void set_threads(int n) override {
        const int want = n > 0 ? n : ThreadPool::default_threads();
        if (pool_ && pool_->size() == want) return;
        pool_.reset();
        pool_ = std::make_unique<ThreadPool>(want);
    }

    void forward(const ForwardRequest& req, StepTrace& tr, std::vector<float>* logits_all) override;

private:
    static constexpr int kTile = 32;  // query rows per attention tile

    // Y = X * W + b (or Y += X * W + b), then GELU when asked; X (n, in), W (in, out).
    // Split by output columns, so each thread streams its own slice of W.
    void linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const RowVec& b, bool accumulate, bool gelu,
                Counters& cnt);
    // Causal attention of the n new rows of qkv_ over cache rows [0, p0+n), one task
    // per query head; fills att_ and the trace of recorded heads.
    void attention(int l, int p0, int n, int r0, StepTrace& tr, Counters& cnt);

    int n_parts() const { return pool_->size() == 1 ? 1 : pool_->size() * 4; }

    const ModelConfig cfg_;
    const Weights& w_;
    KVCache cache_;
    std::unique_ptr<ThreadPool> pool_;
    // Activations, preallocated to n_ctx rows; a step uses the top n rows.
    RowMat x_;       // (T, C) residual stream
    RowMat h_;       // (T, C) LayerNorm output
    RowMat qkv_;     // (T, Q) [q | k | v] per position
    RowMat att_;     // (T, C) attention output, heads side by side
    RowMat fc_;      // (T, 4C) MLP hidden
    RowMat scores_;  // (H * kTile, T) each head's scores for one tile of query rows
    RowVec logits_;  // (V)
    std::vector<Counters> head_cnt_;  // (H) per-head counts of one attention call
};

void CpuEngine::linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const RowVec& b, bool accumulate,
                       bool gelu, Counters& cnt) {
    const int in = int(W.rows()), out = int(W.cols());
    const Split sp{out, std::min(n_parts(), std::max(1, out / 64))};
    pool_->parallel_for(sp.parts, [&](int i) {
        const int c0 = sp.begin(i), w = sp.end(i) - c0;
        if (w <= 0) return;
        auto y = Y.block(0, c0, n, w);
        const auto x = X.topRows(n);
        const auto wb = W.middleCols(c0, w);
        if (accumulate)
            y.noalias() += x * wb;
        else
            y.noalias() = x * wb;
        y.rowwise() += b.segment(c0, w);
        if (gelu) gelu_inplace(y);
    });
    cnt.flops += 2LL * n * in * out;
}

void CpuEngine::attention(int l, int p0, int n, int r0, StepTrace& tr, Counters& cnt) {
    const int C = cfg_.n_embd, H = cfg_.n_head, hd = cfg_.head_dim(), kvd = cfg_.kv_dim();
    const int group = H / cfg_.n_kv_head, Qd = cfg_.qkv_dim(), T = cfg_.n_ctx;
    const float scale = 1.0f / std::sqrt(float(hd));
    const RowMat& Kc = cache_.k(l);
    const RowMat& Vc = cache_.v(l);
    for (auto& hc : head_cnt_) hc = Counters{};
    pool_->parallel_for(H, [&](int h) {
        const int g = h / group;
        Counters& hc = head_cnt_[h];
        HeadTrace* ht = nullptr;
        for (auto& t : tr.heads)
            if (t.layer == l && t.head == h) ht = &t;
        ConstBlockMap K(Kc.data() + g * hd, p0 + n, hd, Stride(kvd));
        ConstBlockMap V(Vc.data() + g * hd, p0 + n, hd, Stride(kvd));
        for (int i0 = 0; i0 < n; i0 += kTile) {
            const int rows = std::min(kTile, n - i0);
            const int k0 = p0 + i0;  // keys [0, k0) are seen by every row of the tile
            ConstBlockMap Qt(qkv_.data() + int64_t(i0) * Qd + h * hd, rows, hd, Stride(Qd));
            BlockMap S(scores_.data() + int64_t(h) * kTile * T, rows, T, Stride(T));
            BlockMap O(att_.data() + int64_t(i0) * C + h * hd, rows, hd, Stride(C));
            // Scores: a product over the keys the whole tile sees, then per row the
            // keys of the tile's own triangle [k0, pos].
            if (k0 > 0) S.leftCols(k0).noalias() = Qt * K.topRows(k0).transpose();
            for (int r = 0; r < rows; ++r) {
                const int pos = k0 + r, nkeys = pos + 1;
                for (int j = k0; j <= pos; ++j) S(r, j) = Qt.row(r).dot(K.row(j));
                hc.attn_scores += nkeys;
                auto s = S.row(r).head(nkeys);
                s *= scale;
                const float mx = s.maxCoeff();
                s = (s.array() - mx).exp().matrix();
                s /= s.sum();
            }
            // Weighted values, the same split: shared keys as one product, then the triangle.
            if (k0 > 0)
                O.noalias() = S.leftCols(k0) * V.topRows(k0);
            else
                O.setZero();
            for (int r = 0; r < rows; ++r) {
                const int pos = k0 + r, nkeys = pos + 1;
                for (int j = k0; j <= pos; ++j) O.row(r) += S(r, j) * V.row(j);
                hc.flops += 2LL * nkeys * hd * 2;  // q.k and weights.v
            }
            if (ht) {
                for (int r = std::max(0, r0 - i0); r < rows; ++r) {
                    const int i = i0 + r, pos = p0 + i, row = i - r0;
                    ht->q.row(row) = Qt.row(r);
                    ht->k.row(row) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + g * hd, hd);
                    ht->v.row(row) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + kvd + g * hd, hd);
                    ht->attn.row(row).head(pos + 1) = S.row(r).head(pos + 1);
                }
            }
        }
    });
    for (const auto& hc : head_cnt_) {
        cnt.attn_scores += hc.attn_scores;
        cnt.flops += hc.flops;
    }
}

void CpuEngine::forward(const ForwardRequest& req, StepTrace& tr, std::vector<float>* logits_all) {
    const auto t0 = std::chrono::steady_clock::now();
    const int n = int(req.ids.size());
    const int p0 = req.start_pos;
    const int C = cfg_.n_embd, H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim();
    const int kvd = cfg_.kv_dim(), group = H / Hkv, V = cfg_.vocab_size;
    check_forward_request(cfg_, req, cache_.n_rows());
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

    // Embeddings: x = wte[id] + wpe[pos].
    for (int i = 0; i < n; ++i) x_.row(i) = w_.wte.row(req.ids[i]) + w_.wpe.row(p0 + i);

    auto X = x_.topRows(n);
    auto Hs = h_.topRows(n);

    for (int l = 0; l < cfg_.n_layer; ++l) {
        const LayerWeights& lw = w_.layers[l];

        // Attention block: h = LN1(x); [q|k|v] = h * c_attn + b.
        layernorm(Hs, X, lw.ln_1_w, lw.ln_1_b, cfg_.layer_norm_epsilon);
        linear(qkv_, h_, n, lw.attn_w, lw.attn_b, false, false, cnt);

        // K and V of the new positions enter the cache (the only write).
        for (int i = 0; i < n; ++i) {
            const int pos = p0 + i;
            cache_.write(l, pos, qkv_.row(i).data() + C, qkv_.row(i).data() + C + kvd);
            cnt.kv_rows_computed += Hkv;
            if (pos < req.n_known) cnt.kv_rows_recomputed += Hkv;
        }
        // Rows [0, p0) of every kv head come from the cache, not from this step.
        for (int g = 0; g < Hkv; ++g) cnt.kv_rows_reused += p0;

        attention(l, p0, n, r0, tr, cnt);

        // x += att * c_proj + b
        linear(x_, att_, n, lw.attn_proj_w, lw.attn_proj_b, true, false, cnt);

        // MLP block: x += gelu(LN2(x) * c_fc + b) * c_proj + b
        layernorm(Hs, X, lw.ln_2_w, lw.ln_2_b, cfg_.layer_norm_epsilon);
        linear(fc_, h_, n, lw.fc_w, lw.fc_b, false, true, cnt);
        linear(x_, fc_, n, lw.mlp_proj_w, lw.mlp_proj_b, true, false, cnt);
    }
    cache_.commit(nk);

    // Head: final LayerNorm and logits, for the last position (or all). Split by
    // vocabulary rows: each thread takes contiguous rows of the (V, C) head.
    const RowMat& head = w_.head(cfg_);
    const Split sp{V, n_parts()};
    if (req.all_logits && logits_all) {
        layernorm(Hs, X, w_.ln_f_w, w_.ln_f_b, cfg_.layer_norm_epsilon);
        logits_all->resize(size_t(n) * V);
        Eigen::Map<RowMat> out(logits_all->data(), n, V);
        pool_->parallel_for(sp.parts, [&](int i) {
            const int a = sp.begin(i), len = sp.end(i) - a;
            if (len > 0) out.middleCols(a, len).noalias() = Hs * head.middleRows(a, len).transpose();
        });
        cnt.flops += 2LL * n * C * V;
        tr.logits.assign(logits_all->end() - V, logits_all->end());
    } else {
        layernorm(h_.row(n - 1), x_.row(n - 1), w_.ln_f_w, w_.ln_f_b, cfg_.layer_norm_epsilon);
        const auto hrow = h_.row(n - 1);
        pool_->parallel_for(sp.parts, [&](int i) {
            const int a = sp.begin(i), len = sp.end(i) - a;
            if (len > 0) logits_.segment(a, len).noalias() = hrow * head.middleRows(a, len).transpose();
        });
        cnt.flops += 2LL * C * V;
        tr.logits.assign(logits_.data(), logits_.data() + V);
    }

    cnt.cache_rows = cache_.n_rows();
    cnt.cache_bytes = cache_.bytes_used();
    finish_trace(tr, req, cnt, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const Model& model) { return std::make_unique<CpuEngine>(model); }

}  // namespace kv
