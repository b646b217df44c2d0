// The trainer's optimiser: the learning-rate schedule (linear warmup, then cosine
// decay to a floor) and AdamW with decoupled weight decay on the matrices, after
// clipping the global gradient norm. Both work on the flat parameter buffer whose
// tensors param_layout() lists (train_params.cpp).
#include <algorithm>
#include <cmath>

#include "core/train/train.h"

namespace kv {

float lr_schedule(int step, int steps, float lr_max, int warmup, float min_frac) {
    if (step < warmup) return lr_max * float(step + 1) / float(warmup);
    const int decay_steps = std::max(1, steps - warmup);
    const float frac = std::min(1.0f, float(step - warmup) / float(decay_steps));
    const float cosv = 0.5f * (1.0f + std::cos(float(M_PI) * frac));
    return lr_max * (min_frac + (1.0f - min_frac) * cosv);
}

float AdamW::update(std::span<float> params, std::span<const float> grads,
                    const std::vector<ParamTensor>& layout, float lr) {
    if (m.size() != params.size()) {
        m.assign(params.size(), 0.f);
        v.assign(params.size(), 0.f);
        t = 0;
    }
    double sq = 0;
    for (float g : grads) sq += double(g) * g;
    const float norm = float(std::sqrt(sq));
    const float clip = (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
    ++t;
    const float bc1 = 1.0f - std::pow(beta1, float(t)), bc2 = 1.0f - std::pow(beta2, float(t));
    for (const auto& pt : layout) {
        const float wd = pt.decay ? weight_decay : 0.f;
        for (int64_t i = pt.offset; i < pt.offset + pt.size(); ++i) {
            const float g = grads[i] * clip;
            m[i] = beta1 * m[i] + (1 - beta1) * g;
            v[i] = beta2 * v[i] + (1 - beta2) * g * g;
            const float mh = m[i] / bc1, vh = v[i] / bc2;
            params[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * params[i]);
        }
    }
    return norm;
}

}  // namespace kv
