#include "core/engine/trace.h"

#include <string>

namespace kv {

Counters& Counters::operator+=(const Counters& o) {
    tokens_processed += o.tokens_processed;
    kv_rows_computed += o.kv_rows_computed;
    kv_rows_reused += o.kv_rows_reused;
    kv_rows_recomputed += o.kv_rows_recomputed;
    kv_rows_evicted += o.kv_rows_evicted;
    attn_scores += o.attn_scores;
    cache_rows = o.cache_rows;    // a level, not a flow: the latest value
    cache_bytes = o.cache_bytes;
    flops += o.flops;
    return *this;
}

const HeadTrace* StepTrace::find_head(int layer, int head) const {
    for (const auto& h : heads)
        if (h.layer == layer && h.head == head) return &h;
    return nullptr;
}

}  // namespace kv
