// Narration: the latest step in plain words, with its own numbers (from the trace's
// counters, not from formulas).
#include <imgui.h>

#include <cstdio>
#include <string>

#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

std::string quoted_run(const AppState& app, const std::vector<int>& ids, size_t max_n = 8) {
    std::string s;
    for (size_t i = 0; i < ids.size() && i < max_n; ++i) s += (i ? " " : "") + app.token_text(ids[i]);
    if (ids.size() > max_n) s += " ...";
    return "'" + s + "'";
}

std::string rows_range(int a, int b) {  // [a, b]
    return a == b ? "row " + std::to_string(a) : "rows " + std::to_string(a) + "-" + std::to_string(b);
}

std::string cap(std::string s) {
    if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
    return s;
}

}  // namespace

std::string narrate(const AppState& app) {
    const SessionView& v = app.main;
    const int p = static_cast<int>(v.prompt_ids.size());
    const kv::StepTrace* t = v.last();
    if (!app.model) return "No model is loaded.";
    const kv::ModelConfig& c = app.model->config;
    if (!t) {
        if (p == 0) return "Type a prompt and press Set.";
        return "Ready. Press Space (or Step) to run the prefill: all " + std::to_string(p) +
               " prompt tokens enter the model together and their K and V fill the first " + std::to_string(p) +
               " cache rows. The cache is " + (v.cache_on ? "ON." : "OFF.");
    }
    const int n = static_cast<int>(t->input_ids.size());
    const kv::Counters& k = t->counters;
    const std::string L = std::to_string(c.n_layer), Hkv = std::to_string(c.n_kv_head);
    std::string s = "Step " + std::to_string(t->step) + ", " + kv::phase_name(t->phase);
    s += t->cache_on ? " (cache on): " : " (cache OFF): ";
    // An MLA model caches one latent row [c_KV | k_R] per token and layer, for every head.
    const bool mla = c.is_mla();
    const std::string rows_word = mla ? " latent rows" : " K/V rows";
    const std::string lh = " (" + std::to_string(k.kv_rows_computed) + rows_word + ": " + L + " layers x " +
                           (mla ? "1, read by all " + std::to_string(c.n_head) + " heads)" : Hkv + " kv heads)");
    if (t->phase == kv::Phase::prefill) {
        s += "all " + std::to_string(n) + " prompt tokens " + quoted_run(app, t->input_ids) +
             " enter the model together. " + (mla ? "Their latent rows [c_KV | k_R]" : "Their K and V") + " become cache " + rows_range(t->start_pos, t->start_pos + n - 1) +
             lh + ".";
    } else if (t->cache_on) {
        const int pos = t->start_pos;
        s += "only " + quoted_run(app, t->input_ids) + " enters the model. " + (mla ? "Its latent row becomes" : "Its K and V become") + " row " +
             std::to_string(pos) + lh + ". ";
        if (pos > 0 && v.policy.windowed())  // only the rows the window reads
            s += "It reads " + std::to_string(t->cache_rows_read) + " of the cache's rows (" +
                 window_ranges(v.policy, pos, true) + "): " + std::to_string(k.kv_rows_reused) + rows_word +
                 " not recomputed.";
        else if (pos > 0)
            s += cap(rows_range(0, pos - 1)) + " are read from the cache: " + std::to_string(k.kv_rows_reused) +
                 rows_word + " not recomputed.";
    } else {
        s += "all " + std::to_string(n) + " tokens enter the model again" + lh + ". ";
        if (k.kv_rows_recomputed > 0) {
            s += cap(rows_range(0, t->n_known - 1)) + " are recomputed (" + std::to_string(k.kv_rows_recomputed) +
                 rows_word + " computed before";
            const kv::HeadTrace* h = t->find_head(app.vs.layer, app.vs.head);
            if (h && h->recompute_max_diff >= 0.f) {
                char d[48];
                std::snprintf(d, sizeof d, "; identical: max |diff| %.1e", h->recompute_max_diff);
                s += d;
            }
            s += ")";
            if (t->n_known < n) s += " and " + rows_range(t->n_known, n - 1) + " is new";
            s += ".";
        }
    }
    s += " Attention: " + std::to_string(k.attn_scores) + " q.k scores. Cache: " + std::to_string(k.cache_rows) +
         " rows, " + human_bytes(static_cast<double>(k.cache_bytes)) + ".";
    if (t->next_id >= 0) {
        char pr[32] = "";
        for (const kv::TopToken& tt : t->top)
            if (tt.id == t->next_id) std::snprintf(pr, sizeof pr, " (p = %.0f%%)", tt.prob * 100.f);
        s += " The model predicts '" + app.token_text(t->next_id) + "'" + pr + ".";
    }
    if (const std::string pol = narrate_policy(app, v); !pol.empty()) s += " " + pol;
    if (const std::string w = vs_f32_sentence(app, *t); !w.empty()) s += " " + w;
    return s;
}

namespace {

// The line under the text when the session cannot step (empty when it can).
std::string why_not_line(const AppState& app) {
    if (app.main.can_step || app.main.why_not.empty() || app.main.n_steps() == 0) return {};
    return app.main.why_not + (app.main.policy.windowed()
                                   ? " (a window keeps positions absolute: GPT-2's learned positions end at n_ctx)"
                                   : "");
}

}  // namespace

float narration_text_height(const std::string& text, const std::string& why, float width, bool big) {
    ImGui::PushFont(big ? big_font() : ImGui::GetFont());
    float h = ImGui::CalcTextSize(wrap_text(text, width).c_str()).y;
    ImGui::PopFont();
    if (!why.empty()) h += ImGui::GetStyle().ItemSpacing.y + ImGui::CalcTextSize(wrap_text(why, width).c_str()).y;
    return h;
}

void draw_narration_text(const std::string& text, const std::string& why) {
    // The big font when the text fits the panel, else the regular one (a policy's
    // sentences make it longer): all of it stays readable without scrolling.
    ImFont* regular = ImGui::GetFont();
    const ImVec2 room = ImGui::GetContentRegionAvail();
    const bool fits = narration_text_height(text, why, room.x, true) <= room.y;
    ImGui::PushFont(fits ? big_font() : regular);
    text_wrapped("%s", text.c_str());
    ImGui::PopFont();
    if (!why.empty()) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().bad));
        text_wrapped("%s", why.c_str());
        ImGui::PopStyleColor();
    }
}

float narration_panel_height(const AppState& app, float width, bool big) {
    return narration_text_height(narrate(app), why_not_line(app), width, big);
}

void draw_narration_panel(AppState& app) { draw_narration_text(narrate(app), why_not_line(app)); }

}  // namespace kvui
