// Weights of a GPT-2-family model, read-only after load. Linear layers keep the
// Hugging Face Conv1D orientation (in, out), so y = x * W + b with x a row of
// activations; this is also how they are stored in model.safetensors.
#pragma once
#include <cstdint>
#include <vector>

#include "core/model/config.h"
#include "core/tensor.h"

namespace kv {

struct LayerWeights {
    RowVec ln_1_w, ln_1_b;      // (C)
    RowMat attn_w;              // (C, C + 2*kv_dim)  c_attn: [q | k | v] columns
    RowVec attn_b;              // (C + 2*kv_dim)
    RowMat attn_proj_w;         // (C, C)             c_proj
    RowVec attn_proj_b;         // (C)
    RowVec ln_2_w, ln_2_b;      // (C)
    RowMat fc_w;                // (C, 4C)            mlp.c_fc
    RowVec fc_b;                // (4C)
    RowMat mlp_proj_w;          // (4C, C)            mlp.c_proj
    RowVec mlp_proj_b;          // (C)
};

struct Weights {
    RowMat wte;                 // (V, C) token embeddings (and the head when tied)
    RowMat wpe;                 // (T, C) position embeddings
    std::vector<LayerWeights> layers;  // L
    RowVec ln_f_w, ln_f_b;      // (C)
    RowMat lm_head;             // (V, C) only when !config.tied_head, else empty

    const RowMat& head(const ModelConfig& cfg) const { return cfg.tied_head ? wte : lm_head; }
};

// Allocates every tensor with the config's shapes (zero-filled).
Weights allocate_weights(const ModelConfig& cfg);

// GPT-2 style init, deterministic for a seed: N(0, 0.02) matrices, projections into
// the residual stream scaled by 1/sqrt(2L), LayerNorm weights 1, biases 0.
Weights random_weights(const ModelConfig& cfg, uint64_t seed);

// Throws kv::Error naming `where` and the tensor if a shape disagrees with cfg or
// a value is NaN/Inf.
void check_weights(const ModelConfig& cfg, const Weights& w, const std::string& where);

}  // namespace kv
