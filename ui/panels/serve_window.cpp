// The serving view as a whole window (key V, `kvscope --serve`): a bar with the
// presets and the step buttons, then the regions of compute_serve_layout: the request
// list (the grid's legend; edit, add, run), the pool grid, the contiguous strip, the
// counters and the selected block table. Space / Right step through the recorded run,
// Left / Backspace go back one step; V or Esc leaves.
#include <imgui.h>
#include <imgui_internal.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdio>

#include "ui/lesson/lesson.h"
#include "ui/look/colormap.h"
#include "ui/look/theme.h"
#include "ui/panels/panels.h"

namespace kvui {

Command serve_command(const kv::ServePreset& setup, int shown) {
    Command c{CommandKind::serve_run};
    c.serve = std::make_shared<const kv::ServePreset>(setup);
    c.n = shown;
    return c;
}

bool serve_shown(const AppState& app) {
    if (app.vs.lesson.on) return !lesson_chapter(app.vs.lesson.chapter).setup.serve_preset.empty();
    return app.serve.on;
}

void enter_serve(AppState& app, const std::string& preset) {
    app.serve.on = true;
    app.vs.playing = false;
    if (!app.model || (app.serve.run && preset.empty())) return;
    try {
        app.push(serve_command(kv::serve_preset(preset.empty() ? "class" : preset), 0));
    } catch (const kv::Error& e) {
        app.error = e.what();
    }
}

void leave_serve(AppState& app) { app.serve.on = false; }

void serve_key_step(AppState& app, bool forward) {
    if (forward ? serve_step(app.serve) : serve_back(app.serve)) app.vs.step_time = -1.0;  // the flash restarts
}

namespace {

constexpr ImGuiWindowFlags kFlags = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse |
                                    ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;

void draw_bar(AppState& app) {
    ServeView& v = app.serve;
    const Palette& pal = palette();
    ImGui::BeginDisabled(app.busy || !v.run);
    ImGui::BeginDisabled(v.shown >= v.n_steps());
    if (ImGui::Button("Step >")) serve_key_step(app, true);
    ImGui::EndDisabled();
    ImGui::SameLine();
    ImGui::BeginDisabled(v.shown == 0);
    if (ImGui::Button("< Back")) serve_key_step(app, false);
    ImGui::EndDisabled();
    ImGui::EndDisabled();
    ImGui::BeginDisabled(app.busy || !app.model);
    for (const kv::ServePreset& p : kv::serve_presets()) {
        const std::string label = p.title + "##" + p.name;
        flow(ImGui::CalcTextSize(p.title.c_str()).x + ImGui::GetStyle().FramePadding.x * 2);
        const bool on = v.run && v.run->setup.name == p.name;
        if (on) ImGui::PushStyleColor(ImGuiCol_Button, pal.accent);
        if (ImGui::Button(label.c_str())) app.push(serve_command(p, 0));
        if (on) ImGui::PopStyleColor();
    }
    ImGui::EndDisabled();
    flow(ImGui::CalcTextSize("Leave (V)").x + ImGui::GetFontSize());
    if (ImGui::Button("Leave (V)")) leave_serve(app);
    if (!app.error.empty()) {
        flow(ImGui::CalcTextSize(app.error.c_str()).x);
        ImGui::TextColored(to_vec4(pal.bad), "%s", app.error.c_str());
    }
}

}  // namespace

void draw_serve_requests(AppState& app, bool editable) {
    ServeView& v = app.serve;
    if (!v.edit_init && v.run) {
        v.edit = v.run->setup.requests;
        v.edit_init = true;
    }
    const float f = ImGui::GetFontSize();
    int remove = -1;
    if (!ImGui::BeginTable("##requests", editable ? 6 : 3, ImGuiTableFlags_RowBg)) return;
    const float num_w = ImGui::CalcTextSize("00").x + ImGui::GetStyle().FramePadding.x * 2;
    ImGui::TableSetupColumn("req", ImGuiTableColumnFlags_WidthFixed, f * 2.2f);
    ImGui::TableSetupColumn("prompt", ImGuiTableColumnFlags_WidthStretch);
    ImGui::TableSetupColumn("at, new, forks", ImGuiTableColumnFlags_WidthFixed, editable ? num_w : f * 5.f);
    if (editable) {
        ImGui::TableSetupColumn("new", ImGuiTableColumnFlags_WidthFixed, num_w);
        ImGui::TableSetupColumn("forks", ImGuiTableColumnFlags_WidthFixed, num_w);
        ImGui::TableSetupColumn("", ImGuiTableColumnFlags_WidthFixed, ImGui::CalcTextSize("x").x + ImGui::GetStyle().FramePadding.x * 2);
    }
    for (size_t i = 0; i < v.edit.size(); ++i) {
        kv::PresetRequest& r = v.edit[i];
        ImGui::PushID(int(i));
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        const ImVec2 p = ImGui::GetCursorScreenPos();
        ImGui::GetWindowDrawList()->AddRectFilled(p, ImVec2(p.x + f * 2.2f, p.y + f * 1.2f), request_color(int(i)));
        ImGui::GetWindowDrawList()->AddText(ImVec2(p.x + f * 0.2f, p.y + f * 0.05f), IM_COL32(0, 0, 0, 255),
                                            ("r" + std::to_string(i)).c_str());
        ImGui::Dummy(ImVec2(f * 2.2f, f * 1.2f));
        ImGui::TableNextColumn();
        if (editable) {
            ImGui::SetNextItemWidth(-1);
            ImGui::InputText("##prompt", &r.prompt);
            ImGui::TableNextColumn();
            ImGui::SetNextItemWidth(-1);
            if (ImGui::InputInt("##at", &r.arrive, 0)) r.arrive = std::clamp(r.arrive, 0, 1000);
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("arrives at step");
            ImGui::TableNextColumn();
            ImGui::SetNextItemWidth(-1);
            if (ImGui::InputInt("##new", &r.new_tokens, 0)) r.new_tokens = std::clamp(r.new_tokens, 1, 1000);
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("new tokens");
            ImGui::TableNextColumn();
            ImGui::SetNextItemWidth(-1);
            if (ImGui::InputInt("##fork", &r.fork, 0)) r.fork = std::clamp(r.fork, 1, 8);
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("forks (samples of this prompt)");
            ImGui::TableNextColumn();
            if (ImGui::Button("x")) remove = int(i);
        } else {
            ImGui::PushTextWrapPos(0.f);
            text_wrapped("%s", r.prompt.c_str());
            ImGui::PopTextWrapPos();
            ImGui::TableNextColumn();
            ImGui::Text("@%d +%d%s", r.arrive, r.new_tokens, r.fork > 1 ? (" x" + std::to_string(r.fork)).c_str() : "");
        }
        ImGui::PopID();
    }
    ImGui::EndTable();
    if (remove >= 0 && v.edit.size() > 1) v.edit.erase(v.edit.begin() + remove);
    if (!editable || !v.run) return;
    ImGui::BeginDisabled(app.busy);
    if (ImGui::Button("+ Add")) v.edit.push_back({"Python is a programming language", 4, 0, 1});
    ImGui::SameLine();
    if (ImGui::Button("Run these")) {
        kv::ServePreset s = v.run->setup;
        s.name = "custom";
        s.title = "edited requests";
        s.requests = v.edit;
        app.push(serve_command(s, 0));
    }
    ImGui::EndDisabled();
}

void draw_serve_view(AppState& app) {
    const ImGuiIO& io = ImGui::GetIO();
    const ServeLayout L = compute_serve_layout(io.DisplaySize.x, io.DisplaySize.y, ImGui::GetFontSize());
    auto window = [](const char* title, const Rect& r, bool title_bar, auto&& body) {
        ImGui::SetNextWindowPos(ImVec2(r.x, r.y));
        ImGui::SetNextWindowSize(ImVec2(r.w, r.h));
        if (ImGui::Begin(title, nullptr, kFlags | (title_bar ? 0 : ImGuiWindowFlags_NoTitleBar))) body();
        ImGui::End();
    };
    const ServeView& v = app.serve;
    const std::string title = v.run ? "Serving: " + v.run->setup.title + "  (Space step, Left back, V leaves)###serve_pool"
                                    : std::string("Serving###serve_pool");
    window("##serve_bar", L.bar, false, [&] { draw_bar(app); });
    // The pool first: the table's arrows point at the blocks it drew this frame.
    window(title.c_str(), L.pool, true, [&] { draw_serve_pool(app, true); });
    window("Requests (their colours in the grid)###serve_requests", L.requests, true,
           [&] { draw_serve_requests(app, true); });
    window("Counters of this step###serve_counters", L.counters, true, [&] { draw_serve_counters(app); });
    window("Contiguous reservation vs paged blocks###serve_strip", L.strip, true, [&] { draw_serve_strip(app); });
    window("Block table of the selected sequence (logical -> physical)###serve_table", L.table, true,
           [&] { draw_serve_table(app); });
}

}  // namespace kvui
