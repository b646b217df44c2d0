#include "core/engine/kv_cache.h"

#include <cassert>
#include <cstring>

namespace kv {

KVCache::KVCache(const ModelConfig& cfg)
    : n_ctx_(cfg.n_ctx), kv_dim_(cfg.kv_dim()), pos_(cfg.n_ctx, -1) {
    k_.reserve(cfg.n_layer);
    v_.reserve(cfg.n_layer);
    for (int l = 0; l < cfg.n_layer; ++l) {
        k_.emplace_back(RowMat::Zero(n_ctx_, kv_dim_));
        v_.emplace_back(RowMat::Zero(n_ctx_, kv_dim_));
    }
}

void KVCache::write(int layer, int pos, const float* k_row, const float* v_row) {
    assert(layer >= 0 && layer < n_layer());
    assert(pos >= n_rows_ && pos < n_ctx_ && "rows are appended after the used ones");
    std::memcpy(k_[layer].row(pos).data(), k_row, sizeof(float) * kv_dim_);
    std::memcpy(v_[layer].row(pos).data(), v_row, sizeof(float) * kv_dim_);
}

void KVCache::commit(int n) {
    assert(n >= n_rows_ && n <= n_ctx_);
    for (int r = n_rows_; r < n; ++r) pos_[r] = r;
    n_rows_ = n;
}

void KVCache::truncate(int n) {
    assert(n >= 0);
    if (n >= n_rows_) return;
    for (int r = n; r < n_rows_; ++r) pos_[r] = -1;
    n_rows_ = n;
}

int KVCache::position_of_row(int row) const {
    assert(row >= 0 && row < n_ctx_);
    return pos_[row];
}

int64_t KVCache::bytes_for_rows(int rows) const {
    return 2LL * n_layer() * kv_dim_ * rows * int64_t(sizeof(float));
}

}  // namespace kv
