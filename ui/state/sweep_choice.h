// The Scaling panel's choices turned into a sweep's options (pure functions: the
// panel shows what a sweep would measure, the SweepRunner in ui/runtime runs it).
#pragma once
#include "core/model/config.h"
#include "core/model/weights.h"
#include "core/session/bench.h"

namespace kvui {

// Defaults: a small context whole, every position; a big one up to 512 (GPT-2 124M
// on 2 cores: about 40 s), about 32 points.
int default_sweep_max_pos(const kv::ModelConfig& c);
int default_sweep_stride(int max_pos);
// The overlay's type: f16 for f32 weights, f32 for 16-bit ones.
kv::WeightType other_weight_type(kv::WeightType t);
// The options the panel's choices give (max_pos 0, stride 0: the defaults),
// clamped to the model; repeats more for small (noisy, microsecond) models.
kv::SweepOptions sweep_options(const kv::ModelConfig& c, int max_pos, int stride);

}  // namespace kvui
