// KVCache: storage plus bookkeeping, kept apart (as llama.cpp's kv-cache/kv-cells).
//
// Bookkeeping (this class, the same for every backend): one cell per storage slot
// holds the position whose K/V rows the slot keeps (and, later, a set of sequence
// ids). The cache alone decides where each new position's rows go (place), which
// slots the queries of a step read (keys_for, by the policy's mask) and what is
// evicted (evict). Engines never assume slot == position.
//
// Storage (a subclass per backend: HostKVCache here, the CUDA engine's own): per
// layer, a K and a V part per slot (Hkv * ModelConfig::cache_k_width and
// cache_v_width values: K and V rows of hd per kv head, or MLA's one latent row
// [c_KV | k_R] and no V part), in the policy's dtype, written in exactly one function,
// write(). A slot's keys for every kv head lie side by side.
//
// Going back (truncate) across an eviction is exact: evict() first copies the rows it
// drops into an undo log (host memory, not read by attention, not in cache_bytes), and
// truncate(n) puts back every row a cache that had seen positions [0, n) would hold,
// bit for bit as stored. So back() then step() equals a fresh run of the same tokens.
// docs/cache.md has the picture.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/engine/host_rows.h"
#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

// cache_bytes of `rows` positions under dtype t: L * cache_row_values * rows * bytes(t)
// (2 * L * Hkv * hd, or MLA's L * (d_c + d_R), values a position), plus L * Hkv * rows * 4
// per part (K and V, or the one latent) for int8's scales. The one formula; tests, the UI
// and the engines' counters all call it.
int64_t cache_bytes_for(const ModelConfig& cfg, KvDtype t, int64_t rows);

struct KVCell {
    int pos = -1;  // position whose rows the slot holds, -1 when free
    bool used() const { return pos >= 0; }
};

class KVCache {
public:
    KVCache(const ModelConfig& cfg, const CachePolicy& policy);
    virtual ~KVCache() = default;
    KVCache(const KVCache&) = delete;
    KVCache& operator=(const KVCache&) = delete;

    const ModelConfig& config() const { return cfg_; }
    const CachePolicy& policy() const { return policy_; }

    // ---- bookkeeping ----------------------------------------------------------
    int n_pos() const { return n_pos_; }    // positions [0, n_pos) have entered
    int n_used() const { return n_used_; }  // cells holding a position: the cache's rows
    int n_slots() const { return int(cells_.size()); }
    const std::vector<KVCell>& cells() const { return cells_; }
    int slot_of(int pos) const;             // -1 when the position is not held
    // Positions evicted by the latest step (ascending); cleared by truncate().
    const std::vector<int>& last_evicted() const { return evicted_; }
    int64_t bytes() const { return cache_bytes_for(cfg_, policy_.dtype, n_used_); }

    // A step of n new positions [n_pos, n_pos + n): gives each a free cell (storage
    // grows when none is free) and returns their slots, in position order.
    const std::vector<int>& place(int n);
    // The held keys some query at a position in [q0, q1] reads, in ascending
    // position: their slots and positions. Clears and fills both vectors.
    void keys_for(int q0, int q1, std::vector<int>& slots, std::vector<int>& pos) const;
    // Frees every cell no query at position n_pos or later can read (undo-logging
    // its rows); returns the evicted positions.
    const std::vector<int>& evict();
    // Back to positions [0, n) (n <= n_pos), exactly: see the top of this file.
    void truncate(int n);
    void clear() { truncate(0); }
    // Evicted rows kept for truncate() (a count of positions).
    int n_logged() const { return int(log_.size()); }

    // ---- storage --------------------------------------------------------------
    // Writes one slot's K and V parts (see Storage above; v_row unread when the V part
    // is empty) of `layer`, rounded to the policy's dtype. The only write.
    virtual void write(int layer, int slot, const float* k_row, const float* v_row) = 0;
    // Stored rows of one kv head as f32, one row per slot of `slots`: (n, cache_k_width)
    // and (n, cache_v_width). With
    // unrounded, the f32 rows they were rounded from; false when the cache does not
    // keep those (keep_unrounded off, or a backend that never does).
    virtual bool read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                           bool unrounded = false) const = 0;
    // Keep the f32 rows that f16/int8 rounded, for the window's "stored vs f32" view
    // (host memory, not in cache_bytes). Off by default.
    virtual void set_keep_unrounded(bool on) { (void)on; }

    // Rows of positions [0, n_pos) of one kv head in position order, zero for a
    // position not held: (n_pos, width). False as read_rows.
    bool read_positions(int layer, int kv_head, RowMat& k, RowMat& v, bool unrounded = false) const;

protected:
    // Grows storage to n slots, keeping the rows of the existing ones.
    virtual void grow(int n) = 0;
    // The undo log's two ends: a slot's rows (every layer) as bytes, and back.
    virtual std::vector<char> save_slot(int slot) const = 0;
    virtual void load_slot(int slot, const std::vector<char>& bytes) = 0;

    int initial_slots() const;

private:
    int take_free_cell();

    const ModelConfig cfg_;
    const CachePolicy policy_;
    std::vector<KVCell> cells_;      // (n_slots)
    std::vector<int> slot_of_pos_;   // (n_ctx) slot holding each position, -1 if none
    int n_pos_ = 0, n_used_ = 0;
    std::vector<int> placed_, evicted_;
    std::map<int, std::vector<char>> log_;  // evicted position -> its rows (save_slot)
};

// The CPU's cache: host memory, f32, f16 or int8; its rows live in a HostRows.
class HostKVCache final : public KVCache {
public:
    HostKVCache(const ModelConfig& cfg, const CachePolicy& policy);

    void write(int layer, int slot, const float* k_row, const float* v_row) override;
    bool read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                   bool unrounded = false) const override;
    void set_keep_unrounded(bool on) override { rows_.set_keep_unrounded(on); }

    // The storage, for the CPU engine's layers: they write the rows of the slots
    // place() gave and read them through HostRows::direct_rows and decode_rows.
    const HostRows& rows() const { return rows_; }
    HostRows& rows() { return rows_; }

protected:
    void grow(int n) override { rows_.resize(n); }
    std::vector<char> save_slot(int slot) const override { return rows_.save_slot(slot); }
    void load_slot(int slot, const std::vector<char>& bytes) override { rows_.load_slot(slot, bytes); }

private:
    HostRows rows_;
};

}  // namespace kv
