#include "core/session/step_reference.h"

#include <algorithm>
#include <cmath>

namespace kv {

namespace {

int first_max(const std::vector<float>& x) { return int(std::max_element(x.begin(), x.end()) - x.begin()); }

}  // namespace

LogitDiff logit_difference(const std::vector<float>& logits, const std::vector<float>& reference) {
    LogitDiff r;
    if (logits.empty() || logits.size() != reference.size()) {
        r.max_abs_logit_diff = INFINITY;
        r.same_top1 = false;
        return r;
    }
    float d = 0.f;
    for (size_t j = 0; j < logits.size(); ++j) d = std::max(d, std::abs(logits[j] - reference[j]));
    for (size_t j = 0; j < logits.size(); ++j)
        if (std::isnan(logits[j]) || std::isnan(reference[j])) d = INFINITY;
    r.max_abs_logit_diff = d;
    r.ref_top1 = first_max(reference);
    r.same_top1 = first_max(logits) == r.ref_top1;
    return r;
}

StepReference::StepReference(Engine& engine, const CachePolicy& policy)
    : engine_(engine), cache_(engine.make_cache(policy)) {}

LogitDiff StepReference::compare(const StepTrace& t) {
    ForwardRequest req;
    req.ids = t.input_ids;
    req.start_pos = std::min(t.start_pos, cache_->n_pos());
    req.n_known = t.n_known;
    req.trace_opts.record = false;
    if (req.start_pos != t.start_pos) return LogitDiff{};  // joined after the prefill: it lacks the earlier tokens
    engine_.forward(req, *cache_, ref_);
    const LogitDiff r = logit_difference(t.logits, ref_.logits);
    worst_ = std::max(worst_, r.max_abs_logit_diff);
    same_top1_ += r.same_top1;
    return r;
}

}  // namespace kv
