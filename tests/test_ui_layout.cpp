// The normal layout (ui/state/layout.h) under a headless ImGui context (no GL): at 1280x720
// and 1920x1080, font scales 1, 1.5 and 2, cache on and off, after 6 steps, every
// shown panel's content fits the room it got (ImGui's own cursor extents against its
// content region, the window and its child windows) unless the layout marked it as
// scrolling; the tokens with their badges and the narration are always on screen,
// alone and whole. The pure rule is checked directly: slots inside the window, never
// overlapping, every panel placed once, and the choices (tiled, tabbed, focus) it
// makes for those sizes. The keys 1-6, Tab, F and M pick tabs and layouts.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "tests/ui_headless.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

using namespace kvui;

namespace {

constexpr int KEY_2 = 50, KEY_5 = 53, KEY_6 = 54, KEY_F = 70, KEY_L = 76, KEY_M = 77, KEY_TAB = 258, KEY_ESCAPE = 256;
const std::string kTiny = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";

// A headless window of w x h at a font scale (the fixture checks ImGui's stacks every frame).
struct Window : kvtest::Headless {
    Window() : kvtest::Headless(1280, 720, window_font_px(720, 1.f)) {}
    void resize(float w, float h, float scale) { kvtest::Headless::resize(w, h, window_font_px(h, scale)); }
};

void settle(Controller& ctl, AppState& app) {
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
}

// The bundled model, cache on or off (or both, compare; or speculative decoding with
// tiny-draft), 6 steps (as `kvscope --steps 6`).
void six_steps(Controller& ctl, AppState& app, bool cache, bool compare = false, bool spec = false) {
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model != nullptr);
    REQUIRE(app.error.empty());
    app.vs.animate = false;
    Command c{CommandKind::set_cache};
    c.flag = cache;
    kvtest::run_command(ctl, app, c);
    if (compare) {
        Command cmp{CommandKind::set_compare};
        cmp.flag = true;
        kvtest::run_command(ctl, app, cmp);
        REQUIRE(app.compare);
    }
    if (spec) {
        Command sp{CommandKind::set_speculative};
        sp.flag = true;
        sp.n = 4;
        kvtest::run_command(ctl, app, sp);
        REQUIRE(app.spec.on);
    }
    for (int i = 0; i < 6; ++i) kvtest::run_command(ctl, app, {CommandKind::step});
    REQUIRE(app.main.n_steps() >= 6);
}

const PanelFit* fit_named(const AppState& app, const std::string& name) {
    for (const PanelFit& f : app.vs.layout.fits)
        if (f.name == name) return &f;
    return nullptr;
}

// Clicks the tab whose label starts with `prefix` ("2 Q"), in whichever tab bar has it.
bool click_tab(Window& h, AppState& app, const std::string& prefix) {
    ImGuiContext& g = *GImGui;
    for (int n = 0; n < g.TabBars.GetMapSize(); ++n) {
        ImGuiTabBar* tb = g.TabBars.TryGetMapData(n);
        if (!tb || tb->PrevFrameVisible < g.FrameCount - 1) continue;
        for (const ImGuiTabItem& tab : tb->Tabs) {
            if (std::string(tb->GetTabName(&tab)).rfind(prefix, 0) != 0) continue;
            ImGuiIO& io = ImGui::GetIO();
            io.MousePos = ImVec2(tb->BarRect.Min.x + tab.Offset + tab.Width * 0.5f,
                                 (tb->BarRect.Min.y + tb->BarRect.Max.y) * 0.5f);
            io.MouseDown[0] = true;
            h.frame(app);
            io.MouseDown[0] = false;
            h.frame(app);
            io.MousePos = ImVec2(-FLT_MAX, -FLT_MAX);
            // The layout measures the newly shown panel's content and settles a few frames later.
            for (int f = 0; f < 4; ++f) h.frame(app);
            return true;
        }
    }
    return false;
}

// Estimates only (no window): the rule's own invariants.
void check_invariants(const Layout& L, float W, float H) {
    std::vector<Rect> all = L.all();
    for (size_t i = 0; i < all.size(); ++i) {
        CAPTURE(i);
        CHECK(all[i].inside(W, H));
        for (size_t j = i + 1; j < all.size(); ++j) CHECK_FALSE(all[i].overlaps(all[j]));
    }
    std::multiset<int> placed;
    for (const Slot& s : L.slots) {
        REQUIRE(!s.panels.empty());
        for (PanelId p : s.panels) {
            placed.insert(panel_index(p));
            if (panel_pinned(p)) CHECK(s.panels.size() == 1);  // tokens and narration never behind a tab
        }
    }
    for (PanelId p : kAllPanels) CHECK(placed.count(panel_index(p)) == 1);
}

}  // namespace

TEST_CASE("layout rule: slots inside the window, never overlapping, every panel once, pinned alone") {
    for (float W : {1024.f, 1280.f, 1600.f, 1920.f, 3840.f})
        for (float H : {640.f, 720.f, 1080.f, 2160.f})
            for (float scale : {1.f, 1.5f, 2.f, 3.f})
                for (bool focus : {false, true}) {
                    CAPTURE(W);
                    CAPTURE(H);
                    CAPTURE(scale);
                    CAPTURE(focus);
                    LayoutInput in;
                    in.W = W;
                    in.H = H;
                    in.font_px = window_font_px(H, scale);
                    in.force_focus = focus;
                    const Layout L = compute_layout(in);
                    check_invariants(L, W, H);
                    if (focus) CHECK(L.mode == LayoutMode::focus);
                    if (L.mode == LayoutMode::tiled) CHECK(L.slots.size() == size_t(kPanelCount));
                    if (L.mode == LayoutMode::focus) CHECK(L.slots.size() == 3u);
                }
}

TEST_CASE("layout rule: more panels when they fit, tabs and then focus when they do not") {
    auto at = [](float W, float H, float scale) {
        LayoutInput in;
        in.W = W;
        in.H = H;
        in.font_px = window_font_px(H, scale);
        return compute_layout(in);
    };
    // A readable font on a large window: every panel on screen, all controls.
    CHECK(at(1920, 1080, 1.f).mode == LayoutMode::tiled);
    // A projector font: fewer slots, the controls folded to one row first.
    for (float scale : {1.5f, 2.f}) {
        CAPTURE(scale);
        const Layout L = at(1280, 720, scale);
        CHECK(L.mode != LayoutMode::tiled);
        CHECK(L.compact_controls);
    }
    CHECK(at(1280, 720, 1.5f).fits);  // at 2 the large slot scrolls: 22 lines do not hold every plot
    CHECK(at(1280, 720, 2.f).mode == LayoutMode::focus);  // a right column under 20 font sizes is too narrow
    // Never more slots for a bigger font.
    for (float W : {1280.f, 1920.f}) {
        size_t last = 99;
        for (float scale : {0.75f, 1.f, 1.25f, 1.5f, 1.75f, 2.f, 2.5f}) {
            const size_t n = at(W, W * 9 / 16, scale).slots.size();
            CAPTURE(W);
            CAPTURE(scale);
            CHECK(n <= last);
            last = n;
        }
    }
    // The expanded controls are kept when asked for.
    LayoutInput in;
    in.W = 1280;
    in.H = 720;
    in.font_px = window_font_px(720, 1.5f);
    in.controls_expanded = true;
    CHECK_FALSE(compute_layout(in).compact_controls);
}

TEST_CASE("normal layout: every shown panel fits at 1280x720 and 1920x1080, font scales 1 to 2, cache on, off, compare") {
    Window h;
    struct Size {
        float w, h;
    };
    for (int mode : {0, 1, 2, 3}) {
        const bool cache = mode != 1, compare = mode == 2, spec = mode == 3;
        Controller ctl("never");
        AppState app;
        six_steps(ctl, app, cache, compare, spec);
        for (Size s : {Size{1280, 720}, Size{1920, 1080}})
            for (float scale : {1.f, 1.5f, 2.f}) {
                CAPTURE(cache);
                CAPTURE(compare);
                CAPTURE(s.w);
                CAPTURE(scale);
                h.resize(s.w, s.h, scale);
                for (int f = 0; f < 6; ++f) h.frame(app);  // the layout follows what it measured last frame
                const LayoutChoice& lc = app.vs.layout;
                MESSAGE(s.w << "x" << s.h << " scale " << scale << std::string(spec ? " speculative" : compare ? " compare" : cache ? " cache on" : " cache off")
                             << ": " << std::string(layout_mode_name(lc.mode)) << ", " << lc.slots << " slots, "
                             << std::string(lc.compact_controls ? "folded controls" : "all controls"));
                // The rule's choices for these sizes, with what the window measured.
                if (compare || spec) {  // two caches side by side ask for more room: never more slots
                    CHECK(lc.slots <= (scale == 1.f ? 8 : 5));
                } else if (scale == 1.f) {
                    CHECK(lc.mode == LayoutMode::tiled);
                    CHECK_FALSE(lc.compact_controls);
                } else if (scale == 1.5f) {
                    CHECK(lc.mode == LayoutMode::tabbed);
                    CHECK(lc.slots == 5);
                    CHECK(lc.compact_controls);
                } else {
                    CHECK(lc.mode == LayoutMode::focus);
                    CHECK(lc.compact_controls);
                }
                REQUIRE(!lc.fits.empty());
                for (const PanelFit& fit : lc.fits) {
                    CAPTURE(fit.name);
                    CAPTURE(fit.content_w);
                    CAPTURE(fit.visible_w);
                    CAPTURE(fit.content_h);
                    CAPTURE(fit.visible_h);
                    CAPTURE(fit.scrolls);
                    CHECK((fit.fits() || fit.scrolls ||
                           (kvtest::cache_rows_scroll(app, fit.name) && fit.content_w <= fit.visible_w + 1.f)));
                }
                kvtest::check_cache_pictures(app);
                // What the lesson is about: the tokens with their badges and the narration, whole.
                for (std::string name : {"Tokens", "What just happened"}) {
                    CAPTURE(name);
                    const PanelFit* f = fit_named(app, name);
                    REQUIRE(f != nullptr);
                    CHECK(f->fits());
                    CHECK_FALSE(f->scrolls);
                }
                CHECK(ImGui::FindWindowByName("###tokens")->Scroll.y == 0.f);
                if (!cache) CHECK(app.main.compute_counts.front() == 6);
                CAPTURE(spec);  // the badge "x6" is drawn, and whole
            }
    }
}

TEST_CASE("presenter rule: the cache after 6 steps without it shows all 9 rows, labelled, at 0.8 font heights") {
    // The projector's sizes (font round(h/50) x scale: 21 px at 720p x1.5, 28 at 720p x2,
    // 44 at 1080p x2); measured from the cache picture's own geometry (app.cache_drawn).
    Window h;
    Controller ctl("never");
    AppState app;
    six_steps(ctl, app, false);
    // At each projector size: the one cache picture drawn, held to the rule.
    const std::array<std::array<float, 3>, 3> sizes = {{{1280, 720, 1.5f}, {1920, 1080, 2.f}, {1280, 720, 2.f}}};
    auto at_sizes = [&](auto check) {
        for (const auto& [w, H, scale] : sizes) {
            CAPTURE(w);
            CAPTURE(scale);
            h.resize(w, H, scale);
            for (int f = 0; f < 6; ++f) h.frame(app);
            REQUIRE(app.cache_drawn.size() == 1u);
            kvtest::check_cache_pictures(app);
            check(app.cache_drawn.front(), H, scale);
        }
    };
    at_sizes([](const CacheDrawn& d, float H, float scale) {
        CHECK(d.rows == 9);
        CHECK(d.in_view == 9);  // the whole picture: 8 recomputed rows and the new one
        CHECK(d.labelled == 9);
        CHECK(d.row_h >= 0.8f * window_font_px(H, scale));
    });
    // More rows than fit at a projector's font scroll, every one labelled, the newest in view.
    for (int i = 0; i < 6; ++i) kvtest::run_command(ctl, app, {CommandKind::step});
    at_sizes([](const CacheDrawn& d, float, float scale) {
        CHECK(d.rows == 15);
        if (scale == 1.5f) CHECK(d.in_view == 15);
        else CHECK(d.in_view >= 9);
    });
}

TEST_CASE("layout rule: hysteresis between the tabbed and focus layouts") {
    // A size where two columns fit by less than a line: from tabbed it stays tabbed,
    // from focus it stays focus (no flip-flop each frame).
    LayoutInput in;
    in.W = 1280;
    in.font_px = window_font_px(720, 1.5f);
    bool found = false;
    for (float H = 500; H < 900 && !found; H += 1) {
        in.H = H;
        in.last_mode = LayoutMode::tabbed;
        const Layout a = compute_layout(in);
        in.last_mode = LayoutMode::focus;
        const Layout b = compute_layout(in);
        if (a.mode != LayoutMode::focus && b.mode == LayoutMode::focus) {
            found = true;
            CAPTURE(H);
            in.H = H - 1;  // a pixel less: from tabbed, focus now (it no longer fits)...
            in.last_mode = LayoutMode::tabbed;
            CHECK(compute_layout(in).mode == LayoutMode::focus);
            in.H = H + in.font_px;  // ...and a line more: from focus, back to tabbed
            in.last_mode = LayoutMode::focus;
            CHECK(compute_layout(in).mode != LayoutMode::focus);
        }
    }
    CHECK(found);
}

TEST_CASE("normal layout: the Scaling tab's first show settles at once (no redraw of the column frames later)") {
    Window h;
    Controller ctl("never");
    AppState app;
    six_steps(ctl, app, true);
    for (float scale : {1.f, 1.5f}) {
        CAPTURE(scale);
        h.resize(1280, 720, scale);
        app.vs.show_scaling = false;
        for (int f = 0; f < 6; ++f) h.frame(app);
        app.vs.show_scaling = true;  // as G or a click on the tab
        std::vector<std::vector<float>> frames;
        for (int f = 0; f < 5; ++f) {
            h.frame(app);
            std::vector<float> v;
            for (const PanelFit& fit : app.vs.layout.fits) {
                if (fit.name.find('/') != std::string::npos) continue;  // windows, not their children
                v.push_back(fit.visible_w);
                v.push_back(fit.visible_h);
            }
            frames.push_back(v);
        }
        for (size_t f = 1; f < frames.size(); ++f) {
            CAPTURE(f);
            CHECK(frames[f] == frames[0]);
        }
    }
}

TEST_CASE("normal layout: the keys pick tabs (1-6, Tab), the focus layout (F) and all controls (M)") {
    Window h;
    h.resize(1280, 720, 1.5f);
    Controller ctl("never");
    AppState app;
    six_steps(ctl, app, true);
    app.vs.queued_keys = true;
    auto press = [&](int key) {
        app.vs.key_queue.emplace_back(key, false);
        for (int f = 0; f < 3; ++f) h.frame(app);
    };
    auto shown = [&](const char* name) { return fit_named(app, name) != nullptr; };
    for (int f = 0; f < 4; ++f) h.frame(app);
    REQUIRE(app.vs.layout.mode == LayoutMode::tabbed);
    CHECK(shown("KV cache + attention"));
    CHECK_FALSE(shown("Q, K, V"));
    press(KEY_2);
    CHECK(shown("Q, K, V"));
    CHECK_FALSE(shown("KV cache + attention"));
    press(KEY_5);
    CHECK(shown("Memory"));
    CHECK(shown("Q, K, V"));  // another slot keeps its choice
    // A click on a tab picks it as a key does; the Work/Scaling tabs inside follow G.
    REQUIRE(click_tab(h, app, "1 KV cache"));
    CHECK(shown("KV cache + attention"));
    CHECK_FALSE(shown("Q, K, V"));
    REQUIRE(click_tab(h, app, "3 Work"));
    CHECK(shown("Work / Scaling"));
    REQUIRE(click_tab(h, app, "Scaling"));
    CHECK(app.vs.show_scaling);
    REQUIRE(click_tab(h, app, "Work (counted)"));
    CHECK_FALSE(app.vs.show_scaling);

    press(KEY_F);
    CHECK(app.vs.layout.mode == LayoutMode::focus);
    CHECK(app.vs.layout.slots == 3);
    CHECK(shown("Work / Scaling"));  // the last picked
    press(KEY_TAB);
    CHECK(shown("Next token"));
    press(KEY_6);
    CHECK(shown("Timeline"));
    press(KEY_TAB);  // wraps to the first
    CHECK(shown("KV cache + attention"));
    app.vs.key_queue.push_back({KEY_TAB, false, true});  // Shift+Tab: back, wrapping to the last
    for (int f = 0; f < 3; ++f) h.frame(app);
    CHECK(shown("Timeline"));
    CHECK_FALSE(shown("KV cache + attention"));
    press(KEY_TAB);
    CHECK(shown("KV cache + attention"));
    CHECK(shown("Tokens"));
    CHECK(shown("What just happened"));
    press(KEY_F);
    CHECK(app.vs.layout.mode == LayoutMode::tabbed);

    CHECK(app.vs.layout.compact_controls);
    press(KEY_M);
    CHECK_FALSE(app.vs.layout.compact_controls);
    press(KEY_M);
    CHECK(app.vs.layout.compact_controls);

    // The lesson replaces the layout; leaving it brings the same layout back.
    const LayoutMode before = app.vs.layout.mode;
    press(KEY_L);
    REQUIRE(app.vs.lesson.on);
    settle(ctl, app);
    press(KEY_ESCAPE);
    settle(ctl, app);
    for (int f = 0; f < 3; ++f) h.frame(app);
    CHECK_FALSE(app.vs.lesson.on);
    CHECK(app.vs.layout.mode == before);
    CHECK(ImGui::FindWindowByName("###tokens")->Active);
}

TEST_CASE("the help overlay (F1) with the layout keys fits the window at 1280x720, font scale 2") {
    Window h;
    h.resize(1280, 720, 2.f);
    Controller ctl("never");
    AppState app;
    six_steps(ctl, app, true);
    app.vs.show_help = true;
    for (int f = 0; f < 4; ++f) h.frame(app);
    const ImGuiWindow* w = ImGui::FindWindowByName("###help");
    REQUIRE(w != nullptr);
    CAPTURE(w->Size.x);
    CAPTURE(w->Size.y);
    CHECK(w->Pos.x >= 0);
    CHECK(w->Pos.y >= 0);
    CHECK(w->Pos.x + w->Size.x <= 1280.5f);
    CHECK(w->Pos.y + w->Size.y <= 720.5f);
    // and its text is not cut: the content stays inside the window's content region
    // (what the content asks, ImGui's ContentSizeIdeal, within the window less its padding)
    const ImVec2 pad = ImGui::GetStyle().WindowPadding;
    CAPTURE(w->ContentSizeIdeal.x);
    CAPTURE(w->ContentSizeIdeal.y);
    CHECK(w->ContentSizeIdeal.x <= w->Size.x - pad.x * 2 + 1.f);
    CHECK(w->ContentSizeIdeal.y <= w->Size.y - pad.y * 2 - w->TitleBarHeight() + 1.f);
    MESSAGE("help overlay at 1280x720, font scale 2: " << w->Size.x << " x " << w->Size.y);
}
