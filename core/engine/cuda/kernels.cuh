// Launchers for the CUDA engine's kernels (kernels.cu). Plain pointers, row-major,
// no Eigen, so this header is included by host code compiled with the C++ compiler.
// Notation as in core/config.h: n rows processed this step, C n_embd, Q = C + 2*kv_dim
// (c_attn width), T n_ctx, hd head_dim, H heads, Hkv kv heads.
//
// The step's start position and token ids are read from device memory (`step`:
// step[0] = start_pos, step[1..n] = ids) rather than passed by value, so one
// captured CUDA graph of the one-token decode step serves every position.
// Every launcher enqueues on `stream` and checks the launch (kv::Error on failure).
#pragma once
#include <cuda_runtime_api.h>

namespace kv::cuda {

// x[i] = wte[ids[i]] + wpe[start_pos + i]; wpe null (a RoPE model): x[i] = wte[ids[i]]
//                                                               x: (n, C)
void embed(float* x, const int* step, const float* wte, const float* wpe, int n, int C,
           cudaStream_t stream);

// Per row: if `bias` is not null, first x += bias (written back to x: the pending
// bias of the previous projection); then out = LayerNorm(x) * gamma + beta
// (biased variance, as GPT-2).                                  out, x: (n, C)
void bias_layernorm(float* out, float* x, const float* bias, const float* gamma, const float* beta,
                    int n, int C, float eps, cudaStream_t stream);

// The Llama family's norm, with the same pending bias: if `bias` is not null, x += bias
// (written back); then out = x / sqrt(mean(x^2) + eps) * w.       out, x: (n, C)
void bias_rmsnorm(float* out, float* x, const float* bias, const float* w, int n, int C, float eps,
                  cudaStream_t stream);

// Row i of the q and k parts of qkv (q_dim + 2*kv_dim wide: q heads, then k heads,
// then v heads, hd each) rotated for position start_pos + i, as transformers'
// apply_rotary_pos_emb (rotate_half): for each head and pair c < hd/2 at angle
// a = pos * inv_freq[c] (a float product, as transformers computes it):
//   x[c] <- x[c] cos a - x[c + hd/2] sin a,  x[c + hd/2] <- x[c + hd/2] cos a + x[c] sin a.
// If `b` is not null it is added first (Qwen2's q/k/v biases). Then the (rotated) K
// and the V parts of row i are written to cache slot slots[i], as qkv_bias_to_cache.
// If `k_pre` is not null, the k part of rows r0.. before rotation is copied there
// ((n - r0, kv_dim), for the trace). inv_freq: (hd/2)
void qkv_rope_to_cache(float* qkv, const float* b, const float* inv_freq, float* k_cache, float* v_cache,
                       const int* step, const int* slots, float* k_pre, int r0, int n, int q_dim, int kv_dim,
                       int hd, cudaStream_t stream);

// SwiGLU's gate: out[i, c] = silu(g[i, c]) * u[i, c] with silu(x) = x / (1 + exp(-x));
// g and u are rows of pitch `ld` (the gate and up halves of one product's output).
//                                                              out: (n, F)
void silu_mul(float* out, const float* g, const float* u, int ld, int n, int F, cudaStream_t stream);

// qkv += b, and the K and V parts of row i are written to cache slot slots[i], the
// slot the cache placed position start_pos + i in (the cache's only write).
// qkv: (n, Q); k_cache, v_cache: (slots, kv_dim); slots: (n)
void qkv_bias_to_cache(float* qkv, const float* b, float* k_cache, float* v_cache, const int* slots,
                       int n, int C, int kv_dim, cudaStream_t stream);

// y = gelu(y + b), tanh approximation ("gelu_new").             y: (n, W)
void bias_gelu(float* y, const float* b, int n, int W, cudaStream_t stream);

// Shape of one attention launch.
struct AttnShape {
    int n = 0;       // query rows
    int T = 0;       // n_ctx: capacity of the cache, and the row pitch of `rec`
    int q_dim = 0;   // H * hd: the q part of a qkv row and the width of `out` (C for GPT-2)
    int H = 0, Hkv = 0, hd = 0;
};

// Optional record of softmax weights: query heads [h0, h1), rows i >= r0, laid out
// (h1 - h0, n - r0, T): row (h - h0, i - r0) holds the weights over keys
// 0 .. start_pos+i, then zeros up to start_pos + n - 1.
struct AttnRecord {
    float* w = nullptr;  // null: record nothing
    int h0 = 0, h1 = 0, r0 = 0;
};

// Causal attention over the cache, one block per (query row, head), for a full
// cache: the query at pos = start_pos + i reads keys 0..pos, key j in cache slot
// key_slots[j] (the cache's bookkeeping, KVCache::keys_for):
// out[i, h] = softmax(q[i, h] . K[key_slots[0..pos]]^T / sqrt(hd)) V[key_slots[0..pos]].
// q from qkv (n, q_dim + 2*kv_dim); K, V from the cache (slots, kv_dim); key_slots
// (start_pos + n); out: (n, q_dim). The record's row is indexed by key j.
void attention(float* out, const float* qkv, const float* k_cache, const float* v_cache,
               const int* step, const int* key_slots, const AttnShape& s, const AttnRecord& rec,
               cudaStream_t stream);

// Dynamic shared memory the attention kernel needs for n_ctx T (and raises the
// kernel's limit when above 48 KiB). Throws kv::Error if the device cannot hold it.
void attention_prepare(int T, int hd);

}  // namespace kv::cuda
