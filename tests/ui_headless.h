// The window's tests without a display: a Dear ImGui context with the app's fonts
// and theme (the font atlas is built, never uploaded) and one frame of draw_app that
// checks ImGui's stacks are back where they were (libimgui.a keeps its asserts, so a
// Begin/End mistake aborts the test; an unbalanced Push/Pop fails a CHECK here).
// Used by the test_ui_* files; header-only because each is its own executable.
#pragma once
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <string>
#include <utility>

#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvtest {

class Headless {
public:
    // A w x h display with fonts of font_px pixels (the window uses
    // kvui::base_font_px(h) times its font scale).
    explicit Headless(float w = 1280, float h = 720, float font_px = 18) {
        ImGui::CreateContext();
        ImGuiIO& io = ImGui::GetIO();
        io.IniFilename = nullptr;
        io.DeltaTime = 1.f / 60.f;
        for (int i = 0; i < ImGuiKey_COUNT; ++i) io.KeyMap[i] = -1;
        io.KeyMap[ImGuiKey_Space] = 32;  // GLFW_KEY_SPACE, as the GLFW backend maps it
        resize(w, h, font_px);
    }
    ~Headless() { ImGui::DestroyContext(); }
    Headless(const Headless&) = delete;
    Headless& operator=(const Headless&) = delete;

    // A new display size and text size (fonts rebuilt, theme scaled as the window does).
    void resize(float w, float h, float font_px) {
        ImGuiIO& io = ImGui::GetIO();
        io.DisplaySize = ImVec2(w, h);
        kvui::build_fonts(font_px);
        unsigned char* px = nullptr;
        int tw = 0, th = 0;
        io.Fonts->GetTexDataAsRGBA32(&px, &tw, &th);
        kvui::apply_theme(true, font_px / 18.f);
    }

    // One frame of the whole window; checks that every stack is back where it was.
    void frame(kvui::AppState& app) {
        ImGui::NewFrame();
        ImGuiContext& g = *GImGui;
        const int windows = g.CurrentWindowStack.Size, flags = g.ItemFlagsStack.Size;
        kvui::draw_app(app);
        CHECK(g.CurrentWindowStack.Size == windows);
        CHECK(g.ColorStack.Size == 0);
        CHECK(g.StyleVarStack.Size == 0);
        CHECK(g.FontStack.Size == 0);
        CHECK(g.GroupStack.Size == 0);
        CHECK(g.DisabledStackSize == 0);
        CHECK(g.ItemFlagsStack.Size == flags);
        ImGui::Render();
        CHECK(ImGui::GetDrawData() != nullptr);
    }
};

// Queues one Command and runs it to the end, as a frame and the worker would.
inline void run_command(kvui::Controller& ctl, kvui::AppState& app, kvui::Command c) {
    app.push(std::move(c));
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
}

// The presenter rule (docs/design.md) on every cache picture of the last frame,
// measured from the picture's own geometry: rows at least 0.8 font heights, each
// labelled with its position and token (12 px of text at least), the newest in view.
inline void check_cache_pictures(const kvui::AppState& app) {
    for (const kvui::CacheDrawn& d : app.cache_drawn) {
        CAPTURE(d.name);
        CAPTURE(d.rows);
        CAPTURE(d.font_px);
        CAPTURE(d.row_h);
        CAPTURE(d.in_view);
        CHECK(d.row_h >= 0.8f * d.font_px);
        CHECK(d.labelled == d.rows);
        CHECK(d.label_px >= 12.f);
        if (d.rows > 0) CHECK(d.newest_in_view);
    }
}

// A cache's rows may run past the bottom of their child window on purpose: more rows
// than fit at 0.8 font heights scroll, the newest in view (checked above).
inline bool cache_rows_scroll(const kvui::AppState& app, const std::string& fit_name) {
    for (const kvui::CacheDrawn& d : app.cache_drawn)
        if (d.in_view < d.rows && fit_name.size() >= d.name.size() &&
            fit_name.compare(fit_name.size() - d.name.size(), d.name.size(), d.name) == 0)
            return true;
    return false;
}

}  // namespace kvtest
