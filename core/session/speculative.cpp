#include "core/session/speculative.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace kv {

namespace {

// Streams of one step, apart from sample_token's (kSaltSample), which the bonus
// token and plain steps use.
constexpr uint32_t kSaltDraft = 0x64726166u;     // the draft's pick
constexpr uint32_t kSaltAccept = 0x61636370u;    // the acceptance coin
constexpr uint32_t kSaltResidual = 0x72657369u;  // the pick after a rejection

// A uniform double in [0, 1) from 53 random bits (the same on every platform).
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

// Inverse-CDF draw from probabilities summing to ~1 (the last non-zero entry
// absorbs rounding).
int draw(const std::vector<double>& probs, std::mt19937_64 rng) {
    const double u = uniform01(rng) * std::accumulate(probs.begin(), probs.end(), 0.0);
    double c = 0;
    int last = 0;
    for (int i = 0; i < int(probs.size()); ++i) {
        if (probs[i] <= 0) continue;
        c += probs[i];
        last = i;
        if (u < c) return i;
    }
    return last;
}

std::string model_label(const Model& m) { return m.path.empty() ? m.name : m.path; }

std::vector<float> logits_row(const std::vector<float>& all, int row, int V) {
    return std::vector<float>(all.begin() + size_t(row) * V, all.begin() + size_t(row + 1) * V);
}

}  // namespace

SpecCounters& SpecCounters::operator+=(const SpecCounters& o) {
    rounds += o.rounds;
    target_forwards += o.target_forwards;
    draft_forwards += o.draft_forwards;
    proposed += o.proposed;
    accepted += o.accepted;
    rejected += o.rejected;
    new_tokens += o.new_tokens;
    target_rows_rolled_back += o.target_rows_rolled_back;
    draft_rows_rolled_back += o.draft_rows_rolled_back;
    return *this;
}

AcceptanceRule standard_acceptance() {
    AcceptanceRule r;
    r.accept_prob = [](double p, double q) { return q > 0 ? std::min(1.0, p / q) : 1.0; };
    r.residual = [](const std::vector<double>& p, const std::vector<double>& q) {
        std::vector<double> res(p.size());
        double z = 0;
        for (size_t i = 0; i < p.size(); ++i) z += res[i] = std::max(0.0, p[i] - q[i]);
        if (z <= 0) return p;  // p == q: a rejection cannot happen except by rounding
        for (double& x : res) x /= z;
        return res;
    };
    return r;
}

void check_same_vocabulary(const Model& target, const Model& draft) {
    const int vt = target.config.vocab_size, vd = draft.config.vocab_size;
    const std::string both = "draft " + model_label(draft) + " and target " + model_label(target);
    if (vt != vd)
        throw Error("--draft: vocabularies differ: " + both + " have " + std::to_string(vd) + " and " +
                    std::to_string(vt) + " tokens");
    if (target.tokenizer && draft.tokenizer) {
        for (int id = 0; id < vt; ++id)
            if (target.tokenizer->token_text(id) != draft.tokenizer->token_text(id))
                throw Error("--draft: vocabularies differ: " + both + " name token " + std::to_string(id) + " '" +
                            draft.tokenizer->token_text(id) + "' and '" + target.tokenizer->token_text(id) + "'");
    }
}

SpecDecoder::SpecDecoder(const Model& target, std::unique_ptr<Engine> target_engine, const Model& draft,
                         std::unique_ptr<Engine> draft_engine, int k)
    : target_(target), draft_(draft), te_(std::move(target_engine)), de_(std::move(draft_engine)) {
    if (!te_ || !de_) throw Error("SpecDecoder: no engine");
    tc_ = te_->make_cache(CachePolicy{});
    dc_ = de_->make_cache(CachePolicy{});
    check_same_vocabulary(target_, draft_);
    set_k(k);
    trace_opts_ = trace_options_for(target_.config);  // large models: the selected head only
}

void SpecDecoder::set_k(int k) {
    if (k < 1 || k > 16) throw Error("--draft-k: " + std::to_string(k) + " is out of range (1..16)");
    k_ = k;
}

void SpecDecoder::set_prompt_ids(std::vector<int> ids) {
    check_prompt_ids(target_.config, ids);
    prompt_ = std::move(ids);
    reset();
}

void SpecDecoder::reset() {
    rounds_.clear();
    tokens_ = prompt_;
    tc_->truncate(0);
    dc_->truncate(0);
}

bool SpecDecoder::can_round(std::string* why_not) const {
    auto no = [&](const std::string& w) {
        if (why_not) *why_not = w;
        return false;
    };
    if (prompt_.empty()) return no("no prompt");
    if (int(tokens_.size()) > target_.config.n_ctx)
        return no("the context is full (" + std::to_string(target_.config.n_ctx) + " tokens)");
    return true;
}

// The draft catches up with the tokens it has not seen, then proposes k_eff tokens
// one forward at a time (k_eff forwards; the last draft never enters its cache).
std::vector<int> SpecDecoder::propose(int k_eff, SpecRound& r) {
    q_.clear();
    std::vector<int> drafts;
    const int T = int(tokens_.size()), p = int(prompt_.size());
    int start = dc_->n_pos();
    std::vector<int> feed(tokens_.begin() + start, tokens_.end());
    for (int i = 0; i < k_eff; ++i) {
        ForwardRequest req;
        req.ids = feed;
        req.start_pos = start;
        req.n_known = start;
        req.trace_opts.record = false;
        StepTrace tr;
        de_->forward(req, *dc_, tr);
        ++r.counters.draft_forwards;
        r.draft_work += tr.counters;
        r.draft_ms += tr.ms;
        int id = 0;
        if (sampling_.temperature <= 0.f) {
            id = sample_token(tr.logits, sampling_, T + i - p);  // greedy: no distribution needed
        } else {
            q_.push_back(token_probs(tr.logits, sampling_));
            id = draw(q_.back(), step_stream(sampling_.seed, T + i - p, kSaltDraft));
        }
        drafts.push_back(id);
        start += int(feed.size());
        feed.assign(1, id);
    }
    r.draft_rows_written = dc_->n_pos();
    return drafts;
}

struct SpecDecoder::Verdict {
    int accepted = 0;
    int next_id = -1;
};

// Row row0 + i of logits_all predicts the token at position T + i.
SpecDecoder::Verdict SpecDecoder::verify(const std::vector<float>& logits_all, int row0,
                                         const std::vector<int>& drafts, const std::vector<std::vector<double>>& q,
                                         SpecRound& r) const {
    const int V = target_.config.vocab_size, k = int(drafts.size());
    const int T = int(tokens_.size()), p = int(prompt_.size());
    if (trace_opts_.record)  // what the window shows next to each draft
        for (int i = 0; i <= k; ++i) r.target_top.push_back(top_tokens(logits_row(logits_all, row0 + i, V), 5));
    for (int i = 0; i < k; ++i) {
        const std::vector<float> row = logits_row(logits_all, row0 + i, V);
        const int s = T + i - p, d = drafts[i];
        if (sampling_.temperature <= 0.f) {
            const int t = sample_token(row, sampling_, s);  // the target's own greedy token
            if (t != d) return {i, t};
            continue;
        }
        const std::vector<double> pv = token_probs(row, sampling_);
        std::mt19937_64 coin = step_stream(sampling_.seed, s, kSaltAccept);
        if (uniform01(coin) < rule_.accept_prob(pv[d], q[i][d])) continue;
        return {i, draw(rule_.residual(pv, q[i]), step_stream(sampling_.seed, s, kSaltResidual))};
    }
    // Every draft kept: the target's distribution at the last row gives one more token.
    return {k, sample_token(logits_row(logits_all, row0 + k, V), sampling_, T + k - p)};
}

const SpecRound& SpecDecoder::round(int max_new) {
    std::string why;
    if (!can_round(&why)) throw Error("speculative round: " + why);
    if (max_new < 1) throw Error("speculative round: max_new must be at least 1");
    const int T = int(tokens_.size());
    SpecRound r;
    r.round = int(rounds_.size());
    r.n_tokens_before = T;
    r.target_rows_before = tc_->n_pos();
    r.draft_rows_before = dc_->n_pos();
    // The target feeds positions up to T-1+k, the draft up to T-2+k.
    const int k_eff = std::max(0, std::min({k_, max_new - 1, target_.config.n_ctx - T, draft_.config.n_ctx - T + 1}));
    r.draft_rows_written = r.draft_rows_before;
    r.proposed = propose(k_eff, r);

    // One target forward over the tokens its cache lacks plus every draft.
    r.start_pos = r.target_rows_before;
    r.target_input.assign(tokens_.begin() + r.start_pos, tokens_.end());
    r.target_input.insert(r.target_input.end(), r.proposed.begin(), r.proposed.end());
    ForwardRequest req;
    req.ids = r.target_input;
    req.start_pos = r.start_pos;
    req.n_known = r.start_pos;
    req.all_logits = true;
    req.trace_opts = trace_opts_;
    std::vector<float> logits_all;
    te_->forward(req, *tc_, r.target_trace, &logits_all);
    ++r.counters.target_forwards;
    r.target_work = r.target_trace.counters;
    r.target_ms = r.target_trace.ms;
    r.target_rows_written = tc_->n_pos();

    const Verdict v = verify(logits_all, T - 1 - r.start_pos, r.proposed, q_, r);
    r.accepted = v.accepted;
    r.next_id = v.next_id;
    r.bonus = k_eff > 0 && v.accepted == k_eff;
    tokens_.insert(tokens_.end(), r.proposed.begin(), r.proposed.begin() + v.accepted);
    tokens_.push_back(v.next_id);

    // Roll back the rows of rejected positions: both caches keep tokens [0, T + a).
    const int keep = T + v.accepted;
    tc_->truncate(keep);
    dc_->truncate(std::min(keep, r.draft_rows_written));
    r.target_rows_after = tc_->n_pos();
    r.draft_rows_after = dc_->n_pos();

    SpecCounters& c = r.counters;
    c.rounds = 1;
    c.proposed = k_eff;
    c.accepted = v.accepted;
    c.rejected = k_eff - v.accepted;
    c.new_tokens = v.accepted + 1;
    c.target_rows_rolled_back = r.target_rows_written - r.target_rows_after;
    c.draft_rows_rolled_back = r.draft_rows_written - r.draft_rows_after;
    r.target_trace.next_id = v.next_id;
    if (target_.config.vocab_size > 8192 && !rounds_.empty()) {
        rounds_.back().target_trace.logits.clear();
        rounds_.back().target_trace.logits.shrink_to_fit();
    }
    rounds_.push_back(std::move(r));
    return rounds_.back();
}

bool SpecDecoder::back() {
    if (rounds_.empty()) return false;
    const SpecRound& r = rounds_.back();
    tokens_.resize(size_t(r.n_tokens_before));
    tc_->truncate(r.target_rows_before);
    dc_->truncate(r.draft_rows_before);
    rounds_.pop_back();
    return true;
}

SpecCounters SpecDecoder::totals() const {
    SpecCounters t;
    for (const SpecRound& r : rounds_) t += r.counters;
    return t;
}

}  // namespace kv
