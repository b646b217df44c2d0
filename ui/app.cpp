// draw_app: one frame of the whole window. Fixed windows from compute_layout (no
// overlaps, no docking), the keyboard map (1.86: keys are polled by GLFW key code
// through IsKeyPressed(index)), the play timer, the help overlay and the toast.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/model/model_io.h"
#include "ui/colormap.h"
#include "ui/lesson.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace kvui {

namespace {
// GLFW key codes (GLFW/glfw3.h), kept here so kvui needs no GLFW headers.
constexpr int KEY_SPACE = 32, KEY_MINUS = 45, KEY_EQUAL = 61, KEY_C = 67, KEY_G = 71, KEY_L = 76, KEY_P = 80,
              KEY_R = 82, KEY_S = 83, KEY_ESCAPE = 256, KEY_BACKSPACE = 259, KEY_RIGHT = 262, KEY_LEFT = 263,
              KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267, KEY_HOME = 268, KEY_END = 269, KEY_F1 = 290, KEY_KP_SUBTRACT = 333,
              KEY_KP_ADD = 334;
}  // namespace

KeyAction key_action(int key, bool ctrl) {
    if (ctrl) {
        if (key == KEY_EQUAL || key == KEY_KP_ADD) return KeyAction::font_up;
        if (key == KEY_MINUS || key == KEY_KP_SUBTRACT) return KeyAction::font_down;
        return KeyAction::none;
    }
    switch (key) {
    case KEY_SPACE:
    case KEY_RIGHT: return KeyAction::step;
    case KEY_LEFT:
    case KEY_BACKSPACE: return KeyAction::back;
    case KEY_L: return KeyAction::lesson;
    case KEY_C: return KeyAction::toggle_cache;
    case KEY_G: return KeyAction::scaling;
    case KEY_P: return KeyAction::play;
    case KEY_R: return KeyAction::reset;
    case KEY_S: return KeyAction::screenshot;
    case KEY_F1: return KeyAction::help;
    case KEY_ESCAPE: return KeyAction::close;
    case KEY_KP_ADD: return KeyAction::font_up;
    case KEY_KP_SUBTRACT: return KeyAction::font_down;
    default: return KeyAction::none;
    }
}

const std::vector<int>& watched_keys() {
    static const std::vector<int> keys = {KEY_SPACE, KEY_RIGHT, KEY_LEFT, KEY_C,      KEY_P,           KEY_R,
                                          KEY_S,     KEY_F1,    KEY_EQUAL, KEY_MINUS, KEY_KP_SUBTRACT, KEY_KP_ADD,
                                          KEY_ESCAPE, KEY_G,     KEY_L,     KEY_BACKSPACE, KEY_PAGE_UP,
                                          KEY_PAGE_DOWN, KEY_HOME, KEY_END, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57};
    return keys;
}

void apply_key_action(AppState& app, KeyAction a) {
    ViewState& vs = app.vs;
    const bool can_cmd = !app.busy && app.model;
    switch (a) {
    case KeyAction::step:
        if (can_cmd) app.push({CommandKind::step});
        break;
    case KeyAction::back:
        if (can_cmd) app.push({CommandKind::back});
        vs.playing = false;
        break;
    case KeyAction::toggle_cache:
        if (can_cmd) {
            Command c{CommandKind::set_cache};
            c.flag = !app.main.cache_on;
            app.push(c);
        }
        break;
    case KeyAction::play: vs.playing = !vs.playing; break;
    case KeyAction::reset:
        if (can_cmd) app.push({CommandKind::reset});
        vs.playing = false;
        break;
    case KeyAction::font_up:
        vs.font_scale = std::min(vs.font_scale * 1.15f, 4.f);
        vs.font_changed = true;
        break;
    case KeyAction::font_down:
        vs.font_scale = std::max(vs.font_scale / 1.15f, 0.5f);
        vs.font_changed = true;
        break;
    case KeyAction::help: vs.show_help = !vs.show_help; break;
    case KeyAction::screenshot: vs.screenshot_requested = true; break;
    case KeyAction::close: vs.show_help = false; break;
    case KeyAction::scaling:
        vs.show_scaling = !vs.show_scaling;
        vs.select_tab = true;
        break;
    case KeyAction::lesson:
        if (vs.lesson.on) leave_lesson(app);
        else enter_lesson(app, vs.lesson.chapter);
        break;
    case KeyAction::none: break;
    }
}

float step_anim(const AppState& app, float seconds) {
    if (!app.vs.animate) return 1.f;
    double t = ImGui::GetTime() - app.vs.step_time;
    return std::clamp(static_cast<float>(t / seconds), 0.f, 1.f);
}

namespace {

constexpr ImGuiWindowFlags kPanelFlags = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                                         ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings |
                                         ImGuiWindowFlags_NoBringToFrontOnFocus;

template <class F>
void panel(const char* title, const Rect& r, bool title_bar, F&& draw) {
    ImGui::SetNextWindowPos(ImVec2(r.x, r.y));
    ImGui::SetNextWindowSize(ImVec2(r.w, r.h));
    ImGuiWindowFlags flags = kPanelFlags;
    if (!title_bar) flags |= ImGuiWindowFlags_NoTitleBar;
    if (ImGui::Begin(title, nullptr, flags)) draw();
    ImGui::End();
}

void handle_keyboard(AppState& app) {
    ImGuiIO& io = ImGui::GetIO();
    if (app.vs.queued_keys) {
        std::vector<std::pair<int, bool>> keys;
        keys.swap(app.vs.key_queue);
        if (io.WantTextInput) return;  // typing in a text field
        for (auto [key, ctrl] : keys)
            if (!lesson_key(app, key, ctrl)) apply_key_action(app, key_action(key, ctrl));
        return;
    }
    if (io.WantTextInput) return;
    for (int key : watched_keys()) {
        if (key < 0 || key >= IM_ARRAYSIZE(io.KeysDown)) continue;
        const bool repeat = !app.vs.lesson.on && (key == KEY_RIGHT || key == KEY_LEFT);
        if (!ImGui::IsKeyPressed(key, repeat)) continue;
        if (!lesson_key(app, key, io.KeyCtrl)) apply_key_action(app, key_action(key, io.KeyCtrl));
    }
}

void play_timer(AppState& app) {
    ViewState& vs = app.vs;
    if (!vs.playing || app.busy) return;
    if (!app.main.can_step) {
        vs.playing = false;
        return;
    }
    double now = ImGui::GetTime();
    if (now - vs.last_play_step >= 1.0 / std::max(0.1f, vs.play_speed)) {
        vs.last_play_step = now;
        app.push({CommandKind::step});
    }
}

// The Work area holds two tabs: counted work per step, and the measured sweep. The
// layout follows vs.show_scaling (a frame late when a tab is clicked); G and
// --scaling set it and select_tab makes the tab bar follow.
void draw_work_tabs(AppState& app) {
    ViewState& vs = app.vs;
    if (!ImGui::BeginTabBar("##work_tabs")) return;
    const bool force = vs.select_tab;
    vs.select_tab = false;
    ImGuiTabItemFlags fw = force && !vs.show_scaling ? ImGuiTabItemFlags_SetSelected : 0;
    ImGuiTabItemFlags fs = force && vs.show_scaling ? ImGuiTabItemFlags_SetSelected : 0;
    bool work = false, scaling = false;
    if (ImGui::BeginTabItem("Work (counted)", nullptr, fw)) {
        work = true;
        ImGui::EndTabItem();
    }
    if (ImGui::BeginTabItem("Scaling (measured, G)", nullptr, fs)) {
        scaling = true;
        ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
    if (!force) vs.show_scaling = scaling && !work;
    if (vs.show_scaling) draw_scaling_panel(app);
    else draw_work_panel(app);
}

void draw_toast(AppState& app) {
    if (app.vs.toast.text.empty() || ImGui::GetTime() > app.vs.toast.until) return;
    ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x - 16, io.DisplaySize.y - 16), ImGuiCond_Always, ImVec2(1, 1));
    ImVec4 bg = palette().clear;
    bg.w = 0.95f;
    ImGui::PushStyleColor(ImGuiCol_WindowBg, bg);  // panels are transparent; overlays are not
    if (ImGui::Begin("##toast", nullptr,
                     ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoInputs |
                         ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoFocusOnAppearing |
                         ImGuiWindowFlags_NoNav))
        ImGui::TextUnformatted(app.vs.toast.text.c_str());
    ImGui::End();
    ImGui::PopStyleColor();
}

}  // namespace

void draw_app(AppState& app) {
    if (app.vs.step_time == -1.0) app.vs.step_time = ImGui::GetTime();
    handle_keyboard(app);
    lesson_tick(app);  // a chapter's setup (or leaving's restore) waiting for its model
    play_timer(app);
    note_glyphs_needed(app);  // a new prompt's CJK characters: the atlas grows before the next frame
    if (app.vs.lesson.on) {
        draw_lesson(app);
        if (app.vs.show_help) draw_help_overlay(app);
        draw_toast(app);
        return;
    }
    app.fits.clear();
    const ImGuiIO& io = ImGui::GetIO();
    const Layout L = compute_layout(io.DisplaySize.x, io.DisplaySize.y, ImGui::GetFontSize(), app.vs.controls_h,
                                    app.vs.show_scaling);
    panel("##controls", L.controls, false, [&] {
        draw_controls_panel(app);
        app.vs.controls_h = ImGui::GetCursorPosY();  // the layout of the next frame fits it
    });
    panel("Tokens  (position, text, how many times its K/V were computed)###tokens", L.tokens, true,
          [&] { app.spec.on ? draw_spec_tokens_panel(app) : draw_tokens_panel(app); });
    panel("Q, K, V of the newest token###qkv", L.qkv, true, [&] { draw_qkv_panel(app); });
    panel(app.spec.on ? "KV caches of the target and the draft  (rows = positions)###cache"
                      : "KV cache  (rows = positions)  +  attention weights###cache",
          L.cache, true, [&] { app.spec.on ? draw_spec_cache_panel(app) : draw_cache_panel(app); });
    panel(app.vs.show_scaling ? "Scaling: measured ms per step vs position###work" : "Work: with vs without cache###work",
          L.work, true, [&] { draw_work_tabs(app); });
    panel("Next token###next", L.next_token, true, [&] { draw_next_token_panel(app); });
    panel("Cache memory = 2 x layers x kv_heads x head_dim x tokens x bytes###memory", L.memory, true, [&] { draw_memory_panel(app); });
    panel("What just happened###narration", L.narration, true,
          [&] { app.spec.on ? draw_spec_narration_panel(app) : draw_narration_panel(app); });
    panel("Timeline  (click a step to go back to it)###timeline", L.timeline, true, [&] { draw_timeline_panel(app); });
    if (app.vs.show_help) draw_help_overlay(app);
    draw_toast(app);
}

void draw_help_overlay(AppState& app) {
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x * 0.5f, io.DisplaySize.y * 0.5f), ImGuiCond_Always,
                            ImVec2(0.5f, 0.5f));
    ImVec4 bg = palette().clear;
    bg.w = 0.97f;
    ImGui::PushStyleColor(ImGuiCol_WindowBg, bg);
    bool open = true;
    if (ImGui::Begin("Keyboard (F1 closes)###help", &open,
                     ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings |
                         ImGuiWindowFlags_NoMove)) {
        static const char* rows[][2] = {
            {"Space  or  Right", "step: prefill, then one token at a time"},
            {"Left  or  Backspace", "go back one step (the cache is truncated)"},
            {"L", "lesson: PgDn / PgUp (or Right / Left) chapters, 1-9 and 0 (= 10), End the last; Esc leaves"},
            {"C", "KV cache on / off (applies from the next step)"},
            {"P", "play / pause"},
            {"G", "Scaling tab: measured ms per step vs position"},
            {"R", "reset to before the prefill"},
            {"Ctrl +  /  Ctrl -", "font size"},
            {"S", "screenshot (PNG in the current folder)"},
            {"F1", "this help"},
        };
        if (ImGui::BeginTable("keys", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) {
            for (auto& r : rows) {
                ImGui::TableNextRow();
                ImGui::TableNextColumn();
                ImGui::TextColored(to_vec4(palette().accent), "%s", r[0]);
                ImGui::TableNextColumn();
                ImGui::TextUnformatted(r[1]);
            }
            ImGui::EndTable();
        }
        ImGui::Spacing();
        ImGui::TextUnformatted("Shortcuts are ignored while you type in a text field.");
        ImGui::TextUnformatted("Hover any coloured cell to read its value.");
    }
    ImGui::End();
    ImGui::PopStyleColor();
    if (!open) app.vs.show_help = false;
}

}  // namespace kvui
