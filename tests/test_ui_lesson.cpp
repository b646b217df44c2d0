// Lesson mode under a headless ImGui context (no GL): every chapter at 1280x720 and
// 1920x1080, font scales 1, 1.5 and 2, with the framed panel's content inside its
// visible region (ImGui's own cursor extents, recorded in app.fits); each chapter's
// text carries the numbers the engine gave for that state, recomputed here from the
// traces and the DESIGN.md formulas; the keys (PageUp/PageDown included) move
// through the chapters, and leaving restores the normal layout.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "core/model/model_io.h"
#include "core/session/session.h"
#include "ui/app_state.h"
#include "ui/controller.h"
#include "ui/lesson.h"
#include "ui/panels.h"
#include "ui/theme.h"

using namespace kvui;

namespace {

constexpr int KEY_SPACE = 32, KEY_5 = 53, KEY_L = 76, KEY_ESCAPE = 256, KEY_BACKSPACE = 259, KEY_RIGHT = 262,
              KEY_LEFT = 263, KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267;
const std::string kTiny = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";

// The app's font size for a window height and scale (as app/gui_main.cpp).
float font_px(float h, float scale) { return std::round(std::clamp(h / 50.f, 13.f, 44.f) * scale); }

struct Headless {
    Headless() {
        ImGui::CreateContext();
        ImGuiIO& io = ImGui::GetIO();
        io.IniFilename = nullptr;
        io.DeltaTime = 1.f / 60.f;
        for (int i = 0; i < ImGuiKey_COUNT; ++i) io.KeyMap[i] = -1;
        resize(1280, 720, 1.f);
    }
    ~Headless() { ImGui::DestroyContext(); }
    void resize(float w, float h, float scale) {
        ImGuiIO& io = ImGui::GetIO();
        io.DisplaySize = ImVec2(w, h);
        const float px = font_px(h, scale);
        build_fonts(px);
        unsigned char* pixels = nullptr;
        int tw = 0, th = 0;
        io.Fonts->GetTexDataAsRGBA32(&pixels, &tw, &th);
        apply_theme(true, px / 18.f);
    }
    void frame(AppState& app) {
        ImGui::NewFrame();
        draw_app(app);
        ImGui::Render();
    }
};

// Runs what the frame queued (inline controller) and the sweep, if one was asked for.
void settle(Controller& ctl, AppState& app) {
    ctl.submit(app);
    ctl.wait();
    if (ctl.sweep_running()) ctl.wait_sweep();
    ctl.poll(app);
}

void open_bundled(Controller& ctl, AppState& app) {
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model != nullptr);
    REQUIRE(app.error.empty());
    app.vs.animate = false;
}

void go(Controller& ctl, AppState& app, int chapter) {
    if (app.vs.lesson.on) goto_chapter(app, chapter);
    else enter_lesson(app, chapter);
    settle(ctl, app);
    REQUIRE(app.error.empty());
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string str(int64_t x) { return std::to_string(x); }

}  // namespace

TEST_CASE("lesson: the chapters are the issue's nine, each with a framed panel") {
    REQUIRE(lesson_chapter_count() == 9);
    for (const Chapter& ch : lesson_chapters()) {
        CAPTURE(ch.number);
        CHECK(!ch.title.empty());
        CHECK(!ch.look_at.empty());
        CHECK(ch.panels.size() >= 2);
        CHECK(ch.panels.size() <= 3);
    }
    CHECK(lesson_chapter(0).number == 1);
    CHECK(lesson_chapter(99).number == 9);
    CHECK(lesson_chapter(4).setup.cache_on == false);
    CHECK(lesson_chapter(8).setup.stale_demo);
}

TEST_CASE("lesson layout: text and panels inside the window, never overlapping") {
    for (float W : {1280.f, 1920.f, 1600.f})
        for (float H : {720.f, 1080.f, 1600.f})
            for (const Chapter& ch : lesson_chapters()) {
                CAPTURE(W);
                CAPTURE(H);
                CAPTURE(ch.number);
                const LessonLayout L = compute_lesson_layout(W, H, font_px(H, 2.f), 0.f, ch);
                REQUIRE(!L.panels.empty());
                REQUIRE(L.panels.size() <= ch.panels.size());
                // Room for 30 lines: every panel; less: only the framed one, full size.
                CHECK(L.panels.size() == (H / font_px(H, 2.f) >= 30.f ? ch.panels.size() : 1u));
                std::vector<Rect> all = L.panels;
                all.push_back(L.text);
                for (size_t i = 0; i < all.size(); ++i) {
                    CHECK(all[i].inside(W, H));
                    for (size_t j = i + 1; j < all.size(); ++j) CHECK_FALSE(all[i].overlaps(all[j]));
                }
                // The framed panel gets the largest share.
                for (size_t i = 1; i < L.panels.size(); ++i)
                    CHECK(L.panels[0].w * L.panels[0].h >= L.panels[i].w * L.panels[i].h);
            }
}

TEST_CASE("lesson: every chapter's framed panel fits at 1280x720 and 1920x1080, font scales 1 to 2") {
    Headless h;
    Controller ctl("never");
    AppState app;
    open_bundled(ctl, app);
    struct Size {
        float w, h;
    };
    for (Size s : {Size{1280, 720}, Size{1920, 1080}})
        for (float scale : {1.f, 1.5f, 2.f}) {
            h.resize(s.w, s.h, scale);
            for (int n = 1; n <= lesson_chapter_count(); ++n) {
                CAPTURE(s.w);
                CAPTURE(scale);
                CAPTURE(n);
                go(ctl, app, n);
                for (int f = 0; f < 3; ++f) h.frame(app);  // the layout follows the text measured last frame
                REQUIRE(!app.fits.empty());
                for (const PanelFit& fit : app.fits) {
                    CAPTURE(fit.name);
                    CAPTURE(fit.content_w);
                    CAPTURE(fit.visible_w);
                    CAPTURE(fit.content_h);
                    CAPTURE(fit.visible_h);
                    CHECK(fit.fits());
                }
                // The text on top is not cut either: it got the height it asked for.
                const Chapter& ch = lesson_chapter(n);
                const LessonLayout L = compute_lesson_layout(s.w, s.h, ImGui::GetFontSize(), app.vs.lesson.text_h, ch);
                CHECK(L.text.h >= app.vs.lesson.text_h - 1.f);
            }
        }
}

TEST_CASE("lesson: each chapter's text carries the engine's numbers for its state") {
    Controller ctl("never");
    AppState app;
    open_bundled(ctl, app);
    const kv::ModelConfig& c = app.model->config;
    const int64_t L = c.n_layer, H = c.n_head, Hkv = c.n_kv_head, hd = c.head_dim();
    auto text = [&](int n) { return chapter_text(lesson_chapter(n), app); };

    SUBCASE("1: tokens and the prediction") {
        go(ctl, app, 1);
        const std::string s = text(1);
        CAPTURE(s);
        const kv::StepTrace& t = *app.main.last();
        CHECK(has(s, "into " + str(app.main.prompt_ids.size()) + " tokens"));
        for (int id : app.main.prompt_ids) CHECK(has(s, str(id)));
        CHECK(has(s, "all " + str(c.vocab_size) + " tokens"));
        CHECK(has(s, "It takes '" + app.token_text(t.next_id) + "'"));
    }
    SUBCASE("2: prefill counts") {
        go(ctl, app, 2);
        const std::string s = text(2);
        CAPTURE(s);
        const kv::Counters& k = app.main.history.front()->counters;
        const int64_t p = static_cast<int64_t>(app.main.prompt_ids.size());
        CHECK(k.kv_rows_computed == L * Hkv * p);
        CHECK(k.attn_scores == L * H * p * (p + 1) / 2);
        CHECK(has(s, "= " + str(k.kv_rows_computed) + " K/V rows"));
        CHECK(has(s, "(" + str(k.cache_bytes) + " bytes)"));
        CHECK(has(s, str(k.attn_scores) + " q.k scores"));
    }
    SUBCASE("3: a decode step with the cache") {
        go(ctl, app, 3);
        const std::string s = text(3);
        CAPTURE(s);
        const kv::StepTrace& t = *app.main.last();
        CHECK(t.phase == kv::Phase::decode);
        CHECK(t.counters.kv_rows_reused == L * Hkv * t.start_pos);
        CHECK(has(s, "(position " + str(t.start_pos) + ")"));
        CHECK(has(s, str(t.counters.attn_scores) + " q.k scores"));
        CHECK(has(s, str(t.counters.kv_rows_reused) + " K/V rows reused"));
        CHECK(has(s, "cache row " + str(t.start_pos)));
    }
    SUBCASE("4: cache off, the badges and the recomputed rows") {
        go(ctl, app, 4);
        const std::string s = text(4);
        CAPTURE(s);
        const kv::StepTrace& t = *app.main.last();
        CHECK_FALSE(t.cache_on);
        CHECK(app.main.compute_counts.front() == 6);  // "Python" x6 after six steps
        CHECK(has(s, "computed 6 times (x6"));
        CHECK(has(s, "recomputed " + str(t.counters.kv_rows_recomputed) + " K/V rows"));
        const float d = max_recompute_diff(t);
        CHECK(d >= 0.f);
        CHECK(d < 1e-5f);
        CHECK(has(s, "is " + fmt_diff(d) + "."));
    }
    SUBCASE("5: work with and without, both counted") {
        go(ctl, app, 5);
        const std::string s = text(5);
        CAPTURE(s);
        REQUIRE(app.compare);
        const SessionView& on = app.main.cache_on ? app.main : app.other;
        const SessionView& off = app.main.cache_on ? app.other : app.main;
        const int p = static_cast<int>(on.prompt_ids.size()), N = on.n_steps();
        CHECK(on.totals.kv_rows_computed == L * Hkv * (p + N - 1));
        CHECK(off.totals.kv_rows_computed == L * Hkv * (N * p + N * (N - 1) / 2));
        CHECK(has(s, "K/V rows " + str(on.totals.kv_rows_computed) + " with the cache, " +
                         str(off.totals.kv_rows_computed) + " without"));
        CHECK(has(s, "attention scores " + str(on.totals.attn_scores) + " with, " + str(off.totals.attn_scores)));
    }
    SUBCASE("6: measured time, both modes and the sweep") {
        go(ctl, app, 6);
        const std::string s = text(6);
        CAPTURE(s);
        REQUIRE(app.scaling.state == SweepState::done);
        const SessionView& on = app.main.cache_on ? app.main : app.other;
        double sum = 0;
        int n = 0;
        for (const auto& t : on.history)
            if (t->phase == kv::Phase::decode) sum += t->ms, ++n;
        REQUIRE(n > 0);
        char want[64];
        std::snprintf(want, sizeof want, "%.3f ms per step with the cache", sum / n);
        CHECK(has(s, want));
        const kv::SweepPoint& last = app.scaling.points.back();
        std::snprintf(want, sizeof want, "at position %d one step takes %.3f ms", last.pos, last.ms_cached);
        CHECK(has(s, want));
    }
    SUBCASE("7: bytes per token, the formula and the growth") {
        go(ctl, app, 7);
        const std::string s = text(7);
        CAPTURE(s);
        const int64_t bpt = 2 * L * Hkv * hd * 4;
        CHECK(has(s, "= " + str(bpt) + " bytes per token"));
        CHECK(app.main.cache_bytes == bpt * app.main.cache_rows);
        CHECK(has(s, str(app.main.cache_rows) + " rows: " + str(app.main.cache_bytes) + " bytes"));
        for (const auto& t : app.main.history) CHECK(has(s, str(t->counters.cache_bytes)));
        CHECK(has(s, str(2 * 12 * 12 * 64 * 4)));  // GPT-2 124M
        CHECK(has(s, str(2 * 32 * 8 * 128 * 2)));  // Llama-3-8B, fp16, 8 kv heads
    }
    SUBCASE("8: the stale cache, against a fresh session") {
        go(ctl, app, 8);
        const std::string s = text(8);
        CAPTURE(s);
        REQUIRE(app.stale_demo);
        const int p = static_cast<int>(app.main.prompt_ids.size());
        auto fresh = kv::Session(*app.model, kv::make_cpu_engine(*app.model));
        fresh.set_prompt_ids(app.main.prompt_ids);
        for (int i = 0; i < app.main.n_steps(); ++i) fresh.step();
        CHECK(fresh.tokens() == app.main.tokens);  // clean = fresh
        CHECK(app.other.tokens != app.main.tokens);  // contaminated differs
        CHECK(has(s, "left " + str(app.other.stale_ids.size()) + " rows"));
        CHECK(has(s, "continues '" + join_tokens(app, app.main.tokens, p) + "'"));
        CHECK(has(s, "old rows: '" + join_tokens(app, app.other.tokens, p) + "'"));
        CHECK(has(s, "positions " + str(app.other.stale_ids.size()) + ".."));
    }
    SUBCASE("9: where caches go next, with this model's bytes") {
        go(ctl, app, 9);
        const std::string s = text(9);
        CAPTURE(s);
        CHECK(has(s, str(2 * L * Hkv * hd * 4) + " bytes per token"));
        CHECK(has(s, str(app.main.cache_bytes) + " for " + str(app.main.cache_rows) + " tokens"));
    }
}

TEST_CASE("lesson keys: L, PageDown/PageUp, Right/Left, digits, Space and Backspace, leaving restores the layout") {
    Headless h;
    Controller ctl("never");
    AppState app;
    open_bundled(ctl, app);
    app.vs.queued_keys = true;  // the window's GLFW key queue
    auto press = [&](int key) {
        app.vs.key_queue.emplace_back(key, false);
        h.frame(app);
        settle(ctl, app);
        h.frame(app);
    };
    h.frame(app);
    CHECK(ImGui::FindWindowByName("###tokens")->Active);
    CHECK_FALSE(app.compare);

    press(KEY_L);
    REQUIRE(app.vs.lesson.on);
    CHECK(app.vs.lesson.chapter == 1);
    CHECK(app.main.n_steps() == lesson_chapter(1).setup.steps);
    CHECK_FALSE(ImGui::FindWindowByName("###tokens")->Active);  // the normal panels are gone
    CHECK(ImGui::FindWindowByName("###lesson_panel0")->Active);
    press(KEY_PAGE_DOWN);
    CHECK(app.vs.lesson.chapter == 2);
    press(KEY_RIGHT);
    CHECK(app.vs.lesson.chapter == 3);
    CHECK(app.main.n_steps() == lesson_chapter(3).setup.steps);
    press(KEY_SPACE);  // the usual step key still steps inside a chapter
    CHECK(app.vs.lesson.chapter == 3);
    CHECK(app.main.n_steps() == lesson_chapter(3).setup.steps + 1);
    press(KEY_BACKSPACE);
    CHECK(app.main.n_steps() == lesson_chapter(3).setup.steps);
    press(KEY_PAGE_UP);
    CHECK(app.vs.lesson.chapter == 2);
    press(KEY_LEFT);
    CHECK(app.vs.lesson.chapter == 1);
    press(KEY_LEFT);  // stays at the first
    CHECK(app.vs.lesson.chapter == 1);
    press(KEY_5);
    CHECK(app.vs.lesson.chapter == 5);
    CHECK(app.compare);
    CHECK(app.vs.metric == WorkMetric::attn_scores);

    // The polled path (tests and 1.86's key state) knows PageDown too.
    app.vs.queued_keys = false;
    ImGui::GetIO().KeysDown[KEY_PAGE_DOWN] = true;
    h.frame(app);
    ImGui::GetIO().KeysDown[KEY_PAGE_DOWN] = false;
    settle(ctl, app);
    CHECK(app.vs.lesson.chapter == 6);
    app.vs.queued_keys = true;
    press(KEY_PAGE_DOWN);
    press(KEY_PAGE_DOWN);
    CHECK(app.vs.lesson.chapter == 8);
    CHECK(app.stale_demo);

    press(KEY_ESCAPE);
    CHECK_FALSE(app.vs.lesson.on);
    CHECK_FALSE(app.stale_demo);
    CHECK_FALSE(app.compare);  // as before the lesson
    CHECK_FALSE(app.vs.show_scaling);
    CHECK(app.vs.metric == WorkMetric::kv_rows);
    CHECK(ImGui::FindWindowByName("###tokens")->Active);
    CHECK_FALSE(ImGui::FindWindowByName("###lesson_panel0")->Active);
    CHECK(app.fits.empty());
    press(KEY_RIGHT);  // outside the lesson Right steps again
    CHECK_FALSE(app.vs.lesson.on);
}
