// draw_app: one frame of the whole window. Fixed windows in the slots of
// compute_layout (ui/state/layout.h: no overlaps, no docking; a slot of several panels is a
// tab bar), the keyboard map (1.86: keys are polled by GLFW key code through
// IsKeyPressed(index)), the play timer, the help overlay and the toast. Each shown
// panel's content height is measured for the next frame's layout, and its fit (content
// against the room it had) is recorded for the tests.
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {
// GLFW key codes (GLFW/glfw3.h), kept here so kvui needs no GLFW headers.
constexpr int KEY_SPACE = 32, KEY_MINUS = 45, KEY_A = 65, KEY_1 = 49, KEY_6 = 54, KEY_EQUAL = 61, KEY_C = 67, KEY_F = 70,
              KEY_G = 71, KEY_L = 76, KEY_M = 77, KEY_P = 80, KEY_R = 82, KEY_S = 83, KEY_V = 86, KEY_ESCAPE = 256,
              KEY_TAB = 258, KEY_BACKSPACE = 259, KEY_RIGHT = 262, KEY_LEFT = 263,
              KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267, KEY_HOME = 268, KEY_END = 269, KEY_F1 = 290, KEY_KP_SUBTRACT = 333,
              KEY_KP_ADD = 334;
}  // namespace

KeyAction key_action(int key, bool ctrl, bool shift) {
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
    case KEY_TAB: return shift ? KeyAction::prev_panel : KeyAction::next_panel;
    case KEY_F: return KeyAction::focus_layout;
    case KEY_M: return KeyAction::more_controls;
    case KEY_V: return KeyAction::serving;
    case KEY_A: return KeyAction::mla_read;
    default: break;
    }
    if (key >= KEY_1 && key <= KEY_6)
        return static_cast<KeyAction>(static_cast<int>(KeyAction::show_panel_1) + key - KEY_1);
    return KeyAction::none;
}

const std::vector<int>& watched_keys() {
    static const std::vector<int> keys = {KEY_SPACE, KEY_RIGHT, KEY_LEFT, KEY_C,      KEY_P,           KEY_R,
                                          KEY_S,     KEY_F1,    KEY_EQUAL, KEY_MINUS, KEY_KP_SUBTRACT, KEY_KP_ADD,
                                          KEY_ESCAPE, KEY_G,     KEY_L,     KEY_BACKSPACE, KEY_PAGE_UP,
                                          KEY_PAGE_DOWN, KEY_HOME, KEY_END, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
                                          KEY_TAB,   KEY_F,     KEY_M,     KEY_V,     KEY_A};
    return keys;
}

void pick_panel(ViewState& vs, PanelId p) { vs.layout.picked[size_t(panel_index(p))] = ++vs.layout.pick_seq; }

PanelId shown_panel(const ViewState& vs, const std::vector<PanelId>& group) {
    PanelId best = group.front();
    for (PanelId p : group)
        if (vs.layout.picked[size_t(panel_index(p))] > vs.layout.picked[size_t(panel_index(best))]) best = p;
    return best;
}

namespace {

// Tab (by +1) / Shift+Tab (by -1): the next / previous panel of the largest tab group
// of the last frame, wrapping around (none in the tiled layout).
void next_panel(ViewState& vs, int by) {
    const std::vector<PanelId>* big = nullptr;
    for (const auto& g : vs.layout.groups)
        if (!big || g.size() > big->size()) big = &g;
    if (!big) return;
    const int n = static_cast<int>(big->size());
    const int at = static_cast<int>(std::find(big->begin(), big->end(), shown_panel(vs, *big)) - big->begin());
    pick_panel(vs, (*big)[size_t(((at + by) % n + n) % n)]);
}

PanelId panel_of_key(int n) {  // 1..6
    for (PanelId p : kAllPanels)
        if (panel_key_number(p) == n) return p;
    return PanelId::cache;
}

}  // namespace

void apply_key_action(AppState& app, KeyAction a) {
    ViewState& vs = app.vs;
    const bool can_cmd = !app.busy && app.model;
    const int shown = static_cast<int>(a) - static_cast<int>(KeyAction::show_panel_1);
    if (shown >= 0 && shown < 6) {
        pick_panel(vs, panel_of_key(shown + 1));
        return;
    }
    if (serve_shown(app) && (a == KeyAction::step || a == KeyAction::back)) {  // through the recorded run
        if (!app.busy) serve_key_step(app, a == KeyAction::step);
        return;
    }
    switch (a) {
    case KeyAction::step:
        if (can_cmd) app.push({CommandKind::step});
        break;
    case KeyAction::back:
        if (can_cmd) app.push({CommandKind::back});
        vs.playing = false;
        break;
    case KeyAction::serving:
        if (app.serve.on) leave_serve(app);
        else if (!vs.lesson.on) enter_serve(app);
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
    case KeyAction::close:
        vs.show_help = false;
        if (app.serve.on) leave_serve(app);
        break;
    case KeyAction::scaling:
        vs.show_scaling = !vs.show_scaling;
        vs.select_tab = true;
        pick_panel(vs, PanelId::work);
        break;
    case KeyAction::next_panel: next_panel(vs, +1); break;
    case KeyAction::prev_panel: next_panel(vs, -1); break;
    case KeyAction::focus_layout: vs.layout.force_focus = !vs.layout.force_focus; break;
    case KeyAction::more_controls: vs.layout.controls_expanded = !vs.layout.controls_expanded; break;
    case KeyAction::mla_read:
        if (can_cmd && app.model->config.is_mla())
            set_mla_read(app, app.main.policy.mla == kv::MlaRead::expand ? kv::MlaRead::absorbed : kv::MlaRead::expand);
        break;
    case KeyAction::lesson:
        if (vs.lesson.on) leave_lesson(app);
        else enter_lesson(app, vs.lesson.chapter);
        break;
    default: break;
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

// A fixed window; scrolls: it may scroll (else the layout gave it all its content asks,
// and a scroll bar would only narrow the text).
template <class F>
void panel(const char* title, const Rect& r, bool title_bar, F&& draw, bool scrolls = true) {
    ImGui::SetNextWindowPos(ImVec2(r.x, r.y));
    ImGui::SetNextWindowSize(ImVec2(r.w, r.h));
    ImGuiWindowFlags flags = kPanelFlags;
    if (!title_bar) flags |= ImGuiWindowFlags_NoTitleBar;
    if (!scrolls) flags |= ImGuiWindowFlags_NoScrollbar;
    if (ImGui::Begin(title, nullptr, flags)) draw();
    ImGui::End();
}

void handle_keyboard(AppState& app) {
    ImGuiIO& io = ImGui::GetIO();
    if (app.vs.queued_keys) {
        std::vector<ViewState::KeyPress> keys;
        keys.swap(app.vs.key_queue);
        if (io.WantTextInput) return;  // typing in a text field
        for (const auto& k : keys)
            if (!lesson_key(app, k.key, k.ctrl)) apply_key_action(app, key_action(k.key, k.ctrl, k.shift));
        return;
    }
    if (io.WantTextInput) return;
    for (int key : watched_keys()) {
        if (key < 0 || key >= IM_ARRAYSIZE(io.KeysDown)) continue;
        const bool repeat = !app.vs.lesson.on && (key == KEY_RIGHT || key == KEY_LEFT);
        if (!ImGui::IsKeyPressed(key, repeat)) continue;
        if (!lesson_key(app, key, io.KeyCtrl)) apply_key_action(app, key_action(key, io.KeyCtrl, io.KeyShift));
    }
}

void play_timer(AppState& app) {
    ViewState& vs = app.vs;
    if (!vs.playing || app.busy) return;
    if (serve_shown(app)) {  // through the recorded serving run, to its end
        const double now = ImGui::GetTime();
        if (now - vs.last_play_step < 1.0 / std::max(0.1f, vs.play_speed)) return;
        vs.last_play_step = now;
        if (!serve_step(app.serve)) vs.playing = false;
        else vs.step_time = -1.0;
        return;
    }
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
// tab shown follows vs.show_scaling (G, --scaling, the lesson), which a click on a tab
// sets: the tab bar is told every frame, so it follows even when the Work area moves
// to another window (the layout's tabs).
void draw_work_tabs(AppState& app) {
    ViewState& vs = app.vs;
    vs.select_tab = false;
    if (ImGui::BeginTabBar("##work_tabs")) {
        if (ImGui::BeginTabItem("Work (counted)", nullptr, vs.show_scaling ? 0 : ImGuiTabItemFlags_SetSelected))
            ImGui::EndTabItem();
        if (ImGui::IsItemClicked()) vs.show_scaling = false;
        if (ImGui::BeginTabItem("Scaling (measured, G)", nullptr, vs.show_scaling ? ImGuiTabItemFlags_SetSelected : 0))
            ImGui::EndTabItem();
        if (ImGui::IsItemClicked()) vs.show_scaling = true;
        ImGui::EndTabBar();
    }
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

namespace {

const char* panel_title(const AppState& app, PanelId p) {
    switch (p) {
    case PanelId::tokens: return "Tokens  (position, text, how many times its K/V were computed)###tokens";
    case PanelId::qkv: return "Q, K, V of the newest token###qkv";
    case PanelId::cache:
        if (app.spec.on) return "KV caches of the target and the draft  (rows = positions)###cache";
        return app.model && app.model->config.is_mla() ? "KV cache: latent rows [c_KV | k_R]  +  attention weights###cache"
                                                       : "KV cache  (rows = positions)  +  attention weights###cache";
    case PanelId::work:
        return app.vs.show_scaling ? "Scaling: measured ms per step vs position###work" : "Work: with vs without cache###work";
    case PanelId::next_token: return "Next token###next";
    case PanelId::memory:
        return app.model && app.model->config.is_mla()
                   ? "Cache memory = layers x (latent c_KV + k_R) x tokens x bytes###memory"
                   : "Cache memory = 2 x layers x kv_heads x head_dim x tokens x bytes###memory";
    case PanelId::timeline: return "Timeline  (click a step to go back to it)###timeline";
    case PanelId::narration: return "What just happened###narration";
    }
    return "";
}

void draw_panel_contents(AppState& app, PanelId p) {
    switch (p) {
    case PanelId::tokens: app.spec.on ? draw_spec_tokens_panel(app) : draw_tokens_panel(app); break;
    case PanelId::qkv: draw_qkv_panel(app); break;
    case PanelId::cache: app.spec.on ? draw_spec_cache_panel(app) : draw_cache_panel(app); break;
    case PanelId::work: draw_work_tabs(app); break;
    case PanelId::next_token: draw_next_token_panel(app); break;
    case PanelId::memory: draw_memory_panel(app); break;
    case PanelId::timeline: draw_timeline_panel(app); break;
    case PanelId::narration: app.spec.on ? draw_spec_narration_panel(app) : draw_narration_panel(app); break;
    }
}

// A panel's window chrome: title bar and padding above and below the content.
float chrome_h() {
    const ImGuiStyle& st = ImGui::GetStyle();
    return ImGui::GetFontSize() + st.FramePadding.y * 2 + st.WindowPadding.y * 2;
}

// What the panel drawn from content_y on asks for, as a titled window's heights:
// exact for panels of fixed content (no child windows), else only how much more it
// needs when something overflows (those panels fit what they get).
// How far the deepest-overflowing child window's content runs past its bottom.
float child_overflow(const ImGuiWindow* w) {
    float over = 0;
    for (const ImGuiWindow* c : w->DC.ChildWindows)
        if (c->Active)
            over = std::max({over, c->DC.CursorMaxPos.y - c->ContentRegionRect.Max.y, child_overflow(c)});
    return over;
}

// Where a panel's measurements live: the Work slot's Scaling tab has a list of its own.
template <class App>
auto& measured_list(App& app, PanelId p) {
    auto& lc = app.vs.layout;
    return p == PanelId::work && app.vs.show_scaling ? lc.measured_scaling : lc.measured[size_t(panel_index(p))];
}

void measure(AppState& app, PanelId p, const ImGuiWindow* w, float content_y) {
    LayoutChoice& lc = app.vs.layout;
    const float over = std::max(child_overflow(w), lc.short_h);
    const float content = w->DC.CursorMaxPos.y - content_y;
    const float visible = w->ContentRegionRect.Max.y - content_y;
    const bool flex = p == PanelId::cache || p == PanelId::work;  // they fill what they get
    const bool exact = !flex && over <= 0 && std::none_of(w->DC.ChildWindows.begin(), w->DC.ChildWindows.end(),
                                                 [](const ImGuiWindow* c) { return c->Active; });
    PanelNeed n;
    if (exact) n.min = n.want = chrome_h() + content;
    else if (over > 0 || content > visible + 0.5f) n.min = n.want = chrome_h() + std::max(content, visible) + over;
    else return;
    auto& list = measured_list(app, p);
    for (auto& m : list)
        if (std::fabs(m.w - w->Size.x) < 1.5f) {
            m.need = exact ? n : PanelNeed{std::max(m.need.min, n.min), std::max(m.need.want, n.want)};
            return;
        }
    list.push_back({w->Size.x, n});
}

// Measurements belong to one window size, font and set of modes.
void forget_stale_measurements(AppState& app) {
    const ImGuiIO& io = ImGui::GetIO();
    size_t key = std::hash<float>()(io.DisplaySize.x) * 31 + std::hash<float>()(io.DisplaySize.y);
    key = key * 31 + std::hash<float>()(ImGui::GetFontSize());
    // Not the Scaling tab: its Work slot keeps measurements of its own (measured_list),
    // so its first show does not throw away the other panels' and redraw them frames later.
    key = key * 31 + (app.compare ? 1 : 0) + (app.spec.on ? 2 : 0) + (app.main.cache_on ? 4 : 0) +
          (app.error.empty() ? 0 : 16);
    key = key * 31 + std::hash<const void*>()(app.model);
    LayoutChoice& lc = app.vs.layout;
    if (key == lc.measured_key) return;
    lc.measured_key = key;
    for (auto& m : lc.measured) m.clear();
    lc.measured_scaling.clear();
    lc.controls_full_h = lc.controls_compact_h = 0.f;
}

void end_panel(AppState& app, PanelId p, const Slot& s, float content_y, const char* name) {
    const ImGuiWindow* w = ImGui::GetCurrentWindow();
    measure(app, p, w, content_y);
    record_fits(app.vs.layout.fits, w, name, s.scrolls);
}

void draw_single_slot(AppState& app, const Slot& s) {
    const PanelId p = s.panels.front();
    app.vs.layout.short_h = 0.f;
    panel(panel_title(app, p), s.r, true, [&] {
        const float y = ImGui::GetCursorScreenPos().y;
        draw_panel_contents(app, p);
        end_panel(app, p, s, y, panel_tab_label(p));
    }, s.scrolls);
}

// Several panels in one slot: a tab bar ("3 Work") and the one the teacher picked.
void draw_tab_slot(AppState& app, const Slot& s) {
    std::string id = "###slot";
    for (PanelId p : s.panels) id += std::to_string(panel_index(p));
    PanelId shown = shown_panel(app.vs, s.panels);
    app.vs.layout.short_h = 0.f;
    panel(id.c_str(), s.r, false, [&] {
        if (ImGui::BeginTabBar("##panels")) {
            // The short labels when the full ones would be cut ("1 KV c..."): every tab whole.
            const ImGuiStyle& st = ImGui::GetStyle();
            float full = 0;
            for (PanelId p : s.panels)
                full += ImGui::CalcTextSize(panel_tab_label(p)).x + ImGui::CalcTextSize("0 ").x + st.FramePadding.x * 2 +
                        st.ItemInnerSpacing.x;
            const bool short_labels = full > ImGui::GetContentRegionAvail().x;
            for (PanelId p : s.panels) {
                char label[64];
                std::snprintf(label, sizeof label, "%d %s###tab%d", panel_key_number(p),
                              short_labels ? panel_tab_short(p) : panel_tab_label(p), panel_index(p));
                if (ImGui::BeginTabItem(label, nullptr, p == shown ? ImGuiTabItemFlags_SetSelected : 0))
                    ImGui::EndTabItem();
                if (ImGui::IsItemClicked()) {
                    pick_panel(app.vs, p);
                    shown = p;
                }
                if (ImGui::IsItemHovered()) {
                    const std::string title = panel_title(app, p);
                    ImGui::SetTooltip("%s  (key %d; Tab / Shift+Tab: the next / previous tab)", title.substr(0, title.find("###")).c_str(),
                                      panel_key_number(p));
                }
            }
            ImGui::EndTabBar();
        }
        const float y = ImGui::GetCursorScreenPos().y;
        draw_panel_contents(app, shown);
        end_panel(app, shown, s, y, panel_tab_label(shown));
    }, s.scrolls);
}

void draw_controls(AppState& app, const Layout& L) {
    LayoutChoice& lc = app.vs.layout;
    panel("##controls", L.controls, false, [&] {
        draw_controls_panel(app, L.compact_controls);
        if (!L.compact_controls && lc.controls_expanded) {
            flow(ImGui::CalcTextSize("Fewer controls (M)").x + ImGui::GetFontSize());
            if (ImGui::Button("Fewer controls (M)")) lc.controls_expanded = false;
        }
        // the layout of the next frame fits it
        (L.compact_controls ? lc.controls_compact_h : lc.controls_full_h) = ImGui::GetCursorPosY();
        record_fits(lc.fits, ImGui::GetCurrentWindow(), "controls", lc.controls_expanded);
    });
}

void draw_normal_layout(AppState& app) {
    LayoutChoice& lc = app.vs.layout;
    forget_stale_measurements(app);
    const ImGuiIO& io = ImGui::GetIO();
    LayoutInput in;
    in.W = io.DisplaySize.x;
    in.H = io.DisplaySize.y;
    in.font_px = ImGui::GetFontSize();
    in.controls_h = lc.controls_full_h;
    in.controls_compact_h = lc.controls_compact_h;
    in.controls_expanded = lc.controls_expanded;
    in.tall_work = app.vs.show_scaling;
    in.force_focus = lc.force_focus;
    in.last_mode = lc.mode;
    in.narration_beside = !app.compare && !app.spec.on;
    in.need = [&app](PanelId p, float w) { return panel_need(app, p, w); };
    const Layout L = compute_layout(in);
    lc.mode = L.mode;
    lc.slots = static_cast<int>(L.slots.size());
    lc.compact_controls = L.compact_controls;
    lc.groups.clear();
    lc.fits.clear();
    draw_controls(app, L);
    for (const Slot& s : L.slots) {
        if (s.tabs()) {
            lc.groups.push_back(s.panels);
            draw_tab_slot(app, s);
        } else {
            draw_single_slot(app, s);
        }
    }
}

}  // namespace

PanelNeed panel_need(const AppState& app, PanelId p, float window_w) {
    const float cw = window_w - ImGui::GetStyle().WindowPadding.x * 2;
    const float chrome = chrome_h();
    switch (p) {
    case PanelId::tokens:
        if (!app.spec.on) return {chrome + tokens_panel_height(app, cw), chrome + tokens_panel_height(app, cw)};
        break;
    case PanelId::narration: {
        const std::string text = app.spec.on ? narrate_spec(app, spec_phase(app)) : narrate(app);
        const std::string why = app.spec.on ? spec_why_not(app) : std::string();
        if (app.spec.on)
            return {chrome + narration_text_height(text, why, cw, false), chrome + narration_text_height(text, why, cw, true)};
        return {chrome + narration_panel_height(app, cw, false), chrome + narration_panel_height(app, cw, true)};
    }
    case PanelId::next_token:
        return {chrome + next_token_panel_height(app, 3), chrome + next_token_panel_height(app, 1 << 20)};
    default: break;
    }
    for (const auto& m : measured_list(app, p))
        if (std::fabs(m.w - window_w) < 1.5f) return m.need;
    return {};
}

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
    app.cache_drawn.clear();
    if (app.serve.on) {
        draw_serve_view(app);
        if (app.vs.show_help) draw_help_overlay(app);
        draw_toast(app);
        return;
    }
    draw_normal_layout(app);
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
            {"L  /  V", "lesson: PgDn / PgUp chapters, 1-9 and 0 (= 10), End the last, Esc leaves / serving view: V leaves"},
            {"C  /  A", "cache on / off (from the next step) / MLA: expand or absorbed"},
            {"P", "play / pause"},
            {"G", "Scaling tab: measured ms per step vs position"},
            {"R", "reset to before the prefill"},
            {"Ctrl +  /  Ctrl -", "font size"},
            {"1 - 6", "a panel: 1 cache, 2 Q/K/V, 3 work, 4 next token, 5 memory, 6 timeline"},
            {"Tab", "the next tab, when panels share a place (small window or big font); Shift+Tab the previous"},
            {"F", "focus layout: tokens, one large panel, narration (again: back)"},
            {"M", "more controls: prompt, model, policy ... when they are folded"},
            {"S", "screenshot (PNG in the current folder)"},
            {"F1", "this help"},
        };
        // The descriptions wrap so that the overlay stays inside the window (big fonts).
        float key_w = 0;
        for (auto& r : rows) key_w = std::max(key_w, ImGui::CalcTextSize(r[0]).x);
        const ImGuiStyle& st = ImGui::GetStyle();
        const float desc_w = std::max(ImGui::GetFontSize() * 8, io.DisplaySize.x * 0.94f - key_w -
                                                                   st.WindowPadding.x * 2 - st.CellPadding.x * 4);
        if (ImGui::BeginTable("keys", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) {
            for (auto& r : rows) {
                ImGui::TableNextRow();
                ImGui::TableNextColumn();
                ImGui::TextColored(to_vec4(palette().accent), "%s", r[0]);
                ImGui::TableNextColumn();
                ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + std::min(desc_w, ImGui::CalcTextSize(r[1]).x + 1.f));
                text_wrapped("%s", r[1]);
                ImGui::PopTextWrapPos();
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

namespace {

PanelFit fit_of(const ImGuiWindow* w, const std::string& name, bool scrolls) {
    PanelFit f;
    f.name = name;
    const ImRect& r = w->ContentRegionRect;
    f.content_w = w->DC.CursorMaxPos.x - r.Min.x;
    f.content_h = w->DC.CursorMaxPos.y - r.Min.y;
    f.visible_w = r.Max.x - r.Min.x;
    f.visible_h = r.Max.y - r.Min.y;
    f.scrolls = scrolls;
    return f;
}

}  // namespace

void record_fits(std::vector<PanelFit>& out, const ImGuiWindow* w, const std::string& name, bool scrolls) {
    out.push_back(fit_of(w, name, scrolls));
    for (const ImGuiWindow* c : w->DC.ChildWindows)
        if (c->Active) record_fits(out, c, name + "/" + c->Name, scrolls);
}

}  // namespace kvui
