// Next token: the top-k candidates of the latest step as probability bars, the
// chosen one highlighted, and how it was chosen (greedy or sampled). As many bars as
// fit the panel (at least the top 3), then one line for the rest: no bar is cut.
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {
float bar_row_h() { return ImGui::GetFontSize() * 1.15f; }
float header_h() { return big_font()->FontSize + ImGui::GetStyle().ItemSpacing.y; }  // "-> 'writing'"
}  // namespace

float next_token_panel_height(const AppState& app, int bars) {
    const kv::StepTrace* t = app.main.last();
    if (!t || t->top.empty()) return ImGui::GetTextLineHeightWithSpacing() * 2;  // the hint, wrapped
    const int n = static_cast<int>(t->top.size());
    const int shown = std::min(bars, n);
    return header_h() + shown * bar_row_h() + (shown < n ? ImGui::GetTextLineHeight() : 0.f);
}

void draw_next_token_panel(AppState& app) {
    const Palette& pal = palette();
    const kv::StepTrace* t = app.main.last();
    if (!t || t->top.empty()) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
        text_wrapped("The model's guesses for the next token appear here after a step.");
        ImGui::PopStyleColor();
        return;
    }
    const kv::SamplingOptions& s = app.vs.sampling;
    const std::string chosen = app.token_text(t->next_id);
    ImGui::PushFont(big_font());
    ImGui::Text("-> '%s'", chosen.c_str());
    ImGui::PopFont();
    // how it was chosen, beside it when it fits (details on hover)
    char how[64];
    if (s.temperature <= 0.f) std::snprintf(how, sizeof how, "(greedy: the most likely)");
    else std::snprintf(how, sizeof how, "(sampled, T %.2f)", s.temperature);
    if (ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x + ImGui::CalcTextSize(how).x <=
        ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x) {
        ImGui::SameLine();
        ImGui::TextColored(to_vec4(pal.text_dim), "%s", how);
        if (ImGui::IsItemHovered() && s.temperature <= 0.f) ImGui::SetTooltip("greedy: the most likely token is taken");
        else if (ImGui::IsItemHovered())
            ImGui::SetTooltip("sampled: temperature %.2f, top-k %d, seed %llu", s.temperature, s.top_k,
                              static_cast<unsigned long long>(s.seed));
    }
    const float fs = ImGui::GetFontSize();
    const float W = ImGui::GetContentRegionAvail().x;
    const float label_w = std::min(fs * 8.f, W * 0.35f);
    const float num_w = fs * 3.5f;
    const float bar_w = std::max(fs, W - label_w - num_w);
    const float row_h = bar_row_h();
    const int n = static_cast<int>(t->top.size());
    // the bars that fit; when some do not, the last line says what they hold together
    const float room = ImGui::GetContentRegionAvail().y;
    int shown = std::clamp(static_cast<int>(room / row_h), std::min(n, 3), n);
    if (shown < n) shown = std::clamp(static_cast<int>((room - ImGui::GetTextLineHeight()) / row_h), std::min(n, 3), n);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float pmax = std::max(1e-6f, t->top.front().prob);
    for (int i = 0; i < shown; ++i) {
        const kv::TopToken& tt = t->top[size_t(i)];
        const ImVec2 o = ImGui::GetCursorScreenPos();
        const bool is_chosen = tt.id == t->next_id;
        std::string txt = app.token_text(tt.id);
        dl->PushClipRect(o, ImVec2(o.x + label_w - 4, o.y + row_h), true);
        dl->AddText(o, is_chosen ? pal.accent : pal.text, txt.c_str());
        dl->PopClipRect();
        const float w = bar_w * tt.prob / pmax;
        dl->AddRectFilled(ImVec2(o.x + label_w, o.y + 2), ImVec2(o.x + label_w + w, o.y + row_h - 2),
                          is_chosen ? pal.accent : with_alpha(pal.text_dim, 0.6f), 3.f);
        char num[24];
        std::snprintf(num, sizeof num, "%.1f%%", tt.prob * 100.f);
        dl->AddText(ImVec2(o.x + label_w + w + 4, o.y), pal.text, num);
        ImGui::SetCursorScreenPos(o);
        ImGui::Dummy(ImVec2(W, row_h));
        ImGui::SetCursorScreenPos(ImVec2(o.x, o.y + row_h));
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("'%s' (id %d): probability %.4f, logit %.3f%s", txt.c_str(), tt.id, tt.prob, tt.logit,
                              is_chosen ? "\nchosen" : "");
    }
    if (shown < n) {
        float rest = 0.f;
        for (int i = shown; i < n; ++i) rest += t->top[size_t(i)].prob;
        ImGui::TextColored(to_vec4(pal.text_dim), "+ %d more: %.1f%% together", n - shown, rest * 100.f);
        if (ImGui::IsItemHovered()) {
            std::string s2;
            for (int i = shown; i < n; ++i) {
                char line[96];
                std::snprintf(line, sizeof line, "%s'%s' %.1f%%", i > shown ? "\n" : "", app.token_text(t->top[size_t(i)].id).c_str(),
                              t->top[size_t(i)].prob * 100.f);
                s2 += line;
            }
            ImGui::SetTooltip("%s", s2.c_str());
        }
    }
}

}  // namespace kvui
