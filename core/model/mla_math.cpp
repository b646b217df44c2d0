#include "core/model/mla_math.h"

#include <vector>

namespace kv {

void mla_expand_head(const ModelConfig& cfg, const LayerWeights& lw, WeightType t, const float* latent, int h,
                     float* k_out, float* v_out) {
    const int dc = cfg.mla.kv_lora_rank, dn = cfg.mla.qk_nope_head_dim, dv = cfg.mla.v_head_dim;
    const int dr = cfg.mla.qk_rope_head_dim, W = cfg.n_head * (dn + dv), c0 = h * (dn + dv);
    std::vector<float> row(size_t(t == WeightType::f32 ? 0 : W));
    for (int j = 0; j < dn; ++j) k_out[j] = 0.0f;
    for (int j = 0; j < dv; ++j) v_out[j] = 0.0f;
    for (int i = 0; i < dc; ++i) {
        const float* w = lw.kv_b_w.data() + int64_t(i) * W;
        if (t != WeightType::f32) {
            lw.kv_b_w16.widen_row(i, row.data());
            w = row.data();
        }
        for (int j = 0; j < dn; ++j) k_out[j] += latent[i] * w[c0 + j];
        for (int j = 0; j < dv; ++j) v_out[j] += latent[i] * w[c0 + dn + j];
    }
    for (int j = 0; j < dr; ++j) k_out[dn + j] = latent[dc + j];
}

int64_t mla_read_flops(const ModelConfig& cfg, bool absorbed, int64_t n, int64_t nk, int64_t scores) {
    const int64_t H = cfg.n_head, dc = cfg.mla.kv_lora_rank, dr = cfg.mla.qk_rope_head_dim;
    const int64_t dn = cfg.mla.qk_nope_head_dim, dv = cfg.mla.v_head_dim;
    if (absorbed) return 2 * n * H * (dn * dc + dc * dv) + 2 * scores * ((dc + dr) + dc);
    return 2 * nk * dc * H * (dn + dv) + 2 * scores * ((dn + dr) + dv);
}

}  // namespace kv
