// The main and compare sessions in lockstep, and their views.
#include "ui/runtime/session_pair.h"

#include <algorithm>

#include "core/error.h"
#include "core/model/model_io.h"
#include "ui/runtime/prompt_choice.h"

namespace kvui {

SessionPair::SessionPair(std::unique_ptr<kv::Session> main, std::unique_ptr<kv::Session> other, bool own_policy)
    : main_(std::move(main)), other_(std::move(other)), own_policy_(own_policy) {}

void SessionPair::step() {
    std::string why;
    if (!main_->can_step(&why)) throw kv::Error(why.empty() ? "cannot step" : why);
    main_->step();
    if (other_ && other_->can_step()) other_->step();
}

void SessionPair::keep_valid_prefix() {
    main_prefix_ = std::min(main_prefix_, main_->n_steps());
    if (other_) other_prefix_ = std::min(other_prefix_, other_->n_steps());
}

void SessionPair::back() {
    main_->back();
    if (other_) other_->back();
    keep_valid_prefix();
}

void SessionPair::back_to(int n_steps) {
    const int keep = std::max(0, n_steps);
    while (main_->n_steps() > keep && main_->back()) {
    }
    if (other_)
        while (other_->n_steps() > keep && other_->back()) {
        }
    keep_valid_prefix();
}

void SessionPair::reset() {
    main_->reset();
    if (other_ && stale_)
        while (other_->back()) {  // back to before its prompt's prefill: the stale rows stay
        }
    else if (other_) other_->reset();
    main_prefix_ = other_prefix_ = 0;
}

void SessionPair::set_cache(bool on) {
    main_->set_cache(on);
    if (other_ && !stale_) other_->set_cache(own_policy_ ? on : !on);
}

void SessionPair::prompt_changed() {
    if (other_ && stale_) build_stale(other_->cache().policy(), other_->trace_options());
    else if (other_) other_->set_prompt_ids(main_->prompt_ids());
    main_prefix_ = other_prefix_ = 0;
}

void SessionPair::set_sampling(const kv::SamplingOptions& s) {
    main_->set_sampling(s);
    if (other_) other_->set_sampling(s);
}

void SessionPair::set_policy(const kv::CachePolicy& p) {
    main_->set_policy(p);
    if (other_ && stale_) build_stale(p, other_->trace_options());
    else if (other_ && !own_policy_) other_->set_policy(p);
    if (other_ && own_policy_) other_->reset();  // lockstep: both start again
    main_prefix_ = other_prefix_ = 0;
}

void SessionPair::set_trace_options(const kv::TraceOptions& t) {
    if (main_) main_->set_trace_options(t);
    if (other_) other_->set_trace_options(t);
}

void SessionPair::start_compare(const kv::Model& model, const kv::CachePolicy& policy, const kv::TraceOptions& t,
                                bool own_policy) {
    if (other_ && !stale_) return;
    stop_compare();
    own_policy_ = own_policy;
    other_ = std::make_unique<kv::Session>(model, main_->shared_engine(), policy);
    other_->set_measure_vs_f32(main_->f32_engine());
    other_->set_measure_vs_full(true);
    other_->set_trace_options(t);
    other_->set_sampling(main_->sampling());
    other_->set_prompt_ids(main_->prompt_ids());
    other_->set_cache(own_policy ? main_->cache_on() : !main_->cache_on());
    other_prefix_ = 0;
    while (other_->n_steps() < main_->n_steps() && other_->can_step()) other_->step();
}

void SessionPair::stop_compare() {
    other_.reset();
    other_view_ = SessionView{};
    other_prefix_ = 0;
    stale_ = false;
}

void SessionPair::start_stale_demo(const kv::CachePolicy& policy, const kv::TraceOptions& t,
                                   const std::string& first_text, int first_steps) {
    stop_compare();
    kv::Session first(main_->model(), main_->shared_engine(), policy);
    set_session_prompt(first, first_text);  // text through the tokenizer, or ids
    stale_first_ids_ = first.prompt_ids();
    stale_first_steps_ = first_steps;
    build_stale(policy, t);
}

void SessionPair::build_stale(const kv::CachePolicy& policy, const kv::TraceOptions& t) {
    other_ = std::make_unique<kv::Session>(main_->model(), main_->shared_engine(), policy);
    other_->set_measure_vs_f32(main_->f32_engine());
    other_->set_trace_options(t);
    other_->set_sampling(main_->sampling());
    other_->set_prompt_ids(stale_first_ids_);
    for (int i = 0; i < stale_first_steps_ && other_->can_step(); ++i) other_->step();
    other_->set_prompt_keeping_stale_cache(main_->prompt_ids());  // the bug, on purpose
    while (other_->n_steps() < main_->n_steps() && other_->can_step()) other_->step();
    other_prefix_ = 0;
    stale_ = true;
}

namespace {

// Copies the history entries from `prefix` on, then the session's current state.
void fill_view(const kv::Session& s, SessionView& v, int& prefix, int layer, int kv_head) {
    const auto& h = s.history();
    prefix = std::min(prefix, static_cast<int>(h.size()));
    prefix = std::min(prefix, static_cast<int>(v.history.size()));
    v.history.resize(prefix);
    for (size_t i = prefix; i < h.size(); ++i)
        v.history.push_back(std::make_shared<const kv::StepTrace>(h[i]));
    prefix = static_cast<int>(h.size());
    v.valid = true;
    v.cache_on = s.cache_on();
    v.prompt_ids = s.prompt_ids();
    v.tokens = s.tokens();
    v.compute_counts = s.compute_counts();
    v.stale_ids = s.stale_ids();
    v.totals = s.totals();
    v.why_not.clear();
    v.can_step = s.can_step(&v.why_not);
    fill_cache_view(s.cache(), s.model().config, layer, kv_head, v);
}

}  // namespace

void fill_cache_view(const kv::KVCache& cache, const kv::ModelConfig& c, int layer, int kv_head, SessionView& v) {
    v.cache_rows = cache.n_used();
    v.cache_bytes = cache.bytes();
    v.policy = cache.policy();
    v.cache_positions = cache.n_pos();
    v.slot_pos.clear();
    for (const kv::KVCell& cell : cache.cells()) v.slot_pos.push_back(cell.pos);
    v.held.assign(size_t(cache.n_pos()), false);
    for (int p = 0; p < cache.n_pos(); ++p) v.held[size_t(p)] = cache.slot_of(p) >= 0;
    v.cache_layer = std::clamp(layer, 0, c.n_layer - 1);
    v.cache_kv_head = std::clamp(kv_head, 0, c.n_kv_head - 1);
    cache.read_positions(v.cache_layer, v.cache_kv_head, v.cache_k, v.cache_v);
    if (!cache.read_positions(v.cache_layer, v.cache_kv_head, v.cache_k_f32, v.cache_v_f32, true)) {
        v.cache_k_f32.resize(0, c.cache_k_width());
        v.cache_v_f32.resize(0, c.cache_v_width());
    }
}

void SessionPair::fill_views(int layer, int kv_head) {
    if (!main_) return;
    fill_view(*main_, main_view_, main_prefix_, layer, kv_head);
    if (other_) fill_view(*other_, other_view_, other_prefix_, layer, kv_head);
}

}  // namespace kvui
