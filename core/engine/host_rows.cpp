#include "core/engine/host_rows.h"

#include <cassert>
#include <cstring>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace kv {

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

HostRows::HostRows(const ModelConfig& cfg, KvDtype dtype, int slots)
    : cfg_(cfg), dtype_(dtype), layers_(size_t(cfg.n_layer)) {
    resize(slots);
}

void HostRows::set_keep_unrounded(bool on) {
    keep_unrounded_ = on && dtype_ != KvDtype::f32;
    resize(slots_);
}

void HostRows::resize(int n) {
    const int kw = k_width(), vw = v_width(), Hkv = cfg_.n_kv_head;
    const KvDtype t = dtype_;
    for (Layer& st : layers_) {
        auto rows = [&](RowMat& m, bool want, int w) {
            const Eigen::Index old = m.rows();
            m.conservativeResize(want ? n : 0, w);
            if (want && n > old) m.bottomRows(n - old).setZero();
        };
        rows(st.k32, t == KvDtype::f32, kw);
        rows(st.v32, t == KvDtype::f32, vw);
        rows(st.k_raw, keep_unrounded_, kw);
        rows(st.v_raw, keep_unrounded_, vw);
        st.k16.resize(t == KvDtype::f16 ? size_t(n) * kw : 0);
        st.v16.resize(t == KvDtype::f16 ? size_t(n) * vw : 0);
        st.k8.resize(t == KvDtype::int8 ? size_t(n) * kw : 0);
        st.v8.resize(t == KvDtype::int8 ? size_t(n) * vw : 0);
        st.ks.resize(t == KvDtype::int8 ? size_t(n) * Hkv : 0, 1.f);
        st.vs.resize(t == KvDtype::int8 && vw > 0 ? size_t(n) * Hkv : 0, 1.f);
    }
    slots_ = n;
}

void HostRows::write(int layer, int slot, const float* k_row, const float* v_row) {
    assert(layer >= 0 && layer < cfg_.n_layer && slot >= 0 && slot < slots_);
    const int kw = k_width(), vw = v_width(), kh = cfg_.cache_k_width(), vh = cfg_.cache_v_width(), Hkv = cfg_.n_kv_head;
    Layer& st = layers_[size_t(layer)];
    const size_t ko = size_t(slot) * kw, vo = size_t(slot) * vw;
    switch (dtype_) {
    case KvDtype::f32:
        std::memcpy(st.k32.row(slot).data(), k_row, sizeof(float) * kw);
        if (vw > 0) std::memcpy(st.v32.row(slot).data(), v_row, sizeof(float) * vw);
        break;
    case KvDtype::f16:
        for (int i = 0; i < kw; ++i) st.k16[ko + i] = f32_to_f16(k_row[i]);
        for (int i = 0; i < vw; ++i) st.v16[vo + i] = f32_to_f16(v_row[i]);
        break;
    case KvDtype::int8:
        for (int g = 0; g < Hkv; ++g) {
            const float sk = int8_scale(k_row + g * kh, kh);
            st.ks[size_t(slot) * Hkv + g] = sk;
            for (int i = g * kh; i < (g + 1) * kh; ++i) st.k8[ko + i] = quantize_int8(k_row[i], sk);
            if (vh == 0) continue;
            const float sv = int8_scale(v_row + g * vh, vh);
            st.vs[size_t(slot) * Hkv + g] = sv;
            for (int i = g * vh; i < (g + 1) * vh; ++i) st.v8[vo + i] = quantize_int8(v_row[i], sv);
        }
        break;
    }
    if (keep_unrounded_) {
        std::memcpy(st.k_raw.row(slot).data(), k_row, sizeof(float) * kw);
        if (vw > 0) std::memcpy(st.v_raw.row(slot).data(), v_row, sizeof(float) * vw);
    }
}

void HostRows::decode_row(const Layer& st, bool is_k, int slot, int g, float* out) const {
    const int w = is_k ? k_width() : v_width(), hw = is_k ? cfg_.cache_k_width() : cfg_.cache_v_width();
    const int Hkv = cfg_.n_kv_head;
    if (hw == 0) return;
    const size_t off = size_t(slot) * w + size_t(g) * hw;
    switch (dtype_) {
    case KvDtype::f32:
        std::memcpy(out, (is_k ? st.k32 : st.v32).data() + off, sizeof(float) * hw);
        break;
    case KvDtype::f16:
        f16_row_to_f32((is_k ? st.k16 : st.v16).data() + off, hw, out);
        break;
    case KvDtype::int8: {
        const int8_t* q = (is_k ? st.k8 : st.v8).data() + off;
        const float s = (is_k ? st.ks : st.vs)[size_t(slot) * Hkv + g];
        for (int i = 0; i < hw; ++i) out[i] = float(q[i]) * s;
        break;
    }
    }
}

bool HostRows::read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                         bool unrounded) const {
    const int kh = cfg_.cache_k_width(), vh = cfg_.cache_v_width();
    assert(layer >= 0 && layer < cfg_.n_layer && kv_head >= 0 && kv_head < cfg_.n_kv_head);
    const bool raw = unrounded && dtype_ != KvDtype::f32;
    if (raw && !keep_unrounded_) return false;
    const Layer& st = layers_[size_t(layer)];
    k.resize(Eigen::Index(slots.size()), kh);
    v.resize(Eigen::Index(slots.size()), vh);
    for (size_t i = 0; i < slots.size(); ++i) {
        const int s = slots[i];
        assert(s >= 0 && s < slots_);
        if (raw) {
            k.row(Eigen::Index(i)) = st.k_raw.row(s).segment(kv_head * kh, kh);
            v.row(Eigen::Index(i)) = st.v_raw.row(s).segment(kv_head * vh, vh);
        } else {
            decode_row(st, true, s, kv_head, k.row(Eigen::Index(i)).data());
            decode_row(st, false, s, kv_head, v.row(Eigen::Index(i)).data());
        }
    }
    return true;
}

bool HostRows::direct_rows(int layer, std::span<const int> slots, Rows& rows) const {
    const int kw = k_width(), vw = v_width(), n = int(slots.size());
    if (dtype_ != KvDtype::f32) return false;
    for (int i = 1; i < n; ++i)
        if (slots[size_t(i)] != slots[0] + i) return false;
    const Layer& st = layers_[size_t(layer)];
    const size_t s0 = n > 0 ? size_t(slots[0]) : 0;
    rows = {st.k32.data() + s0 * kw, st.v32.data() + s0 * vw, kw, vw};
    return true;
}

void HostRows::decode_rows(int layer, std::span<const int> slots, int i0, int i1, float* k_out,
                           float* v_out) const {
    const int kw = k_width(), vw = v_width(), kh = cfg_.cache_k_width(), vh = cfg_.cache_v_width();
    const Layer& st = layers_[size_t(layer)];
    for (int i = i0; i < i1; ++i)
        for (int g = 0; g < cfg_.n_kv_head; ++g) {
            decode_row(st, true, slots[size_t(i)], g, k_out + size_t(i) * kw + g * kh);
            decode_row(st, false, slots[size_t(i)], g, v_out + size_t(i) * vw + g * vh);
        }
}

size_t HostRows::slot_bytes() const {
    const size_t w = size_t(k_width() + v_width()), Hkv = size_t(cfg_.n_kv_head);
    size_t b = w * size_t(dtype_bytes(dtype_));
    if (dtype_ == KvDtype::int8) b += (v_width() > 0 ? 2 : 1) * Hkv * sizeof(float);
    if (keep_unrounded_) b += w * sizeof(float);
    return b;
}

template <class L, class F>
void HostRows::for_slot_spans(L& st, int slot, F&& f_any) const {
    auto f = [&](auto* p, size_t n) {  // an empty part (MLA's V) has no storage, not even a pointer
        if (n > 0) f_any(p, n);
    };
    const size_t kw = size_t(k_width()), vw = size_t(v_width()), Hkv = size_t(cfg_.n_kv_head);
    const size_t ko = size_t(slot) * kw, vo = size_t(slot) * vw;
    switch (dtype_) {
    case KvDtype::f32: f(st.k32.data() + ko, kw * 4), f(st.v32.data() + vo, vw * 4); break;
    case KvDtype::f16: f(st.k16.data() + ko, kw * 2), f(st.v16.data() + vo, vw * 2); break;
    case KvDtype::int8:
        f(st.k8.data() + ko, kw), f(st.v8.data() + vo, vw);
        f(st.ks.data() + size_t(slot) * Hkv, Hkv * 4);
        if (vw > 0) f(st.vs.data() + size_t(slot) * Hkv, Hkv * 4);
        break;
    }
    if (keep_unrounded_) f(st.k_raw.data() + ko, kw * 4), f(st.v_raw.data() + vo, vw * 4);
}

std::vector<char> HostRows::save_slot(int slot) const {
    std::vector<char> out;
    out.reserve(slot_bytes() * layers_.size());
    for (const Layer& st : layers_)
        for_slot_spans(st, slot, [&](const void* p, size_t n) {
            const char* c = static_cast<const char*>(p);
            out.insert(out.end(), c, c + n);
        });
    return out;
}

void HostRows::load_slot(int slot, const std::vector<char>& bytes) {
    if (bytes.size() != slot_bytes() * layers_.size())
        throw Error("cache: an undo-log row does not match the cache's layout (keep_unrounded changed?)");
    const char* p = bytes.data();
    for (Layer& st : layers_)
        for_slot_spans(st, slot, [&](void* dst, size_t n) {
            std::memcpy(dst, p, n);
            p += n;
        });
}

void HostRows::copy_slots(int src, int dst, int n) {
    assert(src >= 0 && dst >= 0 && src + n <= slots_ && dst + n <= slots_);
    for (int i = 0; i < n; ++i) load_slot(dst + i, save_slot(src + i));
}

}  // namespace kv
