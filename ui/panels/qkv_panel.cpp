// Q/K/V: for the selected layer and head, the newest processed token's q, k and v as
// rows of coloured cells (diverging map, value on hover), with where each goes:
// q is used now and thrown away, k and v become a cache row. For a RoPE model (the
// Llama family) k also before its rotation (k0), and the angles it was turned by. For an
// MLA model the cache row is the latent [c_KV | k_R] (HeadTrace::latent), and k and v
// are the head's expansion of it, not cached.
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

// MLA: what is cached and what is computed again at every step.
void draw_mla_note(const kv::ModelConfig& c, int pos) {
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().text_dim));
    text_wrapped("MLA: cache row %d is the latent [c_KV %d | k_R %d] alone; k and v are expanded from it for each of "
                 "the %d heads (kv_b_proj) when a query reads it.", pos, c.mla.kv_lora_rank, c.mla.qk_rope_head_dim,
                 c.n_head);
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
    const int hd = static_cast<int>(h->q.cols());  // q and k width (MLA: d_n + d_R)
    const int n_in = static_cast<int>(t->input_ids.size());
    const int in_idx = pos - t->start_pos;  // the token that entered the model at pos (a draft may be rolled back since)
    const std::string tok = in_idx >= 0 && in_idx < n_in ? app.token_text(t->input_ids[size_t(in_idx)]) : "?";
    if (app.model && app.model->config.is_mla())
        text_wrapped("Layer %d, head %d, token '%s' at position %d: q and k %d wide, v %d.", h->layer, h->head,
                     tok.c_str(), pos, hd, static_cast<int>(h->v.cols()));
    else
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
    // An MLA model's k and v are not cached: the latent row is (HeadTrace::latent), and
    // each step expands it again for every head.
    const kv::ModelConfig* cfg = app.model ? &app.model->config : nullptr;
    const bool mla = cfg && cfg->is_mla();
    const bool latent = mla && h->latent.rows() > r;
    const float fs = ImGui::GetFontSize();
    const float label_w = fs * (latent ? 3.2f : 2.2f);
    char note_kv[64], note_latent[64];
    std::snprintf(note_kv, sizeof note_kv, "-> cache row %d%s", pos,
                  pos >= app.main.cache_positions && spec_phase(app) == SpecPhase::rolled_back ? " (rolled back)" : "");
    std::snprintf(note_latent, sizeof note_latent, "-> cache row %d (latent)", pos);
    const char* note_expanded = "from the latent, not cached";
    struct RowDef {
        const char* name;
        const float* x;
        int n;
        const char* note;
        bool cached;  // the note says which cache row it becomes ("computed" colour)
    };
    // A RoPE model's k is shown twice: as k_proj made it, and turned for its position
    // (what the cache keeps); q is shown turned, as attention uses it.
    const bool rope = h->k_before_rope.rows() > r;
    auto row_of = [&](const kv::RowMat& m) { return m.row(r).data(); };
    std::vector<RowDef> rows = {{"q", row_of(h->q), static_cast<int>(h->q.cols()), "used now, then dropped", false}};
    if (latent) rows.push_back({"c|kR", row_of(h->latent), static_cast<int>(h->latent.cols()), note_latent, true});
    if (rope && !mla) rows.push_back({"k0", row_of(h->k_before_rope), static_cast<int>(h->k_before_rope.cols()),
                                      "before RoPE: not kept", false});
    rows.push_back({"k", row_of(h->k), static_cast<int>(h->k.cols()), mla ? note_expanded : note_kv, !mla});
    rows.push_back({"v", row_of(h->v), static_cast<int>(h->v.cols()), mla ? note_expanded : note_kv, !mla});
    float scale = 1e-6f;
    int widest = 1;
    for (const RowDef& d : rows) scale = std::max(scale, abs_max(d.x, d.n)), widest = std::max(widest, d.n);
    float note_w = 0.f;
    for (const RowDef& d : rows) note_w = std::max(note_w, ImGui::CalcTextSize(d.note).x);
    note_w += fs * 0.6f;
    const float avail = ImGui::GetContentRegionAvail().x - label_w - note_w;
    const float cell_w = std::clamp(avail / widest, 2.f, fs * 1.6f);
    const float cell_h = fs * 1.15f;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (const RowDef& d : rows) {
        ImVec2 p = ImGui::GetCursorScreenPos();
        dl->AddText(big_font(), fs * 1.1f * (latent ? 0.8f : 1.f), ImVec2(p.x, p.y), pal.text, d.name);
        int hov = draw_value_strip(dl, ImVec2(p.x + label_w, p.y), d.x, d.n, cell_w, cell_h, scale, pal.dark);
        const ImU32 nc = d.cached ? state_color(RowState::computed, pal.dark) : pal.text_dim;
        dl->AddText(ImVec2(p.x + label_w + cell_w * widest + fs * 0.5f, p.y), nc, d.note);
        ImGui::Dummy(ImVec2(label_w + cell_w * widest + note_w, cell_h + 2));
        if (hov >= 0) ImGui::SetTooltip("%s[%d] = %.4f\n(token '%s', position %d)", d.name, hov, d.x[hov], tok.c_str(), pos);
    }
    draw_diverging_legend(scale, pal.dark, fs * 8);
    if (mla) draw_mla_note(*cfg, pos);
    else if (rope) draw_rope_note(pos);
    if (h->recompute_max_diff >= 0.f) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(state_color(RowState::recomputed, pal.dark)));
        text_wrapped("recomputed K/V equal the cached ones: max |diff| = %.1e", h->recompute_max_diff);
        ImGui::PopStyleColor();
    }
}

}  // namespace kvui
