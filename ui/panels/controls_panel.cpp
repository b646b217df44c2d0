// Controls: step/back/reset/play, the big KV cache switch, compare mode, prompt and
// model fields, layer/head selectors, sampling, theme and help. Items flow onto the
// next line when the window is narrow. Buttons are disabled while a step runs.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

float text_w(const char* s) { return ImGui::CalcTextSize(s).x + ImGui::GetStyle().FramePadding.x * 2; }

bool big_switch(const char* label, bool on, ImU32 on_col, ImU32 off_col) {
    ImGui::PushFont(big_font());
    ImVec4 c = to_vec4(on ? on_col : off_col);
    ImGui::PushStyleColor(ImGuiCol_Button, c);
    ImGui::PushStyleColor(ImGuiCol_ButtonHovered, ImVec4(c.x * 1.1f, c.y * 1.1f, c.z * 1.1f, 1.f));
    ImGui::PushStyleColor(ImGuiCol_ButtonActive, ImVec4(c.x * 0.9f, c.y * 0.9f, c.z * 0.9f, 1.f));
    ImGui::PushStyleColor(ImGuiCol_Text, IM_COL32(255, 255, 255, 255));
    ImGui::PushStyleVar(ImGuiStyleVar_FramePadding, ImVec2(14, 1));
    bool pressed = ImGui::Button(label);
    ImGui::PopStyleVar();
    ImGui::PopStyleColor(4);
    ImGui::PopFont();
    return pressed;
}

// Step, Back, Reset (disabled while a step runs), Play/Pause and the speed (not when
// the controls are folded to one row).
void draw_step_buttons(AppState& app, bool no_model, bool folded) {
    ViewState& vs = app.vs;
    ImGui::BeginDisabled(app.busy || no_model);
    ImGui::BeginDisabled(!app.main.can_step);
    if (ImGui::Button("Step >")) app.push({CommandKind::step});
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("%s", app.main.can_step ? "Run the next step (Space or Right)" : app.main.why_not.c_str());
    ImGui::SameLine();
    ImGui::BeginDisabled(app.main.n_steps() == 0);
    if (ImGui::Button("< Back")) app.push({CommandKind::back});
    ImGui::EndDisabled();
    ImGui::SameLine();
    if (ImGui::Button("Reset")) {
        app.push({CommandKind::reset});
        vs.playing = false;
    }
    ImGui::EndDisabled();
    ImGui::SameLine();
    if (ImGui::Button(vs.playing ? "Pause" : "Play")) vs.playing = !vs.playing;
    if (folded) return;
    ImGui::SameLine();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6.5f);
    ImGui::SliderFloat("##speed", &vs.play_speed, 0.25f, 10.f, "%.2g steps/s", ImGuiSliderFlags_Logarithmic);
}

// The big KV cache switch and the compare checkbox (its label short when folded).
void draw_cache_switches(AppState& app, bool no_model, bool folded) {
    const float fs = ImGui::GetFontSize();
    flow(fs * 15);
    ImGui::BeginDisabled(app.busy || no_model);
    if (big_switch(app.main.cache_on ? "KV CACHE: ON" : "KV CACHE: OFF", app.main.cache_on,
                   state_color(RowState::read, false), state_color(RowState::recomputed, false))) {
        Command c{CommandKind::set_cache};
        c.flag = !app.main.cache_on;
        app.push(c);
    }
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("C: turn the KV cache %s (applies from the next step)", app.main.cache_on ? "off" : "on");
    const char* label = folded ? "Compare###compare" : "Compare side by side###compare";
    flow(ImGui::CalcTextSize(label, nullptr, true).x + ImGui::GetStyle().FramePadding.x * 2 + fs * 1.5f);
    bool cmp = app.compare;
    if (ImGui::Checkbox(label, &cmp)) {
        Command c{CommandKind::set_compare};
        c.flag = cmp;
        app.push(c);
    }
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip("Compare side by side: run a second session with the cache %s, in lockstep, and measure both",
                          app.main.cache_on ? "off" : "on");
    ImGui::EndDisabled();
}

// While a model loads: its progress (tensors, bytes) and Cancel; the previous model
// keeps working meanwhile.
void draw_load_progress(AppState& app) {
    const LoadView& v = app.loading;
    if (!v.running) return;
    const float fs = ImGui::GetFontSize();
    const std::string caption = load_caption(v);
    flow(fs * 10 + text_w("Cancel") + ImGui::GetStyle().ItemSpacing.x);
    const kv::LoadProgress& p = v.progress;
    const float f = p.bytes_total > 0 ? static_cast<float>(static_cast<double>(p.bytes_done) / p.bytes_total) : 0.f;
    ImGui::ProgressBar(f, ImVec2(fs * 10, 0), v.cancelling ? "cancelling" : nullptr);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", caption.c_str());
    ImGui::SameLine();
    ImGui::BeginDisabled(v.cancelling);
    if (ImGui::Button("Cancel##load")) app.cancel_load = true;
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("Stop loading; the model in use stays");
    flow(ImGui::CalcTextSize(caption.c_str()).x);
    ImGui::TextColored(to_vec4(palette().accent), "%s", caption.c_str());
}

// "| working... 1.2 s" while the worker runs.
void draw_busy_spinner(const AppState& app) {
    if (!app.busy) return;
    flow(ImGui::GetFontSize() * 9);
    const char spin[] = "|/-\\";
    double t = ImGui::GetTime();
    ImGui::TextColored(to_vec4(palette().accent), "%c working... %.1f s", spin[static_cast<int>(t * 8) % 4],
                       t - app.busy_since);
}

// "Label: [text field] [button]" (field and button disabled while busy): true when
// the button or Enter was pressed. An empty field shows the hint, dimmed.
bool labelled_field(const char* label, const char* id, std::string* text, float width, const char* button,
                    bool busy, const char* tooltip = nullptr, const char* hint = nullptr) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(label);
    ImGui::SameLine();
    ImGui::SetNextItemWidth(width);
    ImGui::BeginDisabled(busy);
    const bool enter = hint ? ImGui::InputTextWithHint(id, hint, text, ImGuiInputTextFlags_EnterReturnsTrue)
                            : ImGui::InputText(id, text, ImGuiInputTextFlags_EnterReturnsTrue);
    if (tooltip && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", tooltip);
    ImGui::SameLine();
    const bool pressed = ImGui::Button(button) || enter;
    ImGui::EndDisabled();
    return pressed;
}

// The weights' type: as stored, f32, f16 or bf16; a choice reloads the model in it.
void draw_weights_combo(AppState& app) {
    static const char* const kItems[] = {"as stored", "f32", "f16", "bf16"};
    ImGui::SameLine();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 5.f);
    const char* preview = app.model ? kv::weight_type_name(app.model->weights.type) : "weights";
    int choice = app.weights ? 1 + static_cast<int>(*app.weights) : 0;
    ImGui::BeginDisabled(app.busy || !app.model);
    if (ImGui::BeginCombo("##weights", preview)) {
        for (int i = 0; i < 4; ++i)
            if (ImGui::Selectable(kItems[i], i == choice) && i != choice) {
                Command c{CommandKind::set_weights};
                c.n = i - 1;
                app.push(c);
                app.vs.playing = false;
            }
        ImGui::EndCombo();
    }
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("The type the weight matrices are held in (products add up in f32). A decode step streams "
                          "every weight once, so f16/bf16 halve its bytes; choosing reloads the model");
}

// The prompt and model fields.
const char* prompt_label(const AppState& app) { return app.model && !app.model->tokenizer ? "Prompt ids:" : "Prompt:"; }

// "Prompt: [field] [Set]", fs * 20 wide field.
void draw_prompt_field(AppState& app) {
    ViewState& vs = app.vs;
    if (labelled_field(prompt_label(app), "##prompt", &vs.prompt_text, ImGui::GetFontSize() * 20, "Set", app.busy)) {
        Command c{CommandKind::set_prompt};
        c.text = vs.prompt_text;
        app.push(c);
        vs.playing = false;
    }
}

void draw_prompt_and_model(AppState& app) {
    ViewState& vs = app.vs;
    const float fs = ImGui::GetFontSize();
    flow(fs * 30);
    draw_prompt_field(app);
    flow(fs * 34);  // the field, Load, the weights' type and the bundled-model picker
    const std::string tip = (app.model_spec.empty() ? std::string() : "Loaded: " + app.model_spec + "\n") +
                            "Type a model folder (config.json, model.safetensors, vocab) or random:tiny / "
                            "random:gpt2-124m; Load with the field empty loads this one again";
    const std::string hint = model_field_hint(app);
    if (labelled_field("Model:", "##model", &vs.model_text, fs * 11, "Load", app.busy, tip.c_str(), hint.c_str())) {
        Command c{CommandKind::load_model};
        c.text = model_to_load(app);
        app.push(c);
        vs.playing = false;
    }
    draw_weights_combo(app);
    draw_model_picker(app);
}

// Layer and head selectors; a change becomes a set_selection command.
void draw_selection(AppState& app) {
    ViewState& vs = app.vs;
    const float fs = ImGui::GetFontSize();
    const int L = app.n_layer(), H = app.n_head();
    const float sp = ImGui::GetStyle().ItemSpacing.x;  // the whole group: two labels, two fields of fs * 6
    flow(ImGui::CalcTextSize("Layer").x + ImGui::CalcTextSize("Head").x + fs * 12 + sp * 3);
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("Layer");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 6.f);
    int layer = vs.layer, head = vs.head;
    ImGui::BeginDisabled(app.busy);
    if (ImGui::InputInt("##layer", &layer)) layer = std::clamp(layer, 0, L - 1);
    ImGui::SameLine();
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("Head");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 6.f);
    if (ImGui::InputInt("##head", &head)) head = std::clamp(head, 0, H - 1);
    ImGui::EndDisabled();
    if (layer == vs.layer && head == vs.head) return;
    vs.layer = layer;
    vs.head = head;
    Command c{CommandKind::set_selection};
    c.n = layer;
    c.m = head;
    app.push(c);
}

// Greedy, temperature, top-k and seed; a change becomes a set_sampling command.
void draw_sampling(AppState& app) {
    ViewState& vs = app.vs;
    const float fs = ImGui::GetFontSize();
    flow(fs * 26);
    kv::SamplingOptions s = vs.sampling;
    bool greedy = s.temperature <= 0.f;
    ImGui::BeginDisabled(app.busy);
    if (ImGui::Checkbox("Greedy", &greedy)) s.temperature = greedy ? 0.f : 0.8f;
    ImGui::SameLine();
    ImGui::BeginDisabled(greedy);
    ImGui::SetNextItemWidth(fs * 5.5f);
    ImGui::SliderFloat("##temp", &s.temperature, 0.05f, 2.f, "temp %.2f");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 4.5f);
    ImGui::SliderInt("##topk", &s.top_k, 0, 50, s.top_k == 0 ? "top-k all" : "top-k %d");
    ImGui::SameLine();
    int seed = static_cast<int>(s.seed);
    ImGui::SetNextItemWidth(fs * 5.f);
    if (ImGui::InputInt("##seed", &seed)) s.seed = static_cast<uint64_t>(std::max(0, seed));
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("random seed");
    ImGui::EndDisabled();
    ImGui::EndDisabled();
    if (s.temperature == vs.sampling.temperature && s.top_k == vs.sampling.top_k && s.seed == vs.sampling.seed) return;
    vs.sampling = s;
    Command c{CommandKind::set_sampling};
    c.sampling = s;
    app.push(c);
}

void draw_theme_and_help(ViewState& vs) {
    flow(text_w("Light theme") + text_w("Help (F1)") + ImGui::GetFontSize());
    if (ImGui::Button(vs.dark ? "Light theme" : "Dark theme")) {
        vs.dark = !vs.dark;
        apply_theme(vs.dark, vs.base_font_px * vs.font_scale / 18.f);
    }
    ImGui::SameLine();
    if (ImGui::Button("Help (F1)")) vs.show_help = !vs.show_help;
}

// The serving view (V), among the controls that fold away behind "More (M)": where it
// fits on the row, else on the next line.
void draw_serving_button(AppState& app) {
    flow(text_w("Serving (V)"));
    ImGui::BeginDisabled(app.busy || !app.model);
    if (ImGui::Button("Serving (V)")) enter_serve(app);
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("Many requests in one paged pool of cache blocks, step by step (V)");
}

// Model name, notes and errors: always on a line of their own.
void draw_status_line(const AppState& app) {
    const Palette& pal = palette();
    ImGui::AlignTextToFramePadding();
    if (app.model) {
        ImGui::TextColored(to_vec4(pal.text_dim), "%s", model_line(app).c_str());
    } else {
        ImGui::TextColored(to_vec4(pal.bad), "no model loaded");
    }
    if (!app.vs.note.empty()) {
        flow(ImGui::CalcTextSize(app.vs.note.c_str()).x);
        ImGui::TextColored(to_vec4(pal.text_dim), "(%s)", app.vs.note.c_str());
    }
    if (!app.error.empty()) {
        flow(std::min(ImGui::CalcTextSize(app.error.c_str()).x, ImGui::GetFontSize() * 40));
        ImGui::TextColored(to_vec4(pal.bad), "Error: %s", app.error.c_str());
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", app.error.c_str());
    }
}

}  // namespace

std::string model_field_hint(const AppState& app) { return app.model ? app.model_name : "no model: type a folder"; }

std::string model_to_load(const AppState& app) { return app.vs.model_text.empty() ? app.model_spec : app.vs.model_text; }

std::string model_line(const AppState& app) {
    if (!app.model) return "no model loaded";
    const kv::ModelConfig& c = app.model->config;
    const kv::WeightType t = app.model->weights.type;
    char b[256];
    if (c.is_mla())  // one latent row per token and layer instead of kv heads
        std::snprintf(b, sizeof b, "%s: %d layers, %d heads, MLA latent %d + rope %d (k %d, v %d), ctx %d, weights %s "
                      "(held %d bytes each)", app.model_name.c_str(), c.n_layer, c.n_head, c.mla.kv_lora_rank,
                      c.mla.qk_rope_head_dim, c.head_dim(), c.v_head_dim(), c.n_ctx, kv::weight_type_name(t),
                      kv::weight_type_bytes(t));
    else
        std::snprintf(b, sizeof b, "%s: %d layers, %d heads (%d kv), hd %d, ctx %d, weights %s (held %d bytes each)",
                      app.model_name.c_str(), c.n_layer, c.n_head, c.n_kv_head, c.head_dim(), c.n_ctx,
                      kv::weight_type_name(t), kv::weight_type_bytes(t));
    return b;
}

int64_t weight_bytes(const AppState& app) { return app.model ? app.model->weights.bytes() : 0; }

std::string load_caption(const LoadView& v) {
    std::string name = std::filesystem::path(v.spec).lexically_normal().filename().string();
    if (name.empty()) name = std::filesystem::path(v.spec).lexically_normal().parent_path().filename().string();
    if (name.empty()) name = v.spec.empty() ? "the bundled model" : v.spec;
    const kv::LoadProgress& p = v.progress;
    char b[256];
    std::snprintf(b, sizeof b, "Loading %s%s%s%s%s: %d/%d tensors, %s / %s", name.c_str(), v.weights ? " (" : "",
                  v.weights ? kv::weight_type_name(*v.weights) : "", v.weights ? ")" : "",
                  v.twin ? ", then in f32 to measure against" : "", p.tensors_done,
                  p.tensors_total, human_bytes(static_cast<double>(p.bytes_done)).c_str(),
                  human_bytes(static_cast<double>(p.bytes_total)).c_str());
    return b;
}

// One row part after another; each flows onto the next line when the window is narrow.
// Folded (the layout's one-row form): the step buttons, the cache switch, a button for
// the rest, and an error when there is one.
void draw_controls_panel(AppState& app, bool folded) {
    const bool no_model = app.model == nullptr;
    draw_step_buttons(app, no_model, folded);
    draw_cache_switches(app, no_model || app.spec.on, folded);  // speculative rounds use their own caches
    if (folded) {
        // the prompt too, when it fits on the row (a window of ordinary font size)
        const ImGuiStyle& st = ImGui::GetStyle();
        const float prompt_w = ImGui::CalcTextSize(prompt_label(app)).x + ImGui::GetFontSize() * 20 + text_w("Set") +
                               st.ItemSpacing.x * 2 + text_w("More (M)") + st.ItemSpacing.x * 3;
        if (ImGui::GetItemRectMax().x + st.ItemSpacing.x * 3 + prompt_w <=
            ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x) {
            ImGui::SameLine(0, st.ItemSpacing.x * 3);
            draw_prompt_field(app);
        }
        draw_busy_spinner(app);
        draw_load_progress(app);  // while a model loads (the folded row grows for it)
        flow(text_w("More (M)"));
        if (ImGui::Button("More (M)")) app.vs.layout.controls_expanded = true;
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("More controls: prompt, model, cache policy, layer and head, play speed, sampling, "
                              "theme, the serving view (M shows and hides them)");
        if (!app.error.empty()) {
            flow(std::min(ImGui::CalcTextSize(app.error.c_str()).x, ImGui::GetFontSize() * 30));
            ImGui::TextColored(to_vec4(palette().bad), "Error: %s", app.error.c_str());
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", app.error.c_str());
        }
        return;
    }
    draw_spec_controls(app);
    draw_policy_controls(app);
    draw_busy_spinner(app);
    draw_load_progress(app);
    draw_prompt_and_model(app);
    draw_selection(app);
    draw_sampling(app);
    draw_theme_and_help(app.vs);
    draw_serving_button(app);
    draw_status_line(app);
}

}  // namespace kvui
