// MLA's latent rows as the window shows them (ui/panels/mla_view.h).
#include "ui/panels/mla_view.h"

#include <algorithm>

#include "core/model/mla_math.h"

namespace kvui {

MlaExpanded mla_expand_row(const kv::Model& m, int layer, int head, const float* latent) {
    const kv::ModelConfig& c = m.config;
    MlaExpanded e;
    if (!c.is_mla() || layer < 0 || layer >= c.n_layer || head < 0 || head >= c.n_head) return e;
    e.layer = layer;
    e.head = head;
    e.k.resize(size_t(c.head_dim()));
    e.v.resize(size_t(c.v_head_dim()));
    kv::mla_expand_head(c, m.weights.layers[size_t(layer)], m.weights.type, latent, head, e.k.data(), e.v.data());
    return e;
}

bool shows_latent_rows(const kv::ModelConfig& c, int cache_cols) { return c.is_mla() && cache_cols == c.cache_k_width(); }

const char* mla_part_name(const kv::ModelConfig& c, int col) { return col < c.mla.kv_lora_rank ? "c_KV" : "k_R"; }

std::string mla_columns_caption(const kv::ModelConfig& c) {
    return "latent c_KV (" + std::to_string(c.mla.kv_lora_rank) + ") | k_R (" + std::to_string(c.mla.qk_rope_head_dim) +
           ", rotated)";
}

std::string mla_row_summary(const kv::ModelConfig& c) {
    return "MLA: 1 latent row of " + std::to_string(c.mla.kv_lora_rank) + " + " + std::to_string(c.mla.qk_rope_head_dim) +
           " per token and layer, read by all " + std::to_string(c.n_head) + " heads";
}

}  // namespace kvui
