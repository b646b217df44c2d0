// The window's weights (issue 16): the weights' type chosen in the window (reload in
// that type), the model field and line, and the weight bytes beside the cache bytes,
// checked against a formula written here from the config alone.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <filesystem>
#include <string>

#include "core/model/model_io.h"
#include "test_helpers.h"
#include "ui/app_state.h"
#include "ui/controller.h"
#include "ui/panels.h"
#include "ui/theme.h"

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
