#include "core/trace.h"

#include <string>

#include "core/engine.h"
#include "core/error.h"

namespace kv {

Counters& Counters::operator+=(const Counters& o) {
    tokens_processed += o.tokens_processed;
    kv_rows_computed += o.kv_rows_computed;
    kv_rows_reused += o.kv_rows_reused;
    kv_rows_recomputed += o.kv_rows_recomputed;
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

void check_forward_request(const ModelConfig& cfg, const ForwardRequest& req, int cache_rows) {
    const int n = int(req.ids.size()), p0 = req.start_pos;
    if (n == 0) throw Error("forward: no tokens to process");
    if (p0 < 0 || p0 > cache_rows)
        throw Error("forward: start_pos " + std::to_string(p0) + " but the cache holds " + std::to_string(cache_rows) +
                    " rows");
    if (p0 + n > cfg.n_ctx)
        throw Error("forward: " + std::to_string(p0 + n) + " tokens exceed the model's context of " +
                    std::to_string(cfg.n_ctx));
    for (int id : req.ids)
        if (id < 0 || id >= cfg.vocab_size)
            throw Error("forward: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(cfg.vocab_size) + ")");
}

void check_cache_head(const ModelConfig& cfg, int layer, int kv_head) {
    if (layer < 0 || layer >= cfg.n_layer || kv_head < 0 || kv_head >= cfg.n_kv_head)
        throw Error("read_cache_head: layer " + std::to_string(layer) + " / kv head " + std::to_string(kv_head) +
                    " out of range");
}

void finish_trace(StepTrace& tr, const ForwardRequest& req, const Counters& cnt, double ms) {
    tr.input_ids.assign(req.ids.begin(), req.ids.end());
    tr.start_pos = req.start_pos;
    tr.n_known = req.n_known;
    tr.cache_rows_read = req.start_pos;
    tr.counters = cnt;
    tr.ms = ms;
}

}  // namespace kv
