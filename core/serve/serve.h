// Serving with an engine (`kvscope-cli serve`, the window's serving view): the
// Scheduler plans each step, the engine runs it as one batched forward over a paged
// pool (Engine::forward_batch), and every sequence samples its next token from its
// last position's logits. docs/design.md, "Serving", has the picture.
//
// Sampling follows `generate`: greedy unless a temperature is given; token g of a
// sequence is drawn from the stream of (seed, g), fork f > 0 from a seed of its own
// (fork_seed), so sampled forks differ and repeat exactly with the same seed.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/engine/engine.h"
#include "core/serve/baseline.h"
#include "core/serve/pool_snapshot.h"
#include "core/serve/scheduler.h"
#include "core/session/session.h"

namespace kv {

struct ServeOptions {
    SchedulerConfig sched;
    CachePolicy policy;          // the pool's dtype (and window, as a mask)
    SamplingOptions sampling;    // temperature, top_k, seed
    bool trace_tables = false;   // keep every step's block tables
    // Keep the pool after every step (ServeStep::pool): the serving view's record. With
    // snapshot_keys, also every slot's layer-0 keys, when the pool holds at most
    // kSnapshotKeyFloats of them (a teaching pool; a large one keeps none).
    bool snapshots = false;
    bool snapshot_keys = false;
    static constexpr int64_t kSnapshotKeyFloats = 1 << 18;
};

// One step as it happened. Ids are sequence ids (a request without forks: its index).
struct ServeStep {
    int step = 0;
    std::vector<int> running, admitted, finished, preempted;
    int tokens = 0;          // positions computed
    PoolCounts blocks;       // after the step
    int waste_slots = 0;
    int copies = 0;          // copy-on-write copies before the forward
    int64_t kv_rows_computed = 0, kv_rows_recomputed = 0;  // summed over the step's sequences
    // After the step, over the running sequences: positions held, and the slots a
    // contiguous reservation of prompt + new each would hold for them.
    int held_positions = 0, contiguous_slots = 0;
    double ms = 0.0;         // the batched forward (and its copies)
    std::vector<std::pair<int, std::vector<int>>> tables;  // (sequence, table) when trace_tables
    std::shared_ptr<const PoolSnapshot> pool;              // after the step, when snapshots
};

// One sequence at the end.
struct ServeSeqResult {
    int id = 0, request = 0, fork = 0;
    std::vector<int> prompt_ids, tokens;  // tokens: the generated ones
    int prefix_blocks_hit = 0, preemptions = 0;
    int64_t kv_rows_computed = 0;         // summed over its steps
    int64_t kv_rows_recomputed = 0;       // of those, rows a preemption made it compute again
    std::vector<int> block_table;         // its table at its last step
};

struct ServeResult {
    int block_size = 0, n_blocks = 0;
    int64_t bytes_per_block = 0;
    std::vector<ServeStep> steps;
    std::vector<ServeSeqResult> seqs;
    int tokens_generated = 0, peak_blocks = 0, prefix_hits = 0, cow_copies = 0, preemptions = 0;
    int64_t peak_bytes = 0, kv_rows_recomputed = 0;
    ContiguousBaseline contiguous;
    double total_ms = 0.0;  // the steps' ms summed
    double tokens_per_s() const { return total_ms > 0 ? tokens_generated * 1000.0 / total_ms : 0.0; }
};

// Called with every sequence's logits each time it samples: (sequence, index of the
// token it samples among its generated ones, logits (V)). For tests and the window.
using LogitsFn = std::function<void(int seq, int token_index, std::span<const float> logits)>;
// Called after every step with the scheduler (checks, progress). May be empty.
using StepFn = std::function<void(const Scheduler& sched, const ServeStep& step)>;

// The seed of fork f's stream: the request's seed for fork 0 (as `generate`), mixed for others.
uint64_t fork_seed(uint64_t seed, int fork);

// Runs every request to the end. Throws kv::Error for bad options (the Scheduler's and
// the pool's checks) or when the engine has no batched path.
ServeResult run_serve(Engine& engine, const std::vector<ServeRequest>& requests, const ServeOptions& opt,
                      const LogitsFn& on_logits = {}, const StepFn& on_step = {});

}  // namespace kv
