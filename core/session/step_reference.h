// What a variant costs in accuracy, measured: a reference cache on a reference engine
// is fed the inputs of each step of the compared session (which chose the tokens), and
// the two steps' last-position logits are set against each other. vs_full: the same
// weights with a full-attention f32 cache (the price of a cache policy); vs_f32: f32
// weights with the same policy (the price of f16/bf16 weights). The one computation
// behind `compare --json`'s "vs_full" / "vs_f32" and the window's "cost vs full"
// (Session::set_measure_vs_full). docs/cache.md, "The cost of a policy".
#pragma once
#include <memory>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/trace.h"

namespace kv {

// Max |a - b| over the logits (inf when the sizes differ or a value is NaN) and
// whether their greedy tokens (first maximum) agree.
LogitDiff logit_difference(const std::vector<float>& logits, const std::vector<float>& reference);

class StepReference {
public:
    // A cache of `policy` (default: full attention, f32) on `engine`, which must
    // outlive this.
    explicit StepReference(Engine& engine, const CachePolicy& policy = {});

    // Runs t's inputs (t.input_ids at t.start_pos; the reference cache goes back to
    // t.start_pos first, so a cache-off step or a step after back() works) and
    // compares t.logits with the reference's. Not measured (LogitDiff{}) when t starts
    // beyond the positions this reference has seen (it joined after the prefill).
    LogitDiff compare(const StepTrace& t);

    float worst() const { return worst_; }        // over the steps compared so far
    int same_top1_steps() const { return same_top1_; }

private:
    Engine& engine_;
    std::unique_ptr<KVCache> cache_;
    StepTrace ref_;
    float worst_ = 0.f;
    int same_top1_ = 0;
};

}  // namespace kv
