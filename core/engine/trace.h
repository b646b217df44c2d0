// StepTrace: the plain data record of one prefill or decode step. The engine fills
// it where the work happens; the UI and the CLI only read it. Names follow the
// intermediates they hold (q, k, v, attn), per layer and head.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace kv {

enum class Phase { prefill, decode };
inline const char* phase_name(Phase p) { return p == Phase::prefill ? "prefill" : "decode"; }

// The counters (docs/design.md, "Counters"), per step. Counted in the engine's loops.
struct Counters {
    int64_t tokens_processed = 0;
    int64_t kv_rows_computed = 0;    // per layer and kv head, one row per token
    int64_t kv_rows_reused = 0;      // rows read from the cache (and not computed this step)
    int64_t kv_rows_recomputed = 0;  // rows computed again though an earlier step had them
    int64_t kv_rows_evicted = 0;     // rows the cache's policy dropped after the step
    int64_t attn_scores = 0;         // q.k dot products (keys actually read)
    int64_t cache_rows = 0;          // after the step
    int64_t cache_bytes = 0;         // after the step
    int64_t flops = 0;               // 2 per multiply-add of every matrix product performed

    Counters& operator+=(const Counters& o);
    bool operator==(const Counters&) const = default;
};

// One (layer, head) of one step. Rows are positions processed this step: all of
// them (start_pos .. start_pos+n-1) unless more than TraceOptions::max_rows were
// processed, then the last max_rows; first_pos is the position of row 0.
// Keys run over positions 0 .. start_pos+n-1 (nk of them); a key the cache's policy
// masks (or has evicted) has weight 0.
struct HeadTrace {
    int layer = 0, head = 0;  // head = query head; kv_head = ModelConfig::kv_head_of(head)
    int kv_head = 0;
    int first_pos = 0;  // position of row 0 of q, k, v, attn
    RowMat q;     // (r, hd)  queries of the recorded positions
    RowMat k;     // (r, hd)  keys computed this step, as the cache stores them (RoPE models: rotated)
    // RoPE models (the Llama family) only, else empty: the same keys before their
    // rotation by position (k_proj's output, + bias); k is this turned by first_pos + row.
    RowMat k_before_rope;  // (r, hd)
    RowMat v;     // (r, hd)  values computed this step (MLA: d_v wide, expanded like k)
    // MLA only, else empty: the latent rows [c_KV | k_R] computed this step, as the
    // cache stores them (shared by every head of the layer); q is (r, d_n + d_R) and
    // k, v the head's key and value expanded from them (kv::mla_expand_head), which no
    // cache holds. k_before_rope's k_R part keeps config.json's pair order (not
    // de-interleaved).
    RowMat latent;  // (r, d_c + d_R)
    RowMat attn;  // (r, nk)  softmax weights, 0 above the causal diagonal
    // Max |difference| between keys/values recomputed this step and the rows the
    // cache held for the same positions before the step (-1 if nothing to compare).
    float recompute_max_diff = -1.f;
};

struct TopToken {
    int id = 0;
    float prob = 0.f;
    float logit = 0.f;
};

// A step's logits against a reference fed the same tokens (kv::StepReference), e.g. a
// full-attention f32 cache. Not measured: max_abs_logit_diff < 0.
struct LogitDiff {
    float max_abs_logit_diff = -1.f;
    bool same_top1 = true;
    int ref_top1 = -1;  // the reference's greedy token
    bool measured() const { return max_abs_logit_diff >= 0.f; }
};

struct StepTrace {
    int step = 0;             // 0 = prefill
    Phase phase = Phase::prefill;
    bool cache_on = true;
    std::vector<int> input_ids;  // tokens that entered the model this step
    int start_pos = 0;           // position of input_ids[0]
    int n_known = 0;             // positions whose K/V earlier steps had computed
    int cache_rows_read = 0;     // cache rows read (not computed) this step, per layer and kv head
    std::vector<int> keys_read;  // positions some query of this step read, ascending
    std::vector<int> evicted;    // positions the cache evicted after this step, ascending
    std::vector<int> slot_pos;   // the cache's cells after the step: slot -> position (-1 free)
    std::vector<HeadTrace> heads;  // all (layer, head) for small models, else the selected one
    std::vector<float> logits;     // (V) logits of the last position
    std::vector<TopToken> top;     // top-k of the softmax over logits
    int next_id = -1;              // the chosen token
    Counters counters;
    double ms = 0.0;               // wall time of the forward pass
    LogitDiff vs_full;             // against full attention in f32 (Session::set_measure_vs_full)
    LogitDiff vs_f32;              // against f32 weights, same policy (Session::set_measure_vs_f32)

    const HeadTrace* find_head(int layer, int head) const;
};

}  // namespace kv
