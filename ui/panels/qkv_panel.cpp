// Q/K/V: for the selected layer and head, the newest processed token's q, k and v as
// rows of coloured cells (diverging map, value on hover), with where each goes:
// q is used now and thrown away, k and v become a cache row. For a RoPE model (the
// Llama family) k also before its rotation (k0), and the angles it was turned by.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

// What RoPE did to this token's q and k, in one line: turned for its position, pair
// (i, i + hd/2) by pos x inv_freq[i] (the lesson's RoPE chapter gives the angles).
void draw_rope_note(int pos) {
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().text_dim));
    text_wrapped("RoPE: q and k0 turned for position %d; the cache keeps the turned k.", pos);
    ImGui::PopStyleColor();
}

}  // namespace

void draw_qkv_panel(AppState& app) {
    const Palette& pal = palette();
    const kv::StepTrace* t = app.main.last();
    if (!t) {
        text_wrapped("Press Space to run the prefill. Each token's hidden state is multiplied by three weight "
                           "matrices: q (the question it asks), k (the key it offers) and v (the value it carries).");
        return;
    }
    const kv::HeadTrace* h = t->find_head(app.vs.layer, app.vs.head);
    if (!h || h->q.rows() == 0) {
        text_wrapped("Layer %d head %d was not recorded at this step (large models record only the selected "
                           "head): step again to see it.", app.vs.layer, app.vs.head);
        return;
    }
    const int r = static_cast<int>(h->q.rows()) - 1;  // the newest token's row
    const int pos = h->first_pos + r;
    const int hd = static_cast<int>(h->q.cols());
    const int n_in = static_cast<int>(t->input_ids.size());
    const int in_idx = pos - t->start_pos;  // the token that entered the model at pos (a draft may be rolled back since)
    const std::string tok = in_idx >= 0 && in_idx < n_in ? app.token_text(t->input_ids[size_t(in_idx)]) : "?";
    text_wrapped("Layer %d, head %d (kv head %d), token '%s' at position %d, head_dim %d.", h->layer, h->head,
                       h->kv_head, tok.c_str(), pos, hd);
    if (n_in > 1) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
        text_wrapped(t->phase == kv::Phase::prefill ? "(prefill: %d tokens at once; last shown)"
                           : t->cache_on                  ? "(%d tokens in one pass, drafts checked; last shown)"
                                                          : "(cache off: %d tokens again; last shown)",
                           n_in);
        ImGui::PopStyleColor();
    }
    float scale = std::max({abs_max(h->q.row(r).data(), hd), abs_max(h->k.row(r).data(), hd),
                            abs_max(h->v.row(r).data(), hd)});
    const float fs = ImGui::GetFontSize();
    const float label_w = fs * 2.2f;
    char note_kv[64];
    std::snprintf(note_kv, sizeof note_kv, "-> cache row %d%s", pos,
                  pos >= app.main.cache_positions && spec_phase(app) == SpecPhase::rolled_back ? " (rolled back)" : "");
    const float note_w = std::max({ImGui::CalcTextSize("used now, then dropped").x, ImGui::CalcTextSize(note_kv).x,
                                   h->k_before_rope.rows() ? ImGui::CalcTextSize("before RoPE: not kept").x : 0.f}) +
                         fs * 0.6f;
    const float avail = ImGui::GetContentRegionAvail().x - label_w - note_w;
    const float cell_w = std::clamp(avail / hd, 2.f, fs * 1.6f);
    const float cell_h = fs * 1.15f;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    struct RowDef {
        const char* name;
        const kv::RowMat* m;
        const char* note;
    };
    // A RoPE model's k is shown twice: as k_proj made it, and turned for its position
    // (what the cache keeps); q is shown turned, as attention uses it.
    const bool rope = h->k_before_rope.rows() > r;
    std::vector<RowDef> rows = {{"q", &h->q, "used now, then dropped"}};
    if (rope) rows.push_back({"k0", &h->k_before_rope, "before RoPE: not kept"});
    rows.push_back({"k", &h->k, nullptr});
    rows.push_back({"v", &h->v, nullptr});
    for (const RowDef& d : rows) {
        ImVec2 p = ImGui::GetCursorScreenPos();
        dl->AddText(big_font(), fs * 1.1f, ImVec2(p.x, p.y), pal.text, d.name);
        int hov = draw_value_strip(dl, ImVec2(p.x + label_w, p.y), d.m->row(r).data(), hd, cell_w, cell_h, scale,
                                   pal.dark);
        ImU32 nc = d.note ? pal.text_dim : state_color(RowState::computed, pal.dark);
        dl->AddText(ImVec2(p.x + label_w + cell_w * hd + fs * 0.5f, p.y), nc, d.note ? d.note : note_kv);
        ImGui::Dummy(ImVec2(label_w + cell_w * hd + note_w, cell_h + 2));
        if (hov >= 0) ImGui::SetTooltip("%s[%d] = %.4f\n(token '%s', position %d)", d.name, hov, (*d.m)(r, hov), tok.c_str(), pos);
    }
    draw_diverging_legend(scale, pal.dark, fs * 8);
    if (rope) draw_rope_note(pos);
    if (h->recompute_max_diff >= 0.f) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(state_color(RowState::recomputed, pal.dark)));
        text_wrapped("recomputed K/V equal the cached ones: max |diff| = %.1e", h->recompute_max_diff);
        ImGui::PopStyleColor();
    }
}

}  // namespace kvui
