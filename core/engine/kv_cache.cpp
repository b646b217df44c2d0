#include "core/engine/kv_cache.h"

#include <algorithm>
#include <cassert>

#include "core/error.h"

namespace kv {

int64_t cache_bytes_for(const ModelConfig& cfg, KvDtype t, int64_t rows) {
    const int64_t L = cfg.n_layer, parts = cfg.cache_v_width() > 0 ? 2 : 1;  // K and V, or MLA's latent
    int64_t b = L * cfg.cache_row_values() * rows * dtype_bytes(t);
    if (t == KvDtype::int8) b += parts * L * cfg.n_kv_head * rows * int64_t(sizeof(float));  // scales
    return b;
}

// ---- bookkeeping ------------------------------------------------------------------

KVCache::KVCache(const ModelConfig& cfg, const CachePolicy& policy)
    : cfg_(cfg), policy_(policy), slot_of_pos_(size_t(cfg.n_ctx), -1) {
    check_policy(policy, "cache");
    cells_.resize(size_t(initial_slots()));
    placed_.reserve(size_t(cfg.n_ctx));
    evicted_.reserve(size_t(cfg.n_ctx));
}

// A full cache can come to hold every position; a window at most S + W - 1 held
// rows plus the one a decode step adds. A prefill longer than that grows storage.
int KVCache::initial_slots() const {
    if (!policy_.windowed()) return cfg_.n_ctx;
    return std::min(cfg_.n_ctx, policy_.sinks + policy_.window);
}

int KVCache::slot_of(int pos) const {
    assert(pos >= 0 && pos < cfg_.n_ctx);
    return slot_of_pos_[size_t(pos)];
}

int KVCache::take_free_cell() {
    for (int s = 0; s < n_slots(); ++s)
        if (!cells_[size_t(s)].used()) return s;
    const int old = n_slots();
    const int grown = std::min(cfg_.n_ctx, std::max(old + 1, old * 2));
    grow(grown);
    cells_.resize(size_t(grown));
    return old;
}

const std::vector<int>& KVCache::place(int n) {
    assert(n >= 0 && n_pos_ + n <= cfg_.n_ctx);
    placed_.clear();
    for (int i = 0; i < n; ++i) {
        const int slot = take_free_cell(), pos = n_pos_ + i;
        cells_[size_t(slot)].pos = pos;
        slot_of_pos_[size_t(pos)] = slot;
        placed_.push_back(slot);
    }
    n_pos_ += n;
    n_used_ += n;
    return placed_;
}

void KVCache::keys_for(int q0, int q1, std::vector<int>& slots, std::vector<int>& pos) const {
    slots.clear();
    pos.clear();
    for (int k = 0; k <= q1 && k < n_pos_; ++k) {
        const int s = slot_of_pos_[size_t(k)];
        if (s < 0) continue;
        if (policy_.read_by_some(q0, q1, k)) {
            slots.push_back(s);
            pos.push_back(k);
        }
    }
}

const std::vector<int>& KVCache::evict() {
    evicted_.clear();
    if (!policy_.windowed()) return evicted_;
    for (int k = 0; k < n_pos_; ++k) {
        const int s = slot_of_pos_[size_t(k)];
        if (s < 0 || policy_.keeps(n_pos_, k)) continue;
        log_[k] = save_slot(s);
        cells_[size_t(s)].pos = -1;
        slot_of_pos_[size_t(k)] = -1;
        --n_used_;
        evicted_.push_back(k);
    }
    return evicted_;
}

void KVCache::truncate(int n) {
    assert(n >= 0);
    evicted_.clear();
    if (n >= n_pos_) return;
    for (int k = n; k < n_pos_; ++k) {
        const int s = slot_of_pos_[size_t(k)];
        if (s < 0) continue;
        cells_[size_t(s)].pos = -1;
        slot_of_pos_[size_t(k)] = -1;
        --n_used_;
    }
    log_.erase(log_.lower_bound(n), log_.end());
    n_pos_ = n;
    // Put back what a cache that saw [0, n) holds; it was logged when evicted.
    for (int k = 0; k < n; ++k) {
        if (slot_of_pos_[size_t(k)] >= 0 || !policy_.keeps(n, k)) continue;
        auto it = log_.find(k);
        assert(it != log_.end() && "an evicted row a shorter cache keeps was logged");
        const int s = take_free_cell();
        load_slot(s, it->second);
        log_.erase(it);
        cells_[size_t(s)].pos = k;
        slot_of_pos_[size_t(k)] = s;
        ++n_used_;
    }
}

bool KVCache::read_positions(int layer, int kv_head, RowMat& k, RowMat& v, bool unrounded) const {
    std::vector<int> slots, at;
    for (int p = 0; p < n_pos_; ++p)
        if (slot_of_pos_[size_t(p)] >= 0) {
            slots.push_back(slot_of_pos_[size_t(p)]);
            at.push_back(p);
        }
    RowMat ks, vs;
    if (!read_rows(layer, kv_head, slots, ks, vs, unrounded)) return false;
    k = RowMat::Zero(n_pos_, cfg_.cache_k_width());
    v = RowMat::Zero(n_pos_, cfg_.cache_v_width());
    for (size_t i = 0; i < at.size(); ++i) {
        k.row(at[i]) = ks.row(Eigen::Index(i));
        v.row(at[i]) = vs.row(Eigen::Index(i));
    }
    return true;
}

// ---- host storage -----------------------------------------------------------------

HostKVCache::HostKVCache(const ModelConfig& cfg, const CachePolicy& policy)
    : KVCache(cfg, policy), rows_(cfg, policy.dtype, n_slots()) {}

void HostKVCache::write(int layer, int slot, const float* k_row, const float* v_row) {
    assert(slot >= 0 && slot < n_slots() && cells()[size_t(slot)].used() && "write a slot the cache placed");
    rows_.write(layer, slot, k_row, v_row);
}

bool HostKVCache::read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                            bool unrounded) const {
    return rows_.read_rows(layer, kv_head, slots, k, v, unrounded);
}

}  // namespace kv
