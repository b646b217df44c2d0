// The contiguous baseline: see baseline.h.
#include "core/serve/baseline.h"

#include <algorithm>
#include <numeric>

#include "core/engine/kv_cache.h"

namespace kv {

int64_t bytes_per_slot(const ModelConfig& cfg, KvDtype t) { return cache_bytes_for(cfg, t, 1); }

int contiguous_fit(const std::vector<int64_t>& reserve_slots, int64_t pool_bytes, int64_t slot_bytes) {
    int64_t sum = 0;
    int n = 0;
    for (int64_t r : reserve_slots) {
        sum += r;
        if (sum * slot_bytes > pool_bytes) break;
        ++n;
    }
    return n;
}

ContiguousBaseline contiguous_baseline(const std::vector<ServeRequest>& requests, int64_t pool_bytes,
                                       int64_t slot_bytes) {
    ContiguousBaseline b;
    std::vector<size_t> order(requests.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return requests[x].arrive < requests[y].arrive; });
    std::vector<int64_t> reserves;  // per request, in arrival order: its forks' reservations together
    for (size_t r : order) {
        const ServeRequest& q = requests[r];
        reserves.push_back(int64_t(q.fork) * (int64_t(q.prompt.size()) + q.new_tokens));
        b.reserved_slots += reserves.back();
        b.used_slots += int64_t(q.fork) * (int64_t(q.prompt.size()) + q.new_tokens - 1);
    }
    b.max_concurrent = contiguous_fit(reserves, pool_bytes, slot_bytes);
    b.reserved_bytes = b.reserved_slots * slot_bytes;
    b.used_bytes = b.used_slots * slot_bytes;
    return b;
}

}  // namespace kv
