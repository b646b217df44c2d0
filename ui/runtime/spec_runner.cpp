// The window's speculative decoder: rounds, undo, and the views the panels read.
#include "ui/runtime/spec_runner.h"

#include <algorithm>

#include "core/error.h"
#include "ui/runtime/session_pair.h"

namespace kvui {

void SpecRunner::start(const kv::Model& target, const std::string& target_spec, const std::string& backend,
                       const std::string& draft_spec, int k, const std::vector<int>& prompt_ids,
                       const kv::SamplingOptions& s, const kv::TraceOptions& t) {
    const std::string spec = draft_spec.empty() ? default_draft_spec(target.path.empty() ? target.name : target_spec, target.path) : draft_spec;
    if (spec.empty())
        throw kv::Error("--draft: no tiny-draft folder next to " + target_spec + ": name a draft model folder");
    std::unique_ptr<kv::Model> loaded;
    const kv::Model* draft = draft_.get();
    if (!draft_ || spec != draft_spec_) {
        try {
            loaded = kv::load_model(spec);
        } catch (const kv::Error& e) {
            throw kv::Error(std::string("--draft: ") + e.what());
        }
        draft = loaded.get();
    }
    auto d = std::make_unique<kv::SpecDecoder>(target, kv::make_engine(target, backend), *draft,
                                               kv::make_engine(*draft, backend), k);
    d->set_sampling(s);
    d->set_trace_options(t);
    d->set_prompt_ids(prompt_ids);
    decoder_ = std::move(d);  // the old decoder goes before the draft it reads
    if (loaded) {
        draft_ = std::move(loaded);
        draft_spec_ = spec;
    }
    rounds_.clear();
}

void SpecRunner::stop() {
    decoder_.reset();
    draft_.reset();
    draft_spec_.clear();
    rounds_.clear();
}

void SpecRunner::round() { decoder_->round(); }

void SpecRunner::keep_valid_prefix() {
    rounds_.resize(std::min(rounds_.size(), decoder_->rounds().size()));
}

void SpecRunner::back() {
    decoder_->back();
    keep_valid_prefix();
}

void SpecRunner::back_to(int n_rounds) {
    while (int(decoder_->rounds().size()) > std::max(0, n_rounds) && decoder_->back()) {
    }
    keep_valid_prefix();
}

void SpecRunner::reset() {
    decoder_->reset();
    rounds_.clear();
}

void SpecRunner::set_prompt_ids(const std::vector<int>& ids) {
    decoder_->set_prompt_ids(ids);
    rounds_.clear();
}

void SpecRunner::set_sampling(const kv::SamplingOptions& s) { decoder_->set_sampling(s); }
void SpecRunner::set_trace_options(const kv::TraceOptions& t) { decoder_->set_trace_options(t); }

namespace {

// A published copy of a round whose trace reads like a Session step's: its index,
// its phase (round 0 runs the prompt) and the target's top tokens where it chose.
std::shared_ptr<const kv::SpecRound> publish_round(const kv::SpecRound& src) {
    auto r = std::make_shared<kv::SpecRound>(src);
    kv::StepTrace& t = r->target_trace;
    t.step = r->round;
    t.phase = r->round == 0 ? kv::Phase::prefill : kv::Phase::decode;
    t.cache_on = true;
    if (r->accepted < int(r->target_top.size())) t.top = r->target_top[size_t(r->accepted)];
    return r;
}

// How many times the target computed each position's K/V (rolled-back rows count:
// their positions are computed again by a later round).
std::vector<int> target_compute_counts(const std::vector<kv::SpecRound>& rounds, size_t n_tokens) {
    std::vector<int> counts(n_tokens, 0);
    for (const kv::SpecRound& r : rounds)
        for (int i = 0; i < int(r.target_input.size()); ++i)
            if (size_t(r.start_pos + i) < n_tokens) ++counts[size_t(r.start_pos + i)];
    return counts;
}

// The latest round's rolled-back target rows of one head, from its trace.
void fill_gone_rows(const kv::SpecRound& r, int layer, int head, SpecView& s) {
    s.gone_first = r.target_rows_after;
    const int n = r.target_rows_written - r.target_rows_after;
    const kv::HeadTrace* h = r.target_trace.find_head(layer, head);
    const bool all = h && s.gone_first >= h->first_pos && s.gone_first + n <= h->first_pos + int(h->k.rows());
    s.gone_k = all ? kv::RowMat(h->k.middleRows(s.gone_first - h->first_pos, n)) : kv::RowMat(0, 0);
    s.gone_v = all ? kv::RowMat(h->v.middleRows(s.gone_first - h->first_pos, n)) : kv::RowMat(0, 0);
}

}  // namespace

void SpecRunner::fill_views(int layer, int head, SessionView& target, SpecView& s) {
    const kv::SpecDecoder& d = *decoder_;
    const auto& rs = d.rounds();
    keep_valid_prefix();
    for (size_t i = rounds_.size(); i < rs.size(); ++i) rounds_.push_back(publish_round(rs[i]));
    const kv::ModelConfig& c = d.target().config;
    const int kv_head = c.kv_head_of(std::clamp(head, 0, c.n_head - 1));

    target = SessionView{};
    target.valid = true;
    target.prompt_ids = d.prompt_ids();
    target.tokens = d.tokens();
    for (const auto& r : rounds_) target.history.emplace_back(r, &r->target_trace);  // aliasing: no copy
    target.compute_counts = target_compute_counts(rs, d.tokens().size());
    for (const kv::SpecRound& r : rs) target.totals += r.target_work;
    target.can_step = d.can_round(&target.why_not);
    fill_cache_view(d.target_cache(), c, layer, kv_head, target);

    s = SpecView{};
    s.on = true;
    s.draft_name = draft_->name.empty() ? draft_spec_ : draft_->name;
    s.draft_spec = draft_spec_;
    s.draft_config = draft_->config;
    s.k = d.k();
    s.prompt_ids = d.prompt_ids();
    s.tokens = d.tokens();
    s.rounds = rounds_;
    s.totals = d.totals();
    for (const kv::SpecRound& r : rs) s.target_ms += r.target_ms, s.draft_ms += r.draft_ms;
    s.can_round = target.can_step;
    s.why_not = target.why_not;
    s.layer = target.cache_layer;
    s.kv_head = target.cache_kv_head;
    const kv::ModelConfig& dc = draft_->config;
    s.draft_layer = std::clamp(layer, 0, dc.n_layer - 1);
    s.draft_kv_head = std::clamp(kv_head, 0, dc.n_kv_head - 1);
    s.target_k = target.cache_k;
    s.target_v = target.cache_v;
    d.draft_cache().read_positions(s.draft_layer, s.draft_kv_head, s.draft_k, s.draft_v);
    if (!rs.empty()) fill_gone_rows(rs.back(), layer, std::clamp(head, 0, c.n_head - 1), s);
}

}  // namespace kvui
