#include "core/engine/formulas.h"

#include <algorithm>

#include "core/engine/kv_cache.h"
#include "core/model/mla_math.h"

namespace kv {

int64_t keys_read_by(const CachePolicy& pol, int64_t q) {
    if (!pol.windowed()) return q + 1;
    const int64_t S = pol.sinks, W = pol.window;
    return std::min(q + 1, S) + std::max<int64_t>(0, q - std::max(S, q - W + 1) + 1);
}

int64_t rows_kept(const CachePolicy& pol, int64_t m) {
    if (!pol.windowed()) return m;
    const int64_t S = pol.sinks, W = pol.window;
    // Positions k < m with k < S or k > m - W.
    return std::min(m, S) + std::max<int64_t>(0, m - std::max(S, m - W + 1));
}

Counters formula_step(const ModelConfig& c, const CachePolicy& pol, int p, int s, bool cache) {
    const int64_t L = c.n_layer, H = c.n_head, Hkv = c.n_kv_head, hd = c.head_dim(), C = c.n_embd;
    const int64_t m = int64_t(p) + s;                            // positions after the step
    const int64_t n = (s == 0 || !cache) ? m : 1;                // tokens processed
    const int64_t q0 = m - n;                                    // first query position
    Counters e;
    e.tokens_processed = n;
    e.kv_rows_computed = L * Hkv * n;
    e.kv_rows_reused = (cache && s >= 1) ? L * Hkv * (keys_read_by(pol, m - 1) - 1) : 0;
    e.kv_rows_recomputed = (!cache && s >= 1) ? L * Hkv * (m - 1) : 0;
    int64_t keys = 0;
    for (int64_t q = q0; q < m; ++q) keys += keys_read_by(pol, q);
    e.attn_scores = L * H * keys;
    // Held before the step, plus the n placed, less what the cache keeps.
    const int64_t held = (q0 == 0 ? 0 : rows_kept(pol, q0)) + n;
    e.kv_rows_evicted = L * Hkv * (held - rows_kept(pol, m));
    e.cache_rows = rows_kept(pol, m);
    e.cache_bytes = cache_bytes_for(c, pol.dtype, e.cache_rows);
    // FLOPs: projections for n rows in every layer (qkv, attention out, the MLP's two
    // (GPT-2) or three (gate, up, down) products), q.k and weights.v for every score,
    // the head for the last row.
    // MLA: q_b_proj too, and reading the latents (mla_read_flops) in place of q.k and weights.v.
    int64_t per_row = C * c.qkv_dim() + int64_t(c.o_dim()) * C + C * c.fc_dim() + int64_t(c.ff_dim()) * C;
    int64_t attn = 4 * hd * e.attn_scores;
    if (c.is_mla()) {
        per_row += int64_t(c.mla.q_lora_rank) * c.q_dim();
        // The latents expand projects: every key some query of the step reads, i.e. the
        // rows held before it (all read by its first query) and its own n.
        attn = L * mla_read_flops(c, pol.mla == MlaRead::absorbed, n, held, H * keys);
    }
    e.flops = L * 2 * n * per_row + attn + 2 * C * c.vocab_size;
    return e;
}

Counters formula_total(const ModelConfig& c, const CachePolicy& pol, int p, int n_steps, bool cache) {
    Counters t;
    for (int s = 0; s < n_steps; ++s) t += formula_step(c, pol, p, s, cache);
    return t;
}

}  // namespace kv
