// DeviceKVCache: the CUDA engine's KV cache, a full f32 cache in device memory under
// KVCache's bookkeeping (core/engine/kv_cache.h), which decides the slot of each new
// row and the slots each query reads. Storage: per layer K then V, each
// (n_slots, kv_dim) row-major. The engine's kernels write it (qkv_bias_to_cache, in
// the slots place() chose); write() and read_rows() copy rows to and from the host.
// It never grows or evicts. It must not outlive the engine that made it (it uses the
// engine's stream).
#pragma once
#include <cuda_runtime.h>

#include <span>
#include <vector>

#include "core/engine/cuda/device_buffers.h"
#include "core/engine/kv_cache.h"

namespace kv::cuda {

class DeviceKVCache final : public KVCache {
public:
    DeviceKVCache(const ModelConfig& cfg, const CachePolicy& policy, int device, cudaStream_t stream);
    // Layer l's K and V, each (n_slots, kv_dim).
    float* k(int l) const { return kv_.get() + size_t(2 * l) * n_slots() * config().kv_dim(); }
    float* v(int l) const { return kv_.get() + size_t(2 * l + 1) * n_slots() * config().kv_dim(); }
    const float* storage() const { return kv_.get(); }

    void write(int layer, int slot, const float* k_row, const float* v_row) override;
    bool read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k_out, RowMat& v_out,
                   bool unrounded) const override;

protected:
    // A full cache starts with n_ctx slots and never grows or evicts.
    void grow(int) override;
    std::vector<char> save_slot(int) const override;
    void load_slot(int, const std::vector<char>&) override;

private:
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    DevArray<float> kv_;  // (2 L, n_slots, kv_dim)
};

}  // namespace kv::cuda
