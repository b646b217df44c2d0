// The contiguous baseline (docs/design.md, "Serving: the block pool and the scheduler"):
// what a server without paging spends on the same requests. Each sequence (every fork
// of a request) reserves one contiguous range of prompt + max new slots, p + N, up
// front; it uses p + N - 1 of them when it finishes (the last token is never fed).
// Bytes per slot are kv::cache_bytes_for of one row (docs/design.md, "Counters").
#pragma once
#include <cstdint>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/model/config.h"
#include "core/serve/scheduler.h"

namespace kv {

struct ContiguousBaseline {
    int64_t reserved_slots = 0;  // sum over sequences of p + N
    int64_t used_slots = 0;      // sum over sequences of p + N - 1
    int64_t reserved_bytes = 0;  // reserved_slots * bytes per slot
    int64_t used_bytes = 0;      // used_slots * bytes per slot
    int max_concurrent = 0;      // requests, in arrival order, whose reservations fit in the pool's bytes at once
};

// Bytes one cached position takes in every layer (K and V, int8's scales included).
int64_t bytes_per_slot(const ModelConfig& cfg, KvDtype t);

// Of reservations of these many slots each, taken in order, how many fit in pool_bytes
// at once (the first that does not fit ends the count).
int contiguous_fit(const std::vector<int64_t>& reserve_slots, int64_t pool_bytes, int64_t slot_bytes);

ContiguousBaseline contiguous_baseline(const std::vector<ServeRequest>& requests, int64_t pool_bytes,
                                       int64_t slot_bytes);

}  // namespace kv
