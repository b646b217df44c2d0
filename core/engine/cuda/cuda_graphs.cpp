// The CUDA engine's captured decode step: the one-token step is captured once in a
// CUDA graph (per trace layout and cache) and replayed at every later position.
// Kernels read start_pos, the ids and the cache slots from device memory (step_), so
// one graph serves every position; it is recaptured only when what GraphKey names
// changes (the trace plan, the cache's storage, the trace buffers when the plan
// records). CudaEngine::forward (cuda_forward.cpp) decides when to replay and falls
// back to direct launches for good when a capture or a launch fails.
// KVSCOPE_CUDA_GRAPHS=0 in the environment turns graphs off.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/cuda/cuda_engine_impl.h"

namespace kv::cuda {

GraphKey graph_key(const RecordPlan& plan, const float* kv, const float* rec_w, const float* rec_q,
                   const float* rec_kpre) {
    return plan.any() ? GraphKey{plan, kv, rec_w, rec_q, rec_kpre} : GraphKey{plan, kv, nullptr, nullptr, nullptr};
}

bool graphs_from_env() {
    const char* e = std::getenv("KVSCOPE_CUDA_GRAPHS");
    return !(e && std::strcmp(e, "0") == 0);
}

void CudaEngine::drop_graph() {
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
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
    graph_key_ = graph_key(plan, cache.storage(), rec_w_.get(), rec_q_.get(), rec_kpre_.get());
}

}  // namespace kv::cuda
