// Speculative mode's caches: the target's rows written by the round, then the rejected
// rows struck and faded as they are rolled back; the draft's cache beside it. Rows
// follow the presenter rule of the cache panel (docs/design.md): cache_geometry,
// labelled rows of at least 0.8 font heights, the newest in view.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/look/theme.h"
#include "ui/panels/panels.h"

namespace kvui {

namespace {

// One model's cache over the latest round, as drawn.
struct CacheSide {
    const char* title;
    const char* short_title;            // at a projector's font
    const kv::RowMat *k, *v;            // rows held now
    const kv::RowMat *gone_k, *gone_v;  // rolled-back rows' values (may have 0 rows)
    int gone_first = 0;
    RoundRows rows;
};

// The token a row holds during the round: the tokens before it, then the drafts.
int row_token(const SpecView& s, int row) {
    const kv::SpecRound* r = s.last();
    const int T = r ? r->n_tokens_before : static_cast<int>(s.tokens.size());
    if (row < T) return row < static_cast<int>(s.tokens.size()) ? s.tokens[size_t(row)] : -1;
    const int i = row - T;
    return r && i < static_cast<int>(r->proposed.size()) ? r->proposed[size_t(i)] : -1;
}

// The row's K and V cells (from src, row i) at alpha, or a hatched placeholder.
void draw_cells(ImDrawList* dl, const CacheGeometry& g, float y, const kv::RowMat* k, const kv::RowMat* v, int i,
                float ks, float vs, float alpha) {
    const bool dark = palette().dark;
    const float h = g.row_h - g.gap;
    if (!k || !v || i < 0 || i >= k->rows() || k->cols() != g.k_cols || v->cols() != g.v_cols) {
        dl->AddRectFilled(ImVec2(g.x_k, y), ImVec2(g.x_k + g.cw * g.k_cols, y + h), with_alpha(palette().text_dim, 0.2f * alpha));
        if (g.v_cols > 0)
            dl->AddRectFilled(ImVec2(g.x_v, y), ImVec2(g.cells_end(), y + h), with_alpha(palette().text_dim, 0.2f * alpha));
        return;
    }
    for (int c = 0; c < g.k_cols; ++c)
        dl->AddRectFilled(ImVec2(g.x_k + c * g.cw, y), ImVec2(g.x_k + (c + 1) * g.cw, y + h),
                          with_alpha(diverging((*k)(i, c) / ks, dark), alpha));
    for (int c = 0; c < g.v_cols; ++c)
        dl->AddRectFilled(ImVec2(g.x_v + c * g.cw, y), ImVec2(g.x_v + (c + 1) * g.cw, y + h),
                          with_alpha(diverging((*v)(i, c) / vs, dark), alpha));
}

// One row: label, tag and cells in the row's state for this phase.
void draw_spec_row(const AppState& app, const CacheSide& side, const CacheGeometry& g, int row, SpecPhase ph, float ks,
                   float vs) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = ImGui::GetFontSize(), y = g.y0 + row * g.row_h, h = g.row_h - g.gap;
    const bool gone = side.rows.rolled_back.contains(row), struck = gone && ph == SpecPhase::rolled_back;
    const bool fresh = side.rows.kept.contains(row) || gone;
    const ImU32 tag_col = struck ? pal.bad : state_color(fresh ? RowState::computed : RowState::read, pal.dark);
    const char* tag = struck ? "gone" : fresh ? "new" : "cache";
    const int id = row_token(app.spec, row);
    const std::string label = std::to_string(row) + " " + (id >= 0 ? app.token_text(id) : "");
    const float ls = fs * g.label_scale, ly = row_label_y(g, y, ls);
    dl->PushClipRect(ImVec2(g.x0, ly), ImVec2(g.x_tag - 2, ly + ls), true);
    dl->AddText(ImGui::GetFont(), ls, ImVec2(g.x0, ly), struck ? with_alpha(pal.text, 0.5f) : pal.text, label.c_str());
    dl->PopClipRect();
    dl->AddRectFilled(ImVec2(g.x_tag, y), ImVec2(g.x_tag + g.tag_w, y + h), tag_col, 3.f);
    const float ts = fs * std::min(0.85f, g.label_scale);
    dl->AddText(big_font(), ts, ImVec2(g.x_tag + 4, y + (g.row_h - ts) * 0.5f), IM_COL32(0, 0, 0, 255), tag);
    if (gone) draw_cells(dl, g, y, side.gone_k, side.gone_v, row - side.gone_first, ks, vs, struck ? 0.3f : 1.f);
    else draw_cells(dl, g, y, side.k, side.v, row, ks, vs, 1.f);
    const float x1 = g.cells_end();
    if (gone && !struck) dashed_rect(dl, ImVec2(g.x_k - 2, y), ImVec2(x1 + 2, y + h), state_color(RowState::computed, pal.dark), 2.f);
    if (struck) dl->AddLine(ImVec2(g.x0, y + h * 0.5f), ImVec2(x1 + 2, y + h * 0.5f), pal.bad, 2.f);
}

// One model's cache rows in the current child window.
void draw_spec_cache_side(AppState& app, const CacheSide& side, SpecPhase ph) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    const int n_rows = side.rows.rolled_back.end > 0 ? side.rows.rolled_back.end : static_cast<int>(side.k->rows());
    if (presenter_font()) {  // one line, "Target: 10 kept, 4 rolled back": the rows get the height
        const int kept = static_cast<int>(side.k->rows()), back = side.rows.rolled_back.end - side.rows.rolled_back.first;
        if (ph == SpecPhase::written)
            text_wrapped_colored(pal.text_dim, "%s: %d rows, %d new", side.short_title, n_rows,
                                 side.rows.rolled_back.end - side.rows.kept.first);
        else
            text_wrapped_colored(pal.bad, "%s: %d kept, %d rolled back", side.short_title, kept, back);
    } else {
        ImGui::TextUnformatted(side.title);
        if (ph == SpecPhase::written)
            text_wrapped_colored(pal.text_dim, "%d rows: %s written this round", n_rows,
                                 rows_text({side.rows.kept.first, side.rows.rolled_back.end}).c_str());
        else
            text_wrapped_colored(pal.bad, "%d rows: %d kept, %s rolled back", n_rows, static_cast<int>(side.k->rows()),
                                 rows_text(side.rows.rolled_back).c_str());
    }
    if (n_rows == 0) return;
    ImGui::BeginChild("rows", ImVec2(0, 0), false, ImGuiWindowFlags_HorizontalScrollbar);
    const ImVec2 o = ImGui::GetCursorScreenPos(), avail = ImGui::GetContentRegionAvail();
    // Every row at its least height: the layout gives the panel more room next frame.
    app.vs.layout.short_h = std::max(app.vs.layout.short_h, n_rows * cache_row_min_h(fs) - avail.y);
    float longest = 0;
    for (int r = 0; r < n_rows; ++r) {
        const int id = row_token(app.spec, r);
        longest = std::max(longest, ImGui::CalcTextSize((std::to_string(r) + " " + (id >= 0 ? app.token_text(id) : "")).c_str()).x);
    }
    const CacheGeometry g = cache_geometry(fs, o.x, o.y, avail.x, avail.y, n_rows, static_cast<int>(side.k->cols()),
                                           static_cast<int>(side.v->cols()), longest, false);
    const float ks = abs_max(side.k->data(), static_cast<int>(side.k->size()));
    const float vs = abs_max(side.v->data(), static_cast<int>(side.v->size()));
    for (int r = 0; r < n_rows; ++r) draw_spec_row(app, side, g, r, ph, ks, vs);
    record_cache_drawn(app, g, fs, n_rows);  // every row carries its label
    ImGui::Dummy(ImVec2(g.cells_end() - g.x0, n_rows * g.row_h + fs * 0.3f));
    if (newest_changed(g) || !app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3) ImGui::SetScrollHereY(1.f);
    ImGui::EndChild();
}

}  // namespace

void draw_spec_cache_panel(AppState& app) {
    const Palette& pal = palette();
    const SpecView& s = app.spec;
    const SpecPhase ph = spec_phase(app);
    // Radio buttons and keys flow onto the next line when the panel is narrow.
    const ImGuiStyle& st = ImGui::GetStyle();
    auto radio_w = [&](const char* l) { return ImGui::GetFrameHeight() + st.ItemInnerSpacing.x + ImGui::CalcTextSize(l).x; };
    auto key_w = [&](const char* l) { return ImGui::GetTextLineHeight() * 0.75f + st.ItemSpacing.x + ImGui::CalcTextSize(l).x; };
    ImGui::AlignTextToFramePadding();
    if (presenter_font()) {  // the layer on hover: one line of radios
        ImGui::Text("Show:");
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("layer %d, kv head %d", s.layer, s.kv_head);
    } else {
        ImGui::Text("Layer %d, kv head %d.  Show:", s.layer, s.kv_head);
    }
    flow(radio_w("both phases"));
    ImGui::RadioButton("both phases", &app.vs.spec.hold, 0);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("after each round: 1 rows written, then 2 rejected rows rolled back");
    flow(radio_w("1 written"));
    ImGui::RadioButton("1 written", &app.vs.spec.hold, 1);
    flow(radio_w("2 rolled back"));
    ImGui::RadioButton("2 rolled back", &app.vs.spec.hold, 2);
    if (!presenter_font()) {  // a projector's font: the tags say it ("cache", "new", "gone")
        color_key(state_color(RowState::read, pal.dark), "read from cache");
        flow(key_w("written this round"));
        color_key(state_color(RowState::computed, pal.dark), "written this round");
        flow(key_w("rolled back (struck)"));
        color_key(pal.bad, "rolled back (struck)");
    }
    const kv::SpecRound* r = s.last();
    const RoundRows none{{0, 0}, {0, 0}, {0, 0}};
    const CacheSide target{"Target's cache", "Target", &s.target_k, &s.target_v, &s.gone_k, &s.gone_v, s.gone_first,
                           r ? target_round_rows(*r) : none};
    const CacheSide draft{"Draft's cache", "Draft", &s.draft_k, &s.draft_v, nullptr, nullptr, 0, r ? draft_round_rows(*r) : none};
    const float w = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;  // both caches hold the same positions
    ImGui::BeginChild("spec_target", ImVec2(w, 0), true);
    draw_spec_cache_side(app, target, ph);
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginChild("spec_draft", ImVec2(0, 0), true);
    draw_spec_cache_side(app, draft, ph);
    ImGui::EndChild();
}

}  // namespace kvui
