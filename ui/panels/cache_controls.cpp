// The cache-policy control (window W, sinks S, dtype) beside the cache switch, and
// the picker of bundled models beside the model field. Applying a policy gives the
// sessions fresh caches of that policy, so they start again from the prefill; the
// control says so before the click.
#include <imgui.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

std::vector<BundledModel> bundled_models() {
    namespace fs = std::filesystem;
    std::vector<BundledModel> out;
    const std::string def = kv::default_model_dir();
    if (def.empty()) return out;
    std::error_code ec;
    const fs::path parent = fs::path(def).parent_path();
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_directory(ec) && fs::is_regular_file(it->path() / "config.json", ec))
            out.push_back({it->path().filename().string(), it->path().lexically_normal().string()});
    std::sort(out.begin(), out.end(), [](const BundledModel& a, const BundledModel& b) { return a.name < b.name; });
    return out;
}

std::string policy_problem(const kv::CachePolicy& p) {
    try {
        kv::check_policy(p, "cache policy");
    } catch (const kv::Error& e) {
        return e.what();
    }
    return "";
}

std::string policy_caption(const kv::CachePolicy& p) {
    const std::string read = p.mla == kv::MlaRead::absorbed ? ", absorbed" : "";
    if (!p.windowed()) return std::string("full ") + kv::dtype_name(p.dtype) + read;
    std::string s = "W " + std::to_string(p.window);
    if (p.sinks > 0) s += " + " + std::to_string(p.sinks) + " sinks";
    return s + ", " + kv::dtype_name(p.dtype) + read;
}

namespace {

void small_int(const char* label, const char* id, int* v, const char* tip) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(label);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", tip);
    ImGui::SameLine(0, 3);
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 2.6f);
    if (ImGui::InputInt(id, v, 0, 0)) *v = std::clamp(*v, 0, 100000);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", tip);
}

void push_policy(AppState& app, const kv::CachePolicy& p, bool second) {
    Command c{second ? CommandKind::set_other_policy : CommandKind::set_policy};
    c.policy = p;
    c.flag = true;
    app.push(c);
    app.vs.playing = false;
}

// "Read [expand v]" for an MLA model: applies at once (set_mla_read), steps kept.
void draw_mla_read_control(AppState& app) {
    const float fs = ImGui::GetFontSize();
    ImGui::SameLine();
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("Read");
    ImGui::SameLine(0, 3);
    ImGui::SetNextItemWidth(fs * 5.6f);
    int m = static_cast<int>(app.main.policy.mla);
    if (ImGui::Combo("##mlaread", &m, "expand\0absorbed\0")) set_mla_read(app, static_cast<kv::MlaRead>(m));
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip("MLA (A): how queries read the cached latent rows [c_KV | k_R].\nexpand: every step projects "
                          "each cached row up to every head's K and V (work grows with the rows);\nabsorbed: W_UK folded "
                          "into the query and W_UV into the output, attention on the latent rows.\nThe same cache; the "
                          "steps are run again.");
}

}  // namespace

void set_mla_read(AppState& app, kv::MlaRead m) {
    if (!app.model || !app.model->config.is_mla() || app.busy || app.main.policy.mla == m) return;
    Command c{CommandKind::set_policy};
    c.policy = app.main.policy;
    c.policy.mla = m;
    app.push(c);
    for (int i = 0; i < app.main.n_steps(); ++i) app.push(Command{CommandKind::step});
    app.vs.policy_edit.mla = m;
    app.vs.playing = false;
}

// "Window [6] Sinks [2] [int8 v] [Apply]": the edit buffer starts as the sessions' policy.
void draw_policy_controls(AppState& app) {
    ViewState& vs = app.vs;
    const float fs = ImGui::GetFontSize();
    const bool mla = app.model && app.model->config.is_mla();
    if (!vs.policy_edit_init && app.main.valid) {
        vs.policy_edit = app.main.policy;
        vs.policy_edit_init = true;
    }
    kv::CachePolicy& e = vs.policy_edit;
    if (!mla) e.mla = kv::MlaRead::expand;  // the read of a model loaded before
    flow(fs * (mla ? 29 : 21));
    ImGui::BeginGroup();
    ImGui::BeginDisabled(app.busy || !app.model || app.spec.on);  // speculative rounds: full f32 caches
    small_int("Window", "##window", &e.window,
              "W: each query reads the last W positions (its own included); 0 = all.\nPositions keep their absolute "
              "index (GPT-2's learned position embeddings), so generation still ends at n_ctx.");
    ImGui::SameLine();
    small_int("Sinks", "##sinks", &e.sinks, "S: the first S positions are always read (with a window)");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 3.6f);
    int dt = static_cast<int>(e.dtype);
    if (ImGui::Combo("##kvdtype", &dt, "f32\0f16\0int8\0")) e.dtype = static_cast<kv::KvDtype>(dt);
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip("How the cache stores K and V: f32 as computed, f16 rounded to half, int8 with one scale per row");
    if (mla) draw_mla_read_control(app);
    ImGui::SameLine();
    const std::string problem = policy_problem(e);
    const bool same = e == app.main.policy;
    ImGui::BeginDisabled(!problem.empty() || same);
    if (ImGui::Button("Apply")) push_policy(app, e, false);
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("%s", !problem.empty() ? problem.c_str()
                                : same           ? "The sessions already run this policy"
                                                 : "Apply: a new, empty cache of this policy; the sessions start again "
                                                   "from the prefill (the prompt is kept)");
    ImGui::SameLine();
    ImGui::BeginDisabled(!problem.empty());
    if (ImGui::Button("Compare")) push_policy(app, e, true);
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("Side by side: a second session runs this policy (cache %s, as the main one) in lockstep "
                          "with the main session's %s; it starts afresh and catches up",
                          app.main.cache_on ? "on" : "off", policy_caption(app.main.policy).c_str());
    ImGui::EndDisabled();
    ImGui::EndGroup();
    if (!problem.empty()) {
        flow(ImGui::CalcTextSize(problem.c_str()).x);
        ImGui::TextColored(to_vec4(palette().bad), "%s", problem.c_str());
    } else if (!same) {
        flow(fs * 9);
        ImGui::TextColored(to_vec4(palette().accent), "Apply resets the steps");
    }
}

// A combo of the bundled models; choosing one loads it.
void draw_model_picker(AppState& app) {
    ViewState& vs = app.vs;
    if (!vs.bundled_scanned) {  // the assets do not move while we run
        vs.bundled = bundled_models();
        vs.bundled_scanned = true;
    }
    const std::vector<BundledModel>& models = vs.bundled;
    if (models.empty()) return;
    ImGui::SameLine();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6.5f);
    ImGui::BeginDisabled(app.busy);
    if (ImGui::BeginCombo("##bundled", "bundled", ImGuiComboFlags_HeightLarge)) {
        for (const BundledModel& m : models) {
            if (ImGui::Selectable(m.name.c_str(), app.model_name == m.name)) {
                Command c{CommandKind::load_model};
                c.text = m.dir;
                app.push(c);
                app.vs.model_text.clear();  // the field shows the name once it loads
                app.vs.playing = false;
            }
        }
        ImGui::EndCombo();
    }
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("Load one of the models that come with kvscope");
}

}  // namespace kvui
