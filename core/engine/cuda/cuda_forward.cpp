// One forward pass of the CUDA engine (CudaEngine::forward): the cache's bookkeeping
// on the host (truncate, place, keys_for), the step's positions, ids and slots copied
// to device memory, then either the captured decode graph replayed (cuda_graphs.cpp)
// or encode() launching every kernel; then the logits and the recorded heads' q, k, v
// rows and attention weights copied back into the StepTrace. encode() counts the
// work on the host in the same loop that issues it, with the CPU engine's meaning; a
// replayed step runs that loop without launching.
// Notation: n tokens this step at positions p0.., nk = p0 + n keys, C n_embd, Qd
// q_dim, Q = Qd + 2*kv_dim (c_attn width), FC fc_dim, FF ff_dim (core/model/config.h),
// hd head_dim, H heads, Hkv kv heads, T n_ctx, V vocab. Both families run encode():
// the Llama family's RMSNorm, RoPE and SwiGLU are the family's choice inside norm(),
// qkv_to_cache() and mlp().
//
// Row-major products on column-major cuBLAS: the row-major (n, in) x (in, out)
// product Y = X W is the column-major Y^T = W^T X^T, i.e.
// cublasSgemm(N, N, out, n, in, 1, W, out, X, in, beta, Y, out), no transposes.
// The head (V, C) row-major is used transposed: Sgemm(T, N, V, n, C, E, C, X, C, Y, V).
//
// The bias of each projection into the residual stream (attn c_proj, mlp c_proj) is
// added by the norm kernel that follows it, one launch fewer per projection (zeros
// for the Llama family, which has none).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/cuda/cuda_engine_impl.h"
#include "core/engine/cuda/kernels.cuh"
#include "core/error.h"

namespace kv::cuda {

RecordPlan CudaEngine::plan_for(const TraceOptions& topt, int n) const {
    RecordPlan p;
    if (!topt.record) return p;
    const int H = cfg_.n_head;
    p.r0 = std::max(0, n - std::max(1, topt.max_rows));
    p.rows = n - p.r0;
    if (topt.all_heads) {
        for (int l = 0; l < cfg_.n_layer; ++l) p.layers.push_back(l);
        p.h0 = 0;
        p.h1 = H;
    } else if (topt.layer >= 0 && topt.layer < cfg_.n_layer && topt.head >= 0 && topt.head < H) {
        p.layers.push_back(topt.layer);
        p.h0 = topt.head;
        p.h1 = topt.head + 1;
    }
    if (p.layers.empty()) return RecordPlan{};
    p.g0 = cfg_.kv_head_of(p.h0);
    p.g1 = cfg_.kv_head_of(p.h1 - 1) + 1;
    return p;
}

void CudaEngine::reserve_records(const RecordPlan& p) {
    if (!p.any()) return;
    const size_t slots = p.layers.size();
    rec_w_.reserve(slots * p.n_heads() * p.rows * size_t(cfg_.n_ctx));
    rec_q_.reserve(slots * p.rows * size_t(p.n_heads()) * cfg_.head_dim());
    if (cfg_.is_llama()) rec_kpre_.reserve(slots * p.rows * size_t(cfg_.kv_dim()));
}

void CudaEngine::gemm(float* Y, const float* X, const float* W, int n, int in, int out, float beta) {
    const float one = 1.f;
    if (n == 1)  // decode: y (out) = W^T x, W^T being the column-major (out, in) view of W
        KV_CUBLAS(cublasSgemv(blas_, CUBLAS_OP_N, out, in, &one, W, out, X, 1, &beta, Y, 1));
    else
        KV_CUBLAS(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, out, n, in, &one, W, out, X, in, &beta, Y, out));
}

void CudaEngine::head_gemm(float* Y, const float* X, int n) {
    const float one = 1.f, zero = 0.f;
    const int C = cfg_.n_embd, V = cfg_.vocab_size;
    // The head E (V, C) row-major is the column-major (C, V) matrix E^T: Y^T = (E^T)^T X^T.
    if (n == 1)
        KV_CUBLAS(cublasSgemv(blas_, CUBLAS_OP_T, C, V, &one, head_w(), C, X, 1, &zero, Y, 1));
    else
        KV_CUBLAS(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, V, n, C, &one, head_w(), C, X, C, &zero, Y, V));
}

void CudaEngine::norm(float* out, float* x, const float* pending, const DevArray<float>& w,
                      const DevArray<float>& b, int n) {
    const int C = cfg_.n_embd;
    const float eps = cfg_.layer_norm_epsilon;
    if (cfg_.is_llama())
        cuda::bias_rmsnorm(out, x, pending, w.get(), n, C, eps, stream_);
    else
        cuda::bias_layernorm(out, x, pending, w.get(), b.get(), n, C, eps, stream_);
}

void CudaEngine::qkv_to_cache(DeviceKVCache& cache, const DevLayer& w, int l, int n, const RecordPlan& plan) {
    const int* slots = step_.get() + 1 + cfg_.n_ctx;
    if (!cfg_.is_llama()) {
        cuda::qkv_bias_to_cache(qkv_.get(), w.attn_b.get(), cache.k(l), cache.v(l), slots, n, cfg_.n_embd,
                                cfg_.kv_dim(), stream_);
        return;
    }
    // Keys before rotation, for the trace: only in the recorded layers.
    const int slot = plan.any() ? plan.slot(l) : -1;
    float* k_pre = slot >= 0 ? rec_kpre_.get() + size_t(slot) * plan.rows * cfg_.kv_dim() : nullptr;
    cuda::qkv_rope_to_cache(qkv_.get(), w.attn_b.get(), inv_freq_.get(), cache.k(l), cache.v(l), step_.get(), slots,
                            k_pre, plan.r0, n, cfg_.q_dim(), cfg_.kv_dim(), cfg_.head_dim(), stream_);
}

void CudaEngine::mlp(const DevLayer& w, int n) {
    const int C = cfg_.n_embd, FC = cfg_.fc_dim(), FF = cfg_.ff_dim();
    gemm(fc_.get(), h_.get(), w.fc_w.get(), n, C, FC, 0.f);
    if (cfg_.is_llama()) {  // [gate | up] side by side: silu(gate) * up
        cuda::silu_mul(ff_.get(), fc_.get(), fc_.get() + FF, FC, n, FF, stream_);
        gemm(x_.get(), ff_.get(), w.mlp_proj_w.get(), n, FF, C, 1.f);
    } else {
        cuda::bias_gelu(fc_.get(), w.fc_b.get(), n, FC, stream_);
        gemm(x_.get(), fc_.get(), w.mlp_proj_w.get(), n, FF, C, 1.f);
    }
}

void CudaEngine::encode(DeviceKVCache& cache, int n, int p0, int n_known, const std::vector<int>& key_pos,
                        bool all_rows, const RecordPlan& plan, Counters& cnt, bool launch) {
    const int C = cfg_.n_embd, H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim();
    const int Qd = cfg_.q_dim(), Q = cfg_.qkv_dim(), V = cfg_.vocab_size, T = cfg_.n_ctx;
    const int FC = cfg_.fc_dim(), FF = cfg_.ff_dim();
    const int* step = step_.get();
    const int* key_slots = step + 1 + 2 * T;
    int keys_cached = 0;  // keys read from the cache, not computed this step
    for (int k : key_pos) keys_cached += k < p0;
    cudaStream_t st = stream_;
    float *x = x_.get(), *h = h_.get(), *qkv = qkv_.get(), *att = att_.get();
    const cuda::AttnShape shape{n, T, Qd, H, Hkv, hd};

    if (launch) cuda::embed(x, step, wte_.get(), wpe_.get(), n, C, st);  // wpe: none for RoPE models

    for (int l = 0; l < cfg_.n_layer; ++l) {
        const DevLayer& w = layers_[l];
        // The previous layer's mlp c_proj bias is still to be added to x.
        const float* pending = l == 0 ? nullptr : layers_[l - 1].mlp_proj_b.get();

        // Attention block: h = norm1(x); [q|k|v] = h * c_attn + b (q, k rotated for a
        // RoPE model); K, V rows into the cache.
        if (launch) {
            norm(h, x, pending, w.ln_1_w, w.ln_1_b, n);
            gemm(qkv, h, w.attn_w.get(), n, C, Q, 0.f);
            qkv_to_cache(cache, w, l, n, plan);
        }
        cnt.flops += 2LL * n * C * Q;
        for (int i = 0; i < n; ++i) {
            cnt.kv_rows_computed += Hkv;
            if (p0 + i < n_known) cnt.kv_rows_recomputed += Hkv;
        }

        if (launch) {
            cuda::AttnRecord rec;
            const int slot = plan.any() ? plan.slot(l) : -1;
            if (slot >= 0) {
                const int nh = plan.n_heads();
                rec.w = rec_w_.get() + size_t(slot) * nh * plan.rows * T;
                rec.h0 = plan.h0;
                rec.h1 = plan.h1;
                rec.r0 = plan.r0;
                // q rows of the recorded heads, before the next layer overwrites qkv.
                const size_t qw = size_t(nh) * hd * sizeof(float);
                KV_CUDA(cudaMemcpy2DAsync(rec_q_.get() + size_t(slot) * plan.rows * nh * hd, qw,
                                          qkv + size_t(plan.r0) * Q + size_t(plan.h0) * hd, size_t(Q) * sizeof(float),
                                          qw, size_t(plan.rows), cudaMemcpyDeviceToDevice, st));
            }
            cuda::attention(att, qkv, cache.k(l), cache.v(l), step, key_slots, shape, rec, st);
        }
        for (int g = 0; g < Hkv; ++g) cnt.kv_rows_reused += keys_cached;  // read from the cache
        for (int hh = 0; hh < H; ++hh)
            for (int i = 0; i < n; ++i) {
                // A full cache: the query at p0 + i reads every key up to itself.
                const int64_t nkeys = std::upper_bound(key_pos.begin(), key_pos.end(), p0 + i) - key_pos.begin();
                cnt.attn_scores += nkeys;
                cnt.flops += 2LL * nkeys * hd * 2;  // q.k and weights.v
            }

        // x += att * c_proj (its bias joins x in the next norm).
        // MLP block: x += act(norm2(x) * c_fc) * c_proj (+ bias, pending).
        if (launch) {
            gemm(x, att, w.attn_proj_w.get(), n, Qd, C, 1.f);
            norm(h, x, w.attn_proj_b.get(), w.ln_2_w, w.ln_2_b, n);
            mlp(w, n);
        }
        cnt.flops += 2LL * n * Qd * C;
        cnt.flops += 2LL * n * C * FC;
        cnt.flops += 2LL * n * FF * C;
    }

    // Head: final norm (adding the last pending bias) and logits of every row or the last.
    const float* pending = layers_.back().mlp_proj_b.get();
    if (all_rows) {
        if (launch) {
            norm(h, x, pending, ln_f_w_, ln_f_b_, n);
            head_gemm(logits_all_.get(), h, n);
        }
        cnt.flops += 2LL * n * C * V;
    } else {
        if (launch) {
            const size_t last = size_t(n - 1) * C;
            norm(h + last, x + last, pending, ln_f_w_, ln_f_b_, 1);
            head_gemm(logits_.get(), h + last, 1);
        }
        cnt.flops += 2LL * C * V;
    }
}

void CudaEngine::copy_rows(float* dst, const float* src_layer, const std::vector<int>& slots, int r0, int rows,
                           int g0, int ng) {
    const int hd = cfg_.head_dim(), kvd = cfg_.kv_dim();
    const size_t kw = size_t(ng) * hd;
    // One 2D copy per run of consecutive slots (a full cache: one run).
    for (int r = 0; r < rows;) {
        int e = r + 1;
        while (e < rows && slots[size_t(r0 + e)] == slots[size_t(r0 + r)] + (e - r)) ++e;
        const float* src = src_layer + size_t(slots[size_t(r0 + r)]) * kvd + size_t(g0) * hd;
        KV_CUDA(cudaMemcpy2DAsync(dst + size_t(r) * kw, sizeof(float) * kw, src, sizeof(float) * kvd,
                                  sizeof(float) * kw, size_t(e - r), cudaMemcpyDeviceToHost, stream_));
        r = e;
    }
}

void CudaEngine::forward(const ForwardRequest& req, KVCache& any_cache, StepTrace& tr,
                         std::vector<float>* logits_all) {
    const auto t0 = std::chrono::steady_clock::now();
    auto* dev_cache = dynamic_cast<DeviceKVCache*>(&any_cache);
    if (!dev_cache) throw Error("cuda backend: the cache was made by another backend");
    DeviceKVCache& cache = *dev_cache;
    const int n = int(req.ids.size());
    const int p0 = req.start_pos;
    const int hd = cfg_.head_dim(), V = cfg_.vocab_size, T = cfg_.n_ctx;
    check_forward_request(cfg_, req, cache);
    KV_CUDA(cudaSetDevice(device_));
    tr.heads.clear();
    // The cache's bookkeeping: back to [0, p0), slots for the new positions, the keys.
    cache.truncate(p0);
    const std::vector<int>& placed = cache.place(n);
    new_slots_.assign(placed.begin(), placed.end());
    cache.keys_for(p0, p0 + n - 1, key_slots_, key_pos_);
    const int nk = p0 + n;  // positions the trace's attention rows span
    const int n_keys = int(key_slots_.size());
    const bool want_all = req.all_logits && logits_all;
    const bool all_rows = want_all && n > 1;  // one row: the last-row path is the same product
    if (all_rows) logits_all_.reserve(size_t(n) * V);

    const RecordPlan plan = plan_for(req.trace_opts, n);
    reserve_records(plan);

    // The one-token step replays its graph (captured after one eager run has loaded
    // every kernel); anything else launches directly.
    bool replay = false;
    if (n == 1 && graphs_on_ && decode_warm_) {
        try {
            const GraphKey key = graph_key(plan, cache.storage(), rec_w_.get(), rec_q_.get(), rec_kpre_.get());
            if (!graph_ || !(key == graph_key_)) capture_decode(cache, key_pos_, plan);
            replay = true;
        } catch (const Error& e) {
            graphs_on_ = false;
            drop_graph();
            std::fprintf(stderr, "kvscope: CUDA graph capture failed, launching kernels directly: %s\n", e.what());
        }
    }

    int* host = step_host_.get();
    host[0] = p0;
    std::copy(req.ids.begin(), req.ids.end(), host + 1);
    std::copy(new_slots_.begin(), new_slots_.end(), host + 1 + T);
    std::copy(key_slots_.begin(), key_slots_.end(), host + 1 + 2 * T);
    KV_CUDA(cudaMemcpyAsync(step_.get(), host, sizeof(int) * size_t(n + 1), cudaMemcpyHostToDevice, stream_));
    KV_CUDA(cudaMemcpyAsync(step_.get() + 1 + T, host + 1 + T, sizeof(int) * size_t(n), cudaMemcpyHostToDevice,
                            stream_));
    KV_CUDA(cudaMemcpyAsync(step_.get() + 1 + 2 * T, host + 1 + 2 * T, sizeof(int) * size_t(n_keys),
                            cudaMemcpyHostToDevice, stream_));
    Counters cnt;
    cnt.tokens_processed = n;
    if (replay) {
        // A launch that fails falls back to direct launches for good (like a failed
        // capture), rather than replaying the same graph at every later step.
        if (const cudaError_t e = cudaGraphLaunch(graph_, stream_); e != cudaSuccess) {
            (void)cudaGetLastError();
            graphs_on_ = false;
            drop_graph();
            replay = false;
            std::fprintf(stderr, "kvscope: cudaGraphLaunch failed (%s), launching kernels directly\n",
                         cudaGetErrorString(e));
        }
    }
    if (replay) {
        ++replays_;
        encode(cache, n, p0, req.n_known, key_pos_, all_rows, plan, cnt, false);
    } else {
        encode(cache, n, p0, req.n_known, key_pos_, all_rows, plan, cnt, true);
        if (n == 1) decode_warm_ = true;
    }

    // Copy back what the trace shows: logits, and the recorded heads' q, k, v, weights.
    if (all_rows) {
        logits_all->resize(size_t(n) * V);
        KV_CUDA(cudaMemcpyAsync(logits_all->data(), logits_all_.get(), sizeof(float) * size_t(n) * V,
                                cudaMemcpyDeviceToHost, stream_));
    } else {
        KV_CUDA(cudaMemcpyAsync(logits_host_.get(), logits_.get(), sizeof(float) * size_t(V), cudaMemcpyDeviceToHost,
                                stream_));
    }
    const int nh = plan.n_heads(), ng = plan.n_kv(), rows = plan.rows;
    const size_t slots = plan.layers.size();
    std::vector<float> rw, rq, rk, rv, rkp;
    if (plan.any()) {
        // Weights by key index j (key j at position key_pos_[j]).
        rw.resize(slots * nh * rows * size_t(n_keys));
        KV_CUDA(cudaMemcpy2DAsync(rw.data(), sizeof(float) * n_keys, rec_w_.get(), sizeof(float) * T,
                                  sizeof(float) * n_keys, slots * nh * rows, cudaMemcpyDeviceToHost, stream_));
        rq.resize(slots * rows * size_t(nh) * hd);
        KV_CUDA(cudaMemcpyAsync(rq.data(), rec_q_.get(), sizeof(float) * rq.size(), cudaMemcpyDeviceToHost, stream_));
        // K and V of the recorded rows are in the cache, in the slots of rows r0 ...
        const size_t kw = size_t(ng) * hd;
        rk.resize(slots * rows * kw);
        rv.resize(slots * rows * kw);
        if (cfg_.is_llama()) {  // keys before rotation: every kv head of the recorded rows
            rkp.resize(slots * rows * size_t(cfg_.kv_dim()));
            KV_CUDA(cudaMemcpyAsync(rkp.data(), rec_kpre_.get(), sizeof(float) * rkp.size(), cudaMemcpyDeviceToHost,
                                    stream_));
        }
        for (size_t s = 0; s < slots; ++s) {
            const int l = plan.layers[s];
            copy_rows(rk.data() + s * rows * kw, cache.k(l), new_slots_, plan.r0, rows, plan.g0, ng);
            copy_rows(rv.data() + s * rows * kw, cache.v(l), new_slots_, plan.r0, rows, plan.g0, ng);
        }
    }
    KV_CUDA(cudaStreamSynchronize(stream_));
    const std::vector<int>& evicted = cache.evict();  // none for a full cache; the same call as on the CPU
    cnt.kv_rows_evicted += int64_t(cfg_.n_layer) * cfg_.n_kv_head * int64_t(evicted.size());
    tr.keys_read.assign(key_pos_.begin(), key_pos_.end());

    for (size_t s = 0; s < slots && rows > 0; ++s)
        for (int h = plan.h0; h < plan.h1; ++h) {
            const int hi = h - plan.h0, g = cfg_.kv_head_of(h), gi = g - plan.g0;
            HeadTrace ht;
            ht.layer = plan.layers[s];
            ht.head = h;
            ht.kv_head = g;
            ht.first_pos = p0 + plan.r0;
            ht.q.resize(rows, hd);
            ht.k.resize(rows, hd);
            ht.v.resize(rows, hd);
            if (cfg_.is_llama()) ht.k_before_rope.resize(rows, hd);
            ht.attn = RowMat::Zero(rows, nk);
            for (int r = 0; r < rows; ++r) {
                const size_t qrow = (s * rows + r) * size_t(nh) * hd + size_t(hi) * hd;
                const size_t krow = (s * rows + r) * size_t(ng) * hd + size_t(gi) * hd;
                std::copy_n(rq.data() + qrow, hd, ht.q.row(r).data());
                std::copy_n(rk.data() + krow, hd, ht.k.row(r).data());
                std::copy_n(rv.data() + krow, hd, ht.v.row(r).data());
                if (cfg_.is_llama())
                    std::copy_n(rkp.data() + (s * rows + r) * size_t(cfg_.kv_dim()) + size_t(g) * hd, hd,
                                ht.k_before_rope.row(r).data());
                const float* w = rw.data() + ((s * nh + hi) * rows + r) * size_t(n_keys);
                for (int j = 0; j < n_keys; ++j) ht.attn(r, key_pos_[size_t(j)]) = w[j];
            }
            tr.heads.push_back(std::move(ht));
        }

    if (all_rows) {
        tr.logits.assign(logits_all->end() - V, logits_all->end());
    } else {
        tr.logits.assign(logits_host_.get(), logits_host_.get() + V);
        if (want_all) *logits_all = tr.logits;
    }
    finish_trace(tr, req, cache, cnt, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace kv::cuda
