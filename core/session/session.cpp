#include "core/session/session.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <Eigen/Core>

#include "core/error.h"

namespace kv {

namespace {

// The indices of the k largest logits, largest first, ties to the lower index. A
// few (the window's 5, a top-k sampler's 40) take one pass with a short sorted list;
// the pass over 50257 logits runs once per step on one thread.
std::vector<int> top_indices(const std::vector<float>& logits, int k) {
    const int V = int(logits.size());
    auto before = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::vector<int> idx;
    if (k > 64) {
        idx.resize(V);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), before);
        idx.resize(k);
        return idx;
    }
    idx.reserve(k + 1);
    for (int i = 0; i < V && k > 0; ++i) {
        if (int(idx.size()) == k && !before(i, idx.back())) continue;
        idx.insert(std::upper_bound(idx.begin(), idx.end(), i, before), i);
        if (int(idx.size()) > k) idx.pop_back();
    }
    return idx;
}

}  // namespace

std::vector<TopToken> top_tokens(const std::vector<float>& logits, int k) {
    const int V = int(logits.size());
    k = std::clamp(k, 0, V);
    if (V == 0) return {};
    // The softmax's normaliser: Eigen's vectorized exp, blocks of 1024 summed in
    // float, the block sums in double (cast<double> before the sum would not vectorize).
    const Eigen::Map<const Eigen::ArrayXf> a(logits.data(), V);
    const float mx = a.maxCoeff();
    double z = 0;
    for (int b = 0; b < V; b += 1024) z += (a.segment(b, std::min(1024, V - b)) - mx).exp().sum();
    std::vector<TopToken> out;
    out.reserve(k);
    for (int i : top_indices(logits, k))
        out.push_back({i, float(std::exp(double(logits[i]) - mx) / z), logits[i]});
    return out;
}

int sample_token(const std::vector<float>& logits, const SamplingOptions& opt, int step) {
    if (logits.empty()) throw Error("sample_token: empty logits");
    for (float x : logits)
        if (std::isnan(x)) throw Error("sample_token: the model produced NaN logits (check the weights)");
    if (opt.temperature <= 0.f) {
        return int(std::max_element(logits.begin(), logits.end()) - logits.begin());  // first max wins
    }
    const int V = int(logits.size());
    const int k = (opt.top_k > 0 && opt.top_k < V) ? opt.top_k : V;
    std::vector<TopToken> cand = top_tokens(logits, k);
    // Re-weight the candidates at the temperature.
    std::vector<double> w(cand.size());
    const double mx = cand[0].logit;
    for (size_t i = 0; i < cand.size(); ++i) w[i] = std::exp((double(cand[i].logit) - mx) / opt.temperature);
    // The stream for step s depends only on (seed, s): back() then step() picks the same.
    std::mt19937_64 rng = step_stream(opt.seed, step, kSaltSample);
    std::discrete_distribution<int> dist(w.begin(), w.end());
    return cand[dist(rng)].id;
}

std::mt19937_64 step_stream(uint64_t seed, int step, uint32_t salt) {
    std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(step), salt};
    return std::mt19937_64(seq);
}

std::vector<double> token_probs(const std::vector<float>& logits, const SamplingOptions& opt) {
    if (logits.empty()) throw Error("token_probs: empty logits");
    const int V = int(logits.size());
    std::vector<double> p(V, 0.0);
    if (opt.temperature <= 0.f) {
        p[std::max_element(logits.begin(), logits.end()) - logits.begin()] = 1.0;
        return p;
    }
    const int k = (opt.top_k > 0 && opt.top_k < V) ? opt.top_k : V;
    const std::vector<TopToken> cand = top_tokens(logits, k);
    const double mx = cand[0].logit;
    double z = 0;
    for (const TopToken& c : cand) z += p[c.id] = std::exp((double(c.logit) - mx) / opt.temperature);
    for (const TopToken& c : cand) p[c.id] /= z;
    return p;
}

Session::Session(const Model& model, std::shared_ptr<Engine> engine, const CachePolicy& policy)
    : model_(model), engine_(std::move(engine)) {
    if (!engine_) throw Error("Session: no engine");
    trace_opts_ = trace_options_for(model_.config);  // large models: the selected head only
    new_cache(policy);
}

void Session::new_cache(const CachePolicy& p) {
    check_policy(p, "cache policy");
    cache_ = engine_->make_cache(p);
    cache_->set_keep_unrounded(trace_opts_.record);
    if (engine32_) f32_ = std::make_unique<StepReference>(*engine32_, p);  // the same policy, f32 weights
}

void Session::set_policy(const CachePolicy& p) {
    new_cache(p);
    reset();
}

void Session::set_measure_vs_full(bool on) {
    if (!on) full_.reset();
    else if (!full_) full_ = std::make_unique<StepReference>(*engine_);
}

void Session::set_measure_vs_f32(std::shared_ptr<Engine> f32_engine) {
    engine32_ = std::move(f32_engine);
    f32_ = engine32_ ? std::make_unique<StepReference>(*engine32_, policy()) : nullptr;
}

void Session::set_trace_options(const TraceOptions& t) {
    trace_opts_ = t;
    // The unrounded rows are kept from the first step on, or not at all.
    if (cache_->n_pos() == 0) cache_->set_keep_unrounded(t.record);
}

void check_prompt_ids(const ModelConfig& c, const std::vector<int>& ids, int n_before) {
    if (ids.empty()) throw Error("prompt: empty (type at least one word)");
    if (int(ids.size()) + n_before > c.n_ctx)
        throw Error("prompt: " + std::to_string(ids.size()) + " tokens" +
                    (n_before ? " after " + std::to_string(n_before) + " stale cache rows" : std::string()) +
                    ", but the model's context holds " + std::to_string(c.n_ctx));
    for (int id : ids)
        if (id < 0 || id >= c.vocab_size)
            throw Error("prompt: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(c.vocab_size) + ")");
}

void Session::set_prompt_ids(std::vector<int> ids) {
    check_prompt_ids(model_.config, ids);
    prompt_ = std::move(ids);
    reset();
}

Encoding Session::set_prompt_text(const std::string& text) {
    if (!model_.tokenizer)
        throw Error("prompt: model '" + model_.name + "' has no tokenizer; give token ids instead");
    Encoding enc = model_.tokenizer->encode(text);
    set_prompt_ids(enc.ids);
    return enc;
}

void Session::reset() {
    history_.clear();
    tokens_ = prompt_;
    stale_.clear();
    cache_->clear();
}

void Session::set_prompt_keeping_stale_cache(std::vector<int> ids) {
    if (!cache_on_) throw Error("keep the stale cache: only with the cache on (without it nothing is kept)");
    // Every row the cache holds now (earlier stale rows, this prompt, fed tokens) goes stale.
    std::vector<int> stale = stale_;
    stale.insert(stale.end(), tokens_.begin(), tokens_.begin() + (n_fed() - stale_rows()));
    check_prompt_ids(model_.config, ids, int(stale.size()));
    prompt_ = std::move(ids);
    history_.clear();
    tokens_ = prompt_;
    stale_ = std::move(stale);
    cache_->truncate(stale_rows());  // keeps them: that is the bug
}

void Session::set_cache(bool on) { cache_on_ = on; }

int Session::n_fed() const {
    if (history_.empty()) return stale_rows();
    return stale_rows() + int(prompt_.size()) + n_steps() - 1;
}

bool Session::can_step(std::string* why_not) const {
    auto no = [&](const std::string& w) {
        if (why_not) *why_not = w;
        return false;
    };
    if (prompt_.empty()) return no("no prompt");
    // The next step feeds tokens up to position len-1.
    if (stale_rows() + int(tokens_.size()) > model_.config.n_ctx)
        return no("the context is full (" + std::to_string(model_.config.n_ctx) + " tokens)");
    return true;
}

const StepTrace& Session::step() {
    std::string why;
    if (!can_step(&why)) throw Error("step: " + why);
    const int s = n_steps();
    const int p = int(prompt_.size());
    const int z = stale_rows();  // 0 unless the stale-cache bug is being shown
    if (z > 0 && !cache_on_)
        throw Error("step: the stale-cache demonstration runs with the cache on (Reset clears it)");
    const int n_known = s == 0 ? z : z + p + s - 1;  // positions earlier steps computed

    ForwardRequest req;
    req.trace_opts = trace_opts_;
    if (s == 0 || !cache_on_) {
        req.start_pos = z;
        req.ids = std::span<const int>(tokens_.data(), size_t(p + s));
    } else {
        req.start_pos = z + p + s - 1;
        req.ids = std::span<const int>(tokens_.data() + p + s - 1, 1);
    }
    req.n_known = n_known;

    // Without the cache, keep the rows about to be recomputed so the trace can show
    // they come out identical (lesson point 2).
    RowsBefore before;
    const int cached_before = std::min(cache_->n_pos(), n_known);
    const bool compare_rows = req.start_pos < cached_before && trace_opts_.record;
    if (compare_rows) keep_rows_before(cached_before, before);

    StepTrace tr;
    tr.step = s;
    tr.phase = s == 0 ? Phase::prefill : Phase::decode;
    tr.cache_on = cache_on_;
    engine_->forward(req, *cache_, tr);
    if (compare_rows) compare_recomputed(before, tr);
    if (full_ && !policy().is_default()) tr.vs_full = full_->compare(tr);
    if (f32_) tr.vs_f32 = f32_->compare(tr);

    tr.top = top_tokens(tr.logits, sampling_.n_top);
    tr.next_id = sample_token(tr.logits, sampling_, s);

    // Bound memory for large vocabularies: only the newest step keeps its logits.
    if (model_.config.vocab_size > 8192 && !history_.empty()) {
        history_.back().logits.clear();
        history_.back().logits.shrink_to_fit();
    }
    tokens_.push_back(tr.next_id);
    history_.push_back(std::move(tr));
    return history_.back();
}

bool Session::back() {
    if (history_.empty()) return false;
    history_.pop_back();
    tokens_.pop_back();
    cache_->truncate(n_fed());
    return true;
}

template <class F>
void Session::for_recorded_heads(F&& fn) const {
    const ModelConfig& c = model_.config;
    for (int l = 0; l < c.n_layer; ++l)
        for (int h = 0; h < c.n_head; ++h)
            if (trace_opts_.all_heads || (l == trace_opts_.layer && h == trace_opts_.head)) fn(l, h, c.kv_head_of(h));
}

// Rows of positions [0, upto) per recorded head, as computed (the unrounded rows
// of an f16/int8 cache when it keeps them, else as stored); held[pos] says whether
// the cache held the position.
void Session::keep_rows_before(int upto, RowsBefore& before) const {
    before.held.assign(size_t(upto), false);
    for (int p = 0; p < upto; ++p) before.held[size_t(p)] = cache_->slot_of(p) >= 0;
    for_recorded_heads([&](int l, int, int g) {
        RowMat k, v;
        if (!cache_->read_positions(l, g, k, v, true)) cache_->read_positions(l, g, k, v);
        before.rows.emplace_back(k.topRows(upto), v.topRows(upto));
    });
}

// The largest difference between a recomputed row and the row the cache held for
// the same position before the step.
void Session::compare_recomputed(const RowsBefore& before, StepTrace& tr) const {
    const int upto = int(before.held.size());
    size_t i = 0;
    for_recorded_heads([&](int l, int h, int) {
        const auto& [k0, v0] = before.rows[i++];
        for (auto& ht : tr.heads) {
            if (ht.layer != l || ht.head != h) continue;
            float d = 0;
            for (int r = 0; r < ht.k.rows(); ++r) {
                const int pos = ht.first_pos + r;
                if (pos >= upto) break;
                if (!before.held[size_t(pos)]) continue;
                if (ht.latent.size() > 0) {  // MLA: the cache holds the latent row
                    d = std::max(d, (ht.latent.row(r) - k0.row(pos)).cwiseAbs().maxCoeff());
                    continue;
                }
                d = std::max(d, (ht.k.row(r) - k0.row(pos)).cwiseAbs().maxCoeff());
                d = std::max(d, (ht.v.row(r) - v0.row(pos)).cwiseAbs().maxCoeff());
            }
            ht.recompute_max_diff = d;
        }
    });
}

std::vector<int> Session::compute_counts() const {
    std::vector<int> counts(tokens_.size(), 0);
    for (const auto& t : history_)
        for (int pos = t.start_pos; pos < t.start_pos + int(t.input_ids.size()); ++pos)
            if (pos - stale_rows() >= 0 && pos - stale_rows() < int(counts.size())) ++counts[pos - stale_rows()];
    return counts;
}

Counters Session::totals() const {
    Counters c;
    for (const auto& t : history_) c += t.counters;
    return c;
}

}  // namespace kv
