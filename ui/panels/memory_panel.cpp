// Memory: the session's live cache bytes (and the weights' bytes beside them) and the curve of its policy against tokens
// (ui/panels/memory_curve.cpp), then the cache formula 2 x layers x kv_heads x head_dim x
// tokens x bytes (MLA: layers x (d_c + d_R) x tokens x bytes), for this model, GPT-2 124M
// and a grouped-query 8B model (Llama-3-8B) at a context length the teacher picks; bars
// are scaled to the largest. (The MLA chapter's table adds DeepSeek-V3.)
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

std::string cache_formula_text(const kv::ModelConfig& c, int64_t tokens, kv::KvDtype t) {
    const std::string n = std::to_string(tokens), b = std::to_string(kv::dtype_bytes(t));
    if (c.is_mla())
        return std::to_string(c.n_layer) + "x(" + std::to_string(c.mla.kv_lora_rank) + "+" +
               std::to_string(c.mla.qk_rope_head_dim) + ")x" + n + "x" + b;
    return "2x" + std::to_string(c.n_layer) + "x" + std::to_string(c.n_kv_head) + "x" + std::to_string(c.head_dim()) + "x" +
           n + "x" + b;
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
    if (!v.policy.windowed() && v.policy.dtype == kv::KvDtype::f32) {  // linear: a token's bytes (an MLA read mode stores the same)
        text_wrapped_colored(pal.text_dim, "linear: %s a token",
                             human_bytes(static_cast<double>(kv::cache_bytes_for(c, v.policy.dtype, 1))).c_str());
        if (ImGui::IsItemHovered() && c.is_mla())
            ImGui::SetTooltip("A token: one latent row (c_KV %d + k_R %d) x %d layers x %d bytes a value, shared by all "
                              "%d heads;\n2x tokens = 2x bytes", c.mla.kv_lora_rank, c.mla.qk_rope_head_dim, c.n_layer,
                              kv::dtype_bytes(v.policy.dtype), c.n_head);
        else if (ImGui::IsItemHovered())
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

std::vector<MemoryRow> memory_rows(const AppState& app) {
    std::vector<MemoryRow> rows;
    if (app.model) rows.push_back({"this model (f32)", app.model->config, kv::KvDtype::f32});
    rows.push_back({"GPT-2 124M", kv::ModelConfig::gpt2_124m(), kv::KvDtype::f32});
    rows.push_back({"Llama-3-8B (GQA, fp16)", kv::ModelConfig::llama3_8b(), kv::KvDtype::f16});
    return rows;
}

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
    const std::vector<MemoryRow> rows = memory_rows(app);
    double maxb = 1;
    for (const MemoryRow& r : rows) maxb = std::max(maxb, static_cast<double>(kv::cache_bytes_for(r.config, r.dtype, vs.memory_ctx)));
    const float W = ImGui::GetContentRegionAvail().x;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (const MemoryRow& r : rows) {
        const double b = static_cast<double>(kv::cache_bytes_for(r.config, r.dtype, vs.memory_ctx));
        // The bar sits behind the (wrapped) text, scaled to the largest: drawn after
        // the text on a lower channel, once the text's height is known.
        dl->ChannelsSplit(2);
        dl->ChannelsSetCurrent(1);
        const ImVec2 o = ImGui::GetCursorScreenPos();
        text_wrapped("%s: %s = %s", r.name.c_str(), cache_formula_text(r.config, vs.memory_ctx, r.dtype).c_str(),
                     human_bytes(b).c_str());
        const bool hovered = ImGui::IsItemHovered();
        dl->ChannelsSetCurrent(0);
        dl->AddRectFilled(o, ImVec2(o.x + std::max(3.f, static_cast<float>(W * b / maxb)), ImGui::GetItemRectMax().y),
                          with_alpha(pal.accent, 0.28f), 3.f);
        dl->ChannelsMerge();
        const kv::ModelConfig& c = r.config;
        if (hovered && c.is_mla())
            ImGui::SetTooltip("%d layers, one latent row of c_KV %d + k_R %d per token, %d bytes per value", c.n_layer,
                              c.mla.kv_lora_rank, c.mla.qk_rope_head_dim, kv::dtype_bytes(r.dtype));
        else if (hovered)
            ImGui::SetTooltip("%d layers, %d kv heads, head_dim %d, %d bytes per value", c.n_layer, c.n_kv_head,
                              c.head_dim(), kv::dtype_bytes(r.dtype));
    }
    ImGui::EndChild();
}

}  // namespace kvui
