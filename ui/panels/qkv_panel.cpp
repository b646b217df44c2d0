// Q/K/V: for the selected layer and head, the newest processed token's q, k and v as
// rows of coloured cells (diverging map, value on hover), with where each goes:
// q is used now and thrown away, k and v become a cache row. For a RoPE model (the
// Llama family) k also before its rotation (k0), and the angles it was turned by.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

// What RoPE did to this token's q and k: each pair (i, i + hd/2) turned by
// pos x inv_freq[i], the fastest pair and the slowest, and what the cache keeps.
void draw_rope_note(const kv::ModelConfig& cfg, int pos, int hd) {
    const std::vector<float> inv = kv::rope_inv_freq(hd, cfg.rope);
    const double two_pi = 6.283185307179586;
    auto deg = [&](float f) { return std::fmod(double(pos) * f, two_pi) * 360.0 / two_pi; };
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().text_dim));
    text_wrapped("RoPE: k0 and q are turned by their position %d, pair (i, i+%d) by %d x theta^(-2i/%d): pair 0 by "
                 "%.0f deg (mod 360), pair %d by %.2f deg. The cache keeps k rotated for position %d; the score "
                 "q.k then depends only on how far apart the two positions are.",
                 pos, hd / 2, pos, hd, deg(inv.front()), hd / 2 - 1, deg(inv.back()), pos);
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
    if (rope && app.model) draw_rope_note(app.model->config, pos, hd);
    if (h->recompute_max_diff >= 0.f) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(state_color(RowState::recomputed, pal.dark)));
        text_wrapped("recomputed K/V equal the cached ones: max |diff| = %.1e", h->recompute_max_diff);
        ImGui::PopStyleColor();
    }
}

}  // namespace kvui
