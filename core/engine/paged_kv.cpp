#include "core/engine/paged_kv.h"

#include <string>

#include "core/engine/engine.h"
#include "core/engine/kv_cache.h"
#include "core/error.h"

namespace kv {

PagedKV::PagedKV(const ModelConfig& cfg, const CachePolicy& policy, int n_blocks, int block_size)
    : cfg_(cfg), policy_(policy), n_blocks_(n_blocks), block_size_(block_size) {
    check_policy(policy, "pool");
    if (block_size < 1) throw Error("pool: block size " + std::to_string(block_size) + " (needs at least 1)");
    if (n_blocks < 1) throw Error("pool: " + std::to_string(n_blocks) + " blocks (needs at least 1)");
}

void PagedKV::slots_for(std::span<const int> table, int p0, int n, std::vector<int>& new_slots,
                        std::vector<int>& key_slots, std::vector<int>& key_pos) const {
    const int q1 = p0 + n - 1;
    new_slots.clear(), key_slots.clear(), key_pos.clear();
    for (int p = p0; p <= q1; ++p) new_slots.push_back(paged_slot(table, block_size_, p));
    for (int k = 0; k <= q1; ++k)
        if (policy_.read_by_some(p0, q1, k)) {
            key_slots.push_back(paged_slot(table, block_size_, k));
            key_pos.push_back(k);
        }
}

int64_t PagedKV::bytes_per_block() const { return cache_bytes_for(cfg_, policy_.dtype, block_size_); }

HostPagedKV::HostPagedKV(const ModelConfig& cfg, const CachePolicy& policy, int n_blocks, int block_size)
    : PagedKV(cfg, policy, n_blocks, block_size), rows_(cfg, policy.dtype, n_blocks * block_size) {}

void HostPagedKV::copy_block(int src, int dst) {
    if (src < 0 || dst < 0 || src >= n_blocks() || dst >= n_blocks())
        throw Error("pool: copy of block " + std::to_string(src) + " into " + std::to_string(dst) + " is out of range");
    rows_.copy_slots(src * block_size(), dst * block_size(), block_size());
}

void HostPagedKV::read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v) const {
    check_cache_head(config(), layer, kv_head);
    rows_.read_rows(layer, kv_head, slots, k, v);
}

}  // namespace kv
