// Speculative decoding: a small draft model proposes k tokens one by one through its
// own cache; the target model checks all of them in ONE forward pass over k+1 new
// positions (the last accepted token plus the k drafts) with logits at every
// position; the longest agreeing prefix is kept, the target's own token is appended
// at the first disagreement (or a bonus token after k agreements), and the rows of
// rejected positions are rolled back from both caches (Leviathan et al. 2023, "Fast
// Inference from Transformers via Speculative Decoding"; Chen et al. 2023).
//
// Notation: T tokens so far (prompt p + generated), k drafts this round, a accepted.
// Between rounds the target's cache holds the rows of tokens [0, T-1) (the newest
// token has not entered it yet, as in Session); the draft's holds a prefix of that
// and catches up with its first forward of the next round.
// One round: draft forwards = k, target forwards = 1, new tokens = a + 1,
// target rows rolled back = k - a, draft rows rolled back = max(0, k - 1 - a).
// Greedy output is the target's own greedy output; with temperature > 0 the
// acceptance rule (accept d with min(1, p(d)/q(d)), else draw from the normalised
// max(0, p - q)) makes every token follow the target's distribution. Random streams
// come from (seed, step) as in sample_token, step s choosing the token at p+s.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "core/session/session.h"

namespace kv {

// Counted where the work happens (SpecDecoder::round), per round and in total.
// Rolled-back rows are cache rows, i.e. positions (each holds L*Hkv K/V rows).
struct SpecCounters {
    int64_t rounds = 0;
    int64_t target_forwards = 0;
    int64_t draft_forwards = 0;
    int64_t proposed = 0;  // drafted tokens offered to the target
    int64_t accepted = 0;
    int64_t rejected = 0;
    int64_t new_tokens = 0;  // tokens the rounds appended (accepted + one per round)
    int64_t target_rows_rolled_back = 0;
    int64_t draft_rows_rolled_back = 0;
    double acceptance_rate() const { return proposed ? double(accepted) / double(proposed) : 0.0; }
    // Target forward passes per generated token: 1 for plain decoding.
    double target_forwards_per_token() const { return new_tokens ? double(target_forwards) / double(new_tokens) : 0.0; }
    SpecCounters& operator+=(const SpecCounters& o);
    bool operator==(const SpecCounters&) const = default;
};

// How a drafted token is accepted, injectable so a test can show that a wrong rule
// fails the distribution test. p and q are the target's and the draft's
// distributions over the vocabulary at one position (token_probs).
struct AcceptanceRule {
    std::function<double(double p_tok, double q_tok)> accept_prob;  // chance to keep the draft
    std::function<std::vector<double>(const std::vector<double>& p, const std::vector<double>& q)> residual;
};
// min(1, p/q); residual normalised max(0, p - q) (p itself where that is all zero).
AcceptanceRule standard_acceptance();

// One round, as the CLI's JSON and the window show it.
struct SpecRound {
    int round = 0;
    int n_tokens_before = 0;        // T
    int start_pos = 0;              // position of the target forward's first token
    std::vector<int> target_input;  // what the target ran: catch-up tokens + drafts
    std::vector<int> proposed;      // the k drafted ids, at positions T .. T+k-1
    int accepted = 0;               // a: proposed[0..a) were kept
    int next_id = -1;               // the target's token after them (correction or bonus)
    bool bonus = false;             // all k accepted: next_id is the bonus token
    // Cache rows (positions) of each model: before the round, after its forwards,
    // after the roll-back.
    int target_rows_before = 0, target_rows_written = 0, target_rows_after = 0;
    int draft_rows_before = 0, draft_rows_written = 0, draft_rows_after = 0;
    SpecCounters counters;          // this round only
    Counters target_work, draft_work;  // the engines' counters over the round
    double target_ms = 0, draft_ms = 0;
    StepTrace target_trace;         // the verifying forward (heads if recorded; logits of its last row)
    // The target's top tokens at positions T .. T+k (recorded traces only).
    std::vector<std::vector<TopToken>> target_top;
};

class SpecDecoder {
public:
    // Both models must outlive the decoder. Throws kv::Error when the vocabularies
    // differ (sizes, or the tokens of two tokenizers) or k is outside [1, 16].
    SpecDecoder(const Model& target, std::unique_ptr<Engine> target_engine, const Model& draft,
                std::unique_ptr<Engine> draft_engine, int k);

    void set_prompt_ids(std::vector<int> ids);  // resets
    void set_sampling(const SamplingOptions& s) { sampling_ = s; }
    void set_rule(AcceptanceRule r) { rule_ = std::move(r); }
    void set_trace_options(const TraceOptions& t) { trace_opts_ = t; }
    void set_k(int k);
    void set_threads(int n) { te_->set_threads(n); de_->set_threads(n); }
    // Runs one round producing at most max_new tokens (k shrinks to fit it and both
    // contexts; with no room for a draft the round is one plain target step).
    const SpecRound& round(int max_new = 1 << 30);
    bool back();   // undo the last round (truncates both caches, no recomputation)
    void reset();  // back to before the first round (prompt kept)
    bool can_round(std::string* why_not = nullptr) const;

    int k() const { return k_; }
    const Model& target() const { return target_; }
    const Model& draft() const { return draft_; }
    const Engine& target_engine() const { return *te_; }
    const Engine& draft_engine() const { return *de_; }
    const KVCache& target_cache() const { return *tc_; }  // full f32 caches, one per model
    const KVCache& draft_cache() const { return *dc_; }
    const std::vector<int>& prompt_ids() const { return prompt_; }
    const std::vector<int>& tokens() const { return tokens_; }  // prompt + generated
    const std::vector<SpecRound>& rounds() const { return rounds_; }
    SpecCounters totals() const;
    const SamplingOptions& sampling() const { return sampling_; }

private:
    struct Verdict;
    std::vector<int> propose(int k_eff, SpecRound& r);
    Verdict verify(const std::vector<float>& logits_all, int row0, const std::vector<int>& drafts,
                   const std::vector<std::vector<double>>& q, SpecRound& r) const;

    const Model& target_;
    const Model& draft_;
    std::shared_ptr<Engine> te_, de_;
    std::unique_ptr<KVCache> tc_, dc_;
    int k_ = 4;
    std::vector<int> prompt_, tokens_;
    std::vector<SpecRound> rounds_;
    SamplingOptions sampling_;
    AcceptanceRule rule_ = standard_acceptance();
    TraceOptions trace_opts_;
    std::vector<std::vector<double>> q_;  // draft distributions of the round being run
};

// Checks that two models can form a speculative pair (throws kv::Error naming both):
// equal vocabulary sizes and, when both have tokenizers, the same token for every id.
void check_same_vocabulary(const Model& target, const Model& draft);

}  // namespace kv
