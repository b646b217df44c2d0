// Weights of a model of either family, read-only after load. Linear layers are held
// in (in, out) orientation, so y = x * W + b with x a row of activations: GPT-2's
// Conv1D stores them so in model.safetensors; the Llama family's nn.Linear stores
// (out, in), and loading transposes them (model_io.cpp, "Llama-family tensors").
// The Llama family fills the same fields (one forward reads both):
//   ln_1_w  input_layernorm          attn_w  [q_proj | k_proj | v_proj]^T (+ biases)
//   ln_2_w  post_attention_layernorm attn_proj_w  o_proj^T
//   fc_w    [gate_proj | up_proj]^T  mlp_proj_w   down_proj^T
//   ln_f_w  model.norm               wte embed_tokens, lm_head lm_head
// An MLA model (DeepseekV3) fills them as
//   attn_w  [q_proj | kv_a_proj_with_mqa]^T, or [q_a_proj | kv_a_proj_with_mqa]^T
//           (C, qkv_dim): h's one product into [q or q's latent | c_KV | k_R]
//   attn_proj_w  o_proj^T (H*d_v, C)
// and its own fields below (q_a_layernorm, q_b_proj, kv_a_layernorm, kv_b_proj).
// with no LayerNorm biases and no wpe (both empty), and the biases GPT-2 has and the
// Llama family lacks (attn_b without q/k/v biases, attn_proj_b, fc_b, mlp_proj_b)
// held as zeros, so a product's bias add is the same code for both.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

// The type the weight matrices are held in (linear layers, wte and lm_head; biases,
// LayerNorms and wpe stay f32). Products always accumulate in f32.
enum class WeightType { f32, f16, bf16 };
const char* weight_type_name(WeightType t);  // "f32", "f16", "bf16"
std::optional<WeightType> parse_weight_type(std::string_view s);
inline int weight_type_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

// A (rows, cols) row-major matrix of 16-bit floats (f16 or bf16 bit patterns). The
// values are owned, or a view into a mapped safetensors file that `owner` keeps alive.
struct Mat16 {
    WeightType type = WeightType::f16;
    int64_t rows = 0, cols = 0;
    const uint16_t* data = nullptr;
    std::shared_ptr<const void> owner;

    int64_t size() const { return rows * cols; }
    const uint16_t* row(int64_t r) const { return data + r * cols; }
    // Rounds src (rows x cols floats) to `type`, round to nearest even. Throws
    // kv::Error naming tensor `name` when a value overflows f16 (|x| >= 65520).
    static Mat16 round(const float* src, int64_t rows, int64_t cols, WeightType type, const std::string& name);
    // Widens row r into out[0..cols).
    void widen_row(int64_t r, float* out) const;
    // The whole matrix widened to f32.
    void widen(float* out) const;
};

// Widens n 16-bit values of type t (f16 or bf16) to f32.
void widen_16(WeightType t, const uint16_t* src, float* dst, int64_t n);
// Rounds one float to the 16-bit type t and back (what holding it in t keeps).
float round_to(WeightType t, float v);

// When Weights::type is f16/bf16 each weight matrix lives in its *16 twin and the
// f32 RowMat is empty (0 x 0): the memory is the 16-bit copy only.
// Qd = q_dim (C for GPT-2), Q = qkv_dim = Qd + 2*kv_dim, FC = fc_dim (4C or 2F),
// FF = ff_dim (4C or F), O = o_dim (Qd; H*d_v for MLA); LayerNorm biases are (0) in the
// Llama family.
struct LayerWeights {
    RowVec ln_1_w, ln_1_b;      // (C)
    RowMat attn_w;              // (C, Q)    c_attn: [q | k | v] columns
    RowVec attn_b;              // (Q)
    RowMat attn_proj_w;         // (O, C)    c_proj
    RowVec attn_proj_b;         // (C)
    RowVec ln_2_w, ln_2_b;      // (C)
    RowMat fc_w;                // (C, FC)   mlp.c_fc
    RowVec fc_b;                // (FC)
    RowMat mlp_proj_w;          // (FF, C)   mlp.c_proj
    RowVec mlp_proj_b;          // (C)
    Mat16 attn_w16, attn_proj_w16, fc_w16, mlp_proj_w16;  // f16/bf16 weights
    // MLA only ((0) / 0 x 0 otherwise):
    RowVec q_a_norm_w;          // (d_q)     q_a_layernorm (when q_lora_rank > 0)
    RowMat q_b_w;               // (d_q, Qd) q_b_proj^T (when q_lora_rank > 0)
    RowVec kv_norm_w;           // (d_c)     kv_a_layernorm
    RowMat kv_b_w;              // (d_c, H*(d_n + d_v)) kv_b_proj^T: head h's columns [W_UK | W_UV]
    Mat16 q_b_w16, kv_b_w16;
};

struct Weights {
    RowMat wte;                 // (V, C) token embeddings (and the head when tied)
    RowMat wpe;                 // (T, C) position embeddings (GPT-2; (0, C) for the Llama family)
    std::vector<LayerWeights> layers;  // L
    RowVec ln_f_w, ln_f_b;      // (C) (ln_f_b: (0) for the Llama family)
    RowMat lm_head;             // (V, C) only when !config.tied_head, else empty
    Mat16 wte16, lm_head16;     // f16/bf16 weights
    WeightType type = WeightType::f32;

    const RowMat& head(const ModelConfig& cfg) const { return cfg.tied_head ? wte : lm_head; }
    const Mat16& head16(const ModelConfig& cfg) const { return cfg.tied_head ? wte16 : lm_head16; }
    // Token id's embedding row, widened to f32 when held in 16 bits.
    void token_row(int id, float* out) const;
    // Bytes the weights hold in memory (all tensors, in their held types).
    int64_t bytes() const;
    // Throws kv::Error naming `what` unless the matrices are held in f32 (for code
    // that reads the f32 matrices directly: the trainer, the CUDA engine, writing).
    void require_f32(const std::string& what) const;
};

// Holds w's matrices in type t: rounds f32 to f16/bf16 (freeing the f32 copy),
// widens to f32, or re-rounds between the 16-bit types. Throws kv::Error naming the
// tensor when a value overflows f16 (|x| >= 65520).
void set_weight_type(Weights& w, const ModelConfig& cfg, WeightType t);

// Allocates every tensor with the config's shapes (zero-filled). With held f16/bf16
// the matrices are left empty (to be filled as Mat16) and type is set to `held`.
Weights allocate_weights(const ModelConfig& cfg, WeightType held = WeightType::f32);

// Every weight matrix (wte, the four of each layer, lm_head when untied, then MLA's
// q_b_proj and kv_b_proj of each layer) with its 16-bit twin and its tensor name
// (GPT-2 names; for the Llama family the Hugging Face names of what it holds, e.g.
// "model.layers.0.mlp.{gate,up}_proj.weight").
struct MatrixRef {
    RowMat* f32;
    Mat16* h16;
    std::string name;
};
std::vector<MatrixRef> weight_matrices(Weights& w, const ModelConfig& cfg);

// GPT-2 style init, deterministic for a seed: N(0, 0.02) matrices, projections into
// the residual stream scaled by 1/sqrt(2L), LayerNorm (RMSNorm) weights 1, GPT-2's
// attention and c_fc biases N(0, 0.02), the Llama family's q/k/v (and o) biases
// N(0, 0.02) when the config has them.
// part_done (optional, for progress) is called with 0 once wte and wpe are made, then
// with l + 1 once layer l is; it may throw to stop (the weights are freed).
Weights random_weights(const ModelConfig& cfg, uint64_t seed, const std::function<void(int)>& part_done = {});

// Throws kv::Error naming `where` and the tensor if a shape disagrees with cfg or
// a value is NaN/Inf.
void check_weights(const ModelConfig& cfg, const Weights& w, const std::string& where);

}  // namespace kv
