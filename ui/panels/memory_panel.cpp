// Memory: the session's live cache bytes (and the weights' bytes beside them) and the curve of its policy against tokens
// (ui/panels/memory_curve.cpp), then the cache formula 2 x layers x kv_heads x head_dim x
// tokens x bytes, for this model, GPT-2 124M and a grouped-query 8B model (Llama-3-8B) at a context
// length the teacher picks; bars are scaled to the largest.
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

int64_t cache_bytes_formula(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t tokens, int64_t bytes) {
    kv::ModelConfig shape;  // only the cache's dimensions matter
    shape.n_layer = static_cast<int>(layers);
    shape.n_head = shape.n_kv_head = static_cast<int>(kv_heads);
    shape.n_embd = static_cast<int>(kv_heads * head_dim);
    const kv::KvDtype t = bytes == 1 ? kv::KvDtype::int8 : bytes == 2 ? kv::KvDtype::f16 : kv::KvDtype::f32;
    return kv::cache_bytes_for(shape, t, tokens);
}

std::string human_bytes(double b) {
    char s[32];
    if (b >= 1024.0 * 1024 * 1024) std::snprintf(s, sizeof s, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) std::snprintf(s, sizeof s, "%.2f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0) std::snprintf(s, sizeof s, "%.1f KiB", b / 1024.0);
    else std::snprintf(s, sizeof s, "%.0f B", b);
    return s;
}

namespace {

// Left: "Now: 7 rows = 7.0 KiB", the policy, and what full f32 would hold (the
// session's own counters); right: the curve of the policy's bytes against tokens.
void draw_live_memory(const AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    const float fs = ImGui::GetFontSize();
    const float W = ImGui::GetContentRegionAvail().x;
    const float text_w = std::floor(W * 0.42f);
    // The curve takes what the tokens slider and the three formula rows under it leave.
    const float below = ImGui::GetFrameHeightWithSpacing() + 3 * ImGui::GetTextLineHeightWithSpacing() +
                        ImGui::GetStyle().ItemSpacing.y;
    const float h = std::clamp(ImGui::GetContentRegionAvail().y - below, fs * 3.4f, fs * 8.f);
    const double full = policy_bytes_at(c, kv::CachePolicy{}, v.cache_positions);
    ImGui::BeginGroup();
    ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + text_w);
    text_wrapped("Now: %d rows = %s", v.cache_rows, human_bytes(static_cast<double>(v.cache_bytes)).c_str());
    // Beside the cache: the weights every decode step streams once, in their held type.
    text_wrapped_colored(pal.text_dim, "weights: %s (%s)", human_bytes(static_cast<double>(weight_bytes(app))).c_str(),
                       kv::weight_type_name(app.model->weights.type));
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip("The weights in their held type (%d bytes a matrix value; biases, LayerNorms and positions f32). "
                          "A decode step reads all of them once; the cache grows with the tokens",
                          kv::weight_type_bytes(app.model->weights.type));
    text_wrapped_colored(pal.accent, "%s", policy_caption(v.policy).c_str());
    if (v.policy.is_default()) {  // linear: the bytes of a token of the model on screen, each step
        text_wrapped_colored(pal.text_dim, "linear: %s a token",
                             human_bytes(static_cast<double>(kv::cache_bytes_for(c, v.policy.dtype, 1))).c_str());
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("A token: K and V (2) x %d layers x %d kv heads x head_dim %d x %d bytes a value;\n"
                              "2x tokens = 2x bytes", c.n_layer, c.n_kv_head, c.head_dim(), kv::dtype_bytes(v.policy.dtype));
    }
    else
        text_wrapped_colored(pal.text_dim, "full f32: %d rows = %s; this is %.0f%%", v.cache_positions,
                           human_bytes(full).c_str(), full > 0 ? 100.0 * static_cast<double>(v.cache_bytes) / full : 100.0);
    ImGui::PopTextWrapPos();
    ImGui::EndGroup();
    ImGui::SameLine();
    draw_memory_curve(app, v, W - text_w - ImGui::GetStyle().ItemSpacing.x, h);
}

}  // namespace

void draw_memory_panel(AppState& app) {
    const Palette& pal = palette();
    ViewState& vs = app.vs;
    const float fs = ImGui::GetFontSize();
    ImGui::BeginChild("mem", ImVec2(0, 0), false);
    if (app.model) draw_live_memory(app);
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("tokens");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(std::max(fs * 6, ImGui::GetContentRegionAvail().x));
    ImGui::SliderInt("##ctx", &vs.memory_ctx, 1, 131072, "%d", ImGuiSliderFlags_Logarithmic);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("context length: Ctrl+click to type a number");
    struct Row {
        std::string name;
        int64_t L, Hkv, hd, bytes;
    };
    std::vector<Row> rows;
    if (app.model) {
        const kv::ModelConfig& c = app.model->config;
        rows.push_back({"this model (f32)", c.n_layer, c.n_kv_head, c.head_dim(), 4});
    }
    rows.push_back({"GPT-2 124M", 12, 12, 64, 4});
    rows.push_back({"Llama-3-8B (GQA, fp16)", 32, 8, 128, 2});
    double maxb = 1;
    for (const Row& r : rows)
        maxb = std::max(maxb, static_cast<double>(cache_bytes_formula(r.L, r.Hkv, r.hd, vs.memory_ctx, r.bytes)));
    const float W = ImGui::GetContentRegionAvail().x;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (const Row& r : rows) {
        const double b = static_cast<double>(cache_bytes_formula(r.L, r.Hkv, r.hd, vs.memory_ctx, r.bytes));
        // The bar sits behind the (wrapped) text, scaled to the largest: drawn after
        // the text on a lower channel, once the text's height is known.
        dl->ChannelsSplit(2);
        dl->ChannelsSetCurrent(1);
        const ImVec2 o = ImGui::GetCursorScreenPos();
        text_wrapped("%s: 2x%lldx%lldx%lldx%dx%lld = %s", r.name.c_str(), static_cast<long long>(r.L),
                           static_cast<long long>(r.Hkv), static_cast<long long>(r.hd), vs.memory_ctx,
                           static_cast<long long>(r.bytes), human_bytes(b).c_str());
        const bool hovered = ImGui::IsItemHovered();
        dl->ChannelsSetCurrent(0);
        dl->AddRectFilled(o, ImVec2(o.x + std::max(3.f, static_cast<float>(W * b / maxb)), ImGui::GetItemRectMax().y),
                          with_alpha(pal.accent, 0.28f), 3.f);
        dl->ChannelsMerge();
        if (hovered)
            ImGui::SetTooltip("%lld layers, %lld kv heads, head_dim %lld, %lld bytes per value", static_cast<long long>(r.L),
                              static_cast<long long>(r.Hkv), static_cast<long long>(r.hd), static_cast<long long>(r.bytes));
    }
    ImGui::EndChild();
}

}  // namespace kvui
