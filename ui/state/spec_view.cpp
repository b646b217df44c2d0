// Speculative mode's pure view logic: the phase, the token chips, the rows each round
// wrote and rolled back, the narration and the work chart's numbers.
#include "ui/state/spec_view.h"

#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/model/model_io.h"
#include "ui/state/app_state.h"

namespace kvui {

SpecPhase spec_phase(const AppState& app) {
    if (app.vs.spec.hold == 1) return SpecPhase::written;
    if (app.vs.spec.hold == 2 || !app.vs.animate) return SpecPhase::rolled_back;
    return ImGui::GetTime() - app.vs.step_time < 1.2 ? SpecPhase::written : SpecPhase::rolled_back;
}

const char* spec_tok_state_name(SpecTokState s) {
    switch (s) {
    case SpecTokState::prompt: return "prompt";
    case SpecTokState::generated: return "generated";
    case SpecTokState::drafted: return "drafted";
    case SpecTokState::accepted: return "accepted";
    case SpecTokState::rejected: return "rejected";
    case SpecTokState::target_pick: return "target's token";
    }
    return "";
}

std::vector<SpecChip> spec_chips(const SpecView& v, SpecPhase ph) {
    std::vector<SpecChip> out;
    const kv::SpecRound* r = v.last();
    const int p = static_cast<int>(v.prompt_ids.size());
    const int settled = r ? r->n_tokens_before : static_cast<int>(v.tokens.size());
    for (int i = 0; i < settled && i < static_cast<int>(v.tokens.size()); ++i)
        out.push_back({i, v.tokens[size_t(i)], i < p ? SpecTokState::prompt : SpecTokState::generated, false});
    if (!r) return out;
    const bool verdict = ph == SpecPhase::rolled_back;
    for (int i = 0; i < static_cast<int>(r->proposed.size()); ++i) {
        SpecTokState st = !verdict ? SpecTokState::drafted : i < r->accepted ? SpecTokState::accepted : SpecTokState::rejected;
        out.push_back({settled + i, r->proposed[size_t(i)], st, false});
    }
    if (verdict) out.push_back({settled + r->accepted, r->next_id, SpecTokState::target_pick, r->bonus});
    return out;
}

RoundRows target_round_rows(const kv::SpecRound& r) {
    return {{0, r.target_rows_before}, {r.target_rows_before, r.target_rows_after},
            {r.target_rows_after, r.target_rows_written}};
}

RoundRows draft_round_rows(const kv::SpecRound& r) {
    return {{0, r.draft_rows_before}, {r.draft_rows_before, r.draft_rows_after}, {r.draft_rows_after, r.draft_rows_written}};
}

std::string rows_text(const RowRange& r) {
    if (r.empty()) return "no rows";
    if (r.size() == 1) return "row " + std::to_string(r.first);
    return "rows " + std::to_string(r.first) + "-" + std::to_string(r.end - 1);
}

double expected_speedup(double a, int k, double c) {
    const double denom = k * c + 1.0;
    if (a >= 1.0) return (k + 1) / denom;
    return (1.0 - std::pow(a, k + 1)) / ((1.0 - a) * denom);
}

SpecChart spec_chart(const SpecView& v) {
    SpecChart ch;
    double tok = 0, pass = 0;
    kv::Counters tw, dw;
    for (const auto& r : v.rounds) {
        ch.tokens.push_back(tok += static_cast<double>(r->counters.new_tokens));
        ch.passes.push_back(pass += static_cast<double>(r->counters.target_forwards));
        tw += r->target_work;
        dw += r->draft_work;
    }
    ch.passes_per_token = v.totals.target_forwards_per_token();
    ch.acceptance = v.totals.acceptance_rate();
    // c: the draft's counted FLOPs per token over the target's (what a pass costs per token).
    if (tw.tokens_processed > 0 && dw.tokens_processed > 0 && tw.flops > 0)
        ch.cost_ratio = (double(dw.flops) / double(dw.tokens_processed)) / (double(tw.flops) / double(tw.tokens_processed));
    if (ch.cost_ratio > 0 && v.totals.proposed > 0) ch.expected_speedup = expected_speedup(ch.acceptance, v.k, ch.cost_ratio);
    return ch;
}

std::string default_draft_spec(const std::string& target_spec, const std::string& target_path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    // NAME-draft beside a folder NAME (tiny-llama-draft for tiny-llama: the same
    // family), else tiny-draft.
    auto sibling = [&](const std::string& dir) -> std::string {
        if (dir.empty()) return "";
        const fs::path d0 = fs::path(dir).lexically_normal();
        const fs::path d = d0.has_filename() ? d0 : d0.parent_path();
        for (const fs::path& cand : {d.parent_path() / (d.filename().string() + "-draft"), d.parent_path() / "tiny-draft"}) {
            if (!fs::is_regular_file(cand / "config.json", ec)) continue;
            if (fs::equivalent(cand, d, ec)) continue;  // the target is the draft itself
            return cand.lexically_normal().string();
        }
        return "";
    };
    if (const std::string s = sibling(target_path); !s.empty()) return s;
    if (target_spec.starts_with("random:")) {  // random:SHAPE[:SEED]: the same shape, the next seed
        const std::string rest = target_spec.substr(7);
        const size_t colon = rest.find(':');
        const std::string shape = rest.substr(0, colon);
        unsigned long long seed = 0;
        if (colon != std::string::npos) seed = std::strtoull(rest.c_str() + colon + 1, nullptr, 10);
        return "random:" + shape + ":" + std::to_string(seed + 1);
    }
    return sibling(kv::default_model_dir());
}

namespace {

std::string quoted(const AppState& app, const std::vector<int>& ids, size_t from, size_t to) {
    std::string s;
    for (size_t i = from; i < to && i < ids.size(); ++i) s += (i > from ? " " : "") + app.token_text(ids[i]);
    return "'" + s + "'";
}

std::string plural(int64_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

// "Round 2 (k = 4): the draft proposed 'a b c d' in 4 passes of its own; the target
// checked them in 1 pass over positions 9-13, writing rows 9-13 of its cache."
std::string narrate_written(const AppState& app, const kv::SpecRound& r) {
    const int k = static_cast<int>(r.proposed.size());
    const RoundRows t = target_round_rows(r);
    const RowRange written{t.kept.first, t.rolled_back.end};
    std::string s = "Round " + std::to_string(r.round) + " (k = " + std::to_string(k) + "): ";
    if (k == 0)
        s += "no room for drafts: the target runs one plain step.";
    else
        s += "the draft proposed " + quoted(app, r.proposed, 0, size_t(k)) + " in " +
             plural(r.counters.draft_forwards, "pass", "passes") + " of its own, writing " +
             rows_text({draft_round_rows(r).kept.first, draft_round_rows(r).rolled_back.end}) + " of its cache. ";
    s += "The target checked all of them in 1 pass over " + plural(int64_t(r.target_input.size()), "token", "tokens");
    if (r.round == 0) s += " (the prompt too)";
    s += ", writing " + rows_text(written) + " of its cache.";
    return s;
}

// "3 of 4 drafted tokens accepted; 'x' rejected, the target chose 'y'; 1 target pass
// made 4 tokens; rows 12-13 rolled back from the target's cache, row 12 from the draft's."
std::string narrate_verdict(const AppState& app, const kv::SpecRound& r) {
    const int k = static_cast<int>(r.proposed.size()), a = r.accepted;
    const std::string next = "'" + app.token_text(r.next_id) + "'";
    std::string s = "Round " + std::to_string(r.round) + ": ";
    if (k == 0) {
        s += "no room for drafts; 1 target pass made 1 token, " + next + ".";
        return s;
    }
    s += std::to_string(a) + " of " + plural(k, "drafted token", "drafted tokens") + " accepted";
    if (a > 0) s += " (" + quoted(app, r.proposed, 0, size_t(a)) + ")";
    if (r.bonus) s += "; the same pass gives the bonus token " + next;
    else s += "; '" + app.token_text(r.proposed[size_t(a)]) + "' rejected, the target chose " + next + " instead";
    s += "; 1 target pass made " + plural(r.counters.new_tokens, "token", "tokens") + "; ";
    const RowRange tb = target_round_rows(r).rolled_back, db = draft_round_rows(r).rolled_back;
    if (tb.empty() && db.empty()) return s + "nothing rolled back.";
    s += tb.empty() ? "no target rows" : rows_text(tb);
    s += " rolled back from the target's cache";
    s += db.empty() ? " (the draft had not written them)." : ", " + rows_text(db) + " from the draft's.";
    return s;
}

std::string narrate_totals(const SpecView& v) {
    const kv::SpecCounters& t = v.totals;
    char b[160];
    std::snprintf(b, sizeof b, " (%.2f per token; plain decoding: 1.00), %lld draft passes, %lld of %lld drafts accepted (%.0f%%).",
                  t.target_forwards_per_token(), static_cast<long long>(t.draft_forwards),
                  static_cast<long long>(t.accepted), static_cast<long long>(t.proposed), 100.0 * t.acceptance_rate());
    return " So far: " + plural(t.new_tokens, "token", "tokens") + " in " +
           plural(t.target_forwards, "target pass", "target passes") + b;
}

}  // namespace

std::string narrate_spec(const AppState& app, SpecPhase ph) {
    const SpecView& v = app.spec;
    const kv::SpecRound* r = v.last();
    if (!r)
        return "Speculative decoding (draft " + v.draft_name + ", k = " + std::to_string(v.k) +
               "). Press Step: the draft proposes " + std::to_string(v.k) +
               " tokens one by one, the target checks them all in ONE pass, and the rows of rejected tokens are "
               "rolled back from both caches.";
    if (ph == SpecPhase::written) return narrate_written(app, *r);
    return narrate_verdict(app, *r) + narrate_totals(v);
}

}  // namespace kvui
