// KV cache: the selected layer/kv head's cache as a matrix (rows = positions; K block,
// then V block), each row tagged by how the latest step got it: read from the cache
// (blue, "cache"), computed now (orange, "new", slides in) or recomputed because the
// cache is off (magenta, "recomp", flashes). Attention weights sit beside the rows.
// In compare mode the two sessions' caches are drawn side by side.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/model/model_io.h"
#include "ui/colormap.h"
#include "ui/heatmap.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace kvui {

namespace {

void draw_cache_view(AppState& app, const SessionView& v, const char* caption) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    ImGui::PushFont(big_font());
    ImGui::TextColored(to_vec4(v.cache_on ? state_color(RowState::read, pal.dark) : state_color(RowState::recomputed, pal.dark)),
                       "%s", caption);
    ImGui::PopFont();
    const kv::StepTrace* t = v.last();
    const int rows = static_cast<int>(v.cache_k.rows());
    if (!t || rows == 0) {
        ImGui::SameLine();
        ImGui::TextColored(to_vec4(pal.text_dim), "The cache is empty: nothing has entered the model yet.");
        return;
    }
    const int hd = static_cast<int>(v.cache_k.cols());
    ImGui::SameLine();
    ImGui::TextColored(to_vec4(pal.text_dim), " %d rows, K %d + V %d | %s", rows, hd, hd, attention_caption(*t));

    ImGui::BeginChild("rows", ImVec2(0, 0), false, ImGuiWindowFlags_HorizontalScrollbar);
    const float avail_w = ImGui::GetContentRegionAvail().x;
    const float avail_h = ImGui::GetContentRegionAvail().y;
    const float row_h = std::clamp(std::floor((avail_h - fs * 1.4f) / rows), 3.f, fs * 1.3f);  // all rows fit if they can
    const bool text_rows = row_h >= fs * 0.8f;
    // Row labels "3 programming": the label column is as wide as the longest one
    // (up to 30% of the width); longer ones end in "..." and hover shows them whole.
    const float label_scale = text_rows ? 1.f : 0.8f;
    std::vector<std::string> labels(rows);
    float longest = 0.f;
    for (int r = 0; r < rows; ++r) {
        labels[r] = std::to_string(r) + " " + (r < static_cast<int>(v.tokens.size()) ? app.token_text(v.tokens[r]) : "");
        longest = std::max(longest, ImGui::CalcTextSize(labels[r].c_str()).x * label_scale);
    }
    const float label_w = std::min(longest + fs * 0.5f, std::max(fs * 3.f, avail_w * 0.3f));
    const float tag_w = fs * 3.6f;
    const float rest = std::max(avail_w - label_w - tag_w - fs * 1.5f, fs * 10);
    const float attn_w = rest * 0.3f;
    const float cw = std::clamp((rest - attn_w - fs) / (2 * hd), 1.f, fs * 1.2f);
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float x_tag = o.x + label_w, x_k = x_tag + tag_w + fs * 0.3f;
    const float x_v = x_k + cw * hd + fs * 0.4f;
    const float x_attn = x_v + cw * hd + fs * 0.6f;
    const float ks = abs_max(v.cache_k.data(), static_cast<int>(v.cache_k.size()));
    const float vsc = abs_max(v.cache_v.data(), static_cast<int>(v.cache_v.size()));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float a_new = step_anim(app, 0.45f);
    const float a_flash = step_anim(app, 1.0f);
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    const bool hover = ImGui::IsWindowHovered();
    const int label_every = text_rows ? 1 : std::max(1, static_cast<int>(std::ceil(fs * 0.85f / row_h)));
    for (int r = 0; r < rows; ++r) {
        const float y = o.y + r * row_h;
        const RowState st = row_state(*t, r);
        const ImU32 sc = state_color(st, pal.dark);
        float dx = 0.f, alpha = 1.f;
        if (st == RowState::computed) {
            dx = (1.f - a_new) * fs * 4;
            alpha = a_new;
        }
        if (r % label_every == 0) {
            const float ls = fs * label_scale;
            std::string lab = labels[r];
            const float room = label_w - fs * 0.3f;
            const bool cut = ImGui::CalcTextSize(lab.c_str()).x * label_scale > room;
            if (cut) {  // drop characters (whole UTF-8 sequences) until "..." fits
                while (!lab.empty() && ImGui::CalcTextSize((lab + "...").c_str()).x * label_scale > room) {
                    while (!lab.empty() && (static_cast<unsigned char>(lab.back()) & 0xC0) == 0x80) lab.pop_back();
                    if (!lab.empty()) lab.pop_back();
                }
                lab += "...";
            }
            dl->PushClipRect(ImVec2(o.x, y - fs), ImVec2(x_tag - 2, y + fs), true);
            dl->AddText(ImGui::GetFont(), ls, ImVec2(o.x, y + (row_h - ls) * 0.5f), pal.text, lab.c_str());
            dl->PopClipRect();
            if (cut && hover && mouse.y >= y && mouse.y < y + row_h && mouse.x >= o.x && mouse.x < x_tag)
                ImGui::SetTooltip("row %s", labels[r].c_str());
        }
        const float gap = row_h > 6 ? 1.f : 0.f;
        dl->AddRectFilled(ImVec2(x_tag, y), ImVec2(x_tag + tag_w, y + row_h - gap), with_alpha(sc, alpha), 3.f);
        if (text_rows || r % label_every == 0) {
            const float ts = text_rows ? fs * 0.85f : fs * 0.7f;
            dl->PushClipRect(ImVec2(x_tag, y - fs), ImVec2(x_tag + tag_w, y + fs), true);
            const ImVec4 cv = to_vec4(sc);
            const bool light_bg = 0.3f * cv.x + 0.59f * cv.y + 0.11f * cv.z > 0.5f;
            dl->AddText(big_font(), ts, ImVec2(x_tag + 4, y + (row_h - ts) * 0.5f),
                        light_bg ? IM_COL32(0, 0, 0, 255) : IM_COL32(255, 255, 255, 255), state_label(st));
            dl->PopClipRect();
        }
        for (int c = 0; c < hd; ++c) {
            dl->AddRectFilled(ImVec2(x_k + dx + c * cw, y), ImVec2(x_k + dx + (c + 1) * cw - (cw > 5 ? 1.f : 0.f), y + row_h - gap),
                              with_alpha(diverging(v.cache_k(r, c) / ks, pal.dark), alpha));
            dl->AddRectFilled(ImVec2(x_v + dx + c * cw, y), ImVec2(x_v + dx + (c + 1) * cw - (cw > 5 ? 1.f : 0.f), y + row_h - gap),
                              with_alpha(diverging(v.cache_v(r, c) / vsc, pal.dark), alpha));
        }
        // Recomputed rows flash; read rows light up briefly in decode steps.
        if (st == RowState::recomputed && a_flash < 1.f) {
            float f = 0.5f + 0.5f * std::sin(a_flash * 18.f);
            dl->AddRect(ImVec2(x_k - 2, y), ImVec2(x_v + cw * hd + 2, y + row_h), with_alpha(sc, f * (1 - a_flash)), 0.f, 0, 3.f);
        } else if (st == RowState::read && a_flash < 1.f) {
            dl->AddRectFilled(ImVec2(x_k - 2, y), ImVec2(x_v + cw * hd + 2, y + row_h), with_alpha(sc, 0.35f * (1 - a_flash)));
        }
        if (hover && mouse.y >= y && mouse.y < y + row_h) {
            const bool in_k = mouse.x >= x_k && mouse.x < x_k + cw * hd;
            const bool in_v = mouse.x >= x_v && mouse.x < x_v + cw * hd;
            if (in_k || in_v) {
                int c = std::clamp(static_cast<int>((mouse.x - (in_k ? x_k : x_v)) / cw), 0, hd - 1);
                float val = in_k ? v.cache_k(r, c) : v.cache_v(r, c);
                ImGui::SetTooltip("%s row %d, dim %d = %.4f\n%s at this step", in_k ? "K" : "V", r, c, val, row_state_name(st));
            } else if (mouse.x >= x_tag && mouse.x < x_tag + tag_w) {
                ImGui::SetTooltip("row %d: %s", r, row_state_name(st));
            }
        }
    }
    // column captions under the matrix
    const float y_end = o.y + rows * row_h + 4;
    dl->AddText(ImVec2(x_k, y_end), pal.text_dim, "K");
    dl->AddText(ImVec2(x_v, y_end), pal.text_dim, "V");
    AttnGeometry g{x_attn, o.y, row_h, std::max(avail_w - (x_attn - o.x) - fs * 0.5f, fs * 4)};
    draw_attention_beside(app, *t, app.vs.layer, app.vs.head, g);
    ImGui::Dummy(ImVec2(x_attn - o.x + g.width, rows * row_h + fs * 1.3f));
    // Keep the newest row in view right after a step.
    if (!app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3) {
        const float want = rows * row_h + fs * 1.3f - ImGui::GetWindowHeight();
        if (want > 0) ImGui::SetScrollY(want);
    }
    ImGui::EndChild();
}

}  // namespace

void draw_cache_panel(AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    if (app.model) {
        const kv::ModelConfig& c = app.model->config;
        const int64_t at_ctx = cache_bytes_formula(c.n_layer, c.n_kv_head, c.head_dim(), c.n_ctx, 4);
        ImGui::Text("Layer %d, kv head %d.  Cache (all %d layers x %d kv heads): %s now, %s at n_ctx = %d", v.cache_layer,
                    v.cache_kv_head, c.n_layer, c.n_kv_head, human_bytes(static_cast<double>(v.cache_bytes)).c_str(),
                    human_bytes(static_cast<double>(at_ctx)).c_str(), c.n_ctx);
    }
    color_key(state_color(RowState::read, pal.dark), "read from cache");
    ImGui::SameLine();
    color_key(state_color(RowState::computed, pal.dark), "computed now");
    ImGui::SameLine();
    color_key(state_color(RowState::recomputed, pal.dark), "recomputed (cache off)");
    ImGui::SameLine();
    const float fs = ImGui::GetFontSize();
    draw_sequential_legend(fs * 4, "  weight");
    if (app.compare && app.other.valid) {
        const float w = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;
        ImGui::BeginChild("main_cache", ImVec2(w, 0), true);
        draw_cache_view(app, v, v.cache_on ? "WITH cache" : "WITHOUT cache");
        ImGui::EndChild();
        ImGui::SameLine();
        ImGui::BeginChild("other_cache", ImVec2(0, 0), true);
        draw_cache_view(app, app.other, app.other.cache_on ? "WITH cache" : "WITHOUT cache");
        ImGui::EndChild();
    } else {
        ImGui::BeginChild("main_cache", ImVec2(0, 0), false);
        draw_cache_view(app, v, v.cache_on ? "Cache ON" : "Cache OFF: all rows recomputed");
        ImGui::EndChild();
    }
}

}  // namespace kvui
