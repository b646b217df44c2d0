// Speculative mode's panels: the mode's controls, the tokens (drafts dashed, then
// accepted green or rejected red and struck), the narration and the work chart of
// target passes per generated token; both caches are in spec_cache_panel.cpp. The
// pure parts live in ui/state/spec_view.cpp.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

Command spec_command(const AppState& app, bool on, int k) {
    Command c{CommandKind::set_speculative};
    c.flag = on;
    c.text = app.vs.spec.draft_text;
    c.n = k;
    return c;
}

}  // namespace

// ---- controls ------------------------------------------------------------------------

void draw_spec_controls(AppState& app) {
    SpecChoice& sc = app.vs.spec;
    const float fs = ImGui::GetFontSize();
    flow(fs * 9);
    ImGui::BeginDisabled(app.busy || !app.model);
    bool on = app.spec.on;
    if (ImGui::Checkbox("Speculative", &on)) {
        app.push(spec_command(app, on, sc.k));
        app.vs.playing = false;
    }
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("Speculative decoding: a small draft model proposes k tokens, the target checks them\n"
                          "in one pass; each Step runs one round. Uses full f32 caches.");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 4.5f);
    int k = sc.k;
    if (ImGui::InputInt("k##draftk", &k)) {
        sc.k = std::clamp(k, 1, 16);
        if (app.spec.on) app.push(spec_command(app, true, sc.k));
    }
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("drafts per round (1..16); a change starts again from the prompt");
    if (app.spec.on) {
        flow(ImGui::CalcTextSize("Draft:").x + fs * 8.5f);
        ImGui::AlignTextToFramePadding();
        ImGui::TextUnformatted("Draft:");
        ImGui::SameLine();
        ImGui::SetNextItemWidth(fs * 8);
        if (sc.draft_text.empty()) sc.draft_text = app.spec.draft_spec;
        if (ImGui::InputText("##draft", &sc.draft_text, ImGuiInputTextFlags_EnterReturnsTrue))
            app.push(spec_command(app, true, sc.k));
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("the draft model's folder (Enter loads it)");
    }
    ImGui::EndDisabled();
}

// ---- tokens -----------------------------------------------------------------------------

namespace {

struct ChipLook {
    std::string text, above, below;  // the token, "7" or "7 draft", "x2" / "accepted"
    float w = 0;
};

ChipLook chip_look(const AppState& app, const SpecChip& c) {
    ChipLook l;
    l.text = app.token_text(c.id);
    l.above = std::to_string(c.pos);
    switch (c.state) {
    case SpecTokState::prompt:
    case SpecTokState::generated: {
        const auto& cc = app.main.compute_counts;
        l.below = size_t(c.pos) < cc.size() ? "x" + std::to_string(cc[size_t(c.pos)]) : "";
        break;
    }
    case SpecTokState::drafted: l.below = "draft"; break;
    case SpecTokState::accepted: l.below = "accepted"; break;
    case SpecTokState::rejected: l.below = "rejected"; break;
    case SpecTokState::target_pick: l.below = c.bonus ? "bonus" : "target"; break;
    }
    const float pad = ImGui::GetFontSize() * 0.35f, small = 0.8f;
    l.w = std::max(ImGui::CalcTextSize(l.text.c_str()).x + pad * 2, ImGui::CalcTextSize(l.below.c_str()).x * small + 4);
    l.w = std::max(l.w, ImGui::GetFontSize() * 1.6f);
    return l;
}

void draw_spec_chip(const SpecChip& c, const ChipLook& l, ImVec2 cur, float chip_h) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = ImGui::GetFontSize(), pad = fs * 0.35f;
    const ImVec2 a(cur.x, cur.y + fs * 0.8f), b(cur.x + l.w, a.y + chip_h);
    ImU32 text = pal.text, below = pal.text_dim;
    switch (c.state) {
    case SpecTokState::prompt:
    case SpecTokState::generated:
        dl->AddRectFilled(a, b, pal.chip, 5.f);
        dl->AddLine(ImVec2(a.x + 3, b.y - 2), ImVec2(b.x - 3, b.y - 2),
                    c.state == SpecTokState::prompt ? pal.prefill : pal.decode, 3.f);
        break;
    case SpecTokState::drafted:
        dashed_rect(dl, a, b, pal.accent, 2.f);
        below = pal.accent;
        break;
    case SpecTokState::accepted:
        dl->AddRectFilled(a, b, with_alpha(pal.good, 0.3f), 5.f);
        dl->AddRect(a, b, pal.good, 5.f, 0, 3.f);
        below = pal.good;
        break;
    case SpecTokState::rejected:
        dl->AddRect(a, b, pal.bad, 5.f, 0, 2.f);
        text = with_alpha(pal.text, 0.55f);
        below = pal.bad;
        break;
    case SpecTokState::target_pick:
        dl->AddRectFilled(a, b, pal.chip_current, 5.f);
        dl->AddRect(a, b, pal.accent, 5.f, 0, 3.f);
        below = pal.accent;
        break;
    }
    dl->AddText(ImVec2(a.x + pad, a.y + pad), text, l.text.c_str());
    if (c.state == SpecTokState::rejected)  // struck through
        dl->AddLine(ImVec2(a.x + 2, (a.y + b.y) * 0.5f), ImVec2(b.x - 2, (a.y + b.y) * 0.5f), pal.bad, 2.5f);
    dl->AddText(ImGui::GetFont(), fs * 0.8f, ImVec2(a.x + 2, cur.y), pal.text_dim, l.above.c_str());
    dl->AddText(ImGui::GetFont(), fs * 0.8f, ImVec2(a.x + 2, b.y + 2), below, l.below.c_str());
}

void spec_chip_tooltip(const AppState& app, const SpecChip& c) {
    const std::string t = app.token_text(c.id);
    switch (c.state) {
    case SpecTokState::drafted:
        ImGui::SetTooltip("'%s' drafted for position %d; the target checks it in this round's one pass", t.c_str(), c.pos);
        break;
    case SpecTokState::accepted:
        ImGui::SetTooltip("'%s' drafted and accepted: the target agrees at position %d", t.c_str(), c.pos);
        break;
    case SpecTokState::rejected:
        ImGui::SetTooltip("'%s' drafted for position %d and rejected: its K/V rows are rolled back", t.c_str(), c.pos);
        break;
    case SpecTokState::target_pick:
        ImGui::SetTooltip("'%s': the target's own token at position %d (%s); it enters the caches next round",
                          t.c_str(), c.pos, c.bonus ? "bonus: every draft was accepted" : "after the first rejection");
        break;
    default: {
        const auto& cc = app.main.compute_counts;
        const int n = size_t(c.pos) < cc.size() ? cc[size_t(c.pos)] : 0;
        ImGui::SetTooltip("position %d, id %d: the target computed its K/V %d time%s", c.pos, c.id, n, n == 1 ? "" : "s");
    }
    }
}

std::vector<std::pair<ImU32, const char*>> spec_token_keys() {
    const Palette& pal = palette();
    return {{pal.accent, "drafted (dashed)"}, {pal.good, "accepted"}, {pal.bad, "rejected (struck)"},
            {pal.prefill, "prompt"}, {pal.decode, "generated"}};
}

float spec_key_item_w(const char* txt) { return ImGui::GetFontSize() * 2.4f + ImGui::CalcTextSize(txt).x; }

// The whole key on one line.
float spec_token_key_w() {
    float w = 0;
    for (const auto& k : spec_token_keys()) w += spec_key_item_w(k.second);
    return w;
}

// The key, from `at`; a key that does not fit wraps to x0.
void draw_spec_token_key(ImVec2 at, float x0) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = ImGui::GetFontSize();
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    float x = at.x;
    for (const auto& [col, txt] : spec_token_keys()) {
        const float w = spec_key_item_w(txt);
        if (x + w > right && x > x0) {
            x = x0;
            at.y += fs * 1.3f;
        }
        dl->AddLine(ImVec2(x, at.y + fs * 0.6f), ImVec2(x + fs, at.y + fs * 0.6f), col, 3.f);
        dl->AddText(ImVec2(x + fs * 1.3f, at.y), pal.text_dim, txt);
        x += w;
    }
    ImGui::SetCursorScreenPos(ImVec2(x0, at.y + fs * 1.3f));
    ImGui::Dummy(ImVec2(1, 1));
}

}  // namespace

void draw_spec_tokens_panel(AppState& app) {
    const std::vector<SpecChip> chips = spec_chips(app.spec, spec_phase(app));
    if (chips.empty()) {
        ImGui::TextColored(to_vec4(palette().text_dim), "No prompt yet: type one above and press Set.");
        return;
    }
    const float fs = ImGui::GetFontSize(), pad = fs * 0.35f, chip_h = fs + pad * 2;
    const float row_h = fs * 0.8f + chip_h + fs * 0.8f + 8.f, gap = fs * 0.4f;
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    ImVec2 cur = ImGui::GetCursorScreenPos();
    const float x0 = cur.x;
    const kv::SpecRound* r = app.spec.last();
    const size_t first_new = r ? static_cast<size_t>(r->n_tokens_before) : chips.size() - 1;  // the round's first chip
    float round_y = cur.y;
    for (size_t i = 0; i < chips.size(); ++i) {
        const ChipLook l = chip_look(app, chips[i]);
        if (cur.x + l.w > right && cur.x > x0) {
            cur.x = x0;
            cur.y += row_h;
        }
        if (i == first_new) round_y = cur.y;
        draw_spec_chip(chips[i], l, cur, chip_h);
        ImGui::SetCursorScreenPos(ImVec2(cur.x, cur.y + fs * 0.8f));
        ImGui::InvisibleButton(("##stok" + std::to_string(i)).c_str(), ImVec2(l.w, chip_h));
        if (ImGui::IsItemHovered()) spec_chip_tooltip(app, chips[i]);
        cur.x += l.w + gap;
    }
    // The key after the last chip when all of it fits there, else on a row of its own
    // (not at a projector's font: the chips' tooltips say it, and the cache needs the height).
    if (cur.x + fs * 0.5f + spec_token_key_w() <= right) {
        draw_spec_token_key(ImVec2(cur.x + fs * 0.5f, cur.y + fs * 0.8f + pad), x0);
    } else if (!presenter_font()) {
        draw_spec_token_key(ImVec2(x0, cur.y + row_h), x0);
    } else {
        ImGui::SetCursorScreenPos(ImVec2(x0, cur.y + row_h));
        ImGui::Dummy(ImVec2(1, 1));
    }
    if (!app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3)  // the round's chips in view, from their row
        ImGui::SetScrollFromPosY(round_y - ImGui::GetWindowPos().y, 0.f);
}

// ---- narration ------------------------------------------------------------------------

std::string spec_why_not(const AppState& app) {
    return !app.spec.can_round && !app.spec.why_not.empty() ? app.spec.why_not : std::string();
}

void draw_spec_narration_panel(AppState& app) {
    draw_narration_text(narrate_spec(app, spec_phase(app)), spec_why_not(app));
}

// ---- work -------------------------------------------------------------------------------

namespace {

// Target passes (y) against tokens generated (x): plain decoding's diagonal, dashed,
// and the measured speculative rounds, solid.
void draw_passes_chart(const SpecChart& ch, ImVec2 o, ImVec2 a, ImVec2 b) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize(), thick = std::max(3.f, fs * 0.2f);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const double xmax = std::max(8.0, ch.tokens.empty() ? 0.0 : ch.tokens.back() + 2);
    auto px = [&](double x, double y) {
        return ImVec2(a.x + (b.x - a.x) * float(x / xmax), b.y - (b.y - a.y) * float(y / xmax));
    };
    dl->AddRect(a, b, pal.grid);
    for (int g = 1; g < 4; ++g) {
        const float y = b.y - (b.y - a.y) * g / 4.f;
        dl->AddLine(ImVec2(a.x, y), ImVec2(b.x, y), with_alpha(pal.grid, 0.5f));
    }
    char t[32];
    std::snprintf(t, sizeof t, "%.0f", xmax);
    dl->AddText(ImVec2(o.x, a.y), pal.text_dim, t);
    dl->AddText(ImVec2(o.x, b.y - fs), pal.text_dim, "0");
    dl->AddText(ImVec2(a.x, b.y + 2), pal.text_dim, "tokens generated ->");
    const ImVec2 p0 = px(0, 0), p1 = px(xmax, xmax);
    for (float f = 0; f < 1.f; f += 0.04f)  // plain: one target pass per token
        dl->AddLine(ImVec2(p0.x + (p1.x - p0.x) * f, p0.y + (p1.y - p0.y) * f),
                    ImVec2(p0.x + (p1.x - p0.x) * (f + 0.02f), p0.y + (p1.y - p0.y) * (f + 0.02f)), pal.uncached_line, 2.f);
    ImVec2 prev = p0;
    for (size_t i = 0; i < ch.tokens.size(); ++i) {
        const ImVec2 p = px(ch.tokens[i], ch.passes[i]);
        dl->AddLine(prev, p, pal.cached_line, thick);
        dl->AddCircleFilled(p, thick * 1.3f, pal.cached_line);
        prev = p;
    }
}

}  // namespace

// The numbers under the chart, as lines that wrap (so their height is known first).
struct WorkLine {
    ImU32 col;
    std::string text;
};
std::vector<WorkLine> spec_work_lines(const SpecView& s, const SpecChart& ch) {
    const Palette& pal = palette();
    char b[3][200];
    std::snprintf(b[0], sizeof b[0], "Target passes per token: plain 1.00, speculative %.2f (k = %d)",
                  ch.passes_per_token, s.k);
    std::snprintf(b[1], sizeof b[1], "%lld draft passes; rows rolled back: target %lld, draft %lld; ms: target %.2f, draft %.2f",
                  static_cast<long long>(s.totals.draft_forwards), static_cast<long long>(s.totals.target_rows_rolled_back),
                  static_cast<long long>(s.totals.draft_rows_rolled_back), s.target_ms, s.draft_ms);
    std::snprintf(b[2], sizeof b[2], "a = %.2f, c = %.3f: expected speed-up (1-a^(k+1))/((1-a)(kc+1)) = %.2fx",
                  ch.acceptance, ch.cost_ratio, ch.expected_speedup);
    return {{pal.accent, b[0]}, {pal.text, b[1]}, {pal.text_dim, b[2]}};
}

void draw_spec_work(AppState& app) {
    const Palette& pal = palette();
    const SpecView& s = app.spec;
    const SpecChart ch = spec_chart(s);
    const float fs = ImGui::GetFontSize();
    ImGui::TextColored(to_vec4(pal.uncached_line), "- - plain (1 pass per token)");
    flow(ImGui::CalcTextSize("-- speculative (measured)").x);
    ImGui::TextColored(to_vec4(pal.cached_line), "-- speculative (measured)");
    const float W = ImGui::GetContentRegionAvail().x;
    const std::vector<WorkLine> lines = s.n_rounds() ? spec_work_lines(s, ch) : std::vector<WorkLine>{};
    float text_h = ImGui::GetTextLineHeightWithSpacing() + 4.f;
    for (const WorkLine& l : lines)
        text_h += ImGui::CalcTextSize(l.text.c_str(), nullptr, false, W).y + ImGui::GetStyle().ItemSpacing.y;
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float Hc = std::max(fs * 4, ImGui::GetContentRegionAvail().y - text_h);
    const ImVec2 a(o.x + fs * 2.2f, o.y + fs * 0.3f), b(o.x + W - fs * 0.5f, o.y + Hc - fs * 1.2f);
    draw_passes_chart(ch, o, a, b);
    ImGui::Dummy(ImVec2(W, Hc));
    if (lines.empty()) {
        text_wrapped("Step to run rounds: y = target passes, x = tokens generated.");
        return;
    }
    for (const WorkLine& l : lines) text_wrapped_colored(l.col, "%s", l.text.c_str());
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip("a: accepted / proposed drafts; c: the draft's counted FLOPs per token over the target's");
}

}  // namespace kvui
