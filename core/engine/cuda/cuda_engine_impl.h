// The CUDA engine's class and the small records it keeps, shared by its files:
// cuda_engine.cpp (choosing the device, uploading the weights, the factory),
// cuda_forward.cpp (one forward pass: launches, counters, the trace copied back) and
// cuda_graphs.cpp (the captured decode step). Not part of the interface: others use
// make_cuda_engine() (cuda_engine.h, core/engine/engine.h).
// Notation: n tokens this step, C n_embd, Qd q_dim (C for GPT-2), Q = Qd + 2*kv_dim
// (c_attn width), hd head_dim, T n_ctx, V vocab.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/cuda/cuda_engine.h"
#include "core/engine/cuda/device_buffers.h"
#include "core/engine/cuda/device_cache.h"
#include "core/engine/engine.h"

namespace kv::cuda {

// One layer's weights on the device, in the host's layout ((in, out), row-major; the
// Llama family's in the same fields, core/model/weights.h). Qd q_dim, FC fc_dim (4C or
// 2F: [gate | up]), FF ff_dim (4C or F); LayerNorm biases empty for the Llama family.
struct DevLayer {
    DevArray<float> ln_1_w, ln_1_b;    // (C)
    DevArray<float> attn_w, attn_b;    // (C, Q), (Q)
    DevArray<float> attn_proj_w, attn_proj_b;  // (Qd, C), (C)
    DevArray<float> ln_2_w, ln_2_b;    // (C)
    DevArray<float> fc_w, fc_b;        // (C, FC), (FC)
    DevArray<float> mlp_proj_w, mlp_proj_b;  // (FF, C), (C)
};

// Which heads and rows of a step the trace records (TraceOptions, as the CPU engine).
struct RecordPlan {
    std::vector<int> layers;  // recorded layers, ascending; slot = index here
    int h0 = 0, h1 = 0;       // query heads recorded in each of them
    int g0 = 0, g1 = 0;       // their kv heads
    int r0 = 0, rows = 0;     // recorded rows: r0 .. r0 + rows - 1 of the step

    int slot(int layer) const {
        for (size_t i = 0; i < layers.size(); ++i)
            if (layers[i] == layer) return int(i);
        return -1;
    }
    bool any() const { return !layers.empty() && rows > 0; }
    int n_heads() const { return h1 - h0; }
    int n_kv() const { return g1 - g0; }
    bool operator==(const RecordPlan&) const = default;
};

// What a captured decode graph depends on besides the step's device scalars.
struct GraphKey {
    RecordPlan plan;
    const float* kv = nullptr;  // the cache's storage the graph writes and reads
    const float* rec_w = nullptr;  // the trace buffers, only when the plan records
    const float* rec_q = nullptr;  // (a prefill that grows them forces no recapture)
    const float* rec_kpre = nullptr;  // (RoPE models: keys before rotation)
    bool operator==(const GraphKey&) const = default;
};

// The key of `plan` over this cache storage and these trace buffers (cuda_graphs.cpp).
GraphKey graph_key(const RecordPlan& plan, const float* kv, const float* rec_w, const float* rec_q,
                   const float* rec_kpre);

// The environment's choice for CudaEngineOptions::graphs: off when KVSCOPE_CUDA_GRAPHS=0.
bool graphs_from_env();

// The engine: weights and activations on one device, one stream, one cuBLAS handle.
// Construction in cuda_engine.cpp, forward() in cuda_forward.cpp, capture_decode() and
// drop_graph() in cuda_graphs.cpp.
class CudaEngine final : public Engine {
public:
    CudaEngine(const Model& model, const CudaEngineOptions& opt);
    ~CudaEngine() override;
    CudaEngine(const CudaEngine&) = delete;
    CudaEngine& operator=(const CudaEngine&) = delete;

    std::string backend() const override { return "cuda"; }
    const ModelConfig& config() const override { return cfg_; }
    std::unique_ptr<KVCache> make_cache(const CachePolicy& policy) const override {
        check_policy(policy, "cuda backend");
        if (!policy.is_default())
            throw Error("cuda backend: cache policy '" + policy_text(policy) +
                        "' is not implemented (only full f32; use --backend cpu)");
        return std::make_unique<DeviceKVCache>(cfg_, policy, device_, stream_);
    }
    void forward(const ForwardRequest& req, KVCache& cache, StepTrace& tr, std::vector<float>* logits_all) override;

    int64_t graph_replays() const { return replays_; }

private:
    const float* head_w() const { return cfg_.tied_head ? wte_.get() : lm_head_.get(); }

    RecordPlan plan_for(const TraceOptions& topt, int n) const;
    void reserve_records(const RecordPlan& plan);
    // Y (n, out) = X (n, in) W (in, out) + beta Y, row-major.
    void gemm(float* Y, const float* X, const float* W, int n, int in, int out, float beta);
    // Y (n, V) = X (n, C) head^T: the logits.
    void head_gemm(float* Y, const float* X, int n);
    // out = the family's norm of x (LayerNorm, or RMSNorm for the Llama family), after
    // x += pending (the previous projection's bias, when not null).
    void norm(float* out, float* x, const float* pending, const DevArray<float>& w, const DevArray<float>& b, int n);
    // qkv += b; for a RoPE model q and k rotated for their positions (the keys before
    // rotation copied to rec_kpre_ in a recorded layer); K, V rows to their cache slots.
    void qkv_to_cache(DeviceKVCache& cache, const DevLayer& w, int l, int n, const RecordPlan& plan);
    // x += act(h * fc_w (+ fc_b)) * mlp_proj_w: GELU, or SwiGLU's silu(gate) * up.
    void mlp(const DevLayer& w, int n);
    // Issues the forward pass of n tokens at start_pos p0 against `cache` (when
    // `launch`), counting the work in the same loops. all_rows: logits for every row
    // into logits_all_. key_pos: the positions of the step's keys (KVCache::keys_for).
    void encode(DeviceKVCache& cache, int n, int p0, int n_known, const std::vector<int>& key_pos, bool all_rows,
                const RecordPlan& plan, Counters& cnt, bool launch);
    void capture_decode(DeviceKVCache& cache, const std::vector<int>& key_pos, const RecordPlan& plan);
    // Copies rows of a recorded kv-head range from the device cache to the host.
    void copy_rows(float* dst, const float* src_layer, const std::vector<int>& slots, int r0, int rows, int g0,
                   int ng);
    void drop_graph();

    const ModelConfig cfg_;
    const CudaEngineOptions opt_;
    int device_ = 0;
    Stream stream_owner_;
    DevArray<char> blas_ws_;  // cuBLAS workspace (set explicitly so graph capture never allocates)
    Blas blas_owner_;         // destroyed before the workspace and the stream
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;

    // Weights, in the host's layout (Conv1D (in, out), row-major).
    DevArray<float> wte_;      // (V, C)
    DevArray<float> wpe_;      // (T, C); empty for the Llama family (RoPE)
    std::vector<DevLayer> layers_;  // L
    DevArray<float> ln_f_w_, ln_f_b_;  // (C)
    DevArray<float> lm_head_;  // (V, C), only when untied
    DevArray<float> inv_freq_; // (hd/2) RoPE rates (rope_inv_freq), Llama family only


    // Activations, T rows; a step uses the top n.
    DevArray<float> x_;    // (T, C) residual stream
    DevArray<float> h_;    // (T, C) LayerNorm output
    DevArray<float> qkv_;  // (T, Q)
    DevArray<float> att_;  // (T, Qd) attention output, heads side by side
    DevArray<float> fc_;   // (T, FC) MLP hidden (GELU in place; [gate | up] for SwiGLU)
    DevArray<float> ff_;   // (T, F) silu(gate) * up, Llama family only
    DevArray<float> logits_;      // (V) last row
    DevArray<float> logits_all_;  // (n, V) when every row's logits are asked for (grown)
    // (1 + 3T): start_pos | the step's ids (T) | their cache slots (T) | the key slots (T)
    DevArray<int> step_;
    PinnedArray<int> step_host_;       // (1 + 3T), the same layout
    std::vector<int> new_slots_, key_slots_, key_pos_;  // this step's, from the cache
    PinnedArray<float> logits_host_;   // (V)

    // Trace records of the recorded heads (grown): softmax weights (slots, heads,
    // rows, T), q rows (slots, rows, heads * hd) and, for a RoPE model, every kv head's
    // keys before rotation (slots, rows, kv_dim).
    DevArray<float> rec_w_, rec_q_, rec_kpre_;

    // The captured one-token decode step.
    cudaGraphExec_t graph_ = nullptr;
    GraphKey graph_key_;
    bool graphs_on_ = true;
    bool decode_warm_ = false;  // an eager one-token step has run (kernels loaded) before capture
    int64_t replays_ = 0;
};

}  // namespace kv::cuda
