// The engine interface's shared parts: the checks every backend makes before a
// forward pass, the trace fields every backend fills the same way, which heads a
// trace records, and the factory that picks a backend by name.
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"

namespace kv {

void check_forward_request(const ModelConfig& cfg, const ForwardRequest& req, const KVCache& cache) {
    const int n = int(req.ids.size()), p0 = req.start_pos;
    if (!(cache.config() == cfg)) throw Error("forward: the cache was made for another model");
    if (n == 0) throw Error("forward: no tokens to process");
    if (p0 < 0 || p0 > cache.n_pos())
        throw Error("forward: start_pos " + std::to_string(p0) + " but the cache has seen " +
                    std::to_string(cache.n_pos()) + " positions");
    if (p0 + n > cfg.n_ctx)
        throw Error("forward: " + std::to_string(p0 + n) + " tokens exceed the model's context of " +
                    std::to_string(cfg.n_ctx));
    for (int id : req.ids)
        if (id < 0 || id >= cfg.vocab_size)
            throw Error("forward: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(cfg.vocab_size) + ")");
}

void check_batch(const ModelConfig& cfg, std::span<const BatchSeq> seqs, const PagedKV& pool) {
    if (!(pool.config() == cfg)) throw Error("batch: the pool was made for another model");
    if (seqs.empty()) throw Error("batch: no sequences");
    const int B = pool.block_size();
    std::vector<char> written(size_t(pool.n_blocks()) * B, 0);
    for (const BatchSeq& s : seqs) {
        const int n = int(s.ids.size()), end = s.start_pos + n;
        if (n == 0) throw Error("batch: a sequence with no tokens");
        if (s.start_pos < 0 || end > cfg.n_ctx)
            throw Error("batch: positions up to " + std::to_string(end) + " exceed the model's context of " +
                        std::to_string(cfg.n_ctx));
        if (int64_t(s.table.size()) * B < end)
            throw Error("batch: a block table of " + std::to_string(s.table.size()) + " blocks cannot hold " +
                        std::to_string(end) + " positions");
        for (int b : s.table)
            if (b < 0 || b >= pool.n_blocks()) throw Error("batch: block " + std::to_string(b) + " is not in the pool");
        for (int id : s.ids)
            if (id < 0 || id >= cfg.vocab_size)
                throw Error("batch: token id " + std::to_string(id) + " is outside the vocabulary");
        for (int p = s.start_pos; p < end; ++p)
            if (written[size_t(paged_slot(s.table, B, p))]++)
                throw Error("batch: two sequences write position " + std::to_string(p) + "'s slot");
    }
}

std::unique_ptr<PagedKV> Engine::make_paged(const CachePolicy&, int, int) const {
    throw Error(backend() + " backend: serving from a paged pool is not built for it (use --backend cpu)");
}

void Engine::forward_batch(std::span<const BatchSeq>, PagedKV&, BatchResult&) {
    throw Error(backend() + " backend: batched steps are not built for it (use --backend cpu)");
}

void check_cache_head(const ModelConfig& cfg, int layer, int kv_head) {
    if (layer < 0 || layer >= cfg.n_layer || kv_head < 0 || kv_head >= cfg.n_kv_head)
        throw Error("cache: layer " + std::to_string(layer) + " / kv head " + std::to_string(kv_head) +
                    " out of range");
}

void finish_trace(StepTrace& tr, const ForwardRequest& req, const KVCache& cache, Counters cnt, double ms) {
    tr.input_ids.assign(req.ids.begin(), req.ids.end());
    tr.start_pos = req.start_pos;
    tr.n_known = req.n_known;
    tr.cache_rows_read = 0;
    for (int k : tr.keys_read) tr.cache_rows_read += k < req.start_pos;
    tr.evicted = cache.last_evicted();
    tr.slot_pos.resize(cache.cells().size());
    for (size_t s = 0; s < tr.slot_pos.size(); ++s) tr.slot_pos[s] = cache.cells()[s].pos;
    cnt.cache_rows = cache.n_used();
    cnt.cache_bytes = cache.bytes();
    tr.counters = cnt;
    tr.ms = ms;
}

#ifndef KVSCOPE_HAVE_CUDA
bool cuda_available(std::string* why_not) {
    if (why_not) *why_not = "this build has no CUDA backend (nvcc was not found when it was configured)";
    return false;
}
#endif

std::unique_ptr<Engine> make_engine(const Model& model, const std::string& backend) {
    if (backend == "cpu") return make_cpu_engine(model);
    if (backend == "cuda") {
        if (model.weights.type != WeightType::f32)
            throw Error(std::string("--backend cuda: the CUDA backend runs f32 weights only, not ") +
                        weight_type_name(model.weights.type) + " (use --weights f32 or --backend cpu)");
        if (model.config.is_mla())
            throw Error("--backend cuda: the CUDA backend has no MLA kernels; an MLA (DeepseekV3) model runs on --backend cpu");
        std::string why;
        if (!cuda_available(&why)) throw Error("--backend cuda: " + why);
#ifdef KVSCOPE_HAVE_CUDA
        return make_cuda_engine(model);
#endif
    }
    throw Error("--backend '" + backend + "': unknown backend (use cpu or cuda)");
}

void check_mla_read(const ModelConfig& cfg, const CachePolicy& pol, const std::string& model_name) {
    if (pol.mla == MlaRead::absorbed && !cfg.is_mla())
        throw Error("--mla: model '" + model_name + "' caches K and V, not a latent (only an MLA model, e.g. "
                    "assets/models/tiny-mla or random:mla-tiny, reads its cache absorbed)");
}

bool records_all_heads(const ModelConfig& c) {
    return int64_t(c.n_layer) * c.n_head * c.n_ctx <= 2LL * 16 * 1024;
}

TraceOptions trace_options_for(const ModelConfig& c, int layer, int head) {
    TraceOptions t;
    t.all_heads = records_all_heads(c);
    t.layer = layer;
    t.head = head;
    return t;
}

}  // namespace kv
