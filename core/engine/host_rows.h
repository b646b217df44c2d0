// HostRows: K/V rows in host memory, the storage half of a CPU cache (no bookkeeping).
// Per layer, a K part and a V part per slot (ModelConfig::cache_k_width and
// cache_v_width per kv head: hd and hd, or MLA's latent row [c_KV | k_R] and nothing),
// in one dtype (f32, f16 or int8 as kv::CachePolicy defines them; int8 scales per part
// and kv head), written in exactly one function, write(). Rows are (slot, Hkv * width):
// a slot's keys for every kv head side by side. HostKVCache keeps one
// sequence's rows here; the serving pool (HostPagedKV) keeps P blocks of B slots.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

class HostRows {
public:
    HostRows(const ModelConfig& cfg, KvDtype dtype, int slots);

    const ModelConfig& config() const { return cfg_; }
    KvDtype dtype() const { return dtype_; }
    int slots() const { return slots_; }
    // Grows (or shrinks) storage to n slots, keeping the rows of the first ones.
    void resize(int n);

    // Widths of a slot's K and V parts (every kv head): Hkv * cache_k_width, Hkv * cache_v_width.
    int k_width() const { return cfg_.n_kv_head * cfg_.cache_k_width(); }
    int v_width() const { return cfg_.n_kv_head * cfg_.cache_v_width(); }
    // Writes one slot's K and V parts (k_width and v_width values) of `layer`, rounded to the dtype.
    void write(int layer, int slot, const float* k_row, const float* v_row);
    // Stored rows of one kv head as f32, one row per slot of `slots`: (n, cache_k_width)
    // and (n, cache_v_width). With
    // unrounded, the f32 rows they were rounded from; false when those are not kept.
    bool read_rows(int layer, int kv_head, std::span<const int> slots, RowMat& k, RowMat& v,
                   bool unrounded = false) const;
    // Keep the f32 rows that f16/int8 rounded (host memory, not in cache_bytes).
    void set_keep_unrounded(bool on);

    // K and V of `slots` in `layer` as f32 rows for the attention loop, without a
    // copy: true when the rows are f32 and the slots consecutive (then `rows` points
    // into the storage, k_stride and v_stride floats apart); false otherwise (decode_rows then).
    struct Rows {
        const float* k = nullptr;
        const float* v = nullptr;
        int k_stride = 0, v_stride = 0;
    };
    bool direct_rows(int layer, std::span<const int> slots, Rows& rows) const;
    // Decodes the rows of slots[i0, i1) of `layer` into k_out and v_out (row i of the
    // list at row i, k_width and v_width floats a row). Safe to call from several threads at once.
    void decode_rows(int layer, std::span<const int> slots, int i0, int i1, float* k_out, float* v_out) const;

    // A slot's rows (every layer) as bytes, and back (the undo log's two ends).
    std::vector<char> save_slot(int slot) const;
    void load_slot(int slot, const std::vector<char>& bytes);
    // Slots [src, src + n) of every layer into [dst, dst + n), bit for bit.
    void copy_slots(int src, int dst, int n);

private:
    // One layer's storage; only the arrays of the dtype are used.
    struct Layer {
        RowMat k32, v32;                 // (slots, kv_dim) f32
        std::vector<uint16_t> k16, v16;  // (slots * kv_dim) f16 bits
        std::vector<int8_t> k8, v8;      // (slots * kv_dim) int8
        std::vector<float> ks, vs;       // (slots * Hkv) int8 scales
        RowMat k_raw, v_raw;             // (slots, kv_dim) unrounded rows (keep_unrounded)
    };
    void decode_row(const Layer& st, bool is_k, int slot, int g, float* out) const;  // one kv head, hd values
    size_t slot_bytes() const;
    // Calls f(pointer, bytes) for each array span of one slot in one layer, in a fixed order.
    template <class L, class F>
    void for_slot_spans(L& st, int slot, F&& f) const;

    const ModelConfig cfg_;
    const KvDtype dtype_;
    int slots_ = 0;
    bool keep_unrounded_ = false;
    std::vector<Layer> layers_;  // L
};

}  // namespace kv
