// Engine: the narrow backend interface (as ggml-backend). An engine holds one
// model's weights in its own memory and the scratch of a forward pass; caches live
// apart (make_cache), one per sequence, so one engine serves several caches (the
// compare mode's two sessions load the weights once). forward() runs new tokens at
// positions start_pos.. against a cache: the cache places their K/V rows and says
// which of its slots each query reads. The CPU engine is the reference; a CUDA
// engine implements the same calls. An engine runs one forward at a time.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/engine/kv_cache.h"
#include "core/engine/paged_kv.h"
#include "core/engine/trace.h"

namespace kv {

struct Model;

// Which heads the trace records in detail. Small models record everything; large
// ones only the selected (layer, head) so trace memory stays bounded.
struct TraceOptions {
    bool all_heads = true;
    int layer = 0, head = 0;  // used when !all_heads
    bool record = true;       // false: counters and logits only (benchmarks)
    int max_rows = 128;       // record at most the last max_rows processed positions
};

// Whether a trace records every head: yes while the model has at most 32768
// (layer, head, context position) triples (2 layers x 16 heads x 1024), so a full
// history of head traces stays small; larger models record only the selected head.
// The one rule: Session, the window's Controller and the CLI all take it from here.
bool records_all_heads(const ModelConfig& c);
// Trace options for a model with (layer, head) selected (used when !all_heads).
TraceOptions trace_options_for(const ModelConfig& c, int layer = 0, int head = 0);

struct ForwardRequest {
    std::span<const int> ids;  // tokens to process, at positions start_pos..
    int start_pos = 0;         // the cache goes back to positions [0, start_pos) first
    int n_known = 0;           // positions an earlier step had computed (for kv_rows_recomputed)
    bool all_logits = false;   // logits for every processed position, else last only
    TraceOptions trace_opts;
};

// One sequence of a batched step (serving): its tokens at positions [start_pos,
// start_pos + n); every position before start_pos is in the pool already, and `table`
// covers [0, start_pos + n) (kv::paged_slot).
struct BatchSeq {
    std::span<const int> ids;
    int start_pos = 0;
    std::span<const int> table;
    int n_known = 0;  // positions an earlier step had computed (for kv_rows_recomputed)
};

// What a batched step returns. Per sequence, the counters of its own work (kv rows
// computed, reused and recomputed, attention scores and their flops, tokens); `total`
// adds the weight products, run once over all the step's tokens.
struct BatchResult {
    std::vector<float> logits;       // (m, V): the last position of each sequence
    std::vector<Counters> counters;  // (m)
    Counters total;
    double ms = 0.0;
};

class Engine {
public:
    virtual ~Engine() = default;
    virtual std::string backend() const = 0;  // "cpu" or "cuda"
    virtual const ModelConfig& config() const = 0;

    // A cache for one sequence in this backend's memory. Throws kv::Error with one
    // line naming the backend and the policy when the backend does not implement it.
    virtual std::unique_ptr<KVCache> make_cache(const CachePolicy& policy) const = 0;

    // Runs the tokens against `cache` (one this engine made) and fills `trace`
    // (counters, heads, logits of the last position, ms). When all_logits,
    // `logits_all` receives (n, V) row-major.
    virtual void forward(const ForwardRequest& req, KVCache& cache, StepTrace& trace,
                         std::vector<float>* logits_all = nullptr) = 0;

    // Serving: a pool of n_blocks blocks of block_size slots in this backend's memory,
    // and one forward over several sequences reading and writing it through their
    // block tables. Every sequence's logits equal the same sequence run alone through
    // forward(). Backends without it throw kv::Error with one line.
    virtual std::unique_ptr<PagedKV> make_paged(const CachePolicy& policy, int n_blocks, int block_size) const;
    virtual void forward_batch(std::span<const BatchSeq> seqs, PagedKV& pool, BatchResult& out);

    virtual void set_threads(int n) { (void)n; }
};

// Checks every backend makes before a forward pass (throws kv::Error): tokens
// present, start_pos within the positions the cache has seen, the context not
// exceeded, ids in range, the cache made for this model.
void check_forward_request(const ModelConfig& cfg, const ForwardRequest& req, const KVCache& cache);
// The same checks for a batched step (throws kv::Error): at least one sequence, each
// with tokens, within the context, ids in range, tables covering its positions with
// blocks of the pool, and no two sequences writing the same slot.
void check_batch(const ModelConfig& cfg, std::span<const BatchSeq> seqs, const PagedKV& pool);
// Throws kv::Error "--mla: model 'NAME' caches K and V, not a latent (...)" when the
// policy reads absorbed but the model caches K and V (expand is every model's read).
// The command line and the window both ask here.
void check_mla_read(const ModelConfig& cfg, const CachePolicy& pol, const std::string& model_name);
// Checks a (layer, kv head) pair for reading a cache (throws kv::Error).
void check_cache_head(const ModelConfig& cfg, int layer, int kv_head);
// Fills the fields every backend sets the same way once the work is done: the
// request's ids and positions, the cache's cells and evictions, the counters (and
// cache_rows, cache_bytes, kv_rows_evicted from the cache) and the wall time.
void finish_trace(StepTrace& tr, const ForwardRequest& req, const KVCache& cache, Counters cnt, double ms);

std::unique_ptr<Engine> make_cpu_engine(const Model& model);
// Defined only in builds with the CUDA backend (KVSCOPE_HAVE_CUDA).
std::unique_ptr<Engine> make_cuda_engine(const Model& model);
// "cpu" or "cuda"; throws kv::Error with a clear line if the backend is not built
// or no device is present.
std::unique_ptr<Engine> make_engine(const Model& model, const std::string& backend);
bool cuda_available(std::string* why_not = nullptr);

}  // namespace kv
