// KVCache: storage plus bookkeeping, kept apart (as llama.cpp's kv-cache/kv-cells).
// Storage: per layer K and V, (n_ctx, kv_dim) row-major, preallocated, so a row is
// one position's keys (or values) for every kv head. Bookkeeping: which position
// each row holds and how many rows are used. Rows are written in exactly one
// function, write(); sliding windows, quantised or paged caches become policies
// over the bookkeeping later without touching the engine's loops.
#pragma once
#include <cstdint>
#include <vector>

#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

class KVCache {
public:
    KVCache() = default;
    explicit KVCache(const ModelConfig& cfg);

    // Writes K and V rows for `pos` in `layer`. Rows are appended in order: pos must
    // be the next free row (n_rows(), or an existing row during the same step).
    void write(int layer, int pos, const float* k_row, const float* v_row);
    // Marks rows [0, n) as holding positions 0..n-1 once all layers are written.
    void commit(int n);
    // Forget everything at and after row n (going back one step).
    void truncate(int n);
    void clear() { truncate(0); }

    int n_rows() const { return n_rows_; }
    int capacity() const { return n_ctx_; }
    int n_layer() const { return static_cast<int>(k_.size()); }
    int kv_dim() const { return kv_dim_; }
    int position_of_row(int row) const;

    // Views for the attention loop: rows [0, n) of layer l.
    const RowMat& k(int layer) const { return k_[layer]; }  // (n_ctx, kv_dim)
    const RowMat& v(int layer) const { return v_[layer]; }  // (n_ctx, kv_dim)

    // 2 * L * kv_dim * rows * sizeof(float)
    int64_t bytes_for_rows(int rows) const;
    int64_t bytes_used() const { return bytes_for_rows(n_rows_); }

private:
    int n_ctx_ = 0, kv_dim_ = 0;
    std::vector<RowMat> k_, v_;   // L x (n_ctx, kv_dim)
    std::vector<int> pos_;        // (n_ctx) position held by each row, -1 if free
    int n_rows_ = 0;
};

}  // namespace kv
