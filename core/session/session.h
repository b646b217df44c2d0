// Session: one lesson's state. Keeps the prompt, the tokens chosen so far, the cache
// mode, the history of StepTraces and totals. Step s = 0 is the prefill of the
// prompt (p tokens); decode step s >= 1 feeds the token chosen at step s-1, at
// position p+s-1. With the cache on, a step runs only its new tokens; with it off,
// the cache is cleared and the whole sequence runs from position 0 (under the same
// policy: the same mask, the same storage type).
// The session owns its KVCache; the engine (weights and scratch) may be shared by
// several sessions on the same model, as compare mode's two do.
// The UI reads a const Session& and changes it only through these commands.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "core/engine/trace.h"
#include "core/session/step_reference.h"

namespace kv {

struct SamplingOptions {
    float temperature = 0.f;  // 0 = greedy
    int top_k = 0;            // 0 = whole vocabulary
    uint64_t seed = 0;
    int n_top = 10;           // how many candidates the trace keeps
};

// Picks the next token from logits. Deterministic in (logits, options, step):
// the random stream for step s is derived from (seed, s), so going back and
// stepping again picks the same token.
int sample_token(const std::vector<float>& logits, const SamplingOptions& opt, int step);
// The random stream of (seed, step), one per purpose: `salt` tells streams of the
// same step apart (sample_token uses kSaltSample; speculative decoding adds its own).
inline constexpr uint32_t kSaltSample = 0x6b76u;
std::mt19937_64 step_stream(uint64_t seed, int step, uint32_t salt);
// The distribution sample_token draws from, over the whole vocabulary: softmax of
// logits / temperature over the top_k candidates, 0 elsewhere. Greedy (temperature
// 0): all mass on the first maximum.
std::vector<double> token_probs(const std::vector<float>& logits, const SamplingOptions& opt);
std::vector<TopToken> top_tokens(const std::vector<float>& logits, int k);
// Throws kv::Error ("prompt: ...") unless ids is a prompt the model can take: not
// empty, within its context (after n_before stale cache rows), every id in its vocabulary.
void check_prompt_ids(const ModelConfig& c, const std::vector<int>& ids, int n_before = 0);

class Session {
public:
    // The model must outlive the session. Throws kv::Error when the policy is bad or
    // the engine's backend does not implement it.
    Session(const Model& model, std::shared_ptr<Engine> engine, const CachePolicy& policy = {});

    // Commands (each may throw kv::Error with a message for the user).
    void set_prompt_ids(std::vector<int> ids);      // resets
    Encoding set_prompt_text(const std::string& text);  // resets; needs a tokenizer
    const StepTrace& step();
    bool back();                 // false when there is nothing to undo
    void reset();                // back to before the prefill (prompt kept)
    void set_cache(bool on);     // applies from the next step
    void set_policy(const CachePolicy& p);  // a new cache under p; resets (prompt kept)
    // THE BUG, ON PURPOSE (lesson chapter 8, "forgetting to reset the cache"): sets a
    // new prompt but keeps the rows the cache holds now. The new prompt's tokens go in
    // after those stale rows (at position stale_rows()) and attend to them, as in a
    // server that forgets to clear the cache between requests. Needs the cache on; a
    // step with the cache off throws. reset() and set_prompt_*() are the cure.
    void set_prompt_keeping_stale_cache(std::vector<int> ids);
    void set_sampling(const SamplingOptions& s) { sampling_ = s; }
    void set_trace_options(const TraceOptions& t);
    // Under a policy other than full f32, each step also runs a full-attention f32
    // cache on the same tokens and records the difference in StepTrace::vs_full
    // (kv::StepReference; one more forward pass a step). Off by default.
    void set_measure_vs_full(bool on);
    // With 16-bit weights: each step also runs `f32_engine` (the same model with f32
    // weights) under this session's policy on the same tokens and records the
    // difference in StepTrace::vs_f32 (kv::StepReference, as `compare --json`'s
    // "vs_f32"). Null turns it off. The engine is shared (compare mode's sessions).
    void set_measure_vs_f32(std::shared_ptr<Engine> f32_engine);

    // State.
    const Model& model() const { return model_; }
    const Engine& engine() const { return *engine_; }
    Engine& engine() { return *engine_; }
    const std::shared_ptr<Engine>& shared_engine() const { return engine_; }
    const std::shared_ptr<Engine>& f32_engine() const { return engine32_; }  // set_measure_vs_f32's, or null
    // The cache: cells (slot -> position), last_evicted(), stored and (f16/int8,
    // while the trace records) unrounded rows per slot, bytes().
    const KVCache& cache() const { return *cache_; }
    const CachePolicy& policy() const { return cache_->policy(); }
    bool cache_on() const { return cache_on_; }
    const SamplingOptions& sampling() const { return sampling_; }
    const TraceOptions& trace_options() const { return trace_opts_; }
    const std::vector<int>& prompt_ids() const { return prompt_; }
    // Prompt + chosen tokens: tokens()[p+s] is the token chosen at step s.
    const std::vector<int>& tokens() const { return tokens_; }
    const std::vector<StepTrace>& history() const { return history_; }
    // Tokens whose stale K/V rows sit before the prompt (empty unless the bug above).
    const std::vector<int>& stale_ids() const { return stale_; }
    int stale_rows() const { return static_cast<int>(stale_.size()); }
    int n_steps() const { return static_cast<int>(history_.size()); }
    // Tokens that have entered the model (the cache length in cached mode), stale
    // rows included.
    int n_fed() const;
    // Can another step run? (false at n_ctx or without a prompt)
    bool can_step(std::string* why_not = nullptr) const;
    // How many times each token's K/V have been computed over the history (one
    // entry per tokens() element).
    std::vector<int> compute_counts() const;
    Counters totals() const;

private:
    void new_cache(const CachePolicy& p);
    // Rows the cache holds before a step recomputes them (lesson point 2).
    struct RowsBefore {
        std::vector<bool> held;                       // (upto) position held by the cache
        std::vector<std::pair<RowMat, RowMat>> rows;  // per recorded head: K, V (upto, hd)
    };
    void keep_rows_before(int upto, RowsBefore& before) const;
    void compare_recomputed(const RowsBefore& before, StepTrace& tr) const;
    template <class F> void for_recorded_heads(F&& fn) const;

    const Model& model_;
    std::shared_ptr<Engine> engine_;
    std::unique_ptr<KVCache> cache_;
    std::unique_ptr<StepReference> full_;  // set_measure_vs_full(true)
    std::shared_ptr<Engine> engine32_;     // set_measure_vs_f32: f32 weights
    std::unique_ptr<StepReference> f32_;   // on engine32_, under this session's policy
    std::vector<int> prompt_;
    std::vector<int> tokens_;
    std::vector<int> stale_;  // ids of the stale rows [0, stale_.size()) before the prompt
    std::vector<StepTrace> history_;
    bool cache_on_ = true;
    SamplingOptions sampling_;
    TraceOptions trace_opts_;
};

}  // namespace kv
