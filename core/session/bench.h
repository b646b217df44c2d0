// Benchmarks of the engine that the CLI (`kvscope-cli bench --sweep`) and the
// window's Scaling panel share. A sweep measures the wall time of one step at each
// position: with the cache, the decode step of the token at `pos` (pos cache rows
// read, one row computed); without it, the forward of all pos+1 tokens from 0.
// Token ids are fixed pseudo-random ids, so random models (no tokenizer) work.
// Run it on a worker thread: it creates its own engine and only reads the model.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/model/model_io.h"

namespace kv {

struct SweepOptions {
    std::string backend = "cpu";
    int threads = 0;      // engine threads (0 = one per hardware thread)
    int max_pos = 0;      // measure positions [0, max_pos); 0 = the model's n_ctx
    int stride = 1;       // measure every stride-th position (the last one always)
    bool cached = true;   // measure the cached decode step
    bool uncached = true; // measure the full recompute
    int repeats = 1;      // time each point this many times, keep the fastest
    int warmup = 2;       // untimed forwards before measuring
    uint64_t seed = 0;    // of the token ids
    CachePolicy policy;   // the cache's window, sinks and dtype
};

struct SweepPoint {
    int pos = 0;
    double ms_cached = -1.0;    // -1: not measured
    double ms_uncached = -1.0;  // -1: not measured
};

// The positions a sweep measures, in order.
std::vector<int> sweep_positions(const ModelConfig& cfg, const SweepOptions& opt);

// Measures every position of sweep_positions(). on_progress (may be empty) is called
// with the fraction done (work-weighted: an uncached step at pos counts pos+1) after
// every measured point and finally with 1; when it returns false the sweep stops and
// returns the points finished so far (a point missing a mode it was asked for is
// dropped). Throws kv::Error naming the option when an option is out of range.
std::vector<SweepPoint> run_sweep(const Model& model, const SweepOptions& opt,
                                  const std::function<bool(float progress)>& on_progress = {});

// Batched decode (serving; `kvscope-cli bench --batch`): `size` sequences with prompts
// of prompt_len pseudo-random ids (seed + i) are prefilled into one paged pool (blocks
// of 16), then decode together, one token each a step, through Engine::forward_batch:
// `warmup` untimed steps, then `steps` timed ones. Each step feeds every sequence its
// greedy token. Throws kv::Error naming the option when the positions exceed n_ctx.
struct BatchBenchOptions {
    std::string backend = "cpu";
    int threads = 0;
    int prompt_len = 16, steps = 32, warmup = 2;
    uint64_t seed = 0;
    CachePolicy policy;
};
struct BatchPoint {
    int size = 0;
    double ms_per_step = 0.0;   // mean over the timed steps
    double tokens_per_s = 0.0;  // size tokens a step: aggregate over the batch
};
BatchPoint measure_batch(const Model& model, const BatchBenchOptions& opt, int size);

// The fixed pseudo-random token ids benchmarks feed: n ids in [0, vocab).
std::vector<int> bench_ids(const ModelConfig& cfg, int n, uint64_t seed);

// Bytes one decode step must stream from weights: every layer, ln_f and the head
// (wte when tied). Excludes wpe/wte embedding rows, which are read one row a token.
// The matrices count weight_type_bytes(t) each; biases and LayerNorms 4 bytes.
int64_t decode_weight_bytes(const ModelConfig& cfg, WeightType t = WeightType::f32);

// Read bandwidth of this machine in GB/s: `threads` threads sum a buffer of `bytes`
// (allocated and touched first), the fastest of `repeats` passes. The ceiling a
// cached decode step can reach is about this / decode_weight_bytes() steps per second.
double measure_read_bandwidth(int threads, int64_t bytes = int64_t(512) << 20, int repeats = 5);

// This process's resident size now (VmRSS) and its peak so far (VmHWM), in bytes,
// from /proc/self/status; -1 where the system does not say.
struct ResidentSize {
    int64_t rss = -1, peak = -1;
};
ResidentSize resident_size();

}  // namespace kv
