// MLA in the window, headless: the cache view holds an MLA model's latent rows
// [c_KV | k_R] (no V part) and draws them as one block; a latent row expands, for a
// head, to the K and V the engine computed (its trace) and to kv_b_proj's product
// written out here; every panel draws an MLA model at every step, expanded, absorbed
// and both side by side; key A and the policy control switch the read and keep the
// steps; the memory panel's rows and formula text; a model that is not MLA ignores A.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "tests/ui_headless.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/panels/mla_view.h"
#include "ui/panels/panels.h"
#include "ui/runtime/controller.h"
#include "ui/state/app_state.h"

using namespace kvui;
using kvtest::Headless;

namespace {

constexpr int KEY_A = 65;

void open_model(Controller& ctl, AppState& app, const std::string& spec) {
    ctl.open(app, spec, "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    REQUIRE(app.error.empty());
    app.vs.animate = false;
}

void run(Controller& ctl, AppState& app, Command c) { kvtest::run_command(ctl, app, std::move(c)); }

// Runs what the frame queued (key presses, controls).
void settle(Controller& ctl, AppState& app) {
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
}

}  // namespace

TEST_CASE("MLA: a latent row expands to k = [c_KV W_UK_h | k_R] and v = c_KV W_UV_h, kv_b_proj's columns of head h") {
    const auto m = kv::load_model("random:mla-tiny");
    const kv::ModelConfig& c = m->config;
    REQUIRE(c.is_mla());
    const int dc = c.mla.kv_lora_rank, dr = c.mla.qk_rope_head_dim, dn = c.mla.qk_nope_head_dim, dv = c.mla.v_head_dim;
    std::vector<float> latent(size_t(dc + dr));
    for (size_t i = 0; i < latent.size(); ++i) latent[i] = std::sin(0.7f * float(i) + 0.3f);
    for (int layer = 0; layer < c.n_layer; ++layer)
        for (int h = 0; h < c.n_head; ++h) {
            CAPTURE(layer);
            CAPTURE(h);
            const MlaExpanded e = mla_expand_row(*m, layer, h, latent.data());
            REQUIRE(e.k.size() == size_t(dn + dr));
            REQUIRE(e.v.size() == size_t(dv));
            const kv::RowMat& w = m->weights.layers[size_t(layer)].kv_b_w;  // (d_c, H*(d_n + d_v))
            for (int j = 0; j < dn + dv; ++j) {
                double x = 0;
                for (int i = 0; i < dc; ++i) x += double(latent[size_t(i)]) * w(i, h * (dn + dv) + j);
                const float got = j < dn ? e.k[size_t(j)] : e.v[size_t(j - dn)];
                CHECK(got == doctest::Approx(x).epsilon(1e-5));
            }
            for (int j = 0; j < dr; ++j) CHECK(e.k[size_t(dn + j)] == latent[size_t(dc + j)]);  // k_R, shared
        }
    CHECK(mla_expand_row(*m, 0, c.n_head, latent.data()).k.empty());  // no such head
    CHECK(mla_part_name(c, dc - 1) == std::string("c_KV"));
    CHECK(mla_part_name(c, dc) == std::string("k_R"));
    CHECK(mla_columns_caption(c) == "latent c_KV (24) | k_R (8, rotated)");
}

TEST_CASE("MLA: the cache view holds latent rows, and each expands to the K and V the engine's trace recorded") {
    Controller ctl("never");
    AppState app;
    open_model(ctl, app, "random:mla-tiny");
    const kv::ModelConfig& c = app.model->config;
    for (int s = 0; s < 3; ++s) run(ctl, app, Command{CommandKind::step});
    REQUIRE(app.error.empty());
    const SessionView& v = app.main;
    REQUIRE(v.cache_k.cols() == c.mla.kv_lora_rank + c.mla.qk_rope_head_dim);
    CHECK(v.cache_v.cols() == 0);
    CHECK(v.cache_k.rows() == v.cache_positions);
    CHECK(shows_latent_rows(c, static_cast<int>(v.cache_k.cols())));
    CHECK(v.cache_bytes == kv::cache_bytes_for(c, kv::KvDtype::f32, v.cache_rows));
    // The narration names what the cache holds: one latent row per layer, for every head.
    const std::string n = narrate(app);
    CAPTURE(n);
    CHECK(n.find("Its latent row becomes row " + std::to_string(v.cache_positions - 1) + " (" +
                 std::to_string(c.n_layer) + " latent rows: " + std::to_string(c.n_layer) + " layers x 1, read by all " +
                 std::to_string(c.n_head) + " heads).") != std::string::npos);
    CHECK(n.find(std::to_string(c.n_layer * (v.cache_positions - 1)) + " latent rows not recomputed") != std::string::npos);
    // The newest token's k and v of every recorded head of the selected layer are its
    // cached latent row expanded for that head (the trace keeps k with k_R turned).
    const kv::StepTrace& t = *v.last();
    const int pos = t.start_pos + static_cast<int>(t.input_ids.size()) - 1;
    for (int h = 0; h < c.n_head; ++h) {
        CAPTURE(h);
        const kv::HeadTrace* ht = t.find_head(v.cache_layer, h);
        REQUIRE(ht != nullptr);
        const int r = static_cast<int>(ht->q.rows()) - 1;
        REQUIRE(ht->first_pos + r == pos);
        const MlaExpanded e = mla_expand_row(*app.model, v.cache_layer, h, v.cache_k.row(pos).data());
        REQUIRE(ht->k.cols() == static_cast<long>(e.k.size()));
        REQUIRE(ht->v.cols() == static_cast<long>(e.v.size()));
        for (size_t j = 0; j < e.k.size(); ++j) CHECK(ht->k(r, long(j)) == doctest::Approx(e.k[j]).epsilon(1e-4));
        for (size_t j = 0; j < e.v.size(); ++j) CHECK(ht->v(r, long(j)) == doctest::Approx(e.v[j]).epsilon(1e-4));
    }
}

TEST_CASE("MLA: every panel draws a latent cache at every step, expanded, absorbed, side by side and at large fonts") {
    Headless h(1280, 720, 18);
    Controller ctl("never");
    AppState app;
    open_model(ctl, app, "random:mla-tiny");
    for (float scale : {1.f, 1.5f, 2.f}) {  // the window's font at 720 px high, font scale 1 to 2
        CAPTURE(scale);
        h.resize(1280, 720, window_font_px(720, scale));
        for (int s = 0; s < 4; ++s) {
            run(ctl, app, Command{CommandKind::step});
            REQUIRE(app.error.empty());
            for (int f = 0; f < 3; ++f) h.frame(app);
            kvtest::check_cache_pictures(app);
            for (const PanelFit& fit : app.vs.layout.fits) {
                CAPTURE(fit.name);
                CAPTURE(fit.content_h);
                CAPTURE(fit.visible_h);
                CAPTURE(fit.content_w);
                CAPTURE(fit.visible_w);
                if (!fit.scrolls && !kvtest::cache_rows_scroll(app, fit.name)) CHECK(fit.fits());
            }
        }
        set_mla_read(app, app.main.policy.mla == kv::MlaRead::expand ? kv::MlaRead::absorbed : kv::MlaRead::expand);
        settle(ctl, app);
        h.frame(app);
    }
    Command other{CommandKind::set_other_policy};  // compare: the same cache read the other way
    other.flag = true;
    other.policy.mla = app.main.policy.mla == kv::MlaRead::expand ? kv::MlaRead::absorbed : kv::MlaRead::expand;
    run(ctl, app, other);
    CAPTURE(app.error);
    REQUIRE(app.error.empty());
    REQUIRE(app.compare);
    for (int s = 0; s < 3; ++s) {
        run(ctl, app, Command{CommandKind::step});
        for (int f = 0; f < 3; ++f) h.frame(app);
        kvtest::check_cache_pictures(app);
    }
    CHECK(app.other.cache_bytes == app.main.cache_bytes);
    run(ctl, app, Command{CommandKind::back});
    h.frame(app);
}

TEST_CASE("MLA: key A switches the read and runs the same steps again, the policy caption says absorbed") {
    Headless h;
    Controller ctl("never");
    AppState app;
    open_model(ctl, app, "random:mla-tiny");
    for (int s = 0; s < 3; ++s) run(ctl, app, Command{CommandKind::step});
    const std::vector<int> tokens = app.main.tokens;
    CHECK(key_action(KEY_A, false) == KeyAction::mla_read);
    CHECK(key_action(KEY_A, true) == KeyAction::none);
    apply_key_action(app, KeyAction::mla_read);
    settle(ctl, app);
    CAPTURE(app.error);
    REQUIRE(app.error.empty());
    CHECK(app.main.policy.mla == kv::MlaRead::absorbed);
    CHECK(app.main.n_steps() == 3);
    CHECK(app.main.tokens == tokens);  // greedy: the same tokens
    CHECK(policy_caption(app.main.policy) == "full f32, absorbed");
    REQUIRE(app.main.last()->vs_full.measured());  // against the expanded read
    CHECK(app.main.last()->vs_full.same_top1);
    CHECK(app.main.last()->vs_full.max_abs_logit_diff < 1e-3f);
    const std::string n = narrate(app);
    CAPTURE(n);
    CHECK(n.find("Absorbed vs expanded read of the same latent rows: max logit difference") != std::string::npos);
    apply_key_action(app, KeyAction::mla_read);
    settle(ctl, app);
    CHECK(app.main.policy.mla == kv::MlaRead::expand);
    CHECK(app.main.n_steps() == 3);
    // A model that is not MLA: A does nothing, and a read chosen before does not follow it.
    apply_key_action(app, KeyAction::mla_read);
    settle(ctl, app);
    REQUIRE(app.main.policy.mla == kv::MlaRead::absorbed);
    run(ctl, app, [] {
        Command c{CommandKind::load_model};
        c.text = "random:tiny";
        return c;
    }());
    REQUIRE(app.model != nullptr);
    CHECK(app.main.policy.mla == kv::MlaRead::expand);
    apply_key_action(app, KeyAction::mla_read);
    CHECK(app.pending.empty());
}

TEST_CASE("MLA: the memory panel's rows and the formulas' text, bytes by kv::cache_bytes_for") {
    Controller ctl("never");
    AppState app;
    open_model(ctl, app, "random:mla-tiny");
    const std::vector<MemoryRow> rows = memory_rows(app);
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].config == app.model->config);  // this model, in its own shape: one latent row
    CHECK(kv::cache_bytes_for(rows[0].config, rows[0].dtype, 1) == 2 * (24 + 8) * 4);
    CHECK(rows[2].config == kv::ModelConfig::llama3_8b());
    const kv::ModelConfig ds = kv::ModelConfig::deepseek_v3();
    CHECK(kv::cache_bytes_for(ds, kv::KvDtype::f16, 1) == 61 * (512 + 64) * 2);
    CHECK(cache_formula_text(ds, 1024, kv::KvDtype::f16) == "61x(512+64)x1024x2");
    CHECK(cache_formula_text(app.model->config, 1, kv::KvDtype::f32) == "2x(24+8)x1x4");
    CHECK(cache_formula_text(kv::ModelConfig::llama3_8b(), 8192, kv::KvDtype::f16) == "2x32x8x128x8192x2");
    CHECK(kv::cache_bytes_for(kv::ModelConfig::llama3_8b(), kv::KvDtype::f16, 1) == 2 * 32 * 8 * 128 * 2);
}

TEST_CASE("MLA: cache geometry with no V part puts the attention column right after the latent block") {
    const float fs = 21.f;
    const CacheGeometry kv16 = cache_geometry(fs, 10.f, 20.f, 900.f, 420.f, 9, 16, 16, 120.f);
    const CacheGeometry lat = cache_geometry(fs, 10.f, 20.f, 900.f, 420.f, 9, 32, 0, 120.f);
    CHECK(lat.k_cols == 32);
    CHECK(lat.v_cols == 0);
    CHECK(lat.cw == kv16.cw);  // as many cells a row
    CHECK(lat.x_v == lat.x_k + lat.cw * 32);
    CHECK(lat.cells_end() == lat.x_v);
    CHECK(lat.x_attn > lat.cells_end());
    CHECK(lat.x_attn + lat.attn_w <= 910.f);
}

TEST_CASE("MLA: hovering the latent rows draws their tooltips (the cell's part and the head's expanded K and V)") {
    Headless h(1280, 720, window_font_px(720, 1.5f));
    Controller ctl("never");
    AppState app;
    open_model(ctl, app, "random:mla-tiny");
    for (int s = 0; s < 4; ++s) run(ctl, app, Command{CommandKind::step});
    pick_panel(app.vs, PanelId::cache);
    for (int f = 0; f < 3; ++f) h.frame(app);
    // Sweep the pointer over the cache's rows: the latent cells' tooltips (BeginTooltip,
    // the cell's line, then the head's k and v as strips: five lines or more) draw with
    // ImGui's stacks balanced (Headless::frame checks them).
    REQUIRE(app.cache_drawn.size() == 1);
    const ImGuiWindow* rows = ImGui::FindWindowByName(app.cache_drawn.front().name.c_str());
    REQUIRE(rows != nullptr);
    const ImRect r = rows->InnerRect;
    int tall = 0;
    for (float y = r.Min.y + 2; y < r.Max.y; y += 9)
        for (float x = r.Min.x; x < r.Max.x; x += 7) {
            ImGui::GetIO().MousePos = ImVec2(x, y);
            h.frame(app);
            const ImGuiWindow* tip = ImGui::FindWindowByName("##Tooltip_00");
            tall += tip && tip->Active && tip->Size.y >= 5 * ImGui::GetFontSize();
        }
    CHECK(tall > 0);
}
