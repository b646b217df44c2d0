// The window's weights (issue 16): the weights' type chosen in the window (reload in
// that type), the model field and line, and the weight bytes beside the cache bytes,
// checked against a formula written here from the config alone.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/model/model_io.h"
#include "test_helpers.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

using namespace kvui;

namespace {

struct Headless {
    Headless(float w = 1280, float h = 720) {
        ImGui::CreateContext();
        ImGuiIO& io = ImGui::GetIO();
        io.IniFilename = nullptr;
        io.DisplaySize = ImVec2(w, h);
        io.DeltaTime = 1.f / 60.f;
        build_fonts(18.f);
        unsigned char* px = nullptr;
        int tw = 0, th = 0;
        io.Fonts->GetTexDataAsRGBA32(&px, &tw, &th);
        apply_theme(true);
    }
    ~Headless() { ImGui::DestroyContext(); }
    void frame(AppState& app) {
        ImGui::NewFrame();
        draw_app(app);
        CHECK(GImGui->CurrentWindowStack.Size == 1);  // the implicit Debug window only
        ImGui::Render();
    }
};

void run(Controller& ctl, AppState& app, Command c) {
    app.push(std::move(c));
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
}

Command weights_cmd(int n) {
    Command c{CommandKind::set_weights};
    c.n = n;
    return c;
}

// Bytes of a GPT-2 model's tensors, written from the shapes (docs/design.md, "Model
// folders"): the matrices wte, c_attn, c_proj, c_fc, mlp.c_proj (and an untied head)
// in `matrix_bytes` each, wpe, biases and LayerNorms in f32. n_kv_head == n_head here.
int64_t gpt2_weight_bytes(const kv::ModelConfig& c, int64_t matrix_bytes) {
    const int64_t V = c.vocab_size, T = c.n_ctx, C = c.n_embd, L = c.n_layer;
    const int64_t matrices = V * C * (c.tied_head ? 1 : 2) + L * (C * 3 * C + C * C + C * 4 * C + 4 * C * C);
    const int64_t f32s = T * C + L * (2 * C + 3 * C + C + 2 * C + 4 * C + C) + 2 * C;
    return matrices * matrix_bytes + f32s * 4;
}

}  // namespace

TEST_CASE("weights in the window: the type chosen reloads the model held in it, bytes by the formula") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    const kv::ModelConfig cfg = app.model->config;
    REQUIRE(cfg.n_kv_head == cfg.n_head);
    CHECK(app.model->weights.type == kv::WeightType::f32);
    CHECK(weight_bytes(app) == gpt2_weight_bytes(cfg, 4));
    run(ctl, app, Command{CommandKind::step});
    const std::vector<float> logits32 = app.main.last()->logits;
    Headless h;
    struct Case {
        int n;
        kv::WeightType t;
        int64_t bytes;
    };
    for (const Case& k : {Case{1, kv::WeightType::f16, 2}, Case{2, kv::WeightType::bf16, 2}, Case{0, kv::WeightType::f32, 4}}) {
        CAPTURE(kv::weight_type_name(k.t));
        run(ctl, app, weights_cmd(k.n));
        REQUIRE(app.error.empty());
        REQUIRE(app.model != nullptr);
        CHECK(app.model->weights.type == k.t);
        CHECK(app.weights == std::optional<kv::WeightType>(k.t));
        CHECK(app.model_name == "random:tiny:0");
        CHECK(weight_bytes(app) == gpt2_weight_bytes(cfg, k.bytes));
        const std::string line = model_line(app);
        CHECK(line.find(std::string("weights ") + kv::weight_type_name(k.t) + " (held " + std::to_string(k.bytes) +
                        " bytes each)") != std::string::npos);
        CHECK(app.main.n_steps() == 0);  // a reload starts afresh
        run(ctl, app, Command{CommandKind::step});
        REQUIRE(app.main.last() != nullptr);
        // Rounded weights move the logits a little, never a lot (f32 again: exactly).
        const kv::LogitDiff d = kv::logit_difference(app.main.last()->logits, logits32);
        if (k.t == kv::WeightType::f32) CHECK(d.max_abs_logit_diff == 0.f);
        else CHECK(d.max_abs_logit_diff > 0.f);
        CHECK(d.max_abs_logit_diff < 0.5f);
        h.frame(app);
    }
    run(ctl, app, weights_cmd(-1));  // as stored: random models are made in f32
    CHECK(app.model->weights.type == kv::WeightType::f32);
    CHECK(!app.weights.has_value());
}

TEST_CASE("weights in the window: a checkpoint stored in f16 stays f16 unless asked") {
    kvtest::TempDir dir("kvscope_ui_weights");
    auto m = kv::load_model("random:tiny:3", kv::WeightType::f16);
    const std::string folder = dir / "half-model";
    kv::save_model_folder(folder, m->config, m->weights, nullptr);
    Controller ctl("never");
    AppState app;
    ctl.open(app, folder, "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    CHECK(app.model->weights.type == kv::WeightType::f16);
    ctl.set_weights(kv::WeightType::f32);
    ctl.open(app, folder, "cpu", "5,9,3,7");
    CHECK(app.model->weights.type == kv::WeightType::f32);
}

TEST_CASE("model field: a long absolute path shows as the folder's name, the path on hover and for Load") {
    kvtest::TempDir dir("kvscope_ui_model_field");
    const std::string folder = std::filesystem::absolute(
        std::filesystem::path(dir / "a-rather-long-folder-name/with/several/levels/of/nesting/below/it/my-gpt"))
                                   .string();
    auto m = kv::load_model("random:tiny:5");
    kv::save_model_folder(folder, m->config, m->weights, nullptr);
    Controller ctl("never");
    AppState app;
    ctl.open(app, folder, "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    CHECK(app.vs.model_text.empty());
    CHECK(model_field_hint(app) == "my-gpt");
    CHECK(app.model_spec == folder);
    CHECK(model_to_load(app) == folder);  // Load with the field empty loads this one again
    CHECK(model_line(app).rfind("my-gpt: ", 0) == 0);
    app.vs.model_text = "random:tiny";
    CHECK(model_to_load(app) == "random:tiny");
    Headless h;
    h.frame(app);
}

TEST_CASE("weights in the window: a type the weights overflow keeps the model and the previous choice") {
    kvtest::TempDir dir("kvscope_ui_weights_big");
    auto m = kv::load_model("random:tiny:4");
    m->weights.layers[0].fc_w(0, 0) = 1e6f;  // beyond f16's range (65504)
    const std::string folder = dir / "big";
    kv::save_model_folder(folder, m->config, m->weights, nullptr);
    Controller ctl("never");
    AppState app;
    ctl.open(app, folder, "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    const kv::Model* before = app.model;
    run(ctl, app, weights_cmd(int(kv::WeightType::f16)));
    CHECK(app.error.find("mlp.c_fc.weight") != std::string::npos);
    CHECK(app.model == before);
    CHECK(app.model->weights.type == kv::WeightType::f32);
    Command load{CommandKind::load_model};
    load.text = folder;
    run(ctl, app, load);  // loaded again: still f32 (the choice went back)
    CHECK(app.model->weights.type == kv::WeightType::f32);
}

TEST_CASE("vs_f32 in the window: per step, the numbers of compare --weights f16 --json for the same tokens") {
    const kvtest::Run r = kvtest::run_cli("compare --model random:tiny --ids 5,9,3,7 --new 6 --weights f16 --json");
    REQUIRE(r.rc == 0);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    REQUIRE(j["steps"].size() == 6);
    Controller ctl("never");
    AppState app;
    ctl.set_weights(kv::WeightType::f16);
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    REQUIRE(app.model->weights.type == kv::WeightType::f16);
    for (int s = 0; s < 6; ++s) {
        CAPTURE(s);
        run(ctl, app, Command{CommandKind::step});
        const kv::StepTrace& t = *app.main.last();
        const nlohmann::json& step = j["steps"][size_t(s)];
        CHECK(t.next_id == step["cached"]["next_id"].get<int>());  // the same tokens
        REQUIRE(t.vs_f32.measured());
        CHECK(t.vs_f32.max_abs_logit_diff == doctest::Approx(step["vs_f32"]["max_abs_logit_diff"].get<double>()).epsilon(1e-5));
        CHECK(t.vs_f32.same_top1 == step["vs_f32"]["same_top1"].get<bool>());
        CHECK(t.vs_f32.max_abs_logit_diff > 0.f);  // rounding to f16 moved something
    }
    const std::string told = narrate(app);
    CAPTURE(told);
    CHECK(told.find("Cost of f16 weights vs f32 weights on the same tokens: max logit difference") != std::string::npos);
    // Compare mode's second session measures it too; f32 weights measure nothing.
    Command cmp{CommandKind::set_compare};
    cmp.flag = true;
    run(ctl, app, cmp);
    run(ctl, app, Command{CommandKind::step});
    REQUIRE(app.other.last() != nullptr);
    CHECK(app.other.last()->vs_f32.measured());
    run(ctl, app, weights_cmd(int(kv::WeightType::f32)));
    run(ctl, app, Command{CommandKind::step});
    CHECK_FALSE(app.main.last()->vs_f32.measured());
    CHECK(vs_f32_sentence(app, *app.main.last()).empty());
}

TEST_CASE("Scaling overlay: two real sweeps, the model's weights and a copy held in f16, and the ratio quoted") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    app.vs.sweep_max_pos = 6;
    app.vs.sweep_stride = 1;
    app.vs.sweep_overlay = true;
    ctl.start_sweep(app);
    ctl.wait_sweep();
    ctl.poll(app);
    const ScalingView& sv = app.scaling;
    REQUIRE(sv.state == SweepState::done);
    CHECK(sv.overlay);
    CHECK(sv.weights == kv::WeightType::f32);
    CHECK(sv.other_weights == kv::WeightType::f16);
    // The second sweep ran on a model holding its matrices in 2 bytes: its bytes say so.
    CHECK(sv.weight_bytes == gpt2_weight_bytes(app.model->config, 4));
    CHECK(sv.other_weight_bytes == gpt2_weight_bytes(app.model->config, 2));
    REQUIRE(sv.points.size() == 6);
    REQUIRE(sv.other_points.size() == 6);
    for (size_t i = 0; i < 6; ++i) {
        CAPTURE(i);
        CHECK(sv.points[i].pos == sv.other_points[i].pos);
        CHECK(sv.points[i].ms_cached > 0);
        CHECK(sv.points[i].ms_uncached > 0);
        CHECK(sv.other_points[i].ms_cached > 0);
        CHECK(sv.other_points[i].ms_uncached > 0);
    }
    const std::string cap = weights_overlay_caption(sv);
    CAPTURE(cap);
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2fx", mean_ms(sv.points, true) / mean_ms(sv.other_points, true));
    CHECK(cap.find(ratio) != std::string::npos);
    CHECK(cap.find("waits for memory") != std::string::npos);
    // With the overlay, each mode gets its own axis over both types' points.
    double top_c = 0, top_u = 0;
    for (const auto* pts : {&sv.points, &sv.other_points})
        for (const kv::SweepPoint& p : *pts) {
            top_c = std::max(top_c, p.ms_cached);
            top_u = std::max(top_u, p.ms_uncached);
        }
    CHECK(sweep_plot_ymax(sv, SweepCurves::cached) == doctest::Approx(top_c * 1.08));
    CHECK(sweep_plot_ymax(sv, SweepCurves::uncached) == doctest::Approx(top_u * 1.08));
    CHECK(sweep_plot_ymax(sv, SweepCurves::both) == doctest::Approx(std::max(top_c, top_u) * 1.08));
    CHECK(sweep_plot_ymax(ScalingView{}, SweepCurves::both) == 0.0);
    Headless h;
    app.vs.show_scaling = true;
    app.vs.select_tab = true;
    h.frame(app);
    h.frame(app);
}
