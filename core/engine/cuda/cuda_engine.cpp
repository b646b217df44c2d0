// CudaEngine: the GPT-2 forward pass on an NVIDIA GPU behind the Engine interface,
// with the CPU engine's semantics (core/engine/engine_cpu.cpp is the reference). This
// file makes the engine: it chooses and names the device, creates the stream and the
// cuBLAS handle, uploads the weights once (they serve every cache the engine makes;
// DeviceKVCache, device_cache.cpp: device storage under KVCache's bookkeeping, full
// f32 caches only, any other policy is refused) and allocates the activations; and it
// holds the factory functions of cuda_engine.h and core/engine/engine.h. The forward
// pass is in cuda_forward.cpp, the captured decode step in cuda_graphs.cpp, the
// kernels in kernels.cu. Notation: C n_embd, Q = C + 2*kv_dim (c_attn width),
// T n_ctx, V vocab, L layers.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/cuda/cuda_engine.h"
#include "core/engine/cuda/cuda_engine_impl.h"
#include "core/engine/cuda/kernels.cuh"
#include "core/error.h"
#include "core/model/model_io.h"

namespace kv {

namespace cuda {

namespace {

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

}  // namespace

CudaEngine::CudaEngine(const Model& model, const CudaEngineOptions& opt)
    : cfg_(model.config), opt_(opt), graphs_on_(opt.graphs) {
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA engine: " + why);
    cfg_.validate("CUDA engine");
    if (cfg_.is_mla()) throw Error("CUDA engine: no MLA kernels; an MLA (DeepseekV3) model runs on the CPU backend");
    const Weights& w = model.weights;
    const int T = cfg_.n_ctx, C = cfg_.n_embd, Q = cfg_.qkv_dim(), V = cfg_.vocab_size, L = cfg_.n_layer;
    const int Qd = cfg_.q_dim(), FC = cfg_.fc_dim(), FF = cfg_.ff_dim();
    const int wpe_rows = cfg_.is_llama() ? 0 : T;  // RoPE models have no position table
    if (int(w.layers.size()) != L || w.wte.rows() != V || w.wte.cols() != C || w.wpe.rows() != wpe_rows)
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
        if (s.attn_w.rows() != C || s.attn_w.cols() != Q || s.attn_proj_w.rows() != Qd || s.fc_w.cols() != FC ||
            s.mlp_proj_w.rows() != FF)
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
    att_.alloc(size_t(T) * Qd);
    fc_.alloc(size_t(T) * FC);
    if (cfg_.is_llama()) {
        ff_.alloc(size_t(T) * FF);
        const std::vector<float> inv_freq = rope_inv_freq(cfg_.head_dim(), cfg_.rope);
        inv_freq_.upload(inv_freq.data(), inv_freq.size());
    }
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

}  // namespace cuda

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
    return std::make_unique<cuda::CudaEngine>(model, opt);
}

std::unique_ptr<Engine> make_cuda_engine(const Model& model) {
    CudaEngineOptions opt;
    opt.graphs = cuda::graphs_from_env();
    return make_cuda_engine(model, opt);
}

int64_t cuda_graph_replays(const Engine& engine) {
    const auto* e = dynamic_cast<const cuda::CudaEngine*>(&engine);
    return e ? e->graph_replays() : 0;
}

}  // namespace kv
