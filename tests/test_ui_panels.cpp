// The visualizer's panels and view logic under a headless ImGui context (no GL, no
// backend): every panel draws for every step of a run, cache on, off, toggled and in
// compare mode, with ImGui's stacks balanced (libimgui.a keeps its asserts, so a
// Begin/End mistake aborts the test); the layout, keyboard map, narration, row
// states and work formulas are checked directly.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/session/session.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/runtime/sweep_runner.h"
#include "ui/look/theme.h"
#include "tests/ui_headless.h"

using namespace kvui;
using kvtest::Headless;

namespace {

constexpr int KEY_SPACE = 32, KEY_LEFT = 263, KEY_C = 67, KEY_EQUAL = 61, KEY_MINUS = 45, KEY_F1 = 290;

// Loads random:tiny into app through a controller without a worker.
void open_tiny(Controller& ctl, AppState& app, const std::string& prompt = "5,9,3,7") {
    ctl.open(app, "random:tiny", "cpu", prompt);
    REQUIRE(app.model != nullptr);
    REQUIRE(app.error.empty());
    app.vs.animate = false;
}

void run(Controller& ctl, AppState& app, Command c) {
    kvtest::run_command(ctl, app, std::move(c));
}

Command cache_cmd(bool on) {
    Command c{CommandKind::set_cache};
    c.flag = on;
    return c;
}

}  // namespace

TEST_CASE("layout: panels fit the viewport and never overlap") {
    struct Size {
        float w, h, font;
    };
    for (Size s : {Size{1024, 640, 13}, Size{1280, 720, 15}, Size{1600, 1000, 20}, Size{1920, 1080, 22},
                   Size{3840, 2160, 43}, Size{1024, 640, 24}}) {
        CAPTURE(s.w);
        CAPTURE(s.h);
        CAPTURE(s.font);
        for (bool tall : {false, true}) {
        CAPTURE(tall);
        const Layout L = compute_layout(s.w, s.h, s.font, 0.f, tall);
        const auto r = L.all();
        for (size_t i = 0; i < r.size(); ++i) {
            CAPTURE(i);
            CHECK(r[i].inside(s.w, s.h));
            CHECK(r[i].w > 50);
            CHECK(r[i].h > s.font);
            for (size_t j = i + 1; j < r.size(); ++j) {
                CAPTURE(j);
                CHECK_FALSE(r[i].overlaps(r[j]));
            }
        }
        // The cache matrix gets the biggest share.
        const Rect c = L.slot_of(PanelId::cache)->r, m = L.slot_of(PanelId::memory)->r;
        CHECK(c.w * c.h >= m.w * m.h);
        }
        // The Scaling tab's plot gets a Work area at least as tall as the counted-work chart.
        CHECK(compute_layout(s.w, s.h, s.font, 0.f, true).slot_of(PanelId::work)->r.h >=
              compute_layout(s.w, s.h, s.font).slot_of(PanelId::work)->r.h);
    }
}

TEST_CASE("keyboard: keys map to the classroom commands") {
    CHECK(key_action(KEY_SPACE, false) == KeyAction::step);
    CHECK(key_action(262, false) == KeyAction::step);  // Right
    CHECK(key_action(KEY_LEFT, false) == KeyAction::back);
    CHECK(key_action(KEY_C, false) == KeyAction::toggle_cache);
    CHECK(key_action(80, false) == KeyAction::play);
    CHECK(key_action(82, false) == KeyAction::reset);
    CHECK(key_action(83, false) == KeyAction::screenshot);
    CHECK(key_action(KEY_F1, false) == KeyAction::help);
    CHECK(key_action(KEY_EQUAL, true) == KeyAction::font_up);
    CHECK(key_action(KEY_MINUS, true) == KeyAction::font_down);
    CHECK(key_action(KEY_C, true) == KeyAction::none);  // Ctrl+C is not "cache"
    CHECK(key_action(71, false) == KeyAction::scaling);  // G
    CHECK(key_action(65, false) == KeyAction::mla_read);  // A
    CHECK(key_action(81, false) == KeyAction::none);  // Q: not a key of the window
    CHECK(key_action(258, false) == KeyAction::next_panel);         // Tab
    CHECK(key_action(258, false, true) == KeyAction::prev_panel);   // Shift+Tab
    CHECK(key_action(KEY_C, false, true) == KeyAction::toggle_cache);  // Shift changes only Tab
    for (int k : watched_keys()) CHECK(k < 512);

    AppState app;
    kv::Model* fake = reinterpret_cast<kv::Model*>(&app);  // only compared with null here
    app.model = fake;
    app.main.cache_on = true;
    apply_key_action(app, KeyAction::step);
    apply_key_action(app, KeyAction::toggle_cache);
    REQUIRE(app.pending.size() == 2);
    CHECK(app.pending[0].kind == CommandKind::step);
    CHECK(app.pending[1].kind == CommandKind::set_cache);
    CHECK(app.pending[1].flag == false);
    const float before = app.vs.font_scale;
    apply_key_action(app, KeyAction::font_up);
    CHECK(app.vs.font_scale > before);
    CHECK(app.vs.font_changed);
    apply_key_action(app, KeyAction::help);
    CHECK(app.vs.show_help);
    app.busy = true;  // a worker runs: no commands
    app.pending.clear();
    apply_key_action(app, KeyAction::step);
    CHECK(app.pending.empty());
    app.model = nullptr;
}

TEST_CASE("keyboard: Space pressed in a frame queues a step (1.86 key index path)") {
    Headless h;
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);
    h.frame(app);
    ImGui::GetIO().KeysDown[KEY_SPACE] = true;
    h.frame(app);
    ImGui::GetIO().KeysDown[KEY_SPACE] = false;
    REQUIRE(app.pending.size() == 1);
    CHECK(app.pending[0].kind == CommandKind::step);
    ctl.submit(app);
    CHECK(app.main.n_steps() == 1);
}

TEST_CASE("row states: read, computed, recomputed") {
    kv::StepTrace t;
    t.start_pos = 4;
    t.n_known = 4;
    t.input_ids = {7};
    CHECK(row_state(t, 0) == RowState::read);
    CHECK(row_state(t, 3) == RowState::read);
    CHECK(row_state(t, 4) == RowState::computed);
    CHECK(row_state(t, 5) == RowState::empty);
    t.start_pos = 0;  // cache off: everything ran again
    t.input_ids = {1, 2, 3, 4, 7};
    CHECK(row_state(t, 0) == RowState::recomputed);
    CHECK(row_state(t, 3) == RowState::recomputed);
    CHECK(row_state(t, 4) == RowState::computed);
}

TEST_CASE("parse_prompt_ids reads ids and names bad pieces") {
    CHECK(parse_prompt_ids("5,9,3,7", 96) == std::vector<int>{5, 9, 3, 7});
    CHECK(parse_prompt_ids(" 5 9, 3 ", 96) == std::vector<int>{5, 9, 3});
    CHECK_THROWS_WITH_AS(parse_prompt_ids("5,x", 96), doctest::Contains("'x'"), kv::Error);
    CHECK_THROWS_WITH_AS(parse_prompt_ids("500", 96), doctest::Contains("500"), kv::Error);
    CHECK_THROWS_WITH_AS(parse_prompt_ids("", 96), doctest::Contains("the id list is empty"), kv::Error);
}

TEST_CASE("panels draw every step of a run") {
    Controller ctl("never");
    AppState app;
    Headless h;
    open_tiny(ctl, app);
    h.frame(app);  // before the prefill

    SUBCASE("cache on") {}
    SUBCASE("cache off") { run(ctl, app, cache_cmd(false)); }
    SUBCASE("compare mode") {
        Command c{CommandKind::set_compare};
        c.flag = true;
        run(ctl, app, c);
        REQUIRE(app.compare);
        REQUIRE(app.other.valid);
        CHECK(app.other.cache_on == !app.main.cache_on);
    }
    SUBCASE("help overlay and light theme") {
        app.vs.show_help = true;
        app.vs.dark = false;
        apply_theme(false);
    }
    SUBCASE("small window, big font") { ImGui::GetIO().DisplaySize = ImVec2(1024, 640); }
    int steps = 0;
    while (app.main.can_step) {
        CAPTURE(steps);
        run(ctl, app, Command{CommandKind::step});
        REQUIRE(app.error.empty());
        ++steps;
        h.frame(app);
        REQUIRE(app.main.n_steps() == steps);
        if (app.compare) CHECK(app.other.n_steps() == steps);
        CHECK(app.main.cache_rows == static_cast<int>(app.main.cache_k.rows()));
    }
    const kv::ModelConfig& c = app.model->config;
    CHECK(steps == c.n_ctx - 4 + 1);
    CHECK(app.main.cache_rows == c.n_ctx);
    h.frame(app);
    apply_theme(true);
}

TEST_CASE("panels draw after toggles, back, timeline jumps, reset and selection changes") {
    Controller ctl("never");
    AppState app;
    Headless h(1280, 720, 16);
    open_tiny(ctl, app);
    for (int i = 0; i < 12; ++i) {
        CAPTURE(i);
        if (i % 3 == 2) run(ctl, app, cache_cmd(!app.main.cache_on));
        run(ctl, app, Command{CommandKind::step});
        h.frame(app);
        Command sel{CommandKind::set_selection};
        sel.n = i % app.n_layer();
        sel.m = i % app.n_head();
        app.vs.layer = sel.n;
        app.vs.head = sel.m;
        run(ctl, app, sel);
        h.frame(app);
    }
    REQUIRE(app.main.n_steps() == 12);
    run(ctl, app, Command{CommandKind::back});
    h.frame(app);
    CHECK(app.main.n_steps() == 11);
    Command jump{CommandKind::back_to};
    jump.n = 3;
    run(ctl, app, jump);
    h.frame(app);
    CHECK(app.main.n_steps() == 3);
    CHECK(app.main.cache_rows == 4 + 2);
    run(ctl, app, Command{CommandKind::reset});
    h.frame(app);
    CHECK(app.main.n_steps() == 0);
    CHECK(app.main.cache_rows == 0);
    Command prompt{CommandKind::set_prompt};
    prompt.text = "1,2,3";
    run(ctl, app, prompt);
    h.frame(app);
    CHECK(app.main.prompt_ids == std::vector<int>{1, 2, 3});
    prompt.text = "1,oops";
    run(ctl, app, prompt);
    h.frame(app);  // the error is drawn in the window
    CHECK(app.error.find("oops") != std::string::npos);
    Command load{CommandKind::load_model};
    load.text = "/nonexistent/model-folder";
    run(ctl, app, load);
    h.frame(app);
    CHECK(app.error.find("nonexistent") != std::string::npos);
    CHECK(app.model != nullptr);  // the old model stays
}

TEST_CASE("narration tells the step's own numbers") {
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);
    const kv::ModelConfig& c = app.model->config;
    CHECK(narrate(app).find("prefill") != std::string::npos);
    run(ctl, app, Command{CommandKind::step});
    std::string s = narrate(app);
    CAPTURE(s);
    CHECK(s.find("Step 0, prefill") != std::string::npos);
    CHECK(s.find("all 4 prompt tokens") != std::string::npos);
    CHECK(s.find("rows 0-3") != std::string::npos);
    CHECK(s.find("(" + std::to_string(4 * c.n_layer * c.n_kv_head) + " K/V rows: ") != std::string::npos);
    CHECK(s.find("predicts '" + app.token_text(app.main.last()->next_id) + "'") != std::string::npos);
    // The cache line: rows and bytes after the step (2 x L x kv_dim x 4 rows x 4 bytes).
    const std::string bytes4 = human_bytes(double(2 * c.n_layer * c.kv_dim() * 4 * 4));
    CHECK(s.find("Cache: 4 rows, " + bytes4 + ".") != std::string::npos);
    // The chosen token's probability, as the trace's top list has it.
    for (const kv::TopToken& tt : app.main.last()->top)
        if (tt.id == app.main.last()->next_id) {
            char pr[32];
            std::snprintf(pr, sizeof pr, "(p = %.0f%%)", tt.prob * 100.f);
            CHECK(s.find(pr) != std::string::npos);
        }

    run(ctl, app, Command{CommandKind::step});
    s = narrate(app);
    CAPTURE(s);
    CHECK(s.find("Step 1, decode (cache on)") != std::string::npos);
    CHECK(s.find("become row 4") != std::string::npos);
    CHECK(s.find("Rows 0-3 are read from the cache: " + std::to_string(4 * c.n_layer * c.n_kv_head)) !=
          std::string::npos);
    CHECK(s.find(std::to_string(app.main.last()->counters.attn_scores) + " q.k scores") != std::string::npos);

    run(ctl, app, cache_cmd(false));
    run(ctl, app, Command{CommandKind::step});
    s = narrate(app);
    CAPTURE(s);
    CHECK(s.find("Step 2, decode (cache OFF)") != std::string::npos);
    CHECK(s.find("all 6 tokens enter the model again") != std::string::npos);
    CHECK(s.find("Rows 0-4 are recomputed (" + std::to_string(5 * c.n_layer * c.n_kv_head)) != std::string::npos);
    CHECK(s.find("row 5 is new") != std::string::npos);
    // Recomputed rows equal the cached ones (lesson point 2): the difference is printed.
    const size_t at = s.find("identical: max |diff| ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stod(s.substr(at + 22)) < 1e-5);
    CHECK(s.find("Cache: 6 rows, " + human_bytes(double(2 * c.n_layer * c.kv_dim() * 6 * 4)) + ".") !=
          std::string::npos);
}

TEST_CASE("window title names the latest step, the cache mode and the next token") {
    const std::string dir = kv::default_model_dir();
    REQUIRE_MESSAGE(!dir.empty(), "the bundled model is in the source tree (assets/models/tiny-gpt)");
    Controller ctl("never");
    AppState app;
    ctl.open(app, dir, "cpu", "Python is a programming");
    REQUIRE(app.model != nullptr);
    CHECK(window_title(app) == kTitle);
    run(ctl, app, Command{CommandKind::step});
    CHECK(window_title(app) == "kvscope: Step 0, prefill, cache on, next 'language'");
    run(ctl, app, cache_cmd(false));
    run(ctl, app, Command{CommandKind::step});
    const std::string next = app.token_text(app.main.last()->next_id);
    CHECK(window_title(app) == "kvscope: Step 1, decode, cache off, next '" + next + "'");
    app.vs.lesson.on = true;
    app.vs.lesson.chapter = 4;
    CHECK(window_title(app) == "kvscope: Step 1, decode, cache off, next '" + next + "' (lesson chapter 4)");
}

TEST_CASE("token badges count how often each position's K/V were computed (lesson point 1)") {
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);  // p = 4
    auto steps = [&](int n) {
        for (int i = 0; i < n; ++i) run(ctl, app, Command{CommandKind::step});
    };
    SUBCASE("cache off: position i is computed at every step from the one that fed it") {
        run(ctl, app, cache_cmd(false));
        steps(6);
        REQUIRE(app.main.tokens.size() == 10);
        for (int i = 0; i < 9; ++i) {
            CAPTURE(i);
            const int times = i < 4 ? 6 : 6 - (i - 3);  // fed at step max(0, i-3)
            CHECK(token_badges(app, i).main == "x" + std::to_string(times));
            CHECK(token_badges(app, i).other.empty());
        }
        CHECK(token_pending(app.main, 9));
        CHECK(token_badges(app, 9).main.empty());  // chosen, not yet computed
    }
    SUBCASE("cache on: once each") {
        steps(6);
        for (int i = 0; i < 9; ++i) CHECK(token_badges(app, i).main == "x1");
        CHECK(token_badges(app, 9).main.empty());
    }
    SUBCASE("compare: the other session, cache off, counts beside") {
        Command c{CommandKind::set_compare};
        c.flag = true;
        run(ctl, app, c);
        steps(6);
        CHECK(token_badges(app, 0).main == "x1");
        CHECK(token_badges(app, 0).other == "|x6");
        CHECK(token_badges(app, 8).other == "|x1");
    }
}

TEST_CASE("cache panel rows: the state, tag and label of every row after each kind of step") {
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);  // p = 4: ids 5, 9, 3, 7
    CHECK(cache_rows(app, app.main).empty());  // nothing drawn before the prefill
    // The rows as (state, tag) pairs, and the labels "position token".
    auto states = [&](const SessionView& v) {
        std::vector<std::pair<RowState, std::string>> out;
        for (const CacheRow& r : cache_rows(app, v)) out.emplace_back(r.state, r.tag);
        return out;
    };
    using S = RowState;
    const std::pair<S, std::string> read{S::read, "cache"}, fresh{S::computed, "new"}, again{S::recomputed, "recomp"};
    run(ctl, app, Command{CommandKind::step});  // prefill: every row computed now
    CHECK(states(app.main) == std::vector{fresh, fresh, fresh, fresh});
    const std::vector<CacheRow> rows = cache_rows(app, app.main);
    for (int r = 0; r < 4; ++r) {
        CAPTURE(r);
        CHECK(rows[size_t(r)].row == r);
        CHECK(rows[size_t(r)].label == std::to_string(r) + " " + app.token_text(app.main.tokens[size_t(r)]));
    }
    CHECK(rows[0].label == "0 #5");
    run(ctl, app, Command{CommandKind::step});  // cached decode: 0-3 read, 4 new
    CHECK(states(app.main) == std::vector{read, read, read, read, fresh});
    run(ctl, app, cache_cmd(false));
    run(ctl, app, Command{CommandKind::step});  // cache off: 0-4 recomputed, 5 new
    CHECK(states(app.main) == std::vector{again, again, again, again, again, fresh});
    run(ctl, app, Command{CommandKind::back});  // back: the cached step's rows again
    CHECK(states(app.main) == std::vector{read, read, read, read, fresh});
    SUBCASE("compare: the other session, cache off, recomputes what the main one reads") {
        Command c{CommandKind::set_compare};
        c.flag = true;
        run(ctl, app, cache_cmd(true));
        run(ctl, app, c);
        run(ctl, app, Command{CommandKind::step});
        CHECK(states(app.main) == std::vector{read, read, read, read, read, fresh});
        CHECK(states(app.other) == std::vector{again, again, again, again, again, fresh});
    }
}

TEST_CASE("cache panel geometry: rows never under 0.8 font heights, all fit when they can, else they scroll") {
    for (float fs : {14.f, 18.f, 21.f, 28.f, 44.f}) {
        for (int rows : {1, 4, 9, 16, 20, 64, 200}) {
            CAPTURE(fs);
            CAPTURE(rows);
            const float w = 900.f, h = 420.f;
            const CacheGeometry g = cache_geometry(fs, 10.f, 20.f, w, h, rows, 16, 16, 120.f);
            CHECK(g.n_rows == rows);
            CHECK(g.row_h >= 0.8f * fs);
            CHECK(g.row_h >= 14.f);
            CHECK(g.row_h <= fs * 1.3f);
            CHECK(g.label_scale * fs >= 12.f);  // every row's label is drawn, at least 12 px
            CHECK(g.label_scale * fs <= g.row_h);
            const bool fit_min = rows * cache_row_min_h(fs) <= h;
            CHECK(g.scrolls == !fit_min);
            if (fit_min) CHECK(g.rows_h() <= h + 0.5f);                      // all fit when they can
            if (g.captions) CHECK(g.rows_h() + fs * 1.4f <= h + 0.5f);       // with the K/V line under them
            CHECK(g.x0 < g.x_tag);
            CHECK(g.x_tag + g.tag_w < g.x_k);
            CHECK(g.x_k + g.cw * g.k_cols < g.x_v);
            CHECK(g.cells_end() < g.x_attn);
            CHECK(g.x_attn + g.attn_w <= g.x0 + w);
            // Without the attention column (the speculative caches): the label whole
            // when the cells keep 2 px each, the cells inside the panel.
            const float sw = std::max(300.f, fs * 12.f);  // a half panel, at least 12 fonts wide
            const CacheGeometry s = cache_geometry(fs, 10.f, 20.f, sw, h, rows, 16, 16, 120.f, false);
            CHECK(s.row_h == g.row_h);
            if (sw - s.tag_w - fs * 1.5f - 64.f >= 120.f * s.label_scale + fs * 0.5f)
                CHECK(s.label_w >= 120.f * s.label_scale + fs * 0.5f);
            CHECK(s.x_tag + s.tag_w < s.x_k);
            CHECK(s.cells_end() <= s.x0 + sw);
        }
    }
}

TEST_CASE("work chart: formula lines over the horizon, one measured point per step of each session") {
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);  // p = 4, n_ctx 64
    const kv::ModelConfig& c = app.model->config;
    WorkChart ch = work_chart(c, app.main, nullptr, WorkMetric::kv_rows);
    CHECK(ch.horizon == 8);  // at least 8 steps before any
    CHECK(ch.formula_cached.size() == 8);
    CHECK(ch.formula_uncached.size() == 8);
    CHECK(ch.measured_main.empty());
    CHECK(ch.measured_other.empty());

    Command cmp{CommandKind::set_compare};
    cmp.flag = true;
    run(ctl, app, cmp);
    for (int s = 0; s < 7; ++s) run(ctl, app, Command{CommandKind::step});
    for (WorkMetric m : {WorkMetric::kv_rows, WorkMetric::attn_scores, WorkMetric::flops}) {
        CAPTURE(int(m));
        ch = work_chart(c, app.main, &app.other, m);
        CHECK(ch.horizon == 10);  // steps + 3
        REQUIRE(ch.formula_cached.size() == 10);
        REQUIRE(ch.formula_uncached.size() == 10);
        REQUIRE(ch.measured_main.size() == 7);
        REQUIRE(ch.measured_other.size() == 7);
        // Cumulative: the formula line at step s is the total over steps 0..s.
        for (int s = 0; s < 10; ++s) {
            CAPTURE(s);
            CHECK(ch.formula_cached[size_t(s)] == formula_total(c, 4, s + 1, true).get(m));
            CHECK(ch.formula_uncached[size_t(s)] == formula_total(c, 4, s + 1, false).get(m));
        }
        // The measured lines end at the sessions' totals (cached main, uncached other)
        // and, with the full f32 cache, lie on the formula lines.
        const auto total = [&](const kv::Counters& k) {
            return m == WorkMetric::kv_rows ? double(k.kv_rows_computed)
                   : m == WorkMetric::attn_scores ? double(k.attn_scores) : double(k.flops);
        };
        CHECK(ch.measured_main.back() == total(app.main.totals));
        CHECK(ch.measured_other.back() == total(app.other.totals));
        for (int s = 0; s < 7; ++s) {
            CHECK(ch.measured_main[size_t(s)] == ch.formula_cached[size_t(s)]);
            CHECK(ch.measured_other[size_t(s)] == ch.formula_uncached[size_t(s)]);
        }
        CHECK(ch.ymax >= ch.formula_uncached.back());
        CHECK(ch.ymax >= ch.measured_other.back());
    }
    // At the end of the context the horizon stops at the last step there is.
    while (app.main.can_step) run(ctl, app, Command{CommandKind::step});
    ch = work_chart(c, app.main, &app.other, WorkMetric::kv_rows);
    CHECK(ch.horizon == c.n_ctx - 4 + 1);
    CHECK(ch.measured_main.size() == size_t(c.n_ctx - 4 + 1));
}

TEST_CASE("work formulas agree with the engine's counters") {
    for (bool cache : {true, false}) {
        CAPTURE(cache);
        Controller ctl("never");
        AppState app;
        open_tiny(ctl, app);
        run(ctl, app, cache_cmd(cache));
        const kv::ModelConfig& c = app.model->config;
        for (int s = 0; s < 8; ++s) {
            CAPTURE(s);
            run(ctl, app, Command{CommandKind::step});
            const kv::Counters& k = app.main.last()->counters;
            const Work w = formula_step(c, 4, s, cache);
            CHECK(k.kv_rows_computed == static_cast<int64_t>(w.kv_rows));
            CHECK(k.attn_scores == static_cast<int64_t>(w.attn_scores));
            CHECK(k.flops == static_cast<int64_t>(w.flops));  // equal by construction: exact
        }
        const Work t = formula_total(c, 4, 8, cache);
        CHECK(app.main.totals.kv_rows_computed == static_cast<int64_t>(t.kv_rows));
    }
    // docs/design.md, "Counters": totals after N tokens, with and without.
    const kv::ModelConfig c = kv::ModelConfig::tiny();
    const int p = 4, N = 6;
    CHECK(formula_total(c, p, N, true).kv_rows == c.n_layer * c.n_kv_head * (p + N - 1));
    CHECK(formula_total(c, p, N, false).kv_rows == c.n_layer * c.n_kv_head * (N * p + N * (N - 1) / 2));
    CHECK(kv::cache_bytes_for(kv::ModelConfig::llama3_8b(), kv::KvDtype::f16, 8192) == 1073741824LL);  // Llama-3-8B at 8k: 1 GiB
    CHECK(human_bytes(1073741824.0) == "1.00 GiB");
}

TEST_CASE("the worker thread runs steps while the UI reads only published views") {
    Controller ctl("always");
    AppState app;
    Headless h;
    open_tiny(ctl, app);
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    // While it may still run, drawing reads only the last published views.
    h.frame(app);
    ctl.wait();
    CHECK(ctl.poll(app));
    CHECK_FALSE(app.busy);
    CHECK(app.main.n_steps() == 1);
    h.frame(app);
    // A second submit while busy keeps the commands queued.
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    CHECK(app.pending.size() <= 1);
    ctl.wait();
    ctl.poll(app);
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    CHECK(app.main.n_steps() == 3);
}

TEST_CASE("keyboard: G opens and closes the Scaling tab, and the tab bar follows") {
    Headless h(1280, 800, 16);
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);
    h.frame(app);
    CHECK_FALSE(app.vs.show_scaling);
    apply_key_action(app, key_action(71, false));
    CHECK(app.vs.show_scaling);
    for (int i = 0; i < 3; ++i) h.frame(app);  // the selected tab stays Scaling
    CHECK(app.vs.show_scaling);
    apply_key_action(app, KeyAction::scaling);
    for (int i = 0; i < 3; ++i) h.frame(app);
    CHECK_FALSE(app.vs.show_scaling);
}

TEST_CASE("scaling panel draws in every sweep state") {
    Controller ctl("never");
    AppState app;
    Headless h(1280, 800, 16);
    open_tiny(ctl, app);
    app.vs.show_scaling = true;
    app.vs.select_tab = true;
    const int n_ctx = app.model->config.n_ctx;
    kv::SweepOptions long_opt;  // a few seconds: cannot finish before it is cancelled
    long_opt.repeats = 300;
    long_opt.threads = 1;

    SUBCASE("idle") {
        h.frame(app);
        CHECK(app.scaling.state == SweepState::idle);
        CHECK(app.scaling.points.empty());
    }
    SUBCASE("running (a real sweep on its thread), then cancelled") {
        SweepRunner runner;
        runner.start(*app.model, long_opt);
        app.scaling = runner.snapshot();
        CHECK(app.scaling.state == SweepState::running);
        h.frame(app);
        h.frame(app);
        runner.cancel();
        runner.join();
        app.scaling = runner.snapshot();
        CHECK(app.scaling.state == SweepState::cancelled);
        CHECK(app.scaling.progress < 1.f);
        h.frame(app);
    }
    SUBCASE("done, through the controller") {
        app.sweep_request = SweepRequest::start;
        ctl.submit(app);
        CHECK(app.sweep_request == SweepRequest::none);
        ctl.wait_sweep();
        ctl.poll(app);
        REQUIRE(app.scaling.state == SweepState::done);
        CHECK(app.scaling.progress == doctest::Approx(1.0));
        REQUIRE(app.scaling.points.size() == kv::sweep_positions(app.model->config, sweep_options(app.model->config, 0, 0)).size());
        CHECK(app.scaling.points.back().pos == n_ctx - 1);
        for (const kv::SweepPoint& p : app.scaling.points) {
            CAPTURE(p.pos);
            CHECK(p.ms_cached > 0);
            CHECK(p.ms_uncached > 0);
        }
        h.frame(app);
    }
    SUBCASE("partly measured, failed, small window") {
        ImGui::GetIO().DisplaySize = ImVec2(1024, 640);
        app.scaling.state = SweepState::running;
        app.scaling.max_pos = n_ctx;
        app.scaling.progress = 0.4f;
        for (int p = 0; p < n_ctx; p += 8) app.scaling.points.push_back({p, 0.01, p < 32 ? 0.002 * p : -1.0});
        h.frame(app);
        app.scaling.state = SweepState::failed;
        app.scaling.error = "sweep: --stride 0 must be at least 1";
        h.frame(app);
    }
    CHECK(app.vs.show_scaling);
}

TEST_CASE("sweep runner: cancel keeps the points measured so far, all with both modes") {
    std::unique_ptr<kv::Model> m = kv::load_model("random:tiny");
    kv::SweepOptions opt;
    opt.repeats = 300;
    opt.threads = 1;
    SweepRunner runner;
    runner.start(*m, opt);
    CHECK(runner.running());
    runner.cancel();
    runner.join();
    CHECK_FALSE(runner.running());
    const ScalingView v = runner.snapshot();
    CHECK(v.state == SweepState::cancelled);
    for (const kv::SweepPoint& p : v.points) {
        CAPTURE(p.pos);
        if (p.ms_uncached >= 0) CHECK(p.ms_cached >= 0);  // uncached points come after the cached pass
    }
    // Options out of range fail on the thread and say so.
    kv::SweepOptions bad;
    bad.stride = 0;
    runner.start(*m, bad);
    runner.join();
    CHECK(runner.snapshot().state == SweepState::failed);
    CHECK(runner.snapshot().error.find("stride") != std::string::npos);
}

TEST_CASE("sweep options: defaults fit the model") {
    const kv::ModelConfig tiny = kv::ModelConfig::tiny();
    const kv::SweepOptions t = sweep_options(tiny, 0, 0);
    CHECK(t.max_pos == tiny.n_ctx);
    CHECK(t.stride == 1);  // every position of a small context
    kv::ModelConfig big = tiny;
    big.n_ctx = 1024;
    big.n_embd = 768;
    const size_t n = kv::sweep_positions(big, sweep_options(big, 0, 0)).size();
    CHECK(n >= 32);
    CHECK(n <= 64);
    CHECK(sweep_options(big, 0, 0).max_pos == 512);       // a big context: the first half, by default
    CHECK(sweep_options(big, 5000, 0).max_pos == 1024);  // clamped to n_ctx
    CHECK(sweep_options(big, 100, 500).stride == 99);
}

TEST_CASE("a model change stops the sweep that reads the old model") {
    Controller ctl("never");
    AppState app;
    open_tiny(ctl, app);
    app.vs.sweep_stride = 1;
    ctl.start_sweep(app);
    CHECK(app.scaling.state == SweepState::running);
    ctl.open(app, "random:tiny:7", "cpu", "1,2,3");  // joins the sweep before freeing the model
    CHECK_FALSE(ctl.sweep_running());
    CHECK(app.scaling.state == SweepState::idle);
    CHECK(app.scaling.points.empty());
    ctl.start_sweep(app);  // and the destructor stops a running one
}

TEST_CASE("the default prompt suits a random model quietly, a typed text prompt is an error") {
    SUBCASE("default (not typed): ids 5,9,3,7, no error") {
        Controller ctl("never");
        AppState app;
        ctl.open(app, "random:tiny", "cpu", "Python is a programming", false);
        REQUIRE(app.model != nullptr);
        CHECK(app.error.empty());
        CHECK(app.main.prompt_ids == std::vector<int>{5, 9, 3, 7});
        CHECK(app.vs.note.find("token ids") != std::string::npos);
    }
    SUBCASE("typed: the error names the word") {
        Controller ctl("never");
        AppState app;
        ctl.open(app, "random:tiny", "cpu", "Python is a programming", true);
        REQUIRE(app.model != nullptr);
        CHECK(app.error.find("'Python'") != std::string::npos);
        CHECK(app.main.prompt_ids == std::vector<int>{5, 9, 3, 7});
    }
}
