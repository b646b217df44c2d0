// Next token: the top-k candidates of the latest step as probability bars, the
// chosen one highlighted, and how it was chosen (greedy or sampled).
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "ui/colormap.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace kvui {

void draw_next_token_panel(AppState& app) {
    const Palette& pal = palette();
    const kv::StepTrace* t = app.main.last();
    if (!t || t->top.empty()) {
        ImGui::TextColored(to_vec4(pal.text_dim), "The model's guesses for the next token appear here after a step.");
        return;
    }
    const kv::SamplingOptions& s = app.vs.sampling;
    const std::string chosen = app.token_text(t->next_id);
    ImGui::PushFont(big_font());
    ImGui::Text("-> '%s'", chosen.c_str());
    ImGui::PopFont();
    ImGui::SameLine();
    if (s.temperature <= 0.f) ImGui::TextColored(to_vec4(pal.text_dim), "(greedy: the most likely token)");
    else ImGui::TextColored(to_vec4(pal.text_dim), "(sampled: temperature %.2f, top-k %d, seed %llu)", s.temperature,
                            s.top_k, static_cast<unsigned long long>(s.seed));
    const float fs = ImGui::GetFontSize();
    ImGui::BeginChild("bars", ImVec2(0, 0), false);
    const float W = ImGui::GetContentRegionAvail().x;
    const float label_w = std::min(fs * 8.f, W * 0.35f);
    const float num_w = fs * 3.5f;
    const float bar_w = std::max(fs, W - label_w - num_w);
    const float row_h = fs * 1.15f;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float pmax = std::max(1e-6f, t->top.front().prob);
    for (const kv::TopToken& tt : t->top) {
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
        ImGui::Dummy(ImVec2(W, row_h));
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("'%s' (id %d): probability %.4f, logit %.3f%s", txt.c_str(), tt.id, tt.prob, tt.logit,
                              is_chosen ? "\nchosen" : "");
    }
    ImGui::EndChild();
}

}  // namespace kvui
