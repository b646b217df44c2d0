// CudaEngine: the GPT-2 forward pass on an NVIDIA GPU behind the Engine interface,
// with the CPU engine's semantics (core/engine_cpu.cpp is the reference). Weights
// live on the device, uploaded once at construction, and serve every cache the
// engine makes (DeviceKVCache: device storage under KVCache's bookkeeping, which
// decides the slot of each new row and the slots each query reads; full f32 caches
// only, any other policy is refused). cuBLAS does the matrix products, kernels.cu
// the rest. Notation: n tokens this step at
// positions p0.., nk = p0 + n keys, C n_embd, Q = C + 2*kv_dim (c_attn width),
// hd head_dim, H heads, Hkv kv heads, T n_ctx, V vocab.
//
// Row-major products on column-major cuBLAS: the row-major (n, in) x (in, out)
// product Y = X W is the column-major Y^T = W^T X^T, i.e.
// cublasSgemm(N, N, out, n, in, 1, W, out, X, in, beta, Y, out), no transposes.
// The head (V, C) row-major is used transposed: Sgemm(T, N, V, n, C, E, C, X, C, Y, V).
//
// The bias of each projection into the residual stream (attn c_proj, mlp c_proj) is
// added by the LayerNorm kernel that follows it, one launch fewer per projection.
//
// The one-token decode step is captured once in a CUDA graph (per trace layout and
// cache) and replayed: kernels read start_pos, the ids and the cache slots from
// device memory (step_), so one graph serves every position. Counters are counted on the host in encode(), the
// loop that issues the work; a replayed step runs the same loop without launching.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/cuda/cuda_engine.h"
#include "core/engine/cuda/kernels.cuh"
#include "core/error.h"
#include "core/model/model_io.h"

#define KV_CUBLAS(call)                                                                          \
    do {                                                                                         \
        const cublasStatus_t kv_st_ = (call);                                                    \
        if (kv_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            throw ::kv::Error(std::string("cuBLAS: ") + #call + " failed at " +                  \
                              ::kv::cuda::short_file(__FILE__) + ":" + std::to_string(__LINE__) + \
                              ": " + cublasGetStatusString(kv_st_));                            \
    } while (0)

namespace kv {

namespace {

// A device allocation (cudaMalloc), freed on destruction.
template <class T>
class DevArray {
public:
    DevArray() = default;
    DevArray(const DevArray&) = delete;
    DevArray& operator=(const DevArray&) = delete;
    ~DevArray() { release(); }

    void alloc(size_t n) {
        release();
        if (n) KV_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
        n_ = n;
    }
    void upload(const T* host, size_t n) {
        alloc(n);
        if (n) KV_CUDA(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice));
    }
    // Grows to at least n elements (contents are lost when it grows).
    void reserve(size_t n) {
        if (n > n_) alloc(n);
    }
    T* get() const { return p_; }
    size_t size() const { return n_; }

private:
    void release() {
        if (p_) cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    size_t n_ = 0;
};

// Page-locked host memory (cudaMallocHost), for the per-step transfers.
template <class T>
class PinnedArray {
public:
    PinnedArray() = default;
    PinnedArray(const PinnedArray&) = delete;
    PinnedArray& operator=(const PinnedArray&) = delete;
    ~PinnedArray() {
        if (p_) cudaFreeHost(p_);
    }
    void alloc(size_t n) {
        KV_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    }
    T* get() const { return p_; }

private:
    T* p_ = nullptr;
};

// Owners of the stream and the cuBLAS handle, so a constructor that throws half-way
// releases them.
struct Stream {
    cudaStream_t s = nullptr;
    ~Stream() {
        if (s) cudaStreamDestroy(s);
    }
};
struct Blas {
    cublasHandle_t h = nullptr;
    ~Blas() {
        if (h) cublasDestroy(h);
    }
};

struct DevLayer {
    DevArray<float> ln_1_w, ln_1_b;    // (C)
    DevArray<float> attn_w, attn_b;    // (C, Q), (Q)
    DevArray<float> attn_proj_w, attn_proj_b;  // (C, C), (C)
    DevArray<float> ln_2_w, ln_2_b;    // (C)
    DevArray<float> fc_w, fc_b;        // (C, 4C), (4C)
    DevArray<float> mlp_proj_w, mlp_proj_b;  // (4C, C), (C)
};

template <class M>
void upload(DevArray<float>& d, const M& m) {
    d.upload(m.data(), size_t(m.size()));
}

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
    bool operator==(const GraphKey&) const = default;
};

GraphKey graph_key(const RecordPlan& plan, const float* kv, const float* rec_w, const float* rec_q) {
    return plan.any() ? GraphKey{plan, kv, rec_w, rec_q} : GraphKey{plan, kv, nullptr, nullptr};
}

// The device from options or $KVSCOPE_CUDA_DEVICE (default 0), checked against the count.
int choose_device(int requested) {
    int n = 0;
    KV_CUDA(cudaGetDeviceCount(&n));
    int d = requested;
    std::string from = "CudaEngineOptions::device";
    if (d < 0) {
        d = 0;
        if (const char* e = std::getenv("KVSCOPE_CUDA_DEVICE"); e && *e) {
            char* end = nullptr;
            const long v = std::strtol(e, &end, 10);
            from = "KVSCOPE_CUDA_DEVICE";
            d = (*end || v < 0 || v > 1024) ? -1 : int(v);
            if (d < 0) throw Error(std::string("CUDA engine: KVSCOPE_CUDA_DEVICE='") + e + "' is not a device number");
        }
    }
    if (d >= n)
        throw Error("CUDA engine: " + from + " asks for device " + std::to_string(d) + ", but there " +
                    (n == 1 ? "is 1 device (0)" : "are " + std::to_string(n) + " devices (0.." + std::to_string(n - 1) + ")"));
    return d;
}

// Names the device on stderr, once per device and process.
void announce_device(int d) {
    static std::mutex mu;
    static std::set<int> told;
    std::lock_guard lock(mu);
    if (!told.insert(d).second) return;
    cudaDeviceProp prop{};
    KV_CUDA(cudaGetDeviceProperties(&prop, d));
    std::fprintf(stderr, "kvscope: CUDA engine on device %d: %s (compute %d.%d, %.1f GiB)\n", d, prop.name,
                 prop.major, prop.minor, double(prop.totalGlobalMem) / double(1ull << 30));
}

bool graphs_from_env() {
    const char* e = std::getenv("KVSCOPE_CUDA_GRAPHS");
    return !(e && std::strcmp(e, "0") == 0);
}

// A full f32 cache in device memory: per layer K then V, each (n_slots, kv_dim)
// row-major. The engine's kernels write it (qkv_bias_to_cache, in the slots
// place() chose); write() and read_rows() copy rows to and from the host. It must
// not outlive the engine that made it (it uses the engine's stream).
class DeviceKVCache final : public KVCache {
public:
    DeviceKVCache(const ModelConfig& cfg, const CachePolicy& policy, int device, cudaStream_t stream)
        : KVCache(cfg, policy), device_(device), stream_(stream) {
        KV_CUDA(cudaSetDevice(device_));
        kv_.alloc(size_t(2) * cfg.n_layer * n_slots() * cfg.kv_dim());
        KV_CUDA(cudaMemset(kv_.get(), 0, kv_.size() * sizeof(float)));
    }
    float* k(int l) const { return kv_.get() + size_t(2 * l) * n_slots() * config().kv_dim(); }
    float* v(int l) const { return kv_.get() + size_t(2 * l + 1) * n_slots() * config().kv_dim(); }
    const float* storage() const { return kv_.get(); }

    void write(int layer, int slot, const float* k_row, const float* v_row) override {
        const size_t kvd = size_t(config().kv_dim());
        KV_CUDA(cudaSetDevice(device_));
        KV_CUDA(cudaMemcpyAsync(k(layer) + size_t(slot) * kvd, k_row, kvd * sizeof(float), cudaMemcpyHostToDevice,
                                stream_));
        KV_CUDA(cudaMemcpyAsync(v(layer) + size_t(slot) * kvd, v_row, kvd * sizeof(float), cudaMemcpyHostToDevice,
                                stream_));
        KV_CUDA(cudaStreamSynchronize(stream_));
    }
    bool read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k_out, RowMat& v_out,
                   bool unrounded) const override {
        (void)unrounded;  // f32 only: stored rows are the unrounded ones
        check_cache_head(config(), layer, kv_head);
        const int hd = config().head_dim(), kvd = config().kv_dim(), ns = n_slots();
        RowMat ka(ns, hd), va(ns, hd);
        KV_CUDA(cudaSetDevice(device_));
        const size_t w = size_t(hd) * sizeof(float), pitch = size_t(kvd) * sizeof(float);
        KV_CUDA(cudaMemcpy2DAsync(ka.data(), w, k(layer) + size_t(kv_head) * hd, pitch, w, size_t(ns),
                                  cudaMemcpyDeviceToHost, stream_));
        KV_CUDA(cudaMemcpy2DAsync(va.data(), w, v(layer) + size_t(kv_head) * hd, pitch, w, size_t(ns),
                                  cudaMemcpyDeviceToHost, stream_));
        KV_CUDA(cudaStreamSynchronize(stream_));
        k_out.resize(Eigen::Index(slots.size()), hd);
        v_out.resize(Eigen::Index(slots.size()), hd);
        for (size_t i = 0; i < slots.size(); ++i) {
            k_out.row(Eigen::Index(i)) = ka.row(slots[i]);
            v_out.row(Eigen::Index(i)) = va.row(slots[i]);
        }
        return true;
    }

protected:
    // A full cache starts with n_ctx slots and never grows or evicts.
    void grow(int) override { throw Error("cuda backend: the device cache cannot grow"); }
    std::vector<char> save_slot(int) const override { throw Error("cuda backend: the device cache never evicts"); }
    void load_slot(int, const std::vector<char>&) override {
        throw Error("cuda backend: the device cache never evicts");
    }

private:
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    DevArray<float> kv_;
};

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
    DevArray<float> wpe_;      // (T, C)
    std::vector<DevLayer> layers_;  // L
    DevArray<float> ln_f_w_, ln_f_b_;  // (C)
    DevArray<float> lm_head_;  // (V, C), only when untied


    // Activations, T rows; a step uses the top n.
    DevArray<float> x_;    // (T, C) residual stream
    DevArray<float> h_;    // (T, C) LayerNorm output
    DevArray<float> qkv_;  // (T, Q)
    DevArray<float> att_;  // (T, C) attention output, heads side by side
    DevArray<float> fc_;   // (T, 4C) MLP hidden
    DevArray<float> logits_;      // (V) last row
    DevArray<float> logits_all_;  // (n, V) when every row's logits are asked for (grown)
    // (1 + 3T): start_pos | the step's ids (T) | their cache slots (T) | the key slots (T)
    DevArray<int> step_;
    PinnedArray<int> step_host_;       // (1 + 3T), the same layout
    std::vector<int> new_slots_, key_slots_, key_pos_;  // this step's, from the cache
    PinnedArray<float> logits_host_;   // (V)

    // Trace records of the recorded heads (grown): softmax weights (slots, heads,
    // rows, T) and q rows (slots, rows, heads * hd).
    DevArray<float> rec_w_, rec_q_;

    // The captured one-token decode step.
    cudaGraphExec_t graph_ = nullptr;
    GraphKey graph_key_;
    bool graphs_on_ = true;
    bool decode_warm_ = false;  // an eager one-token step has run (kernels loaded) before capture
    int64_t replays_ = 0;
};

CudaEngine::CudaEngine(const Model& model, const CudaEngineOptions& opt)
    : cfg_(model.config), opt_(opt), graphs_on_(opt.graphs) {
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA engine: " + why);
    cfg_.validate("CUDA engine");
    const Weights& w = model.weights;
    const int T = cfg_.n_ctx, C = cfg_.n_embd, Q = cfg_.qkv_dim(), V = cfg_.vocab_size, L = cfg_.n_layer;
    if (int(w.layers.size()) != L || w.wte.rows() != V || w.wte.cols() != C || w.wpe.rows() != T)
        throw Error("CUDA engine: the weights do not match the model's config");

    device_ = choose_device(opt.device);
    KV_CUDA(cudaSetDevice(device_));
    announce_device(device_);
    KV_CUDA(cudaStreamCreateWithFlags(&stream_owner_.s, cudaStreamNonBlocking));
    stream_ = stream_owner_.s;
    KV_CUBLAS(cublasCreate(&blas_owner_.h));
    blas_ = blas_owner_.h;
    KV_CUBLAS(cublasSetStream(blas_, stream_));
    KV_CUBLAS(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));  // full f32, no TF32
    blas_ws_.alloc(size_t(32) << 20);
    KV_CUBLAS(cublasSetWorkspace(blas_, blas_ws_.get(), blas_ws_.size()));
    cuda::attention_prepare(T, cfg_.head_dim());

    upload(wte_, w.wte);
    upload(wpe_, w.wpe);
    layers_ = std::vector<DevLayer>(size_t(L));
    for (int l = 0; l < L; ++l) {
        const LayerWeights& s = w.layers[l];
        DevLayer& d = layers_[l];
        upload(d.ln_1_w, s.ln_1_w);
        upload(d.ln_1_b, s.ln_1_b);
        upload(d.attn_w, s.attn_w);
        upload(d.attn_b, s.attn_b);
        upload(d.attn_proj_w, s.attn_proj_w);
        upload(d.attn_proj_b, s.attn_proj_b);
        upload(d.ln_2_w, s.ln_2_w);
        upload(d.ln_2_b, s.ln_2_b);
        upload(d.fc_w, s.fc_w);
        upload(d.fc_b, s.fc_b);
        upload(d.mlp_proj_w, s.mlp_proj_w);
        upload(d.mlp_proj_b, s.mlp_proj_b);
        if (s.attn_w.rows() != C || s.attn_w.cols() != Q || s.fc_w.cols() != 4 * C)
            throw Error("CUDA engine: layer " + std::to_string(l) + " weights do not match the config");
    }
    upload(ln_f_w_, w.ln_f_w);
    upload(ln_f_b_, w.ln_f_b);
    if (!cfg_.tied_head) {
        if (w.lm_head.rows() != V || w.lm_head.cols() != C)
            throw Error("CUDA engine: lm_head does not match the config");
        upload(lm_head_, w.lm_head);
    }

    x_.alloc(size_t(T) * C);
    h_.alloc(size_t(T) * C);
    qkv_.alloc(size_t(T) * Q);
    att_.alloc(size_t(T) * C);
    fc_.alloc(size_t(T) * 4 * C);
    logits_.alloc(size_t(V));
    step_.alloc(3 * size_t(T) + 1);
    step_host_.alloc(3 * size_t(T) + 1);
    logits_host_.alloc(size_t(V));
    KV_CUDA(cudaDeviceSynchronize());
}

CudaEngine::~CudaEngine() {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    drop_graph();
}

void CudaEngine::drop_graph() {
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
}

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

void CudaEngine::encode(DeviceKVCache& cache, int n, int p0, int n_known, const std::vector<int>& key_pos,
                        bool all_rows, const RecordPlan& plan, Counters& cnt, bool launch) {
    const int C = cfg_.n_embd, H = cfg_.n_head, Hkv = cfg_.n_kv_head, hd = cfg_.head_dim();
    const int kvd = cfg_.kv_dim(), Q = cfg_.qkv_dim(), V = cfg_.vocab_size, T = cfg_.n_ctx;
    const float eps = cfg_.layer_norm_epsilon;
    const int* step = step_.get();
    const int* new_slots = step + 1 + T;
    const int* key_slots = step + 1 + 2 * T;
    int keys_cached = 0;  // keys read from the cache, not computed this step
    for (int k : key_pos) keys_cached += k < p0;
    cudaStream_t st = stream_;
    float *x = x_.get(), *h = h_.get(), *qkv = qkv_.get(), *att = att_.get(), *fc = fc_.get();
    const cuda::AttnShape shape{n, T, C, H, Hkv, hd};

    if (launch) cuda::embed(x, step, wte_.get(), wpe_.get(), n, C, st);

    for (int l = 0; l < cfg_.n_layer; ++l) {
        const DevLayer& w = layers_[l];
        // The previous layer's mlp c_proj bias is still to be added to x.
        const float* pending = l == 0 ? nullptr : layers_[l - 1].mlp_proj_b.get();

        // Attention block: h = LN1(x); [q|k|v] = h * c_attn + b; K, V rows into the cache.
        if (launch) {
            cuda::bias_layernorm(h, x, pending, w.ln_1_w.get(), w.ln_1_b.get(), n, C, eps, st);
            gemm(qkv, h, w.attn_w.get(), n, C, Q, 0.f);
            cuda::qkv_bias_to_cache(qkv, w.attn_b.get(), cache.k(l), cache.v(l), new_slots, n, C, kvd, st);
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
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < n; ++i) {
                // A full cache: the query at p0 + i reads every key up to itself.
                const int64_t nkeys = std::upper_bound(key_pos.begin(), key_pos.end(), p0 + i) - key_pos.begin();
                cnt.attn_scores += nkeys;
                cnt.flops += 2LL * nkeys * hd * 2;  // q.k and weights.v
            }

        // x += att * c_proj (its bias joins x in the next LayerNorm).
        // MLP block: x += gelu(LN2(x) * c_fc + b) * c_proj (+ bias, pending).
        if (launch) {
            gemm(x, att, w.attn_proj_w.get(), n, C, C, 1.f);
            cuda::bias_layernorm(h, x, w.attn_proj_b.get(), w.ln_2_w.get(), w.ln_2_b.get(), n, C, eps, st);
            gemm(fc, h, w.fc_w.get(), n, C, 4 * C, 0.f);
            cuda::bias_gelu(fc, w.fc_b.get(), n, 4 * C, st);
            gemm(x, fc, w.mlp_proj_w.get(), n, 4 * C, C, 1.f);
        }
        cnt.flops += 2LL * n * C * C;
        cnt.flops += 2LL * n * C * 4 * C;
        cnt.flops += 2LL * n * 4 * C * C;
    }

    // Head: final LayerNorm (adding the last pending bias) and logits of every row or the last.
    const float* pending = layers_.back().mlp_proj_b.get();
    if (all_rows) {
        if (launch) {
            cuda::bias_layernorm(h, x, pending, ln_f_w_.get(), ln_f_b_.get(), n, C, eps, st);
            head_gemm(logits_all_.get(), h, n);
        }
        cnt.flops += 2LL * n * C * V;
    } else {
        if (launch) {
            float* hl = h + size_t(n - 1) * C;
            cuda::bias_layernorm(hl, x + size_t(n - 1) * C, pending, ln_f_w_.get(), ln_f_b_.get(), 1, C, eps, st);
            head_gemm(logits_.get(), hl, 1);
        }
        cnt.flops += 2LL * C * V;
    }
}

void CudaEngine::capture_decode(DeviceKVCache& cache, const std::vector<int>& key_pos, const RecordPlan& plan) {
    drop_graph();
    cudaGraph_t g = nullptr;
    KV_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
        Counters unused;
        encode(cache, 1, 0, 0, key_pos, false, plan, unused, true);
    } catch (...) {
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();  // capture errors are not sticky; clear them
        throw;
    }
    KV_CUDA(cudaStreamEndCapture(stream_, &g));
    const cudaError_t e = cudaGraphInstantiateWithFlags(&graph_, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        graph_ = nullptr;
        KV_CUDA(e);
    }
    graph_key_ = graph_key(plan, cache.storage(), rec_w_.get(), rec_q_.get());
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
            const GraphKey key = graph_key(plan, cache.storage(), rec_w_.get(), rec_q_.get());
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
    std::vector<float> rw, rq, rk, rv;
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
            ht.attn = RowMat::Zero(rows, nk);
            for (int r = 0; r < rows; ++r) {
                const size_t qrow = (s * rows + r) * size_t(nh) * hd + size_t(hi) * hd;
                const size_t krow = (s * rows + r) * size_t(ng) * hd + size_t(gi) * hd;
                std::copy_n(rq.data() + qrow, hd, ht.q.row(r).data());
                std::copy_n(rk.data() + krow, hd, ht.k.row(r).data());
                std::copy_n(rv.data() + krow, hd, ht.v.row(r).data());
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

}  // namespace

namespace {

// Empty when a device is present, else why not (one line).
std::string probe_cuda() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        std::string hint;
        if (e == cudaErrorInsufficientDriver) {
            int rt = 0;
            cudaRuntimeGetVersion(&rt);
            hint = "; no NVIDIA driver, or one older than this build's CUDA " + std::to_string(rt / 1000) + "." +
                   std::to_string(rt % 1000 / 10) + " runtime";
        }
        return std::string("no CUDA device found (cudaGetDeviceCount: ") + cudaGetErrorString(e) + hint + ")";
    }
    if (n == 0) return "no CUDA device found (cudaGetDeviceCount: 0 devices)";
    return {};
}

}  // namespace

bool cuda_available(std::string* why_not) {
    // Probed once: the UI asks every frame, and devices do not come and go.
    static const std::string why = probe_cuda();
    if (why_not) *why_not = why;
    return why.empty();
}

std::unique_ptr<Engine> make_cuda_engine(const Model& model, const CudaEngineOptions& opt) {
    return std::make_unique<CudaEngine>(model, opt);
}

std::unique_ptr<Engine> make_cuda_engine(const Model& model) {
    CudaEngineOptions opt;
    opt.graphs = graphs_from_env();
    return make_cuda_engine(model, opt);
}

int64_t cuda_graph_replays(const Engine& engine) {
    const auto* e = dynamic_cast<const CudaEngine*>(&engine);
    return e ? e->graph_replays() : 0;
}

}  // namespace kv
