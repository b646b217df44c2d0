// PagedKV: the serving pool's storage (docs/design.md, "Serving"): P blocks of B token
// slots each in a backend's memory, shared by many sequences. A sequence's position p
// lives in block table[p / B] at offset p % B, i.e. in slot paged_slot(table, B, p);
// nothing assumes a sequence's blocks are adjacent. Which block belongs to whom is
// the BlockPool's bookkeeping (core/serve); this class only keeps rows, in the
// policy's dtype. A window policy is a mask here: rows outside it stay in their
// blocks (no eviction), queries skip them.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/engine/host_rows.h"
#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

// The slot of position `pos` through a block table. The one mapping.
inline int paged_slot(std::span<const int> table, int block_size, int pos) {
    return table[static_cast<size_t>(pos / block_size)] * block_size + pos % block_size;
}

class PagedKV {
public:
    // Throws kv::Error when n_blocks < 1, block_size < 1 or the policy is bad.
    PagedKV(const ModelConfig& cfg, const CachePolicy& policy, int n_blocks, int block_size);
    virtual ~PagedKV() = default;
    PagedKV(const PagedKV&) = delete;
    PagedKV& operator=(const PagedKV&) = delete;

    const ModelConfig& config() const { return cfg_; }
    const CachePolicy& policy() const { return policy_; }
    int n_blocks() const { return n_blocks_; }
    int block_size() const { return block_size_; }
    // Every layer's K and V of B positions (kv::cache_bytes_for of B rows).
    int64_t bytes_per_block() const;

    // A step of one sequence's positions [p0, p0 + n) through its block table: the
    // slots their rows go to (new_slots), and the held keys some query of the step
    // reads under the policy's mask, in ascending position (key_slots, key_pos), as
    // KVCache::keys_for gives them for one sequence's cache. Clears all three.
    void slots_for(std::span<const int> table, int p0, int n, std::vector<int>& new_slots, std::vector<int>& key_slots,
                   std::vector<int>& key_pos) const;

    // Block src's rows (every layer, every slot) into block dst: copy-on-write.
    virtual void copy_block(int src, int dst) = 0;
    // Stored rows of one kv head as f32, one row per slot: (n, cache_k_width) and (n, cache_v_width).
    virtual void read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v) const = 0;

private:
    const ModelConfig cfg_;
    const CachePolicy policy_;
    int n_blocks_ = 0, block_size_ = 0;
};

// The CPU's pool: host memory.
class HostPagedKV final : public PagedKV {
public:
    HostPagedKV(const ModelConfig& cfg, const CachePolicy& policy, int n_blocks, int block_size);

    void copy_block(int src, int dst) override;
    void read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v) const override;

    HostRows& rows() { return rows_; }
    const HostRows& rows() const { return rows_; }

private:
    HostRows rows_;  // (P * B) slots
};

}  // namespace kv
