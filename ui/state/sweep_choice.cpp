#include "ui/state/sweep_choice.h"

#include <algorithm>

namespace kvui {

int default_sweep_max_pos(const kv::ModelConfig& c) { return c.n_ctx <= 128 ? c.n_ctx : std::min(c.n_ctx, 512); }

int default_sweep_stride(int max_pos) { return max_pos <= 128 ? 1 : std::max(1, max_pos / 32); }

kv::SweepOptions sweep_options(const kv::ModelConfig& c, int max_pos, int stride) {
    kv::SweepOptions o;
    o.max_pos = max_pos <= 0 ? default_sweep_max_pos(c) : std::clamp(max_pos, 2, c.n_ctx);
    o.stride = stride <= 0 ? default_sweep_stride(o.max_pos) : std::clamp(stride, 1, std::max(1, o.max_pos - 1));
    // Small models' steps take microseconds: one engine thread (no hand-offs to wait
    // on) and the fastest of 7 keep scheduling noise out; big ones use every core.
    const bool small = c.n_embd < 256;
    o.repeats = small ? 7 : 1;
    o.threads = small ? 1 : 0;
    o.warmup = 2;
    return o;
}

kv::WeightType other_weight_type(kv::WeightType t) {
    return t == kv::WeightType::f32 ? kv::WeightType::f16 : kv::WeightType::f32;
}

}  // namespace kvui
