// DeviceKVCache (device_cache.h): allocation, and the row copies between the host and
// the device storage that the cache's interface asks for (write() from a caller that
// fills rows itself, read_rows() for the cache panel and the tests). The engine's own
// writes are kernels (qkv_bias_to_cache, kernels.cu). A full cache: never grows or
// evicts, so the hooks for that throw.
#include "core/engine/cuda/device_cache.h"

#include <cuda_runtime.h>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/engine.h"
#include "core/error.h"

namespace kv::cuda {

DeviceKVCache::DeviceKVCache(const ModelConfig& cfg, const CachePolicy& policy, int device, cudaStream_t stream)
    : KVCache(cfg, policy), device_(device), stream_(stream) {
    KV_CUDA(cudaSetDevice(device_));
    kv_.alloc(size_t(2) * cfg.n_layer * n_slots() * cfg.kv_dim());
    KV_CUDA(cudaMemset(kv_.get(), 0, kv_.size() * sizeof(float)));
}

void DeviceKVCache::write(int layer, int slot, const float* k_row, const float* v_row) {
    const size_t kvd = size_t(config().kv_dim());
    KV_CUDA(cudaSetDevice(device_));
    KV_CUDA(cudaMemcpyAsync(k(layer) + size_t(slot) * kvd, k_row, kvd * sizeof(float), cudaMemcpyHostToDevice,
                            stream_));
    KV_CUDA(cudaMemcpyAsync(v(layer) + size_t(slot) * kvd, v_row, kvd * sizeof(float), cudaMemcpyHostToDevice,
                            stream_));
    KV_CUDA(cudaStreamSynchronize(stream_));
}

bool DeviceKVCache::read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k_out, RowMat& v_out,
                              bool unrounded) const {
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

void DeviceKVCache::grow(int) { throw Error("cuda backend: the device cache cannot grow"); }

std::vector<char> DeviceKVCache::save_slot(int) const { throw Error("cuda backend: the device cache never evicts"); }

void DeviceKVCache::load_slot(int, const std::vector<char>&) {
    throw Error("cuda backend: the device cache never evicts");
}

}  // namespace kv::cuda
