#include "core/engine/kv_cache.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace kv {

int64_t cache_bytes_for(const ModelConfig& cfg, KvDtype t, int64_t rows) {
    const int64_t L = cfg.n_layer;
    int64_t b = 2 * L * cfg.kv_dim() * rows * dtype_bytes(t);
    if (t == KvDtype::int8) b += 2 * L * cfg.n_kv_head * rows * int64_t(sizeof(float));  // scales
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
        // Some q in [q0, q1] has k <= q and (k < S or k > q - W): q = max(k, q0) is the best.
        if (!policy_.windowed() || k < policy_.sinks || k > q0 - policy_.window) {
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
    const int hd = cfg_.head_dim();
    std::vector<int> slots, at;
    for (int p = 0; p < n_pos_; ++p)
        if (slot_of_pos_[size_t(p)] >= 0) {
            slots.push_back(slot_of_pos_[size_t(p)]);
            at.push_back(p);
        }
    RowMat ks, vs;
    if (!read_rows(layer, kv_head, slots, ks, vs, unrounded)) return false;
    k = RowMat::Zero(n_pos_, hd);
    v = RowMat::Zero(n_pos_, hd);
    for (size_t i = 0; i < at.size(); ++i) {
        k.row(at[i]) = ks.row(Eigen::Index(i));
        v.row(at[i]) = vs.row(Eigen::Index(i));
    }
    return true;
}

// ---- host storage -----------------------------------------------------------------

namespace {

// n halves to floats: the CPU's F16C instruction where the build targets it (exact,
// the same values as f16_to_f32), else a 64 K-entry table built once from f16_to_f32.
void f16_row_to_f32(const uint16_t* h, int n, float* out) {
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
#endif
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        for (uint32_t v = 0; v < 65536; ++v) t[v] = f16_to_f32(uint16_t(v));
        return t;
    }();
    for (; i < n; ++i) out[i] = table[h[i]];
}

}  // namespace


HostKVCache::HostKVCache(const ModelConfig& cfg, const CachePolicy& policy)
    : KVCache(cfg, policy), layers_(size_t(cfg.n_layer)) {
    grow(n_slots());
}

void HostKVCache::set_keep_unrounded(bool on) {
    keep_unrounded_ = on && policy().dtype != KvDtype::f32;
    grow(slots_);
}

void HostKVCache::grow(int n) {
    const int kvd = config().kv_dim(), Hkv = config().n_kv_head;
    const KvDtype t = policy().dtype;
    for (Layer& st : layers_) {
        auto rows = [&](RowMat& m, bool want) {
            const Eigen::Index old = m.rows();
            m.conservativeResize(want ? n : 0, kvd);
            if (want && n > old) m.bottomRows(n - old).setZero();
        };
        rows(st.k32, t == KvDtype::f32);
        rows(st.v32, t == KvDtype::f32);
        rows(st.k_raw, keep_unrounded_);
        rows(st.v_raw, keep_unrounded_);
        const size_t nv = size_t(n) * kvd;
        st.k16.resize(t == KvDtype::f16 ? nv : 0);
        st.v16.resize(t == KvDtype::f16 ? nv : 0);
        st.k8.resize(t == KvDtype::int8 ? nv : 0);
        st.v8.resize(t == KvDtype::int8 ? nv : 0);
        st.ks.resize(t == KvDtype::int8 ? size_t(n) * Hkv : 0, 1.f);
        st.vs.resize(t == KvDtype::int8 ? size_t(n) * Hkv : 0, 1.f);
    }
    slots_ = n;
}

void HostKVCache::write(int layer, int slot, const float* k_row, const float* v_row) {
    assert(layer >= 0 && layer < config().n_layer && slot >= 0 && slot < slots_);
    assert(cells()[size_t(slot)].used() && "write a slot the cache placed");
    const int kvd = config().kv_dim(), hd = config().head_dim(), Hkv = config().n_kv_head;
    Layer& st = layers_[size_t(layer)];
    const size_t off = size_t(slot) * kvd;
    switch (policy().dtype) {
    case KvDtype::f32:
        std::memcpy(st.k32.row(slot).data(), k_row, sizeof(float) * kvd);
        std::memcpy(st.v32.row(slot).data(), v_row, sizeof(float) * kvd);
        break;
    case KvDtype::f16:
        for (int i = 0; i < kvd; ++i) {
            st.k16[off + i] = f32_to_f16(k_row[i]);
            st.v16[off + i] = f32_to_f16(v_row[i]);
        }
        break;
    case KvDtype::int8:
        for (int g = 0; g < Hkv; ++g) {
            const float sk = int8_scale(k_row + g * hd, hd), sv = int8_scale(v_row + g * hd, hd);
            st.ks[size_t(slot) * Hkv + g] = sk;
            st.vs[size_t(slot) * Hkv + g] = sv;
            for (int i = g * hd; i < (g + 1) * hd; ++i) {
                st.k8[off + i] = quantize_int8(k_row[i], sk);
                st.v8[off + i] = quantize_int8(v_row[i], sv);
            }
        }
        break;
    }
    if (keep_unrounded_) {
        std::memcpy(st.k_raw.row(slot).data(), k_row, sizeof(float) * kvd);
        std::memcpy(st.v_raw.row(slot).data(), v_row, sizeof(float) * kvd);
    }
}

void HostKVCache::decode_row(const Layer& st, bool is_k, int slot, int g, float* out) const {
    const int kvd = config().kv_dim(), hd = config().head_dim(), Hkv = config().n_kv_head;
    const size_t off = size_t(slot) * kvd + size_t(g) * hd;
    switch (policy().dtype) {
    case KvDtype::f32:
        std::memcpy(out, (is_k ? st.k32 : st.v32).data() + off, sizeof(float) * hd);
        break;
    case KvDtype::f16:
        f16_row_to_f32((is_k ? st.k16 : st.v16).data() + off, hd, out);
        break;
    case KvDtype::int8: {
        const int8_t* q = (is_k ? st.k8 : st.v8).data() + off;
        const float s = (is_k ? st.ks : st.vs)[size_t(slot) * Hkv + g];
        for (int i = 0; i < hd; ++i) out[i] = float(q[i]) * s;
        break;
    }
    }
}

bool HostKVCache::read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                            bool unrounded) const {
    const int hd = config().head_dim();
    assert(layer >= 0 && layer < config().n_layer && kv_head >= 0 && kv_head < config().n_kv_head);
    const bool raw = unrounded && policy().dtype != KvDtype::f32;
    if (raw && !keep_unrounded_) return false;
    const Layer& st = layers_[size_t(layer)];
    k.resize(Eigen::Index(slots.size()), hd);
    v.resize(Eigen::Index(slots.size()), hd);
    for (size_t i = 0; i < slots.size(); ++i) {
        const int s = slots[i];
        assert(s >= 0 && s < slots_);
        if (raw) {
            k.row(Eigen::Index(i)) = st.k_raw.row(s).segment(kv_head * hd, hd);
            v.row(Eigen::Index(i)) = st.v_raw.row(s).segment(kv_head * hd, hd);
        } else {
            decode_row(st, true, s, kv_head, k.row(Eigen::Index(i)).data());
            decode_row(st, false, s, kv_head, v.row(Eigen::Index(i)).data());
        }
    }
    return true;
}

bool HostKVCache::direct_rows(int layer, std::span<const int> slots, Rows& rows) const {
    const int kvd = config().kv_dim(), n = int(slots.size());
    if (policy().dtype != KvDtype::f32) return false;
    for (int i = 1; i < n; ++i)
        if (slots[size_t(i)] != slots[0] + i) return false;
    const Layer& st = layers_[size_t(layer)];
    const size_t off = n > 0 ? size_t(slots[0]) * kvd : 0;
    rows = {st.k32.data() + off, st.v32.data() + off, kvd};
    return true;
}

void HostKVCache::decode_rows(int layer, std::span<const int> slots, int i0, int i1, float* k_out,
                              float* v_out) const {
    const int kvd = config().kv_dim(), hd = config().head_dim(), Hkv = config().n_kv_head;
    const Layer& st = layers_[size_t(layer)];
    for (int i = i0; i < i1; ++i)
        for (int g = 0; g < Hkv; ++g) {
            decode_row(st, true, slots[size_t(i)], g, k_out + size_t(i) * kvd + g * hd);
            decode_row(st, false, slots[size_t(i)], g, v_out + size_t(i) * kvd + g * hd);
        }
}

size_t HostKVCache::slot_bytes() const {
    const size_t kvd = size_t(config().kv_dim()), Hkv = size_t(config().n_kv_head);
    size_t b = 2 * kvd * size_t(dtype_bytes(policy().dtype));
    if (policy().dtype == KvDtype::int8) b += 2 * Hkv * sizeof(float);
    if (keep_unrounded_) b += 2 * kvd * sizeof(float);
    return b;
}

std::vector<char> HostKVCache::save_slot(int slot) const {
    const size_t kvd = size_t(config().kv_dim()), Hkv = size_t(config().n_kv_head);
    std::vector<char> out;
    out.reserve(slot_bytes() * layers_.size());
    auto put = [&](const void* p, size_t n) {
        const char* c = static_cast<const char*>(p);
        out.insert(out.end(), c, c + n);
    };
    for (const Layer& st : layers_) {
        const size_t off = size_t(slot) * kvd;
        switch (policy().dtype) {
        case KvDtype::f32: put(st.k32.row(slot).data(), kvd * 4), put(st.v32.row(slot).data(), kvd * 4); break;
        case KvDtype::f16: put(st.k16.data() + off, kvd * 2), put(st.v16.data() + off, kvd * 2); break;
        case KvDtype::int8:
            put(st.k8.data() + off, kvd), put(st.v8.data() + off, kvd);
            put(st.ks.data() + size_t(slot) * Hkv, Hkv * 4), put(st.vs.data() + size_t(slot) * Hkv, Hkv * 4);
            break;
        }
        if (keep_unrounded_) put(st.k_raw.row(slot).data(), kvd * 4), put(st.v_raw.row(slot).data(), kvd * 4);
    }
    return out;
}

void HostKVCache::load_slot(int slot, const std::vector<char>& bytes) {
    const size_t kvd = size_t(config().kv_dim()), Hkv = size_t(config().n_kv_head);
    if (bytes.size() != slot_bytes() * layers_.size())
        throw Error("cache: an undo-log row does not match the cache's layout (keep_unrounded changed?)");
    const char* p = bytes.data();
    auto get = [&](void* dst, size_t n) {
        std::memcpy(dst, p, n);
        p += n;
    };
    for (Layer& st : layers_) {
        const size_t off = size_t(slot) * kvd;
        switch (policy().dtype) {
        case KvDtype::f32: get(st.k32.row(slot).data(), kvd * 4), get(st.v32.row(slot).data(), kvd * 4); break;
        case KvDtype::f16: get(st.k16.data() + off, kvd * 2), get(st.v16.data() + off, kvd * 2); break;
        case KvDtype::int8:
            get(st.k8.data() + off, kvd), get(st.v8.data() + off, kvd);
            get(st.ks.data() + size_t(slot) * Hkv, Hkv * 4), get(st.vs.data() + size_t(slot) * Hkv, Hkv * 4);
            break;
        }
        if (keep_unrounded_) get(st.k_raw.row(slot).data(), kvd * 4), get(st.v_raw.row(slot).data(), kvd * 4);
    }
}

}  // namespace kv
