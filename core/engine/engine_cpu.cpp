// CpuEngine: the reference forward pass of both families on the CPU with Eigen, reading and
// writing a HostKVCache (one sequence, filling a StepTrace) or a HostPagedKV (a
// batched serving step). Both run the same layers over "parts": a part is one
// sequence's n tokens at positions p0..p0+n-1, rows [row0, row0 + n) of the step's
// activations; its keys are the slots some query of it reads (KVCache::keys_for, or
// its block table under the policy's mask), nk of them in ascending position, key j
// at key_pos[j]. The weight products run once over all parts' rows; attention runs
// per part. C n_embd, Qd = q_dim (C for GPT-2), Q = Qd + 2*kv_dim (c_attn width), hd
// head_dim, H heads, Hkv kv heads, FC fc_dim (4C or 2F), FF ff_dim (4C or F).
// The family chooses three blocks of the one layer loop (docs/design.md, "Model
// families"): the norm (LayerNorm or RMSNorm), positions (wpe added to the embedding,
// or RoPE on q and k after the projection) and the MLP's activation (GELU, or SwiGLU).
// Counters are incremented in the loops that do the work, never from formulas.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/engine/kv_cache.h"
#include "core/engine/matmul.h"
#include "core/model/llama_math.h"
#include "core/model/mla_math.h"
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

// One sequence's share of a forward (see the top of this file).
struct Part {
    int row0 = 0, n = 0, p0 = 0, n_known = 0;
    std::span<const int> ids;              // (n)
    std::vector<int> new_slots;            // (n) where this step's K/V rows go
    std::vector<int> key_slots, key_pos;   // (nk) the keys its queries read
    Counters cnt;                          // its kv rows and attention

    // Keys at positions before p0: read from the cache, not computed this step.
    int keys_cached() const { return int(std::lower_bound(key_pos.begin(), key_pos.end(), p0) - key_pos.begin()); }

    void reserve(int T) {
        new_slots.reserve(size_t(T));
        key_slots.reserve(size_t(T));
        key_pos.reserve(size_t(T));
    }
};

class CpuEngine final : public Engine {
public:
    explicit CpuEngine(const Model& model) : cfg_(model.config), w_(model.weights) {
        const int T = cfg_.n_ctx;
        if (cfg_.is_llama()) inv_freq_ = rope_inv_freq(cfg_.rope_dim(), cfg_.rope);
        if (cfg_.is_mla()) init_mla();
        ensure_rows(T);
        scores_ = RowMat::Zero(int64_t(cfg_.n_head) * kTile, T);
        k_tmp_ = RowMat::Zero(T, cfg_.n_kv_head * cfg_.cache_k_width());
        v_tmp_ = RowMat::Zero(T, cfg_.n_kv_head * cfg_.cache_v_width());
        single_.reserve(T);
        logits_ = RowVec::Zero(cfg_.vocab_size);
        head_cnt_.assign(cfg_.n_head, Counters{});
        set_threads(0);
    }

    std::string backend() const override { return "cpu"; }
    const ModelConfig& config() const override { return cfg_; }
    std::unique_ptr<KVCache> make_cache(const CachePolicy& policy) const override {
        return std::make_unique<HostKVCache>(cfg_, policy);
    }
    std::unique_ptr<PagedKV> make_paged(const CachePolicy& policy, int n_blocks, int block_size) const override {
        return std::make_unique<HostPagedKV>(cfg_, policy, n_blocks, block_size);
    }

    // n <= 0: one thread per hardware thread.
    void set_threads(int n) override {
        const int want = n > 0 ? n : ThreadPool::default_threads();
        if (pool_ && pool_->size() == want) return;
        pool_.reset();
        pool_ = std::make_unique<ThreadPool>(want);
        if (cfg_.is_llama()) rope_cs_.assign(size_t(want) * size_t(cfg_.head_dim()), 0.0f);
        parts_.assign(size_t(n_parts()) * kFewRows * std::max({cfg_.qkv_dim(), cfg_.fc_dim(), cfg_.n_embd, cfg_.q_dim(), int(zero_kvb_.size())}), 0.0f);
    }

    void forward(const ForwardRequest& req, KVCache& cache, StepTrace& tr, std::vector<float>* logits_all) override;
    void forward_batch(std::span<const BatchSeq> seqs, PagedKV& pool, BatchResult& out) override;

private:
    // MLA's buffers that do not grow with a batch, and kv_b_proj widened for 16-bit weights.
    void init_mla() {
        const int T = cfg_.n_ctx, H = cfg_.n_head, dv = cfg_.v_head_dim();
        const int kvb = H * (cfg_.mla.qk_nope_head_dim + dv);
        lat_ = RowMat::Zero(T, cfg_.mla.kv_lora_rank);
        e_ = RowMat::Zero(T, kvb);
        kx_ = RowMat::Zero(T, cfg_.q_dim());
        vx_ = RowMat::Zero(T, H * dv);
        zero_q_ = RowVec::Zero(cfg_.q_dim());
        zero_kvb_ = RowVec::Zero(kvb);
        if (w_.type == WeightType::f32) return;
        for (const LayerWeights& lw : w_.layers) {
            kv_b32_.emplace_back(lw.kv_b_w16.rows, lw.kv_b_w16.cols);
            lw.kv_b_w16.widen(kv_b32_.back().data());
        }
    }
    static constexpr int kTile = 32;  // query rows per attention tile

    // Activations for at least n rows (a batched step may exceed n_ctx rows).
    void ensure_rows(int n);
    // The trace's head records for n rows from row r0 (none unless the options record).
    void begin_head_traces(const ForwardRequest& req, int n, int r0, StepTrace& tr) const;
    // x = wte[id] (+ wpe[pos] for GPT-2) for the part's rows.
    void embed(const Part& pt);
    // out = LayerNorm(x) * w + b (GPT-2) or RMSNorm(x) * w (Llama family), row by row.
    void norm(Eigen::Ref<RowMat> out, const Eigen::Ref<const RowMat>& x, const RowVec& w, const RowVec& b) const;
    // RoPE (Llama family): q and k of every part's rows in qkv_ turned by their absolute
    // positions; the recorded heads of layer l keep k before the turn.
    void rope(int l, std::span<Part> parts, int r0, StepTrace& tr);
    // Calls turn(row, cs) for every row of the parts, with cs the cos (half values) and
    // sin (half values) of RoPE's angles at the row's absolute position; each thread
    // takes a share of each part's rows. RoPE and MLA's RoPE both turn through it.
    template <class F>
    void each_position(std::span<const Part> parts, int half, F&& turn);
    // SwiGLU (Llama family): ff_ = silu(gate) * up from fc_'s [gate | up] rows.
    void swiglu(int n_rows);
    // Every layer over rows [0, n_rows): the weight products once, each part's K/V
    // into `store` at its new slots, attention per part. Trace rows from r0 of the
    // first part are recorded into tr's heads (the single path has one part).
    void layers(int n_rows, std::span<Part> parts, HostRows& store, const CachePolicy& pol, int r0,
                StepTrace& tr, Counters& cnt);
    // The key rows of a part in layer l as f32 (a view of the store, or decoded into k_tmp_/v_tmp_).
    HostRows::Rows key_rows(const HostRows& store, const Part& pt, int l);
    // Where one attention call reads and writes, from a part's first row: query head h
    // reads its query at q + h*dk, keys at k + (h / group)*k_step and values at
    // v + (h / group)*v_step (key j a stride further each), and writes out + h*dv.
    struct AttnIO {
        const float* q; int q_stride;
        const float* k; int k_stride, k_step;
        const float* v; int v_stride, v_step;
        float* out; int out_stride;
        int dk, dv, group;
        float scale;
    };
    // Attention of a part's rows over its keys, under the policy's mask, one task per
    // query head; fills the part's output rows and the attention of recorded heads.
    void attention(int l, Part& pt, int r0, const AttnIO& io, const CachePolicy& pol, StepTrace& tr);
    // GPT-2 and the Llama family: qkv_'s q against the store's K and V, into att_.
    AttnIO mha_io(const Part& pt, const HostRows::Rows& kv);
    // The recorded heads' q, k and v of the part's rows from r0 (MLA: k and v expanded).
    void record_qkv(int l, const Part& pt, int r0, StepTrace& tr) const;
    // MLA (docs/design.md, "MLA"): q (through the query latent), c_KV's norm and RoPE
    // on q_R and k_R, for every row; then attention over the latent rows `kv` read by
    // expanding them (mla_expand) or with W_UK and W_UV absorbed (mla_absorb, then
    // mla_unabsorb), as the policy says. All products counted.
    void mla_project(int l, std::span<Part> parts, int n_rows, int r0, StepTrace& tr, Counters& cnt);
    void mla_attention(int l, Part& pt, int r0, const HostRows::Rows& kv, const CachePolicy& pol, StepTrace& tr);
    AttnIO mla_expand(int l, Part& pt, const HostRows::Rows& kv);
    AttnIO mla_absorb(int l, Part& pt, const HostRows::Rows& kv);
    void mla_unabsorb(int l, Part& pt);
    const float* mla_q(int i) const;  // row i's q (H heads of d_n + d_R)
    int mla_q_stride() const;
    int mla_latent_col() const;       // where c_KV starts in a qkv_ row
    const RowMat& kv_b(int l) const;  // kv_b_proj^T in f32 (widened once for 16-bit weights)
    // Y = X * W + b (or Y += X * W + b), then GELU when asked; X (n, in), W (in, out)
    // held in f32 (W) or f16/bf16 (W16, when w_.type says so).
    void linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const Mat16& W16, const RowVec& b,
                bool accumulate, bool gelu, Counters& cnt);
    // Few rows (decode): split by W's rows, each task streams a contiguous block of W
    // into its own partial sums (parts_), which are then added into Y.
    void linear_few(RowMat& Y, const RowMat& X, int n, const void* W, int in, int out, const RowVec& b,
                    bool accumulate, bool gelu);
    // The logits of m rows h (C floats each, ldh apart) into out (m, V), split by
    // vocabulary rows: one decode row, a batch's few rows, or a prefill's every row.
    void head_rows(const float* h, int64_t ldh, int m, float* out);

    int n_parts() const { return pool_->size() == 1 ? 1 : pool_->size() * 4; }

    const ModelConfig cfg_;
    const Weights& w_;
    std::mutex busy_;  // one forward at a time: the scratch below is shared
    std::unique_ptr<ThreadPool> pool_;
    // Activations, preallocated to n_ctx rows (more for a large batch); a step uses the top rows.
    RowMat x_;       // (rows, C) residual stream
    RowMat h_;       // (rows, C) LayerNorm (RMSNorm) output
    RowMat qkv_;     // (rows, Q) [q | k | v] per position (RoPE models: q and k rotated in place)
    RowMat att_;     // (rows, Qd) attention output, heads side by side
    RowMat fc_;      // (rows, FC) MLP hidden: gelu(c_fc), or [gate | up] before SwiGLU
    RowMat ff_;      // (rows, F) silu(gate) * up (Llama family; else empty)
    // MLA only (else empty): dq q_lora_rank, dc, dr, dn, dv as config.h.
    RowMat qn_, q_;          // (rows, dq) q's latent after q_a_layernorm; (rows, Qd) q_b_proj's output
    RowMat qabs_, olat_;     // (rows, H*(dc+dr)) absorbed queries; (rows, H*dc) their outputs
    RowMat lat_, e_;         // (T, dc) the keys' c_KV; (T, H*(dn+dv)) their kv_b_proj
    RowMat kx_, vx_;         // (T, H*hd), (T, H*dv) expanded keys and values
    RowVec zero_q_, zero_kvb_;   // biases q_b_proj and kv_b_proj lack
    std::vector<RowMat> kv_b32_;  // (L) kv_b_proj^T widened, when the weights are 16-bit
    std::vector<float> inv_freq_;  // (hd/2) RoPE's rate per pair (Llama family; else empty)
    std::vector<float> rope_cs_;   // (threads, hd) each task's cos and sin of one position
    RowMat scores_;  // (H * kTile, T) each head's scores for one tile of query rows
    RowVec logits_;  // (V)
    RowMat k_tmp_, v_tmp_;     // (T, kv_dim) keys/values decoded from f16/int8 or gathered
    Part single_;              // forward()'s one part
    std::vector<Part> batch_;  // forward_batch()'s parts
    StepTrace no_trace_;       // the batched step records no heads
    std::vector<float> parts_;  // (tasks, kFewRows, max(Q, FC, C)) partial sums of linear_few
    static constexpr int kFewRows = 16;  // rows linear_few can take (the size of parts_)
    // Up to this many rows take linear_few and the chunked head: 16 with the AVX-512
    // kernel, which blocks 8 or 4 rows per load of W (a batch-8 step of GPT-2 124M in
    // 25.5 ms, against 30-32 ms through Eigen: docs/benchmarks.md, "Serving"), else 4
    // (the AVX2 and portable kernels take one row per load: not measured beyond 4).
    int few_rows() const { return matmul::kernel() == matmul::Kernel::avx512 ? kFewRows : 4; }
    std::vector<Counters> head_cnt_;  // (H) per-head counts of one attention call
};

void CpuEngine::ensure_rows(int n) {
    if (x_.rows() >= n) return;
    const int C = cfg_.n_embd;
    x_ = RowMat::Zero(n, C);
    h_ = RowMat::Zero(n, C);
    qkv_ = RowMat::Zero(n, cfg_.qkv_dim());
    att_ = RowMat::Zero(n, cfg_.o_dim());
    fc_ = RowMat::Zero(n, cfg_.fc_dim());
    if (cfg_.is_llama()) ff_ = RowMat::Zero(n, cfg_.ff_dim());
    if (!cfg_.is_mla()) return;
    const int H = cfg_.n_head, dc = cfg_.mla.kv_lora_rank, dq = cfg_.mla.q_lora_rank;
    qn_ = RowMat::Zero(dq > 0 ? n : 0, dq);
    q_ = RowMat::Zero(dq > 0 ? n : 0, cfg_.q_dim());
    qabs_ = RowMat::Zero(n, H * (dc + cfg_.rope_dim()));
    olat_ = RowMat::Zero(n, H * dc);
}

void CpuEngine::linear(RowMat& Y, const RowMat& X, int n, const RowMat& W, const Mat16& W16, const RowVec& b,
                       bool accumulate, bool gelu, Counters& cnt) {
    const bool h16 = w_.type != WeightType::f32;
    const int in = h16 ? int(W16.rows) : int(W.rows()), out = h16 ? int(W16.cols) : int(W.cols());
    cnt.flops += 2LL * n * in * out;
    if (n <= few_rows()) {
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
    // The parts' sums, the bias and GELU: by column ranges on the pool when a batch
    // brings several rows, on this thread for one row (a few microseconds).
    auto reduce = [&](int c0, int w) {
        for (int r = 0; r < n; ++r) {
            auto y = Y.row(r).segment(c0, w);
            if (!accumulate) y = b.segment(c0, w);
            else y += b.segment(c0, w);
            for (int p = 0; p < parts; ++p)
                y += Eigen::Map<const RowVec>(parts_.data() + p * stride + int64_t(r) * out + c0, w);
            if (gelu) gelu_inplace(y);
        }
    };
    if (n == 1) return reduce(0, out);
    const Split sp{out, n_parts()};
    pool_->parallel_for(sp.parts, [&](int i) {
        if (sp.end(i) > sp.begin(i)) reduce(sp.begin(i), sp.end(i) - sp.begin(i));
    });
}

HostRows::Rows CpuEngine::key_rows(const HostRows& store, const Part& pt, int l) {
    HostRows::Rows rows;
    if (store.direct_rows(l, pt.key_slots, rows)) return rows;
    const int nk = int(pt.key_slots.size());
    const Split sp{nk, std::min(n_parts(), std::max(1, nk / 32))};
    pool_->parallel_for(sp.parts, [&](int i) {
        store.decode_rows(l, pt.key_slots, std::min(nk, i * nk / sp.parts), std::min(nk, (i + 1) * nk / sp.parts),
                          k_tmp_.data(), v_tmp_.data());
    });
    return {k_tmp_.data(), v_tmp_.data(), store.k_width(), store.v_width()};
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
void CpuEngine::attention(int l, Part& pt, int r0, const AttnIO& io, const CachePolicy& pol, StepTrace& tr) {
    const int H = cfg_.n_head, dk = io.dk, dv = io.dv, T = cfg_.n_ctx;
    const int nk = int(pt.key_pos.size()), p0 = pt.p0, n = pt.n;
    const std::vector<int>& key_pos = pt.key_pos;
    for (auto& hc : head_cnt_) hc = Counters{};
    pool_->parallel_for(H, [&](int h) {
        const int g = h / io.group;
        Counters& hc = head_cnt_[h];
        HeadTrace* ht = nullptr;
        for (auto& t : tr.heads)
            if (t.layer == l && t.head == h) ht = &t;
        ConstBlockMap K(io.k + g * io.k_step, nk, dk, Stride(io.k_stride));
        ConstBlockMap V(io.v + g * io.v_step, nk, dv, Stride(io.v_stride));
        for (int i0 = 0; i0 < n; i0 += kTile) {
            const int rows = std::min(kTile, n - i0);
            const KeyRange first = key_range(key_pos, pol, p0 + i0), last = key_range(key_pos, pol, p0 + i0 + rows - 1);
            // Keys from own0 on are the tile's own positions: a per-row triangle. Every
            // row reads [0, a): the first and the last row's s bound it (a row whose
            // window has not slid past the sinks counts as one run [0, hi), so a later
            // row's smaller s is the bound once the window slides inside the tile).
            const int own0 = first.hi - 1;
            const int a = std::min({first.s, last.s, own0}), c0 = last.lo, c1 = std::max(c0, std::min(first.hi, own0));
            ConstBlockMap Qt(io.q + int64_t(i0) * io.q_stride + h * dk, rows, dk, Stride(io.q_stride));
            BlockMap S(scores_.data() + int64_t(h) * kTile * T, rows, T, Stride(T));
            BlockMap O(io.out + int64_t(i0) * io.out_stride + h * dv, rows, dv, Stride(io.out_stride));
            // The row's own keys: [a, s) and [lo, hi) without the shared [c0, c1).
            // (A row whose window has not slid reads one run [0, hi) as its "sinks",
            // which can cover [c0, c1) too: both ranges skip it.)
            auto for_own = [&](const KeyRange& kr, auto&& f) {
                auto outside_shared = [&](int b, int e) {
                    for (int j = b; j < std::min(e, c0); ++j) f(j);
                    for (int j = std::max(b, c1); j < e; ++j) f(j);
                };
                outside_shared(a, kr.s);
                outside_shared(kr.lo, kr.hi);
            };
            if (a > 0) S.leftCols(a).noalias() = Qt * K.topRows(a).transpose();
            if (c1 > c0) S.middleCols(c0, c1 - c0).noalias() = Qt * K.middleRows(c0, c1 - c0).transpose();
            for (int r = 0; r < rows; ++r) {
                const KeyRange kr = key_range(key_pos, pol, p0 + i0 + r);
                for_own(kr, [&](int j) { S(r, j) = Qt.row(r).dot(K.row(j)); });
                hc.attn_scores += kr.count();
                // Softmax over the keys read: [0, s) and [lo, hi).
                auto s1 = S.row(r).head(kr.s);
                auto s2 = S.row(r).segment(kr.lo, kr.hi - kr.lo);
                s1 *= io.scale;
                s2 *= io.scale;
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
                const KeyRange kr = key_range(key_pos, pol, p0 + i0 + r);
                for_own(kr, [&](int j) { O.row(r) += S(r, j) * V.row(j); });
                hc.flops += 2LL * kr.count() * (dk + dv);  // q.k and weights.v
            }
            if (ht) {
                for (int r = std::max(0, r0 - i0); r < rows; ++r) {
                    const int row = i0 + r - r0;
                    const KeyRange kr = key_range(key_pos, pol, p0 + i0 + r);
                    for (int j = 0; j < kr.s; ++j) ht->attn(row, key_pos[size_t(j)]) = S(r, j);
                    for (int j = kr.lo; j < kr.hi; ++j) ht->attn(row, key_pos[size_t(j)]) = S(r, j);
                }
            }
        }
    });
    for (const auto& hc : head_cnt_) {
        pt.cnt.attn_scores += hc.attn_scores;
        pt.cnt.flops += hc.flops;
    }
}

// GPT-2 and the Llama family: q from qkv_'s rows, K and V of kv head g = h / (H / Hkv).
CpuEngine::AttnIO CpuEngine::mha_io(const Part& pt, const HostRows::Rows& kv) {
    const int hd = cfg_.head_dim(), Qw = cfg_.qkv_dim(), Dq = cfg_.q_dim();
    return {qkv_.data() + int64_t(pt.row0) * Qw, Qw,
            kv.k, kv.k_stride, hd,
            kv.v, kv.v_stride, hd,
            att_.data() + int64_t(pt.row0) * Dq, Dq,
            hd, hd, cfg_.n_head / cfg_.n_kv_head, 1.0f / std::sqrt(float(hd))};
}

void CpuEngine::record_qkv(int l, const Part& pt, int r0, StepTrace& tr) const {
    const int hd = cfg_.head_dim(), Dq = cfg_.q_dim(), kvd = cfg_.kv_dim();
    for (auto& ht : tr.heads) {
        if (ht.layer != l) continue;
        for (int row = 0; row < int(ht.q.rows()); ++row) {
            const int i = pt.row0 + r0 + row;
            if (!cfg_.is_mla()) {
                const float* r = qkv_.row(i).data();
                ht.q.row(row) = Eigen::Map<const RowVec>(r + ht.head * hd, hd);
                ht.k.row(row) = Eigen::Map<const RowVec>(r + Dq + ht.kv_head * hd, hd);
                ht.v.row(row) = Eigen::Map<const RowVec>(r + Dq + kvd + ht.kv_head * hd, hd);
                continue;
            }
            ht.q.row(row) = Eigen::Map<const RowVec>(mla_q(i) + ht.head * hd, hd);
            ht.latent.row(row) = Eigen::Map<const RowVec>(qkv_.row(i).data() + mla_latent_col(), ht.latent.cols());
            mla_expand_head(cfg_, w_.layers[size_t(l)], w_.type, qkv_.row(i).data() + mla_latent_col(), ht.head,
                            ht.k.row(row).data(), ht.v.row(row).data());
            // k before RoPE: the same k_nope, the k_R part saved by mla_project.
            ht.k_before_rope.row(row).head(hd - cfg_.rope_dim()) = ht.k.row(row).head(hd - cfg_.rope_dim());
        }
    }
}

template <class F>
void CpuEngine::each_position(std::span<const Part> parts, int half, F&& turn) {
    for (const Part& pt : parts) {
        const int tasks = std::min(pt.n, pool_->size());
        pool_->parallel_for(tasks, [&](int t) {
            float* cs = rope_cs_.data() + int64_t(t) * 2 * half;  // cos (half), sin (half)
            for (int i = int(int64_t(pt.n) * t / tasks); i < int(int64_t(pt.n) * (t + 1) / tasks); ++i) {
                rope_angles(pt.p0 + i, inv_freq_.data(), half, cs, cs + half);
                turn(pt.row0 + i, cs);
            }
        });
    }
}

// ---- MLA (docs/design.md, "MLA") ----------------------------------------------------
// qkv_'s row: [q (q_proj) or q's latent (q_a_proj) | c_KV | k_R]; the latent row
// [c_KV | k_R] (normed and turned by mla_project) is what the cache stores.

// q of row i: qkv_'s first Dq columns, or q_ (q_b_proj's output) with a query latent.
const float* CpuEngine::mla_q(int i) const {
    return cfg_.mla.q_lora_rank > 0 ? q_.row(i).data() : qkv_.row(i).data();
}
int CpuEngine::mla_q_stride() const { return cfg_.mla.q_lora_rank > 0 ? int(q_.cols()) : cfg_.qkv_dim(); }
int CpuEngine::mla_latent_col() const { return cfg_.mla.q_lora_rank > 0 ? cfg_.mla.q_lora_rank : cfg_.q_dim(); }

void CpuEngine::mla_project(int l, std::span<Part> parts, int n_rows, int r0, StepTrace& tr, Counters& cnt) {
    const LayerWeights& lw = w_.layers[size_t(l)];
    const int dq = cfg_.mla.q_lora_rank, dc = cfg_.mla.kv_lora_rank, dr = cfg_.rope_dim(), hd = cfg_.head_dim();
    const int lat = mla_latent_col(), H = cfg_.n_head, half = dr / 2;
    const float eps = cfg_.layer_norm_epsilon;
    // q = q_b_proj(q_a_layernorm(q_a_proj(h))) (q_a_proj's output is in qkv_).
    if (dq > 0) {
        for (int r = 0; r < n_rows; ++r) rms_norm(qn_.row(r).data(), qkv_.row(r).data(), lw.q_a_norm_w.data(), dq, eps);
        linear(q_, qn_, n_rows, lw.q_b_w, lw.q_b_w16, zero_q_, false, false, cnt);
    }
    // c_KV = kv_a_layernorm(c_KV), in place.
    for (int r = 0; r < n_rows; ++r) rms_norm(qkv_.row(r).data() + lat, qkv_.row(r).data() + lat, lw.kv_norm_w.data(), dc, eps);
    for (auto& ht : tr.heads)  // the single path: recorded rows from r0 keep k_R before its turn
        if (ht.layer == l)
            for (int r = 0; r < ht.k_before_rope.rows(); ++r)
                ht.k_before_rope.row(r).tail(dr) = qkv_.row(r0 + r).segment(lat + dc, dr);
    // RoPE on every head's q_R and on the shared k_R (de-interleaved first with rope_interleave).
    const int qs = mla_q_stride();
    float* q0 = const_cast<float*>(mla_q(0));
    auto turn = [&](float* x, const float* cs) {
        if (cfg_.mla.rope_interleave) deinterleave(x, dr);
        rope_rotate(x, dr, cs, cs + half);
    };
    each_position(parts, half, [&](int r, const float* cs) {
        float* q = q0 + int64_t(r) * qs;
        for (int h = 0; h < H; ++h) turn(q + h * hd + (hd - dr), cs);
        turn(qkv_.row(r).data() + lat + dc, cs);
    });
}

const RowMat& CpuEngine::kv_b(int l) const {
    return w_.type == WeightType::f32 ? w_.layers[size_t(l)].kv_b_w : kv_b32_[size_t(l)];
}

// expand: kv_b_proj on every key's latent, then multi-head attention in the heads' widths.
CpuEngine::AttnIO CpuEngine::mla_expand(int l, Part& pt, const HostRows::Rows& kv) {
    const LayerWeights& lw = w_.layers[size_t(l)];
    const int H = cfg_.n_head, dc = cfg_.mla.kv_lora_rank, dr = cfg_.rope_dim(), dn = cfg_.mla.qk_nope_head_dim;
    const int dv = cfg_.v_head_dim(), hd = cfg_.head_dim(), nk = int(pt.key_pos.size()), O = cfg_.o_dim();
    for (int j = 0; j < nk; ++j) lat_.row(j) = Eigen::Map<const RowVec>(kv.k + int64_t(j) * kv.k_stride, dc);
    linear(e_, lat_, nk, lw.kv_b_w, lw.kv_b_w16, zero_kvb_, false, false, pt.cnt);
    for (int j = 0; j < nk; ++j)
        for (int h = 0; h < H; ++h) {
            kx_.row(j).segment(h * hd, dn) = e_.row(j).segment(h * (dn + dv), dn);
            kx_.row(j).segment(h * hd + dn, dr) = Eigen::Map<const RowVec>(kv.k + int64_t(j) * kv.k_stride + dc, dr);
            vx_.row(j).segment(h * dv, dv) = e_.row(j).segment(h * (dn + dv) + dn, dv);
        }
    return {mla_q(pt.row0), mla_q_stride(), kx_.data(), int(kx_.cols()), hd, vx_.data(), int(vx_.cols()), dv,
            att_.data() + int64_t(pt.row0) * O, O, hd, dv, 1, 1.0f / std::sqrt(float(hd))};
}

// absorbed: each head's query [q_nope W_UK_h^T | q_R] against the latent rows themselves.
CpuEngine::AttnIO CpuEngine::mla_absorb(int l, Part& pt, const HostRows::Rows& kv) {
    const int H = cfg_.n_head, dc = cfg_.mla.kv_lora_rank, dr = cfg_.rope_dim(), dn = cfg_.mla.qk_nope_head_dim;
    const int dv = cfg_.v_head_dim(), hd = cfg_.head_dim(), n = pt.n, W = int(kv_b(l).cols()), qs = mla_q_stride();
    const RowMat& B = kv_b(l);
    pool_->parallel_for(H, [&](int h) {
        ConstBlockMap Qn(mla_q(pt.row0) + h * hd, n, dn, Stride(qs));
        ConstBlockMap Wuk(B.data() + h * (dn + dv), dc, dn, Stride(W));
        BlockMap Qa(qabs_.data() + int64_t(pt.row0) * qabs_.cols() + h * (dc + dr), n, dc, Stride(qabs_.cols()));
        Qa.noalias() = Qn * Wuk.transpose();
        BlockMap(Qa.data() + dc, n, dr, Stride(qabs_.cols())) = ConstBlockMap(mla_q(pt.row0) + h * hd + dn, n, dr, Stride(qs));
    });
    pt.cnt.flops += 2LL * n * H * dn * dc;
    return {qabs_.data() + int64_t(pt.row0) * qabs_.cols(), int(qabs_.cols()), kv.k, kv.k_stride, 0, kv.k, kv.k_stride, 0,
            olat_.data() + int64_t(pt.row0) * olat_.cols(), int(olat_.cols()), dc + dr, dc, H,
            1.0f / std::sqrt(float(hd))};
}

// The output of absorbed attention, per head: o_h = (weights . c_KV) W_UV_h.
void CpuEngine::mla_unabsorb(int l, Part& pt) {
    const int H = cfg_.n_head, dc = cfg_.mla.kv_lora_rank, dn = cfg_.mla.qk_nope_head_dim, dv = cfg_.v_head_dim();
    const int n = pt.n, W = int(kv_b(l).cols()), O = cfg_.o_dim();
    const RowMat& B = kv_b(l);
    pool_->parallel_for(H, [&](int h) {
        ConstBlockMap Ol(olat_.data() + int64_t(pt.row0) * olat_.cols() + h * dc, n, dc, Stride(olat_.cols()));
        ConstBlockMap Wuv(B.data() + h * (dn + dv) + dn, dc, dv, Stride(W));
        BlockMap(att_.data() + int64_t(pt.row0) * O + h * dv, n, dv, Stride(O)).noalias() = Ol * Wuv;
    });
    pt.cnt.flops += 2LL * n * H * dc * dv;
}

void CpuEngine::mla_attention(int l, Part& pt, int r0, const HostRows::Rows& kv, const CachePolicy& pol, StepTrace& tr) {
    if (pol.mla == MlaRead::expand) return attention(l, pt, r0, mla_expand(l, pt, kv), pol, tr);
    attention(l, pt, r0, mla_absorb(l, pt, kv), pol, tr);
    mla_unabsorb(l, pt);
}

void CpuEngine::begin_head_traces(const ForwardRequest& req, int n, int r0, StepTrace& tr) const {
    const TraceOptions& topt = req.trace_opts;
    const int hd = cfg_.head_dim(), nk = req.start_pos + n;  // positions the attention rows span
    tr.heads.clear();
    if (!topt.record) return;
    for (int l = 0; l < cfg_.n_layer; ++l)
        for (int h = 0; h < cfg_.n_head; ++h) {
            if (!topt.all_heads && !(l == topt.layer && h == topt.head)) continue;
            HeadTrace ht;
            ht.layer = l;
            ht.head = h;
            ht.kv_head = cfg_.kv_head_of(h);
            ht.first_pos = req.start_pos + r0;
            ht.q.resize(n - r0, hd);
            ht.k.resize(n - r0, hd);
            if (cfg_.is_llama()) ht.k_before_rope.resize(n - r0, hd);
            if (cfg_.is_mla()) ht.latent.resize(n - r0, cfg_.cache_k_width());
            ht.v.resize(n - r0, cfg_.v_head_dim());
            ht.attn = RowMat::Zero(n - r0, nk);
            tr.heads.push_back(std::move(ht));
        }
}

void CpuEngine::embed(const Part& pt) {
    for (int i = 0; i < pt.n; ++i) {
        w_.token_row(pt.ids[size_t(i)], x_.row(pt.row0 + i).data());
        if (!cfg_.is_llama()) x_.row(pt.row0 + i) += w_.wpe.row(pt.p0 + i);
    }
}

void CpuEngine::norm(Eigen::Ref<RowMat> out, const Eigen::Ref<const RowMat>& x, const RowVec& w, const RowVec& b) const {
    if (!cfg_.is_llama()) return layernorm(out, x, w, b, cfg_.layer_norm_epsilon);
    for (int i = 0; i < x.rows(); ++i)
        rms_norm(out.row(i).data(), x.row(i).data(), w.data(), int(x.cols()), cfg_.layer_norm_epsilon);
}

void CpuEngine::rope(int l, std::span<Part> parts, int r0, StepTrace& tr) {
    const int H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim(), half = hd / 2, Dq = cfg_.q_dim();
    for (auto& ht : tr.heads)  // the single path: one part from row 0, recorded rows from r0
        if (ht.layer == l)
            for (int r = 0; r < ht.k_before_rope.rows(); ++r)
                ht.k_before_rope.row(r) = qkv_.row(r0 + r).segment(Dq + ht.kv_head * hd, hd);
    each_position(parts, half, [&](int r, const float* cs) {
        float* row = qkv_.row(r).data();
        for (int h = 0; h < H; ++h) rope_rotate(row + h * hd, hd, cs, cs + half);
        for (int g = 0; g < Hkv; ++g) rope_rotate(row + Dq + g * hd, hd, cs, cs + half);
    });
}


void CpuEngine::swiglu(int n_rows) {
    const int F = cfg_.n_ff;
    auto rows = [&](int a, int b) {
        for (int r = a; r < b; ++r) {
            const float* gu = fc_.row(r).data();
            float* out = ff_.row(r).data();
            for (int i = 0; i < F; ++i) out[i] = silu(gu[i]) * gu[F + i];
        }
    };
    if (n_rows == 1) return rows(0, 1);
    const int tasks = std::min(n_rows, pool_->size());
    pool_->parallel_for(tasks, [&](int t) { rows(int(int64_t(n_rows) * t / tasks), int(int64_t(n_rows) * (t + 1) / tasks)); });
}

void CpuEngine::layers(int n_rows, std::span<Part> parts, HostRows& store, const CachePolicy& pol, int r0,
                       StepTrace& tr, Counters& cnt) {
    const int Dq = cfg_.q_dim(), Hkv = cfg_.n_kv_head, kvd = cfg_.kv_dim();
    const bool llama = cfg_.is_llama(), mla = cfg_.is_mla();
    auto X = x_.topRows(n_rows);
    auto Hs = h_.topRows(n_rows);
    for (int l = 0; l < cfg_.n_layer; ++l) {
        const LayerWeights& lw = w_.layers[l];

        // Attention block: h = norm1(x); [q|k|v] = h * c_attn + b; RoPE turns q and k.
        norm(Hs, X, lw.ln_1_w, lw.ln_1_b);
        linear(qkv_, h_, n_rows, lw.attn_w, lw.attn_w16, lw.attn_b, false, false, cnt);
        if (mla)
            mla_project(l, parts, n_rows, r0, tr, cnt);
        else if (llama)
            rope(l, parts, r0, tr);

        for (Part& pt : parts) {
            // K and V of the new positions enter the store, in the slots placed for them
            // (RoPE models: the rotated K; MLA: the latent row [c_KV | k_R]).
            for (int i = 0; i < pt.n; ++i) {
                const float* row = qkv_.row(pt.row0 + i).data();
                if (mla)
                    store.write(l, pt.new_slots[size_t(i)], row + mla_latent_col(), nullptr);
                else
                    store.write(l, pt.new_slots[size_t(i)], row + Dq, row + Dq + kvd);
                pt.cnt.kv_rows_computed += Hkv;
                if (pt.p0 + i < pt.n_known) pt.cnt.kv_rows_recomputed += Hkv;
            }
            // The keys read from the cache, of every kv head.
            const int reused = pt.keys_cached();
            for (int g = 0; g < Hkv; ++g) pt.cnt.kv_rows_reused += reused;
            if (mla)
                mla_attention(l, pt, r0, key_rows(store, pt, l), pol, tr);
            else
                attention(l, pt, r0, mha_io(pt, key_rows(store, pt, l)), pol, tr);
            record_qkv(l, pt, r0, tr);
        }

        // x += att * c_proj + b
        linear(x_, att_, n_rows, lw.attn_proj_w, lw.attn_proj_w16, lw.attn_proj_b, true, false, cnt);

        // MLP block: x += gelu(LN2(x) * c_fc + b) * c_proj + b, or for the Llama family
        // x += (silu(h * gate) * (h * up)) * down with h = RMSNorm2(x).
        norm(Hs, X, lw.ln_2_w, lw.ln_2_b);
        linear(fc_, h_, n_rows, lw.fc_w, lw.fc_w16, lw.fc_b, false, !llama, cnt);
        if (llama) swiglu(n_rows);
        linear(x_, llama ? ff_ : fc_, n_rows, lw.mlp_proj_w, lw.mlp_proj_w16, lw.mlp_proj_b, true, false, cnt);
    }
}

// Split by vocabulary rows: each thread takes contiguous rows of the (V, C) head.
void CpuEngine::head_rows(const float* h, int64_t ldh, int m, float* out) {
    const int V = cfg_.vocab_size, C = cfg_.n_embd;
    const Split sp{V, n_parts()};
    const RowMat& head = w_.head(cfg_);
    const bool h16 = w_.type != WeightType::f32;
    const void* H = h16 ? static_cast<const void*>(w_.head16(cfg_).data) : head.data();
    const int esize = weight_type_bytes(w_.type);
    pool_->parallel_for(sp.parts, [&](int i) {
        const int a = sp.begin(i), len = sp.end(i) - a;
        if (len <= 0) return;
        if (m <= few_rows()) {
            // Few rows: the head read from memory once, in memory order. For several
            // rows in chunks of 64 head rows that stay in cache while each row takes
            // its dot products; one row streams its whole range.
            const int chunk = m == 1 ? len : 64;
            for (int c0 = a; c0 < a + len; c0 += chunk) {
                const int cl = std::min(chunk, a + len - c0);
                const char* Hc = static_cast<const char*>(H) + int64_t(c0) * C * esize;
                for (int r = 0; r < m; ++r) matmul::dot_rows(w_.type, cl, C, h + r * ldh, Hc, out + int64_t(r) * V + c0);
            }
        } else if (!h16) {
            Eigen::Map<RowMat> o(out, m, V);
            o.middleCols(a, len).noalias() = ConstBlockMap(h, m, C, Stride(ldh)) * head.middleRows(a, len).transpose();
        } else {
            matmul::many_rows_dot(w_.head16(cfg_), a, len, m, h, ldh, out + a, V);
        }
    });
}

void CpuEngine::forward(const ForwardRequest& req, KVCache& any_cache, StepTrace& tr, std::vector<float>* logits_all) {
    const auto t0 = std::chrono::steady_clock::now();
    auto* host = dynamic_cast<HostKVCache*>(&any_cache);
    if (!host) throw Error("cpu backend: the cache was made by another backend");
    HostKVCache& cache = *host;
    std::lock_guard<std::mutex> lock(busy_);
    const int n = int(req.ids.size()), p0 = req.start_pos, C = cfg_.n_embd, V = cfg_.vocab_size;
    check_forward_request(cfg_, req, cache);
    cache.truncate(p0);  // positions at and after start_pos are computed again
    Part& pt = single_;
    pt.row0 = 0, pt.n = n, pt.p0 = p0, pt.n_known = req.n_known, pt.ids = req.ids, pt.cnt = Counters{};
    const std::vector<int>& placed = cache.place(n);
    pt.new_slots.assign(placed.begin(), placed.end());
    cache.keys_for(p0, p0 + n - 1, pt.key_slots, pt.key_pos);

    // Which heads the trace records, and which rows.
    const int r0 = req.trace_opts.record ? std::max(0, n - std::max(1, req.trace_opts.max_rows)) : n;
    begin_head_traces(req, n, r0, tr);

    Counters cnt;
    cnt.tokens_processed = n;
    embed(pt);
    layers(n, std::span<Part>(&pt, 1), cache.rows(), cache.policy(), r0, tr, cnt);
    cnt += pt.cnt;
    // Rows no later query can read leave the cache.
    const std::vector<int>& evicted = cache.evict();
    cnt.kv_rows_evicted += int64_t(cfg_.n_layer) * cfg_.n_kv_head * int64_t(evicted.size());
    if (tr.keys_read.capacity() < size_t(cfg_.n_ctx)) tr.keys_read.reserve(size_t(cfg_.n_ctx));
    tr.keys_read.assign(pt.key_pos.begin(), pt.key_pos.end());

    // Head: final norm and logits, for the last position (or all).
    auto X = x_.topRows(n);
    auto Hs = h_.topRows(n);
    if (req.all_logits && logits_all) {
        norm(Hs, X, w_.ln_f_w, w_.ln_f_b);
        logits_all->resize(size_t(n) * V);
        head_rows(h_.data(), h_.cols(), n, logits_all->data());
        cnt.flops += 2LL * n * C * V;
        tr.logits.assign(logits_all->end() - V, logits_all->end());
    } else {
        norm(h_.row(n - 1), x_.row(n - 1), w_.ln_f_w, w_.ln_f_b);
        head_rows(h_.row(n - 1).data(), h_.cols(), 1, logits_.data());
        cnt.flops += 2LL * C * V;
        tr.logits.assign(logits_.data(), logits_.data() + V);
    }

    finish_trace(tr, req, cache, cnt, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

void CpuEngine::forward_batch(std::span<const BatchSeq> seqs, PagedKV& any_pool, BatchResult& out) {
    const auto t0 = std::chrono::steady_clock::now();
    auto* host = dynamic_cast<HostPagedKV*>(&any_pool);
    if (!host) throw Error("cpu backend: the pool was made by another backend");
    std::lock_guard<std::mutex> lock(busy_);
    check_batch(cfg_, seqs, *host);
    const CachePolicy& pol = host->policy();
    const int m = int(seqs.size()), C = cfg_.n_embd, V = cfg_.vocab_size;
    batch_.resize(size_t(m));
    int rows = 0;
    for (int i = 0; i < m; ++i) {
        const BatchSeq& s = seqs[size_t(i)];
        Part& pt = batch_[size_t(i)];
        pt.row0 = rows, pt.n = int(s.ids.size()), pt.p0 = s.start_pos, pt.n_known = s.n_known;
        pt.ids = s.ids, pt.cnt = Counters{};
        host->slots_for(s.table, pt.p0, pt.n, pt.new_slots, pt.key_slots, pt.key_pos);
        rows += pt.n;
    }
    ensure_rows(rows);
    Counters cnt;
    cnt.tokens_processed = rows;
    for (const Part& pt : batch_) embed(pt);
    layers(rows, batch_, host->rows(), pol, rows, no_trace_, cnt);

    // Head: the final LayerNorm of each sequence's last row into h_'s first m rows.
    for (int i = 0; i < m; ++i) {
        const Part& pt = batch_[size_t(i)];
        norm(h_.row(i), x_.row(pt.row0 + pt.n - 1), w_.ln_f_w, w_.ln_f_b);
    }
    out.logits.resize(size_t(m) * V);
    head_rows(h_.data(), h_.cols(), m, out.logits.data());
    cnt.flops += 2LL * m * C * V;
    out.counters.resize(size_t(m));
    for (int i = 0; i < m; ++i) {
        Counters& c = out.counters[size_t(i)];
        const Part& pt = batch_[size_t(i)];
        c = pt.cnt;
        c.tokens_processed = pt.n;
        c.cache_rows = pt.p0 + pt.n;
        c.cache_bytes = cache_bytes_for(cfg_, pol.dtype, c.cache_rows);
        cnt += pt.cnt;
    }
    out.total = cnt;
    out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const Model& model) { return std::make_unique<CpuEngine>(model); }

}  // namespace kv
