// MLA's per-row formulas (DeepSeek-V2, section 2.1; transformers' DeepseekV3Attention),
// shared by the CPU engine's trace, the window's cache panel and the lesson. Notation
// (config.h): d_c kv_lora_rank, d_R qk_rope_head_dim, d_n qk_nope_head_dim, d_v
// v_head_dim, H heads. One cached latent row is [c_KV (d_c) | k_R (d_R)]; kv_b_proj
// maps c_KV to every head's [k_nope (d_n) | v (d_v)] (Weights::kv_b_w, (d_c, H*(d_n+d_v))).
#pragma once
#include "core/model/config.h"
#include "core/model/weights.h"

namespace kv {

// Head h's key and value from one latent row (DeepSeek-V2 eqs. 12-16):
//   k = [c_KV W_UK_h | k_R]  (d_n + d_R values, into k_out)
//   v =  c_KV W_UV_h         (d_v values, into v_out)
// with W_UK_h, W_UV_h head h's columns of kv_b_proj^T; f32 or 16-bit weights (widened).
void mla_expand_head(const ModelConfig& cfg, const LayerWeights& lw, WeightType t, const float* latent, int h,
                     float* k_out, float* v_out);

// Multiply-adds (x2: FLOPs) of reading nk cached latent rows for n queries in one layer:
//   expand    kv_b_proj on the nk rows, then attention in the heads' widths;
//   absorbed  W_UK folded into each query and W_UV into each output (per query and
//             head), attention in the latent's width.
// `scores` is the number of (query, key, head) scores the queries read.
int64_t mla_read_flops(const ModelConfig& cfg, bool absorbed, int64_t n, int64_t nk, int64_t scores);

}  // namespace kv
