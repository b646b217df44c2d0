// The window's tests without a display: a Dear ImGui context with the app's fonts
// and theme (the font atlas is built, never uploaded) and one frame of draw_app that
// checks ImGui's stacks are back where they were (libimgui.a keeps its asserts, so a
// Begin/End mistake aborts the test; an unbalanced Push/Pop fails a CHECK here).
// Used by the test_ui_* files; header-only because each is its own executable.
#pragma once
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

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

}  // namespace kvtest
