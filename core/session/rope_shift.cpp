#include "core/session/rope_shift.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/llama_math.h"
#include "core/session/session.h"

namespace kv {

namespace {

// Every held key of every layer turned by `delta` positions (negative: back), V kept.
void turn_cached_keys(KVCache& cache, const ModelConfig& cfg, int n_pos, int delta) {
    const int hd = cfg.head_dim(), half = hd / 2, Hkv = cfg.n_kv_head, kvd = cfg.kv_dim();
    const std::vector<float> inv_freq = rope_inv_freq(hd, cfg.rope);
    std::vector<float> cs(static_cast<size_t>(hd));
    rope_angles(delta, inv_freq.data(), half, cs.data(), cs.data() + half);
    std::vector<int> slots, pos;
    cache.keys_for(n_pos - 1, n_pos - 1, slots, pos);  // a full cache: every position 0..n_pos-1
    std::vector<RowMat> k(static_cast<size_t>(Hkv)), v(static_cast<size_t>(Hkv));
    std::vector<float> k_row(static_cast<size_t>(kvd)), v_row(static_cast<size_t>(kvd));
    for (int l = 0; l < cfg.n_layer; ++l) {
        for (int g = 0; g < Hkv; ++g) cache.read_rows(l, g, slots, k[size_t(g)], v[size_t(g)]);
        for (size_t s = 0; s < slots.size(); ++s) {
            for (int g = 0; g < Hkv; ++g) {
                std::copy_n(k[size_t(g)].row(Eigen::Index(s)).data(), hd, k_row.data() + g * hd);
                std::copy_n(v[size_t(g)].row(Eigen::Index(s)).data(), hd, v_row.data() + g * hd);
                rope_rotate(k_row.data() + g * hd, hd, cs.data(), cs.data() + half);
            }
            cache.write(l, slots[s], k_row.data(), v_row.data());
        }
    }
}

}  // namespace

RopeShiftResult rope_shift_demo(const Model& model, std::span<const int> ids, int shift) {
    const ModelConfig& cfg = model.config;
    if (!cfg.is_llama())
        throw Error("the RoPE demonstration needs a RoPE model (the Llama family); " + model.name +
                    " adds learned positions to its input instead");
    if (cfg.is_mla())
        throw Error("the RoPE demonstration turns cached K rows; " + model.name +
                    " caches MLA latent rows (its k_R part alone is turned)");
    if (ids.size() < 2) throw Error("the RoPE demonstration needs a prompt of at least two tokens");
    const int n = int(ids.size());
    auto engine = make_cpu_engine(model);
    RopeShiftResult r;
    r.shift = shift;
    for (bool stale : {false, true}) {
        auto cache = engine->make_cache({});
        StepTrace tr;
        ForwardRequest pre;
        pre.ids = ids.first(size_t(n - 1));
        pre.trace_opts.record = false;
        engine->forward(pre, *cache, tr);
        if (stale) turn_cached_keys(*cache, cfg, n - 1, -shift);
        ForwardRequest step;
        step.ids = ids.subspan(size_t(n - 1), 1);
        step.start_pos = n - 1;
        step.trace_opts.record = false;
        engine->forward(step, *cache, tr);
        (stale ? r.stale : r.correct) = tr.logits;
    }
    for (size_t i = 0; i < r.correct.size(); ++i)
        r.max_abs_diff = std::max(r.max_abs_diff, std::abs(r.stale[i] - r.correct[i]));
    const SamplingOptions greedy, softmax{.temperature = 1.f};  // first maximum; plain softmax
    r.top_correct = sample_token(r.correct, greedy, 0);
    r.top_stale = sample_token(r.stale, greedy, 0);
    r.p_correct_top = float(token_probs(r.correct, softmax)[size_t(r.top_correct)]);
    r.p_stale_of_correct_top = float(token_probs(r.stale, softmax)[size_t(r.top_correct)]);
    return r;
}

}  // namespace kv
