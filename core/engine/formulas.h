// The counters' formulas (docs/design.md, "Counters"; README for the policy's rows): what a
// step must count, derived from the shape alone. The one source: the tests compare
// the engines' counters with it, the window's "formula" lines draw it, and README's
// table states it. Engines never call it; they count where the work happens.
// Notation: L layers, H heads, Hkv kv heads, p prompt tokens, step s (0 = prefill),
// m = p + s positions after the step; window W with S sinks (W = 0: every key). An MLA
// model's cache row is one latent (Hkv = 1) and its attention FLOPs are mla_read_flops.
#pragma once
#include <cstdint>

#include "core/engine/cache_policy.h"
#include "core/engine/trace.h"
#include "core/model/config.h"

namespace kv {

// Keys the query at position q reads: min(q+1, S) + #{max(S, q-W+1) <= k <= q}, or q+1.
int64_t keys_read_by(const CachePolicy& pol, int64_t q);
// Rows a cache that has seen m positions keeps: min(m, S) + the last W-1 after them, or m.
int64_t rows_kept(const CachePolicy& pol, int64_t m);

// Every counter of step s for a prompt of p tokens, cache on or off.
Counters formula_step(const ModelConfig& c, const CachePolicy& pol, int p, int s, bool cache);
// The sum over steps 0..n_steps-1 (cache_rows and cache_bytes: the last step's).
Counters formula_total(const ModelConfig& c, const CachePolicy& pol, int p, int n_steps, bool cache);

}  // namespace kv
