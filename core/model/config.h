// ModelConfig: the shape of a GPT-2-family model (learned positions, pre-LayerNorm,
// GELU MLP, tied or untied head). Notation used across core/:
//   V vocab_size, T n_ctx, C n_embd, L n_layer, H n_head, Hkv n_kv_head,
//   hd head_dim = C/H, kv_dim = Hkv*hd.
#pragma once
#include <cstdint>
#include <string>

namespace kv {

// The kv head query head h reads: H / Hkv query heads share each kv head.
inline int kv_head_of(int h, int n_head, int n_kv_head) { return h / (n_head / n_kv_head); }

struct ModelConfig {
    int vocab_size = 0;
    int n_ctx = 0;        // T: positions the model knows (wpe rows)
    int n_embd = 0;       // C
    int n_layer = 0;      // L
    int n_head = 0;       // H
    int n_kv_head = 0;    // Hkv (= H for GPT-2; fewer for grouped-query attention)
    float layer_norm_epsilon = 1e-5f;
    bool tied_head = true;  // lm_head shares wte

    int head_dim() const { return n_embd / n_head; }
    int kv_dim() const { return n_kv_head * head_dim(); }
    int qkv_dim() const { return n_embd + 2 * kv_dim(); }  // c_attn output width
    int kv_head_of(int h) const { return kv::kv_head_of(h, n_head, n_kv_head); }
    // Number of floats in all weights (wte counted once when tied).
    int64_t n_params() const;
    // Non-embedding parameters (what a decode step must stream): layers + ln_f.
    int64_t n_params_nonembedding() const;
    // Throws kv::Error naming `where` when the shape is impossible.
    void validate(const std::string& where) const;
    bool operator==(const ModelConfig&) const = default;

    static ModelConfig tiny();        // the shape of random:tiny
    static ModelConfig gpt2_124m();   // 50257 vocab, 1024 ctx, 768 wide, 12 layers, 12 heads
    static ModelConfig gpt2_355m();   // 50257 vocab, 1024 ctx, 1024 wide, 24 layers, 16 heads (GPT-2 medium)
};

}  // namespace kv
