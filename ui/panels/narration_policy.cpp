// The narration's policy sentences (issue 11): what the cache's policy did in the
// latest step, with the model's numbers, and what it cost against full attention in
// f32 on the same tokens (StepTrace::vs_full, measured by kv::StepReference).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/engine/formulas.h"
#include "ui/panels/cache_policy_view.h"

namespace kvui {

float rounding_error(const SessionView& v) {
    if (v.policy.dtype == kv::KvDtype::f32 || v.cache_k_f32.rows() == 0) return -1.f;
    float d = 0.f;
    const int rows = static_cast<int>(std::min(v.cache_k.rows(), v.cache_k_f32.rows()));
    for (int r = 0; r < rows; ++r) {
        if (r >= static_cast<int>(v.held.size()) || !v.held[static_cast<size_t>(r)]) continue;
        d = std::max(d, (v.cache_k.row(r) - v.cache_k_f32.row(r)).cwiseAbs().maxCoeff());
        if (v.cache_v.cols() > 0 && r < v.cache_v_f32.rows())  // MLA: no V part
            d = std::max(d, (v.cache_v.row(r) - v.cache_v_f32.row(r)).cwiseAbs().maxCoeff());
    }
    return d;
}

namespace {

std::string token_at(const AppState& app, const SessionView& v, int pos) {
    return "'" + (pos < static_cast<int>(v.tokens.size()) ? app.token_text(v.tokens[pos]) : std::string("?")) + "'";
}

// "Row 2, 'a', evicted: no later token can attend to it." One row by name, several as
// "Rows 2 ('a') and 3 ('b')", more than three counted.
std::string evicted_sentence(const AppState& app, const SessionView& v, const kv::StepTrace& t) {
    const std::vector<int>& e = t.evicted;
    if (e.empty()) return "";
    const int n = static_cast<int>(e.size());
    std::string s;
    if (n == 1) {
        s = "Row " + std::to_string(e[0]) + ", " + token_at(app, v, e[0]) + ", evicted: no later token can attend to it";
    } else {
        s = "Rows ";
        for (int i = 0; i < std::min(n, 3); ++i)
            s += (i == 0 ? "" : i + 1 == std::min(n, 3) && n <= 3 ? " and " : ", ") + std::to_string(e[i]) + " (" +
                 token_at(app, v, e[i]) + ")";
        if (n > 3) s += " and " + std::to_string(n - 3) + " more";
        s += " evicted: no later token can attend to them";
    }
    return s + " (" + std::to_string(t.counters.kv_rows_evicted) + " K/V rows freed).";
}

// "The newest query (position 10) read 8 of its 11 keys: sinks 0-1 and rows 6-10." For
// a cached decode step the base narration already says which rows it read.
std::string window_sentence(const SessionView& v, const kv::StepTrace& t) {
    if (!v.policy.windowed() || (t.cache_on && t.phase == kv::Phase::decode)) return "";
    const int q = t.start_pos + static_cast<int>(t.input_ids.size()) - 1;
    const int64_t read = kv::keys_read_by(v.policy, q);
    if (read == q + 1) return "";
    return "The newest query (position " + std::to_string(q) + ") read " + std::to_string(read) + " of its " +
           std::to_string(q + 1) + " keys: " + window_ranges(v.policy, q, false) + ".";
}

std::string rounding_sentence(const SessionView& v) {
    const float d = rounding_error(v);
    if (d < 0.f) return "";
    char b[200];
    std::snprintf(b, sizeof b, "Stored as %s: this head's rows differ from f32 by up to %.2g.",
                  kv::dtype_name(v.policy.dtype), d);
    return b;
}

// "Cost vs full attention in f32: max logit difference 0.031, same top token." An MLA
// model's reference reads its latent rows expanded (kv::CachePolicy::is_default), so
// the absorbed read alone is measured against the expanded one.
std::string cost_sentence(const AppState& app, const kv::CachePolicy& pol, const kv::StepTrace& t) {
    if (!t.vs_full.measured()) return "";
    const bool absorbed_only = pol.mla == kv::MlaRead::absorbed && !pol.windowed() && pol.dtype == kv::KvDtype::f32;
    const char* what = absorbed_only                        ? "Absorbed vs expanded read of the same latent rows"
                       : pol.mla == kv::MlaRead::absorbed   ? "Cost vs full attention in f32, read expanded"
                                                            : "Cost vs full attention in f32";
    char b[160];
    std::snprintf(b, sizeof b, "%s: max logit difference %.3g, ", what, t.vs_full.max_abs_logit_diff);
    std::string s = b;
    if (t.vs_full.same_top1) return s + "same top token.";
    return s + "top token changed (" + (absorbed_only ? "expanded" : "full f32") + " would pick '" +
           app.token_text(t.vs_full.ref_top1) + "').";
}

}  // namespace

std::string vs_f32_sentence(const AppState& app, const kv::StepTrace& t) {
    if (!t.vs_f32.measured() || !app.model) return "";
    char b[160];
    std::snprintf(b, sizeof b, "Cost of %s weights vs f32 weights on the same tokens: max logit difference %.3g, ",
                  kv::weight_type_name(app.model->weights.type), t.vs_f32.max_abs_logit_diff);
    std::string s = b;
    if (t.vs_f32.same_top1) return s + "same top token.";
    return s + "top token changed (f32 weights would pick '" + app.token_text(t.vs_f32.ref_top1) + "').";
}

std::string window_ranges(const kv::CachePolicy& pol, int q, bool from_cache) {
    const int last = from_cache ? q - 1 : q;
    const int S = std::min(pol.sinks, last + 1), lo = std::max(S, q - pol.window + 1);
    std::string s;
    if (S > 0) s = S == 1 ? "sink 0" : "sinks 0-" + std::to_string(S - 1);
    if (lo <= last) {
        if (!s.empty()) s += " and ";
        s += lo == last ? "row " + std::to_string(lo) : "rows " + std::to_string(lo) + "-" + std::to_string(last);
    }
    return s;
}

std::string narrate_policy(const AppState& app, const SessionView& v) {
    const kv::StepTrace* t = v.last();
    if (!t || v.policy.is_default()) return "";
    std::string s;
    for (const std::string& part : {evicted_sentence(app, v, *t), window_sentence(v, *t), rounding_sentence(v),
                                    cost_sentence(app, v.policy, *t)})
        if (!part.empty()) s += (s.empty() ? "" : " ") + part;
    return s;
}

}  // namespace kvui
