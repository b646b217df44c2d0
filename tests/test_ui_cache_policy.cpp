// The window's cache-policy views (issue 11): the bundled-model picker, the cache
// rows of a windowed session (evicted, sink, read) checked against the policy's
// definition written out here (query i reads key j iff j <= i and (j < S or
// j > i - W)), the f16/int8 cells' stored and f32 values, and every panel drawing
// under a policy with ImGui's stacks balanced.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>

#include "core/model/model_io.h"
#include "ui/state/app_state.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"
#include "tests/ui_headless.h"

using namespace kvui;
using kvtest::Headless;

namespace {

void run(Controller& ctl, AppState& app, Command c) {
    kvtest::run_command(ctl, app, std::move(c));
    REQUIRE(app.error.empty());
}

void open_with(Controller& ctl, AppState& app, const kv::CachePolicy& p) {
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    app.vs.animate = false;
    Command c{CommandKind::set_policy};
    c.policy = p;
    run(ctl, app, c);
    REQUIRE(app.main.policy == p);
}

Command cache_off() {
    Command c{CommandKind::set_cache};
    c.flag = false;
    return c;
}

// The policy's definition, written out independently of kv::CachePolicy.
bool reads(int W, int S, int i, int j) { return j <= i && (W == 0 || j < S || j > i - W); }
// A cache that has seen n positions keeps what the query at n can read.
bool kept(int W, int S, int n, int j) { return j < n && reads(W, S, n, j); }

}  // namespace

TEST_CASE("model picker: the bundled models are listed beside the default one") {
    const std::vector<BundledModel> ms = bundled_models();
    if (kv::default_model_dir().empty()) {
        if (std::getenv("CI")) FAIL("the bundled model is missing (CI=1)");
        MESSAGE("SKIPPED: the bundled model folder is not found");
        return;
    }
    std::set<std::string> names;
    for (const BundledModel& m : ms) names.insert(m.name);
    CHECK(names.count("tiny-gpt") == 1);
    CHECK(names.count("tiny-gqa") == 1);
    CHECK(names.count("tiny-draft") == 1);
    // Choosing one loads it: tiny-gqa shares K/V heads.
    for (const BundledModel& m : ms) {
        if (m.name != "tiny-gqa") continue;
        Controller ctl("never");
        AppState app;
        ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
        Command c{CommandKind::load_model};
        c.text = m.dir;
        run(ctl, app, c);
        REQUIRE(app.model != nullptr);
        CHECK(app.model_name == "tiny-gqa");
        CHECK(app.model->config.n_kv_head < app.model->config.n_head);
    }
}

TEST_CASE("policy control: impossible policies are named before Apply") {
    CHECK(policy_problem({6, 2, kv::KvDtype::f32}).empty());
    CHECK(policy_problem({0, 0, kv::KvDtype::int8}).empty());
    CHECK(policy_problem({4, 5, kv::KvDtype::f32}).find("sinks 5 exceed the window 4") != std::string::npos);
    CHECK(policy_caption({6, 2, kv::KvDtype::int8}) == "W 6 + 2 sinks, int8");
    CHECK(policy_caption({}) == "full f32");
}

TEST_CASE("cache rows under a window with sinks: evicted, sink and read follow the mask") {
    const int W = 6, S = 2, p = 4;
    Controller ctl("never");
    AppState app;
    open_with(ctl, app, {W, S, kv::KvDtype::f32});
    Headless h(1280, 720);
    int evicted_seen = 0;
    for (int s = 0; s < 10; ++s) {
        CAPTURE(s);
        run(ctl, app, Command{CommandKind::step});
        h.frame(app);
        const int n = p + s;  // positions that have entered
        const int n_prev = s == 0 ? 0 : n - 1;
        const int i = n - 1;  // the newest query
        REQUIRE(app.main.cache_positions == n);
        const std::vector<CacheRow> rows = cache_rows(app, app.main);
        REQUIRE(static_cast<int>(rows.size()) == n);
        int held = 0;
        for (const CacheRow& r : rows) {
            const int j = r.row;
            CAPTURE(j);
            const bool keep = kept(W, S, n, j);
            held += keep;
            CHECK((r.state == RowState::evicted) == !keep);
            CHECK(r.sink == (j < S));
            CHECK(r.evicted_now == (kept(W, S, n_prev, j) && !keep));
            if (s > 0) CHECK(r.read_now == reads(W, S, i, j));
            const std::string tag = r.tag;
            if (!keep) CHECK(tag == "evicted");
            else if (j < S) CHECK(tag == "sink");
            else if (s > 0) CHECK(tag == (j == i ? "new" : "cache"));
            evicted_seen += r.evicted_now;
        }
        CHECK(app.main.cache_rows == held);
        // The attention row: keys outside the mask have weight 0, the read ones sum to 1.
        const kv::HeadTrace* ht = app.main.last()->find_head(0, 0);
        REQUIRE(ht != nullptr);
        const int last = static_cast<int>(ht->attn.rows()) - 1;
        double sum = 0;
        for (int j = 0; j < n; ++j) {
            if (!reads(W, S, i, j)) CHECK(ht->attn(last, j) == 0.f);
            else sum += ht->attn(last, j);
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
    CHECK(evicted_seen > 0);
}

TEST_CASE("f16 and int8 cells show the stored value, the f32 value it replaced and the error") {
    for (kv::KvDtype t : {kv::KvDtype::f16, kv::KvDtype::int8, kv::KvDtype::f32}) {
        CAPTURE(kv::dtype_name(t));
        Controller ctl("never");
        AppState app;
        open_with(ctl, app, {0, 0, t});
        for (int s = 0; s < 4; ++s) run(ctl, app, Command{CommandKind::step});
        const SessionView& v = app.main;
        const std::vector<CacheRow> rows = cache_rows(app, v);
        int differ = 0;
        for (const CacheRow& r : rows) {
            for (bool k : {true, false}) {
                const kv::RowMat& raw = k ? v.cache_k_f32 : v.cache_v_f32;
                float amax = 0;
                if (t != kv::KvDtype::f32)
                    for (int c = 0; c < raw.cols(); ++c) amax = std::max(amax, std::abs(raw(r.row, c)));
                for (int c = 0; c < static_cast<int>(v.cache_k.cols()); ++c) {
                    CAPTURE(r.row);
                    CAPTURE(c);
                    const CellValue cell = cache_cell(v, r.row, c, k);
                    REQUIRE(cell.held);
                    CHECK(cell.rounded == (t != kv::KvDtype::f32));
                    if (!cell.rounded) continue;
                    differ += cell.stored != cell.f32;
                    if (t == kv::KvDtype::int8)  // half a quantisation step: (max|x| / 127) / 2
                        CHECK(std::abs(cell.error()) <= amax / 127.f * 0.5f * (1 + 1e-5f));
                    else  // half an f16 ulp: 2^-11 relative (normal halves)
                        CHECK(std::abs(cell.error()) <= std::abs(cell.f32) * 0x1p-11f + 0x1p-25f);
                }
            }
        }
        const std::string text = cell_hover_text(v, rows[1], 0, true);
        CAPTURE(text);
        if (t == kv::KvDtype::f32) {
            CHECK(differ == 0);
            CHECK(text.find("replaced") == std::string::npos);
        } else {
            CHECK(differ > 0);  // rounding happened, and the view shows both values
            CHECK(text.find(std::string("(") + kv::dtype_name(t) + ")") != std::string::npos);
            CHECK(text.find("the f32 value it replaced") != std::string::npos);
            CHECK(text.find("error") != std::string::npos);
        }
    }
}

TEST_CASE("memory curve: the cache's counted bytes lie on its policy's curve") {
    const int W = 6, S = 2;
    for (const kv::CachePolicy pol : {kv::CachePolicy{}, kv::CachePolicy{W, S, kv::KvDtype::f32},
                                      kv::CachePolicy{0, 0, kv::KvDtype::int8}, kv::CachePolicy{W, S, kv::KvDtype::int8},
                                      kv::CachePolicy{0, 0, kv::KvDtype::f16}}) {
        CAPTURE(kv::policy_text(pol));
        Controller ctl("never");
        AppState app;
        open_with(ctl, app, pol);
        const kv::ModelConfig& c = app.model->config;
        const int L = c.n_layer, Hkv = c.n_kv_head, hd = c.head_dim();
        // Bytes of one position (K and V, every layer) written out here: values plus int8's scales.
        const double row_bytes = pol.dtype == kv::KvDtype::int8 ? 2.0 * L * Hkv * (hd * 1 + 4)
                                 : pol.dtype == kv::KvDtype::f16 ? 2.0 * L * Hkv * hd * 2
                                                                 : 2.0 * L * Hkv * hd * 4;
        for (int s = 0; s < 12; ++s) {
            CAPTURE(s);
            run(ctl, app, Command{CommandKind::step});
            const SessionView& v = app.main;
            const MemoryCurve m = memory_curve(c, v, c.n_ctx);
            CHECK(m.now_tokens == 4 + s);
            CHECK(m.now_bytes == static_cast<double>(v.cache_bytes));
            CHECK(policy_bytes_at(c, pol, m.now_tokens) == m.now_bytes);  // the counted point is on the curve
            CHECK(m.now_bytes == row_bytes * v.cache_rows);
        }
        const MemoryCurve m = memory_curve(c, app.main, c.n_ctx);
        REQUIRE(m.tokens.back() == c.n_ctx);
        for (size_t i = 0; i < m.tokens.size(); ++i) {
            const int t = m.tokens[i];
            CAPTURE(t);
            CHECK(m.full_f32[i] == 2.0 * L * Hkv * hd * 4 * t);  // linear
            const int rows = pol.windowed() ? std::min(t, S + W - 1) : t;  // a plateau at S + W - 1 rows
            CHECK(m.policy[i] == row_bytes * rows);
        }
        if (pol.dtype == kv::KvDtype::int8 && !pol.windowed())  // about a quarter: (hd + 4) / (4 hd)
            CHECK(m.policy.back() / m.full_f32.back() == doctest::Approx((hd + 4.0) / (4.0 * hd)));
    }
}

TEST_CASE("narration: the rows a window evicts and the step's cost against full f32") {
    const int W = 6, S = 2, p = 4;
    Controller ctl("never");
    AppState app;
    open_with(ctl, app, {W, S, kv::KvDtype::f32});
    const kv::Model& model = *app.model;
    int named = 0;
    for (int s = 0; s < 9; ++s) {
        CAPTURE(s);
        run(ctl, app, Command{CommandKind::step});
        const kv::StepTrace& t = *app.main.last();
        const std::string text = narrate(app);
        CAPTURE(text);
        const int n = p + s, n_prev = s == 0 ? 0 : n - 1;
        std::vector<int> gone;  // by the definition
        for (int j = 0; j < n; ++j)
            if (kept(W, S, n_prev, j) && !kept(W, S, n, j)) gone.push_back(j);
        CHECK(t.evicted == gone);
        if (gone.size() == 1) {
            const std::string want = "Row " + std::to_string(gone[0]) + ", '" + app.token_text(app.main.tokens[gone[0]]) +
                                     "', evicted: no later token can attend to it";
            CHECK(text.find(want) != std::string::npos);
            ++named;
        }
        // The cost, checked against a separate full-attention f32 session's prefill of the same tokens.
        REQUIRE(t.vs_full.measured());
        kv::Session full(model, kv::make_engine(model, "cpu"));
        full.set_prompt_ids(std::vector<int>(app.main.tokens.begin(), app.main.tokens.begin() + n));
        const kv::StepTrace& f = full.step();
        float d = 0;
        for (size_t j = 0; j < f.logits.size(); ++j) d = std::max(d, std::abs(f.logits[j] - t.logits[j]));
        CHECK(std::abs(t.vs_full.max_abs_logit_diff - d) <= 1e-4f + 1e-3f * d);  // a cached path vs a prefill
        CHECK(t.vs_full.same_top1 == (f.next_id == t.next_id));
        // Until some query skips a key (i - W >= S), the window is full attention.
        if (n - 1 - W < S) CHECK(d < 1e-4);
        else CHECK(d > 1e-4);
        char num[32];
        std::snprintf(num, sizeof num, "max logit difference %.3g", t.vs_full.max_abs_logit_diff);
        CHECK(text.find(num) != std::string::npos);
        CHECK(text.find(t.vs_full.same_top1 ? "same top token" : "top token changed") != std::string::npos);
    }
    CHECK(named >= 3);
}

TEST_CASE("compare: the second session runs its own policy in lockstep, or the other cache mode") {
    const kv::CachePolicy window{6, 2, kv::KvDtype::int8}, full{};
    Controller ctl("never");
    AppState app;
    open_with(ctl, app, window);
    Headless h(1280, 720);
    run(ctl, app, Command{CommandKind::step});
    Command own{CommandKind::set_other_policy};
    own.flag = true;
    own.policy = full;
    run(ctl, app, own);
    REQUIRE(app.compare);
    REQUIRE(app.other.valid);
    CHECK(app.other_own_policy);
    CHECK(app.other.policy == full);
    CHECK(app.other.cache_on == app.main.cache_on);
    CHECK(app.other.n_steps() == 1);  // caught up
    for (int s = 1; s < 10; ++s) {
        run(ctl, app, Command{CommandKind::step});
        h.frame(app);
        CHECK(app.other.n_steps() == app.main.n_steps());
        CHECK(app.other.tokens.size() == app.main.tokens.size());
        CHECK(app.other.cache_rows == 4 + s);         // full: every position
        CHECK(app.main.cache_rows <= 2 + 6 - 1);      // the window's plateau
        CHECK(app.other.cache_bytes > app.main.cache_bytes);
    }
    run(ctl, app, cache_off());
    CHECK(!app.main.cache_on);
    CHECK(!app.other.cache_on);  // its own policy: the same mode as main
    Command pol{CommandKind::set_policy};
    pol.policy = {4, 1, kv::KvDtype::f16};
    run(ctl, app, pol);
    CHECK(app.main.policy == pol.policy);
    CHECK(app.other.policy == full);  // kept
    CHECK(app.other.n_steps() == 0);  // both start again
    // Compare off and on: the other cache mode under main's policy, as before.
    Command cmp{CommandKind::set_compare};
    cmp.flag = false;
    run(ctl, app, cmp);
    cmp.flag = true;
    run(ctl, app, cmp);
    CHECK(!app.other_own_policy);
    CHECK(app.other.policy == pol.policy);
    CHECK(app.other.cache_on == !app.main.cache_on);
    h.frame(app);
}
