// Lesson mode under a headless ImGui context (no GL): every chapter at 1280x720 and
// 1920x1080, font scales 1, 1.5 and 2, with the framed panel's content inside its
// visible region (ImGui's own cursor extents, recorded in app.fits); each chapter's
// text carries the numbers the engine gave for that state, recomputed here from the
// traces and the formulas of docs/design.md ("Counters", core/engine/formulas.h); the
// keys (PageUp/PageDown included) move through the chapters, and leaving restores the
// normal layout.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <string>

#include "core/model/model_io.h"
#include "core/session/session.h"
#include "tests/test_helpers.h"
#include "tests/ui_headless.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

using namespace kvui;

namespace {

constexpr int KEY_SPACE = 32, KEY_0 = 48, KEY_5 = 53, KEY_8 = 56, KEY_END = 269, KEY_L = 76, KEY_ESCAPE = 256, KEY_BACKSPACE = 259, KEY_RIGHT = 262,
              KEY_LEFT = 263, KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267;
const std::string kTiny = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";

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
        const float px = window_font_px(h, scale);
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

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string str(int64_t x) { return std::to_string(x); }

// Runs a waiting lesson setup to the end: a chapter on another model loads it first
// (one batch), then pushes the rest (lesson_tick), as the window's frames do.
void finish_setup(Controller& ctl, AppState& app) {
    for (int i = 0; i < 4; ++i) {
        settle(ctl, app);
        lesson_tick(app);
        if (app.pending.empty() && app.vs.lesson.setup == 0) break;
    }
    CHECK(app.vs.lesson.setup == 0);
    CHECK(app.pending.empty());
}

void go(Controller& ctl, AppState& app, int chapter) {
    if (app.vs.lesson.on) goto_chapter(app, chapter);
    else enter_lesson(app, chapter);
    finish_setup(ctl, app);
    CAPTURE(app.error);
    REQUIRE(app.error.empty());
}

void leave(Controller& ctl, AppState& app) {
    leave_lesson(app);
    finish_setup(ctl, app);
    CAPTURE(app.error);
    REQUIRE(app.error.empty());
}

// The last position's logits of a full-attention f32 cache fed ids in one pass: the
// reference a policy's error is measured against, computed here apart from the
// session's own StepReference.
std::vector<float> full_f32_logits(const kv::Model& m, const std::vector<int>& ids) {
    auto engine = kv::make_cpu_engine(m);
    auto cache = engine->make_cache(kv::CachePolicy{});
    kv::ForwardRequest req;
    req.ids = ids;
    kv::StepTrace tr;
    engine->forward(req, *cache, tr);
    return tr.logits;
}

int argmax(const std::vector<float>& x) { return static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin()); }

std::string g3(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", x);
    return b;
}

// v's latest step against a full f32 cache on the same tokens, recomputed: the
// difference the trace recorded must match, and the text must quote it.
void check_price(const AppState& app, const SessionView& v, const std::string& text) {
    const kv::StepTrace& t = *v.last();
    const int end = t.start_pos + static_cast<int>(t.input_ids.size());
    const std::vector<int> ids(v.tokens.begin(), v.tokens.begin() + end);
    const std::vector<float> ref = full_f32_logits(*app.model, ids);
    REQUIRE(ref.size() == t.logits.size());
    float d = 0.f;
    for (size_t i = 0; i < ref.size(); ++i) d = std::max(d, std::fabs(ref[i] - t.logits[i]));
    CAPTURE(d);
    CAPTURE(t.vs_full.max_abs_logit_diff);
    REQUIRE(t.vs_full.measured());
    CHECK(std::fabs(d - t.vs_full.max_abs_logit_diff) <= 1e-4f + 1e-3f * d);
    CHECK(d > 0.f);  // lossy: the error is there, and reported
    const bool same = argmax(ref) == argmax(t.logits);
    CHECK(t.vs_full.same_top1 == same);
    CHECK(has(text, "max logit difference " + g3(t.vs_full.max_abs_logit_diff) + " this step, " +
                        (same ? "same top token" : "top token changed")));
}

}  // namespace

TEST_CASE("lesson: the issue's chapters, the variants one each, each with a framed panel") {
    REQUIRE(lesson_chapter_count() == 18);
    for (const Chapter& ch : lesson_chapters()) {
        CAPTURE(ch.number);
        CHECK(!ch.title.empty());
        CHECK(!ch.look_at.empty());
        CHECK(ch.panels.size() >= 2);
        CHECK(ch.panels.size() <= 3);
    }
    CHECK(lesson_chapter(0).number == 1);
    CHECK(lesson_chapter(99).number == 18);
    CHECK(lesson_chapter(18).title == "Where caches go next");  // always the last
    for (int n : {13, 14, 15}) CHECK(!lesson_chapter(n).setup.serve_preset.empty());
    for (const Chapter& ch : lesson_chapters()) CHECK(static_cast<bool>(ch.text));
    CHECK(lesson_chapter(4).setup.mode.cache_on == false);
    CHECK(lesson_chapter(8).setup.stale_demo);
    CHECK(lesson_chapter(9).setup.mode.policy.windowed());
    CHECK(lesson_chapter(10).setup.mode.policy.dtype == kv::KvDtype::int8);
    CHECK(lesson_chapter(11).setup.mode.model_spec == "tiny-gqa");
    CHECK(lesson_chapter(12).setup.mode.speculative);
    CHECK(lesson_chapter(16).setup.mode.model_spec == "tiny-llama");
    CHECK(lesson_chapter(16).setup.rope_shift);
    CHECK(lesson_chapter(17).title == "MLA: cache a latent");
    CHECK(lesson_chapter(17).setup.mode.model_spec == "tiny-mla");
    CHECK(lesson_chapter(17).setup.mode.policy.mla == kv::MlaRead::expand);
    REQUIRE(lesson_chapter(17).setup.mode.other_policy.has_value());
    CHECK(lesson_chapter(17).setup.mode.other_policy->mla == kv::MlaRead::absorbed);
    for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 18}) {  // the textbook cache, on the lesson's model
        CAPTURE(n);
        CHECK(lesson_chapter(n).setup.mode.policy.is_default());
        CHECK(lesson_chapter(n).setup.mode.model_spec.empty());
        CHECK_FALSE(lesson_chapter(n).setup.mode.speculative);
    }
}

TEST_CASE("lesson layout: text and panels inside the window, never overlapping") {
    for (float W : {1280.f, 1920.f, 1600.f})
        for (float H : {720.f, 1080.f, 1600.f})
            for (const Chapter& ch : lesson_chapters()) {
                CAPTURE(W);
                CAPTURE(H);
                CAPTURE(ch.number);
                const LessonLayout L = compute_lesson_layout(W, H, window_font_px(H, 2.f), 0.f, ch);
                REQUIRE(!L.panels.empty());
                REQUIRE(L.panels.size() <= ch.panels.size());
                // Room for 30 lines: every panel; less: only the framed one, full size.
                CHECK(L.panels.size() == (H / window_font_px(H, 2.f) >= 30.f ? ch.panels.size() : 1u));
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
                    if (kvtest::cache_rows_scroll(app, fit.name)) CHECK(fit.content_w <= fit.visible_w + 1.f);
                    else CHECK(fit.fits());
                }
                kvtest::check_cache_pictures(app);
                // The text on top is not cut either: it got the height it asked for.
                const Chapter& ch = lesson_chapter(n);
                const LessonLayout L = compute_lesson_layout(s.w, s.h, ImGui::GetFontSize(), app.vs.lesson.text_h, ch);
                CHECK(L.text.h >= app.vs.lesson.text_h - 1.f);
            }
        }
}

// Chapter 17 on tiny-mla, recomputed here: bytes per token from each model's own
// config.json (2 x L x Hkv x hd x bytes, or L x (d_c + d_R) x bytes) and the published
// shapes; the two reads' FLOPs from the sessions' counters, and what one more cached
// row adds from the shapes (expanded: kv_b_proj on the row for every head, then its
// scores; absorbed: its scores in the latent's width); the logit difference from a
// fresh expanded forward.
namespace {

void check_mla_chapter(Controller& ctl, AppState& app) {
    go(ctl, app, 17);
    const std::string s = chapter_text(lesson_chapter(17), app);
    CAPTURE(s);
    REQUIRE(app.model_name == "tiny-mla");
    const kv::ModelConfig& m = app.model->config;
    REQUIRE(m.is_mla());
    auto config_of = [](const std::string& name) {
        return kv::read_config_json(KVSCOPE_SOURCE_DIR "/assets/models/" + name + "/config.json");
    };
    const kv::ModelConfig gpt = config_of("tiny-gpt"), llama = config_of("tiny-llama");
    const int64_t gpt_f32 = 2LL * gpt.n_layer * gpt.n_kv_head * gpt.head_dim() * 4;
    const int64_t llama_f32 = 2LL * llama.n_layer * llama.n_kv_head * llama.head_dim() * 4;
    const int64_t mla_f32 = int64_t(m.n_layer) * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * 4;
    // The table (what the framed panel draws): name, attention, bytes per token in f32 and 16-bit.
    struct Want {
        std::string name, kind;
        int64_t f32, b16;
    };
    const std::vector<Want> want = {
        {"tiny-gpt", "MHA", gpt_f32, gpt_f32 / 2},
        {"tiny-llama", "GQA", llama_f32, llama_f32 / 2},
        {"tiny-mla", "MLA", mla_f32, mla_f32 / 2},
        {"GPT-2 124M", "MHA", 2 * 12 * 12 * 64 * 4, 2 * 12 * 12 * 64 * 2},      // published shapes, 2 x L x Hkv x hd
        {"Llama-3-8B", "GQA", 2 * 32 * 8 * 128 * 4, 2 * 32 * 8 * 128 * 2},
        {"DeepSeek-V3", "MLA", 61 * (512 + 64) * 4, 61 * (512 + 64) * 2},      // L x (d_c + d_R)
    };
    const std::vector<CacheShape> table = cache_shapes(app);
    REQUIRE(table.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(table[i].name == want[i].name);
        CHECK(table[i].kind == want[i].kind);
        CHECK(table[i].bytes_f32 == want[i].f32);
        CHECK(table[i].bytes_16 == want[i].b16);
        CHECK(table[i].bundled == (i < 3));
    }
    // The latent row against tiny-llama's K and V rows: (d_c + d_R) / (2 x Hkv x hd).
    const int lat = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim, kv_vals = 2 * llama.n_kv_head * llama.head_dim();
    char r[16];
    std::snprintf(r, sizeof r, "%.2fx", double(lat) / kv_vals);
    CHECK(has(s, "= " + str(lat) + " values; tiny-llama " + str(llama.n_kv_head) + " kv heads x (K " +
                     str(llama.head_dim()) + " + V " + str(llama.head_dim()) + ") = " + str(kv_vals) + ": " + r));
    // The two reads, counted by the engine on the same tokens.
    REQUIRE(app.compare);
    const SessionView& e = app.main;
    const SessionView& a = app.other;
    REQUIRE(e.policy.mla == kv::MlaRead::expand);
    REQUIRE(a.policy.mla == kv::MlaRead::absorbed);
    const int n = lesson_chapter(17).setup.steps;
    REQUIRE(e.n_steps() == n);
    REQUIRE(a.n_steps() == n);
    CHECK(a.tokens == e.tokens);
    CHECK(a.cache_bytes == e.cache_bytes);  // the same cache
    const int64_t fe = e.history[size_t(n - 1)]->counters.flops, fa = a.history[size_t(n - 1)]->counters.flops;
    CHECK(has(s, "Step " + str(n - 1) + ": " + str(fe) + " FLOPs expanded, " + str(fa) + " absorbed"));
    const int64_t L = m.n_layer, H = m.n_head, dc = m.mla.kv_lora_rank, dr = m.mla.qk_rope_head_dim;
    const int64_t dn = m.mla.qk_nope_head_dim, dv = m.mla.v_head_dim;
    const int64_t row_e = L * (2 * dc * H * (dn + dv) + 2 * H * (dn + dr + dv)), row_a = L * 2 * H * ((dc + dr) + dc);
    CHECK(fe - e.history[size_t(n - 2)]->counters.flops == row_e);
    CHECK(fa - a.history[size_t(n - 2)]->counters.flops == row_a);
    CHECK(has(s, "one more cached row adds " + str(row_e) + " a step expanded"));
    CHECK(has(s, ") and " + str(row_a) + " absorbed."));
    // Absorbed against a fresh expanded forward of the same tokens.
    const kv::StepTrace& t = *a.last();
    const std::vector<int> ids(a.tokens.begin(), a.tokens.begin() + t.start_pos + static_cast<long>(t.input_ids.size()));
    const std::vector<float> ref = full_f32_logits(*app.model, ids);
    REQUIRE(ref.size() == t.logits.size());
    float d = 0.f;
    for (size_t i = 0; i < ref.size(); ++i) d = std::max(d, std::fabs(ref[i] - t.logits[i]));
    REQUIRE(t.vs_full.measured());
    CHECK(std::fabs(d - t.vs_full.max_abs_logit_diff) <= 1e-5f);
    CHECK(d < 1e-3f);  // the same arithmetic in another order
    CHECK(has(s, "Absorbed vs expanded: max logit difference " +
                     g3(t.vs_full.max_abs_logit_diff) + " this step, same top token"));
}

}  // namespace

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
    SUBCASE("9: sliding window with sinks, its bytes and its measured error") {
        go(ctl, app, 9);
        const std::string s = text(9);
        CAPTURE(s);
        const kv::CachePolicy& pol = app.main.policy;
        REQUIRE(pol.window == 6);
        REQUIRE(pol.sinks == 2);
        const int64_t bpt = 2 * L * Hkv * hd * 4;
        const int n = app.main.cache_positions;
        CHECK(n == static_cast<int>(app.main.prompt_ids.size()) + app.main.n_steps() - 1);
        CHECK(app.main.cache_rows == 2 + 6 - 1);  // S + W - 1 once n > S + W - 1
        CHECK(app.main.cache_bytes == bpt * app.main.cache_rows);
        int64_t evicted = 0;
        for (const auto& t : app.main.history) evicted += t->counters.kv_rows_evicted;
        CHECK(evicted == L * Hkv * (n - app.main.cache_rows));
        CHECK(has(s, "holds " + str(app.main.cache_rows) + " rows, " + str(app.main.cache_bytes) + " bytes"));
        CHECK(has(s, "full f32 holds " + str(n) + " rows, " + str(bpt * n) + " bytes"));
        CHECK(has(s, "saves " + str(bpt * (n - app.main.cache_rows)) + " bytes"));
        CHECK(has(s, "Evicted: " + str(evicted) + " K/V rows"));
        check_price(app, app.main, s);
    }
    SUBCASE("10: int8 and f16 storage, their bytes and their measured errors") {
        go(ctl, app, 10);
        const std::string s = text(10);
        CAPTURE(s);
        REQUIRE(app.compare);
        REQUIRE(app.other_own_policy);
        const SessionView& i8 = app.main;
        const SessionView& f16 = app.other;
        REQUIRE(i8.policy.dtype == kv::KvDtype::int8);
        REQUIRE(f16.policy.dtype == kv::KvDtype::f16);
        const int64_t rows = i8.cache_rows;
        CHECK(f16.cache_rows == rows);
        // int8: 1 byte a value and one f32 scale per (position, layer, kv head) K and V row.
        CHECK(i8.cache_bytes == rows * (2 * L * Hkv * hd + 2 * L * Hkv * 4));
        CHECK(f16.cache_bytes == rows * 2 * L * Hkv * hd * 2);
        const int64_t full = rows * 2 * L * Hkv * hd * 4;
        CHECK(has(s, "int8: " + str(i8.cache_bytes) + " bytes, saves " + str(full - i8.cache_bytes) + " bytes"));
        CHECK(has(s, "f16: " + str(f16.cache_bytes) + " bytes, saves " + str(full - f16.cache_bytes) + " bytes"));
        // The rounding of the shown head, from the f32 rows by the storage rules of core/engine/cache_policy.h (kv::int8_scale, docs/cache.md).
        REQUIRE(i8.cache_k_f32.rows() > 0);
        float e8 = 0.f, e16 = 0.f;
        for (int r = 0; r < static_cast<int>(i8.cache_k_f32.rows()); ++r) {
            if (!i8.held[static_cast<size_t>(r)]) continue;
            for (const kv::RowMat* m : {&i8.cache_k_f32, &i8.cache_v_f32}) {
                const float sc = kv::int8_scale(m->row(r).data(), static_cast<int>(m->cols()));
                for (int j = 0; j < m->cols(); ++j) {
                    const float x = (*m)(r, j);
                    e8 = std::max(e8, std::fabs(kv::quantize_int8(x, sc) * sc - x));
                }
            }
        }
        for (int r = 0; r < static_cast<int>(f16.cache_k_f32.rows()); ++r)
            for (const kv::RowMat* m : {&f16.cache_k_f32, &f16.cache_v_f32})
                for (int j = 0; j < m->cols(); ++j) e16 = std::max(e16, std::fabs(kv::round_f16((*m)(r, j)) - (*m)(r, j)));
        CHECK(e8 > e16);
        CHECK(has(s, "int8: " + str(i8.cache_bytes) + " bytes, saves " + str(full - i8.cache_bytes) + " bytes (" ));
        CHECK(has(s, "off by up to " + g3(e8) + ";"));
        CHECK(has(s, "off by up to " + g3(e16) + ";"));
        check_price(app, i8, s);
        check_price(app, f16, s.substr(s.find("f16: ")));
    }
    SUBCASE("11: grouped-query attention on tiny-gqa") {
        go(ctl, app, 11);
        const std::string s = text(11);
        CAPTURE(s);
        REQUIRE(app.model_name == "tiny-gqa");
        const kv::ModelConfig& g = app.model->config;
        REQUIRE(g.n_kv_head < g.n_head);
        const int64_t gl = g.n_layer, gh = g.n_head, gkv = g.n_kv_head, ghd = g.head_dim();
        const kv::StepTrace& t = *app.main.last();
        CHECK(app.main.cache_bytes == 2 * gl * gkv * ghd * 4 * app.main.cache_rows);
        CHECK(t.counters.kv_rows_computed == gl * gkv);
        CHECK(t.counters.attn_scores == gl * gh * (t.start_pos + 1));
        CHECK(has(s, "H = " + str(gh) + " query heads share Hkv = " + str(gkv) + " kv heads"));
        CHECK(has(s, "= " + str(2 * gl * gkv * ghd * 4) + " bytes; one kv head per query head: " +
                         str(2 * gl * gh * ghd * 4)));
        CHECK(has(s, str(app.main.cache_bytes) + " bytes counted by the engine (" +
                         str(2 * gl * gh * ghd * 4 * app.main.cache_rows) + " with"));
        CHECK(has(s, "computed " + str(t.counters.kv_rows_computed) + " K/V rows"));
        CHECK(has(s, str(t.counters.attn_scores) + " q.k scores"));
    }
    SUBCASE("12: speculative decoding, accepted of proposed and target passes per token") {
        go(ctl, app, 12);
        const std::string s = text(12);
        CAPTURE(s);
        REQUIRE(app.spec.on);
        const SpecView& sp = app.spec;
        const kv::SpecCounters& k = sp.totals;
        REQUIRE(sp.n_rounds() == lesson_chapter(12).setup.steps);
        int64_t accepted = 0;
        for (const auto& r : sp.rounds) accepted += r->accepted;
        CHECK(k.accepted == accepted);
        CHECK(k.proposed == sp.n_rounds() * sp.k);
        CHECK(k.target_forwards == sp.n_rounds());  // one verifying pass per round
        CHECK(k.new_tokens == accepted + sp.n_rounds());
        char b[32];
        std::snprintf(b, sizeof b, "%.2f", static_cast<double>(k.target_forwards) / static_cast<double>(k.new_tokens));
        CHECK(has(s, str(k.accepted) + " of " + str(k.proposed) + " drafts accepted"));
        CHECK(has(s, str(k.target_forwards) + " target passes for " + str(k.new_tokens) + " new tokens = " + b +
                         " passes per token"));
        // Greedy speculative text = the target's own greedy text (a fresh plain session).
        kv::Session plain(*app.model, kv::make_cpu_engine(*app.model));
        plain.set_prompt_ids(sp.prompt_ids);
        for (int64_t i = 0; i < k.new_tokens; ++i) plain.step();
        CHECK(plain.tokens() == sp.tokens);
        CHECK(has(s, "target alone: '" + join_tokens(app, sp.tokens, sp.prompt_ids.size(), 10) + "'"));
    }
    SUBCASE("16: RoPE on tiny-llama, its angles and the stale-position measurement") {
        go(ctl, app, 16);
        lesson_tick(app);  // the next frame measures the chapter's tokens
        const std::string s = text(16);
        CAPTURE(s);
        REQUIRE(app.model_name == "tiny-llama");
        const kv::ModelConfig& m = app.model->config;
        REQUIRE(m.is_llama());
        const kv::StepTrace& t = *app.main.last();
        const int pos = t.start_pos + static_cast<int>(t.input_ids.size()) - 1, mhd = m.head_dim();
        // The angles from the formula theta^(-2i/hd), in degrees mod 360.
        auto deg = [&](int i) {
            const double a = std::fmod(pos * std::pow(m.rope.theta, -2.0 * i / mhd), 2.0 * M_PI) * 180.0 / M_PI;
            char b[32];
            std::snprintf(b, sizeof b, "%.1f deg", a);
            return std::string(b);
        };
        CHECK(has(s, "at position " + str(pos) + ": pair 0 turned " + deg(0) + ", pair " + str(mhd / 2 - 1) + " " +
                         deg(mhd / 2 - 1)));
        CHECK(has(s, "= " + str(2 * int64_t(m.n_layer) * m.n_kv_head * mhd * 4) + " bytes."));
        // The measurement is of the state on screen: its correct logits are the step's own.
        const RopeShiftView& rv = app.vs.lesson.rope;
        REQUIRE(rv.valid());
        CHECK(static_cast<int>(rv.ids.size()) == pos + 1);
        CHECK(kvtest::max_abs_diff(rv.r.correct, t.logits) <= 1e-5f);
        CHECK(rv.r.top_correct == t.next_id);
        CHECK(app.token_text(t.next_id) == "language");
        CHECK(rv.r.max_abs_diff > 0.01f);
        CHECK(has(s, "move by up to " + g3(rv.r.max_abs_diff) + ", 'language' "));
        CHECK(has(s, "these " + str(pos) + " cached keys reused one position late"));
    }
    SUBCASE("17: MLA on tiny-mla, the bytes of three caches, the FLOPs of two reads and their logit difference") {
        check_mla_chapter(ctl, app);
    }
    SUBCASE("18: where caches go next, with this model's bytes") {
        go(ctl, app, 18);
        const std::string s = text(18);
        CAPTURE(s);
        CHECK(app.main.policy.is_default());
        CHECK(app.model_name == "tiny-gpt");  // back from tiny-llama (the lesson's model)
        CHECK(has(s, str(2 * L * Hkv * hd * 4) + " bytes per token"));
        CHECK(has(s, str(app.main.cache_bytes) + " for " + str(app.main.cache_rows) + " tokens"));
        CHECK(has(s, "paged"));
    }
}

TEST_CASE("lesson: a chapter's model, policy and mode give way to the next chapter's, and leaving restores the normal "
          "layout's") {
    Controller ctl("never");
    AppState app;
    open_bundled(ctl, app);
    const std::string bundled = app.model_spec;
    // The normal layout: window 8 + 1 sink in f16, compare against the other cache mode, cache off.
    kv::CachePolicy mine;
    mine.window = 8;
    mine.sinks = 1;
    mine.dtype = kv::KvDtype::f16;
    Command c{CommandKind::set_policy};
    c.policy = mine;
    app.push(c);
    Command cmp{CommandKind::set_compare};
    cmp.flag = true;
    app.push(cmp);
    Command off{CommandKind::set_cache};
    off.flag = false;
    app.push(off);
    settle(ctl, app);
    REQUIRE(app.main.policy == mine);
    REQUIRE(app.compare);
    REQUIRE_FALSE(app.main.cache_on);

    go(ctl, app, 11);  // tiny-gqa, full f32
    CHECK(app.model_name == "tiny-gqa");
    CHECK(app.main.policy.is_default());
    CHECK_FALSE(app.compare);
    CHECK(app.main.cache_on);
    go(ctl, app, 10);  // the lesson's model again, int8 beside f16
    CHECK(same_model(app.model_spec, bundled));
    CHECK(app.model_name == "tiny-gpt");
    CHECK(app.main.policy.dtype == kv::KvDtype::int8);
    CHECK(app.other.policy.dtype == kv::KvDtype::f16);
    go(ctl, app, 5);  // compare in the other cache mode, not with 10's own policy
    CHECK(app.compare);
    CHECK_FALSE(app.other_own_policy);
    CHECK(app.main.policy.is_default());
    CHECK(app.other.policy.is_default());
    CHECK(app.main.cache_on != app.other.cache_on);
    go(ctl, app, 9);
    CHECK(app.main.policy.windowed());
    go(ctl, app, 1);
    CHECK(app.main.policy.is_default());
    go(ctl, app, 12);  // speculative mode
    CHECK(app.spec.on);
    go(ctl, app, 11);  // speculative off, tiny-gqa
    CHECK_FALSE(app.spec.on);
    CHECK(app.model_name == "tiny-gqa");

    leave(ctl, app);  // from tiny-gqa: the model, policy, compare and cache mode as before
    CHECK_FALSE(app.vs.lesson.on);
    CHECK(same_model(app.model_spec, bundled));
    CHECK(app.main.policy == mine);
    CHECK(app.compare);
    CHECK_FALSE(app.other_own_policy);
    CHECK_FALSE(app.main.cache_on);
    CHECK(app.other.cache_on);
    CHECK_FALSE(app.spec.on);
    CHECK(app.vs.policy_edit == mine);

    SUBCASE("speculative mode before the lesson comes back after it") {
        Command nocmp{CommandKind::set_compare};
        app.push(nocmp);
        Command pol{CommandKind::set_policy};
        app.push(pol);
        Command spec{CommandKind::set_speculative};
        spec.flag = true;
        spec.n = 3;
        app.push(spec);
        settle(ctl, app);
        REQUIRE(app.spec.on);
        go(ctl, app, 11);
        CHECK_FALSE(app.spec.on);
        leave(ctl, app);
        CHECK(app.model_name == "tiny-gpt");
        CHECK(app.spec.on);
        CHECK(app.spec.k == 3);
    }
}

TEST_CASE("lesson: a chapter on another model waits for a load that finishes later (worker thread)") {
    Controller ctl("always");  // every batch runs on the worker: a load is not done when submit returns
    AppState app;
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model != nullptr);
    enter_lesson(app, 11);
    REQUIRE(app.pending.size() == 1);  // the model first
    CHECK(app.pending[0].kind == CommandKind::load_model);
    ctl.submit(app);
    CHECK(app.loading.running);  // on the loader's thread (the model in use stays usable: not busy)
    lesson_tick(app);  // while it loads: nothing more is pushed
    CHECK(app.pending.empty());
    CHECK(app.vs.lesson.setup == 11);
    ctl.wait();
    ctl.poll(app);
    CHECK(app.model_name == "tiny-gqa");
    CHECK(app.main.n_steps() == 0);  // not set up yet
    lesson_tick(app);                // the model is there: the rest of the chapter
    CHECK(app.vs.lesson.setup == 0);
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    CHECK(app.error.empty());
    CHECK(app.main.n_steps() == lesson_chapter(11).setup.steps);
    leave_lesson(app);  // and back, the same way
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    lesson_tick(app);
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    CHECK(app.vs.lesson.setup == 0);
    CHECK(app.model_name == "tiny-gpt");
    CHECK(app.error.empty());
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

    press(KEY_0);  // 0: chapter 10
    CHECK(app.vs.lesson.chapter == 10);
    press(KEY_END);
    CHECK(app.vs.lesson.chapter == lesson_chapter_count());
    press(KEY_8);
    CHECK(app.vs.lesson.chapter == 8);

    press(KEY_ESCAPE);
    CAPTURE(app.error);
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

TEST_CASE("text_wrapped breaks lines at spaces only, never after a decimal point, and keeps every line in its width") {
    Headless h;
    h.resize(1280, 720, 1.5f);
    ImGui::NewFrame();
    const std::string text = "full f32: 13 rows = 13.0 KiB; this is 54% and the worst difference is 0.00206 over 8 "
                             "steps; 2x12x12x64x64x4x2x12x12x64x64x4x2x12x12x64x64x4 = 4.50 MiB";
    auto without = [](std::string s, const char* chars) {
        s.erase(std::remove_if(s.begin(), s.end(), [&](char c) { return std::strchr(chars, c) != nullptr; }), s.end());
        return s;
    };
    for (float w : {90.f, 140.f, 230.f, 400.f, 2000.f}) {
        CAPTURE(w);
        const std::string out = wrap_text(text, w);
        CAPTURE(out);
        CHECK(without(out, " \n") == without(text, " "));  // nothing lost or added
        std::vector<std::string> lines;
        for (size_t start = 0; start <= out.size();) {
            const size_t end = std::min(out.find('\n', start), out.size());
            lines.push_back(out.substr(start, end - start));
            start = end + 1;
        }
        for (size_t i = 0; i < lines.size(); ++i) {
            CAPTURE(lines[i]);
            CHECK(ImGui::CalcTextSize(lines[i].c_str()).x <= w + 0.5f);
            if (i + 1 < lines.size() && !lines[i].empty() && !lines[i + 1].empty())  // "13." | "0 KiB"
                CHECK_FALSE((lines[i].back() == '.' && std::isdigit(static_cast<unsigned char>(lines[i + 1][0]))));
        }
        if (w >= 2000.f) {  // no word is wider than the line: only spaces became line ends
            std::string joined = out;
            std::replace(joined.begin(), joined.end(), '\n', ' ');
            CHECK(joined == text);
        }
    }
    ImGui::EndFrame();
}
