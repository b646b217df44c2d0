// Timeline: one button per step so far (colour = cache mode it ran in); clicking an
// earlier step goes back to it (Session::back() repeatedly; the cache is truncated).
#include <imgui.h>

#include <cstdio>

#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

void draw_timeline_panel(AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    const float fs = ImGui::GetFontSize();
    ImGui::BeginDisabled(app.busy);
    if (ImGui::Button("start")) app.push({CommandKind::back_to});  // n = 0
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("Before the prefill: the cache is empty");
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    for (int i = 0; i < v.n_steps(); ++i) {
        const kv::StepTrace& t = *v.history[i];
        char lab[96];
        std::string tok = t.next_id >= 0 ? app.token_text(t.next_id) : "";
        if (tok.size() > 12) tok = tok.substr(0, 12);
        std::snprintf(lab, sizeof lab, "%d %s##st%d", i, t.phase == kv::Phase::prefill ? "prefill" : tok.c_str(), i);
        const float w = ImGui::CalcTextSize(lab, nullptr, true).x + ImGui::GetStyle().FramePadding.x * 2;
        if (ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x + w <= right) ImGui::SameLine();
        const bool last = i == v.n_steps() - 1;
        ImVec4 c = to_vec4(state_color(t.cache_on ? RowState::read : RowState::recomputed, pal.dark));
        c.w = last ? 1.f : 0.55f;
        ImGui::PushStyleColor(ImGuiCol_Button, c);
        ImGui::PushStyleColor(ImGuiCol_Text, IM_COL32(0, 0, 0, 255));
        if (last) ImGui::PushStyleVar(ImGuiStyleVar_FrameBorderSize, 3.f);
        if (ImGui::Button(lab) && !last) {
            Command cmd{CommandKind::back_to};
            cmd.n = i + 1;
            app.push(cmd);
        }
        if (last && (!app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3)) ImGui::SetScrollHereY(1.f);
        if (last) ImGui::PopStyleVar();
        ImGui::PopStyleColor(2);
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("step %d, %s, cache %s: %lld tokens in, %lld K/V rows computed, %.3f ms -> '%s'%s", i,
                              kv::phase_name(t.phase), t.cache_on ? "on" : "off",
                              static_cast<long long>(t.counters.tokens_processed),
                              static_cast<long long>(t.counters.kv_rows_computed), t.ms,
                              app.token_text(t.next_id).c_str(), last ? "" : "\nclick to go back here");
    }
    ImGui::EndDisabled();
    (void)fs;
}

}  // namespace kvui
