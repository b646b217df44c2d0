// MLA in the window (DeepSeek-V2/V3's multi-head latent attention, core/model/mla_math.h),
// computed without a window so the tests can check it: what a cached latent row
// [c_KV | k_R] holds, and the K and V it expands to for one head. Notation
// (core/model/config.h): d_c kv_lora_rank, d_R qk_rope_head_dim, d_n qk_nope_head_dim,
// d_v v_head_dim, H heads.
#pragma once
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/model/model_io.h"

namespace kvui {

// Head `head`'s key and value from one latent row of `layer` (d_c + d_R values):
// k = [c_KV W_UK_h | k_R] (d_n + d_R), v = c_KV W_UV_h (d_v); kv::mla_expand_head on
// the model's weights in their held type. What the expand read computes for every
// cached row at every step, and what the absorbed read never forms.
struct MlaExpanded {
    int layer = -1, head = -1;
    std::vector<float> k;  // (d_n + d_R)
    std::vector<float> v;  // (d_v)
};
MlaExpanded mla_expand_row(const kv::Model& m, int layer, int head, const float* latent);

// Whether a view's cache rows are m's latent rows (an MLA model, d_c + d_R columns).
bool shows_latent_rows(const kv::ModelConfig& c, int cache_cols);
// The part of a latent row that column col is in: "c_KV" (col < d_c) or "k_R".
const char* mla_part_name(const kv::ModelConfig& c, int col);
// The caption of the latent columns: "latent c_KV (24) | k_R (8, rotated)".
std::string mla_columns_caption(const kv::ModelConfig& c);
// "MLA: 1 latent row of 24 + 8 per token and layer, read by all 4 heads".
std::string mla_row_summary(const kv::ModelConfig& c);

}  // namespace kvui
