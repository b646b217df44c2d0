// The Llama family's per-row formulas, as transformers' modeling_llama.py computes them
// in float32, shared by the engine (core/engine/engine_cpu.cpp) and anyone else who
// runs the block (the trainer may call them: core/train may include core/model).
// Notation: hd head_dim, half = hd / 2, pos the token's absolute position.
#pragma once
#include <cmath>

namespace kv {

// LlamaRMSNorm: out = x * rsqrt(mean(x^2) + eps) * w over n values (out may be x).
void rms_norm(float* out, const float* x, const float* w, int n, float eps);

// The rotation of pair i at position pos: angle = float(pos) * inv_freq[i] in float32
// (LlamaRotaryEmbedding: inv_freq @ position_ids), its cos and sin into cos_out and
// sin_out (half values each).
void rope_angles(int pos, const float* inv_freq, int half, float* cos_out, float* sin_out);

// apply_rotary_pos_emb on one head's row, in place: x * cos + rotate_half(x) * sin with
// rotate_half(x) = [-x2, x1], i.e. pair (x[i], x[i + half]) turned by angle i:
//   x[i]        <- x[i] cos_i - x[i + half] sin_i
//   x[i + half] <- x[i + half] cos_i + x[i] sin_i
void rope_rotate(float* row, int hd, const float* cos, const float* sin);

// DeepseekV3's rope_interleave (apply_rotary_pos_emb_interleave): the d values of a
// RoPE part, pairs (2i, 2i + 1), are first reordered to [x0, x2, ..., x1, x3, ...] (in
// place, d <= kMaxRopeDim), then turned by rope_rotate; the turned part stays in that order.
// Templates so that the trainer's float and double passes call the same definition.
constexpr int kMaxRopeDim = 1024;
template <class T>
void deinterleave(T* row, int d) {
    T tmp[kMaxRopeDim];
    const int half = d / 2;
    for (int i = 0; i < half; ++i) tmp[i] = row[2 * i], tmp[half + i] = row[2 * i + 1];
    for (int i = 0; i < d; ++i) row[i] = tmp[i];
}
// And back: [x0, x2, ..., x1, x3, ...] to [x0, x1, x2, ...] (the trainer's backward).
template <class T>
void interleave(T* row, int d) {
    T tmp[kMaxRopeDim];
    const int half = d / 2;
    for (int i = 0; i < half; ++i) tmp[2 * i] = row[i], tmp[2 * i + 1] = row[half + i];
    for (int i = 0; i < d; ++i) row[i] = tmp[i];
}

// SiLU (the Llama family's hidden_act "silu"): x * sigmoid(x).
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace kv
