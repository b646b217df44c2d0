// CpuEngine: the reference GPT-2 forward pass on the CPU with Eigen, reading and
// writing a HostKVCache, filling a StepTrace. Notation: n tokens processed this
// step at positions p0..p0+n-1; the keys are the cache slots some query of the step
// reads (KVCache::keys_for), nk of them in ascending position, key j at key_pos_[j];
// C n_embd, Q = C + 2*kv_dim (c_attn width), hd head_dim, H heads, Hkv kv heads.
// Counters are incremented in the loops that do the work, never from formulas.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/engine/kv_cache.h"
#include "core/engine/matmul.h"
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
    explicit CpuEngine(const Model& model) : cfg_(model.config), w_(model.weights) {
        const int T = cfg_.n_ctx, C = cfg_.n_embd;
        x_ = RowMat::Zero(T, C);
        h_ = RowMat::Zero(T, C);
        qkv_ = RowMat::Zero(T, cfg_.qkv_dim());
        att_ = RowMat::Zero(T, C);
        fc_ = RowMat::Zero(T, 4 * C);
        scores_ = RowMat::Zero(int64_t(cfg_.n_head) * kTile, T);
        k_tmp_ = RowMat::Zero(T, cfg_.kv_dim());
        v_tmp_ = RowMat::Zero(T, cfg_.kv_dim());
        key_slots_.reserve(size_t(T));
        key_pos_.reserve(size_t(T));
        new_slots_.reserve(size_t(T));
        logits_ = RowVec::Zero(cfg_.vocab_size);
        head_cnt_.assign(cfg_.n_head, Counters{});
        set_threads(0);
    }

    std::string backend() const override { return "cpu"; }
    const ModelConfig& config() const override { return cfg_; }
    std::unique_ptr<KVCache> make_cache(const CachePolicy& policy) const override {
        return std::make_unique<HostKVCache>(cfg_, policy);
    }

    // n <= 0: one thread per hardware thread.
    void set_threads(int n) override {
        const int want = n > 0 ? n : ThreadPool::default_threads();
        if (pool_ && pool_->size() == want) return;
        pool_.reset();
        pool_ = std::make_unique<ThreadPool>(want);
        parts_.assign(size_t(n_parts()) * kFewRows * std::max(cfg_.qkv_dim(), 4 * cfg_.n_embd), 0.0f);
    }

    void forward(const ForwardRequest& req, KVCache& cache, StepTrace& tr, std::vector<float>* logits_all) override;

private:
    static constexpr int kTile = 32;  // query rows per attention tile

    // The key rows of layer l as f32 (a view of the cache, or decoded into k_tmp_/v_tmp_).
    HostKVCache::Rows key_rows(const HostKVCache& cache, int l);
    // Attention of the n new rows of qkv_ over the keys (the cache's slots for this
    // step, under its mask), one task per query head; fills att_ and the trace of
    // recorded heads.
    void attention(int l, int p0, int n, int r0, const HostKVCache::Rows& kv, const CachePolicy& pol,
                   StepTrace& tr, Counters& cnt);
    // Y = X * W + b (or Y += X * W + b), then GELU when asked; X (n, in), W (in, out)
    // held in f32 (W) or f16/bf16 (W16, when w_.type says so).
    void linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const Mat16& W16, const RowVec& b,
                bool accumulate, bool gelu, Counters& cnt);
    // Few rows (decode): split by W's rows, each task streams a contiguous block of W
    // into its own partial sums (parts_), which are then added into Y.
    void linear_few(RowMat& Y, const RowMat& X, int n, const void* W, int in, int out, const RowVec& b,
                    bool accumulate, bool gelu);
    // The logits of one row h against the head's rows, split by vocabulary rows.
    void head_row(const float* h, float* logits);

    int n_parts() const { return pool_->size() == 1 ? 1 : pool_->size() * 4; }

    const ModelConfig cfg_;
    const Weights& w_;
    std::mutex busy_;  // one forward at a time: the scratch below is shared
    std::unique_ptr<ThreadPool> pool_;
    // Activations, preallocated to n_ctx rows; a step uses the top n rows.
    RowMat x_;       // (T, C) residual stream
    RowMat h_;       // (T, C) LayerNorm output
    RowMat qkv_;     // (T, Q) [q | k | v] per position
    RowMat att_;     // (T, C) attention output, heads side by side
    RowMat fc_;      // (T, 4C) MLP hidden
    RowMat scores_;  // (H * kTile, T) each head's scores for one tile of query rows
    RowVec logits_;  // (V)
    RowMat k_tmp_, v_tmp_;             // (T, kv_dim) keys/values decoded from f16/int8 or gathered
    std::vector<int> key_slots_, key_pos_;  // (nk) the step's keys: cache slot, position
    std::vector<int> new_slots_;       // (n) the slots of this step's positions
    std::vector<float> parts_;  // (tasks, kFewRows, max(Q, 4C)) partial sums of linear_few
    static constexpr int kFewRows = 4;  // up to this many rows take linear_few
    std::vector<Counters> head_cnt_;  // (H) per-head counts of one attention call
};

void CpuEngine::linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const Mat16& W16, const RowVec& b,
                       bool accumulate, bool gelu, Counters& cnt) {
    const bool h16 = w_.type != WeightType::f32;
    const int in = h16 ? int(W16.rows) : int(W.rows()), out = h16 ? int(W16.cols) : int(W.cols());
    cnt.flops += 2LL * n * in * out;
    if (n <= kFewRows) {
        linear_few(Y, X, n, h16 ? static_cast<const void*>(W16.data) : W.data(), in, out, b, accumulate, gelu);
        return;
    }
    const Split sp{out, std::min(n_parts(), std::max(1, out / 64))};
    pool_->parallel_for(sp.parts, [&](int i) {
        const int c0 = sp.begin(i), w = sp.end(i) - c0;
        if (w <= 0) return;
        auto y = Y.block(0, c0, n, w);
        const auto x = X.topRows(n);
        if (h16) {
            matmul::many_rows_times(W16, c0, w, n, X.data(), X.cols(), Y.data() + c0, Y.cols(), accumulate);
        } else {
            const auto wb = W.middleCols(c0, w);
            if (accumulate)
                y.noalias() += x * wb;
            else
                y.noalias() = x * wb;
        }
        y.rowwise() += b.segment(c0, w);
        if (gelu) gelu_inplace(y);
    });
}

void CpuEngine::linear_few(RowMat& Y, const RowMat& X, int n, const void* W, int in, int out, const RowVec& b,
                           bool accumulate, bool gelu) {
    const WeightType t = w_.type;
    const int esize = weight_type_bytes(t);
    const int parts = std::min(n_parts(), std::max(1, in / 16));
    const int64_t stride = int64_t(kFewRows) * out;  // floats per task's partial sums
    pool_->parallel_for(parts, [&](int p) {
        const int k0 = int(int64_t(in) * p / parts), k1 = int(int64_t(in) * (p + 1) / parts);
        matmul::rows_times(t, n, k1 - k0, out, X.data() + k0, X.cols(),
                           static_cast<const char*>(W) + int64_t(k0) * out * esize, out, parts_.data() + p * stride, out);
    });
    for (int r = 0; r < n; ++r) {
        auto y = Y.row(r).head(out);
        if (!accumulate) y = b;
        else y += b;
        for (int p = 0; p < parts; ++p) y += Eigen::Map<const RowVec>(parts_.data() + p * stride + int64_t(r) * out, out);
        if (gelu) gelu_inplace(y);
    }
}

void CpuEngine::head_row(const float* h, float* logits) {
    const int V = cfg_.vocab_size, C = cfg_.n_embd;
    const Split sp{V, n_parts()};
    const bool h16 = w_.type != WeightType::f32;
    const void* H = h16 ? static_cast<const void*>(w_.head16(cfg_).data) : w_.head(cfg_).data();
    const int esize = weight_type_bytes(w_.type);
    pool_->parallel_for(sp.parts, [&](int i) {
        const int a = sp.begin(i), len = sp.end(i) - a;
        if (len > 0)
            matmul::dot_rows(w_.type, len, C, h, static_cast<const char*>(H) + int64_t(a) * C * esize, logits + a);
    });
}

HostKVCache::Rows CpuEngine::key_rows(const HostKVCache& cache, int l) {
    HostKVCache::Rows rows;
    if (cache.direct_rows(l, key_slots_, rows)) return rows;
    const int nk = int(key_slots_.size());
    const Split sp{nk, std::min(n_parts(), std::max(1, nk / 32))};
    pool_->parallel_for(sp.parts, [&](int i) {
        cache.decode_rows(l, key_slots_, std::min(nk, i * nk / sp.parts), std::min(nk, (i + 1) * nk / sp.parts),
                          k_tmp_.data(), v_tmp_.data());
    });
    return {k_tmp_.data(), v_tmp_.data(), cfg_.kv_dim()};
}

namespace {

// Which keys (indices into the step's key list, ascending position) the query at
// position q reads under the policy: [0, s) (the sinks, or everything without a
// window) and [lo, hi) (the window, up to the query itself). lo >= s.
struct KeyRange {
    int s = 0, lo = 0, hi = 0;
    int count() const { return s + hi - lo; }
};
KeyRange key_range(const std::vector<int>& key_pos, const CachePolicy& pol, int q) {
    auto first_above = [&](int p) {  // index of the first key at a position > p
        return int(std::upper_bound(key_pos.begin(), key_pos.end(), p) - key_pos.begin());
    };
    KeyRange r;
    r.hi = first_above(q);
    if (!pol.windowed()) return {r.hi, r.hi, r.hi};
    r.s = std::min(r.hi, first_above(std::min(q, pol.sinks - 1)));
    r.lo = std::max(r.s, first_above(q - pol.window));
    // One run [0, hi) when the window starts right after the sinks: then the query
    // is computed exactly as without a window (so a window >= the sequence is full).
    if (r.lo == r.s) return {r.hi, r.hi, r.hi};
    return r;
}

}  // namespace

// Per tile of query rows: the keys every row reads are two products, [0, a) (sinks;
// all keys so far without a window) and [c0, c1) (the window all rows share); each
// row then adds its own keys one dot product at a time. Without a window this is
// "shared keys as one product, then the tile's triangle".
void CpuEngine::attention(int l, int p0, int n, int r0, const HostKVCache::Rows& kv, const CachePolicy& pol,
                          StepTrace& tr, Counters& cnt) {
    const int C = cfg_.n_embd, H = cfg_.n_head, hd = cfg_.head_dim(), Qd = cfg_.qkv_dim(), T = cfg_.n_ctx;
    const int kvd = cfg_.kv_dim(), nk = int(key_pos_.size());
    const float scale = 1.0f / std::sqrt(float(hd));
    for (auto& hc : head_cnt_) hc = Counters{};
    pool_->parallel_for(H, [&](int h) {
        const int g = cfg_.kv_head_of(h);
        Counters& hc = head_cnt_[h];
        HeadTrace* ht = nullptr;
        for (auto& t : tr.heads)
            if (t.layer == l && t.head == h) ht = &t;
        ConstBlockMap K(kv.k + g * hd, nk, hd, Stride(kv.row_stride));
        ConstBlockMap V(kv.v + g * hd, nk, hd, Stride(kv.row_stride));
        for (int i0 = 0; i0 < n; i0 += kTile) {
            const int rows = std::min(kTile, n - i0);
            const KeyRange first = key_range(key_pos_, pol, p0 + i0), last = key_range(key_pos_, pol, p0 + i0 + rows - 1);
            // Keys from own0 on are the tile's own positions: a per-row triangle.
            const int own0 = first.hi - 1;
            const int a = std::min(first.s, own0), c0 = last.lo, c1 = std::max(c0, std::min(first.hi, own0));
            ConstBlockMap Qt(qkv_.data() + int64_t(i0) * Qd + h * hd, rows, hd, Stride(Qd));
            BlockMap S(scores_.data() + int64_t(h) * kTile * T, rows, T, Stride(T));
            BlockMap O(att_.data() + int64_t(i0) * C + h * hd, rows, hd, Stride(C));
            // The row's own keys: [a, s) and [lo, hi) without the shared [c0, c1).
            auto for_own = [&](const KeyRange& kr, auto&& f) {
                for (int j = a; j < kr.s; ++j) f(j);
                for (int j = kr.lo; j < std::min(kr.hi, c0); ++j) f(j);
                for (int j = std::max(kr.lo, c1); j < kr.hi; ++j) f(j);
            };
            if (a > 0) S.leftCols(a).noalias() = Qt * K.topRows(a).transpose();
            if (c1 > c0) S.middleCols(c0, c1 - c0).noalias() = Qt * K.middleRows(c0, c1 - c0).transpose();
            for (int r = 0; r < rows; ++r) {
                const KeyRange kr = key_range(key_pos_, pol, p0 + i0 + r);
                for_own(kr, [&](int j) { S(r, j) = Qt.row(r).dot(K.row(j)); });
                hc.attn_scores += kr.count();
                // Softmax over the keys read: [0, s) and [lo, hi).
                auto s1 = S.row(r).head(kr.s);
                auto s2 = S.row(r).segment(kr.lo, kr.hi - kr.lo);
                s1 *= scale;
                s2 *= scale;
                float mx = -INFINITY;
                if (kr.s > 0) mx = s1.maxCoeff();
                if (kr.hi > kr.lo) mx = std::max(mx, s2.maxCoeff());
                s1 = (s1.array() - mx).exp().matrix();
                s2 = (s2.array() - mx).exp().matrix();
                const float sum = s1.sum() + s2.sum();
                s1 /= sum;
                s2 /= sum;
            }
            // Weighted values, the same split.
            if (a > 0)
                O.noalias() = S.leftCols(a) * V.topRows(a);
            else
                O.setZero();
            if (c1 > c0) O.noalias() += S.middleCols(c0, c1 - c0) * V.middleRows(c0, c1 - c0);
            for (int r = 0; r < rows; ++r) {
                const KeyRange kr = key_range(key_pos_, pol, p0 + i0 + r);
                for_own(kr, [&](int j) { O.row(r) += S(r, j) * V.row(j); });
                hc.flops += 2LL * kr.count() * hd * 2;  // q.k and weights.v
            }
            if (ht) {
                for (int r = std::max(0, r0 - i0); r < rows; ++r) {
                    const int i = i0 + r, row = i - r0;
                    const KeyRange kr = key_range(key_pos_, pol, p0 + i);
                    ht->q.row(row) = Qt.row(r);
                    ht->k.row(row) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + g * hd, hd);
                    ht->v.row(row) = Eigen::Map<const RowVec>(qkv_.row(i).data() + C + kvd + g * hd, hd);
                    for (int j = 0; j < kr.s; ++j) ht->attn(row, key_pos_[size_t(j)]) = S(r, j);
                    for (int j = kr.lo; j < kr.hi; ++j) ht->attn(row, key_pos_[size_t(j)]) = S(r, j);
                }
            }
        }
    });
    for (const auto& hc : head_cnt_) {
        cnt.attn_scores += hc.attn_scores;
        cnt.flops += hc.flops;
    }
}

void CpuEngine::forward(const ForwardRequest& req, KVCache& any_cache, StepTrace& tr, std::vector<float>* logits_all) {
    const auto t0 = std::chrono::steady_clock::now();
    auto* host = dynamic_cast<HostKVCache*>(&any_cache);
    if (!host) throw Error("cpu backend: the cache was made by another backend");
    HostKVCache& cache = *host;
    std::lock_guard<std::mutex> lock(busy_);
    const int n = int(req.ids.size());
    const int p0 = req.start_pos;
    const int C = cfg_.n_embd, H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim();
    const int kvd = cfg_.kv_dim(), V = cfg_.vocab_size;
    check_forward_request(cfg_, req, cache);
    cache.truncate(p0);  // positions at and after start_pos are computed again
    const std::vector<int>& placed = cache.place(n);
    new_slots_.assign(placed.begin(), placed.end());
    cache.keys_for(p0, p0 + n - 1, key_slots_, key_pos_);
    const int nk = p0 + n;  // positions the trace's attention rows span
    int keys_cached = 0;    // keys read from the cache, not computed this step
    for (int k : key_pos_) keys_cached += k < p0;

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
                ht.kv_head = cfg_.kv_head_of(h);
                ht.first_pos = p0 + r0;
                ht.q.resize(n - r0, hd);
                ht.k.resize(n - r0, hd);
                ht.v.resize(n - r0, hd);
                ht.attn = RowMat::Zero(n - r0, nk);
                tr.heads.push_back(std::move(ht));
            }
    }

    // Embeddings: x = wte[id] + wpe[pos].
    for (int i = 0; i < n; ++i) {
        w_.token_row(req.ids[i], x_.row(i).data());
        x_.row(i) += w_.wpe.row(p0 + i);
    }

    auto X = x_.topRows(n);
    auto Hs = h_.topRows(n);

    for (int l = 0; l < cfg_.n_layer; ++l) {
        const LayerWeights& lw = w_.layers[l];

        // Attention block: h = LN1(x); [q|k|v] = h * c_attn + b.
        layernorm(Hs, X, lw.ln_1_w, lw.ln_1_b, cfg_.layer_norm_epsilon);
        linear(qkv_, h_, n, lw.attn_w, lw.attn_w16, lw.attn_b, false, false, cnt);

        // K and V of the new positions enter the cache, in the slots it placed them.
        for (int i = 0; i < n; ++i) {
            cache.write(l, new_slots_[size_t(i)], qkv_.row(i).data() + C, qkv_.row(i).data() + C + kvd);
            cnt.kv_rows_computed += Hkv;
            if (p0 + i < req.n_known) cnt.kv_rows_recomputed += Hkv;
        }
        // The keys read from the cache, of every kv head.
        for (int g = 0; g < Hkv; ++g) cnt.kv_rows_reused += keys_cached;

        attention(l, p0, n, r0, key_rows(cache, l), cache.policy(), tr, cnt);

        // x += att * c_proj + b
        linear(x_, att_, n, lw.attn_proj_w, lw.attn_proj_w16, lw.attn_proj_b, true, false, cnt);

        // MLP block: x += gelu(LN2(x) * c_fc + b) * c_proj + b
        layernorm(Hs, X, lw.ln_2_w, lw.ln_2_b, cfg_.layer_norm_epsilon);
        linear(fc_, h_, n, lw.fc_w, lw.fc_w16, lw.fc_b, false, true, cnt);
        linear(x_, fc_, n, lw.mlp_proj_w, lw.mlp_proj_w16, lw.mlp_proj_b, true, false, cnt);
    }
    // Rows no later query can read leave the cache.
    const std::vector<int>& evicted = cache.evict();
    cnt.kv_rows_evicted += int64_t(cfg_.n_layer) * Hkv * int64_t(evicted.size());
    if (tr.keys_read.capacity() < size_t(cfg_.n_ctx)) tr.keys_read.reserve(size_t(cfg_.n_ctx));
    tr.keys_read.assign(key_pos_.begin(), key_pos_.end());

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
            if (len <= 0) return;
            if (w_.type == WeightType::f32)
                out.middleCols(a, len).noalias() = Hs * head.middleRows(a, len).transpose();
            else
                matmul::many_rows_dot(w_.head16(cfg_), a, len, n, h_.data(), h_.cols(), out.data() + a, V);
        });
        cnt.flops += 2LL * n * C * V;
        tr.logits.assign(logits_all->end() - V, logits_all->end());
    } else {
        layernorm(h_.row(n - 1), x_.row(n - 1), w_.ln_f_w, w_.ln_f_b, cfg_.layer_norm_epsilon);
        head_row(h_.row(n - 1).data(), logits_.data());
        cnt.flops += 2LL * C * V;
        tr.logits.assign(logits_.data(), logits_.data() + V);
    }

    finish_trace(tr, req, cache, cnt, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const Model& model) { return std::make_unique<CpuEngine>(model); }

}  // namespace kv
