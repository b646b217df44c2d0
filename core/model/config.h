// ModelConfig: the shape of a model of either family kvscope knows:
//   gpt2   learned positions, pre-LayerNorm, GELU MLP (4C wide), tied or untied head;
//   llama  RoPE, RMSNorm, SwiGLU MLP (F wide), grouped-query heads, optional q/k/v
//          biases (Qwen2): Hugging Face LlamaForCausalLM, Qwen2ForCausalLM and
//          MistralForCausalLM configs.
// Notation used across core/:
//   V vocab_size, T n_ctx, C n_embd, L n_layer, H n_head, Hkv n_kv_head,
//   hd head_dim (C/H unless the config gives it), kv_dim = Hkv*hd, F n_ff.
// MLA (DeepSeek-V2/V3's multi-head latent attention, a Llama-family model whose mla
// ranks are set): d_c kv_lora_rank, d_R qk_rope_head_dim, d_n qk_nope_head_dim, d_v
// v_head_dim, d_q q_lora_rank (0: q_proj); hd = d_n + d_R (q and k of a head).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kv {

// The kv head query head h reads: H / Hkv query heads share each kv head.
inline int kv_head_of(int h, int n_head, int n_kv_head) { return h / (n_head / n_kv_head); }

enum class ModelFamily { gpt2, llama };

// Rotary position embedding of the Llama family, as transformers' modeling_rope_utils
// defines it: rope_type "default" (rope_theta alone) or "llama3" (Llama 3.1's scaling).
struct RopeConfig {
    enum class Type { standard, llama3 };  // transformers' "default" and "llama3"
    Type type = Type::standard;
    double theta = 10000.0;              // rope_theta
    double factor = 1.0;                 // llama3: factor
    double low_freq_factor = 1.0;        // llama3: low_freq_factor
    double high_freq_factor = 4.0;       // llama3: high_freq_factor
    int original_max_position_embeddings = 0;  // llama3: the context the model was trained for
    bool operator==(const RopeConfig&) const = default;
};

// The rotation rate of each pair (i, i + hd/2) of a query or key row: hd/2 values,
// inv_freq[i] = theta^(-2i/hd), rescaled for "llama3" exactly as transformers'
// _compute_llama3_parameters does (wavelengths longer than
// original_max_position_embeddings / low_freq_factor divided by factor, shorter than
// .../high_freq_factor kept, the band between blended). Computed in double, returned
// rounded to float (transformers computes in float32: equal to within 1 ulp).
std::vector<float> rope_inv_freq(int head_dim, const RopeConfig& rope);

// DeepseekV3's attention (transformers' modeling_deepseek_v3.py): each token caches one
// latent c_KV = RMSNorm(W_DKV h) (d_c values) and one RoPE key k_R (d_R values) shared by
// every head; a head's key is [W_UK c_KV | k_R] and its value W_UV c_KV (kv_b_proj).
// Zero ranks: not MLA.
struct MlaConfig {
    int kv_lora_rank = 0;      // d_c
    int q_lora_rank = 0;       // d_q: queries through q_a_proj, q_a_layernorm, q_b_proj; 0: q_proj
    int qk_rope_head_dim = 0;  // d_R
    int qk_nope_head_dim = 0;  // d_n
    int v_head_dim = 0;        // d_v
    bool rope_interleave = true;  // RoPE pairs (2i, 2i+1), de-interleaved before rotate_half
    bool operator==(const MlaConfig&) const = default;
};

struct ModelConfig {
    ModelFamily family = ModelFamily::gpt2;
    int vocab_size = 0;
    int n_ctx = 0;        // T: positions the model knows (wpe rows; max_position_embeddings)
    int n_embd = 0;       // C
    int n_layer = 0;      // L
    int n_head = 0;       // H
    int n_kv_head = 0;    // Hkv (= H for GPT-2; fewer for grouped-query attention)
    float layer_norm_epsilon = 1e-5f;  // the norm's epsilon: LayerNorm's, or RMSNorm's (rms_norm_eps)
    bool tied_head = true;  // lm_head shares wte (embed_tokens)
    // Llama family only (left at these values for GPT-2):
    int n_ff = 0;              // F: the SwiGLU MLP's width (intermediate_size)
    int explicit_head_dim = 0; // hd when config.json gives head_dim; 0: C / H
    bool qkv_bias = false;     // q/k/v projections have biases (Qwen2; Llama's attention_bias)
    bool o_bias = false;       // o_proj has a bias (Llama's attention_bias)
    RopeConfig rope;
    int sliding_window = 0;    // Mistral's sliding_window (0: none); recorded, not applied yet
    // MLA (a Llama-family model with a latent cache; n_kv_head is then 1: one cached
    // row per token and layer, shared by every head).
    MlaConfig mla;

    bool is_llama() const { return family == ModelFamily::llama; }
    bool is_mla() const { return mla.kv_lora_rank > 0; }
    int head_dim() const {
        if (is_mla()) return mla.qk_nope_head_dim + mla.qk_rope_head_dim;
        return explicit_head_dim > 0 ? explicit_head_dim : n_embd / n_head;
    }
    // A head's value width: hd, or d_v for MLA.
    int v_head_dim() const { return is_mla() ? mla.v_head_dim : head_dim(); }
    // The width RoPE turns in a head's q and k: hd, or d_R for MLA.
    int rope_dim() const { return is_mla() ? mla.qk_rope_head_dim : head_dim(); }
    int q_dim() const { return n_head * head_dim(); }  // = C for GPT-2
    int o_dim() const { return n_head * v_head_dim(); }  // the attention output's width (o_proj's input)
    int kv_dim() const { return n_kv_head * head_dim(); }
    // The first product's width (c_attn; attn_w): [q | k | v], or for MLA
    // [q (q_proj) or q's latent (q_a_proj) | c_KV before its norm | k_R before RoPE].
    int qkv_dim() const {
        if (is_mla()) return (mla.q_lora_rank > 0 ? mla.q_lora_rank : q_dim()) + mla.kv_lora_rank + mla.qk_rope_head_dim;
        return q_dim() + 2 * kv_dim();
    }
    // One cached row, per layer and kv head: a K part and a V part (hd each), or MLA's
    // latent row [c_KV | k_R] (d_c + d_R) as its K part and no V part. The one
    // definition of what a cache row holds: storage, cache_bytes and the panels use it.
    int cache_k_width() const { return is_mla() ? mla.kv_lora_rank + mla.qk_rope_head_dim : head_dim(); }
    int cache_v_width() const { return is_mla() ? 0 : head_dim(); }
    // Values one position stores per layer: Hkv * (K part + V part).
    int cache_row_values() const { return n_kv_head * (cache_k_width() + cache_v_width()); }
    // The MLP's first product's width: 4C (c_fc) or 2F ([gate | up], side by side).
    int fc_dim() const { return is_llama() ? 2 * n_ff : 4 * n_embd; }
    // The width entering the MLP's last product: 4C (gelu(c_fc)) or F (silu(gate) * up).
    int ff_dim() const { return is_llama() ? n_ff : 4 * n_embd; }
    int kv_head_of(int h) const { return kv::kv_head_of(h, n_head, n_kv_head); }
    // Number of floats in all weights (wte counted once when tied).
    int64_t n_params() const;
    // Non-embedding parameters (what a decode step must stream): layers + ln_f.
    int64_t n_params_nonembedding() const;
    // Throws kv::Error naming `where` when the shape is impossible.
    void validate(const std::string& where) const;
    void validate_llama(const std::string& where) const;  // the Llama-only fields
    void validate_mla(const std::string& where) const;    // the MLA fields
    bool operator==(const ModelConfig&) const = default;

    static ModelConfig tiny();        // the shape of random:tiny
    static ModelConfig gpt2_124m();   // 50257 vocab, 1024 ctx, 768 wide, 12 layers, 12 heads
    static ModelConfig gpt2_355m();   // 50257 vocab, 1024 ctx, 1024 wide, 24 layers, 16 heads (GPT-2 medium)
    static ModelConfig llama_tiny();    // random:llama-tiny: 96 vocab, 64 wide, 2 layers, 4 heads, 2 kv heads
    static ModelConfig smollm2_135m();  // HuggingFaceTB/SmolLM2-135M: 576 wide, 30 layers, 9/3 heads, tied
    static ModelConfig qwen25_05b();    // Qwen/Qwen2.5-0.5B: 896 wide, 24 layers, 14/2 heads, q/k/v biases
    static ModelConfig mla_tiny();      // random:mla-tiny: llama_tiny's size with MLA, d_c 24, d_R 8, d_n 16, d_v 16
    static ModelConfig mla_tiny_q();    // random:mla-tiny-q: mla_tiny with queries through a latent (d_q 32)
    static ModelConfig llama3_8b();     // meta-llama/Meta-Llama-3-8B: 4096 wide, 32 layers, 32/8 heads, hd 128
    // deepseek-ai/DeepSeek-V3's attention and cache: 7168 wide, 61 layers, 128 heads, d_c 512, d_R 64,
    // d_n 128, d_v 128, d_q 1536; every layer's MLP as the dense one of its first layers (no experts).
    static ModelConfig deepseek_v3();
};

// True for the config.json model_type values of the Llama family: "llama", "qwen2",
// "mistral", and "deepseek_v3" (MLA).
bool is_llama_model_type(const std::string& model_type);
// config.json of LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM, as
// transformers 4.x (rope_theta, rope_scaling) or 5.x (rope_parameters) writes it.
// Throws kv::Error naming `path` for a missing or bad key and, with one line, for
// what kvscope does not support (another rope type, another activation, MLP biases).
// DeepseekV3ForCausalLM (model_type "deepseek_v3") is read too, dense MLPs only: a
// mixture of experts, yarn RoPE or attention biases are refused with one line.
ModelConfig parse_llama_config(const std::string& json_text, const std::string& path);

}  // namespace kv
