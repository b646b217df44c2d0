// KV cache: the selected layer/kv head's cache as a matrix (rows = positions; K block,
// then V block), each row tagged by how the latest step got it: read from the cache
// (blue, "cache"), computed now (orange, "new", slides in) or recomputed because the
// cache is off (magenta, "recomp", flashes). Attention weights sit beside the rows.
// In compare mode the two sessions' caches are drawn side by side.
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/engine/formulas.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/panels/mla_view.h"
#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

// What every row drawer needs: where, what, and the animation phases of this frame.
struct RowPaint {
    const AppState& app;
    const SessionView& v;
    const CacheGeometry& g;
    ImDrawList* dl;
    float fs;
    float k_scale, v_scale;  // |max| of the K and V blocks, for the colour map
    float a_new, a_flash;    // step_anim phases: slide-in (0.45 s), flash (1 s)
    int* labelled;           // rows whose label was drawn (CacheDrawn)
    bool latent;             // MLA: the rows are latent rows [c_KV | k_R] (app.model's)
};

// "3 programming" in the label column; cut with "..." when too long (hover shows it whole).
void draw_row_label(const RowPaint& rp, const CacheRow& row, float y) {
    const CacheGeometry& g = rp.g;
    const float fs = rp.fs, ls = fs * g.label_scale;
    std::string lab = row.label;
    const float room = g.label_w - fs * 0.3f;
    const bool cut = ImGui::CalcTextSize(lab.c_str()).x * g.label_scale > room;
    if (cut) {  // drop characters (whole UTF-8 sequences) until "..." fits
        while (!lab.empty() && ImGui::CalcTextSize((lab + "...").c_str()).x * g.label_scale > room) {
            while (!lab.empty() && (static_cast<unsigned char>(lab.back()) & 0xC0) == 0x80) lab.pop_back();
            if (!lab.empty()) lab.pop_back();
        }
        lab += "...";
    }
    const float ly = row_label_y(g, y, ls);
    rp.dl->PushClipRect(ImVec2(g.x0, ly), ImVec2(g.x_tag - 2, ly + ls), true);
    rp.dl->AddText(ImGui::GetFont(), ls, ImVec2(g.x0, ly), palette().text, lab.c_str());
    rp.dl->PopClipRect();
    ++*rp.labelled;
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    if (cut && ImGui::IsWindowHovered() && mouse.y >= y && mouse.y < y + g.row_h && mouse.x >= g.x0 && mouse.x < g.x_tag)
        ImGui::SetTooltip("row %s", row.label.c_str());
}

// The coloured tag with its word ("cache", "new", "recomp").
void draw_row_tag(const RowPaint& rp, const CacheRow& row, float y, float alpha) {
    const CacheGeometry& g = rp.g;
    const ImU32 sc = state_color(row.state, palette().dark);
    rp.dl->AddRectFilled(ImVec2(g.x_tag, y), ImVec2(g.x_tag + g.tag_w, y + g.row_h - g.gap), with_alpha(sc, alpha), 3.f);
    const float ts = rp.fs * std::min(0.85f, g.label_scale);
    rp.dl->PushClipRect(ImVec2(g.x_tag, y), ImVec2(g.x_tag + g.tag_w, y + g.row_h), true);
    const ImVec4 cv = to_vec4(sc);
    const bool light_bg = 0.3f * cv.x + 0.59f * cv.y + 0.11f * cv.z > 0.5f;
    rp.dl->AddText(big_font(), ts, ImVec2(g.x_tag + 4, y + (g.row_h - ts) * 0.5f),
                   light_bg ? IM_COL32(0, 0, 0, 255) : IM_COL32(255, 255, 255, 255), row.tag);
    rp.dl->PopClipRect();
}

// The row's K and V cells, shifted right by dx and faded to alpha.
void draw_row_cells(const RowPaint& rp, int r, float y, float dx, float alpha) {
    const CacheGeometry& g = rp.g;
    const bool dark = palette().dark;
    const float cw = g.cw, inner = cw > 5 ? 1.f : 0.f;
    for (int c = 0; c < g.k_cols; ++c)
        rp.dl->AddRectFilled(ImVec2(g.x_k + dx + c * cw, y), ImVec2(g.x_k + dx + (c + 1) * cw - inner, y + g.row_h - g.gap),
                             with_alpha(diverging(rp.v.cache_k(r, c) / rp.k_scale, dark), alpha));
    for (int c = 0; c < g.v_cols; ++c)
        rp.dl->AddRectFilled(ImVec2(g.x_v + dx + c * cw, y), ImVec2(g.x_v + dx + (c + 1) * cw - inner, y + g.row_h - g.gap),
                             with_alpha(diverging(rp.v.cache_v(r, c) / rp.v_scale, dark), alpha));
}

// One drawer per row state. Read rows light up briefly after a step.
void draw_read_row(const RowPaint& rp, const CacheRow& row, float y) {
    draw_row_tag(rp, row, y, 1.f);
    draw_row_cells(rp, row.row, y, 0.f, 1.f);
    if (rp.a_flash >= 1.f) return;
    const CacheGeometry& g = rp.g;
    rp.dl->AddRectFilled(ImVec2(g.x_k - 2, y), ImVec2(g.cells_end() + 2, y + g.row_h),
                         with_alpha(state_color(row.state, palette().dark), 0.35f * (1 - rp.a_flash)));
}

// Computed rows slide in from the right and fade in.
void draw_computed_row(const RowPaint& rp, const CacheRow& row, float y) {
    draw_row_tag(rp, row, y, rp.a_new);
    draw_row_cells(rp, row.row, y, (1.f - rp.a_new) * rp.fs * 4, rp.a_new);
}

// Recomputed rows (cache off) flash their outline.
void draw_recomputed_row(const RowPaint& rp, const CacheRow& row, float y) {
    draw_row_tag(rp, row, y, 1.f);
    draw_row_cells(rp, row.row, y, 0.f, 1.f);
    if (rp.a_flash >= 1.f) return;
    const CacheGeometry& g = rp.g;
    const float f = 0.5f + 0.5f * std::sin(rp.a_flash * 18.f);
    rp.dl->AddRect(ImVec2(g.x_k - 2, y), ImVec2(g.cells_end() + 2, y + g.row_h),
                   with_alpha(state_color(row.state, palette().dark), f * (1 - rp.a_flash)), 0.f, 0, 3.f);
}

// Evicted rows are gone: hollow grey cells struck through, the tag greyed. A row
// evicted by this very step fades out.
void draw_evicted_row(const RowPaint& rp, const CacheRow& row, float y) {
    const CacheGeometry& g = rp.g;
    draw_row_tag(rp, row, y, 0.8f);
    const ImU32 grey = with_alpha(state_color(RowState::evicted, palette().dark), 0.55f);
    const float y1 = y + g.row_h - g.gap;
    for (const auto& [x, cols] : {std::pair{g.x_k, g.k_cols}, std::pair{g.x_v, g.v_cols}}) {
        if (cols == 0) continue;
        rp.dl->AddRect(ImVec2(x, y), ImVec2(x + g.cw * cols, y1), grey);
        if (g.row_h >= 5) rp.dl->AddLine(ImVec2(x, (y + y1) * 0.5f), ImVec2(x + g.cw * cols, (y + y1) * 0.5f), grey);
    }
    if (!row.evicted_now || rp.a_flash >= 1.f) return;
    rp.dl->AddRectFilled(ImVec2(g.x_k - 2, y), ImVec2(g.cells_end() + 2, y + g.row_h),
                         with_alpha(state_color(RowState::evicted, palette().dark), 0.6f * (1 - rp.a_flash)));
}

void draw_resting_row(const RowPaint& rp, const CacheRow& row, float y) {
    draw_row_tag(rp, row, y, 1.f);
    draw_row_cells(rp, row.row, y, 0.f, 1.f);
}

// One labelled strip of values in a tooltip: "k [cells]".
void tooltip_strip(const char* name, const std::vector<float>& x, float scale) {
    const float fs = ImGui::GetFontSize(), label_w = fs * 1.5f, cw = fs * 0.55f;
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    dl->AddText(ImVec2(p.x, p.y), palette().text, name);
    draw_value_strip(dl, ImVec2(p.x + label_w, p.y), x.data(), static_cast<int>(x.size()), cw, fs, scale, palette().dark);
    ImGui::Dummy(ImVec2(label_w + cw * static_cast<float>(x.size()), fs + 2));
}

// Hovering a latent cell (MLA): its value and part, then the K and V the row expands to
// for the selected head (what the expand read computes from it at every step).
void latent_tooltip(const RowPaint& rp, const CacheRow& row, int col) {
    const kv::ModelConfig& c = rp.app.model->config;
    const CellValue cell = cache_cell(rp.v, row.row, col, true);
    if (!cell.held) {
        ImGui::SetTooltip("%s", cell_hover_text(rp.v, row, col, true).c_str());
        return;
    }
    const int dc = c.mla.kv_lora_rank, head = std::clamp(rp.app.vs.head, 0, c.n_head - 1);
    const bool rope = col >= dc;
    ImGui::BeginTooltip();
    ImGui::Text("latent row %d, %s[%d] = %.4f%s", row.row, mla_part_name(c, col), rope ? col - dc : col, cell.stored,
                rope ? " (RoPE: turned for its position)" : "");
    if (cell.rounded) ImGui::Text("stored %s; the f32 value it replaced: %.6f", kv::dtype_name(rp.v.policy.dtype), cell.f32);
    const MlaExpanded e = mla_expand_row(*rp.app.model, rp.v.cache_layer, head, rp.v.cache_k.row(row.row).data());
    ImGui::Text("Head %d reads this row as (expanded, not cached):", head);
    const float scale = std::max(abs_max(e.k.data(), static_cast<int>(e.k.size())), abs_max(e.v.data(), static_cast<int>(e.v.size())));
    tooltip_strip("k", e.k, scale);
    tooltip_strip("v", e.v, scale);
    ImGui::TextColored(to_vec4(palette().text_dim), "k = [c_KV W_UK (%d) | k_R (%d)], v = c_KV W_UV (%d)",
                       c.mla.qk_nope_head_dim, c.mla.qk_rope_head_dim, c.mla.v_head_dim);
    ImGui::EndTooltip();
}

// Hovering a cell shows its value (stored, and for f16/int8 the f32 value it replaced;
// a latent cell also what its row expands to); hovering the tag, the row's state.
void row_tooltip(const RowPaint& rp, const CacheRow& row, float y) {
    const CacheGeometry& g = rp.g;
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    if (!ImGui::IsWindowHovered() || mouse.y < y || mouse.y >= y + g.row_h) return;
    const bool in_k = mouse.x >= g.x_k && mouse.x < g.x_k + g.cw * g.k_cols;
    const bool in_v = mouse.x >= g.x_v && mouse.x < g.x_v + g.cw * g.v_cols;
    if (in_k || in_v) {
        const int c = std::clamp(static_cast<int>((mouse.x - (in_k ? g.x_k : g.x_v)) / g.cw), 0,
                                 (in_k ? g.k_cols : g.v_cols) - 1);
        if (in_k && rp.latent) return latent_tooltip(rp, row, c);
        const bool rope = in_k && rp.app.model && rp.app.model->config.is_llama();
        ImGui::SetTooltip("%s%s", rope ? ("RoPE: this key was rotated for position " + std::to_string(row.row) +
                                          " when it was computed, and is kept rotated\n").c_str()
                                       : "",
                          cell_hover_text(rp.v, row, c, in_k).c_str());
    } else if (mouse.x >= g.x_tag && mouse.x < g.x_tag + g.tag_w) {
        ImGui::SetTooltip("row %d: %s%s", row.row, row.sink ? "sink (always read); " : "", row_state_name(row.state));
    }
}

// MLA: a line between a latent row's c_KV and k_R columns, down the whole block.
void draw_latent_split(const RowPaint& rp) {
    const CacheGeometry& g = rp.g;
    const float x = g.x_k + g.cw * rp.app.model->config.mla.kv_lora_rank - 0.5f;
    rp.dl->AddLine(ImVec2(x, g.y0), ImVec2(x, g.y0 + g.rows_h()), palette().text, std::max(1.5f, rp.fs * 0.1f));
}

// The line under the rows: "K (rotated)" and "V", or "latent c_KV (24) | k_R (8, rotated)"
// over an MLA model's one block (cut to "c_KV | k_R" when the block is narrow).
void draw_column_captions(const RowPaint& rp) {
    const CacheGeometry& g = rp.g;
    const float y_end = g.y0 + g.rows_h() + 4;
    const ImU32 dim = palette().text_dim;
    if (rp.latent) {
        const std::string full = mla_columns_caption(rp.app.model->config);
        const float room = g.x_attn + g.attn_w - g.x_k;
        rp.dl->AddText(ImVec2(g.x_k, y_end), dim, ImGui::CalcTextSize(full.c_str()).x <= room ? full.c_str() : "c_KV | k_R");
        return;
    }
    const bool rope = rp.app.model && rp.app.model->config.is_llama();
    rp.dl->AddText(ImVec2(g.x_k, y_end), dim, rope ? "K (rotated)" : "K");
    rp.dl->AddText(ImVec2(g.x_v, y_end), dim, "V");
}

void draw_cache_row(const RowPaint& rp, const CacheRow& row) {
    const float y = rp.g.y0 + row.row * rp.g.row_h;
    draw_row_label(rp, row, y);
    switch (row.state) {
    case RowState::read: draw_read_row(rp, row, y); break;
    case RowState::computed: draw_computed_row(rp, row, y); break;
    case RowState::recomputed: draw_recomputed_row(rp, row, y); break;
    case RowState::evicted: draw_evicted_row(rp, row, y); break;
    case RowState::empty: draw_resting_row(rp, row, y); break;
    }
    if (row.sink) {  // sinks: an outline around the tag, whatever their state
        const CacheGeometry& g = rp.g;
        rp.dl->AddRect(ImVec2(g.x_tag - 1, y - 0.5f), ImVec2(g.x_tag + g.tag_w + 1, y + g.row_h - g.gap + 0.5f),
                       palette().text, 3.f, 0, 1.5f);
    }
    row_tooltip(rp, row, y);
}

// What one row holds: "K 16 + V 16", or an MLA model's "latent c_KV 24 + k_R 8".
std::string row_parts(const AppState& app, const SessionView& v) {
    const int kc = static_cast<int>(v.cache_k.cols()), vc = static_cast<int>(v.cache_v.cols());
    if (app.model && shows_latent_rows(app.model->config, kc))
        return "latent c_KV " + std::to_string(app.model->config.mla.kv_lora_rank) + " + k_R " +
               std::to_string(app.model->config.mla.qk_rope_head_dim);
    return "K " + std::to_string(kc) + " + V " + std::to_string(vc);
}

// "12 rows, K 16 + V 16 | attention: 1 query", with the policy when it is not the full f32 cache.
std::string cache_details(const AppState& app, const SessionView& v, const kv::StepTrace& t) {
    const int rows = static_cast<int>(v.cache_k.rows());
    const std::string parts = row_parts(app, v);
    char b[256];
    if (v.policy.is_default())
        std::snprintf(b, sizeof b, "%d rows, %s | %s", rows, parts.c_str(), attention_caption(t));
    else
        std::snprintf(b, sizeof b, "%s: %d rows held of %d, %s | %s", policy_caption(v.policy).c_str(), v.cache_rows,
                      rows, parts.c_str(), attention_caption(t));
    return b;
}

// The caption over one session's rows, or why there is nothing to draw. Roomy: the
// caption in the big font, the details beside it or wrapped under it. Presenter: one
// line in the text font, "Cache OFF: all rows recomputed  9 rows, 9.0 KiB" (the rows
// and bytes only where they fit); hovering it shows the details, the layer and the key.
bool draw_cache_caption(const AppState& app, const SessionView& v, const char* caption, bool presenter) {
    const Palette& pal = palette();
    const ImU32 col = state_color(v.cache_on ? RowState::read : RowState::recomputed, pal.dark);
    const kv::StepTrace* t = v.last();
    const bool empty = !t || v.cache_k.rows() == 0;
    if (presenter) {
        // MLA: the rows are latent rows; that is said even where the count and bytes do not fit.
        const bool latent = app.model && shows_latent_rows(app.model->config, static_cast<int>(v.cache_k.cols()));
        char b[96];
        std::snprintf(b, sizeof b, "  %d %srows, %s", static_cast<int>(v.cache_k.rows()), latent ? "latent " : "",
                      human_bytes(static_cast<double>(v.cache_bytes)).c_str());
        const float room = ImGui::GetContentRegionAvail().x, cw = ImGui::CalcTextSize(caption).x;
        ImGui::TextColored(to_vec4(col), "%s", caption);
        const bool hovered = ImGui::IsItemHovered();
        for (const std::string& part : {std::string(b), std::string(latent ? "  latent rows" : "")}) {
            if (empty || part.empty() || cw + ImGui::CalcTextSize(part.c_str()).x > room) continue;
            ImGui::SameLine(0, 0);
            ImGui::TextColored(to_vec4(pal.text_dim), "%s", part.c_str());
            break;
        }
        if (!empty && (hovered || ImGui::IsItemHovered()))
            ImGui::SetTooltip("%s\n%s", cache_details(app, v, *t).c_str(), cache_tooltip(app).c_str());
        if (empty) ImGui::TextColored(to_vec4(pal.text_dim), "The cache is empty: nothing has entered the model yet.");
        return !empty;
    }
    ImGui::PushFont(big_font());
    ImGui::TextColored(to_vec4(col), "%s", caption);
    ImGui::PopFont();
    ImGui::SameLine();
    if (empty) {
        ImGui::TextColored(to_vec4(pal.text_dim), "The cache is empty: nothing has entered the model yet.");
        return false;
    }
    const std::string b = " " + cache_details(app, v, *t);
    // Beside the caption when it fits, else wrapped on the lines below (large fonts).
    if (ImGui::GetContentRegionAvail().x < ImGui::CalcTextSize(b.c_str()).x) ImGui::NewLine();
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
    text_wrapped("%s", b.c_str());
    ImGui::PopStyleColor();
    return true;
}

}  // namespace

void record_cache_drawn(AppState& app, const CacheGeometry& g, float fs, int labelled) {
    const ImGuiWindow* w = ImGui::GetCurrentWindowRead();
    const float top = w->InnerClipRect.Min.y, bottom = w->InnerClipRect.Max.y;  // without the scrollbars
    CacheDrawn d;
    d.name = w->Name;
    d.font_px = fs;
    d.row_h = g.row_h;
    d.label_px = fs * g.label_scale;
    d.rows = g.n_rows;
    d.labelled = labelled;
    for (int r = 0; r < g.n_rows; ++r) {
        const float y = g.y0 + r * g.row_h;
        const bool in = y >= top - 0.5f && y + g.row_h - g.gap <= bottom + 0.5f;
        d.in_view += in;
        if (r == g.n_rows - 1) d.newest_in_view = in;
    }
    app.cache_drawn.push_back(d);
}

bool newest_changed(const CacheGeometry& g) {
    int* seen = ImGui::GetStateStorage()->GetIntRef(ImGui::GetID("##newest"), -1);
    const int now = g.n_rows * 4096 + static_cast<int>(ImGui::GetWindowHeight());
    const bool changed = *seen != now;
    *seen = now;
    return changed;
}

namespace {

// One session's cache: caption, then (in a scrolling child) the rows, the K/V
// captions and the attention weights beside them.
void draw_cache_view(AppState& app, const SessionView& v, const char* caption, bool presenter) {
    if (!draw_cache_caption(app, v, caption, presenter)) return;
    const float fs = ImGui::GetFontSize();
    ImGui::BeginChild("rows", ImVec2(0, 0), false, ImGuiWindowFlags_HorizontalScrollbar);
    const std::vector<CacheRow> rows = cache_rows(app, v);
    float longest = 0.f;
    for (const CacheRow& r : rows) longest = std::max(longest, ImGui::CalcTextSize(r.label.c_str()).x);
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    // Every row at its least height; the layout gives the panel more room next frame
    // when it had less (else the rows scroll, the newest in view).
    const float readable = static_cast<float>(rows.size()) * cache_row_min_h(fs);
    app.vs.layout.short_h = std::max(app.vs.layout.short_h, readable - avail.y);
    const CacheGeometry g = cache_geometry(fs, o.x, o.y, avail.x, avail.y, static_cast<int>(rows.size()),
                                           static_cast<int>(v.cache_k.cols()), static_cast<int>(v.cache_v.cols()), longest);
    int labelled = 0;
    const bool latent = app.model && shows_latent_rows(app.model->config, g.k_cols);
    const RowPaint rp{app, v, g, ImGui::GetWindowDrawList(), fs,
                      abs_max(v.cache_k.data(), static_cast<int>(v.cache_k.size())),
                      abs_max(v.cache_v.data(), static_cast<int>(v.cache_v.size())),
                      step_anim(app, 0.45f), step_anim(app, 1.0f), &labelled, latent};
    for (const CacheRow& row : rows) draw_cache_row(rp, row);
    if (latent) draw_latent_split(rp);
    const float below = g.captions ? fs * 1.3f : 0.f;
    if (g.captions) draw_column_captions(rp);
    draw_attention_beside(app, *v.last(), app.vs.layer, app.vs.head,
                          AttnGeometry{g.x_attn, g.y0, g.row_h, g.attn_w, v.policy});
    ImGui::Dummy(ImVec2(g.x_attn - g.x0 + g.attn_w, g.rows_h() + below));
    if (newest_changed(g) || !app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3) ImGui::SetScrollHereY(1.f);
    record_cache_drawn(app, g, fs, labelled);
    ImGui::EndChild();
}

}  // namespace

std::vector<CacheRow> cache_rows(const AppState& app, const SessionView& v) {
    std::vector<CacheRow> out;
    const kv::StepTrace* t = v.last();
    if (!t) return out;
    const int rows = static_cast<int>(v.cache_k.rows());
    for (int r = 0; r < rows; ++r) {
        CacheRow row;
        row.row = r;
        row.sink = v.policy.windowed() && r < v.policy.sinks;
        row.read_now = std::binary_search(t->keys_read.begin(), t->keys_read.end(), r);
        row.evicted_now = std::binary_search(t->evicted.begin(), t->evicted.end(), r);
        const bool held = r < static_cast<int>(v.held.size()) ? v.held[static_cast<size_t>(r)] : true;
        row.state = held ? row_state(*t, r) : RowState::evicted;
        row.tag = row.sink && held ? "sink" : state_label(row.state);
        row.label = std::to_string(r) + " " + (r < static_cast<int>(v.tokens.size()) ? app.token_text(v.tokens[r]) : "");
        out.push_back(std::move(row));
    }
    return out;
}

float row_label_y(const CacheGeometry& g, float y, float text_h) {
    const float bottom = g.y0 + g.n_rows * g.row_h - text_h;
    return std::max(g.y0, std::min(y + (g.row_h - text_h) * 0.5f, bottom));
}

float cache_row_min_h(float fs) { return std::max(std::ceil(fs * 0.8f), 14.f); }

CacheGeometry cache_geometry(float fs, float x0, float y0, float avail_w, float avail_h, int rows, int k_cols,
                             int v_cols, float longest_label, bool attention) {
    CacheGeometry g;
    g.n_rows = rows;
    g.k_cols = k_cols;
    g.v_cols = v_cols;
    const int cols = std::max(k_cols + v_cols, 1);
    const float kv_gap = v_cols > 0 ? fs * 0.4f : 0.f;
    g.x0 = x0;
    g.y0 = y0;
    const float min_h = cache_row_min_h(fs), caption_h = fs * 1.4f;
    const int n = std::max(rows, 1);
    g.captions = avail_h - caption_h >= n * min_h;
    const float room = g.captions ? avail_h - caption_h : avail_h;
    g.row_h = std::clamp(std::floor(room / n), min_h, std::floor(fs * 1.3f));
    g.scrolls = n * g.row_h > room + 0.5f;
    g.gap = g.row_h > 6 ? 1.f : 0.f;
    g.label_scale = std::min(fs, std::floor(g.row_h * 0.9f)) / fs;  // at least 12 px, 0.72 of the font
    // The label column is as wide as the longest label, up to 30% of the width.
    const float whole_label = longest_label * g.label_scale + fs * 0.5f;
    g.label_w = std::min(whole_label, std::max(fs * 3.f, avail_w * 0.3f));
    g.tag_w = fs * 3.6f * std::max(g.label_scale, 0.85f);
    // Narrow panels (compare's two caches) cut long labels ("..."; hover shows them)
    // rather than push the attention column out of the panel.
    g.label_w = std::max(fs * 2.f, std::min(g.label_w, avail_w - g.tag_w - fs * 9.5f));
    // Without an attention column: whole labels ("3 programming") before wide cells,
    // the cells keeping 2 px each at least.
    if (!attention) g.label_w = std::max(g.label_w, std::min(whole_label, avail_w - g.tag_w - fs * 1.5f - 2.f * cols));
    g.x_tag = x0 + g.label_w;
    g.x_k = g.x_tag + g.tag_w + fs * 0.3f;
    if (!attention) {
        g.cw = std::clamp((avail_w - (g.x_k - x0) - fs * 0.6f) / cols, 1.f, fs * 1.2f);
        g.x_v = g.x_k + g.cw * k_cols + kv_gap;
        g.x_attn = g.cells_end();
        return g;
    }
    const float rest = std::max(avail_w - g.label_w - g.tag_w - fs * 1.5f, fs * 8);
    const float attn_share = rest * 0.3f;
    g.cw = std::clamp((rest - attn_share - fs) / cols, 1.f, fs * 1.2f);
    g.x_v = g.x_k + g.cw * k_cols + kv_gap;
    g.x_attn = g.cells_end() + fs * 0.6f;
    g.attn_w = std::max(avail_w - (g.x_attn - x0) - fs * 0.5f, fs * 3);
    return g;
}

namespace {

// "Layer 0, kv head 0.  Cache (all 2 layers x 4 kv heads): 9.0 KiB now, 64.0 KiB at n_ctx = 64"
std::string cache_layer_line(const AppState& app) {
    const SessionView& v = app.main;
    if (!app.model) return "";
    const kv::ModelConfig& c = app.model->config;
    const int64_t at_ctx = kv::cache_bytes_for(c, v.policy.dtype, kv::rows_kept(v.policy, c.n_ctx));
    char b[320];
    if (c.is_mla())
        std::snprintf(b, sizeof b, "Layer %d, %s.  Cache (all %d layers): %s now, %s at n_ctx = %d", v.cache_layer,
                      mla_row_summary(c).c_str(), c.n_layer, human_bytes(static_cast<double>(v.cache_bytes)).c_str(),
                      human_bytes(static_cast<double>(at_ctx)).c_str(), c.n_ctx);
    else
        std::snprintf(b, sizeof b, "Layer %d, kv head %d.  Cache (all %d layers x %d kv heads): %s now, %s at n_ctx = %d",
                      v.cache_layer, v.cache_kv_head, c.n_layer, c.n_kv_head,
                      human_bytes(static_cast<double>(v.cache_bytes)).c_str(),
                      human_bytes(static_cast<double>(at_ctx)).c_str(), c.n_ctx);
    return b;
}

// The key of the row tags and of the attention column; it flows onto the next line
// when the panel is narrow.
void draw_cache_key(const AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    const float fs = ImGui::GetFontSize();
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    auto flow = [&](float w) {
        if (ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x + w <= right) ImGui::SameLine();
    };
    auto key_w = [&](const char* s) {
        return ImGui::GetTextLineHeight() * 0.75f + ImGui::GetStyle().ItemSpacing.x + ImGui::CalcTextSize(s).x;
    };
    color_key(state_color(RowState::read, pal.dark), "read from cache");
    flow(key_w("computed now"));
    color_key(state_color(RowState::computed, pal.dark), "computed now");
    flow(key_w("recomputed (cache off)"));
    color_key(state_color(RowState::recomputed, pal.dark), "recomputed (cache off)");
    if (v.policy.windowed() || (app.compare && app.other.policy.windowed())) {
        flow(key_w("evicted"));
        color_key(state_color(RowState::evicted, pal.dark), "evicted");
    }
    flow(fs * 4 + ImGui::CalcTextSize("  weight 0 1").x + ImGui::GetStyle().ItemSpacing.x * 3);
    draw_sequential_legend(fs * 4, "  weight");
}

}  // namespace

std::string cache_tooltip(const AppState& app) {
    return cache_layer_line(app) +
           "\nTags: cache = read from the cache, new = computed now, recomp = recomputed (cache off)"
           "\nRight of the rows: the selected head's attention weights (0 .. 1)";
}

void draw_cache_panel(AppState& app) {
    const SessionView& v = app.main;
    // A projector's font: the rows get the height (presenter rule); the layer, the
    // bytes and the key move into the caption's tooltip, the tags say their state.
    const bool presenter = presenter_font();
    if (!presenter) {
        if (app.model) text_wrapped("%s", cache_layer_line(app).c_str());
        draw_cache_key(app);
    }
    if (app.compare && app.other.valid) {
        const float w = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;
        // Two policies side by side are named by their policy; one policy by the cache mode.
        const bool two_policies = !(v.policy == app.other.policy);
        auto caption = [&](const SessionView& s) {
            if (!two_policies) return std::string(s.cache_on ? "WITH cache" : "WITHOUT cache");
            return policy_caption(s.policy) + (s.cache_on ? "" : " (cache off)");
        };
        ImGui::BeginChild("main_cache", ImVec2(w, 0), true);
        draw_cache_view(app, v, caption(v).c_str(), presenter);
        ImGui::EndChild();
        ImGui::SameLine();
        ImGui::BeginChild("other_cache", ImVec2(0, 0), true);
        draw_cache_view(app, app.other, caption(app.other).c_str(), presenter);
        ImGui::EndChild();
    } else {
        ImGui::BeginChild("main_cache", ImVec2(0, 0), false);
        draw_cache_view(app, v, v.cache_on ? "Cache ON" : "Cache OFF: all rows recomputed", presenter);
        ImGui::EndChild();
    }
}

}  // namespace kvui
