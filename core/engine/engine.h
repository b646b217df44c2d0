// Engine: the narrow backend interface (as ggml-backend). An engine owns the
// model's weights in its own memory and its KV cache; forward() runs new tokens at
// start_pos against the cache rows [0, start_pos) and appends their K/V rows.
// The CPU engine is the reference; a CUDA engine implements the same calls.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/model/config.h"
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

struct ForwardRequest {
    std::span<const int> ids;  // tokens to process, at positions start_pos..
    int start_pos = 0;         // cache rows [0, start_pos) are read, the rest written
    int n_known = 0;           // positions an earlier step had computed (for kv_rows_recomputed)
    bool all_logits = false;   // logits for every processed position, else last only
    TraceOptions trace_opts;
};

class Engine {
public:
    virtual ~Engine() = default;
    virtual std::string backend() const = 0;  // "cpu" or "cuda"
    virtual const ModelConfig& config() const = 0;

    // Runs the tokens and fills `trace` (counters, heads, logits of the last
    // position, ms). When all_logits, `logits_all` receives (n, V) row-major.
    virtual void forward(const ForwardRequest& req, StepTrace& trace,
                         std::vector<float>* logits_all = nullptr) = 0;

    virtual int cache_rows() const = 0;
    virtual void truncate_cache(int n) = 0;  // keep rows [0, n)
    virtual int64_t cache_bytes() const = 0;
    // Copies rows [0, cache_rows()) of one kv head: k and v are (rows, hd).
    virtual void read_cache_head(int layer, int kv_head, RowMat& k, RowMat& v) const = 0;
    virtual void set_threads(int n) { (void)n; }
};

// Checks every backend makes before a forward pass (throws kv::Error): tokens
// present, start_pos within the cache, the context not exceeded, ids in range.
void check_forward_request(const ModelConfig& cfg, const ForwardRequest& req, int cache_rows);
// Checks a read_cache_head() argument pair (throws kv::Error).
void check_cache_head(const ModelConfig& cfg, int layer, int kv_head);
// Fills the fields every backend sets the same way once the work is done: the
// request's ids and positions, the counters and the wall time since t0.
void finish_trace(StepTrace& tr, const ForwardRequest& req, const Counters& cnt, double ms);

std::unique_ptr<Engine> make_cpu_engine(const Model& model);
// Defined only in builds with the CUDA backend (KVSCOPE_HAVE_CUDA).
std::unique_ptr<Engine> make_cuda_engine(const Model& model);
// "cpu" or "cuda"; throws kv::Error with a clear line if the backend is not built
// or no device is present.
std::unique_ptr<Engine> make_engine(const Model& model, const std::string& backend);
bool cuda_available(std::string* why_not = nullptr);

}  // namespace kv
